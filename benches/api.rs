//! HTTP benchmarks of the API, each beside a raw-SQL baseline measured in the same run.
//!
//! Each scenario starts the real server in-process on port 0, on a throwaway database cloned from
//! the migrated template, with the demo products and `BENCH_DRIVERS` drivers (complete profile, a
//! car, a driver session token). `BENCH_CLIENTS` concurrent HTTP/1.1 keep-alive clients then drive
//! it for `BENCH_WARMUP_SECS` unrecorded and `BENCH_SECS` recorded seconds; after that the same
//! number of tasks run the statements the endpoint needs, written as plain SQL through the same
//! connection pool, for the same time, each prepared once per connection as the endpoint's are
//! (`shared::sql::prepared`): the database's share of the work without HTTP and GraphQL, one
//! request's statements at a time. The server batches some statements across concurrent requests
//! (`shared::batch`: the driver session, the driver and vehicle, the insert of a quote); the
//! baseline does not, so it is the floor of the naive way, which the quote endpoint now beats,
//! and the quote result says how many requests each batched statement served on average. Starts
//! and ends of cover run through the cover engine, which takes every request waiting at that
//! moment as one batch (`cover::engine`); the cover result says how many requests each batch
//! served. Every transport error, non-200 answer, GraphQL error
//! and `userErrors` entry is counted and printed.
//!
//! Scenarios (first argument, or `BENCH_SCENARIO`): `quote` (`createQuote`), `cover`
//! (`startCover` then `endCover`), `all` (the default).
//!
//! ```text
//! cargo bench --bench api -- quote
//! BENCH_CLIENTS=64 BENCH_SECS=20 cargo bench --bench api -- all
//! ```
//!
//! Other knobs: `BENCH_POOL` (server pool size; default the settings' default), `BENCH_BATCH`
//! (`database.batch_concurrency`: batches of one kind at a time; default the settings' default),
//! `BENCH_WORKERS` (actix workers; default one per core), `BENCH_LOG=json` (log every request as
//! JSON, as production does, into a sink: the formatting cost without the terminal).
//!
//! Each result is followed by where the CPU time of its recorded window went, per unit of work:
//! PostgreSQL's processes, the server (its actix worker threads, which also drive the database
//! connections), the load generator (this process's other threads), and the rest of the machine;
//! with the machine's busy share, it shows which side bounds the throughput on this machine.

use diesel::sql_types::{Bytea, Date, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use shared::clock::SystemClock;
use shared::core::Core;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::TestDb;

#[path = "support/cpu.rs"]
mod cpu;

// ---------------------------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Quote,
    Cover,
    All,
}

#[derive(Debug, Clone)]
struct Config {
    scenario: Scenario,
    clients: usize,
    drivers: usize,
    warmup: Duration,
    measure: Duration,
    pool_size: Option<usize>,
    batch_concurrency: Option<usize>,
    workers: usize,
    log_json: bool,
}

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

