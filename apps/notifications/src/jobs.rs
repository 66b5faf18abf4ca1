//! The delivery job. `workers` registers [`deliver_notification`]; nothing here talks to a queue.
//!
//! One attempt:
//! 1. re-read the notification; a final one (sent, delivered, failed, undeliverable) completes the
//!    job without sending, so a job delivered twice sends once;
//! 2. claim it with a guarded update to `sending` (from `pending`, or from a `sending` whose
//!    previous attempt ended ambiguously or went stale), counting the attempt; the attempt number
//!    fences every later write, so a stale worker cannot overwrite a newer attempt's result;
//! 3. if a previous attempt may have reached the provider, find out first: Twilio is asked for the
//!    message (same number and text, recent); an email, which cannot be looked up, is sent again
//!    once, with a warning, and never a third time;
//! 4. send, and record the outcome: `sent` with the provider's id; `undeliverable` (bad number,
//!    unsubscribed: not retried, not an ops problem); `failed` for a refused request (dead-lettered
//!    for ops); back to `pending` for a rate limit or an outage (retried with backoff); left
//!    `sending` without an owner after a timeout (ambiguous: the next attempt looks it up).

use crate::error::NotificationsError;
use crate::http::{SendError, client};
use crate::ids::NotificationId;
use crate::mailgun::{self, Email};
use crate::notification::{Notification, Status, apply_report, get_notification, reason};
use crate::schema::notifications;
use crate::templates::Channel;
use crate::twilio;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::jobs::{JobContext, JobError};
use shared::outbox::Job;
use shared::settings::Settings;

/// Deliver one notification. Enqueued by [`crate::enqueue_notification`] in the transaction that
/// records it; the payload carries only the id (the handler re-reads the row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverNotification {
    /// The notification to deliver.
    pub notification_id: NotificationId,
}

impl Job for DeliverNotification {
    const TYPE: &'static str = "DeliverNotification";
    const QUEUE: &'static str = "notifications";
    const MAX_ATTEMPTS: i32 = 8;

    fn idempotency_key(&self) -> String {
        self.notification_id.to_string()
    }
}

/// How long an attempt may stay marked in flight before it is taken to have died with its worker
/// (or been cancelled by the runtime's timeout); the next attempt then treats it as ambiguous.
/// An attempt makes at most two provider calls (a lookup and a send), each bounded by its
/// timeout, so twice the longer timeout plus ten seconds of bookkeeping, and never under 30 s.
pub fn stale_after(settings: &Settings) -> Duration {
    let longest = settings.twilio.timeout_ms.max(settings.mailgun.timeout_ms);
    let millis = i64::try_from(longest.saturating_mul(2))
        .unwrap_or(i64::MAX / 2)
        .saturating_add(10_000)
        .max(30_000);
    Duration::milliseconds(millis)
}

fn internal(e: NotificationsError) -> JobError {
    JobError::Retry(e.into())
}

/// The attempt this run owns.
struct Attempt {
    id: NotificationId,
    /// The notification's attempt counter after the claim: fences every write of this attempt.
    number: i32,
    /// Whether this is the job's last attempt (a retryable failure then fails the notification).
    last: bool,
}

