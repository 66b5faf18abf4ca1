//! Driver sign-in sessions (a device's bearer token), not cover sessions.
//!
//! Invariants: a token is `sct_` + 32 random bytes (base64url), shown once; the database holds
//! only its SHA-256; a session works until it expires ([`DRIVER_SESSION_DAYS`] days after
//! sign-in), is revoked, or its driver is deleted. Authentication distinguishes the three failures
//! (UNAUTHENTICATED, SESSION_EXPIRED, SESSION_REVOKED) so the app can say the right thing.

use crate::error::{AccountsError, AuthError};
use crate::ids::{DriverId, DriverSessionId};
use crate::principal::DriverPrincipal;
use crate::schema::{driver_sessions, drivers};
use crate::tokens;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::Clock;

/// Prefix of driver session tokens.
pub const DRIVER_TOKEN_PREFIX: &str = "sct_";
/// Lifetime of a driver session.
pub const DRIVER_SESSION_DAYS: i64 = 30;
/// `last_seen_at` is refreshed at most this often, so authenticating is not a write per request.
pub const LAST_SEEN_GRANULARITY_MINUTES: i64 = 5;

/// A new session and its one-time plaintext token.
pub(crate) struct SessionToken<Id> {
    pub session_id: Id,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = driver_sessions)]
#[diesel(treat_none_as_default_value = false)]
struct NewDriverSession {
    id: DriverSessionId,
    driver_id: DriverId,
    token_hash: Vec<u8>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
}

pub(crate) async fn create_driver_session(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    now: DateTime<Utc>,
) -> Result<SessionToken<DriverSessionId>, AccountsError> {
    let token = tokens::random_token(DRIVER_TOKEN_PREFIX);
    let session_id = DriverSessionId::new();
    let expires_at = now + Duration::days(DRIVER_SESSION_DAYS);
    diesel::insert_into(driver_sessions::table)
        .values(NewDriverSession {
            id: session_id,
            driver_id,
            token_hash: tokens::sha256(&token),
            created_at: now,
            expires_at,
            last_seen_at: now,
        })
        .execute(conn)
        .await?;
    Ok(SessionToken {
        session_id,
        token,
        expires_at,
    })
}

/// Turns a driver's bearer token into a principal.
///
/// Errors: `UNAUTHENTICATED` (malformed or unknown), `SESSION_EXPIRED`, `SESSION_REVOKED`
/// (signed out, or the account was deleted).
pub async fn authenticate_driver(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    token: &str,
) -> Result<DriverPrincipal, AuthError> {
    if !well_formed(token) {
        return Err(AuthError::Unauthenticated);
    }
    let now = clock.now();
    let row: Option<SessionWithDriver> = driver_sessions::table
        .inner_join(drivers::table)
        .filter(driver_sessions::token_hash.eq(tokens::sha256(token)))
        .select((SessionRow::as_select(), drivers::deleted_at))
        .first(conn)
        .await
        .optional()?;
    let (principal, stale) = judge(row, now)?;
    if stale {
        touch(conn, principal.session_id, now).await?;
    }
    Ok(principal)
}

/// [`authenticate_driver`] for a request: the session is read in one statement with the other
/// requests authenticating at that moment ([`shared::batch`]), and a connection is taken from
/// the pool only for the occasional `last_seen_at` refresh.
///
/// Errors: those of [`authenticate_driver`]; `Unavailable` when the database cannot be reached.
pub async fn authenticate_driver_batched(
    core: &shared::core::Core,
    token: &str,
) -> Result<DriverPrincipal, AuthError> {
    if !well_formed(token) {
        return Err(AuthError::Unauthenticated);
    }
    let now = core.clock.now();
    let row = core
        .batcher::<DriverSessionsByToken>()
        .call(tokens::sha256(token))
        .await
        .map_err(|e| match e {
            shared::batch::BatchError::Query(e) => AuthError::Database(e),
            other => AuthError::Unavailable(other.into()),
        })?;
    let (principal, stale) = judge(row, now)?;
    if stale {
        let mut conn = core
            .pool
            .get()
            .await
            .map_err(|e| AuthError::Unavailable(anyhow::anyhow!("database pool: {e}")))?;
        touch(&mut conn, principal.session_id, now).await?;
    }
    Ok(principal)
}

/// Cheap shape check first: garbage never reaches the database.
fn well_formed(token: &str) -> bool {
    token.starts_with(DRIVER_TOKEN_PREFIX) && token.len() == DRIVER_TOKEN_PREFIX.len() + 43
}

