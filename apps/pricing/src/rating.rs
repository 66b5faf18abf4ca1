//! Rating: the hourly rate of one driver, vehicle and start time on one product version.
//!
//! Pure: no I/O, no clock. The rate is
//! `base rate × region × time band × age × years licensed × claims`, multiplied exactly in
//! integers (factors are basis points, so the product is a fraction over 10 000⁵) and rounded to
//! whole minor units once, at the end, by [`RATE_ROUNDING`]. Time bands are read on the UK wall
//! clock ([`RATING_TIME_ZONE`]), so the night band starts at 22:00 in summer and in winter alike.

use crate::rate_table::{Band, FACTOR_ONE_BP, format_factor, postcode_area};
use crate::version::{ProductVersion, VersionTerms};
use accounts::VehicleType;
use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use shared::Money;
use shared::money::{Rounding, round_div};
use std::fmt;

/// How the exact rate becomes whole minor units: halves round up (a driver-facing price).
pub const RATE_ROUNDING: Rounding = Rounding::HalfUp;

/// The wall clock time bands are read on.
pub const RATING_TIME_ZONE: Tz = chrono_tz::Europe::London;

/// The lowest hourly rate publication accepts for any combination of factors, in minor units.
pub const MIN_SANE_HOURLY_MINOR: i64 = 10;
/// The highest hourly rate publication accepts for any combination of factors, in minor units.
pub const MAX_SANE_HOURLY_MINOR: i64 = 5_000;

/// The facts a rate depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatingInput {
    /// The vehicle's type.
    pub vehicle_type: VehicleType,
    /// The driver's age in whole years on the (UK) day cover starts.
    pub driver_age: u32,
    /// Whole years since the driver's licence was issued, on that day.
    pub years_licensed: u32,
    /// Claims in the last five years.
    pub claims_5y: u32,
    /// The driver's postcode (`SW1A 1AA`) or just its area (`SW`).
    pub postcode: String,
    /// When cover starts.
    pub start: DateTime<Utc>,
}

/// Which rating factor an explanation line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    /// The base hourly rate of the vehicle type.
    BaseRate,
    /// The postcode-area factor.
    Region,
    /// The time-of-day factor.
    TimeBand,
    /// The driver-age factor.
    Age,
    /// The years-licensed factor.
    YearsLicensed,
    /// The claims-in-5-years factor.
    Claims,
}

impl FactorKind {
    /// How the factor is named in explanations.
    pub fn title(self) -> &'static str {
        match self {
            FactorKind::BaseRate => "base rate",
            FactorKind::Region => "region",
            FactorKind::TimeBand => "time band",
            FactorKind::Age => "age",
            FactorKind::YearsLicensed => "years licensed",
            FactorKind::Claims => "claims in 5 years",
        }
    }
}

/// One line of a rate's explanation: the band that applied and its amount or multiplier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorLine {
    /// Which factor.
    pub factor: FactorKind,
    /// The band that applied: `car`, `E`, `default for KT`, `night 22:00-06:00`, `25-29`, `5+`.
    pub band: String,
    /// For the base rate: the amount per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// For a factor: the multiplier in basis points (10 000 = ×1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier_bp: Option<u32>,
}

impl fmt::Display for FactorLine {
    /// `base rate (car): £1.80`, `region (E): ×1.3000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): ", self.factor.title(), self.band)?;
        match (self.amount, self.multiplier_bp) {
            (Some(amount), _) => write!(f, "{amount}"),
            (None, Some(bp)) => f.write_str(&format_factor(bp)),
            (None, None) => f.write_str("-"),
        }
    }
}

/// A rate: the hourly price and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rate {
    /// The price of one hour of cover, rounded once by [`RATE_ROUNDING`].
    pub hourly: Money,
    /// One line per factor, in the order applied.
    pub explanation: Vec<FactorLine>,
}

impl Rate {
    /// The explanation as sentences, one per line.
    pub fn explanation_lines(&self) -> Vec<String> {
        self.explanation.iter().map(ToString::to_string).collect()
    }
}

