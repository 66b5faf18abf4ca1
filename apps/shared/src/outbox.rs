//! The transactional outbox: how a domain change and the job it causes commit together.
//!
//! 1. Domain code calls [`enqueue`] with the same connection (inside the same transaction) that
//!    writes the change. If the transaction rolls back, the job never existed.
//! 2. The relay in `shiftcover work` calls [`take_due`], which marks due rows `queued` with
//!    `FOR UPDATE SKIP LOCKED` (safe with many relays) and pushes their ids to Redis.
//! 3. A worker calls [`claim`]; only one claim of a queued row succeeds, so a job that Redis
//!    delivers twice runs once. The handler then calls [`complete`] — for database effects,
//!    inside the transaction that writes the effect, so effect and completion commit together.
//! 4. A failure calls [`fail`]: the row goes back to `pending` with a backoff, or to `dead` after
//!    its last attempt, where ops can see it and [`retry_dead`] it.
//!
//! Redis may lose a message; the relay re-sends rows left `queued` or `running` for too long,
//! and the claim makes any duplicate harmless.
//!
//! For ops: [`list_failed_jobs`] pages through dead letters and jobs waiting to be retried, with
//! their last error; [`count_failed_jobs`] counts them; [`retry_dead`] sends one back. Rows of a
//! type no process can run are dead-lettered by the relay ([`dead_letter_unknown_types`]).
//! The staff actions — [`retry_dead_job`], [`retry_dead_jobs`], [`discard_job`] — are audited in
//! the transaction that makes them; [`queue_depths`] and [`list_jobs`] feed the ops view.

use crate::ids::JobId;
use crate::schema::outbox_jobs;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A kind of background job. Its payload carries ids, never copies of state: the handler re-reads.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The job's name, e.g. `SendSms`. Stored on the row and used to find the handler.
    const TYPE: &'static str;
    /// The Redis queue its messages go to.
    const QUEUE: &'static str;
    /// Attempts before the job is dead-lettered.
    const MAX_ATTEMPTS: i32 = 8;

    /// What makes two enqueues "the same job": the same key enqueues once.
    fn idempotency_key(&self) -> String;
}

/// Job states, as stored.
pub mod status {
    /// Waiting for its `run_after` time and the relay.
    pub const PENDING: &str = "pending";
    /// Sent to Redis, not yet claimed.
    pub const QUEUED: &str = "queued";
    /// Claimed by a worker.
    pub const RUNNING: &str = "running";
    /// Finished; its effect happened.
    pub const DONE: &str = "done";
    /// Failed its last attempt; waits for ops.
    pub const DEAD: &str = "dead";
    /// Given up by ops (with a reason in the audit log); never runs. Terminal.
    pub const DISCARDED: &str = "discarded";
}

#[derive(Insertable)]
#[diesel(table_name = outbox_jobs)]
#[diesel(treat_none_as_default_value = false)]
struct NewOutboxJob<'a> {
    id: JobId,
    job_type: &'a str,
    queue: &'a str,
    payload: serde_json::Value,
    idempotency_key: &'a str,
    max_attempts: i32,
    run_after: DateTime<Utc>,
}

/// Enqueues a job to run as soon as possible. Returns `None` when a job with the same type and
/// idempotency key already exists (the cause was already recorded).
pub async fn enqueue<J: Job>(
    conn: &mut AsyncPgConnection,
    job: &J,
) -> anyhow::Result<Option<JobId>> {
    enqueue_at(conn, job, Utc::now()).await
}

