//! Notification records: recording a message to send, reading them back, and erasure.
//!
//! Invariants:
//! - one event, one message: `cause` is unique, and enqueueing a cause that exists returns the
//!   existing notification without writing anything;
//! - a notification and the job that delivers it commit together (the outbox), inside the caller's
//!   transaction when there is one, so a message goes out if and only if its cause committed;
//! - a template that cannot be rendered records a `failed` notification with the reason (and no
//!   job) instead of failing the caller: a missing variable must not roll back a sign-in or a
//!   cover start;
//! - status only moves forward (pending → sending → sent → delivered, or to failed /
//!   undeliverable); the one way back is a failure whose outcome was unknown
//!   ([`UNCERTAIN_FAILURES`]), which later evidence of delivery may correct.

use crate::error::NotificationsError;
use crate::ids::NotificationId;
use crate::jobs::DeliverNotification;
use crate::schema::notifications;
use crate::templates::{Channel, Template, Vars, render};
use crate::text_enum::text_enum;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

/// Where a notification is in its life.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Status {
    /// Recorded; its delivery job has not sent it yet.
    Pending,
    /// An attempt is sending it, or one ended without knowing whether the provider took it.
    Sending,
    /// The provider accepted it.
    Sent,
    /// The provider reports it reached the phone or mailbox.
    Delivered,
    /// It will not be sent or did not arrive; `failure_reason` says why.
    Failed,
    /// The recipient cannot receive it (invalid or unreachable number, unsubscribed, bounced).
    Undeliverable,
}

text_enum!(Status {
    Pending => "pending",
    Sending => "sending",
    Sent => "sent",
    Delivered => "delivered",
    Failed => "failed",
    Undeliverable => "undeliverable",
});

impl Status {
    /// True when no delivery attempt will change it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Sent | Status::Delivered | Status::Failed | Status::Undeliverable
        )
    }
}

/// Failure reasons recorded when it is not known whether the message went out. Evidence of
/// delivery (a provider callback) may still turn these into `delivered`.
pub const UNCERTAIN_FAILURES: &[&str] = &[reason::AMBIGUOUS_DELIVERY, reason::RETRIES_EXHAUSTED];

/// Stable failure reasons (some carry a suffix: `missing_variable:code`, `rejected:21606`).
pub mod reason {
    /// The recipient's account was deleted before the message went out.
    pub const RECIPIENT_ERASED: &str = "recipient_erased";
    /// An email attempt ended ambiguously twice; it was not sent a third time.
    pub const AMBIGUOUS_DELIVERY: &str = "ambiguous_delivery";
    /// The delivery job ran out of attempts.
    pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
    /// The message was withdrawn before it went out (e.g. a sign-in code used or replaced).
    pub const WITHDRAWN: &str = "withdrawn";
}

/// One SMS or email.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = notifications)]
pub struct Notification {
    /// The notification.
    pub id: NotificationId,
    /// The event that caused it, e.g. `login_code:lgc_…`.
    pub cause: String,
    /// SMS or email.
    pub channel: Channel,
    /// Which message.
    pub template: Template,
    /// Phone (E.164) or email address; `erased` after the recipient's account was deleted.
    pub recipient: String,
    /// The driver it concerns, when known.
    pub driver_id: Option<uuid::Uuid>,
    /// Email subject.
    pub subject: Option<String>,
    /// The SMS text or the email's plain-text part (empty when rendering failed or after erasure).
    pub body_text: String,
    /// The email's HTML part.
    pub body_html: Option<String>,
    /// Where it is in its life.
    pub status: Status,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    /// Twilio's message SID or Mailgun's message id, once accepted.
    pub provider_message_id: Option<String>,
    /// Delivery attempts started.
    pub attempts: i32,
    /// The last error seen (also for failures that were retried).
    pub last_error: Option<String>,
    /// When the attempt now in flight started; `None` when none is.
    pub sending_since: Option<DateTime<Utc>>,
    /// When the first attempt started.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// When the latest attempt started.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When an attempt last ended without knowing whether the provider accepted the message.
    pub ambiguous_at: Option<DateTime<Utc>>,
    /// Whether an email was already sent again after an ambiguous attempt.
    pub resent_after_ambiguity: bool,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When the provider accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When the provider reported it delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When it failed.
    pub failed_at: Option<DateTime<Utc>>,
    /// When its recipient and content were erased.
    pub erased_at: Option<DateTime<Utc>>,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// The event that causes it, unique across all notifications: `login_code:<id>`,
    /// `cover_started:<session id>`, `weekly_statement:<driver id>:<week>`. 1 to 200 characters.
    pub cause: String,
    /// SMS or email.
    pub channel: Channel,
    /// Which message.
    pub template: Template,
    /// E.164 phone for SMS, email address for email.
    pub recipient: String,
    /// The driver it concerns, when known (used to erase it with the driver's account).
    pub driver_id: Option<uuid::Uuid>,
    /// The template's variables.
    pub vars: Vars,
}

