//! Ending sessions and pricing them: by the driver or a partner ([`end_session`]), by the clock
//! ([`close_due_sessions`]), or with the enrolment ([`crate::cancel_enrolment`]).
//!
//! Invariants:
//! - a session ends once: the ending is a guarded update of an `active` row, and every path
//!   holds the driver's cover lock and the row lock while it prices and writes;
//! - a session never ends after its deadline: an ending asked for after `max_end_at` (or after a
//!   partner's `scheduled_end_at`) ends it at that deadline, for that reason, so the driver is
//!   never charged for time the rules had already cut off;
//! - the charge is [`pricing::price_session`] on the session's own product version and locked
//!   rate, given what the driver's other sessions that started on the same UK day were charged
//!   (the daily cap); it is stored with its rates, and the "cover ended" SMS and the audit entry
//!   are written in the same transaction.

use crate::error::CoverError;
use crate::events::{CoverEvent, CoverEventKind};
use crate::ids::{CoverSessionId, EnrolmentId};
use crate::schema::cover_sessions;
use crate::sessions::{CoverSession, EndReason, SessionRow, SessionStatus};
use crate::support::{audit, lock_driver, try_lock_driver, uk_day_bounds};
use accounts::{Actor, DriverId};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use pricing::SessionCharge;
use shared::{Clock, Currency, Money};

/// The result of ending a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "publish the events once the change has committed"]
pub struct SessionEnded {
    /// The session, ended and priced.
    pub session: CoverSession,
    /// Events for [`crate::events::publish_cover_event`], after commit.
    pub events: Vec<CoverEvent>,
}

/// When and why a session asked to end at `at` for `reason` really ends: at its earliest
/// deadline already passed, if any, for that deadline's reason.
pub(crate) fn effective_end(
    row: &SessionRow,
    at: DateTime<Utc>,
    reason: EndReason,
) -> (DateTime<Utc>, EndReason) {
    let mut end = (at.max(row.started_at), reason);
    if let Some(scheduled) = row.scheduled_end_at
        && scheduled <= end.0
    {
        end = (scheduled, EndReason::GapRule);
    }
    if row.max_end_at <= end.0 {
        end = (row.max_end_at, EndReason::MaxLength);
    }
    end
}

pub(crate) fn money(minor: i64, currency: &str) -> Result<Money, CoverError> {
    Ok(Money {
        minor,
        currency: currency.parse::<Currency>().map_err(anyhow::Error::new)?,
    })
}

/// What the driver was charged for their other sessions that started on the same UK day as
/// `started_at` (the daily cap's "already charged today").
async fn already_charged_today(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    exclude: CoverSessionId,
    started_at: DateTime<Utc>,
    currency: &str,
) -> Result<Money, CoverError> {
    #[derive(QueryableByName)]
    struct Total {
        #[diesel(sql_type = BigInt)]
        total: i64,
    }
    let (day_start, day_end) = uk_day_bounds(started_at);
    let total: Total = shared::sql::prepared(
        "SELECT coalesce(sum(total_minor), 0)::bigint AS total
           FROM cover_sessions
          WHERE driver_id = $1 AND id <> $2 AND status <> 'active' AND currency = $3
            AND started_at >= $4 AND started_at < $5",
    )
    .bind::<diesel::sql_types::Uuid, _>(driver_id.uuid())
    .bind::<diesel::sql_types::Uuid, _>(exclude.uuid())
    .bind::<Text, _>(currency)
    .bind::<Timestamptz, _>(day_start)
    .bind::<Timestamptz, _>(day_end)
    .get_result(conn)
    .await?;
    money(total.total, currency)
}

/// Prices a session ending at `at` (its deadlines applied), as [`end_locked`] would.
async fn price(
    conn: &mut AsyncPgConnection,
    row: &SessionRow,
    at: DateTime<Utc>,
) -> Result<SessionCharge, CoverError> {
    let already =
        already_charged_today(conn, row.driver_id, row.id, row.started_at, &row.currency).await?;
    price_with(conn, row, at, already).await
}

/// Prices a session ending at `at`, given what the driver was already charged that day.
pub(crate) async fn price_with(
    conn: &mut AsyncPgConnection,
    row: &SessionRow,
    at: DateTime<Utc>,
    already: Money,
) -> Result<SessionCharge, CoverError> {
    // Published versions never change: the remembered one saves a read.
    let version = pricing::get_version_terms(conn, row.product_version_id).await?;
    let rate = money(row.hourly_rate_minor, &row.currency)?;
    Ok(pricing::price_session(
        &version,
        rate,
        row.started_at,
        at,
        already,
    )?)
}

