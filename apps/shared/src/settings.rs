//! Settings: built-in defaults, then an optional TOML file, then `SHIFTCOVER__…` environment
//! variables (`SHIFTCOVER__DATABASE__URL`, `SHIFTCOVER__HTTP__BIND`, …). Loaded once at start,
//! validated, and passed explicitly: there is no global.
//!
//! Unknown keys are refused, so a typo stops the process with a message naming the key instead of
//! being silently ignored. Secrets are [`Secret`]s and never appear in logs.

use crate::client_addr::Cidr;
use crate::secret::Secret;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// Where the process runs; production turns off the IDE, introspection and demo conveniences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A developer's machine.
    #[default]
    Development,
    /// The test suite.
    Test,
    /// Real drivers and real money.
    Production,
}

/// All settings of the `shiftcover` binary.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the process runs.
    pub environment: Environment,
    /// The HTTP server.
    pub http: HttpSettings,
    /// GraphQL limits and tooling.
    pub graphql: GraphqlSettings,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// Redis (job queues, rate limits, caches).
    pub redis: RedisSettings,
    /// Error reporting.
    pub sentry: SentrySettings,
    /// Logging.
    pub log: LogSettings,
    /// The job runtime.
    pub jobs: JobSettings,
    /// Sign-in and sessions.
    pub accounts: AccountsSettings,
    /// Twilio, for SMS.
    pub twilio: TwilioSettings,
    /// Mailgun, for email.
    pub mailgun: MailgunSettings,
    /// Stripe, for cards and payments.
    pub stripe: StripeSettings,
    /// Cover sessions and proof of cover.
    pub cover: CoverSettings,
    /// Claims (photo storage).
    pub claims: ClaimsSettings,
    /// Webhooks sent to partners.
    pub partner_webhooks: PartnerWebhookSettings,
    /// Stand-ins for a developer's machine (never in production).
    pub dev: DevSettings,
}

/// Stand-ins that let one machine run the whole product without the outside services.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DevSettings {
    /// Serve the development inbox under `/dev/`: Twilio's and Mailgun's sending endpoints and a
    /// partner webhook receiver that keep what they are sent, readable at `GET /dev/inbox`.
    /// Point `twilio.base_url` at `{public_url}/dev/twilio` and `mailgun.base_url` at
    /// `{public_url}/dev/mailgun` to use it (`infra/dev/run.sh` does). Answered only when
    /// `environment` is `development`; refused in production.
    pub inbox: bool,
}

/// Webhooks sent to partners: where they may go.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartnerWebhookSettings {
    /// Let endpoints be on this host: loopback addresses (`127.0.0.0/8`, `::1`, in any spelling)
    /// and `localhost`, over plain http too. For the development inbox's receiver
    /// (`infra/dev/dev.env`) and the test suite's local receivers; refused in production. Every
    /// other non-public address (private, link-local, CGNAT, …) stays refused either way.
    pub allow_loopback: bool,
    /// Most endpoints one partner may register (test and live together, disabled ones included).
    pub max_endpoints_per_partner: u32,
}

impl Default for PartnerWebhookSettings {
    fn default() -> Self {
        Self {
            allow_loopback: false,
            max_endpoints_per_partner: 10,
        }
    }
}

/// Claims settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimsSettings {
    /// The directory claim photos are stored in (created when missing).
    pub photo_dir: String,
    /// The largest photo accepted, in bytes.
    pub max_photo_bytes: usize,
}

