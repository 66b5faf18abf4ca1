//! Products and product versions as values: what a version pins ([`VersionTerms`]) and the checks
//! a draft must pass before it is stored.
//!
//! A version's terms never change once it is published (the database refuses it), so anything
//! computed from a published version — a quote, a session charge — can be recomputed later and
//! give the same answer.

use crate::ids::{ProductId, ProductVersionId};
use crate::rate_table::RateTable;
use accounts::VehicleType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::money::Currency;
use shared::{FieldError, Money};
use std::fmt;
use std::str::FromStr;

/// The youngest minimum age a version may set.
pub const LOWEST_MINIMUM_AGE: u32 = 16;
/// The oldest minimum age a version may set.
pub const HIGHEST_MINIMUM_AGE: u32 = 100;

/// A product sold to drivers, e.g. "Food delivery — hourly".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    /// The product.
    pub id: ProductId,
    /// A stable machine name, e.g. `food_delivery_hourly`.
    pub code: String,
    /// The name shown to people.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A product with the version new quotes are rated on, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductSummary {
    /// The product.
    pub product: Product,
    /// Its published version, when one is.
    pub published_version_id: Option<ProductVersionId>,
    /// That version's number.
    pub published_version_number: Option<i32>,
}

/// Where a version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Being written; may change; never rated for quotes.
    Draft,
    /// In force: new quotes are rated on it. Immutable.
    Published,
    /// No longer used for new quotes; still the record for what was sold on it. Immutable.
    Retired,
}

impl VersionStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Draft => "draft",
            VersionStatus::Published => "published",
            VersionStatus::Retired => "retired",
        }
    }
}

impl fmt::Display for VersionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VersionStatus {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "draft" => Ok(VersionStatus::Draft),
            "published" => Ok(VersionStatus::Published),
            "retired" => Ok(VersionStatus::Retired),
            other => Err(anyhow::anyhow!("unknown version status {other:?}")),
        }
    }
}

/// The rules a version pins besides its rate table. All durations are whole minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRules {
    /// Drivers younger than this are declined.
    pub minimum_age: u32,
    /// Vehicle types the product covers; others are declined.
    pub eligible_vehicle_types: Vec<VehicleType>,
    /// The shortest time charged for: a session shorter than this costs this much (60).
    pub minimum_charge_minutes: u32,
    /// After the minimum, time is charged in steps of this many started minutes (1).
    pub billing_increment_minutes: u32,
    /// Partner-driven sessions end this long after the last "job completed"/"offline" (10).
    pub gap_rule_minutes: u32,
    /// Extra cover after a session ends, for the ride home (0 for none).
    pub tail_cover_minutes: u32,
    /// The most a driver pays in one day, in minor units (the product's day price).
    pub daily_cap_minor: i64,
    /// The intermediary's commission, in basis points of the premium net of IPT.
    pub commission_bp: u32,
    /// Insurance premium tax, in basis points of the premium net of IPT (1200 = 12 %).
    pub ipt_bp: u32,
}

fn default_currency() -> Currency {
    Currency::Gbp
}

/// Everything a product version pins: currency, rate table, rules and policy wording version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionTerms {
    /// The currency of every amount in the version.
    #[serde(default = "default_currency")]
    pub currency: Currency,
    /// The policy wording the version sells, e.g. `FD-2026.1`.
    pub wording_version: String,
    /// Billing and eligibility rules.
    pub rules: VersionRules,
    /// Base rates and factors.
    pub rate_table: RateTable,
}

impl VersionTerms {
    /// The daily cap as money.
    pub fn daily_cap(&self) -> Money {
        Money {
            minor: self.rules.daily_cap_minor,
            currency: self.currency,
        }
    }