/// Enqueues several jobs of one type to run as soon as possible, in one statement (over arrays);
/// a job whose idempotency key is already taken is skipped, as by [`enqueue`]. Returns how many
/// were enqueued.
pub async fn enqueue_all<J: Job>(
    conn: &mut AsyncPgConnection,
    jobs: &[J],
) -> anyhow::Result<usize> {
    use diesel::sql_types::{Array, Int4, Jsonb, Text, Timestamptz, Uuid};
    if jobs.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(jobs.len());
    let mut payloads = Vec::with_capacity(jobs.len());
    let mut keys = Vec::with_capacity(jobs.len());
    for job in jobs {
        ids.push(JobId::new().uuid());
        payloads.push(serde_json::to_value(job)?);
        keys.push(job.idempotency_key());
    }
    let inserted = crate::sql::prepared(
        "INSERT INTO outbox_jobs (id, job_type, queue, payload, idempotency_key, max_attempts,
                                  run_after)
         SELECT j.id, $4, $5, j.payload, j.key, $6, $7
           FROM unnest($1::uuid[], $2::jsonb[], $3::text[]) AS j(id, payload, key)
         ON CONFLICT DO NOTHING",
    )
    .bind::<Array<Uuid>, _>(ids)
    .bind::<Array<Jsonb>, _>(payloads)
    .bind::<Array<Text>, _>(keys)
    .bind::<Text, _>(J::TYPE)
    .bind::<Text, _>(J::QUEUE)
    .bind::<Int4, _>(J::MAX_ATTEMPTS)
    .bind::<Timestamptz, _>(Utc::now())
    .execute(conn)
    .await?;
    Ok(inserted)
}

/// Enqueues a job to run at or after `run_after`.
pub async fn enqueue_at<J: Job>(
    conn: &mut AsyncPgConnection,
    job: &J,
    run_after: DateTime<Utc>,
) -> anyhow::Result<Option<JobId>> {
    let key = job.idempotency_key();
    let row = NewOutboxJob {
        id: JobId::new(),
        job_type: J::TYPE,
        queue: J::QUEUE,
        payload: serde_json::to_value(job)?,
        idempotency_key: &key,
        max_attempts: J::MAX_ATTEMPTS,
        run_after,
    };
    let id = diesel::insert_into(outbox_jobs::table)
        .values(&row)
        .on_conflict_do_nothing()
        .returning(outbox_jobs::id)
        .get_result::<JobId>(conn)
        .await
        .optional()?;
    Ok(id)
}

/// A row the relay moved to `queued`, to be pushed to Redis.
#[derive(Debug, Clone, Queryable, Selectable, PartialEq, Eq)]
#[diesel(table_name = outbox_jobs)]
pub struct DueJob {
    /// The outbox row.
    pub id: JobId,
    /// The job's type name.
    pub job_type: String,
    /// The queue to push it to.
    pub queue: String,
}

/// Marks up to `batch` due rows `queued` and returns them. A row is due when it is `pending`
/// and its time has come, or `queued`/`running` for longer than the given timeouts (lost in
/// Redis, or its worker died).
/// Only rows whose type is in `job_types` (the types this process can run) are taken; others
/// stay where they are, visible to ops, until a process that knows them runs.
pub async fn take_due(
    conn: &mut AsyncPgConnection,
    job_types: &[&str],
    batch: i64,
    requeue_after_secs: i64,
    stalled_after_secs: i64,
) -> QueryResult<Vec<DueJob>> {
    diesel::sql_query(
        "WITH due AS (
             SELECT id FROM outbox_jobs
              WHERE ((status = 'pending' AND run_after <= now())
                 OR (status = 'queued' AND queued_at < now() - make_interval(secs => $2))
                 OR (status = 'running' AND started_at < now() - make_interval(secs => $3)))
                AND job_type = ANY($4)
              ORDER BY run_after
              LIMIT $1
              FOR UPDATE SKIP LOCKED)
         UPDATE outbox_jobs o
            SET status = 'queued', queued_at = now()
           FROM due
          WHERE o.id = due.id
      RETURNING o.id, o.job_type, o.queue",
    )
    .bind::<diesel::sql_types::BigInt, _>(batch)
    .bind::<diesel::sql_types::Double, _>(requeue_after_secs as f64)
    .bind::<diesel::sql_types::Double, _>(stalled_after_secs as f64)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(job_types)
    .load::<DueJobRow>(conn)
    .await
    .map(|rows| rows.into_iter().map(DueJob::from).collect())
}

#[derive(QueryableByName)]
struct DueJobRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    job_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    queue: String,
}

