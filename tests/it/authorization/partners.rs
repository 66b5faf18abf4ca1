//! Authorization entries for partner links, shift events and webhooks.
//!
//! The fixture links driver A to the calling ("own") partner as `fx-a`, gives the own partner a
//! webhook endpoint with one delivery (the `driver.unlinked` of driver B, linked then unlinked),
//! and gives driver B a fresh link code for the partner's `linkDriver`. The partner viewer's key
//! carries every scope; scope refusals are tested in `partners_flow.rs`.

use super::{Entry, Expect, FORBID, UNAUTH, by, drivers_only, ops_only};
use super::{Expect::*, Fx};
use crate::support::{SignedInDriver, TestApp, global_id};
use accounts::Partner;
use serde_json::json;

/// The own partner's links, endpoint and delivery.
pub(super) struct PartnersFx {
    /// Driver A's link to the own partner (`fx-a`).
    a_link: String,
    /// A code driver B made, not yet used.
    b_code: String,
    /// The own partner's endpoint.
    endpoint: String,
    /// Its delivery of driver B's `driver.unlinked`.
    delivery: String,
}

pub(super) async fn fixture(
    app: &TestApp,
    a: &SignedInDriver,
    b: &SignedInDriver,
    own: &Partner,
) -> PartnersFx {
    use diesel_async::RunQueryDsl;
    let clock = app.core.clock.as_ref();
    let scope = partners::PartnerScope::live(own.id);
    let mut conn = app.db.conn().await.unwrap();
    let endpoint = partners::register_webhook_endpoint(
        &mut conn,
        clock,
        &app.core.settings.partner_webhooks,
        scope,
        "https://hooks.example.com/shiftcover",
        &partners::EventType::ALL,
        None,
    )
    .await
    .unwrap()
    .endpoint;
    let code = partners::create_link_code(&mut conn, clock, a.id)
        .await
        .unwrap();
    let a_link = partners::link_driver(&mut conn, clock, scope, &code.code, "fx-a")
        .await
        .unwrap();
    let code = partners::create_link_code(&mut conn, clock, b.id)
        .await
        .unwrap();
    partners::link_driver(&mut conn, clock, scope, &code.code, "fx-b")
        .await
        .unwrap();
    partners::unlink_by_partner(&mut conn, clock, scope, "fx-b")
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    let delivery: Row =
        diesel::sql_query("SELECT id FROM webhook_deliveries WHERE endpoint_id = $1")
            .bind::<diesel::sql_types::Uuid, _>(endpoint.id.uuid())
            .get_result(&mut conn)
            .await
            .unwrap();
    let b_code = partners::create_link_code(&mut conn, clock, b.id)
        .await
        .unwrap()
        .code;
    PartnersFx {
        a_link: global_id("PartnerLink", &a_link.id),
        b_code,
        endpoint: global_id("WebhookEndpoint", &endpoint.id),
        delivery: global_id("WebhookDelivery", &partners::WebhookDeliveryId(delivery.id)),
    }
}

/// Partner keys only.
fn partner_only() -> [Expect; 7] {
    by(UNAUTH, FORBID, FORBID, Allowed, FORBID, FORBID, FORBID)
}

/// The partner (its own) and ops (admin holds every role).
fn partner_or_ops() -> [Expect; 7] {
    by(UNAUTH, FORBID, FORBID, Allowed, Allowed, FORBID, Allowed)
}

