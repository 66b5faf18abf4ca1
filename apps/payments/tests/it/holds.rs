//! Holds and the available balance: refunds that cannot take promised money, the overdraft
//! limit enforced on running sessions, and automatic top-ups that are checked again.

use crate::sessions::{car_enrolled, car_enrolled_in, ride};
use crate::support::*;
use accounts::{Actor, DriverId, StaffId};
use chrono::Duration;
use cover::{EndReason, EnrolmentStatus, Funding, FundsCheck, SessionSource, StartCover};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use payments::{HoldKind, RefundRequest, RefundTarget, TopUpStatus, WalletFunds};
use shared::{Clock, Money};

fn ops() -> Actor {
    Actor::Staff(StaffId(uuid::Uuid::now_v7()))
}

async fn top_up(w: &World, conn: &mut AsyncPgConnection, driver: DriverId, pence: i64, key: &str) {
    let t = payments::top_up_wallet(conn, &w.env, driver, Money::gbp(pence), key)
        .await
        .unwrap();
    assert_eq!(t.status, TopUpStatus::Succeeded);
}

async fn first_top_up(conn: &mut AsyncPgConnection, driver: DriverId) -> Vec<payments::TopUp> {
    let mut all = payments::list_top_ups(conn, driver, 10).await.unwrap();
    all.sort_by_key(|t| t.created_at);
    all
}

fn refund_of(top_up: &payments::TopUp, pence: i64) -> RefundRequest {
    RefundRequest {
        target: RefundTarget::TopUp(top_up.id),
        amount: Money::gbp(pence),
        reason: "Driver asked to close their wallet".into(),
        actor: ops(),
    }
}

#[tokio::test]
async fn two_refunds_at_once_of_different_top_ups_cannot_take_the_same_money() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    top_up(&w, &mut conn, driver, 2000, "t-a").await;
    top_up(&w, &mut conn, driver, 2000, "t-b").await;
    let (car, _) = car_enrolled(&w, &mut conn, driver).await;
    let session = ride(&w, &mut conn, driver, car, "s-1", 60).await;
    let charge = session.charge.unwrap().total;
    payments::charge_session(&mut conn, &w.env, session.id)
        .await
        .unwrap();
    let posted = w.balance(&mut conn, driver).await;
    assert_eq!(posted.minor, 4000 - charge.minor);

    // Each refund alone fits in the wallet; both together would overdraw it.
    let tops = first_top_up(&mut conn, driver).await;
    let (mut c1, mut c2) = (w.conn().await, w.conn().await);
    let (r1, r2) = tokio::join!(
        payments::refund(&mut c1, &w.env, refund_of(&tops[0], 2000)),
        payments::refund(&mut c2, &w.env, refund_of(&tops[1], 2000)),
    );
    let (won, lost) = match (r1, r2) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
        other => panic!("exactly one refund should pass: {other:?}"),
    };
    assert_eq!(won.status, payments::RefundStatus::Succeeded);
    match lost {
        payments::PaymentsError::RefundTooLarge {
            refundable,
            limited_by,
        } => {
            assert_eq!(refundable.minor, 2000 - charge.minor);
            assert!(limited_by.contains("available"), "{limited_by}");
        }
        other => panic!("expected REFUND_TOO_LARGE, got {other:?}"),
    }
    let after = w.balance(&mut conn, driver).await;
    assert_eq!(after.minor, 2000 - charge.minor);
    assert!(!after.is_negative());
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn a_refund_while_on_cover_holds_back_the_charge_so_far() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    top_up(&w, &mut conn, driver, 2000, "t-1").await;
    let (car, _) = car_enrolled(&w, &mut conn, driver).await;
    let started = cover::start_session(
        &mut conn,
        &w.clock,
        &Default::default(),
        driver,
        StartCover {
            vehicle_id: car,
            product_id: None,
            quote_id: None,
            idempotency_key: "s-1".into(),
            source: SessionSource::Driver,
        },
        &WalletFunds,
    )
    .await
    .unwrap();
    w.clock.advance(Duration::minutes(185));

    // The running session's charge so far is held: what can be refunded is what is left.
    let position = payments::wallet_position(&mut conn, driver, w.clock.now())
        .await
        .unwrap();
    assert_eq!(position.posted, Money::gbp(2000));
    assert_eq!(position.holds.len(), 1);
    assert_eq!(position.holds[0].kind, HoldKind::RunningSession);
    assert_eq!(position.holds[0].cause_id, started.session.id.to_string());
    let so_far = position.holds[0].amount;
    assert!(so_far.minor > 0);
    assert_eq!(position.available.minor, 2000 - so_far.minor);
    let tops = first_top_up(&mut conn, driver).await;
    assert_eq!(
        payments::refundable_amount(&mut conn, RefundTarget::TopUp(tops[0].id), w.clock.now())
            .await
            .unwrap(),
        position.available
    );
    let too_much = payments::refund(&mut conn, &w.env, refund_of(&tops[0], 2000))
        .await
        .unwrap_err();
    assert_eq!(code(&too_much), "REFUND_TOO_LARGE");
    let refunded = payments::refund(
        &mut conn,
        &w.env,
        refund_of(&tops[0], position.available.minor),
    )
    .await
    .unwrap();
    assert_eq!(refunded.status, payments::RefundStatus::Succeeded);

    // The session ends and is charged: the wallet paid for the cover it gave.
    let ended = cover::end_session(
        &mut conn,
        &w.clock,
        driver,
        started.session.id,
        EndReason::Driver,
    )
    .await
    .unwrap()
    .session;
    assert_eq!(ended.charge.unwrap().total, so_far);
    // Ended, not yet charged: still held.
    let position = payments::wallet_position(&mut conn, driver, w.clock.now())
        .await
        .unwrap();
    assert_eq!(position.holds[0].kind, HoldKind::UnchargedSession);
    assert_eq!(position.available, Money::gbp(0));
    let charged = payments::charge_session(&mut conn, &w.env, ended.id)
        .await
        .unwrap();
    assert_eq!(charged.balance, Money::gbp(0));
    assert!(charged.balance.minor >= -payments::OVERDRAFT_LIMIT.minor);
    let position = payments::wallet_position(&mut conn, driver, w.clock.now())
        .await
        .unwrap();
    assert!(position.holds.is_empty());
    assert_ledger_clean(&mut conn).await;
}

