//! The `shiftcover` binary's commands: `migrate`, `serve`, `work`, `seed`, `schema`,
//! `staff`, `ledger`, `simulate-partner`.
//! Thin wiring over the apps, the `graphql` crate and the `workers` crate.

pub mod cli;
pub mod finance_tools;
pub mod seed;
pub mod simulate;
pub mod telemetry;
