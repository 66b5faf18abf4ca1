//! Rate tables: the base hourly rate per vehicle type and the rating factors, and the checks that
//! make a table usable.
//!
//! Invariants of a table that passed [`RateTable::validate`]:
//! - every factor is an integer in basis points (10 000 = ×1), between 1 and [`MAX_FACTOR_BP`];
//!   every base rate is a whole number of minor units between 1 and [`MAX_BASE_RATE_MINOR`];
//!   so a full product of factors fits in an `i128` and is exact;
//! - every eligible vehicle type has a base rate, and only eligible types have one;
//! - the time bands cover each minute of the day exactly once (a band may wrap past midnight);
//! - the age bands start at the minimum age, the years-licensed and claims bands at 0; each set is
//!   contiguous (no gaps, no overlaps); the age and years-licensed sets are open-ended; the claims
//!   set may end at a maximum, above which drivers are declined;
//! - region areas are UK postcode areas (one or two capital letters), with a default factor for
//!   every area not listed.

use accounts::VehicleType;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shared::FieldError;
use std::collections::BTreeMap;
use std::fmt;

/// ×1, in basis points.
pub const FACTOR_ONE_BP: u32 = 10_000;
/// The largest factor a table may hold: ×10.
pub const MAX_FACTOR_BP: u32 = 100_000;
/// The largest base hourly rate a table may hold, in minor units (£1,000).
pub const MAX_BASE_RATE_MINOR: i64 = 100_000;
/// Minutes in a day.
pub const MINUTES_PER_DAY: u16 = 1_440;

/// Writes a factor as `×1.2500`.
pub fn format_factor(bp: u32) -> String {
    format!("×{}.{:04}", bp / FACTOR_ONE_BP, bp % FACTOR_ONE_BP)
}

/// A wall-clock time of day to the minute, written `HH:MM` (00:00 to 23:59).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// The time `hour:minute`, if valid.
    pub fn new(hour: u16, minute: u16) -> Option<Self> {
        (hour < 24 && minute < 60).then_some(Self(hour * 60 + minute))
    }

    /// Minutes since midnight, 0 to 1439.
    pub fn minutes(self) -> u16 {
        self.0
    }

    /// Parses `HH:MM`.
    pub fn parse(s: &str) -> Option<Self> {
        let (h, m) = s.split_once(':')?;
        if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        Self::new(h.parse().ok()?, m.parse().ok()?)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TimeOfDay::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("expected HH:MM, got {s:?}")))
    }
}

/// A window of the day with its factor: `start` inclusive, `end` exclusive, wrapping past midnight
/// when `end` is not after `start` (22:00–06:00). `start == end` is the whole day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeBand {
    /// A short name shown in explanations, e.g. `night`.
    pub name: String,
    /// First minute of the band (UK local time).
    pub start: TimeOfDay,
    /// First minute after the band.
    pub end: TimeOfDay,
    /// The factor, in basis points.
    pub factor_bp: u32,
}

impl TimeBand {
    /// Whether the band holds this minute of the day.
    pub fn contains(&self, minute: u16) -> bool {
        let (s, e) = (self.start.0, self.end.0);
        match s.cmp(&e) {
            std::cmp::Ordering::Less => (s..e).contains(&minute),
            std::cmp::Ordering::Greater => minute >= s || minute < e,
            std::cmp::Ordering::Equal => true,
        }
    }

    /// `night 22:00-06:00`.
    pub fn label(&self) -> String {
        format!("{} {}-{}", self.name, self.start, self.end)
    }
}

/// One band of a driver factor: `from` to `to` inclusive (`to` absent: no upper end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// Lowest value in the band.
    pub from: u32,
    /// Highest value in the band; `None` for "and above".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    /// The factor, in basis points.
    pub factor_bp: u32,
}

