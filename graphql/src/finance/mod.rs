//! The finance part of the schema, the finance CSV downloads and the drivers' weekly statements.
//!
//! Every field requires the finance role (admin holds every role): reconciliation summaries and
//! items, the exceptions queue (note, resolve; audited by `finance`), the trial balance, IPT per
//! month and the premium bordereau. Report errors a user can act on (a period in the future, a
//! malformed month) carry their code in `extensions.code`; mutations answer them in `userErrors`.

pub mod csv;
pub mod exports;
pub mod mutation;
pub mod query;
pub mod statements;

pub use exports::{ExportsMutation, ExportsQuery};
pub use mutation::FinanceMutation;
pub use query::FinanceQuery;
pub use statements::StatementsQuery;

use crate::errors::{coded, internal};
use async_graphql::Context;
use finance::FinanceError;

/// A finance error as a GraphQL error: coded when the user can act on it, internal otherwise.
pub(crate) fn report_error(ctx: &Context<'_>, e: FinanceError) -> async_graphql::Error {
    match e.user_error() {
        Some(u) => coded(u.code, u.message),
        None => internal(ctx, e),
    }
}
