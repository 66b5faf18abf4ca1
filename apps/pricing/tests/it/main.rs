//! Database-backed tests of the pricing app, plus the property tests of session pricing. One test
//! binary; each database test gets its own database cloned from the migrated template.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Other crates see this package as `pricing` (workspace rename); read the tests the same way.
extern crate shiftcover_pricing as pricing;

mod products;
mod publish;
mod quotes;
mod rating_cases;
mod session_pricing;
mod support;
