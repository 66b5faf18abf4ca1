//! Signed proof of cover: a token anyone can check, online or offline.
//!
//! A token is a compact JWS (RFC 7515) signed with EdDSA over Ed25519 (RFC 8037), a JWT any JOSE
//! library checks against the published JWK set (`/.well-known/shiftcover-cover-key.json`):
//!
//! - header `{"alg":"EdDSA","kid":"…","typ":"JWT"}`, the `kid` naming the key
//!   ([`ProofKey::key_id`]);
//! - claims `{"iss":"shiftcover","sub":"SC-7K4Q-9XM2","vrm":"AB12CDE","nbf":…,"iat":…,"exp":…}`:
//!   the certificate number, the registration (absent for pedal cycles), when cover started,
//!   when the token was issued and when it stops proving anything, in Unix seconds.
//!
//! A token proves cover offline for [`TOKEN_LIFETIME_MINUTES`] at most, and never past the
//! session's own end ([`ProofClaims::for_session`]): the app fetches a fresh one while cover
//! runs, so a token shown after cover ended does not keep claiming it. The key is derived from
//! the `cover.signing_key` seed.
//!
//! [`cover_status`] answers the roadside question "is this vehicle covered now?" online, from a
//! genuine token of any age (it names the certificate): `Covered` only while its session is
//! active and inside its own deadlines, `Expired` after; a forged or damaged token is
//! `NotCovered`.

use crate::error::CoverError;
use crate::sessions::find_by_certificate_number;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};
use shared::Clock;
use shared::settings::CoverSettings;
use std::fmt;

pub use ed25519_dalek::VerifyingKey;

/// The issuer every token names (`iss`).
pub const ISSUER: &str = "shiftcover";
/// How long a token proves cover offline after it is issued, at most.
pub const TOKEN_LIFETIME_MINUTES: i64 = 15;
/// The longest token accepted, in bytes (a real one is about 300).
pub const MAX_TOKEN_BYTES: usize = 1024;

/// What a proof-of-cover token states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProofClaims {
    /// The certificate number (`sub`).
    pub certificate_number: String,
    /// The vehicle's registration (`vrm`); `None` for bicycles and e-bikes.
    pub registration: Option<String>,
    /// Cover started (the session's start; `nbf`).
    pub valid_from: DateTime<Utc>,
    /// When the token was issued (`iat`).
    pub issued_at: DateTime<Utc>,
    /// When the token stops proving cover offline (`exp`): [`TOKEN_LIFETIME_MINUTES`] after it
    /// was issued, or the session's end when that comes first.
    pub valid_until: DateTime<Utc>,
}

impl ProofClaims {
    /// The claims of a token issued at `now` for a session: offline proof for
    /// [`TOKEN_LIFETIME_MINUTES`] at most and never past the session's end (or latest end while
    /// it runs); a token of an ended session is already expired.
    pub fn for_session(
        session: &crate::sessions::CoverSession,
        registration: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let lifetime = now + chrono::Duration::minutes(TOKEN_LIFETIME_MINUTES);
        ProofClaims {
            certificate_number: session.certificate_number.clone(),
            registration,
            valid_from: session.started_at,
            issued_at: now,
            valid_until: lifetime.min(session.covered_until()),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    iss: String,
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vrm: Option<String>,
    nbf: i64,
    iat: i64,
    exp: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of ours: wrong shape, bad encoding, unknown version.
    #[error("malformed token")]
    Malformed,
    /// Well formed, but the signature does not match (forged or altered).
    #[error("bad signature")]
    BadSignature,
}

impl TokenError {
    /// A stable reason: `malformed_token` or `bad_signature`.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed_token",
            TokenError::BadSignature => "bad_signature",
        }
    }
}

/// The key that signs proof-of-cover tokens.
#[derive(Clone)]
pub struct ProofKey {
    signing: SigningKey,
}

impl fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl ProofKey {
    /// The key derived from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The key derived from a seed in base64 (standard or URL-safe alphabet).
    pub fn from_seed_base64(seed: &str) -> anyhow::Result<Self> {
        let seed = seed.trim();
        let bytes = STANDARD
            .decode(seed)
            .or_else(|_| URL_SAFE_NO_PAD.decode(seed.trim_end_matches('=')))
            .map_err(|_| anyhow::anyhow!("cover.signing_key is not base64"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("cover.signing_key must be 32 bytes"))?;
        Ok(Self::from_seed(&seed))
    }

    /// The key configured in `cover.signing_key`.
    pub fn from_settings(settings: &CoverSettings) -> anyhow::Result<Self> {
        Self::from_seed_base64(settings.signing_key.expose())
    }

    /// The public key that checks this key's tokens.
    pub fn public_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key's 32 bytes in standard base64.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.public_key().as_bytes())
    }

