//! Stripe webhooks: signatures, storing once, applying in any order.

use crate::support::*;
use chrono::Duration;
use payments::{SignatureError, TopUpStatus};
use rand::seq::SliceRandom;
use shared::{Clock, Money};

#[tokio::test]
async fn signatures_are_checked_on_the_raw_body() {
    let w = World::new().await;
    let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    let now = w.clock.now();
    let verify = |header: Option<&str>, body: &[u8], at: chrono::DateTime<chrono::Utc>| {
        payments::verify_stripe_signature(WEBHOOK_SECRET, header, body, at, 300)
    };
    let good = payments::sign_stripe_payload(WEBHOOK_SECRET, body, now.timestamp());
    assert_eq!(verify(Some(&good), body, now), Ok(()));

    // Bad: another secret, or a body changed after signing.
    let other = payments::sign_stripe_payload("whsec_other", body, now.timestamp());
    assert_eq!(
        verify(Some(&other), body, now),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(Some(&good), br#"{"id":"evt_2"}"#, now),
        Err(SignatureError::Mismatch)
    );
    // Stale: signed six minutes ago (and a replay far in the future).
    assert!(matches!(
        verify(Some(&good), body, now + Duration::minutes(6)),
        Err(SignatureError::Stale { .. })
    ));
    assert!(matches!(
        verify(Some(&good), body, now - Duration::minutes(6)),
        Err(SignatureError::Stale { .. })
    ));
    // Missing or malformed.
    assert_eq!(verify(None, body, now), Err(SignatureError::Missing));
    assert_eq!(verify(Some(""), body, now), Err(SignatureError::Missing));
    assert_eq!(
        verify(Some(&format!("t={}", now.timestamp())), body, now),
        Err(SignatureError::Malformed)
    );
    // Several v1 values (a secret being rolled): any one matching is enough.
    let v1 = good.split("v1=").nth(1).unwrap();
    let rolled = format!(
        "t={},v1={},v1={v1}",
        now.timestamp(),
        other.split("v1=").nth(1).unwrap()
    );
    assert_eq!(verify(Some(&rolled), body, now), Ok(()));
    let none_match = format!(
        "t={},v1={},v1={}",
        now.timestamp(),
        "ab".repeat(32),
        "cd".repeat(32)
    );
    assert_eq!(
        verify(Some(&none_match), body, now),
        Err(SignatureError::Mismatch)
    );
}

#[tokio::test]
async fn events_are_stored_once_and_unknown_ones_are_flagged() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let id = event_id();
    let evt = event(
        &id,
        "payment_intent.succeeded",
        serde_json::json!({ "id": "pi_notours", "object": "payment_intent" }),
        unix_now(),
    );
    let first = w.deliver(&mut conn, &evt).await;
    let second = w.deliver(&mut conn, &evt).await;
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.id, second.id);
    assert_eq!(outbox_jobs(&mut conn, "ApplyStripeEvent").await.len(), 1);

    let odd = w
        .deliver(
            &mut conn,
            &event(
                &event_id(),
                "invoice.paid",
                serde_json::json!({ "id": "in_1", "object": "invoice" }),
                unix_now(),
            ),
        )
        .await;
    assert_eq!(w.run_jobs(&mut conn).await, 2);
    let stored = payments::get_event(&mut conn, first.id).await.unwrap();
    assert_eq!(stored.status, "flagged");
    assert!(
        stored.flagged_reason.unwrap().contains("pi_notours"),
        "Stripe does not know it"
    );
    let stored = payments::get_event(&mut conn, odd.id).await.unwrap();
    assert_eq!(stored.status, "flagged");
    assert!(
        stored
            .flagged_reason
            .unwrap()
            .contains("unhandled event invoice.paid")
    );

    let err = payments::record_event(&mut conn, &w.env, "not json")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_EVENT");
    let err = payments::record_event(&mut conn, &w.env, r#"{"type":"x"}"#)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_EVENT");
}

