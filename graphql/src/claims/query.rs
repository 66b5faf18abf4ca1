//! Claims queries: the signed-in driver's claims and disputes; the ops queues; the claims
//! bordereau for finance.

use super::{
    ChargeDispute, Claim, ClaimStatus, ClaimsBordereauRow, DisputeStatus, claim_node, page_error,
};
use crate::errors::{coded, internal};
use crate::guard;
use crate::relay::from_global_id;
use accounts::{Principal, Role};
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Object};
use claims::ListOrder;

/// Largest page of claims or disputes.
pub const MAX_PAGE: i32 = 100;

fn page_size(first: Option<i32>) -> i64 {
    i64::from(first.unwrap_or(20).clamp(0, MAX_PAGE))
}

/// Finance (and admin), or `UNAUTHENTICATED` / `FORBIDDEN`.
fn require_finance(ctx: &Context<'_>) -> async_graphql::Result<()> {
    guard::require_staff(ctx, Role::Finance).map(|_| ())
}

async fn claims_page(
    ctx: &Context<'_>,
    filter: claims::ClaimFilter,
    order: ListOrder,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, Claim>> {
    let first = page_size(first);
    if first == 0 {
        return Ok(Connection::new(after.is_some(), false));
    }
    let viewer = guard::principal(ctx).clone();
    let mut conn = crate::accounts::conn(ctx).await?;
    let page = claims::list_claims(&mut conn, &filter, order, after.as_deref(), first)
        .await
        .map_err(|e| page_error(ctx, e))?;
    let mut connection = Connection::new(after.is_some(), page.has_next_page);
    for edge in page.edges {
        connection.edges.push(Edge::new(
            edge.cursor,
            Claim::new(edge.node, viewer.clone()),
        ));
    }
    Ok(connection)
}

async fn disputes_page(
    ctx: &Context<'_>,
    filter: claims::DisputeFilter,
    order: ListOrder,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, ChargeDispute>> {
    let first = page_size(first);
    if first == 0 {
        return Ok(Connection::new(after.is_some(), false));
    }
    let viewer = guard::principal(ctx).clone();
    let mut conn = crate::accounts::conn(ctx).await?;
    let page = claims::list_disputes(&mut conn, &filter, order, after.as_deref(), first)
        .await
        .map_err(|e| page_error(ctx, e))?;
    let mut connection = Connection::new(after.is_some(), page.has_next_page);
    for edge in page.edges {
        connection.edges.push(Edge::new(
            edge.cursor,
            ChargeDispute::new(edge.node, viewer.clone()),
        ));
    }
    Ok(connection)
}

/// The claims queries.
#[derive(Default)]
pub struct ClaimsQuery;

#[Object]
impl ClaimsQuery {
    /// The signed-in driver's claims, newest first.
    async fn claims(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return (at most 100).",
            default = 20,
            validator(minimum = 0, maximum = 100)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return claims after this cursor.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Claim>> {
        let driver = guard::require_driver(ctx)?;
        let filter = claims::ClaimFilter {
            driver_id: Some(driver.driver_id),
            statuses: Vec::new(),
        };
        claims_page(ctx, filter, ListOrder::NewestFirst, first, after).await
    }

    /// One claim: the driver's own, or any for ops; null when it does not exist or is not the
    /// viewer's to see.
    async fn claim(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The claim's global id.")] id: ID,
    ) -> async_graphql::Result<Option<Claim>> {
        match guard::principal(ctx) {
            Principal::Driver(_) => {}
            Principal::Staff(s) if s.has(Role::Ops) => {}
            Principal::Anonymous => return Err(guard::unauthenticated()),
            _ => return Err(guard::forbidden()),
        }
        match from_global_id(&id) {
            Some((t, raw)) if t == "Claim" => claim_node(ctx, &raw).await,
            _ => Ok(None),
        }
    }

    /// The signed-in driver's charge disputes, newest first.
    async fn disputes(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return (at most 100).",
            default = 20,
            validator(minimum = 0, maximum = 100)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return disputes after this cursor.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ChargeDispute>> {
        let driver = guard::require_driver(ctx)?;
        let filter = claims::DisputeFilter {
            driver_id: Some(driver.driver_id),
            statuses: Vec::new(),
        };
        disputes_page(ctx, filter, ListOrder::NewestFirst, first, after).await
    }

    /// The claims queue (ops): claims in the given statuses (the open ones — reported,
    /// acknowledged, under review — when none are given), oldest report first.
    async fn claims_queue(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only claims in these statuses (the open ones when omitted).")]
        status: Option<Vec<ClaimStatus>>,
        #[graphql(
            desc = "How many to return (at most 100).",
            default = 20,
            validator(minimum = 0, maximum = 100)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return claims after this cursor.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Claim>> {
        guard::require_staff(ctx, Role::Ops)?;
        let statuses = match status {
            Some(list) if !list.is_empty() => list.into_iter().map(Into::into).collect(),
            _ => vec![
                claims::ClaimStatus::Reported,
                claims::ClaimStatus::Acknowledged,
                claims::ClaimStatus::UnderReview,
            ],
        };
        let filter = claims::ClaimFilter {
            driver_id: None,
            statuses,
        };
        claims_page(ctx, filter, ListOrder::OldestFirst, first, after).await
    }

    /// The disputes queue (ops): disputes in the given statuses (open ones when none are given),
    /// oldest first.
    async fn disputes_queue(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only disputes in these statuses (open ones when omitted).")]
        status: Option<Vec<DisputeStatus>>,
        #[graphql(
            desc = "How many to return (at most 100).",
            default = 20,
            validator(minimum = 0, maximum = 100)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return disputes after this cursor.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ChargeDispute>> {
        guard::require_staff(ctx, Role::Ops)?;
        let statuses = match status {
            Some(list) if !list.is_empty() => list.into_iter().map(Into::into).collect(),
            _ => vec![claims::DisputeStatus::Open],
        };
        let filter = claims::DisputeFilter {
            driver_id: None,
            statuses,
        };
        disputes_page(ctx, filter, ListOrder::OldestFirst, first, after).await
    }

    /// The claims bordereau of a UK calendar month (finance): every claim open at some time in
    /// the month, with status, paid and reserve as at the month's end.
    async fn claims_bordereau(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The year, e.g. 2026.",
            validator(minimum = 2000, maximum = 2999)
        )]
        year: i32,
        #[graphql(desc = "The month, 1 to 12.", validator(minimum = 1, maximum = 12))] month: i32,
    ) -> async_graphql::Result<Vec<ClaimsBordereauRow>> {
        require_finance(ctx)?;
        let month = u32::try_from(month).map_err(|_| coded("BAD_USER_INPUT", "bad month"))?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let rows = claims::bordereau_rows(&mut conn, year, month)
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(rows
            .into_iter()
            .map(|r| ClaimsBordereauRow {
                claim_reference: r.claim_reference,
                certificate_reference: r.certificate_reference,
                date_of_loss: r.date_of_loss,
                date_advised: r.date_advised,
                status: r.status.into(),
                paid: r.paid.into(),
                reserve: r.reserve.into(),
            })
            .collect())
    }
}
