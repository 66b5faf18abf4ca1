//! Chargebacks: Stripe disputes on wallet top-ups.
//!
//! A cardholder's bank may dispute a top-up. Stripe then withdraws the disputed amount and its
//! fee from our balance, and returns the amount (sometimes the fee) if the dispute is won. The
//! driver spent that money as wallet credit, so the wallet bears the disputed amount: it counts
//! as held while the dispute is open and nothing has moved yet ([`chargeback_holds`]), debited when
//! Stripe withdraws it (the wallet may go negative: that is the driver's debt), and credited
//! back when Stripe reinstates it. Stripe's fee is ShiftCover's, booked to the dispute fees
//! account.
//!
//! (`claims::disputes` is something else: a driver disputing a session's charge with us.)
//!
//! Invariants:
//! - a dispute event is never trusted: the dispute is re-read from Stripe and its current state
//!   applied by [`apply_dispute`], so duplicated, forged or out-of-order events end in the same
//!   state;
//! - each of the dispute's balance transactions is booked once (the ledger's cause is Stripe's
//!   balance transaction id), in the transaction that records the dispute's state;
//! - a dispute on a PaymentIntent that is not one of our succeeded top-ups is flagged for people
//!   and books nothing;
//! - while the wallet is negative and a withdrawal has not been reinstated, the driver's active
//!   enrolments are suspended (`chargeback_debt`); they are reactivated once the wallet is back
//!   at zero or above ([`review_chargeback_debt`], after every dispute change and top-up);
//! - a disputed top-up is not refunded ([`ensure_not_disputed`]) until Stripe decides for us.

use crate::env::PaymentsEnv;
use crate::error::PaymentsError;
use crate::ids::{ChargebackId, TopUpId};
use crate::schema::chargebacks;
use crate::stripe::{DisputeMovement, StripeDispute};
use crate::top_ups::{TopUpStatus, WALLET_CURRENCY};
use crate::webhooks::EventOutcome;
use accounts::{Actor, DriverId};
use chrono::{DateTime, Utc};
use cover::EnrolmentStatus;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use ledger::{AccountRef, Cause, NewTransaction, TransactionId, TransactionKind};
use serde::Serialize;
use shared::{Currency, Money};
use std::collections::HashMap;

/// The reason recorded on an enrolment suspended while the wallet is negative after a
/// chargeback.
pub const CHARGEBACK_SUSPEND_REASON: &str = "chargeback_debt";

/// The reason recorded when such an enrolment is reactivated.
const CHARGEBACK_REACTIVATE_REASON: &str = "chargeback_debt_cleared";

/// Stripe statuses of a dispute that is still undecided.
const OPEN_STATUSES: [&str; 4] = [
    "warning_needs_response",
    "warning_under_review",
    "needs_response",
    "under_review",
];

/// Stripe statuses after which the top-up is ours again (won, an inquiry closed, or prevented).
const CLEARED_STATUSES: [&str; 3] = ["won", "warning_closed", "prevented"];

/// A Stripe dispute on one of our top-ups, as last read from Stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chargeback {
    /// Ours (`cbk_…`).
    pub id: ChargebackId,
    /// Stripe's (`dp_…`).
    pub stripe_dispute_id: String,
    /// Whose wallet bears it.
    pub driver_id: DriverId,
    /// The disputed top-up.
    pub top_up_id: TopUpId,
    /// Its PaymentIntent.
    pub payment_intent_id: String,
    /// The disputed amount.
    pub amount: Money,
    /// The cardholder's reason, as Stripe gives it (e.g. `fraudulent`).
    pub reason: String,
    /// Stripe's status (`needs_response`, `under_review`, `won`, `lost`, `warning_…`).
    pub stripe_status: String,
    /// When evidence is due at Stripe.
    pub evidence_due_by: Option<DateTime<Utc>>,
    /// The ledger transaction that took the amount from the wallet, once Stripe withdrew it.
    pub withdrawn_transaction_id: Option<TransactionId>,
    /// The ledger transaction that gave it back, once Stripe reinstated it.
    pub reinstated_transaction_id: Option<TransactionId>,
    /// Stripe's dispute fees net of any returned (ShiftCover's cost).
    pub fee: Money,
    /// When Stripe opened the dispute.
    pub stripe_created_at: DateTime<Utc>,
    /// When we first learnt of it.
    pub created_at: DateTime<Utc>,
    /// When we last applied Stripe's state.
    pub updated_at: DateTime<Utc>,
}

