//! The payments API over HTTP, against localstripe: saving cards (plain and 3-D Secure), topping
//! up (at once, and after a 3-D Secure challenge), automatic top-up settings, bounds and
//! idempotency errors, refunds by staff, and who may see whose money. Each flow ends with the
//! ledger check the suite runs over every database (`shiftcover ledger check`), and one flow
//! kills the job workers while automatic top-ups are being charged.

use crate::support::{Auth, TestApp, count, eventually, global_id};
use accounts::Role;
use serde_json::{Value, json};
use std::process::{Child, Command};
use std::time::Duration;
use testkit::localstripe::{LocalStripe, cards};

const PASSWORD: &str = "payments flow password";

pub(crate) async fn app() -> TestApp {
    let stripe = LocalStripe::shared();
    TestApp::spawn_with(|s| stripe.configure(&mut s.stripe)).await
}

/// Runs a document that must not fail at the request level; returns `data`.
async fn ok(app: &TestApp, auth: &Auth, doc: &str, vars: Value) -> Value {
    let (status, body) = app.gql_as(auth, doc, vars).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    body["data"].clone()
}

fn first_user_error(payload: &Value) -> &str {
    payload["userErrors"][0]["code"]
        .as_str()
        .unwrap_or("<none>")
}

const CREATE_SETUP: &str = "mutation { createCardSetup { setupIntentId clientSecret publishableKey userErrors { code } } }";
const CONFIRM_SETUP: &str = "mutation($id: String!) { confirmCardSetup(input: { setupIntentId: $id }) { status paymentMethod { id brand last4 expMonth expYear isDefault } userErrors { field code } } }";
const TOP_UP: &str = "mutation($amount: Int!, $key: String!) { topUpWallet(input: { amount: $amount, idempotencyKey: $key }) { payment { id status clientSecret amount { minor currency } } userErrors { field code } } }";
const REFRESH: &str = "mutation($id: ID!) { refreshTopUp(input: { paymentId: $id }) { payment { id status settledAt } userErrors { field code } } }";
const WALLET: &str = "{ wallet { balance { minor currency formatted } autoTopUp { enabled threshold { minor } amount { minor } } transactions(first: 10) { edges { cursor node { kind amount { minor } causeType causeId payment { id } at } } pageInfo { hasNextPage } } } }";
const REFUND: &str = "mutation($id: ID!, $amount: Int, $key: String!) { refundPayment(input: { paymentId: $id, amount: $amount, reason: \"Charged twice\", idempotencyKey: $key }) { refund { id status amount { minor } payment { id } } payment { id refundedAmount { minor } refunds { id status } } userErrors { field code } } }";

/// Saves a card as the app does: a SetupIntent, the SDK's confirmation (twice for 3-D Secure),
/// then `confirmCardSetup`. Returns the card's global id.
pub(crate) async fn save_card(app: &TestApp, auth: &Auth, number: &str) -> String {
    let stripe = LocalStripe::shared();
    let setup = ok(app, auth, CREATE_SETUP, json!({})).await["createCardSetup"].clone();
    assert_eq!(
        setup["publishableKey"],
        testkit::localstripe::PUBLISHABLE_KEY
    );
    let seti = setup["setupIntentId"].as_str().unwrap();
    let secret = setup["clientSecret"].as_str().unwrap();
    let pm = stripe.create_card(number).await.unwrap();
    let confirmed = stripe
        .confirm_setup_intent(seti, secret, Some(&pm))
        .await
        .unwrap();
    if confirmed["status"] == "requires_action" {
        // The challenge passed in the SDK: confirming again completes it.
        let pending = ok(app, auth, CONFIRM_SETUP, json!({ "id": seti })).await;
        assert_eq!(pending["confirmCardSetup"]["status"], "requires_action");
        assert!(pending["confirmCardSetup"]["paymentMethod"].is_null());
        stripe
            .confirm_setup_intent(seti, secret, None)
            .await
            .unwrap();
    }
    let done =
        ok(app, auth, CONFIRM_SETUP, json!({ "id": seti })).await["confirmCardSetup"].clone();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["paymentMethod"]["last4"], &number[number.len() - 4..]);
    // Reporting it again (or the webhook arriving after) changes nothing.
    let again =
        ok(app, auth, CONFIRM_SETUP, json!({ "id": seti })).await["confirmCardSetup"].clone();
    assert_eq!(again["paymentMethod"]["id"], done["paymentMethod"]["id"]);
    done["paymentMethod"]["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn top_up(app: &TestApp, auth: &Auth, amount: i64, key: &str) -> Value {
    ok(app, auth, TOP_UP, json!({ "amount": amount, "key": key })).await["topUpWallet"].clone()
}

