//! Job runtime throughput and latency: outbox → relay → Redis → worker → handler → done.
//!
//! Runs the real runtime (`shiftcover_workers::run` with the default registry and job settings) in this
//! process against a fresh test database and a private key prefix on the test Redis, with the
//! demo job as the workload (one insert and the completion in one transaction). Prints:
//! - enqueue-to-done latency (p50/p90/p99/max) at steady offered loads, each job enqueued in its
//!   own transaction as domain code does;
//! - the sustained rate at which a backlog drains.
//!
//! `cargo bench -p shiftcover-workers --bench throughput`; `SHIFTCOVER_BENCH_SCALE=0.2` shortens
//! it, `SHIFTCOVER_BENCH_RELAY_IDLE_MS=20` shows the latency with a busier relay.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that cannot set up should stop

use diesel_async::RunQueryDsl;
use shared::clock::SystemClock;
use shared::core::Core;
use shared::demo::DemoPing;
use shared::outbox;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::TestDb;

#[derive(diesel::QueryableByName)]
struct Latency {
    #[diesel(sql_type = diesel::sql_types::Double)]
    ms: f64,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Span {
    #[diesel(sql_type = diesel::sql_types::Double)]
    secs: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64)).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

async fn wait_all_done(db: &TestDb, tag: &str, n: i64, limit: Duration) -> bool {
    let sql = format!(
        "SELECT count(*) AS n FROM outbox_jobs WHERE status = 'done' AND idempotency_key LIKE '{tag}-%'"
    );
    let start = Instant::now();
    while start.elapsed() < limit {
        if count(db, &sql).await >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn latencies(db: &TestDb, tag: &str) -> Vec<f64> {
    let mut conn = db.conn().await.unwrap();
    let mut ms: Vec<f64> = diesel::sql_query(format!(
        "SELECT (extract(epoch FROM finished_at - created_at) * 1000)::float8 AS ms
           FROM outbox_jobs WHERE status = 'done' AND idempotency_key LIKE '{tag}-%'"
    ))
    .load::<Latency>(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|l| l.ms)
    .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// Offers `rate` jobs/s for `secs` seconds, one transaction per job, then waits for them all.
async fn steady(db: &TestDb, rate: u32, secs: u32) {
    let tag = format!("steady{rate}");
    let tick = Duration::from_millis(20);
    let per_tick = f64::from(rate) * tick.as_secs_f64();
    let total = rate * secs;
    let mut conn = db.conn().await.unwrap();
    let start = Instant::now();
    let mut sent = 0u32;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut owed = 0.0;
    while sent < total {
        interval.tick().await;
        owed += per_tick;
        while owed >= 1.0 && sent < total {
            outbox::enqueue(
                &mut conn,
                &DemoPing {
                    message: "bench".into(),
                    key: format!("{tag}-{sent}"),
                },
            )
            .await
            .unwrap();
            sent += 1;
            owed -= 1.0;
        }
    }
    let offered_for = start.elapsed();
    let done = wait_all_done(db, &tag, i64::from(total), Duration::from_secs(120)).await;
    let ms = latencies(db, &tag).await;
    println!(
        "steady {rate:>5} jobs/s offered for {:>4.1} s: {:>6} jobs, {}  latency ms p50 {:>7.1}  p90 {:>7.1}  p99 {:>7.1}  max {:>7.1}",
        offered_for.as_secs_f64(),
        total,
        if done { "all done," } else { "NOT ALL DONE," },
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        percentile(&ms, 99.0),
        percentile(&ms, 100.0),
    );
}

/// Commits `n` jobs at once, then measures how fast the runtime drains them.
async fn backlog(db: &TestDb, n: u32) {
    let tag = "backlog";
    let mut conn = db.conn().await.unwrap();
    // One statement, so the whole backlog becomes visible to the relay at one instant.
    diesel::sql_query(format!(
        "INSERT INTO outbox_jobs (id, job_type, queue, payload, idempotency_key, max_attempts)
         SELECT gen_random_uuid(), 'DemoPing', 'default',
                jsonb_build_object('message', 'bench', 'key', '{tag}-' || i), '{tag}-' || i, 3
           FROM generate_series(0, {}) AS i",
        n - 1
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let started = Instant::now();
    let done = wait_all_done(db, tag, i64::from(n), Duration::from_secs(300)).await;
    let wall = started.elapsed();
    let span: Span = diesel::sql_query(format!(
        "SELECT extract(epoch FROM max(finished_at) - min(created_at))::float8 AS secs
           FROM outbox_jobs WHERE idempotency_key LIKE '{tag}-%'"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    let ms = latencies(db, tag).await;
    println!(
        "backlog of {n} jobs: {} in {:.2} s (database clock) = {:.0} jobs/s sustained; wall {:.2} s; enqueue-to-done ms p50 {:.0} p99 {:.0}",
        if done { "drained" } else { "NOT drained" },
        span.secs,
        f64::from(n) / span.secs,
        wall.as_secs_f64(),
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let scale: f64 = std::env::var("SHIFTCOVER_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let db = TestDb::new().await.expect("a test database (is PostgreSQL up?)");
        let settings = {
            let mut s = testkit::settings_for(&db);
            let defaults = shared::settings::JobSettings::default();
            s.jobs = defaults;
            if let Some(ms) = std::env::var("SHIFTCOVER_BENCH_RELAY_IDLE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                s.jobs.relay_idle_ms = ms;
            }
            s.database.pool_size = 16;
            s
        };
        println!(
            "job runtime benchmark: relay_batch {}, relay_idle_ms {}, queue concurrency {}, pool {} connections, {} cores",
            settings.jobs.relay_batch,
            settings.jobs.relay_idle_ms,
            shiftcover_workers::QueuePolicy::default().concurrency,
            settings.database.pool_size,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
        let core = Core::new(settings, Arc::new(SystemClock)).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime_task = tokio::spawn(shiftcover_workers::run(
            core.clone(),
            shiftcover_workers::default_registry(),
            async move {
                let _ = stop_rx.await;
            },
        ));
        // Let the workers register with Redis before measuring.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let secs = ((10.0 * scale).round() as u32).max(2);
        for rate in [50, 200, 500] {
            steady(&db, rate, secs).await;
        }
        backlog(&db, ((5000.0 * scale).round() as u32).max(200)).await;

        let pings = count(&db, "SELECT count(*) AS n FROM demo_pings").await;
        let distinct = count(&db, "SELECT count(DISTINCT job_id) AS n FROM demo_pings").await;
        println!("effects: {pings} demo_pings rows for {distinct} distinct jobs");

        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), runtime_task).await;
        let mut redis = core.redis.conn().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", core.settings.redis.key_prefix))
            .query_async(&mut redis)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await;
        }
    });
}
