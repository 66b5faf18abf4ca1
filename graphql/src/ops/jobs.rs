//! Background jobs for ops: `jobQueues` (depths per queue), `jobs` (a keyset-paged connection
//! of outbox rows with their payloads), and the staff actions `retryJob`, `retryDeadJobs` and
//! `discardJob`, audited by `shared::outbox` in the transaction that makes them.

use super::user_error;
use crate::accounts::{conn, core};
use crate::errors::{InternalExt, UserError, coded};
use crate::guard;
use crate::relay::{parse_global_id, to_global_id};
use accounts::Role;
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use shared::ids::JobId;
use shared::outbox::{self, JobActionError, JobsFilter, OutboxJob, status};
use shared::schema::outbox_jobs;
use std::time::Duration;

/// Largest page of `jobs`.
pub const MAX_JOBS_PAGE: i32 = 100;

/// How long `jobQueues` waits for Redis before answering without its figures.
const REDIS_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// A background job in the outbox (every column; the payload only for ops).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox_jobs)]
pub struct Job {
    id: JobId,
    job_type: String,
    queue: String,
    payload: serde_json::Value,
    idempotency_key: String,
    status: String,
    attempts: i32,
    max_attempts: i32,
    run_after: DateTime<Utc>,
    last_error: Option<String>,
    locked_by: Option<String>,
    created_at: DateTime<Utc>,
    queued_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<OutboxJob> for Job {
    fn from(j: OutboxJob) -> Self {
        Job {
            id: j.id,
            job_type: j.job_type,
            queue: j.queue,
            payload: j.payload,
            idempotency_key: j.idempotency_key,
            status: j.status,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            run_after: j.run_after,
            last_error: j.last_error,
            locked_by: j.locked_by,
            created_at: j.created_at,
            queued_at: j.queued_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

/// A background job in the outbox. Visible to ops.
#[Object]
impl Job {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        to_global_id("Job", &self.id)
    }
    /// The job's type name, e.g. `SendSms`.
    async fn job_type(&self) -> &str {
        &self.job_type
    }
    /// The queue it runs on, e.g. `notifications`.
    async fn queue(&self) -> &str {
        &self.queue
    }
    /// `pending`, `queued`, `running`, `done`, `dead` or `discarded`.
    async fn status(&self) -> &str {
        &self.status
    }
    /// Attempts made so far.
    async fn attempts(&self) -> i32 {
        self.attempts
    }
    /// Attempts allowed before the job is dead-lettered.
    async fn max_attempts(&self) -> i32 {
        self.max_attempts
    }
    /// The last attempt's error.
    async fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
    /// When the job may run next (for a job waiting to retry: when its backoff ends).
    async fn run_after(&self) -> DateTime<Utc> {
        self.run_after
    }
    /// When the job was enqueued.
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// When the relay last sent it to Redis.
    async fn queued_at(&self) -> Option<DateTime<Utc>> {
        self.queued_at
    }
    /// When its latest attempt started.
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.started_at
    }
    /// When the job finished, was dead-lettered or discarded.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.finished_at
    }
    /// The worker running it, while it runs (ops only).
    async fn worker(&self, ctx: &Context<'_>) -> Option<&str> {
        if guard::may_view_jobs(guard::principal(ctx)) {
            self.locked_by.as_deref()
        } else {
            None
        }
    }
    /// The payload as enqueued: ids and keys, never copies of state (ops only).
    async fn payload(&self, ctx: &Context<'_>) -> Option<&serde_json::Value> {
        if guard::may_view_jobs(guard::principal(ctx)) {
            Some(&self.payload)
        } else {
            None
        }
    }
    /// What makes the job unique among jobs of its type (ops only).
    async fn idempotency_key(&self, ctx: &Context<'_>) -> Option<&str> {
        if guard::may_view_jobs(guard::principal(ctx)) {
            Some(&self.idempotency_key)
        } else {
            None
        }
    }
    /// Whether `retryJob` applies: the job is dead-lettered.
    async fn can_retry(&self) -> bool {
        self.status == status::DEAD
    }
    /// Whether `discardJob` applies: the job is dead-lettered, or waiting to retry after a failure.
    async fn can_discard(&self) -> bool {
        self.status == status::DEAD || (self.status == status::PENDING && self.last_error.is_some())
    }
}

/// The depths of one job queue.
#[derive(SimpleObject, Debug, Clone)]
pub struct JobQueue {
    /// The queue's name, e.g. `notifications`.
    pub name: String,
    /// Jobs waiting in the outbox that have never failed (due now or scheduled for later).
    pub pending: i32,
    /// Of the jobs waiting in the outbox (fresh or retrying), those due now: the relay's backlog.
    pub due: i32,
    /// Jobs sent to Redis and not yet claimed by a worker.
    pub queued: i32,
    /// Jobs a worker is running.
    pub running: i32,
    /// Jobs that failed and wait in the outbox for their next attempt.
    pub retrying: i32,
    /// Dead-lettered jobs, waiting for ops (`retryJob`, `discardJob`).
    pub dead: i32,
    /// Messages in the queue's Redis list, waiting for a worker to fetch them; null when Redis
    /// could not be read quickly.
    pub queued_in_redis: Option<i32>,
    /// When the job that has been due the longest became due; null when none is due.
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// How long that job has been due, in seconds (0 when none is).
    pub oldest_due_age_seconds: i32,
}

/// A stored job status.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting in the outbox for its time and the relay.
    Pending,
    /// Sent to Redis, not yet claimed.
    Queued,
    /// Claimed by a worker.
    Running,
    /// Finished; its effect happened.
    Done,
    /// Failed its last attempt; waits for ops.
    Dead,
    /// Given up by ops; never runs.
    Discarded,
}

