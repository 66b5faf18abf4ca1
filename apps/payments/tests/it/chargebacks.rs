//! Chargebacks (Stripe disputes on top-ups), refunds made in the Stripe dashboard, and refunds
//! that fail after they succeeded, delivered as signed webhooks and checked against localstripe.

use crate::sessions::car_enrolled;
use crate::support::*;
use accounts::{Actor, DriverId, StaffId};
use chrono::Duration;
use cover::{EndReason, EnrolmentStatus, SessionSource, StartCover};
use diesel_async::AsyncPgConnection;
use ledger::{AccountRef, SystemAccount, TransactionKind};
use payments::{RefundRequest, RefundStatus, RefundTarget, StripeEvent, WalletFunds};
use shared::{Clock, Currency, Money};

async fn start(
    w: &World,
    conn: &mut AsyncPgConnection,
    driver: DriverId,
    vehicle: accounts::VehicleId,
    key: &str,
) -> Result<cover::SessionStarted, cover::CoverError> {
    cover::start_session(
        conn,
        &w.clock,
        &Default::default(),
        driver,
        StartCover {
            vehicle_id: vehicle,
            product_id: None,
            quote_id: None,
            idempotency_key: key.into(),
            source: SessionSource::Driver,
        },
        &WalletFunds,
    )
    .await
}

/// A session of `minutes`, ended and charged to the wallet. Returns its price.
async fn ride_and_pay(
    w: &World,
    conn: &mut AsyncPgConnection,
    driver: DriverId,
    vehicle: accounts::VehicleId,
    key: &str,
    minutes: i64,
) -> i64 {
    let started = start(w, conn, driver, vehicle, key).await.unwrap();
    w.clock.advance(Duration::minutes(minutes));
    let ended = cover::end_session(
        conn,
        &w.clock,
        driver,
        started.session.id,
        EndReason::Driver,
    )
    .await
    .unwrap()
    .session;
    payments::charge_session(conn, &w.env, ended.id)
        .await
        .unwrap();
    ended.charge.unwrap().total.minor
}

/// A Stripe event about the dispute as Stripe shows it now.
async fn dispute_event(w: &World, event_type: &str, dispute: &str) -> serde_json::Value {
    let object = w
        .stripe
        .get(&format!("/v1/disputes/{dispute}"))
        .await
        .unwrap();
    assert_eq!(object["object"], "dispute");
    event(&event_id(), event_type, object, unix_now())
}

/// A Stripe event about a refund as Stripe shows it now.
async fn refund_event(w: &World, event_type: &str, refund: &str) -> serde_json::Value {
    let object = w
        .stripe
        .get(&format!("/v1/refunds/{refund}"))
        .await
        .unwrap();
    event(&event_id(), event_type, object, unix_now())
}

/// `charge.refunded` for a PaymentIntent's charge, as Stripe sends it.
async fn charge_refunded(w: &World, payment_intent: &str) -> serde_json::Value {
    let pi = w
        .stripe
        .get(&format!("/v1/payment_intents/{payment_intent}"))
        .await
        .unwrap();
    let charge_id = pi["latest_charge"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| pi["latest_charge"]["id"].as_str().map(str::to_owned))
        .unwrap();
    let charge = w
        .stripe
        .get(&format!("/v1/charges/{charge_id}"))
        .await
        .unwrap();
    event(&event_id(), "charge.refunded", charge, unix_now())
}

/// Delivers the event signed, runs the worker, and returns the stored event.
async fn deliver_and_apply(
    w: &World,
    conn: &mut AsyncPgConnection,
    evt: &serde_json::Value,
) -> StripeEvent {
    let recorded = w.deliver(conn, evt).await;
    w.run_jobs(conn).await;
    payments::get_event(conn, recorded.id).await.unwrap()
}

