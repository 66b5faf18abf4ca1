//! Refunds by ops and finance, partial or whole.
//!
//! - A **top-up** refund sends money back to the card: a Stripe refund on the top-up's
//!   PaymentIntent (Idempotency-Key `refund:<id>`), and, once Stripe reports it succeeded, a
//!   ledger reversal of the top-up for the amount (wallet debited, Stripe clearing credited).
//!   What can be refunded is what is left of the top-up, and no more than the wallet holds (money
//!   already spent on cover is refunded as a session charge first).
//! - A **session charge** refund gives a session's price back to the wallet: a ledger reversal of
//!   the session charge for the amount, spread over net premium, commission and IPT in the
//!   original proportions, so IPT goes back at the rate it was charged. No card is involved.
//!
//! Invariants:
//! - a refund of a session charge makes the session `adjusted` (cover's
//!   [`cover::record_charge_change`]) in the same transaction;
//! - a refund row is written (`pending`, which holds its amount in the wallet) before Stripe
//!   is asked, under the wallet's lock and then the top-up's, so concurrent refunds, of one
//!   top-up or of several, cannot together exceed what is refundable;
//! - the ledger reversal's cause is the refund, so it is posted once, whichever path (the call,
//!   [`retry_refund`], the `charge.refunded` webhook) learns of the success first;
//! - every refund is in the audit log with its actor and reason.

use crate::env::PaymentsEnv;
use crate::error::PaymentsError;
use crate::ids::{RefundId, TopUpId};
use crate::schema::{refunds, top_ups};
use crate::stripe::{StripeFailure, StripeRefund};
use crate::top_ups::{TopUpRow, TopUpStatus};
use accounts::{Actor, DriverId};
use chrono::{DateTime, Utc};
use cover::CoverSessionId;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use ledger::{Cause, LedgerError, Portion, TransactionId, TransactionKind};
use serde::Serialize;
use shared::Money;

/// Longest refund reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What is refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum RefundTarget {
    /// A card top-up: money back to the card.
    TopUp(TopUpId),
    /// A cover session's charge: money back to the wallet.
    SessionCharge(CoverSessionId),
}

/// A refund to make.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// What to refund.
    pub target: RefundTarget,
    /// How much (at most what is refundable).
    pub amount: Money,
    /// Why, for the audit log and the driver's statement.
    pub reason: String,
    /// Who asks (normally an ops or finance staff user).
    pub actor: Actor,
}

/// Where a refund is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Recorded; Stripe has not confirmed it yet.
    Pending,
    /// Done and booked in the ledger.
    Succeeded,
    /// Stripe refused it or it failed; nothing moved.
    Failed,
}

impl RefundStatus {
    fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, PaymentsError> {
        match s {
            "pending" => Ok(RefundStatus::Pending),
            "succeeded" => Ok(RefundStatus::Succeeded),
            "failed" => Ok(RefundStatus::Failed),
            _ => Err(anyhow::anyhow!("unknown refund status {s:?}").into()),
        }
    }
}

/// A refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refund {
    /// The refund (`rfd_…`).
    pub id: RefundId,
    /// Whose money.
    pub driver_id: DriverId,
    /// What was refunded.
    pub target: RefundTarget,
    /// How much.
    pub amount: Money,
    /// Why.
    pub reason: String,
    /// Where it is.
    pub status: RefundStatus,
    /// Stripe's refund (`re_…`), for top-ups.
    pub stripe_refund_id: Option<String>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// The ledger reversal that booked it.
    pub ledger_transaction_id: Option<TransactionId>,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it succeeded.
    pub succeeded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refunds)]
struct RefundRow {
    id: RefundId,
    driver_id: DriverId,
    top_up_id: Option<TopUpId>,
    cover_session_id: Option<uuid::Uuid>,
    amount_minor: i64,
    currency: String,
    reason: String,
    status: String,
    stripe_refund_id: Option<String>,
    failure_reason: Option<String>,
    ledger_transaction_id: Option<uuid::Uuid>,
    created_at: DateTime<Utc>,
    succeeded_at: Option<DateTime<Utc>>,
}

