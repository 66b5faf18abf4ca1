//! The ops GraphQL for background jobs and product versions, over HTTP against the real server
//! (and, for retries, the real job runtime in-process).

use crate::support::{Auth, TestApp, count, eventually, global_id};
use accounts::Role;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use shared::demo::DemoPing;
use shared::outbox;
use std::time::Duration;

const PASSWORD: &str = "ops api test password";
const FOOD_TERMS: &str = include_str!("../../apps/pricing/products/food_delivery_hourly.toml");
const FOOD_CASES: &str =
    include_str!("../../apps/pricing/products/food_delivery_hourly.cases.toml");

/// Enqueues a job of a type no process runs (`OpsProbe`), on a queue of its own, as
/// `outbox::enqueue` writes one.
async fn enqueue_probe(conn: &mut diesel_async::AsyncPgConnection, n: u32) {
    diesel::sql_query(
        "INSERT INTO outbox_jobs (id, job_type, queue, payload, idempotency_key, max_attempts)
         VALUES ($1, 'OpsProbe', 'ops-probe', jsonb_build_object('n', $2), $3, 2)",
    )
    .bind::<diesel::sql_types::Uuid, _>(shared::ids::JobId::new().uuid())
    .bind::<diesel::sql_types::Integer, _>(n as i32)
    .bind::<diesel::sql_types::Text, _>(format!("probe-{n}"))
    .execute(conn)
    .await
    .unwrap();
}

async fn ops_session(app: &TestApp) -> Auth {
    let staff = app.staff_user(Role::Ops, PASSWORD).await;
    Auth::StaffCookie(app.staff_session(staff.email.as_str(), PASSWORD).await)
}

/// Runs a document as `auth`; panics on GraphQL errors.
async fn gql(app: &TestApp, auth: &Auth, doc: &str, vars: Value) -> Value {
    let (status, body) = app.gql_as(auth, doc, vars).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    body["data"].clone()
}

/// Takes the due rows of `types` as the relay would, claims each and fails it: with a retry
/// time (back to pending) or without (dead).
async fn fail_due(app: &TestApp, types: &[&str], retry: bool) {
    let mut conn = app.db.conn().await.unwrap();
    for due in outbox::take_due(&mut conn, types, 100, 60, 60)
        .await
        .unwrap()
    {
        let claimed = outbox::claim(&mut conn, due.id, "test-worker")
            .await
            .unwrap()
            .unwrap();
        let retry_at = retry.then(|| chrono::Utc::now() + chrono::Duration::minutes(10));
        assert!(
            outbox::fail(&mut conn, &claimed, "test-worker", "boom", retry_at)
                .await
                .unwrap()
        );
    }
}

fn queue<'a>(data: &'a Value, name: &str) -> &'a Value {
    data["jobQueues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {data}"))
}

