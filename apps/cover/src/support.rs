//! Small helpers shared by the modules of this crate: audit entries, text checks, the UK clock,
//! and the per-driver lock.

use crate::error::CoverError;
use accounts::{Actor, DriverId};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::audit::{ActorType, AuditEntry};

/// The clock cover speaks in: the UK's, whose midnight also starts the daily cap's day.
pub const COVER_TIME_ZONE: Tz = pricing::CAP_TIME_ZONE;

/// Longest reason, idempotency key or partner reference accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 200;

/// The audit actor type and id of an [`Actor`].
pub(crate) fn actor_parts(actor: Actor) -> (ActorType, Option<String>) {
    match actor {
        Actor::Driver(id) => (ActorType::Driver, Some(id.to_string())),
        Actor::Staff(id) => (ActorType::Staff, Some(id.to_string())),
        Actor::Partner(id) => (ActorType::Partner, Some(id.to_string())),
        Actor::System => (ActorType::System, None),
    }
}

/// The stored name of an actor type (matches the audit log's and enrolment events' CHECKs).
pub(crate) fn actor_type_name(t: ActorType) -> &'static str {
    match t {
        ActorType::Driver => "driver",
        ActorType::Partner => "partner",
        ActorType::Staff => "staff",
        ActorType::System => "system",
    }
}

/// Writes one audit entry on `conn` (inside the caller's transaction).
pub(crate) async fn audit(
    conn: &mut AsyncPgConnection,
    actor: Actor,
    action: &str,
    subject_type: &str,
    subject_id: String,
    reason: Option<&str>,
    details: serde_json::Value,
) -> Result<(), CoverError> {
    let (actor_type, actor_id) = actor_parts(actor);
    shared::audit::record(
        conn,
        &AuditEntry {
            actor_type,
            actor_id,
            action,
            subject_type,
            subject_id,
            reason,
            details,
        },
    )
    .await?;
    Ok(())
}

/// A trimmed text of 1 to [`MAX_TEXT_CHARS`] characters without control characters, or `None`.
pub(crate) fn clean_text(input: &str) -> Option<&str> {
    let t = input.trim();
    let ok =
        !t.is_empty() && t.chars().count() <= MAX_TEXT_CHARS && !t.chars().any(char::is_control);
    ok.then_some(t)
}

/// `at` on the UK clock, for messages and documents: `09:05 on 23 Nov 2026`.
pub fn uk_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&COVER_TIME_ZONE)
        .format("%H:%M on %-d %b %Y")
        .to_string()
}

pub(crate) fn driver_lock_key(driver_id: DriverId) -> String {
    format!("cover:driver:{}", driver_id.uuid())
}

/// Takes the driver's cover lock until the end of the current transaction, waiting for it.
///
/// Everything that ends a driver's session (and so computes the day's charges) holds it, so two
/// endings can never both miss each other's charge. Lock order: this lock first, then rows.
pub(crate) async fn lock_driver(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<(), CoverError> {
    shared::sql::prepared("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind::<Text, _>(driver_lock_key(driver_id))
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap()
    }

    #[test]
    fn times_are_told_on_the_uk_clock() {
        assert_eq!(uk_time(utc(2026, 7, 1, 8, 5)), "09:05 on 1 Jul 2026");
        assert_eq!(uk_time(utc(2026, 11, 23, 9, 0)), "09:00 on 23 Nov 2026");
    }

    #[test]
    fn texts_are_trimmed_and_bounded() {
        assert_eq!(clean_text("  card declined "), Some("card declined"));
        assert_eq!(clean_text("   "), None);
        assert_eq!(clean_text(&"x".repeat(201)), None);
        assert_eq!(clean_text("a\u{7}b"), None);
    }
}