impl JobStatus {
    fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => status::PENDING,
            JobStatus::Queued => status::QUEUED,
            JobStatus::Running => status::RUNNING,
            JobStatus::Done => status::DONE,
            JobStatus::Dead => status::DEAD,
            JobStatus::Discarded => status::DISCARDED,
        }
    }
}

/// Which jobs `jobs` lists; every condition given must hold.
#[derive(InputObject, Debug, Clone, Default)]
pub struct JobsFilterInput {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only this job type, e.g. `DeliverNotification`.
    pub job_type: Option<String>,
    /// `true`: only jobs with an error recorded (failed at least once, not since done);
    /// `false`: only jobs without.
    pub has_error: Option<bool>,
}

impl From<JobsFilterInput> for JobsFilter {
    fn from(f: JobsFilterInput) -> Self {
        JobsFilter {
            queue: f.queue,
            status: f.status.map(|s| s.as_str().to_owned()),
            job_type: f.job_type,
            has_error: f.has_error,
        }
    }
}

/// Totals of a `jobs` connection.
pub struct JobsTotals {
    filter: JobsFilter,
}

#[Object]
impl JobsTotals {
    /// How many jobs match the filter in all (counted when asked for).
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        let mut conn = conn(ctx).await?;
        let n = outbox::count_jobs(&mut conn, &self.filter)
            .await
            .internal(ctx)?;
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }
}

/// Job queries (ops).
#[derive(Default)]
pub struct JobsQuery;

