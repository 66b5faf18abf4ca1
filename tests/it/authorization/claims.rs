//! Authorization entries for claims and charge disputes.
//!
//! The fixture (made after the cover fixture, so driver A has a funded wallet and a running
//! session) gives driver A: a reported claim, two claims under review (one for ops and one for
//! admin to settle), and three charged sessions written beside the running one — two with an
//! open dispute (one for ops and one for admin to resolve), one undisputed.

use super::{Entry, Expect, FORBID, UNAUTH, by, driver_a_object, drivers_only, ops_only};
use super::{Expect::*, Fx};
use crate::support::{SignedInDriver, TestApp, global_id};
use serde_json::json;

/// Driver A's claims and disputes.
pub(super) struct ClaimsFx {
    /// A reported claim.
    claim: String,
    /// Claims under review: for ops (column 4) and for admin (column 6) to settle.
    review: [String; 2],
    /// Open disputes: for ops and for admin to resolve.
    dispute: [String; 2],
    /// A charged session nobody disputed.
    charged: String,
}

/// A charged session of driver A, copied from their running one (same enrolment, product
/// version and quote) hours in the past, then charged through payments.
async fn charged_session(
    app: &TestApp,
    a: &SignedInDriver,
    hours_ago: i32,
) -> cover::CoverSessionId {
    use diesel_async::RunQueryDsl;
    let id = cover::CoverSessionId::new();
    let hex = id.uuid().simple().to_string().to_uppercase();
    let certificate = format!("SC-{}-{}", &hex[24..28], &hex[28..32]);
    let mut conn = app.db.conn().await.unwrap();
    diesel::sql_query(
        "INSERT INTO cover_sessions (id, driver_id, vehicle_id, enrolment_id, product_version_id,
             quote_id, currency, hourly_rate_minor, status, started_at, max_end_at, ended_at,
             end_reason, source, idempotency_key, certificate_number, minutes, billed_minutes,
             charge_rule, uncapped_minor, net_minor, commission_minor, ipt_minor, total_minor,
             ipt_rate_bp, commission_bp)
         SELECT $1, driver_id, vehicle_id, enrolment_id, product_version_id, quote_id, currency,
                hourly_rate_minor, 'ended', now() - make_interval(hours => $3),
                now() - make_interval(hours => $3) + interval '10 hours',
                now() - make_interval(hours => $3) + interval '1 hour', 'driver', 'driver',
                'fixture-' || $1::text, $4, 60, 60, 'minimum', 448, 320, 80, 48, 448, 1200, 2500
           FROM cover_sessions WHERE driver_id = $2 AND status = 'active'",
    )
    .bind::<diesel::sql_types::Uuid, _>(id.uuid())
    .bind::<diesel::sql_types::Uuid, _>(a.id.uuid())
    .bind::<diesel::sql_types::Integer, _>(hours_ago)
    .bind::<diesel::sql_types::Text, _>(certificate)
    .execute(&mut conn)
    .await
    .unwrap();
    let env =
        payments::PaymentsEnv::from_settings(&app.core.settings, app.core.clock.clone()).unwrap();
    payments::charge_session(&mut conn, &env, id).await.unwrap();
    id
}

