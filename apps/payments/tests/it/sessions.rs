//! Paying for cover from the wallet: session charges, the funds check, overdraft, suspension
//! and refunds of session charges.

use crate::support::*;
use accounts::{Actor, DriverId, NewVehicle, StaffId, VehicleType};
use chrono::Duration;
use cover::{
    EndReason, EnrolInput, EnrolmentStatus, Funding, FundsCheck, SessionSource, SessionStatus,
    StartCover,
};
use diesel_async::AsyncPgConnection;
use ledger::{AccountRef, SystemAccount};
use payments::{RefundRequest, RefundStatus, RefundTarget, TopUpStatus, WalletFunds};
use shared::{Clock, Currency, Money};

pub(crate) async fn car_enrolled(
    w: &World,
    conn: &mut AsyncPgConnection,
    driver: DriverId,
) -> (accounts::VehicleId, cover::Enrolment) {
    car_enrolled_in(w, conn, driver, false).await
}

/// A car of the driver's enrolled in a demo product: food delivery, or private hire (the dearer).
pub(crate) async fn car_enrolled_in(
    w: &World,
    conn: &mut AsyncPgConnection,
    driver: DriverId,
    private_hire: bool,
) -> (accounts::VehicleId, cover::Enrolment) {
    let mut versions = pricing::seed_demo_products(conn).await.unwrap();
    let hire = versions.pop().unwrap();
    let food = versions.pop().unwrap();
    let product = if private_hire { hire } else { food };
    let car = accounts::add_vehicle(
        conn,
        &w.clock,
        driver,
        NewVehicle {
            vehicle_type: VehicleType::Car,
            registration: Some("AB12CDE".into()),
            make: Some("Toyota".into()),
            model: Some("Prius".into()),
        },
    )
    .await
    .unwrap();
    let enrolment = cover::enrol(
        conn,
        &w.clock,
        driver,
        EnrolInput {
            product_id: product.product_id,
            vehicle_id: car.id,
            accept_terms: true,
        },
        &WalletFunds,
    )
    .await
    .unwrap();
    (car.id, enrolment)
}

pub(crate) async fn ride(
    w: &World,
    conn: &mut AsyncPgConnection,
    driver: DriverId,
    vehicle: accounts::VehicleId,
    key: &str,
    minutes: i64,
) -> cover::CoverSession {
    let started = cover::start_session(
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
    .unwrap();
    w.clock.advance(Duration::minutes(minutes));
    cover::end_session(
        conn,
        &w.clock,
        driver,
        started.session.id,
        EndReason::Driver,
    )
    .await
    .unwrap()
    .session
}

#[tokio::test]
async fn several_drivers_asked_at_once_get_the_answers_they_get_one_at_a_time() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let no_card = w.driver(&mut conn, PHONE).await;
    let empty = w.driver(&mut conn, "07911 123457").await;
    w.save_card(&mut conn, empty, cards::VISA).await;
    let funded = w.driver(&mut conn, "07911 123458").await;
    w.save_card(&mut conn, funded, cards::VISA).await;
    payments::top_up_wallet(&mut conn, &w.env, funded, Money::gbp(5000), "t-1")
        .await
        .unwrap();
    let asks = [
        (no_card, Money::gbp(300)),
        (empty, Money::gbp(300)),
        (funded, Money::gbp(300)),
        (funded, Money::gbp(6000)),
    ];
    let together = WalletFunds.can_pay_all(&mut conn, &asks).await.unwrap();
    assert_eq!(
        together,
        vec![
            Funding::NoPaymentMethod,
            Funding::InsufficientFunds {
                available: Some(Money::gbp(0))
            },
            Funding::Ok,
            Funding::InsufficientFunds {
                available: Some(Money::gbp(5000))
            },
        ]
    );
    for ((driver, amount), answer) in asks.iter().zip(&together) {
        assert_eq!(
            &WalletFunds
                .can_pay(&mut conn, *driver, *amount)
                .await
                .unwrap(),
            answer
        );
    }
}