impl From<DueJobRow> for DueJob {
    fn from(r: DueJobRow) -> Self {
        DueJob {
            id: JobId(r.id),
            job_type: r.job_type,
            queue: r.queue,
        }
    }
}

/// A job a worker now owns.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox_jobs)]
pub struct ClaimedJob {
    /// The outbox row.
    pub id: JobId,
    /// The job's type name.
    pub job_type: String,
    /// The payload as enqueued.
    pub payload: serde_json::Value,
    /// This attempt's number, from 1.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
}

/// Claims a queued job for `worker`. `None` means another worker has it or it is finished:
/// the caller acknowledges the message and does nothing.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    id: JobId,
    worker: &str,
) -> QueryResult<Option<ClaimedJob>> {
    diesel::update(outbox_jobs::table)
        .filter(outbox_jobs::id.eq(id))
        .filter(outbox_jobs::status.eq(status::QUEUED))
        .set((
            outbox_jobs::status.eq(status::RUNNING),
            outbox_jobs::started_at.eq(diesel::dsl::now),
            outbox_jobs::attempts.eq(outbox_jobs::attempts + 1),
            outbox_jobs::locked_by.eq(worker),
        ))
        .returning(ClaimedJob::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Marks a claimed job done. Returns false when the claim was lost (the job was taken to have
/// stalled and handed to another worker): a caller inside a transaction must then roll back.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    job: &ClaimedJob,
    worker: &str,
) -> QueryResult<bool> {
    let n = diesel::update(outbox_jobs::table)
        .filter(outbox_jobs::id.eq(job.id))
        .filter(outbox_jobs::status.eq(status::RUNNING))
        .filter(outbox_jobs::locked_by.eq(worker))
        .filter(outbox_jobs::attempts.eq(job.attempts))
        .set((
            outbox_jobs::status.eq(status::DONE),
            outbox_jobs::finished_at.eq(diesel::dsl::now),
            outbox_jobs::last_error.eq(None::<String>),
        ))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Records a failed attempt: back to `pending` at `retry_at`, or `dead` when there is none.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    job: &ClaimedJob,
    worker: &str,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> QueryResult<bool> {
    let error: String = error.chars().take(4000).collect();
    let base = outbox_jobs::table
        .filter(outbox_jobs::id.eq(job.id))
        .filter(outbox_jobs::status.eq(status::RUNNING))
        .filter(outbox_jobs::locked_by.eq(worker))
        .filter(outbox_jobs::attempts.eq(job.attempts));
    let n = match retry_at {
        Some(at) => {
            diesel::update(base)
                .set((
                    outbox_jobs::status.eq(status::PENDING),
                    outbox_jobs::run_after.eq(at),
                    outbox_jobs::last_error.eq(&error),
                    outbox_jobs::locked_by.eq(None::<String>),
                ))
                .execute(conn)
                .await?
        }
        None => {
            diesel::update(base)
                .set((
                    outbox_jobs::status.eq(status::DEAD),
                    outbox_jobs::finished_at.eq(diesel::dsl::now),
                    outbox_jobs::last_error.eq(&error),
                ))
                .execute(conn)
                .await?
        }
    };
    Ok(n == 1)
}

/// Sends a dead job back to the queue with a fresh set of attempts (an ops action).
pub async fn retry_dead(conn: &mut AsyncPgConnection, id: JobId) -> QueryResult<bool> {
    let n = diesel::update(outbox_jobs::table)
        .filter(outbox_jobs::id.eq(id))
        .filter(outbox_jobs::status.eq(status::DEAD))
        .set((
            outbox_jobs::status.eq(status::PENDING),
            outbox_jobs::attempts.eq(0),
            outbox_jobs::run_after.eq(diesel::dsl::now),
            outbox_jobs::finished_at.eq(None::<DateTime<Utc>>),
            outbox_jobs::locked_by.eq(None::<String>),
        ))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Counts of outbox rows per status, for `/metrics` and the ops view.
pub async fn counts_by_status(conn: &mut AsyncPgConnection) -> QueryResult<Vec<(String, i64)>> {
    outbox_jobs::table
        .group_by(outbox_jobs::status)
        .select((outbox_jobs::status, diesel::dsl::count_star()))
        .load(conn)
        .await
}

/// Whether `queue` has a job sent to Redis that nobody has started although it was due before
/// `due_before`: with idle consumers, a sign that they no longer fetch (see the workers' stall
/// watchdog).
pub async fn has_unstarted_queued(
    conn: &mut AsyncPgConnection,
    queue: &str,
    due_before: DateTime<Utc>,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        outbox_jobs::table
            .filter(outbox_jobs::status.eq(status::QUEUED))
            .filter(outbox_jobs::queue.eq(queue))
            .filter(outbox_jobs::run_after.lt(due_before)),
    ))
    .get_result(conn)
    .await
}

/// The `last_error` of a row dead-lettered because no process can run its type.
pub fn no_handler_reason(job_type: &str) -> String {
    format!("no handler registered for job type \"{job_type}\"")
}

/// Dead-letters `pending` rows whose type is not in `known_types` and that have been due for
/// longer than `grace_secs`, with the reason "no handler registered …", and returns them.
///
/// The grace period lets a rolling deploy finish: a newer process that knows the type may be
/// about to start. After it, ops see the row among the dead letters (and can
/// [`retry_dead`] it once a handler exists) instead of it waiting unseen forever.
pub async fn dead_letter_unknown_types(
    conn: &mut AsyncPgConnection,
    known_types: &[&str],
    grace_secs: i64,
    batch: i64,
) -> QueryResult<Vec<DueJob>> {
    diesel::sql_query(
        "WITH unknown AS (
             SELECT id FROM outbox_jobs
              WHERE status = 'pending'
                AND run_after < now() - make_interval(secs => $1)
                AND NOT (job_type = ANY($2))
              ORDER BY run_after
              LIMIT $3
              FOR UPDATE SKIP LOCKED)
         UPDATE outbox_jobs o
            SET status = 'dead', finished_at = now(), locked_by = NULL,
                last_error = 'no handler registered for job type \"' || o.job_type || '\"'
           FROM unknown
          WHERE o.id = unknown.id
      RETURNING o.id, o.job_type, o.queue",
    )
    .bind::<diesel::sql_types::Double, _>(grace_secs as f64)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(known_types)
    .bind::<diesel::sql_types::BigInt, _>(batch)
    .load::<DueJobRow>(conn)
    .await
    .map(|rows| rows.into_iter().map(DueJob::from).collect())
}

/// Which failed jobs ops want to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailedJobsFilter {
    /// Dead letters: failed their last attempt (or permanently), waiting for ops.
    #[default]
    Dead,
    /// Failed at least once and will be tried again (`pending`, `queued` or `running` with an
    /// error recorded).
    Retrying,
    /// Both.
    All,
}

