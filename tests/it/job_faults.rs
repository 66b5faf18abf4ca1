//! Faults in the job runtime: `shiftcover work` processes are SIGKILLed mid-run and restarted,
//! and Redis (a throwaway instance of this test's own) is restarted with its queues lost, while
//! jobs keep arriving. Every job's effect must still happen exactly once, and every outbox row
//! must end `done`.

use crate::support::{count, eventually};
use shared::demo::DemoPing;
use shared::outbox;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use testkit::TestDb;
use testkit::throwaway::ThrowawayRedis;

const JOBS: usize = 300;

/// A `shiftcover work` process that can be killed and started again; its stderr goes to a file
/// that is printed when the test fails.
struct Worker {
    name: &'static str,
    child: Option<Child>,
    db_url: String,
    redis_url: String,
    prefix: String,
    log: PathBuf,
}

impl Worker {
    fn new(name: &'static str, db: &TestDb, redis: &ThrowawayRedis, prefix: &str) -> Self {
        let log = std::env::temp_dir().join(format!(
            "sc-job-faults-{}-{name}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let mut w = Worker {
            name,
            child: None,
            db_url: db.url().to_owned(),
            redis_url: redis.url(),
            prefix: prefix.to_owned(),
            log,
        };
        w.start();
        w
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shiftcover"))
            .arg("work")
            .env("SHIFTCOVER__ENVIRONMENT", "test")
            .env("SHIFTCOVER__DATABASE__URL", &self.db_url)
            .env("SHIFTCOVER__DATABASE__POOL_SIZE", "6")
            .env("SHIFTCOVER__REDIS__URL", &self.redis_url)
            .env("SHIFTCOVER__REDIS__KEY_PREFIX", &self.prefix)
            .env("SHIFTCOVER__JOBS__RELAY_IDLE_MS", "20")
            .env("SHIFTCOVER__JOBS__RELAY_BATCH", "25")
            // Recover quickly from what the faults leave behind: messages lost with Redis,
            // rows claimed by a killed process.
            .env("SHIFTCOVER__JOBS__REQUEUE_AFTER_SECS", "2")
            .env("SHIFTCOVER__JOBS__STALLED_AFTER_SECS", "3")
            .env("SHIFTCOVER__LOG__FILTER", "warn")
            .env("SHIFTCOVER__LOG__FORMAT", "pretty")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("shiftcover work starts");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no acknowledgements, claims left behind.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- {} (last lines) ---\n{}",
            self.name,
            lines[from..].join("\n")
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

async fn enqueue_slowly(db_url: String, n: usize) {
    let pool = shared::db::build_pool(&shared::settings::DatabaseSettings {
        url: shared::Secret::new(db_url),
        pool_size: 1,
        acquire_timeout_ms: 5_000,
        batch_concurrency: 1,
    })
    .unwrap();
    let mut conn = pool.get().await.unwrap();
    for i in 0..n {
        let id = outbox::enqueue(
            &mut conn,
            &DemoPing {
                message: format!("fault {i}"),
                key: format!("fault-{i}"),
            },
        )
        .await
        .unwrap();
        assert!(id.is_some());
        if i % 10 == 9 {
            // About 33 jobs a second: the stream lasts through every fault below.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

async fn count_statuses(db: &TestDb) -> String {
    let mut conn = db.conn().await.unwrap();
    let counts = outbox::counts_by_status(&mut conn).await.unwrap();
    format!("outbox rows by status: {counts:?}")
}

#[tokio::test]
async fn effects_happen_once_through_killed_workers_and_a_redis_restart() {
    let started = Instant::now();
    let db = TestDb::new().await.unwrap();
    let mut redis = ThrowawayRedis::start().unwrap();
    let prefix = testkit::unique_redis_prefix();
    let mut a = Worker::new("a", &db, &redis, &prefix);
    let mut b = Worker::new("b", &db, &redis, &prefix);
    let producer = tokio::spawn(enqueue_slowly(db.url().to_owned(), JOBS));

    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    pause(1_000).await;
    a.kill();
    pause(400).await;
    a.start();
    pause(1_000).await;
    b.kill();
    pause(400).await;
    b.start();
    pause(1_000).await;
    a.kill();
    pause(300).await;
    a.start();
    pause(900).await;
    a.kill();
    b.kill();
    pause(500).await;
    a.start();
    b.start();
    pause(1_000).await;
    // Redis dies with every queued message and every worker registration...
    redis.stop();
    pause(500).await;
    redis.start_server().unwrap();
    pause(500).await;
    // ...and the rest of the jobs are left to the process that lived through it.
    a.kill();
    producer.await.unwrap();

    let all_done = eventually(Duration::from_secs(40), || async {
        count(
            &db,
            "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'DemoPing' AND status = 'done'",
        )
        .await
            == JOBS as i64
    })
    .await;
    let statuses = count_statuses(&db).await;
    let logs = format!("{statuses}\n{}\n{}", a.log_tail(), b.log_tail());
    if std::env::var_os("SHIFTCOVER_TEST_SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    assert!(all_done, "every job finishes\n{logs}");
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM demo_pings").await,
        JOBS as i64,
        "no effect happened twice\n{logs}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(DISTINCT p.job_id) AS n FROM demo_pings p
               JOIN outbox_jobs o ON o.id = p.job_id AND o.job_type = 'DemoPing'"
        )
        .await,
        JOBS as i64,
        "every job's effect happened"
    );
    // Cron ticks enqueued by the processes along the way finish too, once per tick — except the
    // daily Stripe reconciliation, which needs a Stripe these processes are not given (it stays
    // pending, retried, as it would while Stripe is down).
    let settled = eventually(Duration::from_secs(15), || async {
        count(
            &db,
            "SELECT count(*) AS n FROM outbox_jobs
              WHERE status <> 'done' AND job_type <> 'ReconcileStripeDay'",
        )
        .await
            == 0
    })
    .await;
    assert!(settled, "every outbox row ends done\n{logs}");
    assert!(
        count(
            &db,
            "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'CloseDueSessions'"
        )
        .await
            >= 1
    );
    let rerun = count(
        &db,
        "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'DemoPing' AND attempts > 1",
    )
    .await;
    eprintln!(
        "job faults: {JOBS} jobs, {rerun} needed more than one attempt, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
