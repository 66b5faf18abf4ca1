//! The `shiftcover` binary's commands: `migrate`, `serve`, `work`, `seed`, `schema`.
//! Thin wiring over the apps, the `graphql` crate and the `workers` crate.

pub mod cli;
pub mod seed;
pub mod telemetry;
