//! The outbox → Redis → worker path, with real `shiftcover work` processes.

use crate::support::{count, eventually};
use diesel_async::RunQueryDsl;
use shared::demo::DemoPing;
use shared::outbox;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::TestDb;

struct WorkProcess(Child);

impl WorkProcess {
    fn start(db: &TestDb, prefix: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_shiftcover"))
            .arg("work")
            .env("SHIFTCOVER__ENVIRONMENT", "test")
            .env("SHIFTCOVER__DATABASE__URL", db.url())
            .env("SHIFTCOVER__REDIS__URL", testkit::redis_url())
            .env("SHIFTCOVER__REDIS__KEY_PREFIX", prefix)
            .env("SHIFTCOVER__JOBS__RELAY_IDLE_MS", "20")
            .env("SHIFTCOVER__JOBS__RELAY_BATCH", "25")
            .env("SHIFTCOVER__LOG__FILTER", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("shiftcover work starts");
        WorkProcess(child)
    }
}

impl Drop for WorkProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn enqueue_pings(db: &TestDb, n: usize, tag: &str) {
    let mut conn = db.conn().await.unwrap();
    for i in 0..n {
        let id = outbox::enqueue(
            &mut conn,
            &DemoPing {
                message: format!("{tag} {i}"),
                key: format!("{tag}-{i}"),
            },
        )
        .await
        .unwrap();
        assert!(id.is_some());
    }
}

#[tokio::test]
async fn each_job_runs_once_with_two_work_processes() {
    let db = TestDb::new().await.unwrap();
    let prefix = testkit::unique_redis_prefix();
    let _a = WorkProcess::start(&db, &prefix);
    let _b = WorkProcess::start(&db, &prefix);
    enqueue_pings(&db, 300, "two-workers").await;

    let done = eventually(Duration::from_secs(60), || async {
        count(
            &db,
            "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'DemoPing' AND status = 'done'",
        )
        .await
            == 300
    })
    .await;
    assert!(done, "all jobs finish");
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM demo_pings").await,
        300
    );
    assert_eq!(
        count(&db, "SELECT count(DISTINCT job_id) AS n FROM demo_pings").await,
        300,
        "every job's effect happened exactly once"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'DemoPing' AND attempts <> 1"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn jobs_enqueued_together_are_stored_as_one_at_a_time_and_known_keys_skipped() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let ping = |key: &str| DemoPing {
        message: format!("ping {key}"),
        key: key.into(),
    };
    assert!(
        outbox::enqueue(&mut conn, &ping("a"))
            .await
            .unwrap()
            .is_some()
    );
    // One key already taken, one twice in the call: three new jobs.
    let jobs = [ping("a"), ping("b"), ping("c"), ping("c"), ping("d")];
    assert_eq!(outbox::enqueue_all(&mut conn, &jobs).await.unwrap(), 3);
    assert_eq!(outbox::enqueue_all(&mut conn, &jobs).await.unwrap(), 0);
    assert_eq!(
        outbox::enqueue_all::<DemoPing>(&mut conn, &[])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM outbox_jobs
              WHERE job_type = 'DemoPing' AND queue = 'default' AND status = 'pending'
                AND max_attempts = 3 AND attempts = 0 AND run_after <= now()"
        )
        .await,
        4
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM outbox_jobs
              WHERE idempotency_key = 'c' AND payload = '{\"message\": \"ping c\", \"key\": \"c\"}'::jsonb"
        )
        .await,
        1,
        "the payload is the job, as one at a time stores it"
    );
}

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_exists() {
    use diesel_async::AsyncConnection;
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let result = conn
        .transaction::<(), anyhow::Error, _>(async |conn| {
            outbox::enqueue(
                conn,
                &DemoPing {
                    message: "rolled back".into(),
                    key: "rb-1".into(),
                },
            )
            .await?;
            anyhow::bail!("the domain change failed")
        })
        .await;
    assert!(result.is_err());
    assert_eq!(count(&db, "SELECT count(*) AS n FROM outbox_jobs").await, 0);
}

