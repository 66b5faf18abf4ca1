//! Runs the registered jobs: the relay, the cron scheduler, and one apalis worker per queue,
//! each restarted with a backoff whenever it ends on its own (Redis gone or restarted).

use crate::registry::Registry;
use anyhow::Context as _;
use apalis::prelude::*;
use apalis_redis::{Config as RedisQueueConfig, RedisStorage};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use shared::core::Core;
use shared::ids::JobId;
use shared::jobs::{JobContext, JobError};
use shared::outbox;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The message that travels through Redis: only the outbox row's id. The worker re-reads the rest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueuedJob {
    /// The outbox row.
    pub id: JobId,
    /// Its type, for logs.
    pub job_type: String,
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded.
    Done,
    /// Failed; another attempt is scheduled.
    Retrying,
    /// Failed its last attempt (or permanently); dead-lettered.
    Dead,
    /// Another worker holds it, or it was finished already: nothing to do.
    Skipped,
}

/// Runs one delivery of a job: claim, handle, record the outcome.
pub struct Executor {
    core: Core,
    registry: Registry,
    worker: Arc<str>,
}

impl Executor {
    /// An executor for this process.
    pub fn new(core: Core, registry: Registry, worker: impl Into<Arc<str>>) -> Self {
        Self {
            core,
            registry,
            worker: worker.into(),
        }
    }

    /// Claims and runs one job. Errors only when the database cannot be reached; the relay
    /// sends the job again later in that case.
    pub async fn execute(&self, msg: &QueuedJob) -> anyhow::Result<Outcome> {
        let mut conn = self.core.pool.get().await.context("database pool")?;
        let Some(claimed) = outbox::claim(&mut conn, msg.id, &self.worker).await? else {
            return Ok(Outcome::Skipped);
        };
        drop(conn);
        let Some(registered) = self.registry.jobs.get(claimed.job_type.as_str()).cloned() else {
            let mut conn = self.core.pool.get().await?;
            let reason = outbox::no_handler_reason(&claimed.job_type);
            outbox::fail(&mut conn, &claimed, &self.worker, &reason, None).await?;
            tracing::error!(job_id = %claimed.id, job_type = %claimed.job_type, "job dead-lettered: {reason}");
            return Ok(Outcome::Dead);
        };
        let policy = self.registry.policy(registered.queue);
        let ctx = JobContext {
            pool: self.core.pool.clone(),
            job: claimed.clone(),
            worker: self.worker.clone(),
            clock: self.core.clock.clone(),
            settings: self.core.settings.clone(),
        };
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(
            policy.timeout,
            (registered.handler)(ctx, claimed.payload.clone()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(JobError::Retry(anyhow::anyhow!(
                "timed out after {:?}",
                policy.timeout
            )))
        });
        let mut conn = self.core.pool.get().await.context("database pool")?;
        let outcome = match result {
            Ok(()) => {
                // A handler that completed inside its own transaction has already marked it done.
                outbox::complete(&mut conn, &claimed, &self.worker).await?;
                Outcome::Done
            }
            Err(JobError::ClaimLost) => {
                tracing::warn!(job_id = %claimed.id, "claim lost while running; another worker has it");
                Outcome::Skipped
            }
            Err(err) => {
                let permanent = matches!(err, JobError::Permanent(_));
                let last = claimed.attempts >= claimed.max_attempts;
                let retry_at = if permanent || last {
                    None
                } else {
                    let delay = policy.backoff(claimed.attempts + 1, rand::random::<f64>());
                    Some(Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default())
                };
                let message = err.to_string();
                outbox::fail(&mut conn, &claimed, &self.worker, &message, retry_at).await?;
                if retry_at.is_some() {
                    tracing::warn!(job_id = %claimed.id, job_type = %claimed.job_type, attempt = claimed.attempts, error = %message, "job failed; will retry");
                    Outcome::Retrying
                } else {
                    tracing::error!(job_id = %claimed.id, job_type = %claimed.job_type, attempt = claimed.attempts, error = %message, "job dead-lettered");
                    sentry::capture_message(
                        &format!("job {} dead-lettered: {message}", claimed.job_type),
                        sentry::Level::Error,
                    );
                    Outcome::Dead
                }
            }
        };
        tracing::info!(job_id = %claimed.id, job_type = %claimed.job_type, ?outcome, elapsed_ms = started.elapsed().as_millis() as u64, "job attempt finished");
        Ok(outcome)
    }
}

async fn handle(job: QueuedJob, exec: Data<Arc<Executor>>) -> Result<(), BoxDynError> {
    exec.execute(&job).await.map(|_| ()).map_err(|e| {
        tracing::warn!(job_id = %job.id, error = %format!("{e:#}"), "job delivery could not run; the relay will send it again");
        e.into()
    })
}

