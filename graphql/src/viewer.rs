//! Establishing the viewer of an HTTP request, before any GraphQL executes.
//!
//! Credentials, in order:
//! - `Authorization: Bearer <token>`: a driver's session token (`sct_…`) or a partner's API key
//!   (`sck_live_…` / `sck_test_…`), told apart by the prefixes the accounts app gives them;
//! - otherwise the staff session cookie ([`STAFF_COOKIE`]), set by `staffSignIn`: `HttpOnly` so
//!   page scripts cannot read it, `SameSite=Strict` so other sites cannot make a browser send it,
//!   and `Secure` unless settings turn that off for plain-HTTP development;
//! - otherwise the request is anonymous.
//!
//! A credential that is presented but not accepted (malformed, unknown, expired, revoked, of a
//! disabled account) refuses the whole request with `UNAUTHENTICATED` and an `extensions.reason`
//! naming which (`SESSION_EXPIRED`, `SESSION_REVOKED`, …), rather than running it anonymously:
//! a client holding a dead credential learns so at once. A refused staff cookie is cleared in the
//! same response so that the browser can sign in again.
//!
//! Partner calls are rate limited per key and per partner over all its keys
//! ([`accounts::rate_limit::partner_api_per_key`], [`accounts::rate_limit::partner_api_per_partner`],
//! limits from settings), failing open when Redis is down: an outage of the limiter must not stop
//! cover being switched.

use crate::context::Viewer;
use accounts::rate_limit::{self, RateLimitError};
use accounts::{AuthError, Principal};
use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::header;
use chrono::{DateTime, Utc};
use shared::core::Core;

/// Name of the staff session cookie.
pub const STAFF_COOKIE: &str = "shiftcover_staff";

/// A credential found on a request, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// None presented.
    None,
    /// A bearer token with a driver session prefix.
    DriverToken(String),
    /// A bearer token with a partner API key prefix.
    PartnerKey(String),
    /// The staff session cookie's value.
    StaffCookie(String),
    /// An `Authorization` header that is not a bearer token of ours.
    Unrecognised,
}

/// Finds the request's credential. The `Authorization` header wins over the cookie.
pub fn credential(req: &HttpRequest) -> Credential {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else {
            return Credential::Unrecognised;
        };
        return bearer_credential(value);
    }
    match req.cookie(STAFF_COOKIE) {
        Some(c) if !c.value().is_empty() => Credential::StaffCookie(c.value().to_owned()),
        _ => Credential::None,
    }
}

/// Reads `Bearer <token>` (the scheme is case-insensitive).
pub fn bearer_credential(value: &str) -> Credential {
    let value = value.trim();
    let Some((scheme, token)) = value.split_once(' ') else {
        return Credential::Unrecognised;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credential::Unrecognised;
    }
    let token = token.trim();
    if token.starts_with(accounts::sessions::DRIVER_TOKEN_PREFIX) {
        Credential::DriverToken(token.to_owned())
    } else if token.starts_with(accounts::partners::KEY_PREFIX) {
        Credential::PartnerKey(token.to_owned())
    } else {
        // Staff tokens travel only in their cookie; anything else is not ours.
        Credential::Unrecognised
    }
}

/// Why a request was refused before execution.
#[derive(Debug)]
pub enum Refusal {
    /// The credential was not accepted. `reason` is the accounts app's code for why.
    Unauthenticated {
        /// `UNAUTHENTICATED`, `SESSION_EXPIRED`, `SESSION_REVOKED`, `API_KEY_EXPIRED`,
        /// `API_KEY_REVOKED` or `ACCOUNT_DISABLED`.
        reason: &'static str,
        /// A sentence for people.
        message: String,
        /// The credential was the staff cookie, which the response should clear.
        clear_cookie: bool,
    },
    /// A partner key over its rate limit.
    RateLimited {
        /// Seconds until calls are accepted again.
        retry_after_secs: u64,
        /// Which limit was reached.
        by: LimitedBy,
        /// Requests allowed per minute under that limit.
        limit: u32,
    },
    /// The credential could not be checked (the database is unavailable).
    Unavailable(anyhow::Error),
}

/// Which partner rate limit a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedBy {
    /// The API key's own limit.
    Key,
    /// The partner's limit over all its keys.
    Partner,
}

fn refused(err: AuthError, clear_cookie: bool) -> Refusal {
    match err.user_error() {
        Some(user) => Refusal::Unauthenticated {
            reason: user.code,
            message: user.message,
            clear_cookie,
        },
        None => Refusal::Unavailable(anyhow::Error::new(err)),
    }
}

/// Authenticates the request's credential and, for partners, counts the call against the key's
/// rate limit.
pub async fn authenticate(core: &Core, req: &HttpRequest) -> Result<Viewer, Refusal> {
    let principal = match credential(req) {
        Credential::None => Principal::Anonymous,
        Credential::Unrecognised => return Err(refused(AuthError::Unauthenticated, false)),
        // Drivers are most requests: their sessions are read in batches, with no connection.
        Credential::DriverToken(token) => accounts::authenticate_driver_batched(core, &token)
            .await
            .map(Principal::Driver)
            .map_err(|e| refused(e, false))?,
        Credential::PartnerKey(key) => {
            let partner = accounts::authenticate_partner_key(
                &mut *pooled(core).await?,
                core.clock.as_ref(),
                &key,
            )
            .await
            .map_err(|e| refused(e, false))?;
            check_partner_rate_limit(core, &partner).await?;
            Principal::Partner(partner)
        }
        Credential::StaffCookie(token) => {
            accounts::authenticate_staff(&mut *pooled(core).await?, core.clock.as_ref(), &token)
                .await
                .map(Principal::Staff)
                .map_err(|e| refused(e, true))?
        }
    };
    Ok(Viewer(principal))
}

