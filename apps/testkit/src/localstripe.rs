//! localstripe, the stateful fake Stripe server, for tests that exercise the real Stripe client.
//!
//! [`LocalStripe::shared`] starts one server per test process (through
//! `infra/dev/localstripe_launcher.py`, which fills in fields typed clients need) on a free port
//! and waits until it answers. The server exits when the test process does, however it ends: it
//! watches its standard input, a pipe this process holds open until it exits.
//!
//! The launcher runs on the Python of a virtualenv: `SHIFTCOVER_LOCALSTRIPE_PYTHON` when set, else
//! `${XDG_CACHE_HOME:-$HOME/.cache}/shiftcover/venv/bin/python`, created by
//! `infra/dev/localstripe.sh install` when missing.
//!
//! The helpers on [`LocalStripe`] play the part of the mobile app's Stripe SDK (create a card
//! payment method, confirm a SetupIntent, pass a 3-D Secure challenge); the code under test never
//! uses them.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The secret key tests give the Stripe client (localstripe accepts any `sk_…`).
pub const SECRET_KEY: &str = "sk_test_localstripe";
/// The publishable key tests hand to "the app".
pub const PUBLISHABLE_KEY: &str = "pk_test_localstripe";

/// Stripe test cards localstripe understands.
pub mod cards {
    /// Succeeds without authentication.
    pub const VISA: &str = "4242424242424242";
    /// Asks for 3-D Secure on setup and on every payment (including off-session ones).
    pub const THREE_D_SECURE: &str = "4000002500003155";
    /// Attaches fine, then every charge is declined.
    pub const CHARGE_DECLINED: &str = "4000000000000341";
    /// Declined when attached (setup fails).
    pub const DECLINED: &str = "4000000000000002";
}

/// A running localstripe server.
pub struct LocalStripe {
    base_url: String,
    http: reqwest::Client,
    // Held for the life of the process: when it closes, the server exits.
    _child: Mutex<(Child, ChildStdin)>,
}

impl std::fmt::Debug for LocalStripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStripe")
            .field("base_url", &self.base_url)
            .finish()
    }
}

static SHARED: OnceLock<LocalStripe> = OnceLock::new();
static STARTING: Mutex<()> = Mutex::new(());

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn venv_python() -> PathBuf {
    if let Ok(p) = std::env::var("SHIFTCOVER_LOCALSTRIPE_PYTHON")
        && !p.is_empty()
    {
        return PathBuf::from(p);
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache")
        });
    cache.join("shiftcover/venv/bin/python")
}

