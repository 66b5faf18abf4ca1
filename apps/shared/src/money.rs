//! Money as integer minor units with a currency. Never floats.
//!
//! All rounding in ShiftCover goes through [`round_div`] with a named [`Rounding`] rule,
//! so that every place that turns a fraction of a penny into a penny says which rule it used.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// ISO 4217 currencies ShiftCover trades in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    /// Pound sterling; minor unit: penny.
    Gbp,
    /// Euro; minor unit: cent.
    Eur,
}

impl Currency {
    /// The ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Gbp => "GBP",
            Currency::Eur => "EUR",
        }
    }

    /// The symbol shown to people.
    pub fn symbol(self) -> &'static str {
        match self {
            Currency::Gbp => "£",
            Currency::Eur => "€",
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An unknown currency code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown currency code {0:?}")]
pub struct UnknownCurrency(pub String);

impl FromStr for Currency {
    type Err = UnknownCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "GBP" => Ok(Currency::Gbp),
            "EUR" => Ok(Currency::Eur),
            _ => Err(UnknownCurrency(s.to_owned())),
        }
    }
}

/// An amount of money: minor units (pence) and a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Amount in minor units (pence for GBP). May be negative.
    pub minor: i64,
    /// The currency of the amount.
    pub currency: Currency,
}

/// Two amounts in different currencies were combined, or a sum overflowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The two amounts have different currencies.
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    /// The result does not fit in 64 bits.
    #[error("amount overflow")]
    Overflow,
}

impl Money {
    /// An amount in pounds sterling, given in pence.
    pub const fn gbp(pence: i64) -> Self {
        Self {
            minor: pence,
            currency: Currency::Gbp,
        }
    }

    /// Zero in a currency.
    pub const fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }

    /// Adds two amounts of the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_add(other.minor)
            .map(|minor| Money { minor, ..self })
            .ok_or(MoneyError::Overflow)
    }

    /// Subtracts an amount of the same currency.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.minor
            .checked_sub(other.minor)
            .map(|minor| Money { minor, ..self })
            .ok_or(MoneyError::Overflow)
    }

    /// The amount with its sign flipped.
    pub fn negated(self) -> Money {
        Money {
            minor: -self.minor,
            ..self
        }
    }

    /// True for amounts below zero.
    pub fn is_negative(self) -> bool {
        self.minor < 0
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }
}

impl fmt::Display for Money {
    /// `£12.34`, `-£0.05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        write!(
            f,
            "{sign}{}{}.{:02}",
            self.currency.symbol(),
            abs / 100,
            abs % 100
        )
    }
}

/// How a fraction of a minor unit becomes a whole one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rounding {
    /// Halves go away from zero (12.5p → 13p). The rule for prices shown to drivers.
    HalfUp,
    /// Halves go to the even neighbour (banker's rounding). Used where many roundings are summed.
    HalfEven,
    /// Towards zero. Used for amounts that must never exceed their exact value (tax inside a price).
    Down,
}

/// `numerator / denominator` rounded to a whole number by `rule`.
///
/// Returns `None` when the denominator is zero or the result does not fit in an `i64`.
pub fn round_div(numerator: i128, denominator: i128, rule: Rounding) -> Option<i64> {
    if denominator == 0 {
        return None;
    }
    let (n, d) = if denominator < 0 {
        (numerator.checked_neg()?, denominator.checked_neg()?)
    } else {
        (numerator, denominator)
    };
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d); // 0 <= r < d, and n = q*d + r
    let twice = r.checked_mul(2)?;
    let up = match rule {
        Rounding::Down => {
            // toward zero: floor for positives, ceil for negatives
            n < 0 && r != 0
        }
        Rounding::HalfUp => {
            if twice == d {
                n >= 0 // away from zero: positives round up; negatives stay at floor (more negative)
            } else {
                twice > d
            }
        }
        Rounding::HalfEven => {
            if twice == d {
                q.rem_euclid(2) != 0
            } else {
                twice > d
            }
        }
    };
    let result = if up { q.checked_add(1)? } else { q };
    i64::try_from(result).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats_pounds_and_pence() {
        assert_eq!(Money::gbp(1234).to_string(), "£12.34");
        assert_eq!(Money::gbp(-5).to_string(), "-£0.05");
        assert_eq!(Money::gbp(0).to_string(), "£0.00");
    }

    #[test]
    fn arithmetic_refuses_mixed_currencies_and_overflow() {
        let eur = Money {
            minor: 1,
            currency: Currency::Eur,
        };
        assert_eq!(
            Money::gbp(1).checked_add(eur),
            Err(MoneyError::CurrencyMismatch(Currency::Gbp, Currency::Eur))
        );
        assert_eq!(
            Money::gbp(i64::MAX).checked_add(Money::gbp(1)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::gbp(10).checked_sub(Money::gbp(25)),
            Ok(Money::gbp(-15))
        );
    }

    #[test]
    fn rounding_rules() {
        use Rounding::*;
        assert_eq!(round_div(25, 2, HalfUp), Some(13));
        assert_eq!(round_div(-25, 2, HalfUp), Some(-13));
        assert_eq!(round_div(25, 2, HalfEven), Some(12));
        assert_eq!(round_div(27, 2, HalfEven), Some(14));
        assert_eq!(round_div(-25, 2, HalfEven), Some(-12));
        assert_eq!(round_div(29, 10, Down), Some(2));
        assert_eq!(round_div(-29, 10, Down), Some(-2));
        assert_eq!(round_div(24, 10, HalfUp), Some(2));
        assert_eq!(round_div(26, 10, HalfUp), Some(3));
        assert_eq!(round_div(1, 0, HalfUp), None);
        assert_eq!(round_div(7, -2, HalfUp), Some(-4));
    }

    #[test]
    fn currency_parses_codes() {
        assert_eq!("gbp".parse::<Currency>(), Ok(Currency::Gbp));
        assert!("XXX".parse::<Currency>().is_err());
    }
}
