//! Errors of the pricing app.
//!
//! [`PricingError::user_error`] maps every case a user (a driver, or an ops user editing a
//! product) can act on to a [`FieldError`] with a stable code; storage and other internal
//! failures map to `None` and must be reported as internal errors, never shown.

use crate::cases::CaseFailure;
use crate::rating::Decline;
use shared::FieldError;

/// How many failing cases a `TEST_CASES_FAILED` message lists.
const LISTED_FAILURES: usize = 5;

/// Why a pricing service call failed.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    /// No such product. `PRODUCT_NOT_FOUND`, field `productId`.
    #[error("product not found")]
    ProductNotFound,
    /// The product has no published version, so it cannot be quoted. `PRODUCT_NOT_AVAILABLE`,
    /// field `productId`.
    #[error("product has no published version")]
    ProductNotAvailable,
    /// No such product version. `VERSION_NOT_FOUND`, field `versionId`.
    #[error("product version not found")]
    VersionNotFound,
    /// The version is published or retired, and only drafts can change or be published.
    /// `VERSION_NOT_DRAFT`, field `versionId`.
    #[error("product version is not a draft")]
    VersionNotDraft,
    /// Only a published version can be retired. `VERSION_NOT_PUBLISHED`, field `versionId`.
    #[error("product version is not published")]
    VersionNotPublished,
    /// A product with this code exists. `DUPLICATE_PRODUCT_CODE`, field `code`.
    #[error("product code already in use")]
    DuplicateProductCode,
    /// A product, a version's terms or its test cases are invalid. The code and field say what:
    /// `INVALID_PRODUCT_CODE`, `INVALID_PRODUCT_NAME`, `INVALID_TEST_CASES`, and the codes of
    /// [`VersionTerms::validate`](crate::version::VersionTerms::validate).
    #[error("invalid: {0}")]
    Invalid(FieldError),
    /// Publication refused: some combination of factors prices at zero or below
    /// (`PRICE_NOT_POSITIVE`), below the floor (`PRICE_TOO_LOW`) or above the ceiling
    /// (`PRICE_TOO_HIGH`) of [`crate::rating`]'s sanity bounds. Field `rateTable`.
    #[error("{code}: {message}")]
    PriceOutOfBounds {
        /// `PRICE_NOT_POSITIVE`, `PRICE_TOO_LOW` or `PRICE_TOO_HIGH`.
        code: &'static str,
        /// The combination at fault and its price.
        message: String,
    },
    /// Publication refused: the version has no rating test cases. `NO_TEST_CASES`,
    /// field `testCases`.
    #[error("no rating test cases")]
    NoTestCases,
    /// Publication refused: some rating test cases failed. `TEST_CASES_FAILED`, field
    /// `testCases`; the message lists the first few.
    #[error("{} rating test case(s) failed", .0.len())]
    TestCasesFailed(Vec<CaseFailure>),
    /// No such driver (or a deleted one). `DRIVER_NOT_FOUND`, field `driverId`.
    #[error("driver not found")]
    DriverNotFound,
    /// No such vehicle, removed, or not this driver's. `VEHICLE_NOT_FOUND`, field `vehicleId`.
    #[error("vehicle not found")]
    VehicleNotFound,
    /// The driver's profile lacks something rating needs. `PROFILE_INCOMPLETE`, with the
    /// profile field missing (`dateOfBirth`, `licenceIssuedOn`, `postcode`).
    #[error("profile incomplete: {0}")]
    ProfileIncomplete(&'static str),
    /// The product will not cover this driver or vehicle. The code is the decline's
    /// (`VEHICLE_NOT_COVERED`, `UNDER_MINIMUM_AGE`, `TOO_MANY_CLAIMS`, `INVALID_POSTCODE`,
    /// `RATE_UNAVAILABLE`), with no field.
    #[error("declined: {0}")]
    Declined(Decline),
    /// No such quote, or another driver's. `QUOTE_NOT_FOUND`, field `quoteId`.
    #[error("quote not found")]
    QuoteNotFound,
    /// The quote is past its expiry. `QUOTE_EXPIRED`, field `quoteId`.
    #[error("quote expired")]
    QuoteExpired,
    /// The database failed. Internal.
    #[error("database error")]
    Database(#[from] diesel::result::Error),
    /// Something else failed (a stored row that does not parse, a bug). Internal.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<crate::charges::ChargeError> for PricingError {
    fn from(e: crate::charges::ChargeError) -> Self {
        PricingError::Internal(anyhow::Error::new(e))
    }
}

impl PricingError {
    /// The error as the user should see it, or `None` for internal failures.
    pub fn user_error(&self) -> Option<FieldError> {
        use PricingError::*;
        let (field, code, message): (Option<&str>, &'static str, String) = match self {
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
            VersionNotFound => (
                Some("versionId"),
                "VERSION_NOT_FOUND",
                "There is no such product version.".into(),
            ),
            VersionNotDraft => (
                Some("versionId"),
                "VERSION_NOT_DRAFT",
                "Only a draft version can be changed or published.".into(),
            ),
            VersionNotPublished => (
                Some("versionId"),
                "VERSION_NOT_PUBLISHED",
                "Only the published version can be retired.".into(),
            ),
            DuplicateProductCode => (
                Some("code"),
                "DUPLICATE_PRODUCT_CODE",
                "A product with this code already exists.".into(),
            ),
            Invalid(e) => return Some(e.clone()),
            PriceOutOfBounds { code, message } => (Some("rateTable"), *code, message.clone()),
            NoTestCases => (
                Some("testCases"),
                "NO_TEST_CASES",
                "Add rating test cases before publishing.".into(),
            ),
            TestCasesFailed(failures) => {
                let mut message = format!(
                    "{} rating test case(s) failed: {}",
                    failures.len(),
                    failures
                        .iter()
                        .take(LISTED_FAILURES)
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                if failures.len() > LISTED_FAILURES {
                    message.push_str("; …");
                }
                (Some("testCases"), "TEST_CASES_FAILED", message)
            }
            DriverNotFound => (Some("driverId"), "DRIVER_NOT_FOUND", "Not found.".into()),
            VehicleNotFound => (
                Some("vehicleId"),
                "VEHICLE_NOT_FOUND",
                "That vehicle is not one of yours.".into(),
            ),
            ProfileIncomplete(field) => (
                Some(*field),
                "PROFILE_INCOMPLETE",
                format!("Complete your profile ({field}) to get a quote."),
            ),
            Declined(d) => (None, d.code.as_str(), d.reason.clone()),
            QuoteNotFound => (Some("quoteId"), "QUOTE_NOT_FOUND", "Not found.".into()),
            QuoteExpired => (
                Some("quoteId"),
                "QUOTE_EXPIRED",
                "This quote has expired. Ask for a new one.".into(),
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
    use crate::rating::DeclineCode;

    #[test]
    fn user_fixable_errors_have_codes_internal_ones_do_not() {
        assert_eq!(
            PricingError::ProductNotFound.code(),
            Some("PRODUCT_NOT_FOUND")
        );
        assert_eq!(
            PricingError::QuoteExpired
                .user_error()
                .unwrap()
                .field
                .as_deref(),
            Some("quoteId")
        );
        let d = PricingError::Declined(Decline {
            code: DeclineCode::UnderMinimumAge,
            reason: "too young".into(),
        });
        assert_eq!(d.code(), Some("UNDER_MINIMUM_AGE"));
        let failures = (0..7)
            .map(|i| CaseFailure {
                name: format!("c{i}"),
                expected: "£1.00/hour".into(),
                actual: "£1.01/hour".into(),
            })
            .collect();
        let e = PricingError::TestCasesFailed(failures)
            .user_error()
            .unwrap();
        assert_eq!(e.code, "TEST_CASES_FAILED");
        assert!(e.message.starts_with("7 rating test case(s) failed"));
        assert!(e.message.ends_with("…"));
        assert!(
            PricingError::Database(diesel::result::Error::NotFound)
                .user_error()
                .is_none()
        );
        assert!(
            PricingError::Internal(anyhow::anyhow!("secret"))
                .user_error()
                .is_none()
        );
    }
}
