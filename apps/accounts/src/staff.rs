//! Staff users (ops, finance, admin) of the back office, and their sessions.
//!
//! Invariants: passwords are stored only as argon2id PHC strings (OWASP parameters: 19 MiB,
//! 2 passes, 1 lane) and are at least [`MIN_PASSWORD_CHARS`] characters; sign-in answers
//! `INVALID_CREDENTIALS` alike for an unknown email and a wrong password, after the same argon2
//! work (unknown emails are verified against a dummy hash), and says `ACCOUNT_DISABLED` only to
//! someone who knows the password; argon2 runs on the blocking pool, never on an async worker
//! thread. Staff sessions are hashed bearer tokens (`scs_…`) that last [`STAFF_SESSION_HOURS`]
//! hours; a disabled user's sessions stop working at once.

use crate::error::{AccountsError, AuthError};
use crate::fields::{Email, parse_name};
use crate::ids::{StaffId, StaffSessionId};
use crate::principal::{Actor, StaffPrincipal};
use crate::schema::{staff, staff_sessions};
use crate::sessions::{LAST_SEEN_GRANULARITY_MINUTES, SessionToken};
use crate::tokens;
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use shared::Clock;
use std::fmt;
use std::str::FromStr;

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in characters (bounds the hashing work one request can ask for).
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Lifetime of a staff session: one working day.
pub const STAFF_SESSION_HOURS: i64 = 12;
/// Prefix of staff session tokens.
pub const STAFF_TOKEN_PREFIX: &str = "scs_";

/// An argon2id hash of a random password nobody knows, made with the same parameters as real
/// hashes, so that verifying against it costs what a real verification costs.
const DUMMY_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$TsVL0l9frbdbLNeFeKVCSA$AazaZU+2sUChsSrw6QfZABg9OUmM5oP8uFTnB+cYETo";

/// What a staff user may do. Admin may do everything; ops and finance only their own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Operations: drivers, sessions, claims, refunds, failed jobs.
    Ops,
    /// Finance: reconciliation, bordereau, tax, ledger reports.
    Finance,
    /// Everything, including staff, partners and products.
    Admin,
}

impl Role {
    /// The stored name: `ops`, `finance`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ops => "ops",
            Role::Finance => "finance",
            Role::Admin => "admin",
        }
    }

    /// Whether a user with this role may do what `required` may do.
    pub fn has(&self, required: Role) -> bool {
        *self == Role::Admin || *self == required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AccountsError;

    /// Errors: `INVALID_ROLE`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ops" => Ok(Role::Ops),
            "finance" => Ok(Role::Finance),
            "admin" => Ok(Role::Admin),
            _ => Err(AccountsError::InvalidRole),
        }
    }
}

/// A staff user (never their password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Staff {
    /// The user.
    pub id: StaffId,
    /// Their sign-in email, lowercased.
    pub email: Email,
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// When they were created.
    pub created_at: DateTime<Utc>,
    /// When they were disabled, if they were.
    pub disabled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = staff)]
struct StaffRow {
    id: StaffId,
    email: String,
    name: String,
    role: String,
    password_hash: String,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
}

impl TryFrom<StaffRow> for Staff {
    type Error = AccountsError;

    fn try_from(r: StaffRow) -> Result<Self, AccountsError> {
        let role = r
            .role
            .parse()
            .map_err(|_| anyhow::anyhow!("staff {} has unknown role {:?}", r.id, r.role))?;
        Ok(Staff {
            id: r.id,
            email: Email::from_stored(r.email),
            name: r.name,
            role,
            created_at: r.created_at,
            disabled_at: r.disabled_at,
        })
    }
}

/// A staff user to create.
#[derive(Debug, Clone)]
pub struct NewStaff {
    /// Sign-in email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Initial password, at least 12 characters.
    pub password: String,
}

#[derive(Insertable)]
#[diesel(table_name = staff)]
#[diesel(treat_none_as_default_value = false)]
struct NewStaffRow<'a> {
    id: StaffId,
    email: &'a str,
    name: &'a str,
    role: &'a str,
    password_hash: &'a str,
    created_at: DateTime<Utc>,
}

