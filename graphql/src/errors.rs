//! How errors reach GraphQL clients.
//!
//! - [`UserError`]: something the user can fix; returned in a mutation payload's `userErrors`.
//! - [`coded`]: a request-level error the client can act on (`UNAUTHENTICATED`, `NOT_FOUND`, …),
//!   with `extensions.code`.
//! - [`internal`]: anything else. Logged with the request id, sent to Sentry, and shown to the
//!   client as `INTERNAL_SERVER_ERROR` with the request id, never with its cause — except an
//!   outage of the database or Redis (a restart, a failover, a full pool: see
//!   [`shared::db::is_outage`]), which is logged as a warning and shown as
//!   `SERVICE_UNAVAILABLE`: the client should try again, with the same idempotency key.

use crate::context::RequestId;
use async_graphql::{Context, ErrorExtensions, SimpleObject};
use shared::FieldError;

/// A problem with the input that the user can fix.
#[derive(Debug, Clone, SimpleObject, PartialEq, Eq)]
pub struct UserError {
    /// The input field at fault (e.g. `phone`), or null when the request as a whole is at fault.
    pub field: Option<String>,
    /// A stable machine-readable code, e.g. `INVALID_PHONE`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl From<FieldError> for UserError {
    fn from(e: FieldError) -> Self {
        UserError {
            field: e.field,
            code: e.code.to_owned(),
            message: e.message,
        }
    }
}

/// A request-level error with a code.
pub fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

/// Reports an internal error and returns the generic error the client sees.
pub fn internal(ctx: &Context<'_>, err: impl Into<anyhow::Error>) -> async_graphql::Error {
    let err: anyhow::Error = err.into();
    let request_id = ctx
        .data_opt::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    if shared::db::is_outage(&err) {
        tracing::warn!(request_id = %request_id, error = %format!("{err:#}"), "database or Redis unavailable");
        return async_graphql::Error::new("Service unavailable; try again shortly.").extend_with(
            |_, e| {
                e.set("code", "SERVICE_UNAVAILABLE");
                e.set("requestId", request_id.clone());
            },
        );
    }
    tracing::error!(request_id = %request_id, error = %format!("{err:#}"), "internal error in resolver");
    sentry::with_scope(
        |scope| scope.set_tag("request_id", &request_id),
        || sentry::integrations::anyhow::capture_anyhow(&err),
    );
    async_graphql::Error::new("Internal server error").extend_with(|_, e| {
        e.set("code", "INTERNAL_SERVER_ERROR");
        e.set("requestId", request_id.clone());
    })
}

/// `?`-friendly conversion of internal failures.
pub trait InternalExt<T> {
    /// Maps an error to [`internal`].
    fn internal(self, ctx: &Context<'_>) -> async_graphql::Result<T>;
}

impl<T, E: Into<anyhow::Error>> InternalExt<T> for Result<T, E> {
    fn internal(self, ctx: &Context<'_>) -> async_graphql::Result<T> {
        self.map_err(|e| internal(ctx, e))
    }
}

/// An optional reason a staff user gives for an action, for the audit log: `None` when not given,
/// the trimmed text when it is 1 to 500 characters without control characters (line breaks
/// allowed), else `INVALID_REASON` on `reason`.
pub fn optional_reason(reason: Option<&str>) -> Result<Option<&str>, UserError> {
    let Some(r) = reason else {
        return Ok(None);
    };
    let r = r.trim();
    let len = r.chars().count();
    if !(1..=500).contains(&len) || r.chars().any(|c| c.is_control() && c != '\n') {
        return Err(UserError {
            field: Some("reason".into()),
            code: "INVALID_REASON".into(),
            message: "Give a reason of 1 to 500 characters.".into(),
        });
    }
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_optional_but_never_blank_or_long() {
        assert_eq!(optional_reason(None).ok(), Some(None));
        assert_eq!(optional_reason(Some("  fixed  ")).ok(), Some(Some("fixed")));
        assert_eq!(
            optional_reason(Some("two\nlines")).ok(),
            Some(Some("two\nlines"))
        );
        for bad in ["   ", "a\u{7}b", &"x".repeat(501)] {
            let e = optional_reason(Some(bad)).unwrap_err();
            assert_eq!(
                (e.field.as_deref(), e.code.as_str()),
                (Some("reason"), "INVALID_REASON")
            );
        }
    }
}
