//! Reversals: undoing an earlier transaction in whole or in part with a new, opposite one.
//!
//! Nothing in the ledger is ever changed or deleted; a mistake or a refund is a `reversal`
//! transaction that points at its original and posts the negated lines, scaled to the portion
//! being reversed.
//!
//! # Sizes
//! A transaction's *gross* is the sum of its debit lines (equal to the sum of its credit lines):
//! for a session charge, the total the wallet paid; for a top-up, the amount topped up. A portion
//! to reverse is a gross amount, so a partial refund of £3 of a £10 charge gives the wallet back
//! exactly £3 and takes the same proportion back from net premium, commission and IPT — refunds
//! reverse at the original tax rate.
//!
//! # Partial reversal in integer arithmetic
//! Reversals scale what is *left* of the original (its lines plus earlier reversals of it, per
//! account) by `target / remaining gross`. Each side (debits, credits) is scaled on its own with
//! the largest-remainder rule: every line first gets the floor of its exact share, then the pennies
//! still missing to reach `target` go one each to the lines with the largest remainders, ties to
//! the earlier line of the original. So each side sums to exactly `target` (the reversal balances),
//! no line ever gets more than it has left (partial reversals can never over-reverse an account),
//! and the result depends only on the amounts and their order (the same request always yields the
//! same lines). Lines that scale to zero are left out. The last reversal, [`Portion::Whole`], takes
//! exactly what is left, so a series of partial reversals ends with every account back where it was.
//!
//! Reversals of one original are serialised by a row lock on the original, so two concurrent
//! partial refunds cannot together exceed it.
//!
//! # Undoing a reversal
//! A reversal is never reversed by [`reverse`]; [`undo_reversal`] undoes one wholly, once (a
//! refund that failed after it was booked). What it gives back counts as not reversed on the
//! original again, so the original can be reversed by that much later. Undoings are not undone.

use crate::accounts::{Account, AccountRow};
use crate::error::LedgerError;
use crate::ids::{AccountId, TransactionId};
use crate::schema::{ledger_accounts, ledger_postings, ledger_transactions};
use crate::transactions::{
    Cause, Header, Posted, TransactionKind, TransactionRow, insert_header, insert_postings,
};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::Money;
use shared::money::{Rounding, round_div};
use std::collections::HashMap;

/// How much of a transaction to reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Portion {
    /// Everything not reversed yet.
    Whole,
    /// `numerator / denominator` of the original's gross, rounded down to a minor unit (a
    /// reversal never gives back more than the exact fraction, so fractions that add up to at
    /// most one can always all be reversed; use [`Portion::Whole`] for the last one).
    Fraction {
        /// At least 1.
        numerator: i64,
        /// At least `numerator`.
        denominator: i64,
    },
    /// This gross amount in minor units, at least 1.
    Amount(i64),
}

/// Scales balanced signed amounts (debit positive, summing to zero) to a smaller gross.
///
/// Returns amounts in the same positions, each of the same sign as its input (or zero) and no
/// larger in absolute value, whose debits sum to `target` and credits to `-target` (see the module
/// doc for the rule). `None` when the input does not balance, has no debits, or `target` is not in
/// `1..=gross`.
pub fn scale_balanced(amounts: &[i64], target: i64) -> Option<Vec<i64>> {
    let sum: i128 = amounts.iter().map(|a| i128::from(*a)).sum();
    let gross: i128 = amounts
        .iter()
        .filter(|a| **a > 0)
        .map(|a| i128::from(*a))
        .sum();
    let target_wide = i128::from(target);
    if sum != 0 || gross == 0 || target_wide < 1 || target_wide > gross {
        return None;
    }
    let mut out = vec![0i64; amounts.len()];
    for positive in [true, false] {
        // (index, magnitude) of this side's lines, in input order.
        let side: Vec<(usize, i128)> = amounts
            .iter()
            .enumerate()
            .filter(|(_, a)| if positive { **a > 0 } else { **a < 0 })
            .map(|(i, a)| (i, i128::from(*a).abs()))
            .collect();
        let mut given: i128 = 0;
        let mut remainders = Vec::with_capacity(side.len());
        for (i, magnitude) in &side {
            let exact = magnitude * target_wide;
            let floor = exact / gross;
            given += floor;
            out[*i] = i64::try_from(floor).ok()?;
            remainders.push((exact % gross, *i));
        }
        // Largest remainder first; equal remainders go to the earlier line.
        remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let missing = usize::try_from(target_wide - given).ok()?;
        for (_, i) in remainders.into_iter().take(missing) {
            out[i] += 1;
        }
        if !positive {
            for (i, _) in &side {
                out[*i] = -out[*i];
            }
        }
    }
    Some(out)
}

