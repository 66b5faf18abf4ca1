//! Importing from a Stripe that answers with its real list shape (wiremock): a page that fails
//! mid-import, the resume after it, and a type this code does not know.

use crate::support::*;
use chrono::{Duration, Utc};
use diesel_async::RunQueryDsl;
use shared::FixedClock;
use testkit::TestDb;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn txn(id: &str, type_: &str, amount: i64, fee: i64, created: i64) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created + 172800,
        "balance_type": "payments",
        "created": created,
        "currency": "gbp",
        "description": null,
        "exchange_rate": null,
        "fee": fee,
        "fee_details": if fee > 0 { serde_json::json!([{"amount": fee, "application": null, "currency": "gbp", "description": "Stripe processing fees", "type": "stripe_fee"}]) } else { serde_json::json!([]) },
        "net": amount - fee,
        "reporting_category": "charge",
        "source": format!("ch_{id}"),
        "status": "available",
        "type": type_,
    })
}

fn page(data: Vec<serde_json::Value>, has_more: bool) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "url": "/v1/balance_transactions",
    }))
}

#[tokio::test]
async fn a_failed_page_is_resumed_without_refetching_or_duplicates_and_unknown_types_are_flagged() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let stripe = MockServer::start().await;
    let mut settings = testkit::settings_for(&db);
    settings.stripe.base_url = stripe.uri();
    let reader = finance::StripeReader::new(&settings.stripe).unwrap();
    let clock = FixedClock::at(Utc::now());
    let start = Utc::now() - Duration::days(1);
    let end = Utc::now();
    let t = start.timestamp() + 60;

    let first_page = vec![
        txn("txn_4", "charge", 1000, 35, t + 3),
        txn("txn_3", "charge", 2000, 50, t + 2),
    ];
    let second_page = vec![
        txn("txn_2", "climate_order_purchase", -25, 0, t + 1),
        txn("txn_1", "charge", 500, 20, t),
    ];
    Mock::given(method("GET"))
        .and(path("/v1/balance_transactions"))
        .and(query_param_is_missing("starting_after"))
        .and(query_param("limit", "100"))
        .respond_with(page(first_page.clone(), true))
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/balance_transactions"))
        .and(query_param("starting_after", "txn_3"))
        .respond_with(ResponseTemplate::new(500).set_body_json(serde_json::json!({
            "error": {"type": "api_error", "message": "Something went wrong"}
        })))
        .mount(&stripe)
        .await;
    let err = finance::import_balance_transactions(&mut conn, &reader, &clock, start, end)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INTERNAL");

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Run {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        cursor: Option<String>,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        items: i64,
    }
    let runs: Vec<Run> = diesel::sql_query("SELECT status, cursor, items FROM finance_import_runs")
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        runs,
        [Run {
            status: "failed".into(),
            cursor: Some("txn_3".into()),
            items: 2
        }]
    );

    // Stripe is back: the import resumes after txn_3 and never asks for the first page again.
    stripe.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1/balance_transactions"))
        .and(query_param_is_missing("starting_after"))
        .respond_with(page(first_page, true))
        .expect(0)
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/balance_transactions"))
        .and(query_param("starting_after", "txn_3"))
        .respond_with(page(second_page, false))
        .expect(1)
        .mount(&stripe)
        .await;
    let resumed = finance::import_balance_transactions(&mut conn, &reader, &clock, start, end)
        .await
        .unwrap();
    assert!(resumed.resumed);
    assert_eq!(
        (resumed.pages, resumed.fetched, resumed.inserted),
        (1, 2, 2)
    );

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        r#type: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        known_type: bool,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        fee: i64,
    }
    let stored: Vec<Stored> = diesel::sql_query(
        "SELECT id, type, known_type, fee FROM finance_stripe_balance_transactions ORDER BY id",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let ids: Vec<&str> = stored.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["txn_1", "txn_2", "txn_3", "txn_4"]);
    assert!(!stored[1].known_type && stored[1].r#type == "climate_order_purchase");
    assert!(
        stored
            .iter()
            .filter(|s| s.id != "txn_2")
            .all(|s| s.known_type)
    );
    assert_eq!(stored[3].fee, 35);
    let runs: Vec<Run> = diesel::sql_query("SELECT status, cursor, items FROM finance_import_runs")
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(runs[0].status, "completed");
    assert_eq!(runs[0].items, 4);

    // Bad input never panics: a period that ends before it starts, one in the future.
    let err = finance::import_balance_transactions(&mut conn, &reader, &clock, end, start)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_PERIOD");
    let err = finance::import_balance_transactions(
        &mut conn,
        &reader,
        &clock,
        end + Duration::days(2),
        end + Duration::days(3),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "PERIOD_IN_FUTURE");
}