#[tokio::test]
async fn a_session_is_charged_once_and_refunded_at_the_original_tax_rate() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;

    // No card and an empty wallet: cover says no.
    assert_eq!(
        WalletFunds
            .can_pay(&mut conn, driver, Money::gbp(300))
            .await
            .unwrap(),
        Funding::NoPaymentMethod
    );
    w.save_card(&mut conn, driver, cards::VISA).await;
    assert_eq!(
        WalletFunds
            .can_pay(&mut conn, driver, Money::gbp(300))
            .await
            .unwrap(),
        Funding::InsufficientFunds {
            available: Some(Money::gbp(0))
        }
    );
    payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(5000), "t-1")
        .await
        .unwrap();
    assert_eq!(
        WalletFunds
            .can_pay(&mut conn, driver, Money::gbp(300))
            .await
            .unwrap(),
        Funding::Ok
    );

    let (car, enrolment) = car_enrolled(&w, &mut conn, driver).await;
    assert_eq!(enrolment.status, EnrolmentStatus::Active);
    let session = ride(&w, &mut conn, driver, car, "s-1", 90).await;
    let charge = session.charge.unwrap();
    assert!(charge.total.minor > 0);

    let charged = payments::charge_session(&mut conn, &w.env, session.id)
        .await
        .unwrap();
    assert!(charged.newly_charged);
    assert_eq!(charged.balance, Money::gbp(5000 - charge.total.minor));
    let session_now = cover::get_session(&mut conn, session.id).await.unwrap();
    assert_eq!(session_now.status, SessionStatus::Charged);
    let again = payments::charge_session(&mut conn, &w.env, session.id)
        .await
        .unwrap();
    assert!(!again.newly_charged);
    assert_eq!(again.ledger_transaction_id, charged.ledger_transaction_id);
    assert_eq!(w.balance(&mut conn, driver).await, charged.balance);
    let ipt = AccountRef::system(SystemAccount::IptPayable, Currency::Gbp);
    assert_eq!(
        ledger::balance(&mut conn, &ipt).await.unwrap(),
        Money::gbp(-charge.ipt.minor)
    );

    // Half the charge back to the wallet: IPT goes back in the same proportion.
    let half = charge.total.minor / 2;
    let refund = payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::SessionCharge(session.id),
            amount: Money::gbp(half),
            reason: "Cover ended late because of an app fault".into(),
            actor: Actor::Staff(StaffId::new()),
        },
    )
    .await
    .unwrap();
    assert_eq!(refund.status, RefundStatus::Succeeded);
    assert!(refund.stripe_refund_id.is_none());
    assert_eq!(
        w.balance(&mut conn, driver).await,
        Money::gbp(5000 - charge.total.minor + half)
    );
    let ipt_left = -ledger::balance(&mut conn, &ipt).await.unwrap().minor;
    let exact_back =
        i128::from(charge.ipt.minor) * i128::from(half) / i128::from(charge.total.minor);
    assert!(
        (i128::from(charge.ipt.minor - ipt_left) - exact_back).abs() <= 1,
        "IPT reversed {} of {}, expected about {exact_back}",
        charge.ipt.minor - ipt_left,
        charge.ipt.minor
    );
    let err = payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target: RefundTarget::SessionCharge(session.id),
            amount: Money::gbp(charge.total.minor - half + 1),
            reason: "Too much".into(),
            actor: Actor::Staff(StaffId::new()),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "REFUND_TOO_LARGE");
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn a_charge_below_the_threshold_schedules_an_auto_top_up() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(1000), "t-1")
        .await
        .unwrap();
    payments::set_auto_top_up(
        &mut conn,
        &w.env,
        driver,
        true,
        Money::gbp(900),
        Money::gbp(2000),
    )
    .await
    .unwrap();
    assert!(
        payments::waiting_auto_top_up(&mut conn, driver)
            .await
            .unwrap()
            .is_none()
    );
    let (car, _) = car_enrolled(&w, &mut conn, driver).await;
    let session = ride(&w, &mut conn, driver, car, "s-1", 61).await;
    let charged = payments::charge_session(&mut conn, &w.env, session.id)
        .await
        .unwrap();
    assert!(charged.balance.minor < 900);
    let scheduled = charged.auto_top_up.unwrap();
    w.run_jobs(&mut conn).await;
    let top_up = payments::find_top_up(&mut conn, scheduled).await.unwrap();
    assert_eq!(top_up.status, TopUpStatus::Succeeded);
    assert_eq!(
        w.balance(&mut conn, driver).await,
        Money::gbp(charged.balance.minor + 2000)
    );
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn an_open_session_finishes_on_overdraft_and_suspension_waits_for_its_end() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    // A card the bank always wants the driver for: every automatic top-up will need them.
    w.save_card(&mut conn, driver, cards::THREE_D_SECURE).await;
    let t = payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(600), "t-1")
        .await
        .unwrap();
    w.stripe
        .authenticate_payment_intent(
            t.payment_intent_id.as_deref().unwrap(),
            t.client_secret.as_deref().unwrap(),
            true,
        )
        .await
        .unwrap();
    payments::refresh_top_up(&mut conn, &w.env, driver, t.id)
        .await
        .unwrap();
    let (car, enrolment) = car_enrolled(&w, &mut conn, driver).await;
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

    // A long session: the wallet cannot cover it; it still ends and is charged into overdraft.
    let session = ride(&w, &mut conn, driver, car, "s-1", 300).await;
    let total = session.charge.unwrap().total;
    assert!(total.minor > 600, "{total}");
    assert!(total.minor - 600 <= payments::OVERDRAFT_LIMIT.minor);
    let charged = payments::charge_session(&mut conn, &w.env, session.id)
        .await
        .unwrap();
    assert!(charged.balance.is_negative());
    assert!(
        payments::spendable(&mut conn, driver).await.unwrap().minor
            < payments::OVERDRAFT_LIMIT.minor
    );
    // The automatic top-up was scheduled; the card needs the driver; the enrolment is suspended.
    assert!(charged.auto_top_up.is_some());
    w.run_jobs(&mut conn).await;
    let waiting = payments::waiting_auto_top_up(&mut conn, driver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.status, TopUpStatus::NeedsDriver);
    let enrolment_now = cover::get_enrolment(&mut conn, enrolment.id).await.unwrap();
    assert_eq!(enrolment_now.status, EnrolmentStatus::Suspended);
    assert_eq!(
        enrolment_now.status_reason.as_deref(),
        Some(payments::SUSPEND_REASON)
    );
    assert_eq!(
        WalletFunds
            .can_pay(&mut conn, driver, Money::gbp(300))
            .await
            .unwrap(),
        Funding::InsufficientFunds {
            available: Some(charged.balance)
        }
    );

    // The driver finishes the top-up: the enrolment comes back.
    let finishing = payments::finish_top_up(&mut conn, &w.env, driver, waiting.id)
        .await
        .unwrap();
    w.stripe
        .authenticate_payment_intent(
            finishing.payment_intent_id.as_deref().unwrap(),
            finishing.client_secret.as_deref().unwrap(),
            true,
        )
        .await
        .unwrap();
    payments::refresh_top_up(&mut conn, &w.env, driver, waiting.id)
        .await
        .unwrap();
    let enrolment_now = cover::get_enrolment(&mut conn, enrolment.id).await.unwrap();
    assert_eq!(enrolment_now.status, EnrolmentStatus::Active);
    assert_ledger_clean(&mut conn).await;
}

