//! The job runtime against the real PostgreSQL and Redis: cron ticks across processes, dead
//! letters for ops, and jobs whose type nobody can run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed assumption in a test should panic

use chrono::{DateTime, Duration, TimeZone, Utc};
use diesel_async::RunQueryDsl;
use shared::clock::{FixedClock, SystemClock};
use shared::core::Core;
use shared::demo::DemoPing;
use shared::outbox::{self, FailedJobsCursor, FailedJobsFilter};
use shiftcover_workers::cron::{Scheduler, TickOutcome};
use std::sync::Arc;
use testkit::TestDb;

async fn count(db: &TestDb, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query(sql)
        .get_result::<N>(&mut conn)
        .await
        .unwrap()
        .n
}

async fn exec(db: &TestDb, sql: &str) {
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, h, m, s)
        .single()
        .unwrap()
}

fn core_for(
    db: &TestDb,
    prefix: &str,
    tweak: impl FnOnce(&mut shared::settings::Settings),
) -> Core {
    let mut settings = testkit::settings_for(db);
    settings.redis.key_prefix = prefix.to_owned();
    tweak(&mut settings);
    Core::new(settings, Arc::new(FixedClock::at(at(12, 0, 0)))).unwrap()
}

/// A scheduler of the session closer alone (the every-minute schedule these tests count).
fn scheduler(core: &Core, worker: &str) -> Scheduler {
    Scheduler::new(
        core.clone(),
        shiftcover_workers::default_registry()
            .schedules()
            .iter()
            .filter(|s| s.name() == "close_due_sessions")
            .cloned()
            .collect(),
        worker,
    )
}

const CLOSER_ROWS: &str =
    "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'CloseDueSessions'";

#[tokio::test]
async fn several_schedulers_enqueue_one_job_per_tick() {
    let db = TestDb::new().await.unwrap();
    let prefix = testkit::unique_redis_prefix();
    let core = core_for(&db, &prefix, |_| {});
    let mut a = scheduler(&core, "a");
    let mut b = scheduler(&core, "b");
    let mut c = scheduler(&core, "c");
    let now = at(12, 0, 7);
    let (fa, fb, fc) = tokio::join!(a.pass(now), b.pass(now), c.pass(now));
    let outcomes: Vec<TickOutcome> = [fa, fb, fc]
        .into_iter()
        .flatten()
        .map(|f| f.outcome)
        .collect();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, TickOutcome::Enqueued(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(count(&db, CLOSER_ROWS).await, 1);
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) AS n FROM outbox_jobs WHERE idempotency_key = 'close_due_sessions:{}' AND run_after = '2026-11-23T12:00:00Z'",
                at(12, 0, 0).timestamp()
            )
        )
        .await,
        1
    );

    // A later pass in the same minute does nothing; once a loser's lock wait is over it learns
    // from Redis that the tick is settled, without inserting.
    assert!(a.pass(at(12, 0, 30)).await.is_empty());
    for f in b
        .pass(at(12, 0, 30))
        .await
        .into_iter()
        .chain(c.pass(at(12, 0, 30)).await)
    {
        assert_eq!(f.outcome, TickOutcome::AlreadyEnqueued);
    }

    // The next minute: again one job.
    let now = at(12, 1, 0);
    let (fa, fb) = tokio::join!(a.pass(now), b.pass(now));
    assert_eq!(fa.len() + fb.len(), 2);
    assert_eq!(count(&db, CLOSER_ROWS).await, 2);
}

#[tokio::test]
async fn after_downtime_only_the_latest_missed_tick_fires_once() {
    let db = TestDb::new().await.unwrap();
    let prefix = testkit::unique_redis_prefix();
    let core = core_for(&db, &prefix, |_| {});
    let mut before = scheduler(&core, "before");
    before.pass(at(12, 0, 5)).await;
    assert_eq!(count(&db, CLOSER_ROWS).await, 1);

    // Every process is down from 12:00:10 to 12:10:30; a new one starts.
    let mut after = scheduler(&core, "after");
    let fired = after.pass(at(12, 10, 30)).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].tick, at(12, 10, 0));
    assert!(matches!(fired[0].outcome, TickOutcome::Enqueued(_)));
    assert_eq!(count(&db, CLOSER_ROWS).await, 2, "12:01–12:09 never fire");

    // A restart within the same minute does not fire it again, even with Redis emptied.
    let mut conn = core.redis.conn().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut again = scheduler(&core, "again");
    let fired = again.pass(at(12, 10, 50)).await;
    assert_eq!(fired[0].outcome, TickOutcome::AlreadyEnqueued);
    assert_eq!(count(&db, CLOSER_ROWS).await, 2);
}

