//! Job types, their handlers, and per-queue policies (concurrency, timeout, backoff).

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

/// The job types this process can run.
#[derive(Default, Clone)]
pub struct Registry {
    pub(crate) jobs: BTreeMap<&'static str, Arc<Registered>>,
    pub(crate) queues: BTreeMap<&'static str, QueuePolicy>,
}

impl Registry {
    /// Declares a queue and its policy.
    pub fn queue(&mut self, name: &'static str, policy: QueuePolicy) -> &mut Self {
        self.queues.insert(name, policy);
        self
    }

    /// Registers the handler of job type `J`. A payload that no longer parses is dead-lettered.
    pub fn register<J, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        J: Job,
        F: Fn(JobContext, J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
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

    /// The registered job type names.
    pub fn job_types(&self) -> Vec<&'static str> {
        self.jobs.keys().copied().collect()
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
