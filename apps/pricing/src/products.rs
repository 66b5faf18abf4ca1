//! Products and their versions in the database: creating drafts, editing them, attaching their
//! rating test cases, publishing and retiring.
//!
//! Invariants:
//! - a version's terms are validated ([`VersionTerms::validate`]) before every write, so a stored
//!   rate table always rates;
//! - publication runs the price sanity checks ([`check_prices`]) and every test case of the
//!   version, and refuses the version if any fails; it retires the previously published version
//!   in the same transaction, so a product has at most one published version (also a unique index);
//! - published and retired versions, their rules and their test cases never change (database
//!   triggers refuse it), except the single step published → retired;
//! - every change is written to the audit log in the transaction that makes it.

use crate::cases::{RatingCase, check_cases, run_cases};
use crate::error::PricingError;
use crate::ids::{ProductId, ProductVersionId};
use crate::rate_table::RateTable;
use crate::rating::{MAX_SANE_HOURLY_MINOR, MIN_SANE_HOURLY_MINOR};
use crate::schema::{product_version_rules, product_versions, products, rating_test_cases};
use crate::version::{
    Product, ProductSummary, ProductVersion, VersionRules, VersionStatus, VersionTerms,
};
use accounts::{Actor, VehicleType};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::audit::{ActorType, AuditEntry};
use shared::{Clock, FieldError, Money};

/// The constraint name the immutability triggers raise with.
const IMMUTABLE: &str = "product_versions_immutable";

// ---------------------------------------------------------------------------------------------
// Rows

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = products)]
struct ProductRow {
    id: ProductId,
    code: String,
    name: String,
    created_at: DateTime<Utc>,
}