fn check_password(password: &str) -> Result<(), AccountsError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(AccountsError::WeakPassword);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(AccountsError::PasswordTooLong);
    }
    Ok(())
}

/// A new random password of 20 letters and digits (about 119 bits), for accounts created by
/// tooling (the demo seed) that hands the password over once.
pub fn generate_password() -> String {
    tokens::random_string(tokens::ALNUM, 20)
}

/// Hashes a password with argon2id on the blocking pool.
async fn hash_password(password: String) -> Result<String, AccountsError> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?;
        Ok(hash.to_string())
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(AccountsError::from)
}

/// Verifies a password against a PHC string on the blocking pool.
async fn verify_password(password: String, phc: String) -> Result<bool, AccountsError> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        let parsed = PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(AccountsError::from)
}

/// Creates a staff user. `actor` is the admin creating them, or `Actor::System` for the CLI.
///
/// Errors: `INVALID_EMAIL`, `INVALID_NAME`, `WEAK_PASSWORD` / `PASSWORD_TOO_LONG`,
/// `DUPLICATE_EMAIL`.
pub async fn create_staff(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    input: NewStaff,
) -> Result<Staff, AccountsError> {
    let email = Email::parse(&input.email)?;
    let name = parse_name(&input.name)?;
    check_password(&input.password)?;
    let password_hash = hash_password(input.password).await?;
    let now = clock.now();
    let id = StaffId::new();

    conn.transaction::<_, AccountsError, _>(async |conn| {
        let row: StaffRow = diesel::insert_into(staff::table)
            .values(NewStaffRow {
                id,
                email: email.as_str(),
                name: &name,
                role: input.role.as_str(),
                password_hash: &password_hash,
                created_at: now,
            })
            .returning(StaffRow::as_returning())
            .get_result(conn)
            .await
            .map_err(|e| {
                if shared::error::is_unique_violation(&e, Some("staff_email_unique")) {
                    AccountsError::DuplicateEmail
                } else {
                    e.into()
                }
            })?;
        shared::audit::record(
            conn,
            &actor.entry(
                "staff.created",
                "staff",
                id.to_string(),
                serde_json::json!({ "role": input.role.as_str() }),
            ),
        )
        .await?;
        Staff::try_from(row)
    })
    .await
}