impl RefundRow {
    fn to_refund(&self) -> Result<Refund, PaymentsError> {
        let target = match (self.top_up_id, self.cover_session_id) {
            (Some(t), _) => RefundTarget::TopUp(t),
            (None, Some(s)) => RefundTarget::SessionCharge(CoverSessionId(s)),
            (None, None) => return Err(anyhow::anyhow!("refund {} has no target", self.id).into()),
        };
        Ok(Refund {
            id: self.id,
            driver_id: self.driver_id,
            target,
            amount: Money {
                minor: self.amount_minor,
                currency: self
                    .currency
                    .parse()
                    .map_err(|e| anyhow::anyhow!("refund {}: {e}", self.id))?,
            },
            reason: self.reason.clone(),
            status: RefundStatus::parse(&self.status)?,
            stripe_refund_id: self.stripe_refund_id.clone(),
            failure_reason: self.failure_reason.clone(),
            ledger_transaction_id: self.ledger_transaction_id.map(TransactionId),
            created_at: self.created_at,
            succeeded_at: self.succeeded_at,
        })
    }
}

fn actor_parts(actor: Actor) -> (&'static str, Option<String>) {
    match actor {
        Actor::Driver(id) => ("driver", Some(id.to_string())),
        Actor::Staff(id) => ("staff", Some(id.to_string())),
        Actor::Partner(id) => ("partner", Some(id.to_string())),
        Actor::System => ("system", None),
    }
}

fn audit_actor(actor: Actor) -> (shared::audit::ActorType, Option<String>) {
    use shared::audit::ActorType;
    match actor {
        Actor::Driver(id) => (ActorType::Driver, Some(id.to_string())),
        Actor::Staff(id) => (ActorType::Staff, Some(id.to_string())),
        Actor::Partner(id) => (ActorType::Partner, Some(id.to_string())),
        Actor::System => (ActorType::System, None),
    }
}

/// Refunds a top-up (to the card) or a session charge (to the wallet), in part or whole.
///
/// Errors: `INVALID_AMOUNT`, `INVALID_REASON`, `NOT_FOUND` (`topUpId`, `sessionId`),
/// `NOT_REFUNDABLE` (a top-up that has not succeeded, a session not charged), `REFUND_TOO_LARGE`
/// with what is refundable; internal ones (Stripe unavailable: the refund stays `pending` and
/// [`retry_refund`] finishes it).
pub async fn refund(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    request: RefundRequest,
) -> Result<Refund, PaymentsError> {
    refund_inner(conn, env, &request, None).await
}

/// A refund asked for by a person, with their client's idempotency key.
#[derive(Debug, Clone)]
pub struct KeyedRefundRequest {
    /// What to refund.
    pub target: RefundTarget,
    /// How much; `None` for everything still refundable (see [`refundable_amount`]).
    pub amount: Option<Money>,
    /// Why, for the audit log and the driver's statement.
    pub reason: String,
    /// Who asks.
    pub actor: Actor,
    /// The client's key: the same key with the same request returns the first refund.
    pub idempotency_key: String,
}

/// What identifies a refund request under one idempotency key.
fn refund_fingerprint(request: &KeyedRefundRequest) -> String {
    use sha2::{Digest, Sha256};
    let target = match request.target {
        RefundTarget::TopUp(t) => format!("top_up:{t}"),
        RefundTarget::SessionCharge(s) => format!("session_charge:{s}"),
    };
    let amount = match request.amount {
        Some(m) => format!("{}:{}", m.minor, m.currency.code()),
        None => "whole".to_owned(),
    };
    let mut h = Sha256::new();
    h.update(format!("{target}|{amount}|{}", request.reason.trim()).as_bytes());
    hex::encode(h.finalize())
}

