//! Cover sessions from a partner's events: (re)computing them from a driver's ordered event
//! stream, telling the partner when they start and end, and answering "is this driver covered?".
//!
//! Invariants:
//! - the sessions of a link follow the working periods of its accepted events, read in
//!   `occurred_at` order ([`crate::stream::work_periods`]) however late or out of order they
//!   arrived: a new period starts a session (backdated to the period's start), a late earlier
//!   event moves an active session's start back, and a known end schedules the session's end —
//!   or ends it at once when that time has passed;
//! - a session is started with the idempotency key `partner:<link>:<period start>`, so computing
//!   the same stream twice starts nothing twice;
//! - a session that already ended is never reopened: if work turns out to have gone on past an
//!   end set by the rules (gap rule, maximum length), a continuation session covers the rest (an
//!   end by the driver or ops stands), and a late event before its start is logged for ops
//!   (`partners.session_restatement_needed`);
//! - the partner gets one `cover.started` and one `cover.ended` per session, and one
//!   `cover.not_covered` per period the driver cannot be covered for, each written in the
//!   transaction of the change it reports (the `cover.ended` of a session ended elsewhere — the
//!   gap rule's cron, the maximum length — by [`notify_ended_sessions`]).

use crate::error::PartnersError;
use crate::ids::LinkId;
use crate::links::{LinkRow, resolve_link};
use crate::schema::{partner_driver_links, partner_sessions, partner_shift_rules, shift_events};
use crate::scope::PartnerScope;
use crate::stream::{CoverStartsOn, ShiftEventKind, StreamRules, WorkPeriod, work_periods};
use crate::support::{audit, clean_text};
use crate::webhooks::{EventType, enqueue_event};
use accounts::{Actor, PartnerId, VehicleType};
use chrono::{DateTime, Duration, Utc};
use cover::{
    CoverError, CoverEvent, CoverSession, CoverSessionId, EndReason, FundsCheck, SessionFilter,
    SessionSource, StartRequest,
};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::Clock;
use shared::settings::{CoverSettings, Settings};
use std::collections::HashSet;

/// How far back a link's events are read when its sessions are recomputed (events older than
/// a day are refused, so two days see every period a new event can change).
pub const RECOMPUTE_WINDOW_HOURS: i64 = 48;
/// The gap rule used when the driver has no product to read it from.
pub const DEFAULT_GAP_MINUTES: i64 = 10;

/// What the stream of a period gave for cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeriodOutcome {
    /// Covered by these sessions of ours (a continuation after an ended one makes two).
    Covered(Vec<CoverSession>),
    /// The driver cannot be covered: the code says why.
    NotCovered(String),
    /// The driver is on cover already by another source (their own start, another partner).
    CoveredElsewhere,
}

/// How a partner's events start cover.
pub async fn get_cover_start_rule(
    conn: &mut AsyncPgConnection,
    partner_id: PartnerId,
) -> Result<CoverStartsOn, PartnersError> {
    let stored: Option<String> = partner_shift_rules::table
        .find(partner_id)
        .select(partner_shift_rules::cover_starts_on)
        .first(conn)
        .await
        .optional()?;
    Ok(match stored {
        Some(s) => CoverStartsOn::parse(&s)?,
        None => CoverStartsOn::default(),
    })
}

