//! The whole journey: enrol, start cover, end it, and the charge pricing gives.

use crate::support::*;
use chrono::Duration;
use cover::{CoverEventKind, EndReason, EnrolmentStatus, SessionSource, SessionStatus, StartCover};
use pricing::ChargeRule;
use shared::Clock;
use shared::money::{Rounding, round_div};
use testkit::TestDb;

#[tokio::test]
async fn enrol_start_end_and_the_charge_is_the_pricing_apps() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let (driver_id, car, enrolment) =
        enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    assert_eq!(enrolment.status, EnrolmentStatus::Active);
    assert_eq!(enrolment.terms_version, food.terms.wording_version);
    assert_eq!(enrolment.terms_product_version_id, food.id);
    let history = cover::list_enrolment_events(&mut conn, enrolment.id)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].from_status, None);
    assert_eq!(history[0].to_status, EnrolmentStatus::Active);

    let funds = TestFunds::ok();
    let started = cover::start_session(
        &mut conn,
        &clock,
        &cover_settings(),
        driver_id,
        StartCover {
            vehicle_id: car.id,
            product_id: None,
            quote_id: None,
            idempotency_key: "start-1".into(),
            source: SessionSource::Driver,
        },
        &funds,
    )
    .await
    .unwrap();
    assert!(!started.replayed);
    let session = started.session;
    assert_eq!(started.events.len(), 1);
    assert_eq!(started.events[0].kind, CoverEventKind::Started);
    assert_eq!(started.events[0].session_id, Some(session.id));
    assert_eq!(session.status, SessionStatus::Active);
    assert_eq!(session.enrolment_id, enrolment.id);
    assert_eq!(session.product_version_id, food.id);
    assert_eq!(session.started_at, clock.now());
    assert_eq!(session.max_end_at, clock.now() + Duration::hours(16));
    assert!(session.charge.is_none());
    let quote = pricing::get_quote(&mut conn, session.quote_id)
        .await
        .unwrap();
    assert_eq!(quote.hourly_rate, session.hourly_rate);
    assert_eq!(quote.product_version_id, food.id);
    // The minimum charge at this rate is what the funds check was asked about.
    assert_eq!(
        funds.asked.lock().unwrap().last().copied(),
        Some(quote.minimum_charge)
    );
    assert_eq!(
        cover::active_session_for_driver(&mut conn, driver_id)
            .await
            .unwrap()
            .map(|s| s.id),
        Some(session.id)
    );

    // 90 minutes and 20 seconds: 91 started minutes, charged per minute after the first hour.
    clock.advance(Duration::seconds(90 * 60 + 20));
    let ended = cover::end_session(&mut conn, &clock, driver_id, session.id, EndReason::Driver)
        .await
        .unwrap();
    assert_eq!(ended.events.len(), 1);
    assert_eq!(ended.events[0].kind, CoverEventKind::Ended);
    let s = ended.session;
    assert_eq!(s.status, SessionStatus::Ended);
    assert_eq!(s.end_reason, Some(EndReason::Driver));
    assert_eq!(s.ended_at, Some(clock.now()));
    let charge = s.charge.unwrap();
    let expected = pricing::price_session(
        &food,
        session.hourly_rate,
        session.started_at,
        clock.now(),
        shared::Money::gbp(0),
    )
    .unwrap();
    assert_eq!(charge.minutes, 91);
    assert_eq!(charge.billed_minutes, 91);
    assert_eq!(charge.rule, ChargeRule::PerMinute);
    assert_eq!(charge.total, expected.breakdown.total);
    assert_eq!(charge.net_premium, expected.breakdown.net_premium);
    assert_eq!(charge.commission, expected.breakdown.commission);
    assert_eq!(charge.ipt, expected.breakdown.ipt);
    // And by hand: hourly × 91 / 60 rounded half up; IPT 12/112 of it, rounded down.
    let total = round_div(
        i128::from(session.hourly_rate.minor) * 91,
        60,
        Rounding::HalfUp,
    )
    .unwrap();
    assert_eq!(charge.total.minor, total);
    assert_eq!(
        charge.ipt.minor,
        round_div(i128::from(total) * 1200, 11_200, Rounding::Down).unwrap()
    );
    assert_eq!(
        charge.net_premium.minor + charge.commission.minor + charge.ipt.minor,
        total
    );
    assert_eq!((charge.ipt_rate_bp, charge.commission_bp), (1200, 2500));

    // The texts and the audit trail were written with the changes.
    let started_sms = notifications::find_by_cause(&mut conn, &format!("cover_started:{}", s.id))
        .await
        .unwrap()
        .unwrap();
    assert!(started_sms.body_text.contains(&s.certificate_number));
    assert!(started_sms.body_text.contains("AB12CDE"));
    assert_eq!(started_sms.recipient, "+447911123456");
    let ended_sms = notifications::find_by_cause(&mut conn, &format!("cover_ended:{}", s.id))
        .await
        .unwrap()
        .unwrap();
    assert!(
        ended_sms
            .body_text
            .contains(&format!("91 minutes, {}", charge.total)),
        "{}",
        ended_sms.body_text
    );
    let started_audit = audit_rows(&mut conn, "cover.session_started").await;
    assert_eq!(started_audit.len(), 1);
    assert_eq!(started_audit[0].0, "driver");
    assert_eq!(started_audit[0].2, s.id.to_string());
    let ended_audit = audit_rows(&mut conn, "cover.session_ended").await;
    assert_eq!(ended_audit.len(), 1);
    assert_eq!(ended_audit[0].3["total_minor"], charge.total.minor);
    assert_eq!(audit_rows(&mut conn, "enrolment.created").await.len(), 1);

    // Payments takes the charge.
    let charged = cover::mark_session_charged(&mut conn, &clock, s.id)
        .await
        .unwrap();
    assert_eq!(charged.status, SessionStatus::Charged);
    assert_eq!(charged.charged_at, Some(clock.now()));
    let again = cover::mark_session_charged(&mut conn, &clock, s.id)
        .await
        .unwrap();
    assert_eq!(again, charged);
}

#[tokio::test]
async fn a_short_session_pays_the_minimum_and_a_quote_locks_the_price() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let (driver_id, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let quote = pricing::create_quote(&mut conn, &clock, driver_id, car.id, food.product_id)
        .await
        .unwrap();

    // An expired quote is refused.
    clock.advance(Duration::minutes(16));
    let start = |key: &str| StartCover {
        vehicle_id: car.id,
        product_id: Some(food.product_id),
        quote_id: Some(quote.id),
        idempotency_key: key.into(),
        source: SessionSource::Driver,
    };
    let err = cover::start_session(
        &mut conn,
        &clock,
        &cover_settings(),
        driver_id,
        start("late"),
        &TestFunds::ok(),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "QUOTE_EXPIRED");

    clock.advance(Duration::minutes(-10));
    let session = cover::start_session(
        &mut conn,
        &clock,
        &cover_settings(),
        driver_id,
        start("in-time"),
        &TestFunds::ok(),
    )
    .await
    .unwrap()
    .session;
    assert_eq!(session.quote_id, quote.id);
    assert_eq!(session.hourly_rate, quote.hourly_rate);

    clock.advance(Duration::minutes(12));
    let s = cover::end_session(&mut conn, &clock, driver_id, session.id, EndReason::Driver)
        .await
        .unwrap()
        .session;
    let charge = s.charge.unwrap();
    assert_eq!((charge.minutes, charge.billed_minutes), (12, 60));
    assert_eq!(charge.rule, ChargeRule::Minimum);
    assert_eq!(charge.total, quote.minimum_charge);
}