#[Object]
impl JobsQuery {
    /// Every queue with outstanding work (anything not done or discarded), by name, with its
    /// depths (ops). A queue with nothing outstanding is not listed.
    async fn job_queues(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<JobQueue>> {
        guard::require_staff(ctx, Role::Ops)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let depths = outbox::queue_depths(&mut conn).await.internal(ctx)?;
        drop(conn);
        let names: Vec<&str> = depths.iter().map(|d| d.queue.as_str()).collect();
        let in_redis = redis_lengths(core, &names).await;
        let now = core.clock.now();
        let int = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(depths
            .iter()
            .enumerate()
            .map(|(i, d)| JobQueue {
                name: d.queue.clone(),
                pending: int(d.pending),
                due: int(d.due),
                queued: int(d.queued),
                running: int(d.running),
                retrying: int(d.retrying),
                dead: int(d.dead),
                queued_in_redis: in_redis.as_ref().and_then(|l| l.get(i).copied()).map(int),
                oldest_due_at: d.oldest_due_at,
                oldest_due_age_seconds: d
                    .oldest_due_at
                    .map(|at| int((now - at).num_seconds().max(0)))
                    .unwrap_or(0),
            })
            .collect())
    }

    /// Background jobs, newest first, with their payloads (ops). Filter by queue, status, type
    /// and whether they failed.
    async fn jobs(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return (at most 100).",
            default = 20,
            validator(minimum = 0, maximum = 100)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return jobs after this cursor.")] after: Option<String>,
        #[graphql(desc = "Which jobs.")] filter: Option<JobsFilterInput>,
    ) -> async_graphql::Result<Connection<String, Job, JobsTotals>> {
        guard::require_staff(ctx, Role::Ops)?;
        let after_id = match after {
            None => None,
            Some(cursor) => match parse_global_id::<JobId>(&cursor, "Job") {
                Some(id) => Some(id),
                None => {
                    return Err(coded(
                        "BAD_USER_INPUT",
                        "`after` is not a cursor of this list",
                    ));
                }
            },
        };
        let filter: JobsFilter = filter.unwrap_or_default().into();
        let first = i64::from(first.unwrap_or(20).clamp(0, MAX_JOBS_PAGE));
        let mut connection = Connection::with_additional_fields(
            after_id.is_some(),
            false,
            JobsTotals {
                filter: filter.clone(),
            },
        );
        if first == 0 {
            return Ok(connection);
        }
        let mut conn = conn(ctx).await?;
        let page = outbox::list_jobs(&mut conn, &filter, after_id, first)
            .await
            .internal(ctx)?;
        connection.has_next_page = page.has_more;
        for job in page.jobs {
            let cursor = to_global_id("Job", &job.id).0;
            connection.edges.push(Edge::new(cursor, Job::from(job)));
        }
        Ok(connection)
    }
}

/// The lengths of the queues' Redis lists, in order; `None` when Redis cannot be read quickly.
async fn redis_lengths(core: &shared::core::Core, queues: &[&str]) -> Option<Vec<i64>> {
    if queues.is_empty() {
        return Some(Vec::new());
    }
    let read = async {
        let mut conn = core.redis.conn().await?;
        let mut pipe = redis::pipe();
        for q in queues {
            pipe.cmd("LLEN")
                .arg(redis_active_list(core.redis.prefix(), q));
        }
        pipe.query_async::<Vec<i64>>(&mut conn).await
    };
    match tokio::time::timeout(REDIS_READ_TIMEOUT, read).await {
        Ok(Ok(lengths)) => Some(lengths),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not read queue lengths from redis");
            None
        }
        Err(_) => {
            tracing::warn!("reading queue lengths from redis timed out");
            None
        }
    }
}

/// The Redis list a queue's waiting messages are in: the apalis-redis active list of the queue
/// key the job runtime uses (`workers::runtime::queue_key`, `<prefix>:jobs:<queue>`).
pub fn redis_active_list(prefix: &str, queue: &str) -> String {
    format!(
        "{}:active",
        shared::redis_conn::key(prefix, ["jobs", queue])
    )
}

/// Input of `retryJob`.
#[derive(InputObject)]
pub struct RetryJobInput {
    /// The dead-lettered job's global id.
    pub job_id: ID,
    /// Why (1 to 500 characters), for the audit log.
    pub reason: Option<String>,
}

/// Result of `retryJob`.
#[derive(SimpleObject, Default)]
pub struct RetryJobPayload {
    /// The job, pending again with a fresh set of attempts.
    pub job: Option<Job>,
    /// `JOB_NOT_FOUND`, `JOB_NOT_DEAD` (`jobId`).
    pub user_errors: Vec<UserError>,
}

/// Input of `retryDeadJobs`.
#[derive(InputObject, Default)]
pub struct RetryDeadJobsInput {
    /// Only dead jobs of this queue.
    pub queue: Option<String>,
    /// Only dead jobs of this type.
    pub job_type: Option<String>,
}

/// Result of `retryDeadJobs`.
#[derive(SimpleObject, Default)]
pub struct RetryDeadJobsPayload {
    /// How many dead jobs were sent back (at most 500 per call; call again for more).
    pub retried_count: i32,
    /// Their global ids.
    pub job_ids: Vec<ID>,
    /// Dead jobs matching the input still waiting (call again to send them back too).
    pub remaining_dead: i32,
    /// None so far; present for future checks.
    pub user_errors: Vec<UserError>,
}

/// Input of `discardJob`.
#[derive(InputObject)]
pub struct DiscardJobInput {
    /// The job's global id: a dead-lettered job, or one waiting to retry after a failure.
    pub job_id: ID,
    /// Why it should never run (kept in the audit log), 3 to 500 characters.
    pub reason: String,
}

/// Result of `discardJob`.
#[derive(SimpleObject, Default)]
pub struct DiscardJobPayload {
    /// The job, now `discarded`.
    pub job: Option<Job>,
    /// `JOB_NOT_FOUND`, `JOB_NOT_DISCARDABLE` (`jobId`), `INVALID_REASON` (`reason`).
    pub user_errors: Vec<UserError>,
}

fn job_not_found() -> Vec<UserError> {
    vec![user_error(
        "jobId",
        "JOB_NOT_FOUND",
        "There is no such job.",
    )]
}

