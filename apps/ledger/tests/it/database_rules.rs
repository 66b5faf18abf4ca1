//! The database itself refuses unbalanced transactions and changes to history, whoever writes.
//! These tests bypass the Rust API and speak raw SQL.

use crate::support::*;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use ledger::SystemAccount;
use testkit::TestDb;
use uuid::Uuid;

/// Two GBP accounts created through raw SQL: (wallet id, clearing id).
async fn raw_accounts(conn: &mut AsyncPgConnection) -> (Uuid, Uuid) {
    let wallet = Uuid::now_v7();
    let clearing = Uuid::now_v7();
    conn.batch_execute(&format!(
        "INSERT INTO ledger_accounts (id, kind, owner_id, currency, normal_balance) VALUES \
         ('{wallet}', 'driver_wallet', 'drv_raw', 'GBP', 'credit'), \
         ('{clearing}', 'stripe_clearing', NULL, 'GBP', 'debit')"
    ))
    .await
    .unwrap();
    (wallet, clearing)
}

fn insert_tx(id: Uuid, cause: &str) -> String {
    format!(
        "INSERT INTO ledger_transactions (id, kind, cause_type, cause_id, description, currency, created_at) \
         VALUES ('{id}', 'top_up', 'top_up', '{cause}', 'raw', 'GBP', '2026-11-23T09:00:00Z');"
    )
}

fn insert_posting(tx: Uuid, account: Uuid, amount: i64, line: i16) -> String {
    format!(
        "INSERT INTO ledger_postings (transaction_id, account_id, amount, currency, created_at, line_no) \
         VALUES ('{tx}', '{account}', {amount}, 'GBP', '2026-11-23T09:00:00Z', {line});"
    )
}

/// Runs `statements` in one transaction and returns the error of its COMMIT, if any. Every
/// statement before the COMMIT must succeed: the checks are deferred to the commit.
async fn commit_error(conn: &mut AsyncPgConnection, statements: &str) -> Option<String> {
    conn.batch_execute("BEGIN").await.unwrap();
    conn.batch_execute(statements).await.unwrap();
    conn.batch_execute("COMMIT")
        .await
        .err()
        .map(|e| e.to_string())
}

#[tokio::test]
async fn an_unbalanced_transaction_cannot_be_committed() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let (wallet, clearing) = raw_accounts(&mut conn).await;

    let tx = Uuid::now_v7();
    let err = commit_error(
        &mut conn,
        &format!(
            "{}{}{}",
            insert_tx(tx, "unbalanced"),
            insert_posting(tx, clearing, 1000, 0),
            insert_posting(tx, wallet, -900, 1)
        ),
    )
    .await
    .expect("commit must fail");
    assert!(err.contains("unbalanced") && err.contains("100"), "{err}");
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM ledger_transactions").await,
        0
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM ledger_postings").await,
        0
    );

    // One posting, or none, is refused too.
    let single = Uuid::now_v7();
    let err = commit_error(
        &mut conn,
        &format!(
            "{}{}",
            insert_tx(single, "single"),
            insert_posting(single, clearing, 1000, 0)
        ),
    )
    .await
    .expect("commit must fail");
    assert!(err.contains("at least 2"), "{err}");
    let bare = Uuid::now_v7();
    let err = commit_error(&mut conn, &insert_tx(bare, "bare"))
        .await
        .expect("commit must fail");
    assert!(err.contains("0 posting"), "{err}");

    // A posting whose time differs from its transaction's.
    let skewed = Uuid::now_v7();
    let err = commit_error(
        &mut conn,
        &format!(
            "{}{}{}",
            insert_tx(skewed, "skewed"),
            insert_posting(skewed, clearing, 1000, 0),
            insert_posting(skewed, wallet, -1000, 1).replace("09:00:00Z", "09:00:01Z")
        ),
    )
    .await
    .expect("commit must fail");
    assert!(err.contains("created_at"), "{err}");

    // The same rows, balanced, commit; postings may come before their checks in any order.
    let ok = Uuid::now_v7();
    assert_eq!(
        commit_error(
            &mut conn,
            &format!(
                "{}{}{}",
                insert_tx(ok, "balanced"),
                insert_posting(ok, clearing, 1000, 0),
                insert_posting(ok, wallet, -1000, 1)
            ),
        )
        .await,
        None
    );
    assert_eq!(
        bal(&mut conn, &gbp(SystemAccount::StripeClearing)).await,
        1000
    );

    // A posting added later to the committed transaction unbalances it: refused at commit.
    let other = Uuid::now_v7();
    conn.batch_execute(&format!(
        "INSERT INTO ledger_accounts (id, kind, currency, normal_balance) \
         VALUES ('{other}', 'stripe_fees', 'GBP', 'debit')"
    ))
    .await
    .unwrap();
    let err = commit_error(&mut conn, &insert_posting(ok, other, 5, 2))
        .await
        .expect("commit must fail");
    assert!(err.contains("unbalanced"), "{err}");
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM ledger_postings").await,
        2
    );
}

#[tokio::test]
async fn postings_must_match_the_transactions_and_accounts_currency() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let (wallet, clearing) = raw_accounts(&mut conn).await;
    let tx = Uuid::now_v7();
    conn.batch_execute("BEGIN").await.unwrap();
    conn.batch_execute(&format!(
        "{}{}",
        insert_tx(tx, "mixed"),
        insert_posting(tx, clearing, 1000, 0)
    ))
    .await
    .unwrap();
    let err = conn
        .batch_execute(&insert_posting(tx, wallet, -1000, 1).replace("'GBP'", "'EUR'"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("foreign key"), "{err}");
    conn.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM ledger_transactions").await,
        0
    );
}

#[tokio::test]
async fn history_cannot_be_updated_deleted_or_truncated() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();
    let posted = top_up(&mut conn, &me, 1000).await;
    let id = posted.id().uuid();

    for statement in [
        format!("UPDATE ledger_postings SET amount = amount * 2 WHERE transaction_id = '{id}'"),
        format!("UPDATE ledger_postings SET amount = 0 WHERE transaction_id = '{id}'"),
        format!("DELETE FROM ledger_postings WHERE transaction_id = '{id}'"),
        format!("UPDATE ledger_transactions SET description = 'edited' WHERE id = '{id}'"),
        format!("DELETE FROM ledger_transactions WHERE id = '{id}'"),
        "UPDATE ledger_accounts SET owner_id = 'drv_someone_else' WHERE kind = 'driver_wallet'"
            .to_owned(),
        "DELETE FROM ledger_accounts".to_owned(),
        "TRUNCATE ledger_postings".to_owned(),
        "TRUNCATE ledger_transactions CASCADE".to_owned(),
        "TRUNCATE ledger_accounts CASCADE".to_owned(),
    ] {
        let err = conn.batch_execute(&statement).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
    assert_eq!(
        ledger::get_transaction(&mut conn, posted.id())
            .await
            .unwrap(),
        posted
    );
    assert_eq!(bal(&mut conn, &wallet(&me)).await, -1000);

    // A raw insert of a second transaction for the same cause is refused by the unique key.
    let err = conn
        .batch_execute(&format!(
            "INSERT INTO ledger_transactions (id, kind, cause_type, cause_id, description, currency) \
             VALUES ('{}', 'top_up', 'top_up', '{}', 'dup', 'GBP')",
            Uuid::now_v7(),
            posted.transaction.cause.cause_id
        ))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("ledger_transactions_cause_unique"),
        "{err}"
    );
}
