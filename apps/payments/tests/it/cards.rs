//! Saving cards with SetupIntents, against localstripe.

use crate::support::*;
use payments::PaymentsError;

#[tokio::test]
async fn a_plain_card_is_saved_once_whoever_reports_it() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;

    let setup = payments::create_card_setup(&mut conn, &w.env, driver)
        .await
        .unwrap();
    assert!(setup.setup_intent_id.starts_with("seti_"));
    assert_eq!(setup.status, "requires_payment_method");
    let secret = setup.client_secret.clone().unwrap();
    assert!(secret.starts_with(&setup.setup_intent_id));
    let customer = payments::stripe_customer_id(&mut conn, driver)
        .await
        .unwrap()
        .unwrap();
    assert!(customer.starts_with("cus_"));

    // The app confirms with the SDK; then reports it.
    let pm = w.stripe.create_card(cards::VISA).await.unwrap();
    let si = w
        .stripe
        .confirm_setup_intent(&setup.setup_intent_id, &secret, Some(&pm))
        .await
        .unwrap();
    assert_eq!(si["status"], "succeeded");
    let confirmed = payments::confirm_card_setup(&mut conn, &w.env, driver, &setup.setup_intent_id)
        .await
        .unwrap();
    assert_eq!(confirmed.status, "succeeded");
    let card = confirmed.payment_method.clone().unwrap();
    assert_eq!(card.stripe_payment_method_id, pm);
    assert_eq!(card.last4, "4242");
    assert_eq!(card.brand, "visa");
    assert_eq!((card.exp_month, card.exp_year), (12, 2034));
    assert!(card.is_default);

    // Reported again, and by the webhook: still one card.
    let again = payments::confirm_card_setup(&mut conn, &w.env, driver, &setup.setup_intent_id)
        .await
        .unwrap();
    assert_eq!(again.payment_method.map(|p| p.id), Some(card.id));
    let si_now = w
        .stripe
        .get(&format!("/v1/setup_intents/{}", setup.setup_intent_id))
        .await
        .unwrap();
    let recorded = w
        .deliver(
            &mut conn,
            &event(&event_id(), "setup_intent.succeeded", si_now, unix_now()),
        )
        .await;
    assert!(!recorded.duplicate);
    assert_eq!(w.run_jobs(&mut conn).await, 1);
    let event = payments::get_event(&mut conn, recorded.id).await.unwrap();
    assert_eq!(event.status, "processed");
    let cards = payments::payment_methods(&mut conn, driver).await.unwrap();
    assert_eq!(cards.len(), 1);
    assert_eq!(cards[0].id, card.id);

    // A second setup reuses the customer.
    let second = payments::create_card_setup(&mut conn, &w.env, driver)
        .await
        .unwrap();
    assert_ne!(second.setup_intent_id, setup.setup_intent_id);
    assert_eq!(
        payments::stripe_customer_id(&mut conn, driver)
            .await
            .unwrap(),
        Some(customer)
    );
}

#[tokio::test]
async fn a_three_d_secure_card_is_saved_after_the_second_confirmation() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    let setup = payments::create_card_setup(&mut conn, &w.env, driver)
        .await
        .unwrap();
    let secret = setup.client_secret.clone().unwrap();
    let pm = w.stripe.create_card(cards::THREE_D_SECURE).await.unwrap();
    let si = w
        .stripe
        .confirm_setup_intent(&setup.setup_intent_id, &secret, Some(&pm))
        .await
        .unwrap();
    assert_eq!(si["status"], "requires_action");

    // Reported while the bank still waits: nothing saved yet.
    let waiting = payments::confirm_card_setup(&mut conn, &w.env, driver, &setup.setup_intent_id)
        .await
        .unwrap();
    assert_eq!(waiting.status, "requires_action");
    assert!(waiting.payment_method.is_none());
    assert!(
        payments::payment_methods(&mut conn, driver)
            .await
            .unwrap()
            .is_empty()
    );

    // The challenge passed: the second confirmation completes it.
    w.stripe
        .confirm_setup_intent(&setup.setup_intent_id, &secret, None)
        .await
        .unwrap();
    let done = payments::confirm_card_setup(&mut conn, &w.env, driver, &setup.setup_intent_id)
        .await
        .unwrap();
    assert_eq!(done.status, "succeeded");
    let card = done.payment_method.unwrap();
    assert_eq!(card.last4, "3155");
    assert!(card.is_default);
}

#[tokio::test]
async fn setups_are_private_and_removed_cards_are_detached() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    let other = w.driver(&mut conn, OTHER_PHONE).await;
    let first = w.save_card(&mut conn, driver, cards::VISA).await;
    let second = w.save_card(&mut conn, driver, cards::THREE_D_SECURE).await;
    assert!(first.is_default);
    assert!(!second.is_default);

    let setup = payments::create_card_setup(&mut conn, &w.env, driver)
        .await
        .unwrap();
    let err = payments::confirm_card_setup(&mut conn, &w.env, other, &setup.setup_intent_id)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
    let err = payments::remove_payment_method(&mut conn, &w.env, other, first.id)
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentsError::NotFound("paymentMethodId")));

    let removed = payments::remove_payment_method(&mut conn, &w.env, driver, first.id)
        .await
        .unwrap();
    assert_eq!(removed.status, "removed");
    assert!(!removed.is_default);
    let left = payments::payment_methods(&mut conn, driver).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, second.id);
    assert!(left[0].is_default, "the remaining card becomes the default");
    let at_stripe = w
        .stripe
        .get(&format!(
            "/v1/payment_methods/{}",
            first.stripe_payment_method_id
        ))
        .await
        .unwrap();
    assert_eq!(at_stripe["customer"], serde_json::Value::Null);
    // Removing again only retries the detach.
    payments::remove_payment_method(&mut conn, &w.env, driver, first.id)
        .await
        .unwrap();
}
