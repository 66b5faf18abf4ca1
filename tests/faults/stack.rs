//! A whole ShiftCover on this machine, made of real processes, with every outside service faked
//! where the fault suite (and the load benchmark) can see and break it:
//!
//! - `shiftcover serve` and `shiftcover work` processes ([`Proc`]) that can be SIGKILLed and
//!   started again;
//! - Stripe: localstripe behind a proxy of ours ([`Fakes`]) that can make it slow or failing —
//!   failing *before* the request reaches Stripe (nothing happened) or *after* (Stripe did it, the
//!   caller never hears: the ambiguous case idempotency keys exist for);
//! - Stripe's webhooks: localstripe posts its events to us, and we deliver them to the API the
//!   way Stripe does — retried until a 2xx, to any API process — and can flood them as duplicates;
//! - Twilio and Mailgun: stateful fakes that record every message (Twilio's can be searched, as
//!   the SMS job does after an ambiguous send);
//! - the partner's webhook receiver, recording every delivery.

// Shared by the fault suite and the load benchmark (benches/load.rs), each of which uses a part.
#![allow(dead_code)]

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The Stripe webhook signing secret every process is given.
pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_fault_suite_secret";
/// The Twilio account every process is given.
pub const TWILIO_SID: &str = "ACfaultsuite00000000000000000000";
/// The Mailgun domain every process is given.
pub const MAILGUN_DOMAIN: &str = "mg.shiftcover.test";
/// The login-code pepper of every process (the suite signs drivers in with it too).
pub const PEPPER: &str = "fault-suite-login-code-pepper";

/// Locks a mutex, carrying on through poisoning (a panicking handler must not hide the data).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A `shiftcover` process that can be killed and started again; its output goes to a log file.
pub struct Proc {
    pub name: String,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    pub log: PathBuf,
    pub starts: u32,
}

