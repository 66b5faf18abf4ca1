//! Authorization entries for quotes, enrolment and cover sessions.
//!
//! The fixture gives driver A a complete profile, a funded wallet, an active enrolment in the
//! food delivery product and a running cover session (started with [`SESSION_KEY`]); driver B
//! has none of these.

use super::{Entry, FORBID, UNAUTH, by, driver_a_object, drivers_only};
use super::{Expect::*, Fx};
use crate::support::{SignedInDriver, TestApp, global_id};
use serde_json::json;

/// The idempotency key driver A's running session was started with.
const SESSION_KEY: &str = "fixture-session";

/// Driver A's cover.
pub(super) struct CoverFx {
    /// The food delivery product (driver A is enrolled in it).
    food: String,
    /// The private hire product (nobody is enrolled in it).
    hire: String,
    /// Driver A's enrolment.
    pub(super) enrolment: String,
    /// Driver A's running session.
    pub(super) session: String,
}

pub(super) async fn fixture(app: &TestApp, a: &SignedInDriver, a_vehicle: &str) -> CoverFx {
    let mut conn = app.db.conn().await.unwrap();
    let clock = app.core.clock.as_ref();
    let mut versions = pricing::seed_demo_products(&mut conn).await.unwrap();
    let hire = versions.pop().unwrap();
    let food = versions.pop().unwrap();
    accounts::update_profile(
        &mut conn,
        clock,
        accounts::Actor::Driver(a.id),
        a.id,
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
    let amount = shared::Money::gbp(5_000);
    ledger::post(
        &mut conn,
        ledger::NewTransaction {
            kind: ledger::TransactionKind::TopUp,
            cause: ledger::Cause::new("test_credit", uuid::Uuid::new_v4().to_string()),
            currency: amount.currency,
            description: "Test credit".into(),
            lines: ledger::top_up_lines(
                &a.id.to_string(),
                amount,
                shared::Money::zero(amount.currency),
            )
            .unwrap(),
            metadata: serde_json::Value::Null,
        },
    )
    .await
    .unwrap();
    let vehicle_id: accounts::VehicleId = graphql::relay::from_global_id(a_vehicle)
        .unwrap()
        .1
        .parse()
        .unwrap();
    let enrolment = cover::enrol(
        &mut conn,
        clock,
        a.id,
        cover::EnrolInput {
            product_id: food.product_id,
            vehicle_id,
            accept_terms: true,
        },
        &payments::WalletFunds,
    )
    .await
    .unwrap();
    let started = cover::start_session(
        &mut conn,
        clock,
        &app.core.settings.cover,
        a.id,
        cover::StartCover {
            vehicle_id,
            product_id: None,
            quote_id: None,
            idempotency_key: SESSION_KEY.into(),
            source: cover::SessionSource::Driver,
        },
        &payments::WalletFunds,
    )
    .await
    .unwrap();
    CoverFx {
        food: global_id("Product", &food.product_id),
        hire: global_id("Product", &hire.product_id),
        enrolment: global_id("Enrolment", &enrolment.id),
        session: global_id("CoverSession", &started.session.id),
    }
}

/// Driver-only mutations on driver A's objects: A may, B is told the object is not theirs.
fn driver_a_mutation(b_code: &'static str) -> [super::Expect; 7] {
    by(
        UNAUTH,
        Allowed,
        Refused(b_code),
        FORBID,
        FORBID,
        FORBID,
        FORBID,
    )
}

pub(super) fn entries() -> Vec<Entry> {
    vec![
        // ---- queries ----
        Entry {
            field: "Query.cancelEnrolmentPreview",
            case: "driver A's enrolment",
            doc: "query($id: ID!) { cancelEnrolmentPreview(enrolmentId: $id) { openSession { id } totalDue { minor } } }",
            vars: |f: &Fx, _| json!({ "id": f.cover.enrolment }),
            judge: "/cancelEnrolmentPreview",
            expect: by(UNAUTH, Allowed, Hidden, FORBID, FORBID, FORBID, FORBID),
        },
        Entry {
            field: "Query.me",
            case: "own enrolments and cover",
            doc: "{ me { id enrolments { id status history { toStatus } } activeSession { id } coverSessions { edges { node { id } } } } }",
            vars: super::none,
            judge: "/me",
            expect: drivers_only(),
        },
        Entry {
            field: "Query.node",
            case: "driver A's cover session",
            doc: "query($id: ID!) { node(id: $id) { id ... on CoverSession { status vehicle { id } certificate { number proofToken } } } }",
            vars: |f: &Fx, _| json!({ "id": f.cover.session }),
            judge: "/node",
            expect: driver_a_object(),
        },
        Entry {
            field: "Query.node",
            case: "driver A's enrolment",
            doc: "query($id: ID!) { node(id: $id) { id ... on Enrolment { status history { toStatus } } } }",
            vars: |f: &Fx, _| json!({ "id": f.cover.enrolment }),
            judge: "/node",
            expect: driver_a_object(),
        },
        Entry {
            field: "Query.node",
            case: "driver A, through the coverSessions edge",
            doc: "query($id: ID!) { node(id: $id) { ... on Driver { coverSessions { edges { node { id certificate { number } } } } } } }",
            vars: |f: &Fx, _| json!({ "id": global_id("Driver", &f.a.id) }),
            judge: "/node/coverSessions/edges/0/node",
            expect: driver_a_object(),
        },
        Entry {
            field: "Query.node",
            case: "driver A, through the enrolments and activeSession edges",
            doc: "query($id: ID!) { node(id: $id) { ... on Driver { enrolments { id } activeSession { id } } } }",
            vars: |f: &Fx, _| json!({ "id": global_id("Driver", &f.a.id) }),
            judge: "/node/activeSession",
            expect: driver_a_object(),
        },
        // ---- mutations ----
        Entry {
            field: "Mutation.createQuote",
            case: "driver A's vehicle",
            doc: "mutation($v: ID!, $p: ID!) { createQuote(input: { vehicleId: $v, productId: $p }) { quote { id hourlyRate { minor } } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "v": f.a_vehicle, "p": f.cover.food }),
            judge: "/createQuote",
            expect: driver_a_mutation("VEHICLE_NOT_FOUND"),
        },
        Entry {
            field: "Mutation.enrol",
            case: "driver A's vehicle, a product A is not enrolled in",
            doc: "mutation($v: ID!, $p: ID!) { enrol(input: { vehicleId: $v, productId: $p, acceptTerms: true }) { enrolment { id status } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "v": f.a_vehicle, "p": f.cover.hire }),
            judge: "/enrol",
            expect: driver_a_mutation("VEHICLE_NOT_FOUND"),
        },
        Entry {
            field: "Mutation.cancelEnrolment",
            case: "driver A's enrolment",
            doc: "mutation($id: ID!) { cancelEnrolment(input: { enrolmentId: $id }) { enrolment { status } endedSession { id } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.cover.enrolment }),
            judge: "/cancelEnrolment",
            expect: driver_a_mutation("ENROLMENT_NOT_FOUND"),
        },
        Entry {
            field: "Mutation.startCover",
            case: "driver A's vehicle, repeating the running session's key",
            doc: "mutation($v: ID!, $k: String!) { startCover(input: { vehicleId: $v, idempotencyKey: $k }) { session { id } replayed userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "v": f.a_vehicle, "k": SESSION_KEY }),
            judge: "/startCover",
            expect: driver_a_mutation("NOT_ENROLLED"),
        },
        Entry {
            field: "Mutation.startCover",
            case: "driver A's vehicle, a new key while on cover",
            doc: "mutation($v: ID!, $k: String!) { startCover(input: { vehicleId: $v, idempotencyKey: $k }) { session { id } replayed userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "v": f.a_vehicle, "k": "another-tap" }),
            judge: "/startCover",
            expect: by(
                UNAUTH,
                Refused("ALREADY_ON_COVER"),
                Refused("NOT_ENROLLED"),
                FORBID,
                FORBID,
                FORBID,
                FORBID,
            ),
        },
        Entry {
            field: "Mutation.endCover",
            case: "driver A's running session",
            doc: "mutation($id: ID!) { endCover(input: { sessionId: $id }) { session { id status charge { total { minor } } } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.cover.session }),
            judge: "/endCover",
            expect: driver_a_mutation("SESSION_NOT_FOUND"),
        },
    ]
}