#[tokio::test]
async fn no_suspension_while_a_session_runs() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(1000), "t-1")
        .await
        .unwrap();
    let (car, enrolment) = car_enrolled(&w, &mut conn, driver).await;
    // A first ride so a minimum charge is known.
    let first = ride(&w, &mut conn, driver, car, "s-1", 61).await;
    payments::charge_session(&mut conn, &w.env, first.id)
        .await
        .unwrap();
    // Now the card is replaced by one that needs the driver, and a second session starts.
    let sca = w.save_card(&mut conn, driver, cards::THREE_D_SECURE).await;
    payments::set_default_payment_method(&mut conn, driver, sca.id)
        .await
        .unwrap();
    let started = cover::start_session(
        &mut conn,
        &w.clock,
        &Default::default(),
        driver,
        StartCover {
            vehicle_id: car,
            product_id: None,
            quote_id: None,
            idempotency_key: "s-2".into(),
            source: SessionSource::Driver,
        },
        &WalletFunds,
    )
    .await
    .unwrap();
    // The wallet is drained (an ops refund of all but the running session's charge so far,
    // which is held) and the auto top-up fails mid-session.
    let top_up = payments::list_top_ups(&mut conn, driver, 10).await.unwrap();
    let target = RefundTarget::TopUp(top_up.last().unwrap().id);
    let refundable = payments::refundable_amount(&mut conn, target, w.clock.now())
        .await
        .unwrap();
    assert!(refundable.minor < w.balance(&mut conn, driver).await.minor);
    payments::refund(
        &mut conn,
        &w.env,
        RefundRequest {
            target,
            amount: refundable,
            reason: "Driver asked for the balance back".into(),
            actor: Actor::Staff(StaffId::new()),
        },
    )
    .await
    .unwrap();
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
    w.run_jobs(&mut conn).await;
    let waiting = payments::waiting_auto_top_up(&mut conn, driver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.status, TopUpStatus::NeedsDriver);
    assert_eq!(
        cover::get_enrolment(&mut conn, enrolment.id)
            .await
            .unwrap()
            .status,
        EnrolmentStatus::Active,
        "never suspended mid-session"
    );
    // When the session ends and is charged, it is.
    w.clock.advance(Duration::minutes(70));
    let _ = cover::end_session(
        &mut conn,
        &w.clock,
        driver,
        started.session.id,
        EndReason::Driver,
    )
    .await
    .unwrap();
    payments::charge_session(&mut conn, &w.env, started.session.id)
        .await
        .unwrap();
    assert_eq!(
        cover::get_enrolment(&mut conn, enrolment.id)
            .await
            .unwrap()
            .status,
        EnrolmentStatus::Suspended
    );
    assert_ledger_clean(&mut conn).await;
}

