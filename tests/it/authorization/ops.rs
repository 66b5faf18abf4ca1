//! Authorization entries for job queues, dead letters and product versions for staff.
//!
//! The fixture gives each entry a dead-lettered job and a product of its own with a published
//! version 1 and a draft version 2 (the demo food delivery terms and test cases). Ops call before
//! admin, so where ops use something up (retry, discard, publish, retire), admin is refused.

use super::{Entry, FORBID, UNAUTH, by, ops_only};
use super::{Expect::*, Fx};
use crate::support::{TestApp, global_id};
use serde_json::json;

const FOOD_TERMS: &str = include_str!("../../../apps/pricing/products/food_delivery_hourly.toml");
const FOOD_CASES: &str =
    include_str!("../../../apps/pricing/products/food_delivery_hourly.cases.toml");

/// A product of the entry's own, in two versions.
pub(super) struct OpsFx {
    /// A dead-lettered job.
    dead_job: String,
    /// The product.
    product: String,
    /// Version 1, published.
    published: String,
    /// Version 2, a draft with the same terms and test cases.
    draft: String,
    /// A sign-in code's SMS (drivers A and B were signed in before this fixture).
    pub(super) sign_in_notification: String,
}

pub(super) async fn fixture(app: &TestApp) -> OpsFx {
    let mut conn = app.db.conn().await.unwrap();
    let clock = app.core.clock.as_ref();
    let unique = uuid::Uuid::new_v4().simple().to_string();

    let id = shared::outbox::enqueue(
        &mut conn,
        &shared::demo::DemoPing {
            message: "fail: table".into(),
            key: format!("dead-{unique}"),
        },
    )
    .await
    .unwrap()
    .unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "UPDATE outbox_jobs SET status = 'dead', attempts = max_attempts,
                    finished_at = now(), last_error = 'permanent: table' WHERE id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(id.uuid()),
        &mut conn,
    )
    .await
    .unwrap();

    let def = pricing::demo_products().unwrap().remove(0);
    let actor = accounts::Actor::System;
    let product = pricing::create_product(
        &mut conn,
        clock,
        actor,
        &format!("ops_fx_{}", &unique[..12]),
        "Ops fixture",
    )
    .await
    .unwrap();
    let v1 = pricing::create_draft_version(&mut conn, clock, actor, product.id, &def.terms)
        .await
        .unwrap();
    pricing::set_test_cases(&mut conn, clock, actor, v1.id, &def.cases)
        .await
        .unwrap();
    pricing::publish_version(&mut conn, clock, actor, v1.id)
        .await
        .unwrap();
    let v2 = pricing::create_draft_version(&mut conn, clock, actor, product.id, &def.terms)
        .await
        .unwrap();
    pricing::set_test_cases(&mut conn, clock, actor, v2.id, &def.cases)
        .await
        .unwrap();
    OpsFx {
        dead_job: global_id("Job", &id),
        product: global_id("Product", &product.id),
        published: global_id("ProductVersion", &v1.id),
        draft: global_id("ProductVersion", &v2.id),
        sign_in_notification: {
            #[derive(diesel::QueryableByName)]
            struct Id {
                #[diesel(sql_type = diesel::sql_types::Uuid)]
                id: uuid::Uuid,
            }
            let row: Id = diesel_async::RunQueryDsl::get_result(
                diesel::sql_query(
                    "SELECT id FROM notifications WHERE template = 'sign_in_code' LIMIT 1",
                ),
                &mut conn,
            )
            .await
            .unwrap();
            global_id("Notification", &notifications::NotificationId(row.id))
        },
    }
}

fn cases_without_product_line() -> String {
    FOOD_CASES.replace("product = \"food_delivery_hourly\"", "")
}

