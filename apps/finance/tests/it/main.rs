//! Tests of the finance app against real PostgreSQL, localstripe (a day of real top-ups,
//! sessions and refunds) and wiremock (Stripe list pages that fail, unknown types).

#![allow(clippy::unwrap_used, clippy::expect_used)]

extern crate shiftcover_finance as finance;

mod day;
mod exceptions;
mod fees;
mod import;
mod support;
