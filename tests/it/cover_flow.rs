//! The driver's cover journey over HTTP, end to end: quote, enrol, start cover, certificate
//! documents, roadside verification, end cover, the priced session in the history, and the
//! charge job committed with the ending. Also: concurrent starts, the user errors of every
//! refusal, and the live `coverStatus` subscription over WebSocket.

use crate::support::*;
use chrono::{TimeZone, Utc};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shared::{FixedClock, Money};
use std::sync::Arc;
use std::time::Duration;

/// A Monday morning in winter (UK time is UTC).
fn monday_morning() -> FixedClock {
    FixedClock::at(
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
            .single()
            .unwrap(),
    )
}

const CREATE_QUOTE: &str = "mutation($input: CreateQuoteInput!) { createQuote(input: $input) {
    quote { id productVersionNumber product { code } hourlyRate { minor currency formatted }
            minimumCharge { minor } dailyCap { minor }
            oneHour { total { minor } netPremium { minor } commission { minor } ipt { minor } iptRateBp }
            explanation { factor band text } expiresAt }
    decline { code reason }
    userErrors { field code message } } }";

const ENROL: &str = "mutation($input: EnrolInput!) { enrol(input: $input) {
    enrolment { id status statusReason productName }
    userErrors { field code message } } }";

const START: &str = "mutation($input: StartCoverInput!) { startCover(input: $input) {
    session { id status startedAt productVersion { versionNumber productCode }
              vehicle { id registration }
              certificate { number proofToken verifyUrl htmlUrl pdfUrl } }
    replayed
    userErrors { field code message } } }";

const END: &str = "mutation($input: EndCoverInput!) { endCover(input: $input) {
    session { id status endedAt endReason minutes
              charge { minutes billedMinutes rule uncapped { minor } total { minor } netPremium { minor }
                       commission { minor } ipt { minor } iptRateBp } }
    userErrors { field code message } } }";

const VERIFY: &str =
    "query($t: String!) { verifyCover(token: $t) { status reason certificateNumber } }";

/// One signed-in driver with a complete profile and a car, and the demo products.
pub(crate) struct Driver {
    pub(crate) who: SignedInDriver,
    pub(crate) vehicle: String,
    pub(crate) registration: String,
}

pub(crate) async fn seed_products(app: &TestApp) -> (String, String) {
    let mut conn = app.db.conn().await.unwrap();
    let mut versions = pricing::seed_demo_products(&mut conn).await.unwrap();
    let hire = versions.pop().unwrap();
    let food = versions.pop().unwrap();
    (
        global_id("Product", &food.product_id),
        global_id("Product", &hire.product_id),
    )
}

fn registration() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    let letters: Vec<char> = "ABCDEFGHJKLMNPRSTVWXY".chars().collect();
    let l = |i: u128| letters[((n >> (i * 5)) % letters.len() as u128) as usize];
    format!(
        "{}{}{:02}{}{}{}",
        l(0),
        l(1),
        (n >> 40) % 90 + 10,
        l(2),
        l(3),
        l(4)
    )
}

