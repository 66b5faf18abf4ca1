//! Stripe webhooks: verify, store once, apply later.
//!
//! The HTTP route verifies the `Stripe-Signature` header on the raw body with
//! [`verify_stripe_signature`], then calls [`record_event`], which stores the event (once per
//! Stripe event id) and enqueues an [`ApplyStripeEvent`] job in the same transaction, and
//! answers 200 at once. The job runs [`apply_stripe_event`].
//!
//! Events arrive duplicated and out of order, so applying one never trusts the object in its
//! payload: it re-reads the SetupIntent, PaymentIntent, refunds or dispute from Stripe and hands
//! the current state to the same idempotent functions the app's own calls use. An event about an
//! object that is not ours, or of a type we do not handle, is kept and flagged for people, never
//! an error that would make Stripe (or the job) retry forever.

use crate::env::PaymentsEnv;
use crate::error::PaymentsError;
use crate::ids::StripeEventRowId;
use crate::schema::stripe_events;
use crate::stripe::StripeFailure;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use shared::jobs::{JobContext, JobError};
use shared::outbox::Job;

/// The largest event body stored, in bytes (Stripe's are a few kilobytes).
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

/// Why a `Stripe-Signature` was not accepted. All of them answer 400 to Stripe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No header.
    #[error("missing Stripe-Signature header")]
    Missing,
    /// No timestamp, a timestamp that is not a number, or no `v1` signature.
    #[error("malformed Stripe-Signature header")]
    Malformed,
    /// The timestamp is further from now than the tolerance (a replay, or a clock far off).
    #[error("signature timestamp outside the tolerance ({age_secs} s away)")]
    Stale {
        /// Seconds between the timestamp and now (positive in the past).
        age_secs: i64,
    },
    /// No `v1` signature matches the body.
    #[error("no signature matches the payload")]
    Mismatch,
}

