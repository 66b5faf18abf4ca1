//! Benchmark of `recordShiftEvents` over HTTP: events per second and latency per batch.
//!
//! Starts the real server in-process on port 0 on a throwaway database (the demo products, one
//! partner with a live key, `BENCH_DRIVERS` drivers enrolled, funded and linked through the API),
//! makes a day of shifts for every driver over the last 20 hours (the simulation's generator:
//! `shiftcover::simulate`), cuts it into batches of `BENCH_BATCH` events (time order overall,
//! shuffled within a batch, one event in thirty repeated) and sends them from `BENCH_CLIENTS`
//! concurrent clients. Every event is a late one, so each batch starts and ends real sessions
//! (backdated) as the partner's ordered events say. Then the same batches go again: every event
//! is a duplicate, the idempotent path partners hit when they retry.
//!
//! ```text
//! cargo bench --bench partners
//! BENCH_DRIVERS=1000 BENCH_BATCH=500 BENCH_CLIENTS=4 cargo bench --bench partners
//! ```

use serde_json::{Value, json};
use shared::clock::SystemClock;
use shared::core::Core;
use shiftcover::simulate::{self, Batches, Tally};
use std::sync::Arc;
use std::time::Instant;
use testkit::TestDb;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}"))
        })
        .unwrap_or(default)
}

/// Sends every batch from `clients` concurrent clients; returns the tally and the seconds taken.
async fn send_all(
    base: &str,
    key: &str,
    batches: &[Vec<Value>],
    clients: usize,
) -> anyhow::Result<(Tally, f64)> {
    let batches = Arc::new(batches.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (batches, next) = (batches.clone(), next.clone());
        let (base, key) = (base.to_owned(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
            let mut tally = Tally::default();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(batch) = batches.get(i) else { break };
                let t = Instant::now();
                let answer = simulate::partner_call(
                    &http,
                    &base,
                    &key,
                    simulate::RECORD_SHIFT_EVENTS,
                    json!({ "input": { "events": batch } }),
                )
                .await;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                match answer {
                    Ok(body) if body["errors"].is_null() => tally.add(batch.len(), ms, &body),
                    Ok(body) => {
                        tally.failures += 1;
                        eprintln!("batch failed: {body}");
                    }
                    Err(e) => {
                        tally.failures += 1;
                        eprintln!("batch failed: {e:#}");
                    }
                }
            }
            anyhow::Ok(tally)
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await??;
        all.sent += t.sent;
        all.failures += t.failures;
        all.batch_ms.extend(t.batch_ms);
        for (k, v) in t.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
        for (k, v) in t.rejected {
            *all.rejected.entry(k).or_default() += v;
        }
        for (k, v) in t.cover {
            *all.cover.entry(k).or_default() += v;
        }
    }
    Ok((all, started.elapsed().as_secs_f64()))
}

fn report(label: &str, tally: &Tally, secs: f64) {
    println!(
        "{label:<28} {:>7} events in {:>6.1} s = {:>6.0} events/s | {:>4} batches: p50 {:>6.1} ms, p99 {:>6.1} ms, max {:>6.1} ms | failures {}",
        tally.sent,
        secs,
        tally.sent as f64 / secs.max(1e-9),
        tally.batch_ms.len(),
        tally.percentile_ms(50.0),
        tally.percentile_ms(99.0),
        tally.percentile_ms(100.0),
        tally.failures,
    );
    println!("{:<28} answers {:?}", "", tally.statuses);
    println!("{:<28} cover {:?}", "", tally.cover);
    if !tally.rejected.is_empty() {
        println!("{:<28} rejected {:?}", "", tally.rejected);
    }
}

fn main() -> anyhow::Result<()> {
    let drivers = env_num("BENCH_DRIVERS", 300);
    let batch = env_num("BENCH_BATCH", 100);
    let clients = env_num("BENCH_CLIENTS", 4);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = TestDb::new().await?;
        let mut settings = testkit::settings_for(&db);
        settings.accounts.partner_requests_per_minute = 1_000_000;
        settings.accounts.partner_key_requests_per_minute = 1_000_000;
        let core = Core::new(settings, Arc::new(SystemClock))?;
        let mut conn = db.conn().await?;
        pricing::seed_demo_products(&mut conn).await?;
        let clock = core.clock.as_ref();
        let partner =
            accounts::create_partner(&mut conn, clock, accounts::Actor::System, "Bench Eats")
                .await?;
        let (_, key) = accounts::create_api_key(
            &mut conn,
            clock,
            accounts::Actor::System,
            partner.id,
            &accounts::Scope::ALL,
            false,
        )
        .await?;
        drop(conn);
        let server = graphql::start_server(core.clone())?;
        let base = format!("http://{}", server.addr);

        let t = Instant::now();
        let sim = simulate::prepare_drivers(&core, drivers, "bench").await?;
        simulate::link_all(&reqwest::Client::new(), &base, &key, &sim).await?;
        println!(
            "partners bench: {} cores, {drivers} drivers ready and linked in {:.1} s, batches of {batch}, {clients} clients",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            t.elapsed().as_secs_f64()
        );

        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
        let to = chrono::Utc::now();
        let from = to - chrono::Duration::hours(20);
        let events: Vec<Value> = sim
            .iter()
            .flat_map(|d| simulate::day_of_shifts(&mut rng, &d.external_id, from, to))
            .collect();
        let batches = Batches::make(&mut rng, events, batch);

        let (first, secs) = send_all(&base, &key, &batches, clients).await?;
        report("recordShiftEvents (new)", &first, secs);
        let (again, secs) = send_all(&base, &key, &batches, clients).await?;
        report("recordShiftEvents (repeat)", &again, secs);

        server.handle.stop(true).await;
        anyhow::ensure!(
            first.failures == 0 && again.failures == 0,
            "some batches failed"
        );
        anyhow::ensure!(
            again.statuses.get("ACCEPTED").copied().unwrap_or(0) == 0,
            "a repeated event was accepted twice"
        );
        drop(db);
        anyhow::Ok(())
    })
}
