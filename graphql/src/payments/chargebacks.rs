//! Chargebacks (Stripe disputes on wallet top-ups) and the Stripe events kept for a person, for
//! ops and finance (admin holds both); a wallet's own chargebacks are on `Wallet.chargebacks`. Not to be confused with `disputesQueue`: drivers
//! disputing a session's charge with us.

use super::{Money, require_money_staff};
use crate::accounts::{Driver, load_driver};
use crate::errors::internal;
use crate::guard;
use crate::relay::to_global_id;
use accounts::Principal;
use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

/// The chargebacks queries.
#[derive(Default)]
pub struct ChargebacksQuery;

#[Object]
impl ChargebacksQuery {
    /// The most recent chargebacks, newest first (ops, finance and admin).
    async fn chargebacks(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return (at most 200).",
            default = 50,
            validator(minimum = 1, maximum = 200)
        )]
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<Chargeback>> {
        require_money_staff(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let list = payments::list_chargebacks(&mut conn, i64::from(first.unwrap_or(50)))
            .await
            .map_err(|e| internal(ctx, e))?;
        let viewer = guard::principal(ctx).clone();
        Ok(list
            .into_iter()
            .map(|inner| Chargeback::new(inner, viewer.clone()))
            .collect())
    }

    /// Stripe events kept for a person instead of applied (an object that is not ours, a refund
    /// that cannot be placed, an event we do not handle), newest first (ops, finance and admin).
    async fn flagged_stripe_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return (at most 200).",
            default = 50,
            validator(minimum = 1, maximum = 200)
        )]
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<FlaggedStripeEvent>> {
        require_money_staff(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let events = payments::flagged_events(&mut conn, i64::from(first.unwrap_or(50)))
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(events
            .into_iter()
            .map(|e| FlaggedStripeEvent {
                event_id: e.event_id,
                event_type: e.event_type,
                object_id: e.object_id,
                reason: e.flagged_reason.unwrap_or_default(),
                received_at: e.received_at,
                flagged_at: e.processed_at,
            })
            .collect())
    }
}

/// A Stripe event kept for a person.
#[derive(SimpleObject)]
pub struct FlaggedStripeEvent {
    /// Stripe's id (`evt_…`).
    pub event_id: String,
    /// Its type, e.g. `charge.dispute.created`.
    pub event_type: String,
    /// The Stripe object it is about (`dp_…`, `re_…`, `pi_…`).
    pub object_id: Option<String>,
    /// Why it was not applied.
    pub reason: String,
    /// When Stripe delivered it.
    pub received_at: DateTime<Utc>,
    /// When it was flagged.
    pub flagged_at: Option<DateTime<Utc>>,
}

/// A chargeback: a cardholder's bank disputing a wallet top-up through Stripe. While it is open
/// and nothing has been withdrawn, its amount is held; Stripe's withdrawal is taken from the
/// wallet (which may go negative) and its fee is ShiftCover's; a reinstatement gives the money
/// back.
pub struct Chargeback {
    inner: payments::Chargeback,
    viewer: Principal,
}

impl Chargeback {
    /// A chargeback as `viewer` sees it.
    pub(crate) fn new(inner: payments::Chargeback, viewer: Principal) -> Self {
        Self { inner, viewer }
    }
}

#[Object]
impl Chargeback {
    /// Its global id.
    async fn id(&self) -> ID {
        to_global_id("Chargeback", &self.inner.id)
    }
    /// Stripe's dispute (`dp_…`), to find it in the Stripe dashboard.
    async fn stripe_dispute_id(&self) -> &str {
        &self.inner.stripe_dispute_id
    }
    /// The driver whose wallet bears it; null when the viewer may not see the driver's profile
    /// (finance).
    async fn driver(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Driver>> {
        load_driver(ctx, &self.viewer, self.inner.driver_id).await
    }
    /// The global id of the disputed payment (a wallet top-up).
    async fn payment_id(&self) -> ID {
        to_global_id("Payment", &self.inner.top_up_id)
    }
    /// The disputed amount.
    async fn amount(&self) -> Money {
        self.inner.amount.into()
    }
    /// The amount held for it now: the disputed amount while it is open and Stripe has not
    /// withdrawn it, else zero.
    async fn held(&self) -> Money {
        self.inner.held().into()
    }
    /// The cardholder's reason, as Stripe gives it (e.g. `fraudulent`).
    async fn reason(&self) -> &str {
        &self.inner.reason
    }
    /// Stripe's status: `needs_response`, `under_review`, `won`, `lost`, or `warning_…` for an
    /// inquiry.
    async fn stripe_status(&self) -> &str {
        &self.inner.stripe_status
    }
    /// Whether Stripe has not decided it yet.
    async fn open(&self) -> bool {
        self.inner.is_open()
    }
    /// When evidence is due at Stripe.
    async fn evidence_due_by(&self) -> Option<DateTime<Utc>> {
        self.inner.evidence_due_by
    }
    /// Whether Stripe has withdrawn the amount (taken from the wallet).
    async fn withdrawn(&self) -> bool {
        self.inner.withdrawn_transaction_id.is_some()
    }
    /// Whether Stripe has given it back (credited to the wallet).
    async fn reinstated(&self) -> bool {
        self.inner.reinstated_transaction_id.is_some()
    }
    /// Stripe's dispute fees, net of any returned.
    async fn fee(&self) -> Money {
        self.inner.fee.into()
    }
    /// When the bank opened it.
    async fn opened_at(&self) -> DateTime<Utc> {
        self.inner.stripe_created_at
    }
    /// When Stripe's state was last applied.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.inner.updated_at
    }
}
