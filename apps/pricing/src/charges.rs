//! What a price is made of, and what a cover session costs. Pure functions, no I/O.
//!
//! Invariants:
//! - a [`ChargeBreakdown`] always adds up: `net_premium + commission + ipt == total`, exactly;
//! - IPT is inside the price: `ipt = total × ipt_bp / (10 000 + ipt_bp)` (12/112 at 12 %), rounded
//!   by [`IPT_ROUNDING`]; commission is a share of the premium net of IPT, rounded by
//!   [`COMMISSION_ROUNDING`]; the net premium (the insurer's) is what remains;
//! - a session is charged at least the minimum charge, then per started billing increment, each
//!   rounded once by [`SESSION_ROUNDING`]; a session is priced as its parts on each UK day, each
//!   part never more than what is left of its day's cap, never less than zero.

use crate::version::{ProductVersion, VersionTerms};
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use shared::Money;
use shared::money::{MoneyError, Rounding, round_div};

/// IPT inside a price rounds towards zero: the tax never exceeds its exact value.
pub const IPT_ROUNDING: Rounding = Rounding::Down;
/// Commission rounds half to even: unbiased over the many charges a partner statement sums.
pub const COMMISSION_ROUNDING: Rounding = Rounding::HalfEven;
/// A session's price (hourly × minutes / 60) rounds half up, like every driver-facing price.
pub const SESSION_ROUNDING: Rounding = Rounding::HalfUp;

const BP: i128 = 10_000;

/// A price could not be broken down or a session priced: a caller's mistake, never a user's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    /// Amounts or a rate and a version of different currencies were combined.
    #[error("currency mismatch")]
    CurrencyMismatch,
    /// The session ends before it starts.
    #[error("session ends before it starts")]
    EndBeforeStart,
    /// An amount that must not be negative was.
    #[error("negative amount: {0}")]
    NegativeAmount(&'static str),
    /// A rate outside 0 to 10 000 basis points.
    #[error("rate out of range: {0}")]
    RateOutOfRange(&'static str),
    /// A result does not fit in 64 bits.
    #[error("amount overflow")]
    Overflow,
}

impl From<MoneyError> for ChargeError {
    fn from(e: MoneyError) -> Self {
        match e {
            MoneyError::CurrencyMismatch(..) => ChargeError::CurrencyMismatch,
            MoneyError::Overflow => ChargeError::Overflow,
        }
    }
}

/// A total price split into the insurer's net premium, the commission and the IPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeBreakdown {
    /// What the driver pays.
    pub total: Money,
    /// The insurer's premium: `total − commission − ipt`.
    pub net_premium: Money,
    /// The intermediary's commission.
    pub commission: Money,
    /// Insurance premium tax.
    pub ipt: Money,
    /// The IPT rate applied, in basis points of `ipt_basis`.
    pub ipt_rate_bp: u32,
    /// The premium the IPT is levied on: `total − ipt` (net premium plus commission).
    pub ipt_basis: Money,
    /// The commission rate applied, in basis points of `ipt_basis`.
    pub commission_rate_bp: u32,
}

/// Splits `total` into net premium, commission and IPT (see the module invariants).
///
/// A negative total (a refund) splits into the exact negatives of the same positive total.
pub fn charge_breakdown(
    total: Money,
    commission_bp: u32,
    ipt_bp: u32,
) -> Result<ChargeBreakdown, ChargeError> {
    if commission_bp >= 10_000 {
        return Err(ChargeError::RateOutOfRange("commission"));
    }
    if ipt_bp > 10_000 {
        return Err(ChargeError::RateOutOfRange("ipt"));
    }
    let t = i128::from(total.minor);
    let ipt = round_div(
        t * i128::from(ipt_bp),
        BP + i128::from(ipt_bp),
        IPT_ROUNDING,
    )
    .ok_or(ChargeError::Overflow)?;
    let basis = total.minor.checked_sub(ipt).ok_or(ChargeError::Overflow)?;
    let commission = round_div(
        i128::from(basis) * i128::from(commission_bp),
        BP,
        COMMISSION_ROUNDING,
    )
    .ok_or(ChargeError::Overflow)?;
    let net = basis.checked_sub(commission).ok_or(ChargeError::Overflow)?;
    let m = |minor| Money {
        minor,
        currency: total.currency,
    };
    Ok(ChargeBreakdown {
        total,
        net_premium: m(net),
        commission: m(commission),
        ipt: m(ipt),
        ipt_rate_bp: ipt_bp,
        ipt_basis: m(basis),
        commission_rate_bp: commission_bp,
    })
}

