//! Random secrets and their hashes.
//!
//! Invariants: every secret handed to a user (login code, session token, API key) comes from a
//! cryptographically secure generator (`rand::rng()` is a ChaCha CSPRNG seeded and periodically
//! reseeded from the operating system); only a hash of it is stored; comparisons of secrets and
//! hashes are constant-time.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a high-entropy token. A plain hash suffices: 256 random bits cannot be guessed,
/// so there is nothing for a salt or a slow hash to protect.
pub(crate) fn sha256(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// HMAC-SHA256 of a login code, keyed with the server pepper and bound to the phone. A six-digit
/// code has only a million values, so a plain hash would fall to a table in seconds if the table
/// leaked; the pepper (not stored in the database) prevents that, and the phone makes each row's
/// hash differ for the same code.
pub(crate) fn login_code_hash(pepper: &[u8], phone: &str, code: &str) -> anyhow::Result<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(pepper)
        .map_err(|e| anyhow::anyhow!("login code pepper refused by HMAC: {e}"))?;
    mac.update(phone.as_bytes());
    // A separator that appears in neither part keeps (phone, code) pairs unambiguous.
    mac.update(b"\x1f");
    mac.update(code.as_bytes());
    Ok(mac.finalize().into_bytes().to_vec())
}

/// Constant-time equality of two byte strings (length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A six-digit code, uniformly distributed, leading zeros kept.
pub(crate) fn random_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// `prefix` followed by 32 random bytes in unpadded base64url (43 characters).
pub(crate) fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// `len` random characters from `alphabet` (no modulo bias: `random_range` is uniform).
pub(crate) fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// Lowercase letters and digits: unambiguous to read aloud and safe in any URL or header.
pub(crate) const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Letters of both cases and digits.
pub(crate) const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> = (0..200).map(|_| random_code()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.chars().all(|d| d.is_ascii_digit()))
        );
        assert!(codes.len() > 190, "codes repeat too often");
    }

    #[test]
    fn tokens_carry_their_prefix_and_256_bits() {
        let t = random_token("sct_");
        assert!(t.starts_with("sct_"));
        assert_eq!(t.len(), 4 + 43);
        assert_ne!(t, random_token("sct_"));
        assert_eq!(sha256(&t).len(), 32);
    }

    #[test]
    fn login_code_hash_depends_on_pepper_phone_and_code() {
        let h = login_code_hash(b"pepper-1", "+447911123456", "123456").unwrap();
        assert_eq!(h.len(), 32);
        assert_ne!(
            h,
            login_code_hash(b"pepper-2", "+447911123456", "123456").unwrap()
        );
        assert_ne!(
            h,
            login_code_hash(b"pepper-1", "+447911123457", "123456").unwrap()
        );
        assert_ne!(
            h,
            login_code_hash(b"pepper-1", "+447911123456", "123457").unwrap()
        );
        assert!(ct_eq(
            &h,
            &login_code_hash(b"pepper-1", "+447911123456", "123456").unwrap()
        ));
    }

    #[test]
    fn random_strings_use_only_their_alphabet() {
        let s = random_string(LOWER_ALNUM, 64);
        assert_eq!(s.len(), 64);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