/// Where a page of [`list_failed_jobs`] ends: pass it back to get the next page. Pages are in
/// descending `failed_at` order, ties broken by descending id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedJobsCursor {
    /// `failed_at` of the last row of the page.
    pub failed_at: DateTime<Utc>,
    /// Id of the last row of the page.
    pub id: JobId,
}

impl FailedJobsCursor {
    /// The cursor as text (`<microseconds since the epoch>.<job id>`), for an opaque API cursor.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.failed_at.timestamp_micros(), self.id)
    }

    /// Parses [`encode`](Self::encode)'s output; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('.')?;
        Some(Self {
            failed_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

/// One failed job, as ops see it.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct FailedJob {
    /// The outbox row.
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: JobId,
    /// The job's type name.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub job_type: String,
    /// Its queue.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub queue: String,
    /// `dead`, or `pending`/`queued`/`running` for a job that will be tried again.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: String,
    /// The payload as enqueued (ids, never copies of state).
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    pub payload: serde_json::Value,
    /// What makes the job unique among jobs of its type.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub idempotency_key: String,
    /// Attempts made.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub attempts: i32,
    /// Attempts allowed.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub max_attempts: i32,
    /// The error of the latest failed attempt.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub last_error: Option<String>,
    /// When it was enqueued.
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub created_at: DateTime<Utc>,
    /// When the next attempt may start (for a retrying job).
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub run_after: DateTime<Utc>,
    /// When it was dead-lettered; for a retrying job, when its latest attempt started.
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub failed_at: DateTime<Utc>,
}

/// A page of failed jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedJobsPage {
    /// The jobs, most recently failed first.
    pub jobs: Vec<FailedJob>,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<FailedJobsCursor>,
}

