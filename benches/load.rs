//! The load benchmark: the main driver and partner operations together, over HTTP, against a
//! release build of `shiftcover serve` and `shiftcover work` on this machine's PostgreSQL and
//! Redis — the same traffic the fault suite runs (tests/faults/traffic.rs), without faults and
//! without pauses.
//!
//! App drivers loop `createQuote`, `startCover`, a wallet read, `endCover` and, every fourth
//! round, a top-up through Stripe (localstripe); the partner sends each of its drivers' shifts
//! with `recordShiftEvents` (two batches of two events) and asks `coverStatus`. The workers
//! charge every session, send every text and deliver every partner webhook meanwhile.
//!
//! Prints, for the measured window: each operation's calls, calls/s, p50, p99 and errors; the
//! machine's CPU use (all cores, from /proc/stat) split by process (API, workers, PostgreSQL,
//! Redis, the rest — localstripe and the load generator itself); and how far the workers kept up
//! (sessions ended but not yet charged at the end).
//!
//! ```text
//! cargo bench --bench load
//! LOAD_APP_DRIVERS=48 LOAD_PARTNER_DRIVERS=16 LOAD_SECS=30 cargo bench --bench load
//! ```
//!
//! Knobs: `LOAD_APP_DRIVERS` (32), `LOAD_PARTNER_DRIVERS` (16), `LOAD_WARMUP_SECS` (5),
//! `LOAD_SECS` (20), `LOAD_PAUSE_MS` (0: each driver sends its next call as soon as the last is
//! answered), `LOAD_API_WORKERS` (2 actix workers), `LOAD_POOL` (16 connections per process).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/faults/stack.rs"]
mod stack;
#[path = "../tests/faults/traffic.rs"]
mod traffic;