/// Delivers one notification (see the module docs for the steps).
pub async fn deliver_notification(
    ctx: JobContext,
    job: DeliverNotification,
) -> Result<(), JobError> {
    let id = job.notification_id;
    let mut conn = ctx.pool.get().await?;
    let now = ctx.clock.now();
    let Some(row) = get_notification(&mut conn, id).await.map_err(internal)? else {
        return Err(JobError::Permanent(anyhow::anyhow!(
            "notification {id} does not exist"
        )));
    };
    if row.status.is_final() {
        tracing::info!(notification_id = %id, status = %row.status, "notification already settled; nothing to send");
        return ctx.complete_in(&mut conn).await;
    }
    let http = client().map_err(JobError::Retry)?;
    let maybe_sent_before = row.status == Status::Sending;
    let stale_before = now - stale_after(&ctx.settings);
    let Some(claimed) = claim(&mut conn, &row, now, stale_before).await? else {
        return match get_notification(&mut conn, id).await.map_err(internal)? {
            Some(current) if current.status.is_final() => ctx.complete_in(&mut conn).await,
            _ => Err(JobError::Retry(anyhow::anyhow!(
                "another attempt at notification {id} is in flight"
            ))),
        };
    };
    let attempt = Attempt {
        id,
        number: claimed.attempts,
        last: ctx.job.attempts >= ctx.job.max_attempts,
    };
    let mut resent_now = false;

    if maybe_sent_before {
        match claimed.channel {
            Channel::Sms => {
                let since = claimed.first_attempt_at.unwrap_or(now);
                let exclude = provider_ids_of_others(&mut conn, &claimed, since).await?;
                let found = twilio::find_message(
                    &http,
                    &ctx.settings.twilio,
                    &claimed.recipient,
                    &claimed.body_text,
                    since,
                    &exclude,
                )
                .await;
                let now = ctx.clock.now();
                match found {
                    Ok(Some(message)) => {
                        tracing::info!(notification_id = %id, sid = %message.sid, "found the message an earlier attempt sent; not sending it again");
                        record_sent(&mut conn, &attempt, &message.sid, now).await?;
                        if let Some(status) = message.status.as_deref() {
                            let code = message.error_code.map(|c| c.to_string());
                            let report = twilio::report_for_status(status, code.as_deref());
                            apply_report(&mut conn, id, &report, now)
                                .await
                                .map_err(internal)?;
                        }
                        return ctx.complete_in(&mut conn).await;
                    }
                    Ok(None) => {
                        tracing::info!(notification_id = %id, "an earlier attempt's message is not at Twilio; sending it now");
                    }
                    Err(e) => {
                        // The question stays open: keep it ambiguous and ask again next time.
                        let e = match e {
                            SendError::Ambiguous(m) | SendError::Retryable(m) => {
                                SendError::Ambiguous(m)
                            }
                            other => SendError::Ambiguous(other.to_string()),
                        };
                        return settle_failure(&ctx, &mut conn, &attempt, true, false, e, now)
                            .await;
                    }
                }
            }
            Channel::Email => {
                if claimed.resent_after_ambiguity {
                    tracing::error!(notification_id = %id, "email attempt ambiguous again after one re-send; giving up rather than risk a third copy");
                    record_final(
                        &mut conn,
                        &attempt,
                        Status::Failed,
                        reason::AMBIGUOUS_DELIVERY,
                        claimed.last_error.as_deref(),
                        now,
                    )
                    .await?;
                    return ctx.complete_in(&mut conn).await;
                }
                tracing::warn!(notification_id = %id, last_error = ?claimed.last_error, "an earlier attempt at this email may have been delivered; Mailgun cannot be asked, so it is sent once more");
                mark_resent(&mut conn, &attempt, true, now).await?;
                resent_now = true;
            }
        }
    }

    let result = send(&ctx, &http, &claimed).await;
    let now = ctx.clock.now();
    match result {
        Ok(provider_id) => {
            tracing::info!(notification_id = %id, provider_id = %provider_id, attempt = attempt.number, "notification sent");
            record_sent(&mut conn, &attempt, &provider_id, now).await?;
            ctx.complete_in(&mut conn).await
        }
        Err(e) => {
            settle_failure(
                &ctx,
                &mut conn,
                &attempt,
                maybe_sent_before,
                resent_now,
                e,
                now,
            )
            .await
        }
    }
}

async fn send(
    ctx: &JobContext,
    http: &reqwest::Client,
    n: &Notification,
) -> Result<String, SendError> {
    match n.channel {
        Channel::Sms => {
            twilio::send_sms(
                http,
                &ctx.settings.twilio,
                &ctx.settings.http.public_url,
                &n.recipient,
                &n.body_text,
            )
            .await
        }
        Channel::Email => {
            mailgun::send_email(
                http,
                &ctx.settings.mailgun,
                Email {
                    to: &n.recipient,
                    subject: n.subject.as_deref().unwrap_or_default(),
                    text: &n.body_text,
                    html: n.body_html.as_deref().unwrap_or_default(),
                    notification_id: n.id.to_string(),
                },
            )
            .await
        }
    }
}