impl Config {
    fn from_env() -> Config {
        // `cargo bench` passes `--bench`; the scenario is the first argument that is not a flag.
        let arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        let name = arg
            .or_else(|| std::env::var("BENCH_SCENARIO").ok())
            .unwrap_or_else(|| "all".into());
        let scenario = match name.as_str() {
            "quote" => Scenario::Quote,
            "cover" => Scenario::Cover,
            "all" => Scenario::All,
            other => panic!("unknown scenario {other:?}: quote, cover or all"),
        };
        let clients = env_num("BENCH_CLIENTS", 32).max(1) as usize;
        Config {
            scenario,
            clients,
            drivers: (env_num("BENCH_DRIVERS", 512) as usize).max(clients),
            warmup: Duration::from_secs(env_num("BENCH_WARMUP_SECS", 3)),
            measure: Duration::from_secs(env_num("BENCH_SECS", 10).max(1)),
            pool_size: std::env::var("BENCH_POOL")
                .ok()
                .map(|_| env_num("BENCH_POOL", 16) as usize),
            batch_concurrency: std::env::var("BENCH_BATCH")
                .ok()
                .map(|_| env_num("BENCH_BATCH", 1) as usize),
            workers: env_num("BENCH_WORKERS", 0) as usize,
            log_json: std::env::var("BENCH_LOG").is_ok_and(|v| v == "json"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// What one client saw: latencies per named step (recorded phase only), completed units, errors
/// (both phases).
#[derive(Default)]
struct Recorder {
    recording: bool,
    /// Calls of the scenario's operation by this client so far (warm-up included).
    calls: u64,
    units: u64,
    steps: BTreeMap<&'static str, Vec<u32>>,
    errors: BTreeMap<String, u64>,
    samples: Vec<String>,
    warmup_errors: u64,
}

impl Recorder {
    /// Records one step's latency, measured from `started`.
    fn step(&mut self, name: &'static str, started: Instant) {
        if self.recording {
            let us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
            self.steps.entry(name).or_default().push(us);
        }
    }

    /// Counts one finished unit of work (a quote, a cover session).
    fn unit(&mut self) {
        if self.recording {
            self.units += 1;
        }
    }

    /// Counts a failure, keeping a few examples.
    fn error(&mut self, kind: impl Into<String>, detail: impl Into<String>) {
        let kind = kind.into();
        if !self.recording {
            self.warmup_errors += 1;
        }
        *self.errors.entry(kind.clone()).or_default() += 1;
        if self.samples.len() < 3 {
            let mut detail = detail.into();
            detail.truncate(400);
            self.samples.push(format!("{kind}: {detail}"));
        }
    }

    fn merge(&mut self, other: Recorder) {
        self.units += other.units;
        for (k, mut v) in other.steps {
            self.steps.entry(k).or_default().append(&mut v);
        }
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        for s in other.samples {
            if self.samples.len() < 5 {
                self.samples.push(s);
            }
        }
        self.warmup_errors += other.warmup_errors;
    }
}

struct Outcome {
    label: String,
    unit: &'static str,
    elapsed: Duration,
    rec: Recorder,
    /// CPU counters at the start and the end of the recorded window.
    cpu: Option<(cpu::Cpu, cpu::Cpu)>,
}

/// Runs `op` in a loop on `clients` tasks: unrecorded for `warmup`, then recorded for `measure`.
///
/// Halfway through the warm-up the database is analyzed, as autovacuum does to tables that grow
/// (its first visit to a new database can take a minute, longer than a run): statements prepared
/// on the new database's empty tables otherwise keep plans made for empty tables, which a
/// database in service never has.
async fn run<F, Fut>(
    label: &str,
    unit: &'static str,
    cfg: &Config,
    pool: &shared::db::DbPool,
    op: F,
) -> Outcome
where
    F: Fn(usize, Recorder) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Recorder> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.measure;
    let analyze = {
        let pool = pool.clone();
        let at = start + cfg.warmup / 2;
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let mut conn = pool.get().await.map_err(|e| format!("pool: {e}"))?;
            diesel::sql_query("ANALYZE")
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())
        })
    };
    let tasks: Vec<_> = (0..cfg.clients)
        .map(|i| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let mut rec = Recorder::default();
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    rec.recording = now >= measure_from;
                    rec = op(i, rec).await;
                    rec.calls += 1;
                }
                rec
            })
        })
        .collect();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = cpu::read_cpu();
        tokio::time::sleep_until(end.into()).await;
        (before, cpu::read_cpu())
    });
    let mut total = Recorder::default();
    match analyze.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => total.error("ANALYZE during the warm-up", e),
        Err(e) => total.error("ANALYZE during the warm-up", e.to_string()),
    }
    for t in tasks {
        match t.await {
            Ok(rec) => total.merge(rec),
            Err(e) => total.error("client task panicked", e.to_string()),
        }
    }
    let elapsed = measure_from.elapsed();
    Outcome {
        label: label.to_owned(),
        unit,
        elapsed,
        rec: total,
        cpu: sampler.await.ok(),
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn print_outcome(o: &mut Outcome) {
    let secs = o.elapsed.as_secs_f64();
    let errors: u64 = o.rec.errors.values().sum();
    println!(
        "{:<34} {:>8.0} {}/s  ({} in {:.2} s; errors {errors}, of them in warm-up {})",
        o.label,
        o.rec.units as f64 / secs,
        o.unit,
        o.rec.units,
        secs,
        o.rec.warmup_errors
    );
    for (step, lat) in o.rec.steps.iter_mut() {
        lat.sort_unstable();
        println!(
            "    {:<30} n={:<8} p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms",
            step,
            lat.len(),
            percentile(lat, 50.0),
            percentile(lat, 95.0),
            percentile(lat, 99.0),
            percentile(lat, 100.0),
        );
    }
    for (kind, n) in &o.rec.errors {
        println!("    error {kind}: {n}");
    }
    for s in &o.rec.samples {
        println!("    e.g. {s}");
    }
    if let Some((before, after)) = &o.cpu {
        print_cpu(o.rec.units, o.unit, before, after);
    }
}

/// How the server's batched statements were batched, since it started (warm-up included).
fn print_batches(core: &Core) {
    let all = [
        (
            "sessions by token",
            core.batcher::<accounts::DriverSessionsByToken>().stats(),
        ),
        (
            "drivers with vehicles",
            core.batcher::<accounts::DriversWithVehicles>().stats(),
        ),
        ("quote inserts", pricing::quote_insert_stats(core)),
        (
            "cover starts",
            core.batcher::<cover::engine::StartCommand<payments::WalletFunds>>()
                .stats(),
        ),
        (
            "cover ends",
            core.batcher::<cover::engine::EndCommand>().stats(),
        ),
    ];
    let line: Vec<String> = all
        .iter()
        .filter(|(_, s)| s.calls > 0)
        .map(|(name, s)| {
            format!(
                "{name} {:.1} a statement (largest {})",
                s.calls as f64 / s.batches.max(1) as f64,
                s.largest
            )
        })
        .collect();
    println!("    batched per statement: {}", line.join(", "));
}

/// Where the window's CPU time went, per unit of work.
fn print_cpu(units: u64, unit: &str, before: &cpu::Cpu, after: &cpu::Cpu) {
    let total = after.total.saturating_sub(before.total).max(1) as f64;
    let busy = after.busy.saturating_sub(before.busy);
    let postgres = after.processes_since(before, &|_, name| name == "postgres");
    let me = std::process::id();
    let this = after.processes_since(before, &|pid, _| pid == me);
    let server = after.threads_since(before, &|_, name| name.starts_with("actix"));
    let generator = this.saturating_sub(server);
    let rest = busy.saturating_sub(postgres + this);
    let per_unit = |ticks: u64| ticks as f64 / cpu::TICKS_PER_SEC * 1e6 / units.max(1) as f64;
    let share = |ticks: u64| ticks as f64 / total * 100.0;
    println!(
        "    CPU per {}: PostgreSQL {:.0} µs, server {:.0} µs, load generator {:.0} µs, rest {:.0} µs; machine busy {:.0}% (PostgreSQL {:.0}%, server {:.0}%, generator {:.0}%)",
        unit.trim_end_matches('s'),
        per_unit(postgres),
        per_unit(server),
        per_unit(generator),
        per_unit(rest),
        share(busy),
        share(postgres),
        share(server),
        share(generator),
    );
}

// ---------------------------------------------------------------------------------------------
// Fixture

struct BenchDriver {
    id: uuid::Uuid,
    vehicle_id: uuid::Uuid,
    token: String,
    vehicle_gid: String,
    /// Set when the cover scenario runs: the driver's (active) enrolment.
    enrolment_id: Option<uuid::Uuid>,
}

struct Fixture {
    // Dropped last: the server and pool go first.
    core: Core,
    server: graphql::RunningServer,
    base: String,
    product_id: pricing::ProductId,
    product_gid: String,
    drivers: Arc<Vec<BenchDriver>>,
    db: TestDb,
}

fn driver_token() -> String {
    // `sct_` and 43 base64url characters, as the accounts app issues them.
    let mut s = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    s.truncate(43);
    format!("sct_{s}")
}

async fn fixture(cfg: &Config) -> anyhow::Result<Fixture> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::new().await?;
    let mut settings = testkit::settings_for(&db);
    settings.database.pool_size = cfg
        .pool_size
        .unwrap_or(shared::settings::DatabaseSettings::default().pool_size);
    if let Some(n) = cfg.batch_concurrency {
        settings.database.batch_concurrency = n;
    }
    settings.http.workers = cfg.workers;
    let core = Core::new(settings, Arc::new(SystemClock))?;

    let mut conn = db.conn().await?;
    let versions = pricing::seed_demo_products(&mut conn).await?;
    let food = pricing::get_product_by_code(&mut conn, "food_delivery_hourly").await?;
    anyhow::ensure!(
        versions.iter().any(|v| v.product_id == food.id),
        "the demo seed published no food delivery version"
    );
    let mut drivers = Vec::with_capacity(cfg.drivers);
    for i in 0..cfg.drivers {
        let id = uuid::Uuid::new_v4();
        let vehicle_id = uuid::Uuid::new_v4();
        let token = driver_token();
        shared::sql::prepared(
            "INSERT INTO drivers (id, phone, name, date_of_birth, licence_issued_on, postcode)
             VALUES ($1, $2, 'Bench Driver', DATE '1990-05-17', DATE '2010-06-01', 'E1 6AN')",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(format!("+447700{i:06}"))
        .execute(&mut conn)
        .await?;
        shared::sql::prepared(
            "INSERT INTO vehicles (id, driver_id, registration, vehicle_type, make, model)
             VALUES ($1, $2, $3, 'car', 'Toyota', 'Prius')",
        )
        .bind::<SqlUuid, _>(vehicle_id)
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(format!("BN{i:05}"))
        .execute(&mut conn)
        .await?;
        shared::sql::prepared(
            "INSERT INTO driver_sessions (id, driver_id, token_hash, created_at, expires_at, last_seen_at)
             VALUES (gen_random_uuid(), $1, sha256(convert_to($2, 'UTF8')), now(), now() + interval '1 day', now())",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(&token)
        .execute(&mut conn)
        .await?;
        drivers.push(BenchDriver {
            id,
            vehicle_id,
            token,
            vehicle_gid: graphql::relay::to_global_id("Vehicle", &accounts::VehicleId(vehicle_id))
                .0,
            enrolment_id: None,
        });
    }
    if matches!(cfg.scenario, Scenario::Cover | Scenario::All) {
        for d in &mut drivers {
            d.enrolment_id = Some(fund_and_enrol(&mut conn, d, food.id).await?);
        }
    }
    drop(conn);

    let server = graphql::start_server(core.clone())?;
    let base = format!("http://{}", server.addr);
    Ok(Fixture {
        core,
        server,
        base,
        product_id: food.id,
        product_gid: graphql::relay::to_global_id("Product", &food.id).0,
        drivers: Arc::new(drivers),
        db,
    })
}

/// Tops the driver's wallet up (a ledger posting, as a settled card top-up makes) with enough
/// for every session of the run, and enrols them (active at once: the wallet can pay).
async fn fund_and_enrol(
    conn: &mut diesel_async::AsyncPgConnection,
    d: &BenchDriver,
    product_id: pricing::ProductId,
) -> anyhow::Result<uuid::Uuid> {
    let driver_id = accounts::DriverId(d.id);
    let owner = driver_id.to_string();
    ledger::post(
        conn,
        ledger::NewTransaction {
            kind: ledger::TransactionKind::TopUp,
            cause: ledger::Cause::new("top_up", format!("bench_{}", uuid::Uuid::now_v7().simple())),
            currency: shared::Currency::Gbp,
            description: "Card top-up".into(),
            lines: ledger::top_up_lines(
                &owner,
                shared::Money::gbp(100_000_000),
                shared::Money::gbp(0),
            )?,
            metadata: json!({ "payment_intent": "pi_bench" }),
        },
    )
    .await?;
    let enrolment = cover::enrol(
        conn,
        &SystemClock,
        driver_id,
        cover::EnrolInput {
            product_id,
            vehicle_id: accounts::VehicleId(d.vehicle_id),
            accept_terms: true,
        },
        &payments::WalletFunds,
    )
    .await?;
    Ok(enrolment.id.uuid())
}

fn http_clients(n: usize) -> anyhow::Result<Arc<Vec<reqwest::Client>>> {
    // One client (so one keep-alive connection) per simulated app.
    let clients = (0..n)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(clients))
}

/// POSTs a GraphQL document as `token`; the payload at `data.<field>` when the request succeeded
/// with no errors and no `userErrors`, else the failure recorded.
async fn gql(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
    field: &str,
    rec: &mut Recorder,
) -> Option<Value> {
    let res = match client.post(url).bearer_auth(token).json(body).send().await {
        Ok(r) => r,
        Err(e) => {
            rec.error(format!("{field}: transport"), e.to_string());
            return None;
        }
    };
    let status = res.status().as_u16();
    let bytes = match res.bytes().await {
        Ok(b) => b,
        Err(e) => {
            rec.error(format!("{field}: body"), e.to_string());
            return None;
        }
    };
    if status != 200 {
        rec.error(
            format!("{field}: HTTP {status}"),
            String::from_utf8_lossy(&bytes),
        );
        return None;
    }
    let mut v: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            rec.error(format!("{field}: not JSON"), e.to_string());
            return None;
        }
    };
    if let Some(errors) = v.get("errors").filter(|e| !e.is_null()) {
        let code = errors[0]["extensions"]["code"]
            .as_str()
            .unwrap_or("NO_CODE")
            .to_owned();
        rec.error(format!("{field}: error {code}"), errors.to_string());
        return None;
    }
    let payload = v["data"][field].take();
    if let Some(user) = payload["userErrors"].as_array().filter(|u| !u.is_empty()) {
        let code = user[0]["code"].as_str().unwrap_or("NO_CODE").to_owned();
        rec.error(
            format!("{field}: userError {code}"),
            Value::from(user.clone()).to_string(),
        );
        return None;
    }
    if payload.is_null() {
        rec.error(format!("{field}: null payload"), v.to_string());
        return None;
    }
    Some(payload)
}

