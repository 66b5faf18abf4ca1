//! The cover job: closing sessions past their deadline.
//!
//! A cron tick in `shiftcover work` enqueues one [`CloseDueSessions`] per minute (its key is the
//! tick, so a tick enqueues once however many schedulers run); the handler ends the due sessions
//! and completes the job in one transaction, so a lost claim undoes its work and a rerun finds
//! nothing left to do.

use crate::ending::{ClosedSessions, close_due_sessions};
use crate::events::CoverEvent;
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
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

/// What [`run_close_due_sessions`] runs on the sessions it ended, inside its transaction.
pub type AfterClose<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), JobError>> + Send + 'c>>;

/// Ends the due sessions (as of the handler's clock, not the tick), runs `then` on them, and
/// completes the job, all in one transaction: what must follow an end (the payments side queues
/// each session's charge) commits with it or not at all. Returns the `Ended` events, which the
/// caller publishes (see [`crate::events::publish_cover_events`]) — they are committed once this
/// returns.
///
/// The cover crate knows nothing of payments, so the job is registered by the process that does
/// (`shiftcover work`), with a `then` that queues the charges.
pub async fn run_close_due_sessions<F>(
    ctx: JobContext,
    job: CloseDueSessions,
    then: F,
) -> Result<Vec<CoverEvent>, JobError>
where
    F: for<'c> Fn(&'c mut AsyncPgConnection, &'c ClosedSessions) -> AfterClose<'c> + Send + Sync,
{
    let mut conn = ctx.pool.get().await?;
    let ctx = &ctx;
    let then = &then;
    let closed = conn
        .transaction::<_, JobError, _>(async |conn| {
            let closed = close_due_sessions(conn, &*ctx.clock, job.limit)
                .await
                .map_err(|e| JobError::Retry(anyhow::Error::new(e)))?;
            then(conn, &closed).await?;
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
    Ok(closed.events)
}
