//! Rating test cases: inputs with the hourly rate (or decline) and explanation an underwriter
//! expects, kept as data. A draft version carries its cases; publishing runs them all and refuses
//! the version if any fails.
//!
//! The file format (TOML), one `[[case]]` per case:
//!
//! ```toml
//! product = "food_delivery_hourly"
//!
//! [[case]]
//! name = "Experienced car driver, East London, weekday afternoon"
//! vehicle_type = "car"
//! age = 35
//! years_licensed = 12
//! claims_5y = 0
//! postcode = "E1 6AN"
//! start = "2026-11-23T14:00:00Z"      # RFC 3339; any offset
//! expect_hourly_minor = 234
//! expect_explanation = [              # optional: when given, must match line for line
//!   "base rate (car): £1.80",
//!   "region (E): ×1.3000",
//!   "time band (day 06:00-18:00): ×1.0000",
//!   "age (30-59): ×1.0000",
//!   "years licensed (5+): ×1.0000",
//!   "claims in 5 years (0): ×1.0000",
//! ]
//!
//! [[case]]
//! name = "Seventeen-year-old is declined"
//! # … inputs …
//! expect_decline = "UNDER_MINIMUM_AGE"
//! ```

use crate::rating::{DeclineCode, RatingInput};
use crate::version::VersionTerms;
use accounts::VehicleType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::FieldError;
use std::fmt;

/// The most cases one version may carry.
pub const MAX_CASES: usize = 1_000;

/// One rating test case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatingCase {
    /// What the case is about, unique within a version.
    pub name: String,
    /// The vehicle type.
    pub vehicle_type: VehicleType,
    /// The driver's age in whole years.
    pub age: u32,
    /// Whole years licensed.
    pub years_licensed: u32,
    /// Claims in the last five years.
    pub claims_5y: u32,
    /// A postcode or postcode area.
    pub postcode: String,
    /// When cover starts.
    pub start: DateTime<Utc>,
    /// The expected hourly rate, in minor units (exclusive with `expect_decline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_hourly_minor: Option<i64>,
    /// The expected explanation lines (optional, only with `expect_hourly_minor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_explanation: Option<Vec<String>>,
    /// The expected decline code, e.g. `UNDER_MINIMUM_AGE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_decline: Option<String>,
}

impl RatingCase {
    /// The case's inputs as a rating input.
    pub fn input(&self) -> RatingInput {
        RatingInput {
            vehicle_type: self.vehicle_type,
            driver_age: self.age,
            years_licensed: self.years_licensed,
            claims_5y: self.claims_5y,
            postcode: self.postcode.clone(),
            start: self.start,
        }
    }
}

/// A file of cases for one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatingCaseFile {
    /// The product code the cases are for.
    pub product: String,
    /// The cases, in order.
    #[serde(rename = "case", default)]
    pub cases: Vec<RatingCase>,
}

/// Parses and checks a case file. Errors: `INVALID_TEST_CASES` (field `testCases`, with the TOML
/// error or the case at fault).
pub fn parse_rating_cases(text: &str) -> Result<RatingCaseFile, FieldError> {
    let file: RatingCaseFile = toml::from_str(text).map_err(|e| {
        FieldError::field(
            "testCases",
            "INVALID_TEST_CASES",
            format!("The test cases do not parse: {}", e.message()),
        )
    })?;
    check_cases(&file.cases)?;
    Ok(file)
}

/// Checks a set of cases: names present and unique, exactly one expectation each, known decline
/// codes, at most [`MAX_CASES`]. Errors: `INVALID_TEST_CASES` (field `testCases[i]`).
pub fn check_cases(cases: &[RatingCase]) -> Result<(), FieldError> {
    let bad = |i: usize, message: String| {
        FieldError::field(format!("testCases[{i}]"), "INVALID_TEST_CASES", message)
    };
    if cases.len() > MAX_CASES {
        return Err(FieldError::field(
            "testCases",
            "INVALID_TEST_CASES",
            format!("At most {MAX_CASES} test cases per version."),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, c) in cases.iter().enumerate() {
        let name = c.name.trim();
        if name.is_empty() || name.chars().count() > 200 || name != c.name {
            return Err(bad(
                i,
                "Each case needs a name of 1 to 200 characters.".into(),
            ));
        }
        if !names.insert(name) {
            return Err(bad(i, format!("Two cases are named {name:?}.")));
        }
        match (&c.expect_hourly_minor, &c.expect_decline) {
            (Some(_), None) => {}
            (None, Some(code)) => {
                if DeclineCode::parse(code).is_none() {
                    return Err(bad(i, format!("{name:?}: unknown decline code {code:?}.")));
                }
                if c.expect_explanation.is_some() {
                    return Err(bad(
                        i,
                        format!("{name:?}: a declined case has no explanation."),
                    ));
                }
            }
            _ => {
                return Err(bad(
                    i,
                    format!("{name:?}: give either expect_hourly_minor or expect_decline."),
                ));
            }
        }
    }
    Ok(())
}

/// A case whose outcome differed from what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseFailure {
    /// The case's name.
    pub name: String,
    /// What was expected, as a sentence.
    pub expected: String,
    /// What rating gave, as a sentence.
    pub actual: String,
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: expected {}, got {}",
            self.name, self.expected, self.actual
        )
    }
}