/// Sets how a partner's events start cover (an ops setting). Applies to periods computed from
/// now on.
pub async fn set_cover_start_rule(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    partner_id: PartnerId,
    starts_on: CoverStartsOn,
) -> Result<(), PartnersError> {
    let now = clock.now();
    conn.transaction::<_, PartnersError, _>(async |conn| {
        diesel::insert_into(partner_shift_rules::table)
            .values((
                partner_shift_rules::partner_id.eq(partner_id),
                partner_shift_rules::cover_starts_on.eq(starts_on.as_str()),
                partner_shift_rules::updated_at.eq(now),
            ))
            .on_conflict(partner_shift_rules::partner_id)
            .do_update()
            .set((
                partner_shift_rules::cover_starts_on.eq(starts_on.as_str()),
                partner_shift_rules::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        audit(
            conn,
            actor,
            "partners.cover_start_rule_set",
            "partner",
            partner_id.to_string(),
            serde_json::json!({ "cover_starts_on": starts_on.as_str() }),
        )
        .await?;
        Ok(())
    })
    .await
}

/// The gap and tail of the product the driver would be covered by: the published version of
/// their best enrolment; the defaults when they have none.
async fn gap_and_tail(
    conn: &mut AsyncPgConnection,
    driver_id: accounts::DriverId,
) -> Result<(Duration, Duration), PartnersError> {
    let rank = |s: cover::EnrolmentStatus| match s {
        cover::EnrolmentStatus::Active => 0,
        cover::EnrolmentStatus::Pending => 1,
        cover::EnrolmentStatus::Suspended => 2,
        cover::EnrolmentStatus::Cancelled => 3,
    };
    let mut enrolments = cover::list_enrolments(conn, driver_id).await?;
    enrolments.retain(|e| e.status != cover::EnrolmentStatus::Cancelled);
    enrolments.sort_by_key(|e| rank(e.status));
    let default = (Duration::minutes(DEFAULT_GAP_MINUTES), Duration::zero());
    let Some(enrolment) = <[_]>::first(&enrolments) else {
        return Ok(default);
    };
    match pricing::get_published(conn, enrolment.product_id).await {
        Ok(version) => Ok((
            Duration::minutes(i64::from(version.terms.rules.gap_rule_minutes)),
            Duration::minutes(i64::from(version.terms.rules.tail_cover_minutes)),
        )),
        Err(pricing::PricingError::Database(e)) => Err(e.into()),
        Err(_) => Ok(default),
    }
}

#[derive(Debug, Clone, Queryable)]
struct StreamRow {
    id: i64,
    occurred_at: DateTime<Utc>,
    kind: String,
    vehicle_type: String,
    reference: Option<String>,
}

/// The vehicle a period covers: the driver's vehicle of the reported type, the enrolment's own
/// vehicle first.
async fn vehicle_for(
    conn: &mut AsyncPgConnection,
    driver_id: accounts::DriverId,
    vehicle_type: VehicleType,
) -> Result<Option<accounts::VehicleId>, PartnersError> {
    let vehicles = accounts::list_vehicles(conn, driver_id).await?;
    let enrolled: Vec<accounts::VehicleId> = cover::list_enrolments(conn, driver_id)
        .await?
        .into_iter()
        .filter(|e| e.status != cover::EnrolmentStatus::Cancelled)
        .map(|e| e.vehicle_id)
        .collect();
    let of_type: Vec<&accounts::Vehicle> = vehicles
        .iter()
        .filter(|v| v.vehicle_type == vehicle_type)
        .collect();
    Ok(of_type
        .iter()
        .find(|v| enrolled.contains(&v.id))
        .or(<[_]>::first(&of_type))
        .map(|v| v.id))
}

fn session_payload(session: &CoverSession, link: &LinkRow) -> serde_json::Value {
    serde_json::json!({
        "session_id": session.id.to_string(),
        "external_driver_id": link.external_driver_id,
        "certificate_number": session.certificate_number,
        "started_at": session.started_at,
        "covered_until": session.covered_until(),
        "ended_at": session.ended_at,
        "end_reason": session.end_reason.map(|r| r.as_str()),
    })
}

fn scope_of(link: &LinkRow) -> PartnerScope {
    PartnerScope {
        partner_id: link.partner_id,
        test_mode: link.test_mode,
    }
}

/// Starts the session of a period at `start` (never later than now) through the cover engine;
/// `until` is the period's end when it is over (nothing starts when the driver's cover already
/// reached it).
#[allow(clippy::too_many_arguments)]
async fn start_for_period(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    settings: &CoverSettings,
    funds: &dyn FundsCheck,
    link: &LinkRow,
    start: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    vehicle_type: VehicleType,
    reference: Option<String>,
    events: &mut Vec<CoverEvent>,
) -> Result<Result<CoverSession, PeriodOutcome>, PartnersError> {
    let now = clock.now();
    let start = start.min(now);
    let Some(vehicle_id) = vehicle_for(conn, link.driver_id, vehicle_type).await? else {
        return Ok(Err(PeriodOutcome::NotCovered("NO_MATCHING_VEHICLE".into())));
    };
    let request = StartRequest {
        driver_id: link.driver_id,
        vehicle_id,
        product_id: None,
        quote_id: None,
        idempotency_key: format!("partner:{}:{}", link.id, start.timestamp_micros()),
        source: SessionSource::Partner {
            partner_id: link.partner_id,
            reference: reference.and_then(|r| clean_text(&r).map(str::to_owned)),
        },
        at: start,
        until,
    };
    let started =
        cover::start_sessions(conn, clock, settings, funds, std::slice::from_ref(&request))
            .await?
            .pop()
            .unwrap_or_else(|| Err(anyhow::anyhow!("no answer for the start").into()));
    match started {
        Ok(started) => {
            events.extend(started.events);
            let session = started.session;
            let inserted = diesel::insert_into(partner_sessions::table)
                .values((
                    partner_sessions::session_id.eq(session.id),
                    partner_sessions::partner_id.eq(link.partner_id),
                    partner_sessions::link_id.eq(link.id),
                    partner_sessions::started_at.eq(session.started_at),
                    partner_sessions::created_at.eq(now),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if inserted == 1 {
                enqueue_event(
                    conn,
                    clock,
                    scope_of(link),
                    EventType::CoverStarted,
                    &format!("cover.started:{}", session.id),
                    session_payload(&session, link),
                )
                .await?;
            }
            Ok(Ok(session))
        }
        Err(CoverError::AlreadyOnCover) => Ok(Err(PeriodOutcome::CoveredElsewhere)),
        Err(e) => match e.user_error() {
            Some(user) => Ok(Err(PeriodOutcome::NotCovered(user.code.to_owned()))),
            None => Err(e.into()),
        },
    }
}

/// Makes an active session end when the period does: scheduled, or at once when that time has
/// passed (the session then ends at the scheduled time, by the gap rule).
async fn apply_end(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    link: &LinkRow,
    session: CoverSession,
    end: Option<DateTime<Utc>>,
    events: &mut Vec<CoverEvent>,
) -> Result<CoverSession, PartnersError> {
    let actor = Actor::Partner(link.partner_id);
    let now = clock.now();
    let mut session = session;
    match end {
        None => {
            if session.scheduled_end_at.is_some() {
                session = cover::schedule_session_end(conn, clock, session.id, None, actor)
                    .await?
                    .session;
            }
        }
        Some(end) => {
            let target = end.clamp(session.started_at, session.max_end_at);
            let id = session.id;
            // The session may have ended since it was read (the gap rule's cron, the driver, a
            // concurrent batch of this link): that end stands, and is what is reported.
            let ended_meanwhile = async |conn: &mut AsyncPgConnection, e: CoverError| match e {
                CoverError::SessionAlreadyEnded => Ok(cover::get_session(conn, id).await?),
                other => Err(PartnersError::from(other)),
            };
            if session.scheduled_end_at != Some(target) {
                session = match cover::schedule_session_end(conn, clock, id, Some(end), actor).await
                {
                    Ok(scheduled) => {
                        events.extend(scheduled.events);
                        scheduled.session
                    }
                    Err(e) => ended_meanwhile(conn, e).await?,
                };
            }
            if end <= now && session.is_active() {
                session =
                    match cover::end_session_as(conn, clock, id, EndReason::Partner, actor).await {
                        Ok(ended) => {
                            events.extend(ended.events);
                            ended.session
                        }
                        Err(e) => ended_meanwhile(conn, e).await?,
                    };
            }
        }
    }
    if !session.is_active() {
        notify_ended(conn, clock, link, &session).await?;
    }
    Ok(session)
}

/// Tells the partner a session of theirs ended, once.
async fn notify_ended(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    link: &LinkRow,
    session: &CoverSession,
) -> Result<(), PartnersError> {
    let claimed = diesel::update(partner_sessions::table.find(session.id))
        .filter(partner_sessions::ended_notified_at.is_null())
        .set(partner_sessions::ended_notified_at.eq(clock.now()))
        .execute(conn)
        .await?;
    if claimed == 1 {
        enqueue_event(
            conn,
            clock,
            scope_of(link),
            EventType::CoverEnded,
            &format!("cover.ended:{}", session.id),
            session_payload(session, link),
        )
        .await?;
    }
    Ok(())
}

async fn restatement_needed(
    conn: &mut AsyncPgConnection,
    link: &LinkRow,
    session: &CoverSession,
    period: &WorkPeriod,
) -> Result<(), PartnersError> {
    tracing::warn!(session_id = %session.id, link_id = %link.id, "late partner event before an ended session: not restated");
    audit(
        conn,
        Actor::System,
        "partners.session_restatement_needed",
        "cover_session",
        session.id.to_string(),
        serde_json::json!({
            "link_id": link.id.to_string(),
            "period_start": period.start,
            "period_end": period.end,
            "session_started_at": session.started_at,
            "session_ended_at": session.ended_at,
        }),
    )
    .await?;
    Ok(())
}

/// Brings one period's sessions in line with it.
#[allow(clippy::too_many_arguments)]
async fn reconcile_period(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    settings: &CoverSettings,
    funds: &dyn FundsCheck,
    link: &LinkRow,
    period: &WorkPeriod,
    known: &[CoverSession],
    vehicle_type: VehicleType,
    reference: Option<String>,
    events: &mut Vec<CoverEvent>,
) -> Result<PeriodOutcome, PartnersError> {
    let far = DateTime::<Utc>::MAX_UTC;
    let now = clock.now();
    let period_end = period.end.unwrap_or(far);
    // Events apply to the state as it was at their own time: an active session whose deadline
    // (a gap-rule end, its maximum length) has passed covered nothing after it, whether or not
    // the clock's job has closed it yet; a later period never reopens it. One its own period
    // now runs past that end is moved on by `apply_end`.
    let mut overlapping: Vec<CoverSession> = known
        .iter()
        .filter(|s| {
            let s_end = match (s.is_active(), s.ended_at) {
                (true, _) if s.covered_until() <= now => s.covered_until(),
                (true, _) => far,
                (false, end) => end.unwrap_or(far),
            };
            s.started_at <= period_end && s_end > period.start
        })
        .cloned()
        .collect();
    overlapping.sort_by_key(|s| s.started_at);
    if overlapping.is_empty() {
        if period.end.is_some_and(|end| end <= period.start) {
            return Ok(PeriodOutcome::Covered(Vec::new()));
        }
        match start_for_period(
            conn,
            clock,
            settings,
            funds,
            link,
            period.start,
            period.end,
            vehicle_type,
            reference.clone(),
            events,
        )
        .await?
        {
            Ok(session) => {
                let session = apply_end(conn, clock, link, session, period.end, events).await?;
                overlapping.push(session);
            }
            Err(outcome) => return Ok(outcome),
        }
    } else {
        if let Some(first) = overlapping.first_mut()
            && period.start < first.started_at
        {
            if first.is_active() {
                *first = cover::backdate_session_start(
                    conn,
                    first.id,
                    period.start,
                    Actor::Partner(link.partner_id),
                )
                .await?;
            } else {
                let first = first.clone();
                restatement_needed(conn, link, &first, period).await?;
            }
        }
        if let Some(last) = overlapping.pop() {
            let last = if last.is_active() {
                apply_end(conn, clock, link, last, period.end, events).await?
            } else {
                last
            };
            overlapping.push(last);
        }
    }
    // Work went on after the last session ended by the rules (a late event showed more work,
    // or the session reached its maximum length): cover the rest, each session continuing
    // the one before. A driver, ops or a cancelled enrolment stopping cover is not overridden
    // by the partner's stream.
    while let Some(last) = overlapping.last()
        && !last.is_active()
        && matches!(
            last.end_reason,
            Some(EndReason::GapRule | EndReason::Partner | EndReason::MaxLength)
        )
    {
        let last_end = last.ended_at.unwrap_or(last.started_at);
        if period.end.is_some_and(|end| end <= last_end) || last_end >= now {
            break;
        }
        let Ok(session) = start_for_period(
            conn,
            clock,
            settings,
            funds,
            link,
            last_end,
            period.end,
            vehicle_type,
            reference.clone(),
            events,
        )
        .await?
        else {
            break;
        };
        let session = apply_end(conn, clock, link, session, period.end, events).await?;
        let progressed = session.is_active() || session.ended_at.is_some_and(|e| e > last_end);
        overlapping.push(session);
        if !progressed {
            break;
        }
    }
    Ok(PeriodOutcome::Covered(overlapping))
}

/// Recomputes the sessions of one link from its accepted events and records on each event what
/// it gave (covered by a session, not covered and why, or nothing). Runs in its own transaction
/// (a savepoint inside the caller's), holding the link's row lock, so two batches for one driver
/// are computed one after the other. Returns the cover events to publish once committed.
pub(crate) async fn recompute_link(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    settings: &CoverSettings,
    funds: &dyn FundsCheck,
    link_id: LinkId,
) -> Result<Vec<CoverEvent>, PartnersError> {
    let mut events = Vec::new();
    let events = &mut events;
    conn.transaction::<_, PartnersError, _>(async |conn| {
        let link: LinkRow = partner_driver_links::table
            .find(link_id)
            .select(LinkRow::as_select())
            .for_update()
            .first(conn)
            .await?;
        let now = clock.now();
        let since = now - Duration::hours(RECOMPUTE_WINDOW_HOURS);
        let rows: Vec<StreamRow> = shift_events::table
            .filter(shift_events::link_id.eq(link.id))
            .filter(shift_events::occurred_at.ge(since))
            .order((shift_events::occurred_at.asc(), shift_events::id.asc()))
            .select((
                shift_events::id,
                shift_events::occurred_at,
                shift_events::kind,
                shift_events::vehicle_type,
                shift_events::reference,
            ))
            .load(conn)
            .await?;
        if link.test_mode || link.unlinked_at.is_some() {
            // Sandbox events never start real cover; an unlinked driver's stay as recorded.
            return Ok(());
        }
        let mut stream = Vec::with_capacity(rows.len());
        for r in &rows {
            stream.push((r.occurred_at, r.kind.parse::<ShiftEventKind>()?));
        }
        let (gap, tail) = gap_and_tail(conn, link.driver_id).await?;
        let rules = StreamRules {
            starts_on: get_cover_start_rule(conn, link.partner_id).await?,
            gap,
            tail,
        };
        let periods = work_periods(&stream, rules);
        let known_ids: Vec<CoverSessionId> = partner_sessions::table
            .filter(partner_sessions::link_id.eq(link.id))
            .filter(
                partner_sessions::started_at
                    .ge(since - Duration::hours(24))
                    .or(partner_sessions::ended_notified_at.is_null()),
            )
            .select(partner_sessions::session_id)
            .load(conn)
            .await?;
        let mut known = cover::get_sessions(conn, &known_ids).await?;
        let mut outcomes: Vec<(WorkPeriod, PeriodOutcome)> = Vec::new();
        for period in &periods {
            // The vehicle and reference of the period's first event.
            let first = rows.iter().find(|r| r.occurred_at >= period.start);
            let vehicle_type: VehicleType = match first {
                Some(r) => r.vehicle_type.parse()?,
                None => VehicleType::Car,
            };
            let reference = first.and_then(|r| r.reference.clone());
            let outcome = reconcile_period(
                conn,
                clock,
                settings,
                funds,
                &link,
                period,
                &known,
                vehicle_type,
                reference,
                events,
            )
            .await?;
            match &outcome {
                PeriodOutcome::Covered(sessions) => {
                    for s in sessions {
                        known.retain(|k| k.id != s.id);
                        known.push(s.clone());
                    }
                }
                PeriodOutcome::NotCovered(code) => {
                    enqueue_event(
                        conn,
                        clock,
                        scope_of(&link),
                        EventType::CoverNotCovered,
                        &format!(
                            "cover.not_covered:{}:{}",
                            link.id,
                            period.start.timestamp_micros()
                        ),
                        serde_json::json!({
                            "external_driver_id": link.external_driver_id,
                            "reason": code,
                            "period_start": period.start,
                        }),
                    )
                    .await?;
                }
                PeriodOutcome::CoveredElsewhere => {}
            }
            outcomes.push((*period, outcome));
        }
        // A session of this link that no working period accounts for any more: a continuation
        // started while a period still looked open (its start replayed after the session
        // before had reached its maximum length), which the period's later end events closed
        // before it began. Nothing the partner reported covers its time, so it ends where it
        // began (it continues the session before it, so it costs nothing).
        let claimed: HashSet<CoverSessionId> = outcomes
            .iter()
            .flat_map(|(_, o)| match o {
                PeriodOutcome::Covered(sessions) => sessions.iter().map(|s| s.id).collect(),
                _ => Vec::new(),
            })
            .collect();
        let orphans: Vec<CoverSession> = known
            .iter()
            .filter(|s| {
                s.is_active()
                    && s.started_at >= since
                    && !claimed.contains(&s.id)
                    && !periods.iter().any(|p| p.contains(s.started_at))
            })
            .cloned()
            .collect();
        for orphan in orphans {
            let start = orphan.started_at;
            tracing::info!(session_id = %orphan.id, link_id = %link.id, "partner session outside every working period ended where it began");
            apply_end(conn, clock, &link, orphan, Some(start), events).await?;
        }
        for r in &rows {
            let found = outcomes.iter().find(|(p, _)| p.contains(r.occurred_at));
            let (result, code, session_id): (&str, Option<String>, Option<CoverSessionId>) =
                match found.map(|(_, o)| o) {
                    Some(PeriodOutcome::Covered(sessions)) => {
                        let session = sessions
                            .iter()
                            .rev()
                            .find(|s| s.started_at <= r.occurred_at)
                            .or(<[_]>::first(sessions));
                        match session {
                            Some(s) => ("covered", None, Some(s.id)),
                            None => ("recorded", None, None),
                        }
                    }
                    Some(PeriodOutcome::NotCovered(code)) => {
                        ("not_covered", Some(code.clone()), None)
                    }
                    Some(PeriodOutcome::CoveredElsewhere) | None => ("recorded", None, None),
                };
            diesel::update(shift_events::table.find(r.id))
                .set((
                    shift_events::result.eq(result),
                    shift_events::result_code.eq(code),
                    shift_events::session_id.eq(session_id),
                ))
                .execute(conn)
                .await?;
        }
        Ok(())
    })
    .await?;
    Ok(std::mem::take(events))
}

/// Sends `cover.ended` for partner sessions that ended without the partner being told yet (the
/// gap rule's cron, the maximum length, the driver or ops ended them), up to `limit` of them,
/// on the caller's connection. Returns how many were told. For the workers' cron.
pub async fn notify_ended_sessions(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    limit: i64,
) -> Result<usize, PartnersError> {
    let open: Vec<(CoverSessionId, LinkId)> = partner_sessions::table
        .filter(partner_sessions::ended_notified_at.is_null())
        .order(partner_sessions::created_at.asc())
        .limit(limit.max(0))
        .select((partner_sessions::session_id, partner_sessions::link_id))
        .load(conn)
        .await?;
    if open.is_empty() {
        return Ok(0);
    }
    let ids: Vec<CoverSessionId> = open.iter().map(|(s, _)| *s).collect();
    let sessions = cover::get_sessions(conn, &ids).await?;
    let mut told = 0;
    for session in sessions.iter().filter(|s| !s.is_active()) {
        let Some((_, link_id)) = open.iter().find(|(s, _)| *s == session.id) else {
            continue;
        };
        let link: LinkRow = partner_driver_links::table
            .find(*link_id)
            .select(LinkRow::as_select())
            .first(conn)
            .await?;
        notify_ended(conn, clock, &link, session).await?;
        told += 1;
    }
    Ok(told)
}

/// The answer to "is this driver covered at this time?" for a partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartnerCoverStatus {
    /// The partner's id for the driver.
    pub external_driver_id: String,
    /// The time asked about.
    pub at: DateTime<Utc>,
    /// Whether the driver is covered then.
    pub covered: bool,
    /// The session that covers them, when covered.
    pub session: Option<CoverSession>,
    /// Its certificate number.
    pub certificate_number: Option<String>,
    /// A signed proof-of-cover token for the session (anyone can verify it with the published
    /// key).
    pub proof_token: Option<String>,
}

/// Whether the partner's driver is covered at `at` (now when `None`), by any session: one the
/// partner's events started, another partner's, or the driver's own. Test-mode links are never
/// covered (the sandbox starts no real cover).
///
/// Errors: `INVALID_EXTERNAL_DRIVER_ID`, `UNKNOWN_DRIVER` (also another partner's driver: ids
/// are per partner), `NOT_LINKED`.
pub async fn partner_cover_status(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    settings: &Settings,
    scope: PartnerScope,
    external_driver_id: &str,
    at: Option<DateTime<Utc>>,
) -> Result<PartnerCoverStatus, PartnersError> {
    let external = clean_text(external_driver_id).ok_or(PartnersError::InvalidExternalDriverId)?;
    let link = resolve_link(conn, scope, external).await?;
    let now = clock.now();
    let at = at.unwrap_or(now);
    let mut answer = PartnerCoverStatus {
        external_driver_id: link.external_driver_id.clone(),
        at,
        covered: false,
        session: None,
        certificate_number: None,
        proof_token: None,
    };
    if link.test_mode {
        return Ok(answer);
    }
    let filter = SessionFilter {
        to: Some(at + Duration::microseconds(1)),
        ..SessionFilter::default()
    };
    let page = cover::list_sessions(conn, link.driver_id, &filter, None, 5).await?;
    let covering = page.edges.into_iter().map(|e| e.node).find(|s| {
        s.started_at <= at
            && if s.is_active() {
                at <= s.covered_until() && at <= now
            } else {
                s.ended_at.is_some_and(|end| at < end)
            }
    });
    let Some(session) = covering else {
        return Ok(answer);
    };
    let registration = accounts::get_vehicles(conn, &[session.vehicle_id])
        .await?
        .into_iter()
        .next()
        .and_then(|v| v.registration.map(|r| r.as_str().to_owned()));
    let key = cover::ProofKey::from_settings(&settings.cover)?;
    let token = key.sign_token(&cover::ProofClaims::for_session(
        &session,
        registration,
        clock.now(),
    ))?;
    answer.covered = true;
    answer.certificate_number = Some(session.certificate_number.clone());
    answer.proof_token = Some(token);
    answer.session = Some(session);
    Ok(answer)
}

/// One partner event behind a cover session, as recorded (for a driver's charge dispute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionShiftEvent {
    /// The partner that sent it.
    pub partner_id: PartnerId,
    /// The partner's id for the event.
    pub partner_event_id: String,
    /// What the partner reported.
    pub kind: ShiftEventKind,
    /// When it happened, by the partner's clock.
    pub occurred_at: DateTime<Utc>,
    /// When it reached us.
    pub received_at: DateTime<Utc>,
    /// The vehicle type the partner reported.
    pub vehicle_type: VehicleType,
    /// The partner's reference of the shift or job.
    pub reference: Option<String>,
}

/// The partner events recorded against a session (those whose working period it covers), in
/// the order they happened. Empty for a session the driver started.
pub async fn shift_events_for_session(
    conn: &mut AsyncPgConnection,
    session_id: CoverSessionId,
) -> Result<Vec<SessionShiftEvent>, PartnersError> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        PartnerId,
        String,
        String,
        DateTime<Utc>,
        DateTime<Utc>,
        String,
        Option<String>,
    )> = shift_events::table
        .filter(shift_events::session_id.eq(session_id))
        .order((shift_events::occurred_at.asc(), shift_events::id.asc()))
        .select((
            shift_events::partner_id,
            shift_events::partner_event_id,
            shift_events::kind,
            shift_events::occurred_at,
            shift_events::received_at,
            shift_events::vehicle_type,
            shift_events::reference,
        ))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(
            |(
                partner_id,
                partner_event_id,
                kind,
                occurred_at,
                received_at,
                vehicle_type,
                reference,
            )| {
                Ok(SessionShiftEvent {
                    partner_id,
                    partner_event_id,
                    kind: kind.parse()?,
                    occurred_at,
                    received_at,
                    vehicle_type: vehicle_type.parse()?,
                    reference,
                })
            },
        )
        .collect()
}
