//! Claims and charge disputes over HTTP, end to end: photo uploads (checked by content and
//! size), reporting a claim tied to the session of the time of loss (or flagged without cover),
//! the driver's claims, the ops queue and every step to settlement; disputing a charged
//! session, the ops view of the partner events and pricing behind it, and a refund that leaves
//! the ledger balanced. Also the user errors of each refusal.

use crate::support::*;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use shared::{FixedClock, Money};
use std::sync::Arc;

const JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01,
];

pub(crate) const REPORT: &str = "mutation($input: ReportClaimInput!) { reportClaim(input: $input) {
    claim { id reference status occurredAt reportedAt
            coverAtLoss { covered basis noCoverReason certificateNumber message
                          session { id } nearestSession { id } }
            photos { id contentType sizeBytes url } }
    replayed
    userErrors { field code message } } }";

const CLAIM: &str =
    "query($id: ID!) { claim(id: $id) { id reference status reserve { minor } paid { minor }
    history { fromStatus toStatus reason actorType } } }";

const TRANSITION: &str = "mutation($id: ID!, $status: ClaimStatus!, $reason: String!) {
    transitionClaim(input: { claimId: $id, status: $status, reason: $reason }) {
    claim { id status } userErrors { field code message } } }";

/// A signed-in driver with a complete profile, a car, an enrolment in food delivery, a funded
/// wallet, and one ended session from two hours ago to one hour ago.
pub(crate) struct World {
    pub(crate) app: TestApp,
    pub(crate) driver: SignedInDriver,
    pub(crate) vehicle: accounts::VehicleId,
    pub(crate) session: cover::CoverSession,
    photo_dir: std::path::PathBuf,
}

pub(crate) async fn world() -> World {
    let photo_dir =
        std::env::temp_dir().join(format!("sc-claims-flow-{}", uuid::Uuid::new_v4().simple()));
    let dir = photo_dir.to_string_lossy().into_owned();
    let app = TestApp::spawn_with(|s| {
        s.claims.photo_dir = dir;
        s.claims.max_photo_bytes = 4096;
    })
    .await;
    let driver = app.driver().await;
    let vehicle = app.vehicle_of(driver.id).await;
    let mut conn = app.db.conn().await.unwrap();
    let clock = app.core.clock.as_ref();
    let mut versions = pricing::seed_demo_products(&mut conn).await.unwrap();
    versions.pop();
    let food = versions.pop().unwrap();
    accounts::update_profile(
        &mut conn,
        clock,
        accounts::Actor::Driver(driver.id),
        driver.id,
        accounts::ProfileUpdate {
            name: Some("Ada Lovelace".into()),
            date_of_birth: chrono::NaiveDate::from_ymd_opt(1990, 3, 14),
            licence_issued_on: chrono::NaiveDate::from_ymd_opt(2010, 6, 1),
            postcode: Some("SW1A 1AA".into()),
            ..accounts::ProfileUpdate::default()
        },
    )
    .await
    .unwrap();
    let amount = Money::gbp(10_000);
    ledger::post(
        &mut conn,
        ledger::NewTransaction {
            kind: ledger::TransactionKind::TopUp,
            cause: ledger::Cause::new("test_credit", uuid::Uuid::new_v4().to_string()),
            currency: amount.currency,
            description: "Test credit".into(),
            lines: ledger::top_up_lines(
                &driver.id.to_string(),
                amount,
                Money::zero(amount.currency),
            )
            .unwrap(),
            metadata: Value::Null,
        },
    )
    .await
    .unwrap();
    cover::enrol(
        &mut conn,
        clock,
        driver.id,
        cover::EnrolInput {
            product_id: food.product_id,
            vehicle_id: vehicle,
            accept_terms: true,
        },
        &payments::WalletFunds,
    )
    .await
    .unwrap();
    let now = Utc::now();
    let session = session_between(
        &app,
        driver.id,
        vehicle,
        now - Duration::hours(2),
        now - Duration::hours(1),
        "first",
    )
    .await;
    World {
        app,
        driver,
        vehicle,
        session,
        photo_dir,
    }
}

async fn session_between(
    app: &TestApp,
    driver: accounts::DriverId,
    vehicle: accounts::VehicleId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    key: &str,
) -> cover::CoverSession {
    let mut conn = app.db.conn().await.unwrap();
    let started = cover::start_session(
        &mut conn,
        &FixedClock::at(from),
        &app.core.settings.cover,
        driver,
        cover::StartCover {
            vehicle_id: vehicle,
            product_id: None,
            quote_id: None,
            idempotency_key: key.into(),
            source: cover::SessionSource::Driver,
        },
        &payments::WalletFunds,
    )
    .await
    .unwrap();
    cover::end_session(
        &mut conn,
        &FixedClock::at(to),
        driver,
        started.session.id,
        cover::EndReason::Driver,
    )
    .await
    .unwrap()
    .session
}