/// Runs one case against the terms; `None` when it passes.
pub fn run_case(terms: &VersionTerms, case: &RatingCase) -> Option<CaseFailure> {
    let fail = |expected: String, actual: String| {
        Some(CaseFailure {
            name: case.name.clone(),
            expected,
            actual,
        })
    };
    let outcome = terms.rate(&case.input());
    match (outcome, &case.expect_hourly_minor, &case.expect_decline) {
        (Ok(rate), Some(hourly), _) => {
            let expected = shared::Money {
                minor: *hourly,
                currency: terms.currency,
            };
            if rate.hourly != expected {
                return fail(format!("{expected}/hour"), format!("{}/hour", rate.hourly));
            }
            if let Some(lines) = &case.expect_explanation {
                let actual = rate.explanation_lines();
                if &actual != lines {
                    return fail(
                        format!("explanation [{}]", lines.join("; ")),
                        format!("explanation [{}]", actual.join("; ")),
                    );
                }
            }
            None
        }
        (Ok(rate), None, Some(code)) => {
            fail(format!("decline {code}"), format!("{}/hour", rate.hourly))
        }
        (Err(decline), Some(hourly), _) => fail(
            format!(
                "{}/hour",
                shared::Money {
                    minor: *hourly,
                    currency: terms.currency
                }
            ),
            format!("decline {} ({})", decline.code, decline.reason),
        ),
        (Err(decline), None, Some(code)) => {
            if decline.code.as_str() == code {
                None
            } else {
                fail(
                    format!("decline {code}"),
                    format!("decline {}", decline.code),
                )
            }
        }
        (_, None, None) => fail("an expectation".into(), "none given".into()),
    }
}

/// Runs every case; returns the failures, in order.
pub fn run_cases(terms: &VersionTerms, cases: &[RatingCase]) -> Vec<CaseFailure> {
    cases.iter().filter_map(|c| run_case(terms, c)).collect()
}

/// A case document as ops paste it: the `[[case]]` tables of a case file, with the `product`
/// line optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDocument {
    #[serde(default)]
    product: Option<String>,
    #[serde(rename = "case", default)]
    cases: Vec<RatingCase>,
}

/// Parses and checks the cases of one product from a case document (the format of
/// `products/<code>.cases.toml`); the `product` line may be left out, and when given must name
/// `product_code`. Errors: `INVALID_TEST_CASES` (field `testCases`, or `testCases[i]` for the
/// case at fault).
pub fn parse_rating_cases_for(
    text: &str,
    product_code: &str,
) -> Result<Vec<RatingCase>, FieldError> {
    let doc: CaseDocument = toml::from_str(text).map_err(|e| {
        FieldError::field(
            "testCases",
            "INVALID_TEST_CASES",
            format!("The test cases do not parse: {}", e.message()),
        )
    })?;
    if let Some(product) = &doc.product
        && product != product_code
    {
        return Err(FieldError::field(
            "testCases",
            "INVALID_TEST_CASES",
            format!("The test cases are for product {product:?}, not {product_code:?}."),
        ));
    }
    check_cases(&doc.cases)?;
    Ok(doc.cases)
}

/// What one case gave, passing or not (for ops checking a draft).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Whether the outcome is the expected one ([`run_case`] found nothing wrong).
    pub passed: bool,
    /// What was expected, as a sentence.
    pub expected: String,
    /// What rating gave, as a sentence.
    pub actual: String,
    /// The hourly rate rating gave, in minor units (`None`: declined).
    pub actual_hourly_minor: Option<i64>,
    /// The decline code rating gave (`None`: rated).
    pub actual_decline: Option<String>,
    /// The explanation lines rating gave (empty when declined).
    pub actual_explanation: Vec<String>,
}

