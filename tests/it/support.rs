//! Helpers shared by the end-to-end tests.

use serde_json::{Value, json};
use shared::clock::SystemClock;
use shared::core::Core;
use shared::settings::Settings;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::TestDb;

/// A running API server on its own database and Redis prefix.
pub struct TestApp {
    pub db: TestDb,
    pub core: Core,
    pub base: String,
    pub client: reqwest::Client,
    server: graphql::RunningServer,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_with_clock(tweak, Arc::new(SystemClock)).await
    }

    /// A server whose "now" is `clock` (a `FixedClock` lets a test move time).
    pub async fn spawn_with_clock(
        tweak: impl FnOnce(&mut Settings),
        clock: shared::clock::SharedClock,
    ) -> TestApp {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = TestDb::new().await.expect("test database");
        let mut settings = testkit::settings_for(&db);
        settings.http.workers = 1;
        tweak(&mut settings);
        let core = Core::new(settings, clock).expect("core");
        let server = graphql::start_server(core.clone()).expect("server starts");
        let base = format!("http://{}", server.addr);
        TestApp {
            db,
            core,
            base,
            client: reqwest::Client::new(),
            server,
        }
    }

    /// POSTs a GraphQL document and returns the JSON body.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        let res = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request sent");
        assert_eq!(res.status(), 200, "GraphQL answers 200");
        res.json().await.expect("JSON body")
    }

    /// POSTs a GraphQL document with a credential; returns the HTTP status and the JSON body.
    pub async fn gql_as(&self, auth: &Auth, query: &str, variables: Value) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        req = auth.apply(req);
        let res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        (status, res.json().await.expect("JSON body"))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let handle = self.server.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// The error code of the first GraphQL error.
pub fn first_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<no code>")
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Counts rows with a SQL query returning one `n` column.
pub async fn count(db: &TestDb, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.conn().await.expect("conn");
    diesel::sql_query(sql)
        .get_result::<N>(&mut conn)
        .await
        .expect("count query")
        .n
}

/// How a test request authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credential.
    Anonymous,
    /// `Authorization: Bearer <token>` (a driver token or a partner key).
    Bearer(String),
    /// The staff session cookie.
    StaffCookie(String),
}

impl Auth {
    pub fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::Anonymous => req,
            Auth::Bearer(token) => req.bearer_auth(token),
            Auth::StaffCookie(token) => req.header(
                "cookie",
                format!("{}={token}", graphql::viewer::STAFF_COOKIE),
            ),
        }
    }
}

/// A phone number no other call in this process returns (a valid UK mobile, E.164).
pub fn fresh_phone() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| (uuid::Uuid::new_v4().as_u128() % 1_000_000) as u64);
    let n = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 1_000_000;
    format!("+447900{n:06}")
}

