//! Authorization entries for the wallet, cards, top-ups, payments and refunds.
//!
//! The fixture gives driver A a saved card, a payment that has not been charged yet (`created`,
//! never sent to Stripe) and a pending refund of it, written straight to the database: no Stripe
//! round trip. The table's server has no Stripe, so a driver's call that reaches Stripe answers
//! `PAYMENT_PROVIDER_UNAVAILABLE` — which shows the guards let that driver through.

use super::{Entry, Expect, FORBID, UNAUTH, by, driver_a_object, drivers_only};
use super::{Expect::*, Fx};
use crate::support::{SignedInDriver, TestApp, global_id};
use serde_json::json;

/// Driver A's money.
pub(super) struct PaymentsFx {
    /// A saved card (the default).
    card: String,
    /// A payment on it, not charged yet.
    payment: String,
    /// A pending refund of that payment.
    refund: String,
}

pub(super) async fn fixture(app: &TestApp, a: &SignedInDriver) -> PaymentsFx {
    use diesel_async::RunQueryDsl;
    let card = payments::PaymentMethodId::new();
    let payment = payments::TopUpId::new();
    let refund = payments::RefundId::new();
    let mut conn = app.db.conn().await.unwrap();
    diesel::sql_query(
        "INSERT INTO payment_methods (id, driver_id, stripe_payment_method_id, brand, last4,
                                      exp_month, exp_year, status, is_default, created_at)
              VALUES ($1, $2, 'pm_fixture' || replace($1::text, '-', ''), 'visa', '4242', 12, 2034,
                      'active', true, now());
         ",
    )
    .bind::<diesel::sql_types::Uuid, _>(card.uuid())
    .bind::<diesel::sql_types::Uuid, _>(a.id.uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO top_ups (id, driver_id, amount_minor, currency, kind, status, payment_method_id,
                              idempotency_key, request_fingerprint, created_at, updated_at)
              VALUES ($1, $2, 1000, 'GBP', 'on_session', 'created', $3, 'fixture',
                      repeat('0', 64), now(), now())",
    )
    .bind::<diesel::sql_types::Uuid, _>(payment.uuid())
    .bind::<diesel::sql_types::Uuid, _>(a.id.uuid())
    .bind::<diesel::sql_types::Uuid, _>(card.uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO refunds (id, driver_id, target, top_up_id, amount_minor, currency, reason,
                              actor_type, status, created_at, updated_at)
              VALUES ($1, $2, 'top_up', $3, 100, 'GBP', 'fixture', 'system', 'pending', now(), now())",
    )
    .bind::<diesel::sql_types::Uuid, _>(refund.uuid())
    .bind::<diesel::sql_types::Uuid, _>(a.id.uuid())
    .bind::<diesel::sql_types::Uuid, _>(payment.uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    PaymentsFx {
        card: global_id("PaymentMethod", &card),
        payment: global_id("Payment", &payment),
        refund: global_id("Refund", &refund),
    }
}

/// Driver A's money: A, ops and finance see it; nobody else learns it exists.
fn money_of_a() -> [Expect; 7] {
    by(Hidden, Allowed, Hidden, Hidden, Allowed, Allowed, Allowed)
}

/// Ops and finance (admin holds both).
fn money_staff() -> [Expect; 7] {
    by(UNAUTH, FORBID, FORBID, FORBID, Allowed, Allowed, Allowed)
}

/// The call reached Stripe, which the table's server does not have.
const STRIPE_DOWN: Expect = Denied("PAYMENT_PROVIDER_UNAVAILABLE");