pub(super) fn entries() -> Vec<Entry> {
    vec![
        // ---- queries ----
        Entry {
            field: "Query.partnerDrivers",
            case: "own partner's links",
            doc: "{ partnerDrivers(first: 5) { edges { node { id externalDriverId } } } }",
            vars: |_, _| json!({}),
            judge: "/partnerDrivers/edges/0/node",
            expect: partner_only(),
        },
        Entry {
            field: "Query.partnerDriver",
            case: "own partner's link to driver A",
            doc: "{ partnerDriver(externalDriverId: \"fx-a\") { id linkedAt } }",
            vars: |_, _| json!({}),
            judge: "/partnerDriver",
            expect: partner_only(),
        },
        Entry {
            field: "Query.coverStatus",
            case: "driver A through the own partner",
            doc: "{ coverStatus(externalDriverId: \"fx-a\") { covered certificateNumber } }",
            vars: |_, _| json!({}),
            judge: "/coverStatus",
            expect: partner_only(),
        },
        Entry {
            field: "Query.webhookEndpoints",
            case: "own partner's endpoints (ops name the partner)",
            doc: "query($p: ID) { webhookEndpoints(partnerId: $p) { id url } }",
            vars: |f: &Fx, _| json!({ "p": global_id("Partner", &f.own_partner.id) }),
            judge: "/webhookEndpoints/0",
            expect: partner_or_ops(),
        },
        Entry {
            field: "Query.webhookDeliveries",
            case: "own partner's endpoint",
            doc: "query($e: ID!) { webhookDeliveries(endpointId: $e) { edges { node { id eventType attempts { succeeded } } } } }",
            vars: |f: &Fx, _| json!({ "e": f.partners.endpoint }),
            judge: "/webhookDeliveries/edges/0/node",
            expect: partner_or_ops(),
        },
        Entry {
            field: "Query.webhookDelivery",
            case: "own partner's delivery",
            doc: "query($d: ID!) { webhookDelivery(id: $d) { id eventType payload } }",
            vars: |f: &Fx, _| json!({ "d": f.partners.delivery }),
            judge: "/webhookDelivery",
            expect: partner_or_ops(),
        },
        Entry {
            field: "Query.partnerLinks",
            case: "own links",
            doc: "{ partnerLinks { id partnerName } }",
            vars: |_, _| json!({}),
            judge: "/partnerLinks",
            expect: drivers_only(),
        },
        Entry {
            field: "Query.partnerCoverStartRule",
            case: "own partner",
            doc: "query($p: ID!) { partnerCoverStartRule(partnerId: $p) }",
            vars: |f: &Fx, _| json!({ "p": global_id("Partner", &f.own_partner.id) }),
            judge: "/partnerCoverStartRule",
            expect: ops_only(),
        },
        // ---- mutations ----
        Entry {
            field: "Mutation.linkDriver",
            case: "driver B's fresh code",
            doc: "mutation($c: String!) { linkDriver(input: { linkCode: $c, externalDriverId: \"fx-new\" }) { link { id } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "c": f.partners.b_code }),
            judge: "/linkDriver",
            expect: partner_only(),
        },
        Entry {
            field: "Mutation.unlinkDriver",
            case: "own partner's link to driver A",
            doc: "mutation { unlinkDriver(input: { externalDriverId: \"fx-a\" }) { link { unlinkedAt } userErrors { code } } }",
            vars: |_, _| json!({}),
            judge: "/unlinkDriver",
            expect: partner_only(),
        },
        Entry {
            field: "Mutation.recordShiftEvents",
            case: "an event for driver A",
            doc: "mutation($t: DateTime!) { recordShiftEvents(input: { events: [{ eventId: \"fx-1\", externalDriverId: \"fx-a\", kind: ONLINE, occurredAt: $t, vehicleType: CAR }] }) { results { status code } userErrors { code } } }",
            vars: |_, _| json!({ "t": chrono::Utc::now().to_rfc3339() }),
            judge: "/recordShiftEvents",
            expect: partner_only(),
        },
        Entry {
            field: "Mutation.registerWebhookEndpoint",
            case: "-",
            doc: "mutation { registerWebhookEndpoint(input: { url: \"https://hooks.example.com/new\", eventTypes: [COVER_STARTED] }) { endpoint { id } secret userErrors { code } } }",
            vars: |_, _| json!({}),
            judge: "/registerWebhookEndpoint",
            expect: partner_only(),
        },
        Entry {
            field: "Mutation.rotateWebhookSecret",
            case: "own partner's endpoint",
            doc: "mutation($e: ID!) { rotateWebhookSecret(input: { endpointId: $e, overlapHours: 1 }) { secret userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "e": f.partners.endpoint }),
            judge: "/rotateWebhookSecret",
            expect: partner_only(),
        },
        Entry {
            field: "Mutation.setWebhookEndpointEnabled",
            case: "own partner's endpoint",
            doc: "mutation($e: ID!) { setWebhookEndpointEnabled(input: { endpointId: $e, enabled: false }) { endpoint { enabled } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "e": f.partners.endpoint }),
            judge: "/setWebhookEndpointEnabled",
            expect: partner_only(),
        },
        Entry {
            field: "Mutation.replayWebhookDelivery",
            case: "own partner's delivery",
            doc: "mutation($d: ID!) { replayWebhookDelivery(input: { deliveryId: $d }) { delivery { status replays } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "d": f.partners.delivery }),
            judge: "/replayWebhookDelivery",
            expect: partner_or_ops(),
        },
        Entry {
            field: "Mutation.createLinkCode",
            case: "-",
            doc: "mutation { createLinkCode { code expiresAt userErrors { code } } }",
            vars: |_, _| json!({}),
            judge: "/createLinkCode",
            expect: drivers_only(),
        },
        Entry {
            field: "Mutation.unlinkPartner",
            case: "driver A's link",
            doc: "mutation($l: ID!) { unlinkPartner(input: { linkId: $l }) { link { unlinkedBy } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "l": f.partners.a_link }),
            judge: "/unlinkPartner",
            expect: by(
                UNAUTH,
                Allowed,
                Refused("LINK_NOT_FOUND"),
                FORBID,
                FORBID,
                FORBID,
                FORBID,
            ),
        },
        Entry {
            field: "Mutation.staffUnlinkPartnerLink",
            case: "driver A's link (ops unlink it; admin, after them, finds it unlinked)",
            doc: "mutation($l: ID!) { staffUnlinkPartnerLink(input: { linkId: $l }) { link { unlinkedBy } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "l": f.partners.a_link }),
            judge: "/staffUnlinkPartnerLink",
            expect: by(
                UNAUTH,
                FORBID,
                FORBID,
                FORBID,
                Allowed,
                FORBID,
                Refused("LINK_NOT_FOUND"),
            ),
        },
        Entry {
            field: "Mutation.setPartnerCoverStartRule",
            case: "own partner",
            doc: "mutation($p: ID!) { setPartnerCoverStartRule(input: { partnerId: $p, startsOn: ONLINE }) { startsOn userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "p": global_id("Partner", &f.own_partner.id) }),
            judge: "/setPartnerCoverStartRule",
            expect: ops_only(),
        },
    ]
}
