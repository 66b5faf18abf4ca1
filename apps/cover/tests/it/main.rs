//! Database- and Redis-backed tests of the cover app. One test binary; each test gets its own
//! database cloned from the migrated template.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Other crates see this package as `cover` (workspace rename); read the tests the same way.
extern crate shiftcover_cover as cover;

mod certificates;
mod concurrency;
mod engine;
mod enrolment;
mod flow;
mod sessions;
mod support;