/// Records a failed send and tells the runtime what to do with the job.
/// `maybe_sent_before`: an earlier attempt may have reached the provider, so a definite failure
/// of this one must not erase that doubt. `resent_now`: this attempt was an email's one re-send.
async fn settle_failure(
    ctx: &JobContext,
    conn: &mut AsyncPgConnection,
    attempt: &Attempt,
    maybe_sent_before: bool,
    resent_now: bool,
    error: SendError,
    now: DateTime<Utc>,
) -> Result<(), JobError> {
    let id = attempt.id;
    let message = error.to_string();
    match error {
        SendError::Undeliverable { code, .. } => {
            tracing::info!(notification_id = %id, error = %message, "recipient cannot receive this notification");
            record_final(
                conn,
                attempt,
                Status::Undeliverable,
                &format!("undeliverable:{code}"),
                Some(&message),
                now,
            )
            .await?;
            ctx.complete_in(conn).await
        }
        SendError::Rejected { code, .. } => {
            record_final(
                conn,
                attempt,
                Status::Failed,
                &format!("rejected:{code}"),
                Some(&message),
                now,
            )
            .await?;
            Err(JobError::Permanent(anyhow::anyhow!(
                "notification {id}: {message}"
            )))
        }
        SendError::Retryable(_) | SendError::Ambiguous(_) => {
            let ambiguous = matches!(error, SendError::Ambiguous(_));
            if attempt.last {
                record_final(
                    conn,
                    attempt,
                    Status::Failed,
                    reason::RETRIES_EXHAUSTED,
                    Some(&message),
                    now,
                )
                .await?;
            } else {
                if resent_now && !ambiguous {
                    // The re-send certainly did not go out: the one re-send is still owed.
                    mark_resent(conn, attempt, false, now).await?;
                }
                release(
                    conn,
                    attempt,
                    ambiguous || maybe_sent_before,
                    ambiguous,
                    &message,
                    now,
                )
                .await?;
            }
            Err(JobError::Retry(anyhow::anyhow!(
                "notification {id}: {message}"
            )))
        }
    }
}

