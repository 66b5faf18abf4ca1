//! Which cover session, if any, covered a vehicle at the time of a loss.
//!
//! A session covers the half-open interval `[started_at, end)`, where `end` is when it ended, or,
//! for one still running, its scheduled or maximum end. A partner-driven session's end already
//! includes the gap rule and tail cover (the partners app schedules it at "work stopped + gap +
//! tail"), so a loss in the gap or the tail finds the session; this module says which part of
//! the session it fell in, from the session's product version:
//! `[end − tail, end)` is tail cover, `[end − tail − gap, end − tail)` the gap rule.
//!
//! A driver's sessions never overlap (one active at a time, a backdated start never crosses the
//! previous end), so the session that started last at or before the time of loss is the only
//! candidate. When it covers that time but for another vehicle, the claim is uncovered for this
//! vehicle, and says so.

use crate::error::ClaimsError;
use accounts::{DriverId, VehicleId};
use chrono::{DateTime, Duration, Utc};
use cover::{CoverSession, EndReason, SessionFilter, SessionSource};
use diesel_async::AsyncPgConnection;
use serde::Serialize;

/// How far on either side of the time of loss the nearest session is looked for.
pub const NEAREST_WINDOW_DAYS: i64 = 7;
/// Sessions read per page while looking.
const PAGE: i64 = 50;
/// Pages read at most on each side.
const MAX_PAGES: usize = 10;

/// Which part of a session covered the time of loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverBasis {
    /// While the driver was working (or on cover they started themselves).
    Working,
    /// After work stopped, within the partner's gap rule.
    GapRule,
    /// Within the tail cover after the gap.
    TailCover,
}

impl CoverBasis {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CoverBasis::Working => "working",
            CoverBasis::GapRule => "gap_rule",
            CoverBasis::TailCover => "tail_cover",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, ClaimsError> {
        match s {
            "working" => Ok(CoverBasis::Working),
            "gap_rule" => Ok(CoverBasis::GapRule),
            "tail_cover" => Ok(CoverBasis::TailCover),
            other => Err(anyhow::anyhow!("unknown cover basis {other:?}").into()),
        }
    }
}

/// Why a loss was not covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoCoverReason {
    /// No session of the driver covered that time.
    NoSession,
    /// The driver was on cover then, but for another vehicle.
    OtherVehicle,
}

impl NoCoverReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoCoverReason::NoSession => "no_session",
            NoCoverReason::OtherVehicle => "other_vehicle",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, ClaimsError> {
        match s {
            "no_session" => Ok(NoCoverReason::NoSession),
            "other_vehicle" => Ok(NoCoverReason::OtherVehicle),
            other => Err(anyhow::anyhow!("unknown no-cover reason {other:?}").into()),
        }
    }
}

/// The answer to "was this vehicle covered at that time?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoverAtLoss {
    /// Covered, by this session, on this basis.
    Covered {
        /// The session.
        session: CoverSession,
        /// Which part of it.
        basis: CoverBasis,
    },
    /// Not covered.
    NotCovered {
        /// Why.
        reason: NoCoverReason,
        /// The vehicle's session nearest to the time (within [`NEAREST_WINDOW_DAYS`]), if any.
        nearest: Option<CoverSession>,
    },
}

/// The time cover of `session` ends (exclusive).
pub fn cover_end(session: &CoverSession) -> DateTime<Utc> {
    session.covered_until()
}

/// Whether `session` covers `at`.
pub fn covers(session: &CoverSession, at: DateTime<Utc>) -> bool {
    session.started_at <= at && at < cover_end(session)
}

/// Whether the session's end was set by a partner's rules (so its last minutes are the gap and
/// the tail).
fn ends_by_partner_rules(session: &CoverSession) -> bool {
    if !matches!(session.source, SessionSource::Partner { .. }) {
        return false;
    }
    match session.end_reason {
        Some(EndReason::GapRule) => true,
        Some(_) => false,
        None => session
            .scheduled_end_at
            .is_some_and(|s| s < session.max_end_at),
    }
}

/// Which part of `session` covered `at` (which it covers).
async fn basis_of(
    conn: &mut AsyncPgConnection,
    session: &CoverSession,
    at: DateTime<Utc>,
) -> Result<CoverBasis, ClaimsError> {
    if !ends_by_partner_rules(session) {
        return Ok(CoverBasis::Working);
    }
    let version = pricing::get_version(conn, session.product_version_id).await?;
    let gap = Duration::minutes(i64::from(version.terms.rules.gap_rule_minutes));
    let tail = Duration::minutes(i64::from(version.terms.rules.tail_cover_minutes));
    let end = cover_end(session);
    let tail_start = end - tail;
    let gap_start = tail_start - gap;
    Ok(if tail > Duration::zero() && at >= tail_start {
        CoverBasis::TailCover
    } else if gap > Duration::zero() && at >= gap_start {
        CoverBasis::GapRule
    } else {
        CoverBasis::Working
    })
}

/// The driver's sessions that started in `[from, to)`, newest first, at most
/// `MAX_PAGES × PAGE` of them.
async fn sessions_between(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
    stop: impl Fn(&CoverSession) -> bool,
) -> Result<Vec<CoverSession>, ClaimsError> {
    let filter = SessionFilter {
        from,
        to: Some(to),
        ..SessionFilter::default()
    };
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = cover::list_sessions(conn, driver_id, &filter, after.as_deref(), PAGE).await?;
        after = page.end_cursor().map(str::to_owned);
        let mut done = !page.has_next_page;
        for edge in page.edges {
            let hit = stop(&edge.node);
            out.push(edge.node);
            if hit {
                done = true;
                break;
            }
        }
        if done {
            break;
        }
    }
    Ok(out)
}

/// Whether `vehicle_id` of `driver_id` was covered at `at`, and by which session; when not, why,
/// and the vehicle's nearest session.
pub async fn cover_at_loss(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    vehicle_id: VehicleId,
    at: DateTime<Utc>,
) -> Result<CoverAtLoss, ClaimsError> {
    let window = Duration::days(NEAREST_WINDOW_DAYS);
    // Newest first, up to the first of this vehicle's sessions.
    let before = sessions_between(
        conn,
        driver_id,
        Some(at - window),
        at + Duration::microseconds(1),
        |s| s.vehicle_id == vehicle_id,
    )
    .await?;
    let candidate = before.first();
    if let Some(session) = candidate
        && covers(session, at)
        && session.vehicle_id == vehicle_id
    {
        let basis = basis_of(conn, session, at).await?;
        return Ok(CoverAtLoss::Covered {
            session: session.clone(),
            basis,
        });
    }
    let reason = match candidate {
        Some(s) if covers(s, at) => NoCoverReason::OtherVehicle,
        _ => NoCoverReason::NoSession,
    };
    let previous = before.into_iter().find(|s| s.vehicle_id == vehicle_id);
    let after = sessions_between(
        conn,
        driver_id,
        Some(at + Duration::microseconds(1)),
        at + window,
        |_| false,
    )
    .await?;
    // Newest first: the last of this vehicle's is the earliest after the loss.
    let next = after.into_iter().rev().find(|s| s.vehicle_id == vehicle_id);
    let nearest = match (previous, next) {
        (Some(p), Some(n)) => {
            if at - cover_end(&p) <= n.started_at - at {
                Some(p)
            } else {
                Some(n)
            }
        }
        (p, n) => p.or(n),
    };
    Ok(CoverAtLoss::NotCovered { reason, nearest })
}
