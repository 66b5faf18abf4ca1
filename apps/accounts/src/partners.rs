//! Partner platforms and their API keys.
//!
//! Invariants:
//! - a key reads `sck_live_<prefix>_<secret>` (or `sck_test_…`): an 8-character public prefix
//!   that finds the row, and 40 random letters and digits (about 238 bits); the plaintext is
//!   returned once and only its SHA-256 is stored, compared in constant time;
//! - a key is scoped (at least one [`Scope`]) and is either live or test, for life;
//! - rotation issues a new key with the same partner, scopes and mode, and gives the old key an
//!   expiry `overlap` from now (never later than an expiry it already had), so a partner can deploy
//!   the new key before the old one stops working;
//! - authentication tells unknown, revoked and expired keys apart, and refuses keys of a
//!   suspended partner; every creation, rotation and revocation writes an audit row.

use crate::error::{AccountsError, AuthError};
use crate::fields::parse_name;
use crate::ids::{ApiKeyId, PartnerId};
use crate::principal::{Actor, PartnerPrincipal};
use crate::schema::{partner_api_keys, partners};
use crate::tokens;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::Clock;
use std::fmt;
use std::str::FromStr;

/// Longest rotation overlap allowed: a week is enough to deploy a new key anywhere.
pub const MAX_ROTATION_OVERLAP_HOURS: i64 = 7 * 24;
/// Length of a key's public prefix.
pub const KEY_PREFIX_LEN: usize = 8;
/// Length of a key's secret part.
pub const KEY_SECRET_LEN: usize = 40;
/// `last_used_at` is refreshed at most this often, so authenticating is not a write per call.
pub const LAST_USED_GRANULARITY_SECONDS: i64 = 60;

/// Prefix of live partner API keys; every partner key starts with [`KEY_PREFIX`].
pub const LIVE_PREFIX: &str = "sck_live_";
/// Prefix of test-mode partner API keys.
pub const TEST_PREFIX: &str = "sck_test_";
/// What every partner API key starts with, live or test: how a bearer credential is told apart
/// from a driver's session token (`sct_`).
pub const KEY_PREFIX: &str = "sck_";

/// What a partner API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Link the partner's drivers to ShiftCover drivers (`drivers:link`).
    #[serde(rename = "drivers:link")]
    DriversLink,
    /// Send shift and job events that start and stop cover (`shifts:write`).
    #[serde(rename = "shifts:write")]
    ShiftsWrite,
    /// Ask whether a linked driver is covered (`cover:read`).
    #[serde(rename = "cover:read")]
    CoverRead,
    /// Manage the partner's webhook endpoints (`webhooks:manage`).
    #[serde(rename = "webhooks:manage")]
    WebhooksManage,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [
        Scope::DriversLink,
        Scope::ShiftsWrite,
        Scope::CoverRead,
        Scope::WebhooksManage,
    ];

    /// The stored and documented name, e.g. `shifts:write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::DriversLink => "drivers:link",
            Scope::ShiftsWrite => "shifts:write",
            Scope::CoverRead => "cover:read",
            Scope::WebhooksManage => "webhooks:manage",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = AccountsError;

    /// Errors: `INVALID_SCOPE`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or(AccountsError::InvalidScope("unknown scope"))
    }
}

/// Whether a partner may call the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartnerStatus {
    /// Its keys work.
    Active,
    /// Its keys are refused (`ACCOUNT_DISABLED`) until ops reactivate it.
    Suspended,
}

impl PartnerStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PartnerStatus::Active => "active",
            PartnerStatus::Suspended => "suspended",
        }
    }

    fn parse_stored(s: &str) -> Option<Self> {
        match s {
            "active" => Some(PartnerStatus::Active),
            "suspended" => Some(PartnerStatus::Suspended),
            _ => None,
        }
    }
}