#[tokio::test]
async fn queue_depths_and_the_jobs_connection_show_pending_failed_and_dead_work() {
    let app = TestApp::spawn().await;
    let ops = ops_session(&app).await;
    let mut conn = app.db.conn().await.unwrap();
    for i in 0..3 {
        outbox::enqueue(
            &mut conn,
            &DemoPing {
                message: format!("ping {i}"),
                key: format!("ops-ping-{i}"),
            },
        )
        .await
        .unwrap();
    }
    // Two probes die, one waits to retry, two are still pending.
    for n in 0..2 {
        enqueue_probe(&mut conn, n).await;
    }
    fail_due(&app, &["OpsProbe"], false).await;
    enqueue_probe(&mut conn, 2).await;
    fail_due(&app, &["OpsProbe"], true).await;
    for n in 3..5 {
        enqueue_probe(&mut conn, n).await;
    }
    // A message waiting in the probe queue's Redis list.
    let prefix = app.core.redis.prefix().to_owned();
    let list = graphql::ops::jobs::redis_active_list(&prefix, "ops-probe");
    assert_eq!(
        list,
        format!(
            "{}:active",
            workers::runtime::queue_key(&prefix, "ops-probe")
        ),
        "the ops view reads the list the job runtime writes"
    );
    let mut redis = app.core.redis.conn().await.unwrap();
    redis::cmd("RPUSH")
        .arg(&list)
        .arg("waiting")
        .query_async::<()>(&mut redis)
        .await
        .unwrap();

    let doc = "{ jobQueues { name pending due queued running retrying dead queuedInRedis oldestDueAt oldestDueAgeSeconds } }";
    let data = gql(&app, &ops, doc, json!({})).await;
    let default = queue(&data, "default");
    assert_eq!(default["pending"], 3, "{data}");
    assert_eq!(default["due"], 3);
    assert_eq!(default["dead"], 0);
    assert_eq!(default["queuedInRedis"], 0);
    assert!(default["oldestDueAt"].is_string());
    let probe = queue(&data, "ops-probe");
    assert_eq!(probe["pending"], 2, "{data}");
    assert_eq!(probe["retrying"], 1);
    assert_eq!(probe["dead"], 2);
    assert_eq!(probe["due"], 2, "the retrying probe is not due yet");
    assert_eq!(probe["running"], 0);
    assert_eq!(probe["queuedInRedis"], 1);

    // The connection pages newest first, two at a time, and filters.
    let page_doc = "query($after: String, $filter: JobsFilterInput) {
        jobs(first: 2, after: $after, filter: $filter) {
          totalCount
          pageInfo { hasNextPage hasPreviousPage }
          edges { cursor node { id jobType queue status attempts maxAttempts lastError runAfter createdAt finishedAt payload canRetry canDiscard } }
        } }";
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let data = gql(&app, &ops, page_doc, json!({ "after": after })).await;
        let jobs = &data["jobs"];
        assert_eq!(jobs["totalCount"], 8);
        let edges = jobs["edges"].as_array().unwrap();
        assert!(edges.len() <= 2);
        for e in edges {
            seen.push(e["node"]["id"].as_str().unwrap().to_owned());
        }
        if jobs["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = edges
            .last()
            .map(|e| e["cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 8, "every job once");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 8);

    let data = gql(
        &app,
        &ops,
        page_doc,
        json!({ "filter": { "queue": "ops-probe", "status": "DEAD" } }),
    )
    .await;
    let dead = data["jobs"]["edges"].as_array().unwrap();
    assert_eq!(data["jobs"]["totalCount"], 2);
    assert_eq!(dead.len(), 2);
    let node = &dead[0]["node"];
    assert_eq!(node["jobType"], "OpsProbe");
    assert_eq!(node["status"], "dead");
    assert_eq!(node["lastError"], "boom");
    assert_eq!(node["attempts"], 1);
    assert_eq!(node["maxAttempts"], 2);
    assert_eq!(node["canRetry"], true);
    assert!(node["payload"]["n"].is_number(), "{node}");
    assert!(node["finishedAt"].is_string());

    let data = gql(
        &app,
        &ops,
        page_doc,
        json!({ "filter": { "jobType": "OpsProbe", "hasError": true } }),
    )
    .await;
    assert_eq!(data["jobs"]["totalCount"], 3, "two dead, one retrying");
    let data = gql(
        &app,
        &ops,
        page_doc,
        json!({ "filter": { "jobType": "DemoPing", "status": "PENDING" } }),
    )
    .await;
    assert_eq!(data["jobs"]["totalCount"], 3);

    let (_, bad) = app
        .gql_as(&ops, page_doc, json!({ "after": "not-a-cursor" }))
        .await;
    assert_eq!(crate::support::first_code(&bad), "BAD_USER_INPUT");

    // Bulk retry of the probe queue's dead letters, audited one by one.
    let data = gql(
        &app,
        &ops,
        "mutation { retryDeadJobs(input: { queue: \"ops-probe\" }) { retriedCount jobIds remainingDead userErrors { code } } }",
        json!({}),
    )
    .await;
    assert_eq!(data["retryDeadJobs"]["retriedCount"], 2, "{data}");
    assert_eq!(data["retryDeadJobs"]["remainingDead"], 0);
    let data = gql(&app, &ops, doc, json!({})).await;
    let probe = queue(&data, "ops-probe");
    assert_eq!(probe["dead"], 0);
    assert_eq!(probe["pending"], 2, "never failed");
    assert_eq!(
        probe["retrying"], 3,
        "failed before, waiting for an attempt"
    );
    assert_eq!(probe["due"], 4);
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) AS n FROM audit_log WHERE action = 'job.retried' AND actor_type = 'staff'"
        )
        .await,
        2
    );

    // The retrying probe can be discarded for good; a pending one that never failed cannot.
    let data = gql(
        &app,
        &ops,
        page_doc,
        json!({ "filter": { "jobType": "OpsProbe", "hasError": true, "status": "PENDING" } }),
    )
    .await;
    let retrying: Vec<String> = data["jobs"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["attempts"] == 1 && e["node"]["canDiscard"] == true)
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!retrying.is_empty(), "{data}");
    let discard = "mutation($id: ID!, $reason: String!) { discardJob(input: { jobId: $id, reason: $reason }) { job { status finishedAt } userErrors { field code } } }";
    let data = gql(
        &app,
        &ops,
        discard,
        json!({ "id": retrying[0], "reason": "x" }),
    )
    .await;
    assert_eq!(
        data["discardJob"]["userErrors"][0]["code"],
        "INVALID_REASON"
    );
    let data = gql(
        &app,
        &ops,
        discard,
        json!({ "id": retrying[0], "reason": "the probe is obsolete" }),
    )
    .await;
    assert_eq!(data["discardJob"]["job"]["status"], "discarded", "{data}");
    let data = gql(
        &app,
        &ops,
        discard,
        json!({ "id": retrying[0], "reason": "the probe is obsolete" }),
    )
    .await;
    assert_eq!(
        data["discardJob"]["userErrors"][0]["code"],
        "JOB_NOT_DISCARDABLE"
    );
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) AS n FROM audit_log WHERE action = 'job.discarded' AND reason = 'the probe is obsolete'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_dead_job_retried_by_ops_runs_again() {
    let app = TestApp::spawn().await;
    let ops = ops_session(&app).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::spawn(workers::run(
        app.core.clone(),
        workers::default_registry(),
        async move {
            let _ = stopped.await;
        },
    ));

    let mut conn = app.db.conn().await.unwrap();
    let dead_id = outbox::enqueue(
        &mut conn,
        &DemoPing {
            message: "fail: the address was wrong".into(),
            key: "ops-retry-dead".into(),
        },
    )
    .await
    .unwrap()
    .unwrap();
    let done_id = outbox::enqueue(
        &mut conn,
        &DemoPing {
            message: "fine".into(),
            key: "ops-retry-done".into(),
        },
    )
    .await
    .unwrap()
    .unwrap();
    let settled = eventually(Duration::from_secs(30), || async {
        count(
            &app.db,
            "SELECT count(*) AS n FROM outbox_jobs
              WHERE (idempotency_key = 'ops-retry-dead' AND status = 'dead')
                 OR (idempotency_key = 'ops-retry-done' AND status = 'done')",
        )
        .await
            == 2
    })
    .await;
    assert!(settled, "one job dead-lettered, the other done");

    let retry = "mutation($id: ID!) { retryJob(input: { jobId: $id }) { job { id status attempts lastError } userErrors { field code message } } }";
    // A job that is not dead, and one that does not exist.
    let data = gql(
        &app,
        &ops,
        retry,
        json!({ "id": global_id("Job", &done_id) }),
    )
    .await;
    assert_eq!(data["retryJob"]["userErrors"][0]["code"], "JOB_NOT_DEAD");
    assert_eq!(data["retryJob"]["userErrors"][0]["field"], "jobId");
    let data = gql(
        &app,
        &ops,
        retry,
        json!({ "id": global_id("Job", &shared::ids::JobId::new()) }),
    )
    .await;
    assert_eq!(data["retryJob"]["userErrors"][0]["code"], "JOB_NOT_FOUND");

    // The cause is fixed (here: the payload), and ops send the job back.
    diesel::sql_query(
        "UPDATE outbox_jobs SET payload = jsonb_set(payload, '{message}', '\"fixed\"') WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(dead_id.uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    let data = gql(
        &app,
        &ops,
        retry,
        json!({ "id": global_id("Job", &dead_id) }),
    )
    .await;
    assert!(
        data["retryJob"]["userErrors"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{data}"
    );
    let ran = eventually(Duration::from_secs(30), || async {
        count(
            &app.db,
            &format!(
                "SELECT count(*) AS n FROM demo_pings WHERE job_id = '{}' AND message = 'fixed'",
                dead_id.uuid()
            ),
        )
        .await
            == 1
    })
    .await;
    assert!(ran, "the retried job ran again");
    let node = gql(
        &app,
        &ops,
        "query($id: ID!) { node(id: $id) { ... on Job { status attempts lastError } } }",
        json!({ "id": global_id("Job", &dead_id) }),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            count(
                &app.db,
                &format!(
                    "SELECT count(*) AS n FROM outbox_jobs WHERE id = '{}' AND status = 'done' AND attempts = 1",
                    dead_id.uuid()
                ),
            )
            .await
                == 1
        })
        .await,
        "{node}"
    );
    assert_eq!(
        count(
            &app.db,
            &format!(
                "SELECT count(*) AS n FROM audit_log WHERE action = 'job.retried' AND subject_id = '{dead_id}' AND actor_type = 'staff'"
            ),
        )
        .await,
        1
    );
    let _ = stop.send(());
    runtime.abort();
}