pub(crate) async fn driver(app: &TestApp) -> Driver {
    let who = app.driver().await;
    let (_, body) = app
        .gql_as(
            &who.auth(),
            "mutation { updateProfile(input: { name: \"Ada Lovelace\", dateOfBirth: \"1990-03-14\", licenceIssuedOn: \"2010-06-01\", postcode: \"SW1A 1AA\" }) { userErrors { code } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["updateProfile"]["userErrors"],
        json!([]),
        "{body}"
    );
    let registration = registration();
    let (_, body) = app
        .gql_as(
            &who.auth(),
            "mutation($r: String!) { addVehicle(input: { vehicleType: CAR, registration: $r, make: \"Toyota\", model: \"Prius\" }) { vehicle { id registration } userErrors { code } } }",
            json!({ "r": registration }),
        )
        .await;
    let vehicle = body["data"]["addVehicle"]["vehicle"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let registration = body["data"]["addVehicle"]["vehicle"]["registration"]
        .as_str()
        .unwrap()
        .to_owned();
    Driver {
        who,
        vehicle,
        registration,
    }
}

/// Credits the driver's wallet through the ledger, as a settled card top-up would.
pub(crate) async fn credit(app: &TestApp, driver: accounts::DriverId, amount: Money) {
    let mut conn = app.db.conn().await.unwrap();
    ledger::post(
        &mut conn,
        ledger::NewTransaction {
            kind: ledger::TransactionKind::TopUp,
            cause: ledger::Cause::new("test_credit", uuid::Uuid::new_v4().to_string()),
            currency: amount.currency,
            description: "Test credit".into(),
            lines: ledger::top_up_lines(&driver.to_string(), amount, Money::zero(amount.currency))
                .unwrap(),
            metadata: Value::Null,
        },
    )
    .await
    .unwrap();
}

pub(crate) async fn enrol(app: &TestApp, d: &Driver, product: &str) -> Value {
    let (_, body) = app
        .gql_as(
            &d.who.auth(),
            ENROL,
            json!({ "input": { "productId": product, "vehicleId": d.vehicle, "acceptTerms": true } }),
        )
        .await;
    body["data"]["enrol"].clone()
}

pub(crate) async fn start(app: &TestApp, d: &Driver, key: &str, extra: Value) -> Value {
    let mut input = json!({ "vehicleId": d.vehicle, "idempotencyKey": key });
    if let (Some(map), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    let (status, body) = app
        .gql_as(&d.who.auth(), START, json!({ "input": input }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["startCover"].clone()
}

async fn end(app: &TestApp, auth: &Auth, session: &str) -> Value {
    let (status, body) = app
        .gql_as(auth, END, json!({ "input": { "sessionId": session } }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["endCover"].clone()
}

fn error_code(payload: &Value) -> &str {
    payload["userErrors"][0]["code"]
        .as_str()
        .unwrap_or("<none>")
}

fn raw_id(global: &str) -> String {
    graphql::relay::from_global_id(global).unwrap().1
}

async fn wallet_holds(app: &TestApp, auth: &Auth) -> Value {
    let (_, body) = app
        .gql_as(
            auth,
            "{ wallet { balance { minor } held { minor } available { minor } overdraftLimit { minor } holds { kind amount { minor } causeId } } }",
            json!({}),
        )
        .await;
    body["data"]["wallet"].clone()
}

async fn get_as(app: &TestApp, auth: &Auth, path: &str) -> reqwest::Response {
    auth.apply(app.client.get(format!("{}{path}", app.base)))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_driver_quotes_enrols_covers_proves_and_stops_and_the_charge_is_queued() {
    let clock = monday_morning();
    let app = TestApp::spawn_with_clock(|_| {}, Arc::new(clock.clone())).await;
    let (food, _) = seed_products(&app).await;
    let d = driver(&app).await;
    credit(&app, d.who.id, Money::gbp(5_000)).await;
    let auth = d.who.auth();

    // A quote: the one-hour breakdown adds up, every factor is explained.
    let (_, body) = app
        .gql_as(
            &auth,
            CREATE_QUOTE,
            json!({ "input": { "vehicleId": d.vehicle, "productId": food } }),
        )
        .await;
    let quote = &body["data"]["createQuote"]["quote"];
    assert_eq!(
        body["data"]["createQuote"]["userErrors"],
        json!([]),
        "{body}"
    );
    assert_eq!(quote["product"]["code"], "food_delivery_hourly");
    assert!(quote["productVersionNumber"].as_i64().unwrap() >= 1);
    let hourly = quote["hourlyRate"]["minor"].as_i64().unwrap();
    assert!(hourly > 0);
    assert_eq!(quote["hourlyRate"]["currency"], "GBP");
    assert!(
        quote["hourlyRate"]["formatted"]
            .as_str()
            .unwrap()
            .starts_with('£')
    );
    let one_hour = &quote["oneHour"];
    assert_eq!(one_hour["total"]["minor"].as_i64().unwrap(), hourly);
    assert_eq!(
        one_hour["netPremium"]["minor"].as_i64().unwrap()
            + one_hour["commission"]["minor"].as_i64().unwrap()
            + one_hour["ipt"]["minor"].as_i64().unwrap(),
        hourly
    );
    assert!(
        quote["explanation"].as_array().unwrap().len() >= 5,
        "{quote}"
    );
    assert!(quote["dailyCap"]["minor"].as_i64().unwrap() >= hourly);
    let quote_id = quote["id"].as_str().unwrap().to_owned();

    // Enrolment: active at once (the wallet can pay), with its history.
    let enrolled = enrol(&app, &d, &food).await;
    assert_eq!(enrolled["userErrors"], json!([]), "{enrolled}");
    assert_eq!(enrolled["enrolment"]["status"], "ACTIVE");
    let enrolment_id = enrolled["enrolment"]["id"].as_str().unwrap().to_owned();
    let (_, body) = app
        .gql_as(
            &auth,
            "{ me { enrolments { id status history { fromStatus toStatus reason actor } } } }",
            json!({}),
        )
        .await;
    let enrolments = &body["data"]["me"]["enrolments"];
    assert_eq!(enrolments[0]["id"], enrolment_id.as_str(), "{body}");
    assert_eq!(
        enrolments[0]["history"],
        json!([{ "fromStatus": null, "toStatus": "ACTIVE", "reason": "enrolled", "actor": "driver" }])
    );

    // Start at the quoted price; the same key again gives the same session.
    let started = start(&app, &d, "tap-1", json!({ "quoteId": quote_id })).await;
    assert_eq!(started["userErrors"], json!([]), "{started}");
    assert_eq!(started["replayed"], false);
    let session = &started["session"];
    assert_eq!(session["status"], "ACTIVE");
    assert_eq!(session["vehicle"]["registration"], d.registration.as_str());
    assert_eq!(
        session["productVersion"]["productCode"],
        "food_delivery_hourly"
    );
    let session_id = session["id"].as_str().unwrap().to_owned();
    let again = start(&app, &d, "tap-1", json!({ "quoteId": quote_id })).await;
    assert_eq!(again["replayed"], true);
    assert_eq!(again["session"]["id"], session_id.as_str());
    let (_, body) = app
        .gql_as(&auth, "{ me { activeSession { id } } }", json!({}))
        .await;
    assert_eq!(
        body["data"]["me"]["activeSession"]["id"],
        session_id.as_str()
    );
    // The wallet holds the running session's charge so far back from what can be spent.
    let w = wallet_holds(&app, &auth).await;
    assert_eq!(w["balance"]["minor"], 5_000, "{w}");
    assert_eq!(w["holds"][0]["kind"], "RUNNING_SESSION", "{w}");
    assert_eq!(w["holds"][0]["causeId"], session_id.as_str());
    let held = w["held"]["minor"].as_i64().unwrap();
    assert!(held > 0, "{w}");
    assert_eq!(w["available"]["minor"].as_i64().unwrap(), 5_000 - held);
    assert_eq!(w["overdraftLimit"]["minor"], 2_000);

    // The certificate documents, for this driver only.
    let certificate = &session["certificate"];
    let number = certificate["number"].as_str().unwrap().to_owned();
    let token = certificate["proofToken"].as_str().unwrap().to_owned();
    assert!(
        certificate["htmlUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/certificates/{number}.html"))
    );
    assert!(
        certificate["verifyUrl"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/verify/{token}"))
    );
    let html = get_as(&app, &auth, &format!("/certificates/{number}.html")).await;
    assert_eq!(html.status(), 200);
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = html.text().await.unwrap();
    assert!(html.contains(&number), "{html}");
    assert!(html.contains(&d.registration), "{html}");
    let pdf = get_as(&app, &auth, &format!("/certificates/{number}.pdf")).await;
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF"));
    let anonymous = get_as(
        &app,
        &Auth::Anonymous,
        &format!("/certificates/{number}.pdf"),
    )
    .await;
    assert_eq!(anonymous.status(), 401);
    let other = app.driver().await;
    let stranger = get_as(&app, &other.auth(), &format!("/certificates/{number}.html")).await;
    assert_eq!(stranger.status(), 404);
    let unknown = get_as(&app, &auth, "/certificates/SC-0000-0000.html").await;
    assert_eq!(unknown.status(), 404);

    // Roadside: covered now.
    let body = app.gql(VERIFY, json!({ "t": token })).await;
    assert_eq!(body["data"]["verifyCover"]["status"], "COVERED", "{body}");
    assert_eq!(
        body["data"]["verifyCover"]["certificateNumber"],
        number.as_str()
    );
    let page = app.get(&format!("/verify/{token}")).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<h1>Covered</h1>"));

    // Another driver cannot see or end it.
    let (_, body) = app
        .gql_as(
            &other.auth(),
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": session_id }),
        )
        .await;
    assert_eq!(body["data"]["node"], Value::Null, "{body}");
    let refused = end(&app, &other.auth(), &session_id).await;
    assert_eq!(error_code(&refused), "SESSION_NOT_FOUND");

    // 90 minutes later the driver stops: priced per minute, charge job committed with it.
    clock.advance(chrono::Duration::minutes(90));
    let ended = end(&app, &auth, &session_id).await;
    assert_eq!(ended["userErrors"], json!([]), "{ended}");
    let s = &ended["session"];
    assert_eq!(s["status"], "ENDED");
    assert_eq!(s["endReason"], "DRIVER");
    assert_eq!(s["minutes"], 90);
    let charge = &s["charge"];
    assert_eq!(charge["rule"], "PER_MINUTE", "{charge}");
    assert_eq!(charge["billedMinutes"], 90);
    let total = charge["total"]["minor"].as_i64().unwrap();
    assert_eq!(total, (hourly * 90 + 30) / 60, "{charge}");
    assert_eq!(
        charge["netPremium"]["minor"].as_i64().unwrap()
            + charge["commission"]["minor"].as_i64().unwrap()
            + charge["ipt"]["minor"].as_i64().unwrap(),
        total
    );
    let jobs = count(
        &app.db,
        &format!(
            "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'ChargeSession' AND payload->>'session_id' = '{}'",
            raw_id(&session_id)
        ),
    )
    .await;
    assert_eq!(jobs, 1);
    let again = end(&app, &auth, &session_id).await;
    assert_eq!(error_code(&again), "SESSION_ALREADY_ENDED");
    assert_eq!(again["userErrors"][0]["field"], "sessionId");

    // Roadside: expired now.
    let body = app.gql(VERIFY, json!({ "t": token })).await;
    assert_eq!(body["data"]["verifyCover"]["status"], "EXPIRED", "{body}");
    assert_eq!(body["data"]["verifyCover"]["reason"], "session_ended");
    let page = app.get(&format!("/verify/{token}")).await;
    assert!(page.text().await.unwrap().contains("<h1>Expired</h1>"));

    // The history shows the priced session; filters apply.
    let history = "query($f: CoverSessionFilter) { me { activeSession { id } coverSessions(first: 10, filter: $f) {
        edges { cursor node { id status minutes charge { rule total { minor } } certificate { number } } }
        pageInfo { hasNextPage endCursor } } } }";
    let (_, body) = app.gql_as(&auth, history, json!({ "f": null })).await;
    let me = &body["data"]["me"];
    assert_eq!(me["activeSession"], Value::Null, "{body}");
    let edges = me["coverSessions"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{body}");
    assert_eq!(edges[0]["node"]["id"], session_id.as_str());
    assert_eq!(edges[0]["node"]["charge"]["total"]["minor"], total);
    assert_eq!(edges[0]["node"]["certificate"]["number"], number.as_str());
    assert_eq!(me["coverSessions"]["pageInfo"]["hasNextPage"], false);
    let (_, body) = app
        .gql_as(&auth, history, json!({ "f": { "status": "ACTIVE" } }))
        .await;
    assert_eq!(
        body["data"]["me"]["coverSessions"]["edges"],
        json!([]),
        "{body}"
    );
    let (_, body) = app
        .gql_as(&auth, history, json!({ "f": { "status": "ENDED", "from": "2026-11-23T00:00:00Z", "to": "2026-11-24T00:00:00Z" } }))
        .await;
    assert_eq!(
        body["data"]["me"]["coverSessions"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{body}"
    );
    let (_, body) = app
        .gql_as(
            &auth,
            "query($id: ID!) { node(id: $id) { ... on CoverSession { status charge { rule } } } }",
            json!({ "id": session_id }),
        )
        .await;
    assert_eq!(body["data"]["node"]["status"], "ENDED", "{body}");
    // Ended, its charge not yet taken: still held.
    let w = wallet_holds(&app, &auth).await;
    assert_eq!(w["holds"][0]["kind"], "UNCHARGED_SESSION", "{w}");
    assert_eq!(w["held"]["minor"], total, "{w}");

    // Cancelling: the preview shows the uncharged session; then the enrolment is cancelled.
    let (_, body) = app
        .gql_as(
            &auth,
            "query($id: ID!) { cancelEnrolmentPreview(enrolmentId: $id) { openSession { id } totalDue { minor } refund { minor } walletBalance { minor } } }",
            json!({ "id": enrolment_id }),
        )
        .await;
    let preview = &body["data"]["cancelEnrolmentPreview"];
    assert_eq!(preview["openSession"], Value::Null, "{body}");
    assert_eq!(preview["totalDue"]["minor"], total);
    assert_eq!(preview["refund"]["minor"], 0);
    assert_eq!(preview["walletBalance"]["minor"], 5_000);
    let (_, body) = app
        .gql_as(
            &auth,
            "mutation($id: ID!) { cancelEnrolment(input: { enrolmentId: $id }) { enrolment { status history { toStatus reason } } endedSession { id } userErrors { code } } }",
            json!({ "id": enrolment_id }),
        )
        .await;
    let cancelled = &body["data"]["cancelEnrolment"];
    assert_eq!(cancelled["userErrors"], json!([]), "{body}");
    assert_eq!(cancelled["enrolment"]["status"], "CANCELLED");
    assert_eq!(
        cancelled["enrolment"]["history"][1]["toStatus"],
        "CANCELLED"
    );
    assert_eq!(
        cancelled["enrolment"]["history"][1]["reason"],
        "driver_request"
    );
    assert_eq!(cancelled["endedSession"], Value::Null);
}

#[tokio::test]
async fn cancelling_an_enrolment_ends_its_session_and_queues_the_charge() {
    let clock = monday_morning();
    let app = TestApp::spawn_with_clock(|_| {}, Arc::new(clock.clone())).await;
    let (food, _) = seed_products(&app).await;
    let d = driver(&app).await;
    credit(&app, d.who.id, Money::gbp(5_000)).await;
    let enrolment = enrol(&app, &d, &food).await["enrolment"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = start(&app, &d, "tap-1", json!({})).await["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    clock.advance(chrono::Duration::minutes(20));
    let (_, body) = app
        .gql_as(
            &d.who.auth(),
            "query($id: ID!) { cancelEnrolmentPreview(enrolmentId: $id) { openSession { id } openSessionCharge { rule minutes total { minor } } totalDue { minor } } }",
            json!({ "id": enrolment }),
        )
        .await;
    let preview = &body["data"]["cancelEnrolmentPreview"];
    assert_eq!(preview["openSession"]["id"], session.as_str(), "{body}");
    assert_eq!(preview["openSessionCharge"]["rule"], "MINIMUM");
    assert_eq!(preview["totalDue"], preview["openSessionCharge"]["total"]);
    let (_, body) = app
        .gql_as(
            &d.who.auth(),
            "mutation($id: ID!) { cancelEnrolment(input: { enrolmentId: $id, reason: \"moving abroad\" }) { enrolment { status } endedSession { id status endReason charge { rule } } userErrors { code } } }",
            json!({ "id": enrolment }),
        )
        .await;
    let cancelled = &body["data"]["cancelEnrolment"];
    assert_eq!(cancelled["enrolment"]["status"], "CANCELLED", "{body}");
    assert_eq!(cancelled["endedSession"]["id"], session.as_str());
    assert_eq!(
        cancelled["endedSession"]["endReason"],
        "ENROLMENT_CANCELLED"
    );
    assert_eq!(cancelled["endedSession"]["charge"]["rule"], "MINIMUM");
    let jobs = count(
        &app.db,
        &format!(
            "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'ChargeSession' AND payload->>'session_id' = '{}'",
            raw_id(&session)
        ),
    )
    .await;
    assert_eq!(jobs, 1);
    // Another driver's enrolment is not found.
    let other = driver(&app).await;
    let (_, body) = app
        .gql_as(
            &other.who.auth(),
            "mutation($id: ID!) { cancelEnrolment(input: { enrolmentId: $id }) { enrolment { id } userErrors { field code } } }",
            json!({ "id": enrolment }),
        )
        .await;
    assert_eq!(
        body["data"]["cancelEnrolment"]["userErrors"],
        json!([{ "field": "enrolmentId", "code": "ENROLMENT_NOT_FOUND" }])
    );
}

/// A session across midnight shows its charge by UK day, and cover resumed within the gap rule
/// says which session's working period it continues.
#[tokio::test]
async fn a_session_across_midnight_shows_its_days_and_a_resumed_one_its_period() {
    let clock = FixedClock::at(
        Utc.with_ymd_and_hms(2026, 11, 23, 23, 40, 0)
            .single()
            .unwrap(),
    );
    let app = TestApp::spawn_with_clock(|_| {}, Arc::new(clock.clone())).await;
    let (food, _) = seed_products(&app).await;
    let d = driver(&app).await;
    credit(&app, d.who.id, Money::gbp(5_000)).await;
    enrol(&app, &d, &food).await;
    let first = start(&app, &d, "night", json!({})).await["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    clock.advance(chrono::Duration::minutes(40));
    let ended = end(&app, &d.who.auth(), &first).await;
    let total = ended["session"]["charge"]["total"]["minor"]
        .as_i64()
        .unwrap();
    clock.advance(chrono::Duration::minutes(5));
    let second = start(&app, &d, "again", json!({})).await["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    clock.advance(chrono::Duration::minutes(15));
    end(&app, &d.who.auth(), &second).await;

    let query = "query($id: ID!) { node(id: $id) { ... on CoverSession {
        chargeDays { day minutes billedMinutes charged { minor } }
        continuesSession { id } } } }";
    let (_, body) = app
        .gql_as(&d.who.auth(), query, json!({ "id": first }))
        .await;
    let node = &body["data"]["node"];
    let days = node["chargeDays"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    let parts: Vec<(&str, i64)> = days
        .iter()
        .map(|x| (x["day"].as_str().unwrap(), x["minutes"].as_i64().unwrap()))
        .collect();
    assert_eq!(parts, [("2026-11-23", 20), ("2026-11-24", 20)], "{body}");
    let charged: i64 = days
        .iter()
        .map(|x| x["charged"]["minor"].as_i64().unwrap())
        .sum();
    assert_eq!(charged, total);
    assert_eq!(node["continuesSession"], Value::Null);
    let (_, body) = app
        .gql_as(&d.who.auth(), query, json!({ "id": second }))
        .await;
    let node = &body["data"]["node"];
    assert_eq!(node["continuesSession"]["id"], first.as_str(), "{body}");
    // 40 and 15 minutes: within the hour the period's minimum paid for, so nothing more.
    assert_eq!(node["chargeDays"][0]["billedMinutes"], 0, "{body}");
    assert_eq!(node["chargeDays"][0]["charged"]["minor"], 0, "{body}");
    // Another driver sees neither.
    let other = driver(&app).await;
    let (_, body) = app
        .gql_as(&other.who.auth(), query, json!({ "id": second }))
        .await;
    assert_eq!(body["data"]["node"], Value::Null, "{body}");
}

#[tokio::test]
async fn two_hundred_concurrent_starts_open_exactly_one_session() {
    let app = TestApp::spawn().await;
    let (food, _) = seed_products(&app).await;
    let d = driver(&app).await;
    credit(&app, d.who.id, Money::gbp(5_000)).await;
    assert_eq!(
        enrol(&app, &d, &food).await["enrolment"]["status"],
        "ACTIVE"
    );

    let url = format!("{}/graphql", app.base);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = app.client.clone();
        let url = url.clone();
        let token = d.who.token.clone();
        let body = json!({
            "query": START,
            "variables": { "input": { "vehicleId": d.vehicle, "idempotencyKey": format!("tap-{i}") } },
        });
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }));
    }
    let mut started = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body["errors"].is_null(), "{body}");
        let payload = &body["data"]["startCover"];
        if payload["session"].is_null() {
            assert_eq!(error_code(payload), "ALREADY_ON_COVER", "{body}");
            refused += 1;
        } else {
            assert_eq!(payload["userErrors"], json!([]));
            started += 1;
        }
    }
    assert_eq!((started, refused), (1, 199));
    let open = count(
        &app.db,
        &format!(
            "SELECT count(*) AS n FROM cover_sessions WHERE driver_id = '{}' AND status = 'active'",
            d.who.id.uuid()
        ),
    )
    .await;
    assert_eq!(open, 1);
}

#[tokio::test]
async fn every_refusal_has_its_own_code() {
    let clock = monday_morning();
    let app = TestApp::spawn_with_clock(|_| {}, Arc::new(clock.clone())).await;
    let (food, hire) = seed_products(&app).await;
    let a = driver(&app).await;
    let b = driver(&app).await;
    credit(&app, a.who.id, Money::gbp(5_000)).await;
    let auth = a.who.auth();

    // Quotes: unknown product, another driver's vehicle, a declined vehicle, a garbage id.
    let quote = |vehicle: String, product: String| {
        let auth = auth.clone();
        let app = &app;
        async move {
            let (_, body) = app
                .gql_as(
                    &auth,
                    CREATE_QUOTE,
                    json!({ "input": { "vehicleId": vehicle, "productId": product } }),
                )
                .await;
            body["data"]["createQuote"].clone()
        }
    };
    let unknown_product = global_id("Product", &pricing::ProductId::new());
    let q = quote(a.vehicle.clone(), unknown_product.clone()).await;
    assert_eq!(q["userErrors"][0]["code"], "PRODUCT_NOT_FOUND", "{q}");
    assert_eq!(q["userErrors"][0]["field"], "productId");
    let q = quote(b.vehicle.clone(), food.clone()).await;
    assert_eq!(q["userErrors"][0]["code"], "VEHICLE_NOT_FOUND", "{q}");
    assert_eq!(q["userErrors"][0]["field"], "vehicleId");
    let q = quote("not-an-id".into(), food.clone()).await;
    assert_eq!(q["userErrors"][0]["code"], "VEHICLE_NOT_FOUND", "{q}");
    let (_, body) = app
        .gql_as(
            &auth,
            "mutation { addVehicle(input: { vehicleType: VAN, registration: \"VN12ABC\" }) { vehicle { id } userErrors { code } } }",
            json!({}),
        )
        .await;
    let van = body["data"]["addVehicle"]["vehicle"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let q = quote(van.clone(), food.clone()).await;
    assert_eq!(q["quote"], Value::Null, "{q}");
    assert_eq!(q["userErrors"][0]["code"], "VEHICLE_NOT_COVERED", "{q}");
    assert_eq!(q["decline"]["code"], "VEHICLE_NOT_COVERED");
    let _ = hire;

    // Enrolment: terms must be accepted; another driver's vehicle is not found.
    let (_, body) = app
        .gql_as(
            &auth,
            ENROL,
            json!({ "input": { "productId": food, "vehicleId": a.vehicle, "acceptTerms": false } }),
        )
        .await;
    assert_eq!(
        body["data"]["enrol"]["userErrors"][0]["code"],
        "TERMS_NOT_ACCEPTED"
    );
    let (_, body) = app
        .gql_as(
            &auth,
            ENROL,
            json!({ "input": { "productId": food, "vehicleId": b.vehicle, "acceptTerms": true } }),
        )
        .await;
    assert_eq!(
        body["data"]["enrol"]["userErrors"][0]["code"],
        "VEHICLE_NOT_FOUND"
    );

    // Not enrolled yet.
    let s = start(&app, &a, "k-0", json!({})).await;
    assert_eq!(error_code(&s), "NOT_ENROLLED", "{s}");
    let enrolment = enrol(&app, &a, &food).await;
    assert_eq!(enrolment["enrolment"]["status"], "ACTIVE", "{enrolment}");
    let again = enrol(&app, &a, &food).await;
    assert_eq!(error_code(&again), "ALREADY_ENROLLED");

    // Another driver's vehicle; a bad key; a garbage quote id; another driver's quote.
    let mut other = start(&app, &a, "k-1", json!({ "vehicleId": b.vehicle })).await;
    assert_eq!(error_code(&other), "VEHICLE_NOT_FOUND", "{other}");
    other = start(&app, &a, "", json!({})).await;
    assert_eq!(error_code(&other), "INVALID_IDEMPOTENCY_KEY", "{other}");
    other = start(&app, &a, "k-2", json!({ "quoteId": "bad" })).await;
    assert_eq!(error_code(&other), "QUOTE_NOT_FOUND", "{other}");

    // Starting twice.
    let first = start(&app, &a, "k-3", json!({})).await;
    assert_eq!(first["userErrors"], json!([]), "{first}");
    let session = first["session"]["id"].as_str().unwrap().to_owned();
    let twice = start(&app, &a, "k-4", json!({})).await;
    assert_eq!(error_code(&twice), "ALREADY_ON_COVER", "{twice}");
    let reused = start(&app, &a, "k-3", json!({ "vehicleId": van })).await;
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED", "{reused}");

    // Ending: another driver's session, garbage, then twice.
    let ended = end(&app, &b.who.auth(), &session).await;
    assert_eq!(error_code(&ended), "SESSION_NOT_FOUND");
    let ended = end(&app, &auth, "garbage").await;
    assert_eq!(error_code(&ended), "SESSION_NOT_FOUND");
    clock.advance(chrono::Duration::minutes(5));
    let ended = end(&app, &auth, &session).await;
    assert_eq!(ended["session"]["charge"]["rule"], "MINIMUM", "{ended}");
    let ended = end(&app, &auth, &session).await;
    assert_eq!(error_code(&ended), "SESSION_ALREADY_ENDED");

    // Suspended enrolment.
    {
        let mut conn = app.db.conn().await.unwrap();
        let id: cover::EnrolmentId = raw_id(enrolment["enrolment"]["id"].as_str().unwrap())
            .parse()
            .unwrap();
        let _ = cover::suspend(
            &mut conn,
            app.core.clock.as_ref(),
            id,
            "ops review",
            accounts::Actor::System,
        )
        .await
        .unwrap();
    }
    let suspended = start(&app, &a, "k-5", json!({})).await;
    assert_eq!(error_code(&suspended), "ENROLMENT_SUSPENDED", "{suspended}");
    let (_, body) = app
        .gql_as(
            &auth,
            "{ me { enrolments { status statusReason history { toStatus reason } } } }",
            json!({}),
        )
        .await;
    let e = &body["data"]["me"]["enrolments"][0];
    assert_eq!(e["status"], "SUSPENDED", "{body}");
    assert_eq!(e["statusReason"], "ops review");
    assert_eq!(e["history"][1]["toStatus"], "SUSPENDED");

    // No means to pay: no card, an empty wallet.
    let enrolled_b = enrol(&app, &b, &food).await;
    assert_eq!(enrolled_b["enrolment"]["status"], "PENDING", "{enrolled_b}");
    assert_eq!(
        enrolled_b["enrolment"]["statusReason"],
        "awaiting_payment_method"
    );
    let broke = start(&app, &b, "k-1", json!({})).await;
    assert_eq!(error_code(&broke), "NO_PAYMENT_METHOD", "{broke}");

    // A forged token proves nothing.
    let body = app.gql(VERIFY, json!({ "t": "eyJ2IjoxfQ.Zm9yZ2Vk" })).await;
    assert_eq!(
        body["data"]["verifyCover"]["status"], "NOT_COVERED",
        "{body}"
    );
    let page = app.get("/verify/eyJ2IjoxfQ.Zm9yZ2Vk").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Not covered"));

    // Someone else's certificate id in a preview is null, not an error.
    let (_, body) = app
        .gql_as(
            &b.who.auth(),
            "query($id: ID!) { cancelEnrolmentPreview(enrolmentId: $id) { totalDue { minor } } }",
            json!({ "id": enrolment["enrolment"]["id"] }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(body["data"]["cancelEnrolmentPreview"], Value::Null);
}

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(app: &TestApp, path: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}{path}", app.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws
}

async fn send(ws: &mut Ws, message: Value) {
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        message.to_string().into(),
    ))
    .await
    .unwrap();
}

/// The next text message as JSON; `None` when the socket closes (or nothing comes in time).
pub(crate) async fn next_json(ws: &mut Ws) -> Option<Value> {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .ok()??
            .ok()?;
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).ok(),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// A `coverStatus` subscription of `d` (id "1") selecting `selection`, returned once the server
/// listens on the driver's channel.
pub(crate) async fn subscribe_live(app: &TestApp, d: &Driver, selection: &str) -> Ws {
    let mut ws = open_ws(app, "/graphql/ws").await;
    send(
        &mut ws,
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", d.who.token) } }),
    )
    .await;
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "connection_ack");
    send(
        &mut ws,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": format!("subscription {{ coverStatus {selection} }}") } }),
    )
    .await;
    let channel = cover::cover_channel(app.core.redis.prefix(), d.who.id);
    let redis = app.core.redis.conn().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut redis = redis.clone();
            let channel = channel.clone();
            async move {
                let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&channel)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                counts.first().is_some_and(|(_, n)| *n > 0)
            }
        })
        .await,
        "the server subscribes to the driver's channel"
    );
    ws
}