async fn assert_all_clean(conn: &mut AsyncPgConnection) {
    assert_ledger_clean(conn).await;
    let report = payments::check_wallets(conn).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

async fn bal(conn: &mut AsyncPgConnection, account: SystemAccount) -> i64 {
    ledger::balance(conn, &AccountRef::system(account, Currency::Gbp))
        .await
        .unwrap()
        .minor
}

async fn chargeback_transactions(conn: &mut AsyncPgConnection) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use ledger::schema::ledger_transactions as t;
    t::table
        .filter(t::kind.eq(TransactionKind::Chargeback.as_str()))
        .count()
        .get_result(conn)
        .await
        .unwrap()
}

fn ops() -> Actor {
    Actor::Staff(StaffId::new())
}

async fn top_up(
    w: &World,
    conn: &mut AsyncPgConnection,
    driver: DriverId,
    pence: i64,
) -> payments::TopUp {
    let key = format!("t-{}", uuid::Uuid::new_v4());
    payments::top_up_wallet(conn, &w.env, driver, Money::gbp(pence), &key)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_chargeback_is_held_then_taken_suspends_cover_and_is_given_back_when_won() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    let topped = top_up(&w, &mut conn, driver, 2000).await;
    let pi = topped.payment_intent_id.clone().unwrap();
    let (car, enrolment) = car_enrolled(&w, &mut conn, driver).await;
    let price = ride_and_pay(&w, &mut conn, driver, car, "s-1", 60).await;
    assert!(price > 0);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(2000 - price));
    let clearing_before = bal(&mut conn, SystemAccount::StripeClearing).await;

    // The bank opens a dispute: the amount is held, nothing moves yet.
    let opened = w.stripe.open_dispute(&pi, &[]).await.unwrap();
    let dp = opened["id"].as_str().unwrap().to_owned();
    assert!(dp.starts_with("dp_"), "{dp}");
    let applied = deliver_and_apply(
        &w,
        &mut conn,
        &dispute_event(&w, "charge.dispute.created", &dp).await,
    )
    .await;
    assert_eq!(applied.status, "processed", "{:?}", applied.flagged_reason);
    let holds = payments::chargeback_holds(&mut conn, &[driver])
        .await
        .unwrap();
    assert_eq!(holds.get(&driver), Some(&Money::gbp(2000)));
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(2000 - price));
    let listed = payments::list_chargebacks(&mut conn, 50).await.unwrap();
    assert_eq!(listed.len(), 1);
    let chargeback = &listed[0];
    assert_eq!(chargeback.stripe_dispute_id, dp);
    assert_eq!(chargeback.top_up_id, topped.id);
    assert_eq!(chargeback.driver_id, driver);
    assert_eq!(chargeback.stripe_status, "needs_response");
    assert_eq!(chargeback.reason, "fraudulent");
    assert!(chargeback.evidence_due_by.is_some());
    assert!(chargeback.id.to_string().starts_with("cbk_"));
    // The wallet shows it held: available less by the disputed amount.
    let position = payments::wallet_position(&mut conn, driver, w.clock.now())
        .await
        .unwrap();
    assert_eq!(position.posted, Money::gbp(2000 - price));
    let held: Vec<_> = position
        .holds
        .iter()
        .filter(|h| h.kind == payments::HoldKind::Chargeback)
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].cause_id, chargeback.id.to_string());
    assert_eq!(position.available, Money::gbp(2000 - price - 2000));

    // A disputed top-up is not refunded.
    let err = payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::TopUp(topped.id),
            amount: Money::gbp(100),
            reason: "Goodwill".into(),
            actor: ops(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "NOT_REFUNDABLE");
    assert!(err.to_string().contains("disputed"), "{err}");

    // Stripe withdraws the amount and its fee: the wallet owes the price of the ride.
    w.stripe.move_dispute(&dp, "withdraw", &[]).await.unwrap();
    let applied = deliver_and_apply(
        &w,
        &mut conn,
        &dispute_event(&w, "charge.dispute.funds_withdrawn", &dp).await,
    )
    .await;
    assert_eq!(applied.status, "processed", "{:?}", applied.flagged_reason);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(-price));
    // The driver's statement shows the money taken back as a chargeback.
    let statement = payments::wallet_history(&mut conn, driver, None, 10)
        .await
        .unwrap();
    assert_eq!(
        statement.entries[0].kind,
        payments::WalletEntryKind::Chargeback
    );
    assert_eq!(statement.entries[0].amount, Money::gbp(-2000));
    assert!(
        payments::chargeback_holds(&mut conn, &[driver])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(bal(&mut conn, SystemAccount::DisputeFees).await, 2000);
    assert_eq!(
        bal(&mut conn, SystemAccount::StripeClearing).await,
        clearing_before - 4000
    );
    let enrolments = cover::list_enrolments(&mut conn, driver).await.unwrap();
    let now = enrolments.iter().find(|e| e.id == enrolment.id).unwrap();
    assert_eq!(now.status, EnrolmentStatus::Suspended);
    assert_eq!(
        now.status_reason.as_deref(),
        Some(payments::CHARGEBACK_SUSPEND_REASON)
    );
    let refused = start(&w, &mut conn, driver, car, "s-2").await.unwrap_err();
    assert_eq!(refused.code(), Some("ENROLMENT_SUSPENDED"));

    // Evidence goes in; then the dispute is won and Stripe gives the money and the fee back.
    w.stripe.move_dispute(&dp, "respond", &[]).await.unwrap();
    let applied = deliver_and_apply(
        &w,
        &mut conn,
        &dispute_event(&w, "charge.dispute.updated", &dp).await,
    )
    .await;
    assert_eq!(applied.status, "processed");
    assert_eq!(
        payments::list_chargebacks(&mut conn, 50).await.unwrap()[0].stripe_status,
        "under_review"
    );
    w.stripe
        .move_dispute(&dp, "reinstate", &[("return_fee", "true")])
        .await
        .unwrap();
    for kind in ["charge.dispute.funds_reinstated", "charge.dispute.closed"] {
        let applied = deliver_and_apply(&w, &mut conn, &dispute_event(&w, kind, &dp).await).await;
        assert_eq!(
            applied.status, "processed",
            "{kind}: {:?}",
            applied.flagged_reason
        );
    }
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(2000 - price));
    assert_eq!(bal(&mut conn, SystemAccount::DisputeFees).await, 0);
    assert_eq!(
        bal(&mut conn, SystemAccount::StripeClearing).await,
        clearing_before
    );
    let won = &payments::list_chargebacks(&mut conn, 50).await.unwrap()[0];
    assert_eq!(won.stripe_status, "won");
    assert!(won.withdrawn_transaction_id.is_some());
    assert!(won.reinstated_transaction_id.is_some());
    assert_eq!(won.fee, Money::gbp(0));
    let enrolments = cover::list_enrolments(&mut conn, driver).await.unwrap();
    assert_eq!(
        enrolments
            .iter()
            .find(|e| e.id == enrolment.id)
            .unwrap()
            .status,
        EnrolmentStatus::Active
    );
    let restarted = start(&w, &mut conn, driver, car, "s-3").await.unwrap();
    assert!(restarted.session.is_active());
    // Won: the top-up is the driver's again and can be refunded.
    let refund = payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::TopUp(topped.id),
            amount: Money::gbp(100),
            reason: "Goodwill".into(),
            actor: ops(),
        },
    )
    .await
    .unwrap();
    assert_eq!(refund.status, RefundStatus::Succeeded);
    assert_eq!(chargeback_transactions(&mut conn).await, 2);
    assert_all_clean(&mut conn).await;
}

