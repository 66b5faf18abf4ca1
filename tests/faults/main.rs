//! The fault suite: a whole ShiftCover under steady driver and partner traffic, broken on
//! purpose, then checked for what must never happen.
//!
//! Run it with `infra/dev/fault-suite.sh` (or `cargo test --test faults`). It starts its own
//! PostgreSQL cluster and Redis (so it can restart them), localstripe behind a proxy that can slow
//! it down or fail it, Twilio and Mailgun fakes, two API processes and two worker processes
//! (`shiftcover serve`, `shiftcover work`), sets drivers up through the API (card saved through
//! localstripe, wallet topped up), links some to a partner, and then, while app drivers quote,
//! start and end cover and top up, and the partner sends shift events and asks about cover:
//!
//! 1. restarts PostgreSQL (stopped in `immediate` mode, as in a crash);
//! 2. restarts Redis, losing every queued job;
//! 3. SIGKILLs a worker process, then an API process, and starts them again;
//! 4. makes Stripe slow (3 s per call), then failing (a quarter of calls refused before Stripe
//!    sees them, a quarter failed after Stripe acted);
//! 5. delivers every Stripe webhook event received so far ten more times, all at once;
//! 6. opens disputes on a dozen top-ups at Stripe (withdrawn, then reinstated) and delivers
//!    each dispute's events ten times at once, half redelivered under their own ids, half as
//!    new events.
//!
//! After a calm spell it stops the traffic, lets the workers drain, and checks: every session
//! charged exactly once, for its price; every top-up asked for exists once, agrees with its
//! PaymentIntent and is in the ledger once; no PaymentIntent without its top-up; every message
//! sent exactly once (each text and email the providers got is the one our record names); every
//! partner webhook event delivered; every chargeback recorded once with each of its Stripe
//! balance transactions booked once and the wallets back where they were; every ledger
//! transaction balanced (`shiftcover ledger
//! check`); the day's Stripe ↔ ledger reconciliation fully matched; every outbox job done; no
//! process died on its own; and the API answering normally within seconds of each fault, with
//! no error at all in the calm spell. It prints the figures of every phase and exits non-zero on
//! any failed check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod stack;
mod traffic;

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use stack::{Fakes, Proc, StripeMode, Wiring, lock, process_env, wait_healthy};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::throwaway::{ThrowawayPostgres, ThrowawayRedis, free_port};
use traffic::{Api, Recorder, TrafficLog, env_num};

/// One phase of the run: when it began, when its fault was over, when it ended (ms since the
/// traffic started).
struct Phase {
    name: &'static str,
    start_ms: u64,
    fault_over_ms: u64,
    end_ms: u64,
    note: String,
}

/// One check after the run.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn check(checks: &mut Vec<Check>, name: &'static str, ok: bool, detail: impl Into<String>) {
    checks.push(Check {
        name,
        ok,
        detail: detail.into(),
    });
}

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(pool: &shared::db::DbPool, sql: &str) -> i64 {
    let Ok(mut conn) = pool.get().await else {
        return -1;
    };
    diesel::sql_query(sql)
        .get_result::<N>(&mut conn)
        .await
        .map(|r| r.n)
        .unwrap_or(-1)
}

#[derive(diesel::QueryableByName, Debug)]
struct Row2 {
    #[diesel(sql_type = Text)]
    a: String,
    #[diesel(sql_type = Text)]
    b: String,
}

async fn pairs(pool: &shared::db::DbPool, sql: &str) -> Vec<(String, String)> {
    let mut conn = pool.get().await.expect("connection");
    diesel::sql_query(sql)
        .load::<Row2>(&mut conn)
        .await
        .expect(sql)
        .into_iter()
        .map(|r| (r.a, r.b))
        .collect()
}

fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run()) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fault suite could not run: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<bool> {
    let suite_start = Instant::now();
    let app_drivers = env_num("FAULTS_APP_DRIVERS", 12) as usize;
    let partner_drivers = env_num("FAULTS_PARTNER_DRIVERS", 8) as usize;
    let settle = Duration::from_secs(env_num("FAULTS_SETTLE_SECS", 8));
    let run_id = (uuid::Uuid::new_v4().as_u128() % 10_000) as u32;
    let artefacts = std::env::var_os("SHIFTCOVER_ARTEFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("faults");
    std::fs::create_dir_all(&artefacts)?;
    let logs = artefacts.join(format!("run-{run_id}"));
    std::fs::create_dir_all(&logs)?;
    println!("fault suite: logs in {}", logs.display());

    // --- services ----------------------------------------------------------------------
    let pg = ThrowawayPostgres::start()?;
    {
        let mut admin = AsyncPgConnection::establish(&pg.url("postgres")).await?;
        diesel::sql_query("CREATE DATABASE shiftcover")
            .execute(&mut admin)
            .await?;
    }
    let mut redis = ThrowawayRedis::start()?;
    let stripe = testkit::localstripe::LocalStripe::shared();
    let fakes = Fakes::start(stripe.base_url())?;
    fakes.register_stripe_webhook().await?;
    let wiring = Wiring {
        database_url: pg.url("shiftcover"),
        redis_url: redis.url(),
        redis_prefix: format!("faults{run_id}"),
        fakes_base: fakes.base.clone(),
    };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_shiftcover"));
    for step in ["migrate", "seed"] {
        let out = std::process::Command::new(&bin)
            .arg(step)
            .envs(process_env(&wiring, None, 2))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "shiftcover {step} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ports = [free_port()?, free_port()?];
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut apis: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Proc::new(
                &format!("api{i}"),
                bin.clone(),
                &["serve"],
                process_env(&wiring, Some(*p), 10),
                &logs,
            )
        })
        .collect();
    let mut workers: Vec<Proc> = (0..2)
        .map(|i| {
            Proc::new(
                &format!("work{i}"),
                bin.clone(),
                &["work"],
                process_env(&wiring, None, 8),
                &logs,
            )
        })
        .collect();
    for p in apis.iter_mut().chain(workers.iter_mut()) {
        p.start()?;
    }
    let http = reqwest::Client::new();
    for b in &bases {
        anyhow::ensure!(
            wait_healthy(&http, &format!("{b}/readyz"), Duration::from_secs(60)).await,
            "{b} did not become ready"
        );
    }
    let pool = shared::db::build_pool(&shared::settings::DatabaseSettings {
        url: shared::Secret::new(wiring.database_url.clone()),
        pool_size: 4,
        acquire_timeout_ms: 10_000,
        batch_concurrency: 1,
    })?;

    // --- drivers and the partner ---------------------------------------------------------
    let setup_rec = Recorder::new();
    let setup_api = Api::new(bases.clone(), setup_rec.clone());
    let finance_cookie = {
        let mut conn = pool.get().await?;
        let clock = shared::clock::SystemClock;
        let (email, password) = (format!("finance{run_id}@staff.test"), "fault suite finance");
        accounts::create_staff(
            &mut conn,
            &clock,
            accounts::Actor::System,
            accounts::NewStaff {
                email: email.clone(),
                name: "Finance".into(),
                role: accounts::Role::Finance,
                password: password.into(),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("staff: {e}"))?;
        accounts::staff_sign_in(&mut conn, &clock, &email, password)
            .await
            .map_err(|e| anyhow::anyhow!("staff sign-in: {e}"))?
            .token
    };
    let setup_started = Instant::now();
    let delivery_stop = tokio::sync::watch::channel(false);
    let mut delivery = fakes.spawn_webhook_delivery(bases.clone(), 4, delivery_stop.1.clone());
    let world = traffic::set_up_world(
        &setup_api,
        &pool,
        &fakes,
        stripe,
        &traffic::WorldPlan {
            run: run_id,
            app_drivers,
            partner_drivers,
            top_up_minor: 10_000,
            partner_name: "Fault Suite Deliveries",
            parallel: 4,
        },
    )
    .await?;
    println!(
        "set up {} drivers ({app_drivers} in the app, {partner_drivers} through the partner) in {:.1} s",
        world.drivers.len(),
        setup_started.elapsed().as_secs_f64()
    );

    // --- traffic -------------------------------------------------------------------------
    let rec = Recorder::new();
    let api = Api::new(bases.clone(), rec.clone());
    let book = Arc::new(TrafficLog::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let pause = Duration::from_millis(env_num("FAULTS_PAUSE_MS", 400));
    let mut tasks = traffic::spawn_traffic(&api, &world, run_id, &book, &stop_rx, pause, 40);
    // Probes: one cheap read every 100 ms on each API process on its own (no failover).
    for (i, base) in bases.iter().enumerate() {
        let probe = Api::new(vec![base.clone()], rec.clone());
        let token = world.bystander_token.clone();
        let stop = stop_rx.clone();
        let op: &'static str = if i == 0 { "probe api0" } else { "probe api1" };
        tasks.push(tokio::spawn(async move {
            while !*stop.borrow() {
                let _ = probe.call(op, 0, &token, traffic::WALLET, json!({})).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    let mut phases: Vec<Phase> = Vec::new();
    let sleep = tokio::time::sleep;
    let mark = |rec: &Recorder| rec.now_ms();

    // Baseline.
    let start_ms = mark(&rec);
    sleep(settle).await;
    phases.push(Phase {
        name: "steady",
        start_ms,
        fault_over_ms: start_ms,
        end_ms: mark(&rec),
        note: "no fault".into(),
    });

    // PostgreSQL restart.
    let start_ms = mark(&rec);
    pg.stop()?;
    sleep(Duration::from_secs(3)).await;
    pg.start_server()?;
    let fault_over_ms = mark(&rec);
    sleep(settle).await;
    phases.push(Phase {
        name: "postgres restart",
        start_ms,
        fault_over_ms,
        end_ms: mark(&rec),
        note: "stopped (immediate), down 3 s, started".into(),
    });

    // Redis restart: every queued job and lock is lost.
    let start_ms = mark(&rec);
    redis.stop();
    sleep(Duration::from_secs(2)).await;
    redis.start_server()?;
    let fault_over_ms = mark(&rec);
    sleep(settle).await;
    phases.push(Phase {
        name: "redis restart",
        start_ms,
        fault_over_ms,
        end_ms: mark(&rec),
        note: "killed, down 2 s, started empty".into(),
    });

    // SIGKILL a worker, then an API process.
    let start_ms = mark(&rec);
    workers[0].kill();
    sleep(Duration::from_secs(2)).await;
    workers[0].start()?;
    let fault_over_ms = mark(&rec);
    sleep(settle).await;
    phases.push(Phase {
        name: "worker SIGKILL",
        start_ms,
        fault_over_ms,
        end_ms: mark(&rec),
        note: "work0 killed, restarted after 2 s".into(),
    });
    let start_ms = mark(&rec);
    apis[0].kill();
    sleep(Duration::from_secs(2)).await;
    apis[0].start()?;
    let fault_over_ms = mark(&rec);
    let api_back = wait_healthy(
        &http,
        &format!("{}/readyz", bases[0]),
        Duration::from_secs(30),
    )
    .await;
    sleep(settle).await;
    phases.push(Phase {
        name: "API SIGKILL",
        start_ms,
        fault_over_ms,
        end_ms: mark(&rec),
        note: format!("api0 killed, restarted after 2 s (ready again: {api_back})"),
    });

    // Stripe slow, then failing.
    let start_ms = mark(&rec);
    fakes.set_stripe(StripeMode::Slow, 3_000, 0, 0);
    sleep(Duration::from_secs(10)).await;
    fakes.set_stripe(StripeMode::Normal, 0, 0, 0);
    let fault_over_ms = mark(&rec);
    sleep(settle).await;
    phases.push(Phase {
        name: "Stripe slow",
        start_ms,
        fault_over_ms,
        end_ms: mark(&rec),
        note: "3 s per Stripe call for 10 s".into(),
    });
    let start_ms = mark(&rec);
    fakes.set_stripe(StripeMode::Failing, 0, 25, 25);
    sleep(Duration::from_secs(12)).await;
    fakes.set_stripe(StripeMode::Normal, 0, 0, 0);
    let fault_over_ms = mark(&rec);
    sleep(settle).await;
    let ss = fakes.stripe_stats();
    phases.push(Phase {
        name: "Stripe failing",
        start_ms,
        fault_over_ms,
        end_ms: mark(&rec),
        note: format!(
            "12 s: 25% refused before Stripe, 25% failed after it acted ({} and {} so far)",
            ss.failed_before, ss.failed_after
        ),
    });

    // Duplicate webhook flood.
    let start_ms = mark(&rec);
    let flooded = fakes.flood_stripe_events(10);
    let flood_deadline = Instant::now() + Duration::from_secs(60);
    while fakes.webhooks_pending() > 0 && Instant::now() < flood_deadline {
        sleep(Duration::from_millis(100)).await;
    }
    let fault_over_ms = mark(&rec);
    sleep(settle).await;
    phases.push(Phase {
        name: "webhook flood",
        start_ms,
        fault_over_ms,
        end_ms: mark(&rec),
        note: format!(
            "{flooded} duplicate Stripe deliveries, delivered in {:.1} s",
            (fault_over_ms - start_ms) as f64 / 1000.0
        ),
    });

    // Chargeback flood: disputes on some top-ups, withdrawn and reinstated at Stripe, each
    // event delivered many times at once, in any order.
    let start_ms = mark(&rec);
    let disputed_intents: Vec<String> = pairs(
        &pool,
        "SELECT payment_intent_id AS a, id::text AS b FROM top_ups
          WHERE status = 'succeeded' AND payment_intent_id IS NOT NULL
          ORDER BY succeeded_at LIMIT 12",
    )
    .await
    .into_iter()
    .map(|(pi, _)| pi)
    .collect();
    let (disputes, chargeback_deliveries) = fakes.flood_chargebacks(&disputed_intents, 10).await?;
    let flood_deadline = Instant::now() + Duration::from_secs(60);
    while fakes.webhooks_pending() > 0 && Instant::now() < flood_deadline {
        sleep(Duration::from_millis(100)).await;
    }
    let fault_over_ms = mark(&rec);
    sleep(settle).await;
    phases.push(Phase {
        name: "chargeback flood",
        start_ms,
        fault_over_ms,
        end_ms: mark(&rec),
        note: format!(
            "{} disputes withdrawn and reinstated, {chargeback_deliveries} deliveries of their events in {:.1} s",
            disputes.len(),
            (fault_over_ms - start_ms) as f64 / 1000.0
        ),
    });

    // Refunds during cover: finance refunds whole top-ups of drivers whose cover is running.
    // The running sessions' charges so far are held, so no wallet can be refunded into debt.
    let start_ms = mark(&rec);
    let on_cover: Vec<(String, String)> = pairs(
        &pool,
        "SELECT DISTINCT ON (t.driver_id) t.id::text AS a, t.driver_id::text AS b
           FROM top_ups t
           JOIN cover_sessions c ON c.driver_id = t.driver_id AND c.status = 'active'
          WHERE t.status = 'succeeded'
            AND NOT EXISTS (SELECT 1 FROM chargebacks k WHERE k.top_up_id = t.id)
          ORDER BY t.driver_id, t.succeeded_at DESC
          LIMIT 8",
    )
    .await;
    let mut refund_answers: Vec<String> = Vec::new();
    for (top_up, _) in &on_cover {
        refund_answers.push(refund_whole(&http, &bases[1], &finance_cookie, top_up, run_id).await);
    }
    let fault_over_ms = mark(&rec);
    sleep(settle).await;
    phases.push(Phase {
        name: "refunds during cover",
        start_ms,
        fault_over_ms,
        end_ms: mark(&rec),
        note: format!(
            "{} whole refunds asked of drivers on cover: {refund_answers:?}",
            on_cover.len()
        ),
    });

    // Calm: everything must work.
    let start_ms = mark(&rec);
    sleep(settle + Duration::from_secs(2)).await;
    phases.push(Phase {
        name: "calm",
        start_ms,
        fault_over_ms: start_ms,
        end_ms: mark(&rec),
        note: "no fault: no error allowed".into(),
    });
    let traffic_ms = mark(&rec);
    stop_tx.send(true)?;
    for t in tasks {
        let _ = t.await;
    }

    // --- drain ---------------------------------------------------------------------------
    let drain_started = Instant::now();
    let unsettled_sql = "SELECT (
          (SELECT count(*) FROM cover_sessions WHERE status IN ('active', 'ended'))
        + (SELECT count(*) FROM outbox_jobs WHERE status <> 'done'
             AND job_type NOT IN ('ReconcileStripeDay', 'SendWeeklyStatements', 'BuildMonthlyBordereau', 'FlagStaleLinks')
             AND run_after <= now())
        + (SELECT count(*) FROM notifications WHERE status IN ('pending', 'sending'))
        + (SELECT count(*) FROM top_ups WHERE status IN ('created'))
        )::bigint AS n";
    let mut unsettled = -1;
    while drain_started.elapsed() < Duration::from_secs(150) {
        unsettled = count(&pool, unsettled_sql).await;
        if unsettled == 0 && fakes.webhooks_pending() == 0 {
            break;
        }
        sleep(Duration::from_millis(500)).await;
    }
    let drained_in = drain_started.elapsed();
    let _ = delivery_stop.0.send(true);
    for d in delivery.drain(..) {
        let _ = d.await;
    }

    // --- checks --------------------------------------------------------------------------
    let mut checks = Vec::new();
    let samples = rec.samples();
    check(
        &mut checks,
        "drained",
        unsettled == 0,
        format!(
            "{unsettled} sessions/jobs/messages/top-ups unsettled after {:.1} s",
            drained_in.as_secs_f64()
        ),
    );
    let abandoned = lock(&book.abandoned).clone();
    check(
        &mut checks,
        "every call answered",
        abandoned.is_empty(),
        format!("{} calls never answered: {abandoned:?}", abandoned.len()),
    );
    let mut died = Vec::new();
    for p in apis.iter_mut().chain(workers.iter_mut()) {
        if !p.running() {
            died.push(p.name.clone());
        }
    }
    check(
        &mut checks,
        "no process died on its own",
        died.is_empty(),
        format!("{died:?}"),
    );

    // Charges.
    let sessions = count(&pool, "SELECT count(*) AS n FROM cover_sessions").await;
    let app_sessions = lock(&book.started).len() as i64;
    let partner_sessions = count(
        &pool,
        "SELECT count(*) AS n FROM cover_sessions WHERE source = 'partner'",
    )
    .await;
    let uncharged = count(
        &pool,
        "SELECT count(*) AS n FROM cover_sessions WHERE status <> 'charged'",
    )
    .await;
    let wrong_charges = count(
        &pool,
        "SELECT count(*) AS n FROM cover_sessions s
          WHERE s.total_minor > 0 AND (
                SELECT count(*) FROM ledger_transactions t
                 WHERE t.kind = 'session_charge' AND t.cause_type = 'cover_session'
                   AND t.cause_id = 'cvs_' || replace(s.id::text, '-', '')) <> 1",
    )
    .await;
    let charge_amounts_differ = count(
        &pool,
        "SELECT count(*) AS n FROM ledger_transactions t
           JOIN ledger_postings p ON p.transaction_id = t.id
           JOIN ledger_accounts a ON a.id = p.account_id AND a.kind = 'driver_wallet'
           JOIN cover_sessions s ON t.cause_id = 'cvs_' || replace(s.id::text, '-', '')
          WHERE t.kind = 'session_charge' AND p.amount <> s.total_minor",
    )
    .await;
    let orphan_charges = count(
        &pool,
        "SELECT count(*) AS n FROM ledger_transactions t
          WHERE t.kind = 'session_charge' AND NOT EXISTS (
                SELECT 1 FROM cover_sessions s WHERE t.cause_id = 'cvs_' || replace(s.id::text, '-', ''))",
    )
    .await;
    check(
        &mut checks,
        "every session charged once, for its price",
        uncharged == 0
            && wrong_charges == 0
            && charge_amounts_differ == 0
            && orphan_charges == 0
            && sessions > 0,
        format!(
            "{sessions} sessions ({app_sessions} started in the app, {partner_sessions} by partner events): {uncharged} not charged, {wrong_charges} without exactly one charge, {charge_amounts_differ} charged another amount, {orphan_charges} charges of no session"
        ),
    );
    let ids_ok = {
        let started: HashSet<String> = lock(&book.started).iter().cloned().collect();
        started.len() as i64 == app_sessions
    };
    check(
        &mut checks,
        "a repeated startCover never started a second session",
        ids_ok
            && count(
                &pool,
                "SELECT count(*) AS n FROM cover_sessions WHERE source = 'driver'",
            )
            .await
                == app_sessions,
        format!("{app_sessions} app sessions asked for and recorded"),
    );

    // Chargebacks: each dispute recorded once, each of its balance transactions booked once,
    // and the wallets back where they were (each was reinstated).
    let n_disputes = disputes.len() as i64;
    let chargebacks = count(&pool, "SELECT count(*) AS n FROM chargebacks").await;
    let settled = count(
        &pool,
        "SELECT count(*) AS n FROM chargebacks WHERE stripe_status = 'won'
            AND withdrawn_transaction_id IS NOT NULL AND reinstated_transaction_id IS NOT NULL",
    )
    .await;
    let booked = count(
        &pool,
        "SELECT count(*) AS n FROM ledger_transactions WHERE kind = 'chargeback'",
    )
    .await;
    let unapplied = count(
        &pool,
        "SELECT count(*) AS n FROM stripe_events
          WHERE event_type LIKE 'charge.dispute.%' AND status <> 'processed'",
    )
    .await;
    let wallet_net = count(
        &pool,
        "SELECT coalesce(sum(p.amount), 0)::bigint AS n FROM ledger_postings p
           JOIN ledger_transactions t ON t.id = p.transaction_id
           JOIN ledger_accounts a ON a.id = p.account_id
          WHERE t.kind = 'chargeback' AND a.kind = 'driver_wallet'",
    )
    .await;
    check(
        &mut checks,
        "every chargeback booked once",
        n_disputes > 0
            && chargebacks == n_disputes
            && settled == n_disputes
            && booked == 2 * n_disputes
            && unapplied == 0
            && wallet_net == 0,
        format!(
            "{n_disputes} disputes: {chargebacks} chargebacks ({settled} won with both movements), {booked} ledger transactions (want {}), {unapplied} dispute events not applied, wallets moved by {wallet_net} net",
            2 * n_disputes
        ),
    );

    // Refunds during cover: answered, and no wallet past the overdraft limit once every session
    // is charged.
    let past_limit = count(
        &pool,
        &format!(
            "SELECT count(*) AS n FROM (
               SELECT -sum(p.amount) AS balance FROM ledger_postings p
                 JOIN ledger_accounts a ON a.id = p.account_id
                WHERE a.kind = 'driver_wallet' GROUP BY a.id) w
              WHERE w.balance < -{}",
            payments::OVERDRAFT_LIMIT.minor
        ),
    )
    .await;
    let refunded = refund_answers
        .iter()
        .filter(|a| a.starts_with("SUCCEEDED"))
        .count();
    check(
        &mut checks,
        "refunds during cover keep wallets within the overdraft",
        past_limit == 0 && refund_answers.iter().all(|a| !a.starts_with("unanswered")),
        format!(
            "{refunded} of {} refunds succeeded ({refund_answers:?}); {past_limit} wallets past -{}",
            refund_answers.len(),
            payments::OVERDRAFT_LIMIT
        ),
    );

    // Top-ups against Stripe and the ledger.
    let top_ups = lock(&book.top_ups).clone();
    let asked = top_ups.len() + world.drivers.len();
    let rows = count(&pool, "SELECT count(*) AS n FROM top_ups").await;
    let succeeded = count(
        &pool,
        "SELECT count(*) AS n FROM top_ups WHERE status = 'succeeded'",
    )
    .await;
    let unbooked = count(
        &pool,
        "SELECT count(*) AS n FROM top_ups u WHERE u.status = 'succeeded' AND (
              SELECT count(*) FROM ledger_transactions t
               WHERE t.kind = 'top_up' AND t.cause_type = 'top_up'
                 AND t.cause_id = 'top_' || replace(u.id::text, '-', '')) <> 1",
    )
    .await;
    let booked_not_succeeded = count(
        &pool,
        "SELECT count(*) AS n FROM ledger_transactions t WHERE t.kind = 'top_up' AND NOT EXISTS (
              SELECT 1 FROM top_ups u WHERE u.status = 'succeeded'
                 AND t.cause_id = 'top_' || replace(u.id::text, '-', ''))",
    )
    .await;
    let intents = all_payment_intents(stripe).await?;
    let by_top_up: HashMap<String, Vec<&Value>> =
        intents.iter().fold(HashMap::new(), |mut m, pi| {
            if let Some(t) = pi["metadata"]["top_up_id"].as_str() {
                m.entry(t.to_owned()).or_default().push(pi);
            }
            m
        });
    let ours: Vec<(String, String)> = pairs(
        &pool,
        "SELECT 'top_' || replace(id::text, '-', '') AS a, status AS b FROM top_ups",
    )
    .await;
    let mut intent_problems = Vec::new();
    for (id, status) in &ours {
        let pis = by_top_up.get(id).map(Vec::as_slice).unwrap_or_default();
        let stripe_succeeded = pis.iter().filter(|pi| pi["status"] == "succeeded").count();
        if pis.len() > 1 {
            intent_problems.push(format!("{id}: {} PaymentIntents", pis.len()));
        }
        if (status == "succeeded") != (stripe_succeeded == 1) {
            intent_problems.push(format!(
                "{id}: ours {status}, Stripe {stripe_succeeded} succeeded"
            ));
        }
    }
    let ours_ids: HashSet<&String> = ours.iter().map(|(id, _)| id).collect();
    let strays = by_top_up.keys().filter(|k| !ours_ids.contains(k)).count();
    let unanswered = top_ups.iter().filter(|t| t.2 != "SUCCEEDED").count();
    check(
        &mut checks,
        "every top-up once, at Stripe and in the ledger",
        rows as usize == asked
            && unbooked == 0
            && booked_not_succeeded == 0
            && intent_problems.is_empty()
            && strays == 0
            && unanswered == 0,
        format!(
            "{asked} asked for, {rows} recorded, {succeeded} succeeded; {unbooked} succeeded without one ledger credit, {booked_not_succeeded} credits without a succeeded top-up; {} PaymentIntents, {strays} of no top-up; {unanswered} not answered SUCCEEDED; {intent_problems:?}",
            intents.len()
        ),
    );

    // Messages.
    let sms = lock(&fakes.state.sms).clone();
    let mail = lock(&fakes.state.mail).clone();
    let recorded: Vec<(String, String)> = pairs(
        &pool,
        "SELECT channel AS a, coalesce(provider_message_id, '') AS b FROM notifications
          WHERE status IN ('sent', 'delivered')",
    )
    .await;
    let not_final = count(
        &pool,
        "SELECT count(*) AS n FROM notifications WHERE status NOT IN ('sent', 'delivered')",
    )
    .await;
    let recorded_ids: HashMap<&str, usize> =
        recorded.iter().fold(HashMap::new(), |mut m, (_, id)| {
            *m.entry(id.as_str()).or_default() += 1;
            m
        });
    let unrecorded: Vec<&stack::Sms> = sms
        .iter()
        .filter(|m| !recorded_ids.contains_key(m.sid.as_str()))
        .collect();
    let sms_unrecorded = unrecorded.len();
    for m in unrecorded.iter().take(5) {
        let rows = pairs(
            &pool,
            &format!(
                "SELECT status || ' attempts ' || attempts || ' sid ' || coalesce(provider_message_id, '-')
                        || ' ambiguous ' || coalesce(to_char(ambiguous_at, 'HH24:MI:SS.MS'), '-')
                        || ' sent ' || coalesce(to_char(sent_at, 'HH24:MI:SS.MS'), '-') AS a,
                        coalesce(last_error, '') AS b
                   FROM notifications WHERE recipient = '{}' AND body_text = '{}'",
                m.to,
                m.body.replace('\'', "''")
            ),
        )
        .await;
        let same: Vec<String> = sms
            .iter()
            .filter(|o| o.to == m.to && o.body == m.body)
            .map(|o| format!("{} at {}", o.sid, o.at.format("%H:%M:%S%.3f")))
            .collect();
        eprintln!(
            "text not recorded: {} to {} at {}: {:?}\n  the same text at Twilio: {same:?}\n  our notifications with that text: {rows:?}",
            m.sid,
            m.to,
            m.at.format("%H:%M:%S%.3f"),
            m.body
        );
    }
    let twice_recorded = recorded_ids.values().filter(|n| **n > 1).count();
    let sms_recorded = recorded.iter().filter(|(c, _)| c == "sms").count();
    let resent_emails = count(
        &pool,
        "SELECT count(*) AS n FROM notifications WHERE channel = 'email' AND resent_after_ambiguity",
    )
    .await;
    let mail_unrecorded = mail
        .iter()
        .filter(|m| !recorded_ids.contains_key(m.id.as_str()))
        .count();
    let emails_recorded = recorded.iter().filter(|(c, _)| c == "email").count();
    check(
        &mut checks,
        "every message sent exactly once",
        not_final == 0
            && sms_unrecorded == 0
            && twice_recorded == 0
            && sms.len() == sms_recorded
            && mail.len() >= emails_recorded
            && mail_unrecorded as i64 <= resent_emails,
        format!(
            "texts: {} at Twilio, {sms_recorded} recorded sent, {sms_unrecorded} not ours; emails: {} at Mailgun, {emails_recorded} recorded sent, {mail_unrecorded} extra ({resent_emails} resent by design after an ambiguous send); {not_final} not final",
            sms.len(),
            mail.len()
        ),
    );

    // Partner webhooks: every event recorded as delivered reached the receiver.
    let hooks = lock(&fakes.state.partner_hooks).clone();
    let delivered_events: Vec<(String, String)> = pairs(
        &pool,
        "SELECT event_id AS a, event_type AS b FROM webhook_deliveries WHERE status = 'succeeded'",
    )
    .await;
    let pending_events = count(
        &pool,
        "SELECT count(*) AS n FROM webhook_deliveries WHERE status <> 'succeeded'",
    )
    .await;
    let received: HashSet<&str> = hooks.iter().map(|(id, _)| id.as_str()).collect();
    let lost = delivered_events
        .iter()
        .filter(|(id, _)| !received.contains(id.as_str()))
        .count();
    let dup_hooks = hooks.len() - received.len();
    check(
        &mut checks,
        "every partner webhook delivered",
        lost == 0 && pending_events == 0 && !delivered_events.is_empty(),
        format!(
            "{} events, {} deliveries received ({dup_hooks} repeats, which receivers drop by event id), {lost} lost, {pending_events} not delivered",
            delivered_events.len(),
            hooks.len()
        ),
    );

    // Outbox.
    let dead = count(
        &pool,
        "SELECT count(*) AS n FROM outbox_jobs WHERE status = 'dead'",
    )
    .await;
    check(
        &mut checks,
        "no dead job",
        dead == 0,
        format!("{dead} dead"),
    );

    // Ledger.
    let ledger = std::process::Command::new(&bin)
        .args(["ledger", "check", "--database-url", &wiring.database_url])
        .env("SHIFTCOVER__ENVIRONMENT", "test")
        .env("SHIFTCOVER__LOG__FILTER", "error")
        .output()?;
    check(
        &mut checks,
        "ledger balanced (shiftcover ledger check)",
        ledger.status.success(),
        String::from_utf8_lossy(&ledger.stdout).trim().to_owned(),
    );

    // Reconciliation of each day the traffic paid on.
    let days: Vec<(String, String)> = pairs(
        &pool,
        "SELECT DISTINCT to_char(succeeded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS a, '' AS b
           FROM top_ups WHERE succeeded_at IS NOT NULL",
    )
    .await;
    for (day, _) in &days {
        let (ok, detail) = reconcile(&http, &bases[1], &finance_cookie, day).await;
        check(
            &mut checks,
            "Stripe ↔ ledger reconciliation fully matched",
            ok,
            format!("{day}: {detail}"),
        );
    }

    // The API back to normal within seconds of each fault; nothing failing in the calm.
    let limit_ms = env_num("FAULTS_RECOVERY_LIMIT_MS", 10_000);
    let mut recoveries = Vec::new();
    for p in &phases {
        let failed_probes: Vec<&traffic::Sample> = samples
            .iter()
            .filter(|s| s.op.starts_with("probe") && s.error.is_some())
            .filter(|s| s.at_ms >= p.start_ms && s.at_ms < p.end_ms)
            .collect();
        let last_failure = failed_probes
            .iter()
            .map(|s| s.at_ms + s.latency_us / 1000)
            .max();
        let first_failure = failed_probes.iter().map(|s| s.at_ms).min();
        let recovered = last_failure.map_or(0, |t| t.saturating_sub(p.fault_over_ms));
        let unavailable = first_failure
            .zip(last_failure)
            .map_or(0, |(a, b)| b.saturating_sub(a));
        recoveries.push((p.name, recovered, unavailable));
        check(
            &mut checks,
            "API back to normal within seconds",
            recovered <= limit_ms,
            format!(
                "{}: {:.1} s after the fault was over",
                p.name,
                recovered as f64 / 1000.0
            ),
        );
    }
    let calm = phases.last().expect("phases");
    let calm_errors = traffic::error_kinds(&samples, calm.start_ms, calm.end_ms);
    check(
        &mut checks,
        "no error once calm",
        calm_errors.is_empty(),
        format!("{calm_errors:?}"),
    );

    // --- report --------------------------------------------------------------------------
    let mut report = String::new();
    let _ = writeln!(
        report,
        "\nFault suite: {app_drivers} app drivers, {partner_drivers} partner drivers, 2 API and 2 worker processes; traffic {:.0} s, drained in {:.1} s, whole run {:.0} s",
        traffic_ms as f64 / 1000.0,
        drained_in.as_secs_f64(),
        suite_start.elapsed().as_secs_f64()
    );
    let ss = fakes.stripe_stats();
    let _ = writeln!(
        report,
        "Stripe proxy: {} calls forwarded, {} delayed, {} refused before Stripe, {} failed after Stripe acted; Stripe webhooks: {} events, {} deliveries accepted, {} failed attempts retried; shift events sent: {}, partner shifts: {}",
        ss.forwarded,
        ss.delayed,
        ss.failed_before,
        ss.failed_after,
        lock(&fakes.state.stripe_events).len(),
        std::sync::atomic::AtomicU64::load(
            &fakes.state.webhook_delivered,
            std::sync::atomic::Ordering::Relaxed
        ),
        std::sync::atomic::AtomicU64::load(
            &fakes.state.webhook_failed_attempts,
            std::sync::atomic::Ordering::Relaxed
        ),
        std::sync::atomic::AtomicU64::load(&book.events_sent, std::sync::atomic::Ordering::Relaxed),
        std::sync::atomic::AtomicU64::load(&book.shifts, std::sync::atomic::Ordering::Relaxed),
    );
    for p in &phases {
        let secs = (p.end_ms - p.start_ms) as f64 / 1000.0;
        let (recovered, unavailable) = recoveries
            .iter()
            .find(|(n, _, _)| *n == p.name)
            .map_or((0, 0), |r| (r.1, r.2));
        let _ = writeln!(
            report,
            "\n{} ({:.1} s; {}) — probes failing for {:.1} s; API normal again {:.1} s after the fault was over",
            p.name,
            secs,
            p.note,
            unavailable as f64 / 1000.0,
            recovered as f64 / 1000.0
        );
        let _ = writeln!(
            report,
            "  {:<20} {:>7} {:>8} {:>7} {:>9} {:>9}",
            "operation", "calls", "per s", "errors", "p50 ms", "p99 ms"
        );
        for (op, s) in traffic::stats(&samples, p.start_ms, p.end_ms) {
            let _ = writeln!(
                report,
                "  {:<20} {:>7} {:>8.1} {:>7} {:>9.1} {:>9.1}",
                op,
                s.count,
                s.count as f64 / secs.max(0.001),
                s.errors,
                s.p50_ms,
                s.p99_ms
            );
        }
        let kinds = traffic::error_kinds(&samples, p.start_ms, p.end_ms);
        if !kinds.is_empty() {
            let _ = writeln!(report, "  errors: {kinds:?}");
        }
    }
    let _ = writeln!(
        report,
        "\n(Calls count in the phase they started in: a call in flight when a fault began shows in the phase before it.)\n\nChecks:"
    );
    let mut all_ok = true;
    for c in &checks {
        all_ok &= c.ok;
        let _ = writeln!(
            report,
            "  [{}] {} — {}",
            if c.ok { "ok" } else { "FAILED" },
            c.name,
            c.detail
        );
    }
    let _ = writeln!(
        report,
        "\n{}",
        if all_ok {
            "fault suite passed"
        } else {
            "fault suite FAILED"
        }
    );
    print!("{report}");
    std::fs::write(artefacts.join("report.txt"), &report)?;
    if !all_ok {
        let open: Vec<(String, String)> = pairs(
            &pool,
            "SELECT job_type || ' ' || status || ' (attempts up to ' || max(attempts) || ')' AS a,
                    count(*)::text || ', next run ' || to_char(min(run_after), 'HH24:MI:SS')
                    || ', queued up to ' || coalesce(to_char(max(queued_at), 'HH24:MI:SS'), '-') || ', started up to ' || coalesce(to_char(max(started_at), 'HH24:MI:SS'), '-') || ', locked by ' || coalesce(max(locked_by), '-') AS b
               FROM outbox_jobs WHERE status <> 'done' GROUP BY job_type, status ORDER BY 1",
        )
        .await;
        eprintln!(
            "unfinished outbox jobs at {}: {open:#?}",
            chrono::Utc::now().format("%H:%M:%S")
        );
        let not_charged: Vec<(String, String)> = pairs(
            &pool,
            "SELECT id::text AS a,
                    status || ' ' || source || ' end ' || coalesce(end_reason, '-')
                    || ' total ' || coalesce(total_minor::text, '-')
                    || ' started ' || to_char(started_at, 'HH24:MI:SS')
                    || ' ended ' || coalesce(to_char(ended_at, 'HH24:MI:SS'), '-') AS b
               FROM cover_sessions WHERE status <> 'charged' ORDER BY started_at LIMIT 20",
        )
        .await;
        eprintln!("sessions not charged: {not_charged:#?}");
        for p in apis.iter().chain(workers.iter()) {
            eprintln!("{}", p.log_tail(30));
        }
        if let Ok(secs) = std::env::var("FAULTS_HOLD_SECS") {
            eprintln!(
                "holding for {secs} s: database {}, redis {}, fakes {}, APIs {bases:?}",
                wiring.database_url, wiring.redis_url, fakes.base
            );
            sleep(Duration::from_secs(secs.parse().unwrap_or(600))).await;
        }
    }
    Ok(all_ok)
}

/// Every PaymentIntent localstripe holds.
async fn all_payment_intents(
    stripe: &testkit::localstripe::LocalStripe,
) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/payment_intents?limit=100&starting_after={a}"),
            None => "/v1/payment_intents?limit=100".to_owned(),
        };
        let page = stripe.get(&path).await?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data
            .last()
            .and_then(|d| d["id"].as_str())
            .map(str::to_owned);
        out.extend(data);
        if page["has_more"] != true || after.is_none() {
            return Ok(out);
        }
    }
}

