//! Errors of the cover app.
//!
//! [`CoverError::user_error`] maps every case a driver, a partner or an ops user can act on to a
//! [`FieldError`] with a stable code; storage and other internal failures map to `None` and must
//! be reported as internal errors, never shown. Field names are the camelCase names of the
//! GraphQL input fields (`productId`, `vehicleId`, `quoteId`, …).

use pricing::{Decline, PricingError};
use shared::{FieldError, Money};

/// Why a cover service call failed.
#[derive(Debug, thiserror::Error)]
pub enum CoverError {
    /// Enrolment needs the driver to accept the policy terms. `TERMS_NOT_ACCEPTED`,
    /// field `acceptTerms`.
    #[error("terms not accepted")]
    TermsNotAccepted,
    /// No such product. `PRODUCT_NOT_FOUND`, field `productId`.
    #[error("product not found")]
    ProductNotFound,
    /// The product has no published version. `PRODUCT_NOT_AVAILABLE`, field `productId`.
    #[error("product not available")]
    ProductNotAvailable,
    /// No such driver, or a deleted one. `DRIVER_NOT_FOUND`, field `driverId`.
    #[error("driver not found")]
    DriverNotFound,
    /// No such vehicle, removed, or another driver's. `VEHICLE_NOT_FOUND`, field `vehicleId`.
    #[error("vehicle not found")]
    VehicleNotFound,
    /// The driver's profile lacks something rating needs. `PROFILE_INCOMPLETE`, with the profile
    /// field missing (`dateOfBirth`, `licenceIssuedOn`, `postcode`).
    #[error("profile incomplete: {0}")]
    ProfileIncomplete(&'static str),
    /// The product will not cover this driver or vehicle: the decline's code
    /// (`VEHICLE_NOT_COVERED`, `UNDER_MINIMUM_AGE`, `TOO_MANY_CLAIMS`, `INVALID_POSTCODE`,
    /// `RATE_UNAVAILABLE`). `VEHICLE_NOT_COVERED` names field `vehicleId`; the others none.
    #[error("declined: {0}")]
    Declined(Decline),
    /// The driver already has an enrolment in this product that is not cancelled.
    /// `ALREADY_ENROLLED`, field `productId`.
    #[error("already enrolled")]
    AlreadyEnrolled,
    /// No such enrolment, or another driver's. `ENROLMENT_NOT_FOUND`, field `enrolmentId`.
    #[error("enrolment not found")]
    EnrolmentNotFound,
    /// The enrolment's status does not allow the change (e.g. suspending a cancelled one).
    /// `INVALID_ENROLMENT_STATUS`, field `enrolmentId`.
    #[error("enrolment is {from}; cannot become {to}")]
    InvalidEnrolmentStatus {
        /// The current status.
        from: &'static str,
        /// The status asked for.
        to: &'static str,
    },
    /// A reason that is empty, longer than 200 characters or has control characters.
    /// `INVALID_REASON`, field `reason`.
    #[error("invalid reason")]
    InvalidReason,
    /// The driver has no enrolment to start cover with (none, or only cancelled ones).
    /// `NOT_ENROLLED`.
    #[error("not enrolled")]
    NotEnrolled,
    /// The driver's enrolment is suspended. `ENROLMENT_SUSPENDED`.
    #[error("enrolment suspended")]
    EnrolmentSuspended,
    /// The driver has no saved payment method. `NO_PAYMENT_METHOD`.
    #[error("no payment method")]
    NoPaymentMethod,
    /// The driver cannot pay the minimum charge now. `INSUFFICIENT_FUNDS`.
    #[error("insufficient funds: {required} required")]
    InsufficientFunds {
        /// The least a session costs (the minimum charge).
        required: Money,
        /// What the driver can pay now, when known.
        available: Option<Money>,
    },
    /// No such quote, or another driver's. `QUOTE_NOT_FOUND`, field `quoteId`.
    #[error("quote not found")]
    QuoteNotFound,
    /// The quote's price no longer holds. `QUOTE_EXPIRED`, field `quoteId`.
    #[error("quote expired")]
    QuoteExpired,
    /// The quote is for another vehicle or product than the one asked for. `QUOTE_MISMATCH`,
    /// field `quoteId`.
    #[error("quote does not match the vehicle or product")]
    QuoteMismatch,
    /// An idempotency key that is empty, longer than 200 characters or has control characters.
    /// `INVALID_IDEMPOTENCY_KEY`, field `idempotencyKey`.
    #[error("invalid idempotency key")]
    InvalidIdempotencyKey,
    /// A partner reference that is empty or longer than 200 characters. `INVALID_PARTNER_REF`,
    /// field `partnerRef`.
    #[error("invalid partner reference")]
    InvalidPartnerRef,
    /// The idempotency key already started a session with other parameters.
    /// `IDEMPOTENCY_KEY_REUSED`, field `idempotencyKey`.
    #[error("idempotency key reused with different parameters")]
    IdempotencyKeyReused,
    /// The driver already has an active session. `ALREADY_ON_COVER`.
    #[error("already on cover")]
    AlreadyOnCover,
    /// No such session, or another driver's. `SESSION_NOT_FOUND`, field `sessionId`.
    #[error("session not found")]
    SessionNotFound,
    /// The session has already ended. `SESSION_ALREADY_ENDED`, field `sessionId`.
    #[error("session already ended")]
    SessionAlreadyEnded,
    /// The session's status does not allow the change (e.g. marking an active one charged).
    /// `INVALID_SESSION_STATUS`, field `sessionId`.
    #[error("session is {0}")]
    InvalidSessionStatus(&'static str),
    /// A pagination cursor this app did not issue. `INVALID_CURSOR`, field `after`.
    #[error("invalid cursor")]
    InvalidCursor,
    /// The database failed. Internal.
    #[error("database error")]
    Database(#[from] diesel::result::Error),
    /// Something else failed (pricing, a payment-method check, a stored row that does not parse).
    /// Internal.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<PricingError> for CoverError {
    fn from(e: PricingError) -> Self {
        match e {
            PricingError::ProductNotFound => CoverError::ProductNotFound,
            PricingError::ProductNotAvailable => CoverError::ProductNotAvailable,
            PricingError::DriverNotFound => CoverError::DriverNotFound,
            PricingError::VehicleNotFound => CoverError::VehicleNotFound,
            PricingError::ProfileIncomplete(field) => CoverError::ProfileIncomplete(field),
            PricingError::Declined(d) => CoverError::Declined(d),
            PricingError::QuoteNotFound => CoverError::QuoteNotFound,
            PricingError::QuoteExpired => CoverError::QuoteExpired,
            PricingError::Database(e) => CoverError::Database(e),
            other => CoverError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<pricing::ChargeError> for CoverError {
    fn from(e: pricing::ChargeError) -> Self {
        CoverError::Internal(anyhow::Error::new(e))
    }
}

impl From<notifications::NotificationsError> for CoverError {
    fn from(e: notifications::NotificationsError) -> Self {
        CoverError::Internal(anyhow::Error::new(e))
    }
}

impl CoverError {
    /// The error as the user should see it, or `None` for internal failures.
    pub fn user_error(&self) -> Option<FieldError> {
        use CoverError::*;
        let (field, code, message): (Option<&str>, &'static str, String) = match self {
            TermsNotAccepted => (
                Some("acceptTerms"),
                "TERMS_NOT_ACCEPTED",
                "Accept the policy terms to enrol.".into(),
            ),
            ProductNotFound => (
                Some("productId"),
                "PRODUCT_NOT_FOUND",
                "There is no such product.".into(),
            ),
            ProductNotAvailable => (
                Some("productId"),
                "PRODUCT_NOT_AVAILABLE",
                "This product is not on sale at the moment.".into(),
            ),
            DriverNotFound => (Some("driverId"), "DRIVER_NOT_FOUND", "Not found.".into()),
            VehicleNotFound => (
                Some("vehicleId"),
                "VEHICLE_NOT_FOUND",
                "That vehicle is not one of yours.".into(),
            ),
            ProfileIncomplete(field) => (
                Some(*field),
                "PROFILE_INCOMPLETE",
                format!("Complete your profile ({field}) to get cover."),
            ),
            Declined(d) => {
                let field =
                    (d.code == pricing::DeclineCode::VehicleNotCovered).then_some("vehicleId");
                (field, d.code.as_str(), d.reason.clone())
            }
            AlreadyEnrolled => (
                Some("productId"),
                "ALREADY_ENROLLED",
                "You are already enrolled in this product.".into(),
            ),
            EnrolmentNotFound => (
                Some("enrolmentId"),
                "ENROLMENT_NOT_FOUND",
                "Not found.".into(),
            ),
            InvalidEnrolmentStatus { from, to } => (
                Some("enrolmentId"),
                "INVALID_ENROLMENT_STATUS",
                format!("This enrolment is {from}; it cannot become {to}."),
            ),
            InvalidReason => (
                Some("reason"),
                "INVALID_REASON",
                "Give a reason of 1 to 200 characters.".into(),
            ),
            NotEnrolled => (
                None,
                "NOT_ENROLLED",
                "Enrol in pay-as-you-go cover first.".into(),
            ),
            EnrolmentSuspended => (
                None,
                "ENROLMENT_SUSPENDED",
                "Your cover is suspended. Check your payment details or contact us.".into(),
            ),
            NoPaymentMethod => (
                None,
                "NO_PAYMENT_METHOD",
                "Add a card before starting cover.".into(),
            ),
            InsufficientFunds { required, .. } => (
                None,
                "INSUFFICIENT_FUNDS",
                format!("Top up your wallet: cover needs at least {required} to start."),
            ),
            QuoteNotFound => (Some("quoteId"), "QUOTE_NOT_FOUND", "Not found.".into()),
            QuoteExpired => (
                Some("quoteId"),
                "QUOTE_EXPIRED",
                "This quote has expired. Ask for a new one.".into(),
            ),
            QuoteMismatch => (
                Some("quoteId"),
                "QUOTE_MISMATCH",
                "This quote is for another vehicle or product.".into(),
            ),
            InvalidIdempotencyKey => (
                Some("idempotencyKey"),
                "INVALID_IDEMPOTENCY_KEY",
                "The idempotency key must be 1 to 200 printable characters.".into(),
            ),
            InvalidPartnerRef => (
                Some("partnerRef"),
                "INVALID_PARTNER_REF",
                "The partner reference must be 1 to 200 printable characters.".into(),
            ),
            IdempotencyKeyReused => (
                Some("idempotencyKey"),
                "IDEMPOTENCY_KEY_REUSED",
                "This idempotency key was already used to start cover with other details.".into(),
            ),
            AlreadyOnCover => (
                None,
                "ALREADY_ON_COVER",
                "You are already on cover. Stop that session first.".into(),
            ),
            SessionNotFound => (Some("sessionId"), "SESSION_NOT_FOUND", "Not found.".into()),
            SessionAlreadyEnded => (
                Some("sessionId"),
                "SESSION_ALREADY_ENDED",
                "This cover session has already ended.".into(),
            ),
            InvalidSessionStatus(status) => (
                Some("sessionId"),
                "INVALID_SESSION_STATUS",
                format!("This cover session is {status}."),
            ),
            InvalidCursor => (
                Some("after"),
                "INVALID_CURSOR",
                "That cursor is not valid.".into(),
            ),
            Database(_) | Internal(_) => return None,
        };
        Some(FieldError {
            field: field.map(str::to_owned),
            code,
            message,
        })
    }

    /// The stable code of a user-fixable error, or `None` for internal failures.
    pub fn code(&self) -> Option<&'static str> {
        self.user_error().map(|e| e.code)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn user_fixable_errors_have_codes_internal_ones_do_not() {
        assert_eq!(CoverError::AlreadyOnCover.code(), Some("ALREADY_ON_COVER"));
        let e = CoverError::SessionNotFound.user_error().unwrap();
        assert_eq!(e.field.as_deref(), Some("sessionId"));
        let d = CoverError::Declined(Decline {
            code: pricing::DeclineCode::VehicleNotCovered,
            reason: "no vans".into(),
        });
        assert_eq!(d.code(), Some("VEHICLE_NOT_COVERED"));
        assert_eq!(
            CoverError::from(PricingError::QuoteExpired).code(),
            Some("QUOTE_EXPIRED")
        );
        let funds = CoverError::InsufficientFunds {
            required: Money::gbp(250),
            available: None,
        };
        assert!(funds.user_error().unwrap().message.contains("£2.50"));
        assert!(
            CoverError::Internal(anyhow::anyhow!("secret"))
                .user_error()
                .is_none()
        );
        assert!(
            CoverError::Database(diesel::result::Error::NotFound)
                .user_error()
                .is_none()
        );
    }
}