/// Which billing rule set a session's price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeRule {
    /// The session was no longer than the minimum charge: the minimum applies.
    Minimum,
    /// Charged per started billing increment beyond the minimum.
    PerMinute,
    /// The daily cap limited the charge.
    Capped,
}

impl ChargeRule {
    /// The stored name: `minimum`, `per_minute`, `capped`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeRule::Minimum => "minimum",
            ChargeRule::PerMinute => "per_minute",
            ChargeRule::Capped => "capped",
        }
    }
}

/// The price of one cover session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCharge {
    /// Minutes covered, counting a started minute as a whole one.
    pub minutes: i64,
    /// Minutes charged for: at least the minimum, then whole billing increments.
    pub billed_minutes: i64,
    /// The rule that set the price.
    pub rule: ChargeRule,
    /// The hourly rate charged at.
    pub hourly_rate: Money,
    /// The price before the daily cap.
    pub uncapped: Money,
    /// The charge (after the cap) and its parts.
    pub breakdown: ChargeBreakdown,
}

/// Prices a session on a product version. See [`VersionTerms::price_session`].
pub fn price_session(
    version: &ProductVersion,
    hourly_rate: Money,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    already_charged_today: Money,
) -> Result<SessionCharge, ChargeError> {
    version
        .terms
        .price_session(hourly_rate, start, end, already_charged_today)
}