async fn wallet(app: &TestApp, auth: &Auth) -> Value {
    ok(app, auth, WALLET, json!({})).await["wallet"].clone()
}

async fn staff(app: &TestApp, role: Role) -> Auth {
    let user = app.staff_user(role, PASSWORD).await;
    Auth::StaffCookie(app.staff_session(user.email.as_str(), PASSWORD).await)
}

/// `shiftcover ledger check` over the test's database, as the suite runs it at the end.
fn ledger_check(app: &TestApp) -> (bool, String) {
    ledger_check_of(app.db.url())
}

fn ledger_check_of(url: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shiftcover"))
        .args(["ledger", "check", "--database-url", url])
        .env("SHIFTCOVER__ENVIRONMENT", "test")
        .env("SHIFTCOVER__DATABASE__URL", url)
        .env("SHIFTCOVER__LOG__FILTER", "error")
        .output()
        .expect("shiftcover runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn cards_top_ups_three_d_secure_and_refunds_over_http() {
    let app = app().await;
    let a = app.driver().await;
    let b = app.driver().await;
    let (auth_a, auth_b) = (a.auth(), b.auth());

    // Nothing to charge yet.
    let no_card = top_up(&app, &auth_a, 1000, "no-card").await;
    assert_eq!(first_user_error(&no_card), "NO_PAYMENT_METHOD", "{no_card}");

    // A plain card, saved and charged at once; the wallet shows the top-up once.
    let visa = save_card(&app, &auth_a, cards::VISA).await;
    let first = top_up(&app, &auth_a, 1000, "top-up-1").await;
    assert_eq!(first["payment"]["status"], "SUCCEEDED", "{first}");
    assert!(first["payment"]["clientSecret"].is_null());
    let paid = first["payment"]["id"].as_str().unwrap().to_owned();
    let repeat = top_up(&app, &auth_a, 1000, "top-up-1").await;
    assert_eq!(
        repeat["payment"]["id"],
        paid.as_str(),
        "same key, same payment"
    );
    let w = wallet(&app, &auth_a).await;
    assert_eq!(w["balance"]["minor"], 1000, "{w}");
    assert_eq!(w["balance"]["formatted"], "£10.00");
    let entries = w["transactions"]["edges"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{w}");
    assert_eq!(entries[0]["node"]["kind"], "TOP_UP");
    assert_eq!(entries[0]["node"]["amount"]["minor"], 1000);
    assert_eq!(entries[0]["node"]["payment"]["id"], paid.as_str());

    // Bounds and idempotency keys.
    for (amount, key, code) in [
        (499, "small", "AMOUNT_TOO_SMALL"),
        (0, "zero", "AMOUNT_TOO_SMALL"),
        (25_001, "large", "AMOUNT_TOO_LARGE"),
        (1200, "top-up-1", "IDEMPOTENCY_KEY_REUSED"),
        (1000, "", "INVALID_IDEMPOTENCY_KEY"),
    ] {
        let refused = top_up(&app, &auth_a, amount, key).await;
        assert_eq!(
            first_user_error(&refused),
            code,
            "{amount} {key:?}: {refused}"
        );
        assert!(refused["payment"].is_null());
    }

    // A 3-D Secure card becomes the default; its top-up waits for the driver.
    let secure = save_card(&app, &auth_a, cards::THREE_D_SECURE).await;
    let made_default = ok(
        &app,
        &auth_a,
        "mutation($id: ID!) { setDefaultPaymentMethod(input: { paymentMethodId: $id }) { paymentMethod { id isDefault } userErrors { code } } }",
        json!({ "id": secure }),
    )
    .await;
    assert_eq!(
        made_default["setDefaultPaymentMethod"]["paymentMethod"]["isDefault"],
        true
    );
    let pending = top_up(&app, &auth_a, 2000, "top-up-3ds").await;
    assert_eq!(pending["payment"]["status"], "REQUIRES_ACTION", "{pending}");
    let secret = pending["payment"]["clientSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let secure_payment = pending["payment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        wallet(&app, &auth_a).await["balance"]["minor"],
        1000,
        "not credited yet"
    );

    // Another driver sees none of it, and cannot complete it.
    let hidden = ok(
        &app,
        &auth_b,
        "query($id: ID!) { node(id: $id) { id } }",
        json!({ "id": secure_payment }),
    )
    .await;
    assert!(hidden["node"].is_null());
    let foreign = ok(&app, &auth_b, REFRESH, json!({ "id": secure_payment })).await;
    assert_eq!(first_user_error(&foreign["refreshTopUp"]), "NOT_FOUND");
    assert_eq!(
        foreign["refreshTopUp"]["userErrors"][0]["field"],
        "paymentId"
    );
    let b_wallet = wallet(&app, &auth_b).await;
    assert_eq!(b_wallet["balance"]["minor"], 0);
    assert_eq!(
        b_wallet["transactions"]["edges"].as_array().unwrap().len(),
        0
    );

    // The driver passes the challenge in the SDK; the app reports it (twice, as a retrying app
    // might); the wallet is credited exactly once.
    let pi = secret.split("_secret_").next().unwrap();
    LocalStripe::shared()
        .authenticate_payment_intent(pi, &secret, true)
        .await
        .unwrap();
    for _ in 0..2 {
        let done = ok(&app, &auth_a, REFRESH, json!({ "id": secure_payment })).await;
        assert_eq!(
            done["refreshTopUp"]["payment"]["status"], "SUCCEEDED",
            "{done}"
        );
    }
    let w = wallet(&app, &auth_a).await;
    assert_eq!(w["balance"]["minor"], 3000, "{w}");
    assert_eq!(w["transactions"]["edges"].as_array().unwrap().len(), 2);

    // The payments list, newest first, paged.
    let page = ok(
        &app,
        &auth_a,
        "query($after: String) { payments(first: 1, after: $after) { edges { cursor node { id status amount { minor } paymentMethod { id } } } pageInfo { hasNextPage endCursor } } }",
        json!({ "after": null }),
    )
    .await;
    assert_eq!(
        page["payments"]["edges"][0]["node"]["id"],
        secure_payment.as_str()
    );
    assert_eq!(
        page["payments"]["edges"][0]["node"]["paymentMethod"]["id"],
        secure.as_str()
    );
    assert_eq!(page["payments"]["pageInfo"]["hasNextPage"], true);
    let next = ok(
        &app,
        &auth_a,
        "query($after: String) { payments(first: 5, after: $after) { edges { node { id } } pageInfo { hasNextPage } } }",
        json!({ "after": page["payments"]["pageInfo"]["endCursor"] }),
    )
    .await;
    let rest: Vec<&str> = next["payments"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["node"]["id"].as_str())
        .collect();
    assert!(rest.contains(&paid.as_str()), "{next}");
    assert_eq!(next["payments"]["pageInfo"]["hasNextPage"], false);

    // Automatic top-up settings.
    let set = ok(
        &app,
        &auth_a,
        "mutation($enabled: Boolean!, $threshold: Int!, $amount: Int!) { setAutoTopUp(input: { enabled: $enabled, threshold: $threshold, amount: $amount }) { autoTopUp { enabled threshold { minor } amount { minor } } userErrors { field code } } }",
        json!({ "enabled": true, "threshold": 500, "amount": 1500 }),
    )
    .await;
    assert_eq!(set["setAutoTopUp"]["autoTopUp"]["enabled"], true, "{set}");
    let w = wallet(&app, &auth_a).await;
    assert_eq!(w["autoTopUp"]["threshold"]["minor"], 500);
    assert_eq!(w["autoTopUp"]["amount"]["minor"], 1500);
    for (threshold, amount, field, code) in [
        (500, 100, "amount", "AMOUNT_TOO_SMALL"),
        (-1, 1500, "threshold", "INVALID_AUTO_TOP_UP"),
    ] {
        let refused = ok(
            &app,
            &auth_a,
            "mutation($threshold: Int!, $amount: Int!) { setAutoTopUp(input: { enabled: true, threshold: $threshold, amount: $amount }) { autoTopUp { enabled } userErrors { field code } } }",
            json!({ "threshold": threshold, "amount": amount }),
        )
        .await;
        assert_eq!(refused["setAutoTopUp"]["userErrors"][0]["code"], code);
        assert_eq!(refused["setAutoTopUp"]["userErrors"][0]["field"], field);
    }

    // Removing the plain card.
    let removed = ok(
        &app,
        &auth_a,
        "mutation($id: ID!) { removePaymentMethod(input: { paymentMethodId: $id }) { paymentMethod { id removed isDefault } userErrors { code } } }",
        json!({ "id": visa }),
    )
    .await;
    assert_eq!(
        removed["removePaymentMethod"]["paymentMethod"]["removed"], true,
        "{removed}"
    );
    let left = ok(
        &app,
        &auth_a,
        "{ paymentMethods { id isDefault } }",
        json!({}),
    )
    .await;
    assert_eq!(left["paymentMethods"].as_array().unwrap().len(), 1);
    assert_eq!(left["paymentMethods"][0]["id"], secure.as_str());

    // Ops refund part of the first payment; the ledger reverses it and the payment shows it.
    let ops = staff(&app, Role::Ops).await;
    let refund = ok(
        &app,
        &ops,
        REFUND,
        json!({ "id": paid, "amount": 400, "key": "refund-1" }),
    )
    .await["refundPayment"]
        .clone();
    assert_eq!(refund["refund"]["status"], "SUCCEEDED", "{refund}");
    assert_eq!(refund["payment"]["refundedAmount"]["minor"], 400);
    assert_eq!(refund["payment"]["refunds"].as_array().unwrap().len(), 1);
    let again = ok(
        &app,
        &ops,
        REFUND,
        json!({ "id": paid, "amount": 400, "key": "refund-1" }),
    )
    .await["refundPayment"]
        .clone();
    assert_eq!(
        again["refund"]["id"], refund["refund"]["id"],
        "same key, same refund"
    );
    let reused = ok(
        &app,
        &ops,
        REFUND,
        json!({ "id": paid, "amount": 300, "key": "refund-1" }),
    )
    .await;
    assert_eq!(
        first_user_error(&reused["refundPayment"]),
        "IDEMPOTENCY_KEY_REUSED"
    );
    let too_much = ok(
        &app,
        &ops,
        REFUND,
        json!({ "id": paid, "amount": 601, "key": "refund-2" }),
    )
    .await;
    assert_eq!(
        first_user_error(&too_much["refundPayment"]),
        "REFUND_TOO_LARGE",
        "{too_much}"
    );
    assert_eq!(
        too_much["refundPayment"]["userErrors"][0]["field"],
        "amount"
    );
    let w = wallet(&app, &auth_a).await;
    assert_eq!(w["balance"]["minor"], 2600, "{w}");
    let kinds: Vec<&str> = w["transactions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["node"]["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["REFUND", "TOP_UP", "TOP_UP"], "{w}");
    assert_eq!(
        w["transactions"]["edges"][0]["node"]["amount"]["minor"],
        -400
    );

    // Drivers cannot refund; finance sees the driver's wallet and refunds the rest of it whole.
    let (_, denied) = app
        .gql_as(&auth_a, REFUND, json!({ "id": paid, "key": "refund-3" }))
        .await;
    assert_eq!(denied["errors"][0]["extensions"]["code"], "FORBIDDEN");
    let finance = staff(&app, Role::Finance).await;
    let view = ok(
        &app,
        &finance,
        "query($id: ID!) { driverWallet(driverId: $id) { driver { id } balance { minor } payments(first: 10) { edges { node { id refunds { amount { minor } } } } } paymentMethods { last4 } } }",
        json!({ "id": global_id("Driver", &a.id) }),
    )
    .await;
    assert_eq!(view["driverWallet"]["balance"]["minor"], 2600, "{view}");
    assert!(
        view["driverWallet"]["driver"].is_null(),
        "finance does not see profiles"
    );
    let whole = ok(
        &app,
        &finance,
        REFUND,
        json!({ "id": paid, "key": "refund-whole" }),
    )
    .await["refundPayment"]
        .clone();
    assert_eq!(whole["refund"]["amount"]["minor"], 600, "{whole}");
    let none_left = ok(
        &app,
        &finance,
        REFUND,
        json!({ "id": paid, "key": "refund-none" }),
    )
    .await;
    assert_eq!(
        first_user_error(&none_left["refundPayment"]),
        "NOT_REFUNDABLE"
    );
    assert_eq!(wallet(&app, &auth_a).await["balance"]["minor"], 2000);

    // A refund is hidden from the other driver, visible to its own.
    let refund_id = refund["refund"]["id"].as_str().unwrap();
    let q = "query($id: ID!) { node(id: $id) { id ... on Refund { amount { minor } } } }";
    assert!(ok(&app, &auth_b, q, json!({ "id": refund_id })).await["node"].is_null());
    assert_eq!(
        ok(&app, &auth_a, q, json!({ "id": refund_id })).await["node"]["amount"]["minor"],
        400
    );

    let (clean, report) = ledger_check(&app);
    assert!(clean, "{report}");
}

/// A `shiftcover work` process with Stripe pointed at localstripe.
struct Worker {
    child: Option<Child>,
    db_url: String,
    prefix: String,
    redis: String,
}

impl Worker {
    fn start(app: &TestApp) -> Worker {
        let mut w = Worker {
            child: None,
            db_url: app.db.url().to_owned(),
            prefix: app.core.settings.redis.key_prefix.clone(),
            redis: app.core.settings.redis.url.expose().to_owned(),
        };
        w.spawn();
        w
    }

    fn spawn(&mut self) {
        let stripe = LocalStripe::shared();
        let child = Command::new(env!("CARGO_BIN_EXE_shiftcover"))
            .arg("work")
            .env("SHIFTCOVER__ENVIRONMENT", "test")
            .env("SHIFTCOVER__DATABASE__URL", &self.db_url)
            .env("SHIFTCOVER__DATABASE__POOL_SIZE", "6")
            .env("SHIFTCOVER__REDIS__URL", &self.redis)
            .env("SHIFTCOVER__REDIS__KEY_PREFIX", &self.prefix)
            .env("SHIFTCOVER__STRIPE__BASE_URL", stripe.base_url())
            .env(
                "SHIFTCOVER__STRIPE__SECRET_KEY",
                testkit::localstripe::SECRET_KEY,
            )
            .env("SHIFTCOVER__JOBS__RELAY_IDLE_MS", "20")
            .env("SHIFTCOVER__JOBS__REQUEUE_AFTER_SECS", "2")
            .env("SHIFTCOVER__JOBS__STALLED_AFTER_SECS", "3")
            .env("SHIFTCOVER__LOG__FILTER", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("shiftcover work starts");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no acknowledgements, claims left behind.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn automatic_top_ups_survive_killed_workers_and_the_ledger_stays_clean() {
    const DRIVERS: usize = 6;
    let app = app().await;
    let mut drivers = Vec::new();
    for _ in 0..DRIVERS {
        let d = app.driver().await;
        save_card(&app, &d.auth(), cards::VISA).await;
        drivers.push(d);
    }
    // Each wallet is empty, below the threshold: enabling schedules one automatic top-up each,
    // whose job charges the card off-session.
    for d in &drivers {
        let set = ok(
            &app,
            &d.auth(),
            "mutation { setAutoTopUp(input: { enabled: true, threshold: 500, amount: 1000 }) { autoTopUp { enabled } userErrors { code } } }",
            json!({}),
        )
        .await;
        assert_eq!(set["setAutoTopUp"]["autoTopUp"]["enabled"], true, "{set}");
    }
    // Kill the first worker as soon as it has charged one card, with the others in flight.
    let mut first = Worker::start(&app);
    eventually(Duration::from_secs(30), || async {
        count(
            &app.db,
            "SELECT count(*) AS n FROM top_ups WHERE kind = 'auto' AND status <> 'created'",
        )
        .await
            > 0
    })
    .await;
    first.kill();
    let _second = Worker::start(&app);
    let done = eventually(Duration::from_secs(60), || async {
        count(
            &app.db,
            "SELECT count(*) AS n FROM top_ups WHERE kind = 'auto' AND status = 'succeeded'",
        )
        .await
            == DRIVERS as i64
    })
    .await;
    assert!(done, "every automatic top-up succeeded");
    for d in &drivers {
        let w = wallet(&app, &d.auth()).await;
        assert_eq!(w["balance"]["minor"], 1000, "credited exactly once: {w}");
        assert_eq!(w["transactions"]["edges"].as_array().unwrap().len(), 1);
    }
    let (clean, report) = ledger_check(&app);
    assert!(clean, "{report}");
}

#[tokio::test]
async fn the_ledger_check_fails_on_an_unbalanced_ledger() {
    use diesel_async::SimpleAsyncConnection;
    let db = testkit::TestDb::new().await.unwrap();
    // Broken below on purpose: keep it out of the suite's closing check.
    db.broken_on_purpose();
    let mut conn = db.conn().await.unwrap();
    let owner = uuid::Uuid::new_v4().to_string();
    let amount = shared::Money::gbp(1000);
    ledger::post(
        &mut conn,
        ledger::NewTransaction {
            kind: ledger::TransactionKind::TopUp,
            cause: ledger::Cause::new("test_credit", owner.clone()),
            currency: amount.currency,
            description: "Test credit".into(),
            lines: ledger::top_up_lines(&owner, amount, shared::Money::zero(amount.currency))
                .unwrap(),
            metadata: json!({}),
        },
    )
    .await
    .unwrap();
    let (clean, report) = ledger_check_of(db.url());
    assert!(clean, "{report}");

    // As a restore with triggers off might leave it: one posting, summing to 5.
    let wallet = ledger::find_account(
        &mut conn,
        &ledger::AccountRef::driver_wallet(owner, shared::Currency::Gbp),
    )
    .await
    .unwrap()
    .unwrap();
    let broken = uuid::Uuid::now_v7();
    conn.batch_execute(&format!(
        "BEGIN; SET LOCAL session_replication_role = replica;
         INSERT INTO ledger_transactions (id, kind, cause_type, cause_id, description, currency, created_at)
              VALUES ('{broken}', 'adjustment', 'manual', 'm1', 'broken', 'GBP', now());
         INSERT INTO ledger_postings (transaction_id, account_id, amount, currency, created_at, line_no)
              SELECT '{broken}', '{wallet}', 5, 'GBP', created_at, 0
                FROM ledger_transactions WHERE id = '{broken}';
         COMMIT;",
        wallet = wallet.id.uuid(),
    ))
    .await
    .unwrap();
    let (clean, report) = ledger_check_of(db.url());
    assert!(!clean, "{report}");
    assert!(report.contains("does not balance"), "{report}");
    assert!(report.contains(db.name()), "{report}");
}