// ---------------------------------------------------------------------------------------------
// Product versions

const VERSION_FIELDS: &str = "id versionNumber status editable productId
    terms {
      currency wordingVersion
      rules { minimumAge eligibleVehicleTypes minimumChargeMinutes billingIncrementMinutes gapRuleMinutes tailCoverMinutes dailyCapMinor commissionBp iptBp }
      rateTable {
        baseHourlyRates { vehicleType rateMinor }
        regionFactors { defaultBp areas { area factorBp } }
        timeBands { name start end factorBp }
        ageBands { from to factorBp }
        yearsLicensedBands { from to factorBp }
        claimsBands { from to factorBp }
      }
    }
    testCases { name vehicleType age yearsLicensed claims5y postcode start expectHourlyMinor expectExplanation expectDecline }";

async fn seeded_food_product(app: &TestApp) -> (String, pricing::ProductId) {
    let mut conn = app.db.conn().await.unwrap();
    let versions = pricing::seed_demo_products(&mut conn).await.unwrap();
    let food = pricing::get_product_by_code(&mut conn, "food_delivery_hourly")
        .await
        .unwrap();
    assert!(versions.iter().any(|v| v.product_id == food.id));
    (global_id("Product", &food.id), food.id)
}

async fn new_draft(app: &TestApp, ops: &Auth, product: &str) -> Value {
    let data = gql(
        app,
        ops,
        &format!(
            "mutation($p: ID!) {{ createProductVersionDraft(input: {{ productId: $p }}) {{ productVersion {{ {VERSION_FIELDS} }} userErrors {{ field code message }} }} }}"
        ),
        json!({ "p": product }),
    )
    .await;
    assert!(
        data["createProductVersionDraft"]["userErrors"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{data}"
    );
    data["createProductVersionDraft"]["productVersion"].clone()
}

const UPDATE: &str = "mutation($i: UpdateProductVersionDraftInput!) { updateProductVersionDraft(input: $i) { productVersion { id terms { wordingVersion rateTable { baseHourlyRates { vehicleType rateMinor } } } } userErrors { field code message } } }";
const PUBLISH: &str = "mutation($id: ID!) { publishProductVersion(input: { versionId: $id }) { productVersion { id status versionNumber publishedAt } failingCases { name passed expected actual actualHourlyMinor } userErrors { field code message } } }";
const CHECK: &str = "query($id: ID!) { checkProductVersion(versionId: $id) { publishable passedCount failedCount problems { field code message } cases { name passed expected actual actualHourlyMinor actualDecline actualExplanation } } }";

fn rate_of<'a>(terms: &'a mut Value, vehicle: &str) -> &'a mut Value {
    terms["rateTable"]["baseHourlyRates"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["vehicleType"] == vehicle)
        .unwrap()
}