/// A partner platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partner {
    /// The partner.
    pub id: PartnerId,
    /// Its display name.
    pub name: String,
    /// Whether its keys work.
    pub status: PartnerStatus,
    /// When it was set up.
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = partners)]
struct PartnerRow {
    id: PartnerId,
    name: String,
    status: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<PartnerRow> for Partner {
    type Error = AccountsError;

    fn try_from(r: PartnerRow) -> Result<Self, AccountsError> {
        let status = PartnerStatus::parse_stored(&r.status)
            .ok_or_else(|| anyhow::anyhow!("partner {} has unknown status {:?}", r.id, r.status))?;
        Ok(Partner {
            id: r.id,
            name: r.name,
            status,
            created_at: r.created_at,
        })
    }
}

/// An API key as shown to ops and the partner: never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    /// The key.
    pub id: ApiKeyId,
    /// Its partner.
    pub partner_id: PartnerId,
    /// Its public prefix (the 8 characters after `sck_live_`), to tell keys apart.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Test keys see and create only test data.
    pub test_mode: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if it does (set by rotation).
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Roughly when it was last used (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = partner_api_keys)]
struct ApiKeyRow {
    id: ApiKeyId,
    partner_id: PartnerId,
    prefix: String,
    key_hash: Vec<u8>,
    scopes: Vec<String>,
    test_mode: bool,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

/// Stored scopes that this build does not know (a scope retired since) are dropped, never guessed.
fn known_scopes(stored: &[String]) -> Vec<Scope> {
    stored.iter().filter_map(|s| s.parse().ok()).collect()
}

impl From<ApiKeyRow> for ApiKeyInfo {
    fn from(r: ApiKeyRow) -> Self {
        ApiKeyInfo {
            id: r.id,
            partner_id: r.partner_id,
            prefix: r.prefix,
            scopes: known_scopes(&r.scopes),
            test_mode: r.test_mode,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = partners)]
#[diesel(treat_none_as_default_value = false)]
struct NewPartnerRow<'a> {
    id: PartnerId,
    name: &'a str,
    status: &'a str,
    created_at: DateTime<Utc>,
}

/// Sets up a partner. Errors: `INVALID_NAME`.
pub async fn create_partner(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    name: &str,
) -> Result<Partner, AccountsError> {
    create_partner_because(conn, clock, actor, name, None).await
}

/// [`create_partner`], with the reason the person gave, kept in the audit log.
pub async fn create_partner_because(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    name: &str,
    reason: Option<&str>,
) -> Result<Partner, AccountsError> {
    let name = parse_name(name)?;
    let now = clock.now();
    let id = PartnerId::new();
    conn.transaction::<_, AccountsError, _>(async |conn| {
        let row: PartnerRow = diesel::insert_into(partners::table)
            .values(NewPartnerRow {
                id,
                name: &name,
                status: PartnerStatus::Active.as_str(),
                created_at: now,
            })
            .returning(PartnerRow::as_returning())
            .get_result(conn)
            .await?;
        shared::audit::record(
            conn,
            &actor.entry_because(
                "partner.created",
                "partner",
                id.to_string(),
                reason,
                serde_json::json!({ "name": name }),
            ),
        )
        .await?;
        Partner::try_from(row)
    })
    .await
}

/// A partner by id. Errors: `NOT_FOUND` (`partnerId`).
pub async fn get_partner(
    conn: &mut AsyncPgConnection,
    partner_id: PartnerId,
) -> Result<Partner, AccountsError> {
    let row = partners::table
        .find(partner_id)
        .select(PartnerRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(AccountsError::NotFound("partnerId"))?;
    Partner::try_from(row)
}

/// Every partner, by name.
pub async fn list_partners(conn: &mut AsyncPgConnection) -> Result<Vec<Partner>, AccountsError> {
    partners::table
        .order((partners::name.asc(), partners::id.asc()))
        .select(PartnerRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(Partner::try_from)
        .collect()
}

/// Suspends or reactivates a partner. Errors: `NOT_FOUND` (`partnerId`).
pub async fn set_partner_status(
    conn: &mut AsyncPgConnection,
    actor: Actor,
    partner_id: PartnerId,
    status: PartnerStatus,
) -> Result<Partner, AccountsError> {
    conn.transaction::<_, AccountsError, _>(async |conn| {
        let row: PartnerRow = diesel::update(partners::table.find(partner_id))
            .set(partners::status.eq(status.as_str()))
            .returning(PartnerRow::as_returning())
            .get_result(conn)
            .await
            .optional()?
            .ok_or(AccountsError::NotFound("partnerId"))?;
        shared::audit::record(
            conn,
            &actor.entry(
                "partner.status_changed",
                "partner",
                partner_id.to_string(),
                serde_json::json!({ "status": status.as_str() }),
            ),
        )
        .await?;
        Partner::try_from(row)
    })
    .await
}

#[derive(Insertable)]
#[diesel(table_name = partner_api_keys)]
#[diesel(treat_none_as_default_value = false)]
struct NewApiKeyRow {
    id: ApiKeyId,
    partner_id: PartnerId,
    prefix: String,
    key_hash: Vec<u8>,
    scopes: Vec<String>,
    test_mode: bool,
    created_at: DateTime<Utc>,
}

/// Sorted, without duplicates, at least one.
fn normalise_scopes(scopes: &[Scope]) -> Result<Vec<Scope>, AccountsError> {
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(AccountsError::InvalidScope("choose at least one scope"));
    }
    Ok(scopes)
}

/// Inserts a new key and returns it with its plaintext. Runs inside the caller's transaction.
async fn insert_key(
    conn: &mut AsyncPgConnection,
    partner_id: PartnerId,
    scopes: &[Scope],
    test_mode: bool,
    now: DateTime<Utc>,
) -> Result<(ApiKeyInfo, String), AccountsError> {
    let prefix = tokens::random_string(tokens::LOWER_ALNUM, KEY_PREFIX_LEN);
    let secret = tokens::random_string(tokens::ALNUM, KEY_SECRET_LEN);
    let mode = if test_mode { TEST_PREFIX } else { LIVE_PREFIX };
    let plaintext = format!("{mode}{prefix}_{secret}");
    insert_key_row(conn, partner_id, scopes, test_mode, prefix, plaintext, now).await
}

async fn insert_key_row(
    conn: &mut AsyncPgConnection,
    partner_id: PartnerId,
    scopes: &[Scope],
    test_mode: bool,
    prefix: String,
    plaintext: String,
    now: DateTime<Utc>,
) -> Result<(ApiKeyInfo, String), AccountsError> {
    // 36^8 prefixes make a collision very unlikely; if one happens the unique constraint fails
    // the transaction and the caller gets an internal error to retry, never a shared prefix.
    let row: ApiKeyRow = diesel::insert_into(partner_api_keys::table)
        .values(NewApiKeyRow {
            id: ApiKeyId::new(),
            partner_id,
            prefix,
            key_hash: tokens::sha256(&plaintext),
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            test_mode,
            created_at: now,
        })
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)
        .await?;
    Ok((ApiKeyInfo::from(row), plaintext))
}

/// Creates an API key for a partner. The plaintext (`sck_live_…` / `sck_test_…`) is returned
/// this once; only its hash is kept.
///
/// Errors: `INVALID_SCOPE` (none given), `NOT_FOUND` (`partnerId`).
pub async fn create_api_key(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    partner_id: PartnerId,
    scopes: &[Scope],
    test_mode: bool,
) -> Result<(ApiKeyInfo, String), AccountsError> {
    create_api_key_because(conn, clock, actor, partner_id, scopes, test_mode, None).await
}

/// [`create_api_key`], with the reason the person gave, kept in the audit log.
pub async fn create_api_key_because(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    partner_id: PartnerId,
    scopes: &[Scope],
    test_mode: bool,
    reason: Option<&str>,
) -> Result<(ApiKeyInfo, String), AccountsError> {
    let scopes = normalise_scopes(scopes)?;
    let now = clock.now();
    conn.transaction::<_, AccountsError, _>(async |conn| {
        let exists = partners::table
            .find(partner_id)
            .select(partners::id)
            .first::<PartnerId>(conn)
            .await
            .optional()?;
        if exists.is_none() {
            return Err(AccountsError::NotFound("partnerId"));
        }
        let (info, plaintext) = insert_key(conn, partner_id, &scopes, test_mode, now).await?;
        shared::audit::record(
            conn,
            &actor.entry_because(
                "partner.api_key_created",
                "partner_api_key",
                info.id.to_string(),
                reason,
                serde_json::json!({
                    "partner_id": partner_id.to_string(),
                    "prefix": info.prefix,
                    "scopes": scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    "test_mode": test_mode,
                }),
            ),
        )
        .await?;
        Ok((info, plaintext))
    })
    .await
}

/// Gives a partner the key `plaintext` (a well-formed `sck_test_…` or `sck_live_…`) unless it
/// has it already; returns the key and whether it was created now. For demo data that must print
/// the same key on every run (`shiftcover seed` in development): real keys come from
/// [`create_api_key`], whose secret nobody chose.
///
/// Errors: `INVALID_SCOPE` (none given); `NOT_FOUND` (`partnerId`; also `apiKey` when the text is
/// not a well-formed key, or its prefix belongs to another key).
pub async fn ensure_api_key_with_plaintext(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    partner_id: PartnerId,
    scopes: &[Scope],
    plaintext: &str,
) -> Result<(ApiKeyInfo, bool), AccountsError> {
    let scopes = normalise_scopes(scopes)?;
    let (test_mode, prefix) = parse_key(plaintext).ok_or(AccountsError::NotFound("apiKey"))?;
    let now = clock.now();
    conn.transaction::<_, AccountsError, _>(async |conn| {
        partners::table
            .find(partner_id)
            .select(partners::id)
            .for_update()
            .first::<PartnerId>(conn)
            .await
            .optional()?
            .ok_or(AccountsError::NotFound("partnerId"))?;
        let existing: Option<ApiKeyRow> = partner_api_keys::table
            .filter(partner_api_keys::prefix.eq(prefix))
            .select(ApiKeyRow::as_select())
            .first(conn)
            .await
            .optional()?;
        if let Some(row) = existing {
            let same = row.partner_id == partner_id
                && row.key_hash == tokens::sha256(plaintext)
                && row.test_mode == test_mode;
            return if same {
                Ok((ApiKeyInfo::from(row), false))
            } else {
                Err(AccountsError::NotFound("apiKey"))
            };
        }
        let (info, _) = insert_key_row(
            conn,
            partner_id,
            &scopes,
            test_mode,
            prefix.to_owned(),
            plaintext.to_owned(),
            now,
        )
        .await?;
        shared::audit::record(
            conn,
            &actor.entry(
                "partner.api_key_created",
                "partner_api_key",
                info.id.to_string(),
                serde_json::json!({
                    "partner_id": partner_id.to_string(),
                    "prefix": info.prefix,
                    "scopes": scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    "test_mode": test_mode,
                    "chosen_secret": true,
                }),
            ),
        )
        .await?;
        Ok((info, true))
    })
    .await
}

/// Replaces a key: creates a new one with the same partner, scopes and mode, and makes the old
/// one expire `overlap` from now. Returns the new key and its plaintext.
///
/// Errors: `INVALID_OVERLAP` (negative or over a week), `NOT_FOUND` (`keyId`), `API_KEY_REVOKED`,
/// `API_KEY_EXPIRED`.
pub async fn rotate_api_key(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    key_id: ApiKeyId,
    overlap: Duration,
) -> Result<(ApiKeyInfo, String), AccountsError> {
    rotate_api_key_because(conn, clock, actor, key_id, overlap, None).await
}

/// [`rotate_api_key`], with the reason the person gave, kept in the audit log.
pub async fn rotate_api_key_because(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    key_id: ApiKeyId,
    overlap: Duration,
    reason: Option<&str>,
) -> Result<(ApiKeyInfo, String), AccountsError> {
    if overlap < Duration::zero() || overlap > Duration::hours(MAX_ROTATION_OVERLAP_HOURS) {
        return Err(AccountsError::InvalidOverlap);
    }
    let now = clock.now();
    conn.transaction::<_, AccountsError, _>(async |conn| {
        // Lock the old key so two concurrent rotations cannot both issue a successor.
        let old: ApiKeyRow = partner_api_keys::table
            .find(key_id)
            .select(ApiKeyRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or(AccountsError::NotFound("keyId"))?;
        if old.revoked_at.is_some() {
            return Err(AccountsError::ApiKeyRevoked);
        }
        if old.expires_at.is_some_and(|at| at <= now) {
            return Err(AccountsError::ApiKeyExpired);
        }
        let scopes = known_scopes(&old.scopes);
        if scopes.is_empty() {
            return Err(AccountsError::InvalidScope(
                "the key has no scope this version knows",
            ));
        }
        let old_expires_at = match old.expires_at {
            Some(at) if at < now + overlap => at,
            _ => now + overlap,
        };
        diesel::update(partner_api_keys::table.find(key_id))
            .set(partner_api_keys::expires_at.eq(old_expires_at))
            .execute(conn)
            .await?;
        let (info, plaintext) =
            insert_key(conn, old.partner_id, &scopes, old.test_mode, now).await?;
        shared::audit::record(
            conn,
            &actor.entry_because(
                "partner.api_key_rotated",
                "partner_api_key",
                key_id.to_string(),
                reason,
                serde_json::json!({
                    "partner_id": old.partner_id.to_string(),
                    "new_key_id": info.id.to_string(),
                    "new_prefix": info.prefix,
                    "old_key_expires_at": old_expires_at,
                }),
            ),
        )
        .await?;
        Ok((info, plaintext))
    })
    .await
}

/// Revokes a key at once. Revoking twice is harmless (the first revocation time stays).
///
/// Errors: `NOT_FOUND` (`keyId`).
pub async fn revoke_api_key(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    key_id: ApiKeyId,
) -> Result<ApiKeyInfo, AccountsError> {
    revoke_api_key_because(conn, clock, actor, key_id, None).await
}

/// [`revoke_api_key`], with the reason the person gave, kept in the audit log.
pub async fn revoke_api_key_because(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    key_id: ApiKeyId,
    reason: Option<&str>,
) -> Result<ApiKeyInfo, AccountsError> {
    let now = clock.now();
    conn.transaction::<_, AccountsError, _>(async |conn| {
        let revoked: Option<ApiKeyRow> = diesel::update(partner_api_keys::table.find(key_id))
            .filter(partner_api_keys::revoked_at.is_null())
            .set(partner_api_keys::revoked_at.eq(now))
            .returning(ApiKeyRow::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        let Some(row) = revoked else {
            return get_api_key(conn, key_id).await;
        };
        shared::audit::record(
            conn,
            &actor.entry_because(
                "partner.api_key_revoked",
                "partner_api_key",
                key_id.to_string(),
                reason,
                serde_json::json!({
                    "partner_id": row.partner_id.to_string(),
                    "prefix": row.prefix,
                }),
            ),
        )
        .await?;
        Ok(ApiKeyInfo::from(row))
    })
    .await
}

/// A key by id. Errors: `NOT_FOUND` (`keyId`).
pub async fn get_api_key(
    conn: &mut AsyncPgConnection,
    key_id: ApiKeyId,
) -> Result<ApiKeyInfo, AccountsError> {
    partner_api_keys::table
        .find(key_id)
        .select(ApiKeyRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(ApiKeyInfo::from)
        .ok_or(AccountsError::NotFound("keyId"))
}

/// A partner's keys, oldest first, revoked and expired ones included.
pub async fn list_api_keys(
    conn: &mut AsyncPgConnection,
    partner_id: PartnerId,
) -> Result<Vec<ApiKeyInfo>, AccountsError> {
    Ok(partner_api_keys::table
        .filter(partner_api_keys::partner_id.eq(partner_id))
        .order((
            partner_api_keys::created_at.asc(),
            partner_api_keys::id.asc(),
        ))
        .select(ApiKeyRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(ApiKeyInfo::from)
        .collect())
}

/// Splits `sck_live_<prefix>_<secret>` into (test_mode, prefix); `None` when malformed.
fn parse_key(token: &str) -> Option<(bool, &str)> {
    let (test_mode, rest) = if let Some(rest) = token.strip_prefix(LIVE_PREFIX) {
        (false, rest)
    } else {
        (true, token.strip_prefix(TEST_PREFIX)?)
    };
    let (prefix, secret) = rest.split_once('_')?;
    let well_formed = prefix.len() == KEY_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && secret.len() == KEY_SECRET_LEN
        && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    well_formed.then_some((test_mode, prefix))
}

/// Turns a partner's API key into a principal.
///
/// Errors: `UNAUTHENTICATED` (malformed, unknown prefix, or wrong secret), `API_KEY_REVOKED`,
/// `API_KEY_EXPIRED`, `ACCOUNT_DISABLED` (partner suspended).
pub async fn authenticate_partner_key(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    token: &str,
) -> Result<PartnerPrincipal, AuthError> {
    let Some((test_mode, prefix)) = parse_key(token) else {
        return Err(AuthError::Unauthenticated);
    };
    let now = clock.now();
    let presented = tokens::sha256(token);
    let row: Option<(ApiKeyRow, String)> = partner_api_keys::table
        .inner_join(partners::table)
        .filter(partner_api_keys::prefix.eq(prefix))
        .select((ApiKeyRow::as_select(), partners::status))
        .first(conn)
        .await
        .optional()?;
    let Some((key, partner_status)) = row else {
        // Same comparison work as a known prefix with a wrong secret.
        let _ = tokens::ct_eq(&presented, &[0u8; 32]);
        return Err(AuthError::Unauthenticated);
    };
    // The prefix is public (it appears in logs and the dashboard); only the hash proves the key.
    if !tokens::ct_eq(&presented, &key.key_hash) || key.test_mode != test_mode {
        return Err(AuthError::Unauthenticated);
    }
    if key.revoked_at.is_some() {
        return Err(AuthError::ApiKeyRevoked);
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(AuthError::ApiKeyExpired);
    }
    if PartnerStatus::parse_stored(&partner_status) != Some(PartnerStatus::Active) {
        return Err(AuthError::AccountDisabled);
    }
    if key
        .last_used_at
        .is_none_or(|at| at < now - Duration::seconds(LAST_USED_GRANULARITY_SECONDS))
    {
        diesel::update(partner_api_keys::table.find(key.id))
            .set(partner_api_keys::last_used_at.eq(now))
            .execute(conn)
            .await?;
    }
    Ok(PartnerPrincipal {
        partner_id: key.partner_id,
        key_id: key.id,
        scopes: known_scopes(&key.scopes),
        test_mode: key.test_mode,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_through_their_names() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().ok(), Some(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        assert!(matches!(
            "drivers:delete".parse::<Scope>(),
            Err(AccountsError::InvalidScope(_))
        ));
        assert_eq!(
            normalise_scopes(&[Scope::CoverRead, Scope::DriversLink, Scope::CoverRead]).ok(),
            Some(vec![Scope::DriversLink, Scope::CoverRead])
        );
        assert!(matches!(
            normalise_scopes(&[]),
            Err(AccountsError::InvalidScope(_))
        ));
        assert_eq!(
            known_scopes(&["cover:read".into(), "retired:scope".into()]),
            vec![Scope::CoverRead]
        );
    }

    #[test]
    fn key_format_is_checked_before_any_lookup() {
        let secret = "A".repeat(KEY_SECRET_LEN);
        assert_eq!(
            parse_key(&format!("sck_live_abcd1234_{secret}")),
            Some((false, "abcd1234"))
        );
        assert_eq!(
            parse_key(&format!("sck_test_abcd1234_{secret}")),
            Some((true, "abcd1234"))
        );
        for bad in [
            String::new(),
            format!("sck_prod_abcd1234_{secret}"),
            format!("sck_live_ABCD1234_{secret}"),
            format!("sck_live_abcd123_{secret}"),
            format!("sck_live_abcd1234{secret}"),
            format!("sck_live_abcd1234_{}", &secret[1..]),
            format!("sck_live_abcd1234_{secret}_"),
            "sct_whatever".to_owned(),
        ] {
            assert_eq!(parse_key(&bad), None, "{bad}");
        }
    }
}
