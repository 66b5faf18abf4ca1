//! Product versions for ops: read a product's versions with their terms (rate table, factors,
//! rules) and test cases; draft a new version, edit its terms and test cases, check it, publish
//! it (refused while a case fails or a price is out of bounds) and retire it.
//!
//! Terms are edited in the shape they are read (`ProductVersion.terms` →
//! `ProductVersionTermsInput`), or pasted as a TOML document in the format of the product files
//! (`apps/pricing/products/<code>.toml`). Test cases likewise, structured or as a case file.
//! Every `PricingError` a user can fix becomes a `userErrors` entry with a specific code; its
//! field is the input path at fault (`terms.rateTable.ageBands[2]`, `cases[0]`, `versionId`).

use super::user_error;
use crate::accounts::{VehicleType, conn, core};
use crate::errors::{InternalExt, UserError, internal};
use crate::guard;
use crate::relay::{parse_global_id, to_global_id};
use accounts::{Actor, Role};
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use pricing::cases::{CaseResult, case_result};
use pricing::rate_table::{Band, RateTable, RegionFactors, TimeBand, TimeOfDay};
use pricing::{
    PricingError, ProductId, ProductVersionId, RatingCase, VersionRules, VersionStatus,
    VersionTerms,
};
use shared::{Currency, FieldError};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// Output types

/// Where a product version is in its life.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "pricing::VersionStatus")]
pub enum ProductVersionStatus {
    /// Being written; may change; never used for quotes.
    Draft,
    /// In force: new quotes are rated on it. Immutable.
    Published,
    /// No longer used for new quotes; the record of what was sold on it. Immutable.
    Retired,
}

/// One version of a product: what it pins and where it is in its life, with its test cases when
/// they were read together with other versions' (one query for a whole list).
#[derive(Debug, Clone)]
pub struct ProductVersion(
    pub(crate) pricing::ProductVersion,
    pub(crate) Option<Vec<RatingCase>>,
);