#[derive(Insertable)]
#[diesel(table_name = notifications)]
#[diesel(treat_none_as_default_value = false)]
struct NotificationInsert<'a> {
    id: NotificationId,
    cause: &'a str,
    channel: Channel,
    template: Template,
    recipient: &'a str,
    driver_id: Option<uuid::Uuid>,
    subject: Option<&'a str>,
    body_text: &'a str,
    body_html: Option<&'a str>,
    status: Status,
    failure_reason: Option<&'a str>,
    failed_at: Option<DateTime<Utc>>,
}

/// Longest cause accepted.
pub const MAX_CAUSE_CHARS: usize = 200;

fn check_recipient(channel: Channel, recipient: &str) -> Result<(), NotificationsError> {
    match channel {
        Channel::Sms => {
            let digits = recipient.strip_prefix('+').unwrap_or("");
            let ok = (7..=15).contains(&digits.len())
                && digits.chars().all(|c| c.is_ascii_digit())
                && !digits.starts_with('0');
            if ok {
                Ok(())
            } else {
                Err(NotificationsError::InvalidRecipient(
                    "an SMS goes to an E.164 phone number",
                ))
            }
        }
        Channel::Email => {
            let ok = recipient.len() <= 254
                && !recipient
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ','))
                && recipient.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty() && domain.contains('.') && !domain.contains('@')
                });
            if ok {
                Ok(())
            } else {
                Err(NotificationsError::InvalidRecipient(
                    "an email goes to one plain address",
                ))
            }
        }
    }
}

/// Records a message and commits its delivery job, on `conn` (inside the caller's transaction
/// when there is one, which then holds the two writes together: no savepoint of its own, so a
/// failure leaves that transaction to be rolled back). Returns the notification's id — the existing one when `cause` was already
/// recorded, in which case nothing is written.
///
/// The template is rendered now, so the stored text is exactly what is sent. When it cannot be
/// rendered (a missing variable) the notification is stored `failed` with the reason
/// (`missing_variable:<name>`) and no job; the call still succeeds.
///
/// Errors: [`NotificationsError::InvalidRecipient`], [`NotificationsError::InvalidCause`], and
/// internal ones.
pub async fn enqueue_notification(
    conn: &mut AsyncPgConnection,
    new: NewNotification,
) -> Result<NotificationId, NotificationsError> {
    if new.cause.is_empty() || new.cause.chars().count() > MAX_CAUSE_CHARS {
        return Err(NotificationsError::InvalidCause);
    }
    check_recipient(new.channel, &new.recipient)?;
    let rendered = render(new.template, new.channel, &new.vars);
    let id = NotificationId::new();
    let new = &new;
    let rendered = &rendered;
    let record =
        async |conn: &mut AsyncPgConnection| -> Result<(NotificationId, bool), NotificationsError> {
            let failure = rendered.as_ref().err().map(|e| e.reason());
            let ok = rendered.as_ref().ok();
            let row = NotificationInsert {
                id,
                cause: &new.cause,
                channel: new.channel,
                template: new.template,
                recipient: &new.recipient,
                driver_id: new.driver_id,
                subject: ok.and_then(|r| r.subject.as_deref()),
                body_text: ok.map_or("", |r| r.text.as_str()),
                body_html: ok.and_then(|r| r.html.as_deref()),
                status: if failure.is_some() {
                    Status::Failed
                } else {
                    Status::Pending
                },
                failure_reason: failure.as_deref(),
                failed_at: failure.as_ref().map(|_| Utc::now()),
            };
            let inserted: Option<NotificationId> = diesel::insert_into(notifications::table)
                .values(&row)
                .on_conflict(notifications::cause)
                .do_nothing()
                .returning(notifications::id)
                .get_result(conn)
                .await
                .optional()?;
            let Some(id) = inserted else {
                let existing = notifications::table
                    .filter(notifications::cause.eq(&new.cause))
                    .select(notifications::id)
                    .first::<NotificationId>(conn)
                    .await?;
                return Ok((existing, false));
            };
            if failure.is_none() {
                shared::outbox::enqueue(
                    conn,
                    &DeliverNotification {
                        notification_id: id,
                    },
                )
                .await?;
            }
            Ok((id, true))
        };
    let (id, inserted) = if shared::db::in_transaction(conn) {
        record(conn).await?
    } else {
        conn.transaction::<_, NotificationsError, _>(record).await?
    };
    match (inserted, rendered) {
        (false, _) => {
            tracing::debug!(notification_id = %id, cause = %new.cause, "notification already recorded for this cause")
        }
        (true, Ok(_)) => {
            tracing::info!(notification_id = %id, template = %new.template, channel = %new.channel, "notification enqueued")
        }
        (true, Err(e)) => {
            tracing::error!(notification_id = %id, template = %new.template, error = %e, "notification could not be rendered; recorded as failed")
        }
    }
    Ok(id)
}