async fn find_by_key(
    conn: &mut AsyncPgConnection,
    key: &str,
) -> Result<Option<(RefundRow, Option<String>)>, PaymentsError> {
    Ok(refunds::table
        .filter(refunds::idempotency_key.eq(key))
        .select((RefundRow::as_select(), refunds::request_fingerprint))
        .first(conn)
        .await
        .optional()?)
}

/// The refund made earlier under the same key: the same request gets it back (finished at
/// Stripe if it was left pending), another request is refused.
async fn repeat_of(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    row: RefundRow,
    stored_fingerprint: Option<String>,
    fingerprint: &str,
) -> Result<Refund, PaymentsError> {
    if stored_fingerprint.as_deref() != Some(fingerprint) {
        return Err(PaymentsError::IdempotencyKeyReused);
    }
    if RefundStatus::parse(&row.status)? == RefundStatus::Pending && row.top_up_id.is_some() {
        return retry_refund(conn, env, row.id).await;
    }
    row.to_refund()
}

/// Refunds like [`refund`], once per idempotency key: the same key with the same request
/// returns the first refund (and finishes it at Stripe if it was left pending); with another
/// request it is refused. Without an amount, refunds everything still refundable.
///
/// Errors: those of [`refund`], plus `INVALID_IDEMPOTENCY_KEY`, `IDEMPOTENCY_KEY_REUSED`, and
/// `NOT_REFUNDABLE` when nothing is left to refund.
pub async fn refund_with_key(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    request: KeyedRefundRequest,
) -> Result<Refund, PaymentsError> {
    let key = request.idempotency_key.as_str();
    let chars = key.chars().count();
    if chars == 0
        || chars > crate::top_ups::MAX_IDEMPOTENCY_KEY_CHARS
        || key.chars().any(char::is_control)
    {
        return Err(PaymentsError::InvalidIdempotencyKey);
    }
    let fingerprint = refund_fingerprint(&request);
    if let Some((row, stored)) = find_by_key(conn, key).await? {
        return repeat_of(conn, env, row, stored, &fingerprint).await;
    }
    let amount = match request.amount {
        Some(amount) => amount,
        None => {
            let whole = refundable_amount(conn, request.target, env.clock.now()).await?;
            if whole.minor <= 0 {
                return Err(PaymentsError::NotRefundable("nothing is left to refund"));
            }
            whole
        }
    };
    let plain = RefundRequest {
        target: request.target,
        amount,
        reason: request.reason.clone(),
        actor: request.actor,
    };
    match refund_inner(conn, env, &plain, Some((key, &fingerprint))).await {
        // A concurrent request with the same key won the insert: answer as a repeat.
        Err(PaymentsError::Database(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            info,
        ))) if info.constraint_name() == Some("refunds_idempotency_key_unique") => {
            let (row, stored) = find_by_key(conn, key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("refund with key vanished"))?;
            repeat_of(conn, env, row, stored, &fingerprint).await
        }
        other => other,
    }
}

/// What can still be refunded of a top-up (what is left of it, and no more than the wallet's
/// available balance as of `now`) or of a session charge (what is left of it).
///
/// Errors: `NOT_FOUND` (`topUpId`, `sessionId`), `NOT_REFUNDABLE`.
pub async fn refundable_amount(
    conn: &mut AsyncPgConnection,
    target: RefundTarget,
    now: DateTime<Utc>,
) -> Result<Money, PaymentsError> {
    match target {
        RefundTarget::TopUp(top_up_id) => {
            let top_up = crate::top_ups::load_row(conn, top_up_id)
                .await?
                .ok_or(PaymentsError::NotFound("topUpId"))?;
            if top_up.status()? != TopUpStatus::Succeeded {
                return Err(PaymentsError::NotRefundable("the top-up has not succeeded"));
            }
            crate::chargebacks::ensure_not_disputed(conn, top_up_id).await?;
            Ok(top_up_refundable(conn, &top_up, now).await?.0)
        }
        RefundTarget::SessionCharge(session_id) => {
            let session =
                cover::get_session(conn, session_id)
                    .await
                    .map_err(|e| match e.user_error() {
                        Some(_) => PaymentsError::NotFound("sessionId"),
                        None => PaymentsError::Internal(anyhow::anyhow!("reading session: {e}")),
                    })?;
            let total = session
                .charge
                .map(|c| c.total)
                .ok_or(PaymentsError::NotRefundable("the session has no charge"))?;
            Ok(Money {
                minor: (total.minor - refunded_so_far(conn, None, Some(session_id.uuid())).await?)
                    .max(0),
                currency: total.currency,
            })
        }
    }
}

