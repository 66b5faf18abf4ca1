//! The ops (staff) part of the schema: background jobs (queue depths, the job list with payloads,
//! retrying and discarding dead letters) and product versions (drafting, test cases, checking,
//! publishing and retiring), the back office's search (any staff role), and actions on a
//! driver's account (suspend or reactivate an enrolment, sign out everywhere, the messages we
//! sent them with a resend, their audit trail). Every other field
//! requires the ops role (admin holds every role); every change is audited by the function that
//! makes it, in the same transaction.

pub mod activity;
pub mod drivers;
pub mod jobs;
pub mod products;
pub mod search;

pub use jobs::{Job, JobsMutation, JobsQuery};
pub use products::{ProductVersionsMutation, ProductVersionsQuery};

use async_graphql::MergedObject;

/// The ops queries.
#[derive(MergedObject, Default)]
pub struct OpsQuery(
    JobsQuery,
    ProductVersionsQuery,
    search::SearchQuery,
    activity::ActivityQuery,
);

/// The ops mutations.
#[derive(MergedObject, Default)]
pub struct OpsMutation(
    JobsMutation,
    ProductVersionsMutation,
    drivers::DriverOpsMutation,
    activity::ActivityMutation,
);

/// A user error on `field` with `code`.
pub(crate) fn user_error(
    field: &str,
    code: &str,
    message: impl Into<String>,
) -> crate::errors::UserError {
    crate::errors::UserError {
        field: Some(field.to_owned()),
        code: code.to_owned(),
        message: message.into(),
    }
}
