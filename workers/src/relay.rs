//! The outbox relay: moves committed, due outbox rows into their Redis queues.
//!
//! Safe with many `work` processes: rows are taken with `FOR UPDATE SKIP LOCKED`, so each pass
//! of each relay gets a disjoint batch. A push that fails leaves its row `queued`; the row is
//! taken again after `jobs.requeue_after_secs`, and the worker's claim makes repeats harmless.

use crate::runtime::QueuedJob;
use apalis::prelude::TaskSink;
use apalis_redis::RedisStorage;
use shared::core::Core;
use shared::outbox;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

/// Runs until `stop` turns true.
pub async fn run(
    core: Core,
    job_types: Vec<&'static str>,
    mut storages: BTreeMap<String, RedisStorage<QueuedJob>>,
    mut stop: watch::Receiver<bool>,
) {
    let idle = Duration::from_millis(core.settings.jobs.relay_idle_ms);
    loop {
        if *stop.borrow() {
            return;
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
