//! The partners jobs. `workers` registers the handlers; nothing here talks to a queue.
//!
//! - [`DeliverPartnerWebhook`]: one attempt at one webhook delivery (queue `partners`). The
//!   handler re-reads the delivery and its endpoint, signs the body, POSTs it with the endpoint's
//!   own timeout, and logs the attempt. A 2xx completes it; anything else is retried with the
//!   queue's backoff until the delivery's `give_up_at` (three days after the event or the
//!   replay), when it is marked `failed` and dead-lettered for ops. A job of an earlier round
//!   (before a replay) does nothing. A delivery may reach an endpoint more than once (an answer
//!   lost on the way back): receivers drop repeats by the event id.
//! - [`NotifyEndedPartnerSessions`] and [`FlagStaleLinks`]: for the workers' cron.

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
use std::sync::OnceLock;

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

static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();

fn client() -> anyhow::Result<reqwest::Client> {
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    // The binary installs the ring provider at start; do it here too (a no-op when done).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("shiftcover-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(CLIENT.get_or_init(|| client).clone())
}

fn internal(e: PartnersError) -> JobError {
    JobError::Retry(e.into())
}

/// What one POST gave.
struct Answer {
    status_code: Option<i32>,
    snippet: Option<String>,
    error: Option<String>,
    latency_ms: i32,
}

impl Answer {
    fn succeeded(&self) -> bool {
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

async fn post(
    url: &str,
    timeout_ms: i32,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<Answer, JobError> {
    let http = client().map_err(JobError::Retry)?;
    let timeout = std::time::Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(5_000));
    let mut request = http
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let started = std::time::Instant::now();
    let sent = request.send().await;
    let result = match sent {
        Ok(response) => {
            let status = i32::from(response.status().as_u16());
            let text = response.text().await.unwrap_or_default();
            Answer {
                status_code: Some(status),
                snippet: (!text.is_empty()).then(|| truncate(&text, SNIPPET_CHARS)),
                error: None,
                latency_ms: 0,
            }
        }
        Err(e) => {
            let error = if e.is_timeout() {
                format!("timed out after {timeout_ms} ms")
            } else if e.is_connect() {
                "could not connect".to_owned()
            } else {
                truncate(&format!("request failed: {e}"), SNIPPET_CHARS)
            };
            Answer {
                status_code: None,
                snippet: None,
                error: Some(error),
                latency_ms: 0,
            }
        }
    };
    let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    Ok(Answer {
        latency_ms,
        ..result
    })
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
    let answer = post(&endpoint.url, endpoint.timeout_ms, &headers, body).await?;
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
