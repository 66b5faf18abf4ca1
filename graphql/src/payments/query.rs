//! Payments queries: the signed-in driver's wallet, payments and cards, and a driver's wallet
//! for ops and finance.

use super::{Payment, PaymentMethod, Wallet, cards_of, payments_page, require_money_staff};
use crate::errors::internal;
use crate::guard;
use crate::relay::parse_global_id;
use accounts::{AccountsError, DriverId};
use async_graphql::connection::Connection;
use async_graphql::{Context, ID, Object};

/// The payments queries.
#[derive(Default)]
pub struct PaymentsQuery;

#[Object]
impl PaymentsQuery {
    /// The signed-in driver's wallet. `UNAUTHENTICATED` without a session, `FORBIDDEN` for staff
    /// and partners (staff use `driverWallet`).
    async fn wallet(&self, ctx: &Context<'_>) -> async_graphql::Result<Wallet> {
        let driver = guard::require_driver(ctx)?;
        Ok(Wallet {
            driver_id: driver.driver_id,
            viewer: guard::principal(ctx).clone(),
            position: Default::default(),
        })
    }

    /// The signed-in driver's payments (wallet top-ups), newest first.
    async fn payments(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return (at most 100).",
            default = 20,
            validator(minimum = 0, maximum = 100)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return payments after this cursor.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Payment>> {
        let driver = guard::require_driver(ctx)?;
        payments_page(ctx, guard::principal(ctx), driver.driver_id, first, after).await
    }

    /// The signed-in driver's saved cards (not removed), the default first.
    async fn payment_methods(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<PaymentMethod>> {
        let driver = guard::require_driver(ctx)?;
        cards_of(ctx, guard::principal(ctx), driver.driver_id).await
    }

    /// A driver's wallet, with their payments and cards (ops, finance and admin); null when the
    /// id names no driver.
    async fn driver_wallet(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The driver's global id.")] driver_id: ID,
    ) -> async_graphql::Result<Option<Wallet>> {
        require_money_staff(ctx)?;
        let Some(driver_id) = parse_global_id::<DriverId>(&driver_id, "Driver") else {
            return Ok(None);
        };
        let mut conn = crate::accounts::conn(ctx).await?;
        match accounts::get_driver(&mut conn, driver_id).await {
            Ok(_) => Ok(Some(Wallet {
                driver_id,
                viewer: guard::principal(ctx).clone(),
                position: Default::default(),
            })),
            Err(AccountsError::NotFound(_)) => Ok(None),
            Err(e) => Err(internal(ctx, e)),
        }
    }
}