/// Why a rate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeclineCode {
    /// The product does not cover this vehicle type.
    VehicleNotCovered,
    /// The driver is younger than the product's minimum age.
    UnderMinimumAge,
    /// The driver has had more claims than the product accepts.
    TooManyClaims,
    /// The postcode has no recognisable area.
    InvalidPostcode,
    /// The rate table cannot rate this input (a table that passed validation never gives this).
    RateUnavailable,
}

impl DeclineCode {
    /// Every code.
    pub const ALL: [DeclineCode; 5] = [
        DeclineCode::VehicleNotCovered,
        DeclineCode::UnderMinimumAge,
        DeclineCode::TooManyClaims,
        DeclineCode::InvalidPostcode,
        DeclineCode::RateUnavailable,
    ];

    /// The stable code, e.g. `UNDER_MINIMUM_AGE`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineCode::VehicleNotCovered => "VEHICLE_NOT_COVERED",
            DeclineCode::UnderMinimumAge => "UNDER_MINIMUM_AGE",
            DeclineCode::TooManyClaims => "TOO_MANY_CLAIMS",
            DeclineCode::InvalidPostcode => "INVALID_POSTCODE",
            DeclineCode::RateUnavailable => "RATE_UNAVAILABLE",
        }
    }

    /// The code with this name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for DeclineCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal to rate, with a reason a driver can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Decline {
    /// The stable reason code.
    pub code: DeclineCode,
    /// A sentence for people.
    pub reason: String,
}