#[tokio::test]
async fn the_driver_sees_cover_start_and_end_live_and_strangers_are_refused() {
    let app = TestApp::spawn().await;
    let (food, _) = seed_products(&app).await;
    let d = driver(&app).await;
    credit(&app, d.who.id, Money::gbp(5_000)).await;
    enrol(&app, &d, &food).await;

    let mut ws = subscribe_live(&app, &d, "{ kind at session { id status } }").await;

    let started = start(&app, &d, "tap-1", json!({})).await;
    let session = started["session"]["id"].as_str().unwrap().to_owned();
    let event = next_json(&mut ws).await.unwrap();
    assert_eq!(event["type"], "next", "{event}");
    assert_eq!(event["id"], "1");
    assert_eq!(
        event["payload"]["data"]["coverStatus"]["kind"], "STARTED",
        "{event}"
    );
    assert_eq!(
        event["payload"]["data"]["coverStatus"]["session"]["id"],
        session.as_str()
    );
    assert_eq!(
        event["payload"]["data"]["coverStatus"]["session"]["status"],
        "ACTIVE"
    );

    let ended = end(&app, &d.who.auth(), &session).await;
    assert_eq!(ended["userErrors"], json!([]));
    let event = next_json(&mut ws).await.unwrap();
    assert_eq!(
        event["payload"]["data"]["coverStatus"]["kind"], "ENDED",
        "{event}"
    );
    assert_eq!(
        event["payload"]["data"]["coverStatus"]["session"]["status"],
        "ENDED"
    );

    // Anonymous, a forged token, and a partner key are refused at connection_init.
    let (_, _, partner_key) = app.partner_with_key("Live Partner").await;
    for payload in [
        json!({}),
        json!({ "authorization": "Bearer sct_forged" }),
        json!({ "authorization": format!("Bearer {partner_key}") }),
    ] {
        // The upgrade of `/graphql` itself is the same endpoint.
        let mut ws = open_ws(&app, "/graphql").await;
        send(
            &mut ws,
            json!({ "type": "connection_init", "payload": payload }),
        )
        .await;
        let answer = next_json(&mut ws).await;
        assert!(
            answer
                .as_ref()
                .is_none_or(|a| a["type"] != "connection_ack"),
            "{payload} was accepted: {answer:?}"
        );
    }
}