fn bp(rate: u32) -> Result<i32, CoverError> {
    i32::try_from(rate).map_err(|_| anyhow::anyhow!("rate {rate} out of range").into())
}

/// Ends and prices an active session whose driver lock and row lock the caller holds (inside
/// its transaction); writes the audit entry and the "cover ended" SMS.
pub(crate) async fn end_locked(
    conn: &mut AsyncPgConnection,
    row: SessionRow,
    at: DateTime<Utc>,
    reason: EndReason,
    actor: Actor,
) -> Result<CoverSession, CoverError> {
    if row.status != SessionStatus::Active.as_str() {
        return Err(CoverError::SessionAlreadyEnded);
    }
    let (ended_at, reason) = effective_end(&row, at, reason);
    let charge = price(conn, &row, ended_at).await?;
    let b = charge.breakdown;
    // Every session ends through here: written out so that each connection prepares it once
    // (diesel's UPDATE is planned again on every call).
    let updated: SessionRow = shared::sql::prepared(
        "UPDATE cover_sessions
            SET status = 'ended', ended_at = $2, end_reason = $3, minutes = $4,
                billed_minutes = $5, charge_rule = $6, uncapped_minor = $7, net_minor = $8,
                commission_minor = $9, ipt_minor = $10, total_minor = $11, ipt_rate_bp = $12,
                commission_bp = $13
          WHERE id = $1 AND status = 'active'
      RETURNING *",
    )
    .bind::<diesel::sql_types::Uuid, _>(row.id)
    .bind::<Timestamptz, _>(ended_at)
    .bind::<Text, _>(reason.as_str())
    .bind::<BigInt, _>(charge.minutes)
    .bind::<BigInt, _>(charge.billed_minutes)
    .bind::<Text, _>(charge.rule.as_str())
    .bind::<BigInt, _>(charge.uncapped.minor)
    .bind::<BigInt, _>(b.net_premium.minor)
    .bind::<BigInt, _>(b.commission.minor)
    .bind::<BigInt, _>(b.ipt.minor)
    .bind::<BigInt, _>(b.total.minor)
    .bind::<Integer, _>(bp(b.ipt_rate_bp)?)
    .bind::<Integer, _>(bp(b.commission_rate_bp)?)
    .get_result(conn)
    .await
    .optional()?
    .ok_or(CoverError::SessionAlreadyEnded)?;
    let session = CoverSession::try_from(updated)?;
    audit(
        conn,
        actor,
        ENDED_ACTION,
        "cover_session",
        session.id.to_string(),
        None,
        ended_audit_details(&session, reason, ended_at, &charge),
    )
    .await?;
    crate::notify::cover_ended(conn, &session).await?;
    Ok(session)
}

/// The audit action of an ending.
pub(crate) const ENDED_ACTION: &str = "cover.session_ended";

/// What the audit entry of an ending records.
pub(crate) fn ended_audit_details(
    session: &CoverSession,
    reason: EndReason,
    ended_at: DateTime<Utc>,
    charge: &SessionCharge,
) -> serde_json::Value {
    let total = charge.breakdown.total;
    serde_json::json!({
        "end_reason": reason.as_str(),
        "ended_at": ended_at,
        "minutes": charge.minutes,
        "billed_minutes": charge.billed_minutes,
        "rule": charge.rule.as_str(),
        "total_minor": total.minor,
        "currency": total.currency.code(),
        "product_version_id": session.product_version_id.to_string(),
    })
}

/// The audit actor for an ending asked for with `reason` (ops endings go through
/// [`end_session_as`] to name the staff user).
fn actor_for(reason: EndReason, row: &SessionRow) -> Actor {
    match (reason, row.partner_id) {
        (EndReason::Driver, _) => Actor::Driver(row.driver_id),
        (EndReason::Partner, Some(partner_id)) => Actor::Partner(partner_id),
        _ => Actor::System,
    }
}

