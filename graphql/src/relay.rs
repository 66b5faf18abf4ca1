//! Relay global ids: `base64url("<Type>:<typed id>")`. Opaque to clients, self-describing to us.

use async_graphql::ID;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The global id of an object of GraphQL type `type_name` whose typed id is `id`.
pub fn to_global_id(type_name: &str, id: &impl std::fmt::Display) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{type_name}:{id}")))
}

/// Splits a global id into its type name and typed id; `None` when it is not one of ours.
pub fn from_global_id(id: &str) -> Option<(String, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(id.as_bytes()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (t, rest) = text.split_once(':')?;
    if t.is_empty() || rest.is_empty() {
        return None;
    }
    Some((t.to_owned(), rest.to_owned()))
}

/// Decodes a global id expected to be of `type_name` and parses its typed id.
pub fn parse_global_id<T: std::str::FromStr>(id: &str, type_name: &str) -> Option<T> {
    let (t, rest) = from_global_id(id)?;
    if t != type_name {
        return None;
    }
    rest.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::ids::JobId;

    #[test]
    fn global_ids_round_trip_and_check_the_type() {
        let job = JobId::new();
        let gid = to_global_id("Job", &job);
        assert!(!gid.0.contains("job_"), "global ids are opaque");
        assert_eq!(parse_global_id::<JobId>(&gid, "Job"), Some(job));
        assert_eq!(parse_global_id::<JobId>(&gid, "Driver"), None);
        assert_eq!(from_global_id("not base64!"), None);
        assert_eq!(from_global_id(&URL_SAFE_NO_PAD.encode("nocolon")), None);
    }
}