impl Proc {
    pub fn new(
        name: &str,
        bin: PathBuf,
        args: &[&str],
        env: Vec<(String, String)>,
        log_dir: &std::path::Path,
    ) -> Self {
        Proc {
            name: name.to_owned(),
            bin,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env,
            child: None,
            log: log_dir.join(format!("{name}.log")),
            starts: 0,
        }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown, nothing acknowledged, claims and connections left behind.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it is still running (a process that died on its own is a failure of the suite).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- {} (last {lines} lines) ---\n{}",
            self.name,
            all[from..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `url` answers 200, up to `limit`.
pub async fn wait_healthy(http: &reqwest::Client, url: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(r) = http
            .get(url)
            .timeout(Duration::from_millis(500))
            .send()
            .await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// The fakes

/// How the Stripe proxy treats requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeMode {
    Normal,
    /// Every request waits this long before it is forwarded.
    Slow,
    /// Some requests fail before reaching Stripe, some after Stripe acted on them.
    Failing,
}

/// What the Stripe proxy did.
#[derive(Debug, Default, Clone, Copy)]
pub struct StripeStats {
    pub forwarded: u64,
    pub delayed: u64,
    pub failed_before: u64,
    pub failed_after: u64,
}

/// One SMS as our Twilio fake holds it.
#[derive(Debug, Clone)]
pub struct Sms {
    pub sid: String,
    pub to: String,
    pub body: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// One email as our Mailgun fake holds it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub id: String,
    pub notification_id: String,
}

/// A Stripe event localstripe sent, kept to be delivered (and, on demand, delivered again).
#[derive(Debug, Clone)]
pub struct StripeEvent {
    pub id: String,
    pub kind: String,
    pub body: web::Bytes,
    pub signature: String,
}

#[derive(Default)]
pub struct FakeState {
    localstripe: String,
    http: reqwest::Client,
    stripe_mode: AtomicU8,
    stripe_delay_ms: AtomicU64,
    /// Out of 100: the share failed before forwarding, and after.
    fail_before_pct: AtomicU64,
    fail_after_pct: AtomicU64,
    stripe_stats: Mutex<StripeStats>,
    pub sms: Mutex<Vec<Sms>>,
    pub mail: Mutex<Vec<Mail>>,
    /// Every Stripe event received from localstripe.
    pub stripe_events: Mutex<Vec<StripeEvent>>,
    /// Events waiting to be delivered to the API (with the time of their next try).
    outbound: Mutex<VecDeque<(Instant, StripeEvent, u32)>>,
    /// Deliveries the API answered 2xx, and the attempts that failed.
    pub webhook_delivered: AtomicU64,
    pub webhook_failed_attempts: AtomicU64,
    /// The partner's webhook deliveries: (event id, event type).
    pub partner_hooks: Mutex<Vec<(String, String)>>,
}

/// The fakes' HTTP server (one actix system on a thread of its own) and its state.
pub struct Fakes {
    pub base: String,
    pub state: Arc<FakeState>,
    handle: actix_web::dev::ServerHandle,
}

impl Fakes {
    /// Starts the fakes; Stripe calls are forwarded to `localstripe`.
    pub fn start(localstripe: &str) -> anyhow::Result<Fakes> {
        let state = Arc::new(FakeState {
            localstripe: localstripe.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?,
            ..Default::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let data = web::Data::from(state.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("fakes".into())
            .spawn(move || {
                let sys = actix_web::rt::System::new();
                sys.block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .app_data(web::PayloadConfig::new(4 << 20))
                            .route("/stripe/{tail:.*}", web::route().to(stripe_proxy))
                            .route(
                                "/twilio/2010-04-01/Accounts/{sid}/Messages.json",
                                web::post().to(twilio_send),
                            )
                            .route(
                                "/twilio/2010-04-01/Accounts/{sid}/Messages.json",
                                web::get().to(twilio_list),
                            )
                            .route(
                                "/mailgun/v3/{domain}/messages",
                                web::post().to(mailgun_send),
                            )
                            .route("/stripe-events", web::post().to(stripe_event_in))
                            .route("/partner-hooks", web::post().to(partner_hook))
                    })
                    .workers(2)
                    .disable_signals()
                    .listen(listener);
                    match server {
                        Ok(s) => {
                            let s = s.run();
                            let _ = tx.send(Ok(s.handle()));
                            let _ = s.await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })?;
        let handle = rx.recv()??;
        Ok(Fakes {
            base,
            state,
            handle,
        })
    }

    pub fn stripe_url(&self) -> String {
        format!("{}/stripe", self.base)
    }

    pub fn set_stripe(&self, mode: StripeMode, delay_ms: u64, before_pct: u64, after_pct: u64) {
        let s = &self.state;
        s.stripe_delay_ms.store(delay_ms, Ordering::SeqCst);
        s.fail_before_pct.store(before_pct, Ordering::SeqCst);
        s.fail_after_pct.store(after_pct, Ordering::SeqCst);
        s.stripe_mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn stripe_stats(&self) -> StripeStats {
        *lock(&self.state.stripe_stats)
    }

    /// Has localstripe send every event to us (we deliver them on to the API).
    pub async fn register_stripe_webhook(&self) -> anyhow::Result<()> {
        let r = self
            .state
            .http
            .post(format!(
                "{}/_config/webhooks/faults",
                self.state.localstripe
            ))
            .form(&[
                ("url", format!("{}/stripe-events", self.base)),
                ("secret", STRIPE_WEBHOOK_SECRET.to_owned()),
            ])
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "localstripe webhook config: {}",
            r.status()
        );
        Ok(())
    }

    /// Queues every Stripe event received so far for delivery `copies` more times, all due now.
    pub fn flood_stripe_events(&self, copies: usize) -> usize {
        let events = lock(&self.state.stripe_events).clone();
        let mut out = lock(&self.state.outbound);
        let now = Instant::now();
        for _ in 0..copies {
            for e in &events {
                out.push_back((now, e.clone(), 0));
            }
        }
        events.len() * copies
    }

    /// Opens a dispute on each PaymentIntent at localstripe (its test-only routes), has Stripe
    /// withdraw and then reinstate it (the fee kept), and queues each dispute's four events
    /// (created, funds withdrawn, funds reinstated, closed) `copies` times, all due now: half
    /// the copies under the event's own id (redeliveries), half under new ids (the same news in
    /// other events). Returns the disputes and how many deliveries were queued.
    pub async fn flood_chargebacks(
        &self,
        payment_intents: &[String],
        copies: usize,
    ) -> anyhow::Result<(Vec<String>, usize)> {
        let http = &self.state.http;
        let base = &self.state.localstripe;
        let post = |path: String, form: Vec<(&'static str, String)>| async move {
            let r = http
                .post(format!("{base}{path}"))
                .bearer_auth("sk_test_fault_suite")
                .form(&form)
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "POST {path}: {}", r.status());
            Ok::<Value, anyhow::Error>(r.json().await?)
        };
        let mut disputes = Vec::new();
        let mut queued = 0;
        for pi in payment_intents {
            let opened = post(
                "/_test/disputes".into(),
                vec![("payment_intent", pi.clone())],
            )
            .await?;
            let id = opened["id"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("no dispute id in {opened}"))?
                .to_owned();
            post(format!("/_test/disputes/{id}/withdraw"), Vec::new()).await?;
            let dispute = post(
                format!("/_test/disputes/{id}/reinstate"),
                vec![("return_fee", "false".into())],
            )
            .await?;
            let now = chrono::Utc::now().timestamp();
            for kind in [
                "charge.dispute.created",
                "charge.dispute.funds_withdrawn",
                "charge.dispute.funds_reinstated",
                "charge.dispute.closed",
            ] {
                let own_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
                for copy in 0..copies {
                    let event_id = if copy % 2 == 0 {
                        own_id.clone()
                    } else {
                        format!("evt_{}", uuid::Uuid::new_v4().simple())
                    };
                    let body = serde_json::to_vec(&json!({
                        "id": event_id,
                        "object": "event",
                        "api_version": "2024-06-20",
                        "created": now,
                        "livemode": false,
                        "pending_webhooks": 1,
                        "request": { "id": null, "idempotency_key": null },
                        "type": kind,
                        "data": { "object": dispute },
                    }))?;
                    let signature =
                        payments::sign_stripe_payload(STRIPE_WEBHOOK_SECRET, &body, now);
                    lock(&self.state.outbound).push_back((
                        Instant::now(),
                        StripeEvent {
                            id: event_id,
                            kind: kind.to_owned(),
                            body: web::Bytes::from(body),
                            signature,
                        },
                        0,
                    ));
                    queued += 1;
                }
            }
            disputes.push(id);
        }
        Ok((disputes, queued))
    }

    pub fn webhooks_pending(&self) -> usize {
        lock(&self.state.outbound).len()
    }

    /// Delivers queued Stripe events to the API processes until `stop`, as Stripe does: each to
    /// one process (taking turns), retried with backoff until a 2xx; `parallel` at a time.
    pub fn spawn_webhook_delivery(
        &self,
        apis: Vec<String>,
        parallel: usize,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..parallel)
            .map(|lane| {
                let state = self.state.clone();
                let apis = apis.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut turn = lane;
                    while !*stop.borrow() {
                        let next = {
                            let mut q = lock(&state.outbound);
                            let now = Instant::now();
                            match q.front() {
                                Some((due, _, _)) if *due <= now => q.pop_front(),
                                Some(_) => {
                                    // Not due yet: to the back, look again shortly.
                                    if let Some(item) = q.pop_front() {
                                        q.push_back(item);
                                    }
                                    None
                                }
                                None => None,
                            }
                        };
                        let Some((_, event, tries)) = next else {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        };
                        turn += 1;
                        let api = &apis[turn % apis.len()];
                        let ok = state
                            .http
                            .post(format!("{api}/webhooks/stripe"))
                            .header("content-type", "application/json; charset=utf-8")
                            .header("stripe-signature", &event.signature)
                            .body(event.body.clone())
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success());
                        if ok {
                            state.webhook_delivered.fetch_add(1, Ordering::Relaxed);
                        } else {
                            state
                                .webhook_failed_attempts
                                .fetch_add(1, Ordering::Relaxed);
                            let wait = Duration::from_millis(200 * u64::from(tries.min(10) + 1));
                            lock(&state.outbound).push_back((
                                Instant::now() + wait,
                                event,
                                tries + 1,
                            ));
                        }
                    }
                })
            })
            .collect()
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn stripe_error(status: u16, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("application/json")
        .body(json!({ "error": { "type": "api_error", "message": message } }).to_string())
}

async fn stripe_proxy(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<FakeState>,
) -> HttpResponse {
    let mode = state.stripe_mode.load(Ordering::SeqCst);
    let roll = u64::from(rand::random::<u8>() % 100);
    let before = state.fail_before_pct.load(Ordering::SeqCst);
    let after = state.fail_after_pct.load(Ordering::SeqCst);
    let mut fail_after = false;
    if mode == StripeMode::Slow as u8 {
        lock(&state.stripe_stats).delayed += 1;
        let ms = state.stripe_delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    } else if mode == StripeMode::Failing as u8 {
        if roll < before {
            lock(&state.stripe_stats).failed_before += 1;
            return stripe_error(503, "Stripe is unavailable (injected before the request)");
        }
        fail_after = roll < before + after;
    }
    let tail = req.match_info().get("tail").unwrap_or_default();
    let mut url = format!("{}/{tail}", state.localstripe);
    if !req.query_string().is_empty() {
        url.push('?');
        url.push_str(req.query_string());
    }
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return stripe_error(405, "method");
    };
    let mut out = state.http.request(method, &url).body(body.to_vec());
    for name in [
        "authorization",
        "content-type",
        "idempotency-key",
        "stripe-version",
    ] {
        if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            out = out.header(name, v);
        }
    }
    let answer = match out.send().await {
        Ok(r) => r,
        Err(e) => return stripe_error(502, &format!("proxy could not reach localstripe: {e}")),
    };
    let status = answer.status().as_u16();
    let bytes = answer.bytes().await.unwrap_or_default();
    lock(&state.stripe_stats).forwarded += 1;
    if fail_after {
        lock(&state.stripe_stats).failed_after += 1;
        return stripe_error(
            500,
            "Stripe failed after acting (injected after the request)",
        );
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("application/json")
        .body(bytes)
}

fn twilio_json(m: &Sms) -> Value {
    json!({
        "sid": m.sid,
        "status": "queued",
        "to": m.to,
        "body": m.body,
        "date_created": m.at.to_rfc2822(),
        "error_code": null,
    })
}

async fn twilio_send(
    form: web::Form<Vec<(String, String)>>,
    state: web::Data<FakeState>,
) -> HttpResponse {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (to, body) = (field("To"), field("Body"));
    if to.is_empty() || body.is_empty() || field("StatusCallback").is_empty() {
        return HttpResponse::BadRequest()
            .json(json!({ "code": 21604, "message": "To, Body and StatusCallback are required" }));
    }
    let sms = Sms {
        sid: format!("SM{}", uuid::Uuid::new_v4().simple()),
        to,
        body,
        at: chrono::Utc::now(),
    };
    let answer = twilio_json(&sms);
    lock(&state.sms).push(sms);
    HttpResponse::Created().json(answer)
}

async fn twilio_list(req: HttpRequest, state: web::Data<FakeState>) -> HttpResponse {
    let query: Vec<(String, String)> =
        serde_urlencoded_pairs(req.query_string()).unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let to = param("To");
    let size: usize = param("PageSize").and_then(|v| v.parse().ok()).unwrap_or(50);
    let page: usize = param("Page").and_then(|v| v.parse().ok()).unwrap_or(0);
    let sms = lock(&state.sms);
    let all: Vec<&Sms> = sms
        .iter()
        .rev()
        .filter(|m| to.as_ref().is_none_or(|t| *t == m.to))
        .collect();
    let messages: Vec<Value> = all
        .iter()
        .skip(page * size)
        .take(size)
        .map(|m| twilio_json(m))
        .collect();
    let next = (all.len() > (page + 1) * size).then(|| {
        format!(
            "{}?To={}&PageSize={size}&Page={}&PageToken=PA{}",
            req.path().trim_start_matches("/twilio"),
            to.as_deref().unwrap_or_default().replace('+', "%2B"),
            page + 1,
            page + 1
        )
    });
    HttpResponse::Ok().json(
        json!({ "messages": messages, "page": page, "page_size": size, "next_page_uri": next }),
    )
}

fn serde_urlencoded_pairs(q: &str) -> Option<Vec<(String, String)>> {
    reqwest::Url::parse(&format!("http://x/?{q}"))
        .ok()
        .map(|u| u.query_pairs().into_owned().collect())
}

async fn mailgun_send(body: web::Bytes, state: web::Data<FakeState>) -> HttpResponse {
    // The multipart field `v:notification_id`: its value follows the part's blank line.
    let text = String::from_utf8_lossy(&body);
    let notification_id = text
        .split("name=\"v:notification_id\"")
        .nth(1)
        .and_then(|rest| rest.split("\r\n\r\n").nth(1))
        .and_then(|v| v.split("\r\n").next())
        .unwrap_or_default()
        .to_owned();
    let id = format!("<{}@{MAILGUN_DOMAIN}>", uuid::Uuid::new_v4().simple());
    lock(&state.mail).push(Mail {
        id: id.clone(),
        notification_id,
    });
    HttpResponse::Ok().json(json!({ "id": id, "message": "Queued. Thank you." }))
}

async fn stripe_event_in(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<FakeState>,
) -> HttpResponse {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let event = StripeEvent {
        id: parsed["id"].as_str().unwrap_or_default().to_owned(),
        kind: parsed["type"].as_str().unwrap_or_default().to_owned(),
        signature: req
            .headers()
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body,
    };
    lock(&state.stripe_events).push(event.clone());
    lock(&state.outbound).push_back((Instant::now(), event, 0));
    HttpResponse::Ok().finish()
}

async fn partner_hook(body: web::Bytes, state: web::Data<FakeState>) -> HttpResponse {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    lock(&state.partner_hooks).push((
        parsed["id"].as_str().unwrap_or_default().to_owned(),
        parsed["type"].as_str().unwrap_or_default().to_owned(),
    ));
    HttpResponse::Ok().finish()
}

// ---------------------------------------------------------------------------------------------
// Settings of the processes

/// Where each process finds the others.
pub struct Wiring {
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub fakes_base: String,
}

/// The environment of a `shiftcover` process of this stack (`port` for `serve`).
pub fn process_env(w: &Wiring, port: Option<u16>, pool: usize) -> Vec<(String, String)> {
    let mut env: Vec<(&str, String)> = vec![
        ("SHIFTCOVER__ENVIRONMENT", "test".into()),
        ("SHIFTCOVER__DATABASE__URL", w.database_url.clone()),
        ("SHIFTCOVER__DATABASE__POOL_SIZE", pool.to_string()),
        ("SHIFTCOVER__DATABASE__ACQUIRE_TIMEOUT_MS", "2000".into()),
        ("SHIFTCOVER__REDIS__URL", w.redis_url.clone()),
        ("SHIFTCOVER__REDIS__KEY_PREFIX", w.redis_prefix.clone()),
        (
            "SHIFTCOVER__STRIPE__BASE_URL",
            format!("{}/stripe", w.fakes_base),
        ),
        (
            "SHIFTCOVER__STRIPE__SECRET_KEY",
            testkit::localstripe::SECRET_KEY.into(),
        ),
        (
            "SHIFTCOVER__STRIPE__PUBLISHABLE_KEY",
            testkit::localstripe::PUBLISHABLE_KEY.into(),
        ),
        (
            "SHIFTCOVER__STRIPE__WEBHOOK_SECRET",
            STRIPE_WEBHOOK_SECRET.into(),
        ),
        (
            "SHIFTCOVER__TWILIO__BASE_URL",
            format!("{}/twilio", w.fakes_base),
        ),
        ("SHIFTCOVER__TWILIO__ACCOUNT_SID", TWILIO_SID.into()),
        (
            "SHIFTCOVER__TWILIO__AUTH_TOKEN",
            "fault-suite-twilio-token".into(),
        ),
        ("SHIFTCOVER__TWILIO__FROM", "+447700900123".into()),
        (
            "SHIFTCOVER__MAILGUN__BASE_URL",
            format!("{}/mailgun", w.fakes_base),
        ),
        ("SHIFTCOVER__MAILGUN__DOMAIN", MAILGUN_DOMAIN.into()),
        (
            "SHIFTCOVER__MAILGUN__API_KEY",
            "fault-suite-mailgun-key".into(),
        ),
        ("SHIFTCOVER__ACCOUNTS__LOGIN_CODE_PEPPER", PEPPER.into()),
        (
            "SHIFTCOVER__ACCOUNTS__PARTNER_KEY_REQUESTS_PER_MINUTE",
            "1000000".into(),
        ),
        (
            "SHIFTCOVER__ACCOUNTS__PARTNER_REQUESTS_PER_MINUTE",
            "1000000".into(),
        ),
        // Recover quickly from what faults leave behind: jobs lost with Redis, rows claimed by
        // a killed process.
        ("SHIFTCOVER__JOBS__RELAY_IDLE_MS", "50".into()),
        ("SHIFTCOVER__JOBS__REQUEUE_AFTER_SECS", "3".into()),
        ("SHIFTCOVER__JOBS__STALLED_AFTER_SECS", "5".into()),
        ("SHIFTCOVER__LOG__FILTER", "warn".into()),
        ("SHIFTCOVER__LOG__FORMAT", "json".into()),
        // The partner's webhook receiver is one of the fakes, on 127.0.0.1.
        (
            "SHIFTCOVER__PARTNER_WEBHOOKS__ALLOW_LOOPBACK",
            "true".into(),
        ),
    ];
    if let Some(port) = port {
        env.push(("SHIFTCOVER__HTTP__BIND", format!("127.0.0.1:{port}")));
        env.push((
            "SHIFTCOVER__HTTP__PUBLIC_URL",
            format!("http://127.0.0.1:{port}"),
        ));
        env.push(("SHIFTCOVER__HTTP__WORKERS", "2".into()));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
