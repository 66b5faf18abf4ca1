//! Automatic (off-session) top-ups, against localstripe.

use crate::support::*;
use payments::stripe::{NewIntent, Presence};
use payments::{TopUpKind, TopUpStatus};
use shared::{Clock, Money};

#[tokio::test]
async fn an_auto_top_up_charges_off_session_when_the_wallet_is_low() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;

    let err = payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        true,
        Money::gbp(500),
        Money::gbp(2000),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "NO_PAYMENT_METHOD");
    w.save_card(&mut conn, driver, cards::VISA).await;
    let err = payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        true,
        Money::gbp(-1),
        Money::gbp(2000),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "INVALID_AUTO_TOP_UP");

    // Enabling it with an empty wallet schedules one at once.
    let settings = payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        true,
        Money::gbp(500),
        Money::gbp(2000),
    )
    .await
    .unwrap();
    assert!(settings.enabled);
    let waiting = payments::waiting_auto_top_up(&mut conn, driver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.kind, TopUpKind::Auto);
    assert_eq!(waiting.status, TopUpStatus::Created);
    // Asking again while it waits schedules nothing more.
    assert_eq!(
        payments::maybe_schedule_auto_top_up(&mut conn, &w.env, driver)
            .await
            .unwrap(),
        None
    );
    assert_eq!(outbox_jobs(&mut conn, "ChargeAutoTopUp").await.len(), 1);

    assert_eq!(w.run_jobs(&mut conn).await, 1);
    let done = payments::find_top_up(&mut conn, waiting.id).await.unwrap();
    assert_eq!(done.status, TopUpStatus::Succeeded);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(2000));
    let intents = w.stripe_intents(&mut conn, driver).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["metadata"]["top_up_id"], waiting.id.to_string());

    // Running the charge again (a redelivered job) charges nothing more.
    let again = payments::charge_auto_top_up(&mut conn, &w.env, waiting.id)
        .await
        .unwrap();
    assert_eq!(again.status, TopUpStatus::Succeeded);
    assert_eq!(w.stripe_intents(&mut conn, driver).await.len(), 1);
    assert_eq!(
        payments::maybe_schedule_auto_top_up(&mut conn, &w.env, driver)
            .await
            .unwrap(),
        None,
        "the wallet is above the threshold now"
    );
    assert_eq!(
        payments::schedule_due_auto_top_ups(&mut conn, &w.env)
            .await
            .unwrap(),
        0
    );
    // Raising the threshold above the balance schedules one at once; the sweep finds none left.
    payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        true,
        Money::gbp(3000),
        Money::gbp(1000),
    )
    .await
    .unwrap();
    assert_eq!(w.run_jobs(&mut conn).await, 1);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(3000));
    assert_eq!(
        payments::schedule_due_auto_top_ups(&mut conn, &w.env)
            .await
            .unwrap(),
        0
    );
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn a_lost_answer_is_recovered_with_the_same_idempotency_key() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    let card = w.save_card(&mut conn, driver, cards::VISA).await;
    payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        true,
        Money::gbp(500),
        Money::gbp(1000),
    )
    .await
    .unwrap();
    let waiting = payments::waiting_auto_top_up(&mut conn, driver)
        .await
        .unwrap()
        .unwrap();
    // A first attempt reached Stripe, but its answer was lost before anything was stored.
    let customer = payments::stripe_customer_id(&mut conn, driver)
        .await
        .unwrap()
        .unwrap();
    let first = w
        .env
        .stripe
        .create_payment_intent(
            &NewIntent {
                amount: Money::gbp(1000),
                customer: &customer,
                payment_method: &card.stripe_payment_method_id,
                presence: Presence::OffSession,
                metadata: vec![
                    ("top_up_id", waiting.id.to_string()),
                    ("driver_id", driver.to_string()),
                ],
            },
            &format!("top_up:{}", waiting.id),
        )
        .await
        .unwrap();
    assert_eq!(first.status, "succeeded");
    // The retried job gets the same PaymentIntent back: one charge.
    w.run_jobs(&mut conn).await;
    let done = payments::find_top_up(&mut conn, waiting.id).await.unwrap();
    assert_eq!(done.status, TopUpStatus::Succeeded);
    assert_eq!(done.payment_intent_id.as_deref(), Some(first.id.as_str()));
    assert_eq!(w.stripe_intents(&mut conn, driver).await.len(), 1);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(1000));
}

#[tokio::test]
async fn a_card_that_needs_the_driver_is_never_retried_off_session() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::THREE_D_SECURE).await;
    payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        true,
        Money::gbp(500),
        Money::gbp(2500),
    )
    .await
    .unwrap();
    assert_eq!(w.run_jobs(&mut conn).await, 1);
    let waiting = payments::waiting_auto_top_up(&mut conn, driver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.status, TopUpStatus::NeedsDriver);
    assert_eq!(
        waiting.failure_code.as_deref(),
        Some("authentication_required")
    );
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(0));

    // The driver is told by SMS and email, with a link to finish it.
    let sent = top_up_notifications(&mut conn, waiting.id).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let link = format!("https://app.shiftcover.test/wallet/top-ups/{}", waiting.id);
    assert!(
        sent.iter()
            .any(|(cause, to, body)| cause.ends_with(":email")
                && to == "ada@example.com"
                && body.contains(&link))
    );
    assert!(sent.iter().any(|(cause, to, body)| cause.ends_with(":sms")
        && to == "+447911123456"
        && body.contains("£25.00")
        && body.contains(&link)));

    // Nothing retries it off-session: not the job again, not a new schedule.
    payments::charge_auto_top_up(&mut conn, &w.env, waiting.id)
        .await
        .unwrap();
    assert_eq!(
        payments::maybe_schedule_auto_top_up(&mut conn, &w.env, driver)
            .await
            .unwrap(),
        None
    );
    assert_eq!(w.run_jobs(&mut conn).await, 0);
    assert_eq!(w.stripe_intents(&mut conn, driver).await.len(), 1);
    assert!(
        !payments::auto_top_up_available(&mut conn, driver, w.clock.now())
            .await
            .unwrap()
    );
    assert_eq!(top_up_notifications(&mut conn, waiting.id).await.len(), 2);

    // The driver opens the link and passes the challenge on-session.
    let finishing = payments::finish_top_up(&mut conn, &w.env, driver, waiting.id)
        .await
        .unwrap();
    let secret = finishing.client_secret.clone().unwrap();
    let pi = finishing.payment_intent_id.clone().unwrap();
    w.stripe
        .authenticate_payment_intent(&pi, &secret, true)
        .await
        .unwrap();
    let done = payments::refresh_top_up(&mut conn, &w.env, driver, waiting.id)
        .await
        .unwrap();
    assert_eq!(done.status, TopUpStatus::Succeeded);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(2500));
    assert!(
        payments::auto_top_up_available(&mut conn, driver, w.clock.now())
            .await
            .unwrap()
    );
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn a_decline_off_session_needs_the_driver_too() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::CHARGE_DECLINED).await;
    payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        true,
        Money::gbp(500),
        Money::gbp(1000),
    )
    .await
    .unwrap();
    w.run_jobs(&mut conn).await;
    let waiting = payments::waiting_auto_top_up(&mut conn, driver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.status, TopUpStatus::NeedsDriver);
    assert_eq!(waiting.failure_code.as_deref(), Some("card_declined"));
    assert_eq!(top_up_notifications(&mut conn, waiting.id).await.len(), 2);
    assert_eq!(w.stripe_intents(&mut conn, driver).await.len(), 1);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(0));
}
