//! The development inbox (`/dev/…`): refused outside development, and in development it takes
//! what the real Twilio client sends from a real `shiftcover work` process, so a driver signs in
//! with the code read from it.

use crate::support::{Auth, TestApp, fresh_phone};
use serde_json::{Value, json};
use shared::settings::Environment;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PATHS: &[&str] = &[
    "/dev/inbox",
    "/dev/inbox.json",
    "/dev/inbox/latest?to=%2B447700100123",
];

#[tokio::test]
async fn the_inbox_is_not_found_outside_development() {
    for (environment, inbox) in [
        (Environment::Test, true),
        (Environment::Test, false),
        (Environment::Development, false),
    ] {
        let app = TestApp::spawn_with(|s| {
            s.environment = environment;
            s.dev.inbox = inbox;
        })
        .await;
        for path in PATHS {
            let res = app.get(path).await;
            assert_eq!(
                res.status(),
                404,
                "{environment:?} inbox={inbox} GET {path}"
            );
        }
        let sid = app.core.settings.twilio.account_sid.clone();
        let res = app
            .client
            .post(format!(
                "{}/dev/twilio/2010-04-01/Accounts/{sid}/Messages.json",
                app.base
            ))
            .basic_auth(&sid, Some("token"))
            .form(&[
                ("To", "+447700100123"),
                ("From", "+447700900000"),
                ("Body", "hi"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            404,
            "{environment:?} inbox={inbox}: Twilio stand-in"
        );
        let res = app
            .client
            .post(format!("{}/dev/partner-webhooks", app.base))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            404,
            "{environment:?} inbox={inbox}: webhook receiver"
        );
    }
}

/// `shiftcover work` against the app's database and Redis, sending texts and emails to `base`.
struct Worker(Child);

impl Worker {
    fn start(app: &TestApp) -> Worker {
        let s = &app.core.settings;
        let child = Command::new(env!("CARGO_BIN_EXE_shiftcover"))
            .arg("work")
            .env("SHIFTCOVER__ENVIRONMENT", "test")
            .env("SHIFTCOVER__DATABASE__URL", app.db.url())
            .env("SHIFTCOVER__REDIS__URL", testkit::redis_url())
            .env("SHIFTCOVER__REDIS__KEY_PREFIX", app.core.redis.prefix())
            .env("SHIFTCOVER__JOBS__RELAY_IDLE_MS", "20")
            .env("SHIFTCOVER__HTTP__PUBLIC_URL", &app.base)
            .env(
                "SHIFTCOVER__TWILIO__BASE_URL",
                format!("{}/dev/twilio", app.base),
            )
            .env("SHIFTCOVER__TWILIO__ACCOUNT_SID", &s.twilio.account_sid)
            .env(
                "SHIFTCOVER__MAILGUN__BASE_URL",
                format!("{}/dev/mailgun", app.base),
            )
            .env("SHIFTCOVER__LOG__FILTER", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("shiftcover work starts");
        Worker(child)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn in_development_a_driver_signs_in_with_the_code_from_the_inbox() {
    // The API's public URL must be its real address: the Twilio stand-in signs its status
    // callback over the URL it calls, and the API checks it against its public URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn_with(|s| {
        s.environment = Environment::Development;
        s.dev.inbox = true;
        s.http.bind = format!("127.0.0.1:{port}");
        s.http.public_url = format!("http://127.0.0.1:{port}");
    })
    .await;
    let _worker = Worker::start(&app);
    let phone = fresh_phone();
    let (_, body) = app
        .gql_as(
            &Auth::Anonymous,
            "mutation($p: String!) { requestLoginCode(input: { phone: $p }) { phone userErrors { code } } }",
            json!({ "p": phone }),
        )
        .await;
    assert_eq!(
        body["data"]["requestLoginCode"]["phone"],
        phone.as_str(),
        "{body}"
    );

    let latest = format!("/dev/inbox/latest?to={}", phone.replace('+', "%2B"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let res = app.get(&latest).await;
        if res.status() == 200 {
            break res.text().await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no text reached the inbox"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let code: String = text
        .split("code is ")
        .nth(1)
        .unwrap_or_else(|| panic!("no code in {text}"))
        .chars()
        .take(6)
        .collect();

    let (_, body) = app
        .gql_as(
            &Auth::Anonymous,
            "mutation($p: String!, $c: String!) { verifyLoginCode(input: { phone: $p, code: $c }) { token userErrors { code } } }",
            json!({ "p": phone, "c": code }),
        )
        .await;
    assert!(
        body["data"]["verifyLoginCode"]["token"].is_string(),
        "{body}"
    );

    // The page and the JSON show the text; the Twilio stand-in lists it as Twilio would.
    let html = app.get("/dev/inbox").await.text().await.unwrap();
    assert!(html.contains(&code) && html.contains(&phone), "{html}");
    let json: Value = app
        .get(&format!("/dev/inbox.json?to={}", phone.replace('+', "%2B")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["texts"][0]["to"], phone.as_str(), "{json}");
    let sid = &app.core.settings.twilio.account_sid;
    let listed: Value = app
        .client
        .get(format!(
            "{}/dev/twilio/2010-04-01/Accounts/{sid}/Messages.json",
            app.base
        ))
        .query(&[("To", phone.as_str()), ("PageSize", "50")])
        .basic_auth(sid, Some(app.core.settings.twilio.auth_token.expose()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["messages"][0]["to"], phone.as_str(), "{listed}");
    // The stand-in reports the text delivered, as Twilio would, and the API records it.
    let delivered = format!(
        "SELECT count(*) AS n FROM notifications WHERE recipient = '{phone}' AND status = 'delivered'"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while crate::support::count(&app.db, &delivered).await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sign-in text was not marked delivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // As Twilio, it refuses another account's credentials.
    let res = app
        .client
        .post(format!(
            "{}/dev/twilio/2010-04-01/Accounts/{sid}/Messages.json",
            app.base
        ))
        .basic_auth(sid, Some("not the token"))
        .form(&[
            ("To", phone.as_str()),
            ("From", "+447700900000"),
            ("Body", "hi"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        listed["messages"][0]["sid"]
            .as_str()
            .unwrap()
            .starts_with("SM")
    );
}

#[tokio::test]
async fn in_development_the_inbox_takes_mailgun_emails_and_partner_webhooks() {
    let app = TestApp::spawn_with(|s| {
        s.environment = Environment::Development;
        s.dev.inbox = true;
    })
    .await;
    let mailgun = &app.core.settings.mailgun;
    let boundary = "b0undary";
    let mut body = String::new();
    for (name, value) in [
        ("from", mailgun.from.as_str()),
        ("to", "driver@example.com"),
        ("subject", "Your weekly statement"),
        ("text", "Hello,\r\nyour statement is ready."),
        ("html", "<p>Hello</p>"),
        ("v:notification_id", "ntf_1"),
    ] {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let url = format!("{}/dev/mailgun/v3/{}/messages", app.base, mailgun.domain);
    let send = |key: &str| {
        app.client
            .post(&url)
            .basic_auth("api", Some(key))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body.clone())
            .send()
    };
    assert_eq!(send("not the key").await.unwrap().status(), 401);
    let res = send(mailgun.api_key.expose()).await.unwrap();
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert!(answer["id"].as_str().unwrap().starts_with('<'), "{answer}");

    let res = app
        .client
        .post(format!("{}/dev/partner-webhooks", app.base))
        .header("shiftcover-signature", "t=1,v1=ab")
        .body(r#"{"id":"evt_1","type":"cover.started","data":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let json: Value = app.get("/dev/inbox.json").await.json().await.unwrap();
    assert_eq!(
        json["emails"][0]["subject"], "Your weekly statement",
        "{json}"
    );
    assert_eq!(
        json["emails"][0]["text"],
        "Hello,\r\nyour statement is ready."
    );
    assert_eq!(json["partnerWebhooks"][0]["eventType"], "cover.started");
    assert_eq!(json["partnerWebhooks"][0]["signature"], "t=1,v1=ab");
    let latest = app
        .get("/dev/inbox/latest?to=driver@example.com")
        .await
        .text()
        .await
        .unwrap();
    assert!(latest.starts_with("Your weekly statement"), "{latest}");
}
