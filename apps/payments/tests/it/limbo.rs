//! Nothing left in limbo: the sweep finishes refunds, charges and top-ups left unfinished.

use crate::sessions::{car_enrolled, ride};
use crate::support::*;
use accounts::{Actor, StaffId};
use chrono::Duration;
use diesel_async::RunQueryDsl;
use payments::stripe::{NewIntent, Presence};
use payments::{PaymentsEnv, RefundRequest, RefundStatus, RefundTarget, TopUpStatus};
use shared::{Clock, Money};
use std::sync::Arc;

/// The same settings with Stripe unreachable (nothing listens on port 9).
fn without_stripe(w: &World) -> PaymentsEnv {
    let mut settings = (*w.settings).clone();
    settings.stripe.base_url = "http://127.0.0.1:9".into();
    PaymentsEnv::from_settings(&settings, Arc::new(w.clock.clone())).unwrap()
}

#[tokio::test]
async fn a_refund_stripe_never_answered_is_finished_by_the_sweep() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    let top_up = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(2000), "t-1")
        .await
        .unwrap();
    let offline = without_stripe(&w);
    let request = RefundRequest {
        target: RefundTarget::TopUp(top_up.id),
        amount: Money::gbp(1500),
        reason: "Duplicate payment".into(),
        actor: Actor::Staff(StaffId(uuid::Uuid::now_v7())),
    };
    assert!(
        payments::refund(&mut conn, &offline, request)
            .await
            .is_err()
    );
    let pending = payments::list_refunds(&mut conn, driver).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status, RefundStatus::Pending);
    assert!(pending[0].stripe_refund_id.is_none());
    // Held meanwhile: the wallet cannot spend it twice.
    let position = payments::wallet_position(&mut conn, driver, w.clock.now())
        .await
        .unwrap();
    assert_eq!(position.available, Money::gbp(500));

    // Too recent for the sweep; then old enough.
    let early = payments::sweep_limbo(&mut conn, &w.env).await.unwrap();
    assert!(early.refunds_retried.is_empty());
    w.clock
        .advance(Duration::minutes(payments::limbo::STALE_AFTER_MINUTES + 1));
    let sweep = payments::sweep_limbo(&mut conn, &w.env).await.unwrap();
    assert_eq!(sweep.refunds_retried, vec![pending[0].id]);
    let done = payments::get_refund(&mut conn, pending[0].id)
        .await
        .unwrap();
    assert_eq!(done.status, RefundStatus::Succeeded);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(500));
    // Swept again: nothing more moves.
    payments::sweep_limbo(&mut conn, &w.env).await.unwrap();
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(500));
    assert!(
        payments::unresolved(&mut conn, w.clock.now() + Duration::hours(2))
            .await
            .unwrap()
            .is_empty()
    );
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn a_session_whose_charge_job_died_is_charged_by_the_sweep() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(2000), "t-1")
        .await
        .unwrap();
    let (car, _) = car_enrolled(&w, &mut conn, driver).await;
    let session = ride(&w, &mut conn, driver, car, "s-1", 90).await;
    let total = session.charge.unwrap().total;
    // The charge job is lost (its row dead-lettered, say): the session is ended, not charged.
    diesel::sql_query("DELETE FROM outbox_jobs WHERE job_type = 'ChargeSession'")
        .execute(&mut conn)
        .await
        .unwrap();
    w.clock.advance(Duration::hours(2));
    let listed = payments::unresolved(&mut conn, w.clock.now())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].contains(&session.id.to_string()));
    let sweep = payments::sweep_limbo(&mut conn, &w.env).await.unwrap();
    assert_eq!(sweep.sessions_charged, vec![session.id]);
    assert_eq!(
        w.balance(&mut conn, driver).await,
        Money::gbp(2000 - total.minor)
    );
    let again = payments::sweep_limbo(&mut conn, &w.env).await.unwrap();
    assert!(again.sessions_charged.is_empty());
    assert_eq!(
        w.balance(&mut conn, driver).await,
        Money::gbp(2000 - total.minor)
    );
    assert_ledger_clean(&mut conn).await;
}