use stack::{Fakes, Proc, Wiring, process_env, wait_healthy};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use traffic::{Api, Recorder, TrafficLog, env_num};

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("load benchmark failed: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let app_drivers = env_num("LOAD_APP_DRIVERS", 32) as usize;
    let partner_drivers = env_num("LOAD_PARTNER_DRIVERS", 16) as usize;
    let warmup = Duration::from_secs(env_num("LOAD_WARMUP_SECS", 5));
    let measure = Duration::from_secs(env_num("LOAD_SECS", 20).max(1));
    let pause = Duration::from_millis(env_num("LOAD_PAUSE_MS", 0));
    let pool_size = env_num("LOAD_POOL", 16) as usize;
    let run_id = (uuid::Uuid::new_v4().as_u128() % 10_000) as u32;

    let db = testkit::TestDb::new().await?;
    let stripe = testkit::localstripe::LocalStripe::shared();
    let fakes = Fakes::start(stripe.base_url())?;
    fakes.register_stripe_webhook().await?;
    let wiring = Wiring {
        database_url: db.url().to_owned(),
        redis_url: testkit::redis_url(),
        redis_prefix: testkit::unique_redis_prefix(),
        fakes_base: fakes.base.clone(),
    };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_shiftcover"));
    let out = std::process::Command::new(&bin)
        .arg("seed")
        .envs(process_env(&wiring, None, 2))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "seed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = std::env::temp_dir().join(format!("sc-load-{run_id}"));
    std::fs::create_dir_all(&logs)?;
    let port = testkit::throwaway::free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    // The job runtime as deployed (the fault suite's quick-recovery settings would poll the
    // outbox twenty times a second).
    let production_jobs = |mut env: Vec<(String, String)>| {
        env.retain(|(k, _)| !k.starts_with("SHIFTCOVER__JOBS__"));
        env
    };
    let mut api_env = production_jobs(process_env(&wiring, Some(port), pool_size));
    api_env.push((
        "SHIFTCOVER__HTTP__WORKERS".into(),
        env_num("LOAD_API_WORKERS", 2).to_string(),
    ));
    let mut api_proc = Proc::new("api", bin.clone(), &["serve"], api_env, &logs);
    let mut work_proc = Proc::new(
        "work",
        bin.clone(),
        &["work"],
        production_jobs(process_env(&wiring, None, pool_size)),
        &logs,
    );
    api_proc.start()?;
    work_proc.start()?;
    let http = reqwest::Client::new();
    anyhow::ensure!(
        wait_healthy(&http, &format!("{base}/readyz"), Duration::from_secs(60)).await,
        "the API did not become ready"
    );
    let pool = db.pool().clone();

    // Drivers, the partner and its webhook endpoint.
    let setup = Api::new(vec![base.clone()], Recorder::new());
    let (_delivery_stop, delivery_rx) = tokio::sync::watch::channel(false);
    let _delivery = fakes.spawn_webhook_delivery(vec![base.clone()], 2, delivery_rx);
    let started = Instant::now();
    let world = traffic::set_up_world(
        &setup,
        &pool,
        &fakes,
        stripe,
        &traffic::WorldPlan {
            run: run_id,
            app_drivers,
            partner_drivers,
            top_up_minor: 10_000,
            partner_name: "Load Deliveries",
            parallel: 8,
        },
    )
    .await?;
    println!(
        "load: {app_drivers} app drivers and {partner_drivers} partner drivers set up in {:.1} s; one API process ({} actix workers) and one worker process, pools of {pool_size}",
        started.elapsed().as_secs_f64(),
        env_num("LOAD_API_WORKERS", 2)
    );

    // Traffic.
    let rec = Recorder::new();
    let api = Api::new(vec![base.clone()], rec.clone());
    let book = Arc::new(TrafficLog::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks = traffic::spawn_traffic(&api, &world, run_id, &book, &stop_rx, pause, 21);
    tokio::time::sleep(warmup).await;
    let from_ms = rec.now_ms();
    let cpu_before = cpu::read_cpu();
    let wall = Instant::now();
    tokio::time::sleep(measure).await;
    let cpu_after = cpu::read_cpu();
    let secs = wall.elapsed().as_secs_f64();
    let to_ms = rec.now_ms();
    stop_tx.send(true)?;
    let uncharged_at_end = count_uncharged(&pool).await;
    for t in tasks {
        let _ = t.await;
    }

    // Report.
    let samples = rec.samples();
    let stats = traffic::stats(&samples, from_ms, to_ms);
    println!(
        "\nMeasured {secs:.1} s after {:.0} s of warm-up:",
        warmup.as_secs_f64()
    );
    println!(
        "  {:<20} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "operation", "calls", "per s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    let mut all = 0;
    for (op, s) in &stats {
        all += s.count;
        println!(
            "  {:<20} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7}",
            op,
            s.count,
            s.count as f64 / secs,
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.errors
        );
    }
    println!("  {:<20} {:>8} {:>9.1}", "all", all, all as f64 / secs);
    let errors = traffic::error_kinds(&samples, from_ms, to_ms);
    if !errors.is_empty() {
        println!("  errors: {errors:?}");
    }

    let total_ticks = (cpu_after.total - cpu_before.total).max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let share = |ticks: u64| ticks as f64 / total_ticks * 100.0;
    let used = |pred: &dyn Fn(u32, &str) -> bool| cpu_after.processes_since(&cpu_before, pred);
    let api_pid = api_proc.pid().unwrap_or(0);
    let work_pid = work_proc.pid().unwrap_or(0);
    let me = std::process::id();
    let busy = cpu_after.busy - cpu_before.busy;
    let api_t = used(&|p, _| p == api_pid);
    let work_t = used(&|p, _| p == work_pid);
    let pg_t = used(&|_, c| c == "postgres");
    let redis_t = used(&|_, c| c.starts_with("redis"));
    let gen_t = used(&|p, _| p == me);
    println!(
        "\nCPU over the window ({cores:.0} cores = 100%): machine busy {:.0}% — API {:.0}%, workers {:.0}%, PostgreSQL {:.0}%, Redis {:.0}%, load generator {:.0}%, the rest (localstripe, fakes' threads are in the generator) {:.0}%",
        share(busy),
        share(api_t),
        share(work_t),
        share(pg_t),
        share(redis_t),
        share(gen_t),
        share(busy.saturating_sub(api_t + work_t + pg_t + redis_t + gen_t)),
    );
    println!(
        "Workers: {} sessions ended and not yet charged when the window closed; {} shift events sent in all",
        uncharged_at_end,
        book.events_sent.load(std::sync::atomic::Ordering::Relaxed)
    );
    api_proc.kill();
    work_proc.kill();
    Ok(())
}

async fn count_uncharged(pool: &shared::db::DbPool) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let Ok(mut conn) = pool.get().await else {
        return -1;
    };
    diesel::sql_query("SELECT count(*) AS n FROM cover_sessions WHERE status = 'ended'")
        .get_result::<N>(&mut conn)
        .await
        .map_or(-1, |r| r.n)
}
