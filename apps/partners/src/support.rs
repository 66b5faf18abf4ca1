//! Small helpers shared by the modules of this crate.

use accounts::Actor;
use diesel_async::AsyncPgConnection;
use sha2::{Digest, Sha256};
use shared::audit::{ActorType, AuditEntry};

/// Longest external driver id, event id or reference accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 200;

/// A trimmed text of 1 to [`MAX_TEXT_CHARS`] characters without control characters, or `None`.
pub(crate) fn clean_text(input: &str) -> Option<&str> {
    let t = input.trim();
    let ok =
        !t.is_empty() && t.chars().count() <= MAX_TEXT_CHARS && !t.chars().any(char::is_control);
    ok.then_some(t)
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn actor_parts(actor: Actor) -> (ActorType, Option<String>) {
    match actor {
        Actor::Driver(id) => (ActorType::Driver, Some(id.to_string())),
        Actor::Staff(id) => (ActorType::Staff, Some(id.to_string())),
        Actor::Partner(id) => (ActorType::Partner, Some(id.to_string())),
        Actor::System => (ActorType::System, None),
    }
}

/// Writes one audit entry on `conn` (inside the caller's transaction).
pub(crate) async fn audit(
    conn: &mut AsyncPgConnection,
    actor: Actor,
    action: &str,
    subject_type: &str,
    subject_id: String,
    details: serde_json::Value,
) -> diesel::QueryResult<()> {
    audit_because(conn, actor, action, subject_type, subject_id, None, details).await
}

/// [`audit`] with the reason a person gave.
pub(crate) async fn audit_because(
    conn: &mut AsyncPgConnection,
    actor: Actor,
    action: &str,
    subject_type: &str,
    subject_id: String,
    reason: Option<&str>,
    details: serde_json::Value,
) -> diesel::QueryResult<()> {
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
    .await
}

/// Cuts text to at most `max` characters (for stored snippets and errors).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