/// Reverses `portion` of transaction `original`, caused by `cause` (e.g. an ops refund or a
/// cancelled top-up), and returns the reversal.
///
/// The reversal has kind `reversal`, points at the original, and carries the portion and its
/// gross in its metadata. Idempotent by cause like [`crate::post`].
///
/// Errors: `ALREADY_POSTED` (this cause already reversed something); `NOT_FOUND`
/// (`transactionId`); `NOT_REVERSIBLE` for a reversal; `ALREADY_REVERSED` when nothing is left;
/// `INVALID_PORTION`; `REVERSAL_EXCEEDS_REMAINING`; `INVALID_CAUSE`.
pub async fn reverse(
    conn: &mut AsyncPgConnection,
    original: TransactionId,
    cause: Cause,
    portion: Portion,
) -> Result<Posted, LedgerError> {
    cause.validate()?;
    if let Portion::Fraction {
        numerator,
        denominator,
    } = portion
        && (numerator < 1 || denominator < numerator)
    {
        return Err(LedgerError::InvalidPortion(
            "the fraction must be more than 0 and at most 1",
        ));
    }
    if let Portion::Amount(amount) = portion
        && amount < 1
    {
        return Err(LedgerError::InvalidPortion("the amount must be positive"));
    }
    conn.transaction::<_, LedgerError, _>(async |conn| {
        // Serialises reversals of one original (FOR NO KEY UPDATE leaves the reversal's own
        // foreign-key check free to take its key-share lock).
        let row = lock_transaction(conn, original).await?;
        if row.reverses_id.is_some() {
            return Err(LedgerError::NotReversible);
        }
        post_reversal(conn, original, row, &cause, portion).await
    })
    .await
}

/// Undoes a reversal, wholly and once: a refund that Stripe reported succeeded and then failed
/// gives its money back. The undoing is a `reversal` of the reversal, caused by `cause`, and
/// what it puts back counts as not reversed on the original again (a later reversal of the
/// original may take it), so the original's accounts end where they would have been without
/// the undone reversal. An undoing cannot itself be undone.
///
/// Errors: `ALREADY_POSTED` (this cause already reversed something); `NOT_FOUND`
/// (`transactionId`); `NOT_A_REVERSAL`; `NOT_REVERSIBLE` for an undoing; `ALREADY_REVERSED`
/// when it was undone before; `INVALID_CAUSE`.
pub async fn undo_reversal(
    conn: &mut AsyncPgConnection,
    reversal: TransactionId,
    cause: Cause,
) -> Result<Posted, LedgerError> {
    cause.validate()?;
    conn.transaction::<_, LedgerError, _>(async |conn| {
        let peek = ledger_transactions::table
            .find(reversal)
            .select(ledger_transactions::reverses_id)
            .first::<Option<TransactionId>>(conn)
            .await
            .optional()?
            .ok_or(LedgerError::NotFound)?;
        let root = peek.ok_or(LedgerError::NotAReversal)?;
        // The original first, as every reversal of it locks it: an undoing and a new partial
        // reversal of the same original are serialised.
        let root_row = lock_transaction(conn, root).await?;
        if root_row.reverses_id.is_some() {
            return Err(LedgerError::NotReversible);
        }
        let row = lock_transaction(conn, reversal).await?;
        post_reversal(conn, reversal, row, &cause, Portion::Whole).await
    })
    .await
}

async fn lock_transaction(
    conn: &mut AsyncPgConnection,
    id: TransactionId,
) -> Result<TransactionRow, LedgerError> {
    ledger_transactions::table
        .find(id)
        .select(TransactionRow::as_select())
        .for_no_key_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(LedgerError::NotFound)
}

