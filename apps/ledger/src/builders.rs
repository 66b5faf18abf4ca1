//! The double entries of ShiftCover's everyday money movements, as lines for [`crate::post`].
//!
//! Signs as everywhere in the ledger: debit positive, credit negative. Zero lines are left out
//! (an unknown fee, a product without commission), so the results always pass
//! [`crate::validate_lines`].
//!
//! # Top-up (kind `top_up`)
//! A driver pays `amount` by card; Stripe keeps `fee` and holds the rest for us.
//!
//! | account          | debit          | credit   |
//! |------------------|----------------|----------|
//! | stripe_clearing  | amount − fee   |          |
//! | stripe_fees      | fee            |          |
//! | driver_wallet    |                | amount   |
//!
//! The driver holds the whole amount; ShiftCover bears the fee. Stripe clearing moves by the net,
//! exactly as Stripe's balance transaction does, which keeps reconciliation one-to-one. A fee
//! learned later is its own `fee` transaction (debit fees, credit clearing).
//!
//! # Session charge (kind `session_charge`)
//! A cover session costs `total` = `net` premium + `commission` + `ipt` and is paid from the
//! wallet at once.
//!
//! | account            | debit  | credit     |
//! |--------------------|--------|------------|
//! | driver_wallet      | total  |            |
//! | insurer_payable    |        | net        |
//! | commission_income  |        | commission |
//! | ipt_payable        |        | ipt        |
//!
//! Premium receivable is deliberately not on these lines. Recognising the premium (debit
//! receivable, credit the three splits) and collecting it from the wallet (debit wallet, credit
//! receivable) in one transaction would put the receivable on it twice for a net of zero: noise on
//! every charge, and two lines for one account in one transaction. The wallet may go negative
//! (the driver then owes us, and the wallet account itself is the receivable), so a charge is
//! always collectable at once. Premium receivable is kept for premium that is recognised before it
//! can be collected from anyone's wallet (e.g. billed to a partner), posted as its own transaction.
//!
//! # Chargeback (kind `chargeback`)
//! One Stripe balance transaction of a dispute: Stripe withdraws the disputed `amount` and its
//! `fee` from our balance, and returns the amount (and sometimes the fee) when the dispute is won.
//! The lines follow Stripe's signs (`amount` negative when withdrawn, `fee` positive when
//! charged), so a withdrawal and its reinstatement are mirror images:
//!
//! | account         | withdrawal           | reinstatement        |
//! |-----------------|----------------------|----------------------|
//! | driver_wallet   | debit amount         | credit amount        |
//! | dispute_fees    | debit fee            | credit fee returned  |
//! | stripe_clearing | credit amount + fee  | debit amount + fee   |
//!
//! The driver bears the disputed amount (the wallet may go negative: that is their debt);
//! ShiftCover bears the fee.

use crate::accounts::{AccountRef, SystemAccount};
use crate::error::LedgerError;
use crate::transactions::Line;
use shared::Money;

fn same_currency(base: Money, others: &[Money]) -> Result<(), LedgerError> {
    match others.iter().find(|m| m.currency != base.currency) {
        Some(other) => Err(LedgerError::CurrencyMismatch {
            expected: base.currency,
            found: other.currency,
        }),
        None => Ok(()),
    }
}

fn push_nonzero(lines: &mut Vec<Line>, account: AccountRef, amount: i64) {
    if amount != 0 {
        lines.push((account, amount));
    }
}

/// The lines of a card top-up of `amount` into `wallet_owner`'s wallet, of which Stripe kept `fee`
/// (zero while unknown).
///
/// Errors: `INVALID_AMOUNT` (`amount` not positive; `fee` negative or above the amount),
/// `CURRENCY_MISMATCH`.
pub fn top_up_lines(
    wallet_owner: &str,
    amount: Money,
    fee: Money,
) -> Result<Vec<Line>, LedgerError> {
    same_currency(amount, &[fee])?;
    if amount.minor <= 0 {
        return Err(LedgerError::InvalidAmount("amount"));
    }
    if fee.minor < 0 || fee.minor > amount.minor {
        return Err(LedgerError::InvalidAmount("fee"));
    }
    let currency = amount.currency;
    let mut lines = Vec::with_capacity(3);
    push_nonzero(
        &mut lines,
        AccountRef::system(SystemAccount::StripeClearing, currency),
        amount.minor - fee.minor,
    );
    push_nonzero(
        &mut lines,
        AccountRef::system(SystemAccount::StripeFees, currency),
        fee.minor,
    );
    lines.push((
        AccountRef::driver_wallet(wallet_owner, currency),
        -amount.minor,
    ));
    Ok(lines)
}