impl Default for ClaimsSettings {
    fn default() -> Self {
        Self {
            photo_dir: "data/claim-photos".into(),
            max_photo_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Cover settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoverSettings {
    /// Ed25519 seed (32 bytes, base64) that signs proof-of-cover tokens. Its public key is
    /// published so tokens can be checked offline.
    pub signing_key: Secret,
    /// The longest a session runs before it is ended for the driver, in hours.
    pub max_session_hours: i64,
}

impl Default for CoverSettings {
    fn default() -> Self {
        Self {
            signing_key: Secret::new(DEVELOPMENT_COVER_SIGNING_KEY),
            max_session_hours: 16,
        }
    }
}

/// The cover signing seed used outside production when none is set.
pub const DEVELOPMENT_COVER_SIGNING_KEY: &str = "c2hpZnRjb3Zlci1kZXZlbG9wbWVudC1zaWduaW5nLWs=";

/// Sign-in and session settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsSettings {
    /// Server-side secret mixed into login-code hashes, so a leaked table cannot be brute-forced
    /// offline. At least 16 bytes; change it in every real deployment.
    pub login_code_pepper: Secret,
    /// Whether the staff session cookie is marked `Secure` (off only for plain-HTTP development).
    pub staff_cookie_secure: bool,
    /// Partner API requests allowed per minute for each API key.
    pub partner_key_requests_per_minute: u32,
    /// Partner API requests allowed per minute for each partner, over all its keys.
    pub partner_requests_per_minute: u32,
}

impl Default for AccountsSettings {
    fn default() -> Self {
        Self {
            login_code_pepper: Secret::new("development-only-login-code-pepper"),
            staff_cookie_secure: false,
            partner_key_requests_per_minute: 600,
            partner_requests_per_minute: 1_200,
        }
    }
}

/// Twilio settings (Programmable Messaging).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioSettings {
    /// API base URL; a local fake in tests.
    pub base_url: String,
    /// Account SID (`AC…`), also the Basic-auth user.
    pub account_sid: String,
    /// Auth token: Basic-auth password and the key of `X-Twilio-Signature`.
    pub auth_token: Secret,
    /// Sender number in E.164; ignored when a messaging service is set.
    pub from: String,
    /// Messaging service SID (`MG…`); preferred over `from` when set.
    pub messaging_service_sid: String,
    /// Request timeout, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.twilio.com".into(),
            account_sid: "AC00000000000000000000000000000000".into(),
            auth_token: Secret::new("development-twilio-token"),
            from: "+447700900000".into(),
            messaging_service_sid: String::new(),
            timeout_ms: 10_000,
        }
    }
}

/// Mailgun settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailgunSettings {
    /// API base URL: `https://api.mailgun.net` (US) or `https://api.eu.mailgun.net` (EU); a local
    /// fake in tests.
    pub base_url: String,
    /// Sending domain.
    pub domain: String,
    /// API key (Basic auth as `api:<key>`).
    pub api_key: Secret,
    /// Key that signs delivery webhooks.
    pub webhook_signing_key: Secret,
    /// The `From` header of every email.
    pub from: String,
    /// Request timeout, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for MailgunSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.eu.mailgun.net".into(),
            domain: "mg.shiftcover.example".into(),
            api_key: Secret::new("development-mailgun-key"),
            webhook_signing_key: Secret::new("development-mailgun-signing-key"),
            from: "ShiftCover <cover@mg.shiftcover.example>".into(),
            timeout_ms: 10_000,
        }
    }
}

/// Stripe settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StripeSettings {
    /// API base URL; localstripe in tests and development.
    pub base_url: String,
    /// Secret API key (`sk_…`).
    pub secret_key: Secret,
    /// Publishable key handed to the app (`pk_…`).
    pub publishable_key: String,
    /// Signing secret of our webhook endpoint (`whsec_…`).
    pub webhook_secret: Secret,
    /// Largest age of a webhook signature accepted, in seconds.
    pub webhook_tolerance_secs: i64,
}

impl Default for StripeSettings {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8420".into(),
            secret_key: Secret::new("sk_test_development"),
            publishable_key: "pk_test_development".into(),
            webhook_secret: Secret::new("whsec_development"),
            webhook_tolerance_secs: 300,
        }
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on, e.g. `0.0.0.0:8080`.
    pub bind: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Worker threads for actix-web; 0 means one per core.
    pub workers: usize,
    /// The public base URL, used in links sent to drivers.
    pub public_url: String,
    /// The proxies (load balancers, ingress) in front of the server, as CIDR networks or
    /// addresses; a list in a file, comma-separated in the environment. Only a request whose TCP
    /// peer is one of them has its `X-Forwarded-For` / `X-Real-IP` read, and the client is the
    /// right-most hop that is not one of them ([`crate::client_addr`]). Empty (the default):
    /// the peer is always the client.
    #[serde(deserialize_with = "crate::client_addr::deserialize_cidrs")]
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 256 * 1024,
            workers: 0,
            public_url: "http://127.0.0.1:8080".into(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// GraphQL limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlSettings {
    /// Deepest selection set allowed.
    pub max_depth: usize,
    /// Highest cost of an operation allowed: each object in the response counts 1, each item of
    /// a page once (see the GraphQL crate's `cost` module). 1000 takes a page of 100 of any list
    /// the driver app shows.
    pub max_complexity: usize,
    /// Most aliases, directives and root fields in one document (guards against alias floods).
    pub max_aliases: usize,
    /// Whether introspection queries are answered.
    pub introspection: bool,
    /// Whether the GraphQL IDE page is served at `GET /graphql` (never in production).
    pub ide: bool,
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 1000,
            max_aliases: 50,
            introspection: true,
            ide: true,
        }
    }
}

