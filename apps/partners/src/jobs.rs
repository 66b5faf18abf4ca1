//! The partners jobs. `workers` registers the handlers; nothing here talks to a queue.
//!
//! - [`DeliverPartnerWebhook`]: one attempt at one webhook delivery (queue `partners`). The
//!   handler re-reads the delivery and its endpoint, signs the body, POSTs it with the endpoint's
//!   own timeout through a client that dials only allowed addresses, follows no redirect and
//!   reads at most [`MAX_ANSWER_BYTES`] of the answer ([`crate::egress`]), and logs the attempt. A 2xx completes it; anything else is retried with the
//!   queue's backoff until the delivery's `give_up_at` (three days after the event or the
//!   replay), when it is marked `failed` and dead-lettered for ops. A job of an earlier round
//!   (before a replay) does nothing. A delivery may reach an endpoint more than once (an answer
//!   lost on the way back): receivers drop repeats by the event id.
//! - [`NotifyEndedPartnerSessions`] and [`FlagStaleLinks`]: for the workers' cron.

use crate::egress;
use crate::error::PartnersError;
use crate::ids::WebhookDeliveryId;
use crate::links::{DEFAULT_STALE_AFTER_DAYS, flag_stale_links};
use crate::schema::{webhook_attempts, webhook_deliveries};
use crate::sessions::notify_ended_sessions;
use crate::support::truncate;
use crate::webhooks::{
    DeliveryStatus, SIGNATURE_HEADER, SNIPPET_CHARS, load_for_delivery, signature_header,
};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::jobs::{JobContext, JobError};
use shared::outbox::Job;
use std::sync::{Arc, OnceLock};

/// The queue of partner jobs.
pub const QUEUE: &str = "partners";

/// Deliver one webhook (one round of attempts: the first, or a replay's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverPartnerWebhook {
    /// The delivery.
    pub delivery_id: WebhookDeliveryId,
    /// 0 for the first round, then the replay's number.
    pub round: i32,
}

impl Job for DeliverPartnerWebhook {
    const TYPE: &'static str = "DeliverPartnerWebhook";
    const QUEUE: &'static str = QUEUE;
    /// Enough attempts to cover three days with a backoff capped at an hour; the delivery's own
    /// `give_up_at` decides when attempts stop.
    const MAX_ATTEMPTS: i32 = 100;

    fn idempotency_key(&self) -> String {
        format!("{}:{}", self.delivery_id, self.round)
    }
}

/// The delivery clients: one that dials only public addresses, one that also dials loopback
/// (`partner_webhooks.allow_loopback`, development and tests). See [`crate::egress`].
static PUBLIC_ONLY: OnceLock<reqwest::Client> = OnceLock::new();
static WITH_LOOPBACK: OnceLock<reqwest::Client> = OnceLock::new();

fn client(allow_loopback: bool) -> anyhow::Result<reqwest::Client> {
    let cell = if allow_loopback {
        &WITH_LOOPBACK
    } else {
        &PUBLIC_ONLY
    };
    if let Some(client) = cell.get() {
        return Ok(client.clone());
    }
    let client = egress::build_client(Arc::new(egress::SystemResolver), allow_loopback)?;
    Ok(cell.get_or_init(|| client).clone())
}

fn internal(e: PartnersError) -> JobError {
    JobError::Retry(e.into())
}

/// The most of an endpoint's answer that is read.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024;

/// What one POST gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status, when the endpoint answered.
    pub status_code: Option<i32>,
    /// The start of the answer's body.
    pub snippet: Option<String>,
    /// Why there was no answer (including a refused address).
    pub error: Option<String>,
    /// How long it took.
    pub latency_ms: i32,
}

impl Answer {
    /// Whether the endpoint accepted it (2xx).
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }

    fn describe(&self) -> String {
        match (self.status_code, &self.error) {
            (Some(code), _) => format!("endpoint answered {code}"),
            (None, Some(e)) => e.clone(),
            (None, None) => "no answer".into(),
        }
    }
}

