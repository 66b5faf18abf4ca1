//! Cover's part of the schema. For now: the public `products` catalogue and the public
//! `verifyCover(token)` roadside check.

use crate::errors::InternalExt;
use crate::relay::to_global_id;
use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use shared::core::Core;

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

/// Cover queries.
#[derive(Default)]
pub struct CoverQuery;

#[Object]
impl CoverQuery {
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
