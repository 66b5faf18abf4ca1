//! The overdraft limit, enforced on running sessions.
//!
//! A session that has started is never cut for payment before the wallet reaches
//! [`OVERDRAFT_LIMIT`] below zero: its charge is taken when it ends, and the wallet may go
//! negative to pay it. [`enforce_overdraft`] (the [`EnforceOverdraft`] job, every minute) looks
//! at every running session against its wallet's available balance (posted − holds other than
//! the session itself):
//!
//! - when the session's charge so far takes the wallet past [`WARNING_BP`] of the limit, the
//!   driver is texted once per session (cause `overdraft_warning:<session>`);
//! - when it would take the wallet past the limit and the automatic top-up cannot help (off, no
//!   card, waiting for the driver, or stuck longer than
//!   [`crate::auto_top_up::STUCK_AFTER_MINUTES`]), the session is ended through the cover engine
//!   (reason `overdraft_limit`), the driver's enrolments are suspended for lack of funds, and the
//!   driver is texted, all in one transaction. While an automatic top-up is on its way the
//!   session runs on.
//!
//! The end does not depend on when the job runs: cover ends at the end of the last minute the
//! wallet could pay for, and never before the event that left the wallet short (the latest
//! movement of the wallet, hold or failed top-up), so a late run ends the session where a
//! punctual one would have.

use crate::auto_top_up::Prospect;
use crate::env::PaymentsEnv;
use crate::error::PaymentsError;
use crate::holds::settled_available;
use crate::wallet::{OVERDRAFT_LIMIT, SUSPEND_REASON};
use accounts::{Actor, DriverId};
use chrono::{DateTime, Duration, Utc};
use cover::{CoverEvent, CoverSession, CoverSessionId, EndReason, EndRequest, EnrolmentStatus};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::{Deserialize, Serialize};
use shared::Money;
use shared::outbox::Job;

/// The share of [`OVERDRAFT_LIMIT`], in basis points, past which the driver is warned.
pub const WARNING_BP: i64 = 7_500;

/// The job that reviews every running session against its wallet (one per cron tick).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforceOverdraft {
    /// The scheduler tick that asked for the run (the job's identity).
    pub tick: DateTime<Utc>,
}

impl EnforceOverdraft {
    /// The job of one scheduler tick.
    pub fn for_tick(tick: DateTime<Utc>) -> Self {
        Self { tick }
    }
}

impl Job for EnforceOverdraft {
    const TYPE: &'static str = "EnforceOverdraft";
    const QUEUE: &'static str = "payments";
    const MAX_ATTEMPTS: i32 = 3;

    fn idempotency_key(&self) -> String {
        format!("enforce_overdraft:{}", self.tick.timestamp())
    }
}

/// What one review did.
#[derive(Debug, Default)]
pub struct OverdraftReview {
    /// Sessions past the warning line (their driver has been texted, once per session).
    pub warned: Vec<CoverSessionId>,
    /// Sessions ended at the limit.
    pub ended: Vec<CoverSessionId>,
    /// Automatic top-ups scheduled to save a session.
    pub topped_up: usize,
    /// Cover events to publish once committed.
    pub events: Vec<CoverEvent>,
}

/// The most a session's charge may reach before the wallet passes the limit, given what the
/// wallet has available without it.
fn headroom(available: Money) -> i64 {
    available.minor + OVERDRAFT_LIMIT.minor
}

/// The charge past which the driver is warned.
fn warning_line(available: Money) -> i64 {
    available.minor + OVERDRAFT_LIMIT.minor * WARNING_BP / 10_000
}

/// An upper bound of what the session can cost, read from the session alone: its locked hourly
/// rate over its whole maximum length (the minimum charge and per-minute billing never bill
/// more minutes than the session may last; the day cap only lowers it), plus a penny of
/// rounding. A wallet that covers it needs no pricing.
fn most_it_can_cost(session: &CoverSession) -> i64 {
    let minutes = (session.max_end_at - session.started_at)
        .num_minutes()
        .max(60);
    session.hourly_rate.minor.saturating_mul(minutes) / 60 + 1
}

