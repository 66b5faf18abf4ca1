//! The cover jobs: closing sessions past their deadline, and the charge every ending causes.
//!
//! - [`CloseDueSessions`]: a cron tick in `shiftcover work` enqueues one per minute (its key is
//!   the tick, so a tick enqueues once however many schedulers run); the handler ends the due
//!   sessions through the cover engine and completes the job in one transaction, so a lost claim
//!   undoes its work and a rerun finds nothing left to do.
//! - [`ChargeSession`]: enqueued by the engine in the transaction of every ending (see
//!   [`crate::engine::end_sessions`]), so no session ends without its charge on the way. The
//!   payments app runs it (it owns the wallet); the type name and key are stored on queued rows
//!   and never change.

use crate::ending::close_due_sessions;
use crate::ids::CoverSessionId;
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use shared::jobs::{JobContext, JobError};
use shared::outbox::Job;

/// Sessions one run ends at most; more wait for the next tick.
pub const DEFAULT_CLOSE_BATCH: i64 = 200;

/// End the sessions past their maximum length or a partner's scheduled end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseDueSessions {
    /// The scheduler tick that asked for the run (the job's identity).
    pub tick: DateTime<Utc>,
    /// Sessions to end at most in this run.
    pub limit: i64,
}

impl CloseDueSessions {
    /// The job of one scheduler tick, with the default batch.
    pub fn for_tick(tick: DateTime<Utc>) -> Self {
        Self {
            tick,
            limit: DEFAULT_CLOSE_BATCH,
        }
    }
}

impl Job for CloseDueSessions {
    const TYPE: &'static str = "CloseDueSessions";
    const QUEUE: &'static str = "cover";
    const MAX_ATTEMPTS: i32 = 3;

    fn idempotency_key(&self) -> String {
        format!("close_due_sessions:{}", self.tick.timestamp())
    }
}

/// Take one ended session's charge from the wallet (run by the payments app).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeSession {
    /// The session to charge.
    pub session_id: CoverSessionId,
}

impl Job for ChargeSession {
    const TYPE: &'static str = "ChargeSession";
    const QUEUE: &'static str = "payments";
    const MAX_ATTEMPTS: i32 = 8;

    fn idempotency_key(&self) -> String {
        format!("charge_session:{}", self.session_id)
    }
}

/// Ends the due sessions (as of the handler's clock, not the tick) and completes the job in one
/// transaction (each ending's charge job commits with it), then publishes the `Ended` events to
/// the drivers' live status (best effort).
pub async fn run_close_due_sessions(
    ctx: JobContext,
    job: CloseDueSessions,
) -> Result<(), JobError> {
    let mut conn = ctx.pool.get().await?;
    let ctx = &ctx;
    let closed = conn
        .transaction::<_, JobError, _>(async |conn| {
            let closed = close_due_sessions(conn, &*ctx.clock, job.limit)
                .await
                .map_err(|e| JobError::Retry(anyhow::Error::new(e)))?;
            ctx.complete_in(conn).await?;
            Ok(closed)
        })
        .await?;
    if closed.failed > 0 {
        tracing::warn!(
            failed = closed.failed,
            "some due cover sessions could not be closed"
        );
    }
    tracing::info!(closed = closed.sessions.len(), "due cover sessions closed");
    if !closed.events.is_empty() {
        match shared::redis_conn::connect(&ctx.settings.redis).await {
            Ok(mut redis) => {
                crate::events::publish_cover_events(
                    &mut redis,
                    &ctx.settings.redis.key_prefix,
                    &closed.events,
                )
                .await;
            }
            Err(e) => tracing::warn!(error = %e, "cover events of closed sessions not published"),
        }
    }
    Ok(())
}
