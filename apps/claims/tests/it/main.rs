//! Database-backed tests of the claims app: real PostgreSQL (a database per test), sessions made
//! through the cover and partners apps' own functions, charges and refunds through payments.
//! One test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bordereau;
mod disputes;
mod lookup;
mod photos;
mod states;
mod support;