pub(super) async fn fixture(app: &TestApp, a: &SignedInDriver, a_vehicle: &str) -> ClaimsFx {
    let vehicle_id: accounts::VehicleId = graphql::relay::from_global_id(a_vehicle)
        .unwrap()
        .1
        .parse()
        .unwrap();
    let clock = app.core.clock.as_ref();
    let mut claim_ids = Vec::new();
    for key in ["reported", "review-ops", "review-admin"] {
        let mut conn = app.db.conn().await.unwrap();
        let reported = claims::report_claim(
            &mut conn,
            clock,
            a.id,
            claims::ReportClaim {
                occurred_at: clock.now() - chrono::Duration::minutes(5),
                location: "High Street".into(),
                description: "Scraped a parked car.".into(),
                vehicle_id,
                third_party_involved: true,
                injuries: false,
                photo_ids: Vec::new(),
                idempotency_key: key.into(),
            },
        )
        .await
        .unwrap();
        claim_ids.push(reported.claim.id);
    }
    {
        use diesel_async::RunQueryDsl;
        let mut conn = app.db.conn().await.unwrap();
        diesel::sql_query("UPDATE claims SET status = 'under_review' WHERE id = ANY($1)")
            .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(
                claim_ids[1..].iter().map(|c| c.uuid()).collect::<Vec<_>>(),
            )
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let mut disputes = Vec::new();
    for hours_ago in [30, 28] {
        let session = charged_session(app, a, hours_ago).await;
        let mut conn = app.db.conn().await.unwrap();
        let dispute = claims::dispute_charge(
            &mut conn,
            clock,
            a.id,
            claims::DisputeCharge {
                session_id: session,
                reason: claims::DisputeReason::NotWorking,
                details: None,
            },
        )
        .await
        .unwrap();
        disputes.push(global_id("ChargeDispute", &dispute.id));
    }
    let charged = charged_session(app, a, 26).await;
    ClaimsFx {
        claim: global_id("Claim", &claim_ids[0]),
        review: [
            global_id("Claim", &claim_ids[1]),
            global_id("Claim", &claim_ids[2]),
        ],
        dispute: [disputes[0].clone(), disputes[1].clone()],
        charged: global_id("CoverSession", &charged),
    }
}

/// The admin column takes the second object of a pair; everyone else the first.
fn pick(pair: &[String; 2], column: usize) -> &str {
    if column == 6 { &pair[1] } else { &pair[0] }
}

/// Driver-only mutations on driver A's objects: A may, B is told the object is not theirs.
fn driver_a_mutation(b_code: &'static str) -> [Expect; 7] {
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
            field: "Query.claims",
            case: "own claims",
            doc: "{ claims(first: 5) { edges { node { id reference status coverAtLoss { covered message } photos { id } history { toStatus } } } } }",
            vars: super::none,
            judge: "/claims",
            expect: drivers_only(),
        },
        Entry {
            field: "Query.claim",
            case: "driver A's claim",
            doc: "query($id: ID!) { claim(id: $id) { id reference vehicle { id } driver { id } } }",
            vars: |f: &Fx, _| json!({ "id": f.claims.claim }),
            judge: "/claim",
            expect: by(UNAUTH, Allowed, Hidden, FORBID, Allowed, FORBID, Allowed),
        },
        Entry {
            field: "Query.disputes",
            case: "own disputes",
            doc: "{ disputes(first: 5) { edges { node { id status charge { minor } session { id } } } } }",
            vars: super::none,
            judge: "/disputes",
            expect: drivers_only(),
        },
        Entry {
            field: "Query.claimsQueue",
            case: "all open claims",
            doc: "{ claimsQueue(first: 5) { edges { node { id reserve { minor } driver { id } } } } }",
            vars: super::none,
            judge: "/claimsQueue",
            expect: ops_only(),
        },
        Entry {
            field: "Query.disputesQueue",
            case: "all open disputes",
            doc: "{ disputesQueue(first: 5) { edges { node { id pricingRule { minimumChargeMinutes } partnerEvents { kind } } } } }",
            vars: super::none,
            judge: "/disputesQueue",
            expect: ops_only(),
        },
        Entry {
            field: "Query.claimsBordereau",
            case: "this month",
            doc: "{ claimsBordereau(year: 2026, month: 11) { claimReference status paid { minor } } }",
            vars: super::none,
            judge: "/claimsBordereau",
            expect: by(UNAUTH, FORBID, FORBID, FORBID, FORBID, Allowed, Allowed),
        },
        Entry {
            field: "Query.node",
            case: "driver A's claim",
            doc: "query($id: ID!) { node(id: $id) { id ... on Claim { reference } } }",
            vars: |f: &Fx, _| json!({ "id": f.claims.claim }),
            judge: "/node",
            expect: driver_a_object(),
        },
        Entry {
            field: "Query.node",
            case: "driver A's charge dispute",
            doc: "query($id: ID!) { node(id: $id) { id ... on ChargeDispute { status } } }",
            vars: |f: &Fx, _| json!({ "id": f.claims.dispute[0] }),
            judge: "/node",
            expect: driver_a_object(),
        },
        // ---- drivers ----
        Entry {
            field: "Mutation.reportClaim",
            case: "on driver A's vehicle",
            doc: "mutation($v: ID!, $at: DateTime!) { reportClaim(input: { occurredAt: $at, location: \"Here\", description: \"Bump\", vehicleId: $v, thirdPartyInvolved: false, injuries: false, idempotencyKey: \"table\" }) { claim { id reference } userErrors { code } } }",
            vars: |f: &Fx, _| {
                let at = chrono::Utc::now() - chrono::Duration::hours(1);
                json!({ "v": f.a_vehicle, "at": at.to_rfc3339() })
            },
            judge: "/reportClaim",
            expect: driver_a_mutation("VEHICLE_NOT_FOUND"),
        },
        Entry {
            field: "Mutation.withdrawClaim",
            case: "driver A's claim",
            doc: "mutation($id: ID!) { withdrawClaim(input: { claimId: $id, reason: \"Sorted\" }) { claim { status } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.claims.claim }),
            judge: "/withdrawClaim",
            expect: driver_a_mutation("CLAIM_NOT_FOUND"),
        },
        Entry {
            field: "Mutation.disputeCharge",
            case: "driver A's charged session",
            doc: "mutation($id: ID!) { disputeCharge(input: { sessionId: $id, reason: WRONG_VEHICLE }) { dispute { id } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.claims.charged }),
            judge: "/disputeCharge",
            expect: driver_a_mutation("SESSION_NOT_FOUND"),
        },
        // ---- ops ----
        Entry {
            field: "Mutation.transitionClaim",
            case: "driver A's reported claim",
            doc: "mutation($id: ID!, $s: ClaimStatus!) { transitionClaim(input: { claimId: $id, status: $s, reason: \"Next step\" }) { claim { status } userErrors { code } } }",
            vars: |f: &Fx, column| {
                // Ops acknowledges it first; admin then takes it under review.
                let status = if column == 6 {
                    "UNDER_REVIEW"
                } else {
                    "ACKNOWLEDGED"
                };
                json!({ "id": f.claims.claim, "s": status })
            },
            judge: "/transitionClaim",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.setClaimReserve",
            case: "driver A's claim",
            doc: "mutation($id: ID!) { setClaimReserve(input: { claimId: $id, amount: 50000, reason: \"Estimate\" }) { claim { reserve { minor } } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.claims.claim }),
            judge: "/setClaimReserve",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.settleClaim",
            case: "driver A's claims under review",
            doc: "mutation($id: ID!) { settleClaim(input: { claimId: $id, paidAmount: 42000, reason: \"Agreed\" }) { claim { status paid { minor } } userErrors { code } } }",
            vars: |f: &Fx, column| json!({ "id": pick(&f.claims.review, column) }),
            judge: "/settleClaim",
            expect: ops_only(),
        },
        Entry {
            field: "Mutation.resolveDispute",
            case: "driver A's open disputes",
            doc: "mutation($id: ID!) { resolveDispute(input: { disputeId: $id, resolution: UPHOLD, note: \"Charge stands\" }) { dispute { status } userErrors { code } } }",
            vars: |f: &Fx, column| json!({ "id": pick(&f.claims.dispute, column) }),
            judge: "/resolveDispute",
            expect: ops_only(),
        },
    ]
}
