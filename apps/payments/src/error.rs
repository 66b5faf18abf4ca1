//! Errors of the payments app.
//!
//! [`PaymentsError::user_error`] maps what a driver or an ops agent can fix to a [`FieldError`]
//! with a stable code; storage, ledger bugs and Stripe outages map to `None` and must be reported
//! as internal errors, never shown. Field names are the camelCase names of GraphQL inputs.

use crate::stripe::StripeFailure;
use shared::{FieldError, Money};

/// Why a payments call failed.
#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    /// A top-up below the minimum. `AMOUNT_TOO_SMALL`, field `amount`.
    #[error("amount below the minimum of {min}")]
    AmountTooSmall {
        /// The smallest amount allowed.
        min: Money,
    },
    /// A top-up above the maximum. `AMOUNT_TOO_LARGE`, field `amount`.
    #[error("amount above the maximum of {max}")]
    AmountTooLarge {
        /// The largest amount allowed.
        max: Money,
    },
    /// A currency the wallet does not hold. `UNSUPPORTED_CURRENCY`, field `currency`.
    #[error("unsupported currency")]
    UnsupportedCurrency,
    /// An idempotency key that is empty or longer than 200 characters.
    /// `INVALID_IDEMPOTENCY_KEY`, field `idempotencyKey`.
    #[error("invalid idempotency key")]
    InvalidIdempotencyKey,
    /// The key was used before with other parameters. `IDEMPOTENCY_KEY_REUSED`, field
    /// `idempotencyKey`.
    #[error("idempotency key reused with different parameters")]
    IdempotencyKeyReused,
    /// The driver has no saved card to charge. `NO_PAYMENT_METHOD`.
    #[error("no saved card")]
    NoPaymentMethod,
    /// The thing does not exist or is not the caller's. `NOT_FOUND`, with the field that named it.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Auto top-up settings that make no sense. `INVALID_AUTO_TOP_UP`, with the field at fault.
    #[error("invalid auto top-up settings: {field}: {reason}")]
    InvalidAutoTopUp {
        /// `threshold` or `amount`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Stripe declined the card while saving it or charging it on-session. `CARD_DECLINED`.
    #[error("card declined: {message}")]
    CardDeclined {
        /// Stripe's code, e.g. `card_declined`.
        code: Option<String>,
        /// Stripe's message for the cardholder.
        message: String,
    },
    /// A refund larger than what is left to refund. `REFUND_TOO_LARGE`, field `amount`.
    #[error("refund larger than the {refundable} refundable ({limited_by})")]
    RefundTooLarge {
        /// What can still be refunded.
        refundable: Money,
        /// What limits it, for people: what is left of the payment, or the wallet's available
        /// balance.
        limited_by: &'static str,
    },
    /// The payment cannot be refunded (not succeeded, not charged). `NOT_REFUNDABLE`.
    #[error("not refundable: {0}")]
    NotRefundable(&'static str),
    /// A refund amount that is not positive. `INVALID_AMOUNT`, field `amount`.
    #[error("invalid amount")]
    InvalidAmount,
    /// A reason that is empty or over 500 characters. `INVALID_REASON`, field `reason`.
    #[error("invalid reason")]
    InvalidReason,
    /// The session has no charge to take yet (still active). `SESSION_NOT_ENDED`.
    #[error("the session has not ended")]
    SessionNotEnded,
    /// A page cursor that is not one of ours. `INVALID_CURSOR`, field `after`.
    #[error("invalid cursor")]
    InvalidCursor,
    /// A page size outside 1 to 100. `INVALID_PAGE_SIZE`, field `first`.
    #[error("invalid page size")]
    InvalidPageSize,
    /// A webhook body that is not a Stripe event. `INVALID_EVENT`.
    #[error("invalid event: {0}")]
    InvalidEvent(&'static str),
    /// The job running this was handed to another worker; nothing was committed. Internal.
    #[error("the job's claim was lost")]
    ClaimLost,
    /// Stripe could not be used (down, refused a request we built, answered nonsense). Internal.
    #[error("Stripe: {0}")]
    Stripe(#[from] StripeFailure),
    /// The ledger refused a posting. Internal: the lines are built here.
    #[error("ledger: {0}")]
    Ledger(#[from] ledger::LedgerError),
    /// The database failed. Internal.
    #[error("database error")]
    Database(#[from] diesel::result::Error),
    /// Something else failed. Internal.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl PaymentsError {
    /// The stable code of the error, or `None` for internal failures.
    pub fn code(&self) -> Option<&'static str> {
        self.user_error().map(|e| e.code)
    }

    /// Whether a retry may succeed (Stripe unavailable, a lost connection).
    pub fn is_retryable(&self) -> bool {
        match self {
            PaymentsError::Stripe(f) => f.is_retryable(),
            PaymentsError::Database(_) | PaymentsError::Internal(_) => true,
            _ => false,
        }
    }

    /// The error as the user should see it, or `None` for internal failures.
    pub fn user_error(&self) -> Option<FieldError> {
        use PaymentsError::*;
        let (field, code, message): (Option<&str>, &'static str, String) = match self {
            AmountTooSmall { min } => (
                Some("amount"),
                "AMOUNT_TOO_SMALL",
                format!("Top up at least {min}."),
            ),
            AmountTooLarge { max } => (
                Some("amount"),
                "AMOUNT_TOO_LARGE",
                format!("Top up at most {max} at a time."),
            ),
            UnsupportedCurrency => (
                Some("currency"),
                "UNSUPPORTED_CURRENCY",
                "Your wallet is in pounds sterling.".into(),
            ),
            InvalidIdempotencyKey => (
                Some("idempotencyKey"),
                "INVALID_IDEMPOTENCY_KEY",
                "The idempotency key must be 1 to 200 characters.".into(),
            ),
            IdempotencyKeyReused => (
                Some("idempotencyKey"),
                "IDEMPOTENCY_KEY_REUSED",
                "This idempotency key was already used for a different request.".into(),
            ),
            NoPaymentMethod => (None, "NO_PAYMENT_METHOD", "Add a card first.".into()),
            NotFound(field) => (Some(*field), "NOT_FOUND", "Not found.".into()),
            InvalidAutoTopUp { field, reason } => {
                (Some(*field), "INVALID_AUTO_TOP_UP", format!("{reason}."))
            }
            CardDeclined { message, .. } => (None, "CARD_DECLINED", message.clone()),
            RefundTooLarge {
                refundable,
                limited_by,
            } => (
                Some("amount"),
                "REFUND_TOO_LARGE",
                format!("At most {refundable} can be refunded: {limited_by}."),
            ),
            NotRefundable(why) => (None, "NOT_REFUNDABLE", format!("Cannot refund: {why}.")),
            InvalidAmount => (
                Some("amount"),
                "INVALID_AMOUNT",
                "Enter an amount above zero.".into(),
            ),
            InvalidReason => (
                Some("reason"),
                "INVALID_REASON",
                "Give a reason of 1 to 500 characters.".into(),
            ),
            SessionNotEnded => (
                Some("sessionId"),
                "SESSION_NOT_ENDED",
                "The session has not ended yet.".into(),
            ),
            InvalidCursor => (
                Some("after"),
                "INVALID_CURSOR",
                "`after` is not a cursor of this list.".into(),
            ),
            InvalidPageSize => (
                Some("first"),
                "INVALID_PAGE_SIZE",
                "Ask for 1 to 100 items.".into(),
            ),
            InvalidEvent(why) => (None, "INVALID_EVENT", format!("Not a Stripe event: {why}.")),
            ClaimLost | Stripe(_) | Ledger(_) | Database(_) | Internal(_) => return None,
        };
        Some(FieldError {
            field: field.map(str::to_owned),
            code,
            message,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn user_errors_have_codes_internal_ones_do_not() {
        assert_eq!(
            PaymentsError::AmountTooSmall {
                min: Money::gbp(500)
            }
            .code(),
            Some("AMOUNT_TOO_SMALL")
        );
        assert_eq!(
            PaymentsError::IdempotencyKeyReused
                .user_error()
                .and_then(|e| e.field),
            Some("idempotencyKey".into())
        );
        assert!(
            PaymentsError::Stripe(StripeFailure::Unavailable("down".into()))
                .user_error()
                .is_none()
        );
        assert!(PaymentsError::Stripe(StripeFailure::Unavailable("x".into())).is_retryable());
        assert!(
            PaymentsError::Internal(anyhow::anyhow!("secret"))
                .user_error()
                .is_none()
        );
    }
}
