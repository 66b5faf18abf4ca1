//! Helpers shared by the tests: a database of the test's own, fake Twilio and Mailgun servers
//! (wiremock), and a small stand-in for the job runtime that claims the outbox row and runs the
//! real handler, recording the outcome as the runtime does.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use notifications::{
    Channel, DeliverNotification, NewNotification, Notification, NotificationId, Template, Vars,
};
use shared::clock::SharedClock;
use shared::jobs::{JobContext, JobError};
use shared::outbox::{self, ClaimedJob};
use shared::schema::outbox_jobs;
use shared::settings::Settings;
use shared::{Secret, SystemClock};
use std::sync::Arc;
use testkit::TestDb;
use wiremock::MockServer;

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "twilio-test-token";
pub const FROM: &str = "+447700900123";
pub const PUBLIC_URL: &str = "https://api.shiftcover.test";
pub const MG_DOMAIN: &str = "mg.shiftcover.test";
pub const MG_KEY: &str = "key-0123456789";
pub const MG_FROM: &str = "ShiftCover <cover@mg.shiftcover.test>";
pub const PHONE: &str = "+447911123456";
pub const EMAIL: &str = "sarah@example.com";

pub fn twilio_messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
}

pub fn mailgun_messages_path() -> String {
    format!("/v3/{MG_DOMAIN}/messages")
}

/// A database, fake providers and the settings that point at them.
pub struct Harness {
    pub db: TestDb,
    pub twilio: MockServer,
    pub mailgun: MockServer,
    pub settings: Arc<Settings>,
    pub clock: SharedClock,
}

impl Harness {
    pub async fn new() -> Harness {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Settings)) -> Harness {
        let db = TestDb::new().await.expect("test database");
        let twilio = MockServer::start().await;
        let mailgun = MockServer::start().await;
        let mut s = testkit::settings_for(&db);
        s.http.public_url = PUBLIC_URL.into();
        s.twilio.base_url = twilio.uri();
        s.twilio.account_sid = ACCOUNT_SID.into();
        s.twilio.auth_token = Secret::new(AUTH_TOKEN);
        s.twilio.from = FROM.into();
        s.twilio.messaging_service_sid = String::new();
        s.twilio.timeout_ms = 2_000;
        s.mailgun.base_url = mailgun.uri();
        s.mailgun.domain = MG_DOMAIN.into();
        s.mailgun.api_key = Secret::new(MG_KEY);
        s.mailgun.from = MG_FROM.into();
        s.mailgun.timeout_ms = 2_000;
        tweak(&mut s);
        Harness {
            db,
            twilio,
            mailgun,
            settings: Arc::new(s),
            clock: Arc::new(SystemClock),
        }
    }

    pub async fn conn(&self) -> shared::DbConn {
        self.db.conn().await.expect("connection")
    }

    /// Records a sign-in code SMS.
    pub async fn sms(&self, cause: &str, code: &str) -> NotificationId {
        let mut conn = self.conn().await;
        notifications::enqueue_notification(
            &mut conn,
            NewNotification {
                cause: cause.into(),
                channel: Channel::Sms,
                template: Template::SignInCode,
                recipient: PHONE.into(),
                driver_id: None,
                vars: notifications::vars([("code", code), ("minutes", "5")]),
            },
        )
        .await
        .expect("enqueued")
    }

    /// Records a top-up email.
    pub async fn email(&self, cause: &str) -> NotificationId {
        let mut conn = self.conn().await;
        notifications::enqueue_notification(
            &mut conn,
            NewNotification {
                cause: cause.into(),
                channel: Channel::Email,
                template: Template::TopUpActionNeeded,
                recipient: EMAIL.into(),
                driver_id: None,
                vars: top_up_vars(),
            },
        )
        .await
        .expect("enqueued")
    }

    pub async fn get(&self, id: NotificationId) -> Notification {
        let mut conn = self.conn().await;
        notifications::get_notification(&mut conn, id)
            .await
            .expect("readable")
            .expect("exists")
    }

    /// The delivery job's outbox row: (status, attempts).
    pub async fn job_state(&self, id: NotificationId) -> (String, i32) {
        let mut conn = self.conn().await;
        outbox_jobs::table
            .filter(outbox_jobs::job_type.eq("DeliverNotification"))
            .filter(outbox_jobs::idempotency_key.eq(id.to_string()))
            .select((outbox_jobs::status, outbox_jobs::attempts))
            .first(&mut conn)
            .await
            .expect("the delivery job exists")
    }

    /// Runs one attempt of the notification's delivery job through the real handler, as the
    /// runtime would: the relay queues it (also when it is done, to play a duplicate delivery),
    /// a worker claims it, the handler runs, and the outcome is recorded on the outbox row.
    /// `None` when the job could not be claimed.
    pub async fn run(&self, id: NotificationId) -> Option<Result<(), JobError>> {
        let mut conn = self.conn().await;
        let job_id: shared::ids::JobId = outbox_jobs::table
            .filter(outbox_jobs::job_type.eq("DeliverNotification"))
            .filter(outbox_jobs::idempotency_key.eq(id.to_string()))
            .select(outbox_jobs::id)
            .first(&mut conn)
            .await
            .expect("the delivery job exists");
        diesel::update(outbox_jobs::table.find(job_id))
            .filter(outbox_jobs::status.ne("dead"))
            .set((
                outbox_jobs::status.eq("queued"),
                outbox_jobs::queued_at.eq(diesel::dsl::now),
            ))
            .execute(&mut conn)
            .await
            .expect("queued");
        let claimed: ClaimedJob = outbox::claim(&mut conn, job_id, "test-worker")
            .await
            .expect("claim")?;
        let payload: DeliverNotification =
            serde_json::from_value(claimed.payload.clone()).expect("payload parses");
        let ctx = JobContext {
            pool: self.db.pool().clone(),
            job: claimed.clone(),
            worker: Arc::from("test-worker"),
            clock: self.clock.clone(),
            settings: self.settings.clone(),
        };
        let result = notifications::deliver_notification(ctx, payload).await;
        match &result {
            Ok(()) => {
                outbox::complete(&mut conn, &claimed, "test-worker")
                    .await
                    .expect("complete");
            }
            Err(JobError::ClaimLost) => {}
            Err(e) => {
                let last = claimed.attempts >= claimed.max_attempts;
                let retry_at = (!last && matches!(e, JobError::Retry(_))).then(Utc::now);
                outbox::fail(&mut conn, &claimed, "test-worker", &e.to_string(), retry_at)
                    .await
                    .expect("fail recorded");
            }
        }
        Some(result)
    }
}