/// A version of a product's rate table and rules (ops). Published and retired versions never
/// change.
#[Object]
impl ProductVersion {
    /// The global id.
    async fn id(&self) -> ID {
        to_global_id("ProductVersion", &self.0.id)
    }
    /// The product's global id (as in `products`).
    async fn product_id(&self) -> ID {
        to_global_id("Product", &self.0.product_id)
    }
    /// 1, 2, 3… within the product.
    async fn version_number(&self) -> i32 {
        self.0.version_number
    }
    /// Draft, published or retired.
    async fn status(&self) -> ProductVersionStatus {
        self.0.status.into()
    }
    /// Whether the terms and test cases can still change (a draft).
    async fn editable(&self) -> bool {
        self.0.status == VersionStatus::Draft
    }
    /// The terms: currency, wording, rules and rate table.
    async fn terms(&self) -> ProductVersionTerms {
        ProductVersionTerms::from(&self.0.terms)
    }
    /// The terms as one JSON document, in the shape of the product files' `[terms]` (snake_case).
    async fn terms_json(&self, ctx: &Context<'_>) -> async_graphql::Result<serde_json::Value> {
        serde_json::to_value(&self.0.terms).internal(ctx)
    }
    /// The rating test cases, in order.
    async fn test_cases(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<RatingTestCase>> {
        if let Some(cases) = &self.1 {
            return Ok(cases.iter().cloned().map(RatingTestCase).collect());
        }
        let mut conn = conn(ctx).await?;
        let cases = pricing::list_test_cases(&mut conn, self.0.id)
            .await
            .internal(ctx)?;
        Ok(cases.into_iter().map(RatingTestCase).collect())
    }
    /// When the draft was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the draft last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When it was published.
    async fn published_at(&self) -> Option<DateTime<Utc>> {
        self.0.published_at
    }
    /// When it was retired.
    async fn retired_at(&self) -> Option<DateTime<Utc>> {
        self.0.retired_at
    }
}

/// Everything a product version pins.
#[derive(SimpleObject, Debug, Clone)]
pub struct ProductVersionTerms {
    /// The ISO 4217 currency of every amount, e.g. `GBP`.
    pub currency: String,
    /// The policy wording the version sells, e.g. `FD-2026.1`.
    pub wording_version: String,
    /// Billing and eligibility rules.
    pub rules: ProductVersionRules,
    /// Base rates and factors.
    pub rate_table: ProductRateTable,
}

/// The rules a version pins besides its rate table. Durations are whole minutes; rates are basis
/// points (10000 = ×1, 1200 = 12 %); amounts are minor units (pence).
#[derive(SimpleObject, Debug, Clone)]
pub struct ProductVersionRules {
    /// Drivers younger than this are declined.
    pub minimum_age: i32,
    /// Vehicle types the product covers.
    pub eligible_vehicle_types: Vec<VehicleType>,
    /// The shortest time charged for.
    pub minimum_charge_minutes: i32,
    /// After the minimum, time is charged in steps of this many started minutes.
    pub billing_increment_minutes: i32,
    /// Partner-driven sessions end this long after the last "job completed"/"offline".
    pub gap_rule_minutes: i32,
    /// Extra cover after a session ends (0 for none).
    pub tail_cover_minutes: i32,
    /// The most a driver pays in one day, in minor units.
    pub daily_cap_minor: i64,
    /// Commission, in basis points of the premium net of IPT.
    pub commission_bp: i32,
    /// Insurance premium tax, in basis points of the premium net of IPT.
    pub ipt_bp: i32,
}

/// Base hourly rates and the rating factors (basis points, 10000 = ×1).
#[derive(SimpleObject, Debug, Clone)]
pub struct ProductRateTable {
    /// The base hourly rate of each eligible vehicle type.
    pub base_hourly_rates: Vec<BaseHourlyRate>,
    /// Region factors by UK postcode area.
    pub region_factors: ProductRegionFactors,
    /// Time-of-day bands (UK local time), covering the day exactly once.
    pub time_bands: Vec<ProductTimeBand>,
    /// Driver age bands, from the minimum age up.
    pub age_bands: Vec<FactorBand>,
    /// Years-licensed bands, from 0 up.
    pub years_licensed_bands: Vec<FactorBand>,
    /// Claims-in-5-years bands, from 0; above the last, drivers are declined.
    pub claims_bands: Vec<FactorBand>,
}

/// A vehicle type's base hourly rate.
#[derive(SimpleObject, Debug, Clone)]
pub struct BaseHourlyRate {
    /// The vehicle type.
    pub vehicle_type: VehicleType,
    /// The rate, in minor units per hour.
    pub rate_minor: i64,
}

/// Region factors, with a default for areas not listed.
#[derive(SimpleObject, Debug, Clone)]
pub struct ProductRegionFactors {
    /// The factor of every area not listed.
    pub default_bp: i32,
    /// Listed areas, by name.
    pub areas: Vec<RegionFactor>,
}

/// One postcode area's factor.
#[derive(SimpleObject, Debug, Clone)]
pub struct RegionFactor {
    /// A UK postcode area: one or two capital letters, e.g. `SW`.
    pub area: String,
    /// The factor.
    pub factor_bp: i32,
}

/// A window of the day with its factor: `start` inclusive, `end` exclusive, wrapping past
/// midnight when `end` is not after `start`.
#[derive(SimpleObject, Debug, Clone)]
pub struct ProductTimeBand {
    /// A short name shown in explanations, e.g. `night`.
    pub name: String,
    /// First minute, `HH:MM`.
    pub start: String,
    /// First minute after the band, `HH:MM`.
    pub end: String,
    /// The factor.
    pub factor_bp: i32,
}

/// One band of a driver factor, `from` to `to` inclusive.
#[derive(SimpleObject, Debug, Clone)]
pub struct FactorBand {
    /// Lowest value in the band.
    pub from: i32,
    /// Highest value in the band; null for "and above".
    pub to: Option<i32>,
    /// The factor.
    pub factor_bp: i32,
}

fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn factor_band(b: &Band) -> FactorBand {
    {
        FactorBand {
            from: int(b.from),
            to: b.to.map(int),
            factor_bp: int(b.factor_bp),
        }
    }
}

impl From<&VersionTerms> for ProductVersionTerms {
    fn from(t: &VersionTerms) -> Self {
        let r = &t.rules;
        let rt = &t.rate_table;
        ProductVersionTerms {
            currency: t.currency.code().to_owned(),
            wording_version: t.wording_version.clone(),
            rules: ProductVersionRules {
                minimum_age: int(r.minimum_age),
                eligible_vehicle_types: r
                    .eligible_vehicle_types
                    .iter()
                    .map(|v| (*v).into())
                    .collect(),
                minimum_charge_minutes: int(r.minimum_charge_minutes),
                billing_increment_minutes: int(r.billing_increment_minutes),
                gap_rule_minutes: int(r.gap_rule_minutes),
                tail_cover_minutes: int(r.tail_cover_minutes),
                daily_cap_minor: r.daily_cap_minor,
                commission_bp: int(r.commission_bp),
                ipt_bp: int(r.ipt_bp),
            },
            rate_table: ProductRateTable {
                base_hourly_rates: rt
                    .base_hourly_rates
                    .iter()
                    .map(|(v, rate)| BaseHourlyRate {
                        vehicle_type: (*v).into(),
                        rate_minor: *rate,
                    })
                    .collect(),
                region_factors: ProductRegionFactors {
                    default_bp: int(rt.region_factors.default_bp),
                    areas: rt
                        .region_factors
                        .areas
                        .iter()
                        .map(|(a, bp)| RegionFactor {
                            area: a.clone(),
                            factor_bp: int(*bp),
                        })
                        .collect(),
                },
                time_bands: rt
                    .time_bands
                    .iter()
                    .map(|b| ProductTimeBand {
                        name: b.name.clone(),
                        start: b.start.to_string(),
                        end: b.end.to_string(),
                        factor_bp: int(b.factor_bp),
                    })
                    .collect(),
                age_bands: rt.age_bands.iter().map(factor_band).collect(),
                years_licensed_bands: rt.years_licensed_bands.iter().map(factor_band).collect(),
                claims_bands: rt.claims_bands.iter().map(factor_band).collect(),
            },
        }
    }
}

/// A rating test case: inputs and the outcome an underwriter expects.
#[derive(Debug, Clone)]
pub struct RatingTestCase(pub(crate) RatingCase);

/// A rating test case: a driver, vehicle, place and time, and the hourly rate (or decline) an
/// underwriter signed off.
#[Object]
impl RatingTestCase {
    /// What the case is about, unique within its version.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The vehicle type.
    async fn vehicle_type(&self) -> VehicleType {
        self.0.vehicle_type.into()
    }
    /// The driver's age in whole years.
    async fn age(&self) -> i32 {
        int(self.0.age)
    }
    /// Whole years licensed.
    async fn years_licensed(&self) -> i32 {
        int(self.0.years_licensed)
    }
    /// Claims in the last five years.
    #[graphql(name = "claims5y")]
    async fn claims_5y(&self) -> i32 {
        int(self.0.claims_5y)
    }
    /// A postcode or postcode area.
    async fn postcode(&self) -> &str {
        &self.0.postcode
    }
    /// When cover starts.
    async fn start(&self) -> DateTime<Utc> {
        self.0.start
    }
    /// The expected hourly rate, in minor units (or null when a decline is expected).
    async fn expect_hourly_minor(&self) -> Option<i64> {
        self.0.expect_hourly_minor
    }
    /// The expected explanation lines, when given.
    async fn expect_explanation(&self) -> Option<&[String]> {
        self.0.expect_explanation.as_deref()
    }
    /// The expected decline code, e.g. `UNDER_MINIMUM_AGE`.
    async fn expect_decline(&self) -> Option<&str> {
        self.0.expect_decline.as_deref()
    }
}

/// What one test case gave against a version's terms.
#[derive(SimpleObject, Debug, Clone)]
pub struct RatingTestCaseResult {
    /// The case's name.
    pub name: String,
    /// Whether the outcome is the expected one.
    pub passed: bool,
    /// What was expected, e.g. `£2.34/hour` or `decline UNDER_MINIMUM_AGE`.
    pub expected: String,
    /// What rating gave, in the same words (or the explanation that differed).
    pub actual: String,
    /// The hourly rate rating gave, in minor units; null when declined.
    pub actual_hourly_minor: Option<i64>,
    /// The decline code rating gave; null when rated.
    pub actual_decline: Option<String>,
    /// The explanation lines rating gave.
    pub actual_explanation: Vec<String>,
}

impl From<CaseResult> for RatingTestCaseResult {
    fn from(r: CaseResult) -> Self {
        RatingTestCaseResult {
            name: r.name,
            passed: r.passed,
            expected: r.expected,
            actual: r.actual,
            actual_hourly_minor: r.actual_hourly_minor,
            actual_decline: r.actual_decline,
            actual_explanation: r.actual_explanation,
        }
    }
}

/// What publishing a version would find, without publishing it.
#[derive(SimpleObject, Debug, Clone)]
pub struct ProductVersionCheck {
    /// The version checked.
    pub product_version: ProductVersion,
    /// Whether `publishProductVersion` would accept it (a draft with no problems).
    pub publishable: bool,
    /// Everything that would refuse it, with the codes `publishProductVersion` gives:
    /// `VERSION_NOT_DRAFT`, the terms' validation codes, `PRICE_NOT_POSITIVE`, `PRICE_TOO_LOW`,
    /// `PRICE_TOO_HIGH`, `NO_TEST_CASES`, `PRICING_CASES_FAILING`.
    pub problems: Vec<UserError>,
    /// Every test case's outcome, in order.
    pub cases: Vec<RatingTestCaseResult>,
    /// How many cases passed.
    pub passed_count: i32,
    /// How many cases failed.
    pub failed_count: i32,
}

// ---------------------------------------------------------------------------------------------
// Input types

/// A version's terms, in the shape `ProductVersion.terms` reads them.
#[derive(InputObject, Debug, Clone)]
pub struct ProductVersionTermsInput {
    /// The ISO 4217 currency code.
    #[graphql(default_with = "\"GBP\".to_owned()")]
    pub currency: String,
    /// The policy wording version, 1 to 50 characters, e.g. `FD-2026.2`.
    pub wording_version: String,
    /// Billing and eligibility rules.
    pub rules: ProductVersionRulesInput,
    /// Base rates and factors.
    pub rate_table: ProductRateTableInput,
}

/// A version's rules.
#[derive(InputObject, Debug, Clone)]
pub struct ProductVersionRulesInput {
    /// 16 to 100.
    pub minimum_age: i32,
    /// At least one, each once.
    pub eligible_vehicle_types: Vec<VehicleType>,
    /// 1 to 1440 minutes.
    pub minimum_charge_minutes: i32,
    /// 1 to 60 minutes.
    pub billing_increment_minutes: i32,
    /// 0 to 240 minutes.
    pub gap_rule_minutes: i32,
    /// 0 to 240 minutes.
    pub tail_cover_minutes: i32,
    /// More than zero, in minor units.
    pub daily_cap_minor: i64,
    /// 0 to 9999 basis points.
    pub commission_bp: i32,
    /// 0 to 10000 basis points.
    pub ipt_bp: i32,
}

/// A rate table.
#[derive(InputObject, Debug, Clone)]
pub struct ProductRateTableInput {
    /// One base rate per eligible vehicle type (and none for others).
    pub base_hourly_rates: Vec<BaseHourlyRateInput>,
    /// Region factors.
    pub region_factors: ProductRegionFactorsInput,
    /// Time bands covering each minute of the day exactly once.
    pub time_bands: Vec<ProductTimeBandInput>,
    /// Age bands from the minimum age, contiguous, the last open-ended.
    pub age_bands: Vec<FactorBandInput>,
    /// Years-licensed bands from 0, contiguous, the last open-ended.
    pub years_licensed_bands: Vec<FactorBandInput>,
    /// Claims bands from 0, contiguous.
    pub claims_bands: Vec<FactorBandInput>,
}

/// A base hourly rate.
#[derive(InputObject, Debug, Clone)]
pub struct BaseHourlyRateInput {
    /// The vehicle type.
    pub vehicle_type: VehicleType,
    /// 1 to 100000 minor units per hour.
    pub rate_minor: i64,
}

/// Region factors.
#[derive(InputObject, Debug, Clone)]
pub struct ProductRegionFactorsInput {
    /// The factor of areas not listed (1 to 100000 basis points).
    pub default_bp: i32,
    /// Listed areas, each once.
    #[graphql(default)]
    pub areas: Vec<RegionFactorInput>,
}

/// One area's factor.
#[derive(InputObject, Debug, Clone)]
pub struct RegionFactorInput {
    /// One or two capital letters, e.g. `SW`.
    pub area: String,
    /// 1 to 100000 basis points.
    pub factor_bp: i32,
}

/// A time band.
#[derive(InputObject, Debug, Clone)]
pub struct ProductTimeBandInput {
    /// 1 to 40 characters.
    pub name: String,
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`.
    pub end: String,
    /// 1 to 100000 basis points.
    pub factor_bp: i32,
}

/// A driver-factor band.
#[derive(InputObject, Debug, Clone)]
pub struct FactorBandInput {
    /// Lowest value.
    pub from: i32,
    /// Highest value; omit for "and above".
    pub to: Option<i32>,
    /// 1 to 100000 basis points.
    pub factor_bp: i32,
}

/// A rating test case.
#[derive(InputObject, Debug, Clone)]
pub struct RatingTestCaseInput {
    /// 1 to 200 characters, unique within the version.
    pub name: String,
    /// The vehicle type.
    pub vehicle_type: VehicleType,
    /// The driver's age in whole years.
    pub age: i32,
    /// Whole years licensed.
    pub years_licensed: i32,
    /// Claims in the last five years.
    #[graphql(name = "claims5y")]
    pub claims_5y: i32,
    /// A postcode or postcode area.
    pub postcode: String,
    /// When cover starts.
    pub start: DateTime<Utc>,
    /// The expected hourly rate in minor units (give this or `expectDecline`).
    pub expect_hourly_minor: Option<i64>,
    /// The expected explanation lines (optional, with `expectHourlyMinor`).
    pub expect_explanation: Option<Vec<String>>,
    /// The expected decline code (give this or `expectHourlyMinor`).
    pub expect_decline: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Input conversion and error mapping

/// Where the terms came from, for error fields.
#[derive(Clone, Copy)]
enum TermsSource<'a> {
    Structured(&'a ProductVersionTermsInput),
    Toml,
}

fn unsigned(v: i32, field: String, code: &'static str, what: &str) -> Result<u32, FieldError> {
    u32::try_from(v)
        .map_err(|_| FieldError::field(field, code, format!("{what} cannot be negative.")))
}

fn band_from(b: &FactorBandInput, field: String) -> Result<Band, FieldError> {
    Ok(Band {
        from: unsigned(
            b.from,
            format!("{field}.from"),
            "INVALID_BAND",
            "A band's start",
        )?,
        to: b
            .to
            .map(|to| unsigned(to, format!("{field}.to"), "INVALID_BAND", "A band's end"))
            .transpose()?,
        factor_bp: unsigned(
            b.factor_bp,
            format!("{field}.factorBp"),
            "INVALID_FACTOR",
            "A factor",
        )?,
    })
}

fn bands_from(bands: &[FactorBandInput], field: &str) -> Result<Vec<Band>, FieldError> {
    bands
        .iter()
        .enumerate()
        .map(|(i, b)| band_from(b, format!("{field}[{i}]")))
        .collect()
}

/// Structured terms as domain terms; errors name the input path (`terms.…`).
fn terms_from_input(t: &ProductVersionTermsInput) -> Result<VersionTerms, FieldError> {
    let currency: Currency = t.currency.parse().map_err(|_| {
        FieldError::field(
            "terms.currency",
            "INVALID_CURRENCY",
            format!("{:?} is not a currency we sell in (GBP, EUR).", t.currency),
        )
    })?;
    let r = &t.rules;
    let f = |name: &str| format!("terms.rules.{name}");
    let rules = VersionRules {
        minimum_age: unsigned(
            r.minimum_age,
            f("minimumAge"),
            "INVALID_MINIMUM_AGE",
            "The minimum age",
        )?,
        eligible_vehicle_types: r
            .eligible_vehicle_types
            .iter()
            .map(|v| (*v).into())
            .collect(),
        minimum_charge_minutes: unsigned(
            r.minimum_charge_minutes,
            f("minimumChargeMinutes"),
            "INVALID_MINIMUM_CHARGE",
            "The minimum charge",
        )?,
        billing_increment_minutes: unsigned(
            r.billing_increment_minutes,
            f("billingIncrementMinutes"),
            "INVALID_BILLING_INCREMENT",
            "The billing increment",
        )?,
        gap_rule_minutes: unsigned(
            r.gap_rule_minutes,
            f("gapRuleMinutes"),
            "INVALID_GAP_RULE",
            "The gap rule",
        )?,
        tail_cover_minutes: unsigned(
            r.tail_cover_minutes,
            f("tailCoverMinutes"),
            "INVALID_TAIL_COVER",
            "Tail cover",
        )?,
        daily_cap_minor: r.daily_cap_minor,
        commission_bp: unsigned(
            r.commission_bp,
            f("commissionBp"),
            "INVALID_COMMISSION_RATE",
            "Commission",
        )?,
        ipt_bp: unsigned(r.ipt_bp, f("iptBp"), "INVALID_IPT_RATE", "IPT")?,
    };
    let rt = &t.rate_table;
    let mut base = BTreeMap::new();
    for (i, b) in rt.base_hourly_rates.iter().enumerate() {
        let vt: accounts::VehicleType = b.vehicle_type.into();
        if base.insert(vt, b.rate_minor).is_some() {
            return Err(FieldError::field(
                format!("terms.rateTable.baseHourlyRates[{i}]"),
                "DUPLICATE_VEHICLE_TYPE",
                format!("Vehicle type {vt} has two base rates."),
            ));
        }
    }
    let mut areas = BTreeMap::new();
    for (i, a) in rt.region_factors.areas.iter().enumerate() {
        let field = format!("terms.rateTable.regionFactors.areas[{i}]");
        let bp = unsigned(
            a.factor_bp,
            format!("{field}.factorBp"),
            "INVALID_FACTOR",
            "A factor",
        )?;
        if areas.insert(a.area.clone(), bp).is_some() {
            return Err(FieldError::field(
                field,
                "DUPLICATE_REGION",
                format!("Area {:?} is listed twice.", a.area),
            ));
        }
    }
    let mut time_bands = Vec::with_capacity(rt.time_bands.len());
    for (i, b) in rt.time_bands.iter().enumerate() {
        let field = format!("terms.rateTable.timeBands[{i}]");
        let time = |s: &str, which: &str| {
            TimeOfDay::parse(s).ok_or_else(|| {
                FieldError::field(
                    format!("{field}.{which}"),
                    "INVALID_TIME_BAND",
                    format!("{s:?} is not a time of day written HH:MM (00:00 to 23:59)."),
                )
            })
        };
        time_bands.push(TimeBand {
            name: b.name.clone(),
            start: time(&b.start, "start")?,
            end: time(&b.end, "end")?,
            factor_bp: unsigned(
                b.factor_bp,
                format!("{field}.factorBp"),
                "INVALID_FACTOR",
                "A factor",
            )?,
        });
    }
    Ok(VersionTerms {
        currency,
        wording_version: t.wording_version.clone(),
        rules,
        rate_table: RateTable {
            base_hourly_rates: base,
            region_factors: RegionFactors {
                default_bp: unsigned(
                    rt.region_factors.default_bp,
                    "terms.rateTable.regionFactors.defaultBp".into(),
                    "INVALID_FACTOR",
                    "A factor",
                )?,
                areas,
            },
            time_bands,
            age_bands: bands_from(&rt.age_bands, "terms.rateTable.ageBands")?,
            years_licensed_bands: bands_from(
                &rt.years_licensed_bands,
                "terms.rateTable.yearsLicensedBands",
            )?,
            claims_bands: bands_from(&rt.claims_bands, "terms.rateTable.claimsBands")?,
        },
    })
}

/// A TOML terms document (see `pricing::products::parse_terms_document`).
fn terms_from_toml(text: &str) -> Result<VersionTerms, FieldError> {
    match pricing::products::parse_terms_document(text) {
        Ok(t) => Ok(t),
        Err(PricingError::Invalid(mut e)) => {
            e.field = Some("termsToml".into());
            Err(e)
        }
        Err(e) => Err(FieldError::field(
            "termsToml",
            "INVALID_TERMS_DOCUMENT",
            e.to_string(),
        )),
    }
}

/// Which terms an input gave: `None` when neither form was given.
fn input_terms<'a>(
    terms: Option<&'a ProductVersionTermsInput>,
    toml_text: Option<&str>,
) -> Result<Option<(VersionTerms, TermsSource<'a>)>, FieldError> {
    match (terms, toml_text) {
        (Some(_), Some(_)) => Err(FieldError::field(
            "termsToml",
            "CONFLICTING_INPUT",
            "Give the terms either structured (terms) or as a document (termsToml), not both.",
        )),
        (Some(t), None) => Ok(Some((terms_from_input(t)?, TermsSource::Structured(t)))),
        (None, Some(text)) => Ok(Some((terms_from_toml(text)?, TermsSource::Toml))),
        (None, None) => Ok(None),
    }
}

/// The input path of a domain field of the terms (`rateTable.ageBands[1]`,
/// `rateTable.baseHourlyRates.car`, `rules.minimumAge`).
fn terms_field(domain: &str, source: TermsSource<'_>) -> String {
    let TermsSource::Structured(input) = source else {
        return format!("termsToml.{domain}");
    };
    let rt = &input.rate_table;
    if let Some(vt) = domain.strip_prefix("rateTable.baseHourlyRates.")
        && let Some(i) = rt
            .base_hourly_rates
            .iter()
            .position(|b| accounts::VehicleType::from(b.vehicle_type).as_str() == vt)
    {
        return format!("terms.rateTable.baseHourlyRates[{i}]");
    }
    if let Some(area) = domain.strip_prefix("rateTable.regionFactors.areas.")
        && let Some(i) = rt.region_factors.areas.iter().position(|a| a.area == area)
    {
        return format!("terms.rateTable.regionFactors.areas[{i}].factorBp");
    }
    format!("terms.{domain}")
}

fn is_terms_field(field: &str) -> bool {
    ["rules", "rateTable", "wordingVersion", "currency"]
        .iter()
        .any(|p| {
            field == *p
                || field.starts_with(&format!("{p}."))
                || field.starts_with(&format!("{p}["))
        })
}

/// How fields are named in the current input.
#[derive(Clone, Copy)]
struct Fields<'a> {
    /// Where terms came from (`None`: the version's stored terms).
    terms: Option<TermsSource<'a>>,
    /// The name of the cases input (`cases` or `casesToml`).
    cases: &'a str,
}

const STORED: Fields<'static> = Fields {
    terms: None,
    cases: "cases",
};

fn map_field(field: Option<String>, fields: Fields<'_>) -> Option<String> {
    let field = field?;
    if let Some(rest) = field.strip_prefix("testCases") {
        return Some(format!("{}{rest}", fields.cases));
    }
    if is_terms_field(&field) {
        return Some(match fields.terms {
            Some(source) => terms_field(&field, source),
            None => format!("terms.{field}"),
        });
    }
    Some(field)
}

/// A pricing error as a user error with the input's field names; `None` for internal failures.
fn pricing_user_error(err: &PricingError, fields: Fields<'_>) -> Option<UserError> {
    let e = err.user_error()?;
    let code = match err {
        PricingError::TestCasesFailed(_) => "PRICING_CASES_FAILING".to_owned(),
        _ => e.code.to_owned(),
    };
    Some(UserError {
        field: map_field(e.field, fields),
        code,
        message: e.message,
    })
}

fn pricing_user_errors(
    ctx: &Context<'_>,
    err: PricingError,
    fields: Fields<'_>,
) -> async_graphql::Result<Vec<UserError>> {
    match pricing_user_error(&err, fields) {
        Some(e) => Ok(vec![e]),
        None => Err(internal(ctx, err)),
    }
}

fn field_error(e: FieldError) -> Vec<UserError> {
    vec![UserError::from(e)]
}

fn version_not_found(field: &str) -> Vec<UserError> {
    vec![user_error(
        field,
        "VERSION_NOT_FOUND",
        "There is no such product version.",
    )]
}

fn product_not_found() -> Vec<UserError> {
    vec![user_error(
        "productId",
        "PRODUCT_NOT_FOUND",
        "There is no such product.",
    )]
}

fn parse_version_id(id: &ID) -> Option<ProductVersionId> {
    parse_global_id(id, "ProductVersion")
}

fn cases_from_input(cases: &[RatingTestCaseInput]) -> Result<Vec<RatingCase>, FieldError> {
    cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let f = |name: &str| format!("cases[{i}].{name}");
            let n =
                |v: i32, name: &str, what: &str| unsigned(v, f(name), "INVALID_TEST_CASES", what);
            Ok(RatingCase {
                name: c.name.clone(),
                vehicle_type: c.vehicle_type.into(),
                age: n(c.age, "age", "An age")?,
                years_licensed: n(c.years_licensed, "yearsLicensed", "Years licensed")?,
                claims_5y: n(c.claims_5y, "claims5y", "A number of claims")?,
                postcode: c.postcode.clone(),
                start: c.start,
                expect_hourly_minor: c.expect_hourly_minor,
                expect_explanation: c.expect_explanation.clone(),
                expect_decline: c.expect_decline.clone(),
            })
        })
        .collect()
}

/// Runs every case of a version against its terms.
fn case_results(terms: &VersionTerms, cases: &[RatingCase]) -> Vec<RatingTestCaseResult> {
    cases.iter().map(|c| case_result(terms, c).into()).collect()
}

/// Everything publication would refuse a version for, all at once.
fn problems_of(
    version: &pricing::ProductVersion,
    cases: &[RatingCase],
    results: &[RatingTestCaseResult],
) -> Vec<UserError> {
    let mut problems = Vec::new();
    let mut push = |err: PricingError| {
        if let Some(e) = pricing_user_error(&err, STORED) {
            problems.push(e);
        }
    };
    if version.status != VersionStatus::Draft {
        push(PricingError::VersionNotDraft);
    }
    match version.terms.validate() {
        Err(e) => push(PricingError::Invalid(e)),
        Ok(()) => {
            if let Err(e) = pricing::check_prices(&version.terms) {
                push(e);
            }
        }
    }
    if cases.is_empty() {
        push(PricingError::NoTestCases);
    }
    let failures: Vec<pricing::CaseFailure> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| pricing::CaseFailure {
            name: r.name.clone(),
            expected: r.expected.clone(),
            actual: r.actual.clone(),
        })
        .collect();
    if !failures.is_empty() {
        push(PricingError::TestCasesFailed(failures));
    }
    problems
}

async fn load_check(
    ctx: &Context<'_>,
    id: ProductVersionId,
) -> async_graphql::Result<Option<ProductVersionCheck>> {
    let mut conn = conn(ctx).await?;
    let version = match pricing::get_version(&mut conn, id).await {
        Ok(v) => v,
        Err(PricingError::VersionNotFound) => return Ok(None),
        Err(e) => return Err(internal(ctx, e)),
    };
    let cases = pricing::list_test_cases(&mut conn, id)
        .await
        .internal(ctx)?;
    let results = case_results(&version.terms, &cases);
    let problems = problems_of(&version, &cases, &results);
    let passed = results.iter().filter(|r| r.passed).count();
    Ok(Some(ProductVersionCheck {
        publishable: problems.is_empty(),
        problems,
        passed_count: i32::try_from(passed).unwrap_or(i32::MAX),
        failed_count: i32::try_from(results.len() - passed).unwrap_or(i32::MAX),
        cases: results,
        product_version: ProductVersion(version, None),
    }))
}

// ---------------------------------------------------------------------------------------------
// Queries

/// Product version queries (ops).
#[derive(Default)]
pub struct ProductVersionsQuery;

#[Object]
impl ProductVersionsQuery {
    /// A product's versions, newest first, drafts and retired ones included (ops); null when
    /// there is no such product.
    async fn product_versions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The product's global id (from `products`).")] product_id: ID,
    ) -> async_graphql::Result<Option<Vec<ProductVersion>>> {
        guard::require_staff(ctx, Role::Ops)?;
        let Some(product_id) = parse_global_id::<ProductId>(&product_id, "Product") else {
            return Ok(None);
        };
        let mut conn = conn(ctx).await?;
        let versions = match pricing::list_versions(&mut conn, product_id).await {
            Ok(versions) => versions,
            Err(PricingError::ProductNotFound) => return Ok(None),
            Err(e) => return Err(internal(ctx, e)),
        };
        // Every version's cases in one query, when asked for.
        let mut cases = if ctx.look_ahead().field("testCases").exists() {
            let ids: Vec<ProductVersionId> = versions.iter().map(|v| v.id).collect();
            Some(
                pricing::products::list_test_cases_of(&mut conn, &ids)
                    .await
                    .internal(ctx)?,
            )
        } else {
            None
        };
        Ok(Some(
            versions
                .into_iter()
                .map(|v| {
                    let of_v = cases.as_mut().map(|m| m.remove(&v.id).unwrap_or_default());
                    ProductVersion(v, of_v)
                })
                .collect(),
        ))
    }

    /// One product version by its global id (ops); null when there is none.
    async fn product_version(
        &self,
        ctx: &Context<'_>,
        version_id: ID,
    ) -> async_graphql::Result<Option<ProductVersion>> {
        guard::require_staff(ctx, Role::Ops)?;
        let Some(id) = parse_version_id(&version_id) else {
            return Ok(None);
        };
        let mut conn = conn(ctx).await?;
        match pricing::get_version(&mut conn, id).await {
            Ok(v) => Ok(Some(ProductVersion(v, None))),
            Err(PricingError::VersionNotFound) => Ok(None),
            Err(e) => Err(internal(ctx, e)),
        }
    }

    /// Runs everything publication checks against a version, without publishing (ops): each
    /// test case's outcome, expected against actual, and every problem that would refuse it.
    /// Null when there is no such version.
    async fn check_product_version(
        &self,
        ctx: &Context<'_>,
        version_id: ID,
    ) -> async_graphql::Result<Option<ProductVersionCheck>> {
        guard::require_staff(ctx, Role::Ops)?;
        let Some(id) = parse_version_id(&version_id) else {
            return Ok(None);
        };
        load_check(ctx, id).await
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// Input of `createProductVersionDraft`.
#[derive(InputObject)]
pub struct CreateProductVersionDraftInput {
    /// The product's global id.
    pub product_id: ID,
    /// The version to copy (terms and test cases); by default the published version, else the
    /// newest. Leave out when giving `terms` or `termsToml`.
    pub from_version_id: Option<ID>,
    /// Start from these terms instead of a copy (no test cases).
    pub terms: Option<ProductVersionTermsInput>,
    /// Start from these terms, as a TOML document, instead of a copy (no test cases).
    pub terms_toml: Option<String>,
}

/// Result of `createProductVersionDraft`.
#[derive(SimpleObject, Default)]
pub struct CreateProductVersionDraftPayload {
    /// The new draft.
    pub product_version: Option<ProductVersion>,
    /// `PRODUCT_NOT_FOUND` (`productId`), `VERSION_NOT_FOUND`, `NO_VERSION_TO_COPY`,
    /// `CONFLICTING_INPUT` (`fromVersionId`), `INVALID_TERMS_DOCUMENT` (`termsToml`), and the
    /// terms' validation codes (`terms.…`).
    pub user_errors: Vec<UserError>,
}

/// Input of `updateProductVersionDraft`.
#[derive(InputObject)]
pub struct UpdateProductVersionDraftInput {
    /// The draft's global id.
    pub version_id: ID,
    /// The new terms, in the shape `ProductVersion.terms` reads them.
    pub terms: Option<ProductVersionTermsInput>,
    /// Or: the new terms as a TOML document (the `[terms]` of a product file, or its content).
    pub terms_toml: Option<String>,
}

/// Result of `updateProductVersionDraft`.
#[derive(SimpleObject, Default)]
pub struct UpdateProductVersionDraftPayload {
    /// The draft with its new terms (test cases kept).
    pub product_version: Option<ProductVersion>,
    /// `VERSION_NOT_FOUND`, `VERSION_NOT_DRAFT` (`versionId`), `MISSING_TERMS`,
    /// `CONFLICTING_INPUT`, `INVALID_TERMS_DOCUMENT` (`termsToml`), `INVALID_CURRENCY`,
    /// `DUPLICATE_REGION` and the terms' validation codes, among them `TIME_BAND_GAP`,
    /// `TIME_BAND_OVERLAP`, `BAND_GAP`, `BAND_OVERLAP`, `BAND_COVERAGE`, `INVALID_FACTOR`,
    /// `INVALID_BASE_RATE` (`terms.…` at the entry at fault).
    pub user_errors: Vec<UserError>,
}

/// Input of `setProductVersionTestCases`.
#[derive(InputObject)]
pub struct SetProductVersionTestCasesInput {
    /// The draft's global id.
    pub version_id: ID,
    /// The cases, in order (they replace the draft's cases).
    #[graphql(validator(max_items = 1000))]
    pub cases: Option<Vec<RatingTestCaseInput>>,
    /// Or: the cases as a TOML case file (`[[case]]` tables; the `product` line optional).
    pub cases_toml: Option<String>,
}

/// Result of `setProductVersionTestCases`.
#[derive(SimpleObject, Default)]
pub struct SetProductVersionTestCasesPayload {
    /// The draft.
    pub product_version: Option<ProductVersion>,
    /// Its cases as stored.
    pub test_cases: Vec<RatingTestCase>,
    /// `VERSION_NOT_FOUND`, `VERSION_NOT_DRAFT` (`versionId`), `MISSING_TEST_CASES`,
    /// `CONFLICTING_INPUT`, `INVALID_TEST_CASES` (`cases[i]` or `casesToml`).
    pub user_errors: Vec<UserError>,
}

/// Input of `publishProductVersion` and `retireProductVersion`.
#[derive(InputObject)]
pub struct ProductVersionActionInput {
    /// The version's global id.
    pub version_id: ID,
    /// Why (1 to 500 characters), for the audit log.
    pub reason: Option<String>,
}

/// Result of `publishProductVersion`.
#[derive(SimpleObject, Default)]
pub struct PublishProductVersionPayload {
    /// The version, now published (the previously published one is retired).
    pub product_version: Option<ProductVersion>,
    /// When refused with `PRICING_CASES_FAILING`: the failing cases, expected against actual.
    pub failing_cases: Vec<RatingTestCaseResult>,
    /// `VERSION_NOT_FOUND`, `VERSION_NOT_DRAFT` (`versionId`), `PRICING_CASES_FAILING`,
    /// `NO_TEST_CASES` (`cases`), `PRICE_NOT_POSITIVE`, `PRICE_TOO_LOW`, `PRICE_TOO_HIGH`
    /// (`terms.rateTable`), and the terms' validation codes (`terms.…`).
    pub user_errors: Vec<UserError>,
}

/// Result of `retireProductVersion`.
#[derive(SimpleObject, Default)]
pub struct RetireProductVersionPayload {
    /// The version, now retired: the product is not quoted until another is published.
    pub product_version: Option<ProductVersion>,
    /// `VERSION_NOT_FOUND`, `VERSION_NOT_PUBLISHED` (`versionId`).
    pub user_errors: Vec<UserError>,
}

/// Product version mutations (ops). Every change is audited by the pricing app.
#[derive(Default)]
pub struct ProductVersionsMutation;

#[Object]
impl ProductVersionsMutation {
    /// Starts a new draft of a product (ops): a copy of one of its versions (terms and test
    /// cases), or the terms given.
    async fn create_product_version_draft(
        &self,
        ctx: &Context<'_>,
        input: CreateProductVersionDraftInput,
    ) -> async_graphql::Result<CreateProductVersionDraftPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let fail = |user_errors| {
            Ok(CreateProductVersionDraftPayload {
                product_version: None,
                user_errors,
            })
        };
        let Some(product_id) = parse_global_id::<ProductId>(&input.product_id, "Product") else {
            return fail(product_not_found());
        };
        let given = match input_terms(input.terms.as_ref(), input.terms_toml.as_deref()) {
            Ok(t) => t,
            Err(e) => return fail(field_error(e)),
        };
        let from = match &input.from_version_id {
            None => None,
            Some(_) if given.is_some() => {
                return fail(vec![user_error(
                    "fromVersionId",
                    "CONFLICTING_INPUT",
                    "Copy a version or give terms, not both.",
                )]);
            }
            Some(id) => match parse_version_id(id) {
                Some(v) => Some(v),
                None => return fail(version_not_found("fromVersionId")),
            },
        };
        let core = core(ctx)?;
        let actor = Actor::Staff(staff.staff_id);
        let mut conn = conn(ctx).await?;
        let result = match &given {
            Some((terms, _)) => {
                pricing::create_draft_version(
                    &mut conn,
                    core.clock.as_ref(),
                    actor,
                    product_id,
                    terms,
                )
                .await
            }
            None => pricing::products::create_draft_from(
                &mut conn,
                core.clock.as_ref(),
                actor,
                product_id,
                from,
            )
            .await
            .map(|(v, _)| v),
        };
        let fields = Fields {
            terms: given.as_ref().map(|(_, s)| *s),
            cases: "cases",
        };
        match result {
            Ok(v) => Ok(CreateProductVersionDraftPayload {
                product_version: Some(ProductVersion(v, None)),
                user_errors: vec![],
            }),
            Err(e) => fail(pricing_user_errors(ctx, e, fields)?),
        }
    }

    /// Replaces a draft's terms (ops); its test cases are kept.
    async fn update_product_version_draft(
        &self,
        ctx: &Context<'_>,
        input: UpdateProductVersionDraftInput,
    ) -> async_graphql::Result<UpdateProductVersionDraftPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let fail = |user_errors| {
            Ok(UpdateProductVersionDraftPayload {
                product_version: None,
                user_errors,
            })
        };
        let Some(id) = parse_version_id(&input.version_id) else {
            return fail(version_not_found("versionId"));
        };
        let (terms, source) = match input_terms(input.terms.as_ref(), input.terms_toml.as_deref()) {
            Ok(Some(t)) => t,
            Ok(None) => {
                return fail(vec![user_error(
                    "terms",
                    "MISSING_TERMS",
                    "Give the new terms, structured (terms) or as a document (termsToml).",
                )]);
            }
            Err(e) => return fail(field_error(e)),
        };
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        match pricing::update_draft(
            &mut conn,
            core.clock.as_ref(),
            Actor::Staff(staff.staff_id),
            id,
            &terms,
        )
        .await
        {
            Ok(v) => Ok(UpdateProductVersionDraftPayload {
                product_version: Some(ProductVersion(v, None)),
                user_errors: vec![],
            }),
            Err(e) => fail(pricing_user_errors(
                ctx,
                e,
                Fields {
                    terms: Some(source),
                    cases: "cases",
                },
            )?),
        }
    }

    /// Replaces a draft's rating test cases (ops).
    async fn set_product_version_test_cases(
        &self,
        ctx: &Context<'_>,
        input: SetProductVersionTestCasesInput,
    ) -> async_graphql::Result<SetProductVersionTestCasesPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let fail = |user_errors| {
            Ok(SetProductVersionTestCasesPayload {
                user_errors,
                ..Default::default()
            })
        };
        let Some(id) = parse_version_id(&input.version_id) else {
            return fail(version_not_found("versionId"));
        };
        let mut conn = conn(ctx).await?;
        let (cases, cases_field) = match (&input.cases, &input.cases_toml) {
            (Some(_), Some(_)) => {
                return fail(vec![user_error(
                    "casesToml",
                    "CONFLICTING_INPUT",
                    "Give the cases either structured (cases) or as a document (casesToml), not both.",
                )]);
            }
            (None, None) => {
                return fail(vec![user_error(
                    "cases",
                    "MISSING_TEST_CASES",
                    "Give the cases, structured (cases) or as a document (casesToml).",
                )]);
            }
            (Some(cases), None) => match cases_from_input(cases) {
                Ok(c) => (c, "cases"),
                Err(e) => return fail(field_error(e)),
            },
            (None, Some(text)) => {
                let version = match pricing::get_version(&mut conn, id).await {
                    Ok(v) => v,
                    Err(PricingError::VersionNotFound) => {
                        return fail(version_not_found("versionId"));
                    }
                    Err(e) => return Err(internal(ctx, e)),
                };
                let product = pricing::get_product(&mut conn, version.product_id)
                    .await
                    .internal(ctx)?;
                match pricing::cases::parse_rating_cases_for(text, &product.code) {
                    Ok(c) => (c, "casesToml"),
                    Err(e) => {
                        let mut errors = field_error(e);
                        for err in &mut errors {
                            err.field = map_field(
                                err.field.take(),
                                Fields {
                                    terms: None,
                                    cases: "casesToml",
                                },
                            );
                        }
                        return fail(errors);
                    }
                }
            }
        };
        let core = core(ctx)?;
        let fields = Fields {
            terms: None,
            cases: cases_field,
        };
        if let Err(e) = pricing::set_test_cases(
            &mut conn,
            core.clock.as_ref(),
            Actor::Staff(staff.staff_id),
            id,
            &cases,
        )
        .await
        {
            return fail(pricing_user_errors(ctx, e, fields)?);
        }
        let version = pricing::get_version(&mut conn, id).await.internal(ctx)?;
        Ok(SetProductVersionTestCasesPayload {
            product_version: Some(ProductVersion(version, None)),
            test_cases: cases.into_iter().map(RatingTestCase).collect(),
            user_errors: vec![],
        })
    }

    /// Publishes a draft (ops): refused while its terms are invalid, a price is out of bounds,
    /// it has no test cases or any case fails. Retires the previously published version; new
    /// quotes use this one from now on.
    async fn publish_product_version(
        &self,
        ctx: &Context<'_>,
        input: ProductVersionActionInput,
    ) -> async_graphql::Result<PublishProductVersionPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(id) = parse_version_id(&input.version_id) else {
            return Ok(PublishProductVersionPayload {
                user_errors: version_not_found("versionId"),
                ..Default::default()
            });
        };
        let reason = match crate::errors::optional_reason(input.reason.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(PublishProductVersionPayload {
                    user_errors: vec![e],
                    ..Default::default()
                });
            }
        };
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        match pricing::publish_version_because(
            &mut conn,
            core.clock.as_ref(),
            Actor::Staff(staff.staff_id),
            id,
            reason,
        )
        .await
        {
            Ok(v) => Ok(PublishProductVersionPayload {
                product_version: Some(ProductVersion(v, None)),
                ..Default::default()
            }),
            Err(e) => {
                let failing = matches!(e, PricingError::TestCasesFailed(_));
                let user_errors = pricing_user_errors(ctx, e, STORED)?;
                let failing_cases = if failing {
                    let version = pricing::get_version(&mut conn, id).await.internal(ctx)?;
                    let cases = pricing::list_test_cases(&mut conn, id)
                        .await
                        .internal(ctx)?;
                    case_results(&version.terms, &cases)
                        .into_iter()
                        .filter(|r| !r.passed)
                        .collect()
                } else {
                    vec![]
                };
                Ok(PublishProductVersionPayload {
                    product_version: None,
                    failing_cases,
                    user_errors,
                })
            }
        }
    }

    /// Retires the published version (ops): the product is not quoted until another is published.
    async fn retire_product_version(
        &self,
        ctx: &Context<'_>,
        input: ProductVersionActionInput,
    ) -> async_graphql::Result<RetireProductVersionPayload> {
        let staff = guard::require_staff(ctx, Role::Ops)?;
        let Some(id) = parse_version_id(&input.version_id) else {
            return Ok(RetireProductVersionPayload {
                product_version: None,
                user_errors: version_not_found("versionId"),
            });
        };
        let reason = match crate::errors::optional_reason(input.reason.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(RetireProductVersionPayload {
                    product_version: None,
                    user_errors: vec![e],
                });
            }
        };
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        match pricing::retire_version_because(
            &mut conn,
            core.clock.as_ref(),
            Actor::Staff(staff.staff_id),
            id,
            reason,
        )
        .await
        {
            Ok(v) => Ok(RetireProductVersionPayload {
                product_version: Some(ProductVersion(v, None)),
                user_errors: vec![],
            }),
            Err(e) => Ok(RetireProductVersionPayload {
                product_version: None,
                user_errors: pricing_user_errors(ctx, e, STORED)?,
            }),
        }
    }
}
