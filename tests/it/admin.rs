//! The back office at `/admin`.
//!
//! - Over plain HTTP: every page and every action refused for a role that lacks it (and for
//!   people who are not staff), forms refused without the session's CSRF token or from another
//!   site, and an action that works once both are right.
//! - In headless Chromium (chromedriver): an admin signs in, finds a driver by name, refunds
//!   part of a top-up (after a refund above what was paid and one on a stale page are refused),
//!   replays a partner webhook, publishes a product version and retries a dead job, checking
//!   what each page says afterwards. Screenshots of the main pages are written to
//!   `$SHIFTCOVER_ARTEFACTS_DIR/admin` (the test command sets it; a temporary folder otherwise).

use crate::payments_flow::{save_card, top_up};
use crate::support::*;
use accounts::Role;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PASSWORD: &str = "admin pages password";

/// An HTTP client that does not follow redirects, so tests see them.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn staff_cookie(app: &TestApp, role: Role) -> Auth {
    let user = app.staff_user(role, PASSWORD).await;
    Auth::StaffCookie(app.staff_session(user.email.as_str(), PASSWORD).await)
}

async fn get(app: &TestApp, auth: &Auth, path: &str) -> (u16, String, String) {
    let res = auth
        .apply(http().get(format!("{}{path}", app.base)))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, location, res.text().await.unwrap())
}

async fn post(
    app: &TestApp,
    auth: &Auth,
    path: &str,
    fields: &[(&str, &str)],
    origin: Option<&str>,
) -> (u16, String, String) {
    let mut req = auth
        .apply(http().post(format!("{}{path}", app.base)))
        .form(fields);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, location, res.text().await.unwrap())
}

/// The CSRF token the back office puts in its forms for this staff session.
async fn csrf_of(app: &TestApp, auth: &Auth) -> String {
    let (status, _, html) = get(app, auth, "/admin").await;
    assert_eq!(status, 200, "{html}");
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field on the page")
        .to_owned()
}