/// Posts `body` to `url` with `http` (a client from [`egress::build_client`]), reading at most
/// [`MAX_ANSWER_BYTES`] of the answer. A URL whose host is written as an address that is not
/// allowed is refused here, unsent: the client's resolver sees only names.
pub async fn post(
    http: &reqwest::Client,
    allow_loopback: bool,
    url: &str,
    timeout_ms: i32,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Answer {
    let started = std::time::Instant::now();
    let result = send(http, allow_loopback, url, timeout_ms, headers, body).await;
    let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    Answer {
        latency_ms,
        ..result
    }
}

async fn send(
    http: &reqwest::Client,
    allow_loopback: bool,
    url: &str,
    timeout_ms: i32,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Answer {
    let failed = |error: String| Answer {
        status_code: None,
        snippet: None,
        error: Some(error),
        latency_ms: 0,
    };
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(_) => return failed("the endpoint URL does not parse".to_owned()),
    };
    if let Some(refused) = egress::refuse_literal_host(&parsed, allow_loopback) {
        return failed(format!("refused: {refused}"));
    }
    let timeout = std::time::Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(5_000));
    let mut request = http
        .post(parsed)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    match request.send().await {
        Ok(mut response) => {
            let status = i32::from(response.status().as_u16());
            // At most a few KiB of the answer: an endpoint cannot make us hold more.
            let mut kept: Vec<u8> = Vec::new();
            while kept.len() < MAX_ANSWER_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        let room = MAX_ANSWER_BYTES - kept.len();
                        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            drop(response);
            let text = String::from_utf8_lossy(&kept);
            Answer {
                status_code: Some(status),
                snippet: (!text.is_empty()).then(|| truncate(&text, SNIPPET_CHARS)),
                error: None,
                latency_ms: 0,
            }
        }
        Err(e) => failed(if let Some(refused) = egress::refusal_in(&e) {
            format!("refused: {refused}")
        } else if e.is_timeout() {
            format!("timed out after {timeout_ms} ms")
        } else if e.is_connect() {
            "could not connect".to_owned()
        } else {
            truncate(&format!("request failed: {e}"), SNIPPET_CHARS)
        }),
    }
}

async fn mark_failed(
    conn: &mut AsyncPgConnection,
    delivery_id: WebhookDeliveryId,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(webhook_deliveries::table.find(delivery_id))
        .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()))
        .set((
            webhook_deliveries::status.eq(DeliveryStatus::Failed.as_str()),
            webhook_deliveries::failed_at.eq(Some(now)),
            webhook_deliveries::next_attempt_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await
}

/// One attempt at a webhook delivery (see the module docs).
pub async fn deliver_partner_webhook(
    ctx: JobContext,
    job: DeliverPartnerWebhook,
) -> Result<(), JobError> {
    let id = job.delivery_id;
    let mut conn = ctx.pool.get().await?;
    let Some((delivery, endpoint)) = load_for_delivery(&mut conn, id).await.map_err(internal)?
    else {
        return Err(JobError::Permanent(anyhow::anyhow!(
            "webhook delivery {id} does not exist"
        )));
    };
    if delivery.status != DeliveryStatus::Pending.as_str() || job.round < delivery.replays {
        // Delivered, given up, or superseded by a replay's round: nothing to send.
        return ctx.complete_in(&mut conn).await;
    }
    let now = ctx.clock.now();
    if !endpoint.enabled {
        tracing::info!(delivery_id = %id, endpoint_id = %endpoint.id, "webhook endpoint disabled; delivery failed");
        conn.transaction::<_, JobError, _>(async |conn| {
            mark_failed(conn, id, now).await?;
            ctx.complete_in(conn).await
        })
        .await?;
        return Ok(());
    }
    if now >= delivery.give_up_at {
        mark_failed(&mut conn, id, now).await?;
        return Err(JobError::Permanent(anyhow::anyhow!(
            "webhook delivery {id} not accepted within its retry period"
        )));
    }
    drop(conn);

    let body = serde_json::to_vec(&delivery.payload)
        .map_err(|e| JobError::Permanent(anyhow::Error::new(e)))?;
    let secrets = endpoint.signing_secrets(now);
    let headers = [
        (
            SIGNATURE_HEADER,
            signature_header(&secrets, now.timestamp(), &body),
        ),
        ("ShiftCover-Event-Id", delivery.event_id.clone()),
        ("ShiftCover-Event-Type", delivery.event_type.clone()),
        ("ShiftCover-Delivery-Id", id.to_string()),
    ];
    let allow_loopback = ctx.settings.partner_webhooks.allow_loopback;
    let http = client(allow_loopback).map_err(JobError::Retry)?;
    let answer = post(
        &http,
        allow_loopback,
        &endpoint.url,
        endpoint.timeout_ms,
        &headers,
        body,
    )
    .await;
    let attempted_at = now;
    let done = ctx.clock.now();
    let succeeded = answer.succeeded();
    let last = ctx.job.attempts >= ctx.job.max_attempts || done >= delivery.give_up_at;

    let mut conn = ctx.pool.get().await?;
    let answer = &answer;
    conn.transaction::<_, JobError, _>(async |conn| {
        diesel::insert_into(webhook_attempts::table)
            .values((
                webhook_attempts::delivery_id.eq(id),
                webhook_attempts::attempted_at.eq(attempted_at),
                webhook_attempts::status_code.eq(answer.status_code),
                webhook_attempts::latency_ms.eq(answer.latency_ms),
                webhook_attempts::response_snippet.eq(answer.snippet.as_deref()),
                webhook_attempts::error.eq(answer.error.as_deref()),
                webhook_attempts::succeeded.eq(succeeded),
            ))
            .execute(conn)
            .await?;
        diesel::update(webhook_deliveries::table.find(id))
            .set((
                webhook_deliveries::attempts.eq(webhook_deliveries::attempts + 1),
                webhook_deliveries::last_attempt_at.eq(Some(attempted_at)),
            ))
            .execute(conn)
            .await?;
        if succeeded {
            diesel::update(webhook_deliveries::table.find(id))
                .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending.as_str()))
                .set((
                    webhook_deliveries::status.eq(DeliveryStatus::Succeeded.as_str()),
                    webhook_deliveries::delivered_at.eq(Some(done)),
                    webhook_deliveries::next_attempt_at.eq(None::<DateTime<Utc>>),
                ))
                .execute(conn)
                .await?;
            ctx.complete_in(conn).await
        } else if last {
            mark_failed(conn, id, done).await?;
            Ok(())
        } else {
            Ok(())
        }
    })
    .await?;
    if succeeded {
        tracing::info!(delivery_id = %id, latency_ms = answer.latency_ms, "webhook delivered");
        Ok(())
    } else if last {
        Err(JobError::Permanent(anyhow::anyhow!(
            "webhook delivery {id} failed for good: {}",
            answer.describe()
        )))
    } else {
        Err(JobError::Retry(anyhow::anyhow!(
            "webhook delivery {id}: {}",
            answer.describe()
        )))
    }
}

