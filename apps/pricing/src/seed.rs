//! The demo products `shiftcover seed` publishes: "Food delivery — hourly" and "Private hire —
//! hourly". Their terms and their underwriter-signed rating test cases are data files in
//! `apps/pricing/products/` (`<code>.toml` and `<code>.cases.toml`), compiled in.

use crate::cases::{RatingCase, parse_rating_cases};
use crate::error::PricingError;
use crate::products::{
    create_draft_version, create_product, get_product_by_code, list_test_cases, publish_version,
    set_test_cases,
};
use crate::schema::{product_version_rules, product_versions, products};
use crate::version::{ProductVersion, VersionStatus, VersionTerms};
use accounts::Actor;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use shared::{Clock, SystemClock};

/// The data files of the demo products: (terms, test cases).
const FILES: [(&str, &str); 2] = [
    (
        include_str!("../products/food_delivery_hourly.toml"),
        include_str!("../products/food_delivery_hourly.cases.toml"),
    ),
    (
        include_str!("../products/private_hire_hourly.toml"),
        include_str!("../products/private_hire_hourly.cases.toml"),
    ),
];

/// A product as written in a data file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductDefinition {
    /// The product code.
    pub code: String,
    /// The product name.
    pub name: String,
    /// The terms of its version.
    pub terms: VersionTerms,
    /// Its rating test cases (from the companion `.cases.toml`).
    #[serde(skip)]
    pub cases: Vec<RatingCase>,
}

/// Parses a product definition file and its case file. Errors are internal: the files ship with
/// the code.
pub fn parse_product_definition(
    terms_toml: &str,
    cases_toml: &str,
) -> Result<ProductDefinition, PricingError> {
    let mut def: ProductDefinition = toml::from_str(terms_toml)
        .map_err(|e| anyhow::anyhow!("product definition does not parse: {e}"))?;
    let cases = parse_rating_cases(cases_toml)
        .map_err(|e| anyhow::anyhow!("cases of {} do not parse: {e}", def.code))?;
    if cases.product != def.code {
        return Err(
            anyhow::anyhow!("cases file is for {:?}, not {:?}", cases.product, def.code).into(),
        );
    }
    def.cases = cases.cases;
    Ok(def)
}

/// The demo products, parsed from their data files.
pub fn demo_products() -> Result<Vec<ProductDefinition>, PricingError> {
    FILES
        .iter()
        .map(|(terms, cases)| parse_product_definition(terms, cases))
        .collect()
}

/// Publishes the demo products, idempotently: a product whose published version already has the
/// same terms and test cases is left alone; otherwise (first run, or the data files changed) a
/// new version is created and published, retiring the old one. Returns the published versions.
pub async fn seed_demo_products(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<ProductVersion>, PricingError> {
    seed_demo_products_at(conn, &SystemClock).await
}

/// [`seed_demo_products`] with the publication dated by `clock` (tests that run on a fixed clock
/// seed with it, so that versions they publish later come after the seeded ones).
pub async fn seed_demo_products_at(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
) -> Result<Vec<ProductVersion>, PricingError> {
    let mut published = Vec::new();
    for def in demo_products()? {
        let version = conn
            .transaction::<_, PricingError, _>(async |conn| {
                // Concurrent seeds: the first creates the product, the others wait on its lock.
                let product = match get_product_by_code(conn, &def.code).await {
                    Ok(p) => p,
                    Err(PricingError::ProductNotFound) => {
                        match create_product(conn, clock, Actor::System, &def.code, &def.name).await
                        {
                            Ok(p) => p,
                            Err(PricingError::DuplicateProductCode) => {
                                get_product_by_code(conn, &def.code).await?
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                };
                products::table
                    .find(product.id)
                    .select(products::id)
                    .for_update()
                    .execute(conn)
                    .await?;
                let current = product_versions::table
                    .inner_join(product_version_rules::table)
                    .filter(product_versions::product_id.eq(product.id))
                    .filter(product_versions::status.eq(VersionStatus::Published.as_str()))
                    .select(product_versions::id)
                    .first::<crate::ids::ProductVersionId>(conn)
                    .await
                    .optional()?;
                if let Some(id) = current {
                    let version = crate::products::get_version(conn, id).await?;
                    if version.terms == def.terms && list_test_cases(conn, id).await? == def.cases {
                        return Ok(version);
                    }
                }
                let draft =
                    create_draft_version(conn, clock, Actor::System, product.id, &def.terms)
                        .await?;
                set_test_cases(conn, clock, Actor::System, draft.id, &def.cases).await?;
                publish_version(conn, clock, Actor::System, draft.id).await
            })
            .await?;
        published.push(version);
    }
    Ok(published)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::products::check_publishable;

    #[test]
    fn demo_products_are_publishable() {
        let products = demo_products().unwrap();
        assert_eq!(products.len(), 2);
        for p in products {
            assert!(!p.cases.is_empty());
            check_publishable(&p.terms, &p.cases)
                .unwrap_or_else(|e| panic!("{}: {:?}", p.code, e.user_error()));
        }
    }
}