/// Started minutes between `start` and `end` (a part minute counts as one).
pub fn started_minutes(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<i64, ChargeError> {
    if end < start {
        return Err(ChargeError::EndBeforeStart);
    }
    let d = end - start;
    let secs = d.num_seconds();
    let part = secs % 60 != 0 || d.subsec_nanos() != 0;
    Ok(secs / 60 + i64::from(part))
}

/// `hourly × minutes / 60`, rounded once by [`SESSION_ROUNDING`].
pub fn price_for_minutes(hourly_rate: Money, minutes: i64) -> Result<Money, ChargeError> {
    let minor = round_div(
        i128::from(hourly_rate.minor) * i128::from(minutes),
        60,
        SESSION_ROUNDING,
    )
    .ok_or(ChargeError::Overflow)?;
    Ok(Money {
        minor,
        currency: hourly_rate.currency,
    })
}

impl VersionTerms {
    /// The minimum charge at `hourly_rate`: the first [`minimum_charge_minutes`] at that rate, no
    /// more than the daily cap.
    ///
    /// [`minimum_charge_minutes`]: crate::version::VersionRules::minimum_charge_minutes
    pub fn minimum_charge(&self, hourly_rate: Money) -> Result<Money, ChargeError> {
        let min = price_for_minutes(hourly_rate, i64::from(self.rules.minimum_charge_minutes))?;
        Ok(if min.minor > self.rules.daily_cap_minor {
            self.daily_cap()
        } else {
            min
        })
    }

    /// Splits `total` with this version's commission and IPT rates.
    pub fn breakdown(&self, total: Money) -> Result<ChargeBreakdown, ChargeError> {
        charge_breakdown(total, self.rules.commission_bp, self.rules.ipt_bp)
    }

    /// Prices a session from `start` to `end` at `hourly_rate` (the rate quoted when it started),
    /// given what the driver has already been charged on the UK day it starts (for a session
    /// crossing midnight, nothing on the days after). See [`VersionTerms::price_session_by_day`].
    pub fn price_session(
        &self,
        hourly_rate: Money,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        already_charged_today: Money,
    ) -> Result<SessionCharge, ChargeError> {
        let first_day = uk_day(start);
        let zero = Money {
            minor: 0,
            currency: already_charged_today.currency,
        };
        let already = |day| {
            if day == first_day {
                already_charged_today
            } else {
                zero
            }
        };
        Ok(self
            .price_session_by_day(hourly_rate, start, end, None, already)?
            .charge)
    }

    /// Prices a session from `start` to `end` at `hourly_rate` (the rate quoted when it started)
    /// as its parts on each UK day, each part against what is left of its own day's cap.
    ///
    /// Minutes: started minutes from `start`, so the parts' minutes add up to the session's.
    /// Billing: a working period pays the minimum charge once (the first `minimum_charge_minutes`;
    /// a shorter period, even one of no time, pays it), then each started billing increment; a
    /// session that continues a period whose earlier sessions covered `minutes_before` minutes
    /// (cover resumed within the gap rule) bills only what the period's billed minutes grow by,
    /// and with `None` the session begins its own period. The billed minutes are counted along
    /// the session's time: each day's part bills the minutes it covers beyond what the period had
    /// already paid for, and the last part also what the minimum and the increment add. The
    /// session's price is `hourly × billed minutes / 60`, rounded once by [`SESSION_ROUNDING`];
    /// each part's price is the difference of the rounded prices of the running totals, so the
    /// parts add up to it exactly. Each part is then limited to `cap − already(day)`, never below
    /// zero, where `already(day)` is what the driver's other sessions were charged for that UK
    /// day: a session started after the day's cap was reached is free only until midnight.
    pub fn price_session_by_day(
        &self,
        hourly_rate: Money,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        minutes_before: Option<i64>,
        already: impl Fn(NaiveDate) -> Money,
    ) -> Result<PricedSession, ChargeError> {
        if minutes_before.is_some_and(|m| m < 0) {
            return Err(ChargeError::NegativeAmount("minutes before"));
        }
        if hourly_rate.currency != self.currency {
            return Err(ChargeError::CurrencyMismatch);
        }
        if hourly_rate.is_negative() {
            return Err(ChargeError::NegativeAmount("hourly rate"));
        }
        let minutes = started_minutes(start, end)?;
        let minimum = i64::from(self.rules.minimum_charge_minutes);
        let increment = i64::from(self.rules.billing_increment_minutes.max(1));
        // A period's billed minutes: the minimum, then whole increments beyond it.
        let billed = |m: i64| -> Result<i64, ChargeError> {
            if m <= minimum {
                return Ok(minimum);
            }
            let beyond = m - minimum;
            let steps = beyond / increment + i64::from(beyond % increment != 0);
            steps
                .checked_mul(increment)
                .and_then(|b| b.checked_add(minimum))
                .ok_or(ChargeError::Overflow)
        };
        // The period's billed minutes this session adds, counted along its time: the minutes it
        // covers beyond what the period had already paid for, and at its end whatever the
        // minimum and the billing increment add.
        let base = minutes_before.unwrap_or(0);
        let prepaid = match minutes_before {
            None => 0,
            Some(before) => billed(before)?,
        };
        let whole = billed(base.checked_add(minutes).ok_or(ChargeError::Overflow)?)? - prepaid;
        let parts = uk_day_parts(start, end);
        let last = parts.len() - 1;
        let (mut covered, mut billed_so_far, mut priced_so_far) = (0i64, 0i64, 0i64);
        let (mut total, mut capped) = (0i64, false);
        let mut days = Vec::with_capacity(parts.len());
        for (i, (day, part_end)) in parts.into_iter().enumerate() {
            let covered_to = started_minutes(start, part_end)?;
            let billed_to = if i == last {
                whole
            } else {
                (base + covered_to - prepaid).clamp(0, whole)
            };
            let priced_to = price_for_minutes(hourly_rate, billed_to)?.minor;
            let part_uncapped = priced_to - priced_so_far;
            let already = already(day);
            if already.currency != self.currency {
                return Err(ChargeError::CurrencyMismatch);
            }
            if already.is_negative() {
                return Err(ChargeError::NegativeAmount("already charged"));
            }
            let left = self.daily_cap().checked_sub(already)?.minor.max(0);
            let charged = part_uncapped.min(left);
            capped |= charged < part_uncapped;
            total = total.checked_add(charged).ok_or(ChargeError::Overflow)?;
            days.push(DayCharge {
                day,
                minutes: covered_to - covered,
                billed_minutes: billed_to - billed_so_far,
                uncapped: Money {
                    minor: part_uncapped,
                    currency: self.currency,
                },
                charged: Money {
                    minor: charged,
                    currency: self.currency,
                },
            });
            (covered, billed_so_far, priced_so_far) = (covered_to, billed_to, priced_to);
        }
        let rule = if capped {
            ChargeRule::Capped
        } else if base.checked_add(minutes).ok_or(ChargeError::Overflow)? <= minimum {
            ChargeRule::Minimum
        } else {
            ChargeRule::PerMinute
        };
        let money = |minor| Money {
            minor,
            currency: self.currency,
        };
        Ok(PricedSession {
            charge: SessionCharge {
                minutes,
                billed_minutes: whole,
                rule,
                hourly_rate,
                uncapped: money(priced_so_far),
                breakdown: self.breakdown(money(total))?,
            },
            days,
        })
    }
}

/// The clock the daily cap follows: a day of charges is a calendar day in the UK, summer time
/// included, and the cap starts again at midnight there.
pub const CAP_TIME_ZONE: Tz = chrono_tz::Europe::London;

/// The UK calendar day of `at`.
pub fn uk_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&CAP_TIME_ZONE).date_naive()
}

