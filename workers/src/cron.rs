//! Cron: named schedules, each of which enqueues one outbox job per tick.
//!
//! The [`TIMETABLE`] says when each schedule ticks (a cron expression with seconds, read in UTC
//! or in UK time where the calendar matters to people: statements, the bordereau). A
//! schedule runs only once the registry binds it to the job it enqueues
//! ([`crate::Registry::schedule`]); rows without a job are listed at start-up as waiting.
//!
//! Invariants:
//! - **One job per tick, however many `work` processes run.** The job's idempotency key is
//!   `"<schedule name>:<tick as Unix seconds>"`, and the outbox's unique `(job_type,
//!   idempotency_key)` makes every insert after the first a no-op: the database is the lock. A
//!   short Redis `SET NX PX` per tick only spares the other processes a needless insert; with
//!   Redis down, every process inserts and the outbox still keeps one.
//! - **Missed ticks fire once.** Each pass looks only at the latest tick at or before now. After
//!   downtime (of the processes, the database or Redis) the latest missed tick is enqueued once,
//!   with `run_after` at the tick, and earlier missed ticks never are: every scheduled job works
//!   out what is due from current state, so one run catches up.
//! - The latest tick is also what a fresh deployment fires first. The outbox rows are the record
//!   of fired ticks, so they must be kept longer than the longest schedule period (a month).
//!
//! apalis-cron's scheduler was not used: it produces ticks for one process and keeps no record of
//! fired ticks, so neither guarantee above would come from it; the `cron` crate it is built on
//! parses the expressions here.

use anyhow::Context as _;
use chrono::{DateTime, Duration, TimeZone, Utc};
use diesel_async::AsyncPgConnection;
use futures::future::BoxFuture;
use shared::core::Core;
use shared::ids::JobId;
use shared::outbox::{self, Job};
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::watch;

/// The time zone a schedule's expression is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// UTC: for schedules whose exact hour nobody sees.
    Utc,
    /// Europe/London (GMT in winter, BST in summer): for schedules tied to the UK calendar.
    /// Keep their times outside 01:00–02:00, which happens twice or not at all on the days the
    /// clocks change.
    London,
}

impl Zone {
    fn tz(self) -> chrono_tz::Tz {
        match self {
            Zone::Utc => chrono_tz::UTC,
            Zone::London => chrono_tz::Europe::London,
        }
    }
}

/// One row of the timetable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimetableRow {
    /// The schedule's name: the first part of each tick's idempotency key.
    pub name: &'static str,
    /// When it ticks: `sec min hour day-of-month month day-of-week`.
    pub expression: &'static str,
    /// The zone the expression is read in.
    pub zone: Zone,
    /// What the job does, for people reading logs and this table.
    pub purpose: &'static str,
}

/// When every schedule ticks. Adding a schedule: a row here, and one `registry.schedule(name,
/// Job::for_tick)` line in [`crate::default_registry`] once its job exists.
pub const TIMETABLE: &[TimetableRow] = &[
    TimetableRow {
        name: "close_due_sessions",
        expression: "0 * * * * *",
        zone: Zone::Utc,
        purpose: "end cover sessions past their maximum length or a partner's gap rule",
    },
    TimetableRow {
        name: "notify_ended_partner_sessions",
        expression: "15 * * * * *",
        zone: Zone::Utc,
        purpose: "send partners cover.ended for their sessions that ended since the last run",
    },
    TimetableRow {
        name: "flag_stale_partner_links",
        expression: "0 10 4 * * *",
        zone: Zone::Utc,
        purpose: "flag partner driver links with no shift event for 30 days",
    },
    TimetableRow {
        name: "enforce_overdraft",
        expression: "45 * * * * *",
        zone: Zone::Utc,
        purpose: "end running sessions whose wallet reached the overdraft limit; warn at 75%",
    },
    TimetableRow {
        name: "payments_limbo_sweep",
        expression: "20 */10 * * * *",
        zone: Zone::Utc,
        purpose: "finish refunds, session charges and top-ups left unfinished; cancel expired ones",
    },
    TimetableRow {
        name: "auto_top_up_sweep",
        expression: "30 */5 * * * *",
        zone: Zone::Utc,
        purpose: "start auto top-ups for wallets below their threshold that none has caught",
    },
    TimetableRow {
        name: "weekly_statements",
        expression: "0 0 6 * * Mon",
        zone: Zone::London,
        purpose: "send each driver the statement of the UK week that ended at midnight",
    },
    TimetableRow {
        name: "daily_reconciliation",
        expression: "0 30 3 * * *",
        zone: Zone::Utc,
        purpose: "reconcile the previous UTC day's Stripe balance transactions with the ledger",
    },
    TimetableRow {
        name: "monthly_bordereau",
        expression: "0 0 6 1 * *",
        zone: Zone::London,
        purpose: "build the underwriter's premium bordereau for the UK month just ended",
    },
];

