//! Driver sign-in by SMS code.
//!
//! Invariants:
//! - a code is 6 random digits, stored only as HMAC-SHA256(pepper, phone ‖ code), valid for
//!   [`CODE_TTL_MINUTES`] minutes and for at most [`MAX_CODE_ATTEMPTS`] tries;
//! - only a phone's newest code is live: requesting a code supersedes its older unused codes;
//! - the code row and its SMS (a `notifications` record with its delivery job, cause
//!   `login_code:<code id>`) commit together, so no text goes out for a code that was not stored,
//!   and no stored code lacks its text;
//! - a try is claimed (counted) atomically *before* the code is compared, so however many guesses
//!   run concurrently, at most `MAX_CODE_ATTEMPTS` are ever judged;
//! - a code signs in once: the success path marks it used with a guarded update
//!   (`… WHERE used_at IS NULL`), so of two concurrent correct tries exactly one wins;
//! - a phone without a code answers `INVALID_CODE`, like a wrong code, after the same hashing and
//!   the same number of database round trips, so neither the answer nor its timing reveals which.
//!
//! Rate limits (per phone, per client address) are applied by the caller with
//! [`crate::rate_limit`] before these functions run.

use crate::error::AccountsError;
use crate::fields::Phone;
use crate::ids::{DriverId, LoginCodeId};
use crate::principal::Actor;
use crate::schema::{drivers, login_codes};
use crate::sessions::{SessionToken, create_driver_session};
use crate::tokens;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use notifications::{Channel, NewNotification, Template};
use shared::{Clock, Secret};

/// How long a login code is valid.
pub const CODE_TTL_MINUTES: i64 = 5;
/// How many tries a login code allows.
pub const MAX_CODE_ATTEMPTS: i32 = 5;
/// Shortest pepper accepted, in bytes.
pub const MIN_PEPPER_BYTES: usize = 16;

/// Secrets of the login-code flow.
#[derive(Debug, Clone)]
pub struct LoginCodeSettings {
    /// The server-side key of the code HMAC. Kept out of the database (configuration or a secret
    /// store) so that a leaked `login_codes` table does not give the codes away. Changing it
    /// invalidates the codes in flight (at most five minutes' worth), nothing else.
    pub pepper: Secret,
}

impl LoginCodeSettings {
    fn pepper(&self) -> Result<&[u8], AccountsError> {
        let pepper = self.pepper.expose().as_bytes();
        // Fail closed: an empty or short pepper would make stored codes brute-forceable offline.
        if pepper.len() < MIN_PEPPER_BYTES {
            return Err(anyhow::anyhow!(
                "login code pepper is missing or shorter than {MIN_PEPPER_BYTES} bytes"
            )
            .into());
        }
        Ok(pepper)
    }
}

/// A code was sent (or rather, its text was recorded for delivery in the same transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginCodeRequested {
    /// The phone it goes to, E.164, for the app to show ("we texted +44 7911 …").
    pub phone_e164: String,
    /// When the code stops working.
    pub expires_at: DateTime<Utc>,
}

/// A driver signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The driver.
    pub driver_id: DriverId,
    /// The bearer token (`sct_…`), shown this once; only its hash is kept.
    pub token: String,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
    /// True when this sign-in created the driver (the app then asks for their profile).
    pub new_driver: bool,
}

#[derive(Insertable)]
#[diesel(table_name = login_codes)]
#[diesel(treat_none_as_default_value = false)]
struct NewLoginCode<'a> {
    id: LoginCodeId,
    phone: &'a str,
    code_hash: &'a [u8],
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    attempts: i32,
    max_attempts: i32,
}