/// Runs one case and describes the outcome whether it passes or not.
pub fn case_result(terms: &VersionTerms, case: &RatingCase) -> CaseResult {
    let money = |minor| shared::Money {
        minor,
        currency: terms.currency,
    };
    let failure = run_case(terms, case);
    let outcome = terms.rate(&case.input());
    let (actual, actual_hourly_minor, actual_decline, actual_explanation) = match &outcome {
        Ok(rate) => (
            format!("{}/hour", rate.hourly),
            Some(rate.hourly.minor),
            None,
            rate.explanation_lines(),
        ),
        Err(d) => (
            format!("decline {} ({})", d.code, d.reason),
            None,
            Some(d.code.as_str().to_owned()),
            Vec::new(),
        ),
    };
    let expected = match (&case.expect_hourly_minor, &case.expect_decline) {
        (Some(h), _) => format!("{}/hour", money(*h)),
        (None, Some(code)) => format!("decline {code}"),
        (None, None) => "an expectation".to_owned(),
    };
    match failure {
        Some(f) => CaseResult {
            name: f.name,
            passed: false,
            expected: f.expected,
            actual: f.actual,
            actual_hourly_minor,
            actual_decline,
            actual_explanation,
        },
        None => CaseResult {
            name: case.name.clone(),
            passed: true,
            expected,
            actual,
            actual_hourly_minor,
            actual_decline,
            actual_explanation,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const ONE: &str = r#"
product = "p"
[[case]]
name = "a"
vehicle_type = "car"
age = 30
years_licensed = 5
claims_5y = 0
postcode = "E1 6AN"
start = "2026-07-01T23:00:00+01:00"
expect_hourly_minor = 100
"#;

    #[test]
    fn case_documents_for_a_product_and_results_of_passing_and_failing_cases() {
        let cases = parse_rating_cases_for(ONE, "p").unwrap();
        assert_eq!(cases.len(), 1);
        let without_product = ONE.replace("product = \"p\"", "");
        assert_eq!(
            parse_rating_cases_for(&without_product, "p").unwrap(),
            cases
        );
        let e = parse_rating_cases_for(ONE, "other").unwrap_err();
        assert_eq!(e.code, "INVALID_TEST_CASES");
        assert!(e.message.contains("other"), "{}", e.message);

        let food = crate::seed::demo_products().unwrap().remove(0);
        for case in &food.cases {
            let r = case_result(&food.terms, case);
            assert!(r.passed, "{r:?}");
            // A decline's actual adds its reason: "decline UNDER_MINIMUM_AGE (…)".
            assert_eq!(r.expected, r.actual.split(" (").next().unwrap(), "{r:?}");
        }
        let mut wrong = food.cases[0].clone();
        wrong.expect_hourly_minor = Some(1);
        let r = case_result(&food.terms, &wrong);
        assert!(!r.passed);
        assert_eq!(r.expected, "£0.01/hour");
        assert_eq!(r.actual_hourly_minor, food.cases[0].expect_hourly_minor);
        assert!(!r.actual_explanation.is_empty());
    }

    #[test]
    fn case_files_parse_and_are_checked() {
        let f = parse_rating_cases(ONE).unwrap();
        assert_eq!(f.cases.len(), 1);
        assert_eq!(f.cases[0].start.to_rfc3339(), "2026-07-01T22:00:00+00:00");
        let both = format!("{ONE}expect_decline = \"TOO_MANY_CLAIMS\"\n");
        assert_eq!(
            parse_rating_cases(&both).unwrap_err().code,
            "INVALID_TEST_CASES"
        );
        let unknown = ONE.replace("expect_hourly_minor = 100", "expect_decline = \"NOPE\"");
        let e = parse_rating_cases(&unknown).unwrap_err();
        assert!(e.message.contains("NOPE"), "{}", e.message);
        let typo = ONE.replace("claims_5y", "claims");
        assert_eq!(
            parse_rating_cases(&typo).unwrap_err().code,
            "INVALID_TEST_CASES"
        );
        let twice = format!("{ONE}{}", &ONE[ONE.find("[[case]]").unwrap()..]);
        let e = parse_rating_cases(&twice).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("testCases[1]"));
    }
}