fn failed_condition(filter: FailedJobsFilter) -> &'static str {
    match filter {
        FailedJobsFilter::Dead => "status = 'dead'",
        FailedJobsFilter::Retrying => {
            "status IN ('pending', 'queued', 'running') AND last_error IS NOT NULL"
        }
        FailedJobsFilter::All => {
            "(status = 'dead' OR (status IN ('pending', 'queued', 'running') AND last_error IS NOT NULL))"
        }
    }
}

/// Lists failed jobs for ops, most recently failed first, `limit` (1–500) at a time, after
/// `after` (the previous page's [`FailedJobsPage::next`]). `job_type` narrows to one type.
/// Keyset paging: a page does not shift when new failures arrive while ops read.
pub async fn list_failed_jobs(
    conn: &mut AsyncPgConnection,
    filter: FailedJobsFilter,
    job_type: Option<&str>,
    after: Option<FailedJobsCursor>,
    limit: i64,
) -> QueryResult<FailedJobsPage> {
    let limit = limit.clamp(1, 500);
    let sql = format!(
        "SELECT * FROM (
             SELECT id, job_type, queue, status, payload, idempotency_key, attempts,
                    max_attempts, last_error, created_at, run_after,
                    COALESCE(finished_at, started_at, created_at) AS failed_at
               FROM outbox_jobs
              WHERE {}
                AND ($1::text IS NULL OR job_type = $1)) f
          WHERE ($2::timestamptz IS NULL OR (f.failed_at, f.id) < ($2, $3))
          ORDER BY f.failed_at DESC, f.id DESC
          LIMIT $4",
        failed_condition(filter)
    );
    let mut jobs: Vec<FailedJob> = diesel::sql_query(sql)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(job_type)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>, _>(
            after.map(|c| c.failed_at),
        )
        .bind::<diesel::sql_types::Uuid, _>(after.map(|c| c.id.uuid()).unwrap_or_default())
        .bind::<diesel::sql_types::BigInt, _>(limit + 1)
        .load(conn)
        .await?;
    let more = i64::try_from(jobs.len()).unwrap_or(i64::MAX) > limit;
    if more {
        jobs.pop();
    }
    let next = if more {
        jobs.last().map(|j| FailedJobsCursor {
            failed_at: j.failed_at,
            id: j.id,
        })
    } else {
        None
    };
    Ok(FailedJobsPage { jobs, next })
}

/// How many jobs [`list_failed_jobs`] would list in all, for a total next to the pages.
pub async fn count_failed_jobs(
    conn: &mut AsyncPgConnection,
    filter: FailedJobsFilter,
    job_type: Option<&str>,
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sql = format!(
        "SELECT count(*) AS n FROM outbox_jobs WHERE {} AND ($1::text IS NULL OR job_type = $1)",
        failed_condition(filter)
    );
    diesel::sql_query(sql)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(job_type)
        .get_result::<Count>(conn)
        .await
        .map(|c| c.n)
}

// ---------------------------------------------------------------------------------------------
// The ops view: queue depths, every job with its payload, and the staff actions on dead letters.