pub fn top_up_vars() -> Vars {
    notifications::vars([
        ("amount", "£10.00"),
        (
            "link",
            "https://app.shiftcover.test/top-ups/tu_1?step=3ds&x=<y>",
        ),
    ])
}

/// The Basic authorization header for a user and password.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Decodes an `application/x-www-form-urlencoded` body (or query) into its pairs, in order.
pub fn form_pairs(body: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Splits a `multipart/form-data` body into (name, value) pairs, in order, checking that every
/// part is a plain form field.
pub fn multipart_pairs(content_type: &str, body: &[u8]) -> Vec<(String, String)> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .expect("a boundary")
        .trim_matches('"');
    let body = String::from_utf8(body.to_vec()).expect("utf-8 body");
    let delimiter = format!("--{boundary}");
    let mut pairs = Vec::new();
    for part in body.split(&delimiter).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").expect("CRLF after the boundary");
        let (headers, value) = part.split_once("\r\n\r\n").expect("headers end");
        let value = value
            .strip_suffix("\r\n")
            .expect("CRLF before the boundary");
        let disposition = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .expect("a content disposition");
        assert!(!disposition.contains("filename"), "{disposition}");
        let name = disposition
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("name="))
            .expect("a name")
            .trim_matches('"');
        pairs.push((name.to_owned(), value.to_owned()));
    }
    pairs
}

/// A Twilio "message created" answer.
pub fn twilio_created(sid: &str, body: &str) -> serde_json::Value {
    serde_json::json!({
        "sid": sid,
        "account_sid": ACCOUNT_SID,
        "to": PHONE,
        "from": FROM,
        "body": body,
        "status": "queued",
        "num_segments": "1",
        "direction": "outbound-api",
        "date_created": Utc::now().to_rfc2822(),
        "date_sent": null,
        "error_code": null,
        "error_message": null,
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"),
    })
}

/// A Twilio error answer.
pub fn twilio_error(code: i64, status: u16) -> serde_json::Value {
    serde_json::json!({
        "code": code,
        "message": format!("error {code}"),
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    })
}

/// The rows of one table, counted.
pub async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    testkit::count(conn, sql).await.expect("count")
}
