//! The schema's own scalars. Each says in its description how it is written, and points with
//! `@specifiedBy` to the specification of that form.
//!
//! One scalar per meaning: a calendar date is always [`Date`] (never chrono's `NaiveDate`, which
//! async-graphql would publish as a second date scalar that clients cannot pass where a `Date`
//! is expected); an instant is chrono's `DateTime<Utc>`, published as `DateTime` (RFC 3339).
//!
//! GraphQL's `Int` is 32-bit. An amount that can pass 2^31 minor units (about £21.4 million: the
//! finance totals over the ledger) is a [`MinorUnits`]; `Money.minor` and the other amounts of
//! one driver, payment or product stay `Int`, far below that bound.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::NaiveDate;

/// The description the schema gives `DateTime` (chrono's `DateTime<Utc>`, whose own description
/// names the Rust type): how it is written either way.
pub const DATE_TIME_DESCRIPTION: &str = "An instant, written in RFC 3339 (ISO 8601) with its \
offset from UTC. Answers are in UTC, with a fraction of a second when there is one, e.g. \
`2026-12-07T17:30:00+00:00`; arguments may carry any offset (`Z`, `+01:00`) and mean that \
instant.";

/// The description the schema gives `JSON` (async-graphql's own says only that it is JSON).
pub const JSON_DESCRIPTION: &str = "Any JSON value, sent as itself (not encoded in a string). \
Each field that uses it says what it holds.";

/// A calendar date without a time zone, written `YYYY-MM-DD` (ISO 8601 / RFC 3339 `full-date`),
/// e.g. `1990-04-21`. The days that finance reports and reconciliation take are UTC days; a
/// driver's statement week starts on a Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub NaiveDate);

/// A calendar date without a time zone, written `YYYY-MM-DD` (ISO 8601 / RFC 3339 `full-date`),
/// e.g. `1990-04-21`.
#[Scalar(
    name = "Date",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339#section-5.6"
)]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => parse_date(s)
                .map(Date)
                .ok_or_else(|| InputValueError::custom("expected a date written YYYY-MM-DD")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(s) if parse_date(s).is_some())
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

/// Exactly `YYYY-MM-DD`: chrono alone would also take `2026-1-5` or `+2026-01-05`.
fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// An amount in the minor units of its currency (pence for GBP) as a signed 64-bit integer,
/// written as a JSON number. Used for totals that can pass GraphQL's 32-bit `Int`; the ledger
/// keeps every amount within ±2^53, so JavaScript's numbers read it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MinorUnits(pub i64);

/// An amount in the minor units of its currency (pence for GBP) as a signed 64-bit integer,
/// written as a JSON number (e.g. `2500000000` for £25,000,000.00). Totals over the ledger use
/// it, because they can pass the 32-bit range of `Int`.
#[Scalar(name = "MinorUnits")]
impl ScalarType for MinorUnits {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => n
                .as_i64()
                .map(MinorUnits)
                .ok_or_else(|| InputValueError::custom("expected a whole number of minor units")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::Number(n) if n.is_i64())
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

impl From<i64> for MinorUnits {
    fn from(minor: i64) -> Self {
        MinorUnits(minor)
    }
}

impl From<NaiveDate> for Date {
    fn from(day: NaiveDate) -> Self {
        Date(day)
    }
}

impl From<Date> for NaiveDate {
    fn from(day: Date) -> Self {
        day.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_is_written_yyyy_mm_dd_and_nothing_else() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
        assert_eq!(
            Date::parse(Value::String("2026-01-05".into())).unwrap(),
            Date(day)
        );
        assert_eq!(Date(day).to_value(), Value::String("2026-01-05".into()));
        for bad in [
            "2026-1-5",
            "+2026-01-05",
            "2026-02-30",
            "05/01/2026",
            "2026-01-05T00:00:00Z",
        ] {
            assert!(Date::parse(Value::String(bad.into())).is_err(), "{bad}");
            assert!(!Date::is_valid(&Value::String(bad.into())), "{bad}");
        }
        assert!(Date::parse(Value::Number(20260105.into())).is_err());
    }

    #[test]
    fn minor_units_pass_the_32_bit_range() {
        let big = MinorUnits(5_000_000_000);
        assert_eq!(big.to_value(), Value::Number(5_000_000_000i64.into()));
        assert_eq!(MinorUnits::parse(big.to_value()).unwrap(), big);
        assert!(MinorUnits::parse(Value::String("5".into())).is_err());
        assert!(
            MinorUnits::parse(serde_json::from_str("1.5").map(Value::Number).unwrap()).is_err()
        );
    }
}
