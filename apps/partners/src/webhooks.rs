//! Webhooks to partners: endpoints, the events sent to them, signatures, the delivery log and
//! replays.
//!
//! Invariants:
//! - an event has one id (`evt_…`, derived from its cause, e.g. `cover.started:<session>`), and
//!   goes at most once to each endpoint: a delivery is unique per (endpoint, event id), and is
//!   written with its delivery job (the outbox) inside the transaction of the change it reports;
//! - a body is signed with the endpoint's secret: header `ShiftCover-Signature:
//!   t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`; during a rotation's overlap a
//!   second `v1=` signs with the previous secret, so a receiver holding either verifies;
//! - each attempt is logged (status, latency, a snippet of the answer, or the error); failures
//!   are retried with backoff until [`RETRY_FOR_HOURS`] after the event (or the replay), then the
//!   delivery is `failed`; a replay by the partner or ops starts a new round;
//! - an endpoint never blocks anything else: attempts run in the workers with the endpoint's own
//!   short timeout, never inside a request or a domain transaction;
//! - test-mode endpoints get test-mode events only, live endpoints live events only.

use crate::egress;
use crate::error::PartnersError;
use crate::ids::{WebhookDeliveryId, WebhookEndpointId};
use crate::jobs::DeliverPartnerWebhook;
use crate::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};
use crate::scope::{PartnerScope, Viewer};
use crate::support::audit;
use accounts::{Actor, PartnerId};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use shared::Clock;
use shared::settings::PartnerWebhookSettings;
use std::fmt;
use std::str::FromStr;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "ShiftCover-Signature";
/// How long a delivery is retried after its event (or its latest replay).
pub const RETRY_FOR_HOURS: i64 = 72;
/// The default time an attempt waits for the endpoint.
pub const DEFAULT_TIMEOUT_MS: i32 = 5_000;
/// The longest rotation overlap.
pub const MAX_OVERLAP_HOURS: i64 = 7 * 24;
/// How many characters of an endpoint's answer are kept per attempt.
pub const SNIPPET_CHARS: usize = 500;
/// The most deliveries or attempts one list returns.
pub const MAX_PAGE_SIZE: i64 = 100;
/// What every signing secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// What a webhook reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A cover session started from the partner's events.
    CoverStarted,
    /// Such a session ended.
    CoverEnded,
    /// The partner's events asked for cover the driver cannot have.
    CoverNotCovered,
    /// A driver was unlinked from the partner.
    DriverUnlinked,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 4] = [
        EventType::CoverStarted,
        EventType::CoverEnded,
        EventType::CoverNotCovered,
        EventType::DriverUnlinked,
    ];

    /// The published name, e.g. `cover.started`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CoverStarted => "cover.started",
            EventType::CoverEnded => "cover.ended",
            EventType::CoverNotCovered => "cover.not_covered",
            EventType::DriverUnlinked => "driver.unlinked",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = PartnersError;

    /// Errors: `INVALID_EVENT_TYPES`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(PartnersError::InvalidEventTypes)
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A partner's webhook endpoint, as shown to the partner and ops (never its secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookEndpoint {
    /// The endpoint.
    pub id: WebhookEndpointId,
    /// Its partner.
    pub partner_id: PartnerId,
    /// Whether it receives test-mode events (instead of live ones).
    pub test_mode: bool,
    /// Where deliveries are POSTed.
    pub url: String,
    /// What it receives.
    pub event_types: Vec<EventType>,
    /// Whether it receives anything.
    pub enabled: bool,
    /// How long an attempt waits for its answer.
    pub timeout_ms: i32,
    /// Until when the previous secret also signs, after a rotation.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_endpoints)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct EndpointRow {
    pub id: WebhookEndpointId,
    pub partner_id: PartnerId,
    pub test_mode: bool,
    pub url: String,
    pub event_types: Vec<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub timeout_ms: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<EndpointRow> for WebhookEndpoint {
    fn from(r: EndpointRow) -> Self {
        WebhookEndpoint {
            id: r.id,
            partner_id: r.partner_id,
            test_mode: r.test_mode,
            url: r.url,
            event_types: r
                .event_types
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect(),
            enabled: r.enabled,
            timeout_ms: r.timeout_ms,
            previous_secret_expires_at: r.previous_secret_expires_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl EndpointRow {
    /// The secrets that sign now: the current one, then the previous one during its overlap.
    pub(crate) fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (
            self.previous_secret.as_deref(),
            self.previous_secret_expires_at,
        ) && until > now
        {
            out.push(previous);
        }
        out
    }
}

/// A newly registered endpoint, or a rotated one, with the secret shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointWithSecret {
    /// The endpoint.
    pub endpoint: WebhookEndpoint,
    /// The signing secret (`whsec_…`): give it to the receiver.
    pub secret: String,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet accepted by the endpoint; attempts continue.
    Pending,
    /// The endpoint answered 2xx.
    Succeeded,
    /// Attempts stopped without a 2xx (retry period over, or the endpoint was disabled).
    Failed,
}

impl DeliveryStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "succeeded" => Ok(DeliveryStatus::Succeeded),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(anyhow::anyhow!("unknown delivery status {other:?}")),
        }
    }
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookDelivery {
    /// The delivery.
    pub id: WebhookDeliveryId,
    /// The endpoint.
    pub endpoint_id: WebhookEndpointId,
    /// The endpoint's partner.
    pub partner_id: PartnerId,
    /// What it reports.
    pub event_type: EventType,
    /// The event's id (the same for every endpoint that gets it).
    pub event_id: String,
    /// The body sent.
    pub payload: serde_json::Value,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made, over all rounds.
    pub attempts: i32,
    /// Replays asked for.
    pub replays: i32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the latest attempt was made.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When attempts stop, while pending.
    pub give_up_at: DateTime<Utc>,
    /// When the endpoint accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When attempts stopped without success.
    pub failed_at: Option<DateTime<Utc>>,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_deliveries)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct DeliveryRow {
    pub id: WebhookDeliveryId,
    pub endpoint_id: WebhookEndpointId,
    pub partner_id: PartnerId,
    pub event_type: String,
    pub event_id: String,
    pub payload: serde_json::Value,
    pub status: String,
    pub attempts: i32,
    pub replays: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub give_up_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<DeliveryRow> for WebhookDelivery {
    type Error = PartnersError;

    fn try_from(r: DeliveryRow) -> Result<Self, PartnersError> {
        Ok(WebhookDelivery {
            id: r.id,
            endpoint_id: r.endpoint_id,
            partner_id: r.partner_id,
            event_type: r
                .event_type
                .parse()
                .map_err(|_| anyhow::anyhow!("unknown event type {:?}", r.event_type))?,
            event_id: r.event_id,
            payload: r.payload,
            status: DeliveryStatus::parse(&r.status)?,
            attempts: r.attempts,
            replays: r.replays,
            next_attempt_at: r.next_attempt_at,
            last_attempt_at: r.last_attempt_at,
            give_up_at: r.give_up_at,
            delivered_at: r.delivered_at,
            failed_at: r.failed_at,
            created_at: r.created_at,
        })
    }
}

/// One attempt at a delivery, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = webhook_attempts)]
pub struct WebhookAttempt {
    /// The attempt's number in the log.
    pub id: i64,
    /// The delivery.
    pub delivery_id: WebhookDeliveryId,
    /// When it was made.
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status answered, if any.
    pub status_code: Option<i32>,
    /// How long the endpoint took (or until the attempt gave up).
    pub latency_ms: i32,
    /// The start of the answer's body.
    pub response_snippet: Option<String>,
    /// Why there was no answer (timeout, refused connection), if there was none.
    pub error: Option<String>,
    /// Whether the endpoint accepted it (2xx).
    pub succeeded: bool,
}

fn new_secret() -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let body: String = (0..40)
        .map(|_| char::from(ALNUM[rng.random_range(0..ALNUM.len())]))
        .collect();
    format!("{SECRET_PREFIX}{body}")
}