/// PostgreSQL settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL, e.g. `postgres://postgres@127.0.0.1:5432/shiftcover`.
    pub url: Secret,
    /// Most connections one process holds.
    pub pool_size: usize,
    /// How long to wait for a connection before answering "unavailable", in milliseconds.
    pub acquire_timeout_ms: u64,
    /// Most statements of one kind batched across requests ([`crate::batch`]) running at once in
    /// a process. One keeps batches largest, which is cheapest for the database; more keep one
    /// slow batch from holding up the next.
    pub batch_concurrency: usize,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://postgres@127.0.0.1:5432/shiftcover"),
            pool_size: 16,
            acquire_timeout_ms: 3_000,
            batch_concurrency: 1,
        }
    }
}

/// Redis settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Connection URL, e.g. `redis://127.0.0.1:6379/0`.
    pub url: Secret,
    /// Prefix of every key this deployment writes, so that several can share one Redis.
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: Secret::new("redis://127.0.0.1:6379/0"),
            key_prefix: "shiftcover".into(),
        }
    }
}

/// Sentry settings; without a DSN nothing is sent.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SentrySettings {
    /// The project DSN; empty turns Sentry off.
    pub dsn: Secret,
    /// The release name reported with events; defaults to the crate version.
    pub release: Option<String>,
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production, log shippers).
    #[default]
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// JSON or pretty.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info,shiftcover=debug`.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            filter: "info".into(),
        }
    }
}

/// Job runtime settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// Most outbox rows the relay moves to Redis in one pass.
    pub relay_batch: i64,
    /// Pause between relay passes when the outbox is empty, in milliseconds.
    pub relay_idle_ms: u64,
    /// A job queued in Redis but not started after this many seconds is queued again
    /// (Redis may have lost it). Its handler's claim makes the second copy harmless.
    pub requeue_after_secs: i64,
    /// A job marked running for longer than this many seconds is taken to have died with its worker.
    pub stalled_after_secs: i64,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            relay_batch: 200,
            relay_idle_ms: 250,
            requeue_after_secs: 60,
            stalled_after_secs: 300,
        }
    }
}

