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

use crate::engine::{EndRequest, SessionEnded, end_sessions};
use crate::error::CoverError;
use crate::events::{CoverEvent, CoverEventKind};
use crate::ids::{CoverSessionId, EnrolmentId};
use crate::schema::cover_sessions;
use crate::sessions::{CoverSession, EndReason, SessionRow, SessionStatus};
use crate::support::{audit, lock_driver};
use accounts::{Actor, DriverId};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use pricing::SessionCharge;
use shared::{Clock, Currency, Money};

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

/// Ends one of the driver's sessions now and prices it: [`end_sessions`] for one request.
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
    end_one(
        conn,
        clock,
        EndRequest {
            session_id,
            driver_id: Some(driver_id),
            at: clock.now(),
            reason,
            actor: None,
        },
    )
    .await
}

/// Ends any session now, recording `actor` (an ops user, a partner acting for its driver):
/// [`end_sessions`] for one request.
///
/// Errors: `SESSION_NOT_FOUND`, `SESSION_ALREADY_ENDED`.
pub async fn end_session_as(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    session_id: CoverSessionId,
    reason: EndReason,
    actor: Actor,
) -> Result<SessionEnded, CoverError> {
    end_one(
        conn,
        clock,
        EndRequest {
            session_id,
            driver_id: None,
            at: clock.now(),
            reason,
            actor: Some(actor),
        },
    )
    .await
}