/// Reviews every running session as of `now` (see the module documentation). Each session's
/// ending commits on its own; an error on one (pricing, the text, the ending) is logged and the
/// others go on. Errors: reading the running sessions or the wallets.
pub async fn enforce_overdraft(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
) -> Result<OverdraftReview, PaymentsError> {
    let now = env.clock.now();
    let sessions = cover::active_sessions(conn)
        .await
        .map_err(|e| anyhow::anyhow!("reading running sessions: {e}"))?;
    let drivers: Vec<DriverId> = sessions.iter().map(|s| s.driver_id).collect();
    let available = settled_available(conn, &drivers).await?;
    let mut review = OverdraftReview::default();
    for session in sessions {
        let Some(&funds) = available.get(&session.driver_id) else {
            continue;
        };
        if most_it_can_cost(&session) <= warning_line(funds) {
            continue;
        }
        // One session that cannot be priced or texted must not stop the review of the others.
        let so_far = match cover::preview_charge(conn, &session, now).await {
            Ok(charge) => charge.breakdown.total,
            Err(e) => {
                tracing::error!(session_id = %session.id, error = %e, "overdraft review: the session could not be priced");
                continue;
            }
        };
        if so_far.minor <= warning_line(funds) {
            continue;
        }
        if let Err(e) = warn(conn, env, &session, funds, so_far).await {
            tracing::error!(session_id = %session.id, error = %e, "overdraft review: the driver could not be warned");
        }
        review.warned.push(session.id);
        if so_far.minor <= headroom(funds) {
            continue;
        }
        match end_at_limit(conn, env, &session, now).await {
            Ok(Decision::Ended(events)) => {
                review.ended.push(session.id);
                review.events.extend(events);
            }
            Ok(Decision::ToppingUp) => review.topped_up += 1,
            Ok(Decision::Nothing) => {}
            Err(e) => {
                tracing::error!(session_id = %session.id, error = %e, "overdraft review of a session failed")
            }
        }
    }
    Ok(review)
}

/// Texts the driver that the session is taking the wallet towards the limit, once per session
/// (the notification's cause is the session).
async fn warn(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    session: &CoverSession,
    funds: Money,
    so_far: Money,
) -> Result<(), PaymentsError> {
    let driver = accounts::get_driver(conn, session.driver_id)
        .await
        .map_err(|e| anyhow::anyhow!("reading driver {}: {e}", session.driver_id))?;
    let after = Money {
        minor: funds.minor - so_far.minor,
        currency: funds.currency,
    };
    notifications::enqueue_notification(
        conn,
        notifications::NewNotification {
            cause: format!("overdraft_warning:{}", session.id),
            channel: notifications::Channel::Sms,
            template: notifications::Template::OverdraftWarning,
            recipient: driver.phone.as_str().to_owned(),
            driver_id: Some(session.driver_id.uuid()),
            vars: notifications::vars([
                ("balance", after.to_string()),
                ("limit", OVERDRAFT_LIMIT.to_string()),
                ("link", env.wallet_link()),
            ]),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("recording the overdraft warning: {e}"))?;
    tracing::info!(session_id = %session.id, driver_id = %session.driver_id, %after, "overdraft limit near");
    Ok(())
}

enum Decision {
    Ended(Vec<CoverEvent>),
    ToppingUp,
    Nothing,
}

/// Ends the session at the limit unless an automatic top-up can still pay, in one transaction
/// under the wallet's lock (the balance and holds are read again under it).
async fn end_at_limit(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    session: &CoverSession,
    now: DateTime<Utc>,
) -> Result<Decision, PaymentsError> {
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        crate::holds::lock_wallet(conn, session.driver_id).await?;
        let funds = settled_available(conn, &[session.driver_id])
            .await?
            .remove(&session.driver_id)
            .unwrap_or(Money::zero(session.hourly_rate.currency));
        let limit = headroom(funds);
        let so_far = cover::preview_charge(conn, session, now)
            .await
            .map_err(|e| anyhow::anyhow!("pricing session {}: {e}", session.id))?
            .breakdown
            .total;
        if so_far.minor <= limit {
            return Ok(Decision::Nothing);
        }
        let top_up = crate::auto_top_up::top_up_prospect(conn, env, session.driver_id).await?;
        let short_since = match top_up {
            Prospect::OnItsWay | Prospect::Scheduled => return Ok(Decision::ToppingUp),
            Prospect::CannotHelp { since } => since,
        };
        let short_since = [short_since, last_wallet_change(conn, session.driver_id).await?]
            .into_iter()
            .flatten()
            .max();
        let paid_until = last_affordable_minute(conn, session, limit, now).await?;
        let at = match short_since {
            Some(t) => paid_until.max(t),
            None => paid_until,
        }
        .clamp(session.started_at, now);
        let ended = cover::end_sessions(
            conn,
            env.clock.as_ref(),
            &[EndRequest {
                session_id: session.id,
                driver_id: None,
                at,
                reason: EndReason::OverdraftLimit,
                actor: Some(Actor::System),
            }],
        )
        .await
        .map_err(|e| anyhow::anyhow!("ending session {}: {e}", session.id))?;
        let ended = match cover::engine::only(Ok(ended)) {
            Ok(ended) => ended,
            // Ended meanwhile by someone else: nothing to do.
            Err(cover::CoverError::SessionAlreadyEnded) => return Ok(Decision::Nothing),
            Err(e) => return Err(anyhow::anyhow!("ending session {}: {e}", session.id).into()),
        };
        let mut events = ended.events;
        events.extend(suspend_enrolments(conn, env, session.driver_id).await?);
        tell_driver_cover_ended(conn, env, session).await?;
        tracing::warn!(session_id = %session.id, driver_id = %session.driver_id, ended_at = %at, charge = %so_far, "cover ended at the overdraft limit");
        Ok(Decision::Ended(events))
    })
    .await
}

