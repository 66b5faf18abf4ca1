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
            valid_until: now + chrono::Duration::hours(1),
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
