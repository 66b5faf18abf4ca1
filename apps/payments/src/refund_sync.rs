//! Refunds as Stripe reports them: ours, made anywhere else, and those that fail afterwards.
//!
//! The webhook worker calls [`sync_refunds`] for a top-up's PaymentIntent whenever Stripe says
//! one of its refunds changed (`charge.refunded`, `refund.*`, `charge.refund.updated`). It
//! re-reads every refund of the PaymentIntent from Stripe, so the event's payload is never
//! trusted, and:
//!
//! - settles our pending refunds ([`crate::refunds`] does, as for its own calls);
//! - books a succeeded refund that is not ours (made in the Stripe dashboard: no `refund_id` in
//!   its metadata) as a system refund of the top-up, with its ledger reversal (the wallet is
//!   debited and may go negative), once: Stripe's refund id is unique on our refunds; then writes
//!   our refund's id into its metadata at Stripe, as ours carry it, for finance's reconciliation;
//! - undoes the booking of a refund Stripe reported succeeded and now reports failed or
//!   canceled (the card's bank returned it): the refund is marked failed and the wallet
//!   credited back, once (the undoing's cause is the refund);
//! - reports what it could not place (a refund naming a `refund_id` we do not have, a refund
//!   larger than what is left of the top-up, another currency), so the event is flagged for a
//!   person instead of marked processed.

use crate::env::PaymentsEnv;
use crate::error::PaymentsError;
use crate::ids::RefundId;
use crate::schema::{refunds, top_ups};
use crate::stripe::StripeRefund;
use crate::top_ups::{TopUpRow, TopUpStatus};
use crate::webhooks::EventOutcome;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use ledger::{AccountRef, Cause, LedgerError, Portion, TransactionId};
use shared::Money;

/// The reason recorded on a refund made outside ShiftCover.
pub const OUTSIDE_REFUND_REASON: &str = "Refunded outside ShiftCover (Stripe dashboard)";