/// The UK calendar day containing `at`, as a UTC range `[start, end)` (23, 24 or 25 hours long).
pub fn uk_day_bounds(at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let date = uk_day(at);
    let midnight = |d: NaiveDate| {
        // UK clocks change at 01:00/02:00, so local midnight always exists exactly once.
        CAP_TIME_ZONE
            .from_local_datetime(&d.and_time(NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    };
    let start = midnight(date).unwrap_or(at - Duration::hours(24));
    let end = date
        .succ_opt()
        .and_then(midnight)
        .unwrap_or(start + Duration::hours(24));
    (start, end)
}

/// The UK days that `[start, end)` falls on, each with the end of its part (the next UK midnight,
/// or `end` on the last day). A session of no time, or one ending at a midnight, has no part on
/// the day after.
pub fn uk_day_parts(start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<(NaiveDate, DateTime<Utc>)> {
    let mut parts = Vec::with_capacity(1);
    let mut at = start;
    loop {
        let (_, day_end) = uk_day_bounds(at);
        if day_end >= end {
            parts.push((uk_day(at), end.max(at)));
            return parts;
        }
        parts.push((uk_day(at), day_end));
        at = day_end;
    }
}

/// One UK day's part of a session's price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCharge {
    /// The UK calendar day.
    pub day: NaiveDate,
    /// The session's started minutes on that day.
    pub minutes: i64,
    /// What the working period's billed minutes grew by on that day.
    pub billed_minutes: i64,
    /// The part's price before the day's cap.
    pub uncapped: Money,
    /// What the part is charged: the price, no more than what was left of the day's cap.
    pub charged: Money,
}

/// A session's price and its parts by UK day (the parts' charges add up to the total).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedSession {
    /// The session's price.
    pub charge: SessionCharge,
    /// Its parts, one per UK day it covered, in time order.
    pub days: Vec<DayCharge>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap()
    }

    #[test]
    fn uk_days_follow_the_uk_clock() {
        // Winter: UK time is UTC.
        assert_eq!(
            uk_day_bounds(utc(2026, 11, 23, 9, 0)),
            (utc(2026, 11, 23, 0, 0), utc(2026, 11, 24, 0, 0))
        );
        // Summer: 23:30 UTC on 1 July is 00:30 on 2 July in the UK.
        assert_eq!(
            uk_day_bounds(utc(2026, 7, 1, 23, 30)),
            (utc(2026, 7, 1, 23, 0), utc(2026, 7, 2, 23, 0))
        );
        assert_eq!(uk_day(utc(2026, 7, 1, 23, 30)).to_string(), "2026-07-02");
        // The day the clocks go forward has 23 hours, the day they go back 25.
        let (start, end) = uk_day_bounds(utc(2026, 3, 29, 12, 0));
        assert_eq!(end - start, Duration::hours(23));
        let (start, end) = uk_day_bounds(utc(2026, 10, 25, 12, 0));
        assert_eq!(end - start, Duration::hours(25));
    }

    #[test]
    fn a_session_splits_at_uk_midnights() {
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        // 23:50 to 15:50 in winter: two parts, cut at midnight.
        assert_eq!(
            uk_day_parts(utc(2026, 11, 23, 23, 50), utc(2026, 11, 24, 15, 50)),
            vec![
                (day("2026-11-23"), utc(2026, 11, 24, 0, 0)),
                (day("2026-11-24"), utc(2026, 11, 24, 15, 50)),
            ]
        );
        // In summer the UK midnight is 23:00 UTC.
        assert_eq!(
            uk_day_parts(utc(2026, 7, 1, 22, 0), utc(2026, 7, 1, 23, 30)),
            vec![
                (day("2026-07-01"), utc(2026, 7, 1, 23, 0)),
                (day("2026-07-02"), utc(2026, 7, 1, 23, 30)),
            ]
        );
        // Ending at midnight or lasting no time: one part.
        assert_eq!(
            uk_day_parts(utc(2026, 11, 23, 22, 0), utc(2026, 11, 24, 0, 0)).len(),
            1
        );
        assert_eq!(
            uk_day_parts(utc(2026, 11, 23, 22, 0), utc(2026, 11, 23, 22, 0)),
            vec![(day("2026-11-23"), utc(2026, 11, 23, 22, 0))]
        );
    }

    #[test]
    fn breakdown_takes_ipt_out_of_the_price() {
        // £11.20 at 12 % IPT holds exactly £1.20 of IPT; 20 % commission of the £10.00 basis.
        let b = charge_breakdown(Money::gbp(1120), 2000, 1200).unwrap();
        assert_eq!(b.ipt, Money::gbp(120));
        assert_eq!(b.ipt_basis, Money::gbp(1000));
        assert_eq!(b.commission, Money::gbp(200));
        assert_eq!(b.net_premium, Money::gbp(800));
        // £2.34: IPT 234×3/28 = 25.07 → 25 (down); commission 209×0.25 = 52.25 → 52.
        let b = charge_breakdown(Money::gbp(234), 2500, 1200).unwrap();
        assert_eq!(
            (b.ipt.minor, b.commission.minor, b.net_premium.minor),
            (25, 52, 157)
        );
        // half-even commission: 10 × 0.25 = 2.5 → 2; 30 × 0.25 = 7.5 → 8
        let b = charge_breakdown(Money::gbp(10), 2500, 0).unwrap();
        assert_eq!(b.commission.minor, 2);
        let b = charge_breakdown(Money::gbp(30), 2500, 0).unwrap();
        assert_eq!(b.commission.minor, 8);
        // refunds mirror charges
        let r = charge_breakdown(Money::gbp(-234), 2500, 1200).unwrap();
        assert_eq!(
            (r.ipt.minor, r.commission.minor, r.net_premium.minor),
            (-25, -52, -157)
        );
        assert_eq!(
            charge_breakdown(Money::gbp(1), 10_000, 1200),
            Err(ChargeError::RateOutOfRange("commission"))
        );
    }

    #[test]
    fn started_minutes_round_up() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
        assert_eq!(started_minutes(t0, t0).unwrap(), 0);
        assert_eq!(started_minutes(t0, t0 + Duration::seconds(1)).unwrap(), 1);
        assert_eq!(started_minutes(t0, t0 + Duration::seconds(60)).unwrap(), 1);
        assert_eq!(
            started_minutes(t0, t0 + Duration::milliseconds(60_001)).unwrap(),
            2
        );
        assert_eq!(
            started_minutes(t0, t0 - Duration::seconds(1)),
            Err(ChargeError::EndBeforeStart)
        );
    }
}