#[tokio::test]
async fn a_product_version_is_drafted_checked_fixed_and_published() {
    let app = TestApp::spawn().await;
    let ops = ops_session(&app).await;
    let (product, product_id) = seeded_food_product(&app).await;

    let list = format!(
        "query($p: ID!) {{ productVersions(productId: $p) {{ {VERSION_FIELDS} publishedAt retiredAt }} }}"
    );
    let data = gql(&app, &ops, &list, json!({ "p": product })).await;
    let versions = data["productVersions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    let v1 = versions[0].clone();
    assert_eq!(v1["status"], "PUBLISHED");
    assert_eq!(v1["editable"], false);
    assert_eq!(v1["terms"]["wordingVersion"], "FD-2026.1");

    // Draft from the published version: same terms and cases.
    let draft = new_draft(&app, &ops, &product).await;
    assert_eq!(draft["versionNumber"], 2);
    assert_eq!(draft["status"], "DRAFT");
    assert_eq!(draft["terms"], v1["terms"]);
    assert_eq!(draft["testCases"], v1["testCases"]);
    let draft_id = draft["id"].as_str().unwrap().to_owned();

    // Edit: cars cost more. The terms read back are the terms sent.
    let mut terms = draft["terms"].clone();
    terms["wordingVersion"] = json!("FD-2026.2");
    rate_of(&mut terms, "CAR")["rateMinor"] = json!(200);
    let data = gql(
        &app,
        &ops,
        UPDATE,
        json!({ "i": { "versionId": draft_id, "terms": terms } }),
    )
    .await;
    assert!(
        data["updateProductVersionDraft"]["userErrors"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{data}"
    );

    // The check shows the car cases failing, expected against actual.
    let data = gql(&app, &ops, CHECK, json!({ "id": draft_id })).await;
    let check = &data["checkProductVersion"];
    assert_eq!(check["publishable"], false);
    assert!(check["failedCount"].as_i64().unwrap() >= 1, "{check}");
    let failing = check["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Experienced car driver, East London, weekday afternoon")
        .unwrap();
    assert_eq!(failing["passed"], false);
    assert_eq!(failing["expected"], "£2.34/hour");
    assert_eq!(failing["actual"], "£2.60/hour");
    assert_eq!(failing["actualHourlyMinor"], 260);
    assert_eq!(check["problems"][0]["code"], "PRICING_CASES_FAILING");
    assert!(
        check["cases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["passed"] == true),
        "the other vehicles still pass"
    );

    // Publishing is refused with the failing cases.
    let data = gql(&app, &ops, PUBLISH, json!({ "id": draft_id })).await;
    let publish = &data["publishProductVersion"];
    assert!(publish["productVersion"].is_null());
    assert_eq!(publish["userErrors"][0]["code"], "PRICING_CASES_FAILING");
    assert_eq!(publish["userErrors"][0]["field"], "cases");
    let failing_names: Vec<&str> = publish["failingCases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(failing_names.contains(&"Experienced car driver, East London, weekday afternoon"));
    assert_eq!(
        failing_names.len() as i64,
        check["failedCount"].as_i64().unwrap()
    );

    // Fix: the underwriter signs off the new car rates (expectations updated to the actuals).
    let results = check["cases"].as_array().unwrap();
    let cases: Vec<Value> = draft["testCases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(results)
        .map(|(case, result)| {
            let mut case = case.clone();
            if result["passed"] == false {
                case["expectHourlyMinor"] = result["actualHourlyMinor"].clone();
                case["expectExplanation"] = result["actualExplanation"].clone();
            }
            case
        })
        .collect();
    let data = gql(
        &app,
        &ops,
        "mutation($id: ID!, $cases: [RatingTestCaseInput!]) { setProductVersionTestCases(input: { versionId: $id, cases: $cases }) { testCases { name expectHourlyMinor } userErrors { field code message } } }",
        json!({ "id": draft_id, "cases": cases }),
    )
    .await;
    assert!(
        data["setProductVersionTestCases"]["userErrors"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{data}"
    );
    let data = gql(&app, &ops, CHECK, json!({ "id": draft_id })).await;
    assert_eq!(data["checkProductVersion"]["publishable"], true, "{data}");
    assert_eq!(data["checkProductVersion"]["failedCount"], 0);

    let data = gql(&app, &ops, PUBLISH, json!({ "id": draft_id })).await;
    let publish = &data["publishProductVersion"];
    assert!(
        publish["userErrors"].as_array().unwrap().is_empty(),
        "{data}"
    );
    assert_eq!(publish["productVersion"]["status"], "PUBLISHED");
    assert_eq!(publish["productVersion"]["versionNumber"], 2);

    // New quotes use version 2; version 1 is retired and unchanged.
    let data = app
        .gql("{ products { id code versionNumber } }", json!({}))
        .await;
    let food = data["data"]["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "food_delivery_hourly")
        .unwrap();
    assert_eq!(food["versionNumber"], 2);
    let quote = {
        let driver = app.driver().await;
        let vehicle = app.vehicle_of(driver.id).await;
        let mut conn = app.db.conn().await.unwrap();
        accounts::update_profile(
            &mut conn,
            app.core.clock.as_ref(),
            accounts::Actor::Driver(driver.id),
            driver.id,
            accounts::ProfileUpdate {
                name: Some("Grace Hopper".into()),
                date_of_birth: chrono::NaiveDate::from_ymd_opt(1985, 1, 9),
                licence_issued_on: chrono::NaiveDate::from_ymd_opt(2005, 6, 1),
                postcode: Some("E1 6AN".into()),
                ..accounts::ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
        pricing::create_quote(
            &mut conn,
            app.core.clock.as_ref(),
            driver.id,
            vehicle,
            product_id,
        )
        .await
        .unwrap()
    };
    assert_eq!(
        global_id("ProductVersion", &quote.product_version_id),
        draft_id
    );

    let data = gql(&app, &ops, &list, json!({ "p": product })).await;
    let versions = data["productVersions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["versionNumber"], 2);
    assert_eq!(versions[1]["status"], "RETIRED");
    assert!(versions[1]["retiredAt"].is_string());
    assert_eq!(versions[1]["terms"], v1["terms"]);
    assert_eq!(versions[1]["testCases"], v1["testCases"]);

    // Published and retired versions cannot change.
    for id in [v1["id"].as_str().unwrap(), draft_id.as_str()] {
        let data = gql(
            &app,
            &ops,
            UPDATE,
            json!({ "i": { "versionId": id, "termsToml": FOOD_TERMS } }),
        )
        .await;
        assert_eq!(
            data["updateProductVersionDraft"]["userErrors"][0]["code"], "VERSION_NOT_DRAFT",
            "{data}"
        );
        let data = gql(&app, &ops, PUBLISH, json!({ "id": id })).await;
        assert_eq!(
            data["publishProductVersion"]["userErrors"][0]["code"],
            "VERSION_NOT_DRAFT"
        );
    }
    let retire = "mutation($id: ID!) { retireProductVersion(input: { versionId: $id }) { productVersion { status } userErrors { field code } } }";
    let data = gql(&app, &ops, retire, json!({ "id": v1["id"] })).await;
    assert_eq!(
        data["retireProductVersion"]["userErrors"][0]["code"],
        "VERSION_NOT_PUBLISHED"
    );
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) AS n FROM audit_log WHERE action = 'product_version.published' AND actor_type = 'staff'"
        )
        .await,
        1
    );
}

/// Updates the draft's terms and returns the first user error's (field, code).
async fn update_error(app: &TestApp, ops: &Auth, id: &str, terms: &Value) -> (Value, Value) {
    let data = gql(
        app,
        ops,
        UPDATE,
        json!({ "i": { "versionId": id, "terms": terms } }),
    )
    .await;
    let e = &data["updateProductVersionDraft"]["userErrors"][0];
    (e["field"].clone(), e["code"].clone())
}

/// Updates the draft's terms (accepted), then tries to publish; returns the first user error.
async fn publish_error(app: &TestApp, ops: &Auth, id: &str, terms: &Value) -> Value {
    let (field, code) = update_error(app, ops, id, terms).await;
    assert!(field.is_null() && code.is_null(), "{field} {code}");
    let data = gql(app, ops, PUBLISH, json!({ "id": id })).await;
    data["publishProductVersion"]["userErrors"][0].clone()
}

#[tokio::test]
async fn bad_terms_are_refused_with_specific_codes() {
    let app = TestApp::spawn().await;
    let ops = ops_session(&app).await;
    let (product, _) = seeded_food_product(&app).await;
    let draft = new_draft(&app, &ops, &product).await;
    let id = draft["id"].as_str().unwrap().to_owned();
    let base = draft["terms"].clone();

    // Factor tables with gaps or overlaps.
    let mut t = base.clone();
    t["rateTable"]["ageBands"][1]["from"] = json!(22);
    assert_eq!(
        update_error(&app, &ops, &id, &t).await,
        (json!("terms.rateTable.ageBands[1]"), json!("BAND_GAP"))
    );
    let mut t = base.clone();
    t["rateTable"]["ageBands"][1]["from"] = json!(20);
    assert_eq!(
        update_error(&app, &ops, &id, &t).await,
        (json!("terms.rateTable.ageBands[1]"), json!("BAND_OVERLAP"))
    );
    let mut t = base.clone();
    t["rateTable"]["timeBands"][0]["end"] = json!("17:00");
    assert_eq!(
        update_error(&app, &ops, &id, &t).await,
        (json!("terms.rateTable.timeBands"), json!("TIME_BAND_GAP"))
    );
    let mut t = base.clone();
    t["rateTable"]["timeBands"][0]["end"] = json!("19:00");
    assert_eq!(
        update_error(&app, &ops, &id, &t).await,
        (
            json!("terms.rateTable.timeBands[1]"),
            json!("TIME_BAND_OVERLAP")
        )
    );
    let mut t = base.clone();
    t["rateTable"]["timeBands"][0]["start"] = json!("6am");
    assert_eq!(
        update_error(&app, &ops, &id, &t).await,
        (
            json!("terms.rateTable.timeBands[0].start"),
            json!("INVALID_TIME_BAND")
        )
    );
    let mut t = base.clone();
    t["rateTable"]["claimsBands"][0]["factorBp"] = json!(-100);
    assert_eq!(
        update_error(&app, &ops, &id, &t).await,
        (
            json!("terms.rateTable.claimsBands[0].factorBp"),
            json!("INVALID_FACTOR")
        )
    );
    let mut t = base.clone();
    t["rateTable"]["regionFactors"]["areas"][0]["factorBp"] = json!(0);
    let area0 = t["rateTable"]["regionFactors"]["areas"][0]["area"].clone();
    assert_eq!(
        update_error(&app, &ops, &id, &t).await,
        (
            json!("terms.rateTable.regionFactors.areas[0].factorBp"),
            json!("INVALID_FACTOR")
        ),
        "area {area0}"
    );
    // Negative and zero base rates never get stored.
    let car = base["rateTable"]["baseHourlyRates"]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r["vehicleType"] == "CAR")
        .unwrap();
    for bad in [-5, 0] {
        let mut t = base.clone();
        rate_of(&mut t, "CAR")["rateMinor"] = json!(bad);
        assert_eq!(
            update_error(&app, &ops, &id, &t).await,
            (
                json!(format!("terms.rateTable.baseHourlyRates[{car}]")),
                json!("INVALID_BASE_RATE")
            )
        );
    }
    let mut t = base.clone();
    t["rules"]["minimumAge"] = json!(-1);
    assert_eq!(
        update_error(&app, &ops, &id, &t).await,
        (
            json!("terms.rules.minimumAge"),
            json!("INVALID_MINIMUM_AGE")
        )
    );

    // Rates that are valid entries but price at zero, too little or absurdly much: refused at
    // publication, and shown by the check.
    let mut t = base.clone();
    rate_of(&mut t, "BICYCLE")["rateMinor"] = json!(1);
    t["rateTable"]["regionFactors"]["areas"][0]["factorBp"] = json!(1_000);
    let e = publish_error(&app, &ops, &id, &t).await;
    assert_eq!(e["code"], "PRICE_NOT_POSITIVE", "{e}");
    assert_eq!(e["field"], "terms.rateTable");
    let mut t = base.clone();
    rate_of(&mut t, "BICYCLE")["rateMinor"] = json!(5);
    let e = publish_error(&app, &ops, &id, &t).await;
    assert_eq!(e["code"], "PRICE_TOO_LOW", "{e}");
    let mut t = base.clone();
    rate_of(&mut t, "CAR")["rateMinor"] = json!(90_000);
    let e = publish_error(&app, &ops, &id, &t).await;
    assert_eq!(e["code"], "PRICE_TOO_HIGH", "{e}");
    let data = gql(&app, &ops, CHECK, json!({ "id": id })).await;
    let codes: Vec<&str> = data["checkProductVersion"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"PRICE_TOO_HIGH"), "{codes:?}");

    // Terms and cases as documents, as in the product files.
    let data = gql(
        &app,
        &ops,
        UPDATE,
        json!({ "i": { "versionId": id, "termsToml": FOOD_TERMS } }),
    )
    .await;
    assert!(
        data["updateProductVersionDraft"]["userErrors"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{data}"
    );
    let gap = FOOD_TERMS.replacen("from = 21", "from = 22", 1);
    let data = gql(
        &app,
        &ops,
        UPDATE,
        json!({ "i": { "versionId": id, "termsToml": gap } }),
    )
    .await;
    let e = &data["updateProductVersionDraft"]["userErrors"][0];
    assert_eq!(e["code"], "BAND_GAP", "{data}");
    assert_eq!(e["field"], "termsToml.rateTable.ageBands[1]");
    let data = gql(
        &app,
        &ops,
        UPDATE,
        json!({ "i": { "versionId": id, "termsToml": "wording_version = " } }),
    )
    .await;
    let e = &data["updateProductVersionDraft"]["userErrors"][0];
    assert_eq!(e["code"], "INVALID_TERMS_DOCUMENT", "{data}");
    assert_eq!(e["field"], "termsToml");
    let data = gql(&app, &ops, UPDATE, json!({ "i": { "versionId": id } })).await;
    assert_eq!(
        data["updateProductVersionDraft"]["userErrors"][0]["code"],
        "MISSING_TERMS"
    );

    let set_cases = "mutation($i: SetProductVersionTestCasesInput!) { setProductVersionTestCases(input: $i) { testCases { name } userErrors { field code message } } }";
    let data = gql(
        &app,
        &ops,
        set_cases,
        json!({ "i": { "versionId": id, "casesToml": FOOD_CASES } }),
    )
    .await;
    assert!(
        data["setProductVersionTestCases"]["userErrors"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{data}"
    );
    let other = FOOD_CASES.replace("product = \"food_delivery_hourly\"", "product = \"other\"");
    let data = gql(
        &app,
        &ops,
        set_cases,
        json!({ "i": { "versionId": id, "casesToml": other } }),
    )
    .await;
    let e = &data["setProductVersionTestCases"]["userErrors"][0];
    assert_eq!(e["code"], "INVALID_TEST_CASES", "{data}");
    assert_eq!(e["field"], "casesToml");
    let data = gql(
        &app,
        &ops,
        set_cases,
        json!({ "i": { "versionId": id, "cases": [{
            "name": "no expectation", "vehicleType": "CAR", "age": 30, "yearsLicensed": 5,
            "claims5y": 0, "postcode": "E1 6AN", "start": "2026-11-23T14:00:00Z" }] } }),
    )
    .await;
    let e = &data["setProductVersionTestCases"]["userErrors"][0];
    assert_eq!(e["code"], "INVALID_TEST_CASES", "{data}");
    assert_eq!(e["field"], "cases[0]");
    let data = gql(
        &app,
        &ops,
        set_cases,
        json!({ "i": { "versionId": id, "cases": [] } }),
    )
    .await;
    assert!(
        data["setProductVersionTestCases"]["userErrors"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let data = gql(&app, &ops, PUBLISH, json!({ "id": id })).await;
    let e = &data["publishProductVersion"]["userErrors"][0];
    assert_eq!(e["code"], "NO_TEST_CASES", "{data}");
    assert_eq!(e["field"], "cases");

    // Ids that name nothing.
    let data = gql(&app, &ops, PUBLISH, json!({ "id": "bm90aGluZw" })).await;
    assert_eq!(
        data["publishProductVersion"]["userErrors"][0]["code"],
        "VERSION_NOT_FOUND"
    );
    let data = gql(
        &app,
        &ops,
        "mutation($p: ID!, $f: ID) { createProductVersionDraft(input: { productId: $p, fromVersionId: $f }) { productVersion { id } userErrors { field code } } }",
        json!({ "p": global_id("Product", &pricing::ProductId::new()), "f": null }),
    )
    .await;
    assert_eq!(
        data["createProductVersionDraft"]["userErrors"][0]["code"],
        "PRODUCT_NOT_FOUND"
    );
}
