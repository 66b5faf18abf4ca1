//! Finance over HTTP: CSV downloads only for finance staff (and admin), clear codes for bad and
//! future periods in CSV and GraphQL, a day reconciled through `reconcileStripeDay`, and a
//! driver's weekly statements (GraphQL and PDF) seen by nobody else.

use crate::support::{Auth, TestApp, first_code};
use accounts::Role;
use chrono::{Datelike, Duration, Utc};
use serde_json::json;

async fn csv_as(app: &TestApp, auth: &Auth, path: &str) -> (u16, String, String) {
    let req = auth.apply(reqwest::Client::new().get(format!("{}{path}", app.base)));
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ctype, res.text().await.unwrap())
}

#[tokio::test]
async fn finance_csv_downloads_are_for_finance_staff_only_and_bad_periods_are_coded() {
    let app = TestApp::spawn().await;
    let finance_user = app.staff_user(Role::Finance, "correct horse battery").await;
    let finance = Auth::StaffCookie(
        app.staff_session(finance_user.email.as_str(), "correct horse battery")
            .await,
    );
    let ops_user = app.staff_user(Role::Ops, "correct horse battery").await;
    let ops = Auth::StaffCookie(
        app.staff_session(ops_user.email.as_str(), "correct horse battery")
            .await,
    );
    let driver = app.driver().await.auth();
    let (_, _, key) = app.partner_with_key("Deliveroo").await;
    let partner = Auth::Bearer(key);

    let paths = [
        "/finance/bordereau.csv?month=2025-01",
        "/finance/trial-balance.csv?at=2025-01-31",
        "/finance/ipt.csv?from=2025-01&to=2025-03",
        "/finance/reconciliation.csv?day=2025-01-15",
    ];
    for path in paths {
        let (status, ctype, body) = csv_as(&app, &finance, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(ctype.starts_with("text/csv"), "{path}: {ctype}");
        assert!(body.lines().count() >= 1, "{path}: a header at least");
        for (who, auth, expected) in [
            ("anonymous", &Auth::Anonymous, 401),
            ("driver", &driver, 403),
            ("partner", &partner, 403),
            ("ops", &ops, 403),
        ] {
            let (status, _, _) = csv_as(&app, auth, path).await;
            assert_eq!(status, expected, "{who} on {path}");
        }
    }
    let (_, _, body) = csv_as(&app, &finance, paths[0]).await;
    assert!(body.starts_with("month,booked_at,transaction_type,certificate_ref,insured"));

    for (path, code) in [
        ("/finance/bordereau.csv?month=2099-01", "PERIOD_IN_FUTURE"),
        ("/finance/bordereau.csv?month=2025-13", "INVALID_PERIOD"),
        ("/finance/bordereau.csv", "INVALID_PERIOD"),
        ("/finance/trial-balance.csv?at=yesterday", "INVALID_PERIOD"),
        (
            "/finance/reconciliation.csv?day=2099-01-01",
            "PERIOD_IN_FUTURE",
        ),
    ] {
        let (status, _, body) = csv_as(&app, &finance, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], code, "{path}");
    }
    let (status, _, _) = csv_as(&app, &finance, "/finance/passwords.csv").await;
    assert_eq!(status, 404);

    // GraphQL: the same codes, and an on-demand reconciliation of an empty day.
    let (_, body) = app
        .gql_as(
            &finance,
            "{ bordereau(month: \"2099-01\") { month } }",
            json!({}),
        )
        .await;
    assert_eq!(first_code(&body), "PERIOD_IN_FUTURE");
    let (_, body) = app
        .gql_as(
            &finance,
            "{ bordereau(month: \"January\") { month } }",
            json!({}),
        )
        .await;
    assert_eq!(first_code(&body), "INVALID_PERIOD");
    let (_, body) = app
        .gql_as(
            &finance,
            "mutation { reconcileStripeDay(input: { day: \"2099-01-01\", importFromStripe: false }) { summary { day } userErrors { field code } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["reconcileStripeDay"]["userErrors"][0]["code"],
        "PERIOD_IN_FUTURE"
    );
    let (_, body) = app
        .gql_as(
            &finance,
            "mutation { reconcileStripeDay(input: { day: \"2025-01-15\", importFromStripe: false }) { summary { day statuses { count } cash { stripeNet } } userErrors { code } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["reconcileStripeDay"]["summary"]["day"],
        "2025-01-15"
    );
    let (_, body) = app
        .gql_as(
            &finance,
            "{ reconciliationSummary(day: \"2025-01-15\") { day statuses { count } } trialBalance(at: \"2025-01-15\") { balances lines { accountKind } } }",
            json!({}),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(body["data"]["reconciliationSummary"]["day"], "2025-01-15");
    assert_eq!(body["data"]["trialBalance"]["balances"], true);
}

async fn credit(app: &TestApp, driver: accounts::DriverId, pence: i64) {
    let mut conn = app.db.conn().await.unwrap();
    let amount = shared::Money::gbp(pence);
    ledger::post(
        &mut conn,
        ledger::NewTransaction {
            kind: ledger::TransactionKind::TopUp,
            cause: ledger::Cause::new("test_credit", uuid::Uuid::new_v4().to_string()),
            currency: amount.currency,
            description: "Wallet top-up".into(),
            lines: ledger::top_up_lines(
                &driver.to_string(),
                amount,
                shared::Money::zero(amount.currency),
            )
            .unwrap(),
            metadata: serde_json::Value::Null,
        },
    )
    .await
    .unwrap();
}

async fn pdf_as(app: &TestApp, auth: &Auth, path: &str) -> (u16, String, Vec<u8>) {
    let res = auth
        .apply(reqwest::Client::new().get(format!("{}{path}", app.base)))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ctype, res.bytes().await.unwrap().to_vec())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

const STATEMENTS: &str = "query($after: String) { statements(first: 1, after: $after) {
    edges { cursor node { weekStart weekEnd openingBalance { minor } closingBalance { minor }
            topUps { minor formatted } charges { minor } refundsAndOther { minor }
            movements { kind description amount { minor } } pdfPath } }
    pageInfo { hasNextPage } } }";

