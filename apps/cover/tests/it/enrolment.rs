//! Enrolment rules, status changes, cancellation and eligibility codes.

use crate::support::*;
use accounts::{Actor, VehicleType};
use chrono::Duration;
use cover::{
    AWAITING_PAYMENT_METHOD, CoverEventKind, EndReason, EnrolInput, EnrolmentStatus, Funding,
    SessionSource, SessionStatus, StartCover,
};
use shared::{Clock, Money};
use testkit::TestDb;

#[tokio::test]
async fn enrolment_is_refused_with_a_reason_the_driver_can_act_on() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let me = driver(&mut conn, &clock, PHONE).await;
    let car = vehicle(&mut conn, &clock, me, VehicleType::Car, Some("AB12CDE")).await;
    let van = vehicle(&mut conn, &clock, me, VehicleType::Van, Some("VN12ABC")).await;
    let other = driver(&mut conn, &clock, OTHER_PHONE).await;
    let theirs = vehicle(&mut conn, &clock, other, VehicleType::Car, Some("XY12ZZZ")).await;
    let funds = TestFunds::ok();
    let input = |product_id, vehicle_id, accept_terms| EnrolInput {
        product_id,
        vehicle_id,
        accept_terms,
    };

    let cases = [
        (input(food.product_id, car.id, false), "TERMS_NOT_ACCEPTED"),
        (
            input(pricing::ProductId::new(), car.id, true),
            "PRODUCT_NOT_FOUND",
        ),
        (input(food.product_id, theirs.id, true), "VEHICLE_NOT_FOUND"),
        (input(food.product_id, van.id, true), "VEHICLE_NOT_COVERED"),
    ];
    for (i, expected) in cases {
        let err = cover::enrol(&mut conn, &clock, me, i, &funds)
            .await
            .unwrap_err();
        assert_eq!(code(&err), expected);
    }
    let err = cover::enrol(
        &mut conn,
        &clock,
        me,
        input(food.product_id, van.id, true),
        &funds,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.user_error().unwrap().field.as_deref(),
        Some("vehicleId")
    );

    let enrolment = cover::enrol(
        &mut conn,
        &clock,
        me,
        input(food.product_id, car.id, true),
        &funds,
    )
    .await
    .unwrap();
    let err = cover::enrol(
        &mut conn,
        &clock,
        me,
        input(food.product_id, car.id, true),
        &funds,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "ALREADY_ENROLLED");

    // Once cancelled, the driver may enrol again.
    let cancelled = cover::cancel_enrolment(
        &mut conn,
        &clock,
        enrolment.id,
        "moving abroad",
        Actor::Driver(me),
    )
    .await
    .unwrap();
    assert!(cancelled.changed && cancelled.ended_session.is_none());
    cover::enrol(
        &mut conn,
        &clock,
        me,
        input(food.product_id, car.id, true),
        &funds,
    )
    .await
    .unwrap();
    assert_eq!(
        cover::list_enrolments(&mut conn, me).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn a_driver_without_a_way_to_pay_is_pending_until_they_can() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let me = driver(&mut conn, &clock, PHONE).await;
    let car = vehicle(&mut conn, &clock, me, VehicleType::Car, Some("AB12CDE")).await;
    let funds = TestFunds::new(Funding::NoPaymentMethod);
    let enrolment = cover::enrol(
        &mut conn,
        &clock,
        me,
        EnrolInput {
            product_id: food.product_id,
            vehicle_id: car.id,
            accept_terms: true,
        },
        &funds,
    )
    .await
    .unwrap();
    assert_eq!(enrolment.status, EnrolmentStatus::Pending);
    assert_eq!(
        enrolment.status_reason.as_deref(),
        Some(AWAITING_PAYMENT_METHOD)
    );

    let start = |key: &str| StartCover {
        vehicle_id: car.id,
        product_id: None,
        quote_id: None,
        idempotency_key: key.into(),
        source: SessionSource::Driver,
    };
    let settings = cover_settings();
    let err = cover::start_session(&mut conn, &clock, &settings, me, start("a"), &funds)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NO_PAYMENT_METHOD");
    funds.set(Funding::InsufficientFunds {
        available: Some(Money::gbp(10)),
    });
    let err = cover::start_session(&mut conn, &clock, &settings, me, start("b"), &funds)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INSUFFICIENT_FUNDS");

    // The card is saved: starting cover activates the enrolment in the same transaction.
    funds.set(Funding::Ok);
    let started = cover::start_session(&mut conn, &clock, &settings, me, start("c"), &funds)
        .await
        .unwrap();
    let now = cover::get_enrolment(&mut conn, enrolment.id).await.unwrap();
    assert_eq!(now.status, EnrolmentStatus::Active);
    assert_eq!(now.status_reason, None);
    assert_eq!(started.session.enrolment_id, enrolment.id);
    let history = cover::list_enrolment_events(&mut conn, enrolment.id)
        .await
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| (e.from_status, e.to_status))
            .collect::<Vec<_>>(),
        vec![
            (None, EnrolmentStatus::Pending),
            (Some(EnrolmentStatus::Pending), EnrolmentStatus::Active),
        ]
    );
}