/// A driver on private hire cover (the dearer product) with `pence` in the wallet and no
/// automatic top-up, on cover from now.
async fn on_hire_cover(w: &World, conn: &mut AsyncPgConnection, pence: i64) -> cover::CoverSession {
    let driver = w.driver(conn, PHONE).await;
    w.save_card(conn, driver, cards::VISA).await;
    top_up(w, conn, driver, pence, "t-1").await;
    let (car, _) = car_enrolled_in(w, conn, driver, true).await;
    cover::start_session(
        conn,
        &w.clock,
        &Default::default(),
        driver,
        StartCover {
            vehicle_id: car,
            product_id: None,
            quote_id: None,
            idempotency_key: "s-1".into(),
            source: SessionSource::Driver,
        },
        &WalletFunds,
    )
    .await
    .unwrap()
    .session
}

async fn notification_causes(conn: &mut AsyncPgConnection) -> Vec<String> {
    diesel::sql_query("SELECT cause FROM notifications ORDER BY cause")
        .load::<Cause>(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.cause)
        .collect()
}

#[derive(QueryableByName)]
struct Cause {
    #[diesel(sql_type = diesel::sql_types::Text)]
    cause: String,
}

/// What the drivers on private hire cover hold when cover starts (a little over its minimum).
const FUNDS: i64 = 600;

/// The limit a session's charge may reach: what the wallet held at its start plus the overdraft.
fn headroom(pence: i64) -> i64 {
    pence + payments::OVERDRAFT_LIMIT.minor
}

