//! Tests of the payments app against real PostgreSQL and localstripe (the real Stripe client,
//! pointed at a local fake Stripe). One test binary; each test gets its own database, and all
//! share one localstripe server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Other crates see this package as `payments` (workspace rename); read the tests the same way.
extern crate shiftcover_payments as payments;

mod auto_top_up;
mod cards;
mod chargebacks;
mod holds;
mod limbo;
mod refunds;
mod sessions;
mod support;
mod top_ups;
mod webhooks;