#[tokio::test]
async fn a_driver_reads_weekly_statements_and_their_pdf_and_nobody_else_can() {
    let app = TestApp::spawn().await;
    let ada = app.driver().await;
    let bob = app.driver().await;
    let (_, body) = app.gql_as(&ada.auth(), STATEMENTS, json!({})).await;
    assert_eq!(body["data"]["statements"]["edges"], json!([]), "{body}");

    credit(&app, ada.id, 5_000).await;
    credit(&app, ada.id, 2_500).await;
    let today = Utc::now().date_naive();
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));

    let (_, body) = app.gql_as(&ada.auth(), STATEMENTS, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    let page = &body["data"]["statements"];
    assert_eq!(page["pageInfo"]["hasNextPage"], false);
    let edge = &page["edges"][0];
    assert_eq!(edge["cursor"], monday.to_string());
    let st = &edge["node"];
    assert_eq!(st["weekStart"], monday.to_string());
    assert_eq!(st["weekEnd"], (monday + Duration::days(6)).to_string());
    assert_eq!(st["openingBalance"]["minor"], 0);
    assert_eq!(st["topUps"]["minor"], 7_500);
    assert_eq!(st["topUps"]["formatted"], "£75.00");
    assert_eq!(st["charges"]["minor"], 0);
    assert_eq!(st["closingBalance"]["minor"], 7_500);
    assert_eq!(
        st["movements"],
        json!([
            { "kind": "TOP_UP", "description": "Wallet top-up", "amount": { "minor": 5_000 } },
            { "kind": "TOP_UP", "description": "Wallet top-up", "amount": { "minor": 2_500 } },
        ])
    );
    let pdf_path = st["pdfPath"].as_str().unwrap().to_owned();
    assert_eq!(pdf_path, format!("/statements/{monday}.pdf"));
    // Nothing before this week.
    let (_, body) = app
        .gql_as(
            &ada.auth(),
            STATEMENTS,
            json!({ "after": monday.to_string() }),
        )
        .await;
    assert_eq!(body["data"]["statements"]["edges"], json!([]), "{body}");
    let (_, body) = app
        .gql_as(&ada.auth(), STATEMENTS, json!({ "after": "last week" }))
        .await;
    assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");

    // Any day of a week names it; an earlier week opens at zero; a week to come is refused.
    let one = "query($w: Date!) { statement(weekStart: $w) { weekStart openingBalance { minor } closingBalance { minor } movements { kind } } }";
    let (_, body) = app
        .gql_as(
            &ada.auth(),
            one,
            json!({ "w": (monday + Duration::days(3)).to_string() }),
        )
        .await;
    assert_eq!(body["data"]["statement"]["weekStart"], monday.to_string());
    assert_eq!(body["data"]["statement"]["closingBalance"]["minor"], 7_500);
    let (_, body) = app
        .gql_as(
            &ada.auth(),
            one,
            json!({ "w": (monday - Duration::days(14)).to_string() }),
        )
        .await;
    assert_eq!(body["data"]["statement"]["closingBalance"]["minor"], 0);
    assert_eq!(body["data"]["statement"]["movements"], json!([]));
    let (_, body) = app
        .gql_as(
            &ada.auth(),
            one,
            json!({ "w": (monday + Duration::days(7)).to_string() }),
        )
        .await;
    assert_eq!(first_code(&body), "PERIOD_IN_FUTURE", "{body}");
    // Bob's own statement of the same week is empty: statements are per driver.
    let (_, body) = app
        .gql_as(&bob.auth(), one, json!({ "w": monday.to_string() }))
        .await;
    assert_eq!(body["data"]["statement"]["closingBalance"]["minor"], 0);

    // The PDF: the driver's own, finance and ops by driver id, nobody else.
    let (status, ctype, pdf) = pdf_as(&app, &ada.auth(), &pdf_path).await;
    assert_eq!(status, 200);
    assert_eq!(ctype, "application/pdf");
    assert!(pdf.starts_with(b"%PDF-1.4"));
    assert!(contains(&pdf, "(ShiftCover weekly statement)"));
    assert!(contains(&pdf, "75.00)"), "the closing balance is printed");
    assert!(contains(&pdf, "(Wallet top-up)"));
    let (status, _, pdf) = pdf_as(&app, &bob.auth(), &pdf_path).await;
    assert_eq!(status, 200);
    assert!(contains(&pdf, "(No movements this week.)"));
    assert!(!contains(&pdf, "(Wallet top-up)"));
    let finance_user = app.staff_user(Role::Finance, "correct horse battery").await;
    let finance = Auth::StaffCookie(
        app.staff_session(finance_user.email.as_str(), "correct horse battery")
            .await,
    );
    let by_id = format!("{pdf_path}?driver={}", ada.id);
    let (status, _, pdf) = pdf_as(&app, &finance, &by_id).await;
    assert_eq!(status, 200);
    assert!(contains(&pdf, "(Wallet top-up)"));
    let (_, _, key) = app.partner_with_key("Stuart").await;
    for (who, auth, path, expected) in [
        ("anonymous", Auth::Anonymous, pdf_path.clone(), 401),
        ("a partner", Auth::Bearer(key), pdf_path.clone(), 404),
        (
            "finance without a driver",
            finance.clone(),
            pdf_path.clone(),
            404,
        ),
        ("another driver by id", bob.auth(), by_id.clone(), 404),
        (
            "not a date",
            ada.auth(),
            "/statements/last-week.pdf".into(),
            404,
        ),
    ] {
        let (status, _, _) = pdf_as(&app, &auth, &path).await;
        assert_eq!(status, expected, "{who}");
    }
    let future = format!("/statements/{}.pdf", monday + Duration::days(7));
    let (status, _, body) = pdf_as(&app, &ada.auth(), &future).await;
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "PERIOD_IN_FUTURE");
}
