//! The kernel every ShiftCover app builds on: settings, money, typed ids, the clock,
//! error primitives, the database pool and migrations, the outbox, and the audit log.
//!
//! Invariants kept here:
//! - this crate depends on no other workspace crate;
//! - nothing in it knows about HTTP, GraphQL or the job runner: those live in `graphql` and `workers`.

pub mod audit;
pub mod batch;
pub mod client_addr;
pub mod clock;
pub mod core;
pub mod db;
pub mod demo;
pub mod error;
pub mod html;
pub mod ids;
pub mod jobs;
pub mod money;
pub mod outbox;
pub mod redis_conn;
pub mod schema;
pub mod secret;
pub mod settings;
pub mod sql;

pub use clock::{Clock, FixedClock, SystemClock};
pub use db::{DbConn, DbPool};
pub use error::{FieldError, InternalError};
pub use money::{Currency, Money};
pub use secret::Secret;
pub use settings::Settings;
