//! Helpers shared by the tests.

use accounts::{AccountsError, AuthError, LoginCodeSettings, SignedIn};
use chrono::{TimeZone, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use notifications::{Channel, Notification};
use shared::schema::{audit_log, outbox_jobs};
use shared::{FixedClock, Secret};

/// A UK mobile number that libphonenumber accepts, and its E.164 form.
pub const PHONE: &str = "07911 123456";
pub const PHONE_E164: &str = "+447911123456";
pub const OTHER_PHONE: &str = "+44 7700 123456";

/// A clock fixed on a Monday morning.
pub fn clock() -> FixedClock {
    FixedClock::at(
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
            .single()
            .expect("valid time"),
    )
}

pub fn settings() -> LoginCodeSettings {
    LoginCodeSettings {
        pepper: Secret::new("test-pepper-0123456789abcdef"),
    }
}

/// The user-facing code of an error, or "INTERNAL".
pub fn code(e: &AccountsError) -> &'static str {
    e.user_error().map_or("INTERNAL", |u| u.code)
}

/// The input field an error names.
pub fn field(e: &AccountsError) -> Option<String> {
    e.user_error().and_then(|u| u.field)
}

pub fn auth_code(e: &AuthError) -> &'static str {
    e.code().unwrap_or("INTERNAL")
}

/// The SMS notifications recorded, oldest first.
pub async fn sms_sent(conn: &mut AsyncPgConnection) -> Vec<Notification> {
    notifications::schema::notifications::table
        .filter(notifications::schema::notifications::channel.eq(Channel::Sms))
        .order((
            notifications::schema::notifications::created_at.asc(),
            notifications::schema::notifications::id.asc(),
        ))
        .select(Notification::as_select())
        .load(conn)
        .await
        .expect("notifications readable")
}

/// The delivery jobs in the outbox: (queue, idempotency key), oldest first.
pub async fn delivery_jobs(conn: &mut AsyncPgConnection) -> Vec<(String, String)> {
    outbox_jobs::table
        .filter(outbox_jobs::job_type.eq("DeliverNotification"))
        .order(outbox_jobs::created_at.asc())
        .select((outbox_jobs::queue, outbox_jobs::idempotency_key))
        .load(conn)
        .await
        .expect("outbox readable")
}

/// The code in the newest SMS to `phone_e164`, read from its notification as tests elsewhere do.
pub async fn latest_code(conn: &mut AsyncPgConnection, phone_e164: &str) -> String {
    let body = notifications::latest_body_for(conn, phone_e164)
        .await
        .expect("an SMS to this phone");
    code_in(&body)
}

/// The six digits after "code is ".
pub fn code_in(body: &str) -> String {
    let rest = body.split("code is ").nth(1).expect("code in body");
    let code: String = rest.chars().take(6).collect();
    assert!(code.chars().all(|c| c.is_ascii_digit()), "{body}");
    code
}

/// Requests and verifies a code: a signed-in driver.
pub async fn sign_in(conn: &mut AsyncPgConnection, clock: &FixedClock, phone: &str) -> SignedIn {
    let requested = accounts::request_login_code(conn, clock, phone, &settings())
        .await
        .expect("code requested");
    let code = latest_code(conn, &requested.phone_e164).await;
    accounts::verify_login_code(conn, clock, phone, &code, &settings())
        .await
        .expect("signed in")
}

/// Audit rows with this action: (actor_type, actor_id, subject_id, details).
pub async fn audit_rows(
    conn: &mut AsyncPgConnection,
    action: &str,
) -> Vec<(String, Option<String>, String, serde_json::Value)> {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .order(audit_log::id.asc())
        .select((
            audit_log::actor_type,
            audit_log::actor_id,
            audit_log::subject_id,
            audit_log::details,
        ))
        .load(conn)
        .await
        .expect("audit log readable")
}