// ---------------------------------------------------------------------------------------------
// createQuote

const CREATE_QUOTE: &str = "mutation CreateQuote($input: CreateQuoteInput!) {
  createQuote(input: $input) {
    quote { id hourlyRate { minor currency } expiresAt }
    userErrors { field code message }
  }
}";

async fn quote_http(fx: &Fixture, cfg: &Config) -> anyhow::Result<Outcome> {
    let clients = http_clients(cfg.clients)?;
    let url = format!("{}/graphql", fx.base);
    let drivers = Arc::clone(&fx.drivers);
    let product = fx.product_gid.clone();
    Ok(run(
        &format!("createQuote over HTTP ({} clients)", cfg.clients),
        "quotes",
        cfg,
        &fx.core.pool,
        move |i, mut rec| {
            let client = clients[i].clone();
            let url = url.clone();
            let drivers = Arc::clone(&drivers);
            let product = product.clone();
            async move {
                // There are at least as many drivers as clients: each client is one driver.
                let d = &drivers[i];
                let body = json!({
                    "query": CREATE_QUOTE,
                    "variables": { "input": { "vehicleId": d.vehicle_gid, "productId": product } },
                });
                let started = Instant::now();
                let payload = gql(&client, &url, &d.token, &body, "createQuote", &mut rec).await;
                rec.step("createQuote", started);
                if let Some(p) = payload {
                    if p["quote"]["id"].is_string() {
                        rec.unit();
                    } else {
                        rec.error("createQuote: no quote id", p.to_string());
                    }
                }
                rec
            }
        },
    )
    .await)
}