    /// Checks the terms; returns the first problem with a stable code and the field at fault.
    ///
    /// Codes: `INVALID_WORDING_VERSION`, `INVALID_MINIMUM_AGE`, `NO_ELIGIBLE_VEHICLE_TYPES`,
    /// `DUPLICATE_VEHICLE_TYPE`, `INVALID_MINIMUM_CHARGE`, `INVALID_BILLING_INCREMENT`,
    /// `INVALID_GAP_RULE`, `INVALID_TAIL_COVER`, `INVALID_DAILY_CAP`, `INVALID_COMMISSION_RATE`,
    /// `INVALID_IPT_RATE`, and those of [`RateTable::validate`]: `MISSING_BASE_RATE`,
    /// `UNEXPECTED_BASE_RATE`, `INVALID_BASE_RATE`, `INVALID_FACTOR`, `INVALID_REGION`,
    /// `INVALID_TIME_BAND`, `TIME_BAND_GAP`, `TIME_BAND_OVERLAP`, `INVALID_BAND`, `BAND_GAP`,
    /// `BAND_OVERLAP`, `BAND_COVERAGE`.
    pub fn validate(&self) -> Result<(), FieldError> {
        let r = &self.rules;
        let wording = self.wording_version.trim();
        if wording.is_empty()
            || wording != self.wording_version
            || wording.chars().count() > 50
            || wording.chars().any(char::is_control)
        {
            return Err(FieldError::field(
                "wordingVersion",
                "INVALID_WORDING_VERSION",
                "The wording version must be 1 to 50 characters, e.g. FD-2026.1.",
            ));
        }
        let checks: [(bool, &str, &'static str, String); 8] = [
            (
                (LOWEST_MINIMUM_AGE..=HIGHEST_MINIMUM_AGE).contains(&r.minimum_age),
                "rules.minimumAge",
                "INVALID_MINIMUM_AGE",
                format!("The minimum age must be {LOWEST_MINIMUM_AGE} to {HIGHEST_MINIMUM_AGE}."),
            ),
            (
                !r.eligible_vehicle_types.is_empty(),
                "rules.eligibleVehicleTypes",
                "NO_ELIGIBLE_VEHICLE_TYPES",
                "Choose at least one eligible vehicle type.".into(),
            ),
            (
                (1..=1440).contains(&r.minimum_charge_minutes),
                "rules.minimumChargeMinutes",
                "INVALID_MINIMUM_CHARGE",
                "The minimum charge must be 1 to 1440 minutes.".into(),
            ),
            (
                (1..=60).contains(&r.billing_increment_minutes),
                "rules.billingIncrementMinutes",
                "INVALID_BILLING_INCREMENT",
                "The billing increment must be 1 to 60 minutes.".into(),
            ),
            (
                r.gap_rule_minutes <= 240,
                "rules.gapRuleMinutes",
                "INVALID_GAP_RULE",
                "The gap rule must be 0 to 240 minutes.".into(),
            ),
            (
                r.tail_cover_minutes <= 240,
                "rules.tailCoverMinutes",
                "INVALID_TAIL_COVER",
                "Tail cover must be 0 to 240 minutes.".into(),
            ),
            (
                r.daily_cap_minor > 0,
                "rules.dailyCapMinor",
                "INVALID_DAILY_CAP",
                "The daily cap must be more than zero.".into(),
            ),
            (
                r.commission_bp < 10_000,
                "rules.commissionBp",
                "INVALID_COMMISSION_RATE",
                "Commission must be 0 to 9999 basis points.".into(),
            ),
        ];
        for (ok, field, code, message) in checks {
            if !ok {
                return Err(FieldError::field(field, code, message));
            }
        }
        if r.ipt_bp > 10_000 {
            return Err(FieldError::field(
                "rules.iptBp",
                "INVALID_IPT_RATE",
                "IPT must be 0 to 10000 basis points (1200 = 12 %).",
            ));
        }
        let mut seen = Vec::with_capacity(r.eligible_vehicle_types.len());
        for t in &r.eligible_vehicle_types {
            if seen.contains(t) {
                return Err(FieldError::field(
                    "rules.eligibleVehicleTypes",
                    "DUPLICATE_VEHICLE_TYPE",
                    format!("Vehicle type {t} is listed twice."),
                ));
            }
            seen.push(*t);
        }
        self.rate_table
            .validate(r.minimum_age, &r.eligible_vehicle_types)
    }
}

/// One version of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductVersion {
    /// The version.
    pub id: ProductVersionId,
    /// Its product.
    pub product_id: ProductId,
    /// 1, 2, 3… within the product.
    pub version_number: i32,
    /// Draft, published or retired.
    pub status: VersionStatus,
    /// What it pins.
    pub terms: VersionTerms,
    /// When the draft was created.
    pub created_at: DateTime<Utc>,
    /// When the draft last changed (publishing and retiring leave it as it was).
    pub updated_at: DateTime<Utc>,
    /// When it was published.
    pub published_at: Option<DateTime<Utc>>,
    /// When it was retired.
    pub retired_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::seed::demo_products;

    #[test]
    fn demo_terms_are_valid_and_broken_rules_are_named() {
        for p in demo_products().unwrap() {
            p.terms.validate().unwrap();
        }
        let base = demo_products().unwrap().remove(0).terms;
        let mut t = base.clone();
        t.rules.minimum_age = 15;
        assert_eq!(t.validate().unwrap_err().code, "INVALID_MINIMUM_AGE");
        let mut t = base.clone();
        t.rules.commission_bp = 10_000;
        assert_eq!(t.validate().unwrap_err().code, "INVALID_COMMISSION_RATE");
        let mut t = base.clone();
        t.rules.daily_cap_minor = 0;
        assert_eq!(t.validate().unwrap_err().code, "INVALID_DAILY_CAP");
        let mut t = base.clone();
        t.wording_version = " ".into();
        assert_eq!(t.validate().unwrap_err().code, "INVALID_WORDING_VERSION");
        let mut t = base.clone();
        t.rules
            .eligible_vehicle_types
            .push(t.rules.eligible_vehicle_types[0]);
        assert_eq!(t.validate().unwrap_err().code, "DUPLICATE_VEHICLE_TYPE");
        let mut t = base.clone();
        t.rules.eligible_vehicle_types.pop();
        assert_eq!(t.validate().unwrap_err().code, "UNEXPECTED_BASE_RATE");
        let mut t = base;
        t.rate_table
            .region_factors
            .areas
            .insert("sw".into(), 10_000);
        let e = t.validate().unwrap_err();
        assert_eq!(e.code, "INVALID_REGION");
        assert_eq!(e.field.as_deref(), Some("rateTable.regionFactors.areas.sw"));
    }
}