impl Decline {
    fn new(code: DeclineCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Rates `input` on a product version. See [`VersionTerms::rate`].
pub fn rate(version: &ProductVersion, input: &RatingInput) -> Result<Rate, Decline> {
    version.terms.rate(input)
}

fn band_line(kind: FactorKind, bands: &[Band], value: u32) -> Result<(FactorLine, u32), Decline> {
    let band = Band::find(bands, value).ok_or_else(|| {
        Decline::new(
            DeclineCode::RateUnavailable,
            format!("No {} band holds {value}.", kind.title()),
        )
    })?;
    Ok((
        FactorLine {
            factor: kind,
            band: band.label(),
            amount: None,
            multiplier_bp: Some(band.factor_bp),
        },
        band.factor_bp,
    ))
}

/// The minute of the UK day at `at`.
pub fn uk_minute_of_day(at: DateTime<Utc>) -> u16 {
    let local = at.with_timezone(&RATING_TIME_ZONE);
    // hour < 24 and minute < 60, so this fits.
    u16::try_from(local.hour() * 60 + local.minute()).unwrap_or(0)
}

impl VersionTerms {
    /// Rates `input`: the hourly price with one explanation line per factor, or a decline.
    ///
    /// Declines: `VEHICLE_NOT_COVERED`, `UNDER_MINIMUM_AGE`, `TOO_MANY_CLAIMS`,
    /// `INVALID_POSTCODE`; `RATE_UNAVAILABLE` only for a table that never passed validation.
    pub fn rate(&self, input: &RatingInput) -> Result<Rate, Decline> {
        let rules = &self.rules;
        let table = &self.rate_table;
        if !rules.eligible_vehicle_types.contains(&input.vehicle_type) {
            return Err(Decline::new(
                DeclineCode::VehicleNotCovered,
                format!("This product does not cover a {}.", input.vehicle_type),
            ));
        }
        if input.driver_age < rules.minimum_age {
            return Err(Decline::new(
                DeclineCode::UnderMinimumAge,
                format!(
                    "Drivers must be at least {} for this product.",
                    rules.minimum_age
                ),
            ));
        }
        if let Some(max) = table.max_claims()
            && input.claims_5y > max
        {
            return Err(Decline::new(
                DeclineCode::TooManyClaims,
                format!("This product accepts at most {max} claims in the last 5 years."),
            ));
        }
        let area = postcode_area(&input.postcode).ok_or_else(|| {
            Decline::new(
                DeclineCode::InvalidPostcode,
                "The postcode has no recognisable postcode area.",
            )
        })?;

        let base_minor = *table
            .base_hourly_rates
            .get(&input.vehicle_type)
            .ok_or_else(|| {
                Decline::new(
                    DeclineCode::RateUnavailable,
                    format!("No base rate for {}.", input.vehicle_type),
                )
            })?;
        let (region_bp, listed) = table.region_factors.factor_for(&area);
        let minute = uk_minute_of_day(input.start);
        let time_band = table.time_band_at(minute).ok_or_else(|| {
            Decline::new(
                DeclineCode::RateUnavailable,
                "No time band holds the start.",
            )
        })?;
        let (age_line, age_bp) = band_line(FactorKind::Age, &table.age_bands, input.driver_age)?;
        let (years_line, years_bp) = band_line(
            FactorKind::YearsLicensed,
            &table.years_licensed_bands,
            input.years_licensed,
        )?;
        let (claims_line, claims_bp) =
            band_line(FactorKind::Claims, &table.claims_bands, input.claims_5y)?;

        let factors = [region_bp, time_band.factor_bp, age_bp, years_bp, claims_bp];
        let hourly_minor = exact_rate(base_minor, &factors).ok_or_else(|| {
            Decline::new(DeclineCode::RateUnavailable, "The rate is out of range.")
        })?;

        let explanation = vec![
            FactorLine {
                factor: FactorKind::BaseRate,
                band: input.vehicle_type.as_str().to_owned(),
                amount: Some(Money {
                    minor: base_minor,
                    currency: self.currency,
                }),
                multiplier_bp: None,
            },
            FactorLine {
                factor: FactorKind::Region,
                band: if listed {
                    area
                } else {
                    format!("default for {area}")
                },
                amount: None,
                multiplier_bp: Some(region_bp),
            },
            FactorLine {
                factor: FactorKind::TimeBand,
                band: time_band.label(),
                amount: None,
                multiplier_bp: Some(time_band.factor_bp),
            },
            age_line,
            years_line,
            claims_line,
        ];
        Ok(Rate {
            hourly: Money {
                minor: hourly_minor,
                currency: self.currency,
            },
            explanation,
        })
    }

    /// The lowest and highest hourly rates any combination of factors can give, per eligible
    /// vehicle type, in minor units. Every factor is positive, so the extremes are reached by
    /// taking each factor's smallest (largest) value.
    pub fn rate_range(&self) -> Vec<RateRange> {
        let t = &self.rate_table;
        let regions: Vec<u32> = std::iter::once(t.region_factors.default_bp)
            .chain(t.region_factors.areas.values().copied())
            .collect();
        let sets: [Vec<u32>; 5] = [
            regions,
            t.time_bands.iter().map(|b| b.factor_bp).collect(),
            t.age_bands.iter().map(|b| b.factor_bp).collect(),
            t.years_licensed_bands.iter().map(|b| b.factor_bp).collect(),
            t.claims_bands.iter().map(|b| b.factor_bp).collect(),
        ];
        let mut lows = [FACTOR_ONE_BP; 5];
        let mut highs = [FACTOR_ONE_BP; 5];
        for ((low, high), set) in lows.iter_mut().zip(highs.iter_mut()).zip(&sets) {
            *low = set.iter().copied().min().unwrap_or(FACTOR_ONE_BP);
            *high = set.iter().copied().max().unwrap_or(FACTOR_ONE_BP);
        }
        self.rules
            .eligible_vehicle_types
            .iter()
            .filter_map(|vt| {
                let base = *t.base_hourly_rates.get(vt)?;
                Some(RateRange {
                    vehicle_type: *vt,
                    lowest_minor: exact_rate(base, &lows),
                    highest_minor: exact_rate(base, &highs),
                })
            })
            .collect()
    }
}

/// The lowest and highest hourly rates of one vehicle type across every combination of factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateRange {
    /// The vehicle type.
    pub vehicle_type: VehicleType,
    /// The lowest rate, in minor units (`None` when it could not be computed).
    pub lowest_minor: Option<i64>,
    /// The highest rate, in minor units.
    pub highest_minor: Option<i64>,
}

/// `base × f1 × … × fn / 10 000ⁿ`, rounded once by [`RATE_ROUNDING`]; `None` on overflow.
pub fn exact_rate(base_minor: i64, factors_bp: &[u32]) -> Option<i64> {
    let mut numerator = i128::from(base_minor);
    let mut denominator: i128 = 1;
    for f in factors_bp {
        numerator = numerator.checked_mul(i128::from(*f))?;
        denominator = denominator.checked_mul(i128::from(FACTOR_ONE_BP))?;
    }
    round_div(numerator, denominator, RATE_ROUNDING)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::seed::demo_products;
    use chrono::TimeZone;

    fn food() -> VersionTerms {
        demo_products()
            .unwrap()
            .into_iter()
            .find(|p| p.code == "food_delivery_hourly")
            .unwrap()
            .terms
    }

    fn input() -> RatingInput {
        RatingInput {
            vehicle_type: VehicleType::Car,
            driver_age: 35,
            years_licensed: 10,
            claims_5y: 0,
            postcode: "E1 6AN".into(),
            start: Utc.with_ymd_and_hms(2026, 11, 23, 14, 0, 0).unwrap(),
        }
    }

    #[test]
    fn exact_arithmetic_rounds_once_half_up() {
        // 150 × 1.25 × 1.1 = 206.25 → 206; rounding each step would give 188 → 207.
        assert_eq!(exact_rate(150, &[12_500, 11_000]), Some(206));
        // 101 × 0.5 = 50.5 → 51 (half up)
        assert_eq!(exact_rate(101, &[5_000]), Some(51));
        assert_eq!(exact_rate(99, &[]), Some(99));
        assert_eq!(exact_rate(i64::MAX, &[u32::MAX; 5]), None);
    }

    #[test]
    fn time_bands_follow_the_uk_clock() {
        // 21:30 UTC in July is 22:30 BST: night. 21:30 UTC in November is 21:30 GMT: evening.
        let summer = Utc.with_ymd_and_hms(2026, 7, 1, 21, 30, 0).unwrap();
        let winter = Utc.with_ymd_and_hms(2026, 11, 23, 21, 30, 0).unwrap();
        assert_eq!(uk_minute_of_day(summer), 22 * 60 + 30);
        assert_eq!(uk_minute_of_day(winter), 21 * 60 + 30);
        let terms = food();
        let at = |start| {
            terms
                .rate(&RatingInput { start, ..input() })
                .unwrap()
                .explanation[2]
                .band
                .clone()
        };
        assert!(at(summer).starts_with("night"), "{}", at(summer));
        assert!(at(winter).starts_with("evening"), "{}", at(winter));
    }

    #[test]
    fn explanation_names_every_factor_in_order() {
        let rate = food().rate(&input()).unwrap();
        let kinds: Vec<FactorKind> = rate.explanation.iter().map(|l| l.factor).collect();
        assert_eq!(
            kinds,
            [
                FactorKind::BaseRate,
                FactorKind::Region,
                FactorKind::TimeBand,
                FactorKind::Age,
                FactorKind::YearsLicensed,
                FactorKind::Claims
            ]
        );
        assert!(rate.explanation_lines()[0].starts_with("base rate (car): £"));
        let default = food()
            .rate(&RatingInput {
                postcode: "KT1 1AA".into(),
                ..input()
            })
            .unwrap();
        assert_eq!(default.explanation[1].band, "default for KT");
    }

    #[test]
    fn ineligible_inputs_are_declined_with_codes() {
        let t = food();
        let code = |i: RatingInput| t.rate(&i).unwrap_err().code;
        assert_eq!(
            code(RatingInput {
                vehicle_type: VehicleType::Van,
                ..input()
            }),
            DeclineCode::VehicleNotCovered
        );
        assert_eq!(
            code(RatingInput {
                driver_age: 17,
                ..input()
            }),
            DeclineCode::UnderMinimumAge
        );
        assert_eq!(
            code(RatingInput {
                claims_5y: 9,
                ..input()
            }),
            DeclineCode::TooManyClaims
        );
        assert_eq!(
            code(RatingInput {
                postcode: "??".into(),
                ..input()
            }),
            DeclineCode::InvalidPostcode
        );
    }

    #[test]
    fn rate_range_brackets_every_rate() {
        let t = food();
        let ranges = t.rate_range();
        assert_eq!(ranges.len(), t.rules.eligible_vehicle_types.len());
        for r in ranges {
            let rate = t
                .rate(&RatingInput {
                    vehicle_type: r.vehicle_type,
                    ..input()
                })
                .unwrap()
                .hourly
                .minor;
            assert!(r.lowest_minor.unwrap() <= rate && rate <= r.highest_minor.unwrap());
        }
    }
}
