//! Delivery callbacks from Twilio and Mailgun, as plain functions for the HTTP layer to call.
//!
//! Twilio (`POST /webhooks/twilio`, form-encoded): check `X-Twilio-Signature` with
//! [`verify_twilio_signature`] over the full public URL Twilio called (scheme, host, path and
//! query, as configured in `http.public_url`, not as seen behind a proxy) and every form parameter;
//! then [`apply_twilio_status`]. Answer 403 to a bad signature, 200 otherwise (an unknown message
//! included), so Twilio does not retry what we chose to ignore.
//!
//! Mailgun (`POST /webhooks/mailgun`, JSON `{"signature": {...}, "event-data": {...}}`): check it
//! with [`verify_mailgun_webhook`] (signature, age, and a token never seen before), then
//! [`apply_mailgun_event`]. Answer 406 to a rejected signature (Mailgun then stops retrying),
//! 500 to a database failure (Mailgun retries), 200 otherwise.
//!
//! Both only ever move a notification's status forward (see [`crate::notification`]).

use crate::error::NotificationsError;
use crate::ids::NotificationId;
use crate::mailgun::{NOTIFICATION_ID_VARIABLE, normalize_message_id};
use crate::notification::{ProviderReport, Status, apply_report};
use crate::schema::{mailgun_webhook_tokens, notifications};
use crate::templates::Channel;
use crate::twilio;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// What a callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// The notification moved to this status.
    Updated {
        /// The notification.
        id: NotificationId,
        /// Its new status.
        status: Status,
    },
    /// The notification is known but the event changes nothing (an older or intermediate status,
    /// an open or a click, a temporary failure).
    Unchanged {
        /// The notification.
        id: NotificationId,
    },
    /// No notification matches the event (not ours, or its send was never recorded).
    UnknownMessage,
}

// ---------------------------------------------------------------------------------------------
// Twilio

/// Twilio's signature of a request: HMAC-SHA1 keyed with the auth token over the full URL followed
/// by every parameter, sorted by name, as name and value concatenated; base64.
pub fn twilio_signature(auth_token: &str, full_url: &str, params: &[(String, String)]) -> String {
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    mac.update(full_url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL as given, and with the scheme's default port added or removed: Twilio signs the URL
/// as it dialled it, which a proxy may have changed in either direction.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return out;
    }
    let host_end = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |i| i + 1)
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, port) = authority.split_at(host_end);
    if port.is_empty() {
        out.push(format!("{scheme}://{host}:{default_port}{tail}"));
    } else if port.strip_prefix(':') == Some(default_port) {
        out.push(format!("{scheme}://{host}{tail}"));
    }
    out
}

/// Checks an `X-Twilio-Signature` header against the full URL Twilio called and the request's
/// form parameters. Constant-time; an empty header or token never matches.
pub fn verify_twilio_signature(
    auth_token: &str,
    full_url: &str,
    params: &[(String, String)],
    header: &str,
) -> bool {
    let header = header.trim();
    if header.is_empty() || auth_token.is_empty() {
        return false;
    }
    url_variants(full_url).iter().any(|url| {
        let expected = twilio_signature(auth_token, url, params);
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(header.as_bytes()))
    })
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Applies a Twilio status callback (its form parameters `MessageSid`, `MessageStatus`,
/// `ErrorCode`, …) to the notification with that message SID: `delivered` → delivered,
/// `undelivered` → undeliverable, `failed` → failed (reason `undelivered:<code>` /
/// `failed:<code>`); other statuses change nothing. Verify the signature first.
pub async fn apply_twilio_status(
    conn: &mut AsyncPgConnection,
    params: &[(String, String)],
) -> Result<CallbackOutcome, NotificationsError> {
    let Some(sid) = param(params, "MessageSid").or_else(|| param(params, "SmsSid")) else {
        return Ok(CallbackOutcome::UnknownMessage);
    };
    let status = param(params, "MessageStatus")
        .or_else(|| param(params, "SmsStatus"))
        .unwrap_or_default();
    let id: Option<NotificationId> = notifications::table
        .filter(notifications::channel.eq(Channel::Sms))
        .filter(notifications::provider_message_id.eq(sid))
        .select(notifications::id)
        .first(conn)
        .await
        .optional()?;
    let Some(id) = id else {
        tracing::info!(
            sid,
            status,
            "Twilio callback for a message we have no record of"
        );
        return Ok(CallbackOutcome::UnknownMessage);
    };
    let report = twilio::report_for_status(status, param(params, "ErrorCode"));
    outcome(conn, id, &report).await
}

async fn outcome(
    conn: &mut AsyncPgConnection,
    id: NotificationId,
    report: &ProviderReport,
) -> Result<CallbackOutcome, NotificationsError> {
    Ok(match apply_report(conn, id, report, Utc::now()).await? {
        Some(status) => {
            tracing::info!(notification_id = %id, %status, "delivery callback applied");
            CallbackOutcome::Updated { id, status }
        }
        None => CallbackOutcome::Unchanged { id },
    })
}

// ---------------------------------------------------------------------------------------------
// Mailgun

/// How old (or how far in the future) a Mailgun signature's timestamp may be.
pub const MAILGUN_MAX_AGE_SECS: i64 = 300;

/// Why a Mailgun webhook's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MailgunSignatureError {
    /// A field is missing or not of the expected shape.
    #[error("malformed signature")]
    Malformed,
    /// The HMAC does not match.
    #[error("signature does not match")]
    Mismatch,
    /// The timestamp is more than five minutes from now.
    #[error("signature is stale")]
    Stale,
    /// The token was already used by an accepted request (a replay).
    #[error("token already used")]
    Reused,
}