#[tokio::test]
async fn a_session_whose_wallet_runs_out_is_warned_then_ended_at_the_limit() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let session = on_hire_cover(&w, &mut conn, FUNDS).await;
    let driver = session.driver_id;
    let warning = format!("overdraft_warning:{}", session.id);
    let ended_text = format!("cover_ended_overdraft:{}", session.id);

    // Reviewed every 20 minutes, as the minute job would find it.
    let mut warned_at_charge = None;
    let mut ended = None;
    for _ in 0..(16 * 3) {
        w.clock.advance(Duration::minutes(20));
        let review = payments::enforce_overdraft(&mut conn, &w.env)
            .await
            .unwrap();
        let now = cover::get_session(&mut conn, session.id).await.unwrap();
        if warned_at_charge.is_none() && notification_causes(&mut conn).await.contains(&warning) {
            assert_eq!(review.warned, vec![session.id]);
            let so_far = cover::preview_charge(&mut conn, &now, w.clock.now())
                .await
                .unwrap()
                .breakdown
                .total;
            warned_at_charge = Some(so_far);
        }
        if !now.is_active() {
            assert_eq!(review.ended, vec![session.id]);
            ended = Some(now);
            break;
        }
    }
    let warned_at_charge = warned_at_charge.expect("the driver was warned");
    let ended = ended.expect("the session was ended");
    // Warned past 75% of the limit, before the end.
    assert!(
        warned_at_charge.minor > FUNDS + payments::OVERDRAFT_LIMIT.minor * 3 / 4,
        "{warned_at_charge}"
    );
    assert!(warned_at_charge.minor <= headroom(FUNDS));
    assert_eq!(ended.end_reason, Some(EndReason::OverdraftLimit));
    // Ended at the end of the last minute the wallet could pay for, not when the review ran.
    let total = ended.charge.unwrap().total;
    let per_minute = (ended.hourly_rate.minor + 59) / 60;
    assert!(total.minor <= headroom(FUNDS), "{total}");
    assert!(total.minor > headroom(FUNDS) - per_minute - 1, "{total}");
    assert_eq!(
        ended.ended_at.unwrap().timestamp() % 60,
        ended.started_at.timestamp() % 60
    );
    let causes = notification_causes(&mut conn).await;
    assert!(causes.contains(&ended_text), "{causes:?}");

    // The enrolment is suspended and cover cannot start again until the wallet is back.
    let enrolment = cover::get_enrolment(&mut conn, ended.enrolment_id)
        .await
        .unwrap();
    assert_eq!(enrolment.status, EnrolmentStatus::Suspended);
    assert_eq!(
        enrolment.status_reason.as_deref(),
        Some(payments::SUSPEND_REASON)
    );

    // Charged into the overdraft, never past it.
    w.run_jobs(&mut conn).await;
    let balance = w.balance(&mut conn, driver).await;
    assert!(balance.is_negative());
    assert!(
        balance.minor >= -payments::OVERDRAFT_LIMIT.minor,
        "{balance}"
    );

    // A later review changes nothing.
    let again = payments::enforce_overdraft(&mut conn, &w.env)
        .await
        .unwrap();
    assert!(again.ended.is_empty() && again.warned.is_empty());
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn a_late_review_ends_the_session_where_a_punctual_one_would_have() {
    // One world reviewed every 5 minutes, another once, ten hours in: the same end, same charge.
    let mut results = Vec::new();
    let start = chrono::Utc::now();
    for step in [5, 600] {
        let w = World::new().await;
        // The same start for both: the locked rate depends on the time of day.
        w.clock.set(start);
        let mut conn = w.conn().await;
        let session = on_hire_cover(&w, &mut conn, FUNDS).await;
        let mut elapsed = 0;
        while elapsed < 600 {
            w.clock.advance(Duration::minutes(step));
            elapsed += step;
            payments::enforce_overdraft(&mut conn, &w.env)
                .await
                .unwrap();
        }
        let ended = cover::get_session(&mut conn, session.id).await.unwrap();
        assert_eq!(ended.end_reason, Some(EndReason::OverdraftLimit));
        results.push((
            ended.ended_at.unwrap() - ended.started_at,
            ended.charge.unwrap().total,
        ));
    }
    assert_eq!(results[0], results[1]);
}