#[tokio::test]
async fn a_top_up_after_a_lost_chargeback_clears_the_debt_and_reactivates_cover() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    let topped = top_up(&w, &mut conn, driver, 1000).await;
    let (car, enrolment) = car_enrolled(&w, &mut conn, driver).await;
    let price = ride_and_pay(&w, &mut conn, driver, car, "s-1", 60).await;
    let pi = topped.payment_intent_id.clone().unwrap();
    let dp = w.stripe.open_dispute(&pi, &[]).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    w.stripe.move_dispute(&dp, "withdraw", &[]).await.unwrap();
    w.stripe
        .move_dispute(&dp, "close", &[("status", "lost")])
        .await
        .unwrap();
    let applied = deliver_and_apply(
        &w,
        &mut conn,
        &dispute_event(&w, "charge.dispute.closed", &dp).await,
    )
    .await;
    assert_eq!(applied.status, "processed", "{:?}", applied.flagged_reason);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(-price));
    let suspended = cover::list_enrolments(&mut conn, driver).await.unwrap();
    assert_eq!(suspended[0].status, EnrolmentStatus::Suspended);
    // Lost: the top-up stays unrefundable.
    let err = payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::TopUp(topped.id),
            amount: Money::gbp(1),
            reason: "Goodwill".into(),
            actor: ops(),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "NOT_REFUNDABLE");

    // A top-up that brings the wallet back to zero or above clears the debt.
    top_up(&w, &mut conn, driver, price.max(500)).await;
    let back = cover::list_enrolments(&mut conn, driver).await.unwrap();
    let now = back.iter().find(|e| e.id == enrolment.id).unwrap();
    assert_eq!(now.status, EnrolmentStatus::Active, "{now:?}");
    assert!(w.balance(&mut conn, driver).await.minor >= 0);
    assert_all_clean(&mut conn).await;
}

