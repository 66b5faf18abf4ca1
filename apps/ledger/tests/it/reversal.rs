//! Whole and partial reversals.

use crate::support::*;
use ledger::{
    Cause, Portion, SystemAccount, TransactionKind, check_integrity, reverse, wallet_balance,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use shared::{Currency, Money};
use testkit::TestDb;

#[tokio::test]
async fn an_undone_reversal_gives_back_once_and_can_be_taken_again() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();
    let top_up = ledger::post(&mut conn, top_up_tx(&me, 2000, 0, "top_u"))
        .await
        .unwrap();
    let refund = reverse(
        &mut conn,
        top_up.id(),
        Cause::new("refund", "rfd_1"),
        Portion::Amount(1500),
    )
    .await
    .unwrap();
    assert_eq!(bal(&mut conn, &wallet(&me)).await, -500);

    let undone = ledger::undo_reversal(
        &mut conn,
        refund.id(),
        Cause::new("refund_failure", "rfd_1"),
    )
    .await
    .unwrap();
    assert_eq!(undone.transaction.reverses, Some(refund.id()));
    assert_eq!(bal(&mut conn, &wallet(&me)).await, -2000);
    // Once: the same cause is ALREADY_POSTED, another finds nothing left.
    let again = ledger::undo_reversal(
        &mut conn,
        refund.id(),
        Cause::new("refund_failure", "rfd_1"),
    )
    .await
    .unwrap_err();
    assert_eq!(again.already_posted(), Some(undone.id()));
    let other = ledger::undo_reversal(&mut conn, refund.id(), Cause::new("refund_failure", "x"))
        .await
        .unwrap_err();
    assert_eq!(code(&other), "ALREADY_REVERSED");
    // An undoing is not undone, and only reversals are.
    let err = ledger::undo_reversal(&mut conn, undone.id(), Cause::new("oops", "1"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_REVERSIBLE");
    let err = ledger::undo_reversal(&mut conn, top_up.id(), Cause::new("oops", "2"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_A_REVERSAL");
    let err = reverse(
        &mut conn,
        undone.id(),
        Cause::new("oops", "3"),
        Portion::Whole,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "NOT_REVERSIBLE");

    // The whole top-up can be reversed again, and no more.
    let err = reverse(
        &mut conn,
        top_up.id(),
        Cause::new("refund", "rfd_2"),
        Portion::Amount(2001),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "REVERSAL_EXCEEDS_REMAINING");
    reverse(
        &mut conn,
        top_up.id(),
        Cause::new("refund", "rfd_3"),
        Portion::Whole,
    )
    .await
    .unwrap();
    assert_eq!(bal(&mut conn, &wallet(&me)).await, 0);
    assert_eq!(bal(&mut conn, &gbp(SystemAccount::StripeClearing)).await, 0);
    assert!(check_integrity(&mut conn).await.unwrap().is_clean());
}

#[tokio::test]
async fn a_whole_reversal_restores_every_balance() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();
    let top_up = ledger::post(&mut conn, top_up_tx(&me, 2000, 50, "top_r"))
        .await
        .unwrap();

    let reversal = reverse(
        &mut conn,
        top_up.id(),
        Cause::new("top_up_cancelled", "top_r"),
        Portion::Whole,
    )
    .await
    .unwrap();
    assert_eq!(reversal.transaction.kind, TransactionKind::Reversal);
    assert_eq!(reversal.transaction.reverses, Some(top_up.id()));
    assert_eq!(
        reversal.transaction.description,
        format!("Reversal of {}", top_up.id())
    );
    assert_eq!(
        reversal.transaction.metadata["reverses"],
        serde_json::json!(top_up.id().to_string())
    );
    assert_eq!(reversal.transaction.metadata["gross_minor"], 2000);
    // Negated lines, in the original's order.
    let negated: Vec<_> = top_up
        .postings
        .iter()
        .map(|p| (p.account.clone(), p.amount.negated()))
        .collect();
    let got: Vec<_> = reversal
        .postings
        .iter()
        .map(|p| (p.account.clone(), p.amount))
        .collect();
    assert_eq!(got, negated);
    for account in [
        wallet(&me),
        gbp(SystemAccount::StripeClearing),
        gbp(SystemAccount::StripeFees),
    ] {
        assert_eq!(bal(&mut conn, &account).await, 0, "{account}");
    }

    // Nothing is left; the same cause again is ALREADY_POSTED, a new cause ALREADY_REVERSED.
    let again = reverse(
        &mut conn,
        top_up.id(),
        Cause::new("top_up_cancelled", "top_r"),
        Portion::Whole,
    )
    .await
    .unwrap_err();
    assert_eq!(again.already_posted(), Some(reversal.id()));
    let more = reverse(
        &mut conn,
        top_up.id(),
        Cause::new("top_up_cancelled", "top_r_2"),
        Portion::Amount(1),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&more), "ALREADY_REVERSED");

    // A reversal is not reversible; an unknown transaction is not found.
    let err = reverse(
        &mut conn,
        reversal.id(),
        Cause::new("oops", "1"),
        Portion::Whole,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "NOT_REVERSIBLE");
    let err = reverse(
        &mut conn,
        ledger::TransactionId::new(),
        Cause::new("oops", "2"),
        Portion::Whole,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
    assert!(check_integrity(&mut conn).await.unwrap().is_clean());
}

#[tokio::test]
async fn a_partial_refund_reverses_each_split_at_the_original_rate() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();
    top_up(&mut conn, &me, 5000).await;
    // £4.48: net £3.20, commission £0.80, IPT £0.48 (3/28 of the total).
    let charge = charge(&mut conn, &me, 448, 320, 80, 48).await;

    // Refund £1.00 of it.
    let refund = reverse(
        &mut conn,
        charge.id(),
        Cause::new("refund", "ref_1"),
        Portion::Amount(100),
    )
    .await
    .unwrap();
    assert_eq!(refund.amount_for(&wallet(&me)), Some(Money::gbp(-100)));
    // 100 * 320/448 = 71.43, 100 * 80/448 = 17.86, 100 * 48/448 = 10.71:
    // floors 71 + 17 + 10 = 98; the two pennies go to .86 then .71 (IPT before net on .71 vs .43).
    assert_eq!(
        refund.amount_for(&gbp(SystemAccount::InsurerPayable)),
        Some(Money::gbp(71))
    );
    assert_eq!(
        refund.amount_for(&gbp(SystemAccount::CommissionIncome)),
        Some(Money::gbp(18))
    );
    assert_eq!(
        refund.amount_for(&gbp(SystemAccount::IptPayable)),
        Some(Money::gbp(11))
    );
    assert_eq!(
        refund.transaction.description,
        format!("Partial reversal of {}: £1.00", charge.id())
    );
    assert_eq!(
        wallet_balance(&mut conn, &me, Currency::Gbp).await.unwrap(),
        Money::gbp(5000 - 448 + 100)
    );

    // More than is left is refused; a fraction works on the original's gross.
    let err = reverse(
        &mut conn,
        charge.id(),
        Cause::new("refund", "ref_2"),
        Portion::Amount(349),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "REVERSAL_EXCEEDS_REMAINING");
    assert_eq!(
        err.user_error().unwrap().message,
        "Only £3.48 is left to reverse; £3.49 was asked for."
    );
    assert!(matches!(
        err,
        ledger::LedgerError::ReversalExceedsRemaining {
            requested: Money { minor: 349, .. },
            remaining: Money { minor: 348, .. },
        }
    ));
    let quarter = reverse(
        &mut conn,
        charge.id(),
        Cause::new("refund", "ref_3"),
        Portion::Fraction {
            numerator: 1,
            denominator: 4,
        },
    )
    .await
    .unwrap();
    assert_eq!(quarter.amount_for(&wallet(&me)), Some(Money::gbp(-112)));

    for (bad, expected) in [
        (Portion::Amount(0), "INVALID_PORTION"),
        (
            Portion::Fraction {
                numerator: 2,
                denominator: 1,
            },
            "INVALID_PORTION",
        ),
        (
            Portion::Fraction {
                numerator: 1,
                denominator: 1000,
            },
            "INVALID_PORTION",
        ),
    ] {
        let err = reverse(&mut conn, charge.id(), Cause::new("refund", "ref_x"), bad)
            .await
            .unwrap_err();
        assert_eq!(code(&err), expected, "{bad:?}");
    }

    // The rest, then every account is exactly back where it was before the charge.
    reverse(
        &mut conn,
        charge.id(),
        Cause::new("refund", "ref_4"),
        Portion::Whole,
    )
    .await
    .unwrap();
    assert_eq!(
        wallet_balance(&mut conn, &me, Currency::Gbp).await.unwrap(),
        Money::gbp(5000)
    );
    for account in [
        SystemAccount::InsurerPayable,
        SystemAccount::CommissionIncome,
        SystemAccount::IptPayable,
    ] {
        assert_eq!(bal(&mut conn, &gbp(account)).await, 0, "{account:?}");
    }
    let report = check_integrity(&mut conn).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// Adds a reversal's postings to what is left of its original's lines.
fn apply(left: &mut [(ledger::AccountRef, i64)], reversal: &ledger::Posted) {
    for p in &reversal.postings {
        let line = left.iter_mut().find(|(a, _)| *a == p.account);
        line.expect("a reversal only touches the original's accounts")
            .1 += p.amount.minor;
    }
}

/// Many amounts and splits, stored for real: partial reversals balance (the database would refuse
/// them otherwise), never over-reverse, and a final whole reversal restores every account.
#[test]
fn partial_reversals_balance_for_many_amounts() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new()).unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        1i64..1_000_000,
        0u32..=100,
        0u32..=100,
        proptest::collection::vec(1u32..=1000, 1..4),
    );
    runner
        .run(&strategy, |(total, commission_pct, ipt_share, cuts)| {
            rt.block_on(async {
                let mut conn = db.conn().await.unwrap();
                let me = new_owner();
                // A split of the total into three non-negative parts.
                let ipt = total * i64::from(ipt_share) / 1000;
                let commission = (total - ipt) * i64::from(commission_pct) / 100;
                let net = total - ipt - commission;
                let charge = charge(&mut conn, &me, total, net, commission, ipt).await;
                // System accounts are shared by every case, so track this charge's lines
                // through the reversals' postings; the wallet is this case's own.
                let mut left: Vec<(ledger::AccountRef, i64)> = charge
                    .postings
                    .iter()
                    .map(|p| (p.account.clone(), p.amount.minor))
                    .collect();
                let original = left.clone();

                for (i, cut) in cuts.iter().enumerate() {
                    let portion = if i % 2 == 0 {
                        Portion::Fraction {
                            numerator: i64::from(*cut),
                            denominator: 4000,
                        }
                    } else {
                        Portion::Amount((total * i64::from(*cut) / 3000).max(1))
                    };
                    match reverse(
                        &mut conn,
                        charge.id(),
                        Cause::new("refund", unique("ref")),
                        portion,
                    )
                    .await
                    {
                        Ok(reversal) => {
                            let sum: i64 = reversal.postings.iter().map(|p| p.amount.minor).sum();
                            prop_assert_eq!(sum, 0);
                            prop_assert!(reversal.postings.len() >= 2);
                            apply(&mut left, &reversal);
                        }
                        Err(e) => prop_assert!(
                            matches!(code(&e), "INVALID_PORTION" | "REVERSAL_EXCEEDS_REMAINING"),
                            "{e}"
                        ),
                    }
                    // No account is ever reversed past its original amount.
                    for ((_, now), (_, was)) in left.iter().zip(&original) {
                        prop_assert!(*now == 0 || now.signum() == was.signum());
                        prop_assert!(now.abs() <= was.abs());
                    }
                    prop_assert_eq!(bal(&mut conn, &wallet(&me)).await, left[0].1);
                }
                let rest = reverse(
                    &mut conn,
                    charge.id(),
                    Cause::new("refund", unique("rest")),
                    Portion::Whole,
                )
                .await
                .unwrap();
                apply(&mut left, &rest);
                for (account, now) in &left {
                    prop_assert_eq!(*now, 0, "{}", account);
                }
                prop_assert_eq!(bal(&mut conn, &wallet(&me)).await, 0);
                Ok(())
            })
        })
        .unwrap();
    let report = rt.block_on(async {
        let mut conn = db.conn().await.unwrap();
        check_integrity(&mut conn).await.unwrap()
    });
    assert!(report.is_clean(), "{report:?}");
    drop(db);
}