/// Job actions (ops).
#[derive(Default)]
pub struct JobsMutation;

#[Object]
impl JobsMutation {
    /// Sends a dead-lettered job back to its queue with a fresh set of attempts (ops). Audited.
    async fn retry_job(
        &self,
        ctx: &Context<'_>,
        input: RetryJobInput,
    ) -> async_graphql::Result<RetryJobPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(id) = parse_global_id::<JobId>(&input.job_id, "Job") else {
            return Ok(RetryJobPayload {
                job: None,
                user_errors: job_not_found(),
            });
        };
        let reason = match crate::errors::optional_reason(input.reason.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(RetryJobPayload {
                    job: None,
                    user_errors: vec![e],
                });
            }
        };
        let mut conn = conn(ctx).await?;
        match outbox::retry_dead_job(&mut conn, &staff.staff_id.to_string(), id, reason).await {
            Ok(job) => Ok(RetryJobPayload {
                job: Some(job.into()),
                user_errors: vec![],
            }),
            Err(JobActionError::NotFound) => Ok(RetryJobPayload {
                job: None,
                user_errors: job_not_found(),
            }),
            Err(JobActionError::WrongStatus(s)) => Ok(RetryJobPayload {
                job: None,
                user_errors: vec![user_error(
                    "jobId",
                    "JOB_NOT_DEAD",
                    format!("Only a dead-lettered job can be retried; this one is {s}."),
                )],
            }),
            Err(e @ JobActionError::Database(_)) => Err(crate::errors::internal(ctx, e)),
        }
    }

    /// Sends dead-lettered jobs back to their queues, optionally only of one queue and/or type,
    /// up to 500 per call, oldest first (ops). Each is audited.
    async fn retry_dead_jobs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] input: RetryDeadJobsInput,
    ) -> async_graphql::Result<RetryDeadJobsPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let mut conn = conn(ctx).await?;
        let ids = outbox::retry_dead_jobs(
            &mut conn,
            &staff.staff_id.to_string(),
            input.queue.as_deref(),
            input.job_type.as_deref(),
        )
        .await
        .internal(ctx)?;
        let remaining = outbox::count_jobs(
            &mut conn,
            &JobsFilter {
                queue: input.queue,
                status: Some(status::DEAD.to_owned()),
                job_type: input.job_type,
                has_error: None,
            },
        )
        .await
        .internal(ctx)?;
        Ok(RetryDeadJobsPayload {
            retried_count: i32::try_from(ids.len()).unwrap_or(i32::MAX),
            job_ids: ids.iter().map(|id| to_global_id("Job", id)).collect(),
            remaining_dead: i32::try_from(remaining).unwrap_or(i32::MAX),
            user_errors: vec![],
        })
    }

    /// Gives up on a failed job for good, with a reason (ops): a dead-lettered job, or one
    /// waiting to retry, becomes `discarded` and never runs. Audited with the reason.
    async fn discard_job(
        &self,
        ctx: &Context<'_>,
        input: DiscardJobInput,
    ) -> async_graphql::Result<DiscardJobPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let reason = input.reason.trim();
        let len = reason.chars().count();
        if !(3..=500).contains(&len) || reason.chars().any(|c| c.is_control() && c != '\n') {
            return Ok(DiscardJobPayload {
                job: None,
                user_errors: vec![user_error(
                    "reason",
                    "INVALID_REASON",
                    "Give a reason of 3 to 500 characters.",
                )],
            });
        }
        let Some(id) = parse_global_id::<JobId>(&input.job_id, "Job") else {
            return Ok(DiscardJobPayload {
                job: None,
                user_errors: job_not_found(),
            });
        };
        let mut conn = conn(ctx).await?;
        match outbox::discard_job(&mut conn, &staff.staff_id.to_string(), id, reason).await {
            Ok(job) => Ok(DiscardJobPayload {
                job: Some(job.into()),
                user_errors: vec![],
            }),
            Err(JobActionError::NotFound) => Ok(DiscardJobPayload {
                job: None,
                user_errors: job_not_found(),
            }),
            Err(JobActionError::WrongStatus(s)) => Ok(DiscardJobPayload {
                job: None,
                user_errors: vec![user_error(
                    "jobId",
                    "JOB_NOT_DISCARDABLE",
                    format!(
                        "Only a dead-lettered job, or one waiting to retry, can be discarded; this one is {s}."
                    ),
                )],
            }),
            Err(e @ JobActionError::Database(_)) => Err(crate::errors::internal(ctx, e)),
        }
    }
}