/// Tell partners about their sessions that ended, whoever ended them (a partner's events, the
/// gap rule's cron, the maximum length, the driver). One per cron tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyEndedPartnerSessions {
    /// The scheduler tick that asked for the run.
    pub tick: DateTime<Utc>,
}

impl NotifyEndedPartnerSessions {
    /// The job of one scheduler tick.
    pub fn for_tick(tick: DateTime<Utc>) -> Self {
        Self { tick }
    }
}

impl Job for NotifyEndedPartnerSessions {
    const TYPE: &'static str = "NotifyEndedPartnerSessions";
    const QUEUE: &'static str = QUEUE;
    const MAX_ATTEMPTS: i32 = 3;

    fn idempotency_key(&self) -> String {
        format!("notify_ended_partner_sessions:{}", self.tick.timestamp())
    }
}

/// Sessions one run looks at, at most.
pub const NOTIFY_BATCH: i64 = 500;

/// Runs [`notify_ended_sessions`] and completes the job in one transaction.
pub async fn run_notify_ended_partner_sessions(
    ctx: JobContext,
    _job: NotifyEndedPartnerSessions,
) -> Result<(), JobError> {
    let mut conn = ctx.pool.get().await?;
    let ctx = &ctx;
    conn.transaction::<_, JobError, _>(async |conn| {
        let n = notify_ended_sessions(conn, &*ctx.clock, NOTIFY_BATCH)
            .await
            .map_err(internal)?;
        if n > 0 {
            tracing::info!(sessions = n, "partners told of ended sessions");
        }
        ctx.complete_in(conn).await
    })
    .await
}

/// Flag links with no event for [`DEFAULT_STALE_AFTER_DAYS`]. One per cron tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagStaleLinks {
    /// The scheduler tick that asked for the run.
    pub tick: DateTime<Utc>,
}

impl FlagStaleLinks {
    /// The job of one scheduler tick.
    pub fn for_tick(tick: DateTime<Utc>) -> Self {
        Self { tick }
    }
}

impl Job for FlagStaleLinks {
    const TYPE: &'static str = "FlagStaleLinks";
    const QUEUE: &'static str = QUEUE;
    const MAX_ATTEMPTS: i32 = 3;

    fn idempotency_key(&self) -> String {
        format!("flag_stale_partner_links:{}", self.tick.timestamp())
    }
}

/// Runs [`flag_stale_links`] and completes the job in one transaction.
pub async fn run_flag_stale_links(ctx: JobContext, _job: FlagStaleLinks) -> Result<(), JobError> {
    let mut conn = ctx.pool.get().await?;
    let ctx = &ctx;
    conn.transaction::<_, JobError, _>(async |conn| {
        flag_stale_links(conn, &*ctx.clock, Duration::days(DEFAULT_STALE_AFTER_DAYS))
            .await
            .map_err(internal)?;
        ctx.complete_in(conn).await
    })
    .await
}
