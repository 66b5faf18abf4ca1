//! Twilio Programmable Messaging: sending an SMS and finding one already sent.
//!
//! `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, form-encoded `To`, `From` (or
//! `MessagingServiceSid` when one is configured), `Body` and `StatusCallback`, with HTTP Basic
//! auth `account_sid:auth_token`. Twilio has no idempotency key, so after an ambiguous failure
//! [`find_message`] lists recent messages to the same number and matches the body.

use crate::http::{SendError, transport_error, truncate};
use crate::notification::ProviderReport;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared::settings::TwilioSettings;
use std::time::Duration;

/// Twilio error codes that mean the number cannot receive this message, now or later: invalid
/// `To` (21211, 21217), unreachable (21214, 21612), not a mobile / no SMS (21407, 21614),
/// region not enabled (21408), unsubscribed with STOP (21610).
pub const UNDELIVERABLE_CODES: &[i64] = &[21211, 21214, 21217, 21407, 21408, 21610, 21612, 21614];

/// The path of the Messages resource of an account.
pub fn messages_path(account_sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account_sid}/Messages.json")
}

fn messages_url(settings: &TwilioSettings) -> String {
    format!(
        "{}{}",
        settings.base_url.trim_end_matches('/'),
        messages_path(&settings.account_sid)
    )
}

/// The status callback URL Twilio is given: our public URL plus `/webhooks/twilio`.
pub fn status_callback_url(public_url: &str) -> String {
    format!("{}/webhooks/twilio", public_url.trim_end_matches('/'))
}

/// A message as Twilio describes it (the fields we read).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TwilioMessage {
    /// `SM…`.
    pub sid: String,
    /// Twilio's status: `queued`, `sending`, `sent`, `delivered`, `undelivered`, `failed`, …
    #[serde(default)]
    pub status: Option<String>,
    /// The recipient.
    #[serde(default)]
    pub to: Option<String>,
    /// The text.
    #[serde(default)]
    pub body: Option<String>,
    /// RFC 2822, e.g. `Mon, 23 Nov 2026 09:00:00 +0000`.
    #[serde(default)]
    pub date_created: Option<String>,
    /// Twilio's error code, for failed messages.
    #[serde(default)]
    pub error_code: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct TwilioError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageList {
    #[serde(default)]
    messages: Vec<TwilioMessage>,
    /// The next (older) page, as a path from the API's root; absent on the last page.
    #[serde(default)]
    next_page_uri: Option<String>,
}

/// At most this many pages of 50 are read looking for one message.
const LOOKUP_PAGES: usize = 10;

/// Classifies an error answer.
fn error_answer(status: reqwest::StatusCode, body: &str) -> SendError {
    let parsed: Option<TwilioError> = serde_json::from_str(body).ok();
    let code = parsed.as_ref().and_then(|e| e.code);
    let message = parsed
        .and_then(|e| e.message)
        .unwrap_or_else(|| truncate(body, 300));
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return SendError::Retryable(format!("Twilio answered {status}: {message}"));
    }
    match code {
        Some(c) if UNDELIVERABLE_CODES.contains(&c) => SendError::Undeliverable {
            code: c.to_string(),
            message,
        },
        Some(c) => SendError::Rejected {
            code: c.to_string(),
            message,
        },
        None => SendError::Rejected {
            code: format!("http_{}", status.as_u16()),
            message,
        },
    }
}

/// Sends one SMS. Returns the message SID.
pub(crate) async fn send_sms(
    http: &reqwest::Client,
    settings: &TwilioSettings,
    public_url: &str,
    to: &str,
    body: &str,
) -> Result<String, SendError> {
    let callback = status_callback_url(public_url);
    let mut form: Vec<(&str, &str)> = vec![("To", to)];
    if settings.messaging_service_sid.is_empty() {
        form.push(("From", &settings.from));
    } else {
        form.push(("MessagingServiceSid", &settings.messaging_service_sid));
    }
    form.push(("Body", body));
    form.push(("StatusCallback", &callback));
    let response = http
        .post(messages_url(settings))
        .basic_auth(&settings.account_sid, Some(settings.auth_token.expose()))
        .timeout(Duration::from_millis(settings.timeout_ms))
        .form(&form)
        .send()
        .await
        .map_err(|e| transport_error("Twilio", &e))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| transport_error("Twilio answer", &e))?;
    if !status.is_success() {
        return Err(error_answer(status, &text));
    }
    let message: TwilioMessage = serde_json::from_str(&text).map_err(|e| {
        // Accepted (2xx) but unreadable: the message exists; a lookup will find its SID.
        SendError::Ambiguous(format!(
            "Twilio accepted the message but its answer did not parse: {e}"
        ))
    })?;
    Ok(message.sid)
}

