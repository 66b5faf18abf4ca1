//! Errors of the partners app.
//!
//! [`PartnersError::user_error`] maps every case a partner, a driver or an ops user can act on to
//! a [`FieldError`] with a stable code; storage and other internal failures map to `None` and
//! must be reported as internal errors, never shown. Field names are the camelCase names of the
//! GraphQL input fields.
//!
//! Per-event answers of [`crate::record_shift_events`] are not errors: each event gets its own
//! result, with one of the codes in [`crate::events::codes`].

use shared::FieldError;

/// Why a partners service call failed.
#[derive(Debug, thiserror::Error)]
pub enum PartnersError {
    /// No unused link code matches. `INVALID_LINK_CODE`, field `linkCode`.
    #[error("invalid link code")]
    InvalidLinkCode,
    /// The link code is past its expiry. `LINK_CODE_EXPIRED`, field `linkCode`.
    #[error("link code expired")]
    LinkCodeExpired,
    /// An external driver id that is empty, longer than 200 characters or has control
    /// characters. `INVALID_EXTERNAL_DRIVER_ID`, field `externalDriverId`.
    #[error("invalid external driver id")]
    InvalidExternalDriverId,
    /// The partner already links this external id to another driver.
    /// `EXTERNAL_ID_TAKEN`, field `externalDriverId`.
    #[error("external driver id already linked")]
    ExternalIdTaken,
    /// The driver is already linked to this partner under another external id.
    /// `ALREADY_LINKED`, field `linkCode`.
    #[error("driver already linked to this partner")]
    AlreadyLinked,
    /// No such link, or another partner's or driver's. `LINK_NOT_FOUND`, field `linkId`.
    #[error("link not found")]
    LinkNotFound,
    /// The partner never linked this external id. `UNKNOWN_DRIVER`, field `externalDriverId`.
    #[error("unknown external driver")]
    UnknownDriver,
    /// The external id was linked once but is unlinked now. `NOT_LINKED`, field
    /// `externalDriverId`.
    #[error("driver no longer linked")]
    NotLinked,
    /// More events in one call than allowed. `BATCH_TOO_LARGE`, field `events`.
    #[error("batch of {size} events; at most {max}")]
    BatchTooLarge {
        /// Events sent.
        size: usize,
        /// Events allowed.
        max: usize,
    },
    /// A webhook URL that is not https (http for a test-mode endpoint), has credentials in it
    /// or is too long. `INVALID_URL`, field `url`.
    #[error("invalid url")]
    InvalidUrl,
    /// A webhook URL whose host is, or resolves to, an address that is not public (loopback,
    /// private, link-local, …). `URL_NOT_ALLOWED`, field `url`.
    #[error("url not allowed")]
    UrlNotAllowed,
    /// The partner has as many endpoints as it may register. `TOO_MANY_ENDPOINTS`, field `url`.
    #[error("at most {max} webhook endpoints")]
    TooManyEndpoints {
        /// Endpoints allowed per partner.
        max: u32,
    },
    /// No event types, or an unknown one. `INVALID_EVENT_TYPES`, field `eventTypes`.
    #[error("invalid event types")]
    InvalidEventTypes,
    /// A timeout outside 100–10000 ms. `INVALID_TIMEOUT`, field `timeoutMs`.
    #[error("invalid timeout")]
    InvalidTimeout,
    /// A secret rotation overlap outside 0–7 days. `INVALID_OVERLAP`, field `overlapHours`.
    #[error("invalid overlap")]
    InvalidOverlap,
    /// No such endpoint, or another partner's. `ENDPOINT_NOT_FOUND`, field `endpointId`.
    #[error("webhook endpoint not found")]
    EndpointNotFound,
    /// No such delivery, or another partner's. `DELIVERY_NOT_FOUND`, field `deliveryId`.
    #[error("webhook delivery not found")]
    DeliveryNotFound,
    /// The database failed. Internal.
    #[error("database error")]
    Database(#[from] diesel::result::Error),
    /// Something else failed (cover, pricing, a stored row that does not parse). Internal.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<cover::CoverError> for PartnersError {
    fn from(e: cover::CoverError) -> Self {
        match e {
            cover::CoverError::Database(e) => PartnersError::Database(e),
            other => PartnersError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<accounts::AccountsError> for PartnersError {
    fn from(e: accounts::AccountsError) -> Self {
        PartnersError::Internal(anyhow::Error::new(e))
    }
}

impl PartnersError {
    /// The stable code, or `None` for internal failures.
    pub fn code(&self) -> Option<&'static str> {
        self.user_error().map(|e| e.code)
    }

    /// The error as the caller should see it, or `None` for internal failures.
    pub fn user_error(&self) -> Option<FieldError> {
        use PartnersError::*;
        let (field, code, message): (&str, &'static str, String) = match self {
            InvalidLinkCode => (
                "linkCode",
                "INVALID_LINK_CODE",
                "That link code is not valid.".into(),
            ),
            LinkCodeExpired => (
                "linkCode",
                "LINK_CODE_EXPIRED",
                "That link code has expired; ask the driver for a new one.".into(),
            ),
            InvalidExternalDriverId => (
                "externalDriverId",
                "INVALID_EXTERNAL_DRIVER_ID",
                "Driver ids are 1 to 200 characters without control characters.".into(),
            ),
            ExternalIdTaken => (
                "externalDriverId",
                "EXTERNAL_ID_TAKEN",
                "This driver id is already linked to another driver.".into(),
            ),
            AlreadyLinked => (
                "linkCode",
                "ALREADY_LINKED",
                "This driver is already linked to you under another driver id.".into(),
            ),
            LinkNotFound => ("linkId", "LINK_NOT_FOUND", "Not found.".into()),
            UnknownDriver => (
                "externalDriverId",
                "UNKNOWN_DRIVER",
                "No driver is linked under this id.".into(),
            ),
            NotLinked => (
                "externalDriverId",
                "NOT_LINKED",
                "This driver is no longer linked.".into(),
            ),
            BatchTooLarge { size, max } => (
                "events",
                "BATCH_TOO_LARGE",
                format!("{size} events sent; send at most {max} at a time."),
            ),
            InvalidUrl => (
                "url",
                "INVALID_URL",
                "Use an https URL of at most 2000 characters, without a user name or password \
                 (plain http only for test-mode endpoints)."
                    .into(),
            ),
            UrlNotAllowed => (
                "url",
                "URL_NOT_ALLOWED",
                "Webhooks go only to public internet addresses; this host is, or resolves to, a \
                 private, loopback or reserved one."
                    .into(),
            ),
            TooManyEndpoints { max } => (
                "url",
                "TOO_MANY_ENDPOINTS",
                format!(
                    "A partner may register at most {max} webhook endpoints; remove or reuse one."
                ),
            ),
            InvalidEventTypes => (
                "eventTypes",
                "INVALID_EVENT_TYPES",
                "Choose at least one known event type.".into(),
            ),
            InvalidTimeout => (
                "timeoutMs",
                "INVALID_TIMEOUT",
                "The timeout must be 100 to 10000 milliseconds.".into(),
            ),
            InvalidOverlap => (
                "overlapHours",
                "INVALID_OVERLAP",
                "The overlap must be 0 to 168 hours.".into(),
            ),
            EndpointNotFound => ("endpointId", "ENDPOINT_NOT_FOUND", "Not found.".into()),
            DeliveryNotFound => ("deliveryId", "DELIVERY_NOT_FOUND", "Not found.".into()),
            Database(_) | Internal(_) => return None,
        };
        Some(FieldError::field(field, code, message))
    }
}
