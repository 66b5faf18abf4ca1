//! The development inbox: stand-ins for Twilio, Mailgun and a partner's webhook receiver, served
//! by the API itself so that one machine can run the whole product (`infra/dev/run.sh`).
//!
//! - `POST /dev/twilio/2010-04-01/Accounts/{sid}/Messages.json` takes an SMS as Twilio does (form
//!   fields `To`, `From` or `MessagingServiceSid`, `Body`, `StatusCallback`, Basic auth with the
//!   account SID and auth token), answers Twilio's message object and, two seconds later, posts
//!   a signed `delivered` status callback to `StatusCallback`; `GET` on the same path lists them,
//!   newest first, as the SMS job's lookup after an ambiguous send expects;
//! - `POST /dev/mailgun/v3/{domain}/messages` takes an email as Mailgun does (multipart `from`,
//!   `to`, `subject`, `text`, `html`, `v:notification_id`, Basic auth `api:<key>`);
//! - `POST /dev/partner-webhooks` takes a partner webhook delivery, as a partner's server would;
//! - `GET /dev/inbox` shows everything kept, newest first; `GET /dev/inbox.json` the same as JSON
//!   (`?to=` filters texts and emails by recipient); `GET /dev/inbox/latest?to=` the newest text
//!   or email to one recipient, as plain text.
//!
//! Every message is also printed to the console. Invariants: every route answers 404 unless
//! `environment` is `development` and `dev.inbox` is on (production settings refuse the
//! latter); the inbox lives in the API process's memory and keeps the newest [`KEEP`] of each
//! kind, so a restart empties it.

use crate::http::ApiState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use shared::settings::Environment;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// How many texts, emails and webhook deliveries are kept (each).
pub const KEEP: usize = 200;

/// One SMS, as Twilio would have taken it.
#[derive(Debug, Clone, Serialize)]
pub struct Text {
    /// `SM…`, as Twilio names messages.
    pub sid: String,
    /// The recipient (E.164).
    pub to: String,
    /// The sender number, or the messaging service.
    pub from: String,
    /// The text.
    pub body: String,
    /// When the inbox took it.
    pub at: DateTime<Utc>,
}

/// One email, as Mailgun would have taken it.
#[derive(Debug, Clone, Serialize)]
pub struct Email {
    /// The message id Mailgun answers with (without angle brackets).
    pub id: String,
    /// The recipient.
    pub to: String,
    /// The `From` header.
    pub from: String,
    /// The subject.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// When the inbox took it.
    pub at: DateTime<Utc>,
}

/// One partner webhook delivery, as a partner's server would have taken it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The event's `id`.
    pub id: String,
    /// The event's `type`, e.g. `cover.started`.
    pub event_type: String,
    /// The `ShiftCover-Signature` header, to check with the endpoint's secret.
    pub signature: String,
    /// The raw body.
    pub body: String,
    /// When the inbox took it.
    pub at: DateTime<Utc>,
}

#[derive(Default)]
struct Kept {
    texts: VecDeque<Text>,
    emails: VecDeque<Email>,
    webhooks: VecDeque<WebhookDelivery>,
}

/// What the inbox holds, newest first.
#[derive(Default)]
pub struct Inbox {
    kept: Mutex<Kept>,
}

fn push<T>(list: &mut VecDeque<T>, item: T) {
    list.push_front(item);
    list.truncate(KEEP);
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        // A handler that panicked holding the lock leaves whole items behind: keep using them.
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The texts kept, newest first.
    pub fn texts(&self) -> Vec<Text> {
        self.lock().texts.iter().cloned().collect()
    }

    /// The emails kept, newest first.
    pub fn emails(&self) -> Vec<Email> {
        self.lock().emails.iter().cloned().collect()
    }

    /// The partner webhook deliveries kept, newest first.
    pub fn webhooks(&self) -> Vec<WebhookDelivery> {
        self.lock().webhooks.iter().cloned().collect()
    }
}

/// The inbox's routes (each answers 404 unless the inbox is on; see the module doc).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/dev")
            .route(
                "/twilio/2010-04-01/Accounts/{sid}/Messages.json",
                web::post().to(twilio_send),
            )
            .route(
                "/twilio/2010-04-01/Accounts/{sid}/Messages.json",
                web::get().to(twilio_list),
            )
            .route(
                "/mailgun/v3/{domain}/messages",
                web::post().to(mailgun_send),
            )
            .route("/partner-webhooks", web::post().to(partner_webhook))
            .route("/inbox", web::get().to(inbox_page))
            .route("/inbox.json", web::get().to(inbox_json))
            .route("/inbox/latest", web::get().to(latest)),
    );
}