/// The lines of a Stripe fee learned after its payment was booked: ShiftCover's fees account
/// takes it, and Stripe clearing holds that much less (Stripe paid us the net).
///
/// Errors: `INVALID_AMOUNT` when the fee is not positive.
pub fn stripe_fee_lines(fee: Money) -> Result<Vec<Line>, LedgerError> {
    if fee.minor <= 0 {
        return Err(LedgerError::InvalidAmount("fee"));
    }
    Ok(vec![
        (
            AccountRef::system(SystemAccount::StripeFees, fee.currency),
            fee.minor,
        ),
        (
            AccountRef::system(SystemAccount::StripeClearing, fee.currency),
            -fee.minor,
        ),
    ])
}

/// The lines of one balance transaction of a dispute on a top-up into `wallet_owner`'s wallet,
/// with Stripe's signs: `amount` negative when Stripe withdrew it, positive when it returned it;
/// `fee` positive when Stripe charged it, negative when it returned it, zero when none.
///
/// Errors: `INVALID_AMOUNT` (a zero amount, or a fee that moves the same way as the amount),
/// `CURRENCY_MISMATCH`.
pub fn chargeback_lines(
    wallet_owner: &str,
    amount: Money,
    fee: Money,
) -> Result<Vec<Line>, LedgerError> {
    same_currency(amount, &[fee])?;
    if amount.minor == 0 {
        return Err(LedgerError::InvalidAmount("amount"));
    }
    if fee.minor != 0 && fee.minor.signum() == amount.minor.signum() {
        return Err(LedgerError::InvalidAmount("fee"));
    }
    let currency = amount.currency;
    let clearing = amount
        .minor
        .checked_sub(fee.minor)
        .ok_or(LedgerError::InvalidAmount("amount"))?;
    let mut lines = Vec::with_capacity(3);
    lines.push((
        AccountRef::driver_wallet(wallet_owner, currency),
        -amount.minor,
    ));
    push_nonzero(
        &mut lines,
        AccountRef::system(SystemAccount::DisputeFees, currency),
        fee.minor,
    );
    push_nonzero(
        &mut lines,
        AccountRef::system(SystemAccount::StripeClearing, currency),
        clearing,
    );
    Ok(lines)
}