impl MailgunSignatureError {
    /// A short stable reason for logs and responses.
    pub fn reason(self) -> &'static str {
        match self {
            MailgunSignatureError::Malformed => "malformed",
            MailgunSignatureError::Mismatch => "mismatch",
            MailgunSignatureError::Stale => "stale",
            MailgunSignatureError::Reused => "reused",
        }
    }
}

/// Why a Mailgun webhook was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum MailgunWebhookError {
    /// The signature was refused: answer 406.
    #[error("mailgun signature refused: {0}")]
    Rejected(#[from] MailgunSignatureError),
    /// The database failed: answer 500 so Mailgun retries.
    #[error("database error")]
    Database(#[from] diesel::result::Error),
}

/// Mailgun's signature: lower-case hex HMAC-SHA256, keyed with the webhook signing key, of the
/// timestamp followed by the token.
pub fn mailgun_signature(signing_key: &str, timestamp: &str, token: &str) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(signing_key.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a Mailgun signature and its age (at most [`MAILGUN_MAX_AGE_SECS`] from `now` either
/// way). Constant-time. Whether the token is new is checked by [`accept_mailgun_token`] (which
/// needs the database); [`verify_mailgun_webhook`] does both.
pub fn verify_mailgun_signature(
    signing_key: &str,
    timestamp: &str,
    token: &str,
    signature: &str,
    now: DateTime<Utc>,
) -> Result<(), MailgunSignatureError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| MailgunSignatureError::Malformed)?;
    if token.is_empty() || token.len() > 200 || signature.len() != 64 || signing_key.is_empty() {
        return Err(MailgunSignatureError::Malformed);
    }
    let expected = mailgun_signature(signing_key, timestamp.trim(), token);
    let presented = signature.to_ascii_lowercase();
    if !bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
        return Err(MailgunSignatureError::Mismatch);
    }
    if now.timestamp().abs_diff(ts) > MAILGUN_MAX_AGE_SECS.unsigned_abs() {
        return Err(MailgunSignatureError::Stale);
    }
    Ok(())
}