/// Creates a login code for `phone_input` and records its SMS (template sign-in code) with
/// `notifications`, in one transaction.
///
/// Errors: `INVALID_PHONE`.
pub async fn request_login_code(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    phone_input: &str,
    settings: &LoginCodeSettings,
) -> Result<LoginCodeRequested, AccountsError> {
    let phone = Phone::parse(phone_input)?;
    let pepper = settings.pepper()?;
    let now = clock.now();
    let expires_at = now + Duration::minutes(CODE_TTL_MINUTES);
    let code = tokens::random_code();
    let code_hash = tokens::login_code_hash(pepper, phone.as_str(), &code)?;
    let id = LoginCodeId::new();

    conn.transaction::<_, AccountsError, _>(async |conn| {
        let superseded: Vec<LoginCodeId> = diesel::update(login_codes::table)
            .filter(login_codes::phone.eq(phone.as_str()))
            .filter(login_codes::used_at.is_null())
            .filter(login_codes::superseded_at.is_null())
            .set(login_codes::superseded_at.eq(now))
            .returning(login_codes::id)
            .get_results(conn)
            .await?;
        // A replaced code is worthless: its text is withdrawn (and not sent, if still queued).
        withdraw_code_texts(conn, &superseded).await?;
        diesel::insert_into(login_codes::table)
            .values(NewLoginCode {
                id,
                phone: phone.as_str(),
                code_hash: &code_hash,
                created_at: now,
                expires_at,
                attempts: 0,
                max_attempts: MAX_CODE_ATTEMPTS,
            })
            .execute(conn)
            .await?;
        // The driver, when the phone already has one, so that erasing them erases the text too.
        let driver_id: Option<DriverId> = drivers::table
            .filter(drivers::phone.eq(phone.as_str()))
            .filter(drivers::deleted_at.is_null())
            .select(drivers::id)
            .first(conn)
            .await
            .optional()?;
        notifications::enqueue_notification(
            conn,
            NewNotification {
                cause: format!("login_code:{id}"),
                channel: Channel::Sms,
                template: Template::SignInCode,
                recipient: phone.as_str().to_owned(),
                driver_id: driver_id.map(|d| d.uuid()),
                vars: notifications::vars([
                    ("code", code.clone()),
                    ("minutes", CODE_TTL_MINUTES.to_string()),
                ]),
            },
        )
        .await
        .map_err(|e| AccountsError::Internal(e.into()))?;
        Ok(())
    })
    .await?;

    tracing::info!(login_code_id = %id, "login code requested");
    Ok(LoginCodeRequested {
        phone_e164: phone.as_str().to_owned(),
        expires_at,
    })
}

/// Blanks the stored texts of the sign-in SMS of `codes` (see [`notifications::withdraw_texts`]).
async fn withdraw_code_texts(
    conn: &mut AsyncPgConnection,
    codes: &[LoginCodeId],
) -> Result<(), AccountsError> {
    let causes: Vec<String> = codes.iter().map(|id| format!("login_code:{id}")).collect();
    notifications::withdraw_texts(conn, &causes)
        .await
        .map_err(|e| AccountsError::Internal(e.into()))?;
    Ok(())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = login_codes)]
struct LoginCodeRow {
    id: LoginCodeId,
    code_hash: Vec<u8>,
    expires_at: DateTime<Utc>,
    attempts: i32,
    max_attempts: i32,
    used_at: Option<DateTime<Utc>>,
    superseded_at: Option<DateTime<Utc>>,
}

/// Checks a code and signs the driver in, creating the driver on their first sign-in.
///
/// Errors: `INVALID_PHONE`, `INVALID_CODE` (wrong, or none requested), `CODE_EXPIRED`,
/// `CODE_ALREADY_USED`, `TOO_MANY_ATTEMPTS`.
pub async fn verify_login_code(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    phone_input: &str,
    code_input: &str,
    settings: &LoginCodeSettings,
) -> Result<SignedIn, AccountsError> {
    let phone = Phone::parse(phone_input)?;
    let pepper = settings.pepper()?;
    let now = clock.now();
    // People paste "123 456"; anything else malformed simply fails to match.
    let code: String = code_input.chars().filter(|c| !c.is_whitespace()).collect();
    let presented = tokens::login_code_hash(pepper, phone.as_str(), &code)?;

    let row: Option<LoginCodeRow> = login_codes::table
        .filter(login_codes::phone.eq(phone.as_str()))
        .filter(login_codes::superseded_at.is_null())
        .order((login_codes::created_at.desc(), login_codes::id.desc()))
        .select(LoginCodeRow::as_select())
        .first(conn)
        .await
        .optional()?;

    let Some(row) = row else {
        // No code: do what a wrong code does — one comparison and one claim round trip (which
        // matches no row) — so the answer and its timing are a wrong code's.
        let _ = tokens::ct_eq(&presented, &[0u8; 32]);
        claim_attempt(conn, LoginCodeId(uuid::Uuid::nil()), now).await?;
        return Err(AccountsError::InvalidCode);
    };
    let matches = tokens::ct_eq(&presented, &row.code_hash);

    if let Some(refusal) = refusal(&row, matches, now) {
        return Err(refusal);
    }
    if !claim_attempt(conn, row.id, now).await? {
        // The row changed since we read it (a concurrent try used it or took the last attempt).
        let current: LoginCodeRow = login_codes::table
            .find(row.id)
            .select(LoginCodeRow::as_select())
            .first(conn)
            .await?;
        return Err(refusal(&current, matches, now).unwrap_or(AccountsError::InvalidCode));
    }
    if !matches {
        tracing::info!(login_code_id = %row.id, "wrong login code");
        return Err(AccountsError::InvalidCode);
    }

    // The try is already counted and committed; now use the code, find or create the driver and
    // open a session, all or nothing.
    let signed_in = conn
        .transaction::<_, AccountsError, _>(async |conn| {
            let used = diesel::update(login_codes::table)
                .filter(login_codes::id.eq(row.id))
                .filter(login_codes::used_at.is_null())
                .filter(login_codes::superseded_at.is_null())
                .set(login_codes::used_at.eq(now))
                .execute(conn)
                .await?;
            if used != 1 {
                return Err(AccountsError::CodeAlreadyUsed);
            }
            // The code has done its job; the SMS text that carries it is not kept.
            withdraw_code_texts(conn, &[row.id]).await?;
            let (driver_id, new_driver) = find_or_create_driver(conn, &phone, now).await?;
            let SessionToken {
                session_id,
                token,
                expires_at,
            } = create_driver_session(conn, driver_id, now).await?;
            shared::audit::record(
                conn,
                &Actor::Driver(driver_id).entry(
                    "driver.signed_in",
                    "driver",
                    driver_id.to_string(),
                    serde_json::json!({
                        "session_id": session_id.to_string(),
                        "login_code_id": row.id.to_string(),
                        "new_driver": new_driver,
                    }),
                ),
            )
            .await?;
            Ok(SignedIn {
                driver_id,
                token,
                expires_at,
                new_driver,
            })
        })
        .await?;
    tracing::info!(driver_id = %signed_in.driver_id, new_driver = signed_in.new_driver, "driver signed in");
    Ok(signed_in)
}

