//! The HTTP client shared by the providers, and how a failed request is classified.

use std::sync::OnceLock;
use std::time::Duration;

static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();

/// The process's HTTP client for providers (connection pools are per client, so one is kept).
/// Per-request timeouts come from each provider's settings.
pub(crate) fn client() -> anyhow::Result<reqwest::Client> {
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    // The binary installs the ring provider at start; do it here too (a no-op when done) so a
    // test or tool that never went through `main` gets a client rather than a panic.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("shiftcover/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(CLIENT.get_or_init(|| client).clone())
}

/// Why a send did not succeed, as far as the job needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The provider will never deliver to this recipient (invalid or unroutable number,
    /// unsubscribed). Recorded `undeliverable`; not retried.
    Undeliverable {
        /// The provider's error code.
        code: String,
        /// The provider's message.
        message: String,
    },
    /// The provider refused the request (a 4xx that is not about the recipient nor a rate limit):
    /// sending again would fail the same way. Recorded `failed`; dead-lettered for ops.
    Rejected {
        /// The provider's error code, or the HTTP status.
        code: String,
        /// The provider's message.
        message: String,
    },
    /// Certainly not accepted, worth another attempt (429, 5xx, connection refused).
    Retryable(String),
    /// Maybe accepted: the request went out and no answer came back (a timeout, a dropped
    /// connection). The next attempt must find out before sending again.
    Ambiguous(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Undeliverable { code, message } => {
                write!(f, "undeliverable ({code}): {message}")
            }
            SendError::Rejected { code, message } => write!(f, "rejected ({code}): {message}"),
            SendError::Retryable(m) => write!(f, "retryable: {m}"),
            SendError::Ambiguous(m) => write!(f, "ambiguous: {m}"),
        }
    }
}

/// Classifies a transport error: one raised before a connection was made is certainly not
/// received; any other (timeout, reset, an unreadable answer) may have been.
pub(crate) fn transport_error(what: &str, e: &reqwest::Error) -> SendError {
    if e.is_connect() || e.is_builder() {
        SendError::Retryable(format!("{what}: could not connect: {e}"))
    } else if e.is_timeout() {
        SendError::Ambiguous(format!("{what}: timed out waiting for the answer"))
    } else {
        SendError::Ambiguous(format!("{what}: {e}"))
    }
}

/// Shortens provider text for storage and logs.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