/// The error for a setting whose value cannot be used.
fn invalid(key: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Settings could not be loaded or are invalid. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or environment could not be read or did not parse.
    #[error("invalid settings: {0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but is not acceptable.
    #[error("invalid setting `{key}`: {reason}")]
    Invalid {
        /// The dotted key, e.g. `database.pool_size`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Settings {
    /// Loads settings from defaults, an optional file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, None)
    }

    /// Loads settings with an explicit environment map instead of the process environment (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: Option<HashMap<String, String>>,
    ) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SHIFTCOVER")
                .prefix_separator("__")
                .separator("__")
                // Values stay text until the field's type reads them: a phone number such as
                // `+447700900000` or a secret of digits with leading zeros must reach a `String`
                // field exactly as written (numbers and booleans still parse where the field is
                // one).
                .try_parsing(false)
                .source(env),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.http.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.bind",
                "expected host:port, e.g. 0.0.0.0:8080",
            ));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(invalid("http.max_body_bytes", "must be at least 1024"));
        }
        if self.accounts.partner_key_requests_per_minute == 0
            || self.accounts.partner_requests_per_minute == 0
        {
            return Err(invalid(
                "accounts.partner_requests_per_minute",
                "partner rate limits must be at least 1 a minute",
            ));
        }
        if !self.database.url.expose().starts_with("postgres://")
            && !self.database.url.expose().starts_with("postgresql://")
        {
            return Err(invalid(
                "database.url",
                "expected a postgres:// or postgresql:// URL",
            ));
        }
        if self.database.pool_size == 0 {
            return Err(invalid("database.pool_size", "must be at least 1"));
        }
        if self.database.batch_concurrency == 0
            || self.database.batch_concurrency > self.database.pool_size
        {
            return Err(invalid(
                "database.batch_concurrency",
                "must be at least 1 and at most database.pool_size",
            ));
        }
        if !self.redis.url.expose().starts_with("redis://") {
            return Err(invalid("redis.url", "expected a redis:// URL"));
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(char::is_whitespace) {
            return Err(invalid(
                "redis.key_prefix",
                "must be non-empty and contain no spaces",
            ));
        }
        if !self.sentry.dsn.is_empty() && !self.sentry.dsn.expose().starts_with("http") {
            return Err(invalid("sentry.dsn", "expected an http(s) DSN"));
        }
        if self.graphql.max_depth == 0 || self.graphql.max_complexity == 0 {
            return Err(invalid(
                "graphql.max_depth",
                "depth and complexity limits must be positive",
            ));
        }
        if self.jobs.relay_batch <= 0 {
            return Err(invalid("jobs.relay_batch", "must be positive"));
        }
        if self.jobs.requeue_after_secs <= 0 || self.jobs.stalled_after_secs <= 0 {
            return Err(invalid(
                "jobs.requeue_after_secs",
                "requeue and stall timeouts must be positive",
            ));
        }
        if self.accounts.login_code_pepper.expose().len() < 16 {
            return Err(invalid(
                "accounts.login_code_pepper",
                "must be at least 16 bytes",
            ));
        }
        for (key, url) in [
            ("twilio.base_url", &self.twilio.base_url),
            ("mailgun.base_url", &self.mailgun.base_url),
            ("stripe.base_url", &self.stripe.base_url),
        ] {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(invalid(key, "expected an http(s) URL"));
            }
        }
        if self.cover.max_session_hours <= 0 || self.cover.max_session_hours > 24 {
            return Err(invalid(
                "cover.max_session_hours",
                "must be between 1 and 24",
            ));
        }
        if self.claims.photo_dir.trim().is_empty() {
            return Err(invalid("claims.photo_dir", "must name a directory"));
        }
        if self.claims.max_photo_bytes < 1024 || self.claims.max_photo_bytes > 50 * 1024 * 1024 {
            return Err(invalid(
                "claims.max_photo_bytes",
                "must be between 1 KiB and 50 MiB",
            ));
        }
        if self.environment == Environment::Production && self.graphql.ide {
            return Err(invalid(
                "graphql.ide",
                "the GraphQL IDE must be off in production",
            ));
        }
        if self.partner_webhooks.max_endpoints_per_partner == 0 {
            return Err(invalid(
                "partner_webhooks.max_endpoints_per_partner",
                "must be at least 1",
            ));
        }
        if self.environment == Environment::Production {
            if self.graphql.introspection {
                return Err(invalid(
                    "graphql.introspection",
                    "introspection must be off in production (the SDL is published instead)",
                ));
            }
            self.refuse_development_secrets()?;
            if self.partner_webhooks.allow_loopback {
                return Err(invalid(
                    "partner_webhooks.allow_loopback",
                    "partner webhooks must not reach this host in production",
                ));
            }
            if self.dev.inbox {
                return Err(invalid(
                    "dev.inbox",
                    "the development inbox must be off in production",
                ));
            }
            self.refuse_development_endpoints()?;
        }
        Ok(())
    }

    /// In production, no secret keeps a development default or an example's placeholder, Stripe
    /// is in live mode, and the cover signing seed is 32 bytes.
    fn refuse_development_secrets(&self) -> Result<(), SettingsError> {
        let secrets: [(&'static str, &str); 9] = [
            (
                "accounts.login_code_pepper",
                self.accounts.login_code_pepper.expose(),
            ),
            ("cover.signing_key", self.cover.signing_key.expose()),
            ("stripe.secret_key", self.stripe.secret_key.expose()),
            ("stripe.webhook_secret", self.stripe.webhook_secret.expose()),
            ("twilio.auth_token", self.twilio.auth_token.expose()),
            ("mailgun.api_key", self.mailgun.api_key.expose()),
            (
                "mailgun.webhook_signing_key",
                self.mailgun.webhook_signing_key.expose(),
            ),
            ("database.url", self.database.url.expose()),
            ("redis.url", self.redis.url.expose()),
        ];
        for (key, value) in secrets {
            if is_placeholder(value) {
                return Err(invalid(
                    key,
                    "set a real secret in production (this is a development default or a placeholder)",
                ));
            }
        }
        if self.cover.signing_key.expose() == DEVELOPMENT_COVER_SIGNING_KEY {
            return Err(invalid(
                "cover.signing_key",
                "set a real signing key in production",
            ));
        }
        if decoded_len(self.cover.signing_key.expose()) != Some(32) {
            return Err(invalid(
                "cover.signing_key",
                "must be 32 bytes, base64-encoded",
            ));
        }
        if self.stripe.secret_key.expose().starts_with("sk_test_") {
            return Err(invalid(
                "stripe.secret_key",
                "a test-mode key (sk_test_…) cannot take real payments",
            ));
        }
        if self.stripe.publishable_key.starts_with("pk_test_")
            || is_placeholder(&self.stripe.publishable_key)
        {
            return Err(invalid(
                "stripe.publishable_key",
                "set the live publishable key (pk_live_…) in production",
            ));
        }
        Ok(())
    }

    /// In production, every provider is reached over HTTPS and never on this host (a leftover
    /// localstripe or fake would take real drivers' card details and texts), and the staff cookie
    /// is sent only over HTTPS.
    fn refuse_development_endpoints(&self) -> Result<(), SettingsError> {
        for (key, url) in [
            ("twilio.base_url", &self.twilio.base_url),
            ("mailgun.base_url", &self.mailgun.base_url),
            ("stripe.base_url", &self.stripe.base_url),
        ] {
            let Some(rest) = url.strip_prefix("https://") else {
                return Err(invalid(key, "must be an https:// URL in production"));
            };
            let host = rest.split('/').next().unwrap_or_default();
            let local = host.is_empty()
                || host == "localhost"
                || host.starts_with("localhost:")
                || host.starts_with("127.")
                || host.starts_with("0.0.0.0")
                || host.starts_with("[::1]");
            if local {
                return Err(invalid(key, "must not point at this host in production"));
            }
        }
        if !self.accounts.staff_cookie_secure {
            return Err(invalid(
                "accounts.staff_cookie_secure",
                "must be true in production (the back office is served over HTTPS)",
            ));
        }
        Ok(())
    }
}