    /// A short name for the key, to tell keys apart after a rotation (the tokens' `kid`): the
    /// first 8 bytes of the public key, base64url.
    pub fn key_id(&self) -> String {
        key_id_of(&self.public_key())
    }

    /// The public key as a JSON Web Key (RFC 8037: `kty` OKP, `crv` Ed25519), for publishing.
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public_key().as_bytes()),
            "use": "sig",
            "alg": "EdDSA",
            "kid": self.key_id(),
        })
    }

    /// Signs claims into a compact JWS.
    pub fn sign_token(&self, claims: &ProofClaims) -> anyhow::Result<String> {
        let header = serde_json::to_vec(&Header {
            alg: "EdDSA".into(),
            kid: Some(self.key_id()),
            typ: Some("JWT".into()),
        })?;
        let payload = serde_json::to_vec(&Wire {
            iss: ISSUER.into(),
            sub: claims.certificate_number.clone(),
            vrm: claims.registration.clone(),
            nbf: claims.valid_from.timestamp(),
            iat: claims.issued_at.timestamp(),
            exp: claims.valid_until.timestamp(),
        })?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&header),
            URL_SAFE_NO_PAD.encode(&payload)
        );
        let signature = self.signing.sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}

/// Signs claims into a token with `key` (same as [`ProofKey::sign_token`]).
pub fn sign_token(key: &ProofKey, claims: &ProofClaims) -> anyhow::Result<String> {
    key.sign_token(claims)
}

fn key_id_of(public_key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(&public_key.as_bytes()[..8])
}

/// Reads a public key published by [`ProofKey::public_key_base64`].
pub fn public_key_from_base64(text: &str) -> anyhow::Result<VerifyingKey> {
    let bytes: [u8; 32] = STANDARD
        .decode(text.trim())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("a public key is 32 bytes"))?;
    Ok(VerifyingKey::from_bytes(&bytes)?)
}

/// Checks a token's signature with `public_key` and returns what it states, whatever its
/// `exp`: an offline verifier also checks that (any JOSE library does). It says nothing about
/// whether the cover is still on: see [`cover_status`].
pub fn verify_token(public_key: &VerifyingKey, token: &str) -> Result<ProofClaims, TokenError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| TokenError::Malformed)
    };
    let head: Header =
        serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
    if head.alg != "EdDSA" {
        return Err(TokenError::Malformed);
    }
    if head.kid.is_some_and(|kid| kid != key_id_of(public_key)) {
        return Err(TokenError::BadSignature);
    }
    let signature =
        Signature::from_slice(&decode(signature)?).map_err(|_| TokenError::Malformed)?;
    let signing_input = &token[..header.len() + 1 + payload.len()];
    public_key
        .verify_strict(signing_input.as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature)?;
    let wire: Wire =
        serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)?;
    if wire.iss != ISSUER {
        return Err(TokenError::Malformed);
    }
    let time = |t: i64| DateTime::from_timestamp(t, 0).ok_or(TokenError::Malformed);
    Ok(ProofClaims {
        certificate_number: wire.sub,
        registration: wire.vrm,
        valid_from: time(wire.nbf)?,
        issued_at: time(wire.iat)?,
        valid_until: time(wire.exp)?,
    })
}

/// The answer of a roadside check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverStatus {
    /// The vehicle is covered now.
    Covered,
    /// The token proves nothing: forged, damaged, or for no session of ours.
    NotCovered,
    /// The token is genuine but its cover is over (ended, or past its validity).
    Expired,
}

/// What a proof-of-cover check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverCheck {
    /// The answer.
    pub status: CoverStatus,
    /// Why, when not covered: `malformed_token`, `bad_signature`, `unknown_certificate`,
    /// `registration_mismatch`, `not_yet_valid`, `session_ended`, `past_validity` (past the
    /// session's deadline, not yet closed).
    pub reason: Option<&'static str>,
    /// The certificate number (only from a genuine token).
    pub certificate_number: Option<String>,
    /// The registration (only from a genuine token).
    pub registration: Option<String>,
    /// When cover started.
    pub valid_from: Option<DateTime<Utc>>,
    /// When cover ended, or ends at the latest.
    pub valid_until: Option<DateTime<Utc>>,
}

impl CoverCheck {
    fn not_covered(reason: &'static str) -> Self {
        Self {
            status: CoverStatus::NotCovered,
            reason: Some(reason),
            certificate_number: None,
            registration: None,
            valid_from: None,
            valid_until: None,
        }
    }
}