/// `Some(404)` unless the inbox is on in development.
fn refused(state: &ApiState) -> Option<HttpResponse> {
    let settings = &state.core.settings;
    let on = settings.environment == Environment::Development && settings.dev.inbox;
    (!on).then(|| {
        HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("Not found")
    })
}

/// The user and password of a request's Basic auth header.
fn basic_auth(req: &HttpRequest) -> Option<(String, String)> {
    use base64::Engine;
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn twilio_error(status: u16, code: u32, message: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .json(json!({ "code": code, "message": message, "status": status }))
}

fn twilio_json(t: &Text) -> serde_json::Value {
    json!({
        "sid": t.sid,
        "status": "queued",
        "to": t.to,
        "from": t.from,
        "body": t.body,
        "date_created": t.at.to_rfc2822(),
        "error_code": null,
    })
}

/// Checks the account in the path and the Basic auth (account SID and auth token) against the
/// configured account, as Twilio would.
fn twilio_account_ok(state: &ApiState, req: &HttpRequest, sid: &str) -> bool {
    let twilio = &state.core.settings.twilio;
    sid == twilio.account_sid
        && basic_auth(req).is_some_and(|(user, token)| {
            user == twilio.account_sid && token == twilio.auth_token.expose()
        })
}

async fn twilio_send(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
) -> HttpResponse {
    if let Some(r) = refused(&state) {
        return r;
    }
    if !twilio_account_ok(&state, &req, &path) {
        return twilio_error(401, 20003, "Authenticate");
    }
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let from = match (field("From"), field("MessagingServiceSid")) {
        (f, _) if !f.is_empty() => f,
        (_, m) => m,
    };
    let text = Text {
        sid: format!("SM{}", uuid::Uuid::new_v4().simple()),
        to: field("To"),
        from,
        body: field("Body"),
        at: Utc::now(),
    };
    if text.to.is_empty() {
        return twilio_error(400, 21604, "A 'To' phone number is required.");
    }
    if text.body.is_empty() {
        return twilio_error(400, 21602, "Message body is required.");
    }
    if text.from.is_empty() {
        return twilio_error(400, 21603, "A 'From' phone number is required.");
    }
    println!(
        "\n  ┌ SMS to {} ({})\n  │ {}\n  └ all messages: {}/dev/inbox\n",
        text.to,
        text.at.format("%H:%M:%S"),
        text.body.replace('\n', "\n  │ "),
        state.core.settings.http.public_url.trim_end_matches('/'),
    );
    let answer = twilio_json(&text);
    let callback = field("StatusCallback");
    if !callback.is_empty() {
        let params = vec![
            ("AccountSid".to_owned(), path.into_inner()),
            ("From".to_owned(), text.from.clone()),
            ("MessageSid".to_owned(), text.sid.clone()),
            ("MessageStatus".to_owned(), "delivered".to_owned()),
            ("To".to_owned(), text.to.clone()),
        ];
        let token = state.core.settings.twilio.auth_token.expose().to_owned();
        actix_web::rt::spawn(report_delivered(callback, params, token));
    }
    push(&mut state.dev_inbox.lock().texts, text);
    HttpResponse::Created().json(answer)
}

/// Tells the sender the text was delivered, as Twilio does: a signed status callback, a moment
/// after the send (by when the sender has recorded the message's SID).
async fn report_delivered(url: String, params: Vec<(String, String)>, auth_token: String) {
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let signature = notifications::webhooks::twilio_signature(&auth_token, &url, &params);
    let sent = reqwest::Client::new()
        .post(&url)
        .header("x-twilio-signature", signature)
        .form(&params)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(%url, status = %r.status(), "the status callback was refused"),
        Err(e) => tracing::warn!(%url, error = %e, "the status callback was not delivered"),
    }
}