async fn refund_inner(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    request: &RefundRequest,
    key: Option<(&str, &str)>,
) -> Result<Refund, PaymentsError> {
    let reason = request.reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(char::is_control)
    {
        return Err(PaymentsError::InvalidReason);
    }
    if request.amount.minor <= 0 {
        return Err(PaymentsError::InvalidAmount);
    }
    match request.target {
        RefundTarget::TopUp(top_up_id) => {
            let row = record_top_up_refund(conn, env, top_up_id, request, reason, key).await?;
            send_to_stripe(conn, env, row).await
        }
        RefundTarget::SessionCharge(session_id) => {
            refund_session_charge(conn, env, session_id, request, reason, key).await
        }
    }
}

/// The refunds of a top-up or a session, pending or made, in minor units.
async fn refunded_so_far(
    conn: &mut AsyncPgConnection,
    top_up_id: Option<TopUpId>,
    session_id: Option<uuid::Uuid>,
) -> Result<i64, PaymentsError> {
    let mut query = refunds::table
        .filter(refunds::status.ne(RefundStatus::Failed.as_str()))
        .select(sql::<BigInt>("coalesce(sum(amount_minor), 0)::bigint"))
        .into_boxed();
    if let Some(t) = top_up_id {
        query = query.filter(refunds::top_up_id.eq(t));
    }
    if let Some(s) = session_id {
        query = query.filter(refunds::cover_session_id.eq(s));
    }
    Ok(query.first(conn).await?)
}

async fn record_top_up_refund(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    top_up_id: TopUpId,
    request: &RefundRequest,
    reason: &str,
    key: Option<(&str, &str)>,
) -> Result<RefundRow, PaymentsError> {
    let now = env.clock.now();
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        // The wallet first: every spender takes its lock before the available balance is read.
        let driver_id: DriverId = top_ups::table
            .find(top_up_id)
            .select(top_ups::driver_id)
            .first(conn)
            .await
            .optional()?
            .ok_or(PaymentsError::NotFound("topUpId"))?;
        crate::holds::lock_wallet(conn, driver_id).await?;
        let top_up: TopUpRow = top_ups::table
            .find(top_up_id)
            .select(TopUpRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or(PaymentsError::NotFound("topUpId"))?;
        if top_up.status()? != TopUpStatus::Succeeded {
            return Err(PaymentsError::NotRefundable("the top-up has not succeeded"));
        }
        // Under the top-up's lock: a chargeback recorded since cannot slip past.
        crate::chargebacks::ensure_not_disputed(conn, top_up_id).await?;
        let amount = top_up.amount()?;
        if request.amount.currency != amount.currency {
            return Err(PaymentsError::UnsupportedCurrency);
        }
        let (refundable, limited_by) = top_up_refundable(conn, &top_up, now).await?;
        if request.amount.minor > refundable.minor {
            return Err(PaymentsError::RefundTooLarge {
                refundable,
                limited_by,
            });
        }
        let row = insert_refund(
            conn,
            NewRefund {
                driver_id: top_up.driver_id,
                target: "top_up",
                top_up_id: Some(top_up_id),
                session_id: None,
                amount: request.amount,
                reason,
                actor: request.actor,
                key,
                now,
            },
        )
        .await?;
        Ok(row)
    })
    .await
}