#[derive(diesel::QueryableByName)]
#[allow(dead_code)] // read as the endpoint reads them
struct SessionSql {
    #[diesel(sql_type = SqlUuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = SqlUuid)]
    driver_id: uuid::Uuid,
    #[diesel(sql_type = Timestamptz)]
    expires_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    #[diesel(sql_type = Timestamptz)]
    last_seen_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(diesel::QueryableByName)]
#[allow(dead_code)]
struct DriverSql {
    #[diesel(sql_type = SqlUuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = Text)]
    phone: String,
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
    #[diesel(sql_type = Nullable<Date>)]
    date_of_birth: Option<chrono::NaiveDate>,
    #[diesel(sql_type = Nullable<Text>)]
    email: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    licence_number: Option<String>,
    #[diesel(sql_type = Nullable<Date>)]
    licence_issued_on: Option<chrono::NaiveDate>,
    #[diesel(sql_type = Nullable<Text>)]
    postcode: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(diesel::QueryableByName)]
#[allow(dead_code)]
struct VehicleSql {
    #[diesel(sql_type = SqlUuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = SqlUuid)]
    driver_id: uuid::Uuid,
    #[diesel(sql_type = Nullable<Text>)]
    registration: Option<String>,
    #[diesel(sql_type = Text)]
    vehicle_type: String,
    #[diesel(sql_type = Nullable<Text>)]
    make: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    model: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    removed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The statements a quote needs, in plain SQL: the session by token hash (with its driver's
/// deletion), the driver, the vehicle, the insert (the published version is known in memory, as
/// the endpoint keeps it). One pool checkout.
async fn session_by_token(
    conn: &mut diesel_async::AsyncPgConnection,
    token_hash: &[u8],
) -> diesel::QueryResult<SessionSql> {
    shared::sql::prepared(
        "SELECT s.id, s.driver_id, s.expires_at, s.revoked_at, s.last_seen_at, d.deleted_at
           FROM driver_sessions s JOIN drivers d ON d.id = s.driver_id
          WHERE s.token_hash = $1 LIMIT 1",
    )
    .bind::<Bytea, _>(token_hash)
    .get_result(conn)
    .await
}

async fn driver_and_vehicle(
    conn: &mut diesel_async::AsyncPgConnection,
    driver_id: uuid::Uuid,
    vehicle_id: uuid::Uuid,
) -> diesel::QueryResult<(DriverSql, VehicleSql)> {
    let driver: DriverSql = shared::sql::prepared(
        "SELECT id, phone, name, date_of_birth, email, licence_number, licence_issued_on,
                postcode, created_at, updated_at
           FROM drivers WHERE id = $1 AND deleted_at IS NULL LIMIT 1",
    )
    .bind::<SqlUuid, _>(driver_id)
    .get_result(conn)
    .await?;
    let vehicle: VehicleSql = shared::sql::prepared(
        "SELECT id, driver_id, registration, vehicle_type, make, model, created_at, removed_at
           FROM vehicles WHERE id = $1 AND driver_id = $2 AND removed_at IS NULL LIMIT 1",
    )
    .bind::<SqlUuid, _>(vehicle_id)
    .bind::<SqlUuid, _>(driver_id)
    .get_result(conn)
    .await?;
    Ok((driver, vehicle))
}

/// A quote's stored values, copied into each baseline insert.
#[derive(Clone)]
struct QuoteValues {
    version_id: uuid::Uuid,
    hourly: i64,
    minimum: i64,
    cap: i64,
    net: i64,
    commission: i64,
    ipt: i64,
    explanation: Value,
    rating_input: Value,
}

async fn insert_quote_sql(
    conn: &mut diesel_async::AsyncPgConnection,
    driver_id: uuid::Uuid,
    vehicle_id: uuid::Uuid,
    q: &QuoteValues,
) -> diesel::QueryResult<usize> {
    insert_quote_with_id(conn, uuid::Uuid::now_v7(), driver_id, vehicle_id, q).await
}

async fn insert_quote_with_id(
    conn: &mut diesel_async::AsyncPgConnection,
    id: uuid::Uuid,
    driver_id: uuid::Uuid,
    vehicle_id: uuid::Uuid,
    q: &QuoteValues,
) -> diesel::QueryResult<usize> {
    shared::sql::prepared(
        "INSERT INTO quotes (id, driver_id, vehicle_id, product_version_id, currency,
                hourly_rate_minor, minimum_charge_minor, daily_cap_minor, one_hour_net_minor,
                one_hour_commission_minor, one_hour_ipt_minor, one_hour_total_minor,
                explanation, rating_input, created_at, expires_at)
         VALUES ($1, $2, $3, $4, 'GBP', $5, $6, $7, $8, $9, $10, $5, $11, $12, $13,
                 $13 + interval '15 minutes')",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(driver_id)
    .bind::<SqlUuid, _>(vehicle_id)
    .bind::<SqlUuid, _>(q.version_id)
    .bind::<diesel::sql_types::BigInt, _>(q.hourly)
    .bind::<diesel::sql_types::BigInt, _>(q.minimum)
    .bind::<diesel::sql_types::BigInt, _>(q.cap)
    .bind::<diesel::sql_types::BigInt, _>(q.net)
    .bind::<diesel::sql_types::BigInt, _>(q.commission)
    .bind::<diesel::sql_types::BigInt, _>(q.ipt)
    .bind::<Jsonb, _>(&q.explanation)
    .bind::<Jsonb, _>(&q.rating_input)
    .bind::<Timestamptz, _>(chrono::Utc::now())
    .execute(conn)
    .await
}

async fn quote_values(fx: &Fixture) -> anyhow::Result<QuoteValues> {
    let d = &fx.drivers[0];
    let mut conn = fx.db.conn().await?;
    let q = pricing::create_quote(
        &mut conn,
        &SystemClock,
        accounts::DriverId(d.id),
        accounts::VehicleId(d.vehicle_id),
        fx.product_id,
    )
    .await?;
    Ok(QuoteValues {
        version_id: q.product_version_id.uuid(),
        hourly: q.hourly_rate.minor,
        minimum: q.minimum_charge.minor,
        cap: q.daily_cap.minor,
        net: q.one_hour.net_premium.minor,
        commission: q.one_hour.commission.minor,
        ipt: q.one_hour.ipt.minor,
        explanation: serde_json::to_value(&q.explanation)?,
        rating_input: serde_json::to_value(&q.rating_input)?,
    })
}

fn token_hash(token: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

async fn quote_sql(fx: &Fixture, cfg: &Config) -> anyhow::Result<Outcome> {
    let values = Arc::new(quote_values(fx).await?);
    let pool = fx.core.pool.clone();
    let drivers = Arc::clone(&fx.drivers);
    Ok(run(
        &format!("quote as raw SQL ({} tasks)", cfg.clients),
        "quotes",
        cfg,
        &fx.core.pool,
        move |i, mut rec| {
            let pool = pool.clone();
            let drivers = Arc::clone(&drivers);
            let values = Arc::clone(&values);
            async move {
                let d = &drivers[i];
                let started = Instant::now();
                let result = async {
                    let mut conn = pool.get().await.map_err(|e| format!("pool: {e}"))?;
                    let session = session_by_token(&mut conn, &token_hash(&d.token))
                        .await
                        .map_err(|e| format!("session: {e}"))?;
                    if session.revoked_at.is_some() || session.deleted_at.is_some() {
                        return Err("session revoked".to_owned());
                    }
                    let (driver, vehicle) =
                        driver_and_vehicle(&mut conn, session.driver_id, d.vehicle_id)
                            .await
                            .map_err(|e| format!("driver/vehicle: {e}"))?;
                    insert_quote_sql(&mut conn, driver.id, vehicle.id, &values)
                        .await
                        .map_err(|e| format!("insert: {e}"))?;
                    Ok::<_, String>(())
                }
                .await;
                rec.step("quote (SQL)", started);
                match result {
                    Ok(()) => rec.unit(),
                    Err(e) => rec.error("quote (SQL)", e),
                }
                rec
            }
        },
    )
    .await)
}

// ---------------------------------------------------------------------------------------------
// startCover + endCover

const START_COVER: &str = "mutation StartCover($input: StartCoverInput!) {
  startCover(input: $input) {
    session { id status startedAt maxEndAt hourlyRate { minor currency } }
    replayed
    userErrors { field code message }
  }
}";

const END_COVER: &str = "mutation EndCover($input: EndCoverInput!) {
  endCover(input: $input) {
    session { id status endedAt charge { minutes total { minor currency } } }
    userErrors { field code message }
  }
}";

/// The driver client `client` starts and ends cover for on its `call`-th session: each client
/// cycles through its own share of the drivers (`client`, `client + clients`, …), so a driver
/// never has two sessions open, and has a busy day's sessions in a run (about 25 at 1,000 a second
/// with the default 512 drivers) rather than thousands. It matters because ending a session sums
/// what the driver's earlier sessions that day cost (the daily cap). `BENCH_DRIVERS` equal to
/// `BENCH_CLIENTS` gives each client a single driver.
fn cover_driver(drivers: &[BenchDriver], clients: usize, client: usize, call: u64) -> &BenchDriver {
    let share = (drivers.len() / clients).max(1);
    let round = usize::try_from(call % share as u64).unwrap_or(0);
    &drivers[client + clients * round]
}

async fn cover_http(fx: &Fixture, cfg: &Config) -> anyhow::Result<Outcome> {
    let clients = http_clients(cfg.clients)?;
    let clients_n = cfg.clients;
    let url = format!("{}/graphql", fx.base);
    let drivers = Arc::clone(&fx.drivers);
    let product = fx.product_gid.clone();
    Ok(run(
        &format!("startCover+endCover over HTTP ({} clients)", cfg.clients),
        "sessions",
        cfg,
        &fx.core.pool,
        move |i, mut rec| {
            let client = clients[i].clone();
            let url = url.clone();
            let drivers = Arc::clone(&drivers);
            let product = product.clone();
            async move {
                let d = cover_driver(&drivers, clients_n, i, rec.calls);
                let start = json!({
                    "query": START_COVER,
                    "variables": { "input": {
                        "vehicleId": d.vehicle_gid,
                        "productId": product,
                        "idempotencyKey": uuid::Uuid::new_v4().to_string(),
                    } },
                });
                let started = Instant::now();
                let payload = gql(&client, &url, &d.token, &start, "startCover", &mut rec).await;
                rec.step("startCover", started);
                let Some(payload) = payload else {
                    return rec;
                };
                let Some(session_id) = payload["session"]["id"].as_str().map(str::to_owned) else {
                    rec.error("startCover: no session id", payload.to_string());
                    return rec;
                };
                if payload["replayed"] != Value::Bool(false) {
                    rec.error("startCover: replayed", payload.to_string());
                }
                let end = json!({
                    "query": END_COVER,
                    "variables": { "input": { "sessionId": session_id } },
                });
                let ending = Instant::now();
                let payload = gql(&client, &url, &d.token, &end, "endCover", &mut rec).await;
                rec.step("endCover", ending);
                match payload {
                    Some(p) if p["session"]["status"].is_string() => rec.unit(),
                    Some(p) => rec.error("endCover: no session", p.to_string()),
                    None => {}
                }
                rec
            }
        },
    )
    .await)
}

/// What a started session needs that the baseline takes from the driver's first quote.
#[derive(Clone)]
struct SessionValues {
    quote: QuoteValues,
}

/// The writes of a start, in plain SQL: the session by token, then the quote (as the endpoint
/// prices a start without a quote), and in one transaction the enrolment lock, the session, its
/// audit entry, and the "cover started" text with its delivery job.
async fn start_cover_sql(
    conn: &mut diesel_async::AsyncPgConnection,
    d: &BenchDriver,
    v: &SessionValues,
) -> Result<uuid::Uuid, String> {
    use diesel_async::AsyncConnection;
    let session = session_by_token(conn, &token_hash(&d.token))
        .await
        .map_err(|e| format!("token: {e}"))?;
    let enrolment_id = d.enrolment_id.ok_or("driver not enrolled")?;
    let quote_id = uuid::Uuid::now_v7();
    insert_quote_with_id(conn, quote_id, session.driver_id, d.vehicle_id, &v.quote)
        .await
        .map_err(|e| format!("quote: {e}"))?;
    let session_id = uuid::Uuid::now_v7();
    let phone_vehicle = (format!("cover_started:{session_id}"), "BN00000".to_owned());
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        #[derive(diesel::QueryableByName)]
        struct Status {
            #[diesel(sql_type = Text)]
            #[allow(dead_code)]
            status: String,
        }
        let _: Status = shared::sql::prepared("SELECT status FROM enrolments WHERE id = $1 FOR UPDATE")
            .bind::<SqlUuid, _>(enrolment_id)
            .get_result(conn)
            .await?;
        shared::sql::prepared(
            "INSERT INTO cover_sessions (id, driver_id, vehicle_id, enrolment_id, product_version_id,
                    quote_id, currency, hourly_rate_minor, status, started_at, max_end_at, source,
                    idempotency_key, certificate_number)
             VALUES ($1, $2, $3, $4, $5, $6, 'GBP', $7, 'active', now(), now() + interval '12 hours',
                     'driver', $8, $9)
             RETURNING id",
        )
        .bind::<SqlUuid, _>(session_id)
        .bind::<SqlUuid, _>(session.driver_id)
        .bind::<SqlUuid, _>(d.vehicle_id)
        .bind::<SqlUuid, _>(enrolment_id)
        .bind::<SqlUuid, _>(v.quote.version_id)
        .bind::<SqlUuid, _>(quote_id)
        .bind::<diesel::sql_types::BigInt, _>(v.quote.hourly)
        .bind::<Text, _>(uuid::Uuid::new_v4().to_string())
        .bind::<Text, _>(certificate_number())
        .execute(conn)
        .await?;
        audit_sql(conn, "driver", &session.driver_id, "cover.session_started", &session_id).await?;
        notification_sql(conn, &phone_vehicle.0, session.driver_id, "cover_started").await?;
        Ok(())
    })
    .await
    .map_err(|e| format!("start: {e}"))?;
    Ok(session_id)
}