#[tokio::test]
async fn dispute_events_twice_in_reverse_order_or_forged_end_with_the_same_balances() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let mut finals = Vec::new();
    for (n, phone) in [(0, PHONE), (1, OTHER_PHONE)] {
        let driver = w.driver(&mut conn, phone).await;
        w.save_card(&mut conn, driver, cards::VISA).await;
        let topped = top_up(&w, &mut conn, driver, 3000).await;
        let pi = topped.payment_intent_id.clone().unwrap();
        // Stripe's events, each captured as Stripe would have sent it at the time.
        let dp = w
            .stripe
            .open_dispute(
                &pi,
                &[("amount", "1200"), ("reason", "product_not_received")],
            )
            .await
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut events = vec![dispute_event(&w, "charge.dispute.created", &dp).await];
        w.stripe.move_dispute(&dp, "withdraw", &[]).await.unwrap();
        events.push(dispute_event(&w, "charge.dispute.funds_withdrawn", &dp).await);
        w.stripe.move_dispute(&dp, "respond", &[]).await.unwrap();
        events.push(dispute_event(&w, "charge.dispute.updated", &dp).await);
        w.stripe
            .move_dispute(&dp, "reinstate", &[("return_fee", "false")])
            .await
            .unwrap();
        events.push(dispute_event(&w, "charge.dispute.funds_reinstated", &dp).await);
        events.push(dispute_event(&w, "charge.dispute.closed", &dp).await);
        // A forged event: the dispute's id with a payload claiming it was lost, unreinstated.
        let mut forged = events[1].clone();
        forged["id"] = serde_json::json!(event_id());
        forged["data"]["object"]["status"] = serde_json::json!("lost");
        events.push(forged);
        if n == 1 {
            events.reverse();
        }
        for evt in &events {
            let applied = deliver_and_apply(&w, &mut conn, evt).await;
            assert_eq!(applied.status, "processed", "{:?}", applied.flagged_reason);
            // Redelivered: stored once.
            assert!(w.deliver(&mut conn, evt).await.duplicate);
            // The same payload under another event id: applied again, changing nothing more.
            let mut copy = evt.clone();
            copy["id"] = serde_json::json!(event_id());
            let applied = deliver_and_apply(&w, &mut conn, &copy).await;
            assert_eq!(applied.status, "processed", "{:?}", applied.flagged_reason);
        }
        w.run_jobs(&mut conn).await;
        let chargebacks = payments::chargebacks_of_driver(&mut conn, driver)
            .await
            .unwrap();
        assert_eq!(chargebacks.len(), 1);
        let cb = &chargebacks[0];
        assert_eq!(cb.stripe_status, "won");
        assert_eq!(cb.amount, Money::gbp(1200));
        assert_eq!(cb.fee, Money::gbp(2000));
        finals.push((
            w.balance(&mut conn, driver).await,
            cb.stripe_status.clone(),
            cb.withdrawn_transaction_id.is_some(),
            cb.reinstated_transaction_id.is_some(),
        ));
    }
    assert_eq!(finals[0], finals[1]);
    assert_eq!(finals[0].0, Money::gbp(3000));
    assert_eq!(chargeback_transactions(&mut conn).await, 4);
    assert_eq!(bal(&mut conn, SystemAccount::DisputeFees).await, 4000);

    // An event naming a dispute Stripe does not know is flagged.
    let ghost = event(
        &event_id(),
        "charge.dispute.created",
        serde_json::json!({ "id": "dp_forged0000001", "object": "dispute", "amount": 999999 }),
        unix_now(),
    );
    let applied = deliver_and_apply(&w, &mut conn, &ghost).await;
    assert_eq!(applied.status, "flagged");
    assert_eq!(chargeback_transactions(&mut conn).await, 4);
    assert_all_clean(&mut conn).await;
}

