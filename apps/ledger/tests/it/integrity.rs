//! The integrity check finds what the triggers could not stop: rows written with triggers off.

use crate::support::*;
use diesel_async::SimpleAsyncConnection;
use ledger::{Cause, Portion, check_integrity, reverse};
use shared::Currency;
use testkit::TestDb;
use uuid::Uuid;

#[tokio::test]
async fn a_clean_ledger_reports_clean_and_a_broken_one_names_its_faults() {
    let db = TestDb::new().await.unwrap();
    // This ledger is broken below on purpose: keep it out of the suite's closing check.
    db.broken_on_purpose();
    let mut conn = db.conn().await.unwrap();
    let me = new_owner();
    top_up(&mut conn, &me, 1000).await;
    let charge = charge(&mut conn, &me, 448, 320, 80, 48).await;
    reverse(
        &mut conn,
        charge.id(),
        Cause::new("refund", "ref_ok"),
        Portion::Amount(100),
    )
    .await
    .unwrap();

    let report = check_integrity(&mut conn).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.transactions_checked, 3);
    assert_eq!(report.postings_checked, 2 + 4 + 4);

    // As a restore or a manual repair might: with replication-role triggers off, the deferred
    // balance check and the foreign keys do not run.
    let wallet_id = ledger::find_account(&mut conn, &wallet(&me))
        .await
        .unwrap()
        .unwrap()
        .id
        .uuid();
    let unbalanced = Uuid::now_v7();
    let ghost = Uuid::now_v7();
    let orphan = Uuid::now_v7();
    let over = Uuid::now_v7();
    let at = "'2026-11-23T09:00:00Z'";
    conn.batch_execute(&format!(
        "BEGIN; SET LOCAL session_replication_role = replica;
         INSERT INTO ledger_transactions (id, kind, cause_type, cause_id, description, currency, created_at)
              VALUES ('{unbalanced}', 'adjustment', 'manual', 'm1', 'broken', 'GBP', {at}),
                     ('{ghost}', 'adjustment', 'manual', 'm2', 'broken', 'GBP', {at});
         INSERT INTO ledger_postings (transaction_id, account_id, amount, currency, created_at, line_no)
              VALUES ('{unbalanced}', '{wallet_id}', 5, 'GBP', {at}, 0),
                     ('{ghost}', '{wallet_id}', 7, 'GBP', {at}, 0),
                     ('{ghost}', '{missing_account}', -7, 'GBP', {at}, 1),
                     ('{orphan}', '{wallet_id}', 3, 'GBP', {at}, 0);
         -- A reversal that takes back more than its original gave.
         INSERT INTO ledger_transactions (id, kind, cause_type, cause_id, description, currency, created_at, reverses_id)
              VALUES ('{over}', 'reversal', 'manual', 'm3', 'broken', 'GBP', {at}, '{original}');
         INSERT INTO ledger_postings (transaction_id, account_id, amount, currency, created_at, line_no)
              SELECT '{over}', account_id, -amount, currency, {at}, line_no
                FROM ledger_postings WHERE transaction_id = '{original}';
         COMMIT;",
        missing_account = Uuid::now_v7(),
        original = charge.id().uuid(),
    ))
    .await
    .unwrap();

    let report = check_integrity(&mut conn).await.unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.unbalanced.len(), 2, "{report:?}");
    let broken = &report.unbalanced[0];
    assert_eq!(broken.id.uuid(), unbalanced);
    assert_eq!(broken.currency, Currency::Gbp);
    assert_eq!(broken.postings, 1);
    assert_eq!(broken.sum_minor, 5);
    let ghostly = &report.unbalanced[1];
    assert_eq!(ghostly.id.uuid(), ghost);
    assert_eq!((ghostly.postings, ghostly.sum_minor), (2, 0));
    assert_eq!(ghostly.foreign_currency_postings, 1);
    assert_eq!(report.orphan_postings, 1);
    assert_eq!(report.over_reversed, vec![charge.id()]);
    assert_eq!(report.nonzero_currency_totals, vec![(Currency::Gbp, 8)]);
}