async fn pooled(core: &Core) -> Result<shared::DbConn, Refusal> {
    core.pool
        .get()
        .await
        .map_err(|e| Refusal::Unavailable(anyhow::anyhow!("database pool: {e}")))
}

async fn check_partner_rate_limit(
    core: &Core,
    partner: &accounts::PartnerPrincipal,
) -> Result<(), Refusal> {
    let mut redis = match core.redis.conn().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "partner rate limit skipped: Redis unavailable");
            return Ok(());
        }
    };
    let limits = &core.settings.accounts;
    let checks = [
        (
            rate_limit::partner_api_per_key(limits.partner_key_requests_per_minute),
            partner.key_id.to_string(),
            LimitedBy::Key,
        ),
        (
            rate_limit::partner_api_per_partner(limits.partner_requests_per_minute),
            partner.partner_id.to_string(),
            LimitedBy::Partner,
        ),
    ];
    for (policy, subject, by) in checks {
        match rate_limit::check_policy(&mut redis, core.redis.prefix(), &policy, &subject).await {
            Ok(()) => {}
            Err(RateLimitError::Limited(limited)) => {
                tracing::info!(partner_id = %partner.partner_id, key_id = %partner.key_id, by = ?by, "partner rate limited");
                return Err(Refusal::RateLimited {
                    retry_after_secs: limited.retry_after_secs,
                    by,
                    limit: policy.limit,
                });
            }
            Err(RateLimitError::Redis(e)) => {
                tracing::warn!(error = %e, "partner rate limit skipped: Redis unavailable");
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The viewer of a request to one of the document routes (certificates, statements, photos,
/// CSV files), or the plain-JSON answer that replaces the document when the credential is
/// refused: 401 with the reason (and `WWW-Authenticate: Bearer`), 429 with `Retry-After`, 503
/// when credentials cannot be checked. `what` names the route in logs.
pub async fn authenticate_document(
    core: &Core,
    req: &HttpRequest,
    what: &str,
) -> Result<Viewer, actix_web::HttpResponse> {
    use actix_web::HttpResponse;
    match authenticate(core, req).await {
        Ok(v) => Ok(v),
        Err(Refusal::Unauthenticated { reason, .. }) => Err(HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({ "error": "UNAUTHENTICATED", "reason": reason }))),
        Err(Refusal::RateLimited {
            retry_after_secs, ..
        }) => Err(HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
            .finish()),
        Err(Refusal::Unavailable(e)) => {
            tracing::error!(error = %format!("{e:#}"), "{what}: credential check failed");
            Err(HttpResponse::ServiceUnavailable().finish())
        }
    }
}

/// The `Set-Cookie` value that stores a staff session token until `expires_at`.
pub fn staff_session_cookie(
    token: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    secure: bool,
) -> String {
    let max_age = (expires_at - now).num_seconds().max(0);
    Cookie::build(STAFF_COOKIE, token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(time::Duration::seconds(max_age))
        .finish()
        .to_string()
}

/// The `Set-Cookie` value that removes the staff session cookie.
pub fn clear_staff_session_cookie(secure: bool) -> String {
    Cookie::build(STAFF_COOKIE, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(time::Duration::ZERO)
        .expires(time::OffsetDateTime::UNIX_EPOCH)
        .finish()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_told_apart_by_prefix() {
        assert_eq!(
            bearer_credential("Bearer sct_abc"),
            Credential::DriverToken("sct_abc".into())
        );
        assert_eq!(
            bearer_credential("bearer  sck_live_abc_def "),
            Credential::PartnerKey("sck_live_abc_def".into())
        );
        assert_eq!(
            bearer_credential("Bearer sck_test_abc_def"),
            Credential::PartnerKey("sck_test_abc_def".into())
        );
        assert_eq!(
            bearer_credential("Bearer scs_staff"),
            Credential::Unrecognised
        );
        assert_eq!(
            bearer_credential("Basic dXNlcg=="),
            Credential::Unrecognised
        );
        assert_eq!(bearer_credential("Bearer"), Credential::Unrecognised);
        assert_eq!(bearer_credential("Bearer xyz"), Credential::Unrecognised);
    }

    #[test]
    fn the_staff_cookie_is_http_only_strict_and_secure_when_asked() {
        let now = Utc::now();
        let set = staff_session_cookie("scs_t", now, now + chrono::Duration::hours(12), true);
        assert!(set.starts_with("shiftcover_staff=scs_t"), "{set}");
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
            "Max-Age=43200",
        ] {
            assert!(set.contains(part), "{part} missing in {set}");
        }
        let plain = staff_session_cookie("scs_t", now, now + chrono::Duration::hours(1), false);
        assert!(!plain.contains("Secure"), "{plain}");
        let clear = clear_staff_session_cookie(false);
        assert!(clear.contains("Max-Age=0"), "{clear}");
        assert!(clear.starts_with("shiftcover_staff=;"), "{clear}");
    }
}