/// Why a code row cannot be tried, if it cannot. A used code says "already used" only to
/// someone who has the code; others hear "invalid".
fn refusal(row: &LoginCodeRow, matches: bool, now: DateTime<Utc>) -> Option<AccountsError> {
    if row.used_at.is_some() {
        return Some(if matches {
            AccountsError::CodeAlreadyUsed
        } else {
            AccountsError::InvalidCode
        });
    }
    if row.superseded_at.is_some() {
        return Some(AccountsError::InvalidCode);
    }
    if row.attempts >= row.max_attempts {
        return Some(AccountsError::TooManyAttempts);
    }
    if row.expires_at <= now {
        return Some(AccountsError::CodeExpired);
    }
    None
}

/// Counts one try against a live code. Runs outside any transaction so that a wrong try stays
/// counted although the call then fails. False when the code is no longer triable.
async fn claim_attempt(
    conn: &mut AsyncPgConnection,
    id: LoginCodeId,
    now: DateTime<Utc>,
) -> Result<bool, AccountsError> {
    let n = diesel::update(login_codes::table)
        .filter(login_codes::id.eq(id))
        .filter(login_codes::used_at.is_null())
        .filter(login_codes::superseded_at.is_null())
        .filter(login_codes::attempts.lt(login_codes::max_attempts))
        .filter(login_codes::expires_at.gt(now))
        .set(login_codes::attempts.eq(login_codes::attempts + 1))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

#[derive(Insertable)]
#[diesel(table_name = drivers)]
#[diesel(treat_none_as_default_value = false)]
struct NewDriver<'a> {
    id: DriverId,
    phone: &'a str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

pub(crate) async fn find_or_create_driver(
    conn: &mut AsyncPgConnection,
    phone: &Phone,
    now: DateTime<Utc>,
) -> Result<(DriverId, bool), AccountsError> {
    let inserted: Option<DriverId> = diesel::insert_into(drivers::table)
        .values(NewDriver {
            id: DriverId::new(),
            phone: phone.as_str(),
            created_at: now,
            updated_at: now,
        })
        .on_conflict(drivers::phone)
        .do_nothing()
        .returning(drivers::id)
        .get_result(conn)
        .await
        .optional()?;
    if let Some(id) = inserted {
        return Ok((id, true));
    }
    // Deleted drivers hold a tombstone instead of their phone, so the row that conflicted is live.
    let id = drivers::table
        .filter(drivers::phone.eq(phone.as_str()))
        .filter(drivers::deleted_at.is_null())
        .select(drivers::id)
        .first::<DriverId>(conn)
        .await?;
    Ok((id, false))
}