async fn twilio_list(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if let Some(r) = refused(&state) {
        return r;
    }
    if !twilio_account_ok(&state, &req, &path) {
        return twilio_error(401, 20003, "Authenticate");
    }
    let to = query.get("To");
    let size: usize = query
        .get("PageSize")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page: usize = query.get("Page").and_then(|v| v.parse().ok()).unwrap_or(0);
    let texts: Vec<Text> = state
        .dev_inbox
        .texts()
        .into_iter()
        .filter(|t| to.is_none_or(|to| *to == t.to))
        .collect();
    let messages: Vec<serde_json::Value> = texts
        .iter()
        .skip(page.saturating_mul(size))
        .take(size)
        .map(twilio_json)
        .collect();
    let next = (texts.len() > (page + 1).saturating_mul(size)).then(|| {
        let mut uri = format!(
            "{}?PageSize={size}&Page={}",
            req.path().trim_start_matches("/dev/twilio"),
            page + 1
        );
        if let Some(to) = to {
            uri.push_str("&To=");
            uri.push_str(
                &to.replace('%', "%25")
                    .replace('+', "%2B")
                    .replace('&', "%26"),
            );
        }
        uri
    });
    HttpResponse::Ok().json(json!({
        "messages": messages,
        "page": page,
        "page_size": size,
        "next_page_uri": next,
    }))
}

/// The fields of a `multipart/form-data` body whose parts are text (what Mailgun is sent).
fn multipart_fields(content_type: &str, body: &[u8]) -> Option<Vec<(String, String)>> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?
        .trim_matches('"');
    let body = std::str::from_utf8(body).ok()?;
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in body.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let (headers, value) = part.split_once("\r\n\r\n")?;
        let name = headers
            .lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with("content-disposition: form-data")
            })?
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("name="))?
            .trim_matches('"')
            .to_owned();
        let value = value.strip_suffix("\r\n").unwrap_or(value).to_owned();
        fields.push((name, value));
    }
    Some(fields)
}

async fn mailgun_send(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(r) = refused(&state) {
        return r;
    }
    let settings = &state.core.settings.mailgun;
    let authorised = basic_auth(&req)
        .is_some_and(|(user, key)| user == "api" && key == settings.api_key.expose());
    if !authorised || *path != settings.domain {
        return HttpResponse::Unauthorized().body("Forbidden");
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(fields) = multipart_fields(content_type, &body) else {
        return HttpResponse::BadRequest()
            .json(json!({ "message": "expected a multipart/form-data body" }));
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    for required in ["from", "to", "subject"] {
        if field(required).is_empty() {
            return HttpResponse::BadRequest()
                .json(json!({ "message": format!("{required} parameter is missing") }));
        }
    }
    if field("text").is_empty() && field("html").is_empty() {
        return HttpResponse::BadRequest().json(
            json!({ "message": "Need at least one of 'text' or 'html' parameters specified" }),
        );
    }
    let email = Email {
        id: format!("{}@{}", uuid::Uuid::new_v4().simple(), settings.domain),
        to: field("to"),
        from: field("from"),
        subject: field("subject"),
        text: field("text"),
        at: Utc::now(),
    };
    println!(
        "\n  ┌ Email to {} ({}): {}\n  │ {}\n  └ all messages: {}/dev/inbox\n",
        email.to,
        email.at.format("%H:%M:%S"),
        email.subject,
        email.text.trim_end().replace('\n', "\n  │ "),
        state.core.settings.http.public_url.trim_end_matches('/'),
    );
    let id = format!("<{}>", email.id);
    push(&mut state.dev_inbox.lock().emails, email);
    HttpResponse::Ok().json(json!({ "id": id, "message": "Queued. Thank you." }))
}

async fn partner_webhook(
    state: web::Data<ApiState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(r) = refused(&state) {
        return r;
    }
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let delivery = WebhookDelivery {
        id: parsed["id"].as_str().unwrap_or_default().to_owned(),
        event_type: parsed["type"].as_str().unwrap_or_default().to_owned(),
        signature: req
            .headers()
            .get("shiftcover-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Utc::now(),
    };
    println!(
        "\n  ┌ Partner webhook {} {} ({})\n  └ {}\n",
        delivery.event_type,
        delivery.id,
        delivery.at.format("%H:%M:%S"),
        delivery.body,
    );
    push(&mut state.dev_inbox.lock().webhooks, delivery);
    HttpResponse::Ok().finish()
}

async fn inbox_json(
    state: web::Data<ApiState>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if let Some(r) = refused(&state) {
        return r;
    }
    let to = query.get("to");
    let texts: Vec<Text> = state
        .dev_inbox
        .texts()
        .into_iter()
        .filter(|t| to.is_none_or(|to| *to == t.to))
        .collect();
    let emails: Vec<Email> = state
        .dev_inbox
        .emails()
        .into_iter()
        .filter(|e| to.is_none_or(|to| e.to.contains(to.as_str())))
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "texts": texts,
            "emails": emails,
            "partnerWebhooks": state.dev_inbox.webhooks(),
        }))
}

