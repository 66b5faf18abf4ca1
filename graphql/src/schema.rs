//! The schema: every app's queries and mutations merged, with the limits from settings.

use crate::accounts::admin::AdminMutation;
use crate::accounts::driver::DriverMutation;
use crate::accounts::query::AccountsQuery;
use crate::accounts::sign_in::SignInMutation;
use crate::cover::CoverQuery;
use crate::foundation::{FoundationMutation, FoundationQuery};
use async_graphql::{EmptySubscription, MergedObject, Schema, SchemaBuilder};
use shared::settings::GraphqlSettings;

/// All queries.
#[derive(MergedObject, Default)]
pub struct Query(FoundationQuery, AccountsQuery, CoverQuery);

/// All mutations.
#[derive(MergedObject, Default)]
pub struct Mutation(
    FoundationMutation,
    SignInMutation,
    DriverMutation,
    AdminMutation,
);

/// The executable schema.
pub type ApiSchema = Schema<Query, Mutation, EmptySubscription>;

/// A schema builder with the configured limits; callers add request-independent data.
pub fn build_schema(
    settings: &GraphqlSettings,
) -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    let mut builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(settings.max_depth)
        .limit_complexity(settings.max_complexity)
        .limit_recursive_depth(32)
        .limit_directives(10);
    if !settings.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder
}

/// The schema in SDL, as committed in `frontend-schema/schema.graphql`.
pub fn sdl() -> String {
    let mut out = build_schema(&GraphqlSettings::default()).finish().sdl();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}