#[tokio::test]
async fn a_dispute_on_a_payment_we_never_made_is_flagged_and_books_nothing() {
    // Another ShiftCover database made the payment; this one never did.
    let elsewhere = World::new().await;
    let mut other = elsewhere.conn().await;
    let stranger = elsewhere.driver(&mut other, PHONE).await;
    elsewhere.save_card(&mut other, stranger, cards::VISA).await;
    let theirs = top_up(&elsewhere, &mut other, stranger, 1500).await;
    let pi = theirs.payment_intent_id.unwrap();
    let dp = elsewhere.stripe.open_dispute(&pi, &[]).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    elsewhere
        .stripe
        .move_dispute(&dp, "withdraw", &[])
        .await
        .unwrap();

    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    top_up(&w, &mut conn, driver, 1500).await;
    let applied = deliver_and_apply(
        &w,
        &mut conn,
        &dispute_event(&w, "charge.dispute.funds_withdrawn", &dp).await,
    )
    .await;
    assert_eq!(applied.status, "flagged");
    let reason = applied.flagged_reason.unwrap();
    assert!(reason.contains("unknown PaymentIntent"), "{reason}");
    assert!(
        payments::list_chargebacks(&mut conn, 50)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(chargeback_transactions(&mut conn).await, 0);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(1500));
    let flagged = payments::flagged_events(&mut conn, 10).await.unwrap();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0].id, applied.id);
    assert_all_clean(&mut conn).await;
}

