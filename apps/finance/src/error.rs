//! Errors of the finance app.
//!
//! [`FinanceError::user_error`] maps what a finance analyst can fix (a period in the future, a
//! malformed month, an exception already resolved) to a [`FieldError`] with a stable code;
//! storage failures and Stripe outages map to `None` and are internal errors, never shown.

use shared::FieldError;

/// Why a finance call failed.
#[derive(Debug, thiserror::Error)]
pub enum FinanceError {
    /// A report or import asked for a period that has not ended yet (or not begun).
    /// `PERIOD_IN_FUTURE`, with the field that named it.
    #[error("the period {0} is in the future")]
    PeriodInFuture(&'static str),
    /// A period that makes no sense (end before start, a month out of range, too long).
    /// `INVALID_PERIOD`, with the field at fault.
    #[error("invalid period: {field}: {reason}")]
    InvalidPeriod {
        /// The input field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The thing does not exist. `NOT_FOUND`.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The exception is already resolved. `ALREADY_RESOLVED`.
    #[error("already resolved")]
    AlreadyResolved,
    /// A note or reason that is empty or too long. `INVALID_TEXT`, with the field.
    #[error("invalid {0}")]
    InvalidText(&'static str),
    /// A page size outside 1 to 100 or a cursor that is not ours. `INVALID_PAGE`.
    #[error("invalid page: {0}")]
    InvalidPage(&'static str),
    /// Stripe could not be read (outage, timeout, unreadable answer); worth another attempt.
    #[error("Stripe: {0}")]
    Stripe(String),
    /// Storage.
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
    /// A pool that could not give a connection.
    #[error("pool: {0}")]
    Pool(String),
    /// Anything else that is a bug or an outage.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl FinanceError {
    /// The error for the user, when they can do something about it.
    pub fn user_error(&self) -> Option<FieldError> {
        Some(match self {
            FinanceError::PeriodInFuture(field) => FieldError::field(
                *field,
                "PERIOD_IN_FUTURE",
                "That period has not ended yet; choose one in the past.",
            ),
            FinanceError::InvalidPeriod { field, reason } => {
                FieldError::field(*field, "INVALID_PERIOD", reason.clone())
            }
            FinanceError::NotFound(field) => {
                FieldError::field(*field, "NOT_FOUND", "Nothing with that id.")
            }
            FinanceError::AlreadyResolved => FieldError::field(
                "id",
                "ALREADY_RESOLVED",
                "This exception is already resolved.",
            ),
            FinanceError::InvalidText(field) => FieldError::field(
                *field,
                "INVALID_TEXT",
                "Give between 1 and 1000 characters.",
            ),
            FinanceError::InvalidPage(field) => {
                FieldError::field(*field, "INVALID_PAGE", "Invalid page size or cursor.")
            }
            FinanceError::Stripe(_)
            | FinanceError::Db(_)
            | FinanceError::Pool(_)
            | FinanceError::Internal(_) => return None,
        })
    }

    /// The stable code of a user error, `None` for internal ones.
    pub fn code(&self) -> Option<&'static str> {
        self.user_error().map(|e| e.code)
    }
}