#[tokio::test]
async fn suspension_blocks_new_cover_and_reactivation_restores_it() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let (me, car, enrolment) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let funds = TestFunds::ok();
    let settings = cover_settings();

    let err = cover::suspend(&mut conn, &clock, enrolment.id, "  ", Actor::System)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_REASON");
    let suspended = cover::suspend(
        &mut conn,
        &clock,
        enrolment.id,
        "auto_top_up_failed",
        Actor::System,
    )
    .await
    .unwrap();
    assert!(suspended.changed);
    assert_eq!(suspended.enrolment.status, EnrolmentStatus::Suspended);
    assert_eq!(
        suspended.enrolment.status_reason.as_deref(),
        Some("auto_top_up_failed")
    );
    assert_eq!(suspended.events[0].kind, CoverEventKind::Suspended);
    let again = cover::suspend(&mut conn, &clock, enrolment.id, "again", Actor::System)
        .await
        .unwrap();
    assert!(!again.changed);

    let err = cover::check_eligibility(&mut conn, &clock, me, car.id, None, &funds)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ENROLMENT_SUSPENDED");
    let err = cover::start_session(
        &mut conn,
        &clock,
        &settings,
        me,
        StartCover {
            vehicle_id: car.id,
            product_id: None,
            quote_id: None,
            idempotency_key: "x".into(),
            source: SessionSource::Driver,
        },
        &funds,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "ENROLMENT_SUSPENDED");

    let back = cover::reactivate(
        &mut conn,
        &clock,
        enrolment.id,
        "card_updated",
        Actor::System,
    )
    .await
    .unwrap();
    assert_eq!(back.enrolment.status, EnrolmentStatus::Active);
    let eligible = cover::check_eligibility(&mut conn, &clock, me, car.id, None, &funds)
        .await
        .unwrap();
    assert_eq!(eligible.enrolment.id, enrolment.id);
    assert_eq!(eligible.version.id, food.id);
    assert_eq!(audit_rows(&mut conn, "enrolment.suspended").await.len(), 1);
    assert_eq!(audit_rows(&mut conn, "enrolment.activated").await.len(), 1);
}