/// The lines of paying a cover session's `total` from `owner`'s wallet, split into `net` premium
/// for the insurer, ShiftCover's `commission` and `ipt` for HMRC.
///
/// Errors: `INVALID_AMOUNT` (a negative part, or a total that is not positive), `UNBALANCED` when
/// the parts do not add up to the total, `CURRENCY_MISMATCH`.
pub fn session_charge_lines(
    owner: &str,
    total: Money,
    net: Money,
    commission: Money,
    ipt: Money,
) -> Result<Vec<Line>, LedgerError> {
    same_currency(total, &[net, commission, ipt])?;
    if total.minor <= 0 {
        return Err(LedgerError::InvalidAmount("total"));
    }
    for (name, part) in [("net", net), ("commission", commission), ("ipt", ipt)] {
        if part.minor < 0 {
            return Err(LedgerError::InvalidAmount(name));
        }
    }
    let parts = i128::from(net.minor) + i128::from(commission.minor) + i128::from(ipt.minor);
    if parts != i128::from(total.minor) {
        return Err(LedgerError::Unbalanced {
            sum: i128::from(total.minor) - parts,
        });
    }
    let currency = total.currency;
    let mut lines = Vec::with_capacity(4);
    lines.push((AccountRef::driver_wallet(owner, currency), total.minor));
    push_nonzero(
        &mut lines,
        AccountRef::system(SystemAccount::InsurerPayable, currency),
        -net.minor,
    );
    push_nonzero(
        &mut lines,
        AccountRef::system(SystemAccount::CommissionIncome, currency),
        -commission.minor,
    );
    push_nonzero(
        &mut lines,
        AccountRef::system(SystemAccount::IptPayable, currency),
        -ipt.minor,
    );
    Ok(lines)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::transactions::validate_lines;
    use shared::Currency;

    fn code(e: LedgerError) -> &'static str {
        e.code().unwrap_or("INTERNAL")
    }

    #[test]
    fn a_chargeback_and_its_reinstatement_mirror_each_other() {
        let wallet = AccountRef::driver_wallet("drv_1", Currency::Gbp);
        let fees = AccountRef::system(SystemAccount::DisputeFees, Currency::Gbp);
        let clearing = AccountRef::system(SystemAccount::StripeClearing, Currency::Gbp);
        let withdrawn = chargeback_lines("drv_1", Money::gbp(-1000), Money::gbp(1500)).unwrap();
        assert_eq!(
            withdrawn,
            vec![
                (wallet.clone(), 1000),
                (fees.clone(), 1500),
                (clearing.clone(), -2500)
            ]
        );
        validate_lines(Currency::Gbp, &withdrawn).unwrap();
        let back = chargeback_lines("drv_1", Money::gbp(1000), Money::gbp(-1500)).unwrap();
        assert_eq!(
            back,
            vec![
                (wallet.clone(), -1000),
                (fees, -1500),
                (clearing.clone(), 2500)
            ]
        );
        let fee_kept = chargeback_lines("drv_1", Money::gbp(1000), Money::gbp(0)).unwrap();
        assert_eq!(fee_kept, vec![(wallet, -1000), (clearing, 1000)]);
        validate_lines(Currency::Gbp, &fee_kept).unwrap();
        assert_eq!(
            code(chargeback_lines("d", Money::gbp(0), Money::gbp(0)).unwrap_err()),
            "INVALID_AMOUNT"
        );
        assert_eq!(
            code(chargeback_lines("d", Money::gbp(-10), Money::gbp(-1)).unwrap_err()),
            "INVALID_AMOUNT"
        );
    }

    #[test]
    fn top_up_credits_the_wallet_in_full_and_clearing_net_of_fee() {
        let lines = top_up_lines("drv_1", Money::gbp(1000), Money::gbp(35)).unwrap();
        assert_eq!(
            lines,
            vec![
                (
                    AccountRef::system(SystemAccount::StripeClearing, Currency::Gbp),
                    965
                ),
                (
                    AccountRef::system(SystemAccount::StripeFees, Currency::Gbp),
                    35
                ),
                (AccountRef::driver_wallet("drv_1", Currency::Gbp), -1000),
            ]
        );
        validate_lines(Currency::Gbp, &lines).unwrap();
        let no_fee = top_up_lines("drv_1", Money::gbp(500), Money::gbp(0)).unwrap();
        assert_eq!(no_fee.len(), 2);
        validate_lines(Currency::Gbp, &no_fee).unwrap();

        assert_eq!(
            code(top_up_lines("d", Money::gbp(0), Money::gbp(0)).unwrap_err()),
            "INVALID_AMOUNT"
        );
        assert_eq!(
            code(top_up_lines("d", Money::gbp(10), Money::gbp(11)).unwrap_err()),
            "INVALID_AMOUNT"
        );
        assert_eq!(
            code(top_up_lines("d", Money::gbp(10), Money::gbp(-1)).unwrap_err()),
            "INVALID_AMOUNT"
        );
        let eur = Money {
            minor: 1,
            currency: Currency::Eur,
        };
        assert_eq!(
            code(top_up_lines("d", Money::gbp(10), eur).unwrap_err()),
            "CURRENCY_MISMATCH"
        );
    }

    #[test]
    fn session_charge_debits_the_wallet_and_credits_the_three_splits() {
        // £4.48 with IPT 3/28 inside: 48p IPT; net 320p, commission 80p.
        let lines = session_charge_lines(
            "drv_1",
            Money::gbp(448),
            Money::gbp(320),
            Money::gbp(80),
            Money::gbp(48),
        )
        .unwrap();
        assert_eq!(
            lines,
            vec![
                (AccountRef::driver_wallet("drv_1", Currency::Gbp), 448),
                (
                    AccountRef::system(SystemAccount::InsurerPayable, Currency::Gbp),
                    -320
                ),
                (
                    AccountRef::system(SystemAccount::CommissionIncome, Currency::Gbp),
                    -80
                ),
                (
                    AccountRef::system(SystemAccount::IptPayable, Currency::Gbp),
                    -48
                ),
            ]
        );
        validate_lines(Currency::Gbp, &lines).unwrap();
        let no_commission = session_charge_lines(
            "drv_1",
            Money::gbp(112),
            Money::gbp(100),
            Money::gbp(0),
            Money::gbp(12),
        )
        .unwrap();
        assert_eq!(no_commission.len(), 3);

        assert_eq!(
            code(
                session_charge_lines(
                    "d",
                    Money::gbp(100),
                    Money::gbp(60),
                    Money::gbp(25),
                    Money::gbp(14)
                )
                .unwrap_err()
            ),
            "UNBALANCED"
        );
        assert_eq!(
            code(
                session_charge_lines(
                    "d",
                    Money::gbp(100),
                    Money::gbp(110),
                    Money::gbp(-10),
                    Money::gbp(0)
                )
                .unwrap_err()
            ),
            "INVALID_AMOUNT"
        );
        assert_eq!(
            code(
                session_charge_lines(
                    "d",
                    Money::gbp(0),
                    Money::gbp(0),
                    Money::gbp(0),
                    Money::gbp(0)
                )
                .unwrap_err()
            ),
            "INVALID_AMOUNT"
        );
    }
}
