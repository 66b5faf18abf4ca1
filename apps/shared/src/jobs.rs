//! What a job handler receives and may return. Handlers live in the app that owns the effect
//! (`apps/<app>/src/jobs.rs`); the `workers` crate only registers and runs them.
//!
//! Contract for a handler:
//! - re-read current state by the ids in its payload; never trust a copy of state;
//! - claim its effect once: a guarded update (`… WHERE status = 'pending'`) or a unique row;
//! - for a purely database effect, write the effect and call [`JobContext::complete_in`] in one
//!   transaction, so the effect and the job's completion commit together or not at all.

use crate::clock::SharedClock;
use crate::db::DbPool;
use crate::outbox::{self, ClaimedJob};
use crate::settings::Settings;
use diesel_async::AsyncPgConnection;
use std::sync::Arc;

/// Everything a handler needs to run one attempt of one job.
#[derive(Clone)]
pub struct JobContext {
    /// The database.
    pub pool: DbPool,
    /// The claimed outbox row (id, attempt number).
    pub job: ClaimedJob,
    /// The name of the worker that holds the claim.
    pub worker: Arc<str>,
    /// "Now".
    pub clock: SharedClock,
    /// Process settings.
    pub settings: Arc<Settings>,
}

impl JobContext {
    /// Marks the job done with the caller's connection (inside the caller's transaction).
    /// Fails with [`JobError::ClaimLost`] when another worker has taken the job over, so that
    /// the caller's transaction rolls back and the effect is not written twice.
    pub async fn complete_in(&self, conn: &mut AsyncPgConnection) -> Result<(), JobError> {
        if outbox::complete(conn, &self.job, &self.worker).await? {
            Ok(())
        } else {
            Err(JobError::ClaimLost)
        }
    }
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("job", &self.job.id)
            .field("attempt", &self.job.attempts)
            .field("worker", &self.worker)
            .finish()
    }
}

/// How an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt after a backoff (a timeout, a 5xx, a lost connection).
    #[error("retryable: {0:#}")]
    Retry(anyhow::Error),
    /// Will fail the same way every time (a payload that no longer parses, a 4xx that says no):
    /// dead-letter now.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
    /// The job was handed to another worker while this one ran; nothing was committed.
    #[error("the claim on this job was lost")]
    ClaimLost,
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Retry(e)
    }
}

impl From<diesel::result::Error> for JobError {
    fn from(e: diesel::result::Error) -> Self {
        JobError::Retry(e.into())
    }
}

impl From<crate::db::PoolError> for JobError {
    fn from(e: crate::db::PoolError) -> Self {
        JobError::Retry(anyhow::anyhow!("database pool: {e}"))
    }
}
