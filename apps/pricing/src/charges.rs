//! What a price is made of, and what a cover session costs. Pure functions, no I/O.
//!
//! Invariants:
//! - a [`ChargeBreakdown`] always adds up: `net_premium + commission + ipt == total`, exactly;
//! - IPT is inside the price: `ipt = total × ipt_bp / (10 000 + ipt_bp)` (12/112 at 12 %), rounded
//!   by [`IPT_ROUNDING`]; commission is a share of the premium net of IPT, rounded by
//!   [`COMMISSION_ROUNDING`]; the net premium (the insurer's) is what remains;
//! - a session is charged at least the minimum charge, then per started billing increment, each
//!   rounded once by [`SESSION_ROUNDING`]; never more than what is left of the daily cap, never
//!   less than zero.

use crate::version::{ProductVersion, VersionTerms};
use chrono::{DateTime, Utc};
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
    /// given what the driver has already been charged today.
    ///
    /// The minimum charge covers the first `minimum_charge_minutes` (a shorter session, even a
    /// zero-length one, pays it); beyond it, each started billing increment is charged, the
    /// price being `hourly × billed minutes / 60` rounded once. The charge is then limited to what
    /// is left of the daily cap: `min(price, cap − already_charged_today)`, never below zero.
    /// Which "day" `already_charged_today` covers is the caller's choice.
    pub fn price_session(
        &self,
        hourly_rate: Money,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        already_charged_today: Money,
    ) -> Result<SessionCharge, ChargeError> {
        self.price_session_in_period(hourly_rate, start, end, None, already_charged_today)
    }

    /// Prices a session that continues a working period whose earlier sessions covered
    /// `minutes_before` minutes (cover resumed within the gap rule): the period pays one
    /// minimum charge, so the session is charged what the period's billed minutes grow by —
    /// `billed(before + minutes) − billed(before)`, where `billed` applies the minimum and the
    /// billing increment to a period's minutes. With `None` (no earlier session) this is
    /// [`VersionTerms::price_session`]. A continuation that stays within the period's minimum
    /// costs nothing (rule `minimum`: the minimum already paid covers it).
    pub fn price_session_in_period(
        &self,
        hourly_rate: Money,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        minutes_before: Option<i64>,
        already_charged_today: Money,
    ) -> Result<SessionCharge, ChargeError> {
        if minutes_before.is_some_and(|m| m < 0) {
            return Err(ChargeError::NegativeAmount("minutes before"));
        }
        if hourly_rate.currency != self.currency || already_charged_today.currency != self.currency
        {
            return Err(ChargeError::CurrencyMismatch);
        }
        if hourly_rate.is_negative() {
            return Err(ChargeError::NegativeAmount("hourly rate"));
        }
        if already_charged_today.is_negative() {
            return Err(ChargeError::NegativeAmount("already charged today"));
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
        let before = minutes_before.unwrap_or(0);
        let total = before.checked_add(minutes).ok_or(ChargeError::Overflow)?;
        let billed_minutes = match minutes_before {
            None => billed(minutes)?,
            Some(before) => billed(total)? - billed(before)?,
        };
        let rule = if total <= minimum {
            ChargeRule::Minimum
        } else {
            ChargeRule::PerMinute
        };
        let uncapped = price_for_minutes(hourly_rate, billed_minutes)?;
        let left_today = self
            .daily_cap()
            .checked_sub(already_charged_today)?
            .minor
            .max(0);
        let (total, rule) = if uncapped.minor > left_today {
            (
                Money {
                    minor: left_today,
                    currency: self.currency,
                },
                ChargeRule::Capped,
            )
        } else {
            (uncapped, rule)
        };
        Ok(SessionCharge {
            minutes,
            billed_minutes,
            rule,
            hourly_rate,
            uncapped,
            breakdown: self.breakdown(total)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

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