/// What can be refunded of a succeeded top-up as of `now`: what is left of it, and no more
/// than the wallet's available balance; with what limits it.
async fn top_up_refundable(
    conn: &mut AsyncPgConnection,
    top_up: &TopUpRow,
    now: DateTime<Utc>,
) -> Result<(Money, &'static str), PaymentsError> {
    let amount = top_up.amount()?;
    let left = amount.minor - refunded_so_far(conn, Some(top_up.id), None).await?;
    let available = crate::holds::wallet_position(conn, top_up.driver_id, now)
        .await?
        .available;
    let (minor, limited_by) = if left <= available.minor {
        (left, "what is left of the payment")
    } else {
        (
            available.minor,
            "the wallet's available balance (its balance less cover in progress or not yet \
             charged, refunds on their way and chargebacks)",
        )
    };
    Ok((
        Money {
            minor: minor.max(0),
            currency: amount.currency,
        },
        limited_by,
    ))
}

struct NewRefund<'a> {
    driver_id: DriverId,
    target: &'a str,
    top_up_id: Option<TopUpId>,
    session_id: Option<uuid::Uuid>,
    amount: Money,
    reason: &'a str,
    actor: Actor,
    /// The client's idempotency key and the fingerprint of the request.
    key: Option<(&'a str, &'a str)>,
    now: DateTime<Utc>,
}

async fn insert_refund(
    conn: &mut AsyncPgConnection,
    new: NewRefund<'_>,
) -> Result<RefundRow, PaymentsError> {
    let id = RefundId::new();
    let (actor_type, actor_id) = actor_parts(new.actor);
    let row: RefundRow = diesel::insert_into(refunds::table)
        .values((
            refunds::id.eq(id),
            refunds::driver_id.eq(new.driver_id),
            refunds::target.eq(new.target),
            refunds::top_up_id.eq(new.top_up_id),
            refunds::cover_session_id.eq(new.session_id),
            refunds::amount_minor.eq(new.amount.minor),
            refunds::currency.eq(new.amount.currency.code()),
            refunds::reason.eq(new.reason),
            refunds::actor_type.eq(actor_type),
            refunds::actor_id.eq(&actor_id),
            refunds::status.eq(RefundStatus::Pending.as_str()),
            refunds::idempotency_key.eq(new.key.map(|k| k.0)),
            refunds::request_fingerprint.eq(new.key.map(|k| k.1)),
            refunds::created_at.eq(new.now),
            refunds::updated_at.eq(new.now),
        ))
        .returning(RefundRow::as_returning())
        .get_result(conn)
        .await?;
    let (audit_type, audit_id) = audit_actor(new.actor);
    shared::audit::record(
        conn,
        &shared::audit::AuditEntry {
            actor_type: audit_type,
            actor_id: audit_id,
            action: "payment.refunded",
            subject_type: new.target,
            subject_id: new
                .top_up_id
                .map(|t| t.to_string())
                .or_else(|| new.session_id.map(|s| CoverSessionId(s).to_string()))
                .unwrap_or_default(),
            reason: Some(new.reason),
            details: serde_json::json!({
                "refund_id": id.to_string(),
                "amount_minor": new.amount.minor,
                "currency": new.amount.currency.code(),
            }),
        },
    )
    .await?;
    Ok(row)
}