#[tokio::test]
async fn relays_take_disjoint_batches_and_requeue_stale_rows() {
    let db = TestDb::new().await.unwrap();
    enqueue_pings(&db, 10, "relay").await;
    let mut a = db.conn().await.unwrap();
    let mut b = db.conn().await.unwrap();
    let types = ["DemoPing"];
    let first = outbox::take_due(&mut a, &types, 6, 60, 60).await.unwrap();
    let second = outbox::take_due(&mut b, &types, 6, 60, 60).await.unwrap();
    assert_eq!(first.len(), 6);
    assert_eq!(second.len(), 4);
    assert!(first.iter().all(|j| !second.contains(j)));
    assert!(
        outbox::take_due(&mut a, &types, 6, 60, 60)
            .await
            .unwrap()
            .is_empty()
    );
    // Unknown types stay pending for a process that knows them.
    assert!(
        outbox::take_due(&mut a, &["Other"], 6, 60, 60)
            .await
            .unwrap()
            .is_empty()
    );

    // A queued row that was never claimed (Redis lost it) is taken again after the timeout.
    diesel::sql_query("UPDATE outbox_jobs SET queued_at = now() - interval '2 minutes'")
        .execute(&mut a)
        .await
        .unwrap();
    assert_eq!(
        outbox::take_due(&mut a, &types, 100, 60, 60)
            .await
            .unwrap()
            .len(),
        10
    );
}

#[tokio::test]
async fn claims_are_exclusive_and_failures_back_off_then_dead_letter() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    enqueue_pings(&db, 1, "claim").await;
    let due = outbox::take_due(&mut conn, &["DemoPing"], 10, 60, 60)
        .await
        .unwrap();
    let id = due[0].id;
    let claimed = outbox::claim(&mut conn, id, "w1").await.unwrap().unwrap();
    assert_eq!(claimed.attempts, 1);
    assert!(outbox::claim(&mut conn, id, "w2").await.unwrap().is_none());

    // Failure with a retry time: back to pending, not yet due.
    let later = chrono::Utc::now() + chrono::Duration::minutes(5);
    assert!(
        outbox::fail(&mut conn, &claimed, "w1", "boom", Some(later))
            .await
            .unwrap()
    );
    assert!(
        outbox::take_due(&mut conn, &["DemoPing"], 10, 60, 60)
            .await
            .unwrap()
            .is_empty()
    );
    // Another worker cannot complete or fail a claim it does not hold.
    assert!(!outbox::complete(&mut conn, &claimed, "w2").await.unwrap());

    // Make it due, claim the second attempt, fail it for good.
    diesel::sql_query("UPDATE outbox_jobs SET run_after = now()")
        .execute(&mut conn)
        .await
        .unwrap();
    outbox::take_due(&mut conn, &["DemoPing"], 10, 60, 60)
        .await
        .unwrap();
    let second = outbox::claim(&mut conn, id, "w2").await.unwrap().unwrap();
    assert_eq!(second.attempts, 2);
    assert!(
        outbox::fail(&mut conn, &second, "w2", "still broken", None)
            .await
            .unwrap()
    );
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM outbox_jobs WHERE status = 'dead' AND last_error = 'still broken'").await,
        1
    );
    // Ops retry it: fresh attempts.
    assert!(outbox::retry_dead(&mut conn, id).await.unwrap());
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM outbox_jobs WHERE status = 'pending' AND attempts = 0"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_permanently_failing_job_is_dead_lettered_by_the_runtime() {
    let db = TestDb::new().await.unwrap();
    let prefix = testkit::unique_redis_prefix();
    let _w = WorkProcess::start(&db, &prefix);
    let mut conn = db.conn().await.unwrap();
    outbox::enqueue(
        &mut conn,
        &DemoPing {
            message: "fail: on purpose".into(),
            key: "dead-1".into(),
        },
    )
    .await
    .unwrap();
    let dead = eventually(Duration::from_secs(30), || async {
        count(&db, "SELECT count(*) AS n FROM outbox_jobs WHERE status = 'dead' AND last_error LIKE 'permanent: asked to fail%'").await == 1
    })
    .await;
    assert!(dead, "the job is dead-lettered with its error");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM demo_pings").await, 0);
}
