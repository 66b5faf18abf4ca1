//! `shiftcover simulate-partner`: a partner platform's realistic day of shifts for N drivers,
//! replayed against a running server through the partner API.
//!
//! What it does:
//! 1. makes N simulated drivers in the configured database (a complete profile, a car, enrolled
//!    in food delivery, a wallet credited for the day) and a link code for each — the part a
//!    real driver does in the app;
//! 2. links each to the partner with `linkDriver` (the partner's API key);
//! 3. plays each driver's day — one to three shifts of two to eight jobs, with short breaks and
//!    breaks longer than the gap rule — as `online` / `job_accepted` / `job_completed` /
//!    `offline` events over the last `hours` hours, sent with `recordShiftEvents` in batches,
//!    slightly out of order and with a few events sent twice, as real platforms do;
//! 4. prints what the API answered (accepted, duplicates, rejected by code, covered or not) and
//!    the throughput (events per second, batch latency).
//!
//! With a test key nothing real happens: test events start no cover. It refuses to run in
//! production. [`day_of_shifts`] and [`Batches`] are also what the partner benchmark sends.

use anyhow::Context as _;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shared::Money;
use shared::core::Core;
use shared::settings::Environment;
use std::collections::BTreeMap;
use std::time::Instant;

/// How the simulation runs.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The partner's API key (`sck_live_…` or `sck_test_…`) with `drivers:link` and
    /// `shifts:write`.
    pub api_key: String,
    /// How many drivers.
    pub drivers: usize,
    /// How many hours back the day starts (1 to 23: events older than 24 hours are refused).
    pub hours: i64,
    /// Events per `recordShiftEvents` call (1 to 500).
    pub batch: usize,
    /// Seed of the random day, so a run can be repeated.
    pub seed: u64,
}

/// A simulated driver, ready to be linked.
#[derive(Debug, Clone)]
pub struct SimDriver {
    /// The ShiftCover driver.
    pub driver_id: accounts::DriverId,
    /// The link code they made.
    pub link_code: String,
    /// The partner's id for them.
    pub external_id: String,
}

