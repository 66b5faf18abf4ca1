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

#[tokio::test]
async fn seed_loads_the_demo_data_once_and_shows_secrets_only_in_development() {
    let app = TestApp::spawn().await;
    let dev = [("SHIFTCOVER__ENVIRONMENT", "development")];
    let (code, out, err) = run(&app, &["seed"], &dev, None);
    assert_eq!(code, 0, "{err}");
    let password = out
        .lines()
        .find_map(|l| l.split_once(&format!("ops user {DEMO_OPS_EMAIL}: created, password ")))
        .map(|(_, p)| p.trim().to_owned())
        .unwrap_or_else(|| panic!("no password in {out}"));
    let key = out
        .lines()
        .find_map(|l| l.split_once(&format!("partner {DEMO_PARTNER_NAME}: created, API key ")))
        .map(|(_, k)| k.trim().to_owned())
        .unwrap_or_else(|| panic!("no key in {out}"));

    let (code, out, err) = run(&app, &["seed"], &dev, None);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(&password) && !out.contains(&key), "{out}");
    assert!(out.contains("already there"), "{out}");
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
            format!("SELECT count(*) AS n FROM staff WHERE email = '{DEMO_OPS_EMAIL}'"),
            1,
        ),
        (
            format!("SELECT count(*) AS n FROM partners WHERE name = '{DEMO_PARTNER_NAME}'"),
            1,
        ),
        ("SELECT count(*) AS n FROM partner_api_keys".to_owned(), 1),
    ] {
        assert_eq!(crate::support::count(&app.db, &sql).await, n, "{sql}");
    }

    // What was printed works: the partner's key and the ops user's password.
    let (_, body) = app
        .gql_as(&Auth::Bearer(key), "{ partner { name } }", json!({}))
        .await;
    assert_eq!(body["data"]["partner"]["name"], DEMO_PARTNER_NAME, "{body}");
    let (_, body) = app
        .gql_as(
            &Auth::Anonymous,
            "mutation($i: StaffSignInInput!) { staffSignIn(input: $i) { staff { role } userErrors { code } } }",
            json!({ "i": { "email": DEMO_OPS_EMAIL, "password": password } }),
        )
        .await;
    assert_eq!(
        body["data"]["staffSignIn"]["staff"]["role"], "OPS",
        "{body}"
    );
    // The demo driver can sign in with their phone.
    let (_, body) = app
        .gql_as(
            &Auth::Anonymous,
            "mutation($p: String!) { requestLoginCode(input: { phone: $p }) { phone userErrors { code } } }",
            json!({ "p": DEMO_DRIVER_PHONE }),
        )
        .await;
    assert_eq!(
        body["data"]["requestLoginCode"]["phone"], DEMO_DRIVER_PHONE,
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