fn ensure_python() -> anyhow::Result<PathBuf> {
    let python = venv_python();
    // Present and complete (another process may be creating it right now: then the script
    // below waits for it).
    let complete = python.exists()
        && Command::new(&python)
            .args(["-c", "import localstripe"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if complete {
        return Ok(python);
    }
    let script = repo_root().join("infra/dev/localstripe.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("python")
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        anyhow::bail!("{} failed: {}", script.display(), out.status);
    }
    // The script prints the path it installed into (its own default when the variable is unset).
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let python = if std::env::var("SHIFTCOVER_LOCALSTRIPE_PYTHON").is_ok_and(|p| !p.is_empty()) {
        python
    } else {
        PathBuf::from(printed)
    };
    anyhow::ensure!(
        python.exists(),
        "localstripe python not found at {}",
        python.display()
    );
    Ok(python)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl LocalStripe {
    /// The server of this test process, started on first use. Panics when it cannot be started:
    /// a test that needs Stripe cannot run without it.
    pub fn shared() -> &'static LocalStripe {
        if let Some(s) = SHARED.get() {
            return s;
        }
        let _guard = STARTING.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = SHARED.get() {
            return s;
        }
        let started = Self::start().unwrap_or_else(|e| panic!("cannot start localstripe: {e:#}"));
        SHARED.get_or_init(|| started)
    }

    fn start() -> anyhow::Result<LocalStripe> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let python = ensure_python()?;
        let launcher = repo_root().join("infra/dev/localstripe_launcher.py");
        let mut last_error = anyhow::anyhow!("no attempt made");
        // A port found free can be taken before the server binds it: try a few.
        for _ in 0..3 {
            let port = free_port()?;
            let mut child = Command::new(&python)
                .arg(&launcher)
                .arg("--port")
                .arg(port.to_string())
                .arg("--from-scratch")
                .env("SHIFTCOVER_LOCALSTRIPE_EXIT_ON_STDIN_EOF", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            let stdin = child
                .stdin
                .take()
                .ok_or_else(|| anyhow::anyhow!("no stdin pipe"))?;
            // Drain stderr (the access log) so the server never blocks on a full pipe; keep the
            // last lines for an error message.
            let log = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
            if let Some(stderr) = child.stderr.take() {
                let log = log.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                        if l.len() > 50 {
                            l.remove(0);
                        }
                        l.push(line);
                    }
                });
            }
            match wait_until_listening(&mut child, port) {
                Ok(()) => {
                    return Ok(LocalStripe {
                        base_url: format!("http://127.0.0.1:{port}"),
                        http: reqwest::Client::builder()
                            .timeout(Duration::from_secs(30))
                            .build()?,
                        _child: Mutex::new((child, stdin)),
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let tail = log.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
                    last_error = e.context(tail);
                }
            }
        }
        Err(last_error)
    }

    /// The base URL to give the Stripe client, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Points Stripe settings at this server, with the test keys (the webhook secret is left as set).
    pub fn configure(&self, settings: &mut shared::settings::StripeSettings) {
        settings.base_url = self.base_url.clone();
        settings.secret_key = shared::Secret::new(SECRET_KEY);
        settings.publishable_key = PUBLISHABLE_KEY.into();
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(SECRET_KEY)
            .form(form)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "POST {path}: {status}: {body}");
        Ok(body)
    }

    /// `GET /v1/…` with the secret key; the JSON as localstripe sends it.
    pub async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(SECRET_KEY)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status}: {body}");
        Ok(body)
    }

    /// Creates a card payment method, as the app's SDK does with the card the driver typed.
    /// Returns its id (`pm_…`).
    pub async fn create_card(&self, number: &str) -> anyhow::Result<String> {
        let pm = self
            .post(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2034"),
                    ("card[cvc]", "123"),
                ],
            )
            .await?;
        id_of(&pm)
    }

    /// Confirms a SetupIntent as the app does, with a payment method the first time and without
    /// one to complete a 3-D Secure challenge. Returns the SetupIntent.
    pub async fn confirm_setup_intent(
        &self,
        setup_intent_id: &str,
        client_secret: &str,
        payment_method: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut form = vec![("client_secret", client_secret)];
        if let Some(pm) = payment_method {
            form.push(("payment_method", pm));
        }
        self.post(
            &format!("/v1/setup_intents/{setup_intent_id}/confirm"),
            &form,
        )
        .await
    }

    /// Passes (or fails) the 3-D Secure challenge of a PaymentIntent in `requires_action`.
    pub async fn authenticate_payment_intent(
        &self,
        payment_intent_id: &str,
        client_secret: &str,
        success: bool,
    ) -> anyhow::Result<serde_json::Value> {
        self.post(
            &format!("/v1/payment_intents/{payment_intent_id}/_authenticate"),
            &[
                ("client_secret", client_secret),
                ("success", if success { "true" } else { "false" }),
            ],
        )
        .await
    }

    /// Opens a dispute (a chargeback) on a PaymentIntent's charge, as a cardholder's bank would,
    /// through the launcher's test-only route; `form` may set `amount`, `reason`, `status` and
    /// `due_by`. Returns the dispute (`dp_…`) as Stripe shows it.
    pub async fn open_dispute(
        &self,
        payment_intent_id: &str,
        form: &[(&str, &str)],
    ) -> anyhow::Result<serde_json::Value> {
        let mut all = vec![("payment_intent", payment_intent_id)];
        all.extend_from_slice(form);
        self.post("/_test/disputes", &all).await
    }

    /// Moves a dispute as Stripe would: `withdraw` (the amount and its fee taken; `fee` may be
    /// given), `respond` (evidence submitted), `reinstate` (won: the amount back, the fee too
    /// with `return_fee=true`) or `close` (`status` won, lost or warning_closed). Returns the
    /// dispute.
    pub async fn move_dispute(
        &self,
        dispute_id: &str,
        action: &str,
        form: &[(&str, &str)],
    ) -> anyhow::Result<serde_json::Value> {
        self.post(&format!("/_test/disputes/{dispute_id}/{action}"), form)
            .await
    }

    /// Refunds `amount` of a PaymentIntent as someone in the Stripe dashboard would: a plain
    /// refund without our metadata. Returns the refund (`re_…`).
    pub async fn refund_in_dashboard(
        &self,
        payment_intent_id: &str,
        amount: i64,
    ) -> anyhow::Result<serde_json::Value> {
        let amount = amount.to_string();
        self.post(
            "/v1/refunds",
            &[
                ("payment_intent", payment_intent_id),
                ("amount", amount.as_str()),
            ],
        )
        .await
    }

    /// Makes a refund that had succeeded fail afterwards (the card's bank returned it), through
    /// the launcher's test-only route. Returns the refund.
    pub async fn fail_refund(
        &self,
        refund_id: &str,
        failure_reason: &str,
    ) -> anyhow::Result<serde_json::Value> {
        self.post(
            &format!("/_test/refunds/{refund_id}/fail"),
            &[("failure_reason", failure_reason)],
        )
        .await
    }

    /// Every PaymentIntent of a customer, newest first, as JSON.
    pub async fn payment_intents_of(
        &self,
        customer: &str,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let list = self.get("/v1/payment_intents?limit=100").await?;
        let mut all: Vec<serde_json::Value> = list["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|pi| pi["customer"] == customer)
            .collect();
        all.sort_by_key(|pi| std::cmp::Reverse(pi["created"].as_i64().unwrap_or(0)));
        Ok(all)
    }
}

fn id_of(object: &serde_json::Value) -> anyhow::Result<String> {
    object["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no id in {object}"))
}

fn wait_until_listening(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("localstripe exited early: {status}");
        }
        if TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(200),
        )
        .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("localstripe did not listen on port {port} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_once_and_answers_like_stripe() {
        let ls = LocalStripe::shared();
        assert!(std::ptr::eq(ls, LocalStripe::shared()));
        let pm = ls.create_card(cards::VISA).await.unwrap();
        assert!(pm.starts_with("pm_"), "{pm}");
        let got = ls.get(&format!("/v1/payment_methods/{pm}")).await.unwrap();
        assert_eq!(got["card"]["last4"], "4242");
    }
}