/// A driver's call on driver A's object: A gets `a`, B is told it does not exist.
fn on_a(a: Expect) -> [Expect; 7] {
    by(
        UNAUTH,
        a,
        Refused("NOT_FOUND"),
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
            field: "Query.wallet",
            case: "own wallet",
            doc: "{ wallet { balance { minor } autoTopUp { enabled } transactions(first: 5) { edges { node { kind } } } payments(first: 5) { edges { node { id } } } paymentMethods { id } } }",
            vars: |_, _| json!({}),
            judge: "/wallet",
            expect: drivers_only(),
        },
        Entry {
            field: "Query.payments",
            case: "own payments",
            doc: "{ payments(first: 5) { edges { node { id status refunds { id } } } } }",
            vars: |_, _| json!({}),
            judge: "/payments",
            expect: drivers_only(),
        },
        Entry {
            field: "Query.paymentMethods",
            case: "own cards",
            doc: "{ paymentMethods { id last4 isDefault } }",
            vars: |_, _| json!({}),
            judge: "/paymentMethods",
            expect: drivers_only(),
        },
        Entry {
            field: "Query.chargebacks",
            case: "-",
            doc: "{ chargebacks(first: 5) { id stripeStatus amount { minor } driver { id } } }",
            vars: |_: &Fx, _| json!({}),
            judge: "/chargebacks",
            expect: money_staff(),
        },
        Entry {
            field: "Query.flaggedStripeEvents",
            case: "-",
            doc: "{ flaggedStripeEvents(first: 5) { eventId eventType reason } }",
            vars: |_: &Fx, _| json!({}),
            judge: "/flaggedStripeEvents",
            expect: money_staff(),
        },
        Entry {
            field: "Query.driverWallet",
            case: "driver A's wallet",
            doc: "query($id: ID!) { driverWallet(driverId: $id) { balance { minor } paymentMethods { id } } }",
            vars: |f: &Fx, _| json!({ "id": global_id("Driver", &f.a.id) }),
            judge: "/driverWallet",
            expect: money_staff(),
        },
        Entry {
            field: "Query.driverWallet",
            case: "driver A's refund, through the payments and refunds edges",
            doc: "query($id: ID!) { driverWallet(driverId: $id) { payments(first: 5) { edges { node { refunds { id reason } } } } } }",
            vars: |f: &Fx, _| json!({ "id": global_id("Driver", &f.a.id) }),
            judge: "/driverWallet/payments/edges/0/node/refunds/0",
            expect: money_staff(),
        },
        Entry {
            field: "Query.node",
            case: "driver A, through the wallet edge",
            doc: "query($id: ID!) { node(id: $id) { ... on Driver { wallet { balance { minor } payments(first: 5) { edges { node { id } } } } } } }",
            vars: |f: &Fx, _| json!({ "id": global_id("Driver", &f.a.id) }),
            judge: "/node/wallet/payments/edges/0/node",
            expect: driver_a_object(),
        },
        Entry {
            field: "Query.node",
            case: "driver A's payment",
            doc: "query($id: ID!) { node(id: $id) { id ... on Payment { status amount { minor } paymentMethod { last4 } } } }",
            vars: |f: &Fx, _| json!({ "id": f.payments.payment }),
            judge: "/node",
            expect: money_of_a(),
        },
        Entry {
            field: "Query.node",
            case: "driver A's payment, through the refunds edge",
            doc: "query($id: ID!) { node(id: $id) { ... on Payment { refunds { id status } } } }",
            vars: |f: &Fx, _| json!({ "id": f.payments.payment }),
            judge: "/node/refunds/0",
            expect: money_of_a(),
        },
        Entry {
            field: "Query.node",
            case: "driver A's refund",
            doc: "query($id: ID!) { node(id: $id) { id ... on Refund { status payment { id } } } }",
            vars: |f: &Fx, _| json!({ "id": f.payments.refund }),
            judge: "/node",
            expect: money_of_a(),
        },
        Entry {
            field: "Query.node",
            case: "driver A's card",
            doc: "query($id: ID!) { node(id: $id) { id ... on PaymentMethod { brand last4 } } }",
            vars: |f: &Fx, _| json!({ "id": f.payments.card }),
            judge: "/node",
            expect: money_of_a(),
        },
        // ---- a driver's cards and top-ups ----
        Entry {
            field: "Mutation.createCardSetup",
            case: "own account",
            doc: "mutation { createCardSetup { clientSecret userErrors { code } } }",
            vars: |_, _| json!({}),
            judge: "/createCardSetup",
            expect: by(
                UNAUTH,
                STRIPE_DOWN,
                STRIPE_DOWN,
                FORBID,
                FORBID,
                FORBID,
                FORBID,
            ),
        },
        Entry {
            field: "Mutation.confirmCardSetup",
            case: "a SetupIntent that is nobody's",
            doc: "mutation { confirmCardSetup(input: { setupIntentId: \"seti_unknown\" }) { status userErrors { code } } }",
            vars: |_, _| json!({}),
            judge: "/confirmCardSetup",
            expect: on_a(Refused("NOT_FOUND")),
        },
        Entry {
            field: "Mutation.setDefaultPaymentMethod",
            case: "driver A's card",
            doc: "mutation($id: ID!) { setDefaultPaymentMethod(input: { paymentMethodId: $id }) { paymentMethod { isDefault } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.payments.card }),
            judge: "/setDefaultPaymentMethod",
            expect: on_a(Allowed),
        },
        Entry {
            field: "Mutation.removePaymentMethod",
            case: "driver A's card",
            doc: "mutation($id: ID!) { removePaymentMethod(input: { paymentMethodId: $id }) { paymentMethod { removed } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.payments.card }),
            judge: "/removePaymentMethod",
            expect: on_a(STRIPE_DOWN),
        },
        Entry {
            field: "Mutation.topUpWallet",
            case: "own wallet, below the minimum",
            doc: "mutation { topUpWallet(input: { amount: 100, idempotencyKey: \"table\" }) { payment { id } userErrors { code } } }",
            vars: |_, _| json!({}),
            judge: "/topUpWallet",
            expect: by(
                UNAUTH,
                Refused("AMOUNT_TOO_SMALL"),
                Refused("AMOUNT_TOO_SMALL"),
                FORBID,
                FORBID,
                FORBID,
                FORBID,
            ),
        },
        Entry {
            field: "Mutation.refreshTopUp",
            case: "driver A's payment",
            doc: "mutation($id: ID!) { refreshTopUp(input: { paymentId: $id }) { payment { status } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.payments.payment }),
            judge: "/refreshTopUp",
            expect: on_a(Allowed),
        },
        Entry {
            field: "Mutation.finishTopUp",
            case: "driver A's payment",
            doc: "mutation($id: ID!) { finishTopUp(input: { paymentId: $id }) { payment { status } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.payments.payment }),
            judge: "/finishTopUp",
            expect: on_a(Allowed),
        },
        Entry {
            field: "Mutation.setAutoTopUp",
            case: "own settings",
            doc: "mutation { setAutoTopUp(input: { enabled: false, threshold: 500, amount: 1000 }) { autoTopUp { enabled } userErrors { code } } }",
            vars: |_, _| json!({}),
            judge: "/setAutoTopUp",
            expect: drivers_only(),
        },
        // ---- back office ----
        Entry {
            field: "Mutation.refundPayment",
            case: "driver A's payment (not charged, so not refundable)",
            doc: "mutation($id: ID!) { refundPayment(input: { paymentId: $id, amount: 100, reason: \"table\", idempotencyKey: \"table\" }) { refund { id } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.payments.payment }),
            judge: "/refundPayment",
            expect: by(
                UNAUTH,
                FORBID,
                FORBID,
                FORBID,
                Refused("NOT_REFUNDABLE"),
                Refused("NOT_REFUNDABLE"),
                Refused("NOT_REFUNDABLE"),
            ),
        },
        Entry {
            field: "Mutation.adjustSessionCharge",
            case: "driver A's running session (nothing charged yet)",
            doc: "mutation($id: ID!) { adjustSessionCharge(input: { sessionId: $id, refundAmount: 10, reason: \"table\", idempotencyKey: \"table\" }) { refund { id } userErrors { code } } }",
            vars: |f: &Fx, _| json!({ "id": f.cover.session }),
            judge: "/adjustSessionCharge",
            expect: by(
                UNAUTH,
                FORBID,
                FORBID,
                FORBID,
                Refused("NOT_REFUNDABLE"),
                Refused("NOT_REFUNDABLE"),
                Refused("NOT_REFUNDABLE"),
            ),
        },
    ]
}