impl From<ProductRow> for Product {
    fn from(r: ProductRow) -> Self {
        Product {
            id: r.id,
            code: r.code,
            name: r.name,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = product_versions)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct VersionRow {
    id: ProductVersionId,
    product_id: ProductId,
    version_number: i32,
    status: String,
    currency: String,
    wording_version: String,
    rate_table: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    published_at: Option<DateTime<Utc>>,
    retired_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = product_version_rules)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct RulesRow {
    product_version_id: ProductVersionId,
    minimum_age: i32,
    eligible_vehicle_types: Vec<String>,
    minimum_charge_minutes: i32,
    billing_increment_minutes: i32,
    gap_rule_minutes: i32,
    tail_cover_minutes: i32,
    daily_cap_minor: i64,
    commission_bp: i32,
    ipt_bp: i32,
}

fn to_i32(v: u32, what: &str) -> Result<i32, PricingError> {
    i32::try_from(v).map_err(|_| anyhow::anyhow!("{what} {v} out of range").into())
}

fn to_u32(v: i32, what: &str) -> Result<u32, PricingError> {
    u32::try_from(v).map_err(|_| anyhow::anyhow!("stored {what} {v} is negative").into())
}

impl RulesRow {
    fn new(id: ProductVersionId, r: &VersionRules) -> Result<Self, PricingError> {
        Ok(RulesRow {
            product_version_id: id,
            minimum_age: to_i32(r.minimum_age, "minimum age")?,
            eligible_vehicle_types: r
                .eligible_vehicle_types
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            minimum_charge_minutes: to_i32(r.minimum_charge_minutes, "minimum charge")?,
            billing_increment_minutes: to_i32(r.billing_increment_minutes, "billing increment")?,
            gap_rule_minutes: to_i32(r.gap_rule_minutes, "gap rule")?,
            tail_cover_minutes: to_i32(r.tail_cover_minutes, "tail cover")?,
            daily_cap_minor: r.daily_cap_minor,
            commission_bp: to_i32(r.commission_bp, "commission")?,
            ipt_bp: to_i32(r.ipt_bp, "ipt")?,
        })
    }

    fn rules(&self) -> Result<VersionRules, PricingError> {
        let eligible = self
            .eligible_vehicle_types
            .iter()
            .map(|s| {
                s.parse::<VehicleType>()
                    .map_err(|_| anyhow::anyhow!("stored vehicle type {s:?} is unknown"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(VersionRules {
            minimum_age: to_u32(self.minimum_age, "minimum age")?,
            eligible_vehicle_types: eligible,
            minimum_charge_minutes: to_u32(self.minimum_charge_minutes, "minimum charge")?,
            billing_increment_minutes: to_u32(self.billing_increment_minutes, "increment")?,
            gap_rule_minutes: to_u32(self.gap_rule_minutes, "gap rule")?,
            tail_cover_minutes: to_u32(self.tail_cover_minutes, "tail cover")?,
            daily_cap_minor: self.daily_cap_minor,
            commission_bp: to_u32(self.commission_bp, "commission")?,
            ipt_bp: to_u32(self.ipt_bp, "ipt")?,
        })
    }
}

pub(crate) fn version_from_rows(
    v: VersionRow,
    r: RulesRow,
) -> Result<ProductVersion, PricingError> {
    let rate_table: RateTable = serde_json::from_value(v.rate_table)
        .map_err(|e| anyhow::anyhow!("version {} has an unreadable rate table: {e}", v.id))?;
    Ok(ProductVersion {
        id: v.id,
        product_id: v.product_id,
        version_number: v.version_number,
        status: v.status.parse()?,
        terms: VersionTerms {
            currency: v.currency.parse().map_err(anyhow::Error::new)?,
            wording_version: v.wording_version,
            rules: r.rules()?,
            rate_table,
        },
        created_at: v.created_at,
        updated_at: v.updated_at,
        published_at: v.published_at,
        retired_at: v.retired_at,
    })
}

// ---------------------------------------------------------------------------------------------
// Audit

fn audit_entry<'a>(
    actor: Actor,
    action: &'a str,
    subject_type: &'a str,
    subject_id: String,
    details: serde_json::Value,
) -> AuditEntry<'a> {
    let (actor_type, actor_id) = match actor {
        Actor::Driver(id) => (ActorType::Driver, Some(id.to_string())),
        Actor::Staff(id) => (ActorType::Staff, Some(id.to_string())),
        Actor::Partner(id) => (ActorType::Partner, Some(id.to_string())),
        Actor::System => (ActorType::System, None),
    };
    AuditEntry {
        actor_type,
        actor_id,
        action,
        subject_type,
        subject_id,
        reason: None,
        details,
    }
}

async fn audit_version(
    conn: &mut AsyncPgConnection,
    actor: Actor,
    action: &str,
    version: &ProductVersion,
    details: serde_json::Value,
) -> Result<(), PricingError> {
    audit_version_because(conn, actor, action, version, None, details).await
}

async fn audit_version_because(
    conn: &mut AsyncPgConnection,
    actor: Actor,
    action: &str,
    version: &ProductVersion,
    reason: Option<&str>,
    mut details: serde_json::Value,
) -> Result<(), PricingError> {
    if let Some(map) = details.as_object_mut() {
        map.insert("product_id".into(), version.product_id.to_string().into());
        map.insert("version_number".into(), version.version_number.into());
    }
    let mut entry = audit_entry(
        actor,
        action,
        "product_version",
        version.id.to_string(),
        details,
    );
    entry.reason = reason;
    shared::audit::record(conn, &entry).await?;
    Ok(())
}

fn map_immutable(e: diesel::result::Error) -> PricingError {
    match &e {
        diesel::result::Error::DatabaseError(_, info)
            if info.constraint_name() == Some(IMMUTABLE) =>
        {
            PricingError::VersionNotDraft
        }
        _ => e.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Products

/// Checks a product code: 3 to 50 characters, lowercase letters, digits and `_`, starting with a
/// letter. Errors: `INVALID_PRODUCT_CODE` (field `code`).
pub fn check_product_code(code: &str) -> Result<(), PricingError> {
    let ok = (3..=50).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_lowercase())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PricingError::Invalid(FieldError::field(
            "code",
            "INVALID_PRODUCT_CODE",
            "A product code is 3 to 50 lowercase letters, digits and _, starting with a letter.",
        )))
    }
}

/// Creates a product (with no version yet).
///
/// Errors: `INVALID_PRODUCT_CODE` (`code`), `INVALID_PRODUCT_NAME` (`name`: 1 to 100 characters),
/// `DUPLICATE_PRODUCT_CODE` (`code`).
pub async fn create_product(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    code: &str,
    name: &str,
) -> Result<Product, PricingError> {
    check_product_code(code)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(PricingError::Invalid(FieldError::field(
            "name",
            "INVALID_PRODUCT_NAME",
            "A product name is 1 to 100 characters.",
        )));
    }
    let row = ProductRow {
        id: ProductId::new(),
        code: code.to_owned(),
        name: name.to_owned(),
        created_at: clock.now(),
    };
    conn.transaction::<_, PricingError, _>(async |conn| {
        diesel::insert_into(products::table)
            .values((
                products::id.eq(row.id),
                products::code.eq(&row.code),
                products::name.eq(&row.name),
                products::created_at.eq(row.created_at),
            ))
            .execute(conn)
            .await
            .map_err(|e| {
                if shared::error::is_unique_violation(&e, Some("products_code_unique")) {
                    PricingError::DuplicateProductCode
                } else {
                    e.into()
                }
            })?;
        shared::audit::record(
            conn,
            &audit_entry(
                actor,
                "product.created",
                "product",
                row.id.to_string(),
                serde_json::json!({ "code": row.code, "name": row.name }),
            ),
        )
        .await?;
        Ok(Product::from(row.clone()))
    })
    .await
}

/// A product by id. Errors: `PRODUCT_NOT_FOUND`.
pub async fn get_product(
    conn: &mut AsyncPgConnection,
    product_id: ProductId,
) -> Result<Product, PricingError> {
    products::table
        .find(product_id)
        .select(ProductRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(Product::from)
        .ok_or(PricingError::ProductNotFound)
}

/// A product by its code. Errors: `PRODUCT_NOT_FOUND`.
pub async fn get_product_by_code(
    conn: &mut AsyncPgConnection,
    code: &str,
) -> Result<Product, PricingError> {
    products::table
        .filter(products::code.eq(code))
        .select(ProductRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(Product::from)
        .ok_or(PricingError::ProductNotFound)
}

/// Every product, by name, with its published version if any.
pub async fn list_products(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<ProductSummary>, PricingError> {
    let rows: Vec<(ProductRow, Option<(ProductVersionId, i32)>)> = products::table
        .left_join(
            product_versions::table.on(product_versions::product_id
                .eq(products::id)
                .and(product_versions::status.eq(VersionStatus::Published.as_str()))),
        )
        .order((products::name.asc(), products::id.asc()))
        .select((
            ProductRow::as_select(),
            (product_versions::id, product_versions::version_number).nullable(),
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(p, v)| ProductSummary {
            product: p.into(),
            published_version_id: v.map(|v| v.0),
            published_version_number: v.map(|v| v.1),
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Versions

/// A version by id, whatever its status. Errors: `VERSION_NOT_FOUND`.
pub async fn get_version(
    conn: &mut AsyncPgConnection,
    version_id: ProductVersionId,
) -> Result<ProductVersion, PricingError> {
    let (v, r) = product_versions::table
        .inner_join(product_version_rules::table)
        .filter(product_versions::id.eq(version_id))
        .select((VersionRow::as_select(), RulesRow::as_select()))
        .first::<(VersionRow, RulesRow)>(conn)
        .await
        .optional()?
        .ok_or(PricingError::VersionNotFound)?;
    version_from_rows(v, r)
}

/// Several versions at once (for DataLoaders); unknown ids are left out.
pub async fn get_versions(
    conn: &mut AsyncPgConnection,
    version_ids: &[ProductVersionId],
) -> Result<Vec<ProductVersion>, PricingError> {
    product_versions::table
        .inner_join(product_version_rules::table)
        .filter(product_versions::id.eq_any(version_ids))
        .select((VersionRow::as_select(), RulesRow::as_select()))
        .load::<(VersionRow, RulesRow)>(conn)
        .await?
        .into_iter()
        .map(|(v, r)| version_from_rows(v, r))
        .collect()
}

/// A product's versions, newest first. Errors: `PRODUCT_NOT_FOUND`.
pub async fn list_versions(
    conn: &mut AsyncPgConnection,
    product_id: ProductId,
) -> Result<Vec<ProductVersion>, PricingError> {
    let rows = product_versions::table
        .inner_join(product_version_rules::table)
        .filter(product_versions::product_id.eq(product_id))
        .order(product_versions::version_number.desc())
        .select((VersionRow::as_select(), RulesRow::as_select()))
        .load::<(VersionRow, RulesRow)>(conn)
        .await?;
    if rows.is_empty() {
        get_product(conn, product_id).await?;
    }
    rows.into_iter()
        .map(|(v, r)| version_from_rows(v, r))
        .collect()
}

/// The version new quotes of a product are rated on.
///
/// Errors: `PRODUCT_NOT_FOUND`; `PRODUCT_NOT_AVAILABLE` when the product has no published version.
pub async fn get_published(
    conn: &mut AsyncPgConnection,
    product_id: ProductId,
) -> Result<ProductVersion, PricingError> {
    let row = product_versions::table
        .inner_join(product_version_rules::table)
        .filter(product_versions::product_id.eq(product_id))
        .filter(product_versions::status.eq(VersionStatus::Published.as_str()))
        .select((VersionRow::as_select(), RulesRow::as_select()))
        .first::<(VersionRow, RulesRow)>(conn)
        .await
        .optional()?;
    match row {
        Some((v, r)) => version_from_rows(v, r),
        None => {
            get_product(conn, product_id).await?;
            Err(PricingError::ProductNotAvailable)
        }
    }
}

/// Locks a version row and returns its product and status. Errors: `VERSION_NOT_FOUND`.
async fn lock_version(
    conn: &mut AsyncPgConnection,
    version_id: ProductVersionId,
) -> Result<(ProductId, VersionStatus), PricingError> {
    let (product_id, status): (ProductId, String) = product_versions::table
        .find(version_id)
        .select((product_versions::product_id, product_versions::status))
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(PricingError::VersionNotFound)?;
    Ok((product_id, status.parse()?))
}

/// Locks a product row (serialising version numbering and publication). Errors: `PRODUCT_NOT_FOUND`.
async fn lock_product(
    conn: &mut AsyncPgConnection,
    product_id: ProductId,
) -> Result<(), PricingError> {
    products::table
        .find(product_id)
        .select(products::id)
        .for_update()
        .first::<ProductId>(conn)
        .await
        .optional()?
        .ok_or(PricingError::ProductNotFound)?;
    Ok(())
}

fn rate_table_json(terms: &VersionTerms) -> Result<serde_json::Value, PricingError> {
    Ok(serde_json::to_value(&terms.rate_table).map_err(anyhow::Error::new)?)
}

/// Creates a draft version of a product with the given terms and no test cases. Its number is one
/// more than the product's highest.
///
/// Errors: `PRODUCT_NOT_FOUND`, and the validation codes of [`VersionTerms::validate`].
pub async fn create_draft_version(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    product_id: ProductId,
    terms: &VersionTerms,
) -> Result<ProductVersion, PricingError> {
    terms.validate().map_err(PricingError::Invalid)?;
    let now = clock.now();
    let id = ProductVersionId::new();
    let rules = RulesRow::new(id, &terms.rules)?;
    let rate_table = rate_table_json(terms)?;
    conn.transaction::<_, PricingError, _>(async |conn| {
        lock_product(conn, product_id).await?;
        let highest: Option<i32> = product_versions::table
            .filter(product_versions::product_id.eq(product_id))
            .select(diesel::dsl::max(product_versions::version_number))
            .first(conn)
            .await?;
        let row = VersionRow {
            id,
            product_id,
            version_number: highest.unwrap_or(0) + 1,
            status: VersionStatus::Draft.as_str().to_owned(),
            currency: terms.currency.code().to_owned(),
            wording_version: terms.wording_version.clone(),
            rate_table,
            created_at: now,
            updated_at: now,
            published_at: None,
            retired_at: None,
        };
        diesel::insert_into(product_versions::table)
            .values(&row)
            .execute(conn)
            .await?;
        diesel::insert_into(product_version_rules::table)
            .values(&rules)
            .execute(conn)
            .await?;
        let version = version_from_rows(row, rules)?;
        audit_version(
            conn,
            actor,
            "product_version.draft_created",
            &version,
            serde_json::json!({}),
        )
        .await?;
        Ok(version)
    })
    .await
}

/// Starts a new draft of a product from one of its versions: a copy of `from`'s terms and test
/// cases (by default the published version, else the newest), numbered after the highest. One
/// transaction, audited (`product_version.draft_created`, then `product_version.draft_copied`
/// naming the version copied).
///
/// Errors: `PRODUCT_NOT_FOUND`; `VERSION_NOT_FOUND` (field `fromVersionId`) when `from` is not a
/// version of this product; `NO_VERSION_TO_COPY` (field `fromVersionId`) when the product has no
/// version at all (create the first with [`create_draft_version`] and its terms).
pub async fn create_draft_from(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    product_id: ProductId,
    from: Option<ProductVersionId>,
) -> Result<(ProductVersion, Vec<RatingCase>), PricingError> {
    conn.transaction::<_, PricingError, _>(async |conn| {
        lock_product(conn, product_id).await?;
        let source = match from {
            Some(id) => match get_version(conn, id).await {
                Ok(v) if v.product_id == product_id => v,
                Ok(_) | Err(PricingError::VersionNotFound) => {
                    return Err(PricingError::Invalid(FieldError::field(
                        "fromVersionId",
                        "VERSION_NOT_FOUND",
                        "There is no such version of this product.",
                    )));
                }
                Err(e) => return Err(e),
            },
            None => {
                let versions = list_versions(conn, product_id).await?;
                let published = versions
                    .iter()
                    .position(|v| v.status == VersionStatus::Published);
                match published.or(if versions.is_empty() { None } else { Some(0) }) {
                    Some(i) => versions[i].clone(),
                    None => {
                        return Err(PricingError::Invalid(FieldError::field(
                            "fromVersionId",
                            "NO_VERSION_TO_COPY",
                            "The product has no version to start a draft from.",
                        )));
                    }
                }
            }
        };
        let cases = list_test_cases(conn, source.id).await?;
        let draft = create_draft_version(conn, clock, actor, product_id, &source.terms).await?;
        if !cases.is_empty() {
            set_test_cases(conn, clock, actor, draft.id, &cases).await?;
        }
        audit_version(
            conn,
            actor,
            "product_version.draft_copied",
            &draft,
            serde_json::json!({
                "from_version_id": source.id.to_string(),
                "from_version_number": source.version_number,
                "test_cases": cases.len(),
            }),
        )
        .await?;
        Ok((draft, cases))
    })
    .await
}

/// Parses a version's terms from a TOML document in the format of the product files
/// (`products/<code>.toml`): either a whole file's `[terms]` table (its `code` and `name` are
/// ignored) or the terms alone (`wording_version`, `[rules]`, `[rate_table…]`). The terms are
/// not validated here; [`create_draft_version`] and [`update_draft`] do that.
///
/// Errors: `INVALID_TERMS_DOCUMENT` (field `terms`) with the parser's message.
pub fn parse_terms_document(text: &str) -> Result<VersionTerms, PricingError> {
    let bad = |message: String| {
        PricingError::Invalid(FieldError::field(
            "terms",
            "INVALID_TERMS_DOCUMENT",
            message,
        ))
    };
    let mut table: toml::Table = toml::from_str(text)
        .map_err(|e| bad(format!("The terms do not parse: {}", e.message())))?;
    let value = match table.remove("terms") {
        Some(terms) => terms,
        None => toml::Value::Table(table),
    };
    value
        .try_into::<VersionTerms>()
        .map_err(|e| bad(format!("The terms do not fit: {}", e.message())))
}

/// Replaces a draft's terms (its test cases are kept).
///
/// Errors: `VERSION_NOT_FOUND`, `VERSION_NOT_DRAFT`, and the validation codes of
/// [`VersionTerms::validate`].
pub async fn update_draft(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    version_id: ProductVersionId,
    terms: &VersionTerms,
) -> Result<ProductVersion, PricingError> {
    terms.validate().map_err(PricingError::Invalid)?;
    let now = clock.now();
    let rules = RulesRow::new(version_id, &terms.rules)?;
    let rate_table = rate_table_json(terms)?;
    conn.transaction::<_, PricingError, _>(async |conn| {
        let (_, status) = lock_version(conn, version_id).await?;
        if status != VersionStatus::Draft {
            return Err(PricingError::VersionNotDraft);
        }
        let row: VersionRow = diesel::update(product_versions::table.find(version_id))
            .set((
                product_versions::currency.eq(terms.currency.code()),
                product_versions::wording_version.eq(&terms.wording_version),
                product_versions::rate_table.eq(&rate_table),
                product_versions::updated_at.eq(now),
            ))
            .returning(VersionRow::as_returning())
            .get_result(conn)
            .await
            .map_err(map_immutable)?;
        let rules: RulesRow = diesel::update(product_version_rules::table.find(version_id))
            .set(&rules)
            .returning(RulesRow::as_returning())
            .get_result(conn)
            .await
            .map_err(map_immutable)?;
        let version = version_from_rows(row, rules)?;
        audit_version(
            conn,
            actor,
            "product_version.draft_updated",
            &version,
            serde_json::json!({}),
        )
        .await?;
        Ok(version)
    })
    .await
}

/// Replaces a draft's rating test cases with `cases`, in order.
///
/// Errors: `VERSION_NOT_FOUND`, `VERSION_NOT_DRAFT`, `INVALID_TEST_CASES` (see
/// [`check_cases`]).
pub async fn set_test_cases(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    version_id: ProductVersionId,
    cases: &[RatingCase],
) -> Result<(), PricingError> {
    check_cases(cases).map_err(PricingError::Invalid)?;
    let rows = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let position = i32::try_from(i).map_err(anyhow::Error::new)?;
            let data = serde_json::to_value(c).map_err(anyhow::Error::new)?;
            Ok((
                rating_test_cases::product_version_id.eq(version_id),
                rating_test_cases::position.eq(position),
                rating_test_cases::name.eq(c.name.clone()),
                rating_test_cases::case_data.eq(data),
            ))
        })
        .collect::<Result<Vec<_>, PricingError>>()?;
    let now = clock.now();
    conn.transaction::<_, PricingError, _>(async |conn| {
        let (_, status) = lock_version(conn, version_id).await?;
        if status != VersionStatus::Draft {
            return Err(PricingError::VersionNotDraft);
        }
        diesel::delete(
            rating_test_cases::table.filter(rating_test_cases::product_version_id.eq(version_id)),
        )
        .execute(conn)
        .await
        .map_err(map_immutable)?;
        if !rows.is_empty() {
            diesel::insert_into(rating_test_cases::table)
                .values(&rows)
                .execute(conn)
                .await
                .map_err(map_immutable)?;
        }
        diesel::update(product_versions::table.find(version_id))
            .set(product_versions::updated_at.eq(now))
            .execute(conn)
            .await
            .map_err(map_immutable)?;
        shared::audit::record(
            conn,
            &audit_entry(
                actor,
                "product_version.test_cases_set",
                "product_version",
                version_id.to_string(),
                serde_json::json!({ "cases": cases.len() }),
            ),
        )
        .await?;
        Ok(())
    })
    .await
}

/// A version's rating test cases, in order. Errors: `VERSION_NOT_FOUND`.
pub async fn list_test_cases(
    conn: &mut AsyncPgConnection,
    version_id: ProductVersionId,
) -> Result<Vec<RatingCase>, PricingError> {
    let rows: Vec<serde_json::Value> = rating_test_cases::table
        .filter(rating_test_cases::product_version_id.eq(version_id))
        .order(rating_test_cases::position.asc())
        .select(rating_test_cases::case_data)
        .load(conn)
        .await?;
    if rows.is_empty() {
        // Tell "no cases" from "no version".
        get_version(conn, version_id).await?;
    }
    rows.into_iter()
        .map(|v| {
            serde_json::from_value(v)
                .map_err(|e| anyhow::anyhow!("stored test case does not parse: {e}").into())
        })
        .collect()
}

/// The rating test cases of several versions at once, in order, by version (one query; versions
/// without cases, or unknown, are left out).
pub async fn list_test_cases_of(
    conn: &mut AsyncPgConnection,
    version_ids: &[ProductVersionId],
) -> Result<std::collections::HashMap<ProductVersionId, Vec<RatingCase>>, PricingError> {
    let rows: Vec<(ProductVersionId, serde_json::Value)> = rating_test_cases::table
        .filter(rating_test_cases::product_version_id.eq_any(version_ids))
        .order((
            rating_test_cases::product_version_id.asc(),
            rating_test_cases::position.asc(),
        ))
        .select((
            rating_test_cases::product_version_id,
            rating_test_cases::case_data,
        ))
        .load(conn)
        .await?;
    let mut out: std::collections::HashMap<ProductVersionId, Vec<RatingCase>> =
        std::collections::HashMap::new();
    for (id, data) in rows {
        let case: RatingCase = serde_json::from_value(data)
            .map_err(|e| anyhow::anyhow!("stored test case does not parse: {e}"))?;
        out.entry(id).or_default().push(case);
    }
    Ok(out)
}

/// The price sanity checks publication runs: across every combination of factors and every
/// eligible vehicle type, the hourly rate must be positive and between
/// [`MIN_SANE_HOURLY_MINOR`] and [`MAX_SANE_HOURLY_MINOR`].
///
/// Errors: `PRICE_NOT_POSITIVE`, `PRICE_TOO_LOW`, `PRICE_TOO_HIGH` (field `rateTable`).
pub fn check_prices(terms: &VersionTerms) -> Result<(), PricingError> {
    let money = |minor| Money {
        minor,
        currency: terms.currency,
    };
    for range in terms.rate_range() {
        let vt = range.vehicle_type;
        let (Some(low), Some(high)) = (range.lowest_minor, range.highest_minor) else {
            return Err(PricingError::PriceOutOfBounds {
                code: "PRICE_TOO_HIGH",
                message: format!("The rates for a {vt} are too large to compute."),
            });
        };
        if low <= 0 {
            return Err(PricingError::PriceOutOfBounds {
                code: "PRICE_NOT_POSITIVE",
                message: format!(
                    "The cheapest combination for a {vt} prices at {}/hour; every price must be above zero.",
                    money(low)
                ),
            });
        }
        if low < MIN_SANE_HOURLY_MINOR {
            return Err(PricingError::PriceOutOfBounds {
                code: "PRICE_TOO_LOW",
                message: format!(
                    "The cheapest combination for a {vt} prices at {}/hour, below the floor of {}/hour.",
                    money(low),
                    money(MIN_SANE_HOURLY_MINOR)
                ),
            });
        }
        if high > MAX_SANE_HOURLY_MINOR {
            return Err(PricingError::PriceOutOfBounds {
                code: "PRICE_TOO_HIGH",
                message: format!(
                    "The dearest combination for a {vt} prices at {}/hour, above the ceiling of {}/hour.",
                    money(high),
                    money(MAX_SANE_HOURLY_MINOR)
                ),
            });
        }
    }
    Ok(())
}

/// Everything publication checks, without the database: valid terms, sane prices, at least one
/// test case, every case passing.
///
/// Errors: the validation codes, `PRICE_*`, `NO_TEST_CASES`, `TEST_CASES_FAILED`.
pub fn check_publishable(terms: &VersionTerms, cases: &[RatingCase]) -> Result<(), PricingError> {
    terms.validate().map_err(PricingError::Invalid)?;
    check_prices(terms)?;
    if cases.is_empty() {
        return Err(PricingError::NoTestCases);
    }
    let failures = run_cases(terms, cases);
    if !failures.is_empty() {
        return Err(PricingError::TestCasesFailed(failures));
    }
    Ok(())
}

/// Publishes a draft: checks it ([`check_publishable`]), retires the product's published version
/// if there is one, and makes this one the version new quotes are rated on.
///
/// Errors: `VERSION_NOT_FOUND`, `VERSION_NOT_DRAFT`, and those of [`check_publishable`].
pub async fn publish_version(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    version_id: ProductVersionId,
) -> Result<ProductVersion, PricingError> {
    publish_version_because(conn, clock, actor, version_id, None).await
}

/// [`publish_version`], with the reason the person gave, kept in the audit log.
pub async fn publish_version_because(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    version_id: ProductVersionId,
    reason: Option<&str>,
) -> Result<ProductVersion, PricingError> {
    let now = clock.now();
    let result = conn
        .transaction::<_, PricingError, _>(async |conn| {
            let product_id: ProductId = product_versions::table
                .find(version_id)
                .select(product_versions::product_id)
                .first(conn)
                .await
                .optional()?
                .ok_or(PricingError::VersionNotFound)?;
            lock_product(conn, product_id).await?;
            let (_, status) = lock_version(conn, version_id).await?;
            if status != VersionStatus::Draft {
                return Err(PricingError::VersionNotDraft);
            }
            let draft = get_version(conn, version_id).await?;
            let cases = list_test_cases(conn, version_id).await?;
            check_publishable(&draft.terms, &cases)?;

            let retired: Option<ProductVersionId> = diesel::update(product_versions::table)
                .filter(product_versions::product_id.eq(product_id))
                .filter(product_versions::status.eq(VersionStatus::Published.as_str()))
                .set((
                    product_versions::status.eq(VersionStatus::Retired.as_str()),
                    product_versions::retired_at.eq(now),
                ))
                .returning(product_versions::id)
                .get_result(conn)
                .await
                .optional()?;
            diesel::update(product_versions::table.find(version_id))
                .set((
                    product_versions::status.eq(VersionStatus::Published.as_str()),
                    product_versions::published_at.eq(now),
                ))
                .execute(conn)
                .await
                .map_err(map_immutable)?;
            let version = get_version(conn, version_id).await?;
            if let Some(old) = retired {
                let old_version = get_version(conn, old).await?;
                audit_version(
                    conn,
                    actor,
                    "product_version.retired",
                    &old_version,
                    serde_json::json!({ "replaced_by": version_id.to_string() }),
                )
                .await?;
            }
            audit_version_because(
                conn,
                actor,
                "product_version.published",
                &version,
                reason,
                serde_json::json!({
                    "test_cases": cases.len(),
                    "retired_version_id": retired.map(|r| r.to_string()),
                }),
            )
            .await?;
            Ok(version)
        })
        .await;
    if let Ok(v) = &result {
        crate::quotes::forget_published(v.product_id);
    }
    result
}

/// Retires the published version: the product stops being quoted until another is published.
///
/// Errors: `VERSION_NOT_FOUND`, `VERSION_NOT_PUBLISHED`.
pub async fn retire_version(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    version_id: ProductVersionId,
) -> Result<ProductVersion, PricingError> {
    retire_version_because(conn, clock, actor, version_id, None).await
}

/// [`retire_version`], with the reason the person gave, kept in the audit log.
pub async fn retire_version_because(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    version_id: ProductVersionId,
    reason: Option<&str>,
) -> Result<ProductVersion, PricingError> {
    let now = clock.now();
    let result = conn
        .transaction::<_, PricingError, _>(async |conn| {
            let (_, status) = lock_version(conn, version_id).await?;
            if status != VersionStatus::Published {
                return Err(PricingError::VersionNotPublished);
            }
            diesel::update(product_versions::table.find(version_id))
                .set((
                    product_versions::status.eq(VersionStatus::Retired.as_str()),
                    product_versions::retired_at.eq(now),
                ))
                .execute(conn)
                .await?;
            let version = get_version(conn, version_id).await?;
            audit_version_because(
                conn,
                actor,
                "product_version.retired",
                &version,
                reason,
                serde_json::json!({}),
            )
            .await?;
            Ok(version)
        })
        .await;
    if let Ok(v) = &result {
        crate::quotes::forget_published(v.product_id);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const FOOD: &str = include_str!("../products/food_delivery_hourly.toml");

    #[test]
    fn terms_documents_parse_whole_files_or_the_terms_alone() {
        let whole = parse_terms_document(FOOD).unwrap();
        let demo = crate::seed::demo_products().unwrap().remove(0);
        assert_eq!(whole, demo.terms);
        let alone = FOOD
            .split_once("[terms]")
            .unwrap()
            .1
            .replace("[terms.", "[");
        assert_eq!(parse_terms_document(&alone).unwrap(), demo.terms);
        let e = parse_terms_document("wording_version = ").unwrap_err();
        assert_eq!(e.code(), Some("INVALID_TERMS_DOCUMENT"));
        let e = parse_terms_document(&FOOD.replace("minimum_age", "min_age")).unwrap_err();
        assert_eq!(e.code(), Some("INVALID_TERMS_DOCUMENT"));
        assert!(format!("{:?}", e.user_error()).contains("min_age"));
    }
}