async fn scheduled_auto_top_up(
    w: &World,
    conn: &mut diesel_async::AsyncPgConnection,
) -> (accounts::DriverId, payments::TopUp, payments::PaymentMethod) {
    let driver = w.driver(conn, PHONE).await;
    let card = w.save_card(conn, driver, cards::VISA).await;
    payments::set_auto_top_up(
        conn,
        &w.env,
        driver,
        true,
        Money::gbp(500),
        Money::gbp(2000),
    )
    .await
    .unwrap();
    let waiting = payments::waiting_auto_top_up(conn, driver)
        .await
        .unwrap()
        .unwrap();
    (driver, waiting, card)
}

#[tokio::test]
async fn a_top_up_retried_after_stripes_key_window_finds_its_payment_intent_by_metadata() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let (driver, waiting, card) = scheduled_auto_top_up(&w, &mut conn).await;
    // A first attempt reached Stripe and made the PaymentIntent, then died before storing it.
    let customer = payments::stripe_customer_id(&mut conn, driver)
        .await
        .unwrap()
        .unwrap();
    let made = w
        .env
        .stripe
        .create_payment_intent(
            &NewIntent {
                amount: Money::gbp(2000),
                customer: &customer,
                payment_method: &card.stripe_payment_method_id,
                presence: Presence::OffSession,
                metadata: vec![
                    ("top_up_id", waiting.id.to_string()),
                    ("driver_id", driver.to_string()),
                ],
            },
            &format!("first-attempt:{}", waiting.id),
        )
        .await
        .unwrap();
    diesel::sql_query("UPDATE top_ups SET stripe_requested_at = $1 WHERE id = $2")
        .bind::<diesel::sql_types::Timestamptz, _>(w.clock.now())
        .bind::<diesel::sql_types::Uuid, _>(waiting.id.uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    // The retry comes a day later, when Stripe no longer knows the idempotency key.
    w.clock.advance(Duration::hours(25));
    let retried = payments::charge_auto_top_up(&mut conn, &w.env, waiting.id)
        .await
        .unwrap();
    assert_eq!(retried.status, TopUpStatus::Succeeded);
    assert_eq!(retried.payment_intent_id.as_deref(), Some(made.id.as_str()));
    assert_eq!(w.stripe_intents(&mut conn, driver).await.len(), 1);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(2000));
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn a_top_up_never_sent_is_cancelled_after_a_day_and_stops_blocking_the_next() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let (driver, waiting, _) = scheduled_auto_top_up(&w, &mut conn).await;
    // Its job never ran.
    diesel::sql_query("DELETE FROM outbox_jobs WHERE job_type = 'ChargeAutoTopUp'")
        .execute(&mut conn)
        .await
        .unwrap();
    w.clock.advance(Duration::hours(25));
    let listed = payments::unresolved(&mut conn, w.clock.now())
        .await
        .unwrap();
    assert!(
        listed.iter().any(|l| l.contains(&waiting.id.to_string())),
        "{listed:?}"
    );
    let sweep = payments::sweep_limbo(&mut conn, &w.env).await.unwrap();
    assert_eq!(sweep.top_ups_settled, vec![waiting.id]);
    let cancelled = payments::find_top_up(&mut conn, waiting.id).await.unwrap();
    assert_eq!(cancelled.status, TopUpStatus::Canceled);
    assert_eq!(cancelled.failure_code.as_deref(), Some("expired"));
    assert!(w.stripe_intents(&mut conn, driver).await.is_empty());
    // The next automatic top-up can be made.
    assert!(
        payments::maybe_schedule_auto_top_up(&mut conn, &w.env, driver)
            .await
            .unwrap()
            .is_some()
    );
}
