//! The exceptions queue, and reports for empty and future periods.

use crate::support::*;
use chrono::{Duration, NaiveDate, Utc};
use diesel_async::RunQueryDsl;
use finance::period::Month;
use finance::reports;
use shared::{Clock, FixedClock};
use testkit::TestDb;

#[tokio::test]
async fn exceptions_take_notes_and_resolve_once_with_an_audited_reason() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = FixedClock::at(Utc::now());
    let id = uuid::Uuid::now_v7();
    diesel::sql_query(format!(
        "INSERT INTO finance_exceptions (id, item_key, day, kind, stripe_id, currency, stripe_amount, \
             detail, status, first_run_id, created_at) \
         VALUES ('{id}', 'stripe:txn_1', current_date, 'missing_in_ledger', 'txn_1', 'GBP', 1000, \
             'no ledger transaction', 'open', '{id}', now())"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let staff = "stf_00000000000000000000000000000001";
    let err = finance::exceptions::add_note(&mut conn, &clock, staff, id, "  ")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_TEXT");
    let err = finance::exceptions::add_note(&mut conn, &clock, staff, uuid::Uuid::now_v7(), "x")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
    finance::exceptions::add_note(&mut conn, &clock, staff, id, "Asked Stripe support")
        .await
        .unwrap();
    let resolved = finance::exceptions::resolve(
        &mut conn,
        &clock,
        staff,
        id,
        "Test charge in live mode, refunded",
    )
    .await
    .unwrap();
    assert_eq!(resolved.status, "resolved");
    assert_eq!(resolved.resolved_by.as_deref(), Some(staff));
    let err = finance::exceptions::resolve(&mut conn, &clock, staff, id, "again")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ALREADY_RESOLVED");
    let notes = finance::exceptions::notes_of(&mut conn, id).await.unwrap();
    assert_eq!(notes.len(), 1);

    #[derive(diesel::QueryableByName)]
    struct Audit {
        #[diesel(sql_type = diesel::sql_types::Text)]
        action: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        reason: Option<String>,
    }
    let audit: Vec<Audit> = diesel::sql_query(format!(
        "SELECT action, reason FROM audit_log WHERE subject_id = '{id}' ORDER BY id"
    ))
    .load(&mut conn)
    .await
    .unwrap();
    let actions: Vec<(&str, Option<&str>)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.reason.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("finance.exception_noted", None),
            (
                "finance.exception_resolved",
                Some("Test charge in live mode, refunded")
            )
        ]
    );
}

#[tokio::test]
async fn empty_periods_give_empty_reports_and_future_ones_a_clear_error() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = FixedClock::at(Utc::now());
    let past = Month::parse("month", "2025-02").unwrap();
    let b = reports::bordereau(&mut conn, &clock, past).await.unwrap();
    assert!(b.lines.is_empty() && b.totals.is_empty());
    assert!(
        reports::bordereau_totals(&mut conn, &clock, past)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        reports::ipt_by_month(&mut conn, &clock, past, past)
            .await
            .unwrap()
            .is_empty()
    );
    let day = NaiveDate::from_ymd_opt(2025, 2, 3).unwrap();
    assert!(
        reports::trial_balance(&mut conn, &clock, day)
            .await
            .unwrap()
            .lines
            .is_empty()
    );
    let summary = finance::reconcile_day(&mut conn, &clock, day)
        .await
        .unwrap();
    assert!(summary.statuses.is_empty() && summary.cash.is_empty());

    let next_month = Month::of(clock.now().date_naive() + Duration::days(40));
    for err in [
        reports::bordereau(&mut conn, &clock, next_month)
            .await
            .unwrap_err(),
        reports::bordereau_totals(&mut conn, &clock, next_month)
            .await
            .unwrap_err(),
        reports::ipt_by_month(&mut conn, &clock, past, next_month)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(code(&err), "PERIOD_IN_FUTURE");
    }
    let tomorrow = clock.now().date_naive() + Duration::days(1);
    let err = finance::reconcile_day(&mut conn, &clock, tomorrow)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "PERIOD_IN_FUTURE");
    let err = reports::trial_balance(&mut conn, &clock, tomorrow)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "PERIOD_IN_FUTURE");
    let err = reports::ipt_by_month(&mut conn, &clock, next_month, past)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_PERIOD");
}
