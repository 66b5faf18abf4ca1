//! `shiftcover seed` and `shiftcover staff create`, against a test database.

use crate::support::{Auth, TestApp};
use serde_json::json;
use shiftcover::seed::{DEMO_DRIVER_PHONE, DEMO_OPS_EMAIL, DEMO_PARTNER_NAME};
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs the binary against `app`'s database; returns (exit code, stdout, stderr).
fn run(
    app: &TestApp,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shiftcover"));
    cmd.args(args)
        .env("SHIFTCOVER__DATABASE__URL", app.db.url())
        .env("SHIFTCOVER__REDIS__KEY_PREFIX", app.core.redis.prefix())
        .env("SHIFTCOVER__LOG__FILTER", "warn")
        .env_remove(shiftcover::cli::STAFF_PASSWORD_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    {
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value after `prefix` on the line of `out` that has it.
fn after(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.split_once(prefix))
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_owned())
        .unwrap_or_else(|| panic!("no {prefix:?} in {out}"))
}

const STAFF_SIGN_IN: &str = "mutation($i: StaffSignInInput!) { staffSignIn(input: $i) { staff { role } userErrors { code } } }";

#[tokio::test]
async fn seed_prints_working_demo_credentials_on_every_run_in_development() {
    let app = TestApp::spawn().await;
    let public = "http://127.0.0.1:18080";
    let dev = [
        ("SHIFTCOVER__ENVIRONMENT", "development"),
        ("SHIFTCOVER__DEV__INBOX", "true"),
        // The demo partner's webhook endpoint is the inbox, on this host.
        ("SHIFTCOVER__PARTNER_WEBHOOKS__ALLOW_LOOPBACK", "true"),
        ("SHIFTCOVER__HTTP__PUBLIC_URL", public),
    ];
    let (code, first, err) = run(&app, &["seed"], &dev, None);
    assert_eq!(code, 0, "{err}");
    assert!(first.contains(DEMO_DRIVER_PHONE), "{first}");
    // An ops user left by an earlier seed with another password gets the demo one back.
    {
        use diesel_async::RunQueryDsl;
        let mut conn = app.db.conn().await.unwrap();
        diesel::sql_query(
            "UPDATE staff SET password_hash = (SELECT password_hash FROM staff WHERE email = 'admin@shiftcover.example') WHERE email = 'ops@shiftcover.example'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let (code, out, err) = run(&app, &["seed"], &dev, None);
    assert_eq!(code, 0, "{err}");

    // The second run prints the same credentials, and each works.
    for (email, role) in [
        (DEMO_OPS_EMAIL, "OPS"),
        ("finance@shiftcover.example", "FINANCE"),
        ("admin@shiftcover.example", "ADMIN"),
    ] {
        let prefix = format!(" user {email}: password ");
        let password = after(&out, &prefix);
        assert_eq!(password, after(&first, &prefix), "the same on every run");
        let (_, body) = app
            .gql_as(
                &Auth::Anonymous,
                STAFF_SIGN_IN,
                json!({ "i": { "email": email, "password": password } }),
            )
            .await;
        assert_eq!(
            body["data"]["staffSignIn"]["staff"]["role"], role,
            "{email}: {body}"
        );
    }
    let test_key = after(&out, &format!("partner {DEMO_PARTNER_NAME}: test key "));
    let live_key = after(&out, &format!("partner {DEMO_PARTNER_NAME}: live key "));
    assert_eq!(
        test_key,
        after(&first, &format!("partner {DEMO_PARTNER_NAME}: test key "))
    );
    assert!(test_key.starts_with("sck_test_") && live_key.starts_with("sck_live_"));
    let webhooks = after(&out, &format!("partner {DEMO_PARTNER_NAME}: webhooks to "));
    assert_eq!(webhooks, format!("{public}/dev/partner-webhooks"));

    // Nothing was made twice.
    for (sql, n) in [
        (
            format!("SELECT count(*) AS n FROM drivers WHERE phone = '{DEMO_DRIVER_PHONE}'"),
            1,
        ),
        (
            format!(
                "SELECT count(*) AS n FROM vehicles v JOIN drivers d ON d.id = v.driver_id WHERE d.phone = '{DEMO_DRIVER_PHONE}'"
            ),
            1,
        ),
        (
            format!(
                "SELECT count(*) AS n FROM enrolments e JOIN drivers d ON d.id = e.driver_id WHERE d.phone = '{DEMO_DRIVER_PHONE}'"
            ),
            1,
        ),
        ("SELECT count(*) AS n FROM staff".to_owned(), 3),
        (
            format!("SELECT count(*) AS n FROM partners WHERE name = '{DEMO_PARTNER_NAME}'"),
            1,
        ),
        ("SELECT count(*) AS n FROM partner_api_keys".to_owned(), 2),
        (
            "SELECT count(*) AS n FROM partner_driver_links WHERE unlinked_at IS NULL".to_owned(),
            2,
        ),
        (
            format!(
                "SELECT count(*) AS n FROM webhook_endpoints WHERE url = '{public}/dev/partner-webhooks'"
            ),
            2,
        ),
    ] {
        assert_eq!(crate::support::count(&app.db, &sql).await, n, "{sql}");
    }

    // Each key sees the demo driver linked, in its own mode.
    for key in [&test_key, &live_key] {
        let (_, body) = app
            .gql_as(
                &Auth::Bearer(key.clone()),
                "query($id: String!) { partnerDriver(externalDriverId: $id) { externalDriverId } }",
                json!({ "id": shiftcover::seed::DEMO_EXTERNAL_DRIVER_ID }),
            )
            .await;
        assert_eq!(
            body["data"]["partnerDriver"]["externalDriverId"],
            shiftcover::seed::DEMO_EXTERNAL_DRIVER_ID,
            "{key}: {body}"
        );
    }
    // The demo driver can ask for a quote at once (profile, car and enrolment are there).
    let token = {
        let mut conn = app.db.conn().await.unwrap();
        let settings = accounts::LoginCodeSettings {
            pepper: app.core.settings.accounts.login_code_pepper.clone(),
        };
        accounts::request_login_code(
            &mut conn,
            app.core.clock.as_ref(),
            DEMO_DRIVER_PHONE,
            &settings,
        )
        .await
        .unwrap();
        let code = crate::support::latest_sms_code(&app.db, DEMO_DRIVER_PHONE).await;
        accounts::verify_login_code(
            &mut conn,
            app.core.clock.as_ref(),
            DEMO_DRIVER_PHONE,
            &code,
            &settings,
        )
        .await
        .unwrap()
        .token
    };
    let (_, body) = app
        .gql_as(
            &Auth::Bearer(token),
            "{ me { vehicles(first: 5) { edges { node { registration } } } enrolments { status productName } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["me"]["vehicles"]["edges"][0]["node"]["registration"],
        shiftcover::seed::DEMO_VEHICLE_REGISTRATION,
        "{body}"
    );
    assert!(
        body["data"]["me"]["enrolments"][0]["productName"]
            .as_str()
            .is_some_and(|n| n.starts_with("Food delivery")),
        "{body}"
    );
}

#[tokio::test]
async fn seed_keeps_secrets_to_itself_outside_development_and_refuses_production() {
    let app = TestApp::spawn().await;
    let (code, out, err) = run(
        &app,
        &["seed"],
        &[("SHIFTCOVER__ENVIRONMENT", "test")],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("shown only in development"), "{out}");
    assert!(!out.contains("sck_"), "{out}");

    let mut settings = (*app.core.settings).clone();
    settings.environment = shared::settings::Environment::Production;
    let core = shared::core::Core::new(settings, app.core.clock.clone()).unwrap();
    let err = shiftcover::seed::load(&core).await.unwrap_err();
    assert!(err.to_string().contains("production"), "{err}");
}

#[tokio::test]
async fn staff_create_reads_the_password_safely_and_reports_user_errors() {
    let app = TestApp::spawn().await;
    let args = [
        "staff",
        "create",
        "--email",
        "Finance.Person@ShiftCover.example",
        "--role",
        "finance",
        "--password-stdin",
    ];
    let (code, out, err) = run(&app, &args, &[], Some("a long enough password\n"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created staff user stf_"), "{out}");
    assert!(out.contains("finance.person@shiftcover.example"), "{out}");

    let mut conn = app.db.conn().await.unwrap();
    let signed_in = accounts::staff_sign_in(
        &mut conn,
        app.core.clock.as_ref(),
        "finance.person@shiftcover.example",
        "a long enough password",
    )
    .await
    .unwrap();
    assert_eq!(signed_in.principal.role, accounts::Role::Finance);

    // The same email again; a weak password from the environment; no password at all.
    let (code, _, err) = run(&app, &args, &[], Some("another long password\n"));
    assert_ne!(code, 0);
    assert!(err.contains("DUPLICATE_EMAIL"), "{err}");
    let env_args = [
        "staff",
        "create",
        "--email",
        "ops2@shiftcover.example",
        "--role",
        "ops",
    ];
    let (code, _, err) = run(
        &app,
        &env_args,
        &[(shiftcover::cli::STAFF_PASSWORD_ENV, "short")],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("WEAK_PASSWORD"), "{err}");
    let (code, _, err) = run(&app, &env_args, &[], None);
    assert_ne!(code, 0);
    assert!(err.contains("--password-stdin"), "{err}");
    let (code, _, err) = run(
        &app,
        &[
            "staff",
            "create",
            "--email",
            "x@shiftcover.example",
            "--role",
            "root",
        ],
        &[],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("root"), "{err}");
    assert_eq!(
        crate::support::count(&app.db, "SELECT count(*) AS n FROM staff").await,
        1
    );
}
