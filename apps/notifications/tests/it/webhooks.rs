//! Delivery callbacks: signatures and status updates.

use crate::support::*;
use chrono::{TimeZone, Utc};
use notifications::webhooks::{
    MailgunSignatureError, MailgunWebhookError, mailgun_signature, twilio_signature,
};
use notifications::{
    CallbackOutcome, Status, apply_mailgun_event, apply_twilio_status, verify_mailgun_signature,
    verify_mailgun_webhook, verify_twilio_signature,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The example in Twilio's documentation on validating its requests.
fn twilio_example() -> (String, Vec<(String, String)>) {
    (
        "https://mycompany.com/myapp.php?foo=1&bar=2".into(),
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]),
    )
}

#[test]
fn twilio_signatures_match_twilios_published_example() {
    let (url, params) = twilio_example();
    assert_eq!(
        twilio_signature("12345", &url, &params),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    );
    assert!(verify_twilio_signature(
        "12345",
        &url,
        &params,
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    ));
    // The order the parameters arrive in makes no difference.
    let mut reversed = params.clone();
    reversed.reverse();
    assert!(verify_twilio_signature(
        "12345",
        &url,
        &reversed,
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    ));
    // Twilio may have signed the URL with the default port spelled out.
    let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    let signed_with_port = twilio_signature("12345", with_port, &params);
    assert!(verify_twilio_signature(
        "12345",
        &url,
        &params,
        &signed_with_port
    ));
}

#[test]
fn twilio_signatures_refuse_any_change() {
    let (url, params) = twilio_example();
    let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    let mut tampered = params.clone();
    tampered[2].1 = "9999".into();
    assert!(!verify_twilio_signature("12345", &url, &tampered, good));
    let mut extra = params.clone();
    extra.push(("Extra".into(), "1".into()));
    assert!(!verify_twilio_signature("12345", &url, &extra, good));
    assert!(!verify_twilio_signature(
        "12345",
        "https://mycompany.com/myapp.php?foo=1&bar=3",
        &params,
        good
    ));
    assert!(!verify_twilio_signature(
        "https://evil.example/myapp.php?foo=1&bar=2",
        &url,
        &params,
        good
    ));
    assert!(!verify_twilio_signature("54321", &url, &params, good));
    assert!(!verify_twilio_signature("12345", &url, &params, ""));
    assert!(!verify_twilio_signature("", &url, &params, good));
    assert!(!verify_twilio_signature(
        "12345",
        &url,
        &params,
        "RSOYDt4T1cUTdK1PDd93/VVr8B8"
    ));
}

const MG_SIGNING_KEY: &str = "key-7bd2b3a6c0e24f3a9d1e";
const MG_TOKEN: &str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
/// HMAC-SHA256(MG_SIGNING_KEY, "1795424400" + MG_TOKEN), computed independently.
const MG_SIGNATURE: &str = "52c0d3f87566bc2409e64067a618096b07af0d3102701f8a2175d5d822a7ccf2";

fn mg_now() -> chrono::DateTime<Utc> {
    // 2026-11-23 09:00:00 UTC = 1795424400.
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
        .single()
        .unwrap()
}