async fn send_to_stripe(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    row: RefundRow,
) -> Result<Refund, PaymentsError> {
    let top_up_id = row
        .top_up_id
        .ok_or_else(|| anyhow::anyhow!("refund {} is not of a top-up", row.id))?;
    let top_up = crate::top_ups::load_row(conn, top_up_id)
        .await?
        .ok_or(PaymentsError::NotFound("topUpId"))?;
    let pi = top_up
        .payment_intent_id
        .ok_or_else(|| anyhow::anyhow!("succeeded top-up {top_up_id} has no PaymentIntent"))?;
    let result = env
        .stripe
        .create_refund(
            &pi,
            row.amount_minor,
            vec![
                ("refund_id", row.id.to_string()),
                ("top_up_id", top_up_id.to_string()),
            ],
            &format!("refund:{}", row.id),
        )
        .await;
    match result {
        Ok(stripe_refund) => apply_stripe_refund(conn, env, row.id, &stripe_refund).await,
        Err(e @ (StripeFailure::Card { .. } | StripeFailure::Rejected { .. })) => {
            mark_failed(conn, env, row.id, &e.to_string()).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Asks Stripe again for a refund left `pending` without a Stripe refund (Stripe was unavailable),
/// or re-reads one Stripe is still processing. Safe to repeat.
///
/// Errors: `NOT_FOUND` (`refundId`); internal ones.
pub async fn retry_refund(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    refund_id: RefundId,
) -> Result<Refund, PaymentsError> {
    let row = load_refund(conn, refund_id).await?;
    if RefundStatus::parse(&row.status)? != RefundStatus::Pending || row.top_up_id.is_none() {
        return row.to_refund();
    }
    match &row.stripe_refund_id {
        Some(re) => {
            let stripe_refund = env.stripe.retrieve_refund(re).await?;
            apply_stripe_refund(conn, env, refund_id, &stripe_refund).await
        }
        None => send_to_stripe(conn, env, row).await,
    }
}

async fn load_refund(
    conn: &mut AsyncPgConnection,
    refund_id: RefundId,
) -> Result<RefundRow, PaymentsError> {
    refunds::table
        .find(refund_id)
        .select(RefundRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(PaymentsError::NotFound("refundId"))
}

/// Applies Stripe's word on a top-up refund: books it once it succeeded, fails it when Stripe
/// failed or cancelled it, and otherwise records Stripe's id and waits.
pub(crate) async fn apply_stripe_refund(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    refund_id: RefundId,
    stripe_refund: &StripeRefund,
) -> Result<Refund, PaymentsError> {
    let now = env.clock.now();
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        // Settling turns the refund's hold into a posting: under the wallet's lock, so a spender
        // holding it never reads the balance before the posting and the holds after it.
        let driver_id: DriverId = refunds::table
            .find(refund_id)
            .select(refunds::driver_id)
            .first(conn)
            .await?;
        crate::holds::lock_wallet(conn, driver_id).await?;
        let row: RefundRow = refunds::table
            .find(refund_id)
            .select(RefundRow::as_select())
            .for_update()
            .first(conn)
            .await?;
        let status = RefundStatus::parse(&row.status)?;
        if status != RefundStatus::Pending {
            return row.to_refund();
        }
        let updated: RefundRow = match stripe_refund.status.as_str() {
            "succeeded" => {
                let top_up_id = row
                    .top_up_id
                    .ok_or_else(|| anyhow::anyhow!("refund {refund_id} is not of a top-up"))?;
                let original = crate::top_ups::load_row(conn, top_up_id)
                    .await?
                    .and_then(|t| t.ledger_transaction_id)
                    .ok_or_else(|| anyhow::anyhow!("top-up {top_up_id} was never booked"))?;
                let reversal =
                    reverse(conn, TransactionId(original), refund_id, row.amount_minor).await?;
                diesel::update(refunds::table.find(refund_id))
                    .set((
                        refunds::status.eq(RefundStatus::Succeeded.as_str()),
                        refunds::stripe_refund_id.eq(&stripe_refund.id),
                        refunds::ledger_transaction_id.eq(reversal.uuid()),
                        refunds::succeeded_at.eq(now),
                        refunds::updated_at.eq(now),
                    ))
                    .returning(RefundRow::as_returning())
                    .get_result(conn)
                    .await?
            }
            "failed" | "canceled" => {
                let reason: String = stripe_refund
                    .failure_reason
                    .clone()
                    .unwrap_or_else(|| format!("Stripe refund {}", stripe_refund.status))
                    .chars()
                    .take(500)
                    .collect();
                diesel::update(refunds::table.find(refund_id))
                    .set((
                        refunds::status.eq(RefundStatus::Failed.as_str()),
                        refunds::stripe_refund_id.eq(&stripe_refund.id),
                        refunds::failure_reason.eq(reason),
                        refunds::updated_at.eq(now),
                    ))
                    .returning(RefundRow::as_returning())
                    .get_result(conn)
                    .await?
            }
            _ => diesel::update(refunds::table.find(refund_id))
                .set((
                    refunds::stripe_refund_id.eq(&stripe_refund.id),
                    refunds::updated_at.eq(now),
                ))
                .returning(RefundRow::as_returning())
                .get_result(conn)
                .await?,
        };
        tracing::info!(%refund_id, status = %updated.status, stripe_refund = %stripe_refund.id, "refund updated from Stripe");
        updated.to_refund()
    })
    .await
}

async fn mark_failed(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    refund_id: RefundId,
    why: &str,
) -> Result<Refund, PaymentsError> {
    let why: String = why.chars().take(500).collect();
    let row: RefundRow = diesel::update(
        refunds::table
            .find(refund_id)
            .filter(refunds::status.eq(RefundStatus::Pending.as_str())),
    )
    .set((
        refunds::status.eq(RefundStatus::Failed.as_str()),
        refunds::failure_reason.eq(if why.is_empty() { "failed".into() } else { why }),
        refunds::updated_at.eq(env.clock.now()),
    ))
    .returning(RefundRow::as_returning())
    .get_result(conn)
    .await
    .optional()?
    .ok_or(PaymentsError::NotFound("refundId"))?;
    tracing::warn!(%refund_id, reason = ?row.failure_reason, "refund failed");
    row.to_refund()
}

/// Reverses `amount` of an original ledger transaction with the refund as the cause
/// (idempotent: a repeat returns the first reversal).
async fn reverse(
    conn: &mut AsyncPgConnection,
    original: TransactionId,
    refund_id: RefundId,
    amount: i64,
) -> Result<TransactionId, PaymentsError> {
    match ledger::reverse(
        conn,
        original,
        Cause::new("refund", refund_id.to_string()),
        Portion::Amount(amount),
    )
    .await
    {
        Ok(posted) => Ok(posted.id()),
        Err(e) => match e {
            LedgerError::AlreadyPosted(id) => Ok(id),
            other => Err(other.into()),
        },
    }
}

async fn refund_session_charge(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    session_id: CoverSessionId,
    request: &RefundRequest,
    reason: &str,
    key: Option<(&str, &str)>,
) -> Result<Refund, PaymentsError> {
    let now = env.clock.now();
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        let session = cover::get_session(conn, session_id)
            .await
            .map_err(|e| match e.user_error() {
                Some(_) => PaymentsError::NotFound("sessionId"),
                None => PaymentsError::Internal(anyhow::anyhow!("reading session: {e}")),
            })?;
        let original = ledger::find_by_cause(
            conn,
            TransactionKind::SessionCharge,
            &Cause::new("cover_session", session_id.to_string()),
        )
        .await?
        .ok_or(PaymentsError::NotRefundable("the session has not been charged"))?;
        let total = session
            .charge
            .map(|c| c.total)
            .ok_or(PaymentsError::NotRefundable("the session has no charge"))?;
        if request.amount.currency != total.currency {
            return Err(PaymentsError::UnsupportedCurrency);
        }
        let refundable = Money {
            minor: (total.minor - refunded_so_far(conn, None, Some(session_id.uuid())).await?)
                .max(0),
            currency: total.currency,
        };
        if request.amount.minor > refundable.minor {
            return Err(PaymentsError::RefundTooLarge {
                refundable,
                limited_by: "what is left of the session's charge",
            });
        }
        let row = insert_refund(
            conn,
            NewRefund {
                driver_id: session.driver_id,
                target: "session_charge",
                top_up_id: None,
                session_id: Some(session_id.uuid()),
                amount: request.amount,
                reason,
                actor: request.actor,
                key,
                now,
            },
        )
        .await?;
        let reversal = match reverse(conn, original.id(), row.id, request.amount.minor).await {
            Err(PaymentsError::Ledger(LedgerError::ReversalExceedsRemaining {
                remaining, ..
            })) => {
                return Err(PaymentsError::RefundTooLarge {
                    refundable: remaining,
                    limited_by: "what is left of the session's charge",
                });
            }
            Err(PaymentsError::Ledger(LedgerError::AlreadyReversed)) => {
                return Err(PaymentsError::RefundTooLarge {
                    refundable: Money::zero(total.currency),
                    limited_by: "the session's charge was refunded in full",
                });
            }
            other => other?,
        };
        // The session's charge was lowered: it is `adjusted` from now on.
        cover::record_charge_change(
            conn,
            env.clock.as_ref(),
            session_id,
            cover::ChargeChange::Lowered,
            request.actor,
        )
        .await
        .map_err(|e| anyhow::anyhow!("recording session {session_id} adjusted: {e}"))?;
        let updated: RefundRow = diesel::update(refunds::table.find(row.id))
            .set((
                refunds::status.eq(RefundStatus::Succeeded.as_str()),
                refunds::ledger_transaction_id.eq(reversal.uuid()),
                refunds::succeeded_at.eq(now),
                refunds::updated_at.eq(now),
            ))
            .returning(RefundRow::as_returning())
            .get_result(conn)
            .await?;
        tracing::info!(refund_id = %row.id, %session_id, amount = %request.amount, "session charge refunded to the wallet");
        updated.to_refund()
    })
    .await
}