#[tokio::test]
async fn an_automatic_top_up_on_its_way_keeps_the_session_running_until_it_is_stuck() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let session = on_hire_cover(&w, &mut conn, FUNDS).await;
    let driver = session.driver_id;
    // On until the charge so far passes the limit (nobody reviews meanwhile).
    loop {
        w.clock.advance(Duration::minutes(10));
        let so_far = cover::preview_charge(&mut conn, &session, w.clock.now())
            .await
            .unwrap()
            .breakdown
            .total;
        if so_far.minor > headroom(FUNDS) {
            break;
        }
    }
    // Now the driver turns on automatic top-up; its job never runs (Stripe unreachable, say).
    payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        true,
        Money::gbp(500),
        Money::gbp(2000),
    )
    .await
    .unwrap();
    let waiting = payments::waiting_auto_top_up(&mut conn, driver)
        .await
        .unwrap()
        .expect("an automatic top-up was scheduled");
    assert_eq!(waiting.status, TopUpStatus::Created);
    let review = payments::enforce_overdraft(&mut conn, &w.env)
        .await
        .unwrap();
    assert!(review.ended.is_empty());
    assert!(
        cover::get_session(&mut conn, session.id)
            .await
            .unwrap()
            .is_active()
    );
    assert!(
        payments::auto_top_up_available(&mut conn, driver, w.clock.now())
            .await
            .unwrap()
    );
    // Once stuck it no longer counts, and the session ends when it became stuck.
    w.clock
        .advance(Duration::minutes(payments::STUCK_AFTER_MINUTES + 7));
    assert!(
        !payments::auto_top_up_available(&mut conn, driver, w.clock.now())
            .await
            .unwrap()
    );
    let review = payments::enforce_overdraft(&mut conn, &w.env)
        .await
        .unwrap();
    assert_eq!(review.ended, vec![session.id]);
    let ended = cover::get_session(&mut conn, session.id).await.unwrap();
    let stuck_at = waiting.created_at + Duration::minutes(payments::STUCK_AFTER_MINUTES);
    assert_eq!(ended.ended_at.unwrap(), stuck_at);
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn a_stuck_automatic_top_up_does_not_keep_cover_starting() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        true,
        Money::gbp(500),
        Money::gbp(2000),
    )
    .await
    .unwrap();
    let waiting = payments::waiting_auto_top_up(&mut conn, driver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        WalletFunds
            .can_pay(&mut conn, driver, Money::gbp(300))
            .await
            .unwrap(),
        Funding::Ok
    );
    // Made long ago and never charged.
    diesel::sql_query(
        "UPDATE top_ups SET created_at = created_at - interval '31 minutes' WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(waiting.id.uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        WalletFunds
            .can_pay(&mut conn, driver, Money::gbp(300))
            .await
            .unwrap(),
        Funding::InsufficientFunds {
            available: Some(Money::gbp(0))
        }
    );
}

#[tokio::test]
async fn the_automatic_top_up_checks_again_before_charging() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        true,
        Money::gbp(500),
        Money::gbp(2000),
    )
    .await
    .unwrap();
    let scheduled = payments::waiting_auto_top_up(&mut conn, driver)
        .await
        .unwrap()
        .unwrap();
    // The driver tops up by hand before the job runs: the automatic one is not charged.
    top_up(&w, &mut conn, driver, 1000, "manual").await;
    assert_eq!(w.run_jobs(&mut conn).await, 1);
    let canceled = payments::find_top_up(&mut conn, scheduled.id)
        .await
        .unwrap();
    assert_eq!(canceled.status, TopUpStatus::Canceled);
    assert_eq!(canceled.failure_code.as_deref(), Some("not_needed"));
    assert_eq!(w.stripe_intents(&mut conn, driver).await.len(), 1);
    assert_eq!(w.balance(&mut conn, driver).await, Money::gbp(1000));

    // Below the threshold again, then auto top-up turned off before the job runs.
    let (car, _) = car_enrolled(&w, &mut conn, driver).await;
    let session = ride(&w, &mut conn, driver, car, "s-1", 240).await;
    let charged = payments::charge_session(&mut conn, &w.env, session.id)
        .await
        .unwrap();
    let again = charged.auto_top_up.expect("a new automatic top-up");
    payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        false,
        Money::gbp(500),
        Money::gbp(2000),
    )
    .await
    .unwrap();
    w.run_jobs(&mut conn).await;
    let off = payments::find_top_up(&mut conn, again).await.unwrap();
    assert_eq!(off.status, TopUpStatus::Canceled);
    assert_eq!(off.failure_code.as_deref(), Some("auto_top_up_off"));
    assert_eq!(w.stripe_intents(&mut conn, driver).await.len(), 1);
    assert_ledger_clean(&mut conn).await;
}