/// Claims the notification for one attempt. `None` when it changed since it was read, or another
/// attempt is in flight.
async fn claim(
    conn: &mut AsyncPgConnection,
    row: &Notification,
    now: DateTime<Utc>,
    stale_before: DateTime<Utc>,
) -> Result<Option<Notification>, JobError> {
    Ok(diesel::update(
        notifications::table
            .filter(notifications::id.eq(row.id))
            .filter(notifications::status.eq(row.status))
            .filter(notifications::attempts.eq(row.attempts))
            .filter(
                notifications::sending_since
                    .is_null()
                    .or(notifications::sending_since.lt(stale_before)),
            ),
    )
    .set((
        notifications::status.eq(Status::Sending),
        notifications::attempts.eq(row.attempts + 1),
        notifications::sending_since.eq(now),
        notifications::last_attempt_at.eq(now),
        notifications::first_attempt_at.eq(row.first_attempt_at.unwrap_or(now)),
        notifications::updated_at.eq(now),
    ))
    .returning(Notification::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}

/// The rows this attempt may still write: its own, while it is sending.
macro_rules! owned_by {
    ($attempt:expr) => {
        notifications::table
            .filter(notifications::id.eq($attempt.id))
            .filter(notifications::status.eq(Status::Sending))
            .filter(notifications::attempts.eq($attempt.number))
    };
}

fn warn_if_lost(n: usize, attempt: &Attempt, what: &str) {
    if n == 0 {
        tracing::warn!(notification_id = %attempt.id, attempt = attempt.number, "notification changed while it was being sent (erased, or taken over); {what} not recorded");
    }
}

async fn record_sent(
    conn: &mut AsyncPgConnection,
    attempt: &Attempt,
    provider_id: &str,
    now: DateTime<Utc>,
) -> Result<(), JobError> {
    let n = diesel::update(owned_by!(attempt))
        .set((
            notifications::status.eq(Status::Sent),
            notifications::provider_message_id.eq(provider_id),
            notifications::sending_since.eq(None::<DateTime<Utc>>),
            notifications::sent_at.eq(now),
            notifications::last_error.eq(None::<String>),
            notifications::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    warn_if_lost(n, attempt, "sent");
    Ok(())
}

async fn record_final(
    conn: &mut AsyncPgConnection,
    attempt: &Attempt,
    status: Status,
    failure_reason: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), JobError> {
    let n = diesel::update(owned_by!(attempt))
        .set((
            notifications::status.eq(status),
            notifications::failure_reason.eq(failure_reason),
            notifications::last_error.eq(error),
            notifications::sending_since.eq(None::<DateTime<Utc>>),
            notifications::failed_at.eq(now),
            notifications::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    warn_if_lost(n, attempt, status.as_str());
    Ok(())
}

/// Ends this attempt without a result. `still_uncertain` keeps the notification `sending` (with
/// no attempt in flight) so the next attempt checks before sending; otherwise it goes back to
/// `pending`. `ambiguous_now` records that this attempt itself may have been received.
async fn release(
    conn: &mut AsyncPgConnection,
    attempt: &Attempt,
    still_uncertain: bool,
    ambiguous_now: bool,
    error: &str,
    now: DateTime<Utc>,
) -> Result<(), JobError> {
    let status = if still_uncertain {
        Status::Sending
    } else {
        Status::Pending
    };
    let n = if ambiguous_now {
        diesel::update(owned_by!(attempt))
            .set((
                notifications::status.eq(status),
                notifications::sending_since.eq(None::<DateTime<Utc>>),
                notifications::ambiguous_at.eq(now),
                notifications::last_error.eq(error),
                notifications::updated_at.eq(now),
            ))
            .execute(conn)
            .await?
    } else {
        diesel::update(owned_by!(attempt))
            .set((
                notifications::status.eq(status),
                notifications::sending_since.eq(None::<DateTime<Utc>>),
                notifications::last_error.eq(error),
                notifications::updated_at.eq(now),
            ))
            .execute(conn)
            .await?
    };
    warn_if_lost(n, attempt, "the failed attempt");
    Ok(())
}

async fn mark_resent(
    conn: &mut AsyncPgConnection,
    attempt: &Attempt,
    resent: bool,
    now: DateTime<Utc>,
) -> Result<(), JobError> {
    let n = diesel::update(owned_by!(attempt))
        .set((
            notifications::resent_after_ambiguity.eq(resent),
            notifications::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    if n == 0 {
        return Err(JobError::Retry(anyhow::anyhow!(
            "notification {} changed before its re-send",
            attempt.id
        )));
    }
    Ok(())
}

/// Provider ids already recorded for other notifications to the same recipient since `since`
/// (less a day): a lookup must not claim another notification's message.
async fn provider_ids_of_others(
    conn: &mut AsyncPgConnection,
    n: &Notification,
    since: DateTime<Utc>,
) -> Result<Vec<String>, JobError> {
    let ids: Vec<Option<String>> = notifications::table
        .filter(notifications::recipient.eq(&n.recipient))
        .filter(notifications::id.ne(n.id))
        .filter(notifications::provider_message_id.is_not_null())
        .filter(notifications::created_at.ge(since - Duration::days(1)))
        .select(notifications::provider_message_id)
        .load(conn)
        .await?;
    Ok(ids.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_goes_stale_after_two_provider_timeouts_and_some_slack() {
        let mut s = Settings::default();
        s.twilio.timeout_ms = 10_000;
        s.mailgun.timeout_ms = 10_000;
        assert_eq!(stale_after(&s), Duration::seconds(30));
        s.mailgun.timeout_ms = 25_000;
        assert_eq!(stale_after(&s), Duration::seconds(60));
        s.twilio.timeout_ms = 100;
        s.mailgun.timeout_ms = 100;
        assert_eq!(stale_after(&s), Duration::seconds(30));
    }
}
