//! Errors of the accounts app.
//!
//! Two enums: [`AccountsError`] for service calls (sign-in, profile, vehicles, staff, partners) and
//! [`AuthError`] for turning a bearer credential into a principal. Each maps the cases a user can fix
//! to a [`FieldError`] with a stable code; storage and other internal failures map to `None` and must
//! be reported as internal errors, never shown.
//!
//! Field names are the camelCase names of the GraphQL input fields (`phone`, `dateOfBirth`, …); the
//! API layer may prefix them with `input.`.

use shared::FieldError;

/// Why an accounts service call failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The phone number is not a valid number that can receive SMS. `INVALID_PHONE`, field `phone`.
    #[error("invalid phone number: {0}")]
    InvalidPhone(&'static str),
    /// Wrong code, or no code was requested for this phone (deliberately indistinguishable).
    /// `INVALID_CODE`, field `code`.
    #[error("invalid login code")]
    InvalidCode,
    /// The code is past its expiry. `CODE_EXPIRED`, field `code`.
    #[error("login code expired")]
    CodeExpired,
    /// The code was already used to sign in. `CODE_ALREADY_USED`, field `code`.
    #[error("login code already used")]
    CodeAlreadyUsed,
    /// The code has had its maximum number of tries. `TOO_MANY_ATTEMPTS`, field `code`.
    #[error("too many attempts for this login code")]
    TooManyAttempts,
    /// A name is empty, too long or contains control characters. `INVALID_NAME`, field `name`.
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    /// A date of birth in the future or more than 100 years ago. `INVALID_DATE_OF_BIRTH`,
    /// field `dateOfBirth`.
    #[error("invalid date of birth: {0}")]
    InvalidDateOfBirth(&'static str),
    /// Younger than 16. `TOO_YOUNG`, field `dateOfBirth`.
    #[error("driver is younger than 16")]
    TooYoung,
    /// Not an email address. `INVALID_EMAIL`, field `email`.
    #[error("invalid email address")]
    InvalidEmail,
    /// Not a UK (DVLA) driving licence number, or one that contradicts the date of birth.
    /// `INVALID_LICENCE_NUMBER`, field `licenceNumber`.
    #[error("invalid licence number: {0}")]
    InvalidLicenceNumber(&'static str),
    /// A licence issue date in the future or before the driver's 16th birthday.
    /// `INVALID_LICENCE_DATE`, field `licenceIssuedOn`.
    #[error("invalid licence issue date: {0}")]
    InvalidLicenceDate(&'static str),
    /// Not a UK postcode. `INVALID_POSTCODE`, field `postcode`.
    #[error("invalid postcode")]
    InvalidPostcode,
    /// Not a vehicle registration mark (2 to 8 letters and digits). `INVALID_REGISTRATION`,
    /// field `registration`.
    #[error("invalid registration")]
    InvalidRegistration,
    /// A motor vehicle was added without a registration. `REGISTRATION_REQUIRED`, field `registration`.
    #[error("a registration is required for this vehicle type")]
    RegistrationRequired,
    /// A bicycle or e-bike was given a registration. `REGISTRATION_NOT_ALLOWED`, field `registration`.
    #[error("this vehicle type has no registration")]
    RegistrationNotAllowed,
    /// Not one of the vehicle types. `INVALID_VEHICLE_TYPE`, field `vehicleType`.
    #[error("invalid vehicle type")]
    InvalidVehicleType,
    /// Make longer than the limit. `INVALID_MAKE`, field `make`.
    #[error("invalid make")]
    InvalidMake,
    /// Model longer than the limit. `INVALID_MODEL`, field `model`.
    #[error("invalid model")]
    InvalidModel,
    /// The driver already has a vehicle with this registration. `DUPLICATE_VEHICLE`,
    /// field `registration`.
    #[error("vehicle already added")]
    DuplicateVehicle,
    /// The thing does not exist, or exists but is not the caller's (never revealed).
    /// `NOT_FOUND`, with the field that named it (`vehicleId`, `driverId`, `partnerId`, `keyId`, …).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Password shorter than the minimum. `WEAK_PASSWORD`, field `password`.
    #[error("password too short")]
    WeakPassword,
    /// Password longer than the maximum hashed. `PASSWORD_TOO_LONG`, field `password`.
    #[error("password too long")]
    PasswordTooLong,
    /// A staff user with this email exists. `DUPLICATE_EMAIL`, field `email`.
    #[error("email already in use")]
    DuplicateEmail,
    /// Unknown email or wrong password (deliberately indistinguishable). `INVALID_CREDENTIALS`.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The staff account is disabled (reported only after a correct password). `ACCOUNT_DISABLED`.
    #[error("account disabled")]
    AccountDisabled,
    /// Not one of `ops`, `finance`, `admin`. `INVALID_ROLE`, field `role`.
    #[error("invalid role")]
    InvalidRole,
    /// Unknown scope, or no scope at all. `INVALID_SCOPE`, field `scopes`.
    #[error("invalid scopes: {0}")]
    InvalidScope(&'static str),
    /// The API key is revoked. `API_KEY_REVOKED`, field `keyId`.
    #[error("API key revoked")]
    ApiKeyRevoked,
    /// The API key has expired. `API_KEY_EXPIRED`, field `keyId`.
    #[error("API key expired")]
    ApiKeyExpired,
    /// A rotation overlap that is negative or longer than allowed. `INVALID_OVERLAP`, field `overlap`.
    #[error("invalid rotation overlap")]
    InvalidOverlap,
    /// The database failed. Internal.
    #[error("database error")]
    Database(#[from] diesel::result::Error),
    /// Something else failed (hashing, serialisation, a worker thread). Internal.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl AccountsError {
    /// The error as the user should see it, or `None` for internal failures.
    pub fn user_error(&self) -> Option<FieldError> {
        use AccountsError::*;
        let (field, code, message): (Option<&str>, &'static str, String) = match self {
            InvalidPhone(why) => (
                Some("phone"),
                "INVALID_PHONE",
                format!("Enter a valid mobile number: {why}."),
            ),
            InvalidCode => (
                Some("code"),
                "INVALID_CODE",
                "That code is not right. Check the text message and try again.".into(),
            ),
            CodeExpired => (
                Some("code"),
                "CODE_EXPIRED",
                "That code has expired. Ask for a new one.".into(),
            ),
            CodeAlreadyUsed => (
                Some("code"),
                "CODE_ALREADY_USED",
                "That code has already been used. Ask for a new one.".into(),
            ),
            TooManyAttempts => (
                Some("code"),
                "TOO_MANY_ATTEMPTS",
                "Too many wrong tries for that code. Ask for a new one.".into(),
            ),
            InvalidName(why) => (Some("name"), "INVALID_NAME", format!("Name {why}.")),
            InvalidDateOfBirth(why) => (
                Some("dateOfBirth"),
                "INVALID_DATE_OF_BIRTH",
                format!("Date of birth {why}."),
            ),
            TooYoung => (
                Some("dateOfBirth"),
                "TOO_YOUNG",
                "You must be at least 16 to be covered.".into(),
            ),
            InvalidEmail => (
                Some("email"),
                "INVALID_EMAIL",
                "Enter an email address like name@example.com.".into(),
            ),
            InvalidLicenceNumber(why) => (
                Some("licenceNumber"),
                "INVALID_LICENCE_NUMBER",
                format!("Enter the 16-character number from your UK driving licence: {why}."),
            ),
            InvalidLicenceDate(why) => (
                Some("licenceIssuedOn"),
                "INVALID_LICENCE_DATE",
                format!("Licence issue date {why}."),
            ),
            InvalidPostcode => (
                Some("postcode"),
                "INVALID_POSTCODE",
                "Enter a UK postcode like SW1A 1AA.".into(),
            ),
            InvalidRegistration => (
                Some("registration"),
                "INVALID_REGISTRATION",
                "Enter the registration as shown on the number plate (2 to 8 letters and numbers)."
                    .into(),
            ),
            RegistrationRequired => (
                Some("registration"),
                "REGISTRATION_REQUIRED",
                "Enter the vehicle's registration.".into(),
            ),
            RegistrationNotAllowed => (
                Some("registration"),
                "REGISTRATION_NOT_ALLOWED",
                "Bicycles and e-bikes have no registration; leave it empty.".into(),
            ),
            InvalidVehicleType => (
                Some("vehicleType"),
                "INVALID_VEHICLE_TYPE",
                "Choose bicycle, e-bike, scooter/moped, motorbike, car or van.".into(),
            ),
            InvalidMake => (
                Some("make"),
                "INVALID_MAKE",
                format!(
                    "Make must be at most {} characters.",
                    crate::vehicles::MAX_MAKE_MODEL_CHARS
                ),
            ),
            InvalidModel => (
                Some("model"),
                "INVALID_MODEL",
                format!(
                    "Model must be at most {} characters.",
                    crate::vehicles::MAX_MAKE_MODEL_CHARS
                ),
            ),
            DuplicateVehicle => (
                Some("registration"),
                "DUPLICATE_VEHICLE",
                "You have already added a vehicle with this registration.".into(),
            ),
            NotFound(field) => (Some(*field), "NOT_FOUND", "Not found.".into()),
            WeakPassword => (
                Some("password"),
                "WEAK_PASSWORD",
                format!(
                    "Use a password of at least {} characters.",
                    crate::staff::MIN_PASSWORD_CHARS
                ),
            ),
            PasswordTooLong => (
                Some("password"),
                "PASSWORD_TOO_LONG",
                format!(
                    "Use a password of at most {} characters.",
                    crate::staff::MAX_PASSWORD_CHARS
                ),
            ),
            DuplicateEmail => (
                Some("email"),
                "DUPLICATE_EMAIL",
                "A staff user with this email already exists.".into(),
            ),
            InvalidCredentials => (
                None,
                "INVALID_CREDENTIALS",
                "Email or password is not right.".into(),
            ),
            AccountDisabled => (None, "ACCOUNT_DISABLED", "This account is disabled.".into()),
            InvalidRole => (
                Some("role"),
                "INVALID_ROLE",
                "Choose ops, finance or admin.".into(),
            ),
            InvalidScope(why) => (Some("scopes"), "INVALID_SCOPE", format!("Scopes: {why}.")),
            ApiKeyRevoked => (
                Some("keyId"),
                "API_KEY_REVOKED",
                "This API key is revoked.".into(),
            ),
            ApiKeyExpired => (
                Some("keyId"),
                "API_KEY_EXPIRED",
                "This API key has expired.".into(),
            ),
            InvalidOverlap => (
                Some("overlap"),
                "INVALID_OVERLAP",
                format!(
                    "The overlap must be between 0 and {} hours.",
                    crate::partners::MAX_ROTATION_OVERLAP_HOURS
                ),
            ),
            Database(_) | Internal(_) => return None,
        };
        Some(FieldError {
            field: field.map(str::to_owned),
            code,
            message,
        })
    }
}

/// Why a bearer credential (driver token, staff token, partner API key) was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed or unknown credential. `UNAUTHENTICATED`.
    #[error("unauthenticated")]
    Unauthenticated,
    /// The session ran past its expiry. `SESSION_EXPIRED`.
    #[error("session expired")]
    SessionExpired,
    /// The session was signed out, or its account deleted. `SESSION_REVOKED`.
    #[error("session revoked")]
    SessionRevoked,
    /// The API key ran past its expiry (for example the end of a rotation overlap). `API_KEY_EXPIRED`.
    #[error("API key expired")]
    ApiKeyExpired,
    /// The API key was revoked. `API_KEY_REVOKED`.
    #[error("API key revoked")]
    ApiKeyRevoked,
    /// The staff user is disabled or the partner suspended. `ACCOUNT_DISABLED`.
    #[error("account disabled")]
    AccountDisabled,
    /// The database failed. Internal.
    #[error("database error")]
    Database(#[from] diesel::result::Error),
    /// The database could not be reached (no pooled connection). Internal.
    #[error("credential check unavailable: {0:#}")]
    Unavailable(anyhow::Error),
}

impl AuthError {
    /// The stable code for the API's `extensions.code`, or `None` for internal failures.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            AuthError::Unauthenticated => Some("UNAUTHENTICATED"),
            AuthError::SessionExpired => Some("SESSION_EXPIRED"),
            AuthError::SessionRevoked => Some("SESSION_REVOKED"),
            AuthError::ApiKeyExpired => Some("API_KEY_EXPIRED"),
            AuthError::ApiKeyRevoked => Some("API_KEY_REVOKED"),
            AuthError::AccountDisabled => Some("ACCOUNT_DISABLED"),
            AuthError::Database(_) | AuthError::Unavailable(_) => None,
        }
    }

    /// The error as the caller should see it, or `None` for internal failures.
    pub fn user_error(&self) -> Option<FieldError> {
        let code = self.code()?;
        let message = match self {
            AuthError::Unauthenticated => "Sign in to continue.",
            AuthError::SessionExpired => "Your session has expired. Sign in again.",
            AuthError::SessionRevoked => "You have been signed out. Sign in again.",
            AuthError::ApiKeyExpired => "This API key has expired.",
            AuthError::ApiKeyRevoked => "This API key has been revoked.",
            AuthError::AccountDisabled => "This account is disabled.",
            AuthError::Database(_) | AuthError::Unavailable(_) => return None,
        };
        Some(FieldError::general(code, message))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn user_fixable_errors_have_codes_and_fields_internal_ones_do_not() {
        let e = AccountsError::InvalidPhone("too short").user_error();
        let e = e.as_ref();
        assert_eq!(e.map(|e| e.code), Some("INVALID_PHONE"));
        assert_eq!(e.and_then(|e| e.field.as_deref()), Some("phone"));
        let nf = AccountsError::NotFound("vehicleId").user_error();
        assert_eq!(nf.as_ref().map(|e| e.code), Some("NOT_FOUND"));
        assert_eq!(
            nf.as_ref().and_then(|e| e.field.as_deref()),
            Some("vehicleId")
        );
        assert!(
            AccountsError::Database(diesel::result::Error::NotFound)
                .user_error()
                .is_none()
        );
        assert!(
            AccountsError::Internal(anyhow::anyhow!("secret detail"))
                .user_error()
                .is_none()
        );
        assert_eq!(AuthError::SessionRevoked.code(), Some("SESSION_REVOKED"));
        assert!(
            AuthError::Database(diesel::result::Error::NotFound)
                .user_error()
                .is_none()
        );
    }
}