/// Records several messages and their delivery jobs in two statements, on `conn` inside the
/// caller's transaction (a transaction of its own when there is none): what
/// [`enqueue_notification`] records for each, for a caller that changes many things at once.
/// Answers, per message in order, its new id, or `None` when its cause was already recorded
/// (nothing is written for it).
///
/// Errors: [`NotificationsError::InvalidRecipient`], [`NotificationsError::InvalidCause`] (for
/// any of them: nothing is written), and internal ones.
pub async fn enqueue_notifications(
    conn: &mut AsyncPgConnection,
    news: &[NewNotification],
) -> Result<Vec<Option<NotificationId>>, NotificationsError> {
    use diesel::sql_types::{Array, Nullable, Text, Timestamptz, Uuid};
    if news.is_empty() {
        return Ok(Vec::new());
    }
    for new in news {
        if new.cause.is_empty() || new.cause.chars().count() > MAX_CAUSE_CHARS {
            return Err(NotificationsError::InvalidCause);
        }
        check_recipient(new.channel, &new.recipient)?;
    }
    let rendered: Vec<_> = news
        .iter()
        .map(|n| render(n.template, n.channel, &n.vars))
        .collect();
    let failures: Vec<Option<String>> = rendered
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.reason()))
        .collect();
    let ids: Vec<NotificationId> = news.iter().map(|_| NotificationId::new()).collect();
    let now = Utc::now();
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = Uuid)]
        id: uuid::Uuid,
    }
    let record = async |conn: &mut AsyncPgConnection| -> Result<Vec<Option<NotificationId>>, NotificationsError> {
        let inserted: Vec<Inserted> = shared::sql::prepared(
            "INSERT INTO notifications (id, cause, channel, template, recipient, driver_id, subject,
                                        body_text, body_html, status, failure_reason, failed_at)
             SELECT n.id, n.cause, n.channel, n.template, n.recipient, n.driver_id, n.subject,
                    n.body_text, n.body_html, n.status, n.failure_reason,
                    CASE WHEN n.failure_reason IS NULL THEN NULL ELSE $12 END
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[],
                           $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
                    AS n(id, cause, channel, template, recipient, driver_id, subject, body_text,
                         body_html, status, failure_reason)
             ON CONFLICT (cause) DO NOTHING
             RETURNING id",
        )
        .bind::<Array<Uuid>, _>(ids.iter().map(NotificationId::uuid).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(news.iter().map(|n| n.cause.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(news.iter().map(|n| n.channel.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(news.iter().map(|n| n.template.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(news.iter().map(|n| n.recipient.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Uuid>>, _>(news.iter().map(|n| n.driver_id).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            rendered
                .iter()
                .map(|r| r.as_ref().ok().and_then(|r| r.subject.as_deref()))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            rendered
                .iter()
                .map(|r| r.as_ref().map_or("", |r| r.text.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            rendered
                .iter()
                .map(|r| r.as_ref().ok().and_then(|r| r.html.as_deref()))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            failures
                .iter()
                .map(|f| if f.is_some() { Status::Failed } else { Status::Pending }.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(failures.iter().map(Option::as_deref).collect::<Vec<_>>())
        .bind::<Timestamptz, _>(now)
        .load(conn)
        .await?;
        let inserted: std::collections::HashSet<uuid::Uuid> =
            inserted.into_iter().map(|r| r.id).collect();
        let answers: Vec<Option<NotificationId>> = ids
            .iter()
            .map(|id| inserted.contains(&id.uuid()).then_some(*id))
            .collect();
        let jobs: Vec<DeliverNotification> = answers
            .iter()
            .zip(&failures)
            .filter_map(|(id, failure)| match (id, failure) {
                (Some(id), None) => Some(DeliverNotification {
                    notification_id: *id,
                }),
                _ => None,
            })
            .collect();
        shared::outbox::enqueue_all(conn, &jobs).await?;
        Ok(answers)
    };
    let answers = if shared::db::in_transaction(conn) {
        record(conn).await?
    } else {
        conn.transaction::<_, NotificationsError, _>(record).await?
    };
    for ((new, id), failure) in news.iter().zip(&answers).zip(&failures) {
        match (id, failure) {
            (None, _) => {
                tracing::debug!(cause = %new.cause, "notification already recorded for this cause")
            }
            (Some(id), None) => {
                tracing::info!(notification_id = %id, template = %new.template, channel = %new.channel, "notification enqueued")
            }
            (Some(id), Some(reason)) => {
                tracing::error!(notification_id = %id, template = %new.template, %reason, "notification could not be rendered; recorded as failed")
            }
        }
    }
    Ok(answers)
}

/// One notification.
pub async fn get_notification(
    conn: &mut AsyncPgConnection,
    id: NotificationId,
) -> Result<Option<Notification>, NotificationsError> {
    Ok(notifications::table
        .find(id)
        .select(Notification::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The notification recorded for `cause`, if any.
pub async fn find_by_cause(
    conn: &mut AsyncPgConnection,
    cause: &str,
) -> Result<Option<Notification>, NotificationsError> {
    Ok(notifications::table
        .filter(notifications::cause.eq(cause))
        .select(Notification::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The newest `limit` notifications sent to `recipient` (a phone or an address), newest first.
pub async fn list_for_recipient(
    conn: &mut AsyncPgConnection,
    recipient: &str,
    limit: i64,
) -> Result<Vec<Notification>, NotificationsError> {
    Ok(notifications::table
        .filter(notifications::recipient.eq(recipient))
        .order((notifications::created_at.desc(), notifications::id.desc()))
        .limit(limit)
        .select(Notification::as_select())
        .load(conn)
        .await?)
}

/// The newest `limit` notifications about `driver_id` or sent to one of `addresses` (their phone
/// and email: sign-in codes go out before there is a driver to name), newest first — the back
/// office's view of what a driver was told.
pub async fn list_for_driver(
    conn: &mut AsyncPgConnection,
    driver_id: uuid::Uuid,
    addresses: &[String],
    limit: i64,
) -> Result<Vec<Notification>, NotificationsError> {
    Ok(notifications::table
        .filter(
            notifications::driver_id
                .eq(driver_id)
                .or(notifications::recipient.eq_any(addresses)),
        )
        .order((notifications::created_at.desc(), notifications::id.desc()))
        .limit(limit)
        .select(Notification::as_select())
        .load(conn)
        .await?)
}

/// Sends a notification again, as it was first worded, to the same recipient: a new
/// notification with the cause `resend:<original id>:<key>` and its delivery job, in one
/// transaction. The same `key` sends once (the existing copy's id is returned, with `false`).
///
/// Errors: `NOT_FOUND`; `NOT_RESENDABLE` for a sign-in code (a new code is the answer) and for
/// a notification whose content was erased or never rendered.
pub async fn resend_notification(
    conn: &mut AsyncPgConnection,
    id: NotificationId,
    key: &str,
) -> Result<(NotificationId, bool), NotificationsError> {
    let original = get_notification(conn, id)
        .await?
        .ok_or(NotificationsError::NotFound)?;
    if original.template == Template::SignInCode {
        return Err(NotificationsError::NotResendable(
            "sign-in codes expire; the driver asks for a new one",
        ));
    }
    if original.erased_at.is_some() || original.body_text.is_empty() {
        return Err(NotificationsError::NotResendable(
            "its content was erased or never written",
        ));
    }
    let cause = format!("resend:{id}:{key}");
    if key.is_empty() || cause.chars().count() > MAX_CAUSE_CHARS {
        return Err(NotificationsError::InvalidCause);
    }
    let copy = NotificationId::new();
    let cause = &cause;
    let original = &original;
    conn.transaction::<_, NotificationsError, _>(async |conn| {
        let inserted: Option<NotificationId> = diesel::insert_into(notifications::table)
            .values(&NotificationInsert {
                id: copy,
                cause,
                channel: original.channel,
                template: original.template,
                recipient: &original.recipient,
                driver_id: original.driver_id,
                subject: original.subject.as_deref(),
                body_text: &original.body_text,
                body_html: original.body_html.as_deref(),
                status: Status::Pending,
                failure_reason: None,
                failed_at: None,
            })
            .on_conflict(notifications::cause)
            .do_nothing()
            .returning(notifications::id)
            .get_result(conn)
            .await
            .optional()?;
        match inserted {
            Some(new_id) => {
                shared::outbox::enqueue(
                    conn,
                    &DeliverNotification {
                        notification_id: new_id,
                    },
                )
                .await?;
                Ok((new_id, true))
            }
            None => {
                let existing = notifications::table
                    .filter(notifications::cause.eq(cause))
                    .select(notifications::id)
                    .first::<NotificationId>(conn)
                    .await?;
                Ok((existing, false))
            }
        }
    })
    .await
}

/// The text of the newest message recorded for `recipient` (the SMS text, or an email's plain
/// text), whatever its delivery status; `None` when there is none.
///
/// Meant for tests and support tools: end-to-end tests read a sign-in code with it
/// (`latest_body_for(conn, "+447911123456")` → `"Your ShiftCover code is 123456. …"`) without a
/// worker or a fake Twilio. A database error also answers `None` (and is logged).
pub async fn latest_body_for(conn: &mut AsyncPgConnection, recipient: &str) -> Option<String> {
    match list_for_recipient(conn, recipient, 1).await {
        Ok(mut rows) => rows.pop().map(|n| n.body_text),
        Err(e) => {
            tracing::warn!(error = %e, "could not read notifications");
            None
        }
    }
}

/// What the recipient of an erased notification becomes.
pub const ERASED_RECIPIENT: &str = "erased";

/// Erases a person from notifications: every notification for `driver_id`, or addressed to one of
/// `addresses` (their phone and email: messages sent before the driver existed, such as their first
/// sign-in code, have no driver id), loses its recipient, subject, bodies and last error. Those not
/// yet sent become `failed` with reason `recipient_erased` and will not be sent. Returns how many
/// notifications were erased.
///
/// Call it in the transaction that deletes the account. A message whose attempt is already in
/// flight may still go out; its result is then not recorded.
pub async fn erase_recipient(
    conn: &mut AsyncPgConnection,
    driver_id: Option<uuid::Uuid>,
    addresses: &[&str],
) -> Result<usize, NotificationsError> {
    let addresses: Vec<&str> = addresses
        .iter()
        .copied()
        .filter(|a| !a.is_empty())
        .collect();
    let n = diesel::sql_query(
        "UPDATE notifications SET
             status = CASE WHEN status IN ('pending', 'sending') THEN 'failed' ELSE status END,
             failure_reason = CASE WHEN status IN ('pending', 'sending') THEN $3 ELSE failure_reason END,
             failed_at = CASE WHEN status IN ('pending', 'sending') THEN now() ELSE failed_at END,
             sending_since = NULL,
             recipient = $4,
             subject = NULL,
             body_text = '',
             body_html = NULL,
             last_error = NULL,
             erased_at = now(),
             updated_at = now()
         WHERE erased_at IS NULL
           AND (driver_id = $1 OR recipient = ANY($2))",
    )
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(driver_id)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&addresses)
    .bind::<diesel::sql_types::Text, _>(reason::RECIPIENT_ERASED)
    .bind::<diesel::sql_types::Text, _>(ERASED_RECIPIENT)
    .execute(conn)
    .await?;
    if n > 0 {
        tracing::info!(erased = n, "notifications erased with their recipient");
    }
    Ok(n)
}

/// Withdraws the texts of the notifications caused by `causes` once they no longer matter (a
/// sign-in code that was used, replaced or expired): their bodies are blanked, and those not yet
/// sent become `failed` with reason `withdrawn` and will not be sent. A message whose attempt is in
/// flight (`sending`) keeps its text, which the delivery job needs to look the attempt up at the
/// provider; it is left to a later call. Returns how many notifications changed.
pub async fn withdraw_texts(
    conn: &mut AsyncPgConnection,
    causes: &[String],
) -> Result<usize, NotificationsError> {
    if causes.is_empty() {
        return Ok(0);
    }
    let n = diesel::sql_query(
        "UPDATE notifications SET
             status = CASE WHEN status = 'pending' THEN 'failed' ELSE status END,
             failure_reason = CASE WHEN status = 'pending' THEN $2 ELSE failure_reason END,
             failed_at = CASE WHEN status = 'pending' THEN now() ELSE failed_at END,
             body_text = '',
             body_html = NULL,
             updated_at = now()
         WHERE cause = ANY($1) AND status <> 'sending' AND (body_text <> '' OR body_html IS NOT NULL)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(causes)
    .bind::<diesel::sql_types::Text, _>(reason::WITHDRAWN)
    .execute(conn)
    .await?;
    Ok(n)
}

/// What a provider says about a message, from a delivery callback or a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProviderReport {
    /// Accepted; on its way.
    Sent,
    /// Reached the phone or mailbox.
    Delivered,
    /// Will not arrive; the reason is recorded.
    Failed(String),
    /// The recipient cannot receive it; the reason is recorded.
    Undeliverable(String),
    /// A failure the provider will retry itself; only noted.
    Temporary(String),
    /// Nothing that changes our record (queued, opened, clicked, …).
    Other,
}

/// Applies a provider's report to one notification, never moving its status backwards. Returns
/// the new status when it changed.
pub(crate) async fn apply_report(
    conn: &mut AsyncPgConnection,
    id: NotificationId,
    report: &ProviderReport,
    now: DateTime<Utc>,
) -> Result<Option<Status>, NotificationsError> {
    let target = notifications::table.filter(notifications::id.eq(id));
    let n = match report {
        ProviderReport::Sent => {
            diesel::update(target.filter(notifications::status.eq(Status::Sending)))
                .set((
                    notifications::status.eq(Status::Sent),
                    notifications::sending_since.eq(None::<DateTime<Utc>>),
                    notifications::sent_at.eq(now),
                    notifications::updated_at.eq(now),
                ))
                .execute(conn)
                .await?
        }
        ProviderReport::Delivered => {
            diesel::update(
                target.filter(
                    notifications::status
                        .eq_any([Status::Sending, Status::Sent])
                        .or(notifications::status
                            .eq(Status::Failed)
                            .and(notifications::failure_reason.eq_any(UNCERTAIN_FAILURES))),
                ),
            )
            .set((
                notifications::status.eq(Status::Delivered),
                notifications::failure_reason.eq(None::<String>),
                notifications::failed_at.eq(None::<DateTime<Utc>>),
                notifications::sending_since.eq(None::<DateTime<Utc>>),
                notifications::delivered_at.eq(now),
                notifications::updated_at.eq(now),
            ))
            .execute(conn)
            .await?
        }
        ProviderReport::Failed(why) | ProviderReport::Undeliverable(why) => {
            let status = if matches!(report, ProviderReport::Failed(_)) {
                Status::Failed
            } else {
                Status::Undeliverable
            };
            diesel::update(
                target.filter(notifications::status.eq_any([Status::Sending, Status::Sent])),
            )
            .set((
                notifications::status.eq(status),
                notifications::failure_reason.eq(why),
                notifications::failed_at.eq(now),
                notifications::sending_since.eq(None::<DateTime<Utc>>),
                notifications::updated_at.eq(now),
            ))
            .execute(conn)
            .await?
        }
        ProviderReport::Temporary(why) => {
            // Provider text may name the recipient: never write it back onto an erased row.
            diesel::update(target.filter(notifications::erased_at.is_null()))
                .set((
                    notifications::last_error.eq(why),
                    notifications::updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
            0
        }
        ProviderReport::Other => 0,
    };
    if n == 0 {
        return Ok(None);
    }
    Ok(match report {
        ProviderReport::Sent => Some(Status::Sent),
        ProviderReport::Delivered => Some(Status::Delivered),
        ProviderReport::Failed(_) => Some(Status::Failed),
        ProviderReport::Undeliverable(_) => Some(Status::Undeliverable),
        ProviderReport::Temporary(_) | ProviderReport::Other => None,
    })
}
