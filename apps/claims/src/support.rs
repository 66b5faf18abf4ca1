//! Small helpers shared by the modules of this crate: audit entries, text checks, references,
//! and the keyset cursors of the lists.

use crate::error::ClaimsError;
use accounts::Actor;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rand::Rng;
use shared::audit::{ActorType, AuditEntry};

/// Longest reason or resolution note, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest idempotency key, in characters.
pub const MAX_KEY_CHARS: usize = 200;
/// Crockford's base 32: no I, L, O or U, so a reference read out over the phone is unambiguous.
const REFERENCE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The audit actor type and id of an [`Actor`].
pub(crate) fn actor_parts(actor: Actor) -> (ActorType, Option<String>) {
    match actor {
        Actor::Driver(id) => (ActorType::Driver, Some(id.to_string())),
        Actor::Staff(id) => (ActorType::Staff, Some(id.to_string())),
        Actor::Partner(id) => (ActorType::Partner, Some(id.to_string())),
        Actor::System => (ActorType::System, None),
    }
}

/// The stored name of an actor (`driver`, `staff`, `partner`, `system`).
pub(crate) fn actor_type_name(actor: Actor) -> &'static str {
    match actor {
        Actor::Driver(_) => "driver",
        Actor::Staff(_) => "staff",
        Actor::Partner(_) => "partner",
        Actor::System => "system",
    }
}

/// Writes one audit entry on `conn` (inside the caller's transaction).
pub(crate) async fn audit(
    conn: &mut AsyncPgConnection,
    actor: Actor,
    action: &str,
    subject_type: &str,
    subject_id: String,
    reason: Option<&str>,
    details: serde_json::Value,
) -> Result<(), ClaimsError> {
    let (actor_type, actor_id) = actor_parts(actor);
    shared::audit::record(
        conn,
        &AuditEntry {
            actor_type,
            actor_id,
            action,
            subject_type,
            subject_id,
            reason,
            details,
        },
    )
    .await?;
    Ok(())
}

/// A trimmed text of 1 to `max` characters; control characters refused unless `multiline`
/// (then only line breaks and tabs are allowed).
pub(crate) fn clean(input: &str, max: usize, multiline: bool) -> Option<&str> {
    let t = input.trim();
    let bad = |c: char| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'));
    let ok = !t.is_empty() && t.chars().count() <= max && !t.chars().any(bad);
    ok.then_some(t)
}

/// A reason of 1 to [`MAX_REASON_CHARS`] characters. Errors: `INVALID_REASON`.
pub(crate) fn reason(input: &str) -> Result<&str, ClaimsError> {
    clean(input, MAX_REASON_CHARS, true).ok_or(ClaimsError::InvalidReason)
}

/// An idempotency key of 1 to [`MAX_KEY_CHARS`] characters. Errors: `INVALID_IDEMPOTENCY_KEY`.
pub(crate) fn idempotency_key(input: &str) -> Result<&str, ClaimsError> {
    let ok = !input.is_empty()
        && input.chars().count() <= MAX_KEY_CHARS
        && !input.chars().any(char::is_control);
    ok.then_some(input)
        .ok_or(ClaimsError::InvalidIdempotencyKey)
}

/// A new claim reference: `CLM-` and two groups of four Crockford base-32 characters.
pub fn new_claim_reference() -> String {
    let mut rng = rand::rng();
    let mut out = String::with_capacity(13);
    out.push_str("CLM-");
    for i in 0..8 {
        if i == 4 {
            out.push('-');
        }
        let c = REFERENCE_ALPHABET[rng.random_range(0..REFERENCE_ALPHABET.len())];
        out.push(char::from(c));
    }
    out
}

/// A position in a list ordered by a time then an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The time, in microseconds since the epoch (the database's precision).
    pub at_micros: i64,
    /// The row's id.
    pub id: uuid::Uuid,
}

impl Cursor {
    /// The cursor of a row.
    pub fn of(at: DateTime<Utc>, id: uuid::Uuid) -> Self {
        Self {
            at_micros: at.timestamp_micros(),
            id,
        }
    }

    /// The opaque text handed to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("k1:{}:{}", self.at_micros, self.id.simple()))
    }

    /// Parses [`Cursor::encode`]'s output. Errors: `INVALID_CURSOR`.
    pub fn decode(text: &str) -> Result<Self, ClaimsError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| ClaimsError::InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| ClaimsError::InvalidCursor)?;
        let mut parts = text.splitn(3, ':');
        let (Some("k1"), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ClaimsError::InvalidCursor);
        };
        Ok(Self {
            at_micros: micros.parse().map_err(|_| ClaimsError::InvalidCursor)?,
            id: uuid::Uuid::try_parse(id).map_err(|_| ClaimsError::InvalidCursor)?,
        })
    }

    /// The cursor's time. Errors: `INVALID_CURSOR`.
    pub fn at(&self) -> Result<DateTime<Utc>, ClaimsError> {
        DateTime::from_timestamp_micros(self.at_micros).ok_or(ClaimsError::InvalidCursor)
    }
}

/// Which way a list runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOrder {
    /// Newest first (a driver's own list).
    #[default]
    NewestFirst,
    /// Oldest first (a work queue).
    OldestFirst,
}

/// One item of a page with the cursor just after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge<T> {
    /// Pass as `after` to get the items after this one.
    pub cursor: String,
    /// The item.
    pub node: T,
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub edges: Vec<Edge<T>>,
    /// Whether more follow the last one.
    pub has_next_page: bool,
}

/// The most items one page returns.
pub const MAX_PAGE_SIZE: i64 = 100;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_have_the_published_shape() {
        for _ in 0..200 {
            let r = new_claim_reference();
            assert_eq!(r.len(), 13, "{r}");
            assert!(r.starts_with("CLM-"));
            assert_eq!(&r[8..9], "-");
            assert!(
                r[4..8]
                    .chars()
                    .chain(r[9..].chars())
                    .all(|c| REFERENCE_ALPHABET.contains(&(c as u8)))
            );
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_strangers() {
        let c = Cursor {
            at_micros: 1_795_000_000_123_456,
            id: uuid::Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("bm9wZQ").is_err());
        assert!(Cursor::decode("!!").is_err());
    }

    #[test]
    fn texts_are_trimmed_and_bounded() {
        assert_eq!(clean("  a  ", 5, false), Some("a"));
        assert_eq!(clean("", 5, false), None);
        assert_eq!(clean("abcdef", 5, false), None);
        assert_eq!(clean("a\nb", 5, false), None);
        assert_eq!(clean("a\nb", 5, true), Some("a\nb"));
        assert_eq!(clean("a\u{7}b", 5, true), None);
        assert!(idempotency_key("k").is_ok());
        assert!(idempotency_key("").is_err());
        assert!(idempotency_key(&"k".repeat(201)).is_err());
    }
}