/// The writes of an end, in plain SQL: the session by token, then in one transaction the driver
/// lock, the guarded update with the charge, its audit entry, the "cover ended" text with its
/// delivery job, and the charge job.
async fn end_cover_sql(
    conn: &mut diesel_async::AsyncPgConnection,
    d: &BenchDriver,
    session_id: uuid::Uuid,
    v: &SessionValues,
) -> Result<(), String> {
    use diesel_async::AsyncConnection;
    let session = session_by_token(conn, &token_hash(&d.token))
        .await
        .map_err(|e| format!("token: {e}"))?;
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        shared::sql::prepared("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<Text, _>(format!("cover:driver:{}", session.driver_id))
            .execute(conn)
            .await?;
        let q = &v.quote;
        let n = shared::sql::prepared(
            "UPDATE cover_sessions SET status = 'ended', ended_at = now(), end_reason = 'driver',
                    minutes = 1, billed_minutes = 60, charge_rule = 'minimum', uncapped_minor = $2,
                    net_minor = $3, commission_minor = $4, ipt_minor = $5, total_minor = $2,
                    ipt_rate_bp = 1200, commission_bp = 2000
              WHERE id = $1 AND status = 'active'",
        )
        .bind::<SqlUuid, _>(session_id)
        .bind::<diesel::sql_types::BigInt, _>(q.hourly)
        .bind::<diesel::sql_types::BigInt, _>(q.net)
        .bind::<diesel::sql_types::BigInt, _>(q.commission)
        .bind::<diesel::sql_types::BigInt, _>(q.ipt)
        .execute(conn)
        .await?;
        if n != 1 {
            return Err(diesel::result::Error::NotFound);
        }
        audit_sql(
            conn,
            "driver",
            &session.driver_id,
            "cover.session_ended",
            &session_id,
        )
        .await?;
        notification_sql(
            conn,
            &format!("cover_ended:{session_id}"),
            session.driver_id,
            "cover_ended",
        )
        .await?;
        outbox_sql(
            conn,
            "ChargeSession",
            "payments",
            json!({ "session_id": session_id.to_string() }),
            &format!("charge:{session_id}"),
        )
        .await?;
        Ok(())
    })
    .await
    .map_err(|e| format!("end: {e}"))
}