#[tokio::test]
async fn every_page_and_action_is_refused_to_a_role_without_it() {
    let app = TestApp::spawn().await;
    let ops = staff_cookie(&app, Role::Ops).await;
    let finance = staff_cookie(&app, Role::Finance).await;
    let driver = app.driver().await;
    let (partner, _, key) = app.partner_with_key("Gophr").await;
    let d = global_id("Driver", &driver.id);
    let p = global_id("Partner", &partner.id);
    let versions = {
        let mut conn = app.db.conn().await.unwrap();
        pricing::seed_demo_products(&mut conn).await.unwrap()
    };
    let v = global_id("ProductVersion", &versions[0].id);
    let job = global_id("Job", &shared::ids::JobId::new());
    let delivery = global_id(
        "WebhookDelivery",
        &partners::WebhookDeliveryId(uuid::Uuid::nil()),
    );
    let exception = global_id("FinanceException", &uuid::Uuid::nil());
    let key_id = global_id("PartnerApiKey", &accounts::ApiKeyId::new());
    let claim = global_id("Claim", &claims::ClaimId::new());
    let dispute = global_id("ChargeDispute", &claims::DisputeId::new());
    let session = global_id("CoverSession", &cover::CoverSessionId::new());
    let notification = global_id("Notification", &notifications::NotificationId::new());

    // (path, who may open it)
    let pages: Vec<(String, &[Role])> = vec![
        ("/admin".into(), &[Role::Ops, Role::Finance]),
        ("/admin/search?q=nobody".into(), &[Role::Ops, Role::Finance]),
        (format!("/admin/drivers/{d}"), &[Role::Ops]),
        ("/admin/jobs".into(), &[Role::Ops]),
        ("/admin/partners".into(), &[Role::Ops]),
        (format!("/admin/partners/{p}"), &[Role::Ops]),
        ("/admin/products".into(), &[Role::Ops]),
        (format!("/admin/products/versions/{v}"), &[Role::Ops]),
        ("/admin/finance".into(), &[Role::Finance]),
        ("/admin/claims".into(), &[Role::Ops]),
        ("/admin/disputes".into(), &[Role::Ops]),
        ("/admin/chargebacks".into(), &[Role::Ops, Role::Finance]),
    ];
    for (path, allowed) in &pages {
        for (role, auth) in [(Role::Ops, &ops), (Role::Finance, &finance)] {
            let (status, _, body) = get(&app, auth, path).await;
            if allowed.contains(&role) {
                assert_eq!(status, 200, "{} may open {path}: {body}", role.as_str());
            } else {
                assert_eq!(status, 403, "{} may not open {path}", role.as_str());
                assert!(body.contains("needs the"), "{path}: {body}");
            }
        }
        let (status, location, _) = get(&app, &Auth::Anonymous, path).await;
        assert_eq!(status, 303, "{path}");
        assert!(location.starts_with("/admin/sign-in?next="), "{location}");
        for (who, auth) in [
            ("driver", driver.auth()),
            ("partner", Auth::Bearer(key.clone())),
        ] {
            let (status, _, _) = get(&app, &auth, path).await;
            assert_eq!(status, 403, "a {who} on {path}");
        }
    }

    let actions: Vec<(String, &[Role])> = vec![
        (
            format!("/admin/drivers/{d}/refund"),
            &[Role::Ops, Role::Finance],
        ),
        (format!("/admin/drivers/{d}/enrolment"), &[Role::Ops]),
        (
            format!("/admin/drivers/{d}/sign-out-everywhere"),
            &[Role::Ops],
        ),
        (format!("/admin/jobs/{job}/retry"), &[Role::Ops]),
        (format!("/admin/jobs/{job}/discard"), &[Role::Ops]),
        (
            format!("/admin/partners/{p}/deliveries/{delivery}/replay"),
            &[Role::Ops],
        ),
        ("/admin/partners".into(), &[Role::Ops]),
        (format!("/admin/claims/{claim}/status"), &[Role::Ops]),
        (format!("/admin/claims/{claim}/reserve"), &[Role::Ops]),
        (format!("/admin/claims/{claim}/settle"), &[Role::Ops]),
        (format!("/admin/disputes/{dispute}/resolve"), &[Role::Ops]),
        ("/admin/finance/exports".into(), &[Role::Finance]),
        (
            format!("/admin/drivers/{d}/sessions/{session}/adjust"),
            &[Role::Ops, Role::Finance],
        ),
        (format!("/admin/partners/{p}/keys"), &[Role::Ops]),
        (
            format!("/admin/partners/{p}/keys/{key_id}/rotate"),
            &[Role::Ops],
        ),
        (
            format!("/admin/partners/{p}/keys/{key_id}/revoke"),
            &[Role::Ops],
        ),
        (
            format!("/admin/drivers/{d}/notifications/{notification}/resend"),
            &[Role::Ops],
        ),
        (
            format!("/admin/products/versions/{v}/publish"),
            &[Role::Ops],
        ),
        (
            format!("/admin/finance/exceptions/{exception}/resolve"),
            &[Role::Finance],
        ),
    ];
    for (role, auth) in [(Role::Ops, &ops), (Role::Finance, &finance)] {
        let csrf = csrf_of(&app, auth).await;
        for (path, allowed) in &actions {
            if allowed.contains(&role) {
                continue;
            }
            let fields = [("csrf", csrf.as_str()), ("reason", "testing roles")];
            let (status, _, body) = post(&app, auth, path, &fields, None).await;
            assert_eq!(status, 403, "{} may not post {path}: {body}", role.as_str());
        }
    }
    for (path, _) in &actions {
        let (status, location, _) =
            post(&app, &Auth::Anonymous, path, &[("reason", "x")], None).await;
        assert_eq!(status, 303, "{path}");
        assert!(location.starts_with("/admin/sign-in"), "{location}");
    }
    // Nothing happened: the driver's sessions are all still live.
    let (status, body) = app.gql_as(&driver.auth(), "{ me { id } }", json!({})).await;
    assert_eq!(status, 200);
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn the_sign_in_form_starts_empty_and_keeps_what_was_typed() {
    let app = TestApp::spawn().await;
    let (status, _, html) = get(&app, &Auth::Anonymous, "/admin/sign-in").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(r#"name="email" value="""#),
        "an empty email field: {html}"
    );
    assert!(!html.to_lowercase().contains("value=\"none\""), "{html}");
    // After a refused sign-in the form shows the email that was typed.
    let (status, _, html) = get(
        &app,
        &Auth::Anonymous,
        "/admin/sign-in?email=ops%40shiftcover.example&error=Wrong",
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(r#"name="email" value="ops@shiftcover.example""#),
        "{html}"
    );
}

#[tokio::test]
async fn forms_need_the_session_token_and_this_site() {
    let app = TestApp::spawn().await;
    let ops = staff_cookie(&app, Role::Ops).await;
    let other_ops = staff_cookie(&app, Role::Ops).await;
    let driver = app.driver().await;
    let d = global_id("Driver", &driver.id);
    let path = format!("/admin/drivers/{d}/sign-out-everywhere");
    let csrf = csrf_of(&app, &ops).await;
    let someone_elses = csrf_of(&app, &other_ops).await;
    assert_ne!(csrf, someone_elses, "tokens are per session");
    let base = app.base.clone();
    for (case, fields, origin) in [
        ("no token", vec![("reason", "lost phone")], None),
        (
            "another session's token",
            vec![("csrf", someone_elses.as_str()), ("reason", "lost phone")],
            None,
        ),
        (
            "another site",
            vec![("csrf", csrf.as_str()), ("reason", "lost phone")],
            Some("https://evil.example"),
        ),
    ] {
        let (status, _, body) = post(&app, &ops, &path, &fields, origin).await;
        assert_eq!(status, 403, "{case}: {body}");
    }
    let (_, body) = app.gql_as(&driver.auth(), "{ me { id } }", json!({})).await;
    assert!(body["errors"].is_null(), "still signed in: {body}");

    // A reason is required; then it works, from this site.
    let (status, location, _) = post(
        &app,
        &ops,
        &path,
        &[("csrf", csrf.as_str()), ("reason", "  ")],
        Some(&base),
    )
    .await;
    assert_eq!(status, 303);
    assert!(location.contains("error=Give%20a%20reason"), "{location}");
    let (status, location, _) = post(
        &app,
        &ops,
        &path,
        &[("csrf", csrf.as_str()), ("reason", "Lost phone, called in")],
        Some(&base),
    )
    .await;
    assert_eq!(status, 303);
    assert!(
        location.contains("notice=Signed%20out%20of%201%20device"),
        "{location}"
    );
    let (status, body) = app.gql_as(&driver.auth(), "{ me { id } }", json!({})).await;
    assert_eq!(status, 401, "the driver's token no longer works");
    assert_eq!(first_code(&body), "UNAUTHENTICATED", "{body}");
    let (_, _, html) = get(&app, &ops, &location).await;
    assert!(
        html.contains("Signed out of 1 device(s)."),
        "the notice shows"
    );
    let mut conn = app.db.conn().await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Audit {
        #[diesel(sql_type = diesel::sql_types::Text)]
        reason: String,
    }
    let audit: Audit = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT reason FROM audit_log WHERE action = 'driver.signed_out_everywhere' AND actor_type = 'staff'",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(audit.reason, "Lost phone, called in");
}

const SEARCH: &str =
    "query($q: String!) { staffSearch(query: $q) { kind id title detail driverId } }";

async fn search(app: &TestApp, auth: &Auth, q: &str) -> Vec<(String, String)> {
    let (_, body) = app.gql_as(auth, SEARCH, json!({ "q": q })).await;
    assert!(body["errors"].is_null(), "{q}: {body}");
    body["data"]["staffSearch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["kind"].as_str().unwrap().to_owned(),
                h["driverId"]
                    .as_str()
                    .or(h["id"].as_str())
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn one_search_box_finds_drivers_sessions_and_partners_by_what_people_type() {
    let app = TestApp::spawn().await;
    let ops = staff_cookie(&app, Role::Ops).await;
    let (food, _) = crate::cover_flow::seed_products(&app).await;
    let d = crate::cover_flow::driver(&app).await;
    crate::cover_flow::credit(&app, d.who.id, shared::Money::gbp(5_000)).await;
    crate::cover_flow::enrol(&app, &d, &food).await;
    let started = crate::cover_flow::start(&app, &d, "search-1", json!({})).await;
    let certificate = started["session"]["certificate"]["number"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_owned();
    let (partner, _, _) = app.partner_with_key("Just Eat Couriers").await;
    let me = global_id("Driver", &d.who.id);
    let phone: String = {
        let (_, body) = app
            .gql_as(&d.who.auth(), "{ me { phone } }", json!({}))
            .await;
        body["data"]["me"]["phone"].as_str().unwrap().to_owned()
    };
    let national = format!("0{} {}", &phone[3..7], &phone[7..]);
    let spaced_registration = format!(
        "{} {}",
        d.registration[..4].to_lowercase(),
        d.registration[4..].to_lowercase()
    );
    let driver_hit = vec![("DRIVER".to_owned(), me.clone())];
    for q in [
        "lovelace",
        "ADA LOVE",
        national.as_str(),
        phone.as_str(),
        spaced_registration.as_str(),
        &d.who.id.to_string(),
    ] {
        assert_eq!(search(&app, &ops, q).await, driver_hit, "{q}");
    }
    assert_eq!(
        search(&app, &ops, &certificate.to_lowercase()).await,
        vec![("COVER_SESSION".to_owned(), me.clone())]
    );
    assert_eq!(
        search(&app, &ops, "eat cour").await,
        vec![("PARTNER".to_owned(), global_id("Partner", &partner.id))]
    );
    assert!(search(&app, &ops, "nobody by this name").await.is_empty());
    assert!(
        search(&app, &ops, "100%_").await.is_empty(),
        "LIKE characters are literal"
    );
    let (_, body) = app.gql_as(&ops, SEARCH, json!({ "q": "a" })).await;
    assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");
}

// ---------------------------------------------------------------------------------------------
// The browser

/// A chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(env: &str, names: &[&str]) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} not found: the test command installs it (Debian: apt install chromium chromium-driver), or set {env}",
        names[0]
    );
}

async fn start_chromedriver() -> Driver {
    let program = find_program("SHIFTCOVER_CHROMEDRIVER", &["chromedriver"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let ready = eventually(Duration::from_secs(20), || {
        let url = url.clone();
        async move {
            reqwest::get(format!("{url}/status"))
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    assert!(ready, "chromedriver answers on {url}");
    Driver { child, url }
}

async fn browser(driver: &Driver) -> Client {
    let chromium = find_program(
        "SHIFTCOVER_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1400", "--lang=en-GB"],
        }),
    );
    ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn artefacts() -> PathBuf {
    let dir = std::env::var("SHIFTCOVER_ARTEFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("shiftcover-artefacts"))
        .join("admin");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(artefacts().join(format!("{name}.png")), png).unwrap();
}

async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn fill(c: &Client, css: &str, value: &str) {
    let field = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Clicks what `css` finds and waits for the page it leads to: the current document's root
/// goes stale once the browser has replaced it.
async fn click(c: &Client, css: &str) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
    let replaced = eventually(Duration::from_secs(15), || {
        let old = old.clone();
        async move { old.tag_name().await.is_err() }
    })
    .await;
    assert!(replaced, "clicking {css} loads a page");
}

/// Everything the browser walk needs: a driver with a name and a £20.00 card top-up, a partner
/// with a webhook delivery, a draft product version whose cases pass, and a dead job.
struct Scene {
    driver_name: String,
    payment: String,
    delivery: String,
    draft: String,
    dead_job: String,
}

async fn scene(app: &TestApp) -> Scene {
    let driver = app.driver().await;
    let clock = app.core.clock.as_ref();
    let driver_name = format!(
        "Grace Hopper {}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let mut conn = app.db.conn().await.unwrap();
    accounts::update_profile(
        &mut conn,
        clock,
        accounts::Actor::Driver(driver.id),
        driver.id,
        accounts::ProfileUpdate {
            name: Some(driver_name.clone()),
            email: Some(format!("{}@example.com", uuid::Uuid::new_v4().simple())),
            ..accounts::ProfileUpdate::default()
        },
    )
    .await
    .unwrap();
    let auth = driver.auth();
    save_card(app, &auth, "4242424242424242").await;
    let paid = top_up(app, &auth, 2_000, "admin-walk").await;
    assert_eq!(paid["payment"]["status"], "SUCCEEDED", "{paid}");
    let payment = paid["payment"]["id"].as_str().unwrap().to_owned();

    let phone: String = {
        let (_, body) = app.gql_as(&auth, "{ me { phone } }", json!({})).await;
        body["data"]["me"]["phone"].as_str().unwrap().to_owned()
    };
    notifications::enqueue_notification(
        &mut conn,
        notifications::NewNotification {
            cause: format!("cover_started:admin-walk-{}", uuid::Uuid::new_v4().simple()),
            channel: notifications::Channel::Sms,
            template: notifications::Template::CoverStarted,
            recipient: phone,
            driver_id: Some(driver.id.uuid()),
            vars: notifications::vars([
                ("vehicle", "AB12 CDE"),
                ("started_at", "09:00"),
                ("certificate", "SC-TEST-0001"),
            ]),
        },
    )
    .await
    .unwrap();

    let (partner, _, _) = app.partner_with_key("Stuart Delivery").await;
    let scope = partners::PartnerScope::live(partner.id);
    partners::register_webhook_endpoint(
        &mut conn,
        clock,
        &app.core.settings.partner_webhooks,
        scope,
        "https://hooks.example.com/shiftcover",
        &partners::EventType::ALL,
        None,
    )
    .await
    .unwrap();
    let code = partners::create_link_code(&mut conn, clock, driver.id)
        .await
        .unwrap();
    partners::link_driver(&mut conn, clock, scope, &code.code, "courier-7")
        .await
        .unwrap();
    partners::unlink_by_partner(&mut conn, clock, scope, "courier-7")
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    use diesel_async::RunQueryDsl;
    let delivery: Id = diesel::sql_query(
        "SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
          WHERE e.partner_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(partner.id.uuid())
    .get_result(&mut conn)
    .await
    .unwrap();

    let versions = pricing::seed_demo_products(&mut conn).await.unwrap();
    let published = &versions[0];
    let (draft, _) = pricing::products::create_draft_from(
        &mut conn,
        clock,
        accounts::Actor::System,
        published.product_id,
        None,
    )
    .await
    .unwrap();

    let job = shared::outbox::enqueue(
        &mut conn,
        &shared::demo::DemoPing {
            message: "from the admin walk".into(),
            key: uuid::Uuid::new_v4().to_string(),
        },
    )
    .await
    .unwrap()
    .expect("a new job");
    diesel::sql_query(
        "UPDATE outbox_jobs SET status = 'dead', attempts = max_attempts, \
                last_error = 'connection refused (test)', finished_at = now() WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(job.uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    Scene {
        driver_name,
        payment,
        delivery: global_id("WebhookDelivery", &partners::WebhookDeliveryId(delivery.id)),
        draft: global_id("ProductVersion", &draft.id),
        dead_job: global_id("Job", &job),
    }
}

#[tokio::test]
async fn an_admin_works_the_back_office_in_a_real_browser() {
    let app = crate::payments_flow::app().await;
    let scene = scene(&app).await;
    let admin = app.staff_user(Role::Admin, PASSWORD).await;
    {
        // The Stripe id of the payment finds its driver too.
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Pi {
            #[diesel(sql_type = diesel::sql_types::Text)]
            payment_intent_id: String,
        }
        let mut conn = app.db.conn().await.unwrap();
        let pi: Pi = diesel::sql_query("SELECT payment_intent_id FROM top_ups")
            .get_result(&mut conn)
            .await
            .unwrap();
        let finance = staff_cookie(&app, Role::Finance).await;
        let hits = search(&app, &finance, &pi.payment_intent_id).await;
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].0, "PAYMENT");
    }
    let chromedriver = start_chromedriver().await;
    let c = browser(&chromedriver).await;
    let base = app.base.clone();

    // Signing in: a wrong password is told, the right one lands on the page asked for.
    c.goto(&format!("{base}/admin/jobs")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/admin/sign-in")
    );
    fill(&c, "input[name=email]", admin.email.as_str()).await;
    fill(&c, "input[name=password]", "not the password").await;
    click(&c, "button[type=submit]").await;
    assert!(text_of(&c, ".error").await.contains("do not match"));
    screenshot(&c, "sign-in").await;
    fill(&c, "input[name=password]", PASSWORD).await;
    click(&c, "button[type=submit]").await;
    assert!(
        text_of(&c, "h1").await.contains("Jobs"),
        "back where it started"
    );

    // Finding the driver by part of their name: one hit goes straight to the driver's page.
    c.goto(&format!("{base}/admin")).await.unwrap();
    fill(&c, "input[name=q]", &scene.driver_name[6..]).await;
    click(&c, "form.search button").await;
    assert_eq!(text_of(&c, "#driver-name").await, scene.driver_name);
    assert_eq!(text_of(&c, "#wallet-balance").await, "£20.00");
    let driver_page = c.current_url().await.unwrap().to_string();
    screenshot(&c, "driver").await;

    // Refunds: more than was paid is refused, a stale page is refused, then £5.00 goes back.
    let row = format!("tr[data-payment='{}']", scene.payment);
    fill(&c, &format!("{row} input[name=amount]"), "25.00").await;
    fill(&c, &format!("{row} input[name=reason]"), "Charged twice").await;
    click(&c, &format!("{row} button")).await;
    let error = text_of(&c, ".error").await;
    assert!(error.contains("REFUND_TOO_LARGE"), "{error}");
    // Someone else refunds £1.00 while this page is open.
    let finance = {
        let user = app.staff_user(Role::Finance, PASSWORD).await;
        Auth::StaffCookie(app.staff_session(user.email.as_str(), PASSWORD).await)
    };
    let (_, body) = app
        .gql_as(
            &finance,
            "mutation($id: ID!) { refundPayment(input: { paymentId: $id, amount: 100, reason: \"Goodwill\", idempotencyKey: \"elsewhere\" }) { userErrors { code } } }",
            json!({ "id": scene.payment }),
        )
        .await;
    assert_eq!(
        body["data"]["refundPayment"]["userErrors"],
        json!([]),
        "{body}"
    );
    fill(&c, &format!("{row} input[name=amount]"), "5.00").await;
    fill(&c, &format!("{row} input[name=reason]"), "Charged twice").await;
    click(&c, &format!("{row} button")).await;
    assert!(
        text_of(&c, ".error")
            .await
            .contains("since the page loaded")
    );
    c.goto(&driver_page).await.unwrap();
    fill(&c, &format!("{row} input[name=amount]"), "5.00").await;
    fill(&c, &format!("{row} input[name=reason]"), "Charged twice").await;
    click(&c, &format!("{row} button")).await;
    let notice = text_of(&c, ".notice").await;
    assert!(notice.starts_with("Refund of £5.00"), "{notice}");
    let refunded = text_of(&c, &format!("{row} td:nth-child(4)")).await;
    assert!(
        refunded.starts_with("£6.00"),
        "£1.00 and £5.00 refunded: {refunded}"
    );
    assert!(refunded.contains("Charged twice"));
    assert!(text_of(&c, "#timeline").await.contains("top up"));

    // Messages: the sign-in code's text is never shown and cannot be resent; a cover message can.
    let messages = text_of(&c, "#messages").await;
    assert!(messages.contains("(sign-in code: not shown)"), "{messages}");
    assert!(!messages.contains("code is"), "{messages}");
    fill(
        &c,
        "#messages form input[name=reason]",
        "Driver did not get it",
    )
    .await;
    click(&c, "#messages form button").await;
    let notice = text_of(&c, ".notice").await;
    assert_eq!(notice, "Message queued to be sent again.");
    let rows = c
        .find_all(Locator::Css("#messages tr[data-notification]"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "the code, the cover message and its copy");

    // Partners: a new one, its first key shown once, then revoked.
    c.goto(&format!("{base}/admin/partners")).await.unwrap();
    fill(&c, "#new-partner input[name=name]", "Zoom Couriers").await;
    fill(&c, "#new-partner input[name=reason]", "Contract signed").await;
    click(&c, "#new-partner button").await;
    assert!(
        text_of(&c, ".notice")
            .await
            .contains("Zoom Couriers created")
    );
    let zoom_page = c.current_url().await.unwrap().path().to_owned();
    fill(&c, "#new-key input[name=reason]", "Their first integration").await;
    click(&c, "#new-key button").await;
    let secret = text_of(&c, "#new-secret code").await;
    assert!(secret.starts_with("sck_live_"), "{secret}");
    let partner_query = "{ partnerDrivers(first: 1) { edges { cursor } } }";
    let (status, body) = app
        .gql_as(&Auth::Bearer(secret.clone()), partner_query, json!({}))
        .await;
    assert_eq!(status, 200, "the new key works: {body}");
    assert!(body["errors"].is_null(), "{body}");
    c.goto(&format!("{base}{zoom_page}")).await.unwrap();
    assert!(
        c.find(Locator::Css("#new-secret")).await.is_err(),
        "the key is shown once"
    );
    fill(
        &c,
        "#keys form[action$='/revoke'] input[name=reason]",
        "Pasted in a public chat",
    )
    .await;
    click(&c, "#keys form[action$='/revoke'] button").await;
    assert!(text_of(&c, ".notice").await.contains("revoked"));
    let (status, _) = app
        .gql_as(&Auth::Bearer(secret), partner_query, json!({}))
        .await;
    assert_eq!(status, 401, "the revoked key no longer works");

    // Replaying the partner's webhook delivery.
    c.goto(&format!("{base}/admin/partners")).await.unwrap();
    click(&c, "#partners a[data-name='Stuart Delivery']").await;
    let delivery = format!("tr[data-delivery='{}']", scene.delivery);
    assert!(text_of(&c, &delivery).await.contains("driver.unlinked"));
    screenshot(&c, "partner").await;
    fill(
        &c,
        &format!("{delivery} input[name=reason]"),
        "Partner lost it in an outage",
    )
    .await;
    click(&c, &format!("{delivery} button")).await;
    let notice = text_of(&c, ".notice").await;
    assert!(notice.contains("queued again (replay 1)"), "{notice}");
    assert!(text_of(&c, &delivery).await.contains("replayed 1×"));

    // Publishing the draft version.
    c.goto(&format!("{base}/admin/products")).await.unwrap();
    screenshot(&c, "products").await;
    click(
        &c,
        &format!("a[href='/admin/products/versions/{}']", scene.draft),
    )
    .await;
    assert_eq!(text_of(&c, "#version-status").await, "draft");
    screenshot(&c, "product-version").await;
    fill(
        &c,
        "form.inline input[name=reason]",
        "Underwriter signed off",
    )
    .await;
    click(&c, "form.inline button").await;
    let notice = text_of(&c, ".notice").await;
    assert!(notice.contains("published"), "{notice}");
    assert_eq!(text_of(&c, "#version-status").await, "published");

    // Retrying the dead job.
    c.goto(&format!("{base}/admin/jobs?status=DEAD"))
        .await
        .unwrap();
    let job = format!("tr[data-job='{}']", scene.dead_job);
    assert!(
        text_of(&c, &job)
            .await
            .contains("connection refused (test)")
    );
    screenshot(&c, "jobs").await;
    fill(
        &c,
        &format!("{job} form.retry input[name=reason]"),
        "Twilio credentials fixed",
    )
    .await;
    click(&c, &format!("{job} form.retry button")).await;
    let notice = text_of(&c, ".notice").await;
    assert!(notice.contains("DemoPing queued again"), "{notice}");
    let after = c.source().await.unwrap();
    assert!(!after.contains(&scene.dead_job), "no longer among the dead");

    // Finance's page, for the record.
    c.goto(&format!("{base}/admin/finance")).await.unwrap();
    assert!(text_of(&c, "h1").await.contains("Finance"));
    screenshot(&c, "finance").await;

    // Signing out ends the session: the next page asks to sign in again.
    click(&c, "header form button").await;
    c.goto(&format!("{base}/admin/jobs")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/admin/sign-in")
    );
    c.close().await.unwrap();

    // What the agent did is in the audit log, by the admin.
    let mut conn = app.db.conn().await.unwrap();
    #[derive(diesel::QueryableByName, Debug)]
    struct Action {
        #[diesel(sql_type = diesel::sql_types::Text)]
        action: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        reason: Option<String>,
    }
    let actions: Vec<Action> = diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT action, reason FROM audit_log WHERE actor_id = $1 ORDER BY id")
            .bind::<diesel::sql_types::Text, _>(admin.id.to_string()),
        &mut conn,
    )
    .await
    .unwrap();
    // Who (the admin), what, when, and why: every action the walk took, with its reason.
    for (expected, why) in [
        ("payment.refunded", "Charged twice"),
        ("notification.resent", "Driver did not get it"),
        ("partner.created", "Contract signed"),
        ("partner.api_key_created", "Their first integration"),
        ("partner.api_key_revoked", "Pasted in a public chat"),
        ("partners.webhook_replayed", "Partner lost it in an outage"),
        ("product_version.published", "Underwriter signed off"),
        ("job.retried", "Twilio credentials fixed"),
    ] {
        assert!(
            actions
                .iter()
                .any(|a| a.action == expected && a.reason.as_deref() == Some(why)),
            "{expected} because {why} in {actions:?}"
        );
    }
}

/// The notice or error a redirect carries, decoded.
fn said(location: &str) -> String {
    let raw = location
        .split_once("notice=")
        .or_else(|| location.split_once("error="))
        .map(|(_, v)| v)
        .unwrap_or("");
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&raw[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn ops_work_a_claim_and_a_charge_dispute_in_the_back_office() {
    let w = crate::claims_flow::world().await;
    let app = &w.app;
    let driver = w.driver.auth();
    let vehicle = global_id("Vehicle", &w.vehicle);
    let at = w.session.started_at + chrono::Duration::minutes(10);
    let (_, body) = app
        .gql_as(
            &driver,
            crate::claims_flow::REPORT,
            crate::claims_flow::report_input(&vehicle, at, "admin-claim", vec![]),
        )
        .await;
    let claim = body["data"]["reportClaim"]["claim"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let reference = body["data"]["reportClaim"]["claim"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let ops = staff_cookie(app, Role::Ops).await;
    let csrf = csrf_of(app, &ops).await;

    let (status, _, html) = get(app, &ops, "/admin/claims").await;
    assert_eq!(status, 200);
    assert!(html.contains(&reference), "the open claim is queued");
    let page = format!("/admin/claims/{claim}");
    let (_, _, html) = get(app, &ops, &page).await;
    assert!(html.contains("Old Street roundabout"));
    assert!(
        html.contains(&w.session.certificate_number),
        "tied to its session"
    );

    let act = |path: String, fields: Vec<(&'static str, String)>| {
        let csrf = csrf.clone();
        let ops = ops.clone();
        async move {
            let mut all: Vec<(&str, String)> = vec![("csrf", csrf)];
            all.extend(fields);
            let borrowed: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, location, body) = post(app, &ops, &path, &borrowed, None).await;
            assert_eq!(status, 303, "{path}: {body}");
            said(&location)
        }
    };
    // A page loaded before someone else moved the claim is refused.
    let stale = act(
        format!("{page}/status"),
        vec![
            ("seen_status", "ACKNOWLEDGED".into()),
            ("status", "UNDER_REVIEW".into()),
            ("reason", "Looking".into()),
        ],
    )
    .await;
    assert!(stale.contains("changed since the page loaded"), "{stale}");
    let moved = act(
        format!("{page}/status"),
        vec![
            ("seen_status", "REPORTED".into()),
            ("status", "ACKNOWLEDGED".into()),
            ("reason", "Called the driver".into()),
        ],
    )
    .await;
    assert_eq!(moved, "Claim now acknowledged.");
    let bad = act(
        format!("{page}/reserve"),
        vec![
            ("seen_status", "ACKNOWLEDGED".into()),
            ("amount", "lots".into()),
            ("reason", "Estimate".into()),
        ],
    )
    .await;
    assert!(bad.contains("is not an amount in pounds"), "{bad}");
    let reserved = act(
        format!("{page}/reserve"),
        vec![
            ("seen_status", "ACKNOWLEDGED".into()),
            ("amount", "450".into()),
            ("reason", "Garage estimate".into()),
        ],
    )
    .await;
    assert_eq!(reserved, "Reserve set to £450.00.");
    let early = act(
        format!("{page}/settle"),
        vec![
            ("seen_status", "ACKNOWLEDGED".into()),
            ("amount", "312.40".into()),
            ("reason", "Invoice paid".into()),
        ],
    )
    .await;
    assert!(
        early.contains("INVALID_TRANSITION"),
        "review comes first: {early}"
    );
    let reviewing = act(
        format!("{page}/status"),
        vec![
            ("seen_status", "ACKNOWLEDGED".into()),
            ("status", "UNDER_REVIEW".into()),
            ("reason", "Invoice received".into()),
        ],
    )
    .await;
    assert_eq!(reviewing, "Claim now under review.");
    let settled = act(
        format!("{page}/settle"),
        vec![
            ("seen_status", "UNDER_REVIEW".into()),
            ("amount", "312.40".into()),
            ("reason", "Invoice paid".into()),
        ],
    )
    .await;
    assert_eq!(settled, "Claim settled: £312.40 paid.");
    let (_, _, html) = get(app, &ops, &page).await;
    assert!(
        html.contains("id=\"claim-status\">settled"),
        "settled on the page"
    );
    assert!(
        !html.contains("claim-actions"),
        "no actions on a closed claim"
    );

    // A dispute of the session's charge, refunded in part.
    let env = payments::PaymentsEnv::from_settings(
        &app.core.settings,
        std::sync::Arc::new(shared::SystemClock),
    )
    .unwrap();
    let mut conn = app.db.conn().await.unwrap();
    payments::charge_session(&mut conn, &env, w.session.id)
        .await
        .unwrap();
    let (_, body) = app
        .gql_as(
            &driver,
            "mutation($input: DisputeChargeInput!) { disputeCharge(input: $input) { dispute { id } userErrors { code } } }",
            json!({ "input": { "sessionId": global_id("CoverSession", &w.session.id), "reason": "NOT_WORKING", "details": "I was at home" } }),
        )
        .await;
    let dispute = body["data"]["disputeCharge"]["dispute"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let (_, _, html) = get(app, &ops, "/admin/disputes").await;
    assert!(html.contains("I was at home"));
    let resolve = format!("/admin/disputes/{dispute}/resolve");
    let no_amount = act(
        resolve.clone(),
        vec![("resolution", "ADJUST".into()), ("note", "Partly".into())],
    )
    .await;
    assert!(
        no_amount.contains("Give the amount to refund"),
        "{no_amount}"
    );
    let done = act(
        resolve.clone(),
        vec![
            ("resolution", "ADJUST".into()),
            ("amount", "0.50".into()),
            ("note", "Ten minutes were after your shift".into()),
        ],
    )
    .await;
    assert_eq!(done, "Dispute adjusted: £0.50 refunded.");
    let again = act(
        resolve,
        vec![("resolution", "UPHOLD".into()), ("note", "Twice".into())],
    )
    .await;
    assert!(
        again.contains('('),
        "a coded refusal the second time: {again}"
    );
    let (_, _, html) = get(app, &ops, "/admin/disputes?status=RESOLVED").await;
    assert!(html.contains("adjusted"));

    // Lowering the session's charge further: more than is left is refused, then 25p goes back.
    let driver_page = format!("/admin/drivers/{}", global_id("Driver", &w.driver.id));
    let adjust = format!(
        "{driver_page}/sessions/{}/adjust",
        global_id("CoverSession", &w.session.id)
    );
    let (_, _, html) = get(app, &ops, &driver_page).await;
    assert!(
        html.contains("Lower charge"),
        "a charged session can be adjusted"
    );
    let too_much = act(
        adjust.clone(),
        vec![
            ("amount", "500".into()),
            ("reason", "Goodwill".into()),
            ("key", "adjust-1".into()),
        ],
    )
    .await;
    assert!(too_much.contains("REFUND_TOO_LARGE"), "{too_much}");
    let lowered = act(
        adjust,
        vec![
            ("amount", "0.25".into()),
            ("reason", "Goodwill".into()),
            ("key", "adjust-2".into()),
        ],
    )
    .await;
    assert_eq!(lowered, "Charge lowered: £0.25 back to the wallet.");

    // Finance may not work claims.
    let finance = staff_cookie(app, Role::Finance).await;
    for path in ["/admin/claims", "/admin/disputes", page.as_str()] {
        let (status, _, _) = get(app, &finance, path).await;
        assert_eq!(status, 403, "{path}");
    }
}

#[tokio::test]
async fn finance_builds_a_bordereau_file_by_job_and_downloads_it() {
    let w = crate::claims_flow::world().await;
    let app = &w.app;
    let env = payments::PaymentsEnv::from_settings(
        &app.core.settings,
        std::sync::Arc::new(shared::SystemClock),
    )
    .unwrap();
    let mut conn = app.db.conn().await.unwrap();
    payments::charge_session(&mut conn, &env, w.session.id)
        .await
        .unwrap();
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let finance = staff_cookie(app, Role::Finance).await;
    let csrf = csrf_of(app, &finance).await;

    let (status, location, _) = post(
        app,
        &finance,
        "/admin/finance/exports",
        &[("csrf", csrf.as_str()), ("month", "2099-01")],
        None,
    )
    .await;
    assert_eq!(status, 303);
    assert!(said(&location).contains("PERIOD_IN_FUTURE"), "{location}");
    let (status, location, _) = post(
        app,
        &finance,
        "/admin/finance/exports",
        &[("csrf", csrf.as_str()), ("month", month.as_str())],
        None,
    )
    .await;
    assert_eq!(status, 303);
    assert!(said(&location).contains("is being built"), "{location}");
    let (_, _, html) = get(app, &finance, &location).await;
    assert!(
        html.contains("http-equiv=\"refresh\""),
        "the page follows the job"
    );
    assert!(html.contains(">queued<"), "{html}");

    // The job, as a worker runs it (queued with the export, in the same transaction).
    let exports = finance::exports::list_exports(&mut conn, 10).await.unwrap();
    assert_eq!(exports.len(), 1);
    let export = &exports[0];
    assert_eq!((export.status.as_str(), export.percent()), ("queued", 0));
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let queued: Count = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'BuildFinanceExport' \
              AND idempotency_key = '{}'",
            export.id
        )),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(queued.n, 1);
    let built = finance::exports::build_export(&mut conn, app.core.clock.as_ref(), export.id)
        .await
        .unwrap();
    assert_eq!(built.status, "done");
    assert_eq!(built.rows_total, Some(1), "one charged session this month");
    assert_eq!((built.rows_done, built.percent()), (1, 100));
    let again = finance::exports::build_export(&mut conn, app.core.clock.as_ref(), export.id)
        .await
        .unwrap();
    assert_eq!(
        again.finished_at, built.finished_at,
        "a finished file is left alone"
    );

    let (_, _, html) = get(app, &finance, "/admin/finance").await;
    assert!(!html.contains("http-equiv=\"refresh\""));
    assert!(html.contains("id=\"ipt\""), "the month's IPT on the page");
    assert!(!html.contains("No IPT in"), "a charged session carries IPT");
    let download = format!("/finance/exports/{}.csv", export.id);
    // (Templates escape `/` in attributes as `&#x2f;`, which browsers read back as `/`.)
    assert!(
        html.contains(&format!("exports&#x2f;{}.csv\">Download", export.id)),
        "a download link"
    );
    let (status, _, file) = get(app, &finance, &download).await;
    assert_eq!(status, 200);
    let (_, _, direct) = get(
        app,
        &finance,
        &format!("/finance/bordereau.csv?month={month}"),
    )
    .await;
    assert_eq!(file, direct, "the file is the bordereau");
    assert!(file.contains(&w.session.certificate_number));
    for (who, auth, expected) in [
        ("anonymous", Auth::Anonymous, 401),
        ("the driver", w.driver.auth(), 403),
        ("ops", staff_cookie(app, Role::Ops).await, 403),
    ] {
        let (status, _, _) = get(app, &auth, &download).await;
        assert_eq!(status, expected, "{who}");
    }
    let (status, _, _) = get(app, &finance, "/finance/exports/not-an-id.csv").await;
    assert_eq!(status, 404);
}

/// Delivers a Stripe event about `object` to the API, signed, and applies it as the worker
/// would. Returns the stored event's status.
async fn deliver_stripe(app: &TestApp, event_type: &str, object: serde_json::Value) -> String {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let event_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let body = json!({
        "id": event_id, "object": "event", "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null }, "type": event_type,
        "data": { "object": object },
    })
    .to_string();
    let secret = app.core.settings.stripe.webhook_secret.expose().to_owned();
    let sig =
        payments::sign_stripe_payload(&secret, body.as_bytes(), chrono::Utc::now().timestamp());
    let res = app
        .client
        .post(format!("{}/webhooks/stripe", app.base))
        .header("content-type", "application/json")
        .header("stripe-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let mut conn = app.db.conn().await.unwrap();
    use payments::schema::stripe_events as e;
    let row: payments::StripeEventRowId = e::table
        .filter(e::event_id.eq(&event_id))
        .select(e::id)
        .first(&mut conn)
        .await
        .unwrap();
    let env =
        payments::PaymentsEnv::from_settings(&app.core.settings, app.core.clock.clone()).unwrap();
    payments::apply_stripe_event(&mut conn, &env, row, None)
        .await
        .unwrap();
    payments::get_event(&mut conn, row).await.unwrap().status
}

#[tokio::test]
async fn ops_and_finance_see_chargebacks_and_the_stripe_events_kept_for_them() {
    let stripe = testkit::localstripe::LocalStripe::shared();
    let app = crate::payments_flow::app().await;
    let driver = app.driver().await;
    save_card(&app, &driver.auth(), testkit::localstripe::cards::VISA).await;
    let paid = top_up(&app, &driver.auth(), 2000, "cb-1").await;
    assert_eq!(paid["payment"]["status"], "SUCCEEDED", "{paid}");
    let pi: String = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use payments::schema::top_ups as t;
        let mut conn = app.db.conn().await.unwrap();
        t::table
            .select(t::payment_intent_id)
            .first::<Option<String>>(&mut conn)
            .await
            .unwrap()
            .unwrap()
    };
    // Due tomorrow: highlighted as due soon.
    let due = (chrono::Utc::now() + chrono::Duration::days(1))
        .timestamp()
        .to_string();
    let dispute = stripe
        .open_dispute(&pi, &[("due_by", due.as_str())])
        .await
        .unwrap();
    let dp = dispute["id"].as_str().unwrap().to_owned();
    let withdrawn = stripe.move_dispute(&dp, "withdraw", &[]).await.unwrap();
    assert_eq!(
        deliver_stripe(&app, "charge.dispute.funds_withdrawn", withdrawn).await,
        "processed"
    );
    let ghost = json!({ "id": "dp_notoursatall01", "object": "dispute" });
    assert_eq!(
        deliver_stripe(&app, "charge.dispute.created", ghost).await,
        "flagged"
    );
    let (status, body) = app
        .gql_as(
            &driver.auth(),
            "{ wallet { balance { minor } } }",
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["wallet"]["balance"]["minor"], 0, "{body}");

    let ops = staff_cookie(&app, Role::Ops).await;
    let (status, _, html) = get(&app, &ops, "/admin/chargebacks").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&dp), "{html}");
    assert!(html.contains("taken from the wallet"), "{html}");
    assert!(html.contains("class=\"due_soon\""), "{html}");
    assert!(html.contains("£20.00"), "{html}");
    assert!(
        html.contains("dp_notoursatall01"),
        "the flagged event is listed: {html}"
    );
    assert!(
        html.contains("href=\"/admin/chargebacks\""),
        "in the nav: {html}"
    );
    // The driver's page shows it beside the wallet.
    let page = format!("/admin/drivers/{}", global_id("Driver", &driver.id));
    let (status, _, html) = get(&app, &ops, &page).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("class=\"chargeback\""), "{html}");
    assert!(
        html.contains(&dp) && html.contains("taken from the wallet"),
        "{html}"
    );
    // The driver sees it on their wallet.
    let (status, body) = app
        .gql_as(
            &driver.auth(),
            "{ wallet { chargebacks { stripeStatus withdrawn amount { minor } } } }",
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["wallet"]["chargebacks"][0],
        json!({ "stripeStatus": "needs_response", "withdrawn": true, "amount": { "minor": 2000 } }),
        "{body}"
    );
    let finance = staff_cookie(&app, Role::Finance).await;
    let (status, _, html) = get(&app, &finance, "/admin/chargebacks").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(&dp), "{html}");
}
