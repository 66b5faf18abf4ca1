//! Errors of the claims app.
//!
//! [`ClaimsError::user_error`] maps every case a driver or an ops user can act on to a
//! [`FieldError`] with a stable code; storage and other internal failures map to `None` and must
//! be reported as internal errors, never shown. Field names are the camelCase names of the
//! GraphQL input fields (`occurredAt`, `vehicleId`, `photoIds`, …).

use shared::{FieldError, Money};

/// Why a claims service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimsError {
    /// The time of loss is after now. `LOSS_TIME_IN_FUTURE`, field `occurredAt`.
    #[error("loss time in the future")]
    LossTimeInFuture,
    /// The time of loss is longer ago than a claim can be reported online.
    /// `LOSS_TIME_TOO_OLD`, field `occurredAt`.
    #[error("loss time too old")]
    LossTimeTooOld,
    /// No such vehicle, removed, or another driver's. `VEHICLE_NOT_FOUND`, field `vehicleId`.
    #[error("vehicle not found")]
    VehicleNotFound,
    /// A location that is empty, too long or has control characters. `INVALID_LOCATION`,
    /// field `location`.
    #[error("invalid location")]
    InvalidLocation,
    /// A description that is empty or too long. `INVALID_DESCRIPTION`, field `description`.
    #[error("invalid description")]
    InvalidDescription,
    /// A reason or note that is empty, too long or has control characters. `INVALID_REASON`,
    /// field `reason`.
    #[error("invalid reason")]
    InvalidReason,
    /// An idempotency key that is empty, too long or has control characters.
    /// `INVALID_IDEMPOTENCY_KEY`, field `idempotencyKey`.
    #[error("invalid idempotency key")]
    InvalidIdempotencyKey,
    /// The idempotency key already reported another claim. `IDEMPOTENCY_KEY_REUSED`, field
    /// `idempotencyKey`.
    #[error("idempotency key reused with different parameters")]
    IdempotencyKeyReused,
    /// An upload larger than the limit. `PHOTO_TOO_LARGE`, field `photo`.
    #[error("photo too large: at most {max_bytes} bytes")]
    PhotoTooLarge {
        /// The limit.
        max_bytes: usize,
    },
    /// An empty upload, or one that is not a JPEG, PNG, HEIC or WebP image (by its content,
    /// whatever it claims to be). `UNSUPPORTED_PHOTO_TYPE`, field `photo`.
    #[error("not a JPEG, PNG, HEIC or WebP image")]
    UnsupportedPhotoType,
    /// No such photo, or another driver's. `PHOTO_NOT_FOUND`, field `photoIds`.
    #[error("photo not found")]
    PhotoNotFound,
    /// The photo is already part of a claim. `PHOTO_ALREADY_ATTACHED`, field `photoIds`.
    #[error("photo already attached to a claim")]
    PhotoAlreadyAttached,
    /// More photos than one claim takes. `TOO_MANY_PHOTOS`, field `photoIds`.
    #[error("too many photos")]
    TooManyPhotos,
    /// No such claim, or another driver's. `CLAIM_NOT_FOUND`, field `claimId`.
    #[error("claim not found")]
    ClaimNotFound,
    /// The claim cannot move from its status to the one asked for. `INVALID_TRANSITION`,
    /// field `status`.
    #[error("a {from} claim cannot become {to}")]
    InvalidTransition {
        /// The current status.
        from: &'static str,
        /// The status asked for.
        to: &'static str,
    },
    /// The claim is closed (settled, declined or withdrawn): its reserve is final.
    /// `CLAIM_CLOSED`, field `claimId`.
    #[error("claim closed")]
    ClaimClosed,
    /// A negative or out-of-range amount. `INVALID_AMOUNT`, field `amount`.
    #[error("invalid amount")]
    InvalidAmount,
    /// No such session, or another driver's. `SESSION_NOT_FOUND`, field `sessionId`.
    #[error("session not found")]
    SessionNotFound,
    /// The session has no charge taken to dispute (still on cover, not charged yet, or free).
    /// `SESSION_NOT_CHARGED`, field `sessionId`.
    #[error("session not charged")]
    SessionNotCharged,
    /// The session's charge is already disputed. `ALREADY_DISPUTED`, field `sessionId`.
    #[error("session already disputed")]
    AlreadyDisputed,
    /// A dispute with reason OTHER needs details, and details are at most 1000 characters.
    /// `INVALID_DISPUTE_DETAILS`, field `details`.
    #[error("invalid dispute details")]
    InvalidDisputeDetails,
    /// No such dispute, or another driver's. `DISPUTE_NOT_FOUND`, field `disputeId`.
    #[error("dispute not found")]
    DisputeNotFound,
    /// The dispute was already resolved. `DISPUTE_ALREADY_RESOLVED`, field `disputeId`.
    #[error("dispute already resolved")]
    DisputeAlreadyResolved,
    /// An adjustment must refund part of the charge: more than nothing, less than all of what is
    /// left. `INVALID_ADJUSTMENT`, field `refundAmount`.
    #[error("adjustment must be between zero and {refundable}")]
    InvalidAdjustment {
        /// What is left to refund.
        refundable: Money,
    },
    /// The session's charge has nothing left to refund. `NOTHING_TO_REFUND`, field `disputeId`.
    #[error("nothing to refund")]
    NothingToRefund,
    /// A pagination cursor this app did not issue. `INVALID_CURSOR`, field `after`.
    #[error("invalid cursor")]
    InvalidCursor,
    /// The database failed. Internal.
    #[error("database error")]
    Database(#[from] diesel::result::Error),
    /// Something else failed (photo storage, another app, a stored row that does not parse).
    /// Internal.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<cover::CoverError> for ClaimsError {
    fn from(e: cover::CoverError) -> Self {
        match e {
            cover::CoverError::Database(e) => ClaimsError::Database(e),
            other => ClaimsError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<accounts::AccountsError> for ClaimsError {
    fn from(e: accounts::AccountsError) -> Self {
        match e {
            accounts::AccountsError::Database(e) => ClaimsError::Database(e),
            other => ClaimsError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<notifications::NotificationsError> for ClaimsError {
    fn from(e: notifications::NotificationsError) -> Self {
        ClaimsError::Internal(anyhow::Error::new(e))
    }
}

impl From<pricing::PricingError> for ClaimsError {
    fn from(e: pricing::PricingError) -> Self {
        match e {
            pricing::PricingError::Database(e) => ClaimsError::Database(e),
            other => ClaimsError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<partners::PartnersError> for ClaimsError {
    fn from(e: partners::PartnersError) -> Self {
        match e {
            partners::PartnersError::Database(e) => ClaimsError::Database(e),
            other => ClaimsError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl ClaimsError {
    /// The error as the user sees it, or `None` for internal failures.
    pub fn user_error(&self) -> Option<FieldError> {
        use ClaimsError::*;
        Some(match self {
            LossTimeInFuture => FieldError::field(
                "occurredAt",
                "LOSS_TIME_IN_FUTURE",
                "The time of the incident cannot be in the future.",
            ),
            LossTimeTooOld => FieldError::field(
                "occurredAt",
                "LOSS_TIME_TOO_OLD",
                "This incident is too long ago to report in the app: call the claims team.",
            ),
            VehicleNotFound => FieldError::field(
                "vehicleId",
                "VEHICLE_NOT_FOUND",
                "No such vehicle on your account.",
            ),
            InvalidLocation => FieldError::field(
                "location",
                "INVALID_LOCATION",
                "Say where it happened (1 to 300 characters).",
            ),
            InvalidDescription => FieldError::field(
                "description",
                "INVALID_DESCRIPTION",
                "Describe what happened (1 to 4000 characters).",
            ),
            InvalidReason => FieldError::field(
                "reason",
                "INVALID_REASON",
                "Give a reason of 1 to 500 characters.",
            ),
            InvalidIdempotencyKey => FieldError::field(
                "idempotencyKey",
                "INVALID_IDEMPOTENCY_KEY",
                "The idempotency key must be 1 to 200 characters without control characters.",
            ),
            IdempotencyKeyReused => FieldError::field(
                "idempotencyKey",
                "IDEMPOTENCY_KEY_REUSED",
                "This idempotency key was used for another claim.",
            ),
            PhotoTooLarge { max_bytes } => FieldError::field(
                "photo",
                "PHOTO_TOO_LARGE",
                format!("A photo can be at most {max_bytes} bytes."),
            ),
            UnsupportedPhotoType => FieldError::field(
                "photo",
                "UNSUPPORTED_PHOTO_TYPE",
                "Photos must be JPEG, PNG, HEIC or WebP images.",
            ),
            PhotoNotFound => FieldError::field("photoIds", "PHOTO_NOT_FOUND", "No such photo."),
            PhotoAlreadyAttached => FieldError::field(
                "photoIds",
                "PHOTO_ALREADY_ATTACHED",
                "This photo is already part of a claim.",
            ),
            TooManyPhotos => FieldError::field(
                "photoIds",
                "TOO_MANY_PHOTOS",
                format!(
                    "A claim takes at most {} photos.",
                    crate::photos::MAX_PHOTOS_PER_CLAIM
                ),
            ),
            ClaimNotFound => FieldError::field("claimId", "CLAIM_NOT_FOUND", "No such claim."),
            InvalidTransition { from, to } => FieldError::field(
                "status",
                "INVALID_TRANSITION",
                format!(
                    "{} {from} claim cannot become {to}.",
                    if from.starts_with(['a', 'e', 'i', 'o', 'u']) {
                        "An"
                    } else {
                        "A"
                    }
                ),
            ),
            ClaimClosed => FieldError::field(
                "claimId",
                "CLAIM_CLOSED",
                "The claim is closed; its figures are final.",
            ),
            InvalidAmount => FieldError::field(
                "amount",
                "INVALID_AMOUNT",
                "The amount must be zero or more, in minor units.",
            ),
            SessionNotFound => {
                FieldError::field("sessionId", "SESSION_NOT_FOUND", "No such cover session.")
            }
            SessionNotCharged => FieldError::field(
                "sessionId",
                "SESSION_NOT_CHARGED",
                "This session has no charge to dispute yet.",
            ),
            AlreadyDisputed => FieldError::field(
                "sessionId",
                "ALREADY_DISPUTED",
                "This session's charge is already disputed.",
            ),
            InvalidDisputeDetails => FieldError::field(
                "details",
                "INVALID_DISPUTE_DETAILS",
                "Tell us what is wrong (up to 1000 characters; needed for OTHER).",
            ),
            DisputeNotFound => {
                FieldError::field("disputeId", "DISPUTE_NOT_FOUND", "No such dispute.")
            }
            DisputeAlreadyResolved => FieldError::field(
                "disputeId",
                "DISPUTE_ALREADY_RESOLVED",
                "This dispute has already been resolved.",
            ),
            InvalidAdjustment { refundable } => FieldError::field(
                "refundAmount",
                "INVALID_ADJUSTMENT",
                format!(
                    "An adjustment refunds more than nothing and less than {refundable}; use REFUND for all of it."
                ),
            ),
            NothingToRefund => FieldError::field(
                "disputeId",
                "NOTHING_TO_REFUND",
                "The session's charge has already been refunded.",
            ),
            InvalidCursor => {
                FieldError::field("after", "INVALID_CURSOR", "Not a cursor of this list.")
            }
            Database(_) | Internal(_) => return None,
        })
    }
}