/// Posts the reversal of `portion` of `original` (locked by the caller): what is left of it is
/// its lines, plus its reversals, plus the undoings of those reversals.
async fn post_reversal(
    conn: &mut AsyncPgConnection,
    original: TransactionId,
    row: TransactionRow,
    cause: &Cause,
    portion: Portion,
) -> Result<Posted, LedgerError> {
    // A repeat of this cause must answer ALREADY_POSTED even once nothing is left to reverse.
    if let Some(existing) =
        crate::transactions::find_by_cause(conn, TransactionKind::Reversal, cause).await?
    {
        return Err(LedgerError::AlreadyPosted(existing.id()));
    }
    let currency = crate::accounts::parse_currency(&row.currency)?;

    let lines: Vec<(i64, AccountRow)> = ledger_postings::table
        .inner_join(ledger_accounts::table)
        .filter(ledger_postings::transaction_id.eq(original))
        .order(ledger_postings::line_no.asc())
        .select((ledger_postings::amount, AccountRow::as_select()))
        .load(conn)
        .await?;
    let mut reversing: Vec<TransactionId> = ledger_transactions::table
        .filter(ledger_transactions::reverses_id.eq(original))
        .select(ledger_transactions::id)
        .load(conn)
        .await?;
    reversing.push(original);
    // Postings of the reversals of `original` and of the undoings of those reversals.
    let reversed: Vec<(AccountId, i64)> = ledger_postings::table
        .inner_join(ledger_transactions::table)
        .filter(ledger_transactions::reverses_id.eq_any(&reversing))
        .filter(ledger_transactions::id.ne(original))
        .select((ledger_postings::account_id, ledger_postings::amount))
        .load(conn)
        .await?;
    let mut reversed_by_account: HashMap<AccountId, i64> = HashMap::new();
    for (account, amount) in reversed {
        *reversed_by_account.entry(account).or_default() += amount;
    }

    let mut accounts = Vec::with_capacity(lines.len());
    let mut remaining = Vec::with_capacity(lines.len());
    let mut original_gross: i64 = 0;
    for (amount, account) in lines {
        let left = amount + reversed_by_account.get(&account.id).copied().unwrap_or(0);
        // Scaling never overshoots, so what is left keeps the original's sign or is zero.
        if left != 0 && left.signum() != amount.signum() {
            return Err(anyhow::anyhow!(
                "transaction {original} is over-reversed on account {}",
                account.id
            )
            .into());
        }
        if amount > 0 {
            original_gross += amount;
        }
        remaining.push(left);
        accounts.push(Account::try_from(account)?);
    }
    let remaining_gross: i64 = remaining.iter().filter(|a| **a > 0).sum();
    if remaining_gross == 0 {
        return Err(LedgerError::AlreadyReversed);
    }
    let target = match portion {
        Portion::Whole => remaining_gross,
        Portion::Amount(amount) => amount,
        Portion::Fraction {
            numerator,
            denominator,
        } => round_div(
            i128::from(original_gross) * i128::from(numerator),
            i128::from(denominator),
            Rounding::Down,
        )
        .ok_or_else(|| anyhow::anyhow!("fraction of {original} out of range"))?,
    };
    if target < 1 {
        return Err(LedgerError::InvalidPortion(
            "the fraction is less than one minor unit",
        ));
    }
    if target > remaining_gross {
        return Err(LedgerError::ReversalExceedsRemaining {
            requested: Money {
                minor: target,
                currency,
            },
            remaining: Money {
                minor: remaining_gross,
                currency,
            },
        });
    }
    let scaled = scale_balanced(&remaining, target).ok_or_else(|| {
        anyhow::anyhow!("what is left of transaction {original} does not balance")
    })?;
    let reversal_lines: Vec<(Account, i64)> = accounts
        .into_iter()
        .zip(scaled)
        .filter(|(_, amount)| *amount != 0)
        .map(|(account, amount)| (account, -amount))
        .collect();

    let whole = target == original_gross;
    let description = if whole {
        format!("Reversal of {original}")
    } else {
        format!(
            "Partial reversal of {original}: {}",
            Money {
                minor: target,
                currency
            }
        )
    };
    let portion_json = serde_json::to_value(portion)
        .map_err(|e| anyhow::anyhow!("portion not serialisable: {e}"))?;
    let metadata = serde_json::json!({
        "reverses": original.to_string(),
        "original_kind": row.kind,
        "portion": portion_json,
        "gross_minor": target,
    });
    let header = Header {
        kind: TransactionKind::Reversal,
        cause,
        currency,
        description: &description,
        metadata: &metadata,
        reverses: Some(original),
    };
    let inserted = insert_header(conn, &header).await?;
    insert_postings(conn, inserted, &reversal_lines).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scaling_worked_examples() {
        // A £1 session charge: wallet debit 100; net 60, commission 25, IPT 15 credits.
        let charge = [100, -60, -25, -15];
        assert_eq!(scale_balanced(&charge, 100), Some(charge.to_vec()));
        assert_eq!(scale_balanced(&charge, 50), Some(vec![50, -30, -13, -7]));
        // 33/100: exact 19.8, 8.25, 4.95 -> floors 19, 8, 4; two pennies to .95 then .8.
        assert_eq!(scale_balanced(&charge, 33), Some(vec![33, -20, -8, -5]));
        // Ties go to the earlier line.
        assert_eq!(scale_balanced(&[2, -1, -1], 1), Some(vec![1, -1, 0]));
        assert_eq!(scale_balanced(&charge, 0), None);
        assert_eq!(scale_balanced(&charge, 101), None);
        assert_eq!(scale_balanced(&[5, -4], 1), None);
        assert_eq!(scale_balanced(&[], 1), None);
    }

    fn balanced_lines() -> impl Strategy<Value = Vec<i64>> {
        // 1..4 debits and 1..4 credits whose totals are equal: split one gross both ways.
        (1i64..10_000_000, 1usize..4, 1usize..4, any::<u64>()).prop_map(
            |(gross, debits, credits, seed)| {
                fn split(gross: i64, parts: usize, seed: u64) -> Vec<i64> {
                    let mut out = Vec::with_capacity(parts);
                    let mut left = gross;
                    let mut s = seed;
                    for k in 0..parts {
                        let lines_left = i64::try_from(parts - k).unwrap();
                        if lines_left == 1 || left <= lines_left {
                            out.push(left);
                            left = 0;
                            continue;
                        }
                        s = s
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let max = left - (lines_left - 1);
                        let take = 1 + i64::try_from(s >> 33).unwrap() % max;
                        out.push(take);
                        left -= take;
                    }
                    out.retain(|a| *a != 0);
                    out
                }
                let mut lines = split(gross, debits, seed);
                lines.extend(
                    split(gross, credits, seed.rotate_left(17))
                        .into_iter()
                        .map(|a| -a),
                );
                lines
            },
        )
    }

    proptest! {
        #[test]
        fn scaled_lines_balance_hit_the_target_and_never_overshoot(
            lines in balanced_lines(),
            pick in any::<u64>(),
        ) {
            let gross: i64 = lines.iter().filter(|a| **a > 0).sum();
            let target = 1 + i64::try_from(pick % u64::try_from(gross).unwrap()).unwrap();
            let scaled = scale_balanced(&lines, target).unwrap();
            prop_assert_eq!(scaled.iter().sum::<i64>(), 0);
            prop_assert_eq!(scaled.iter().filter(|a| **a > 0).sum::<i64>(), target);
            for (s, a) in scaled.iter().zip(&lines) {
                prop_assert!(s.abs() <= a.abs());
                prop_assert!(*s == 0 || s.signum() == a.signum());
                // Within one penny of the exact proportional share.
                let exact = i128::from(*a) * i128::from(target);
                let diff = (i128::from(*s) * i128::from(gross) - exact).abs();
                prop_assert!(diff < i128::from(gross));
            }
            // Determinism.
            prop_assert_eq!(scale_balanced(&lines, target).unwrap(), scaled);
        }

        #[test]
        fn successive_partials_then_the_rest_restore_every_line(
            lines in balanced_lines(),
            cuts in proptest::collection::vec(1u64..1000, 1..5),
        ) {
            let mut remaining = lines.clone();
            let mut reversed = vec![0i64; lines.len()];
            for cut in cuts {
                let gross: i64 = remaining.iter().filter(|a| **a > 0).sum();
                if gross == 0 { break; }
                let target = 1 + i64::try_from(cut % u64::try_from(gross).unwrap()).unwrap();
                let scaled = scale_balanced(&remaining, target).unwrap();
                for i in 0..lines.len() {
                    remaining[i] -= scaled[i];
                    reversed[i] += scaled[i];
                    prop_assert!(remaining[i] == 0 || remaining[i].signum() == lines[i].signum());
                }
            }
            let gross: i64 = remaining.iter().filter(|a| **a > 0).sum();
            if gross > 0 {
                let rest = scale_balanced(&remaining, gross).unwrap();
                prop_assert_eq!(&rest, &remaining);
                for i in 0..lines.len() { reversed[i] += rest[i]; }
            }
            prop_assert_eq!(reversed, lines);
        }
    }
}