impl Band {
    /// Whether `value` falls in the band.
    pub fn contains(&self, value: u32) -> bool {
        value >= self.from && self.to.is_none_or(|to| value <= to)
    }

    /// `25-29`, `3`, `70+`.
    pub fn label(&self) -> String {
        match self.to {
            None => format!("{}+", self.from),
            Some(to) if to == self.from => format!("{to}"),
            Some(to) => format!("{}-{to}", self.from),
        }
    }

    /// The band of `value` among `bands`, if any.
    pub fn find(bands: &[Band], value: u32) -> Option<&Band> {
        bands.iter().find(|b| b.contains(value))
    }
}

/// Region factors by UK postcode area (`E`, `SW`, `M`, …), with a default for areas not listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionFactors {
    /// The factor of every area not listed, in basis points.
    pub default_bp: u32,
    /// Factors of listed areas, in basis points.
    #[serde(default)]
    pub areas: BTreeMap<String, u32>,
}

impl RegionFactors {
    /// The factor of an area and whether it came from the list (`false`: the default).
    pub fn factor_for(&self, area: &str) -> (u32, bool) {
        match self.areas.get(area) {
            Some(f) => (*f, true),
            None => (self.default_bp, false),
        }
    }
}

/// Everything a version rates with. Stored as JSONB on the version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateTable {
    /// Base hourly rate of each eligible vehicle type, in minor units.
    pub base_hourly_rates: BTreeMap<VehicleType, i64>,
    /// Region factors by postcode area.
    pub region_factors: RegionFactors,
    /// Time-of-day bands (UK local time), covering the day exactly once.
    pub time_bands: Vec<TimeBand>,
    /// Driver age bands, from the minimum age up.
    pub age_bands: Vec<Band>,
    /// Years-licensed bands, from 0 up.
    pub years_licensed_bands: Vec<Band>,
    /// Claims-in-the-last-5-years bands, from 0; above the last band a driver is declined.
    pub claims_bands: Vec<Band>,
}

fn invalid(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError::field(field, code, message)
}

fn check_factor(field: String, bp: u32) -> Result<(), FieldError> {
    if bp == 0 || bp > MAX_FACTOR_BP {
        return Err(invalid(
            field,
            "INVALID_FACTOR",
            format!(
                "A factor must be between 1 and {MAX_FACTOR_BP} basis points (10000 = ×1), not {bp}."
            ),
        ));
    }
    Ok(())
}

