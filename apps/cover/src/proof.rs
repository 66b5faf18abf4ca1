//! Signed proof of cover: a token anyone can check, online or offline.
//!
//! A token is `base64url(payload) "." base64url(signature)`: the payload is compact JSON
//! `{"v":1,"c":"SC-7K4Q-9XM2","r":"AB12CDE","f":1795424400,"u":1795482000}` (version,
//! certificate number, registration — absent for pedal cycles —, valid from and valid until in
//! Unix seconds), and the signature is Ed25519 over the payload bytes, with the key derived from
//! the `cover.signing_key` seed. The public key is published ([`ProofKey::public_key_base64`],
//! [`ProofKey::public_jwk`]) so the police or a partner can check a token without asking us.
//!
//! [`cover_status`] answers the roadside question "is this vehicle covered now?" from a token:
//! a forged or damaged token is `NotCovered`; a genuine one is `Covered` only while its session
//! is active and inside the token's validity, and `Expired` after.

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

/// The payload format version tokens carry.
pub const TOKEN_VERSION: u8 = 1;
/// The longest token accepted, in bytes (a real one is about 170).
pub const MAX_TOKEN_BYTES: usize = 1024;

/// What a proof-of-cover token states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProofClaims {
    /// The certificate number.
    pub certificate_number: String,
    /// The vehicle's registration; `None` for bicycles and e-bikes.
    pub registration: Option<String>,
    /// Cover starts (the session's start).
    pub valid_from: DateTime<Utc>,
    /// Cover ends at the latest (the session's end, or its latest end while active).
    pub valid_until: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u8,
    c: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<String>,
    f: i64,
    u: i64,
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

    /// A short name for the key, to tell keys apart after a rotation: the first 8 bytes of the
    /// public key, base64url.
    pub fn key_id(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.public_key().as_bytes()[..8])
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

    /// Signs claims into a token.
    pub fn sign_token(&self, claims: &ProofClaims) -> anyhow::Result<String> {
        let payload = serde_json::to_vec(&Wire {
            v: TOKEN_VERSION,
            c: claims.certificate_number.clone(),
            r: claims.registration.clone(),
            f: claims.valid_from.timestamp(),
            u: claims.valid_until.timestamp(),
        })?;
        let signature = self.signing.sign(&payload);
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}

/// Signs claims into a token with `key` (same as [`ProofKey::sign_token`]).
pub fn sign_token(key: &ProofKey, claims: &ProofClaims) -> anyhow::Result<String> {
    key.sign_token(claims)
}

/// Reads a public key published by [`ProofKey::public_key_base64`].
pub fn public_key_from_base64(text: &str) -> anyhow::Result<VerifyingKey> {
    let bytes: [u8; 32] = STANDARD
        .decode(text.trim())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("a public key is 32 bytes"))?;
    Ok(VerifyingKey::from_bytes(&bytes)?)
}

/// Checks a token's signature with `public_key` and returns what it states. It says nothing
/// about whether the cover is still on: see [`cover_status`].
pub fn verify_token(public_key: &VerifyingKey, token: &str) -> Result<ProofClaims, TokenError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let (payload, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if signature.contains('.') {
        return Err(TokenError::Malformed);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    let signature = Signature::from_slice(&signature).map_err(|_| TokenError::Malformed)?;
    public_key
        .verify_strict(&payload, &signature)
        .map_err(|_| TokenError::BadSignature)?;
    let wire: Wire = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if wire.v != TOKEN_VERSION {
        return Err(TokenError::Malformed);
    }
    Ok(ProofClaims {
        certificate_number: wire.c,
        registration: wire.r,
        valid_from: DateTime::from_timestamp(wire.f, 0).ok_or(TokenError::Malformed)?,
        valid_until: DateTime::from_timestamp(wire.u, 0).ok_or(TokenError::Malformed)?,
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
    /// `registration_mismatch`, `not_yet_valid`, `session_ended`, `past_validity`.
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

/// Whether the token's vehicle is covered now.
///
/// `NotCovered` (with the reason) for a token that fails [`verify_token`] or names no session
/// of ours; `Covered` while the session is active and now is inside both the token's validity and
/// the session's own deadlines; `Expired` otherwise, with the session's real end when it ended.
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
    let until = claims.valid_until.min(session.covered_until());
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
            valid_until: DateTime::from_timestamp(1_795_482_000, 0).unwrap(),
        }
    }

    #[test]
    fn development_key_derives_and_round_trips() {
        let key =
            ProofKey::from_seed_base64(shared::settings::DEVELOPMENT_COVER_SIGNING_KEY).unwrap();
        let token = key.sign_token(&claims()).unwrap();
        assert_eq!(verify_token(&key.public_key(), &token).unwrap(), claims());
        let published = public_key_from_base64(&key.public_key_base64()).unwrap();
        assert_eq!(published, key.public_key());
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert!(!format!("{key:?}").contains(shared::settings::DEVELOPMENT_COVER_SIGNING_KEY));
        assert!(ProofKey::from_seed_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let key = ProofKey::from_seed(&[7; 32]);
        let other = ProofKey::from_seed(&[8; 32]);
        let token = key.sign_token(&claims()).unwrap();
        let (payload, signature) = token.split_once('.').unwrap();

        let mut altered = claims();
        altered.valid_until += chrono::Duration::days(30);
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Wire {
                v: 1,
                c: altered.certificate_number.clone(),
                r: altered.registration.clone(),
                f: altered.valid_from.timestamp(),
                u: altered.valid_until.timestamp(),
            })
            .unwrap(),
        );
        let pk = key.public_key();
        assert_eq!(
            verify_token(&pk, &format!("{forged_payload}.{signature}")),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_token(&other.public_key(), &token),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            "abc",
            "a.b.c",
            &format!("{payload}."),
            &format!("{payload}.!!"),
        ] {
            assert_eq!(verify_token(&pk, bad), Err(TokenError::Malformed), "{bad}");
        }
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(verify_token(&pk, &long), Err(TokenError::Malformed));
    }
}