fn certificate_number() -> String {
    let s = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    format!("SC-{}-{}", &s[..4], &s[4..8])
}

async fn audit_sql(
    conn: &mut diesel_async::AsyncPgConnection,
    actor_type: &str,
    actor: &uuid::Uuid,
    action: &str,
    subject: &uuid::Uuid,
) -> diesel::QueryResult<usize> {
    shared::sql::prepared(
        "INSERT INTO audit_log (actor_type, actor_id, action, subject_type, subject_id, details)
         VALUES ($1, $2, $3, 'cover_session', $4, $5)",
    )
    .bind::<Text, _>(actor_type)
    .bind::<Text, _>(actor.to_string())
    .bind::<Text, _>(action)
    .bind::<Text, _>(subject.to_string())
    .bind::<Jsonb, _>(json!({ "source": "bench" }))
    .execute(conn)
    .await
}

async fn notification_sql(
    conn: &mut diesel_async::AsyncPgConnection,
    cause: &str,
    driver_id: uuid::Uuid,
    template: &str,
) -> diesel::QueryResult<()> {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: uuid::Uuid,
    }
    let id: Id = shared::sql::prepared(
        "INSERT INTO notifications (id, cause, channel, template, recipient, driver_id, body_text)
         VALUES ($1, $2, 'sms', $3, '+447700900123', $4,
                 'ShiftCover: cover on BN00000 from 14:00. Certificate SC-ABCD-EFGH.')
         ON CONFLICT (cause) DO NOTHING RETURNING id",
    )
    .bind::<SqlUuid, _>(uuid::Uuid::now_v7())
    .bind::<Text, _>(cause)
    .bind::<Text, _>(template)
    .bind::<SqlUuid, _>(driver_id)
    .get_result(conn)
    .await?;
    outbox_sql(
        conn,
        "DeliverNotification",
        "notifications",
        json!({ "notification_id": id.id.to_string() }),
        &id.id.to_string(),
    )
    .await?;
    Ok(())
}