async fn end_with(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: Option<DriverId>,
    session_id: CoverSessionId,
    reason: EndReason,
    actor: Option<Actor>,
) -> Result<SessionEnded, CoverError> {
    let now = clock.now();
    // The driver lock comes before the row lock. A driver ending their own session names
    // themself: their lock is taken and the row is then read for them only (another driver's
    // session answers as an unknown one). Otherwise, find whose session it is first.
    let owner: DriverId = match driver_id {
        Some(driver_id) => driver_id,
        None => cover_sessions::table
            .filter(cover_sessions::id.eq(session_id))
            .select(cover_sessions::driver_id)
            .first(conn)
            .await
            .optional()?
            .ok_or(CoverError::SessionNotFound)?,
    };
    let end = async |conn: &mut AsyncPgConnection| -> Result<SessionEnded, CoverError> {
        let row = lock_session(conn, owner, session_id).await?;
        let actor = actor.unwrap_or_else(|| actor_for(reason, &row));
        let session = end_locked(conn, row, now, reason, actor).await?;
        Ok(SessionEnded {
            events: vec![CoverEvent {
                driver_id: owner,
                session_id: Some(session.id),
                kind: CoverEventKind::Ended,
                at: now,
            }],
            session,
        })
    };
    if driver_id.is_some() && shared::db::in_transaction(conn) {
        // The caller's transaction holds the ending together (and the caller rolls it back on
        // an error, as with any failed statement): a savepoint would only add round trips.
        end(conn).await
    } else {
        conn.transaction::<_, CoverError, _>(end).await
    }
}

/// Ends one of the driver's sessions now and prices it. Called inside a transaction, it runs in
/// that transaction (no savepoint): roll it back on an error.
///
/// The audit entry names the driver for reason `driver`, the session's partner for `partner`,
/// and the system otherwise. An ending asked for after a deadline ends at that deadline (see the
/// module invariants).
///
/// Errors: `SESSION_NOT_FOUND` (also another driver's), `SESSION_ALREADY_ENDED`.
pub async fn end_session(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    session_id: CoverSessionId,
    reason: EndReason,
) -> Result<SessionEnded, CoverError> {
    end_with(conn, clock, Some(driver_id), session_id, reason, None).await
}

/// Ends any session now, recording `actor` (an ops user, a partner acting for its driver).
///
/// Errors: `SESSION_NOT_FOUND`, `SESSION_ALREADY_ENDED`.
pub async fn end_session_as(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    session_id: CoverSessionId,
    reason: EndReason,
    actor: Actor,
) -> Result<SessionEnded, CoverError> {
    end_with(conn, clock, None, session_id, reason, Some(actor)).await
}

/// The result of [`close_due_sessions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "publish the events once the change has committed"]
pub struct ClosedSessions {
    /// The sessions ended, in the order they were.
    pub sessions: Vec<CoverSession>,
    /// Due sessions that failed to end (logged; the next run tries them again).
    pub failed: usize,
    /// Events for [`crate::events::publish_cover_event`], after commit.
    pub events: Vec<CoverEvent>,
}

/// Ends up to `limit` active sessions that are past their deadline: past `max_end_at` (reason
/// `max_length`, ended at `max_end_at`) or past a partner's `scheduled_end_at` (reason
/// `gap_rule`, ended then). Idempotent, and safe to run from several workers at once: a session
/// another worker or request is ending is skipped (its driver lock is tried, its row locked with
/// `SKIP LOCKED`), never waited for. Each session ends in its own transaction (a savepoint when
/// the caller holds one), so one failure does not undo the others.
pub async fn close_due_sessions(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    limit: i64,
) -> Result<ClosedSessions, CoverError> {
    let now = clock.now();
    let due = cover_sessions::max_end_at
        .le(now)
        .or(cover_sessions::scheduled_end_at.le(now));
    let candidates: Vec<(CoverSessionId, DriverId)> = cover_sessions::table
        .filter(cover_sessions::status.eq(SessionStatus::Active.as_str()))
        .filter(due)
        .order(cover_sessions::max_end_at.asc())
        .limit(limit.max(0))
        .select((cover_sessions::id, cover_sessions::driver_id))
        .load(conn)
        .await?;
    let mut out = ClosedSessions::default();
    for (session_id, driver_id) in candidates {
        let attempt = conn
            .transaction::<_, CoverError, _>(async |conn| {
                if !try_lock_driver(conn, driver_id).await? {
                    return Ok(None);
                }
                let row: Option<SessionRow> = cover_sessions::table
                    .find(session_id)
                    .filter(cover_sessions::status.eq(SessionStatus::Active.as_str()))
                    .filter(
                        cover_sessions::max_end_at
                            .le(now)
                            .or(cover_sessions::scheduled_end_at.le(now)),
                    )
                    .select(SessionRow::as_select())
                    .for_update()
                    .skip_locked()
                    .first(conn)
                    .await
                    .optional()?;
                match row {
                    // The due deadline takes over from the placeholder reason.
                    Some(row) => Ok(Some(
                        end_locked(conn, row, now, EndReason::MaxLength, Actor::System).await?,
                    )),
                    None => Ok(None),
                }
            })
            .await;
        match attempt {
            Ok(Some(session)) => {
                out.events.push(CoverEvent {
                    driver_id,
                    session_id: Some(session.id),
                    kind: CoverEventKind::Ended,
                    at: now,
                });
                out.sessions.push(session);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(session_id = %session_id, error = ?e, "due cover session could not be closed");
                out.failed += 1;
            }
        }
    }
    Ok(out)
}