/// Applies Stripe's refunds of a PaymentIntent (see the module doc). Flagged when the
/// PaymentIntent is not one of our top-ups, or when a refund could not be placed (each one that
/// could is applied all the same).
pub(crate) async fn sync_refunds(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    payment_intent_id: &str,
) -> Result<EventOutcome, PaymentsError> {
    // Our pending refunds first: the function our own calls use.
    if crate::refunds::sync_refunds_for_intent(conn, env, payment_intent_id)
        .await?
        .is_none()
    {
        return Ok(EventOutcome::Flagged {
            reason: format!("refunds of unknown PaymentIntent {payment_intent_id}"),
        });
    }
    let at_stripe = env.stripe.list_refunds(payment_intent_id).await?;
    let mut problems = Vec::new();
    // Oldest first, so that what is left of the top-up is taken in Stripe's order.
    for refund in at_stripe.iter().rev() {
        if let Err(problem) = apply_one(conn, env, payment_intent_id, refund).await? {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        Ok(EventOutcome::Processed)
    } else {
        Ok(EventOutcome::Flagged {
            reason: problems.join("; "),
        })
    }
}

/// Applies one refund from Stripe. `Ok(Err(problem))` when it cannot be placed.
async fn apply_one(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    payment_intent_id: &str,
    refund: &StripeRefund,
) -> Result<Result<(), String>, PaymentsError> {
    let by_stripe_id: Option<(RefundId, String)> = refunds::table
        .filter(refunds::stripe_refund_id.eq(&refund.id))
        .select((refunds::id, refunds::status))
        .first(conn)
        .await
        .optional()?;
    let ours = match by_stripe_id {
        Some(found) => Some(found),
        None => match refund.metadata.get("refund_id") {
            Some(named) => {
                let found: Option<(RefundId, String)> = match named.parse::<RefundId>() {
                    Ok(id) => refunds::table
                        .find(id)
                        .select((refunds::id, refunds::status))
                        .first(conn)
                        .await
                        .optional()?,
                    Err(_) => None,
                };
                if found.is_none() {
                    return Ok(Err(format!(
                        "refund {} names refund_id {named}, which is not ours",
                        refund.id
                    )));
                }
                found
            }
            None => None,
        },
    };
    match (ours, refund.status.as_str()) {
        // Ours and booked, and Stripe now says it did not happen: undo the booking.
        (Some((id, status)), "failed" | "canceled") if status == "succeeded" => {
            undo_failed_refund(conn, env, id, refund).await?;
            Ok(Ok(()))
        }
        // Ours otherwise: settled by the refunds module (pending) or final already. One made
        // outside whose tagging failed before is tagged now.
        (Some((id, _)), _) => {
            if refund.metadata.get("refund_id") != Some(&id.to_string()) {
                tag_refund(env, refund, id).await?;
            }
            Ok(Ok(()))
        }
        (None, "succeeded") => {
            let booked = book_outside_refund(conn, env, payment_intent_id, refund).await?;
            if booked.is_ok() {
                let id: RefundId = refunds::table
                    .filter(refunds::stripe_refund_id.eq(&refund.id))
                    .select(refunds::id)
                    .first(conn)
                    .await?;
                tag_refund(env, refund, id).await?;
            }
            Ok(booked)
        }
        // Not ours and not (yet) money moved: nothing to book until it succeeds.
        (None, _) => Ok(Ok(())),
    }
}

/// Writes our refund's id into the metadata of a refund made outside ShiftCover, as our own
/// refunds carry it, so that finance's reconciliation pairs Stripe's balance transaction with its
/// ledger reversal. Idempotent (the key names our refund).
async fn tag_refund(
    env: &PaymentsEnv,
    refund: &StripeRefund,
    id: RefundId,
) -> Result<(), PaymentsError> {
    env.stripe
        .tag_refund(
            &refund.id,
            vec![("refund_id", id.to_string())],
            &format!("refund_tag:{id}"),
        )
        .await?;
    Ok(())
}

/// Marks a refund that had succeeded as failed and credits the wallet back, once.
async fn undo_failed_refund(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    refund_id: RefundId,
    refund: &StripeRefund,
) -> Result<(), PaymentsError> {
    let now = env.clock.now();
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        let (status, booked, driver_id, amount): (String, Option<uuid::Uuid>, accounts::DriverId, i64) =
            refunds::table
                .find(refund_id)
                .select((
                    refunds::status,
                    refunds::ledger_transaction_id,
                    refunds::driver_id,
                    refunds::amount_minor,
                ))
                .for_update()
                .first(conn)
                .await?;
        if status != "succeeded" {
            return Ok(());
        }
        let booked = booked
            .ok_or_else(|| anyhow::anyhow!("succeeded refund {refund_id} names no reversal"))?;
        let undone = match ledger::undo_reversal(
            conn,
            TransactionId(booked),
            Cause::new("refund_failure", refund_id.to_string()),
        )
        .await
        {
            Ok(posted) => posted.id(),
            Err(LedgerError::AlreadyPosted(id)) => id,
            Err(e) => return Err(e.into()),
        };
        let reason: String = refund
            .failure_reason
            .clone()
            .unwrap_or_else(|| format!("Stripe refund {}", refund.status))
            .chars()
            .take(500)
            .collect();
        diesel::update(refunds::table.find(refund_id))
            .set((
                refunds::status.eq("failed"),
                refunds::failure_reason.eq(&reason),
                refunds::succeeded_at.eq(None::<chrono::DateTime<chrono::Utc>>),
                refunds::undone_transaction_id.eq(Some(undone.uuid())),
                refunds::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        shared::audit::record(
            conn,
            &shared::audit::AuditEntry {
                actor_type: shared::audit::ActorType::System,
                actor_id: None,
                action: "payment.refund_failed",
                subject_type: "refund",
                subject_id: refund_id.to_string(),
                reason: Some(&reason),
                details: serde_json::json!({
                    "stripe_refund_id": refund.id,
                    "amount_minor": amount,
                    "undone_transaction_id": undone.to_string(),
                }),
            },
        )
        .await?;
        tracing::warn!(%refund_id, stripe_refund = %refund.id, %driver_id, %reason, "refund failed after it succeeded; the wallet is credited back");
        Ok(())
    })
    .await
}

/// Books a succeeded refund made outside ShiftCover as a system refund of its top-up, once.
async fn book_outside_refund(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    payment_intent_id: &str,
    refund: &StripeRefund,
) -> Result<Result<(), String>, PaymentsError> {
    let now = env.clock.now();
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        let top_up: TopUpRow = top_ups::table
            .filter(top_ups::payment_intent_id.eq(payment_intent_id))
            .select(TopUpRow::as_select())
            .for_update()
            .first(conn)
            .await?;
        // Under the top-up's lock: a concurrent delivery of the same refund waits here, then
        // finds it booked.
        let booked: i64 = refunds::table
            .filter(refunds::stripe_refund_id.eq(&refund.id))
            .count()
            .get_result(conn)
            .await?;
        if booked > 0 {
            return Ok(Ok(()));
        }
        if top_up.status()? != TopUpStatus::Succeeded {
            return Ok(Err(format!(
                "refund {} of top-up {} which is {}",
                refund.id, top_up.id, top_up.status
            )));
        }
        let amount = top_up.amount()?;
        if refund.currency.to_ascii_uppercase() != amount.currency.code() || refund.amount <= 0 {
            return Ok(Err(format!(
                "refund {} of {} {} does not fit top-up {} in {}",
                refund.id, refund.amount, refund.currency, top_up.id, amount.currency
            )));
        }
        let refunded: i64 = refunds::table
            .filter(refunds::top_up_id.eq(top_up.id))
            .filter(refunds::status.ne("failed"))
            .select(sql::<BigInt>("coalesce(sum(amount_minor), 0)::bigint"))
            .first(conn)
            .await?;
        let left = amount.minor - refunded;
        if refund.amount > left {
            return Ok(Err(format!(
                "refund {} of {} is more than the {} left of top-up {}",
                refund.id,
                Money {
                    minor: refund.amount,
                    currency: amount.currency
                },
                Money {
                    minor: left.max(0),
                    currency: amount.currency
                },
                top_up.id
            )));
        }
        let original = top_up
            .ledger_transaction_id
            .ok_or_else(|| anyhow::anyhow!("top-up {} was never booked", top_up.id))?;
        // A debit of the wallet: spenders take the wallet's lock.
        ledger::lock_account(
            conn,
            &AccountRef::driver_wallet(top_up.driver_id.to_string(), amount.currency),
        )
        .await?;
        let id = RefundId::new();
        let reversal = match ledger::reverse(
            conn,
            TransactionId(original),
            Cause::new("refund", id.to_string()),
            Portion::Amount(refund.amount),
        )
        .await
        {
            Ok(posted) => posted.id(),
            Err(LedgerError::ReversalExceedsRemaining { remaining, .. }) => {
                return Ok(Err(format!(
                    "refund {} is more than the {remaining} the ledger has left of top-up {}",
                    refund.id, top_up.id
                )));
            }
            Err(e) => return Err(e.into()),
        };
        diesel::insert_into(refunds::table)
            .values((
                refunds::id.eq(id),
                refunds::driver_id.eq(top_up.driver_id),
                refunds::target.eq("top_up"),
                refunds::top_up_id.eq(Some(top_up.id)),
                refunds::amount_minor.eq(refund.amount),
                refunds::currency.eq(amount.currency.code()),
                refunds::reason.eq(OUTSIDE_REFUND_REASON),
                refunds::actor_type.eq("system"),
                refunds::status.eq("succeeded"),
                refunds::stripe_refund_id.eq(Some(&refund.id)),
                refunds::ledger_transaction_id.eq(Some(reversal.uuid())),
                refunds::created_at.eq(now),
                refunds::updated_at.eq(now),
                refunds::succeeded_at.eq(Some(now)),
            ))
            .execute(conn)
            .await?;
        shared::audit::record(
            conn,
            &shared::audit::AuditEntry {
                actor_type: shared::audit::ActorType::System,
                actor_id: None,
                action: "payment.refunded",
                subject_type: "top_up",
                subject_id: top_up.id.to_string(),
                reason: Some(OUTSIDE_REFUND_REASON),
                details: serde_json::json!({
                    "refund_id": id.to_string(),
                    "stripe_refund_id": refund.id,
                    "amount_minor": refund.amount,
                    "currency": amount.currency.code(),
                }),
            },
        )
        .await?;
        tracing::warn!(refund_id = %id, stripe_refund = %refund.id, top_up_id = %top_up.id, amount = refund.amount, "refund made outside ShiftCover booked");
        Ok(Ok(()))
    })
    .await
}