async fn outbox_sql(
    conn: &mut diesel_async::AsyncPgConnection,
    job_type: &str,
    queue: &str,
    payload: Value,
    key: &str,
) -> diesel::QueryResult<usize> {
    shared::sql::prepared(
        "INSERT INTO outbox_jobs (id, job_type, queue, payload, idempotency_key, max_attempts, run_after)
         VALUES ($1, $2, $3, $4, $5, 8, now())
         ON CONFLICT DO NOTHING",
    )
    .bind::<SqlUuid, _>(uuid::Uuid::now_v7())
    .bind::<Text, _>(job_type)
    .bind::<Text, _>(queue)
    .bind::<Jsonb, _>(payload)
    .bind::<Text, _>(key)
    .execute(conn)
    .await
}

async fn cover_sql(fx: &Fixture, cfg: &Config) -> anyhow::Result<Outcome> {
    let values = Arc::new(SessionValues {
        quote: quote_values(fx).await?,
    });
    let pool = fx.core.pool.clone();
    let drivers = Arc::clone(&fx.drivers);
    let clients_n = cfg.clients;
    Ok(run(
        &format!("start+end as raw SQL ({} tasks)", cfg.clients),
        "sessions",
        cfg,
        &fx.core.pool,
        move |i, mut rec| {
            let pool = pool.clone();
            let drivers = Arc::clone(&drivers);
            let values = Arc::clone(&values);
            async move {
                let d = cover_driver(&drivers, clients_n, i, rec.calls);
                // One checkout per request, as the two requests would.
                let started = Instant::now();
                let session = async {
                    let mut conn = pool.get().await.map_err(|e| format!("pool: {e}"))?;
                    start_cover_sql(&mut conn, d, &values).await
                }
                .await;
                rec.step("start (SQL)", started);
                let session_id = match session {
                    Ok(id) => id,
                    Err(e) => {
                        rec.error("start (SQL)", e);
                        return rec;
                    }
                };
                let ending = Instant::now();
                let ended = async {
                    let mut conn = pool.get().await.map_err(|e| format!("pool: {e}"))?;
                    end_cover_sql(&mut conn, d, session_id, &values).await
                }
                .await;
                rec.step("end (SQL)", ending);
                match ended {
                    Ok(()) => rec.unit(),
                    Err(e) => rec.error("end (SQL)", e),
                }
                rec
            }
        },
    )
    .await)
}