/// The URL as stored, when it is one a webhook may go to (see [`crate::egress`]): https (or
/// http for a test-mode endpoint), at most 2000 characters, and a public host.
async fn check_url(
    url: &str,
    live: bool,
    settings: &PartnerWebhookSettings,
) -> Result<String, PartnersError> {
    let url = url.trim();
    let well_formed =
        url.chars().count() <= 2000 && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|_| well_formed)
        .ok_or(PartnersError::InvalidUrl)?;
    match egress::check_endpoint_url(&parsed, live, settings.allow_loopback).await {
        Ok(()) => Ok(url.to_owned()),
        Err(egress::Refusal::Invalid) => Err(PartnersError::InvalidUrl),
        Err(egress::Refusal::NotPublic) => Err(PartnersError::UrlNotAllowed),
    }
}

fn check_event_types(types: &[EventType]) -> Result<Vec<String>, PartnersError> {
    let mut sorted: Vec<EventType> = types.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.is_empty() {
        return Err(PartnersError::InvalidEventTypes);
    }
    Ok(sorted.iter().map(|t| t.as_str().to_owned()).collect())
}

/// Registers a webhook endpoint for the partner (in the scope's mode) and returns its signing
/// secret, shown only here. `timeout_ms` defaults to [`DEFAULT_TIMEOUT_MS`]. The URL must be
/// https (http only in test mode) on a public host, per [`crate::egress`] and `settings`; a
/// partner has at most `settings.max_endpoints_per_partner` endpoints, both modes together.
///
/// Errors: `INVALID_URL`, `URL_NOT_ALLOWED`, `TOO_MANY_ENDPOINTS`, `INVALID_EVENT_TYPES`,
/// `INVALID_TIMEOUT`.
pub async fn register_webhook_endpoint(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    settings: &PartnerWebhookSettings,
    scope: PartnerScope,
    url: &str,
    event_types: &[EventType],
    timeout_ms: Option<i32>,
) -> Result<EndpointWithSecret, PartnersError> {
    let url = check_url(url, !scope.test_mode, settings).await?;
    let types = check_event_types(event_types)?;
    let timeout_ms = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(100..=10_000).contains(&timeout_ms) {
        return Err(PartnersError::InvalidTimeout);
    }
    let now = clock.now();
    let secret = new_secret();
    let row = EndpointRow {
        id: WebhookEndpointId::new(),
        partner_id: scope.partner_id,
        test_mode: scope.test_mode,
        url,
        event_types: types,
        secret: secret.clone(),
        previous_secret: None,
        previous_secret_expires_at: None,
        enabled: true,
        timeout_ms,
        created_at: now,
        updated_at: now,
    };
    let max = settings.max_endpoints_per_partner;
    conn.transaction::<_, PartnersError, _>(async |conn| {
        // Registrations of one partner take turns, so two at once cannot both pass the cap.
        shared::sql::prepared("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<diesel::sql_types::Text, _>(format!("webhook_endpoints:{}", scope.partner_id))
            .execute(conn)
            .await?;
        let existing: i64 = webhook_endpoints::table
            .filter(webhook_endpoints::partner_id.eq(scope.partner_id))
            .count()
            .get_result(conn)
            .await?;
        if existing >= i64::from(max) {
            return Err(PartnersError::TooManyEndpoints { max });
        }
        let stored: EndpointRow = diesel::insert_into(webhook_endpoints::table)
            .values(&row)
            .returning(EndpointRow::as_returning())
            .get_result(conn)
            .await?;
        audit(
            conn,
            Actor::Partner(scope.partner_id),
            "partners.webhook_endpoint_registered",
            "webhook_endpoint",
            stored.id.to_string(),
            serde_json::json!({ "url": stored.url, "event_types": stored.event_types }),
        )
        .await?;
        Ok(EndpointWithSecret {
            endpoint: stored.into(),
            secret,
        })
    })
    .await
}

async fn lock_endpoint(
    conn: &mut AsyncPgConnection,
    scope: PartnerScope,
    endpoint_id: WebhookEndpointId,
) -> Result<EndpointRow, PartnersError> {
    webhook_endpoints::table
        .find(endpoint_id)
        .filter(webhook_endpoints::partner_id.eq(scope.partner_id))
        .filter(webhook_endpoints::test_mode.eq(scope.test_mode))
        .select(EndpointRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(PartnersError::EndpointNotFound)
}

/// Gives the endpoint a new signing secret; the old one keeps signing (as a second signature)
/// for `overlap`, so the receiver can switch without missing a delivery.
///
/// Errors: `ENDPOINT_NOT_FOUND` (also another partner's or the other mode's), `INVALID_OVERLAP`.
pub async fn rotate_secret(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    scope: PartnerScope,
    endpoint_id: WebhookEndpointId,
    overlap: Duration,
) -> Result<EndpointWithSecret, PartnersError> {
    if overlap < Duration::zero() || overlap > Duration::hours(MAX_OVERLAP_HOURS) {
        return Err(PartnersError::InvalidOverlap);
    }
    let now = clock.now();
    let secret = new_secret();
    conn.transaction::<_, PartnersError, _>(async |conn| {
        let current = lock_endpoint(conn, scope, endpoint_id).await?;
        let (previous, until) = if overlap > Duration::zero() {
            (Some(current.secret.clone()), Some(now + overlap))
        } else {
            (None, None)
        };
        let stored: EndpointRow = diesel::update(webhook_endpoints::table.find(endpoint_id))
            .set((
                webhook_endpoints::secret.eq(&secret),
                webhook_endpoints::previous_secret.eq(previous),
                webhook_endpoints::previous_secret_expires_at.eq(until),
                webhook_endpoints::updated_at.eq(now),
            ))
            .returning(EndpointRow::as_returning())
            .get_result(conn)
            .await?;
        audit(
            conn,
            Actor::Partner(scope.partner_id),
            "partners.webhook_secret_rotated",
            "webhook_endpoint",
            endpoint_id.to_string(),
            serde_json::json!({ "previous_secret_expires_at": until }),
        )
        .await?;
        Ok(EndpointWithSecret {
            endpoint: stored.into(),
            secret: secret.clone(),
        })
    })
    .await
}

/// Turns an endpoint off (`enabled = false`) or back on. A disabled endpoint gets no new
/// deliveries, and its pending ones fail at their next attempt.
///
/// Errors: `ENDPOINT_NOT_FOUND`.
pub async fn set_endpoint_enabled(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    scope: PartnerScope,
    endpoint_id: WebhookEndpointId,
    enabled: bool,
) -> Result<WebhookEndpoint, PartnersError> {
    let now = clock.now();
    conn.transaction::<_, PartnersError, _>(async |conn| {
        lock_endpoint(conn, scope, endpoint_id).await?;
        let stored: EndpointRow = diesel::update(webhook_endpoints::table.find(endpoint_id))
            .set((
                webhook_endpoints::enabled.eq(enabled),
                webhook_endpoints::updated_at.eq(now),
            ))
            .returning(EndpointRow::as_returning())
            .get_result(conn)
            .await?;
        audit(
            conn,
            Actor::Partner(scope.partner_id),
            if enabled {
                "partners.webhook_endpoint_enabled"
            } else {
                "partners.webhook_endpoint_disabled"
            },
            "webhook_endpoint",
            endpoint_id.to_string(),
            serde_json::json!({}),
        )
        .await?;
        Ok(stored.into())
    })
    .await
}

/// Disables an endpoint (see [`set_endpoint_enabled`]).
pub async fn disable_webhook_endpoint(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    scope: PartnerScope,
    endpoint_id: WebhookEndpointId,
) -> Result<WebhookEndpoint, PartnersError> {
    set_endpoint_enabled(conn, clock, scope, endpoint_id, false).await
}

/// The partner's endpoints in the scope's mode, oldest first.
pub async fn list_webhook_endpoints(
    conn: &mut AsyncPgConnection,
    scope: PartnerScope,
) -> Result<Vec<WebhookEndpoint>, PartnersError> {
    Ok(webhook_endpoints::table
        .filter(webhook_endpoints::partner_id.eq(scope.partner_id))
        .filter(webhook_endpoints::test_mode.eq(scope.test_mode))
        .order(webhook_endpoints::id.asc())
        .select(EndpointRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(WebhookEndpoint::from)
        .collect())
}

/// The id of the event a cause produces: `evt_` and 32 hex digits of its SHA-256, so the same
/// cause always names the same event.
pub fn event_id_for(cause: &str) -> String {
    let digest = Sha256::digest(cause.as_bytes());
    format!("evt_{}", hex::encode(&digest[..16]))
}

/// Records an event for every enabled endpoint of the partner (in its mode) that subscribes to
/// its type, each with its delivery job, on the caller's connection (inside its transaction).
/// An event whose cause was already recorded for an endpoint is not recorded again. Returns the
/// deliveries made.
pub(crate) async fn enqueue_event(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    scope: PartnerScope,
    event_type: EventType,
    cause: &str,
    data: serde_json::Value,
) -> Result<Vec<WebhookDeliveryId>, PartnersError> {
    let now = clock.now();
    let event_id = event_id_for(cause);
    let endpoints: Vec<WebhookEndpointId> = webhook_endpoints::table
        .filter(webhook_endpoints::partner_id.eq(scope.partner_id))
        .filter(webhook_endpoints::test_mode.eq(scope.test_mode))
        .filter(webhook_endpoints::enabled.eq(true))
        .filter(webhook_endpoints::event_types.contains(vec![event_type.as_str()]))
        .select(webhook_endpoints::id)
        .load(conn)
        .await?;
    let payload = serde_json::json!({
        "id": event_id,
        "type": event_type.as_str(),
        "created_at": now,
        "livemode": !scope.test_mode,
        "data": data,
    });
    let mut made = Vec::new();
    for endpoint_id in endpoints {
        let row = DeliveryRow {
            id: WebhookDeliveryId::new(),
            endpoint_id,
            partner_id: scope.partner_id,
            event_type: event_type.as_str().to_owned(),
            event_id: event_id.clone(),
            payload: payload.clone(),
            status: DeliveryStatus::Pending.as_str().to_owned(),
            attempts: 0,
            replays: 0,
            next_attempt_at: Some(now),
            last_attempt_at: None,
            give_up_at: now + Duration::hours(RETRY_FOR_HOURS),
            delivered_at: None,
            failed_at: None,
            created_at: now,
        };
        let inserted: Option<WebhookDeliveryId> = diesel::insert_into(webhook_deliveries::table)
            .values(&row)
            .on_conflict_do_nothing()
            .returning(webhook_deliveries::id)
            .get_result(conn)
            .await
            .optional()?;
        if let Some(id) = inserted {
            shared::outbox::enqueue(
                conn,
                &DeliverPartnerWebhook {
                    delivery_id: id,
                    round: 0,
                },
            )
            .await?;
            made.push(id);
        }
    }
    Ok(made)
}

type HmacSha256 = Hmac<Sha256>;

/// The hex HMAC-SHA256 of `"<t>.<body>"` with `secret`: one `v1` value of the signature header.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The signature header's value for `body` at `timestamp`, signed with each secret in turn.
pub fn signature_header(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    let mut out = format!("t={timestamp}");
    for secret in secrets {
        out.push_str(",v1=");
        out.push_str(&sign(secret, timestamp, body));
    }
    out
}

/// Checks a signature header as a receiver should: the timestamp is within `tolerance` of
/// `now`, and one `v1` value matches `secret` (compared in constant time).
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> bool {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.push(v),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return false;
    };
    if (now.timestamp() - t).abs() > tolerance.num_seconds() {
        return false;
    }
    let expected = sign(secret, t, body);
    candidates.iter().any(|c| {
        c.len() == expected.len()
            && subtle::ConstantTimeEq::ct_eq(c.as_bytes(), expected.as_bytes()).into()
    })
}

async fn find_delivery(
    conn: &mut AsyncPgConnection,
    viewer: Viewer,
    delivery_id: WebhookDeliveryId,
) -> Result<DeliveryRow, PartnersError> {
    let mut query = webhook_deliveries::table
        .inner_join(webhook_endpoints::table)
        .filter(webhook_deliveries::id.eq(delivery_id))
        .select(DeliveryRow::as_select())
        .into_boxed();
    if let Viewer::Partner(scope) = viewer {
        query = query
            .filter(webhook_endpoints::partner_id.eq(scope.partner_id))
            .filter(webhook_endpoints::test_mode.eq(scope.test_mode));
    }
    query
        .first(conn)
        .await
        .optional()?
        .ok_or(PartnersError::DeliveryNotFound)
}

/// One delivery. Errors: `DELIVERY_NOT_FOUND` (also another partner's, for a partner).
pub async fn get_delivery(
    conn: &mut AsyncPgConnection,
    viewer: Viewer,
    delivery_id: WebhookDeliveryId,
) -> Result<WebhookDelivery, PartnersError> {
    WebhookDelivery::try_from(find_delivery(conn, viewer, delivery_id).await?)
}

/// The deliveries of an endpoint, newest first, at most `first` ([`MAX_PAGE_SIZE`]) before the
/// delivery `before` (keyset on the time-ordered id).
///
/// Errors: `ENDPOINT_NOT_FOUND` (also another partner's, for a partner).
pub async fn list_deliveries(
    conn: &mut AsyncPgConnection,
    viewer: Viewer,
    endpoint_id: WebhookEndpointId,
    before: Option<WebhookDeliveryId>,
    first: i64,
) -> Result<Vec<WebhookDelivery>, PartnersError> {
    let mut endpoint = webhook_endpoints::table
        .find(endpoint_id)
        .select(webhook_endpoints::id)
        .into_boxed();
    if let Viewer::Partner(scope) = viewer {
        endpoint = endpoint
            .filter(webhook_endpoints::partner_id.eq(scope.partner_id))
            .filter(webhook_endpoints::test_mode.eq(scope.test_mode));
    }
    endpoint
        .first::<WebhookEndpointId>(conn)
        .await
        .optional()?
        .ok_or(PartnersError::EndpointNotFound)?;
    let mut query = webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
        .select(DeliveryRow::as_select())
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(webhook_deliveries::id.lt(before));
    }
    query
        .order(webhook_deliveries::id.desc())
        .limit(first.clamp(0, MAX_PAGE_SIZE))
        .load(conn)
        .await?
        .into_iter()
        .map(WebhookDelivery::try_from)
        .collect()
}

/// The attempts at a delivery, oldest first.
///
/// Errors: `DELIVERY_NOT_FOUND` (also another partner's, for a partner).
pub async fn list_attempts(
    conn: &mut AsyncPgConnection,
    viewer: Viewer,
    delivery_id: WebhookDeliveryId,
) -> Result<Vec<WebhookAttempt>, PartnersError> {
    find_delivery(conn, viewer, delivery_id).await?;
    Ok(webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq(delivery_id))
        .order(webhook_attempts::id.asc())
        .select(WebhookAttempt::as_select())
        .load(conn)
        .await?)
}