/// The Redis key of a queue, under the deployment's prefix.
pub fn queue_key(prefix: &str, queue: &str) -> String {
    shared::redis_conn::key(prefix, ["jobs", queue])
}

/// An idle worker polls on each heartbeat, so the heartbeat also bounds pick-up latency.
pub(crate) fn storage_config(prefix: &str, queue: &str) -> RedisQueueConfig {
    RedisQueueConfig::default()
        .queue(queue_key(prefix, queue))
        .heartbeat_interval(Duration::from_millis(250))
        // A worker silent for 5 s is taken as dead and its fetched jobs go back to the queue.
        .missed_heartbeats(20)
        .persist_results(false)
        .emit_events(false)
}

async fn connect_redis(core: &Core) -> redis::aio::ConnectionManager {
    let mut delay = Duration::from_millis(200);
    loop {
        match core.redis.conn().await {
            Ok(conn) => return conn,
            Err(e) => {
                tracing::warn!(error = %e, "redis unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Runs the relay, the cron scheduler and every queue's workers until `shutdown` resolves.
/// Refuses to start when the registry is inconsistent (see [`Registry::check`]).
pub async fn run<S>(core: Core, registry: Registry, shutdown: S) -> anyhow::Result<()>
where
    S: Future<Output = ()> + Send + 'static,
{
    registry.check()?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let worker_name: Arc<str> = format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
    .into();
    let conn = connect_redis(&core).await;
    let prefix = core.settings.redis.key_prefix.clone();

    let mut storages: BTreeMap<String, RedisStorage<QueuedJob>> = BTreeMap::new();
    for queue in registry.queue_names() {
        storages.insert(
            queue.to_owned(),
            RedisStorage::new(conn.clone()).with_config(storage_config(&prefix, queue)),
        );
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(crate::relay::run(
        core.clone(),
        registry.registered_types(),
        storages.clone(),
        stop_rx.clone(),
    ));
    let scheduler = tokio::spawn(
        crate::cron::Scheduler::new(
            core.clone(),
            registry.schedules().to_vec(),
            worker_name.clone(),
        )
        .run(stop_rx.clone()),
    );

    let exec = Arc::new(Executor::new(
        core.clone(),
        registry.clone(),
        worker_name.clone(),
    ));
    let mut consumers = Vec::new();
    for (queue, storage) in storages {
        consumers.push(tokio::spawn(consume(
            format!("{queue}@{worker_name}"),
            storage,
            exec.clone(),
            registry.policy(&queue),
            stop_rx.clone(),
        )));
    }
    tracing::info!(worker = %worker_name, "job runtime started");
    shutdown.await;
    tracing::info!(worker = %worker_name, "job runtime stopping");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        for consumer in consumers {
            let _ = consumer.await;
        }
        let _ = relay.await;
        let _ = scheduler.await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(worker = %worker_name, "job runtime stopped before every job finished; the outbox will send them again");
    }
    Ok(())
}

/// How long a stopping process waits for jobs in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs one queue's apalis worker until `stop`, starting it again whenever it ends on its own.
///
/// An apalis-redis worker ends with an error when Redis goes away or forgets it (a restarted
/// Redis no longer knows the worker's registration), and would not come back by itself; a
/// process whose consumers had ended would keep relaying jobs that nobody runs. Restarting under
/// the same name also re-queues what the previous run had fetched and not finished.
async fn consume(
    name: String,
    storage: RedisStorage<QueuedJob>,
    exec: Arc<Executor>,
    policy: crate::registry::QueuePolicy,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    const FIRST_DELAY: Duration = Duration::from_millis(100);
    const LONGEST_DELAY: Duration = Duration::from_secs(5);
    let mut delay = FIRST_DELAY;
    loop {
        if *stop.borrow() {
            return;
        }
        let worker = WorkerBuilder::new(name.as_str())
            .backend(storage.clone())
            .data(exec.clone())
            .concurrency(policy.concurrency.max(1))
            .build(handle);
        let mut signal = stop.clone();
        let started = std::time::Instant::now();
        let run = tokio::spawn(worker.run_until(async move {
            let _ = signal.wait_for(|stopping| *stopping).await;
            Ok::<(), std::io::Error>(())
        }));
        let ended = run.await;
        if *stop.borrow() {
            return;
        }
        match ended {
            Ok(Ok(())) => tracing::warn!(worker = %name, "queue worker ended; starting it again"),
            Ok(Err(e)) => {
                tracing::warn!(worker = %name, error = %e, "queue worker failed; starting it again")
            }
            Err(e) => {
                tracing::error!(worker = %name, error = %e, "queue worker panicked; starting it again")
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            delay = FIRST_DELAY;
        }
        let mut signal = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = signal.wait_for(|stopping| *stopping) => return,
        }
        delay = (delay * 2).min(LONGEST_DELAY);
    }
}
