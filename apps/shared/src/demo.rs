//! The demo job: proves the outbox → Redis → worker path end to end, and gives tests an effect
//! they can count. Each execution writes one `demo_pings` row (no unique constraint, on
//! purpose): exactly one row per enqueued ping shows the claim makes delivery exactly-once.

use crate::jobs::{JobContext, JobError};
use crate::outbox::Job;
use crate::schema::demo_pings;
use diesel::prelude::*;
use diesel_async::AsyncConnection;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};

/// Record a ping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DemoPing {
    /// Text to record.
    pub message: String,
    /// The caller's key: the same key enqueues once.
    pub key: String,
}

impl Job for DemoPing {
    const TYPE: &'static str = "DemoPing";
    const QUEUE: &'static str = "default";
    const MAX_ATTEMPTS: i32 = 3;

    fn idempotency_key(&self) -> String {
        self.key.clone()
    }
}

/// Writes the ping and completes the job in one transaction.
pub async fn run_demo_ping(ctx: JobContext, job: DemoPing) -> Result<(), JobError> {
    if job.message.starts_with("fail:") {
        return Err(JobError::Permanent(anyhow::anyhow!(
            "asked to fail: {}",
            job.message
        )));
    }
    let mut conn = ctx.pool.get().await?;
    let ctx = &ctx;
    let job = &job;
    conn.transaction::<_, JobError, _>(async |conn| {
        diesel::insert_into(demo_pings::table)
            .values((
                demo_pings::job_id.eq(ctx.job.id.uuid()),
                demo_pings::message.eq(&job.message),
                demo_pings::worker.eq(&*ctx.worker),
            ))
            .execute(conn)
            .await?;
        ctx.complete_in(conn).await
    })
    .await
}