/// Sends a delivery again (whatever its status): a new round of attempts, retried for
/// [`RETRY_FOR_HOURS`] from now. The body and event id are the same, so a receiver that already
/// has the event can drop the repeat.
///
/// `reason`, when given, is kept in the audit log.
///
/// Errors: `DELIVERY_NOT_FOUND` (also another partner's, for a partner).
pub async fn replay_delivery(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    viewer: Viewer,
    delivery_id: WebhookDeliveryId,
    reason: Option<&str>,
) -> Result<WebhookDelivery, PartnersError> {
    let now = clock.now();
    conn.transaction::<_, PartnersError, _>(async |conn| {
        find_delivery(conn, viewer, delivery_id).await?;
        let row: DeliveryRow = diesel::update(webhook_deliveries::table.find(delivery_id))
            .set((
                webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()),
                webhook_deliveries::replays.eq(webhook_deliveries::replays + 1),
                webhook_deliveries::next_attempt_at.eq(Some(now)),
                webhook_deliveries::give_up_at.eq(now + Duration::hours(RETRY_FOR_HOURS)),
                webhook_deliveries::delivered_at.eq(None::<DateTime<Utc>>),
                webhook_deliveries::failed_at.eq(None::<DateTime<Utc>>),
            ))
            .returning(DeliveryRow::as_returning())
            .get_result(conn)
            .await?;
        shared::outbox::enqueue(
            conn,
            &DeliverPartnerWebhook {
                delivery_id,
                round: row.replays,
            },
        )
        .await?;
        let actor = match viewer {
            Viewer::Partner(scope) => Actor::Partner(scope.partner_id),
            Viewer::Staff(staff_id) => Actor::Staff(staff_id),
        };
        crate::support::audit_because(
            conn,
            actor,
            "partners.webhook_replayed",
            "webhook_delivery",
            delivery_id.to_string(),
            reason,
            serde_json::json!({ "round": row.replays, "event_id": row.event_id }),
        )
        .await?;
        WebhookDelivery::try_from(row)
    })
    .await
}