/// Quoting, starting and ending cover run for every request: each of their statements is
/// prepared once per connection and reused after that. (A statement diesel does not cache is
/// parsed and planned on every call, which costs the database more than running it.)
#[tokio::test]
async fn quoting_starting_and_ending_cover_prepare_each_statement_once_per_connection() {
    use diesel::connection::InstrumentationEvent;
    use diesel_async::AsyncConnection;
    use std::sync::{Arc, Mutex};

    let w = World::new().await;
    let mut conn = w.conn().await;
    let driver = w.driver(&mut conn, PHONE).await;
    w.save_card(&mut conn, driver, cards::VISA).await;
    payments::top_up_wallet(&mut conn, &w.env, driver, Money::gbp(5000), "t-1")
        .await
        .unwrap();
    let (car, enrolment) = car_enrolled(&w, &mut conn, driver).await;
    drop(conn);

    // A new connection, watched from the start: (prepared for the cache?, SQL without values).
    let mut conn = AsyncPgConnection::establish(w.db.url()).await.unwrap();
    let seen: Arc<Mutex<Vec<(bool, String)>>> = Arc::default();
    let log = Arc::clone(&seen);
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        let entry = match event {
            InstrumentationEvent::CacheQuery { sql, .. } => (true, sql.to_owned()),
            InstrumentationEvent::StartQuery { query, .. } => {
                let shown = query.to_string();
                let sql = shown.split(" -- binds: ").next().unwrap_or("").to_owned();
                (false, sql)
            }
            _ => return,
        };
        log.lock().unwrap().push(entry);
    });
    // Rounds an hour apart, past the gap rule: each starts a working period of its own, so both
    // run the same statements.
    let round = async |conn: &mut AsyncPgConnection, key: &str| {
        w.clock.advance(Duration::hours(1));
        pricing::create_quote(conn, &w.clock, driver, car, enrolment.product_id)
            .await
            .unwrap();
        ride(&w, conn, driver, car, key, 70).await
    };
    round(&mut conn, "first").await;
    let first = seen.lock().unwrap().len();
    let session = round(&mut conn, "second").await;
    assert!(session.charge.is_some());

    let seen = seen.lock().unwrap();
    let prepared: std::collections::HashSet<&str> = seen
        .iter()
        .filter(|(cached, _)| *cached)
        .map(|(_, sql)| sql.as_str())
        .collect();
    let run: Vec<&str> = seen[first..]
        .iter()
        .filter(|(cached, _)| !cached)
        .map(|(_, sql)| sql.as_str())
        .filter(|sql| {
            !["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"]
                .iter()
                .any(|word| sql.trim_start().starts_with(word))
        })
        .collect();
    assert!(run.len() >= 15, "only {} statements: {run:#?}", run.len());
    assert!(
        seen[first..].iter().all(|(cached, _)| !cached),
        "the second round prepared statements again"
    );
    let planned_each_time: Vec<&&str> =
        run.iter().filter(|sql| !prepared.contains(**sql)).collect();
    assert!(
        planned_each_time.is_empty(),
        "statements not prepared for reuse: {planned_each_time:#?}"
    );
}