/// One outbox row in full, as ops see it.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = outbox_jobs)]
pub struct OutboxJob {
    /// The outbox row.
    pub id: JobId,
    /// The job's type name.
    pub job_type: String,
    /// Its queue.
    pub queue: String,
    /// The payload as enqueued (ids, never copies of state).
    pub payload: serde_json::Value,
    /// What makes the job unique among jobs of its type.
    pub idempotency_key: String,
    /// One of [`status`].
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When the next attempt may start.
    pub run_after: DateTime<Utc>,
    /// The error of the latest failed attempt.
    pub last_error: Option<String>,
    /// The worker holding it, while running.
    pub locked_by: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When the relay last sent it to Redis.
    pub queued_at: Option<DateTime<Utc>>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished, was dead-lettered or discarded.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job by id.
pub async fn get_job(conn: &mut AsyncPgConnection, id: JobId) -> QueryResult<Option<OutboxJob>> {
    outbox_jobs::table
        .find(id)
        .select(OutboxJob::as_select())
        .first(conn)
        .await
        .optional()
}

/// The depths of one queue, from [`queue_depths`].
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct QueueDepth {
    /// The queue.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub queue: String,
    /// Waiting in the outbox for the relay, never failed (due or scheduled for later).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub pending: i64,
    /// Of those waiting (fresh or retrying), how many are due now.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub due: i64,
    /// Sent to Redis, not yet claimed by a worker.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub queued: i64,
    /// Claimed by a worker.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub running: i64,
    /// Failed at least once, waiting in the outbox for their next attempt.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub retrying: i64,
    /// Dead-lettered, waiting for ops.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub dead: i64,
    /// When the job that has been due the longest became due.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    pub oldest_due_at: Option<DateTime<Utc>>,
}

/// Every queue with outstanding work (anything not done or discarded), with its depths, by
/// name. One grouped query over the unfinished rows (the partial indexes of the relay and the
/// dead letters hold them), however many queues there are.
pub async fn queue_depths(conn: &mut AsyncPgConnection) -> QueryResult<Vec<QueueDepth>> {
    diesel::sql_query(
        "SELECT queue,
                count(*) FILTER (WHERE status = 'pending' AND last_error IS NULL) AS pending,
                count(*) FILTER (WHERE status = 'pending' AND run_after <= now()) AS due,
                count(*) FILTER (WHERE status = 'queued') AS queued,
                count(*) FILTER (WHERE status = 'running') AS running,
                count(*) FILTER (WHERE status = 'pending' AND last_error IS NOT NULL) AS retrying,
                count(*) FILTER (WHERE status = 'dead') AS dead,
                min(run_after) FILTER (WHERE status = 'pending' AND run_after <= now())
                    AS oldest_due_at
           FROM outbox_jobs
          WHERE status IN ('pending', 'queued', 'running', 'dead')
          GROUP BY queue
          ORDER BY queue",
    )
    .load(conn)
    .await
}

/// Which jobs [`list_jobs`] returns; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobsFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this status (one of [`status`]).
    pub status: Option<String>,
    /// Only this job type.
    pub job_type: Option<String>,
    /// `Some(true)`: only jobs with an error recorded (failed at least once and not since
    /// done); `Some(false)`: only jobs without.
    pub has_error: Option<bool>,
}

/// A page of [`list_jobs`].
#[derive(Debug, Clone, PartialEq)]
pub struct JobsPage {
    /// The jobs, newest first.
    pub jobs: Vec<OutboxJob>,
    /// Whether more jobs follow the last one.
    pub has_more: bool,
}