/// Whether a secret is empty, a development default (`development-…`, `…_development`) or an
/// example's placeholder (`CHANGE_ME…`, in any case or spelling).
fn is_placeholder(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    lower.is_empty()
        || lower.starts_with("development")
        || lower.ends_with("_development")
        || ["change_me", "change-me", "changeme", "placeholder"]
            .iter()
            .any(|p| lower.contains(p))
}

/// The length of a base64 value (standard or URL-safe alphabet), if it is base64.
fn decoded_len(value: &str) -> Option<usize> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let value = value.trim();
    STANDARD
        .decode(value)
        .or_else(|_| URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')))
        .ok()
        .map(|bytes| bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = Settings::load_from(
            None,
            env(&[
                ("SHIFTCOVER__DATABASE__POOL_SIZE", "4"),
                ("SHIFTCOVER__HTTP__BIND", "0.0.0.0:9000"),
                ("SHIFTCOVER__REDIS__KEY_PREFIX", "t1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.database.pool_size, 4);
        assert_eq!(s.http.bind, "0.0.0.0:9000");
        assert_eq!(s.redis.key_prefix, "t1");
        assert_eq!(s.graphql.max_depth, 12);
    }

    #[test]
    fn text_from_the_environment_is_kept_as_written() {
        let s = Settings::load_from(
            None,
            env(&[
                ("SHIFTCOVER__TWILIO__FROM", "+447700900000"),
                ("SHIFTCOVER__TWILIO__ACCOUNT_SID", "0012345"),
                ("SHIFTCOVER__TWILIO__TIMEOUT_MS", "2500"),
                ("SHIFTCOVER__GRAPHQL__INTROSPECTION", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(s.twilio.from, "+447700900000");
        assert_eq!(s.twilio.account_sid, "0012345");
        assert_eq!(s.twilio.timeout_ms, 2500);
        assert!(!s.graphql.introspection);
    }

    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("sc-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.toml");
        std::fs::write(
            &path,
            "[database]\npool_size = 7\n[log]\nformat = \"pretty\"\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), env(&[])).unwrap();
        assert_eq!(s.database.pool_size, 7);
        assert_eq!(s.log.format, LogFormat::Pretty);
        let s = Settings::load_from(
            Some(&path),
            env(&[("SHIFTCOVER__DATABASE__POOL_SIZE", "3")]),
        )
        .unwrap();
        assert_eq!(s.database.pool_size, 3);
    }

    #[test]
    fn unknown_key_is_named_in_the_error() {
        let err =
            Settings::load_from(None, env(&[("SHIFTCOVER__DATABASE__POOLSIZE", "4")])).unwrap_err();
        assert!(err.to_string().contains("poolsize"), "{err}");
    }

    #[test]
    fn malformed_value_is_named_in_the_error() {
        let err = Settings::load_from(None, env(&[("SHIFTCOVER__DATABASE__POOL_SIZE", "many")]))
            .unwrap_err();
        assert!(err.to_string().contains("pool_size"), "{err}");
        let err =
            Settings::load_from(None, env(&[("SHIFTCOVER__HTTP__BIND", "nowhere")])).unwrap_err();
        assert!(err.to_string().contains("http.bind"), "{err}");
        let err = Settings::load_from(None, env(&[("SHIFTCOVER__DATABASE__URL", "mysql://x")]))
            .unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");
    }

    #[test]
    fn production_refuses_the_ide() {
        let err = Settings::load_from(
            None,
            env(&[
                ("SHIFTCOVER__ENVIRONMENT", "production"),
                (
                    "SHIFTCOVER__ACCOUNTS__LOGIN_CODE_PEPPER",
                    "a-real-production-pepper",
                ),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("graphql.ide"), "{err}");
    }

    #[test]
    fn production_refuses_the_development_pepper() {
        let err = Settings::load_from(
            None,
            env(&[
                ("SHIFTCOVER__ENVIRONMENT", "production"),
                ("SHIFTCOVER__GRAPHQL__IDE", "false"),
                ("SHIFTCOVER__GRAPHQL__INTROSPECTION", "false"),
            ]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("accounts.login_code_pepper"),
            "{err}"
        );
    }

    /// Production settings that pass every other check.
    fn production(extra: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let mut pairs = vec![
            ("SHIFTCOVER__ENVIRONMENT", "production"),
            ("SHIFTCOVER__GRAPHQL__IDE", "false"),
            ("SHIFTCOVER__GRAPHQL__INTROSPECTION", "false"),
            (
                "SHIFTCOVER__ACCOUNTS__LOGIN_CODE_PEPPER",
                "a-real-production-pepper",
            ),
            ("SHIFTCOVER__ACCOUNTS__STAFF_COOKIE_SECURE", "true"),
            (
                "SHIFTCOVER__COVER__SIGNING_KEY",
                "cHJvZHVjdGlvbi1zaWduaW5nLWtleS0zMi1ieXRlcyE=",
            ),
            ("SHIFTCOVER__STRIPE__BASE_URL", "https://api.stripe.com"),
            (
                "SHIFTCOVER__STRIPE__SECRET_KEY",
                "sk_live_51RealKeyForTests",
            ),
            (
                "SHIFTCOVER__STRIPE__PUBLISHABLE_KEY",
                "pk_live_51RealKeyForTests",
            ),
            (
                "SHIFTCOVER__STRIPE__WEBHOOK_SECRET",
                "whsec_1RealSecretForTests",
            ),
            (
                "SHIFTCOVER__TWILIO__AUTH_TOKEN",
                "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
            ),
            (
                "SHIFTCOVER__MAILGUN__API_KEY",
                "key-0123456789abcdef0123456789abcdef",
            ),
            (
                "SHIFTCOVER__MAILGUN__WEBHOOK_SIGNING_KEY",
                "0123456789abcdef0123456789abcdef",
            ),
            (
                "SHIFTCOVER__DATABASE__URL",
                "postgres://shiftcover:s3cret@db.internal:5432/shiftcover",
            ),
            (
                "SHIFTCOVER__REDIS__URL",
                "redis://:s3cret@redis.internal:6379/0",
            ),
        ];
        pairs.extend_from_slice(extra);
        Settings::load_from(None, env(&pairs))
    }

    #[test]
    fn production_refuses_development_endpoints_and_an_insecure_staff_cookie() {
        production(&[]).expect("real production settings load");
        for (key, value, named) in [
            (
                "SHIFTCOVER__STRIPE__BASE_URL",
                "http://127.0.0.1:8420",
                "stripe.base_url",
            ),
            (
                "SHIFTCOVER__STRIPE__BASE_URL",
                "https://localhost:8420",
                "stripe.base_url",
            ),
            (
                "SHIFTCOVER__TWILIO__BASE_URL",
                "http://api.twilio.com",
                "twilio.base_url",
            ),
            (
                "SHIFTCOVER__MAILGUN__BASE_URL",
                "https://127.0.0.1/v3",
                "mailgun.base_url",
            ),
            (
                "SHIFTCOVER__ACCOUNTS__STAFF_COOKIE_SECURE",
                "false",
                "accounts.staff_cookie_secure",
            ),
        ] {
            let err = production(&[(key, value)]).unwrap_err();
            assert!(err.to_string().contains(named), "{key}={value}: {err}");
        }
        // Development keeps its local fakes.
        Settings::load_from(
            None,
            env(&[("SHIFTCOVER__STRIPE__BASE_URL", "http://127.0.0.1:8420")]),
        )
        .expect("development may use localstripe");
    }

    #[test]
    fn production_refuses_each_development_or_placeholder_secret() {
        for (key, value, named) in [
            (
                "SHIFTCOVER__STRIPE__WEBHOOK_SECRET",
                "whsec_development",
                "stripe.webhook_secret",
            ),
            (
                "SHIFTCOVER__STRIPE__WEBHOOK_SECRET",
                "whsec_CHANGE_ME",
                "stripe.webhook_secret",
            ),
            (
                "SHIFTCOVER__STRIPE__SECRET_KEY",
                "sk_test_development",
                "stripe.secret_key",
            ),
            (
                "SHIFTCOVER__STRIPE__SECRET_KEY",
                "sk_test_51AbCdEf",
                "stripe.secret_key",
            ),
            (
                "SHIFTCOVER__STRIPE__SECRET_KEY",
                "sk_live_CHANGE_ME",
                "stripe.secret_key",
            ),
            (
                "SHIFTCOVER__STRIPE__PUBLISHABLE_KEY",
                "pk_test_development",
                "stripe.publishable_key",
            ),
            (
                "SHIFTCOVER__STRIPE__PUBLISHABLE_KEY",
                "pk_live_CHANGE_ME",
                "stripe.publishable_key",
            ),
            (
                "SHIFTCOVER__TWILIO__AUTH_TOKEN",
                "development-twilio-token",
                "twilio.auth_token",
            ),
            (
                "SHIFTCOVER__TWILIO__AUTH_TOKEN",
                "CHANGE_ME",
                "twilio.auth_token",
            ),
            (
                "SHIFTCOVER__MAILGUN__API_KEY",
                "development-mailgun-key",
                "mailgun.api_key",
            ),
            (
                "SHIFTCOVER__MAILGUN__API_KEY",
                "change-me",
                "mailgun.api_key",
            ),
            (
                "SHIFTCOVER__MAILGUN__WEBHOOK_SIGNING_KEY",
                "development-mailgun-signing-key",
                "mailgun.webhook_signing_key",
            ),
            (
                "SHIFTCOVER__ACCOUNTS__LOGIN_CODE_PEPPER",
                "development-only-login-code-pepper",
                "accounts.login_code_pepper",
            ),
            (
                "SHIFTCOVER__ACCOUNTS__LOGIN_CODE_PEPPER",
                "CHANGE_ME_AT_LEAST_16_BYTES",
                "accounts.login_code_pepper",
            ),
            (
                "SHIFTCOVER__COVER__SIGNING_KEY",
                DEVELOPMENT_COVER_SIGNING_KEY,
                "cover.signing_key",
            ),
            (
                "SHIFTCOVER__COVER__SIGNING_KEY",
                "CHANGE_ME_32_BYTES_BASE64",
                "cover.signing_key",
            ),
            // 31 and 33 bytes, and not base64 at all.
            (
                "SHIFTCOVER__COVER__SIGNING_KEY",
                "cHJvZHVjdGlvbi1zaWduaW5nLWtleS0zMS1ieXRlcw==",
                "cover.signing_key",
            ),
            (
                "SHIFTCOVER__COVER__SIGNING_KEY",
                "cHJvZHVjdGlvbi1zaWduaW5nLWtleS0zMy1ieXRlcyEh",
                "cover.signing_key",
            ),
            (
                "SHIFTCOVER__COVER__SIGNING_KEY",
                "not base64 at all!",
                "cover.signing_key",
            ),
            (
                "SHIFTCOVER__DATABASE__URL",
                "postgres://shiftcover:CHANGE_ME@postgres.internal:5432/shiftcover",
                "database.url",
            ),
            (
                "SHIFTCOVER__REDIS__URL",
                "redis://:CHANGE_ME@redis.internal:6379/0",
                "redis.url",
            ),
            (
                "SHIFTCOVER__GRAPHQL__INTROSPECTION",
                "true",
                "graphql.introspection",
            ),
        ] {
            let err = production(&[(key, value)]).unwrap_err();
            assert!(err.to_string().contains(named), "{key}={value}: {err}");
            assert!(!err.to_string().contains(value) || value == "true", "{err}");
        }
        // Each default, left unset, is refused too.
        type Reset = fn(&mut Settings);
        let defaults: [(&str, Reset); 7] = [
            ("stripe.webhook_secret", |s| {
                s.stripe.webhook_secret = StripeSettings::default().webhook_secret
            }),
            ("stripe.secret_key", |s| {
                s.stripe.secret_key = StripeSettings::default().secret_key
            }),
            ("twilio.auth_token", |s| {
                s.twilio.auth_token = TwilioSettings::default().auth_token
            }),
            ("mailgun.api_key", |s| {
                s.mailgun.api_key = MailgunSettings::default().api_key
            }),
            ("mailgun.webhook_signing_key", |s| {
                s.mailgun.webhook_signing_key = MailgunSettings::default().webhook_signing_key
            }),
            ("cover.signing_key", |s| {
                s.cover.signing_key = CoverSettings::default().signing_key
            }),
            ("graphql.introspection", |s| {
                s.graphql.introspection = GraphqlSettings::default().introspection
            }),
        ];
        for (named, reset) in defaults {
            let mut settings = production(&[]).expect("complete production settings");
            reset(&mut settings);
            let err = settings.validate().unwrap_err();
            assert!(err.to_string().contains(named), "{named}: {err}");
        }
        // Development keeps every default.
        Settings::load_from(None, env(&[])).expect("development defaults load");
    }

    /// The settings `infra/dev/run.sh` gives its processes (`infra/dev/dev.env`), each
    /// `${NAME:-default}` read as its default.
    fn dev_run_settings() -> Vec<(String, String)> {
        include_str!("../../../infra/dev/dev.env")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (key, mut value) = l.split_once('=').expect("KEY=VALUE");
                let mut out = String::new();
                while let Some(start) = value.find("${") {
                    out.push_str(&value[..start]);
                    let rest = &value[start + 2..];
                    let end = rest.find('}').expect("a closing brace");
                    let default = rest[..end].split_once(":-").expect("a default").1;
                    out.push_str(default);
                    value = &rest[end + 1..];
                }
                out.push_str(value);
                (key.to_owned(), out)
            })
            .collect()
    }

    #[test]
    fn the_development_run_loads_and_production_refuses_each_of_its_stand_ins() {
        let dev = dev_run_settings();
        let pairs: Vec<(&str, &str)> = dev.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let s = Settings::load_from(None, env(&pairs)).expect("the development run's settings");
        assert_eq!(s.environment, Environment::Development);
        assert!(s.dev.inbox);
        assert!(
            s.twilio.base_url.ends_with("/dev/twilio"),
            "{}",
            s.twilio.base_url
        );
        assert!(
            s.mailgun.base_url.ends_with("/dev/mailgun"),
            "{}",
            s.mailgun.base_url
        );

        // The whole development configuration, started as production.
        let mut as_production = pairs.clone();
        as_production.retain(|(k, _)| *k != "SHIFTCOVER__ENVIRONMENT");
        assert!(production(&as_production).is_err());
        // And each stand-in alone, named in the refusal.
        for (key, named) in [
            ("SHIFTCOVER__DEV__INBOX", "dev.inbox"),
            (
                "SHIFTCOVER__PARTNER_WEBHOOKS__ALLOW_LOOPBACK",
                "partner_webhooks.allow_loopback",
            ),
            ("SHIFTCOVER__TWILIO__BASE_URL", "twilio.base_url"),
            ("SHIFTCOVER__MAILGUN__BASE_URL", "mailgun.base_url"),
            ("SHIFTCOVER__STRIPE__BASE_URL", "stripe.base_url"),
        ] {
            let value = pairs
                .iter()
                .find(|(k, _)| *k == key)
                .unwrap_or_else(|| panic!("{key} is not in dev.env"))
                .1;
            let err = production(&[(key, value)]).unwrap_err();
            assert!(err.to_string().contains(named), "{key}={value}: {err}");
        }
    }

    #[test]
    fn trusted_proxies_are_read_from_the_environment_or_a_file() {
        let s = Settings::load_from(
            None,
            env(&[(
                "SHIFTCOVER__HTTP__TRUSTED_PROXIES",
                "10.0.0.0/8, 192.168.1.7,2001:db8::/32",
            )]),
        )
        .unwrap();
        let shown: Vec<String> = s
            .http
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            ["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"].map(String::from)
        );
        assert!(Settings::default().http.trusted_proxies.is_empty());
        let err = Settings::load_from(
            None,
            env(&[("SHIFTCOVER__HTTP__TRUSTED_PROXIES", "10.0.0.0/40")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("trusted_proxies"), "{err}");

        let dir = std::env::temp_dir().join(format!("sc-proxies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.toml");
        std::fs::write(&path, "[http]\ntrusted_proxies = [\"172.16.0.0/12\"]\n").unwrap();
        let s = Settings::load_from(Some(&path), env(&[])).unwrap();
        assert_eq!(s.http.trusted_proxies.len(), 1);
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let s = Settings::load_from(
            None,
            env(&[(
                "SHIFTCOVER__DATABASE__URL",
                "postgres://u:hunter2@db/shiftcover",
            )]),
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
