//! Stripe's fees on card payments, learned from the imported balance transactions and booked in
//! the ledger once, so that a day with fees reconciles as matched.

use chrono::Utc;
use diesel_async::RunQueryDsl;
use shared::{FixedClock, Money};
use testkit::TestDb;

async fn top_up(conn: &mut shared::DbConn, id: &str, pence: i64) {
    let amount = Money::gbp(pence);
    ledger::post(
        conn,
        ledger::NewTransaction {
            kind: ledger::TransactionKind::TopUp,
            cause: ledger::Cause::new("top_up", id),
            currency: amount.currency,
            description: "Card top-up".into(),
            lines: ledger::top_up_lines(
                "drv_0000000000000000000000000000000a",
                amount,
                Money::gbp(0),
            )
            .unwrap(),
            metadata: serde_json::Value::Null,
        },
    )
    .await
    .unwrap();
}

/// A charge balance transaction as the import stores it.
async fn stripe_charge(conn: &mut shared::DbConn, txn: &str, top_up: &str, amount: i64, fee: i64) {
    diesel::sql_query(
        "INSERT INTO finance_stripe_balance_transactions (id, created, type, known_type, amount, \
             fee, net, currency, status, reporting_category, available_on, source_id, \
             match_kind, match_cause_type, match_cause_id, raw, import_run_id, imported_at) \
         VALUES ($1, now(), 'charge', true, $2, $3, $2 - $3, 'GBP', 'available', 'charge', now(), \
             'ch_' || $1, 'top_up', 'top_up', $4, '{}', \
             (SELECT id FROM finance_import_runs LIMIT 1), now())",
    )
    .bind::<diesel::sql_types::Text, _>(txn)
    .bind::<diesel::sql_types::BigInt, _>(amount)
    .bind::<diesel::sql_types::BigInt, _>(fee)
    .bind::<diesel::sql_types::Text, _>(top_up)
    .execute(conn)
    .await
    .unwrap();
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Fee {
    #[diesel(sql_type = diesel::sql_types::Text)]
    cause_id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    fees: i64,
}

async fn fee_transactions(conn: &mut shared::DbConn) -> Vec<Fee> {
    diesel::sql_query(
        "SELECT t.cause_id, sum(p.amount) FILTER (WHERE a.kind = 'stripe_fees')::bigint AS fees \
           FROM ledger_transactions t JOIN ledger_postings p ON p.transaction_id = t.id \
           JOIN ledger_accounts a ON a.id = p.account_id \
          WHERE t.kind = 'fee' GROUP BY t.cause_id ORDER BY t.cause_id",
    )
    .load(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn fees_stripe_reports_are_booked_once_and_the_day_matches() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query(
        "INSERT INTO finance_import_runs (id, object, period_start, period_end, status, started_at, updated_at, finished_at) \
         VALUES (gen_random_uuid(), 'balance_transaction', now() - interval '1 day', now(), 'completed', now(), now(), now())",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    top_up(&mut conn, "top_a", 1_000).await;
    top_up(&mut conn, "top_b", 2_000).await;
    top_up(&mut conn, "top_c", 500).await;
    // A: Stripe kept 50p. B: Stripe says £21.00 was paid, the ledger £20.00: a real difference,
    // whose fee must not be booked to paper over it. C: no fee.
    stripe_charge(&mut conn, "txn_a", "top_a", 1_000, 50).await;
    stripe_charge(&mut conn, "txn_b", "top_b", 2_100, 60).await;
    stripe_charge(&mut conn, "txn_c", "top_c", 500, 0).await;
    let today = Utc::now().date_naive();
    let clock = FixedClock::at(Utc::now());

    for round in 0..2 {
        let summary = finance::reconcile_day(&mut conn, &clock, today)
            .await
            .unwrap();
        assert_eq!(
            fee_transactions(&mut conn).await,
            vec![Fee {
                cause_id: "top_a".into(),
                fees: 50
            }],
            "round {round}: the one fee, once"
        );
        let items = finance::reconcile::run_items(&mut conn, summary.run_id, today, None, 100)
            .await
            .unwrap();
        let status_of = |txn: &str| {
            items
                .iter()
                .find(|i| i.stripe_id.as_deref() == Some(txn))
                .map(|i| i.status.clone())
                .unwrap()
        };
        assert_eq!(status_of("txn_a"), "matched", "round {round}: {items:?}");
        assert_eq!(status_of("txn_c"), "matched");
        assert_eq!(status_of("txn_b"), "amount_mismatch");
        let b = items
            .iter()
            .find(|i| i.stripe_id.as_deref() == Some("txn_b"))
            .unwrap();
        assert!(
            b.detail
                .as_deref()
                .unwrap_or("")
                .contains("fee: Stripe 60, ledger fees 0"),
            "{b:?}"
        );
        assert!(
            items.iter().all(|i| i.status != "missing_at_stripe"),
            "the fee transaction is not itself missing at Stripe: {items:?}"
        );
    }
    let report = ledger::check_integrity(&mut conn).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}