#[test]
fn mailgun_signatures_verify_and_refuse_tampering_and_age() {
    assert_eq!(
        mailgun_signature(MG_SIGNING_KEY, "1795424400", MG_TOKEN),
        MG_SIGNATURE
    );
    let now = mg_now();
    assert_eq!(
        verify_mailgun_signature(MG_SIGNING_KEY, "1795424400", MG_TOKEN, MG_SIGNATURE, now),
        Ok(())
    );
    // Upper-case hex is the same signature.
    assert_eq!(
        verify_mailgun_signature(
            MG_SIGNING_KEY,
            "1795424400",
            MG_TOKEN,
            &MG_SIGNATURE.to_uppercase(),
            now
        ),
        Ok(())
    );
    // Within five minutes either way.
    for offset in [-300, 300] {
        assert_eq!(
            verify_mailgun_signature(
                MG_SIGNING_KEY,
                "1795424400",
                MG_TOKEN,
                MG_SIGNATURE,
                now + chrono::Duration::seconds(offset)
            ),
            Ok(())
        );
    }
    for offset in [-301, 301, 3600] {
        assert_eq!(
            verify_mailgun_signature(
                MG_SIGNING_KEY,
                "1795424400",
                MG_TOKEN,
                MG_SIGNATURE,
                now + chrono::Duration::seconds(offset)
            ),
            Err(MailgunSignatureError::Stale),
            "{offset}"
        );
    }
    assert_eq!(
        verify_mailgun_signature(MG_SIGNING_KEY, "1795424401", MG_TOKEN, MG_SIGNATURE, now),
        Err(MailgunSignatureError::Mismatch)
    );
    assert_eq!(
        verify_mailgun_signature("another-key", "1795424400", MG_TOKEN, MG_SIGNATURE, now),
        Err(MailgunSignatureError::Mismatch)
    );
    assert_eq!(
        verify_mailgun_signature(MG_SIGNING_KEY, "soon", MG_TOKEN, MG_SIGNATURE, now),
        Err(MailgunSignatureError::Malformed)
    );
    assert_eq!(
        verify_mailgun_signature(MG_SIGNING_KEY, "1795424400", MG_TOKEN, "abc", now),
        Err(MailgunSignatureError::Malformed)
    );
    assert_eq!(MailgunSignatureError::Stale.reason(), "stale");
}

fn mg_body(timestamp: &str, token: &str, signature: &str) -> serde_json::Value {
    serde_json::json!({
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {"event": "delivered"},
    })
}

#[tokio::test]
async fn a_mailgun_token_is_accepted_once() {
    let h = Harness::new().await;
    let mut conn = h.conn().await;
    let body = mg_body("1795424400", MG_TOKEN, MG_SIGNATURE);
    verify_mailgun_webhook(&mut conn, MG_SIGNING_KEY, &body, mg_now())
        .await
        .unwrap();
    // The same request replayed a minute later is refused.
    let replay = verify_mailgun_webhook(
        &mut conn,
        MG_SIGNING_KEY,
        &body,
        mg_now() + chrono::Duration::minutes(1),
    )
    .await;
    assert!(
        matches!(
            replay,
            Err(MailgunWebhookError::Rejected(MailgunSignatureError::Reused))
        ),
        "{replay:?}"
    );
    // A stale or forged one is refused before its token is recorded.
    let stale = verify_mailgun_webhook(
        &mut conn,
        MG_SIGNING_KEY,
        &mg_body(
            "1795424400",
            "b".repeat(50).as_str(),
            &mailgun_signature(MG_SIGNING_KEY, "1795424400", &"b".repeat(50)),
        ),
        mg_now() + chrono::Duration::minutes(6),
    )
    .await;
    assert!(matches!(
        stale,
        Err(MailgunWebhookError::Rejected(MailgunSignatureError::Stale))
    ));
    let forged = verify_mailgun_webhook(
        &mut conn,
        MG_SIGNING_KEY,
        &mg_body("1795424400", &"c".repeat(50), MG_SIGNATURE),
        mg_now(),
    )
    .await;
    assert!(matches!(
        forged,
        Err(MailgunWebhookError::Rejected(
            MailgunSignatureError::Mismatch
        ))
    ));
    let malformed =
        verify_mailgun_webhook(&mut conn, MG_SIGNING_KEY, &serde_json::json!({}), mg_now()).await;
    assert!(matches!(
        malformed,
        Err(MailgunWebhookError::Rejected(
            MailgunSignatureError::Malformed
        ))
    ));
    // A numeric timestamp is read the same way.
    let token = "d".repeat(50);
    let numeric = serde_json::json!({"signature": {
        "timestamp": 1795424400,
        "token": token,
        "signature": mailgun_signature(MG_SIGNING_KEY, "1795424400", &token),
    }});
    verify_mailgun_webhook(&mut conn, MG_SIGNING_KEY, &numeric, mg_now())
        .await
        .unwrap();
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM mailgun_webhook_tokens"
        )
        .await,
        2
    );
    // Old tokens are purged once their signatures could only be stale.
    let token = "e".repeat(50);
    let later = mg_now() + chrono::Duration::minutes(30);
    let ts = later.timestamp().to_string();
    let fresh = mg_body(&ts, &token, &mailgun_signature(MG_SIGNING_KEY, &ts, &token));
    verify_mailgun_webhook(&mut conn, MG_SIGNING_KEY, &fresh, later)
        .await
        .unwrap();
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM mailgun_webhook_tokens"
        )
        .await,
        1
    );
}

