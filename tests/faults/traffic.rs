//! Steady traffic of drivers and a partner platform against running API processes, recorded
//! operation by operation (shared by the fault suite and the load benchmark).
//!
//! - **App drivers** loop: `createQuote`, `startCover`, a wallet read, `endCover`, and every
//!   fourth round a £20 `topUpWallet`. Like the app, they repeat a call that failed with the same
//!   idempotency key until it gets an answer, so every charge and top-up they asked for exists
//!   once.
//! - **Partner drivers** work shifts through the partner's `recordShiftEvents` (online and job
//!   accepted, then job completed and offline), and the partner asks `coverStatus` about them.
//!   Each shift lies in the past day, so its session is started and ended by the events (and
//!   charged) while the traffic runs.
//!
//! Every request goes to the driver's "home" API process; when that process cannot be reached
//! it goes to the next one, as a load balancer would send it.

// Shared by the fault suite and the load benchmark (benches/load.rs), each of which uses a part.
#![allow(dead_code)]

use crate::stack::{FakeState, PEPPER, lock};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A whole-number knob from the environment, or `default` when unset or not a number.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Recording

/// One request as a client saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub op: &'static str,
    /// Milliseconds since the traffic started, at the request's start.
    pub at_ms: u64,
    pub latency_us: u64,
    /// None when it worked; else what went wrong (`transport`, `http_500`, a GraphQL code).
    pub error: Option<String>,
}

/// Every request of a run.
#[derive(Clone)]
pub struct Recorder {
    pub epoch: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            epoch: Instant::now(),
            samples: Arc::new(Mutex::new(Vec::with_capacity(100_000))),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn push(&self, s: Sample) {
        lock(&self.samples).push(s);
    }

    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.samples).clone()
    }
}

/// Latency percentiles and counts of one operation over a window.
#[derive(Debug, Clone, Default)]
pub struct OpStats {
    pub count: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Per-operation figures of the samples that started in `[from_ms, to_ms)`.
pub fn stats(samples: &[Sample], from_ms: u64, to_ms: u64) -> BTreeMap<&'static str, OpStats> {
    let mut by_op: BTreeMap<&'static str, (Vec<u64>, usize)> = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.at_ms >= from_ms && s.at_ms < to_ms)
    {
        let e = by_op.entry(s.op).or_default();
        e.0.push(s.latency_us);
        if s.error.is_some() {
            e.1 += 1;
        }
    }
    by_op
        .into_iter()
        .map(|(op, (mut l, errors))| {
            l.sort_unstable();
            let pct = |p: f64| {
                let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
                l[i] as f64 / 1000.0
            };
            (
                op,
                OpStats {
                    count: l.len(),
                    errors,
                    p50_ms: pct(0.50),
                    p99_ms: pct(0.99),
                    max_ms: l.last().copied().unwrap_or(0) as f64 / 1000.0,
                },
            )
        })
        .collect()
}

