//! Finance over HTTP: CSV downloads only for finance staff (and admin), clear codes for bad and
//! future periods in CSV and GraphQL, and a day reconciled through `reconcileStripeDay`.

use crate::support::{Auth, TestApp, first_code};
use accounts::Role;
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