async fn sent_sms(h: &Harness, cause: &str, sid: &str) -> notifications::NotificationId {
    Mock::given(method("POST"))
        .and(path(twilio_messages_path()))
        .respond_with(ResponseTemplate::new(201).set_body_json(twilio_created(sid, "x")))
        .up_to_n_times(1)
        .mount(&h.twilio)
        .await;
    let id = h.sms(cause, "123456").await;
    h.run(id).await.unwrap().unwrap();
    assert_eq!(h.get(id).await.provider_message_id.as_deref(), Some(sid));
    id
}

#[tokio::test]
async fn twilio_callbacks_move_the_status_forward_only() {
    let h = Harness::new().await;
    let delivered = sent_sms(&h, "login_code:lgc_1", "SM1001").await;
    let undelivered = sent_sms(&h, "login_code:lgc_2", "SM1002").await;
    let failed = sent_sms(&h, "login_code:lgc_3", "SM1003").await;
    let mut conn = h.conn().await;
    let callback = |sid: &str, status: &str, code: Option<&str>| {
        let mut p = pairs(&[
            ("AccountSid", ACCOUNT_SID),
            ("ApiVersion", "2010-04-01"),
            ("From", FROM),
            ("MessageSid", sid),
            ("MessageStatus", status),
            ("SmsSid", sid),
            ("SmsStatus", status),
            ("To", PHONE),
        ]);
        if let Some(code) = code {
            p.push(("ErrorCode".into(), code.into()));
        }
        p
    };

    assert_eq!(
        apply_twilio_status(&mut conn, &callback("SM1001", "sent", None))
            .await
            .unwrap(),
        CallbackOutcome::Unchanged { id: delivered }
    );
    assert_eq!(
        apply_twilio_status(&mut conn, &callback("SM1001", "delivered", None))
            .await
            .unwrap(),
        CallbackOutcome::Updated {
            id: delivered,
            status: Status::Delivered
        }
    );
    // A late "sent" or "failed" does not undo a delivery.
    assert_eq!(
        apply_twilio_status(&mut conn, &callback("SM1001", "sent", None))
            .await
            .unwrap(),
        CallbackOutcome::Unchanged { id: delivered }
    );
    assert_eq!(
        apply_twilio_status(&mut conn, &callback("SM1001", "failed", Some("30008")))
            .await
            .unwrap(),
        CallbackOutcome::Unchanged { id: delivered }
    );
    let n = h.get(delivered).await;
    assert_eq!(n.status, Status::Delivered);
    assert!(n.delivered_at.is_some());

    assert_eq!(
        apply_twilio_status(&mut conn, &callback("SM1002", "undelivered", Some("30003")))
            .await
            .unwrap(),
        CallbackOutcome::Updated {
            id: undelivered,
            status: Status::Undeliverable
        }
    );
    assert_eq!(
        h.get(undelivered).await.failure_reason.as_deref(),
        Some("undelivered:30003")
    );
    assert_eq!(
        apply_twilio_status(&mut conn, &callback("SM1003", "failed", Some("30008")))
            .await
            .unwrap(),
        CallbackOutcome::Updated {
            id: failed,
            status: Status::Failed
        }
    );
    assert_eq!(
        h.get(failed).await.failure_reason.as_deref(),
        Some("failed:30008")
    );

    assert_eq!(
        apply_twilio_status(&mut conn, &callback("SM9999", "delivered", None))
            .await
            .unwrap(),
        CallbackOutcome::UnknownMessage
    );
    assert_eq!(
        apply_twilio_status(&mut conn, &pairs(&[("MessageStatus", "delivered")]))
            .await
            .unwrap(),
        CallbackOutcome::UnknownMessage
    );
}

