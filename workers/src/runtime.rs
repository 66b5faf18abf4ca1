//! Runs the registered jobs: the relay, the cron scheduler, and one apalis worker per queue,
//! each restarted with a backoff whenever it ends on its own (Redis gone or restarted), and by a
//! watchdog when it stops fetching without ending (see [`consume`]).

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
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
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

/// What one queue's consumer in this process is doing, for the stall watchdog.
#[derive(Debug, Default)]
pub(crate) struct QueueActivity {
    in_flight: AtomicUsize,
    /// When a delivery last began here, or the consumer (re)started: Unix milliseconds.
    last_start_ms: AtomicI64,
}

impl QueueActivity {
    fn touch(&self) {
        self.last_start_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Whether nothing runs here and nothing has begun for `quiet`.
    fn idle_for(&self, quiet: Duration) -> bool {
        let since = Utc::now().timestamp_millis() - self.last_start_ms.load(Ordering::Relaxed);
        self.in_flight.load(Ordering::Relaxed) == 0
            && u128::try_from(since).unwrap_or(0) >= quiet.as_millis()
    }
}

/// Counts a delivery in flight for as long as it lives (also when its future is dropped).
struct InFlight<'a>(&'a QueueActivity);

impl<'a> InFlight<'a> {
    fn begin(activity: &'a QueueActivity) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        InFlight(activity)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(
    job: QueuedJob,
    exec: Data<Arc<Executor>>,
    activity: Data<Arc<QueueActivity>>,
) -> Result<(), BoxDynError> {
    let _in_flight = InFlight::begin(&activity);
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

/// How often each consumer's watchdog looks for a stall.
const WATCHDOG_EVERY: Duration = Duration::from_secs(2);

/// How long a consumer may sit idle beside jobs of its queue that nobody started before it is
/// taken to have stalled: twice the relay's re-send delay plus five seconds, so a job lost with
/// Redis has had its second chance first.
fn stall_after(core: &Core) -> Duration {
    let requeue = u64::try_from(core.settings.jobs.requeue_after_secs.max(1)).unwrap_or(60);
    Duration::from_secs(requeue * 2 + 5)
}

/// Whether the outbox has jobs of `queue` sent to Redis, due more than `quiet` ago, that nobody
/// started. A database error answers no: the watchdog acts only on evidence.
async fn jobs_left_waiting(core: &Core, queue: &str, quiet: Duration) -> bool {
    let Ok(mut conn) = core.pool.get().await else {
        return false;
    };
    let due_before = Utc::now() - chrono::Duration::from_std(quiet).unwrap_or_default();
    outbox::has_unstarted_queued(&mut conn, queue, due_before)
        .await
        .unwrap_or(false)
}

/// How long a stopping process waits for jobs in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs one queue's apalis worker until `stop`, starting it again whenever it ends on its own.
///
/// An apalis-redis worker ends with an error when Redis goes away or forgets it (a restarted
/// Redis no longer knows the worker's registration), and would not come back by itself; a
/// process whose consumers had ended would keep relaying jobs that nobody runs. Restarting under
/// the same name also re-queues what the previous run had fetched and not finished.
///
/// A worker can also stop fetching without ending: seen after Redis restarts, with the worker
/// missing from the queue's registrations or its heartbeat stopped, while the process kept
/// relaying the queue's jobs to nobody. So a watchdog checks every few seconds: when this
/// consumer has nothing in flight and has begun nothing for [`stall_after`], yet the outbox has
/// jobs of its queue that were sent to Redis and due that long ago and nobody started, the worker
/// is stopped and started again under a new name (the stuck one's registration may still look
/// alive). Nothing is lost meanwhile: the relay sends every unstarted job again.
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
    let queue = name.split('@').next().unwrap_or_default().to_owned();
    let quiet = stall_after(&exec.core);
    let activity = Arc::new(QueueActivity::default());
    let mut generation = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let worker_name = if generation == 0 {
            name.clone()
        } else {
            format!("{name}.{generation}")
        };
        activity.touch();
        let worker = WorkerBuilder::new(worker_name.as_str())
            .backend(storage.clone())
            .data(exec.clone())
            .data(activity.clone())
            .concurrency(policy.concurrency.max(1))
            .build(handle);
        let mut signal = stop.clone();
        let (restart_tx, mut restart_rx) = tokio::sync::watch::channel(false);
        let started = std::time::Instant::now();
        let mut run = tokio::spawn(worker.run_until(async move {
            tokio::select! {
                _ = signal.wait_for(|stopping| *stopping) => {}
                _ = restart_rx.wait_for(|restart| *restart) => {}
            }
            Ok::<(), std::io::Error>(())
        }));
        let ended = loop {
            tokio::select! {
                ended = &mut run => break Some(ended),
                _ = tokio::time::sleep(WATCHDOG_EVERY) => {
                    if activity.idle_for(quiet) && jobs_left_waiting(&exec.core, &queue, quiet).await {
                        tracing::warn!(worker = %worker_name, quiet_secs = quiet.as_secs(), "queue worker stalled: its queue has jobs nobody started and it fetched none; starting it again");
                        let _ = restart_tx.send(true);
                        if tokio::time::timeout(Duration::from_secs(10), &mut run).await.is_err() {
                            run.abort();
                        }
                        generation += 1;
                        break None;
                    }
                }
            }
        };
        let Some(ended) = ended else {
            continue;
        };
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
