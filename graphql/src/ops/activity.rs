//! What happened around a driver, for the back office: the messages we sent them (with a resend)
//! and the audit log of what they did and what was done to their account.

use crate::accounts::conn;
use crate::cover::{bad_id, user_error};
use crate::errors::{InternalExt, UserError, internal};
use crate::guard;
use crate::relay::{parse_global_id, to_global_id};
use accounts::{DriverId, Role};
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};
use notifications::{NotificationId, NotificationsError, Template};
use shared::audit::{self, ActorType, AuditEntry};

/// A message sent (or being sent) to a driver.
#[derive(SimpleObject, Debug, Clone)]
pub struct DriverNotification {
    /// Its global id.
    pub id: ID,
    /// `sms` or `email`.
    pub channel: String,
    /// Which message, e.g. `cover_started`.
    pub template: String,
    /// `pending`, `sending`, `sent`, `delivered`, `failed` or `undeliverable`.
    pub status: String,
    /// The phone or address it went to.
    pub recipient: String,
    /// The email's subject.
    pub subject: Option<String>,
    /// What it said; null for sign-in codes (staff never see a live code).
    pub body_text: Option<String>,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When the provider accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When the provider reported it delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Whether `resendNotification` accepts it.
    pub resendable: bool,
}

/// One entry of the audit log.
#[derive(SimpleObject, Debug, Clone, QueryableByName)]
pub struct AuditEvent {
    /// When.
    #[diesel(sql_type = Timestamptz)]
    pub occurred_at: DateTime<Utc>,
    /// `driver`, `partner`, `staff` or `system`.
    #[diesel(sql_type = Text)]
    pub actor_type: String,
    /// Who (`drv_…`, `stf_…`), when known.
    #[diesel(sql_type = Nullable<Text>)]
    pub actor_id: Option<String>,
    /// What, e.g. `enrolment.suspended`.
    #[diesel(sql_type = Text)]
    pub action: String,
    /// The kind of thing acted on.
    #[diesel(sql_type = Text)]
    pub subject_type: String,
    /// Its id.
    #[diesel(sql_type = Text)]
    pub subject_id: String,
    /// Why, when a person said.
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<String>,
}

/// A driver's messages and audit trail.
#[derive(SimpleObject, Debug, Clone)]
pub struct DriverActivity {
    /// Messages about the driver, newest first.
    pub notifications: Vec<DriverNotification>,
    /// Audit entries about the driver or by them, newest first.
    pub audit_events: Vec<AuditEvent>,
}

/// Send a message again.
#[derive(InputObject)]
pub struct ResendNotificationInput {
    /// The notification.
    pub notification_id: ID,
    /// Why (1 to 500 characters), for the audit log.
    pub reason: String,
    /// The caller's key: the same key sends once.
    pub idempotency_key: String,
}

/// Result of `resendNotification`.
#[derive(SimpleObject, Default)]
pub struct ResendNotificationPayload {
    /// The new copy's global id.
    pub notification_id: Option<ID>,
    /// True when this key had already sent it (nothing new was sent).
    pub replayed: bool,
    /// What was wrong with the input.
    pub user_errors: Vec<UserError>,
}

fn notification_of(n: notifications::Notification) -> DriverNotification {
    let resendable =
        n.template != Template::SignInCode && n.erased_at.is_none() && !n.body_text.is_empty();
    DriverNotification {
        id: to_global_id("Notification", &n.id),
        channel: n.channel.to_string(),
        template: n.template.to_string(),
        status: n.status.to_string(),
        recipient: n.recipient,
        subject: n.subject,
        body_text: (n.template != Template::SignInCode).then_some(n.body_text),
        failure_reason: n.failure_reason,
        created_at: n.created_at,
        sent_at: n.sent_at,
        delivered_at: n.delivered_at,
        resendable,
    }
}

/// Activity queries (ops).
#[derive(Default)]
pub struct ActivityQuery;