impl Chargeback {
    /// Whether Stripe has not decided it yet.
    pub fn is_open(&self) -> bool {
        OPEN_STATUSES.contains(&self.stripe_status.as_str())
    }

    /// The amount the wallet still has to hold for it: the disputed amount while it is open and
    /// nothing has been withdrawn, else zero.
    pub fn held(&self) -> Money {
        if self.is_open() && self.withdrawn_transaction_id.is_none() {
            self.amount
        } else {
            Money::zero(self.amount.currency)
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = chargebacks)]
struct ChargebackRow {
    id: ChargebackId,
    stripe_dispute_id: String,
    driver_id: DriverId,
    top_up_id: TopUpId,
    payment_intent_id: String,
    amount_minor: i64,
    currency: String,
    reason: String,
    stripe_status: String,
    evidence_due_by: Option<DateTime<Utc>>,
    withdrawn_transaction_id: Option<uuid::Uuid>,
    reinstated_transaction_id: Option<uuid::Uuid>,
    fee_minor: i64,
    stripe_created_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl ChargebackRow {
    fn to_chargeback(&self) -> Result<Chargeback, PaymentsError> {
        let currency: Currency = self
            .currency
            .parse()
            .map_err(|e| anyhow::anyhow!("chargeback {}: {e}", self.id))?;
        Ok(Chargeback {
            id: self.id,
            stripe_dispute_id: self.stripe_dispute_id.clone(),
            driver_id: self.driver_id,
            top_up_id: self.top_up_id,
            payment_intent_id: self.payment_intent_id.clone(),
            amount: Money {
                minor: self.amount_minor,
                currency,
            },
            reason: self.reason.clone(),
            stripe_status: self.stripe_status.clone(),
            evidence_due_by: self.evidence_due_by,
            withdrawn_transaction_id: self.withdrawn_transaction_id.map(TransactionId),
            reinstated_transaction_id: self.reinstated_transaction_id.map(TransactionId),
            fee: Money {
                minor: self.fee_minor,
                currency,
            },
            stripe_created_at: self.stripe_created_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn flagged(reason: impl Into<String>) -> EventOutcome {
    EventOutcome::Flagged {
        reason: reason.into(),
    }
}

fn stripe_currency(code: &str) -> Option<Currency> {
    code.to_ascii_uppercase().parse().ok()
}

fn timestamp(t: i64) -> Result<DateTime<Utc>, PaymentsError> {
    DateTime::<Utc>::from_timestamp(t, 0)
        .ok_or_else(|| anyhow::anyhow!("time {t} from Stripe is out of range").into())
}

/// Applies a dispute as just read from Stripe: records its state on the chargeback of its
/// top-up (created on first sight), books each of its balance transactions once, and suspends
/// or reactivates the driver's enrolments ([`review_chargeback_debt`]). All in one transaction.
/// A dispute that is not on one of our succeeded top-ups, or that cannot be booked as it stands
/// (another currency, an unknown kind of balance transaction), is flagged and changes nothing.
pub(crate) async fn apply_dispute(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    dispute: &StripeDispute,
) -> Result<EventOutcome, PaymentsError> {
    let Some(pi) = dispute.payment_intent.as_deref() else {
        return Ok(flagged(format!(
            "dispute {} on charge {}, which has no PaymentIntent: not a top-up of ours",
            dispute.id, dispute.charge
        )));
    };
    let Some(top_up) = crate::top_ups::find_by_intent(conn, pi).await? else {
        return Ok(flagged(format!(
            "dispute {} on unknown PaymentIntent {pi}",
            dispute.id
        )));
    };
    if top_up.status()? != TopUpStatus::Succeeded {
        return Ok(flagged(format!(
            "dispute {} on top-up {} which is {}, not succeeded",
            dispute.id, top_up.id, top_up.status
        )));
    }
    let top_up_amount = top_up.amount()?;
    let currency = top_up_amount.currency;
    if stripe_currency(&dispute.currency) != Some(currency) || currency != WALLET_CURRENCY {
        return Ok(flagged(format!(
            "dispute {} is in {}, top-up {} in {currency}",
            dispute.id, dispute.currency, top_up.id
        )));
    }
    if dispute.amount <= 0 {
        return Ok(flagged(format!(
            "dispute {} has amount {}",
            dispute.id, dispute.amount
        )));
    }
    for m in &dispute.balance_transactions {
        let known = matches!(
            m.reporting_category.as_str(),
            "dispute" | "dispute_reversal"
        );
        if !known || stripe_currency(&m.currency) != Some(currency) || m.amount == 0 {
            return Ok(flagged(format!(
                "dispute {}: balance transaction {} ({} of {} {}) cannot be booked to the wallet",
                dispute.id, m.id, m.reporting_category, m.amount, m.currency
            )));
        }
    }
    let stripe_created_at = timestamp(dispute.created)?;
    let evidence_due_by = dispute.evidence_due_by.map(timestamp).transpose()?;
    let now = env.clock.now();
    let driver_id = top_up.driver_id;
    let top_up_id = top_up.id;
    let reason: String = dispute.reason.chars().take(100).collect();
    let reason = if reason.is_empty() {
        "unknown".to_owned()
    } else {
        reason
    };
    let status: String = dispute.status.chars().take(50).collect();
    let fee_minor: i64 = dispute.balance_transactions.iter().map(|m| m.fee).sum();
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        diesel::insert_into(chargebacks::table)
            .values((
                chargebacks::id.eq(ChargebackId::new()),
                chargebacks::stripe_dispute_id.eq(&dispute.id),
                chargebacks::driver_id.eq(driver_id),
                chargebacks::top_up_id.eq(top_up_id),
                chargebacks::payment_intent_id.eq(pi),
                chargebacks::stripe_charge_id.eq(Some(&dispute.charge)),
                chargebacks::amount_minor.eq(dispute.amount),
                chargebacks::currency.eq(currency.code()),
                chargebacks::reason.eq(&reason),
                chargebacks::stripe_status.eq(&status),
                chargebacks::evidence_due_by.eq(evidence_due_by),
                chargebacks::stripe_created_at.eq(stripe_created_at),
                chargebacks::created_at.eq(now),
                chargebacks::updated_at.eq(now),
            ))
            .on_conflict(chargebacks::stripe_dispute_id)
            .do_nothing()
            .execute(conn)
            .await?;
        let row: ChargebackRow = chargebacks::table
            .filter(chargebacks::stripe_dispute_id.eq(&dispute.id))
            .select(ChargebackRow::as_select())
            .for_update()
            .first(conn)
            .await?;
        if row.top_up_id != top_up_id {
            return Err(anyhow::anyhow!(
                "dispute {} was recorded on top-up {}, Stripe now names {top_up_id}",
                dispute.id,
                row.top_up_id
            )
            .into());
        }
        if dispute
            .balance_transactions
            .iter()
            .any(|m| m.reporting_category == "dispute")
        {
            // A debit of the wallet: spenders take the wallet's lock.
            ledger::lock_account(
                conn,
                &AccountRef::driver_wallet(driver_id.to_string(), currency),
            )
            .await?;
        }
        let mut withdrawn = row.withdrawn_transaction_id;
        let mut reinstated = row.reinstated_transaction_id;
        for m in &dispute.balance_transactions {
            let booked = book_movement(conn, &row, driver_id, currency, m).await?;
            match m.reporting_category.as_str() {
                "dispute" => withdrawn = withdrawn.or(Some(booked.uuid())),
                _ => reinstated = reinstated.or(Some(booked.uuid())),
            }
        }
        if row.stripe_status != status {
            shared::audit::record(
                conn,
                &shared::audit::AuditEntry {
                    actor_type: shared::audit::ActorType::System,
                    actor_id: None,
                    action: "payment.chargeback_changed",
                    subject_type: "top_up",
                    subject_id: top_up_id.to_string(),
                    reason: None,
                    details: serde_json::json!({
                        "chargeback_id": row.id.to_string(),
                        "stripe_dispute_id": dispute.id,
                        "from": row.stripe_status,
                        "to": status,
                        "amount_minor": dispute.amount,
                    }),
                },
            )
            .await?;
        }
        diesel::update(chargebacks::table.find(row.id))
            .set((
                chargebacks::amount_minor.eq(dispute.amount),
                chargebacks::reason.eq(&reason),
                chargebacks::stripe_status.eq(&status),
                chargebacks::evidence_due_by.eq(evidence_due_by),
                chargebacks::withdrawn_transaction_id.eq(withdrawn),
                chargebacks::reinstated_transaction_id.eq(reinstated),
                chargebacks::fee_minor.eq(fee_minor),
                chargebacks::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        review_chargeback_debt(conn, env, driver_id).await?;
        tracing::info!(chargeback_id = %row.id, stripe_dispute = %dispute.id, %top_up_id, status = %status, "chargeback applied");
        Ok(EventOutcome::Processed)
    })
    .await
}

/// Books one balance transaction of a dispute, once (its id is the cause).
async fn book_movement(
    conn: &mut AsyncPgConnection,
    row: &ChargebackRow,
    driver_id: DriverId,
    currency: Currency,
    m: &DisputeMovement,
) -> Result<TransactionId, PaymentsError> {
    let withdrawal = m.reporting_category == "dispute";
    let tx = NewTransaction {
        kind: TransactionKind::Chargeback,
        cause: Cause::new("stripe_balance_transaction", m.id.clone()),
        currency,
        description: if withdrawal {
            format!("Chargeback {} withdrawn by the card's bank", row.id)
        } else {
            format!("Chargeback {} reinstated", row.id)
        },
        lines: ledger::chargeback_lines(
            &driver_id.to_string(),
            Money {
                minor: m.amount,
                currency,
            },
            Money {
                minor: m.fee,
                currency,
            },
        )?,
        metadata: serde_json::json!({
            "chargeback_id": row.id.to_string(),
            "stripe_dispute_id": row.stripe_dispute_id,
            "top_up_id": row.top_up_id.to_string(),
            "reporting_category": m.reporting_category,
            "fee_minor": m.fee,
        }),
    };
    match ledger::post(conn, tx).await {
        Ok(posted) => {
            tracing::info!(chargeback_id = %row.id, balance_transaction = %m.id, amount = m.amount, fee = m.fee, "chargeback money booked");
            Ok(posted.id())
        }
        Err(e) => match e.already_posted() {
            Some(id) => Ok(id),
            None => Err(e.into()),
        },
    }
}

/// Suspends the driver's active enrolments while their wallet is negative with a chargeback
/// withdrawn and not reinstated, and reactivates those suspended for that reason once it is
/// not. Returns how many enrolments changed. Runs in the caller's transaction when there is one.
pub async fn review_chargeback_debt(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
) -> Result<usize, PaymentsError> {
    // The common case (a top-up of a driver who never had a chargeback) reads one index.
    let any: i64 = chargebacks::table
        .filter(chargebacks::driver_id.eq(driver_id))
        .count()
        .get_result(conn)
        .await?;
    if any == 0 {
        return Ok(0);
    }
    let balance = crate::wallet::wallet_balance(conn, driver_id).await?;
    let in_debt = balance.minor < 0 && {
        let unreturned: i64 = chargebacks::table
            .filter(chargebacks::driver_id.eq(driver_id))
            .filter(chargebacks::withdrawn_transaction_id.is_not_null())
            .filter(chargebacks::reinstated_transaction_id.is_null())
            .count()
            .get_result(conn)
            .await?;
        unreturned > 0
    };
    let enrolments = cover::list_enrolments(conn, driver_id)
        .await
        .map_err(|e| anyhow::anyhow!("listing enrolments: {e}"))?;
    let mut changed = 0;
    for enrolment in enrolments {
        let done = if in_debt && enrolment.status == EnrolmentStatus::Active {
            cover::suspend(
                conn,
                env.clock.as_ref(),
                enrolment.id,
                CHARGEBACK_SUSPEND_REASON,
                Actor::System,
            )
            .await
            .map_err(|e| anyhow::anyhow!("suspending enrolment {}: {e}", enrolment.id))?
            .changed
        } else if !in_debt
            && enrolment.status == EnrolmentStatus::Suspended
            && enrolment.status_reason.as_deref() == Some(CHARGEBACK_SUSPEND_REASON)
        {
            cover::reactivate(
                conn,
                env.clock.as_ref(),
                enrolment.id,
                CHARGEBACK_REACTIVATE_REASON,
                Actor::System,
            )
            .await
            .map_err(|e| anyhow::anyhow!("reactivating enrolment {}: {e}", enrolment.id))?
            .changed
        } else {
            false
        };
        if done {
            changed += 1;
            tracing::info!(enrolment_id = %enrolment.id, %driver_id, %balance, in_debt, "enrolment changed for chargeback debt");
        }
    }
    Ok(changed)
}

/// After a top-up succeeded: reactivates enrolments suspended for chargeback debt once the
/// wallet is back at zero or above. Returns how many were reactivated.
pub async fn review_after_top_up(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
) -> Result<usize, PaymentsError> {
    review_chargeback_debt(conn, env, driver_id).await
}

/// Refuses a refund of a top-up that has a dispute Stripe has not decided for us (open, or
/// lost).
///
/// Errors: `NOT_REFUNDABLE`.
pub async fn ensure_not_disputed(
    conn: &mut AsyncPgConnection,
    top_up_id: TopUpId,
) -> Result<(), PaymentsError> {
    let disputed: i64 = chargebacks::table
        .filter(chargebacks::top_up_id.eq(top_up_id))
        .filter(chargebacks::stripe_status.ne_all(CLEARED_STATUSES))
        .count()
        .get_result(conn)
        .await?;
    if disputed > 0 {
        return Err(PaymentsError::NotRefundable("the top-up is disputed"));
    }
    Ok(())
}

/// What each driver's open chargebacks hold back from the wallet: the disputed amounts Stripe
/// has not withdrawn yet. Drivers without any are absent.
pub async fn chargeback_holds(
    conn: &mut AsyncPgConnection,
    driver_ids: &[DriverId],
) -> Result<HashMap<DriverId, Money>, PaymentsError> {
    let mut out: HashMap<DriverId, Money> = HashMap::new();
    for (_, driver_id, amount) in open_chargebacks(conn, driver_ids).await? {
        let held = out
            .entry(driver_id)
            .or_insert_with(|| Money::zero(WALLET_CURRENCY));
        held.minor = held
            .minor
            .checked_add(amount.minor)
            .ok_or_else(|| anyhow::anyhow!("chargeback holds of {driver_id} overflow"))?;
    }
    Ok(out)
}

/// Each open chargeback of these drivers whose money has not been withdrawn yet, with its
/// amount: the wallet holds (see [`crate::holds`]).
pub(crate) async fn open_chargebacks(
    conn: &mut AsyncPgConnection,
    driver_ids: &[DriverId],
) -> Result<Vec<(ChargebackId, DriverId, Money)>, PaymentsError> {
    let rows: Vec<(ChargebackId, DriverId, i64)> = chargebacks::table
        .filter(chargebacks::driver_id.eq_any(driver_ids))
        .filter(chargebacks::stripe_status.eq_any(OPEN_STATUSES))
        .filter(chargebacks::withdrawn_transaction_id.is_null())
        .filter(chargebacks::currency.eq(WALLET_CURRENCY.code()))
        .select((
            chargebacks::id,
            chargebacks::driver_id,
            chargebacks::amount_minor,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, driver_id, minor)| {
            (
                id,
                driver_id,
                Money {
                    minor,
                    currency: WALLET_CURRENCY,
                },
            )
        })
        .collect())
}

/// The most recent chargebacks, newest first (at most `limit`, 1 to 500).
pub async fn list_chargebacks(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> Result<Vec<Chargeback>, PaymentsError> {
    chargebacks::table
        .order((chargebacks::created_at.desc(), chargebacks::id.desc()))
        .limit(limit.clamp(1, 500))
        .select(ChargebackRow::as_select())
        .load(conn)
        .await?
        .iter()
        .map(ChargebackRow::to_chargeback)
        .collect()
}

/// A driver's chargebacks, newest first.
pub async fn chargebacks_of_driver(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Vec<Chargeback>, PaymentsError> {
    chargebacks::table
        .filter(chargebacks::driver_id.eq(driver_id))
        .order((chargebacks::created_at.desc(), chargebacks::id.desc()))
        .select(ChargebackRow::as_select())
        .load(conn)
        .await?
        .iter()
        .map(ChargebackRow::to_chargeback)
        .collect()
}
