//! ShiftCover's API: the GraphQL schema (types wrapping the apps' types, guards, loaders) and
//! the actix-web server that serves it with health, readiness and metrics endpoints.
//!
//! Conventions (DESIGN §8): Relay `Node` with opaque global ids; mutations take one `input` and
//! return a payload with `userErrors { field code message }` for anything the user can fix;
//! every other error carries `extensions.code` and never internals.

pub mod accounts;
pub mod admin;
pub mod certificates;
pub mod claims;
pub mod context;
pub mod cost;
pub mod cover;
pub mod dev_inbox;
pub mod errors;
pub mod finance;
pub mod foundation;
pub mod guard;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod money;
pub mod nul;
pub mod ops;
pub mod partners;
pub mod payments;
pub mod relay;
pub mod scalars;
pub mod schema;
pub mod viewer;
pub mod webhooks;

pub use http::{RunningServer, start_server};
pub use schema::{ApiSchema, build_schema, sdl};
