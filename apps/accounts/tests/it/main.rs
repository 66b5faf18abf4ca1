//! Database- and Redis-backed tests of the accounts app. One test binary (faster to link than one
//! per file); each test gets its own database cloned from the migrated template.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Other crates see this package as `accounts` (workspace rename); read the tests the same way.
extern crate shiftcover_accounts as accounts;

mod batching;
mod gdpr;
mod login;
mod partners;
mod profile;
mod rate_limit;
mod staff;
mod support;
mod vehicles;