/// Looks for a message already sent to `to` with text `body`, created at or after `since`
/// (minus a few minutes for clock skew), among the messages to that number, newest first. SIDs in
/// `exclude` (already recorded for other notifications) are skipped. Pages are followed (50
/// messages each, up to [`LOOKUP_PAGES`]) until one reaches back before `since`: a busy number
/// can have had more than a page of texts since the attempt in doubt, and missing it means
/// texting the driver twice.
///
/// Not filtered with `DateSent`: a message still queued at Twilio has no send date yet and would
/// be missed.
pub(crate) async fn find_message(
    http: &reqwest::Client,
    settings: &TwilioSettings,
    to: &str,
    body: &str,
    since: DateTime<Utc>,
    exclude: &[String],
) -> Result<Option<TwilioMessage>, SendError> {
    let earliest = since - chrono::Duration::minutes(5);
    let created = |m: &TwilioMessage| {
        m.date_created
            .as_deref()
            .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
            .map(|d| d.with_timezone(&Utc))
    };
    let mut next: Option<String> = None;
    for _ in 0..LOOKUP_PAGES {
        let request = match &next {
            None => http
                .get(messages_url(settings))
                .query(&[("To", to), ("PageSize", "50")]),
            Some(uri) => http.get(format!("{}{uri}", settings.base_url.trim_end_matches('/'))),
        };
        let response = request
            .basic_auth(&settings.account_sid, Some(settings.auth_token.expose()))
            .timeout(Duration::from_millis(settings.timeout_ms))
            .send()
            .await
            .map_err(|e| transport_error("Twilio lookup", &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| transport_error("Twilio lookup answer", &e))?;
        if !status.is_success() {
            // Whatever the code, a failed lookup leaves the question open: retry later.
            return Err(SendError::Retryable(format!(
                "Twilio lookup answered {status}: {}",
                truncate(&text, 300)
            )));
        }
        let list: MessageList = serde_json::from_str(&text).map_err(|e| {
            SendError::Retryable(format!("Twilio lookup answer did not parse: {e}"))
        })?;
        let reaches_back = list
            .messages
            .iter()
            .filter_map(created)
            .any(|d| d < earliest);
        let found = list.messages.into_iter().find(|m| {
            let same_to = m.to.as_deref() == Some(to);
            // A trial account prefixes the text; anything else must match exactly.
            let same_body = m
                .body
                .as_deref()
                .is_some_and(|b| b == body || b.ends_with(body));
            let recent = created(m).is_some_and(|d| d >= earliest);
            same_to && same_body && recent && !exclude.contains(&m.sid)
        });
        if found.is_some() {
            return Ok(found);
        }
        match list.next_page_uri.filter(|u| !u.is_empty()) {
            Some(uri) if !reaches_back => next = Some(uri),
            _ => return Ok(None),
        }
    }
    // Still inside the window after every page read: the answer is not known.
    Err(SendError::Retryable(format!(
        "Twilio lookup: more than {LOOKUP_PAGES} pages of messages to this number since the attempt in doubt"
    )))
}

/// What a Twilio message status (from a callback or a lookup) says about our record.
pub(crate) fn report_for_status(status: &str, error_code: Option<&str>) -> ProviderReport {
    let code = error_code.filter(|c| !c.is_empty()).unwrap_or("unknown");
    match status {
        "delivered" | "read" => ProviderReport::Delivered,
        "undelivered" => ProviderReport::Undeliverable(format!("undelivered:{code}")),
        "failed" => ProviderReport::Failed(format!("failed:{code}")),
        "sent" => ProviderReport::Sent,
        _ => ProviderReport::Other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_are_classified() {
        let bad = |code: i64| {
            error_answer(
                reqwest::StatusCode::BAD_REQUEST,
                &format!(r#"{{"code": {code}, "message": "no", "more_info": "x", "status": 400}}"#),
            )
        };
        for code in [21211, 21614, 21610, 21408] {
            assert!(
                matches!(bad(code), SendError::Undeliverable { code: c, .. } if c == code.to_string())
            );
        }
        assert!(matches!(bad(21606), SendError::Rejected { .. }));
        assert!(matches!(
            error_answer(reqwest::StatusCode::TOO_MANY_REQUESTS, r#"{"code": 20429}"#),
            SendError::Retryable(_)
        ));
        assert!(matches!(
            error_answer(reqwest::StatusCode::BAD_GATEWAY, "<html>"),
            SendError::Retryable(_)
        ));
        assert!(matches!(
            error_answer(reqwest::StatusCode::UNAUTHORIZED, r#"{"code": 20003, "message": "Authenticate"}"#),
            SendError::Rejected { code, .. } if code == "20003"
        ));
        assert!(matches!(
            error_answer(reqwest::StatusCode::NOT_FOUND, "nope"),
            SendError::Rejected { code, .. } if code == "http_404"
        ));
    }
}
