//! What one `work` process runs: job types and their handlers, per-queue policies (concurrency,
//! timeout, backoff) and the cron schedules that enqueue jobs.
//!
//! Mistakes in the registration (a job type registered twice, a schedule that names no row of
//! the timetable or enqueues a job without a handler) are collected as they are made and
//! reported by [`Registry::check`], which the runtime calls before it starts: the process
//! refuses to run rather than silently running one of two handlers.

use crate::cron::{BoundSchedule, TIMETABLE};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use shared::jobs::{JobContext, JobError};
use shared::outbox::Job;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How a queue's jobs run.
#[derive(Debug, Clone)]
pub struct QueuePolicy {
    /// Jobs of this queue one process runs at once.
    pub concurrency: usize,
    /// Longest one attempt may take before it counts as failed.
    pub timeout: Duration,
    /// Delay before the second attempt; doubles for each further attempt.
    pub backoff_base: Duration,
    /// Longest delay between attempts.
    pub backoff_cap: Duration,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self {
            concurrency: 4,
            timeout: Duration::from_secs(30),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(3600),
        }
    }
}

impl QueuePolicy {
    /// The delay before attempt `next_attempt` (2, 3, …): exponential, capped, with ±20% jitter
    /// so that jobs failing together do not retry together.
    pub fn backoff(&self, next_attempt: i32, jitter: f64) -> Duration {
        let exp = u32::try_from(next_attempt.saturating_sub(2).clamp(0, 30)).unwrap_or(30);
        let base = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.backoff_cap);
        // jitter is in [0, 1): scale into [0.8, 1.2)
        base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
    }
}

pub(crate) type HandlerFn = Arc<
    dyn Fn(JobContext, serde_json::Value) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync,
>;

pub(crate) struct Registered {
    pub(crate) queue: &'static str,
    pub(crate) handler: HandlerFn,
}

/// The registration is inconsistent; the runtime refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job registry is inconsistent: {}", problems.join("; "))]
pub struct RegistryError {
    /// One line per mistake.
    pub problems: Vec<String>,
}

/// The job types this process can run, their queues, and its cron schedules.
#[derive(Default, Clone)]
pub struct Registry {
    pub(crate) jobs: BTreeMap<&'static str, Arc<Registered>>,
    pub(crate) queues: BTreeMap<&'static str, QueuePolicy>,
    pub(crate) schedules: Vec<BoundSchedule>,
    problems: Vec<String>,
}

impl Registry {
    /// Declares a queue and its policy.
    pub fn queue(&mut self, name: &'static str, policy: QueuePolicy) -> &mut Self {
        self.queues.insert(name, policy);
        self
    }

    /// Registers the handler of job type `J`. A payload that no longer parses is dead-lettered.
    /// A second handler for the same type is refused: the first stays, and [`check`](Self::check)
    /// reports the duplicate.
    pub fn register<J, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        J: Job,
        F: Fn(JobContext, J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        if self.jobs.contains_key(J::TYPE) {
            self.problems
                .push(format!("job type {} is registered twice", J::TYPE));
            return self;
        }
        self.queues.entry(J::QUEUE).or_default();
        let handler = Arc::new(handler);
        let erased: HandlerFn = Arc::new(move |ctx, payload| {
            let handler = handler.clone();
            Box::pin(async move {
                let job: J = serde_json::from_value(payload).map_err(|e| {
                    JobError::Permanent(anyhow::anyhow!(
                        "payload of {} does not parse: {e}",
                        J::TYPE
                    ))
                })?;
                handler(ctx, job).await
            })
        });
        self.jobs.insert(
            J::TYPE,
            Arc::new(Registered {
                queue: J::QUEUE,
                handler: erased,
            }),
        );
        self
    }

    /// Binds the timetable row `name` (see [`crate::cron::TIMETABLE`]) to the job it enqueues:
    /// at each tick, `make(tick)` is enqueued once across all `work` processes. The job's
    /// idempotency key must be `"<name>:<tick as Unix seconds>"`, which [`check`](Self::check)
    /// verifies.
    pub fn schedule<J: Job>(
        &mut self,
        name: &'static str,
        make: fn(DateTime<Utc>) -> J,
    ) -> &mut Self {
        let Some(row) = TIMETABLE.iter().find(|row| row.name == name) else {
            self.problems
                .push(format!("schedule {name} is not in the timetable"));
            return self;
        };
        if self.schedules.iter().any(|s| s.name() == name) {
            self.problems
                .push(format!("schedule {name} is bound twice"));
            return self;
        }
        match BoundSchedule::new(row, make) {
            Ok(bound) => self.schedules.push(bound),
            Err(e) => self.problems.push(format!("schedule {name}: {e:#}")),
        }
        self
    }