/// The end of the last whole minute of the session whose charge stays within `limit` (the
/// session's start when even its minimum charge does not), found by bisection over the minutes
/// between its start and `now`: the charge never falls as the session gets longer.
async fn last_affordable_minute(
    conn: &mut AsyncPgConnection,
    session: &CoverSession,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, PaymentsError> {
    let at = |minutes: i64| session.started_at + Duration::minutes(minutes);
    let mut low = 0_i64;
    let mut high = (now - session.started_at).num_minutes().max(0);
    let charge_at = async |conn: &mut AsyncPgConnection, minutes: i64| {
        cover::preview_charge(conn, session, at(minutes))
            .await
            .map(|c| c.breakdown.total.minor)
            .map_err(|e| anyhow::anyhow!("pricing session {}: {e}", session.id))
    };
    if charge_at(conn, low).await? > limit {
        return Ok(session.started_at);
    }
    // Invariant: the charge at `low` minutes is within the limit; find the largest such.
    while low < high {
        let mid = low + (high - low + 1) / 2;
        if charge_at(conn, mid).await? <= limit {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    Ok(at(low))
}

/// When the driver's wallet last moved (a posting), if ever.
async fn last_wallet_change(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Option<DateTime<Utc>>, PaymentsError> {
    let page = crate::history::wallet_history(conn, driver_id, None, 1).await?;
    Ok(page.entries.first().map(|e| e.at))
}

/// Suspends the driver's active enrolments for lack of funds; returns their events.
async fn suspend_enrolments(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
) -> Result<Vec<CoverEvent>, PaymentsError> {
    let enrolments = cover::list_enrolments(conn, driver_id)
        .await
        .map_err(|e| anyhow::anyhow!("listing enrolments: {e}"))?;
    let mut events = Vec::new();
    for enrolment in enrolments
        .iter()
        .filter(|e| e.status == EnrolmentStatus::Active)
    {
        let changed = cover::suspend(
            conn,
            env.clock.as_ref(),
            enrolment.id,
            SUSPEND_REASON,
            Actor::System,
        )
        .await
        .map_err(|e| anyhow::anyhow!("suspending enrolment {}: {e}", enrolment.id))?;
        events.extend(changed.events);
    }
    Ok(events)
}

async fn tell_driver_cover_ended(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    session: &CoverSession,
) -> Result<(), PaymentsError> {
    let driver = accounts::get_driver(conn, session.driver_id)
        .await
        .map_err(|e| anyhow::anyhow!("reading driver {}: {e}", session.driver_id))?;
    notifications::enqueue_notification(
        conn,
        notifications::NewNotification {
            cause: format!("cover_ended_overdraft:{}", session.id),
            channel: notifications::Channel::Sms,
            template: notifications::Template::CoverEndedOverdraft,
            recipient: driver.phone.as_str().to_owned(),
            driver_id: Some(session.driver_id.uuid()),
            vars: notifications::vars([
                ("certificate", session.certificate_number.clone()),
                ("limit", OVERDRAFT_LIMIT.to_string()),
                ("link", env.wallet_link()),
            ]),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("recording the cover-ended text: {e}"))?;
    Ok(())
}