/// Lists jobs newest first (ids are time-ordered), `limit` (1–500) at a time, after the job
/// `after` (the last id of the previous page). Keyset paging on the primary key: pages do not
/// shift when jobs are added or change status while ops read.
pub async fn list_jobs(
    conn: &mut AsyncPgConnection,
    filter: &JobsFilter,
    after: Option<JobId>,
    limit: i64,
) -> QueryResult<JobsPage> {
    let limit = limit.clamp(1, 500);
    let mut query = outbox_jobs::table
        .select(OutboxJob::as_select())
        .order(outbox_jobs::id.desc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(q) = &filter.queue {
        query = query.filter(outbox_jobs::queue.eq(q.clone()));
    }
    if let Some(s) = &filter.status {
        query = query.filter(outbox_jobs::status.eq(s.clone()));
    }
    if let Some(t) = &filter.job_type {
        query = query.filter(outbox_jobs::job_type.eq(t.clone()));
    }
    match filter.has_error {
        Some(true) => query = query.filter(outbox_jobs::last_error.is_not_null()),
        Some(false) => query = query.filter(outbox_jobs::last_error.is_null()),
        None => {}
    }
    if let Some(after) = after {
        query = query.filter(outbox_jobs::id.lt(after));
    }
    let mut jobs: Vec<OutboxJob> = query.load(conn).await?;
    let has_more = i64::try_from(jobs.len()).unwrap_or(i64::MAX) > limit;
    if has_more {
        jobs.pop();
    }
    Ok(JobsPage { jobs, has_more })
}

/// How many jobs match `filter` in all.
pub async fn count_jobs(conn: &mut AsyncPgConnection, filter: &JobsFilter) -> QueryResult<i64> {
    let mut query = outbox_jobs::table.count().into_boxed();
    if let Some(q) = &filter.queue {
        query = query.filter(outbox_jobs::queue.eq(q.clone()));
    }
    if let Some(s) = &filter.status {
        query = query.filter(outbox_jobs::status.eq(s.clone()));
    }
    if let Some(t) = &filter.job_type {
        query = query.filter(outbox_jobs::job_type.eq(t.clone()));
    }
    match filter.has_error {
        Some(true) => query = query.filter(outbox_jobs::last_error.is_not_null()),
        Some(false) => query = query.filter(outbox_jobs::last_error.is_null()),
        None => {}
    }
    query.get_result(conn).await
}

/// Why an ops action on a job was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobActionError {
    /// No such job.
    #[error("job not found")]
    NotFound,
    /// The job is not in a state the action applies to; carries its status.
    #[error("job is {0}")]
    WrongStatus(String),
    /// The database failed.
    #[error("database error")]
    Database(#[from] diesel::result::Error),
}

fn staff_audit<'a>(
    staff_id: &str,
    action: &'a str,
    job: &OutboxJob,
    reason: Option<&'a str>,
    details: serde_json::Value,
) -> crate::audit::AuditEntry<'a> {
    let mut details = details;
    if let Some(map) = details.as_object_mut() {
        map.insert("job_type".into(), job.job_type.clone().into());
        map.insert("queue".into(), job.queue.clone().into());
    }
    crate::audit::AuditEntry {
        actor_type: crate::audit::ActorType::Staff,
        actor_id: Some(staff_id.to_owned()),
        action,
        subject_type: "outbox_job",
        subject_id: job.id.to_string(),
        reason,
        details,
    }
}

async fn refusal(conn: &mut AsyncPgConnection, id: JobId) -> JobActionError {
    match get_job(conn, id).await {
        Ok(Some(job)) => JobActionError::WrongStatus(job.status),
        Ok(None) => JobActionError::NotFound,
        Err(e) => JobActionError::Database(e),
    }
}

/// Sends a dead job back to the queue with a fresh set of attempts, on behalf of the staff user
/// `staff_id`, and records it in the audit log (`job.retried`, with the `reason` given) in the
/// same transaction.
///
/// Errors: [`JobActionError::NotFound`], [`JobActionError::WrongStatus`] when it is not dead.
pub async fn retry_dead_job(
    conn: &mut AsyncPgConnection,
    staff_id: &str,
    id: JobId,
    reason: Option<&str>,
) -> Result<OutboxJob, JobActionError> {
    use diesel_async::AsyncConnection;
    conn.transaction::<_, JobActionError, _>(async |conn| {
        let before = match get_job(conn, id).await? {
            Some(j) => j,
            None => return Err(JobActionError::NotFound),
        };
        if !retry_dead(conn, id).await? {
            return Err(refusal(conn, id).await);
        }
        let job = get_job(conn, id).await?.ok_or(JobActionError::NotFound)?;
        crate::audit::record(
            conn,
            &staff_audit(
                staff_id,
                "job.retried",
                &job,
                reason,
                serde_json::json!({
                    "attempts_before": before.attempts,
                    "last_error": before.last_error,
                }),
            ),
        )
        .await?;
        Ok(job)
    })
    .await
}