    /// The registered job type names, sorted.
    pub fn registered_types(&self) -> Vec<&'static str> {
        self.jobs.keys().copied().collect()
    }

    /// The bound cron schedules.
    pub fn schedules(&self) -> &[BoundSchedule] {
        &self.schedules
    }

    /// Every mistake made while registering, or `Ok` when there was none.
    pub fn check(&self) -> Result<(), RegistryError> {
        let mut problems = self.problems.clone();
        for schedule in &self.schedules {
            if !self.jobs.contains_key(schedule.job_type()) {
                problems.push(format!(
                    "schedule {} enqueues {}, which has no handler",
                    schedule.name(),
                    schedule.job_type()
                ));
            }
            if let Err(e) = schedule.check_key() {
                problems.push(format!("schedule {}: {e}", schedule.name()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RegistryError { problems })
        }
    }

    /// The declared queues.
    pub fn queue_names(&self) -> Vec<&'static str> {
        self.queues.keys().copied().collect()
    }

    pub(crate) fn policy(&self, queue: &str) -> QueuePolicy {
        self.queues.get(queue).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Noop;

    impl Job for Noop {
        const TYPE: &'static str = "Noop";
        const QUEUE: &'static str = "default";
        fn idempotency_key(&self) -> String {
            "noop".into()
        }
    }

    async fn noop(_ctx: JobContext, _job: Noop) -> Result<(), JobError> {
        Ok(())
    }

    async fn other_noop(_ctx: JobContext, _job: Noop) -> Result<(), JobError> {
        Err(JobError::Permanent(anyhow::anyhow!("the second handler")))
    }

    #[test]
    fn a_job_type_registered_twice_is_refused() {
        let mut r = Registry::default();
        r.register(noop);
        assert!(r.check().is_ok());
        r.register(other_noop);
        let err = r.check().unwrap_err();
        assert_eq!(err.problems, vec!["job type Noop is registered twice"]);
        assert_eq!(r.registered_types(), vec!["Noop"]);
    }

    #[test]
    fn the_default_registry_is_consistent() {
        let r = crate::default_registry();
        r.check().unwrap();
        let types = r.registered_types();
        for t in ["DemoPing", "DeliverNotification", "CloseDueSessions"] {
            assert!(types.contains(&t), "{t} is registered");
        }
        let mut sorted = types.clone();
        sorted.sort_unstable();
        assert_eq!(types, sorted);
    }

    #[test]
    fn schedules_must_name_a_timetable_row_and_a_registered_job() {
        #[derive(Serialize, Deserialize)]
        struct Tick(DateTime<Utc>);
        impl Job for Tick {
            const TYPE: &'static str = "Tick";
            const QUEUE: &'static str = "default";
            fn idempotency_key(&self) -> String {
                format!("close_due_sessions:{}", self.0.timestamp())
            }
        }
        let mut r = Registry::default();
        r.schedule("no_such_schedule", Tick);
        r.schedule("close_due_sessions", Tick);
        let err = r.check().unwrap_err();
        assert_eq!(
            err.problems,
            vec![
                "schedule no_such_schedule is not in the timetable",
                "schedule close_due_sessions enqueues Tick, which has no handler",
            ]
        );
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let p = QueuePolicy {
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(60),
            ..QueuePolicy::default()
        };
        assert_eq!(p.backoff(2, 0.5), Duration::from_secs(2));
        assert_eq!(p.backoff(3, 0.5), Duration::from_secs(4));
        assert_eq!(p.backoff(5, 0.5), Duration::from_secs(16));
        assert_eq!(p.backoff(30, 0.5), Duration::from_secs(60));
        assert!(p.backoff(3, 0.0) >= Duration::from_millis(3200));
        assert!(p.backoff(3, 0.999) < Duration::from_millis(4800));
    }
}