async fn sent_email(h: &Harness, cause: &str, message_id: &str) -> notifications::NotificationId {
    Mock::given(method("POST"))
        .and(path(mailgun_messages_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"id": format!("<{message_id}>"), "message": "Queued. Thank you."}),
        ))
        .up_to_n_times(1)
        .mount(&h.mailgun)
        .await;
    let id = h.email(cause).await;
    h.run(id).await.unwrap().unwrap();
    id
}

fn mg_event(event: &str, message_id: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut data = serde_json::json!({
        "event": event,
        "id": "CPgfbmQMTCKtHW6uIWtuVe",
        "timestamp": 1795424400.123,
        "recipient": EMAIL,
        "message": {"headers": {"message-id": message_id, "to": EMAIL, "subject": "x"}},
        "user-variables": {},
    });
    if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            d.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({
        "signature": {"timestamp": "1795424400", "token": MG_TOKEN, "signature": MG_SIGNATURE},
        "event-data": data,
    })
}

#[tokio::test]
async fn mailgun_events_update_the_email_they_concern() {
    let h = Harness::new().await;
    let delivered = sent_email(&h, "c:1", "m1@mg.shiftcover.test").await;
    let bounced = sent_email(&h, "c:2", "m2@mg.shiftcover.test").await;
    let mut conn = h.conn().await;

    assert_eq!(
        apply_mailgun_event(
            &mut conn,
            &mg_event("opened", "m1@mg.shiftcover.test", serde_json::json!({}))
        )
        .await
        .unwrap(),
        CallbackOutcome::Unchanged { id: delivered }
    );
    assert_eq!(
        apply_mailgun_event(
            &mut conn,
            &mg_event("delivered", "m1@mg.shiftcover.test", serde_json::json!({}))
        )
        .await
        .unwrap(),
        CallbackOutcome::Updated {
            id: delivered,
            status: Status::Delivered
        }
    );

    // A temporary failure is only noted; a permanent one makes the address undeliverable.
    let temporary = mg_event(
        "failed",
        "m2@mg.shiftcover.test",
        serde_json::json!({"severity": "temporary", "reason": "generic",
            "delivery-status": {"code": 452, "message": "Mailbox full"}}),
    );
    assert_eq!(
        apply_mailgun_event(&mut conn, &temporary).await.unwrap(),
        CallbackOutcome::Unchanged { id: bounced }
    );
    let n = h.get(bounced).await;
    assert_eq!(n.status, Status::Sent);
    assert!(n.last_error.unwrap().contains("Mailbox full"));
    let permanent = mg_event(
        "failed",
        "m2@mg.shiftcover.test",
        serde_json::json!({"severity": "permanent", "reason": "suppress-bounce",
            "delivery-status": {"code": 605, "message": "Not delivering to previously bounced address"}}),
    );
    assert_eq!(
        apply_mailgun_event(&mut conn, &permanent).await.unwrap(),
        CallbackOutcome::Updated {
            id: bounced,
            status: Status::Undeliverable
        }
    );
    assert_eq!(
        h.get(bounced).await.failure_reason.as_deref(),
        Some("bounced:suppress-bounce")
    );
    // A delivery report cannot undo a bounce.
    assert_eq!(
        apply_mailgun_event(
            &mut conn,
            &mg_event("delivered", "m2@mg.shiftcover.test", serde_json::json!({}))
        )
        .await
        .unwrap(),
        CallbackOutcome::Unchanged { id: bounced }
    );
    // Only the event data is needed; unknown messages are ignored.
    assert_eq!(
        apply_mailgun_event(
            &mut conn,
            &mg_event(
                "delivered",
                "other@mg.shiftcover.test",
                serde_json::json!({})
            )["event-data"]
        )
        .await
        .unwrap(),
        CallbackOutcome::UnknownMessage
    );
}