#[tokio::test]
async fn eligibility_names_what_is_missing() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, hire) = products(&mut conn).await;
    let me = driver(&mut conn, &clock, PHONE).await;
    let car = vehicle(&mut conn, &clock, me, VehicleType::Car, Some("AB12CDE")).await;
    let funds = TestFunds::ok();

    let err = cover::check_eligibility(&mut conn, &clock, me, car.id, None, &funds)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_ENROLLED");
    cover::enrol(
        &mut conn,
        &clock,
        me,
        EnrolInput {
            product_id: food.product_id,
            vehicle_id: car.id,
            accept_terms: true,
        },
        &funds,
    )
    .await
    .unwrap();
    let err =
        cover::check_eligibility(&mut conn, &clock, me, car.id, Some(hire.product_id), &funds)
            .await
            .unwrap_err();
    assert_eq!(code(&err), "NOT_ENROLLED");
    let err = cover::check_eligibility(
        &mut conn,
        &clock,
        me,
        accounts::VehicleId::new(),
        None,
        &funds,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "VEHICLE_NOT_FOUND");
    let van = vehicle(&mut conn, &clock, me, VehicleType::Van, Some("VN12ABC")).await;
    let err = cover::check_eligibility(&mut conn, &clock, me, van.id, None, &funds)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "VEHICLE_NOT_COVERED");
    funds.set(Funding::NoPaymentMethod);
    let err = cover::check_eligibility(&mut conn, &clock, me, car.id, None, &funds)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NO_PAYMENT_METHOD");
    funds.set(Funding::InsufficientFunds { available: None });
    let err = cover::check_eligibility(&mut conn, &clock, me, car.id, None, &funds)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INSUFFICIENT_FUNDS");
    funds.set(Funding::Ok);
    let ok = cover::check_eligibility(&mut conn, &clock, me, car.id, None, &funds)
        .await
        .unwrap();
    assert_eq!(ok.vehicle.id, car.id);
    assert!(ok.quote.hourly_rate.minor > 0);
}

#[tokio::test]
async fn cancelling_previews_and_then_ends_the_open_session() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let (me, car, enrolment) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let funds = TestFunds::ok();
    let settings = cover_settings();
    let start = |key: &str| StartCover {
        vehicle_id: car.id,
        product_id: None,
        quote_id: None,
        idempotency_key: key.into(),
        source: SessionSource::Driver,
    };

    // One session ended (not yet charged), one open.
    let s1 = cover::start_session(&mut conn, &clock, &settings, me, start("one"), &funds)
        .await
        .unwrap()
        .session;
    clock.advance(Duration::minutes(70));
    let c1 = cover::end_session(&mut conn, &clock, me, s1.id, EndReason::Driver)
        .await
        .unwrap()
        .session
        .charge
        .unwrap();
    clock.advance(Duration::minutes(10));
    let s2 = cover::start_session(&mut conn, &clock, &settings, me, start("two"), &funds)
        .await
        .unwrap()
        .session;
    clock.advance(Duration::minutes(45));

    let preview = cover::cancel_preview(&mut conn, &clock, &enrolment)
        .await
        .unwrap();
    assert_eq!(preview.open_session.as_ref().map(|s| s.id), Some(s2.id));
    let open_charge = preview.open_session_charge.unwrap();
    assert_eq!(open_charge.minutes, 45);
    assert_eq!(preview.uncharged_total, c1.total);
    assert_eq!(
        preview.total_due.minor,
        c1.total.minor + open_charge.breakdown.total.minor
    );

    let cancelled = cover::cancel_enrolment(
        &mut conn,
        &clock,
        enrolment.id,
        "no longer working",
        Actor::Driver(me),
    )
    .await
    .unwrap();
    assert_eq!(cancelled.enrolment.status, EnrolmentStatus::Cancelled);
    assert_eq!(cancelled.enrolment.cancelled_at, Some(clock.now()));
    let ended = cancelled.ended_session.unwrap();
    assert_eq!(ended.id, s2.id);
    assert_eq!(ended.status, SessionStatus::Ended);
    assert_eq!(ended.end_reason, Some(EndReason::EnrolmentCancelled));
    assert_eq!(ended.charge.unwrap().total, open_charge.breakdown.total);
    assert_eq!(cancelled.events[0].kind, CoverEventKind::Ended);
    let history = cover::list_enrolment_events(&mut conn, enrolment.id)
        .await
        .unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.to_status, EnrolmentStatus::Cancelled);
    assert_eq!(last.reason, "no longer working");
    assert_eq!(last.actor_type, "driver");

    let err = cover::start_session(&mut conn, &clock, &settings, me, start("three"), &funds)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_ENROLLED");
    let err = cover::reactivate(&mut conn, &clock, enrolment.id, "oops", Actor::System)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_ENROLMENT_STATUS");
}
