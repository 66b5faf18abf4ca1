//! The HTTP surface: health, readiness, metrics, GraphQL conventions and limits.

use crate::support::{Auth, TestApp, count, first_code};
use serde_json::{Value, json};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);

    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");

    app.gql("{ serverInfo { version } }", json!({})).await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            r#"shiftcover_http_requests_total{method="POST",route="/graphql",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("shiftcover_http_request_duration_seconds_bucket"));
    assert!(
        text.contains(r#"shiftcover_db_pool_connections{state="max"} 8"#),
        "{text}"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-123");
    let res = app.get("/healthz").await;
    assert_eq!(res.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn server_info_and_node_lookup() {
    let app = TestApp::spawn().await;
    let body = app
        .gql("{ serverInfo { version environment time } }", json!({}))
        .await;
    assert_eq!(body["data"]["serverInfo"]["environment"], "test");
    assert_eq!(
        body["data"]["serverInfo"]["version"],
        env!("CARGO_PKG_VERSION")
    );

    let body = app
        .gql(
            "mutation($i: EnqueueDemoPingInput!) { enqueueDemoPing(input: $i) { job { id status jobType } userErrors { field code message } } }",
            json!({ "i": { "message": "hello", "idempotencyKey": "key-0001" } }),
        )
        .await;
    let job = &body["data"]["enqueueDemoPing"]["job"];
    assert_eq!(job["status"], "pending");
    assert_eq!(job["jobType"], "DemoPing");
    let id = job["id"].as_str().unwrap().to_owned();

    // The same key enqueues once: the same job comes back.
    let again = app
        .gql(
            "mutation($i: EnqueueDemoPingInput!) { enqueueDemoPing(input: $i) { job { id } } }",
            json!({ "i": { "message": "hello", "idempotencyKey": "key-0001" } }),
        )
        .await;
    assert_eq!(again["data"]["enqueueDemoPing"]["job"]["id"], id.as_str());
    assert_eq!(
        crate::support::count(&app.db, "SELECT count(*) AS n FROM outbox_jobs").await,
        1
    );

    // Jobs are for ops to see; to anyone else the id names nothing.
    let lookup = "query($id: ID!) { node(id: $id) { id ... on Job { jobType } } }";
    let node = app.gql(lookup, json!({ "id": id })).await;
    assert!(node["data"]["node"].is_null(), "{node}");
    let password = "ops password 123";
    let ops = app.staff_user(accounts::Role::Ops, password).await;
    let ops = Auth::StaffCookie(app.staff_session(ops.email.as_str(), password).await);
    let (_, node) = app.gql_as(&ops, lookup, json!({ "id": id })).await;
    assert_eq!(node["data"]["node"]["jobType"], "DemoPing", "{node}");

    let missing = app
        .gql("{ node(id: \"bm9wZTp4\") { id } }", json!({}))
        .await;
    assert_eq!(missing["data"]["node"], Value::Null);
    assert!(missing["errors"].is_null());
}

#[tokio::test]
async fn user_errors_name_the_field_and_code() {
    let app = TestApp::spawn().await;
    let body = app
        .gql(
            "mutation { enqueueDemoPing(input: {message: \"\", idempotencyKey: \"short\"}) { job { id } userErrors { field code message } } }",
            json!({}),
        )
        .await;
    let errors = body["data"]["enqueueDemoPing"]["userErrors"]
        .as_array()
        .unwrap();
    let codes: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("message", "INVALID_MESSAGE"),
            ("idempotencyKey", "INVALID_IDEMPOTENCY_KEY")
        ]
    );
    assert!(body["data"]["enqueueDemoPing"]["job"].is_null());
    assert_eq!(
        crate::support::count(&app.db, "SELECT count(*) AS n FROM outbox_jobs").await,
        0,
        "nothing is written for bad input"
    );
}

#[tokio::test]
async fn hostile_and_malformed_documents_get_coded_errors() {
    let app = TestApp::spawn().await;

    let body = app.gql("{ serverInfo { ", json!({})).await;
    assert_eq!(first_code(&body), "GRAPHQL_PARSE_FAILED");

    let body = app.gql("{ noSuchField }", json!({})).await;
    assert_eq!(first_code(&body), "GRAPHQL_VALIDATION_FAILED");

    let too_deep = format!(
        "{{ __schema {{ types {{ {} name {} }} }} }}",
        "fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType {",
        "} } } } } } } } } }"
    );
    let body = app.gql(&too_deep, json!({})).await;
    assert_eq!(first_code(&body), "QUERY_TOO_DEEP", "{body}");

    let aliases = (0..60)
        .map(|i| format!("a{i}: serverInfo {{ version }}"))
        .collect::<Vec<_>>()
        .join(" ");
    let body = app.gql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(first_code(&body), "TOO_MANY_ALIASES");

    let wide = (0..45)
        .map(|i| format!("a{i}: nodes(ids: [{}]) {{ id }}", ["\"x\""; 25].join(",")))
        .collect::<Vec<_>>()
        .join(" ");
    let body = app.gql(&format!("{{ {wide} }}"), json!({})).await;
    assert_eq!(first_code(&body), "QUERY_TOO_COMPLEX", "{body}");

    let body = app
        .gql(
            "query($n: Int!) { serverInfo { version } }",
            json!({"n": "x"}),
        )
        .await;
    assert!(
        body["errors"][0]["extensions"]["code"].is_string(),
        "{body}"
    );

    // Too large: 413 with a GraphQL-shaped error, never a 500.
    let huge = "x".repeat(300 * 1024);
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({ "query": huge }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(first_code(&body), "REQUEST_TOO_LARGE");

    // Not JSON, and batches.
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!([{ "query": "{ serverInfo { version } }" }]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(first_code(&body), "BATCH_NOT_SUPPORTED");
}

#[tokio::test]
async fn get_serves_queries_and_refuses_mutations() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(format!("{}/graphql", app.base))
        .query(&[("query", "{ serverInfo { environment } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["serverInfo"]["environment"], "test");

    let res = app
        .client
        .get(format!("{}/graphql", app.base))
        .query(&[(
            "query",
            "mutation { enqueueDemoPing(input: {message: \"x\", idempotencyKey: \"abcdefgh\"}) { job { id } } }",
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);

    // The IDE page in development and test; not when turned off.
    let res = app.get("/graphql").await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("ShiftCover GraphQL"), "{html}");
    // It works offline: nothing is loaded from another host (no absolute or scheme-relative
    // URL anywhere in the page), and what it fetches is this server's own `/graphql`.
    for external in ["http://", "https://", "\"//", "'//", "url(", "@import"] {
        assert!(!html.contains(external), "the IDE page names {external}");
    }
    assert!(html.contains(r#"var endpoint = "/graphql";"#));
    // Its introspection query (in the page) is one the server answers under the normal limits.
    let introspection = html
        .split(r#"<script type="application/graphql" id="introspection">"#)
        .nth(1)
        .and_then(|rest| rest.split("</script>").next())
        .expect("the introspection document in the page");
    let body = app.gql(introspection, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    assert!(body["data"]["mutation"]["fields"].as_array().unwrap().len() > 10);
    let app = TestApp::spawn_with(|s| s.graphql.ide = false).await;
    assert_eq!(app.get("/graphql").await.status(), 400);
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    let app = TestApp::spawn_with(|s| s.graphql.introspection = false).await;
    let body = app
        .gql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert!(body["data"]["__schema"].is_null(), "schema hidden: {body}");
    let body = app
        .gql("{ __type(name: \"Query\") { name } }", json!({}))
        .await;
    assert!(body["data"]["__type"].is_null(), "types hidden: {body}");
    let app = TestApp::spawn().await;
    let body = app
        .gql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
}

#[tokio::test]
async fn nul_characters_are_refused_before_anything_runs() {
    let app = TestApp::spawn().await;
    // Inline, in a sign-in request: refused before a code is made or a text queued.
    let body = app
        .gql(
            r#"mutation { requestLoginCode(input: { phone: "+447911\u0000123456" }) { phone userErrors { code } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(first_code(&body), "INVALID_CHARACTER", "{body}");
    assert!(body["data"].is_null(), "{body}");
    // In a variable, in a partner's shift events: the whole batch is refused, nothing stored.
    let (_, _, key) = app.partner_with_key("Nul Deliveries").await;
    let (status, body) = app
        .gql_as(
            &Auth::Bearer(key),
            "mutation($input: RecordShiftEventsInput!) { recordShiftEvents(input: $input) { accepted } }",
            json!({ "input": { "events": [{
                "eventId": "evt-1", "externalDriverId": "courier-1", "kind": "OFFLINE",
                "occurredAt": chrono::Utc::now().to_rfc3339(), "vehicleType": "CAR",
                "reference": "job\u{0}ref",
            }] } }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(first_code(&body), "INVALID_CHARACTER", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("$input")),
        "{body}"
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) AS n FROM shift_events").await,
        0
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) AS n FROM login_codes").await,
        0
    );
}