#[tokio::test]
async fn without_redis_the_outbox_alone_keeps_one_job_per_tick() {
    let db = TestDb::new().await.unwrap();
    let port = testkit::throwaway::free_port().unwrap();
    let core = core_for(&db, &testkit::unique_redis_prefix(), |s| {
        s.redis.url = shared::Secret::new(format!("redis://127.0.0.1:{port}/0"));
    });
    let mut a = scheduler(&core, "a");
    let mut b = scheduler(&core, "b");
    let now = at(9, 30, 1);
    let (fa, fb) = tokio::join!(a.pass(now), b.pass(now));
    let outcomes: Vec<TickOutcome> = fa.into_iter().chain(fb).map(|f| f.outcome).collect();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, TickOutcome::Enqueued(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&TickOutcome::AlreadyEnqueued));
    assert_eq!(count(&db, CLOSER_ROWS).await, 1);
}

async fn ping(db: &TestDb, key: &str) -> shared::ids::JobId {
    let mut conn = db.conn().await.unwrap();
    outbox::enqueue(
        &mut conn,
        &DemoPing {
            message: key.into(),
            key: key.into(),
        },
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn failed_jobs_are_listed_for_ops_page_by_page() {
    let db = TestDb::new().await.unwrap();
    let mut dead = Vec::new();
    for i in 0..5 {
        let id = ping(&db, &format!("dead-{i}")).await;
        exec(
            &db,
            &format!(
                "UPDATE outbox_jobs SET status = 'dead', attempts = 3, last_error = 'boom {i}',
                        finished_at = now() - interval '{} minutes' WHERE id = '{}'",
                i,
                id.uuid()
            ),
        )
        .await;
        dead.push(id);
    }
    // Two dead at the same instant: the id breaks the tie without losing either.
    exec(
        &db,
        &format!(
            "UPDATE outbox_jobs SET finished_at = (SELECT finished_at FROM outbox_jobs WHERE id = '{}')
              WHERE id = '{}'",
            dead[3].uuid(),
            dead[4].uuid()
        ),
    )
    .await;
    let retrying = ping(&db, "retrying").await;
    exec(
        &db,
        &format!(
            "UPDATE outbox_jobs SET attempts = 1, last_error = 'timeout', started_at = now(),
                    run_after = now() + interval '2 seconds' WHERE id = '{}'",
            retrying.uuid()
        ),
    )
    .await;
    ping(&db, "healthy").await;

    let mut conn = db.conn().await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = outbox::list_failed_jobs(&mut conn, FailedJobsFilter::Dead, None, after, 2)
            .await
            .unwrap();
        pages += 1;
        assert!(page.jobs.len() <= 2);
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next {
            Some(cursor) => {
                let text = cursor.encode();
                assert_eq!(FailedJobsCursor::decode(&text), Some(cursor));
                after = Some(cursor);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(&seen[..3], &dead[..3], "most recently dead first");
    let mut tail = seen[3..].to_vec();
    tail.sort_by_key(|id| id.uuid());
    let mut expected = dead[3..].to_vec();
    expected.sort_by_key(|id| id.uuid());
    assert_eq!(tail, expected);

    let first = outbox::list_failed_jobs(&mut conn, FailedJobsFilter::Dead, None, None, 1)
        .await
        .unwrap();
    assert_eq!(first.jobs[0].last_error.as_deref(), Some("boom 0"));
    assert_eq!(first.jobs[0].status, "dead");
    assert_eq!(first.jobs[0].job_type, "DemoPing");
    assert_eq!(first.jobs[0].payload["key"], "dead-0");

    let r = outbox::list_failed_jobs(&mut conn, FailedJobsFilter::Retrying, None, None, 10)
        .await
        .unwrap();
    assert_eq!(
        r.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![retrying]
    );
    assert_eq!(r.next, None);
    let all = outbox::list_failed_jobs(&mut conn, FailedJobsFilter::All, None, None, 10)
        .await
        .unwrap();
    assert_eq!(all.jobs.len(), 6);
    assert_eq!(all.jobs[0].id, retrying);
    assert!(
        outbox::list_failed_jobs(&mut conn, FailedJobsFilter::All, Some("Other"), None, 10)
            .await
            .unwrap()
            .jobs
            .is_empty()
    );
    assert_eq!(
        outbox::count_failed_jobs(&mut conn, FailedJobsFilter::Dead, Some("DemoPing"))
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        outbox::count_failed_jobs(&mut conn, FailedJobsFilter::All, None)
            .await
            .unwrap(),
        6
    );
    assert_eq!(FailedJobsCursor::decode("nonsense"), None);
    assert_eq!(FailedJobsCursor::decode("12.job_xyz"), None);
}

async fn wait_for(db: &TestDb, sql: &str, want: i64, secs: i64) -> bool {
    let deadline = Utc::now() + Duration::seconds(secs);
    while Utc::now() < deadline {
        if count(db, sql).await == want {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_retried_dead_letter_runs_again_and_unknown_types_become_dead_letters() {
    let db = TestDb::new().await.unwrap();
    let id = ping(&db, "revived").await;
    let mut conn = db.conn().await.unwrap();
    assert!(
        !outbox::retry_dead(&mut conn, id).await.unwrap(),
        "only a dead job can be retried"
    );
    exec(
        &db,
        &format!(
            "UPDATE outbox_jobs SET status = 'dead', attempts = 3, finished_at = now(),
                    last_error = 'payment API down', locked_by = 'w-old' WHERE id = '{}'",
            id.uuid()
        ),
    )
    .await;
    assert!(outbox::retry_dead(&mut conn, id).await.unwrap());
    assert!(!outbox::retry_dead(&mut conn, id).await.unwrap(), "once");
    // A job of a type no process knows, due for a while, and one just enqueued.
    exec(
        &db,
        "INSERT INTO outbox_jobs (id, job_type, queue, payload, idempotency_key, run_after)
         VALUES (gen_random_uuid(), 'NoSuchJob', 'default', '{}', 'old', now() - interval '1 hour'),
                (gen_random_uuid(), 'NoSuchJob', 'default', '{}', 'new', now() + interval '1 hour')",
    )
    .await;

    let mut settings = testkit::settings_for(&db);
    settings.jobs.stalled_after_secs = 60;
    let core = Core::new(settings, Arc::new(SystemClock)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::spawn(shiftcover_workers::run(
        core,
        shiftcover_workers::default_registry(),
        async move {
            let _ = stopped.await;
        },
    ));

    assert!(
        wait_for(
            &db,
            &format!(
                "SELECT count(*) AS n FROM outbox_jobs WHERE id = '{}' AND status = 'done' AND attempts = 1 AND last_error IS NULL",
                id.uuid()
            ),
            1,
            20
        )
        .await,
        "the retried job runs with a fresh set of attempts"
    );
    assert_eq!(count(&db, "SELECT count(*) AS n FROM demo_pings").await, 1);
    assert!(
        wait_for(
            &db,
            "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'NoSuchJob' AND status = 'dead'
               AND idempotency_key = 'old' AND last_error = 'no handler registered for job type \"NoSuchJob\"'",
            1,
            10
        )
        .await
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'NoSuchJob' AND status = 'pending'"
        )
        .await,
        1,
        "a job within its grace period waits for a process that knows its type"
    );
    let page = outbox::list_failed_jobs(&mut conn, FailedJobsFilter::Dead, None, None, 10)
        .await
        .unwrap();
    assert_eq!(page.jobs.len(), 1);
    assert_eq!(page.jobs[0].job_type, "NoSuchJob");

    let _ = stop.send(());
    tokio::time::timeout(std::time::Duration::from_secs(30), runtime)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
