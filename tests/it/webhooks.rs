//! Provider webhooks and the public proof-of-cover routes.

use crate::support::{TestApp, count};
use serde_json::json;

fn stripe_event(id: &str) -> String {
    json!({
        "id": id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": chrono::Utc::now().timestamp(),
        "livemode": false,
        "data": { "object": { "object": "payment_intent", "id": "pi_not_ours" } }
    })
    .to_string()
}

async fn post_stripe(app: &TestApp, body: &str, signature: Option<String>) -> u16 {
    let mut req = app
        .client
        .post(format!("{}/webhooks/stripe", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(sig) = signature {
        req = req.header("stripe-signature", sig);
    }
    req.send().await.expect("request sent").status().as_u16()
}

async fn stored(app: &TestApp, event_id: &str) -> i64 {
    count(
        &app.db,
        &format!("SELECT count(*) AS n FROM stripe_events WHERE event_id = '{event_id}'"),
    )
    .await
}

#[tokio::test]
async fn signed_stripe_event_is_stored_once() {
    let app = TestApp::spawn().await;
    let secret = app.core.settings.stripe.webhook_secret.expose().to_owned();
    let body = stripe_event("evt_webhook_once");
    let now = chrono::Utc::now().timestamp();
    let sig = payments::sign_stripe_payload(&secret, body.as_bytes(), now);
    assert_eq!(post_stripe(&app, &body, Some(sig.clone())).await, 200);
    assert_eq!(post_stripe(&app, &body, Some(sig)).await, 200, "redelivery");
    assert_eq!(stored(&app, "evt_webhook_once").await, 1);

    // Signed, but not a Stripe event.
    let junk = r#"{"hello":"world"}"#;
    let sig = payments::sign_stripe_payload(&secret, junk.as_bytes(), now);
    assert_eq!(post_stripe(&app, junk, Some(sig)).await, 400);
}

#[tokio::test]
async fn badly_signed_stripe_events_are_refused_and_not_stored() {
    let app = TestApp::spawn().await;
    let secret = app.core.settings.stripe.webhook_secret.expose().to_owned();
    let body = stripe_event("evt_webhook_refused");
    let now = chrono::Utc::now().timestamp();

    let wrong_secret = payments::sign_stripe_payload("whsec_other", body.as_bytes(), now);
    assert_eq!(post_stripe(&app, &body, Some(wrong_secret)).await, 400);

    let stale = payments::sign_stripe_payload(&secret, body.as_bytes(), now - 3600);
    assert_eq!(post_stripe(&app, &body, Some(stale)).await, 400);

    assert_eq!(post_stripe(&app, &body, None).await, 400);

    let tampered = payments::sign_stripe_payload(&secret, b"{}", now);
    assert_eq!(post_stripe(&app, &body, Some(tampered)).await, 400);

    assert_eq!(stored(&app, "evt_webhook_refused").await, 0);
}

#[tokio::test]
async fn twilio_callbacks_need_a_valid_signature() {
    let app = TestApp::spawn().await;
    let settings = &app.core.settings;
    let path = "/webhooks/twilio?src=status";
    let url = format!("{}{path}", settings.http.public_url.trim_end_matches('/'));
    let params = vec![
        ("MessageSid".to_owned(), "SM_unknown".to_owned()),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    let good = notifications::webhooks::twilio_signature(
        settings.twilio.auth_token.expose(),
        &url,
        &params,
    );
    let post = |sig: Option<String>| {
        let mut req = app.client.post(format!("{}{path}", app.base)).form(&params);
        if let Some(sig) = sig {
            req = req.header("x-twilio-signature", sig);
        }
        req.send()
    };
    assert_eq!(post(Some(good)).await.unwrap().status(), 200);
    assert_eq!(
        post(Some("bm90IGEgc2lnbmF0dXJl".into()))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(post(None).await.unwrap().status(), 403);
}

#[tokio::test]
async fn mailgun_callbacks_with_a_bad_signature_are_refused() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .post(format!("{}/webhooks/mailgun", app.base))
        .json(&json!({
            "signature": {
                "timestamp": chrono::Utc::now().timestamp().to_string(),
                "token": "a-token-of-fifty-characters-or-so-0123456789abcdef",
                "signature": "00"
            },
            "event-data": { "event": "delivered" }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 406);
}

#[tokio::test]
async fn verify_page_says_a_forged_token_is_not_covered() {
    let app = TestApp::spawn().await;
    let forger = cover::ProofKey::from_seed(&[7u8; 32]);
    let now = chrono::Utc::now();
    let token = forger
        .sign_token(&cover::ProofClaims {
            certificate_number: "SC-FORGED-0001".into(),
            registration: Some("AB12CDE".into()),
            valid_from: now - chrono::Duration::minutes(5),
            issued_at: now,
            valid_until: now + chrono::Duration::minutes(15),
        })
        .unwrap();
    for token in [token.as_str(), "not-a-token", "<script>alert(1)</script>"] {
        let res = app
            .client
            .get(format!("{}/verify/{}", app.base, token.replace('/', "%2F")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{token}");
        let html = res.text().await.unwrap();
        assert!(html.contains("Not covered"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("SC-FORGED-0001"), "{html}");
    }
}

#[tokio::test]
async fn cover_key_is_published_as_a_jwk() {
    let app = TestApp::spawn().await;
    let res = app.get("/.well-known/shiftcover-cover-key.json").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    let key = cover::ProofKey::from_settings(&app.core.settings.cover).unwrap();
    assert_eq!(body["keys"][0], key.public_jwk());
    assert_eq!(body["keys"][0]["crv"], "Ed25519");
}

/// What `jose` (frontend-schema/verify-proof-token.mjs) makes of a token, checked against the
/// app's published key set.
fn jose_verify(app: &TestApp, token: &str) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("frontend-schema");
    assert!(
        root.join("node_modules/jose").exists(),
        "jose is missing: run `npm ci` in frontend-schema (the test command does)"
    );
    let out = std::process::Command::new("node")
        .arg(root.join("verify-proof-token.mjs"))
        .arg(format!(
            "{}/.well-known/shiftcover-cover-key.json",
            app.base
        ))
        .arg(token)
        .output()
        .expect("node runs");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn a_standard_jose_library_checks_a_proof_token_and_refuses_it_once_cover_ended() {
    use crate::cover_flow::{credit, driver, enrol, seed_products, start};
    let app = TestApp::spawn().await;
    let (food, _) = seed_products(&app).await;
    let d = driver(&app).await;
    credit(&app, d.who.id, shared::Money::gbp(5_000)).await;
    enrol(&app, &d, &food).await;
    let started = start(&app, &d, "jose-1", serde_json::json!({})).await;
    let session = started["session"]["id"].as_str().unwrap().to_owned();
    let token = started["session"]["certificate"]["proofToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = cover::ProofKey::from_settings(&app.core.settings.cover).unwrap();

    // Genuine and fresh: verified offline, its claims those of the certificate.
    let checked = jose_verify(&app, &token);
    assert_eq!(checked["ok"], true, "{checked}");
    assert_eq!(checked["header"]["alg"], "EdDSA");
    assert_eq!(checked["header"]["kid"], key.key_id());
    assert_eq!(
        checked["claims"]["sub"],
        started["session"]["certificate"]["number"]
    );
    assert_eq!(checked["claims"]["vrm"], d.registration.as_str());
    let lifetime =
        checked["claims"]["exp"].as_i64().unwrap() - checked["claims"]["iat"].as_i64().unwrap();
    assert_eq!(lifetime, cover::TOKEN_LIFETIME_MINUTES * 60);

    // Altered by one character of its claims: refused.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let middle = parts[1].len() / 2;
    let flipped = if &parts[1][middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    parts[1].replace_range(middle..=middle, flipped);
    let forged = jose_verify(&app, &parts.join("."));
    assert_eq!(forged["ok"], false);
    assert_eq!(forged["code"], "ERR_JWS_SIGNATURE_VERIFICATION_FAILED");

    // Cover ended: the certificate's token no longer proves anything offline.
    let (_, body) = app
        .gql_as(
            &d.who.auth(),
            "mutation($id: ID!) { endCover(input: { sessionId: $id }) { session { status certificate { proofToken proofExpiresAt validUntil } } } }",
            serde_json::json!({ "id": session }),
        )
        .await;
    let ended = &body["data"]["endCover"]["session"];
    assert_eq!(ended["status"], "ENDED", "{body}");
    assert_eq!(
        ended["certificate"]["proofExpiresAt"],
        ended["certificate"]["validUntil"]
    );
    let after = jose_verify(&app, ended["certificate"]["proofToken"].as_str().unwrap());
    assert_eq!(after["ok"], false, "{after}");
    assert_eq!(after["code"], "ERR_JWT_EXPIRED");
}

#[tokio::test]
async fn graphql_verify_cover_and_products() {
    let app = TestApp::spawn().await;
    let body = app
        .gql(
            "query($t: String!) { verifyCover(token: $t) { status reason certificateNumber } }",
            json!({ "t": "forged.token" }),
        )
        .await;
    assert_eq!(
        body["data"]["verifyCover"]["status"], "NOT_COVERED",
        "{body}"
    );
    assert!(body["data"]["verifyCover"]["certificateNumber"].is_null());

    {
        let mut conn = app.db.conn().await.unwrap();
        pricing::seed_demo_products(&mut conn).await.unwrap();
    }
    let body = app
        .gql("{ products { id code name versionNumber } }", json!({}))
        .await;
    let products = body["data"]["products"].as_array().expect("products");
    assert!(!products.is_empty(), "{body}");
    assert!(
        products
            .iter()
            .all(|p| p["versionNumber"].as_i64() >= Some(1))
    );
}
