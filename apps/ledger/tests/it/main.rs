//! Database-backed tests of the ledger. One test binary; each test gets its own database cloned
//! from the migrated template, on the real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Other crates see this package as `ledger` (workspace rename); read the tests the same way.
extern crate shiftcover_ledger as ledger;

mod concurrency;
mod database_rules;
mod history;
mod integrity;
mod posting;
mod reversal;
mod support;