type EnqueueFn = Arc<
    dyn for<'c> Fn(
            &'c mut AsyncPgConnection,
            DateTime<Utc>,
        ) -> BoxFuture<'c, anyhow::Result<Option<JobId>>>
        + Send
        + Sync,
>;

type KeyFn = Arc<dyn Fn(DateTime<Utc>) -> String + Send + Sync>;

/// A timetable row bound to the job it enqueues.
#[derive(Clone)]
pub struct BoundSchedule {
    row: &'static TimetableRow,
    cron: Arc<cron::Schedule>,
    job_type: &'static str,
    key_of: KeyFn,
    enqueue: EnqueueFn,
}

impl std::fmt::Debug for BoundSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundSchedule")
            .field("name", &self.row.name)
            .field("expression", &self.row.expression)
            .field("zone", &self.row.zone)
            .field("job_type", &self.job_type)
            .finish()
    }
}

fn enqueue_fn<J: Job>(make: fn(DateTime<Utc>) -> J) -> EnqueueFn {
    Arc::new(
        move |conn: &mut AsyncPgConnection, tick: DateTime<Utc>| -> BoxFuture<'_, _> {
            let job = make(tick);
            Box::pin(async move { outbox::enqueue_at(conn, &job, tick).await })
        },
    )
}

impl BoundSchedule {
    /// Binds `row` to the job `make(tick)`. Fails when the expression does not parse.
    pub fn new<J: Job>(
        row: &'static TimetableRow,
        make: fn(DateTime<Utc>) -> J,
    ) -> anyhow::Result<Self> {
        let cron = cron::Schedule::from_str(row.expression)
            .with_context(|| format!("cron expression {:?} does not parse", row.expression))?;
        Ok(Self {
            row,
            cron: Arc::new(cron),
            job_type: J::TYPE,
            key_of: Arc::new(move |tick| make(tick).idempotency_key()),
            enqueue: enqueue_fn(make),
        })
    }

    /// The schedule's name.
    pub fn name(&self) -> &'static str {
        self.row.name
    }

    /// Its timetable row.
    pub fn row(&self) -> &'static TimetableRow {
        self.row
    }

    /// The type of the job it enqueues.
    pub fn job_type(&self) -> &'static str {
        self.job_type
    }

    /// The latest tick at or before `now`.
    pub fn latest_tick(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.row.zone.tz()) + Duration::milliseconds(1);
        let tick = self.cron.after(&local).next_back()?.with_timezone(&Utc);
        (tick <= now).then_some(tick)
    }

    /// The first tick after `now`.
    pub fn next_tick(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.row.zone.tz());
        self.cron
            .after(&local)
            .next()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The idempotency key every tick's job must carry: `"<name>:<tick as Unix seconds>"`.
    pub fn expected_key(&self, tick: DateTime<Utc>) -> String {
        format!("{}:{}", self.row.name, tick.timestamp())
    }

    /// Checks that the bound job's key is [`expected_key`](Self::expected_key) (on a sample tick).
    pub(crate) fn check_key(&self) -> Result<(), String> {
        let sample = Utc
            .with_ymd_and_hms(2026, 1, 5, 6, 0, 0)
            .single()
            .unwrap_or_default();
        let (actual, expected) = ((self.key_of)(sample), self.expected_key(sample));
        if actual == expected {
            Ok(())
        } else {
            Err(format!(
                "{} must have the idempotency key {expected:?} for that tick, not {actual:?}",
                self.job_type
            ))
        }
    }
}

/// How long a process holds the Redis lock of a tick while it inserts the job.
const LOCK_TTL: Duration = Duration::seconds(15);
/// Pause before trying a tick again after an error (database down).
const RETRY_AFTER: Duration = Duration::seconds(5);
/// The longest the scheduler sleeps, so a clock that jumps is noticed.
const MAX_SLEEP: Duration = Duration::seconds(30);

/// What a pass did about one schedule's tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// This process enqueued the tick's job.
    Enqueued(JobId),
    /// The job was already in the outbox (another process, or a run before a restart).
    AlreadyEnqueued,
    /// Another process is enqueueing it now; looked at again after its lock expires.
    LockedElsewhere,
    /// The job could not be enqueued (database down); tried again shortly.
    Failed,
}

/// One schedule's tick, looked at by a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// The schedule.
    pub schedule: &'static str,
    /// The tick.
    pub tick: DateTime<Utc>,
    /// What happened.
    pub outcome: TickOutcome,
}

