//! Per-request values put into the GraphQL context.

use std::fmt;

/// The id of one HTTP request, from the `X-Request-Id` header or generated. It is logged with
/// every line of the request, returned in the response header, and attached to Sentry events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// Accepts a caller's id only when it is short and plain; otherwise makes a new one.
    pub fn from_header(value: Option<&str>) -> Self {
        match value {
            Some(v)
                if !v.is_empty()
                    && v.len() <= 64
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                RequestId(v.to_owned())
            }
            _ => RequestId(uuid::Uuid::new_v4().to_string()),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is calling. Every request has exactly one viewer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Viewer {
    /// No credentials were presented.
    #[default]
    Anonymous,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_checked() {
        assert_eq!(RequestId::from_header(Some("abc-123")).0, "abc-123");
        let made = RequestId::from_header(Some("bad id\nwith newline"));
        assert_ne!(made.0, "bad id\nwith newline");
        assert_eq!(made.0.len(), 36);
        assert_eq!(RequestId::from_header(Some(&"x".repeat(65))).0.len(), 36);
    }
}