/// A staff user by id. Errors: `NOT_FOUND` (`staffId`).
pub async fn get_staff(
    conn: &mut AsyncPgConnection,
    staff_id: StaffId,
) -> Result<Staff, AccountsError> {
    let row = staff::table
        .find(staff_id)
        .select(StaffRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(AccountsError::NotFound("staffId"))?;
    Staff::try_from(row)
}

/// Makes `password` the password of the staff user with `email`, unless it is already: returns
/// the user and whether the password changed. Other sessions are left as they are. For demo
/// users whose password is printed on every run (`shiftcover seed` in development).
///
/// Errors: `INVALID_EMAIL`, `WEAK_PASSWORD` / `PASSWORD_TOO_LONG`, `NOT_FOUND` (`email`).
pub async fn ensure_staff_password(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    email: &str,
    password: &str,
) -> Result<(Staff, bool), AccountsError> {
    let email = Email::parse(email)?;
    check_password(password)?;
    let row: StaffRow = staff::table
        .filter(staff::email.eq(email.as_str()))
        .select(StaffRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(AccountsError::NotFound("email"))?;
    if verify_password(password.to_owned(), row.password_hash.clone()).await? {
        return Ok((Staff::try_from(row)?, false));
    }
    let password_hash = hash_password(password.to_owned()).await?;
    let id = row.id;
    conn.transaction::<_, AccountsError, _>(async |conn| {
        let row: StaffRow = diesel::update(staff::table.find(id))
            .set(staff::password_hash.eq(&password_hash))
            .returning(StaffRow::as_returning())
            .get_result(conn)
            .await?;
        shared::audit::record(
            conn,
            &actor.entry(
                "staff.password_set",
                "staff",
                id.to_string(),
                serde_json::json!({ "at": clock.now() }),
            ),
        )
        .await?;
        Ok((Staff::try_from(row)?, true))
    })
    .await
}

/// Disables a staff user and ends their sessions. Disabling twice is harmless.
/// Errors: `NOT_FOUND` (`staffId`).
pub async fn disable_staff(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    staff_id: StaffId,
) -> Result<Staff, AccountsError> {
    let now = clock.now();
    conn.transaction::<_, AccountsError, _>(async |conn| {
        let disabled: Option<StaffRow> = diesel::update(staff::table.find(staff_id))
            .filter(staff::disabled_at.is_null())
            .set(staff::disabled_at.eq(now))
            .returning(StaffRow::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        let Some(row) = disabled else {
            // Already disabled (nothing to do) or no such user.
            return get_staff(conn, staff_id).await;
        };
        let revoked = diesel::update(staff_sessions::table)
            .filter(staff_sessions::staff_id.eq(staff_id))
            .filter(staff_sessions::revoked_at.is_null())
            .set(staff_sessions::revoked_at.eq(now))
            .execute(conn)
            .await?;
        shared::audit::record(
            conn,
            &actor.entry(
                "staff.disabled",
                "staff",
                staff_id.to_string(),
                serde_json::json!({ "sessions_revoked": revoked }),
            ),
        )
        .await?;
        Staff::try_from(row)
    })
    .await
}

/// A staff sign-in: who, and the token (shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSignedIn {
    /// The signed-in user.
    pub principal: StaffPrincipal,
    /// The bearer token (`scs_…`); only its hash is kept.
    pub token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = staff_sessions)]
#[diesel(treat_none_as_default_value = false)]
struct NewStaffSession {
    id: StaffSessionId,
    staff_id: StaffId,
    token_hash: Vec<u8>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
}

/// Signs a staff user in with email and password.
///
/// Errors: `INVALID_CREDENTIALS` (unknown email, malformed email or wrong password, alike),
/// `ACCOUNT_DISABLED` (right password, disabled user).
pub async fn staff_sign_in(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    email: &str,
    password: &str,
) -> Result<StaffSignedIn, AccountsError> {
    let row: Option<StaffRow> = match Email::parse(email) {
        Ok(email) => staff::table
            .filter(staff::email.eq(email.as_str()))
            .select(StaffRow::as_select())
            .first(conn)
            .await
            .optional()?,
        Err(_) => None,
    };
    // Always run one argon2 verification, against a dummy hash when there is no user, so the
    // response time does not tell whether the email exists.
    let phc = row
        .as_ref()
        .map_or(DUMMY_PASSWORD_HASH, |r| r.password_hash.as_str())
        .to_owned();
    let verified = verify_password(password.to_owned(), phc).await?;
    let Some(row) = row.filter(|_| verified) else {
        tracing::info!("staff sign-in refused: invalid credentials");
        return Err(AccountsError::InvalidCredentials);
    };
    let staff = Staff::try_from(row)?;
    if staff.disabled_at.is_some() {
        return Err(AccountsError::AccountDisabled);
    }

    let now = clock.now();
    conn.transaction::<_, AccountsError, _>(async |conn| {
        let SessionToken {
            session_id,
            token,
            expires_at,
        } = create_staff_session(conn, staff.id, now).await?;
        shared::audit::record(
            conn,
            &Actor::Staff(staff.id).entry(
                "staff.signed_in",
                "staff",
                staff.id.to_string(),
                serde_json::json!({ "session_id": session_id.to_string() }),
            ),
        )
        .await?;
        Ok(StaffSignedIn {
            principal: StaffPrincipal {
                staff_id: staff.id,
                session_id,
                role: staff.role,
            },
            token,
            expires_at,
        })
    })
    .await
}

async fn create_staff_session(
    conn: &mut AsyncPgConnection,
    staff_id: StaffId,
    now: DateTime<Utc>,
) -> Result<SessionToken<StaffSessionId>, AccountsError> {
    let token = tokens::random_token(STAFF_TOKEN_PREFIX);
    let session_id = StaffSessionId::new();
    let expires_at = now + Duration::hours(STAFF_SESSION_HOURS);
    diesel::insert_into(staff_sessions::table)
        .values(NewStaffSession {
            id: session_id,
            staff_id,
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

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = staff_sessions)]
struct StaffSessionRow {
    id: StaffSessionId,
    staff_id: StaffId,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    last_seen_at: DateTime<Utc>,
}

/// Turns a staff bearer token into a principal, with the user's current role.
///
/// Errors: `UNAUTHENTICATED`, `SESSION_EXPIRED`, `SESSION_REVOKED`, `ACCOUNT_DISABLED`.
pub async fn authenticate_staff(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    token: &str,
) -> Result<StaffPrincipal, AuthError> {
    if !token.starts_with(STAFF_TOKEN_PREFIX) || token.len() != STAFF_TOKEN_PREFIX.len() + 43 {
        return Err(AuthError::Unauthenticated);
    }
    let now = clock.now();
    let row: Option<(StaffSessionRow, String, Option<DateTime<Utc>>)> = staff_sessions::table
        .inner_join(staff::table)
        .filter(staff_sessions::token_hash.eq(tokens::sha256(token)))
        .select((
            StaffSessionRow::as_select(),
            staff::role,
            staff::disabled_at,
        ))
        .first(conn)
        .await
        .optional()?;
    let Some((session, role, disabled_at)) = row else {
        return Err(AuthError::Unauthenticated);
    };
    if disabled_at.is_some() {
        return Err(AuthError::AccountDisabled);
    }
    if session.revoked_at.is_some() {
        return Err(AuthError::SessionRevoked);
    }
    if session.expires_at <= now {
        return Err(AuthError::SessionExpired);
    }
    // An unknown stored role would be a bug; refuse rather than guess a privilege.
    let role: Role = role.parse().map_err(|_| AuthError::Unauthenticated)?;
    if session.last_seen_at < now - Duration::minutes(LAST_SEEN_GRANULARITY_MINUTES) {
        diesel::update(staff_sessions::table.find(session.id))
            .set(staff_sessions::last_seen_at.eq(now))
            .execute(conn)
            .await?;
    }
    Ok(StaffPrincipal {
        staff_id: session.staff_id,
        session_id: session.id,
        role,
    })
}

/// Ends a staff session. Returns false when it had already ended.
pub async fn staff_sign_out(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    session_id: StaffSessionId,
) -> Result<bool, AccountsError> {
    let n = diesel::update(staff_sessions::table)
        .filter(staff_sessions::id.eq(session_id))
        .filter(staff_sessions::revoked_at.is_null())
        .set(staff_sessions::revoked_at.eq(clock.now()))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn admin_has_every_role_others_only_their_own() {
        for r in [Role::Ops, Role::Finance, Role::Admin] {
            assert!(Role::Admin.has(r));
            assert_eq!(r.as_str().parse::<Role>().ok(), Some(r));
        }
        assert!(Role::Ops.has(Role::Ops));
        assert!(!Role::Ops.has(Role::Finance));
        assert!(!Role::Ops.has(Role::Admin));
        assert!(Role::Finance.has(Role::Finance));
        assert!(!Role::Finance.has(Role::Ops));
        assert!(!Role::Finance.has(Role::Admin));
        assert!(matches!(
            "root".parse::<Role>(),
            Err(AccountsError::InvalidRole)
        ));
    }

    #[test]
    fn password_length_rules() {
        assert!(matches!(
            check_password("short-pass1"),
            Err(AccountsError::WeakPassword)
        ));
        assert!(check_password("twelve-chars").is_ok());
        let generated = generate_password();
        assert!(check_password(&generated).is_ok());
        assert_ne!(generated, generate_password());
        assert!(matches!(
            check_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)),
            Err(AccountsError::PasswordTooLong)
        ));
    }

    #[test]
    fn dummy_hash_uses_the_same_parameters_as_real_hashes() {
        // If the default parameters ever change, regenerate DUMMY_PASSWORD_HASH with them, or
        // unknown-email sign-ins become faster than real ones.
        let dummy = PasswordHash::new(DUMMY_PASSWORD_HASH).unwrap();
        let params = argon2::Params::try_from(&dummy).unwrap();
        let default = argon2::Params::default();
        assert_eq!(dummy.algorithm, argon2::Algorithm::Argon2id.ident());
        assert_eq!(params.m_cost(), default.m_cost());
        assert_eq!(params.t_cost(), default.t_cost());
        assert_eq!(params.p_cost(), default.p_cost());
        assert_eq!(params.output_len(), Some(32));
    }
}