/// The most dead jobs one [`retry_dead_jobs`] call sends back.
pub const MAX_BULK_RETRY: i64 = 500;

/// Sends dead jobs back to their queues (at most [`MAX_BULK_RETRY`], oldest dead first),
/// optionally only of one queue and/or one type, each with a fresh set of attempts and an audit
/// entry (`job.retried`, with `bulk: true`), all in one transaction. Returns the ids retried.
pub async fn retry_dead_jobs(
    conn: &mut AsyncPgConnection,
    staff_id: &str,
    queue: Option<&str>,
    job_type: Option<&str>,
) -> Result<Vec<JobId>, JobActionError> {
    use diesel_async::AsyncConnection;
    conn.transaction::<_, JobActionError, _>(async |conn| {
        let dead: Vec<OutboxJob> = diesel::sql_query(
            "SELECT * FROM outbox_jobs
              WHERE status = 'dead'
                AND ($1::text IS NULL OR queue = $1)
                AND ($2::text IS NULL OR job_type = $2)
              ORDER BY finished_at, id
              LIMIT $3
              FOR UPDATE SKIP LOCKED",
        )
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(queue)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(job_type)
        .bind::<diesel::sql_types::BigInt, _>(MAX_BULK_RETRY)
        .load(conn)
        .await?;
        let ids: Vec<JobId> = dead.iter().map(|j| j.id).collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        diesel::update(outbox_jobs::table)
            .filter(outbox_jobs::id.eq_any(&ids))
            .filter(outbox_jobs::status.eq(status::DEAD))
            .set((
                outbox_jobs::status.eq(status::PENDING),
                outbox_jobs::attempts.eq(0),
                outbox_jobs::run_after.eq(diesel::dsl::now),
                outbox_jobs::finished_at.eq(None::<DateTime<Utc>>),
                outbox_jobs::locked_by.eq(None::<String>),
            ))
            .execute(conn)
            .await?;
        for job in &dead {
            crate::audit::record(
                conn,
                &staff_audit(
                    staff_id,
                    "job.retried",
                    job,
                    None,
                    serde_json::json!({
                        "bulk": true,
                        "attempts_before": job.attempts,
                        "last_error": job.last_error,
                    }),
                ),
            )
            .await?;
        }
        Ok(ids)
    })
    .await
}

/// Gives up on a job for good, on behalf of the staff user `staff_id`, with their reason: a dead
/// job, or one waiting in the outbox to retry after a failure, becomes
/// [`status::DISCARDED`] (terminal: never run, never listed among dead letters again). Audited
/// (`job.discarded`, with the reason) in the same transaction.
///
/// Errors: [`JobActionError::NotFound`], [`JobActionError::WrongStatus`] for any other state
/// (a job that never failed, is with a worker, or is finished).
pub async fn discard_job(
    conn: &mut AsyncPgConnection,
    staff_id: &str,
    id: JobId,
    reason: &str,
) -> Result<OutboxJob, JobActionError> {
    use diesel_async::AsyncConnection;
    conn.transaction::<_, JobActionError, _>(async |conn| {
        let updated = diesel::update(outbox_jobs::table)
            .filter(outbox_jobs::id.eq(id))
            .filter(
                outbox_jobs::status.eq(status::DEAD).or(outbox_jobs::status
                    .eq(status::PENDING)
                    .and(outbox_jobs::last_error.is_not_null())),
            )
            .set((
                outbox_jobs::status.eq(status::DISCARDED),
                outbox_jobs::finished_at.eq(diesel::dsl::now),
                outbox_jobs::locked_by.eq(None::<String>),
            ))
            .returning(OutboxJob::as_returning())
            .get_result::<OutboxJob>(conn)
            .await
            .optional()?;
        let Some(job) = updated else {
            return Err(refusal(conn, id).await);
        };
        crate::audit::record(
            conn,
            &staff_audit(
                staff_id,
                "job.discarded",
                &job,
                Some(reason),
                serde_json::json!({ "attempts": job.attempts, "last_error": job.last_error }),
            ),
        )
        .await?;
        Ok(job)
    })
    .await
}