#[tokio::test]
async fn a_dashboard_refund_debits_the_wallet_once_and_one_too_large_is_flagged() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    let topped = top_up(&w, &mut conn, driver, 2000).await;
    let pi = topped.payment_intent_id.clone().unwrap();

    let re = w.stripe.refund_in_dashboard(&pi, 500).await.unwrap();
    let re = re["id"].as_str().unwrap().to_owned();
    let events = [
        refund_event(&w, "refund.created", &re).await,
        charge_refunded(&w, &pi).await,
        charge_refunded(&w, &pi).await,
        refund_event(&w, "charge.refund.updated", &re).await,
    ];
    for evt in &events {
        let applied = deliver_and_apply(&w, &mut conn, evt).await;
        assert_eq!(applied.status, "processed", "{:?}", applied.flagged_reason);
    }
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(1500));
    let refunds = payments::list_refunds(&mut conn, driver).await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].stripe_refund_id.as_deref(), Some(re.as_str()));
    assert_eq!(refunds[0].reason, payments::OUTSIDE_REFUND_REASON);
    assert_eq!(refunds[0].status, RefundStatus::Succeeded);
    assert_eq!(refunds[0].amount, Money::gbp(500));
    assert_eq!(refunds[0].target, RefundTarget::TopUp(topped.id));
    // Our id is written on Stripe's refund, as on our own, so finance pairs them.
    let at_stripe = w.stripe.get(&format!("/v1/refunds/{re}")).await.unwrap();
    assert_eq!(
        at_stripe["metadata"]["refund_id"],
        refunds[0].id.to_string()
    );

    // The rest goes back by ops; then someone refunds again in the dashboard: there is nothing
    // left of the top-up to place it against, so a person is asked.
    let rest = payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::TopUp(topped.id),
            amount: Money::gbp(1500),
            reason: "Closing the account".into(),
            actor: ops(),
        },
    )
    .await
    .unwrap();
    assert_eq!(rest.status, RefundStatus::Succeeded);
    let extra = w.stripe.refund_in_dashboard(&pi, 300).await.unwrap();
    let extra = extra["id"].as_str().unwrap().to_owned();
    let applied = deliver_and_apply(
        &w,
        &mut conn,
        &refund_event(&w, "refund.created", &extra).await,
    )
    .await;
    assert_eq!(applied.status, "flagged");
    let reason = applied.flagged_reason.unwrap();
    assert!(
        reason.contains(&extra) && reason.contains("left"),
        "{reason}"
    );
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(0));
    assert_eq!(
        payments::list_refunds(&mut conn, driver)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_all_clean(&mut conn).await;
}

#[tokio::test]
async fn a_refund_that_fails_after_it_succeeded_credits_the_wallet_back_once() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    let topped = top_up(&w, &mut conn, driver, 2000).await;
    let pi = topped.payment_intent_id.clone().unwrap();
    let ours = payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::TopUp(topped.id),
            amount: Money::gbp(800),
            reason: "Duplicate top-up".into(),
            actor: ops(),
        },
    )
    .await
    .unwrap();
    assert_eq!(ours.status, RefundStatus::Succeeded);
    let dashboard = w.stripe.refund_in_dashboard(&pi, 200).await.unwrap();
    let dashboard = dashboard["id"].as_str().unwrap().to_owned();
    deliver_and_apply(&w, &mut conn, &charge_refunded(&w, &pi).await).await;
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(1000));

    // The card's bank returns both refunds.
    let re = ours.stripe_refund_id.clone().unwrap();
    w.stripe
        .fail_refund(&re, "expired_or_canceled_card")
        .await
        .unwrap();
    w.stripe
        .fail_refund(&dashboard, "lost_or_stolen_card")
        .await
        .unwrap();
    let events = [
        refund_event(&w, "refund.failed", &re).await,
        refund_event(&w, "charge.refund.updated", &re).await,
        refund_event(&w, "refund.updated", &dashboard).await,
        refund_event(&w, "refund.failed", &re).await,
    ];
    for evt in &events {
        let applied = deliver_and_apply(&w, &mut conn, evt).await;
        assert_eq!(applied.status, "processed", "{:?}", applied.flagged_reason);
    }
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(2000));
    let failed = payments::get_refund(&mut conn, ours.id).await.unwrap();
    assert_eq!(failed.status, RefundStatus::Failed);
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("expired_or_canceled_card")
    );
    let refunds = payments::list_refunds(&mut conn, driver).await.unwrap();
    assert!(
        refunds.iter().all(|r| r.status == RefundStatus::Failed),
        "{refunds:?}"
    );

    // What failed can be refunded again, all of it.
    let again = payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::TopUp(topped.id),
            amount: Money::gbp(2000),
            reason: "Closing the account".into(),
            actor: ops(),
        },
    )
    .await
    .unwrap();
    assert_eq!(again.status, RefundStatus::Succeeded);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(0));
    assert_all_clean(&mut conn).await;
}
