//! Periods finance asks about: a UTC day, a UTC month, a range of instants.
//!
//! Days and months are UTC: Stripe's `created` and the ledger's `created_at` are instants, and a
//! report's period must cut both at the same instant. A period that starts after now is refused
//! with `PERIOD_IN_FUTURE`; one that has begun but not ended (today, this month) is reported to
//! date.

use crate::error::FinanceError;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

/// The first instant of a UTC day.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// `[start, end)` of a UTC day.
pub fn day_bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day_start(day);
    (start, start + Duration::days(1))
}

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    /// The year, 2000 to 2200.
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// `YYYY-MM`. Errors: `INVALID_PERIOD` on `field`.
    pub fn parse(field: &'static str, s: &str) -> Result<Month, FinanceError> {
        let bad = |reason: &str| FinanceError::InvalidPeriod {
            field,
            reason: reason.to_owned(),
        };
        let (y, m) = s
            .trim()
            .split_once('-')
            .ok_or_else(|| bad("expected YYYY-MM"))?;
        let year: i32 = y.parse().map_err(|_| bad("expected YYYY-MM"))?;
        let month: u32 = m.parse().map_err(|_| bad("expected YYYY-MM"))?;
        if !(2000..=2200).contains(&year) || !(1..=12).contains(&month) || m.len() != 2 {
            return Err(bad("expected YYYY-MM with a month from 01 to 12"));
        }
        Ok(Month { year, month })
    }

    /// The month containing `day`.
    pub fn of(day: NaiveDate) -> Month {
        Month {
            year: day.year(),
            month: day.month(),
        }
    }

    /// Its first day.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default()
    }

    /// The first day of the next month.
    pub fn next_first_day(self) -> NaiveDate {
        let (y, m) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        NaiveDate::from_ymd_opt(y, m, 1).unwrap_or_default()
    }

    /// `[start, end)` in UTC.
    pub fn bounds(self) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            day_start(self.first_day()),
            day_start(self.next_first_day()),
        )
    }

    /// Refuses a month that starts after `now` (`PERIOD_IN_FUTURE` on `field`).
    pub fn check_started(
        self,
        field: &'static str,
        now: DateTime<Utc>,
    ) -> Result<(), FinanceError> {
        if self.bounds().0 > now {
            return Err(FinanceError::PeriodInFuture(field));
        }
        Ok(())
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Refuses a day that starts after `now` (`PERIOD_IN_FUTURE` on `field`).
pub fn check_day_started(
    field: &'static str,
    day: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(), FinanceError> {
    if day_start(day) > now {
        return Err(FinanceError::PeriodInFuture(field));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_bound() {
        let m = Month::parse("month", "2026-12").unwrap();
        assert_eq!(m.to_string(), "2026-12");
        assert_eq!(
            m.next_first_day(),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
        for bad in ["2026-13", "2026-1", "26-01", "x", "", "2026-00"] {
            assert_eq!(
                Month::parse("month", bad).unwrap_err().code(),
                Some("INVALID_PERIOD"),
                "{bad}"
            );
        }
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        assert!(
            Month::parse("m", "2026-11")
                .unwrap()
                .check_started("m", now)
                .is_ok()
        );
        assert_eq!(
            Month::parse("m", "2026-12")
                .unwrap()
                .check_started("m", now)
                .unwrap_err()
                .code(),
            Some("PERIOD_IN_FUTURE")
        );
    }
}
