//! Partner platforms over HTTP, end to end: a driver makes a link code in the app, the partner
//! links them with its own id for the driver, registers a webhook endpoint, and sends a day of
//! shift events — one driver's as they happen, another's late, out of order and repeated. The
//! sessions and charges of both are the same, the partner gets exactly one signed `cover.started`
//! and one `cover.ended` per session (verified here as a receiver would), asks "is this driver
//! covered?", and unlinks. Also: scopes, test keys, bad events and the partner rate limit.

use crate::cover_flow::{Driver, credit, driver, enrol, next_json, subscribe_live};
use crate::support::*;
use chrono::{DateTime, Duration as Minutes, DurationRound, Utc};
use serde_json::{Value, json};
use shared::{FixedClock, Money};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const CREATE_CODE: &str = "mutation { createLinkCode { code expiresAt userErrors { code } } }";

const LINK: &str = "mutation($input: LinkDriverInput!) { linkDriver(input: $input) {
    link { id externalDriverId testMode linkedAt }
    userErrors { field code message } } }";

const RECORD: &str =
    "mutation($input: RecordShiftEventsInput!) { recordShiftEvents(input: $input) {
    results { eventId status code cover sessionId notCoveredCode }
    accepted duplicates rejected
    userErrors { field code message } } }";

const STATUS: &str =
    "query($id: String!, $at: DateTime) { coverStatus(externalDriverId: $id, at: $at) {
    externalDriverId at covered certificateNumber proofToken
    session { id coverSessionId startedAt coveredUntil endedAt active startedByPartner
      certificateNumber } } }";

const REGISTER: &str =
    "mutation($input: RegisterWebhookEndpointInput!) { registerWebhookEndpoint(input: $input) {
    endpoint { id url eventTypes enabled testMode timeoutMs }
    secret
    userErrors { field code message } } }";

const SESSIONS: &str = "query { me { coverSessions(first: 20) { edges { node {
    id status source startedAt endedAt
    charge { minutes billedMinutes rule total { minor } } } } } } }";

const WALLET: &str = "query { wallet { balance { minor } } }";

/// The demo products, published on the server's clock; returns the food delivery product's id.
async fn seed_products(app: &TestApp) -> String {
    let mut conn = app.db.conn().await.unwrap();
    let versions = pricing::seed_demo_products_at(&mut conn, app.core.clock.as_ref())
        .await
        .unwrap();
    // Food delivery first, then private hire (the seed's order).
    global_id("Product", &versions[0].product_id)
}

fn key(secret: &str) -> Auth {
    Auth::Bearer(secret.to_owned())
}

/// A driver ready for partner cover: a complete profile, a car, enrolled in food delivery and
/// £500 in the wallet.
async fn covered_driver(app: &TestApp, food: &str) -> Driver {
    let d = driver(app).await;
    credit(app, d.who.id, Money::gbp(50_000)).await;
    let enrolled = enrol(app, &d, food).await;
    assert_eq!(enrolled["userErrors"], json!([]), "{enrolled}");
    d
}