/// The text of the newest SMS recorded for `phone_e164`, as the SMS worker would send it: the
/// body carried in its outbox job's payload, or, when the payload carries only the id of a
/// recorded notification, that notification's text.
pub async fn latest_sms_body(db: &TestDb, phone_e164: &str) -> Option<String> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Body {
        #[diesel(sql_type = diesel::sql_types::Text)]
        body: String,
    }
    let mut conn = db.conn().await.expect("conn");
    let from_payload: Option<Body> = diesel::sql_query(
        "SELECT payload->>'body' AS body FROM outbox_jobs
          WHERE payload->>'to' = $1 AND payload ? 'body'
          ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind::<diesel::sql_types::Text, _>(phone_e164)
    .get_result(&mut conn)
    .await
    .ok();
    if let Some(b) = from_payload {
        return Some(b.body);
    }
    let recorded: Option<Body> = diesel::sql_query(
        "SELECT body_text AS body FROM notifications
          WHERE recipient = $1 AND channel = 'sms'
          ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind::<diesel::sql_types::Text, _>(phone_e164)
    .get_result(&mut conn)
    .await
    .ok();
    recorded.map(|b| b.body)
}

/// The six-digit code in the newest SMS to `phone_e164`.
pub async fn latest_sms_code(db: &TestDb, phone_e164: &str) -> String {
    let body = latest_sms_body(db, phone_e164)
        .await
        .unwrap_or_else(|| panic!("no SMS to {phone_e164}"));
    let rest = body.split("code is ").nth(1).expect("a code in the SMS");
    let code: String = rest.chars().take(6).collect();
    assert!(code.chars().all(|c| c.is_ascii_digit()), "{body}");
    code
}

/// A driver signed in through the accounts app (not over HTTP, so no rate limit is spent).
pub struct SignedInDriver {
    pub id: accounts::DriverId,
    pub token: String,
}

impl SignedInDriver {
    pub fn auth(&self) -> Auth {
        Auth::Bearer(self.token.clone())
    }
}

impl TestApp {
    fn login_settings(&self) -> accounts::LoginCodeSettings {
        accounts::LoginCodeSettings {
            pepper: self.core.settings.accounts.login_code_pepper.clone(),
        }
    }

    /// Asks for a login code for `phone` and returns it, read from the outbox.
    pub async fn login_code_for(&self, phone: &str) -> String {
        let mut conn = self.db.conn().await.expect("conn");
        let sent = accounts::request_login_code(
            &mut conn,
            self.core.clock.as_ref(),
            phone,
            &self.login_settings(),
        )
        .await
        .expect("code requested");
        latest_sms_code(&self.db, &sent.phone_e164).await
    }

    /// A new driver with a session.
    pub async fn driver(&self) -> SignedInDriver {
        let phone = fresh_phone();
        let code = self.login_code_for(&phone).await;
        let mut conn = self.db.conn().await.expect("conn");
        let signed_in = accounts::verify_login_code(
            &mut conn,
            self.core.clock.as_ref(),
            &phone,
            &code,
            &self.login_settings(),
        )
        .await
        .expect("signed in");
        SignedInDriver {
            id: signed_in.driver_id,
            token: signed_in.token,
        }
    }

    /// Adds a car to a driver; returns its id.
    pub async fn vehicle_of(&self, driver: accounts::DriverId) -> accounts::VehicleId {
        let mut conn = self.db.conn().await.expect("conn");
        let registration: String = uuid::Uuid::new_v4().simple().to_string()[..7].to_uppercase();
        accounts::add_vehicle(
            &mut conn,
            self.core.clock.as_ref(),
            driver,
            accounts::NewVehicle {
                vehicle_type: accounts::VehicleType::Car,
                registration: Some(registration),
                make: Some("Toyota".into()),
                model: Some("Prius".into()),
            },
        )
        .await
        .expect("vehicle added")
        .id
    }

    /// A staff user with a known password (argon2 runs once per call: keep calls few).
    pub async fn staff_user(&self, role: accounts::Role, password: &str) -> accounts::Staff {
        let mut conn = self.db.conn().await.expect("conn");
        accounts::create_staff(
            &mut conn,
            self.core.clock.as_ref(),
            accounts::Actor::System,
            accounts::NewStaff {
                email: format!("{}@staff.test", uuid::Uuid::new_v4().simple()),
                name: format!("{} user", role.as_str()),
                role,
                password: password.to_owned(),
            },
        )
        .await
        .expect("staff created")
    }

    /// Signs a staff user in through the accounts app; returns the session token (the cookie's
    /// value).
    pub async fn staff_session(&self, email: &str, password: &str) -> String {
        let mut conn = self.db.conn().await.expect("conn");
        accounts::staff_sign_in(&mut conn, self.core.clock.as_ref(), email, password)
            .await
            .expect("staff signed in")
            .token
    }

    /// A partner with one key of every scope; returns the partner and the key's secret.
    pub async fn partner_with_key(
        &self,
        name: &str,
    ) -> (accounts::Partner, accounts::ApiKeyInfo, String) {
        let mut conn = self.db.conn().await.expect("conn");
        let clock = self.core.clock.as_ref();
        let partner = accounts::create_partner(&mut conn, clock, accounts::Actor::System, name)
            .await
            .expect("partner created");
        let (info, secret) = accounts::create_api_key(
            &mut conn,
            clock,
            accounts::Actor::System,
            partner.id,
            &accounts::Scope::ALL,
            false,
        )
        .await
        .expect("key created");
        (partner, info, secret)
    }
}

/// The Relay global id of an object (`Type:typed_id`, base64url).
pub fn global_id(type_name: &str, id: &impl std::fmt::Display) -> String {
    graphql::relay::to_global_id(type_name, id).0
}
