//! Database-backed tests of the partners app: real PostgreSQL (a database per test), a wiremock
//! server as the partner's webhook receiver, and a stand-in for the job runtime that runs the
//! real delivery handler. One test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod egress;
mod events;
mod links;
mod support;
mod webhooks;
