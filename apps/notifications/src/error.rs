//! Errors of the notifications app.
//!
//! Callers act on [`NotificationsError::InvalidRecipient`] and [`NotificationsError::InvalidCause`]
//! (both mean the calling code passed something it should not have); storage failures are internal.
//! A template that cannot be rendered is *not* an error here: the notification is recorded as
//! failed with its reason, so the event that caused it still commits.

/// Why a notifications call failed.
#[derive(Debug, thiserror::Error)]
pub enum NotificationsError {
    /// The recipient is not an E.164 phone (SMS) or an email address (email).
    #[error("invalid recipient: {0}")]
    InvalidRecipient(&'static str),
    /// The cause is empty or longer than 200 characters.
    #[error("invalid cause: must be 1 to 200 characters")]
    InvalidCause,
    /// The notification cannot be sent again: a sign-in code (it has expired or been used), or
    /// one whose content was erased with the account. `NOT_RESENDABLE`.
    #[error("not resendable: {0}")]
    NotResendable(&'static str),
    /// No such notification. `NOT_FOUND`.
    #[error("notification not found")]
    NotFound,
    /// The database failed. Internal.
    #[error("database error")]
    Database(#[from] diesel::result::Error),
    /// Something else failed (serialisation, the outbox). Internal.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}