/// Refunds all that can be refunded of a top-up as finance staff, asking again (same key) when
/// no answer came; the refund's status, a user error's code, or `unanswered`.
async fn refund_whole(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    top_up: &str,
    run_id: u32,
) -> String {
    let doc = "mutation($input: RefundPaymentInput!) { refundPayment(input: $input) { refund { status amount { minor } } userErrors { code } } }";
    let input = json!({
        "paymentId": match top_up.parse::<uuid::Uuid>() {
            Ok(id) => graphql::relay::to_global_id("Payment", &payments::TopUpId(id)),
            Err(_) => return format!("unanswered: bad top-up id {top_up}"),
        },
        "reason": "Fault suite: refund while on cover",
        "idempotencyKey": format!("fault-refund-{run_id}-{top_up}"),
    });
    for _ in 0..5 {
        let sent = http
            .post(format!("{base}/graphql"))
            .header(
                "cookie",
                format!("{}={cookie}", graphql::viewer::STAFF_COOKIE),
            )
            .json(&json!({ "query": doc, "variables": { "input": input } }))
            .send()
            .await;
        let Ok(response) = sent else { continue };
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let payload = &body["data"]["refundPayment"];
        if let Some(status) = payload["refund"]["status"].as_str() {
            return format!("{status} {}", payload["refund"]["amount"]["minor"]);
        }
        if let Some(code) = payload["userErrors"][0]["code"].as_str() {
            return code.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    "unanswered".into()
}

/// Runs the day's reconciliation as finance staff; whether every line matched.
async fn reconcile(http: &reqwest::Client, base: &str, cookie: &str, day: &str) -> (bool, String) {
    let doc = "mutation($day: Date!) { reconcileStripeDay(input: { day: $day, importFromStripe: true }) { summary { newExceptions statuses { status count stripeAmount ledgerAmount } } userErrors { code } } }";
    let sent = http
        .post(format!("{base}/graphql"))
        .header(
            "cookie",
            format!("{}={cookie}", graphql::viewer::STAFF_COOKIE),
        )
        .json(&json!({ "query": doc, "variables": { "day": day } }))
        .send()
        .await;
    let body: Value = match sent {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(e) => return (false, format!("request failed: {e}")),
    };
    let summary = &body["data"]["reconcileStripeDay"]["summary"];
    let statuses = summary["statuses"].as_array().cloned().unwrap_or_default();
    let matched: i64 = statuses
        .iter()
        .filter(|s| s["status"] == "MATCHED")
        .filter_map(|s| s["count"].as_i64())
        .sum();
    let other: Vec<String> = statuses
        .iter()
        .filter(|s| s["status"] != "MATCHED")
        .map(|s| format!("{} ×{}", s["status"], s["count"]))
        .collect();
    let ok = matched > 0 && other.is_empty() && summary["newExceptions"] == 0;
    (
        ok,
        if summary.is_null() {
            format!("no summary: {body}")
        } else {
            format!(
                "{matched} matched; others: {other:?}; new exceptions {}",
                summary["newExceptions"]
            )
        },
    )
}