/// The endpoint and delivery, for the delivery job.
pub(crate) async fn load_for_delivery(
    conn: &mut AsyncPgConnection,
    delivery_id: WebhookDeliveryId,
) -> Result<Option<(DeliveryRow, EndpointRow)>, PartnersError> {
    Ok(webhook_deliveries::table
        .inner_join(webhook_endpoints::table)
        .filter(webhook_deliveries::id.eq(delivery_id))
        .select((DeliveryRow::as_select(), EndpointRow::as_select()))
        .first(conn)
        .await
        .optional()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_either_secret_and_only_in_time() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let body = br#"{"id":"evt_1"}"#;
        let header = signature_header(&["whsec_new", "whsec_old"], now.timestamp(), body);
        let tolerance = Duration::minutes(5);
        assert!(verify_signature("whsec_new", &header, body, now, tolerance));
        assert!(verify_signature("whsec_old", &header, body, now, tolerance));
        assert!(!verify_signature(
            "whsec_other",
            &header,
            body,
            now,
            tolerance
        ));
        assert!(!verify_signature(
            "whsec_new",
            &header,
            b"{}",
            now,
            tolerance
        ));
        assert!(!verify_signature(
            "whsec_new",
            &header,
            body,
            now + Duration::minutes(6),
            tolerance
        ));
        // The documented scheme, by hand.
        let expected = sign("whsec_new", now.timestamp(), body);
        assert!(header.starts_with(&format!("t={},v1={expected}", now.timestamp())));
    }

    #[test]
    fn event_ids_are_stable_per_cause() {
        assert_eq!(event_id_for("a"), event_id_for("a"));
        assert_ne!(event_id_for("a"), event_id_for("b"));
        assert_eq!(event_id_for("a").len(), 4 + 32);
    }

    #[tokio::test]
    async fn urls_and_types_are_checked() {
        let strict = PartnerWebhookSettings::default();
        let local = PartnerWebhookSettings {
            allow_loopback: true,
            ..PartnerWebhookSettings::default()
        };
        assert!(check_url("https://8.8.8.8/x", true, &strict).await.is_ok());
        assert!(
            check_url("http://127.0.0.1:8080/hook", true, &local)
                .await
                .is_ok()
        );
        assert!(matches!(
            check_url("http://127.0.0.1:8080/hook", true, &strict).await,
            Err(PartnersError::UrlNotAllowed)
        ));
        assert!(matches!(
            check_url("ftp://example.com", true, &strict).await,
            Err(PartnersError::InvalidUrl)
        ));
        assert!(check_url("https://", true, &strict).await.is_err());
        assert!(check_event_types(&[]).is_err());
        assert_eq!(
            check_event_types(&[
                EventType::CoverEnded,
                EventType::CoverStarted,
                EventType::CoverEnded
            ])
            .unwrap(),
            vec!["cover.started", "cover.ended"]
        );
    }
}