pub(super) fn entries() -> Vec<Entry> {
    vec![
        // ---- search and actions on drivers ----
        Entry {
            field: "Query.staffSearch",
            case: "any staff role",
            doc: "{ staffSearch(query: \"Nobody Atall\") { kind id title detail driverId } }",
            vars: |_, _| json!({}),
            judge: "/staffSearch",
            expect: by(UNAUTH, FORBID, FORBID, FORBID, Allowed, Allowed, Allowed),
        },
        Entry {
            field: "Mutation.suspendEnrolment",
            case: "driver A's active enrolment",
            doc: "mutation($id: ID!) { suspendEnrolment(input: { enrolmentId: $id, reason: \"Card fraud check\" }) { enrolment { status } changed userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.cover.enrolment }),
            judge: "/suspendEnrolment",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.reactivateEnrolment",
            case: "driver A's enrolment",
            doc: "mutation($id: ID!) { reactivateEnrolment(input: { enrolmentId: $id, reason: \"Checked\" }) { enrolment { status } changed userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.cover.enrolment }),
            judge: "/reactivateEnrolment",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.signDriverOutEverywhere",
            case: "driver B",
            doc: "mutation($id: ID!) { signDriverOutEverywhere(input: { driverId: $id, reason: \"Lost phone\" }) { sessionsEnded userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": global_id("Driver", &f.b.id) }),
            judge: "/signDriverOutEverywhere",
            expect: ops_only(),
        },
        Entry {
            field: "Query.driverActivity",
            case: "driver A's messages and audit trail",
            doc: "query($id: ID!) { driverActivity(driverId: $id) { notifications { id template bodyText resendable } auditEvents { action actorType } } }",
            vars: |f: &Fx, _| json!({ "id": global_id("Driver", &f.a.id) }),
            judge: "/driverActivity",
            expect: by(UNAUTH, FORBID, FORBID, FORBID, Allowed, FORBID, Allowed),
        },
        Entry {
            field: "Mutation.resendNotification",
            case: "driver A's sign-in code (never resent)",
            doc: "mutation($id: ID!) { resendNotification(input: { notificationId: $id, reason: \"Not received\", idempotencyKey: \"authz\" }) { notificationId replayed userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.ops.sign_in_notification }),
            judge: "/resendNotification",
            expect: by(
                UNAUTH,
                FORBID,
                FORBID,
                FORBID,
                Refused("NOT_RESENDABLE"),
                FORBID,
                Refused("NOT_RESENDABLE"),
            ),
        },
        // ---- jobs ----
        Entry {
            field: "Query.jobQueues",
            case: "-",
            doc: "{ jobQueues { name pending due queued running retrying dead queuedInRedis oldestDueAgeSeconds } }",
            vars: |_, _| json!({}),
            judge: "/jobQueues",
            expect: ops_only(),
        },
        Entry {
            field: "Query.jobs",
            case: "dead letters",
            doc: "{ jobs(first: 5, filter: { status: DEAD }) { totalCount edges { cursor node { id jobType payload lastError } } pageInfo { hasNextPage } } }",
            vars: |_, _| json!({}),
            judge: "/jobs",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.retryJob",
            case: "a dead job",
            doc: "mutation($id: ID!) { retryJob(input: { jobId: $id }) { job { id status attempts } userErrors { field code } } }",
            vars: |f: &Fx, _| json!({ "id": f.ops.dead_job }),
            judge: "/retryJob",
            expect: by(
                UNAUTH,
                FORBID,
                FORBID,
                FORBID,
                Allowed,
                FORBID,
                Refused("JOB_NOT_DEAD"),
            ),
        },
        Entry {
            field: "Mutation.retryDeadJobs",
            case: "every dead DemoPing",
            doc: "mutation { retryDeadJobs(input: { jobType: \"DemoPing\" }) { retriedCount jobIds remainingDead userErrors { code } } }",
            vars: |_, _| json!({}),
            judge: "/retryDeadJobs",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.discardJob",
            case: "a dead job",
            doc: "mutation($id: ID!) { discardJob(input: { jobId: $id, reason: \"the order was cancelled\" }) { job { id status } userErrors { field code } } }",
            vars: |f: &Fx, _| json!({ "id": f.ops.dead_job }),
            judge: "/discardJob",
            expect: by(
                UNAUTH,
                FORBID,
                FORBID,
                FORBID,
                Allowed,
                FORBID,
                Refused("JOB_NOT_DISCARDABLE"),
            ),
        },
        // ---- product versions ----
        Entry {
            field: "Query.productVersions",
            case: "a product's versions",
            doc: "query($id: ID!) { productVersions(productId: $id) { id versionNumber status terms { wordingVersion rateTable { ageBands { from to factorBp } } } testCases { name } } }",
            vars: |f: &Fx, _| json!({ "id": f.ops.product }),
            judge: "/productVersions",
            expect: ops_only(),
        },
        Entry {
            field: "Query.productVersion",
            case: "the published version",
            doc: "query($id: ID!) { productVersion(versionId: $id) { id status termsJson } }",
            vars: |f: &Fx, _| json!({ "id": f.ops.published }),
            judge: "/productVersion",
            expect: ops_only(),
        },
        Entry {
            field: "Query.checkProductVersion",
            case: "a draft",
            doc: "query($id: ID!) { checkProductVersion(versionId: $id) { publishable problems { code } cases { name passed } } }",
            vars: |f: &Fx, _| json!({ "id": f.ops.draft }),
            judge: "/checkProductVersion",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.createProductVersionDraft",
            case: "a copy of the newest version",
            doc: "mutation($id: ID!) { createProductVersionDraft(input: { productId: $id }) { productVersion { id versionNumber } userErrors { field code } } }",
            vars: |f: &Fx, _| json!({ "id": f.ops.product }),
            judge: "/createProductVersionDraft",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.updateProductVersionDraft",
            case: "a draft, terms as TOML",
            doc: "mutation($id: ID!, $toml: String!) { updateProductVersionDraft(input: { versionId: $id, termsToml: $toml }) { productVersion { id } userErrors { field code } } }",
            vars: |f: &Fx, _| json!({ "id": f.ops.draft, "toml": FOOD_TERMS }),
            judge: "/updateProductVersionDraft",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.setProductVersionTestCases",
            case: "a draft, cases as TOML",
            doc: "mutation($id: ID!, $toml: String!) { setProductVersionTestCases(input: { versionId: $id, casesToml: $toml }) { testCases { name } userErrors { field code } } }",
            vars: |f: &Fx, _| json!({ "id": f.ops.draft, "toml": cases_without_product_line() }),
            judge: "/setProductVersionTestCases",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.publishProductVersion",
            case: "a draft whose cases pass",
            doc: "mutation($id: ID!) { publishProductVersion(input: { versionId: $id }) { productVersion { id status } failingCases { name } userErrors { field code } } }",
            vars: |f: &Fx, _| json!({ "id": f.ops.draft }),
            judge: "/publishProductVersion",
            expect: by(
                UNAUTH,
                FORBID,
                FORBID,
                FORBID,
                Allowed,
                FORBID,
                Refused("VERSION_NOT_DRAFT"),
            ),
        },
        Entry {
            field: "Mutation.retireProductVersion",
            case: "the published version",
            doc: "mutation($id: ID!) { retireProductVersion(input: { versionId: $id }) { productVersion { id status } userErrors { field code } } }",
            vars: |f: &Fx, _| json!({ "id": f.ops.published }),
            judge: "/retireProductVersion",
            expect: by(
                UNAUTH,
                FORBID,
                FORBID,
                FORBID,
                Allowed,
                FORBID,
                Refused("VERSION_NOT_PUBLISHED"),
            ),
        },
    ]
}
