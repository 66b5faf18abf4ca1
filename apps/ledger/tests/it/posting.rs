//! Posting transactions and reading balances.

use crate::support::*;
use diesel_async::AsyncConnection;
use ledger::{
    AccountKind, AccountRef, Cause, LedgerError, NewTransaction, SystemAccount, TransactionKind,
    account_for, find_account, get_transaction, post, trial_balance, wallet_balance,
};
use shared::{Currency, Money};
use testkit::TestDb;

#[tokio::test]
async fn a_top_up_and_a_charge_move_the_balances_they_should() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();

    let top_up = post(&mut conn, top_up_tx(&me, 1000, 35, "top_1"))
        .await
        .unwrap();
    assert_eq!(top_up.transaction.kind, TransactionKind::TopUp);
    assert_eq!(top_up.transaction.cause, Cause::new("top_up", "top_1"));
    assert_eq!(
        top_up.transaction.metadata,
        serde_json::json!({ "payment_intent": "pi_test" })
    );
    assert_eq!(top_up.amount_for(&wallet(&me)), Some(Money::gbp(-1000)));
    assert!(top_up.id().to_string().starts_with("ltx_"));

    assert_eq!(
        wallet_balance(&mut conn, &me, Currency::Gbp).await.unwrap(),
        Money::gbp(1000)
    );
    assert_eq!(bal(&mut conn, &wallet(&me)).await, -1000);
    assert_eq!(
        bal(&mut conn, &gbp(SystemAccount::StripeClearing)).await,
        965
    );
    assert_eq!(bal(&mut conn, &gbp(SystemAccount::StripeFees)).await, 35);

    charge(&mut conn, &me, 448, 320, 80, 48).await;
    assert_eq!(
        wallet_balance(&mut conn, &me, Currency::Gbp).await.unwrap(),
        Money::gbp(552)
    );
    assert_eq!(
        bal(&mut conn, &gbp(SystemAccount::InsurerPayable)).await,
        -320
    );
    assert_eq!(
        bal(&mut conn, &gbp(SystemAccount::CommissionIncome)).await,
        -80
    );
    assert_eq!(bal(&mut conn, &gbp(SystemAccount::IptPayable)).await, -48);
    assert_eq!(
        bal(&mut conn, &gbp(SystemAccount::PremiumReceivable)).await,
        0
    );

    // Another currency is another wallet.
    assert_eq!(
        wallet_balance(&mut conn, &me, Currency::Eur).await.unwrap(),
        Money::zero(Currency::Eur)
    );

    // The trial balance sums to zero and groups wallets.
    let trial = trial_balance(&mut conn, Currency::Gbp).await.unwrap();
    assert_eq!(trial.len(), AccountKind::ALL.len());
    assert_eq!(trial.iter().map(|(_, m)| m.minor).sum::<i64>(), 0);
    assert_eq!(trial[0], (AccountKind::DriverWallet, Money::gbp(-552)));

    // Read back exactly as posted, in line order.
    let read = get_transaction(&mut conn, top_up.id()).await.unwrap();
    assert_eq!(read, top_up);
    let missing = get_transaction(&mut conn, ledger::TransactionId::new())
        .await
        .unwrap_err();
    assert_eq!(code(&missing), "NOT_FOUND");
}

#[tokio::test]
async fn posting_the_same_cause_twice_answers_already_posted_and_writes_nothing() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();

    let first = post(&mut conn, top_up_tx(&me, 500, 0, "top_same"))
        .await
        .unwrap();
    let again = post(&mut conn, top_up_tx(&me, 500, 0, "top_same"))
        .await
        .unwrap_err();
    assert_eq!(code(&again), "ALREADY_POSTED");
    assert_eq!(again.already_posted(), Some(first.id()));
    // Even with different lines: the cause is the key, not the content.
    let different = post(&mut conn, top_up_tx(&me, 999, 0, "top_same"))
        .await
        .unwrap_err();
    assert_eq!(different.already_posted(), Some(first.id()));
    assert_eq!(bal(&mut conn, &wallet(&me)).await, -500);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM ledger_transactions").await,
        1
    );

    // The same cause id under another kind is another transaction.
    let mut fee = top_up_tx(&me, 500, 0, "top_same");
    fee.kind = TransactionKind::Adjustment;
    post(&mut conn, fee).await.unwrap();
    let found = ledger::find_by_cause(
        &mut conn,
        TransactionKind::TopUp,
        &Cause::new("top_up", "top_same"),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(found.id(), first.id());
}

/// A change that makes a valid transaction invalid.
type Change = Box<dyn Fn(&mut NewTransaction)>;

