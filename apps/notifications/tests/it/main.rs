//! Database-backed tests of the notifications app, with fake Twilio and Mailgun servers that check
//! the real request shapes. One test binary; each test gets its own database cloned from the
//! migrated template.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Other crates see this package as `notifications` (workspace rename); read the tests the same way.
extern crate shiftcover_notifications as notifications;

mod email;
mod enqueue;
mod sms;
mod support;
mod webhooks;