/// Whether `s` is a UK postcode area: one or two capital letters.
pub fn is_postcode_area(s: &str) -> bool {
    (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// The postcode area of a full postcode (`SW1A 1AA` → `SW`) or of a bare area (`sw` → `SW`).
pub fn postcode_area(postcode: &str) -> Option<String> {
    let t = postcode.trim();
    let letters = t.bytes().take_while(u8::is_ascii_alphabetic).count();
    if !(1..=2).contains(&letters) {
        return None;
    }
    let rest = &t[letters..];
    if !(rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_digit())) {
        return None;
    }
    Some(t[..letters].to_ascii_uppercase())
}

/// Checks one set of driver-factor bands: each band well formed, contiguous from `first`, and
/// open-ended when `open_ended` is asked for.
fn check_bands(
    field: &str,
    what: &str,
    bands: &[Band],
    first: u32,
    open_ended: bool,
) -> Result<(), FieldError> {
    if bands.is_empty() {
        return Err(invalid(
            field,
            "BAND_COVERAGE",
            format!("Give at least one {what} band."),
        ));
    }
    for (i, b) in bands.iter().enumerate() {
        check_factor(format!("{field}[{i}].factorBp"), b.factor_bp)?;
        if let Some(to) = b.to
            && to < b.from
        {
            return Err(invalid(
                format!("{field}[{i}]"),
                "INVALID_BAND",
                format!("The {what} band {}-{to} ends before it starts.", b.from),
            ));
        }
    }
    let mut sorted: Vec<(usize, &Band)> = bands.iter().enumerate().collect();
    sorted.sort_by_key(|(_, b)| b.from);
    let (i0, b0) = sorted[0];
    if b0.from != first {
        return Err(invalid(
            format!("{field}[{i0}]"),
            "BAND_COVERAGE",
            format!(
                "The {what} bands must start at {first}; the first starts at {}.",
                b0.from
            ),
        ));
    }
    for pair in sorted.windows(2) {
        let ((_, prev), (i, next)) = (pair[0], pair[1]);
        let Some(prev_to) = prev.to else {
            return Err(invalid(
                format!("{field}[{i}]"),
                "BAND_OVERLAP",
                format!(
                    "The {what} band {} overlaps {} (which has no upper end).",
                    next.label(),
                    prev.label()
                ),
            ));
        };
        if next.from <= prev_to {
            return Err(invalid(
                format!("{field}[{i}]"),
                "BAND_OVERLAP",
                format!(
                    "The {what} bands {} and {} overlap.",
                    prev.label(),
                    next.label()
                ),
            ));
        }
        if next.from > prev_to + 1 {
            return Err(invalid(
                format!("{field}[{i}]"),
                "BAND_GAP",
                format!(
                    "The {what} bands leave a gap: {} to {} is in no band.",
                    prev_to + 1,
                    next.from - 1
                ),
            ));
        }
    }
    let (il, last) = sorted[sorted.len() - 1];
    if open_ended && last.to.is_some() {
        return Err(invalid(
            format!("{field}[{il}]"),
            "BAND_COVERAGE",
            format!(
                "The last {what} band must have no upper end (it is {}).",
                last.label()
            ),
        ));
    }
    Ok(())
}

fn check_time_bands(bands: &[TimeBand]) -> Result<(), FieldError> {
    const FIELD: &str = "rateTable.timeBands";
    if bands.is_empty() {
        return Err(invalid(
            FIELD,
            "TIME_BAND_GAP",
            "Give time bands covering the whole day.",
        ));
    }
    let mut owner: Vec<Option<usize>> = vec![None; usize::from(MINUTES_PER_DAY)];
    for (i, band) in bands.iter().enumerate() {
        check_factor(format!("{FIELD}[{i}].factorBp"), band.factor_bp)?;
        let name = band.name.trim();
        if name.is_empty() || name.chars().count() > 40 || name.chars().any(char::is_control) {
            return Err(invalid(
                format!("{FIELD}[{i}].name"),
                "INVALID_TIME_BAND",
                "A time band needs a name of 1 to 40 characters.",
            ));
        }
        for minute in 0..MINUTES_PER_DAY {
            if band.contains(minute) {
                let slot = &mut owner[usize::from(minute)];
                if let Some(other) = *slot {
                    return Err(invalid(
                        format!("{FIELD}[{i}]"),
                        "TIME_BAND_OVERLAP",
                        format!(
                            "The time bands {} and {} overlap at {}.",
                            bands[other].label(),
                            band.label(),
                            TimeOfDay(minute)
                        ),
                    ));
                }
                *slot = Some(i);
            }
        }
    }
    if let Some(first_gap) = owner.iter().position(Option::is_none) {
        let gap_len = owner[first_gap..]
            .iter()
            .take_while(|o| o.is_none())
            .count();
        let end = (first_gap + gap_len) % usize::from(MINUTES_PER_DAY);
        let start = u16::try_from(first_gap).unwrap_or(0);
        let end = u16::try_from(end).unwrap_or(0);
        return Err(invalid(
            FIELD,
            "TIME_BAND_GAP",
            format!(
                "The time bands leave a gap: {}-{} is in no band.",
                TimeOfDay(start),
                TimeOfDay(end)
            ),
        ));
    }
    Ok(())
}

impl RateTable {
    /// Checks the table against the version's minimum age and eligible vehicle types.
    /// Returns the first problem as a [`FieldError`] naming the offending entry.
    pub fn validate(&self, minimum_age: u32, eligible: &[VehicleType]) -> Result<(), FieldError> {
        for t in eligible {
            match self.base_hourly_rates.get(t) {
                None => {
                    return Err(invalid(
                        "rateTable.baseHourlyRates",
                        "MISSING_BASE_RATE",
                        format!("Vehicle type {t} is eligible but has no base rate."),
                    ));
                }
                Some(&rate) if !(1..=MAX_BASE_RATE_MINOR).contains(&rate) => {
                    return Err(invalid(
                        format!("rateTable.baseHourlyRates.{t}"),
                        "INVALID_BASE_RATE",
                        format!(
                            "A base hourly rate must be between 1 and {MAX_BASE_RATE_MINOR} minor units, not {rate}."
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(t) = self
            .base_hourly_rates
            .keys()
            .find(|t| !eligible.contains(t))
        {
            return Err(invalid(
                format!("rateTable.baseHourlyRates.{t}"),
                "UNEXPECTED_BASE_RATE",
                format!("Vehicle type {t} has a base rate but is not eligible."),
            ));
        }
        check_factor(
            "rateTable.regionFactors.defaultBp".into(),
            self.region_factors.default_bp,
        )?;
        for (area, bp) in &self.region_factors.areas {
            if !is_postcode_area(area) {
                return Err(invalid(
                    format!("rateTable.regionFactors.areas.{area}"),
                    "INVALID_REGION",
                    format!(
                        "{area:?} is not a UK postcode area (one or two capital letters, e.g. E, SW)."
                    ),
                ));
            }
            check_factor(format!("rateTable.regionFactors.areas.{area}"), *bp)?;
        }
        check_time_bands(&self.time_bands)?;
        check_bands(
            "rateTable.ageBands",
            "age",
            &self.age_bands,
            minimum_age,
            true,
        )?;
        check_bands(
            "rateTable.yearsLicensedBands",
            "years-licensed",
            &self.years_licensed_bands,
            0,
            true,
        )?;
        check_bands(
            "rateTable.claimsBands",
            "claims",
            &self.claims_bands,
            0,
            false,
        )?;
        Ok(())
    }

    /// The time band holding this minute of the day (UK local time).
    pub fn time_band_at(&self, minute: u16) -> Option<&TimeBand> {
        self.time_bands.iter().find(|b| b.contains(minute))
    }

    /// The most claims a driver may have had and still be rated; `None` when unlimited.
    pub fn max_claims(&self) -> Option<u32> {
        let mut max = Some(0);
        for b in &self.claims_bands {
            match (b.to, max) {
                (None, _) => return None,
                (Some(to), Some(m)) => max = Some(to.max(m)),
                (Some(_), None) => {}
            }
        }
        max
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn band(from: u32, to: Option<u32>) -> Band {
        Band {
            from,
            to,
            factor_bp: FACTOR_ONE_BP,
        }
    }

    fn tb(name: &str, start: &str, end: &str) -> TimeBand {
        TimeBand {
            name: name.into(),
            start: TimeOfDay::parse(start).unwrap(),
            end: TimeOfDay::parse(end).unwrap(),
            factor_bp: 12_500,
        }
    }

    #[test]
    fn times_parse_and_print() {
        assert_eq!(TimeOfDay::parse("22:00").unwrap().minutes(), 1320);
        assert_eq!(TimeOfDay::parse("06:05").unwrap().to_string(), "06:05");
        for bad in ["24:00", "6:00", "06:60", "0600", "aa:bb", ""] {
            assert!(TimeOfDay::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn wrapping_time_bands_and_coverage() {
        let night = tb("night", "22:00", "06:00");
        assert!(night.contains(23 * 60));
        assert!(night.contains(0));
        assert!(night.contains(5 * 60 + 59));
        assert!(!night.contains(6 * 60));
        assert!(!night.contains(12 * 60));
        let ok = vec![tb("day", "06:00", "22:00"), night.clone()];
        check_time_bands(&ok).unwrap();
        let gap = vec![tb("day", "06:00", "21:00"), night.clone()];
        let e = check_time_bands(&gap).unwrap_err();
        assert_eq!(e.code, "TIME_BAND_GAP");
        assert!(e.message.contains("21:00-22:00"), "{}", e.message);
        let overlap = vec![tb("day", "05:00", "22:00"), night];
        assert_eq!(
            check_time_bands(&overlap).unwrap_err().code,
            "TIME_BAND_OVERLAP"
        );
        check_time_bands(&[tb("all", "00:00", "00:00")]).unwrap();
    }

    #[test]
    fn bands_must_be_contiguous_from_their_start() {
        let ok = [band(18, Some(24)), band(25, None)];
        check_bands("f", "age", &ok, 18, true).unwrap();
        // order given does not matter
        check_bands("f", "age", &[ok[1], ok[0]], 18, true).unwrap();
        let gap = [band(18, Some(24)), band(26, None)];
        assert_eq!(
            check_bands("f", "age", &gap, 18, true).unwrap_err().code,
            "BAND_GAP"
        );
        let overlap = [band(18, Some(25)), band(25, None)];
        assert_eq!(
            check_bands("f", "age", &overlap, 18, true)
                .unwrap_err()
                .code,
            "BAND_OVERLAP"
        );
        let open_twice = [band(18, None), band(25, None)];
        assert_eq!(
            check_bands("f", "age", &open_twice, 18, true)
                .unwrap_err()
                .code,
            "BAND_OVERLAP"
        );
        let late_start = [band(21, None)];
        assert_eq!(
            check_bands("f", "age", &late_start, 18, true)
                .unwrap_err()
                .code,
            "BAND_COVERAGE"
        );
        let closed = [band(0, Some(2))];
        assert_eq!(
            check_bands("f", "claims", &closed, 0, true)
                .unwrap_err()
                .code,
            "BAND_COVERAGE"
        );
        check_bands("f", "claims", &closed, 0, false).unwrap();
        let backwards = [band(0, Some(2)), band(5, Some(3))];
        assert_eq!(
            check_bands("f", "claims", &backwards, 0, false)
                .unwrap_err()
                .code,
            "INVALID_BAND"
        );
        let zero = [Band {
            from: 0,
            to: None,
            factor_bp: 0,
        }];
        assert_eq!(
            check_bands("f", "claims", &zero, 0, false)
                .unwrap_err()
                .code,
            "INVALID_FACTOR"
        );
    }

    #[test]
    fn postcode_areas() {
        assert_eq!(postcode_area("SW1A 1AA").as_deref(), Some("SW"));
        assert_eq!(postcode_area("e1 6an").as_deref(), Some("E"));
        assert_eq!(postcode_area("M1 1AE").as_deref(), Some("M"));
        assert_eq!(postcode_area("b").as_deref(), Some("B"));
        assert_eq!(postcode_area("  LS "), Some("LS".into()));
        assert_eq!(postcode_area("GIR 0AA"), None);
        assert_eq!(postcode_area("123"), None);
        assert_eq!(postcode_area(""), None);
        assert!(is_postcode_area("SW"));
        assert!(!is_postcode_area("sw"));
        assert!(!is_postcode_area("SWX"));
    }

    #[test]
    fn labels() {
        assert_eq!(band(25, Some(29)).label(), "25-29");
        assert_eq!(band(3, Some(3)).label(), "3");
        assert_eq!(band(70, None).label(), "70+");
        assert_eq!(format_factor(12_500), "×1.2500");
        assert_eq!(format_factor(9_500), "×0.9500");
        assert_eq!(tb("night", "22:00", "06:00").label(), "night 22:00-06:00");
    }
}