/// A session with its driver's deletion time.
pub type SessionWithDriver = (SessionRow, Option<DateTime<Utc>>);

/// The principal of a session read by its token, and whether its `last_seen_at` is due a refresh.
fn judge(
    row: Option<SessionWithDriver>,
    now: DateTime<Utc>,
) -> Result<(DriverPrincipal, bool), AuthError> {
    let Some((session, driver_deleted_at)) = row else {
        return Err(AuthError::Unauthenticated);
    };
    if session.revoked_at.is_some() || driver_deleted_at.is_some() {
        return Err(AuthError::SessionRevoked);
    }
    if session.expires_at <= now {
        return Err(AuthError::SessionExpired);
    }
    let stale = session.last_seen_at < now - Duration::minutes(LAST_SEEN_GRANULARITY_MINUTES);
    Ok((
        DriverPrincipal {
            driver_id: session.driver_id,
            session_id: session.id,
        },
        stale,
    ))
}

async fn touch(
    conn: &mut AsyncPgConnection,
    session_id: DriverSessionId,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    diesel::update(driver_sessions::table.find(session_id))
        .set(driver_sessions::last_seen_at.eq(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Driver sessions (with their driver's deletion time) by token hash, for many tokens in one
/// statement: the batched read of [`authenticate_driver_batched`].
#[derive(Debug, Default)]
pub struct DriverSessionsByToken;

impl shared::batch::BatchQuery for DriverSessionsByToken {
    type Input = Vec<u8>;
    type Output = Option<SessionWithDriver>;
    const NAME: &'static str = "driver sessions by token";

    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        hashes: &'a [Vec<u8>],
    ) -> shared::batch::BatchFuture<'a, Self::Output> {
        Box::pin(async move {
            let rows: Vec<(Vec<u8>, SessionRow, Option<DateTime<Utc>>)> = driver_sessions::table
                .inner_join(drivers::table)
                .filter(driver_sessions::token_hash.eq_any(hashes))
                .select((
                    driver_sessions::token_hash,
                    SessionRow::as_select(),
                    drivers::deleted_at,
                ))
                .load(conn)
                .await?;
            let by_hash: std::collections::HashMap<Vec<u8>, SessionWithDriver> = rows
                .into_iter()
                .map(|(hash, session, deleted_at)| (hash, (session, deleted_at)))
                .collect();
            Ok(hashes.iter().map(|h| by_hash.get(h).cloned()).collect())
        })
    }
}

/// A driver session as authentication reads it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = driver_sessions)]
pub struct SessionRow {
    id: DriverSessionId,
    driver_id: DriverId,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    last_seen_at: DateTime<Utc>,
}

/// Ends one session (the app's "sign out"). Returns false when it had already ended; signing
/// out twice is not an error.
pub async fn sign_out(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    session_id: DriverSessionId,
) -> Result<bool, AccountsError> {
    let n = diesel::update(driver_sessions::table)
        .filter(driver_sessions::id.eq(session_id))
        .filter(driver_sessions::revoked_at.is_null())
        .set(driver_sessions::revoked_at.eq(clock.now()))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Ends every live session of a driver ("sign out everywhere", a lost phone). Returns how many
/// live sessions were ended.
pub async fn sign_out_everywhere(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
) -> Result<usize, AccountsError> {
    let now = clock.now();
    Ok(revoke_all_driver_sessions(conn, driver_id, now).await?)
}

pub(crate) async fn revoke_all_driver_sessions(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(driver_sessions::table)
        .filter(driver_sessions::driver_id.eq(driver_id))
        .filter(driver_sessions::revoked_at.is_null())
        .filter(driver_sessions::expires_at.gt(now))
        .set(driver_sessions::revoked_at.eq(now))
        .execute(conn)
        .await
}

/// A session as shown to its driver ("your devices") and in a data export. Never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Queryable, Selectable)]
#[diesel(table_name = driver_sessions)]
pub struct DriverSessionInfo {
    /// The session.
    pub id: DriverSessionId,
    /// When it was opened (sign-in).
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was signed out, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Roughly when it was last used (to the nearest few minutes).
    pub last_seen_at: DateTime<Utc>,
}

/// Every session of a driver, newest first, live or not.
pub async fn list_driver_sessions(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Vec<DriverSessionInfo>, AccountsError> {
    Ok(driver_sessions::table
        .filter(driver_sessions::driver_id.eq(driver_id))
        .order((
            driver_sessions::created_at.desc(),
            driver_sessions::id.desc(),
        ))
        .select(DriverSessionInfo::as_select())
        .load(conn)
        .await?)
}