/// Checks a `Stripe-Signature` header (`t=<unix time>,v1=<hex>,v1=<hex>,…`) on the raw body:
/// HMAC-SHA256 of `"<t>.<body>"` with the endpoint's secret must equal one of the `v1` values
/// (compared in constant time; several are sent while a secret is being rolled), and `t` must be
/// within `tolerance_secs` of `now`. `v0` and unknown schemes are ignored.
pub fn verify_stripe_signature(
    secret: &str,
    header: Option<&str>,
    payload: &[u8],
    now: DateTime<Utc>,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k.trim() {
            "t" => timestamp = Some(v.trim().parse().map_err(|_| SignatureError::Malformed)?),
            "v1" => {
                // A value that is not hex cannot match; keep looking at the others.
                if let Ok(bytes) = hex::decode(v.trim()) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let age_secs = now.timestamp().saturating_sub(timestamp);
    if age_secs.abs() > tolerance_secs {
        return Err(SignatureError::Stale { age_secs });
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| SignatureError::Mismatch)?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    let expected = mac.finalize().into_bytes();
    // Check every candidate, so the time taken does not say which one matched.
    let mut matched = subtle::Choice::from(0u8);
    for candidate in &signatures {
        if candidate.len() == expected.len() {
            matched |= subtle::ConstantTimeEq::ct_eq(candidate.as_slice(), expected.as_slice());
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Builds a `Stripe-Signature` header for `payload` at `timestamp`: what Stripe sends. For tests
/// and local tools that play Stripe.
pub fn sign_stripe_payload(secret: &str, payload: &[u8], timestamp: i64) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => return format!("t={timestamp}"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The job that applies one stored Stripe event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyStripeEvent {
    /// Our row of the event.
    pub event_row_id: StripeEventRowId,
    /// Stripe's id of the event (`evt_…`), for logs and the idempotency key.
    pub event_id: String,
}

impl Job for ApplyStripeEvent {
    const TYPE: &'static str = "ApplyStripeEvent";
    const QUEUE: &'static str = "payments";
    const MAX_ATTEMPTS: i32 = 10;

    fn idempotency_key(&self) -> String {
        format!("stripe_event:{}", self.event_id)
    }
}

/// A stored event, as [`record_event`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedEvent {
    /// Our row.
    pub id: StripeEventRowId,
    /// Stripe's event id.
    pub event_id: String,
    /// Its type, e.g. `payment_intent.succeeded`.
    pub event_type: String,
    /// True when the event had been stored before (a redelivery): nothing was written.
    pub duplicate: bool,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Queryable, Selectable)]
#[diesel(table_name = stripe_events)]
pub struct StripeEvent {
    /// Our row.
    pub id: StripeEventRowId,
    /// Stripe's id (`evt_…`).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The kind of object it is about (`payment_intent`, …).
    pub object_type: Option<String>,
    /// That object's id.
    pub object_id: Option<String>,
    /// Whether it came from live mode.
    pub livemode: bool,
    /// When Stripe created it.
    pub stripe_created_at: DateTime<Utc>,
    /// The event as received.
    pub payload: serde_json::Value,
    /// When we stored it.
    pub received_at: DateTime<Utc>,
    /// `received`, `processed` or `flagged`.
    pub status: String,
    /// When it was applied or flagged.
    pub processed_at: Option<DateTime<Utc>>,
    /// Why it was flagged.
    pub flagged_reason: Option<String>,
}

/// Stores a verified event once (by Stripe's event id) and enqueues [`ApplyStripeEvent`] in the
/// same transaction. A redelivered event writes nothing and reports `duplicate`.
///
/// Errors: `INVALID_EVENT` when the body is not a Stripe event (no id, type or creation time) or
/// is too large; internal ones.
pub async fn record_event(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    raw: &str,
) -> Result<RecordedEvent, PaymentsError> {
    if raw.len() > MAX_EVENT_BYTES {
        return Err(PaymentsError::InvalidEvent("the event is too large"));
    }
    let payload: serde_json::Value =
        serde_json::from_str(raw).map_err(|_| PaymentsError::InvalidEvent("not JSON"))?;
    let text = |v: &serde_json::Value, max: usize| {
        v.as_str()
            .filter(|s| !s.is_empty() && s.chars().count() <= max)
            .map(str::to_owned)
    };
    let event_id =
        text(&payload["id"], 255).ok_or(PaymentsError::InvalidEvent("the event has no id"))?;
    let event_type =
        text(&payload["type"], 100).ok_or(PaymentsError::InvalidEvent("the event has no type"))?;
    let created = payload["created"]
        .as_i64()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
        .ok_or(PaymentsError::InvalidEvent(
            "the event has no creation time",
        ))?;
    let object = &payload["data"]["object"];
    let object_type = text(&object["object"], 100);
    let object_id = text(&object["id"], 255);
    let livemode = payload["livemode"].as_bool().unwrap_or(false);
    let id = StripeEventRowId::new();
    let now = env.clock.now();
    let payload = &payload;
    let (event_id_ref, event_type_ref) = (&event_id, &event_type);
    let (object_type, object_id) = (&object_type, &object_id);
    let inserted = conn
        .transaction::<_, PaymentsError, _>(async |conn| {
            let inserted: Option<StripeEventRowId> = diesel::insert_into(stripe_events::table)
                .values((
                    stripe_events::id.eq(id),
                    stripe_events::event_id.eq(event_id_ref),
                    stripe_events::event_type.eq(event_type_ref),
                    stripe_events::object_type.eq(object_type),
                    stripe_events::object_id.eq(object_id),
                    stripe_events::livemode.eq(livemode),
                    stripe_events::stripe_created_at.eq(created),
                    stripe_events::payload.eq(payload),
                    stripe_events::received_at.eq(now),
                    stripe_events::status.eq("received"),
                ))
                .on_conflict(stripe_events::event_id)
                .do_nothing()
                .returning(stripe_events::id)
                .get_result(conn)
                .await
                .optional()?;
            if inserted.is_some() {
                shared::outbox::enqueue(
                    conn,
                    &ApplyStripeEvent {
                        event_row_id: id,
                        event_id: event_id_ref.clone(),
                    },
                )
                .await?;
            }
            Ok(inserted)
        })
        .await?;
    match inserted {
        Some(id) => {
            tracing::info!(event_id = %event_id, event_type = %event_type, "Stripe event recorded");
            Ok(RecordedEvent {
                id,
                event_id,
                event_type,
                duplicate: false,
            })
        }
        None => {
            let existing: StripeEventRowId = stripe_events::table
                .filter(stripe_events::event_id.eq(&event_id))
                .select(stripe_events::id)
                .first(conn)
                .await?;
            tracing::debug!(event_id = %event_id, "Stripe event redelivered; already stored");
            Ok(RecordedEvent {
                id: existing,
                event_id,
                event_type,
                duplicate: true,
            })
        }
    }
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EventOutcome {
    /// Applied (or nothing was left to do).
    Processed,
    /// Kept for people to look at, with the reason.
    Flagged {
        /// Why.
        reason: String,
    },
    /// It had been applied or flagged before.
    AlreadyHandled,
}

/// The events kept for people (`flagged`), newest first, at most `limit` (1 to 500).
pub async fn flagged_events(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> Result<Vec<StripeEvent>, PaymentsError> {
    Ok(stripe_events::table
        .filter(stripe_events::status.eq("flagged"))
        .order((stripe_events::received_at.desc(), stripe_events::id.desc()))
        .limit(limit.clamp(1, 500))
        .select(StripeEvent::as_select())
        .load(conn)
        .await?)
}

/// One stored event.
///
/// Errors: `NOT_FOUND` (`eventId`).
pub async fn get_event(
    conn: &mut AsyncPgConnection,
    id: StripeEventRowId,
) -> Result<StripeEvent, PaymentsError> {
    stripe_events::table
        .find(id)
        .select(StripeEvent::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(PaymentsError::NotFound("eventId"))
}

/// Applies a stored event by re-reading its object from Stripe (the work of
/// [`ApplyStripeEvent`]): `setup_intent.*` saves the card, `payment_intent.*` moves the top-up
/// (crediting the wallet once on success), `charge.refunded`, `refund.*` and
/// `charge.refund.updated` apply the PaymentIntent's refunds (ours, made elsewhere, failed),
/// `charge.dispute.*` applies the dispute to its chargeback. Anything else, or an object that
/// is not ours, is flagged. The effect commits before the event is
/// marked, so a crash in between re-applies harmlessly.
///
/// With `job`, the job is completed inside the transaction that marks the event.
///
/// Errors: `NOT_FOUND` (`eventId`); internal ones, retryable when Stripe was unavailable.
pub async fn apply_stripe_event(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    id: StripeEventRowId,
    job: Option<&JobContext>,
) -> Result<EventOutcome, PaymentsError> {
    let event = get_event(conn, id).await?;
    if event.status != "received" {
        if let Some(job) = job {
            complete_job(conn, job).await?;
        }
        return Ok(EventOutcome::AlreadyHandled);
    }
    let outcome = match apply(conn, env, &event).await {
        Ok(outcome) => outcome,
        // Stripe does not know the object (deleted, another account, a forged id that passed
        // nothing but a valid signature): keep the event for people.
        Err(PaymentsError::Stripe(StripeFailure::Rejected {
            status, message, ..
        })) => EventOutcome::Flagged {
            reason: format!(
                "Stripe refused to read {} ({status}): {message}",
                event.object_id.as_deref().unwrap_or("the object")
            ),
        },
        Err(e) => return Err(e),
    };
    let now = env.clock.now();
    let outcome_ref = &outcome;
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        let (status, reason) = match outcome_ref {
            EventOutcome::Flagged { reason } => (
                "flagged",
                Some(reason.chars().take(500).collect::<String>()),
            ),
            _ => ("processed", None),
        };
        diesel::update(
            stripe_events::table
                .find(id)
                .filter(stripe_events::status.eq("received")),
        )
        .set((
            stripe_events::status.eq(status),
            stripe_events::processed_at.eq(Some(now)),
            stripe_events::flagged_reason.eq(reason),
        ))
        .execute(conn)
        .await?;
        match job {
            Some(job) => complete_job(conn, job).await,
            None => Ok(()),
        }
    })
    .await?;
    match &outcome {
        EventOutcome::Flagged { reason } => {
            tracing::warn!(event_id = %event.event_id, event_type = %event.event_type, %reason, "Stripe event flagged")
        }
        _ => {
            tracing::info!(event_id = %event.event_id, event_type = %event.event_type, "Stripe event applied")
        }
    }
    Ok(outcome)
}

async fn complete_job(conn: &mut AsyncPgConnection, job: &JobContext) -> Result<(), PaymentsError> {
    job.complete_in(conn).await.map_err(|e| match e {
        JobError::ClaimLost => PaymentsError::ClaimLost,
        JobError::Retry(e) | JobError::Permanent(e) => PaymentsError::Internal(e),
    })
}

fn flagged(reason: impl Into<String>) -> EventOutcome {
    EventOutcome::Flagged {
        reason: reason.into(),
    }
}

async fn apply(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    event: &StripeEvent,
) -> Result<EventOutcome, PaymentsError> {
    let object_type = event.object_type.as_deref().unwrap_or("");
    let Some(object_id) = event.object_id.as_deref() else {
        return Ok(flagged("the event names no object"));
    };
    let (family, _) = event
        .event_type
        .split_once('.')
        .unwrap_or((event.event_type.as_str(), ""));
    match (family, object_type) {
        ("setup_intent", "setup_intent") => {
            let setup = env.stripe.retrieve_setup_intent(object_id).await?;
            match crate::cards::sync_setup_intent(conn, env, &setup).await? {
                Some(_) => Ok(EventOutcome::Processed),
                None => Ok(flagged(format!("unknown SetupIntent {object_id}"))),
            }
        }
        ("payment_intent", "payment_intent") => {
            let intent = env.stripe.retrieve_payment_intent(object_id).await?;
            let row = match crate::top_ups::find_by_intent(conn, object_id).await? {
                Some(row) => Some(row),
                // The PaymentIntent may be ours before its id was stored (a crash right after
                // Stripe answered): our metadata names the top-up.
                None => match intent
                    .metadata
                    .get("top_up_id")
                    .and_then(|t| t.parse().ok())
                {
                    Some(top_up_id) => crate::top_ups::load_row(conn, top_up_id)
                        .await?
                        .filter(|r| r.payment_intent_id.is_none()),
                    None => None,
                },
            };
            match row {
                Some(row) => {
                    crate::top_ups::apply_intent(conn, env, row.id, &intent).await?;
                    Ok(EventOutcome::Processed)
                }
                None => Ok(flagged(format!("unknown PaymentIntent {object_id}"))),
            }
        }
        // charge.dispute.created, .updated, .funds_withdrawn, .funds_reinstated, .closed.
        ("charge", "dispute") => {
            let dispute = env.stripe.retrieve_dispute(object_id).await?;
            crate::chargebacks::apply_dispute(conn, env, &dispute).await
        }
        ("charge", "charge") if event.event_type == "charge.refunded" => {
            let Some(pi) = event.payload["data"]["object"]["payment_intent"].as_str() else {
                return Ok(flagged("the refunded charge names no PaymentIntent"));
            };
            crate::refund_sync::sync_refunds(conn, env, pi).await
        }
        // refund.created, refund.updated, refund.failed, charge.refund.updated.
        ("refund" | "charge", "refund") => {
            let refund = env.stripe.retrieve_refund(object_id).await?;
            match refund.payment_intent.as_deref() {
                Some(pi) => crate::refund_sync::sync_refunds(conn, env, pi).await,
                None => Ok(flagged(format!(
                    "refund {object_id} names no PaymentIntent"
                ))),
            }
        }
        _ => Ok(flagged(format!(
            "unhandled event {} about {}",
            event.event_type,
            if object_type.is_empty() {
                "an unknown object"
            } else {
                object_type
            }
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn at(t: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(t, 0).unwrap()
    }

    #[test]
    fn a_signed_payload_verifies_and_anything_else_does_not() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign_stripe_payload("whsec_x", body, 1_800_000_000);
        assert_eq!(
            verify_stripe_signature("whsec_x", Some(&header), body, at(1_800_000_010), 300),
            Ok(())
        );
        assert_eq!(
            verify_stripe_signature("whsec_y", Some(&header), body, at(1_800_000_010), 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_stripe_signature("whsec_x", Some(&header), b"{}", at(1_800_000_010), 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_stripe_signature("whsec_x", Some(&header), body, at(1_800_000_301), 300),
            Err(SignatureError::Stale { age_secs: 301 })
        );
        assert_eq!(
            verify_stripe_signature("whsec_x", None, body, at(1_800_000_000), 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_stripe_signature("whsec_x", Some("v1=abcd"), body, at(1_800_000_000), 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_stripe_signature("whsec_x", Some("t=x,v1=ab"), body, at(1_800_000_000), 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn any_of_several_v1_signatures_may_match() {
        let body = b"payload";
        let good = sign_stripe_payload("whsec_new", body, 1_800_000_000);
        let good_v1 = good.split("v1=").nth(1).unwrap();
        let header = format!(
            "t=1800000000,v1={},v0=zz,v1=nothex,v1={good_v1}",
            "0".repeat(64)
        );
        assert_eq!(
            verify_stripe_signature("whsec_new", Some(&header), body, at(1_800_000_000), 300),
            Ok(())
        );
    }
}