#[Object]
impl ActivityQuery {
    /// The messages sent to a driver and the audit log about them (ops); at most `first` of each.
    async fn driver_activity(
        &self,
        ctx: &Context<'_>,
        driver_id: ID,
        #[graphql(default = 30, validator(minimum = 1, maximum = 100))] first: i32,
    ) -> async_graphql::Result<Option<DriverActivity>> {
        guard::require_staff(ctx, Role::Ops)?;
        let Some(driver) = parse_global_id::<DriverId>(&driver_id, "Driver") else {
            return Ok(None);
        };
        let mut conn = conn(ctx).await?;
        let Ok(profile) = accounts::get_driver(&mut conn, driver).await else {
            return Ok(None);
        };
        let mut addresses = vec![profile.phone.to_string()];
        addresses.extend(profile.email.as_ref().map(ToString::to_string));
        let sent =
            notifications::list_for_driver(&mut conn, driver.uuid(), &addresses, i64::from(first))
                .await
                .internal(ctx)?;
        let audit_events: Vec<AuditEvent> = diesel::sql_query(
            "SELECT occurred_at, actor_type, actor_id, action, subject_type, subject_id, reason \
               FROM audit_log \
              WHERE (subject_type = 'driver' AND subject_id = $1) OR actor_id = $1 \
              ORDER BY occurred_at DESC, id DESC LIMIT $2",
        )
        .bind::<Text, _>(driver.to_string())
        .bind::<BigInt, _>(i64::from(first))
        .load(&mut conn)
        .await
        .internal(ctx)?;
        Ok(Some(DriverActivity {
            notifications: sent.into_iter().map(notification_of).collect(),
            audit_events,
        }))
    }
}

/// Activity mutations (ops).
#[derive(Default)]
pub struct ActivityMutation;

#[Object]
impl ActivityMutation {
    /// Sends a message again, worded as it was, to the same recipient (ops; audited). Sign-in
    /// codes cannot be resent (`NOT_RESENDABLE`): the driver asks for a new one.
    async fn resend_notification(
        &self,
        ctx: &Context<'_>,
        input: ResendNotificationInput,
    ) -> async_graphql::Result<ResendNotificationPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(id) = parse_global_id::<NotificationId>(&input.notification_id, "Notification")
        else {
            return Ok(ResendNotificationPayload {
                user_errors: bad_id("notificationId", "NOT_FOUND"),
                ..Default::default()
            });
        };
        let reason = input.reason.trim();
        if !(1..=500).contains(&reason.chars().count()) {
            return Ok(ResendNotificationPayload {
                user_errors: user_error(
                    Some("reason"),
                    "INVALID_REASON",
                    "Give a reason of 1 to 500 characters.",
                ),
                ..Default::default()
            });
        }
        let key = input.idempotency_key.trim();
        if !(1..=100).contains(&key.len()) {
            return Ok(ResendNotificationPayload {
                user_errors: user_error(
                    Some("idempotencyKey"),
                    "INVALID_IDEMPOTENCY_KEY",
                    "Give a key of 1 to 100 characters.",
                ),
                ..Default::default()
            });
        }
        let mut conn = conn(ctx).await?;
        let result = conn
            .transaction::<_, NotificationsError, _>(async |conn| {
                let (copy, new) = notifications::resend_notification(conn, id, key).await?;
                if new {
                    audit::record(
                        conn,
                        &AuditEntry {
                            actor_type: ActorType::Staff,
                            actor_id: Some(staff.staff_id.to_string()),
                            action: "notification.resent",
                            subject_type: "notification",
                            subject_id: id.to_string(),
                            reason: Some(reason),
                            details: serde_json::json!({ "copy": copy.to_string() }),
                        },
                    )
                    .await?;
                }
                Ok((copy, new))
            })
            .await;
        match result {
            Ok((copy, new)) => Ok(ResendNotificationPayload {
                notification_id: Some(to_global_id("Notification", &copy)),
                replayed: !new,
                user_errors: vec![],
            }),
            Err(NotificationsError::NotFound) => Ok(ResendNotificationPayload {
                user_errors: bad_id("notificationId", "NOT_FOUND"),
                ..Default::default()
            }),
            Err(NotificationsError::NotResendable(why)) => Ok(ResendNotificationPayload {
                user_errors: user_error(
                    Some("notificationId"),
                    "NOT_RESENDABLE",
                    &format!("This message cannot be sent again: {why}."),
                ),
                ..Default::default()
            }),
            Err(e) => Err(internal(ctx, e)),
        }
    }
}
