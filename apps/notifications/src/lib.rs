//! SMS and email: notification records, templates, Twilio and Mailgun delivery.
//!
//! - Apps record a message with [`enqueue_notification`] inside the transaction of the event
//!   that causes it; the row and its [`jobs::DeliverNotification`] job commit together, and the
//!   event's `cause` key makes a second report of the same event a no-op.
//! - [`templates`] renders the sign-in code, cover started/ended, top-up action needed, weekly
//!   statement and claim received messages (SMS text; email subject, text and HTML).
//! - [`jobs::deliver_notification`] sends through [`twilio`] or [`mailgun`], exactly once as far
//!   as the providers allow: an attempt that may have reached Twilio is looked up before any
//!   resend; an email is resent at most once after such an attempt.
//! - [`webhooks`] verifies and applies delivery callbacks (delivered, failed, undeliverable).
//! - [`erase_recipient`] is called by accounts when a driver deletes their account.
//!
//! Invariants across the crate:
//! - plain Rust: functions take a connection and typed inputs; nothing here knows HTTP routing,
//!   GraphQL or the job runner;
//! - this crate writes only its own tables (`notifications`, `mailgun_webhook_tokens`) plus the
//!   kernel's outbox, and depends on no other domain app: callers pass the recipient and driver id;
//! - secrets (API keys, auth tokens, signing keys) come from [`shared::Settings`] and are only
//!   sent to their provider.

pub mod error;
mod http;
pub mod ids;
pub mod jobs;
pub mod mailgun;
pub mod notification;
pub mod schema;
pub mod templates;
mod text_enum;
pub mod twilio;
pub mod webhooks;

pub use error::NotificationsError;
pub use ids::NotificationId;
pub use jobs::{DeliverNotification, deliver_notification};
pub use notification::{
    NewNotification, Notification, Status, enqueue_notification, enqueue_notifications,
    erase_recipient, find_by_cause, get_notification, latest_body_for, list_for_driver,
    list_for_recipient, resend_notification, withdraw_texts,
};
pub use templates::{Channel, RenderError, Rendered, Template, Vars, render, vars};
pub use webhooks::{
    CallbackOutcome, MailgunSignatureError, MailgunWebhookError, apply_mailgun_event,
    apply_twilio_status, verify_mailgun_signature, verify_mailgun_webhook, verify_twilio_signature,
};
