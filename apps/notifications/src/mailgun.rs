//! Mailgun: sending an email.
//!
//! `POST {base}/v3/{domain}/messages` as `multipart/form-data` with `from`, `to`, `subject`,
//! `text`, `html` and the custom variable `v:notification_id` (which Mailgun returns in every
//! webhook event, so an event can be matched even when the send's answer was lost), with HTTP
//! Basic auth `api:<key>`. Mailgun has no idempotency key and no lookup by our reference: after an
//! ambiguous failure an email is sent again at most once.

use crate::http::{SendError, transport_error, truncate};
use serde::Deserialize;
use shared::settings::MailgunSettings;
use std::time::Duration;

/// The path of the messages resource of a sending domain.
pub fn messages_path(domain: &str) -> String {
    format!("/v3/{domain}/messages")
}

/// The name of the custom variable that carries our notification id.
pub const NOTIFICATION_ID_VARIABLE: &str = "notification_id";

#[derive(Debug, Deserialize)]
struct Accepted {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Refused {
    #[serde(default)]
    message: Option<String>,
}

/// An email to send.
pub(crate) struct Email<'a> {
    pub(crate) to: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) text: &'a str,
    pub(crate) html: &'a str,
    pub(crate) notification_id: String,
}

/// Mailgun's message id without the angle brackets it answers with (webhooks carry it bare).
pub fn normalize_message_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

/// Sends one email. Returns Mailgun's message id (without angle brackets).
pub(crate) async fn send_email(
    http: &reqwest::Client,
    settings: &MailgunSettings,
    email: Email<'_>,
) -> Result<String, SendError> {
    let url = format!(
        "{}{}",
        settings.base_url.trim_end_matches('/'),
        messages_path(&settings.domain)
    );
    let form = reqwest::multipart::Form::new()
        .text("from", settings.from.clone())
        .text("to", email.to.to_owned())
        .text("subject", email.subject.to_owned())
        .text("text", email.text.to_owned())
        .text("html", email.html.to_owned())
        .text(
            format!("v:{NOTIFICATION_ID_VARIABLE}"),
            email.notification_id,
        );
    let response = http
        .post(url)
        .basic_auth("api", Some(settings.api_key.expose()))
        .timeout(Duration::from_millis(settings.timeout_ms))
        .multipart(form)
        .send()
        .await
        .map_err(|e| transport_error("Mailgun", &e))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| transport_error("Mailgun answer", &e))?;
    if status.is_success() {
        let accepted: Accepted = serde_json::from_str(&text).map_err(|e| {
            SendError::Ambiguous(format!(
                "Mailgun accepted the message but its answer did not parse: {e}"
            ))
        })?;
        return Ok(normalize_message_id(&accepted.id));
    }
    let message = serde_json::from_str::<Refused>(&text)
        .ok()
        .and_then(|r| r.message)
        .unwrap_or_else(|| truncate(&text, 300));
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(SendError::Retryable(format!(
            "Mailgun answered {status}: {message}"
        )))
    } else {
        Err(SendError::Rejected {
            code: format!("http_{}", status.as_u16()),
            message,
        })
    }
}