/// Whether the token's vehicle is covered now, asked online.
///
/// `NotCovered` (with the reason) for a token that fails [`verify_token`] or names no session
/// of ours; `Covered` while the session is active and now is between its start and its own
/// deadlines, however old the token (the session decides, not the token's offline lifetime);
/// `Expired` otherwise, with the session's real end when it ended.
pub async fn cover_status(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    public_key: &VerifyingKey,
    token: &str,
) -> Result<CoverCheck, CoverError> {
    let claims = match verify_token(public_key, token) {
        Ok(c) => c,
        Err(e) => return Ok(CoverCheck::not_covered(e.reason())),
    };
    let Some(session) = find_by_certificate_number(conn, &claims.certificate_number).await? else {
        return Ok(CoverCheck::not_covered("unknown_certificate"));
    };
    let registration = accounts::get_vehicles(conn, &[session.vehicle_id])
        .await
        .map_err(|e| CoverError::Internal(anyhow::Error::new(e)))?
        .into_iter()
        .next()
        .and_then(|v| v.registration.map(|r| r.as_str().to_owned()));
    if registration != claims.registration {
        return Ok(CoverCheck::not_covered("registration_mismatch"));
    }
    let now = clock.now();
    let until = session.covered_until();
    let (status, reason) = if !session.is_active() {
        (CoverStatus::Expired, Some("session_ended"))
    } else if now < claims.valid_from {
        (CoverStatus::NotCovered, Some("not_yet_valid"))
    } else if now >= until {
        (CoverStatus::Expired, Some("past_validity"))
    } else {
        (CoverStatus::Covered, None)
    };
    Ok(CoverCheck {
        status,
        reason,
        certificate_number: Some(claims.certificate_number),
        registration: claims.registration,
        valid_from: Some(claims.valid_from),
        valid_until: Some(until),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn claims() -> ProofClaims {
        ProofClaims {
            certificate_number: "SC-7K4Q-9XM2".into(),
            registration: Some("AB12CDE".into()),
            valid_from: DateTime::from_timestamp(1_795_424_400, 0).unwrap(),
            issued_at: DateTime::from_timestamp(1_795_428_000, 0).unwrap(),
            valid_until: DateTime::from_timestamp(1_795_428_900, 0).unwrap(),
        }
    }

    fn part(token: &str, i: usize) -> serde_json::Value {
        let raw = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(i).unwrap())
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    #[test]
    fn a_token_is_a_compact_jws_with_the_key_id_and_registered_claims() {
        let key =
            ProofKey::from_seed_base64(shared::settings::DEVELOPMENT_COVER_SIGNING_KEY).unwrap();
        let token = key.sign_token(&claims()).unwrap();
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(
            part(&token, 0),
            serde_json::json!({ "alg": "EdDSA", "kid": key.key_id(), "typ": "JWT" })
        );
        assert_eq!(
            part(&token, 1),
            serde_json::json!({
                "iss": "shiftcover", "sub": "SC-7K4Q-9XM2", "vrm": "AB12CDE",
                "nbf": 1_795_424_400, "iat": 1_795_428_000, "exp": 1_795_428_900,
            })
        );
        assert_eq!(verify_token(&key.public_key(), &token).unwrap(), claims());
        let published = public_key_from_base64(&key.public_key_base64()).unwrap();
        assert_eq!(published, key.public_key());
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["kid"], key.key_id());
        assert!(!format!("{key:?}").contains(shared::settings::DEVELOPMENT_COVER_SIGNING_KEY));
        assert!(ProofKey::from_seed_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let key = ProofKey::from_seed(&[7; 32]);
        let other = ProofKey::from_seed(&[8; 32]);
        let token = key.sign_token(&claims()).unwrap();
        let pieces: Vec<&str> = token.split('.').collect();
        let (header, payload, signature) = (pieces[0], pieces[1], pieces[2]);

        let mut altered = claims();
        altered.valid_until += chrono::Duration::days(30);
        let forged_payload = key.sign_token(&altered).unwrap();
        let forged_payload = forged_payload.split('.').nth(1).unwrap();
        let pk = key.public_key();
        assert_eq!(
            verify_token(&pk, &format!("{header}.{forged_payload}.{signature}")),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_token(&other.public_key(), &token),
            Err(TokenError::BadSignature)
        );
        // Another algorithm named in the header (the "none" trick) is not ours.
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        for bad in [
            "",
            "abc",
            "a.b",
            "a.b.c",
            &format!("{header}.{payload}"),
            &format!("{header}.{payload}."),
            &format!("{header}.{payload}.!!"),
            &format!("{header}.{payload}.{signature}.x"),
            &format!("{none}.{payload}.{signature}"),
            &format!("{none}.{payload}."),
        ] {
            assert_eq!(verify_token(&pk, bad), Err(TokenError::Malformed), "{bad}");
        }
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(verify_token(&pk, &long), Err(TokenError::Malformed));
    }
}
