//! Accounts queries: who am I (`me`, `staffMe`, `partner`) and the partner list for ops.

use super::{Driver, Partner, StaffUser, conn};
use crate::errors::internal;
use crate::guard;
use accounts::{AccountsError, Role};
use async_graphql::{Context, Object};

/// The accounts queries.
#[derive(Default)]
pub struct AccountsQuery;

#[Object]
impl AccountsQuery {
    /// The signed-in driver. `UNAUTHENTICATED` without a session, `FORBIDDEN` for staff and
    /// partners.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Driver>> {
        let driver = guard::require_driver(ctx)?;
        let mut conn = conn(ctx).await?;
        match accounts::get_driver(&mut conn, driver.driver_id).await {
            Ok(d) => Ok(Some(Driver::new(d, guard::principal(ctx).clone()))),
            Err(AccountsError::NotFound(_)) => Ok(None),
            Err(e) => Err(internal(ctx, e)),
        }
    }

    /// The signed-in staff user. `UNAUTHENTICATED` without a staff session, `FORBIDDEN` for
    /// drivers and partners.
    async fn staff_me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<StaffUser>> {
        let staff = guard::require_any_staff(ctx)?;
        let mut conn = conn(ctx).await?;
        match accounts::get_staff(&mut conn, staff.staff_id).await {
            Ok(s) => Ok(Some(StaffUser(s))),
            Err(AccountsError::NotFound(_)) => Ok(None),
            Err(e) => Err(internal(ctx, e)),
        }
    }

    /// The partner whose API key is calling. `UNAUTHENTICATED` without a key, `FORBIDDEN` for
    /// drivers and staff.
    async fn partner(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Partner>> {
        let partner = guard::require_partner(ctx)?;
        let mut conn = conn(ctx).await?;
        match accounts::get_partner(&mut conn, partner.partner_id).await {
            Ok(p) => Ok(Some(Partner::new(p, guard::principal(ctx).clone()))),
            Err(AccountsError::NotFound(_)) => Ok(None),
            Err(e) => Err(internal(ctx, e)),
        }
    }

    /// Every partner, by name (ops and admin).
    async fn partners(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Partner>> {
        guard::require_staff(ctx, Role::Ops)?;
        let mut conn = conn(ctx).await?;
        let viewer = guard::principal(ctx);
        let partners = accounts::list_partners(&mut conn)
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(partners
            .into_iter()
            .map(|p| Partner::new(p, viewer.clone()))
            .collect())
    }
}