/// A refund by id.
///
/// Errors: `NOT_FOUND` (`refundId`).
pub async fn get_refund(
    conn: &mut AsyncPgConnection,
    refund_id: RefundId,
) -> Result<Refund, PaymentsError> {
    load_refund(conn, refund_id).await?.to_refund()
}

/// The refunds of a driver, newest first.
pub async fn list_refunds(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Vec<Refund>, PaymentsError> {
    refunds::table
        .filter(refunds::driver_id.eq(driver_id))
        .order((refunds::created_at.desc(), refunds::id.desc()))
        .select(RefundRow::as_select())
        .load(conn)
        .await?
        .iter()
        .map(RefundRow::to_refund)
        .collect()
}

/// The refunds of several top-ups, newest first for each (for loaders); top-ups without
/// refunds are absent from the map.
pub async fn refunds_of_top_ups(
    conn: &mut AsyncPgConnection,
    top_up_ids: &[TopUpId],
) -> Result<std::collections::HashMap<TopUpId, Vec<Refund>>, PaymentsError> {
    let rows: Vec<RefundRow> = refunds::table
        .filter(refunds::top_up_id.eq_any(top_up_ids))
        .order((refunds::created_at.desc(), refunds::id.desc()))
        .select(RefundRow::as_select())
        .load(conn)
        .await?;
    let mut out: std::collections::HashMap<TopUpId, Vec<Refund>> = Default::default();
    for row in rows {
        if let Some(t) = row.top_up_id {
            out.entry(t).or_default().push(row.to_refund()?);
        }
    }
    Ok(out)
}

/// Re-reads from Stripe the pending refunds of a top-up's PaymentIntent and applies them (the
/// `charge.refunded` webhook). Returns how many refunds were examined; `None` when the
/// PaymentIntent is not one of ours.
pub(crate) async fn sync_refunds_for_intent(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    payment_intent_id: &str,
) -> Result<Option<usize>, PaymentsError> {
    let Some(top_up) = crate::top_ups::find_by_intent(conn, payment_intent_id).await? else {
        return Ok(None);
    };
    let pending: Vec<(RefundId, Option<String>)> = refunds::table
        .filter(refunds::top_up_id.eq(top_up.id))
        .filter(refunds::status.eq(RefundStatus::Pending.as_str()))
        .select((refunds::id, refunds::stripe_refund_id))
        .load(conn)
        .await?;
    for (id, stripe_id) in &pending {
        match stripe_id {
            Some(re) => {
                let r = env.stripe.retrieve_refund(re).await?;
                apply_stripe_refund(conn, env, *id, &r).await?;
            }
            None => {
                retry_refund(conn, env, *id).await?;
            }
        }
    }
    Ok(Some(pending.len()))
}