#[tokio::test]
async fn dispute_and_refund_failure_balance_transactions_carry_their_ledger_keys() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let stripe = MockServer::start().await;
    let mut settings = testkit::settings_for(&db);
    settings.stripe.base_url = stripe.uri();
    let reader = finance::StripeReader::new(&settings.stripe).unwrap();
    let clock = FixedClock::at(Utc::now());
    let start = Utc::now() - Duration::days(1);
    let end = Utc::now();
    let t = start.timestamp() + 60;

    let with = |mut txn: serde_json::Value, category: &str, source: serde_json::Value| {
        txn["reporting_category"] = serde_json::json!(category);
        txn["source"] = source;
        txn
    };
    let refund = serde_json::json!({
        "id": "re_failed1", "object": "refund", "amount": 500, "created": t, "currency": "gbp",
        "metadata": { "refund_id": "rfd_0190f4b2c3d47e8f9a0b1c2d3e4f5a6b" },
        "payment_intent": null, "status": "failed", "failure_reason": "lost_or_stolen_card",
    });
    let data = vec![
        with(
            txn("txn_d1", "adjustment", -2000, 1500, t + 2),
            "dispute",
            serde_json::json!("dp_1"),
        ),
        with(
            txn("txn_d2", "adjustment", 2000, 0, t + 1),
            "dispute_reversal",
            serde_json::json!("dp_1"),
        ),
        with(
            txn("txn_r1", "refund_failure", 500, 0, t),
            "refund_failure",
            refund,
        ),
    ];
    Mock::given(method("GET"))
        .and(path("/v1/balance_transactions"))
        .respond_with(page(data, false))
        .mount(&stripe)
        .await;
    finance::import_balance_transactions(&mut conn, &reader, &clock, start, end)
        .await
        .unwrap();

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Keyed {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        match_kind: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        match_cause_type: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        match_cause_id: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        known_type: bool,
    }
    let stored: Vec<Keyed> = diesel::sql_query(
        "SELECT id, match_kind, match_cause_type, match_cause_id, known_type
           FROM finance_stripe_balance_transactions ORDER BY id",
    )
    .load(&mut conn)
    .await
    .unwrap();
    fn key(k: &Keyed) -> (&str, Option<&str>, Option<&str>, Option<&str>, bool) {
        (
            k.id.as_str(),
            k.match_kind.as_deref(),
            k.match_cause_type.as_deref(),
            k.match_cause_id.as_deref(),
            k.known_type,
        )
    }
    assert_eq!(
        stored.iter().map(key).collect::<Vec<_>>(),
        [
            (
                "txn_d1",
                Some("chargeback"),
                Some("stripe_balance_transaction"),
                Some("txn_d1"),
                true
            ),
            (
                "txn_d2",
                Some("chargeback"),
                Some("stripe_balance_transaction"),
                Some("txn_d2"),
                true
            ),
            (
                "txn_r1",
                Some("reversal"),
                Some("refund_failure"),
                Some("rfd_0190f4b2c3d47e8f9a0b1c2d3e4f5a6b"),
                true
            ),
        ]
    );
}