#[tokio::test]
async fn invalid_transactions_are_refused_with_specific_codes_and_write_nothing() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();
    let base = top_up_tx(&me, 500, 0, "top_bad");

    let cases: Vec<(&str, Change)> = vec![
        ("EMPTY", Box::new(|t| t.lines.clear())),
        ("UNBALANCED", Box::new(|t| t.lines[0].1 += 1)),
        (
            "ZERO_AMOUNT",
            Box::new(|t| {
                t.lines[0].1 = 0;
                t.lines[1].1 = 0;
            }),
        ),
        (
            "CURRENCY_MISMATCH",
            Box::new(|t| t.currency = Currency::Eur),
        ),
        (
            "CURRENCY_MISMATCH",
            Box::new(|t| {
                t.lines[0].0 = AccountRef::system(SystemAccount::StripeClearing, Currency::Eur)
            }),
        ),
        (
            "DUPLICATE_ACCOUNT",
            Box::new(|t| {
                let wallet = t.lines[1].0.clone();
                t.lines[0].0 = wallet;
            }),
        ),
        (
            "INVALID_OWNER",
            Box::new(|t| t.lines[1].0 = AccountRef::driver_wallet("a b", Currency::Gbp)),
        ),
        (
            "INVALID_CAUSE",
            Box::new(|t| t.cause.cause_type = "Top Up".into()),
        ),
        (
            "INVALID_KIND",
            Box::new(|t| t.kind = TransactionKind::Reversal),
        ),
        (
            "INVALID_DESCRIPTION",
            Box::new(|t| t.description = " ".into()),
        ),
        (
            "INVALID_METADATA",
            Box::new(|t| t.metadata = serde_json::json!("x")),
        ),
        (
            "AMOUNT_OUT_OF_RANGE",
            Box::new(|t| {
                t.lines[0].1 = i64::MAX;
                t.lines[1].1 = -i64::MAX;
            }),
        ),
    ];
    for (expected, change) in cases {
        let mut tx = base.clone();
        change(&mut tx);
        let err = post(&mut conn, tx).await.unwrap_err();
        assert_eq!(code(&err), expected, "{err}");
        assert!(err.user_error().is_some());
    }
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM ledger_transactions").await,
        0
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM ledger_accounts").await,
        0
    );
}

#[tokio::test]
async fn post_joins_the_callers_transaction() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();

    // Rolled back with the caller.
    let result = conn
        .transaction::<(), LedgerError, _>(async |conn| {
            post(conn, top_up_tx(&me, 700, 0, "top_rolled_back")).await?;
            Err(LedgerError::NotFound)
        })
        .await;
    assert!(result.is_err());
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM ledger_transactions").await,
        0
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM ledger_accounts").await,
        0
    );

    // A refused post inside (a savepoint) leaves the caller's transaction usable.
    let first = post(&mut conn, top_up_tx(&me, 100, 0, "top_earlier"))
        .await
        .unwrap();
    conn.transaction::<(), LedgerError, _>(async |conn| {
        let repeat = post(conn, top_up_tx(&me, 100, 0, "top_earlier"))
            .await
            .unwrap_err();
        assert_eq!(repeat.already_posted(), Some(first.id()));
        let unbalanced = {
            let mut tx = top_up_tx(&me, 100, 0, "top_broken");
            tx.lines[0].1 = 1;
            post(conn, tx).await.unwrap_err()
        };
        assert_eq!(code(&unbalanced), "UNBALANCED");
        post(conn, top_up_tx(&me, 250, 0, "top_later")).await?;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(
        wallet_balance(&mut conn, &me, Currency::Gbp).await.unwrap(),
        Money::gbp(350)
    );
}

#[tokio::test]
async fn accounts_are_created_once_on_first_use_and_never_by_reads() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();

    assert_eq!(bal(&mut conn, &wallet(&me)).await, 0);
    assert!(
        find_account(&mut conn, &wallet(&me))
            .await
            .unwrap()
            .is_none()
    );
    let page = ledger::transactions_for_account(&mut conn, &wallet(&me), ledger::Page::newest(10))
        .await
        .unwrap();
    assert!(page.entries.is_empty());
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM ledger_accounts").await,
        0
    );

    let a = account_for(&mut conn, &wallet(&me)).await.unwrap();
    let b = account_for(&mut conn, &wallet(&me)).await.unwrap();
    assert_eq!(a, b);
    assert!(a.id.to_string().starts_with("lac_"));
    assert_eq!(a.kind(), AccountKind::DriverWallet);
    assert_eq!(a.normal_balance, ledger::NormalBalance::Credit);
    let eur = account_for(&mut conn, &AccountRef::driver_wallet(&me, Currency::Eur))
        .await
        .unwrap();
    assert_ne!(eur.id, a.id);
    let clearing = account_for(&mut conn, &gbp(SystemAccount::StripeClearing))
        .await
        .unwrap();
    assert_eq!(clearing.normal_balance, ledger::NormalBalance::Debit);
    assert_eq!(
        account_for(&mut conn, &gbp(SystemAccount::StripeClearing))
            .await
            .unwrap()
            .id,
        clearing.id
    );
    let loaded = ledger::get_accounts(&mut conn, &[a.id, clearing.id])
        .await
        .unwrap();
    assert_eq!(loaded.len(), 2);

    // Locking inside a transaction works and returns the account.
    let locked = conn
        .transaction::<_, LedgerError, _>(async |conn| {
            ledger::lock_account(conn, &wallet(&me)).await
        })
        .await
        .unwrap();
    assert_eq!(locked.id, a.id);
}