/// The result of [`schedule_session_end`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "publish the events once the change has committed"]
pub struct SessionEndScheduled {
    /// The session with its new scheduled end.
    pub session: CoverSession,
    /// An `EndingSoon` event when an end was set; none when it was cleared.
    pub events: Vec<CoverEvent>,
}

/// Sets (or, with `None`, clears) when an active session ends by itself: a partner's gap or tail
/// rule. The time is kept within the session (not before its start, not after `max_end_at`); a
/// time already past ends the session at that time at the next [`close_due_sessions`].
///
/// Errors: `SESSION_NOT_FOUND`, `SESSION_ALREADY_ENDED`.
pub async fn schedule_session_end(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    session_id: CoverSessionId,
    at: Option<DateTime<Utc>>,
    actor: Actor,
) -> Result<SessionEndScheduled, CoverError> {
    let now = clock.now();
    conn.transaction::<_, CoverError, _>(async |conn| {
        let row: SessionRow = cover_sessions::table
            .find(session_id)
            .select(SessionRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or(CoverError::SessionNotFound)?;
        if row.status != SessionStatus::Active.as_str() {
            return Err(CoverError::SessionAlreadyEnded);
        }
        let at = at.map(|t| t.clamp(row.started_at, row.max_end_at));
        let updated: SessionRow = diesel::update(cover_sessions::table.find(session_id))
            .set(cover_sessions::scheduled_end_at.eq(at))
            .returning(SessionRow::as_returning())
            .get_result(conn)
            .await?;
        let session = CoverSession::try_from(updated)?;
        audit(
            conn,
            actor,
            "cover.session_end_scheduled",
            "cover_session",
            session.id.to_string(),
            None,
            serde_json::json!({ "scheduled_end_at": at }),
        )
        .await?;
        let events = match at {
            Some(_) => vec![CoverEvent {
                driver_id: session.driver_id,
                session_id: Some(session.id),
                kind: CoverEventKind::EndingSoon,
                at: now,
            }],
            None => Vec::new(),
        };
        Ok(SessionEndScheduled { session, events })
    })
    .await
}

/// Records that payments took an ended session's charge (`ended → charged`), on the caller's
/// connection so it commits with the payment. Marking a charged session again changes nothing.
///
/// Errors: `SESSION_NOT_FOUND`; `INVALID_SESSION_STATUS` for an active, disputed or adjusted one.
pub async fn mark_session_charged(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    session_id: CoverSessionId,
) -> Result<CoverSession, CoverError> {
    let now = clock.now();
    conn.transaction::<_, CoverError, _>(async |conn| {
        let row: SessionRow = cover_sessions::table
            .find(session_id)
            .select(SessionRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or(CoverError::SessionNotFound)?;
        let status: SessionStatus = row.status.parse()?;
        match status {
            SessionStatus::Charged => CoverSession::try_from(row),
            SessionStatus::Ended => {
                let updated: SessionRow = diesel::update(cover_sessions::table.find(session_id))
                    .set((
                        cover_sessions::status.eq(SessionStatus::Charged.as_str()),
                        cover_sessions::charged_at.eq(now),
                    ))
                    .returning(SessionRow::as_returning())
                    .get_result(conn)
                    .await?;
                let session = CoverSession::try_from(updated)?;
                audit(
                    conn,
                    Actor::System,
                    "cover.session_charged",
                    "cover_session",
                    session.id.to_string(),
                    None,
                    serde_json::json!({
                        "total_minor": session.charge.map(|c| c.total.minor),
                    }),
                )
                .await?;
                Ok(session)
            }
            other => Err(CoverError::InvalidSessionStatus(other.as_str())),
        }
    })
    .await
}

/// The enrolment's active session, if any.
pub(crate) async fn open_session_of_enrolment(
    conn: &mut AsyncPgConnection,
    enrolment_id: EnrolmentId,
) -> Result<Option<CoverSession>, CoverError> {
    cover_sessions::table
        .filter(cover_sessions::enrolment_id.eq(enrolment_id))
        .filter(cover_sessions::status.eq(SessionStatus::Active.as_str()))
        .select(SessionRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(CoverSession::try_from)
        .transpose()
}

/// The enrolment's active session row, locked for update (the caller holds the driver lock).
pub(crate) async fn lock_open_session_of_enrolment(
    conn: &mut AsyncPgConnection,
    enrolment_id: EnrolmentId,
) -> Result<Option<SessionRow>, CoverError> {
    Ok(cover_sessions::table
        .filter(cover_sessions::enrolment_id.eq(enrolment_id))
        .filter(cover_sessions::status.eq(SessionStatus::Active.as_str()))
        .select(SessionRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?)
}

/// What an active session would be charged if it ended at `now`. Reads only.
pub(crate) async fn preview_charge(
    conn: &mut AsyncPgConnection,
    session: &CoverSession,
    now: DateTime<Utc>,
) -> Result<SessionCharge, CoverError> {
    let row: SessionRow = cover_sessions::table
        .find(session.id)
        .select(SessionRow::as_select())
        .first(conn)
        .await?;
    let (at, _) = effective_end(&row, now, EndReason::Driver);
    price(conn, &row, at).await
}

/// What ending the driver's active session now would cost, if they have one. Reads only.
pub async fn current_charge(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    session: &CoverSession,
) -> Result<Option<SessionCharge>, CoverError> {
    if !session.is_active() {
        return Ok(None);
    }
    preview_charge(conn, session, clock.now()).await.map(Some)
}

/// Locks the session's driver (the lock every change of a driver's cover takes first), then the
/// session's row, and returns the row. Call inside a transaction.
///
/// Errors: `SESSION_NOT_FOUND`.
async fn lock_session(
    conn: &mut AsyncPgConnection,
    owner: DriverId,
    session_id: CoverSessionId,
) -> Result<SessionRow, CoverError> {
    lock_driver(conn, owner).await?;
    cover_sessions::table
        .find(session_id)
        .filter(cover_sessions::driver_id.eq(owner))
        .select(SessionRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(CoverError::SessionNotFound)
}

/// Moves an active session's start earlier, to `started_at`: a partner's late event shows that
/// work (and so cover) began before the session was started. The maximum end moves by the same
/// amount (the session's maximum length stays), a scheduled end is kept within it, and the
/// start never goes back past the end of the driver's previous session (sessions never
/// overlap). A start that is not earlier changes nothing.
///
/// Errors: `SESSION_NOT_FOUND`, `SESSION_ALREADY_ENDED`.
pub async fn backdate_session_start(
    conn: &mut AsyncPgConnection,
    session_id: CoverSessionId,
    started_at: DateTime<Utc>,
    actor: Actor,
) -> Result<CoverSession, CoverError> {
    let owner: DriverId = cover_sessions::table
        .filter(cover_sessions::id.eq(session_id))
        .select(cover_sessions::driver_id)
        .first(conn)
        .await
        .optional()?
        .ok_or(CoverError::SessionNotFound)?;
    conn.transaction::<_, CoverError, _>(async |conn| {
        let row = lock_session(conn, owner, session_id).await?;
        if row.status != SessionStatus::Active.as_str() {
            return Err(CoverError::SessionAlreadyEnded);
        }
        let previous_end: Option<Option<DateTime<Utc>>> = cover_sessions::table
            .filter(cover_sessions::driver_id.eq(owner))
            .filter(cover_sessions::id.ne(session_id))
            .filter(cover_sessions::started_at.lt(row.started_at))
            .select(cover_sessions::ended_at)
            .order(cover_sessions::ended_at.desc().nulls_last())
            .first(conn)
            .await
            .optional()?;
        let floor = previous_end.flatten();
        let new_start = match floor {
            Some(end) => started_at.max(end),
            None => started_at,
        };
        if new_start >= row.started_at {
            return CoverSession::try_from(row);
        }
        let shift = row.started_at - new_start;
        let max_end_at = row.max_end_at - shift;
        let scheduled_end_at = row.scheduled_end_at.map(|s| s.clamp(new_start, max_end_at));
        let updated: SessionRow = diesel::update(cover_sessions::table.find(session_id))
            .set((
                cover_sessions::started_at.eq(new_start),
                cover_sessions::max_end_at.eq(max_end_at),
                cover_sessions::scheduled_end_at.eq(scheduled_end_at),
            ))
            .returning(SessionRow::as_returning())
            .get_result(conn)
            .await?;
        let session = CoverSession::try_from(updated)?;
        audit(
            conn,
            actor,
            "cover.session_backdated",
            "cover_session",
            session.id.to_string(),
            None,
            serde_json::json!({
                "from": row.started_at,
                "to": new_start,
                "max_end_at": max_end_at,
            }),
        )
        .await?;
        Ok(session)
    })
    .await
}
