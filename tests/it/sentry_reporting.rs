//! Internal errors reach Sentry with the request id, scrubbed of bodies, cookies and
//! credentials; the client sees only a code.

use crate::support::{TestApp, first_code};
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn internal_errors_go_to_sentry_with_the_request_id() {
    let recorder = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/1/envelope/"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&recorder)
        .await;
    let dsn = format!("http://public@{}/1", recorder.address());

    // A database that does not exist: every query is an internal failure.
    let app = TestApp::spawn_with(|s| {
        s.sentry.dsn = shared::Secret::new(dsn.clone());
        s.database.url = shared::Secret::new(format!(
            "{}/sc_missing_{}",
            testkit::admin_url().rsplit_once('/').unwrap().0,
            uuid::Uuid::new_v4().simple()
        ));
        s.database.acquire_timeout_ms = 500;
    })
    .await;
    let guard = shiftcover::telemetry::init_sentry(&app.core.settings).expect("sentry on");
    // `init` binds the thread's hub; the test harness runs tests off the process main
    // thread, so hand the client to the main hub the HTTP middleware derives from.
    sentry::Hub::main().bind_client(sentry::Hub::current().client());

    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("x-request-id", "req-sentry-1")
        .header("cookie", "theme=cookie-secret-marker")
        .header("x-api-key", "header-secret-marker")
        .header("x-forwarded-for", "198.51.100.77")
        .json(&json!({ "query": "mutation { enqueueDemoPing(input: {message: \"body-secret-marker\", idempotencyKey: \"abcdefgh\"}) { job { id } } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(first_code(&body), "INTERNAL_SERVER_ERROR");
    assert_eq!(body["errors"][0]["message"], "Internal server error");
    assert_eq!(body["errors"][0]["extensions"]["requestId"], "req-sentry-1");
    assert!(
        !body.to_string().contains("sc_missing"),
        "internals never reach the client: {body}"
    );

    if let Some(client) = sentry::Hub::main().client() {
        client.flush(Some(Duration::from_secs(5)));
    }
    drop(guard);
    let received = recorder.received_requests().await.unwrap_or_default();
    let envelopes: Vec<String> = received
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        envelopes.iter().any(|e| e.contains("req-sentry-1")),
        "an event tagged with the request id was sent: {envelopes:?}"
    );
    // Scrubbed before it left: no body, cookie, invented header or client address.
    for secret in [
        "body-secret-marker",
        "cookie-secret-marker",
        "header-secret-marker",
        "198.51.100.77",
        "enqueueDemoPing(input",
    ] {
        assert!(
            envelopes.iter().all(|e| !e.contains(secret)),
            "{secret} reached Sentry: {envelopes:?}"
        );
    }
}

#[test]
fn without_a_dsn_sentry_is_off() {
    let settings = shared::Settings::default();
    assert!(shiftcover::telemetry::init_sentry(&settings).is_none());
}
