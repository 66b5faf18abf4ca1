//! The schema: every app's queries and mutations merged, with the limits from settings.

use crate::accounts::admin::AdminMutation;
use crate::accounts::driver::DriverMutation;
use crate::accounts::query::AccountsQuery;
use crate::accounts::sign_in::SignInMutation;
use crate::cover::{CoverMutation, CoverQuery, CoverSubscription};
use crate::foundation::{FoundationMutation, FoundationQuery};
use async_graphql::{MergedObject, MergedSubscription, SDLExportOptions, Schema, SchemaBuilder};
use shared::settings::GraphqlSettings;

/// All queries.
#[derive(MergedObject, Default)]
pub struct Query(
    FoundationQuery,
    AccountsQuery,
    CoverQuery,
    crate::ops::OpsQuery,
    crate::payments::PaymentsQuery,
    crate::payments::ChargebacksQuery,
    crate::partners::PartnersQuery,
    crate::claims::ClaimsQuery,
    crate::finance::FinanceQuery,
    crate::finance::StatementsQuery,
    crate::finance::ExportsQuery,
);

/// All mutations.
#[derive(MergedObject, Default)]
pub struct Mutation(
    FoundationMutation,
    SignInMutation,
    DriverMutation,
    AdminMutation,
    CoverMutation,
    crate::ops::OpsMutation,
    crate::payments::PaymentsMutation,
    crate::payments::PaymentsAdjustMutation,
    crate::partners::PartnersMutation,
    crate::claims::ClaimsMutation,
    crate::finance::FinanceMutation,
    crate::finance::ExportsMutation,
);

/// All subscriptions (served over WebSocket at `/graphql/ws`).
#[derive(MergedSubscription, Default)]
pub struct Subscription(CoverSubscription);

/// The executable schema.
pub type ApiSchema = Schema<Query, Mutation, Subscription>;

/// A schema builder with the configured limits; callers add request-independent data.
pub fn build_schema(settings: &GraphqlSettings) -> SchemaBuilder<Query, Mutation, Subscription> {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(settings.max_depth)
    // The cost model of `crate::cost`, in place of async-graphql's, which multiplies a whole
    // connection (`pageInfo` included) by its page size and counts a field twice when two
    // fragments select it.
    .extension(crate::cost::CostLimit::new(settings.max_complexity))
    .override_output_type_description::<chrono::DateTime<chrono::Utc>>(
        crate::scalars::DATE_TIME_DESCRIPTION,
    )
    .override_output_type_description::<async_graphql::Json<serde_json::Value>>(
        crate::scalars::JSON_DESCRIPTION,
    )
    .limit_recursive_depth(32)
    .limit_directives(10)
    .extension(crate::nul::RefuseNul);
    if !settings.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder
}

/// The schema in SDL, as committed in `frontend-schema/schema.graphql`, with `@specifiedBy` on
/// the scalars that follow a published specification.
pub fn sdl() -> String {
    let options = SDLExportOptions::new().include_specified_by();
    let mut out = build_schema(&GraphqlSettings::default())
        .finish()
        .sdl_with_options(options);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}