enum Lock {
    Acquired,
    Done,
    HeldElsewhere,
}

/// Enqueues each bound schedule's ticks. One per `work` process; see the module docs.
pub struct Scheduler {
    core: Core,
    schedules: Vec<BoundSchedule>,
    worker: Arc<str>,
    /// Per schedule: the latest tick known to be in the outbox.
    fired: Vec<Option<DateTime<Utc>>>,
    /// Per schedule: do not look again before this time (after a lock or an error).
    not_before: Vec<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("schedules", &self.schedules)
            .field("worker", &self.worker)
            .finish()
    }
}

impl Scheduler {
    /// A scheduler for `schedules`, enqueueing as `worker` (the name in its Redis locks).
    pub fn new(core: Core, schedules: Vec<BoundSchedule>, worker: impl Into<Arc<str>>) -> Self {
        let n = schedules.len();
        Self {
            core,
            schedules,
            worker: worker.into(),
            fired: vec![None; n],
            not_before: vec![None; n],
        }
    }

    /// Looks at each schedule's latest tick at or before `now` and enqueues the ones not yet
    /// known to be in the outbox. Returns what it did, one entry per tick it looked at.
    pub async fn pass(&mut self, now: DateTime<Utc>) -> Vec<Fired> {
        let mut out = Vec::new();
        for i in 0..self.schedules.len() {
            let schedule = self.schedules[i].clone();
            let Some(tick) = schedule.latest_tick(now) else {
                continue;
            };
            if self.fired[i].is_some_and(|fired| fired >= tick)
                || self.not_before[i].is_some_and(|at| at > now)
            {
                continue;
            }
            let outcome = match self.fire(&schedule, tick).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    tracing::warn!(schedule = schedule.name(), %tick, error = %format!("{e:#}"), "cron tick could not be enqueued; trying again shortly");
                    TickOutcome::Failed
                }
            };
            match outcome {
                TickOutcome::Enqueued(job_id) => {
                    tracing::info!(schedule = schedule.name(), %tick, %job_id, job_type = schedule.job_type(), "cron tick enqueued");
                    self.fired[i] = Some(tick);
                    self.not_before[i] = None;
                }
                TickOutcome::AlreadyEnqueued => {
                    self.fired[i] = Some(tick);
                    self.not_before[i] = None;
                }
                TickOutcome::LockedElsewhere => self.not_before[i] = Some(now + LOCK_TTL),
                TickOutcome::Failed => self.not_before[i] = Some(now + RETRY_AFTER),
            }
            out.push(Fired {
                schedule: schedule.name(),
                tick,
                outcome,
            });
        }
        out
    }

    /// When the next pass has something to do: the earliest next tick or retry time.
    fn next_wake(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut wake = now + MAX_SLEEP;
        for (i, schedule) in self.schedules.iter().enumerate() {
            if let Some(t) = schedule.next_tick(now) {
                wake = wake.min(t);
            }
            if let Some(t) = self.not_before[i] {
                wake = wake.min(t);
            }
        }
        wake
    }

    /// Runs passes until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        for row in TIMETABLE {
            if !self.schedules.iter().any(|s| s.name() == row.name) {
                tracing::info!(
                    schedule = row.name,
                    "schedule has no job bound yet; not running"
                );
            }
        }
        loop {
            if *stop.borrow() {
                return;
            }
            let now = self.core.clock.now();
            self.pass(now).await;
            let now = self.core.clock.now();
            let sleep = (self.next_wake(now) - now)
                .to_std()
                .unwrap_or_default()
                .max(std::time::Duration::from_millis(50));
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn fire(
        &self,
        schedule: &BoundSchedule,
        tick: DateTime<Utc>,
    ) -> anyhow::Result<TickOutcome> {
        let lock_key = shared::redis_conn::key(
            self.core.redis.prefix(),
            ["cron", schedule.name(), &tick.timestamp().to_string()],
        );
        match self.lock(&lock_key).await {
            Ok(Lock::Acquired) => {}
            Ok(Lock::Done) => return Ok(TickOutcome::AlreadyEnqueued),
            Ok(Lock::HeldElsewhere) => return Ok(TickOutcome::LockedElsewhere),
            Err(e) => {
                tracing::debug!(error = %e, "redis unavailable for the cron lock; the outbox decides alone");
            }
        }
        let mut conn = self.core.pool.get().await.context("database pool")?;
        let id = (schedule.enqueue)(&mut conn, tick).await?;
        drop(conn);
        // Tell the other processes the tick is settled until well after the next one.
        let period = schedule
            .next_tick(tick)
            .map(|next| next - tick)
            .unwrap_or(Duration::days(1));
        let keep = period.max(Duration::minutes(1)) + Duration::minutes(1);
        if let Err(e) = self.mark_done(&lock_key, keep).await {
            tracing::debug!(error = %e, "could not mark the cron tick settled in redis");
        }
        Ok(match id {
            Some(id) => TickOutcome::Enqueued(id),
            None => TickOutcome::AlreadyEnqueued,
        })
    }

    async fn lock(&self, key: &str) -> redis::RedisResult<Lock> {
        let mut conn = self.core.redis.conn().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(&*self.worker)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_TTL.num_milliseconds())
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            return Ok(Lock::Acquired);
        }
        let holder: Option<String> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
        Ok(match holder.as_deref() {
            Some("done") => Lock::Done,
            // Our own lock from an attempt that failed: carry on.
            Some(h) if h == &*self.worker => Lock::Acquired,
            // Gone between the two commands: insert, the outbox decides.
            None => Lock::Acquired,
            Some(_) => Lock::HeldElsewhere,
        })
    }

    async fn mark_done(&self, key: &str, keep: Duration) -> redis::RedisResult<()> {
        let mut conn = self.core.redis.conn().await?;
        redis::cmd("SET")
            .arg(key)
            .arg("done")
            .arg("PX")
            .arg(keep.num_milliseconds().max(1))
            .query_async::<()>(&mut conn)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Sweep(DateTime<Utc>);

    impl Job for Sweep {
        const TYPE: &'static str = "Sweep";
        const QUEUE: &'static str = "default";
        fn idempotency_key(&self) -> String {
            format!("weekly_statements:{}", self.0.timestamp())
        }
    }

    fn row(name: &str) -> &'static TimetableRow {
        TIMETABLE.iter().find(|r| r.name == name).unwrap()
    }

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, s).single().unwrap()
    }

    #[test]
    fn every_timetable_row_parses_and_names_are_unique() {
        for r in TIMETABLE {
            BoundSchedule::new(r, Sweep).unwrap();
            assert_eq!(TIMETABLE.iter().filter(|o| o.name == r.name).count(), 1);
            assert!(r.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    #[test]
    fn the_latest_tick_includes_now_and_the_next_is_after() {
        let s = BoundSchedule::new(row("close_due_sessions"), Sweep).unwrap();
        assert_eq!(
            s.latest_tick(at(2026, 11, 23, 12, 0, 0)),
            Some(at(2026, 11, 23, 12, 0, 0))
        );
        assert_eq!(
            s.latest_tick(at(2026, 11, 23, 12, 0, 59)),
            Some(at(2026, 11, 23, 12, 0, 0))
        );
        assert_eq!(
            s.next_tick(at(2026, 11, 23, 12, 0, 0)),
            Some(at(2026, 11, 23, 12, 1, 0))
        );
    }

    #[test]
    fn uk_schedules_follow_british_summer_time() {
        let s = BoundSchedule::new(row("weekly_statements"), Sweep).unwrap();
        // Monday 06:00 in London: 06:00 UTC in winter, 05:00 UTC in summer.
        assert_eq!(
            s.latest_tick(at(2026, 11, 25, 0, 0, 0)),
            Some(at(2026, 11, 23, 6, 0, 0))
        );
        assert_eq!(
            s.latest_tick(at(2026, 7, 8, 0, 0, 0)),
            Some(at(2026, 7, 6, 5, 0, 0))
        );
        let m = BoundSchedule::new(row("monthly_bordereau"), Sweep).unwrap();
        // The clocks went forward on 29 March 2026; 1 April 06:00 BST is 05:00 UTC.
        assert_eq!(
            m.latest_tick(at(2026, 4, 20, 0, 0, 0)),
            Some(at(2026, 4, 1, 5, 0, 0))
        );
    }

    #[test]
    fn the_job_key_must_be_the_schedule_name_and_tick() {
        let good = BoundSchedule::new(row("weekly_statements"), Sweep).unwrap();
        assert!(good.check_key().is_ok());
        let tick = at(2026, 11, 23, 6, 0, 0);
        assert_eq!(good.expected_key(tick), "weekly_statements:1795413600");
        let bad = BoundSchedule::new(row("monthly_bordereau"), Sweep).unwrap();
        let err = bad.check_key().unwrap_err();
        assert!(err.contains("monthly_bordereau:"), "{err}");
    }

    #[test]
    fn the_cover_job_follows_the_key_rule() {
        let s = BoundSchedule::new(
            row("close_due_sessions"),
            cover::jobs::CloseDueSessions::for_tick,
        )
        .unwrap();
        s.check_key().unwrap();
    }
}
