//! End-to-end tests: the real server on port 0, the real job runtime, real PostgreSQL and Redis.
//! All integration tests build into this one binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed assumption in a test should panic

mod admin;
mod api;
mod authorization;
mod claims_flow;
mod cli;
mod cover_flow;
mod dev_inbox;
mod finance_reports;
mod job_faults;
mod jobs;
mod operations;
mod ops_api;
mod partners_flow;
mod payments_flow;
mod readiness;
mod schema_drift;
mod seed_and_staff_cli;
mod sentry_reporting;
mod sign_in;
mod support;
mod webhooks;