/// Errors by kind over a window.
pub fn error_kinds(samples: &[Sample], from_ms: u64, to_ms: u64) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.at_ms >= from_ms && s.at_ms < to_ms)
    {
        if let Some(e) = &s.error {
            *out.entry(format!("{}: {e}", s.op)).or_default() += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Calling the API

/// What a GraphQL call gave.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 without `errors`: the `data`.
    Data(Value),
    /// The request failed: transport error, non-200, or GraphQL `errors` (the code).
    Failed(String),
}

/// The API processes and one HTTP client for them all.
#[derive(Clone)]
pub struct Api {
    pub bases: Vec<String>,
    http: reqwest::Client,
    pub rec: Recorder,
}

impl Api {
    pub fn new(bases: Vec<String>, rec: Recorder) -> Self {
        Api {
            bases,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap_or_default(),
            rec,
        }
    }

    /// Sends `query` to the `home` process (the next one when it cannot be reached) and records
    /// it as `op`.
    pub async fn call(
        &self,
        op: &'static str,
        home: usize,
        bearer: &str,
        query: &str,
        variables: Value,
    ) -> Answer {
        let at_ms = self.rec.now_ms();
        let started = Instant::now();
        let body = json!({ "query": query, "variables": variables });
        let mut answer = Answer::Failed("transport".into());
        for attempt in 0..self.bases.len() {
            let base = &self.bases[(home + attempt) % self.bases.len()];
            let sent = self
                .http
                .post(format!("{base}/graphql"))
                .bearer_auth(bearer)
                .json(&body)
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                // Nothing listening (a killed process): the balancer tries the next one.
                Err(e) if e.is_connect() => continue,
                Err(_) => break,
            };
            let status = response.status().as_u16();
            let parsed: Value = match response.json().await {
                Ok(v) => v,
                Err(_) => {
                    answer = Answer::Failed(format!("http_{status}_not_json"));
                    break;
                }
            };
            answer = if status != 200 {
                Answer::Failed(format!("http_{status}"))
            } else if let Some(errors) = parsed["errors"].as_array() {
                let code = errors
                    .first()
                    .and_then(|e| e["extensions"]["code"].as_str())
                    .unwrap_or("GRAPHQL_ERROR");
                Answer::Failed(code.to_owned())
            } else {
                Answer::Data(parsed["data"].clone())
            };
            break;
        }
        self.rec.push(Sample {
            op,
            at_ms,
            latency_us: started.elapsed().as_micros() as u64,
            error: match &answer {
                Answer::Data(_) => None,
                Answer::Failed(e) => Some(e.clone()),
            },
        });
        answer
    }

    /// Calls until the answer is data (pausing between tries), for at most 30 s; the payload
    /// `field` of the data. Setting up goes through this.
    pub async fn setup_call(
        &self,
        home: usize,
        bearer: &str,
        query: &str,
        variables: Value,
        field: &str,
    ) -> anyhow::Result<Value> {
        let (op, limit) = ("setup", Duration::from_secs(30));
        let start = Instant::now();
        loop {
            match self.call(op, home, bearer, query, variables.clone()).await {
                Answer::Data(d) => return Ok(d[field].clone()),
                Answer::Failed(e) if start.elapsed() > limit => {
                    anyhow::bail!("{op} still failing after {limit:?}: {e}")
                }
                Answer::Failed(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

/// The first `userErrors` code of a payload, if any.
pub fn user_error(payload: &Value) -> Option<String> {
    payload["userErrors"][0]["code"].as_str().map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// Documents

pub const PRODUCTS: &str = "{ products { id code } }";
pub const UPDATE_PROFILE: &str = "mutation($input: UpdateProfileInput!) { updateProfile(input: $input) { driver { id } userErrors { field code } } }";
pub const ADD_VEHICLE: &str = "mutation($input: AddVehicleInput!) { addVehicle(input: $input) { vehicle { id } userErrors { field code } } }";
pub const ENROL: &str = "mutation($input: EnrolInput!) { enrol(input: $input) { enrolment { id status } userErrors { field code } } }";
pub const CREATE_SETUP: &str =
    "mutation { createCardSetup { setupIntentId clientSecret userErrors { code } } }";
pub const CONFIRM_SETUP: &str = "mutation($input: ConfirmCardSetupInput!) { confirmCardSetup(input: $input) { status paymentMethod { id } userErrors { field code } } }";
pub const TOP_UP: &str = "mutation($input: TopUpWalletInput!) { topUpWallet(input: $input) { payment { id status } userErrors { field code } } }";
pub const QUOTE: &str = "mutation($input: CreateQuoteInput!) { createQuote(input: $input) { quote { id hourlyRate { minor } } decline { code } userErrors { field code } } }";
pub const START: &str = "mutation($input: StartCoverInput!) { startCover(input: $input) { session { id status certificate { number } } replayed userErrors { field code } } }";
pub const END: &str = "mutation($input: EndCoverInput!) { endCover(input: $input) { session { id status charge { total { minor } } } userErrors { field code } } }";
pub const WALLET: &str = "{ wallet { balance { minor currency } } }";
pub const LINK_CODE: &str = "mutation { createLinkCode { code userErrors { code } } }";
pub const LINK: &str = "mutation($input: LinkDriverInput!) { linkDriver(input: $input) { link { id } userErrors { code } } }";
pub const SHIFT_EVENTS: &str = "mutation($input: RecordShiftEventsInput!) { recordShiftEvents(input: $input) { results { eventId status code cover sessionId } accepted duplicates rejected userErrors { code } } }";
pub const COVER_STATUS: &str = "query($id: String!, $at: DateTime) { coverStatus(externalDriverId: $id, at: $at) { covered session { id endedAt } } }";
pub const REGISTER_HOOK: &str = "mutation($input: RegisterWebhookEndpointInput!) { registerWebhookEndpoint(input: $input) { endpoint { id } secret userErrors { field code } } }";

// ---------------------------------------------------------------------------------------------
// Setting drivers up

/// A driver ready for cover: signed in, profile complete, a car, a saved card, a funded wallet,
/// enrolled.
#[derive(Debug, Clone)]
pub struct Driver {
    pub index: usize,
    pub token: String,
    pub vehicle_id: String,
    pub product_id: String,
    /// For partner drivers: the partner's id for them.
    pub external_id: Option<String>,
}

/// A UK mobile number of this run.
pub fn phone(run: u32, i: usize) -> String {
    format!("+4479{:04}{:04}", run % 10_000, i % 10_000)
}

fn registration(run: u32, i: usize) -> String {
    let l = |n: usize| (b'A' + (n % 26) as u8) as char;
    format!(
        "F{}{:02}{}{}{}",
        l(run as usize),
        i % 100,
        l(i / 100),
        l(i / 7 + run as usize),
        l(i)
    )
}

/// Signs a driver in by SMS: the code is requested through the accounts app (one client address
/// would hit the per-client limit), texted by the workers through the Twilio fake, and read from
/// the text there — the same text the driver would get.
pub async fn sign_in(
    pool: &shared::db::DbPool,
    fakes: &FakeState,
    phone: &str,
) -> anyhow::Result<String> {
    let clock = shared::clock::SystemClock;
    let settings = accounts::LoginCodeSettings {
        pepper: shared::Secret::new(PEPPER),
    };
    {
        let mut conn = pool.get().await?;
        accounts::request_login_code(&mut conn, &clock, phone, &settings)
            .await
            .map_err(|e| anyhow::anyhow!("login code for {phone}: {e}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        let found = lock(&fakes.sms)
            .iter()
            .rev()
            .find(|m| m.to == phone && m.body.contains("code is "))
            .and_then(|m| {
                m.body
                    .split("code is ")
                    .nth(1)
                    .map(|r| r.chars().take(6).collect::<String>())
            });
        if let Some(code) = found {
            break code;
        }
        anyhow::ensure!(Instant::now() < deadline, "no login text reached {phone}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut conn = pool.get().await?;
    let signed = accounts::verify_login_code(&mut conn, &clock, phone, &code, &settings)
        .await
        .map_err(|e| anyhow::anyhow!("verify {phone}: {e}"))?;
    Ok(signed.token)
}

/// What every driver of a run gets.
pub struct DriverPlan {
    /// The run's number (in phones, plates and keys).
    pub run: u32,
    /// The product they enrol in.
    pub product_id: String,
    /// Their first top-up, in pence.
    pub top_up_minor: i64,
}

/// Sets up driver `i` over the API (profile, car, card through localstripe, a £`top_up` top-up,
/// enrolment in `product_id`).
pub async fn set_up_driver(
    api: &Api,
    pool: &shared::db::DbPool,
    fakes: &FakeState,
    stripe: &testkit::localstripe::LocalStripe,
    plan: &DriverPlan,
    i: usize,
) -> anyhow::Result<Driver> {
    let DriverPlan {
        run,
        ref product_id,
        top_up_minor,
    } = *plan;
    let token = sign_in(pool, fakes, &phone(run, i)).await?;
    let home = i;
    let must = |payload: Value, what: &str| -> anyhow::Result<Value> {
        match user_error(&payload) {
            Some(code) => anyhow::bail!("{what}: {code}"),
            None => Ok(payload),
        }
    };
    let profile = json!({ "input": {
        "name": format!("Load Driver {i}"), "dateOfBirth": "1989-06-01",
        "licenceIssuedOn": "2011-03-15", "postcode": "E1 6AN",
        "email": format!("driver{i}.{run}@example.test"),
    }});
    must(
        api.setup_call(home, &token, UPDATE_PROFILE, profile, "updateProfile")
            .await?,
        "updateProfile",
    )?;
    let vehicle = must(
        api.setup_call(
            home,
            &token,
            ADD_VEHICLE,
            json!({ "input": { "vehicleType": "CAR", "registration": registration(run, i),
                               "make": "Toyota", "model": "Prius" } }),
            "addVehicle",
        )
        .await?,
        "addVehicle",
    )?;
    let vehicle_id = vehicle["vehicle"]["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no vehicle id: {vehicle}"))?
        .to_owned();
    let setup = must(
        api.setup_call(home, &token, CREATE_SETUP, json!({}), "createCardSetup")
            .await?,
        "createCardSetup",
    )?;
    let seti = setup["setupIntentId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let secret = setup["clientSecret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pm = stripe
        .create_card(testkit::localstripe::cards::VISA)
        .await?;
    stripe
        .confirm_setup_intent(&seti, &secret, Some(&pm))
        .await?;
    let confirmed = must(
        api.setup_call(
            home,
            &token,
            CONFIRM_SETUP,
            json!({ "input": { "setupIntentId": seti } }),
            "confirmCardSetup",
        )
        .await?,
        "confirmCardSetup",
    )?;
    anyhow::ensure!(
        confirmed["paymentMethod"]["id"].is_string(),
        "card not saved: {confirmed}"
    );
    let paid = must(
        api.setup_call(home, &token, TOP_UP, json!({ "input": { "amount": top_up_minor, "idempotencyKey": format!("setup-{run}-{i}") } }), "topUpWallet")
        .await?,
        "topUpWallet",
    )?;
    anyhow::ensure!(
        paid["payment"]["status"] == "SUCCEEDED",
        "first top-up: {paid}"
    );
    must(
        api.setup_call(home, &token, ENROL, json!({ "input": { "productId": product_id, "vehicleId": vehicle_id, "acceptTerms": true } }), "enrol")
        .await?,
        "enrol",
    )?;
    Ok(Driver {
        index: i,
        token,
        vehicle_id,
        product_id: product_id.to_owned(),
        external_id: None,
    })
}

/// Links `driver` to the partner as `external_id`.
pub async fn link(
    api: &Api,
    driver: &mut Driver,
    partner_key: &str,
    external_id: &str,
) -> anyhow::Result<()> {
    let code = api
        .setup_call(
            driver.index,
            &driver.token,
            LINK_CODE,
            json!({}),
            "createLinkCode",
        )
        .await?;
    let code = code["code"].as_str().unwrap_or_default().to_owned();
    let linked = api
        .setup_call(
            driver.index,
            partner_key,
            LINK,
            json!({ "input": { "linkCode": code, "externalDriverId": external_id } }),
            "linkDriver",
        )
        .await?;
    if let Some(e) = user_error(&linked) {
        anyhow::bail!("linkDriver {external_id}: {e}");
    }
    driver.external_id = Some(external_id.to_owned());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The loops

/// What the traffic asked for and was told, for the checks after it.
#[derive(Default)]
pub struct TrafficLog {
    /// Sessions the app drivers started (ids), and those they ended.
    pub started: Mutex<Vec<String>>,
    pub ended: Mutex<Vec<String>>,
    /// Top-ups asked for: (driver token index, idempotency key, final status).
    pub top_ups: Mutex<Vec<(usize, String, String)>>,
    /// Shift events sent (event ids) and partner shifts worked.
    pub events_sent: AtomicU64,
    pub shifts: AtomicU64,
    /// Calls that were given up on (an answer never came within the limit).
    pub abandoned: Mutex<Vec<String>>,
}

/// Repeats a call until it is answered (or `stop` has been set for a minute): used for calls
/// whose effect must exist once, each repeat with the same idempotency key. `op` is also the
/// payload's field; the payload is returned.
async fn until_answered(
    api: &Api,
    op: &'static str,
    home: usize,
    bearer: &str,
    query: &str,
    variables: Value,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Option<Value> {
    let mut stopped_at: Option<Instant> = None;
    loop {
        if let Answer::Data(d) = api.call(op, home, bearer, query, variables.clone()).await {
            return Some(d[op].clone());
        }
        if *stop.borrow() {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(60) {
                return None;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An app driver's rounds until `stop`.
pub async fn app_driver(
    api: Api,
    d: Driver,
    run: u32,
    book: Arc<TrafficLog>,
    stop: tokio::sync::watch::Receiver<bool>,
    pause: Duration,
) {
    let mut round = 0u64;
    while !*stop.borrow() {
        round += 1;
        let home = d.index;
        let _ = api
            .call(
                "createQuote",
                home,
                &d.token,
                QUOTE,
                json!({ "input": { "vehicleId": d.vehicle_id, "productId": d.product_id } }),
            )
            .await;
        let key = format!("start-{run}-{}-{round}", d.index);
        let Some(started) = until_answered(
            &api,
            "startCover",
            home,
            &d.token,
            START,
            json!({ "input": { "vehicleId": d.vehicle_id, "idempotencyKey": key } }),
            &stop,
        )
        .await
        else {
            lock(&book.abandoned).push(format!("startCover {key}"));
            return;
        };
        let Some(session) = started["session"]["id"].as_str().map(str::to_owned) else {
            // Refused (e.g. the wallet ran dry): a business answer, not a fault.
            tokio::time::sleep(pause).await;
            continue;
        };
        lock(&book.started).push(session.clone());
        tokio::time::sleep(pause).await;
        let _ = api.call("wallet", home, &d.token, WALLET, json!({})).await;
        let ended = until_answered(
            &api,
            "endCover",
            home,
            &d.token,
            END,
            json!({ "input": { "sessionId": session } }),
            &stop,
        )
        .await;
        match ended {
            // Ended now, or by an earlier try whose answer was lost.
            Some(p) if p["session"]["status"].is_string() || user_error(&p).is_some() => {
                lock(&book.ended).push(session)
            }
            _ => lock(&book.abandoned).push(format!("endCover {session}")),
        }
        if round.is_multiple_of(4) {
            let key = format!("top-up-{run}-{}-{round}", d.index);
            let paid = until_answered(
                &api,
                "topUpWallet",
                home,
                &d.token,
                TOP_UP,
                json!({ "input": { "amount": 2000, "idempotencyKey": key } }),
                &stop,
            )
            .await;
            let status = paid
                .as_ref()
                .and_then(|p| p["payment"]["status"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "UNANSWERED".into());
            lock(&book.top_ups).push((d.index, key, status));
        }
        tokio::time::sleep(pause / 2).await;
    }
}

/// A partner driver's shifts until `stop`: shift `k` starts `spacing_min × k` minutes after
/// 23 hours ago and lasts 10 minutes, so with a spacing over 20 minutes each is a working period
/// of its own (the gap rule is 10 minutes), over before its events are sent.
#[allow(clippy::too_many_arguments)]
pub async fn partner_driver(
    api: Api,
    d: Driver,
    partner_key: String,
    run: u32,
    book: Arc<TrafficLog>,
    stop: tokio::sync::watch::Receiver<bool>,
    pause: Duration,
    spacing_min: i64,
) {
    let Some(ext) = d.external_id.clone() else {
        return;
    };
    let day_start = chrono::Utc::now() - chrono::Duration::hours(23);
    let mut shift = 0i64;
    let spacing_min = spacing_min.max(21);
    let shifts = (22 * 60) / spacing_min;
    while !*stop.borrow() && shift < shifts {
        let on = day_start + chrono::Duration::minutes(spacing_min * shift);
        let event = |kind: &str, at: chrono::DateTime<chrono::Utc>| {
            json!({
                "eventId": format!("{run}-{ext}-{shift}-{kind}"),
                "externalDriverId": ext,
                "kind": kind,
                "occurredAt": at.to_rfc3339(),
                "vehicleType": "CAR",
                "reference": format!("shift-{shift}"),
            })
        };
        let first = vec![
            event("ONLINE", on),
            event("JOB_ACCEPTED", on + chrono::Duration::minutes(1)),
        ];
        let second = vec![
            event("JOB_COMPLETED", on + chrono::Duration::minutes(9)),
            event("OFFLINE", on + chrono::Duration::minutes(10)),
        ];
        for batch in [first, second] {
            book.events_sent
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            if until_answered(
                &api,
                "recordShiftEvents",
                d.index,
                &partner_key,
                SHIFT_EVENTS,
                json!({ "input": { "events": batch } }),
                &stop,
            )
            .await
            .is_none()
            {
                lock(&book.abandoned).push(format!("recordShiftEvents {ext} {shift}"));
                return;
            }
            let _ = api
                .call(
                    "coverStatus",
                    d.index,
                    &partner_key,
                    COVER_STATUS,
                    json!({ "id": ext, "at": (on + chrono::Duration::minutes(5)).to_rfc3339() }),
                )
                .await;
            tokio::time::sleep(pause).await;
        }
        book.shifts.fetch_add(1, Ordering::Relaxed);
        shift += 1;
    }
    // Out of shifts: keep asking about cover now, as a platform's dispatch does.
    while !*stop.borrow() {
        let _ = api
            .call(
                "coverStatus",
                d.index,
                &partner_key,
                COVER_STATUS,
                json!({ "id": ext }),
            )
            .await;
        tokio::time::sleep(pause).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A whole run

/// How a run's world is made.
pub struct WorldPlan<'a> {
    /// The run's number (in phones, plates, keys and partner ids).
    pub run: u32,
    pub app_drivers: usize,
    pub partner_drivers: usize,
    /// Each driver's first top-up, in pence.
    pub top_up_minor: i64,
    pub partner_name: &'a str,
    /// Drivers set up at once.
    pub parallel: usize,
}

/// What a run's traffic acts with.
pub struct World {
    /// The partner's live API key (every scope).
    pub partner_key: String,
    /// A signed-in driver who takes no part in the traffic (probes read as them).
    pub bystander_token: String,
    /// App drivers first, then partner drivers (with their `external_id`).
    pub drivers: Vec<Driver>,
}

/// Makes the partner (its key through the accounts app, its webhook endpoint at the fakes over
/// the API), then every driver over the API, and links the partner's drivers.
pub async fn set_up_world(
    api: &Api,
    pool: &shared::db::DbPool,
    fakes: &crate::stack::Fakes,
    stripe: &testkit::localstripe::LocalStripe,
    plan: &WorldPlan<'_>,
) -> anyhow::Result<World> {
    use futures::StreamExt;
    let partner_key = {
        let mut conn = pool.get().await?;
        let clock = shared::clock::SystemClock;
        let partner = accounts::create_partner(
            &mut conn,
            &clock,
            accounts::Actor::System,
            plan.partner_name,
        )
        .await
        .map_err(|e| anyhow::anyhow!("partner: {e}"))?;
        accounts::create_api_key(
            &mut conn,
            &clock,
            accounts::Actor::System,
            partner.id,
            &accounts::Scope::ALL,
            false,
        )
        .await
        .map_err(|e| anyhow::anyhow!("api key: {e}"))?
        .1
    };
    let hook = api
        .setup_call(
            0,
            &partner_key,
            REGISTER_HOOK,
            json!({ "input": { "url": format!("{}/partner-hooks", fakes.base),
                    "eventTypes": ["COVER_STARTED", "COVER_ENDED", "COVER_NOT_COVERED"] } }),
            "registerWebhookEndpoint",
        )
        .await?;
    anyhow::ensure!(
        hook["endpoint"]["id"].is_string(),
        "webhook endpoint: {hook}"
    );
    let bystander_token = sign_in(pool, &fakes.state, &phone(plan.run, 9_999)).await?;
    let products = api
        .setup_call(0, &bystander_token, PRODUCTS, json!({}), "products")
        .await?;
    let product_id = products
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["code"] == "food_delivery_hourly"))
        .and_then(|p| p["id"].as_str())
        .ok_or_else(|| anyhow::anyhow!("no food delivery product in {products}"))?
        .to_owned();
    let driver_plan = DriverPlan {
        run: plan.run,
        product_id,
        top_up_minor: plan.top_up_minor,
    };
    let made: Vec<anyhow::Result<Driver>> =
        futures::stream::iter(0..plan.app_drivers + plan.partner_drivers)
            .map(|i| set_up_driver(api, pool, &fakes.state, stripe, &driver_plan, i))
            .buffer_unordered(plan.parallel.max(1))
            .collect()
            .await;
    let mut drivers: Vec<Driver> = made.into_iter().collect::<anyhow::Result<_>>()?;
    drivers.sort_by_key(|d| d.index);
    for d in drivers.iter_mut().skip(plan.app_drivers) {
        let external = format!("courier-{}-{}", plan.run, d.index);
        link(api, d, &partner_key, &external).await?;
    }
    Ok(World {
        partner_key,
        bystander_token,
        drivers,
    })
}

/// Starts every driver's loop: app drivers with [`app_driver`], partner drivers with
/// [`partner_driver`] (shifts `spacing_min` apart).
pub fn spawn_traffic(
    api: &Api,
    world: &World,
    run: u32,
    book: &Arc<TrafficLog>,
    stop: &tokio::sync::watch::Receiver<bool>,
    pause: Duration,
    spacing_min: i64,
) -> Vec<tokio::task::JoinHandle<()>> {
    world
        .drivers
        .iter()
        .cloned()
        .map(|d| {
            let (api, book, stop) = (api.clone(), book.clone(), stop.clone());
            if d.external_id.is_some() {
                tokio::spawn(partner_driver(
                    api,
                    d,
                    world.partner_key.clone(),
                    run,
                    book,
                    stop,
                    pause,
                    spacing_min,
                ))
            } else {
                tokio::spawn(app_driver(api, d, run, book, stop, pause))
            }
        })
        .collect()
}