// ---------------------------------------------------------------------------------------------
// main

fn install_json_logs() {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The layers `shiftcover serve` installs with JSON logs, writing into a sink.
    let _ = tracing_subscriber::registry()
        .with(EnvFilter::new("info"))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(std::io::sink),
        )
        .try_init();
}

fn main() -> anyhow::Result<()> {
    let cfg = Config::from_env();
    if cfg.log_json {
        install_json_logs();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let fx = fixture(&cfg).await?;
        println!(
            "api bench: {} cores, {} clients, {} drivers, warm-up {:?}, measured {:?}, pool {}, batch concurrency {}, actix workers {}, logs {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cfg.clients,
            cfg.drivers,
            cfg.warmup,
            cfg.measure,
            fx.core.settings.database.pool_size,
            fx.core.settings.database.batch_concurrency,
            if cfg.workers == 0 { "one per core".to_owned() } else { cfg.workers.to_string() },
            if cfg.log_json { "json (to a sink)" } else { "off" },
        );
        if matches!(cfg.scenario, Scenario::Quote | Scenario::All) {
            let mut http = quote_http(&fx, &cfg).await?;
            print_outcome(&mut http);
            print_batches(&fx.core);
            let mut sql = quote_sql(&fx, &cfg).await?;
            print_outcome(&mut sql);
        }
        if matches!(cfg.scenario, Scenario::Cover | Scenario::All) {
            let mut http = cover_http(&fx, &cfg).await?;
            print_outcome(&mut http);
            print_batches(&fx.core);
            let mut sql = cover_sql(&fx, &cfg).await?;
            print_outcome(&mut sql);
        }
        fx.server.handle.stop(true).await;
        drop(fx);
        anyhow::Ok(())
    })
}