#[tokio::test]
async fn a_session_the_cron_closes_is_charged_and_its_end_is_pushed_live() {
    use shared::Clock;
    use shared::jobs::JobContext;
    use shared::outbox::{self, Job};

    let clock = monday_morning();
    let app = TestApp::spawn_with_clock(|_| {}, Arc::new(clock.clone())).await;
    let (food, _) = seed_products(&app).await;
    let d = driver(&app).await;
    credit(&app, d.who.id, Money::gbp(50_000)).await;
    enrol(&app, &d, &food).await;
    let session = start(&app, &d, "forgotten", json!({})).await["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The driver listens, then forgets the session past its maximum length.
    let mut ws = subscribe_live(&app, &d, "{ kind session { id status endReason } }").await;
    clock.advance(chrono::Duration::hours(17));

    // One cron tick's job, run as `shiftcover work` runs it.
    let job = cover::jobs::CloseDueSessions::for_tick(clock.now());
    let mut conn = app.db.conn().await.unwrap();
    outbox::enqueue(&mut conn, &job).await.unwrap().unwrap();
    let due = outbox::take_due(
        &mut conn,
        &[cover::jobs::CloseDueSessions::TYPE],
        10,
        60,
        300,
    )
    .await
    .unwrap();
    let claimed = outbox::claim(&mut conn, due[0].id, "worker-1")
        .await
        .unwrap()
        .unwrap();
    let ctx = JobContext {
        pool: app.db.pool().clone(),
        job: claimed,
        worker: Arc::from("worker-1"),
        clock: Arc::new(clock.clone()),
        settings: app.core.settings.clone(),
    };
    cover::jobs::run_close_due_sessions(ctx, job).await.unwrap();

    // The session ended at its maximum length, and its charge is queued exactly once.
    let charges = count(
        &app.db,
        &format!(
            "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'ChargeSession' AND payload->>'session_id' = '{}'",
            raw_id(&session)
        ),
    )
    .await;
    assert_eq!(charges, 1);
    let event = next_json(&mut ws).await.unwrap();
    let pushed = &event["payload"]["data"]["coverStatus"];
    assert_eq!(pushed["kind"], "ENDED", "{event}");
    assert_eq!(pushed["session"]["id"], session.as_str());
    assert_eq!(pushed["session"]["status"], "ENDED");
    assert_eq!(pushed["session"]["endReason"], "MAX_LENGTH");
}
