//! The outbox relay: moves committed, due outbox rows into their Redis queues.
//!
//! Safe with many `work` processes: rows are taken with `FOR UPDATE SKIP LOCKED`, so each pass
//! of each relay gets a disjoint batch. A push that fails leaves its row `queued`; the row is
//! taken again after `jobs.requeue_after_secs`, and the worker's claim makes repeats harmless.
//!
//! Rows of a type no handler is registered for are not taken. Once such a row has been due for
//! longer than `jobs.stalled_after_secs` (time for a rolling deploy to bring up a process that
//! knows the type) the relay dead-letters it with the reason "no handler registered …", so it
//! shows among the dead letters for ops instead of waiting unseen. This assumes every `work`
//! process runs the full registry, as `shiftcover work` does.

use crate::runtime::QueuedJob;
use apalis::prelude::TaskSink;
use apalis_redis::RedisStorage;
use shared::core::Core;
use shared::outbox;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most rows of unknown types dead-lettered in one sweep.
const UNKNOWN_SWEEP_BATCH: i64 = 100;

/// Runs until `stop` turns true.
pub async fn run(
    core: Core,
    job_types: Vec<&'static str>,
    mut storages: BTreeMap<String, RedisStorage<QueuedJob>>,
    mut stop: watch::Receiver<bool>,
) {
    let idle = Duration::from_millis(core.settings.jobs.relay_idle_ms);
    let grace_secs = core.settings.jobs.stalled_after_secs;
    let sweep_every =
        Duration::from_millis(u64::try_from(grace_secs.saturating_mul(500)).unwrap_or(u64::MAX))
            .clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut last_sweep: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        if last_sweep.is_none_or(|at| at.elapsed() >= sweep_every) {
            last_sweep = Some(Instant::now());
            if let Err(e) = dead_letter_unknown(&core, &job_types, grace_secs).await {
                tracing::warn!(error = %format!("{e:#}"), "sweep for jobs without a handler failed");
            }
        }
        let moved = match pass(&core, &job_types, &mut storages).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "outbox relay pass failed");
                0
            }
        };
        if moved == 0 {
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// Dead-letters due rows of types no handler is registered for (see the module docs); returns
/// how many.
pub async fn dead_letter_unknown(
    core: &Core,
    job_types: &[&str],
    grace_secs: i64,
) -> anyhow::Result<usize> {
    let mut conn = core.pool.get().await?;
    let dead =
        outbox::dead_letter_unknown_types(&mut conn, job_types, grace_secs, UNKNOWN_SWEEP_BATCH)
            .await?;
    for job in &dead {
        let reason = outbox::no_handler_reason(&job.job_type);
        tracing::error!(job_id = %job.id, job_type = %job.job_type, "job dead-lettered: {reason}");
        sentry::capture_message(
            &format!("job {} dead-lettered: {reason}", job.job_type),
            sentry::Level::Error,
        );
    }
    Ok(dead.len())
}

/// One pass: returns how many rows were pushed.
pub async fn pass(
    core: &Core,
    job_types: &[&str],
    storages: &mut BTreeMap<String, RedisStorage<QueuedJob>>,
) -> anyhow::Result<usize> {
    let jobs = core.settings.jobs.clone();
    let mut conn = core.pool.get().await?;
    let due = outbox::take_due(
        &mut conn,
        job_types,
        jobs.relay_batch,
        jobs.requeue_after_secs,
        jobs.stalled_after_secs,
    )
    .await?;
    drop(conn);
    let mut pushed = 0;
    for job in due {
        let Some(storage) = storages.get_mut(&job.queue) else {
            tracing::error!(job_id = %job.id, queue = %job.queue, "job names a queue this process does not run");
            continue;
        };
        match storage
            .push(QueuedJob {
                id: job.id,
                job_type: job.job_type.clone(),
            })
            .await
        {
            Ok(()) => pushed += 1,
            Err(e) => {
                tracing::warn!(job_id = %job.id, error = %e, "push to redis failed; the job will be sent again");
                break;
            }
        }
    }
    Ok(pushed)
}