/// Makes `n` drivers ready for partner cover (see the module docs), named `<tag>-<i>` at the
/// partner. Development and test only.
pub async fn prepare_drivers(core: &Core, n: usize, tag: &str) -> anyhow::Result<Vec<SimDriver>> {
    if core.settings.environment == Environment::Production {
        anyhow::bail!("simulate-partner makes demo drivers and refuses to run in production");
    }
    let clock = core.clock.as_ref();
    let mut conn = core.pool.get().await?;
    let food = pricing::get_product_by_code(&mut conn, "food_delivery_hourly")
        .await
        .map_err(|e| anyhow::anyhow!("no food delivery product ({e}); run `shiftcover seed`"))?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let phone = accounts::Phone::parse(&sim_phone(tag, i))
            .map_err(|e| anyhow::anyhow!("simulated phone: {e}"))?;
        let (driver, _) = accounts::find_or_create_driver_by_phone(
            &mut conn,
            clock,
            accounts::Actor::System,
            &phone,
        )
        .await
        .map_err(|e| anyhow::anyhow!("simulated driver: {e}"))?;
        accounts::update_profile(
            &mut conn,
            clock,
            accounts::Actor::System,
            driver.id,
            accounts::ProfileUpdate {
                name: Some(format!("Sim Driver {i}")),
                date_of_birth: NaiveDate::from_ymd_opt(1988, 4, 12),
                licence_issued_on: NaiveDate::from_ymd_opt(2012, 9, 3),
                postcode: Some("E1 6AN".into()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("simulated profile: {e}"))?;
        let vehicle = match accounts::list_vehicles(&mut conn, driver.id).await?.first() {
            Some(v) => v.id,
            None => {
                accounts::add_vehicle(
                    &mut conn,
                    clock,
                    driver.id,
                    accounts::NewVehicle {
                        vehicle_type: accounts::VehicleType::Car,
                        registration: Some(sim_registration(tag, i)),
                        make: Some("Toyota".into()),
                        model: Some("Corolla".into()),
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("simulated car: {e}"))?
                .id
            }
        };
        ledger::post(
            &mut conn,
            ledger::NewTransaction {
                kind: ledger::TransactionKind::TopUp,
                cause: ledger::Cause::new("simulation", format!("{tag}:{i}")),
                currency: shared::Currency::Gbp,
                description: "Simulation credit".into(),
                lines: ledger::top_up_lines(
                    &driver.id.to_string(),
                    Money::gbp(20_000),
                    Money::gbp(0),
                )?,
                metadata: json!({ "simulation": tag }),
            },
        )
        .await
        .map(|_| ())
        .or_else(|e| match e {
            // The same tag and driver were credited by an earlier run.
            ledger::LedgerError::AlreadyPosted(_) => Ok(()),
            other => Err(other),
        })?;
        match cover::enrol(
            &mut conn,
            clock,
            driver.id,
            cover::EnrolInput {
                product_id: food.id,
                vehicle_id: vehicle,
                accept_terms: true,
            },
            &payments::WalletFunds,
        )
        .await
        {
            Ok(_) | Err(cover::CoverError::AlreadyEnrolled) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("simulated enrolment")),
        }
        let code = partners::create_link_code(&mut conn, clock, driver.id)
            .await
            .map_err(|e| anyhow::anyhow!("link code: {e}"))?;
        out.push(SimDriver {
            driver_id: driver.id,
            link_code: code.code,
            external_id: format!("{tag}-{i}"),
        });
    }
    Ok(out)
}

fn sim_phone(tag: &str, i: usize) -> String {
    // +44 7700 BBIIII: the tag picks a block BB (10 to 89, clear of Ofcom's 07700 900xxx drama
    // range, which phone validation rejects), `i` one of its ten thousand numbers.
    let block: u64 = tag.bytes().fold(7, |h, b| (h * 31 + u64::from(b)) % 80);
    format!("+447700{:02}{:04}", block + 10, i % 10_000)
}

fn sim_registration(tag: &str, i: usize) -> String {
    let letters = b"ABCDEFGHJKLMNPRSTVWXY";
    let h: usize = tag.bytes().fold(3, |h, b| (h * 31 + usize::from(b)) % 9973);
    let l = |k: usize| char::from(letters[(h / (k + 1) + i / (k * 7 + 1)) % letters.len()]);
    format!("S{}{:02}{}{}{}", l(0), i % 90 + 10, l(1), l(2), l(3))
}

/// One driver's day of events as the partner API takes them (`ShiftEventInput` JSON), between
/// `from` and `to`, in time order. Event ids are `<external id>-<from, unix seconds>-<n>`, so
/// another day for the same driver never reuses one.
pub fn day_of_shifts(
    rng: &mut StdRng,
    external_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Value> {
    let mut events = Vec::new();
    let mut t = from + Duration::minutes(rng.random_range(0..60));
    let shifts = rng.random_range(1..=3);
    for shift in 0..shifts {
        if t >= to {
            break;
        }
        let mut push = |kind: &str, at: DateTime<Utc>, job: Option<usize>| {
            events.push(json!({
                "eventId": format!("{external_id}-{}-{}", from.timestamp(), events.len()),
                "externalDriverId": external_id,
                "kind": kind,
                "occurredAt": at.to_rfc3339(),
                "vehicleType": "CAR",
                "reference": job.map(|j| format!("{external_id}-s{shift}-j{j}")),
            }));
        };
        push("ONLINE", t, None);
        t += Duration::minutes(rng.random_range(0..15));
        for job in 0..rng.random_range(2..=8) {
            if t >= to {
                break;
            }
            push("JOB_ACCEPTED", t, Some(job));
            t += Duration::minutes(rng.random_range(10..45));
            if t >= to {
                break;
            }
            push("JOB_COMPLETED", t, Some(job));
            // Mostly short waits; now and then one longer than the gap rule.
            t += Duration::minutes(if rng.random_bool(0.2) {
                rng.random_range(15..40)
            } else {
                rng.random_range(1..9)
            });
        }
        if t < to {
            push("OFFLINE", t, None);
        }
        t += Duration::minutes(rng.random_range(60..180));
    }
    events
}

/// Batches of events as a platform sends them: in time order overall, but shuffled within each
/// batch, and with about one event in thirty sent again in the next batch.
pub struct Batches;

impl Batches {
    /// Cuts `events` (all drivers' days, any order) into batches of `size`.
    pub fn make(rng: &mut StdRng, mut events: Vec<Value>, size: usize) -> Vec<Vec<Value>> {
        let size = size.clamp(1, partners::MAX_BATCH);
        events.sort_by(|a, b| {
            a["occurredAt"]
                .as_str()
                .cmp(&b["occurredAt"].as_str())
                .then(a["eventId"].as_str().cmp(&b["eventId"].as_str()))
        });
        let mut batches: Vec<Vec<Value>> = Vec::new();
        let mut carried: Vec<Value> = Vec::new();
        for chunk in events.chunks(size) {
            let mut batch: Vec<Value> = chunk.to_vec();
            let mut resend = Vec::new();
            for e in &batch {
                if rng.random_bool(1.0 / 30.0) {
                    resend.push(e.clone());
                }
            }
            // Repeats ride along without making the batch exceed the limit.
            let room = partners::MAX_BATCH.saturating_sub(batch.len());
            batch.extend(carried.drain(..).take(room));
            for i in (1..batch.len()).rev() {
                let j = rng.random_range(0..=i);
                batch.swap(i, j);
            }
            carried = resend;
            batches.push(batch);
        }
        if !carried.is_empty() {
            batches.push(carried);
        }
        batches
    }
}

/// What the API answered over a run.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Events sent (repeats included).
    pub sent: usize,
    /// Answers by status (`ACCEPTED`, `DUPLICATE`, `REJECTED`).
    pub statuses: BTreeMap<String, usize>,
    /// Rejections by code.
    pub rejected: BTreeMap<String, usize>,
    /// Cover answers (`COVERED`, `NOT_COVERED:<code>`, `UNCHANGED`).
    pub cover: BTreeMap<String, usize>,
    /// Latency of each batch, in milliseconds.
    pub batch_ms: Vec<f64>,
    /// Transport errors, non-200 answers and GraphQL errors.
    pub failures: usize,
}

impl Tally {
    /// Adds one batch's answer.
    pub fn add(&mut self, sent: usize, elapsed_ms: f64, answer: &Value) {
        self.sent += sent;
        self.batch_ms.push(elapsed_ms);
        let Some(results) = answer["data"]["recordShiftEvents"]["results"].as_array() else {
            self.failures += 1;
            return;
        };
        for r in results {
            let status = r["status"].as_str().unwrap_or("?").to_owned();
            if status == "REJECTED" {
                *self
                    .rejected
                    .entry(r["code"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            *self.statuses.entry(status).or_default() += 1;
            let cover = match (r["cover"].as_str(), r["notCoveredCode"].as_str()) {
                (Some("NOT_COVERED"), Some(code)) => format!("NOT_COVERED:{code}"),
                (Some(c), _) => c.to_owned(),
                (None, _) => continue,
            };
            *self.cover.entry(cover).or_default() += 1;
        }
    }

    /// The batch latency at percentile `p` (0–100), in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut v = self.batch_ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * (v.len() as f64 - 1.0)).round();
        v[(rank as usize).min(v.len() - 1)]
    }
}

/// The `recordShiftEvents` document the simulation and the benchmark send.
pub const RECORD_SHIFT_EVENTS: &str = "mutation($input: RecordShiftEventsInput!) { recordShiftEvents(input: $input) { results { status code cover notCoveredCode } userErrors { code } } }";

const LINK_DRIVER: &str = "mutation($input: LinkDriverInput!) { linkDriver(input: $input) { link { id } userErrors { code message } } }";

/// POSTs a GraphQL document with the partner's key; returns the JSON answer.
pub async fn partner_call(
    http: &reqwest::Client,
    url: &str,
    api_key: &str,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let res = http
        .post(format!("{}/graphql", url.trim_end_matches('/')))
        .bearer_auth(api_key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .with_context(|| format!("POST {url}/graphql"))?;
    let status = res.status();
    let body: Value = res.json().await.context("the answer is not JSON")?;
    if !status.is_success() {
        anyhow::bail!("HTTP {status}: {body}");
    }
    Ok(body)
}

/// Links each driver with the partner's key.
pub async fn link_all(
    http: &reqwest::Client,
    url: &str,
    api_key: &str,
    drivers: &[SimDriver],
) -> anyhow::Result<()> {
    for d in drivers {
        let body = partner_call(
            http,
            url,
            api_key,
            LINK_DRIVER,
            json!({ "input": { "linkCode": d.link_code, "externalDriverId": d.external_id } }),
        )
        .await?;
        let code = body["data"]["linkDriver"]["userErrors"][0]["code"].as_str();
        // ALREADY_LINKED: an earlier run with the same seed linked this driver.
        if body["errors"].is_array() || code.is_some_and(|c| c != "ALREADY_LINKED") {
            anyhow::bail!("linking {} failed: {body}", d.external_id);
        }
    }
    Ok(())
}

/// Runs the simulation (see the module docs) and prints its report.
pub async fn run(core: &Core, opts: SimulateOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=23).contains(&opts.hours),
        "--hours must be 1 to 23 (events older than 24 hours are refused)"
    );
    anyhow::ensure!(opts.drivers >= 1, "--drivers must be at least 1");
    let tag = format!("sim{}", opts.seed);
    let http = reqwest::Client::new();
    let drivers = prepare_drivers(core, opts.drivers, &tag).await?;
    println!("{} drivers ready; linking them…", drivers.len());
    link_all(&http, &opts.url, &opts.api_key, &drivers).await?;

    let mut rng = StdRng::seed_from_u64(opts.seed);
    let to = Utc::now();
    let from = to - Duration::hours(opts.hours);
    let events: Vec<Value> = drivers
        .iter()
        .flat_map(|d| day_of_shifts(&mut rng, &d.external_id, from, to))
        .collect();
    let batches = Batches::make(&mut rng, events, opts.batch);
    println!(
        "sending {} events in {} batches…",
        batches.iter().map(Vec::len).sum::<usize>(),
        batches.len()
    );
    let mut tally = Tally::default();
    let started = Instant::now();
    for batch in batches {
        let t = Instant::now();
        let answer = partner_call(
            &http,
            &opts.url,
            &opts.api_key,
            RECORD_SHIFT_EVENTS,
            json!({ "input": { "events": batch } }),
        )
        .await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        match answer {
            Ok(body) => tally.add(batch.len(), ms, &body),
            Err(e) => {
                tally.failures += 1;
                eprintln!("batch failed: {e:#}");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("answers: {:?}", tally.statuses);
    println!("rejected by code: {:?}", tally.rejected);
    println!("cover: {:?}", tally.cover);
    println!(
        "{} events in {:.1} s: {:.0} events/s; batch p50 {:.0} ms, p99 {:.0} ms; failures {}",
        tally.sent,
        secs,
        tally.sent as f64 / secs.max(1e-9),
        tally.percentile_ms(50.0),
        tally.percentile_ms(99.0),
        tally.failures
    );
    anyhow::ensure!(tally.failures == 0, "{} batches failed", tally.failures);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_ordered_inside_its_window_and_batches_keep_every_event() {
        let mut rng = StdRng::seed_from_u64(7);
        let to = Utc::now();
        let from = to - Duration::hours(12);
        let mut all = Vec::new();
        for i in 0..20 {
            let day = day_of_shifts(&mut rng, &format!("d-{i}"), from, to);
            assert!(day.len() >= 2, "at least online and a job");
            let times: Vec<DateTime<Utc>> = day
                .iter()
                .map(|e| e["occurredAt"].as_str().unwrap().parse().unwrap())
                .collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]));
            assert!(times.iter().all(|t| *t >= from && *t < to));
            all.extend(day);
        }
        let ids: std::collections::BTreeSet<String> = all
            .iter()
            .map(|e| e["eventId"].as_str().unwrap().to_owned())
            .collect();
        let batches = Batches::make(&mut rng, all.clone(), 50);
        assert!(batches.iter().all(|b| b.len() <= partners::MAX_BATCH));
        let sent: std::collections::BTreeSet<String> = batches
            .iter()
            .flatten()
            .map(|e| e["eventId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sent, ids, "every event is sent");
        let total: usize = batches.iter().map(Vec::len).sum();
        assert!(total >= all.len());
    }

    #[test]
    fn simulated_phones_and_plates_are_valid() {
        for i in [0, 1, 9_999] {
            let p = sim_phone("sim42", i);
            assert!(accounts::Phone::parse(&p).is_ok(), "{p}");
            assert!(sim_registration("sim42", i).len() == 7);
        }
        assert_ne!(sim_phone("sim1", 3), sim_phone("sim1", 4));
    }
}