#[tokio::test]
async fn events_replayed_three_times_in_any_order_give_the_same_balances() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    // Driver A: a plain top-up. Driver B: a 3-D Secure top-up the webhook must complete.
    // Driver C: an automatic top-up that needs the driver.
    let a = w.driver(&mut conn, PHONE).await;
    let b = w.driver(&mut conn, OTHER_PHONE).await;
    let c = w.driver(&mut conn, "07911 123457").await;
    w.save_card(&mut conn, a, cards::VISA).await;
    w.save_card(&mut conn, b, cards::THREE_D_SECURE).await;
    w.save_card(&mut conn, c, cards::THREE_D_SECURE).await;

    let ta = payments::top_up_wallet(&mut conn, &w.env, a, Money::gbp(1000), "a-1")
        .await
        .unwrap();
    let tb = payments::top_up_wallet(&mut conn, &w.env, b, Money::gbp(2000), "b-1")
        .await
        .unwrap();
    let pa = ta.payment_intent_id.clone().unwrap();
    let pb = tb.payment_intent_id.clone().unwrap();
    // B's "requires_action" event is captured before the challenge, as Stripe would send it.
    let t0 = unix_now();
    let b_action = intent_event(
        w.stripe,
        &event_id(),
        "payment_intent.requires_action",
        &pb,
        t0,
    )
    .await;
    w.stripe
        .authenticate_payment_intent(&pb, tb.client_secret.as_deref().unwrap(), true)
        .await
        .unwrap();
    payments::set_auto_top_up(
        &mut conn,
        &w.env,
        c,
        true,
        Money::gbp(500),
        Money::gbp(1500),
    )
    .await
    .unwrap();
    w.run_jobs(&mut conn).await;
    let tc = payments::waiting_auto_top_up(&mut conn, c)
        .await
        .unwrap()
        .unwrap();
    let pc = tc.payment_intent_id.clone().unwrap();

    let mut events = vec![
        b_action,
        intent_event(
            w.stripe,
            &event_id(),
            "payment_intent.succeeded",
            &pa,
            t0 + 1,
        )
        .await,
        intent_event(
            w.stripe,
            &event_id(),
            "payment_intent.succeeded",
            &pb,
            t0 + 2,
        )
        .await,
        intent_event(
            w.stripe,
            &event_id(),
            "payment_intent.requires_action",
            &pc,
            t0 + 3,
        )
        .await,
    ];
    let mut deliveries: Vec<serde_json::Value> = events
        .drain(..)
        .flat_map(|e| [e.clone(), e.clone(), e])
        .collect();
    deliveries.shuffle(&mut rand::rng());
    for (i, evt) in deliveries.iter().enumerate() {
        w.deliver(&mut conn, evt).await;
        // Apply now and then, so some redeliveries come after their event was applied.
        if i % 4 == 3 {
            w.run_jobs(&mut conn).await;
        }
    }
    w.run_jobs(&mut conn).await;
    assert_eq!(outbox_jobs(&mut conn, "ApplyStripeEvent").await.len(), 4);

    assert_eq!(w.balance(&mut conn, a).await, Money::gbp(1000));
    assert_eq!(w.balance(&mut conn, b).await, Money::gbp(2000));
    assert_eq!(w.balance(&mut conn, c).await, Money::gbp(0));
    let tb = payments::find_top_up(&mut conn, tb.id).await.unwrap();
    assert_eq!(tb.status, TopUpStatus::Succeeded);
    let tc = payments::find_top_up(&mut conn, tc.id).await.unwrap();
    assert_eq!(tc.status, TopUpStatus::NeedsDriver);
    assert_eq!(top_up_notifications(&mut conn, tc.id).await.len(), 2);

    // And once more, all of it, in another order: nothing moves.
    deliveries.shuffle(&mut rand::rng());
    for evt in &deliveries {
        assert!(w.deliver(&mut conn, evt).await.duplicate);
    }
    assert_eq!(w.run_jobs(&mut conn).await, 0);
    assert_eq!(w.balance(&mut conn, a).await, Money::gbp(1000));
    assert_eq!(w.balance(&mut conn, b).await, Money::gbp(2000));
    assert_ledger_clean(&mut conn).await;
}