/// Records a verified signature's token; refuses one seen before ([`MailgunSignatureError::Reused`]).
/// Tokens older than twice the allowed age are purged on the way (their signatures are stale).
pub async fn accept_mailgun_token(
    conn: &mut AsyncPgConnection,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(), MailgunWebhookError> {
    diesel::delete(mailgun_webhook_tokens::table.filter(
        mailgun_webhook_tokens::received_at.lt(now - Duration::seconds(2 * MAILGUN_MAX_AGE_SECS)),
    ))
    .execute(conn)
    .await?;
    let inserted = diesel::insert_into(mailgun_webhook_tokens::table)
        .values((
            mailgun_webhook_tokens::token.eq(token),
            mailgun_webhook_tokens::received_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 {
        Ok(())
    } else {
        Err(MailgunSignatureError::Reused.into())
    }
}

/// Checks a Mailgun webhook body's `signature` object (`timestamp`, `token`, `signature`):
/// the HMAC, the age, then that the token is new (recording it).
pub async fn verify_mailgun_webhook(
    conn: &mut AsyncPgConnection,
    signing_key: &str,
    body: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<(), MailgunWebhookError> {
    let sig = &body["signature"];
    let timestamp = match &sig["timestamp"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(MailgunSignatureError::Malformed.into()),
    };
    let token = sig["token"]
        .as_str()
        .ok_or(MailgunSignatureError::Malformed)?;
    let signature = sig["signature"]
        .as_str()
        .ok_or(MailgunSignatureError::Malformed)?;
    verify_mailgun_signature(signing_key, &timestamp, token, signature, now)?;
    accept_mailgun_token(conn, token, now).await
}

/// What a Mailgun event says about our record.
fn mailgun_report(data: &serde_json::Value) -> ProviderReport {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    match data["event"].as_str().unwrap_or_default() {
        "delivered" => ProviderReport::Delivered,
        "failed" if data["severity"].as_str() == Some("permanent") => {
            let why = data["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .unwrap_or("unknown");
            ProviderReport::Undeliverable(format!("bounced:{why}"))
        }
        "failed" => {
            let status = &data["delivery-status"];
            let detail = [text(&status["message"]), text(&status["description"])]
                .into_iter()
                .find(|s| !s.is_empty())
                .unwrap_or_else(|| "no detail".into());
            ProviderReport::Temporary(format!(
                "temporary failure {}: {}",
                status["code"],
                crate::http::truncate(&detail, 300)
            ))
        }
        "rejected" => ProviderReport::Failed("rejected:mailgun".into()),
        _ => ProviderReport::Other,
    }
}

/// Applies a Mailgun event (the whole webhook body, or just its `event-data`) to the notification
/// it concerns, found by Mailgun's message id or else by our `notification_id` variable:
/// `delivered` → delivered, a permanent `failed` → undeliverable (`bounced:<reason>`),
/// `rejected` → failed; a temporary failure is only noted; opens, clicks and the rest change
/// nothing. Verify the signature first.
pub async fn apply_mailgun_event(
    conn: &mut AsyncPgConnection,
    event: &serde_json::Value,
) -> Result<CallbackOutcome, NotificationsError> {
    let data = event.get("event-data").unwrap_or(event);
    let message_id = data["message"]["headers"]["message-id"]
        .as_str()
        .map(normalize_message_id)
        .filter(|m| !m.is_empty());
    let mut id: Option<NotificationId> = None;
    if let Some(mid) = &message_id {
        id = notifications::table
            .filter(notifications::channel.eq(Channel::Email))
            .filter(notifications::provider_message_id.eq(mid))
            .select(notifications::id)
            .first(conn)
            .await
            .optional()?;
    }
    if id.is_none()
        && let Some(ours) = data["user-variables"][NOTIFICATION_ID_VARIABLE]
            .as_str()
            .and_then(|s| s.parse::<NotificationId>().ok())
    {
        id = notifications::table
            .filter(notifications::id.eq(ours))
            .filter(notifications::channel.eq(Channel::Email))
            .select(notifications::id)
            .first(conn)
            .await
            .optional()?;
    }
    let Some(id) = id else {
        tracing::info!(message_id = ?message_id, event = ?data["event"].as_str(), "Mailgun event for a message we have no record of");
        return Ok(CallbackOutcome::UnknownMessage);
    };
    outcome(conn, id, &mailgun_report(data)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn url_variants_add_or_drop_the_default_port() {
        assert_eq!(
            url_variants("https://api.example.com/webhooks/twilio?x=1"),
            vec![
                "https://api.example.com/webhooks/twilio?x=1".to_owned(),
                "https://api.example.com:443/webhooks/twilio?x=1".to_owned()
            ]
        );
        assert_eq!(
            url_variants("http://h:80/p"),
            vec!["http://h:80/p".to_owned(), "http://h/p".to_owned()]
        );
        assert_eq!(
            url_variants("http://h:8080/p"),
            vec!["http://h:8080/p".to_owned()]
        );
        assert_eq!(url_variants("not a url"), vec!["not a url".to_owned()]);
    }

    #[test]
    fn mailgun_events_map_to_reports() {
        let ev = |v: serde_json::Value| mailgun_report(&v);
        assert_eq!(
            ev(serde_json::json!({"event": "delivered"})),
            ProviderReport::Delivered
        );
        assert_eq!(
            ev(
                serde_json::json!({"event": "failed", "severity": "permanent", "reason": "suppress-bounce"})
            ),
            ProviderReport::Undeliverable("bounced:suppress-bounce".into())
        );
        assert!(matches!(
            ev(serde_json::json!({"event": "failed", "severity": "temporary", "delivery-status": {"code": 452, "message": "mailbox full"}})),
            ProviderReport::Temporary(m) if m.contains("452") && m.contains("mailbox full")
        ));
        assert_eq!(
            ev(serde_json::json!({"event": "opened"})),
            ProviderReport::Other
        );
    }
}
