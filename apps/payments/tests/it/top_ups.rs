//! On-session top-ups, against localstripe.

use crate::support::*;
use payments::{TopUpKind, TopUpStatus};
use shared::Money;

#[tokio::test]
async fn a_plain_card_top_up_credits_the_wallet_once() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;

    let err = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(1000), "k1")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NO_PAYMENT_METHOD");
    w.save_card(&mut conn, driver, cards::VISA).await;

    for (pence, expected) in [(499, "AMOUNT_TOO_SMALL"), (25_001, "AMOUNT_TOO_LARGE")] {
        let err = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(pence), "k0")
            .await
            .unwrap_err();
        assert_eq!(code(&err), expected);
    }
    let err = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(1000), "")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_IDEMPOTENCY_KEY");

    let top_up = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(1000), "k1")
        .await
        .unwrap();
    assert_eq!(top_up.status, TopUpStatus::Succeeded);
    assert_eq!(top_up.kind, TopUpKind::OnSession);
    assert!(top_up.id.to_string().starts_with("top_"));
    let pi = top_up.payment_intent_id.clone().unwrap();
    assert!(top_up.ledger_transaction_id.is_some());
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(1000));

    // The same key again: the same top-up, no second payment.
    let again = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(1000), "k1")
        .await
        .unwrap();
    assert_eq!(again.id, top_up.id);
    assert_eq!(w.stripe_intents(&mut conn, driver).await.len(), 1);
    let err = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(2000), "k1")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "IDEMPOTENCY_KEY_REUSED");

    // The success webhook changes nothing more.
    let evt = intent_event(
        w.stripe,
        &event_id(),
        "payment_intent.succeeded",
        &pi,
        unix_now(),
    )
    .await;
    w.deliver(&mut conn, &evt).await;
    assert_eq!(w.run_jobs(&mut conn).await, 1);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(1000));
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn three_d_secure_goes_back_to_the_app_and_credits_once_after_the_challenge() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::THREE_D_SECURE).await;

    let top_up = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(1500), "3ds-1")
        .await
        .unwrap();
    assert_eq!(top_up.status, TopUpStatus::RequiresAction);
    let secret = top_up.client_secret.clone().unwrap();
    let pi = top_up.payment_intent_id.clone().unwrap();
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(0));
    // Asking again with the key hands the secret back again, without a new payment.
    let again = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(1500), "3ds-1")
        .await
        .unwrap();
    assert_eq!(again.client_secret.as_deref(), Some(secret.as_str()));
    assert_eq!(w.stripe_intents(&mut conn, driver).await.len(), 1);

    // The driver passes the challenge in the app.
    let authed = w
        .stripe
        .authenticate_payment_intent(&pi, &secret, true)
        .await
        .unwrap();
    assert_eq!(authed["status"], "succeeded");

    // The webhook arrives (twice), and the app reports back: credited once.
    let evt = intent_event(
        w.stripe,
        &event_id(),
        "payment_intent.succeeded",
        &pi,
        unix_now(),
    )
    .await;
    w.deliver(&mut conn, &evt).await;
    let dup = w.deliver(&mut conn, &evt).await;
    assert!(dup.duplicate);
    assert_eq!(w.run_jobs(&mut conn).await, 1);
    let refreshed = payments::refresh_top_up(&mut conn, &w.env, driver, top_up.id)
        .await
        .unwrap();
    assert_eq!(refreshed.status, TopUpStatus::Succeeded);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(1500));
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn a_failed_challenge_or_a_decline_fails_the_top_up_and_takes_nothing() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::THREE_D_SECURE).await;
    let top_up = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(1000), "fail-1")
        .await
        .unwrap();
    let pi = top_up.payment_intent_id.clone().unwrap();
    w.stripe
        .authenticate_payment_intent(&pi, top_up.client_secret.as_deref().unwrap(), false)
        .await
        .unwrap();
    let failed = payments::refresh_top_up(&mut conn, &w.env, driver, top_up.id)
        .await
        .unwrap();
    assert_eq!(failed.status, TopUpStatus::Failed);
    assert_eq!(
        failed.failure_code.as_deref(),
        Some("payment_intent_authentication_failure")
    );

    let other = w.driver(&mut conn, OTHER_PHONE).await;
    w.save_card(&mut conn, other, cards::CHARGE_DECLINED).await;
    let declined = payments::top_up_wallet(&mut conn, &w.env, other, Money::gbp(1000), "d-1")
        .await
        .unwrap();
    assert_eq!(declined.status, TopUpStatus::Failed);
    assert_eq!(declined.failure_code.as_deref(), Some("card_declined"));
    assert!(declined.payment_intent_id.is_some());
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(0));
    assert_eq!(w.balance(&mut conn, other).await, Money::gbp(0));
    assert_ledger_clean(&mut conn).await;
}
