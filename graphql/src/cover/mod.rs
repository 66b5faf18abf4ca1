//! Cover's part of the schema: the public `products` catalogue and `verifyCover(token)` roadside
//! check; and for the signed-in driver, quotes (`createQuote`), enrolment (`enrol`,
//! `cancelEnrolment`, `cancelEnrolmentPreview`, `Driver.enrolments`), cover sessions
//! (`startCover`, `endCover`, `Driver.coverSessions`, `Driver.activeSession`, the `CoverSession`
//! node with its charge and certificate) and the live `coverStatus` subscription.
//!
//! Invariants:
//! - a driver acts only on their own quotes, enrolments and sessions: another driver's id answers
//!   like an unknown one (`userErrors` in mutations, null in queries and `node`); ops see every
//!   session and enrolment through `node` and the driver edges;
//! - a session's end and the `ChargeSession` job that takes its charge commit in one transaction
//!   (the same for a session ended by cancelling its enrolment);
//! - cover events go to Redis only after the change that caused them has committed.

pub mod enrolments;
pub mod loaders;
pub mod quotes;
pub mod sessions;
pub mod subscription;

use crate::errors::{InternalExt, UserError, internal};
use crate::guard;
use crate::relay::to_global_id;
use accounts::{DriverId, Principal};
use async_graphql::{Context, Enum, ID, MergedObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use cover::CoverError;
use shared::core::Core;

pub use enrolments::{Enrolment, EnrolmentMutation};
pub use quotes::QuoteMutation;
pub use sessions::{CoverSession, SessionMutation};
pub use subscription::CoverSubscription;

/// Every cover mutation.
#[derive(MergedObject, Default)]
pub struct CoverMutation(QuoteMutation, EnrolmentMutation, SessionMutation);

/// The settings, pool, Redis and clock of the process.
pub(crate) fn core<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Core> {
    ctx.data_opt::<Core>()
        .ok_or_else(|| internal(ctx, anyhow::anyhow!("the schema was built without a Core")))
}

/// A database connection, or an internal error.
pub(crate) async fn conn(ctx: &Context<'_>) -> async_graphql::Result<shared::DbConn> {
    core(ctx)?
        .pool
        .get()
        .await
        .map_err(|e| internal(ctx, anyhow::anyhow!("database pool: {e}")))
}

/// A cover error as `userErrors`, or an internal error when the user cannot fix it.
pub(crate) fn cover_user_errors(
    ctx: &Context<'_>,
    err: CoverError,
) -> async_graphql::Result<Vec<UserError>> {
    match err.user_error() {
        Some(e) => Ok(vec![UserError::from(e)]),
        None => Err(internal(ctx, err)),
    }
}

/// One user error.
pub(crate) fn user_error(field: Option<&str>, code: &str, message: &str) -> Vec<UserError> {
    vec![UserError {
        field: field.map(str::to_owned),
        code: code.to_owned(),
        message: message.to_owned(),
    }]
}

/// The `userErrors` for an id argument that is not an id of the expected type.
pub(crate) fn bad_id(field: &str, code: &str) -> Vec<UserError> {
    user_error(Some(field), code, "Not found.")
}

/// Whether `principal` may see cover objects (enrolments, sessions) of `driver_id`: the driver
/// themself and ops, as for the driver.
pub(crate) fn may_view_cover_of(principal: &Principal, driver_id: DriverId) -> bool {
    guard::may_view_driver(principal, driver_id)
}

/// Publishes committed cover events (the engine's door, shared by every resolver).
pub(crate) use cover::engine::publish as publish_events;

/// The answer of a proof-of-cover check.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoverCheckStatus {
    /// The vehicle is covered now.
    Covered,
    /// The token proves nothing: forged, damaged, or for no session of ours.
    NotCovered,
    /// The token is genuine but its cover is over.
    Expired,
}

/// What a proof-of-cover check found.
#[derive(SimpleObject, Debug, Clone)]
pub struct CoverCheck {
    /// The answer.
    pub status: CoverCheckStatus,
    /// Why, when not covered (e.g. `bad_signature`, `session_ended`).
    pub reason: Option<String>,
    /// The certificate number (only from a genuine token).
    pub certificate_number: Option<String>,
    /// The registration (only from a genuine token).
    pub registration: Option<String>,
    /// When cover started.
    pub valid_from: Option<DateTime<Utc>>,
    /// When cover ended, or ends at the latest.
    pub valid_until: Option<DateTime<Utc>>,
}

impl From<cover::CoverCheck> for CoverCheck {
    fn from(c: cover::CoverCheck) -> Self {
        Self {
            status: match c.status {
                cover::CoverStatus::Covered => CoverCheckStatus::Covered,
                cover::CoverStatus::NotCovered => CoverCheckStatus::NotCovered,
                cover::CoverStatus::Expired => CoverCheckStatus::Expired,
            },
            reason: c.reason.map(str::to_owned),
            certificate_number: c.certificate_number,
            registration: c.registration,
            valid_from: c.valid_from,
            valid_until: c.valid_until,
        }
    }
}

/// A cover product on sale (one with a published version).
#[derive(SimpleObject, Debug, Clone)]
pub struct Product {
    /// The product's global id (pass it to quotes and enrolment).
    pub id: ID,
    /// A stable machine name, e.g. `food_delivery_hourly`.
    pub code: String,
    /// The name shown to drivers.
    pub name: String,
    /// The number of the version new quotes are rated on.
    pub version_number: i32,
}

/// Every cover query.
#[derive(MergedObject, Default)]
pub struct CoverQuery(CatalogueQuery, enrolments::EnrolmentQuery);

/// The public catalogue and roadside check.
#[derive(Default)]
pub struct CatalogueQuery;

#[Object]
impl CatalogueQuery {
    /// The products on sale, by name. Public: the catalogue is shown before sign-in.
    async fn products(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Product>> {
        let core = ctx.data::<Core>()?;
        let mut conn = core.pool.get().await.internal(ctx)?;
        let summaries = pricing::list_products(&mut conn).await.internal(ctx)?;
        Ok(summaries
            .into_iter()
            .filter_map(|s| {
                Some(Product {
                    id: to_global_id("Product", &s.product.id),
                    code: s.product.code,
                    name: s.product.name,
                    version_number: s.published_version_number?,
                })
            })
            .collect())
    }

    /// Checks a proof-of-cover token (from a certificate's QR code). Public: anyone stopping a
    /// vehicle may ask.
    async fn verify_cover(
        &self,
        ctx: &Context<'_>,
        token: String,
    ) -> async_graphql::Result<CoverCheck> {
        let core = ctx.data::<Core>()?;
        let key = cover::ProofKey::from_settings(&core.settings.cover)
            .internal(ctx)?
            .public_key();
        let mut conn = core.pool.get().await.internal(ctx)?;
        let check = cover::cover_status(&mut conn, core.clock.as_ref(), &key, &token)
            .await
            .internal(ctx)?;
        Ok(check.into())
    }
}