async fn upload(app: &TestApp, auth: &Auth, body: Vec<u8>) -> (u16, Value) {
    let req = app
        .client
        .post(format!("{}/claims/photos", app.base))
        .header("content-type", "image/jpeg")
        .body(body);
    let res = auth.apply(req).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

pub(crate) fn report_input(
    vehicle: &str,
    at: DateTime<Utc>,
    key: &str,
    photos: Vec<Value>,
) -> Value {
    json!({ "input": {
        "occurredAt": at.to_rfc3339(),
        "location": "Old Street roundabout",
        "description": "A cyclist clipped my wing mirror.",
        "vehicleId": vehicle,
        "thirdPartyInvolved": true,
        "injuries": false,
        "photoIds": photos,
        "idempotencyKey": key,
    }})
}

fn user_error_code(body: &Value, field: &str) -> String {
    body["data"][field]["userErrors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no user error in {body}"))
        .to_owned()
}

#[tokio::test]
async fn a_driver_uploads_photos_and_reports_claims_with_and_without_cover() {
    let w = world().await;
    let app = &w.app;
    let auth = w.driver.auth();
    let vehicle = global_id("Vehicle", &w.vehicle);

    // Uploads: checked by content and size, for signed-in drivers only.
    let (status, body) = upload(app, &auth, JPEG.to_vec()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["photo"]["contentType"], "image/jpeg");
    let photo = body["photo"]["id"].as_str().unwrap().to_owned();
    let (status, body) = upload(app, &auth, b"%PDF-1.7 a form".to_vec()).await;
    assert_eq!(status, 415);
    assert_eq!(first_code(&body), "UNSUPPORTED_PHOTO_TYPE");
    let (status, body) = upload(app, &auth, [JPEG, &[0u8; 5000][..]].concat()).await;
    assert_eq!(status, 413);
    assert_eq!(first_code(&body), "PHOTO_TOO_LARGE");
    let (status, body) = upload(app, &Auth::Anonymous, JPEG.to_vec()).await;
    assert_eq!(status, 401);
    assert_eq!(first_code(&body), "UNAUTHENTICATED");

    // A loss in the middle of the session: covered by it, with the photo.
    let during = w.session.started_at + Duration::minutes(30);
    let input = report_input(&vehicle, during, "claim-1", vec![json!(photo)]);
    let (_, body) = app.gql_as(&auth, REPORT, input.clone()).await;
    let payload = &body["data"]["reportClaim"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    let claim = &payload["claim"];
    let reference = claim["reference"].as_str().unwrap().to_owned();
    assert!(reference.starts_with("CLM-"), "{reference}");
    assert_eq!(claim["status"], "REPORTED");
    assert_eq!(claim["coverAtLoss"]["covered"], true);
    assert_eq!(claim["coverAtLoss"]["basis"], "WORKING");
    assert_eq!(
        claim["coverAtLoss"]["certificateNumber"],
        w.session.certificate_number.as_str()
    );
    assert_eq!(
        claim["coverAtLoss"]["session"]["id"],
        global_id("CoverSession", &w.session.id)
    );
    assert_eq!(claim["photos"][0]["id"], photo.as_str());
    let claim_id = claim["id"].as_str().unwrap().to_owned();
    // The photo can be fetched by its driver, not by another.
    let url = claim["photos"][0]["url"].as_str().unwrap();
    let path = &url[url.find("/claims/photos/").unwrap()..];
    let res = auth
        .apply(app.client.get(format!("{}{path}", app.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    assert_eq!(res.bytes().await.unwrap().as_ref(), JPEG);
    let other = app.driver().await;
    let res = other
        .auth()
        .apply(app.client.get(format!("{}{path}", app.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // The driver is told the reference by text.
    let sms = latest_sms_body(&app.db, &phone_of(app, w.driver.id).await)
        .await
        .unwrap();
    assert!(sms.contains(&reference), "{sms}");

    // The same report again is the same claim.
    let (_, body) = app.gql_as(&auth, REPORT, input).await;
    assert_eq!(body["data"]["reportClaim"]["replayed"], true, "{body}");
    assert_eq!(
        body["data"]["reportClaim"]["claim"]["id"],
        claim_id.as_str()
    );

    // After the session: flagged, with the session as the nearest.
    let after = w.session.ended_at.unwrap() + Duration::minutes(20);
    let (_, body) = app
        .gql_as(
            &auth,
            REPORT,
            report_input(&vehicle, after, "claim-2", vec![]),
        )
        .await;
    let cover = &body["data"]["reportClaim"]["claim"]["coverAtLoss"];
    assert_eq!(cover["covered"], false, "{body}");
    assert_eq!(cover["noCoverReason"], "NO_SESSION");
    assert!(
        cover["message"]
            .as_str()
            .unwrap()
            .contains("No cover at time of loss")
    );
    assert_eq!(
        cover["nearestSession"]["id"],
        global_id("CoverSession", &w.session.id)
    );

    // Refusals, each with its code.
    let future = Utc::now() + Duration::hours(1);
    let (_, body) = app
        .gql_as(
            &auth,
            REPORT,
            report_input(&vehicle, future, "claim-3", vec![]),
        )
        .await;
    assert_eq!(user_error_code(&body, "reportClaim"), "LOSS_TIME_IN_FUTURE");
    let theirs = global_id("Vehicle", &app.vehicle_of(other.id).await);
    let (_, body) = app
        .gql_as(
            &auth,
            REPORT,
            report_input(&theirs, during, "claim-4", vec![]),
        )
        .await;
    assert_eq!(user_error_code(&body, "reportClaim"), "VEHICLE_NOT_FOUND");
    let (_, body) = app
        .gql_as(
            &auth,
            REPORT,
            report_input(&vehicle, during, "claim-5", vec![json!(photo)]),
        )
        .await;
    assert_eq!(
        user_error_code(&body, "reportClaim"),
        "PHOTO_ALREADY_ATTACHED"
    );

    // The driver's claims, newest first; the other driver sees none of them.
    let (_, body) = app
        .gql_as(
            &auth,
            "{ claims(first: 10) { edges { node { id reference } } } }",
            json!({}),
        )
        .await;
    let edges = body["data"]["claims"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "{body}");
    assert_eq!(edges[1]["node"]["reference"], reference.as_str());
    let (_, body) = app
        .gql_as(&other.auth(), CLAIM, json!({ "id": claim_id }))
        .await;
    assert_eq!(body["data"]["claim"], Value::Null, "{body}");
    let _ = std::fs::remove_dir_all(&w.photo_dir);
}

async fn phone_of(app: &TestApp, driver: accounts::DriverId) -> String {
    let mut conn = app.db.conn().await.unwrap();
    accounts::get_driver(&mut conn, driver)
        .await
        .unwrap()
        .phone
        .as_str()
        .to_owned()
}

#[tokio::test]
async fn ops_work_a_claim_from_the_queue_to_settlement_and_a_driver_withdraws_another() {
    let w = world().await;
    let app = &w.app;
    let auth = w.driver.auth();
    let vehicle = global_id("Vehicle", &w.vehicle);
    let during = w.session.started_at + Duration::minutes(10);
    let (_, body) = app
        .gql_as(&auth, REPORT, report_input(&vehicle, during, "a", vec![]))
        .await;
    let claim = body["data"]["reportClaim"]["claim"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = app
        .gql_as(&auth, REPORT, report_input(&vehicle, during, "b", vec![]))
        .await;
    let other_claim = body["data"]["reportClaim"]["claim"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let ops = app
        .staff_user(accounts::Role::Ops, "claims handler password")
        .await;
    let ops = Auth::StaffCookie(
        app.staff_session(ops.email.as_str(), "claims handler password")
            .await,
    );
    let (_, body) = app
        .gql_as(
            &ops,
            "{ claimsQueue(first: 10) { edges { node { id status driver { id } coverAtLoss { covered } } } } }",
            json!({}),
        )
        .await;
    let queue = body["data"]["claimsQueue"]["edges"].as_array().unwrap();
    assert_eq!(queue.len(), 2, "{body}");
    assert_eq!(queue[0]["node"]["id"], claim.as_str());
    assert_eq!(
        queue[0]["node"]["driver"]["id"],
        global_id("Driver", &w.driver.id)
    );

    let step = async |status: &str, reason: &str| {
        let (_, body) = app
            .gql_as(
                &ops,
                TRANSITION,
                json!({ "id": claim, "status": status, "reason": reason }),
            )
            .await;
        body
    };
    let body = step("UNDER_REVIEW", "too soon").await;
    assert_eq!(
        user_error_code(&body, "transitionClaim"),
        "INVALID_TRANSITION"
    );
    let body = step("ACKNOWLEDGED", "Handler assigned").await;
    assert_eq!(
        body["data"]["transitionClaim"]["claim"]["status"], "ACKNOWLEDGED",
        "{body}"
    );
    let (_, body) = app
        .gql_as(
            &ops,
            "mutation($id: ID!) { setClaimReserve(input: { claimId: $id, amount: 250000, reason: \"First estimate\" }) { claim { reserve { minor } } userErrors { code } } }",
            json!({ "id": claim }),
        )
        .await;
    assert_eq!(
        body["data"]["setClaimReserve"]["claim"]["reserve"]["minor"], 250000,
        "{body}"
    );
    let body = step("UNDER_REVIEW", "Engineer instructed").await;
    assert_eq!(
        body["data"]["transitionClaim"]["claim"]["status"], "UNDER_REVIEW",
        "{body}"
    );
    let (_, body) = app
        .gql_as(
            &ops,
            "mutation($id: ID!) { settleClaim(input: { claimId: $id, paidAmount: 180000, reason: \"Repair invoice agreed\" }) { claim { status paid { minor } closedAt } userErrors { code } } }",
            json!({ "id": claim }),
        )
        .await;
    assert_eq!(
        body["data"]["settleClaim"]["claim"]["status"], "SETTLED",
        "{body}"
    );
    // Drivers cannot do staff work.
    let (_, body) = app
        .gql_as(
            &auth,
            TRANSITION,
            json!({ "id": other_claim, "status": "DECLINED", "reason": "no" }),
        )
        .await;
    assert_eq!(first_code(&body), "FORBIDDEN");

    // The driver sees the outcome and the history, but not the reserve.
    let (_, body) = app.gql_as(&auth, CLAIM, json!({ "id": claim })).await;
    let seen = &body["data"]["claim"];
    assert_eq!(seen["status"], "SETTLED", "{body}");
    assert_eq!(seen["paid"]["minor"], 180000);
    assert_eq!(seen["reserve"], Value::Null);
    let steps: Vec<&str> = seen["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["toStatus"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["REPORTED", "ACKNOWLEDGED", "UNDER_REVIEW", "SETTLED"]
    );
    let sms = latest_sms_body(&app.db, &phone_of(app, w.driver.id).await)
        .await
        .unwrap();
    assert!(sms.contains("settled"), "{sms}");

    // The driver withdraws the other claim; it leaves the queue.
    let (_, body) = app
        .gql_as(
            &auth,
            "mutation($id: ID!) { withdrawClaim(input: { claimId: $id, reason: \"Reported twice\" }) { claim { status } userErrors { code } } }",
            json!({ "id": other_claim }),
        )
        .await;
    assert_eq!(
        body["data"]["withdrawClaim"]["claim"]["status"], "WITHDRAWN",
        "{body}"
    );
    let (_, body) = app
        .gql_as(
            &ops,
            "{ claimsQueue(first: 10) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["claimsQueue"]["edges"], json!([]), "{body}");
    let (_, body) = app
        .gql_as(
            &ops,
            "{ claimsQueue(status: [SETTLED, WITHDRAWN], first: 10) { edges { node { status } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["claimsQueue"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{body}"
    );
    let _ = std::fs::remove_dir_all(&w.photo_dir);
}

#[tokio::test]
async fn a_disputed_charge_is_refunded_by_ops_and_the_ledger_balances() {
    let w = world().await;
    let app = &w.app;
    let auth = w.driver.auth();
    let env =
        payments::PaymentsEnv::from_settings(&app.core.settings, Arc::new(shared::SystemClock))
            .unwrap();
    let mut conn = app.db.conn().await.unwrap();
    payments::charge_session(&mut conn, &env, w.session.id)
        .await
        .unwrap();
    let now = Utc::now();
    let uncharged = session_between(
        app,
        w.driver.id,
        w.vehicle,
        now - Duration::minutes(50),
        now - Duration::minutes(40),
        "second",
    )
    .await;
    let total = w.session.charge.unwrap().total;

    const DISPUTE: &str = "mutation($input: DisputeChargeInput!) { disputeCharge(input: $input) {
        dispute { id status reason charge { minor } } userErrors { field code } } }";
    let (_, body) = app
        .gql_as(
            &auth,
            DISPUTE,
            json!({ "input": { "sessionId": global_id("CoverSession", &uncharged.id), "reason": "NOT_WORKING" } }),
        )
        .await;
    assert_eq!(
        user_error_code(&body, "disputeCharge"),
        "SESSION_NOT_CHARGED"
    );
    let (_, body) = app
        .gql_as(
            &auth,
            DISPUTE,
            json!({ "input": { "sessionId": global_id("CoverSession", &w.session.id), "reason": "OTHER" } }),
        )
        .await;
    assert_eq!(
        user_error_code(&body, "disputeCharge"),
        "INVALID_DISPUTE_DETAILS"
    );
    let input = json!({ "input": { "sessionId": global_id("CoverSession", &w.session.id), "reason": "NOT_WORKING", "details": "I was at home" } });
    let (_, body) = app.gql_as(&auth, DISPUTE, input.clone()).await;
    let dispute = &body["data"]["disputeCharge"]["dispute"];
    assert_eq!(dispute["status"], "OPEN", "{body}");
    assert_eq!(dispute["charge"]["minor"], total.minor);
    let dispute_id = dispute["id"].as_str().unwrap().to_owned();
    let (_, body) = app.gql_as(&auth, DISPUTE, input).await;
    assert_eq!(user_error_code(&body, "disputeCharge"), "ALREADY_DISPUTED");

    let ops = app
        .staff_user(accounts::Role::Ops, "disputes handler password")
        .await;
    let ops = Auth::StaffCookie(
        app.staff_session(ops.email.as_str(), "disputes handler password")
            .await,
    );
    let (_, body) = app
        .gql_as(
            &ops,
            "{ disputesQueue(first: 10) { edges { node { id reason details
                chargeBreakdown { minutes billedMinutes rule total { minor } }
                pricingRule { rule minimumChargeMinutes hourlyRate { minor } dailyCap { minor } }
                partnerEvents { kind } session { id } } } } }",
            json!({}),
        )
        .await;
    let node = &body["data"]["disputesQueue"]["edges"][0]["node"];
    assert_eq!(node["id"], dispute_id.as_str(), "{body}");
    assert_eq!(node["reason"], "NOT_WORKING");
    let stored = w.session.charge.unwrap();
    let rule = match stored.rule {
        pricing::ChargeRule::Minimum => "MINIMUM",
        pricing::ChargeRule::PerMinute => "PER_MINUTE",
        pricing::ChargeRule::Capped => "CAPPED",
    };
    assert_eq!(node["chargeBreakdown"]["minutes"], stored.minutes);
    assert_eq!(
        node["chargeBreakdown"]["billedMinutes"],
        stored.billed_minutes
    );
    assert_eq!(node["chargeBreakdown"]["rule"], rule);
    assert_eq!(node["chargeBreakdown"]["total"]["minor"], total.minor);
    assert_eq!(node["pricingRule"]["minimumChargeMinutes"], 60);
    assert_eq!(node["pricingRule"]["rule"], rule);
    assert_eq!(
        node["partnerEvents"],
        json!([]),
        "a session the driver started"
    );

    const RESOLVE: &str = "mutation($input: ResolveDisputeInput!) { resolveDispute(input: $input) {
        dispute { id status refunded { minor } refund { status amount { minor } } resolutionNote }
        userErrors { field code } } }";
    let (_, body) = app
        .gql_as(
            &ops,
            RESOLVE,
            json!({ "input": { "disputeId": dispute_id, "resolution": "ADJUST", "refundAmount": total.minor + 1, "note": "too much" } }),
        )
        .await;
    assert_eq!(
        user_error_code(&body, "resolveDispute"),
        "INVALID_ADJUSTMENT"
    );
    let (_, body) = app
        .gql_as(
            &ops,
            RESOLVE,
            json!({ "input": { "disputeId": dispute_id, "resolution": "REFUND", "note": "Offline in the partner's records" } }),
        )
        .await;
    let resolved = &body["data"]["resolveDispute"]["dispute"];
    assert_eq!(resolved["status"], "REFUNDED", "{body}");
    assert_eq!(resolved["refunded"]["minor"], total.minor);
    assert_eq!(resolved["refund"]["status"], "SUCCEEDED");
    let (_, body) = app
        .gql_as(
            &ops,
            RESOLVE,
            json!({ "input": { "disputeId": dispute_id, "resolution": "UPHOLD", "note": "again" } }),
        )
        .await;
    assert_eq!(
        user_error_code(&body, "resolveDispute"),
        "DISPUTE_ALREADY_RESOLVED"
    );

    let (_, body) = app
        .gql_as(
            &auth,
            "{ disputes(first: 5) { edges { node { status refunded { minor } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["disputes"]["edges"][0]["node"]["status"], "REFUNDED",
        "{body}"
    );
    let balance = payments::wallet_balance(&mut conn, w.driver.id)
        .await
        .unwrap();
    // The charge was taken and given back; the second session was never charged.
    assert_eq!(balance, Money::gbp(10_000));
    let report = ledger::check_integrity(&mut conn).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    let _ = std::fs::remove_dir_all(&w.photo_dir);
}