/// The driver makes a link code in the app; the partner redeems it.
async fn link(app: &TestApp, d: &Driver, partner_key: &str, external: &str) -> Value {
    let (_, body) = app.gql_as(&d.who.auth(), CREATE_CODE, json!({})).await;
    let code = body["data"]["createLinkCode"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let (_, body) = app
        .gql_as(
            &key(partner_key),
            LINK,
            json!({ "input": { "linkCode": code, "externalDriverId": external } }),
        )
        .await;
    body["data"]["linkDriver"].clone()
}

async fn record(app: &TestApp, partner_key: &str, events: &[Value]) -> Value {
    let (status, body) = app
        .gql_as(
            &key(partner_key),
            RECORD,
            json!({ "input": { "events": events } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["recordShiftEvents"].clone()
}

/// The plan of the day, in minutes after its start: two shifts, the second with a break longer
/// than the gap rule (10 minutes for food delivery, no tail cover).
const DAY: [(i64, &str); 12] = [
    (0, "ONLINE"),
    (10, "JOB_ACCEPTED"),
    (40, "JOB_COMPLETED"),
    (45, "JOB_ACCEPTED"),
    (80, "JOB_COMPLETED"),
    (85, "OFFLINE"),
    (180, "ONLINE"),
    (185, "JOB_ACCEPTED"),
    (230, "JOB_COMPLETED"),
    (260, "JOB_ACCEPTED"),
    (300, "JOB_COMPLETED"),
    (310, "OFFLINE"),
];

fn day_events(start: DateTime<Utc>, prefix: &str, external: &str) -> Vec<Value> {
    DAY.iter()
        .enumerate()
        .map(|(i, (minute, kind))| {
            json!({
                "eventId": format!("{prefix}-{i:02}"),
                "externalDriverId": external,
                "kind": kind,
                "occurredAt": (start + Minutes::minutes(*minute)).to_rfc3339(),
                "vehicleType": "CAR",
                "reference": format!("job-{}", i / 3),
            })
        })
        .collect()
}

/// (start, end, billed minutes, total pence) of a driver's sessions, oldest first.
async fn sessions_of(app: &TestApp, d: &Driver) -> Vec<(String, String, i64, i64)> {
    let (_, body) = app.gql_as(&d.who.auth(), SESSIONS, json!({})).await;
    let edges = body["data"]["me"]["coverSessions"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .clone();
    let mut out: Vec<(String, String, i64, i64)> = edges
        .iter()
        .map(|e| {
            let n = &e["node"];
            assert_eq!(n["source"], "PARTNER", "{n}");
            (
                n["startedAt"].as_str().unwrap().to_owned(),
                n["endedAt"].as_str().unwrap_or("open").to_owned(),
                n["charge"]["billedMinutes"].as_i64().unwrap_or(-1),
                n["charge"]["total"]["minor"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    out.sort();
    out
}

/// What the database says about webhook deliveries and unfinished jobs, for a failure message.
async fn delivery_diagnosis(app: &TestApp) -> String {
    #[derive(diesel::QueryableByName, Debug)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text)]
        line: String,
    }
    let mut conn = app.db.conn().await.unwrap();
    let lines: Vec<Line> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT format('delivery %s %s %s attempts=%s errors=%s', d.event_type, \
                           d.payload->'data'->>'session_id', d.status, d.attempts, \
                           (SELECT string_agg(coalesce(a.error, a.status_code::text), '; ') \
                              FROM webhook_attempts a WHERE a.delivery_id = d.id)) AS line \
               FROM webhook_deliveries d \
             UNION ALL \
             SELECT format('job %s %s attempts=%s run_after=%s error=%s', job_type, status, \
                           attempts, run_after, last_error) \
               FROM outbox_jobs WHERE status <> 'done'",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn balance(app: &TestApp, d: &Driver) -> i64 {
    let (_, body) = app.gql_as(&d.who.auth(), WALLET, json!({})).await;
    body["data"]["wallet"]["balance"]["minor"]
        .as_i64()
        .unwrap_or_else(|| panic!("{body}"))
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn a_partner_day_out_of_order_gives_the_ordered_sessions_charges_and_one_signed_webhook_each()
{
    // The day started 20 hours ago; the server's clock walks through it as events arrive.
    let real_now = Utc::now().duration_trunc(Minutes::minutes(1)).unwrap();
    let start = real_now - Minutes::hours(20);
    let clock = FixedClock::at(start);
    let app = TestApp::spawn_with_clock(|_| {}, Arc::new(clock.clone())).await;
    let food = seed_products(&app).await;
    let (_, _, partner_key) = app.partner_with_key("Dash Deliveries").await;

    let ordered = covered_driver(&app, &food).await;
    let shuffled = covered_driver(&app, &food).await;
    let l1 = link(&app, &ordered, &partner_key, "courier-1").await;
    assert_eq!(l1["userErrors"], json!([]), "{l1}");
    assert_eq!(l1["link"]["externalDriverId"], "courier-1");
    assert_eq!(l1["link"]["testMode"], false);
    let l2 = link(&app, &shuffled, &partner_key, "courier-2").await;
    assert_eq!(l2["userErrors"], json!([]), "{l2}");

    // The partner's receiver, registered for the cover and unlink events.
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&receiver)
        .await;
    let (_, body) = app
        .gql_as(
            &key(&partner_key),
            REGISTER,
            json!({ "input": {
                "url": format!("{}/shiftcover", receiver.uri()),
                "eventTypes": ["COVER_STARTED", "COVER_ENDED", "DRIVER_UNLINKED"],
            } }),
        )
        .await;
    let registered = &body["data"]["registerWebhookEndpoint"];
    assert_eq!(registered["userErrors"], json!([]), "{body}");
    assert_eq!(registered["endpoint"]["enabled"], true);
    assert_eq!(registered["endpoint"]["timeoutMs"], 5000);
    let secret = registered["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let endpoint_id = registered["endpoint"]["id"].as_str().unwrap().to_owned();

    // Driver 1: each event as it happens, half a minute later.
    let e1 = day_events(start, "d1", "courier-1");
    for (i, (minute, _)) in DAY.iter().enumerate() {
        clock.set(start + Minutes::seconds(minute * 60 + 30));
        let r = record(&app, &partner_key, &e1[i..=i]).await;
        assert_eq!(r["accepted"], 1, "event {i}: {r}");
    }

    // Driver 2: the same day in batches, late, out of order, with repeats, a conflicting repeat
    // and events that are wrong.
    let e2 = day_events(start, "d2", "courier-2");
    let mut conflicting = e2[0].clone();
    conflicting["occurredAt"] = json!((start + Minutes::minutes(2)).to_rfc3339());
    let mut unknown = e2[6].clone();
    unknown["eventId"] = json!("d2-unknown");
    unknown["externalDriverId"] = json!("courier-nobody");
    let mut too_old = e2[6].clone();
    too_old["eventId"] = json!("d2-old");
    too_old["occurredAt"] = json!((start - Minutes::hours(25)).to_rfc3339());
    let mut future = e2[6].clone();
    future["eventId"] = json!("d2-future");
    future["occurredAt"] = json!((start + Minutes::minutes(250)).to_rfc3339());

    clock.set(start + Minutes::minutes(46));
    let r = record(
        &app,
        &partner_key,
        &[e2[3].clone(), e2[2].clone(), e2[1].clone(), e2[0].clone()],
    )
    .await;
    assert_eq!(
        (r["accepted"].as_i64(), r["rejected"].as_i64()),
        (Some(4), Some(0)),
        "{r}"
    );
    assert_eq!(r["results"][0]["cover"], "COVERED", "{r}");
    let first_session = r["results"][0]["sessionId"].as_str().unwrap().to_owned();
    assert_eq!(r["results"][2]["sessionId"], first_session.as_str(), "{r}");

    clock.set(start + Minutes::minutes(90));
    let r = record(
        &app,
        &partner_key,
        &[e2[5].clone(), e2[4].clone(), e2[3].clone(), e2[0].clone()],
    )
    .await;
    let statuses: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["ACCEPTED", "ACCEPTED", "DUPLICATE", "DUPLICATE"],
        "{r}"
    );
    assert_eq!(r["results"][2]["sessionId"], first_session.as_str(), "{r}");

    clock.set(start + Minutes::minutes(190));
    let r = record(
        &app,
        &partner_key,
        &[
            e2[7].clone(),
            conflicting,
            unknown,
            e2[6].clone(),
            too_old,
            future,
        ],
    )
    .await;
    let answers: Vec<(String, String)> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["status"].as_str().unwrap().to_owned(),
                x["code"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("ACCEPTED", "-"),
        ("REJECTED", "CONFLICTING_DUPLICATE"),
        ("REJECTED", "UNKNOWN_DRIVER"),
        ("ACCEPTED", "-"),
        ("REJECTED", "EVENT_TOO_OLD"),
        ("REJECTED", "EVENT_IN_FUTURE"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(answers, expected, "{r}");
    assert_eq!(r["results"][0]["cover"], "COVERED");
    assert_ne!(r["results"][0]["sessionId"], first_session.as_str());
    assert!(
        r["results"][1]["cover"].is_null(),
        "a rejected event says nothing"
    );

    clock.set(start + Minutes::minutes(265));
    let r = record(&app, &partner_key, &[e2[9].clone(), e2[8].clone()]).await;
    assert_eq!(r["accepted"], 2, "{r}");

    clock.set(start + Minutes::minutes(330));
    let r = record(
        &app,
        &partner_key,
        &[e2[11].clone(), e2[10].clone(), e2[9].clone(), e2[8].clone()],
    )
    .await;
    assert_eq!(
        (r["accepted"].as_i64(), r["duplicates"].as_i64()),
        (Some(2), Some(2)),
        "{r}"
    );

    // Is the driver covered? Inside the first shift, yes, with a proof token; in the long
    // break of the second, no.
    let (_, body) = app
        .gql_as(
            &key(&partner_key),
            STATUS,
            json!({ "id": "courier-2", "at": at(start + Minutes::minutes(60)) }),
        )
        .await;
    let status = &body["data"]["coverStatus"];
    assert_eq!(status["covered"], true, "{body}");
    assert_eq!(status["session"]["startedByPartner"], true);
    assert_eq!(status["session"]["coverSessionId"], first_session.as_str());
    // The partner's view has an id of its own: a client cache keyed by `id` keeps it apart from
    // the driver's `CoverSession`.
    let view_id = status["session"]["id"].as_str().unwrap();
    assert_ne!(view_id, first_session.as_str());
    assert_eq!(
        graphql::relay::from_global_id(view_id).unwrap().0,
        "PartnerCoverSession"
    );
    assert!(status["proofToken"].as_str().is_some_and(|t| t.len() > 40));
    let (_, body) = app
        .gql_as(
            &key(&partner_key),
            STATUS,
            json!({ "id": "courier-2", "at": at(start + Minutes::minutes(250)) }),
        )
        .await;
    assert_eq!(body["data"]["coverStatus"]["covered"], false, "{body}");
    assert!(body["data"]["coverStatus"]["session"].is_null());
    let (_, body) = app
        .gql_as(
            &key(&partner_key),
            STATUS,
            json!({ "id": "courier-nobody" }),
        )
        .await;
    assert_eq!(first_code(&body), "UNKNOWN_DRIVER", "{body}");

    // The workers take over at the real time: the cron closes driver 1's last session (its end
    // was only scheduled), charges go to the wallets, webhooks go out.
    clock.set(real_now);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The production registry, but a failed delivery is retried after a second rather than
    // after half a minute: this test is about each event arriving once, not about the backoff.
    let mut registry = workers::default_registry();
    registry.queue(
        partners::jobs::QUEUE,
        workers::QueuePolicy {
            concurrency: 8,
            timeout: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(2),
        },
    );
    let runtime = tokio::spawn(workers::run(app.core.clone(), registry, async move {
        let _ = stopped.await;
    }));

    // Both days give three sessions: 10–95 (85 minutes), 185–240 (55, billed as the 60-minute
    // minimum) and 260–320 (60).
    let expected_times: Vec<(DateTime<Utc>, DateTime<Utc>)> = [(10, 95), (185, 240), (260, 320)]
        .iter()
        .map(|(a, b)| (start + Minutes::minutes(*a), start + Minutes::minutes(*b)))
        .collect();
    let all_ended = eventually(Duration::from_secs(60), || async {
        sessions_of(&app, &ordered)
            .await
            .iter()
            .all(|s| s.1 != "open")
    })
    .await;
    assert!(all_ended, "driver 1's last session closed by the cron");
    let s1 = sessions_of(&app, &ordered).await;
    let s2 = sessions_of(&app, &shuffled).await;
    assert_eq!(
        s1, s2,
        "the shuffled day gives the ordered day's sessions and charges"
    );
    let times: Vec<(DateTime<Utc>, DateTime<Utc>)> = s2
        .iter()
        .map(|s| (s.0.parse().unwrap(), s.1.parse().unwrap()))
        .collect();
    assert_eq!(times, expected_times);
    let billed: Vec<i64> = s2.iter().map(|s| s.2).collect();
    assert_eq!(billed, [85, 60, 60]);
    let total: i64 = s2.iter().map(|s| s.3).sum();
    assert!(total > 0);

    // Each session is charged once to each wallet.
    let charged = eventually(Duration::from_secs(60), || async {
        balance(&app, &ordered).await == 50_000 - total
            && balance(&app, &shuffled).await == 50_000 - total
    })
    .await;
    assert!(charged, "both wallets charged {total}p");

    // Exactly one signed cover.started and one cover.ended per session.
    let verify_all = |requests: &[wiremock::Request]| -> BTreeMap<(String, String), usize> {
        let mut seen = BTreeMap::new();
        for r in requests {
            let header = r
                .headers
                .get(partners::SIGNATURE_HEADER)
                .and_then(|h| h.to_str().ok())
                .expect("signed");
            assert!(
                partners::verify_signature(
                    &secret,
                    header,
                    &r.body,
                    Utc::now(),
                    Minutes::minutes(5)
                ),
                "signature verifies: {header}"
            );
            assert!(
                !partners::verify_signature(
                    "whsec_not_the_secret",
                    header,
                    &r.body,
                    Utc::now(),
                    Minutes::minutes(5)
                ),
                "and only with the secret"
            );
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let subject = body["data"]["session_id"]
                .as_str()
                .or(body["data"]["external_driver_id"].as_str())
                .unwrap()
                .to_owned();
            *seen
                .entry((body["type"].as_str().unwrap().to_owned(), subject))
                .or_insert(0) += 1;
        }
        seen
    };
    // The cover.ended of the session the cron closed goes out at the next run of
    // notify_ended_partner_sessions (second 15 of each minute): allow two of them.
    let delivered = eventually(Duration::from_secs(90), || async {
        let got = receiver.received_requests().await.unwrap_or_default();
        verify_all(&got).len() >= 12
    })
    .await;
    if !delivered {
        let got = receiver.received_requests().await.unwrap_or_default();
        panic!(
            "12 deliveries arrive; received {:?}; deliveries and jobs: {}",
            verify_all(&got),
            delivery_diagnosis(&app).await
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = receiver.received_requests().await.unwrap();
    let seen = verify_all(&got);
    assert_eq!(seen.len(), 12, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "no event twice: {seen:?}");
    let started = seen.keys().filter(|(t, _)| t == "cover.started").count();
    let ended = seen.keys().filter(|(t, _)| t == "cover.ended").count();
    assert_eq!((started, ended), (6, 6), "{seen:?}");
    assert!(
        seen.contains_key(&(
            "cover.started".to_owned(),
            graphql::relay::from_global_id(&first_session).unwrap().1
        )),
        "{seen:?}"
    );

    // The partner reads its delivery log, with each attempt.
    let (_, body) = app
        .gql_as(
            &key(&partner_key),
            "query($e: ID!) { webhookDeliveries(endpointId: $e, first: 20) { edges { node {
                id eventType status attemptCount attempts { statusCode succeeded latencyMs responseSnippet } } } } }",
            json!({ "e": endpoint_id }),
        )
        .await;
    let deliveries = body["data"]["webhookDeliveries"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(deliveries.len(), 12, "{body}");
    for d in deliveries {
        assert_eq!(d["node"]["status"], "SUCCEEDED", "{d}");
        assert_eq!(d["node"]["attempts"][0]["statusCode"], 200, "{d}");
        assert_eq!(d["node"]["attempts"][0]["responseSnippet"], "ok", "{d}");
    }

    // The partner unlinks driver 2: a signed driver.unlinked follows, events are refused.
    let (_, body) = app
        .gql_as(
            &key(&partner_key),
            "mutation { unlinkDriver(input: { externalDriverId: \"courier-2\" }) { link { unlinkedAt unlinkedBy } userErrors { code } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["unlinkDriver"]["link"]["unlinkedBy"], "PARTNER",
        "{body}"
    );
    let unlinked = eventually(Duration::from_secs(30), || async {
        let got = receiver.received_requests().await.unwrap_or_default();
        verify_all(&got).contains_key(&("driver.unlinked".to_owned(), "courier-2".to_owned()))
    })
    .await;
    assert!(unlinked, "driver.unlinked delivered");
    let mut late = e2[11].clone();
    late["eventId"] = json!("d2-after-unlink");
    let r = record(&app, &partner_key, &[late]).await;
    assert_eq!(r["results"][0]["code"], "NOT_LINKED", "{r}");
    let (_, body) = app
        .gql_as(
            &shuffled.who.auth(),
            "query { partnerLinks { id } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["partnerLinks"], json!([]), "{body}");

    let _ = stop.send(());
    let _ = runtime.await;
}

#[tokio::test]
async fn scopes_test_keys_and_bad_batches_each_get_their_answer() {
    let app = TestApp::spawn().await;
    let food = seed_products(&app).await;
    let (partner, _, live_key) = app.partner_with_key("Zoom Rides").await;
    let mut conn = app.db.conn().await.unwrap();
    let clock = app.core.clock.as_ref();
    let (_, read_only) = accounts::create_api_key(
        &mut conn,
        clock,
        accounts::Actor::System,
        partner.id,
        &[accounts::Scope::CoverRead],
        false,
    )
    .await
    .unwrap();
    let (_, test_key) = accounts::create_api_key(
        &mut conn,
        clock,
        accounts::Actor::System,
        partner.id,
        &accounts::Scope::ALL,
        true,
    )
    .await
    .unwrap();
    drop(conn);

    // A key without the scope is told which scope it lacks.
    let d = covered_driver(&app, &food).await;
    let now = Utc::now();
    let event = |id: &str, external: &str| {
        json!({ "eventId": id, "externalDriverId": external, "kind": "JOB_ACCEPTED",
                "occurredAt": at(now - Minutes::minutes(1)), "vehicleType": "CAR" })
    };
    let (_, body) = app
        .gql_as(
            &key(&read_only),
            RECORD,
            json!({ "input": { "events": [event("x", "y")] } }),
        )
        .await;
    assert_eq!(first_code(&body), "FORBIDDEN", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("shifts:write"),
        "{body}"
    );

    // A test key links and records in the sandbox: accepted, but no real cover; the live key
    // does not see the test link.
    let linked = link(&app, &d, &test_key, "sandbox-1").await;
    assert_eq!(linked["link"]["testMode"], true, "{linked}");
    let r = record(&app, &test_key, &[event("t-1", "sandbox-1")]).await;
    assert_eq!(r["results"][0]["status"], "ACCEPTED", "{r}");
    assert_eq!(r["results"][0]["cover"], "UNCHANGED", "{r}");
    let (_, body) = app.gql_as(&d.who.auth(), SESSIONS, json!({})).await;
    assert_eq!(
        body["data"]["me"]["coverSessions"]["edges"],
        json!([]),
        "{body}"
    );
    let r = record(&app, &live_key, &[event("l-1", "sandbox-1")]).await;
    assert_eq!(r["results"][0]["code"], "UNKNOWN_DRIVER", "{r}");

    // Another partner's driver is unknown to this one.
    let (_, _, other_key) = app.partner_with_key("Other Eats").await;
    let other = covered_driver(&app, &food).await;
    let l = link(&app, &other, &other_key, "theirs-1").await;
    assert_eq!(l["userErrors"], json!([]), "{l}");
    let r = record(&app, &live_key, &[event("l-2", "theirs-1")]).await;
    assert_eq!(r["results"][0]["code"], "UNKNOWN_DRIVER", "{r}");
    let (_, body) = app
        .gql_as(&key(&live_key), STATUS, json!({ "id": "theirs-1" }))
        .await;
    assert_eq!(first_code(&body), "UNKNOWN_DRIVER", "{body}");

    // A spent code and a taken external id.
    let (_, body) = app
        .gql_as(
            &key(&live_key),
            LINK,
            json!({ "input": { "linkCode": "AAAA-AAAA", "externalDriverId": "z" } }),
        )
        .await;
    assert_eq!(
        body["data"]["linkDriver"]["userErrors"][0]["code"], "INVALID_LINK_CODE",
        "{body}"
    );
    let taken = link(&app, &d, &other_key, "theirs-1").await;
    assert_eq!(
        taken["userErrors"][0]["code"], "EXTERNAL_ID_TAKEN",
        "{taken}"
    );

    // Over 500 events: the whole batch is refused, nothing recorded.
    let many: Vec<Value> = (0..501)
        .map(|i| event(&format!("b-{i}"), "sandbox-1"))
        .collect();
    let r = record(&app, &test_key, &many).await;
    assert_eq!(r["userErrors"][0]["code"], "BATCH_TOO_LARGE", "{r}");
    assert_eq!(r["userErrors"][0]["field"], "events", "{r}");
    assert_eq!(r["results"], json!([]));
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) AS n FROM shift_events WHERE partner_event_id LIKE 'b-%'"
        )
        .await,
        0
    );

    // A bad endpoint URL, and an endpoint of another partner.
    let (_, body) = app
        .gql_as(
            &key(&live_key),
            REGISTER,
            json!({ "input": { "url": "ftp://example.com", "eventTypes": ["COVER_STARTED"] } }),
        )
        .await;
    assert_eq!(
        body["data"]["registerWebhookEndpoint"]["userErrors"][0]["code"], "INVALID_URL",
        "{body}"
    );
    let (_, body) = app
        .gql_as(
            &key(&other_key),
            REGISTER,
            json!({ "input": { "url": "https://hooks.example.com/x", "eventTypes": ["COVER_STARTED"] } }),
        )
        .await;
    let theirs = body["data"]["registerWebhookEndpoint"]["endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = app
        .gql_as(
            &key(&live_key),
            "mutation($e: ID!) { rotateWebhookSecret(input: { endpointId: $e }) { secret userErrors { code } } }",
            json!({ "e": theirs }),
        )
        .await;
    assert_eq!(
        body["data"]["rotateWebhookSecret"]["userErrors"][0]["code"], "ENDPOINT_NOT_FOUND",
        "{body}"
    );
    assert!(body["data"]["rotateWebhookSecret"]["secret"].is_null());
    let (_, body) = app
        .gql_as(
            &key(&live_key),
            "query($e: ID!) { webhookDeliveries(endpointId: $e) { edges { node { id } } } }",
            json!({ "e": theirs }),
        )
        .await;
    assert_eq!(first_code(&body), "ENDPOINT_NOT_FOUND", "{body}");
}

#[tokio::test]
async fn a_partner_over_its_rate_limit_gets_429_with_retry_after() {
    let app = TestApp::spawn_with(|s| {
        s.accounts.partner_requests_per_minute = 3;
        s.accounts.partner_key_requests_per_minute = 100;
    })
    .await;
    let (partner, _, first_key) = app.partner_with_key("Burst Eats").await;
    let mut conn = app.db.conn().await.unwrap();
    let (_, second_key) = accounts::create_api_key(
        &mut conn,
        app.core.clock.as_ref(),
        accounts::Actor::System,
        partner.id,
        &accounts::Scope::ALL,
        false,
    )
    .await
    .unwrap();
    drop(conn);
    let query = "query { partnerDrivers(first: 1) { edges { node { id } } } }";
    for k in [&first_key, &second_key, &first_key] {
        let (status, body) = app.gql_as(&key(k), query, json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
    // A new key does not buy a new allowance: the partner's limit counts every key.
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(&second_key)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(body["errors"][0]["extensions"]["limitScope"], "PARTNER");
    assert_eq!(body["errors"][0]["extensions"]["limit"], 3);
}

#[tokio::test]
async fn simulate_partner_plays_a_day_for_linked_drivers_against_the_server() {
    let app = TestApp::spawn().await;
    let mut conn = app.db.conn().await.unwrap();
    pricing::seed_demo_products(&mut conn).await.unwrap();
    drop(conn);
    let (_, _, live_key) = app.partner_with_key("Sim Eats").await;
    shiftcover::simulate::run(
        &app.core,
        shiftcover::simulate::SimulateOptions {
            url: app.base.clone(),
            api_key: live_key.clone(),
            drivers: 3,
            hours: 8,
            batch: 20,
            seed: 11,
        },
    )
    .await
    .expect("the simulation runs clean");
    let links = count(
        &app.db,
        "SELECT count(*) AS n FROM partner_driver_links WHERE unlinked_at IS NULL",
    )
    .await;
    assert_eq!(links, 3);
    let events = count(&app.db, "SELECT count(*) AS n FROM shift_events").await;
    assert!(events >= 6, "{events} events recorded");
    let sessions = count(&app.db, "SELECT count(*) AS n FROM partner_sessions").await;
    assert!(sessions >= 3, "every driver worked: {sessions} sessions");

    // The same seed again: the drivers are found, not made twice, and the new day is recorded.
    shiftcover::simulate::run(
        &app.core,
        shiftcover::simulate::SimulateOptions {
            url: app.base.clone(),
            api_key: live_key,
            drivers: 3,
            hours: 8,
            batch: 20,
            seed: 11,
        },
    )
    .await
    .expect("a second run with the same seed works too");
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) AS n FROM drivers WHERE name LIKE 'Sim Driver %'"
        )
        .await,
        3
    );
}

/// Cover a partner starts and ends reaches the driver's live `coverStatus`, as their own does.
#[tokio::test]
async fn partner_started_and_ended_cover_is_pushed_to_the_drivers_live_status() {
    let app = TestApp::spawn().await;
    let food = seed_products(&app).await;
    let (_, _, partner_key) = app.partner_with_key("Live Deliveries").await;
    let d = covered_driver(&app, &food).await;
    let linked = link(&app, &d, &partner_key, "live-1").await;
    assert_eq!(linked["userErrors"], json!([]), "{linked}");
    let mut ws = subscribe_live(&app, &d, "{ kind session { id status } }").await;

    let now = Utc::now();
    let event = |id: &str, kind: &str, at: DateTime<Utc>| {
        json!({
            "eventId": id,
            "externalDriverId": "live-1",
            "kind": kind,
            "occurredAt": at.to_rfc3339(),
            "vehicleType": "CAR",
        })
    };
    let started = record(
        &app,
        &partner_key,
        &[event("j1", "JOB_ACCEPTED", now - Minutes::minutes(30))],
    )
    .await;
    assert_eq!(started["results"][0]["cover"], "COVERED", "{started}");
    let pushed = next_json(&mut ws).await.unwrap();
    assert_eq!(
        pushed["payload"]["data"]["coverStatus"]["kind"], "STARTED",
        "{pushed}"
    );
    let session = pushed["payload"]["data"]["coverStatus"]["session"]["id"].clone();
    assert_eq!(session, started["results"][0]["sessionId"]);

    // The job and the shift ended a while ago: the session ends now, at the gap rule's end.
    record(
        &app,
        &partner_key,
        &[
            event("j2", "JOB_COMPLETED", now - Minutes::minutes(25)),
            event("j3", "OFFLINE", now - Minutes::minutes(24)),
        ],
    )
    .await;
    let mut kinds = Vec::new();
    while let Some(pushed) = next_json(&mut ws).await {
        let status = &pushed["payload"]["data"]["coverStatus"];
        assert_eq!(status["session"]["id"], session, "{pushed}");
        kinds.push(status["kind"].as_str().unwrap_or_default().to_owned());
        if kinds.last().is_some_and(|k| k == "ENDED") {
            break;
        }
    }
    assert_eq!(kinds.last().map(String::as_str), Some("ENDED"), "{kinds:?}");
}
