//! Refunds of top-ups, against localstripe.

use crate::support::*;
use accounts::{Actor, StaffId};
use ledger::{AccountRef, SystemAccount};
use payments::{RefundRequest, RefundStatus, RefundTarget};
use shared::{Currency, Money};

fn ops() -> Actor {
    Actor::Staff(StaffId::new())
}

#[tokio::test]
async fn a_top_up_is_refunded_in_parts_and_the_ledger_reversed() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    let top_up = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(2000), "r-1")
        .await
        .unwrap();
    let clearing = AccountRef::system(SystemAccount::StripeClearing, Currency::Gbp);
    assert_eq!(
        ledger::balance(&mut conn, &clearing).await.unwrap(),
        Money::gbp(2000)
    );

    let request = |amount: i64, reason: &str| RefundRequest {
        target: RefundTarget::TopUp(top_up.id),
        amount: Money::gbp(amount),
        reason: reason.into(),
        actor: ops(),
    };
    let err = payments::refund(&mut conn, &w.env, request(500, " "))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_REASON");
    let err = payments::refund(&mut conn, &w.env, request(0, "x"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_AMOUNT");

    let part = payments::refund(&mut conn, &w.env, request(500, "Duplicate top-up"))
        .await
        .unwrap();
    assert_eq!(part.status, RefundStatus::Succeeded);
    let re = part.stripe_refund_id.clone().unwrap();
    let at_stripe = w.stripe.get(&format!("/v1/refunds/{re}")).await.unwrap();
    assert_eq!(at_stripe["amount"], 500);
    assert_eq!(
        at_stripe["payment_intent"],
        top_up.payment_intent_id.clone().unwrap()
    );
    let reversal = ledger::get_transaction(&mut conn, part.ledger_transaction_id.unwrap())
        .await
        .unwrap();
    assert_eq!(reversal.transaction.reverses, top_up.ledger_transaction_id);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(1500));
    assert_eq!(
        ledger::balance(&mut conn, &clearing).await.unwrap(),
        Money::gbp(1500)
    );

    let err = payments::refund(&mut conn, &w.env, request(1501, "Too much"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "REFUND_TOO_LARGE");
    assert!(matches!(
        err,
        payments::PaymentsError::RefundTooLarge { refundable, .. } if refundable == Money::gbp(1500)
    ));
    let rest = payments::refund(&mut conn, &w.env, request(1500, "Closing the account"))
        .await
        .unwrap();
    assert_eq!(rest.status, RefundStatus::Succeeded);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(0));
    let err = payments::refund(&mut conn, &w.env, request(1, "Again"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "REFUND_TOO_LARGE");

    // Stripe's charge.refunded webhook finds nothing left to do.
    let charge_event = event(
        &event_id(),
        "charge.refunded",
        serde_json::json!({
            "id": "ch_x",
            "object": "charge",
            "payment_intent": top_up.payment_intent_id.clone().unwrap(),
        }),
        unix_now(),
    );
    let recorded = w.deliver(&mut conn, &charge_event).await;
    w.run_jobs(&mut conn).await;
    assert_eq!(
        payments::get_event(&mut conn, recorded.id)
            .await
            .unwrap()
            .status,
        "processed"
    );
    assert_eq!(
        payments::list_refunds(&mut conn, driver)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn only_succeeded_top_ups_are_refundable_and_never_beyond_the_wallet() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::THREE_D_SECURE).await;
    let waiting = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(1000), "w-1")
        .await
        .unwrap();
    let err = payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::TopUp(waiting.id),
            amount: Money::gbp(100),
            reason: "Not paid yet".into(),
            actor: ops(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "NOT_REFUNDABLE");
    let err = payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::TopUp(payments::TopUpId::new()),
            amount: Money::gbp(100),
            reason: "Nothing".into(),
            actor: ops(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
}