/// The newest text or email to `?to=`, as plain text (404 when there is none).
async fn latest(
    state: web::Data<ApiState>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if let Some(r) = refused(&state) {
        return r;
    }
    let Some(to) = query.get("to") else {
        return HttpResponse::BadRequest().body("Give ?to= a phone number or an email address");
    };
    let text = state
        .dev_inbox
        .texts()
        .into_iter()
        .find(|t| t.to == *to)
        .map(|t| (t.at, t.body));
    let email = state
        .dev_inbox
        .emails()
        .into_iter()
        .find(|e| e.to.contains(to.as_str()))
        .map(|e| (e.at, format!("{}\n\n{}", e.subject, e.text)));
    let newest = match (text, email) {
        (Some(t), Some(e)) => Some(if e.0 > t.0 { e } else { t }),
        (t, e) => t.or(e),
    };
    match newest {
        Some((_, message)) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(message),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("Nothing sent to {to} yet")),
    }
}

use shared::html::escape;

fn section(out: &mut String, title: &str, rows: Vec<[String; 3]>) {
    out.push_str(&format!("<h2>{} ({})</h2>", escape(title), rows.len()));
    if rows.is_empty() {
        out.push_str("<p class=\"muted\">Nothing yet.</p>");
        return;
    }
    out.push_str("<table><tr><th>When</th><th>To / what</th><th>Message</th></tr>");
    for [when, who, what] in rows {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            escape(&when),
            escape(&who),
            escape(&what)
        ));
    }
    out.push_str("</table>");
}

async fn inbox_page(state: web::Data<ApiState>) -> HttpResponse {
    if let Some(r) = refused(&state) {
        return r;
    }
    let inbox = &state.dev_inbox;
    let when = |at: DateTime<Utc>| at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <title>Development inbox — ShiftCover</title>\
         <style>body{font:15px/1.4 system-ui,sans-serif;margin:2rem;color:#1d2330}\
         table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #dde;\
         padding:.4rem;text-align:left;vertical-align:top}pre{margin:0;white-space:pre-wrap;\
         font:13px/1.4 ui-monospace,monospace}.muted{color:#667}</style></head><body>\
         <h1>Development inbox</h1><p class=\"muted\">What Twilio, Mailgun and the demo \
         partner's webhook receiver would have received on this machine, newest first \
         (kept in memory; refreshed every 5 seconds; also as <a href=\"/dev/inbox.json\">JSON</a>).</p>",
    );
    section(
        &mut html,
        "Texts",
        inbox
            .texts()
            .into_iter()
            .map(|t| [when(t.at), t.to, t.body])
            .collect(),
    );
    section(
        &mut html,
        "Emails",
        inbox
            .emails()
            .into_iter()
            .map(|e| [when(e.at), e.to, format!("{}\n\n{}", e.subject, e.text)])
            .collect(),
    );
    section(
        &mut html,
        "Partner webhooks",
        inbox
            .webhooks()
            .into_iter()
            .map(|w| {
                [
                    when(w.at),
                    format!("{} {}", w.event_type, w.id),
                    format!("ShiftCover-Signature: {}\n\n{}", w.signature, w.body),
                ]
            })
            .collect(),
    );
    html.push_str("</body></html>");
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_text_fields_are_read() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\ndriver@example.com\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nline one\r\nline two\r\n\
                    --XyZ--\r\n";
        let fields =
            multipart_fields("multipart/form-data; boundary=XyZ", body.as_bytes()).expect("parsed");
        assert_eq!(
            fields,
            vec![
                ("to".to_owned(), "driver@example.com".to_owned()),
                ("text".to_owned(), "line one\r\nline two".to_owned()),
            ]
        );
        assert!(multipart_fields("application/json", b"{}").is_none());
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        assert_eq!(escape("<b>\"&'"), "&lt;b&gt;&quot;&amp;&#39;");
    }
}