/// [`end_sessions`] for one request.
pub(crate) async fn end_one(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    request: EndRequest,
) -> Result<SessionEnded, CoverError> {
    crate::engine::only(end_sessions(conn, clock, std::slice::from_ref(&request)).await)
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

/// Ends up to `limit` active sessions that are past their deadline, through [`end_sessions`]:
/// past `max_end_at` (reason `max_length`, ended at `max_end_at`) or past a partner's
/// `scheduled_end_at` (reason `gap_rule`, ended then). Idempotent, and safe to run from several
/// workers at once: a session someone else ended meanwhile answers `SESSION_ALREADY_ENDED` and is
/// left alone. When the batch fails as a whole, each session is tried on its own, so one
/// failure does not hold back the others.
pub async fn close_due_sessions(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    limit: i64,
) -> Result<ClosedSessions, CoverError> {
    let now = clock.now();
    let due = cover_sessions::max_end_at
        .le(now)
        .or(cover_sessions::scheduled_end_at.le(now));
    let candidates: Vec<CoverSessionId> = cover_sessions::table
        .filter(cover_sessions::status.eq(SessionStatus::Active.as_str()))
        .filter(due)
        .order(cover_sessions::max_end_at.asc())
        .limit(limit.max(0))
        .select(cover_sessions::id)
        .load(conn)
        .await?;
    // The due deadline takes over from the placeholder reason (see `effective_end`).
    let request = |session_id| EndRequest {
        session_id,
        driver_id: None,
        at: now,
        reason: EndReason::MaxLength,
        actor: Some(Actor::System),
    };
    let requests: Vec<EndRequest> = candidates.iter().copied().map(request).collect();
    let answers = match end_sessions(conn, clock, &requests).await {
        Ok(answers) => answers,
        Err(e) => {
            tracing::warn!(error = ?e, "closing due sessions together failed; one by one");
            let mut answers = Vec::with_capacity(requests.len());
            for r in &requests {
                answers.push(end_one(conn, clock, r.clone()).await);
            }
            answers
        }
    };
    let mut out = ClosedSessions::default();
    for (session_id, answer) in candidates.into_iter().zip(answers) {
        match answer {
            Ok(ended) => {
                out.events.extend(ended.events);
                out.sessions.push(ended.session);
            }
            Err(CoverError::SessionAlreadyEnded | CoverError::SessionNotFound) => {}
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

/// What happened to a charged session's charge after it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeChange {
    /// Its driver disputed it (claims): `charged`/`adjusted` → `disputed`.
    Disputed,
    /// Part or all of it was given back (payments' refund of a session charge): `charged` →
    /// `adjusted`; a disputed session stays `disputed` until its dispute is settled, remembered
    /// as adjusted.
    Lowered,
    /// Its dispute was settled (claims): `disputed` → `adjusted` when the charge was lowered,
    /// else back to `charged`.
    DisputeSettled,
}

impl ChargeChange {
    fn as_str(self) -> &'static str {
        match self {
            ChargeChange::Disputed => "disputed",
            ChargeChange::Lowered => "lowered",
            ChargeChange::DisputeSettled => "dispute_settled",
        }
    }
}

/// Records what happened to a session's charge after it was taken (see [`ChargeChange`]), on
/// the caller's connection so it commits with its cause, with an audit entry. A change that
/// is already recorded changes nothing.
///
/// Errors: `SESSION_NOT_FOUND`; `INVALID_SESSION_STATUS` for a session not yet charged (and, to
/// dispute, one already disputed; to settle, one not disputed).
pub async fn record_charge_change(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    session_id: CoverSessionId,
    change: ChargeChange,
    actor: Actor,
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
        use SessionStatus::{Adjusted, Charged, Disputed};
        let (next, disputed_at, adjusted_at) = match (change, status) {
            (ChargeChange::Disputed, Charged | Adjusted) => (Disputed, Some(now), row.adjusted_at),
            (ChargeChange::Lowered, Charged | Adjusted) => (Adjusted, row.disputed_at, Some(now)),
            (ChargeChange::Lowered, Disputed) => (Disputed, row.disputed_at, Some(now)),
            (ChargeChange::DisputeSettled, Disputed) => (
                if row.adjusted_at.is_some() {
                    Adjusted
                } else {
                    Charged
                },
                row.disputed_at,
                row.adjusted_at,
            ),
            (ChargeChange::DisputeSettled, Charged | Adjusted) => {
                return CoverSession::try_from(row);
            }
            (_, other) => return Err(CoverError::InvalidSessionStatus(other.as_str())),
        };
        let updated: SessionRow = diesel::update(cover_sessions::table.find(session_id))
            .set((
                cover_sessions::status.eq(next.as_str()),
                cover_sessions::disputed_at.eq(disputed_at),
                cover_sessions::adjusted_at.eq(adjusted_at),
            ))
            .returning(SessionRow::as_returning())
            .get_result(conn)
            .await?;
        let session = CoverSession::try_from(updated)?;
        audit(
            conn,
            actor,
            "cover.session_charge_changed",
            "cover_session",
            session.id.to_string(),
            None,
            serde_json::json!({
                "change": change.as_str(),
                "from": status.as_str(),
                "to": next.as_str(),
            }),
        )
        .await?;
        Ok(session)
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

/// What an active session would be charged if it ended at `now`, priced as
/// [`crate::end_sessions`] would price it (a deadline already passed ends it there). Reads only.
pub async fn preview_charge(
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
    crate::engine::price_ending(conn, &row, at).await
}

/// The ended sessions of these drivers whose charge has not been taken yet, with what each will
/// take: `(driver, session, total)`. Sessions priced nothing are left out. Reads only.
pub async fn uncharged_sessions(
    conn: &mut AsyncPgConnection,
    driver_ids: &[DriverId],
) -> Result<Vec<(DriverId, CoverSessionId, Money)>, CoverError> {
    let rows: Vec<(DriverId, CoverSessionId, Option<i64>, String)> = cover_sessions::table
        .filter(cover_sessions::driver_id.eq_any(driver_ids))
        .filter(cover_sessions::status.eq(SessionStatus::Ended.as_str()))
        .filter(cover_sessions::total_minor.gt(0))
        .select((
            cover_sessions::driver_id,
            cover_sessions::id,
            cover_sessions::total_minor,
            cover_sessions::currency,
        ))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(driver_id, id, total, currency)| {
            Ok((driver_id, id, money(total.unwrap_or(0), &currency)?))
        })
        .collect()
}

/// Ended sessions whose charge has not been taken, ended before `ended_before`, oldest first, at
/// most `limit` (for the payments app's sweep of charges left behind). Reads only.
pub async fn sessions_awaiting_charge(
    conn: &mut AsyncPgConnection,
    ended_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<CoverSessionId>, CoverError> {
    Ok(cover_sessions::table
        .filter(cover_sessions::status.eq(SessionStatus::Ended.as_str()))
        .filter(cover_sessions::ended_at.lt(ended_before))
        .order((cover_sessions::ended_at.asc(), cover_sessions::id.asc()))
        .limit(limit.max(0))
        .select(cover_sessions::id)
        .load(conn)
        .await?)
}

/// Every session on cover now, oldest first (for the payments app's overdraft review). Reads
/// only.
pub async fn active_sessions(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<CoverSession>, CoverError> {
    cover_sessions::table
        .filter(cover_sessions::status.eq(SessionStatus::Active.as_str()))
        .order((cover_sessions::started_at.asc(), cover_sessions::id.asc()))
        .select(SessionRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(CoverSession::try_from)
        .collect()
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
