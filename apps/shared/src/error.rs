//! Error primitives shared by every app.
//!
//! Policy: an error the user can fix (bad input, a state that forbids the action) is a
//! [`FieldError`] with a stable machine-readable `code`, an optional input `field`, and a sentence
//! for people. It reaches the client as a GraphQL `userErrors` entry. Anything else is internal:
//! logged with the request id, reported to Sentry, and shown to the client only as
//! `INTERNAL_SERVER_ERROR` — never with its details.

use std::fmt;

/// An error the caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The input field at fault (`input.phone`), or `None` for the request as a whole.
    pub field: Option<String>,
    /// A stable `SCREAMING_SNAKE_CASE` code, e.g. `INVALID_PHONE`.
    pub code: &'static str,
    /// A sentence a person can read.
    pub message: String,
}

impl FieldError {
    /// An error about one input field.
    pub fn field(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            code,
            message: message.into(),
        }
    }

    /// An error about the request as a whole.
    pub fn general(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: None,
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({field}): {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for FieldError {}

/// An error the user cannot fix: storage down, a bug, a provider outage.
pub type InternalError = anyhow::Error;

/// True when `err` is a unique-constraint violation on the named constraint (or any, with `None`).
pub fn is_unique_violation(err: &diesel::result::Error, constraint: Option<&str>) -> bool {
    match err {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            info,
        ) => match constraint {
            None => true,
            Some(name) => info.constraint_name() == Some(name),
        },
        _ => false,
    }
}
