//! Shift events: batches out of order, duplicates, lateness, size, unknown drivers, cover status
//! and the sandbox.

use crate::support::{Harness, ev, t};
use chrono::Duration;
use cover::{EndReason, Funding, SessionStatus};
use partners::ShiftEventKind::*;
use partners::{
    EventCover, EventType, PartnerScope, PartnersError, ShiftEventStatus, Viewer, codes,
};
use shared::Clock as _;
use std::collections::HashMap;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn statuses(
    results: &[partners::ShiftEventResult],
) -> Vec<(String, ShiftEventStatus, Option<&'static str>)> {
    results
        .iter()
        .map(|r| (r.event_id.clone(), r.status, r.code))
        .collect()
}

#[tokio::test]
async fn a_day_out_of_order_with_duplicates_gives_the_sessions_and_charges_of_the_ordered_events() {
    let h = Harness::new().await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let mut conn = h.conn().await;
    let endpoint = partners::register_webhook_endpoint(
        &mut conn,
        &h.clock,
        &h.settings.partner_webhooks,
        h.partner,
        &format!("{}/hooks", receiver.uri()),
        &[EventType::CoverStarted, EventType::CoverEnded],
        None,
    )
    .await
    .unwrap();
    drop(conn);

    let d1 = h.driver("07911 100001").await;
    let d2 = h.driver("07911 100002").await;
    h.link(h.partner, d1, "drv-1").await;
    h.link(h.partner, d2, "drv-2").await;

    let day = |p: &str, x: &str| {
        vec![
            ev(&format!("{p}-e1"), x, JobAccepted, t(8, 0)),
            ev(&format!("{p}-e2"), x, JobCompleted, t(8, 40)),
            ev(&format!("{p}-e3"), x, JobAccepted, t(8, 45)),
            ev(&format!("{p}-e4"), x, JobCompleted, t(9, 30)),
            ev(&format!("{p}-e5"), x, Offline, t(9, 35)),
            ev(&format!("{p}-e6"), x, Online, t(12, 0)),
            ev(&format!("{p}-e7"), x, JobAccepted, t(12, 10)),
            ev(&format!("{p}-e8"), x, JobCompleted, t(12, 50)),
            ev(&format!("{p}-e9"), x, JobAccepted, t(13, 0)),
            ev(&format!("{p}-e10"), x, JobCompleted, t(13, 40)),
            ev(&format!("{p}-e11"), x, Offline, t(14, 0)),
        ]
    };
    let e = day("d1", "drv-1");

    // Driver 1: the day as it arrives, late, out of order and repeated.
    h.clock.set(t(8, 50));
    let r = h
        .send(h.partner, &[e[2].clone(), e[1].clone(), e[0].clone()])
        .await;
    assert!(
        r.iter().all(|r| r.status == ShiftEventStatus::Accepted),
        "{r:?}"
    );
    assert!(
        matches!(r[2].cover, Some(EventCover::Covered { .. })),
        "{r:?}"
    );
    let first = h.sessions(d1).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].started_at, t(8, 0));
    assert!(first[0].is_active());

    h.clock.set(t(9, 0));
    let r = h.send(h.partner, &[e[0].clone(), e[2].clone()]).await;
    assert_eq!(
        statuses(&r),
        vec![
            ("d1-e1".into(), ShiftEventStatus::Duplicate, None),
            ("d1-e3".into(), ShiftEventStatus::Duplicate, None)
        ]
    );
    assert_eq!(
        r[0].cover,
        Some(EventCover::Covered {
            session_id: first[0].id,
            continues: None,
        })
    );

    h.clock.set(t(9, 40));
    h.send(h.partner, &[e[4].clone(), e[3].clone()]).await;
    let s = h.sessions(d1).await;
    assert_eq!(
        s[0].scheduled_end_at,
        Some(t(10, 0)),
        "gap 10 + tail 15 after 09:35"
    );
    assert!(s[0].is_active());

    h.clock.set(t(12, 55));
    let mut conflicting = e[0].clone();
    conflicting.occurred_at = t(8, 5);
    let r = h
        .send(h.partner, &[e[7].clone(), e[5].clone(), conflicting])
        .await;
    assert_eq!(
        statuses(&r),
        vec![
            ("d1-e8".into(), ShiftEventStatus::Accepted, None),
            ("d1-e6".into(), ShiftEventStatus::Accepted, None),
            (
                "d1-e1".into(),
                ShiftEventStatus::Rejected,
                Some(codes::CONFLICTING_DUPLICATE)
            ),
        ]
    );
    assert_eq!(r[0].cover, Some(EventCover::Unchanged));

    h.clock.set(t(13, 5));
    h.send(h.partner, &[e[8].clone()]).await;
    let s = h.sessions(d1).await;
    assert_eq!(s.len(), 2);
    assert_eq!(s[1].started_at, t(13, 0));

    // The job accepted at 12:10 arrives an hour late: the active session starts then.
    h.clock.set(t(13, 10));
    h.send(h.partner, &[e[6].clone(), e[7].clone()]).await;
    let s = h.sessions(d1).await;
    assert_eq!(s.len(), 2);
    assert_eq!(s[1].started_at, t(12, 10));

    h.clock.set(t(14, 30));
    h.send(h.partner, &[e[10].clone(), e[9].clone(), e[10].clone()])
        .await;

    // Driver 2: the same day, in order, in one batch.
    let r = h.send(h.partner, &day("d2", "drv-2")).await;
    assert!(
        r.iter().all(|r| r.status == ShiftEventStatus::Accepted),
        "{r:?}"
    );

    let one = h.sessions(d1).await;
    let two = h.sessions(d2).await;
    assert_eq!(one.len(), 2);
    assert_eq!(two.len(), 2);
    let mut already = 0;
    for (a, b, (start, end)) in [
        (&one[0], &two[0], (t(8, 0), t(10, 0))),
        (&one[1], &two[1], (t(12, 10), t(14, 25))),
    ] {
        for s in [a, b] {
            assert_eq!(s.status, SessionStatus::Ended);
            assert_eq!(s.started_at, start);
            assert_eq!(s.ended_at, Some(end));
            assert_eq!(s.end_reason, Some(EndReason::GapRule));
            assert!(
                matches!(s.source, cover::SessionSource::Partner { partner_id, .. } if partner_id == h.partner.partner_id)
            );
        }
        let expected = pricing::price_session(
            &h.hire,
            a.hourly_rate,
            start,
            end,
            shared::Money {
                minor: already,
                currency: a.hourly_rate.currency,
            },
        )
        .unwrap();
        let charge_a = a.charge.unwrap();
        assert_eq!(charge_a.total, expected.breakdown.total);
        assert_eq!(charge_a.minutes, expected.minutes);
        assert_eq!(a.hourly_rate, b.hourly_rate);
        assert_eq!(a.charge, b.charge);
        already += charge_a.total.minor;
    }

    // Exactly one signed cover.started and one cover.ended per session.
    let ran = h.run_webhooks().await;
    assert_eq!(ran, 8);
    assert_eq!(h.run_webhooks().await, 0);
    let received = receiver.received_requests().await.unwrap();
    assert_eq!(received.len(), 8);
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for req in &received {
        let header = req
            .headers
            .get(partners::SIGNATURE_HEADER)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(partners::verify_signature(
            &endpoint.secret,
            header,
            &req.body,
            h.clock.now(),
            Duration::minutes(5)
        ));
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["livemode"], true);
        let key = (
            body["type"].as_str().unwrap().to_owned(),
            body["data"]["session_id"].as_str().unwrap().to_owned(),
        );
        *seen.entry(key).or_default() += 1;
    }
    for s in one.iter().chain(two.iter()) {
        for ty in ["cover.started", "cover.ended"] {
            assert_eq!(
                seen.get(&(ty.to_owned(), s.id.to_string())),
                Some(&1),
                "{ty} {}",
                s.id
            );
        }
    }
    let mut conn = h.conn().await;
    let deliveries = partners::list_deliveries(
        &mut conn,
        Viewer::Partner(h.partner),
        endpoint.endpoint.id,
        None,
        100,
    )
    .await
    .unwrap();
    assert_eq!(deliveries.len(), 8);
    assert!(
        deliveries
            .iter()
            .all(|d| d.status == partners::DeliveryStatus::Succeeded && d.attempts == 1)
    );
}

#[tokio::test]
async fn late_events_are_accepted_up_to_a_day_and_older_or_future_ones_rejected() {
    let h = Harness::new().await;
    let d = h.driver("07911 100011").await;
    h.link(h.partner, d, "late-1").await;
    h.clock.set(t(20, 0));
    let r = h
        .send(
            h.partner,
            &[
                ev("a", "late-1", Online, t(20, 0) - Duration::hours(23)),
                ev("b", "late-1", Online, t(20, 0) - Duration::hours(25)),
                ev("c", "late-1", Online, t(20, 10)),
                ev("d", "late-1", Online, t(20, 2)),
                ev("", "late-1", Online, t(20, 0)),
                ev("e", " ", Online, t(20, 0)),
            ],
        )
        .await;
    assert_eq!(
        statuses(&r),
        vec![
            ("a".into(), ShiftEventStatus::Accepted, None),
            (
                "b".into(),
                ShiftEventStatus::Rejected,
                Some(codes::EVENT_TOO_OLD)
            ),
            (
                "c".into(),
                ShiftEventStatus::Rejected,
                Some(codes::EVENT_IN_FUTURE)
            ),
            ("d".into(), ShiftEventStatus::Accepted, None),
            (
                "".into(),
                ShiftEventStatus::Rejected,
                Some(codes::INVALID_EVENT_ID)
            ),
            (
                "e".into(),
                ShiftEventStatus::Rejected,
                Some(codes::INVALID_EXTERNAL_DRIVER_ID)
            ),
        ]
    );
    // A rejected event can be sent again once it is valid: its id was not taken.
    let r = h
        .send(h.partner, &[ev("c", "late-1", Online, t(19, 59))])
        .await;
    assert_eq!(r[0].status, ShiftEventStatus::Accepted);
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_whole() {
    let h = Harness::new().await;
    let events: Vec<_> = (0..501)
        .map(|i| ev(&format!("x{i}"), "nobody", Online, t(7, 0)))
        .collect();
    let mut conn = h.conn().await;
    let err = partners::record_shift_events(
        &mut conn,
        &h.clock,
        &h.settings.cover,
        &h.funds,
        h.partner,
        &events,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some("BATCH_TOO_LARGE"));
    assert!(matches!(
        err,
        PartnersError::BatchTooLarge {
            size: 501,
            max: 500
        }
    ));
    let r = h.send(h.partner, &events[..500]).await;
    assert_eq!(r.len(), 500);
}

#[tokio::test]
async fn events_for_drivers_who_cannot_be_covered_answer_not_covered_and_tell_the_partner() {
    let h = Harness::new().await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let mut conn = h.conn().await;
    partners::register_webhook_endpoint(
        &mut conn,
        &h.clock,
        &h.settings.partner_webhooks,
        h.partner,
        &receiver.uri(),
        &[EventType::CoverNotCovered],
        None,
    )
    .await
    .unwrap();
    drop(conn);
    let d = h.driver("07911 100021").await;
    h.link(h.partner, d, "gone").await;
    let mut conn = h.conn().await;
    partners::unlink_by_partner(&mut conn, &h.clock, h.partner, "gone")
        .await
        .unwrap();
    drop(conn);
    let broke = h.driver("07911 100022").await;
    h.link(h.partner, broke, "broke").await;
    h.funds.set(Funding::InsufficientFunds { available: None });

    h.clock.set(t(9, 0));
    let r = h
        .send(
            h.partner,
            &[
                ev("u1", "nobody", JobAccepted, t(8, 55)),
                ev("u2", "gone", JobAccepted, t(8, 56)),
                ev("u3", "broke", JobAccepted, t(8, 57)),
            ],
        )
        .await;
    assert_eq!(
        statuses(&r),
        vec![
            (
                "u1".into(),
                ShiftEventStatus::Rejected,
                Some(codes::UNKNOWN_DRIVER)
            ),
            (
                "u2".into(),
                ShiftEventStatus::Rejected,
                Some(codes::NOT_LINKED)
            ),
            ("u3".into(), ShiftEventStatus::Accepted, None),
        ]
    );
    assert_eq!(
        r[0].cover,
        Some(EventCover::NotCovered {
            code: "UNKNOWN_DRIVER".into()
        })
    );
    assert_eq!(
        r[2].cover,
        Some(EventCover::NotCovered {
            code: "INSUFFICIENT_FUNDS".into()
        })
    );
    assert!(h.sessions(broke).await.is_empty());

    assert_eq!(h.run_webhooks().await, 3);
    let received = receiver.received_requests().await.unwrap();
    let mut reasons: Vec<String> = received
        .iter()
        .map(|req| {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(body["type"], "cover.not_covered");
            body["data"]["reason"].as_str().unwrap().to_owned()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["INSUFFICIENT_FUNDS", "NOT_LINKED", "UNKNOWN_DRIVER"]
    );

    // The same events again: duplicates and repeats, and no second webhook.
    let again = h
        .send(
            h.partner,
            &[
                ev("u1", "nobody", JobAccepted, t(8, 55)),
                ev("u3", "broke", JobAccepted, t(8, 57)),
            ],
        )
        .await;
    assert_eq!(again[0].code, Some(codes::UNKNOWN_DRIVER));
    assert_eq!(again[1].status, ShiftEventStatus::Duplicate);
    assert_eq!(h.run_webhooks().await, 0);
}

#[tokio::test]
async fn cover_status_answers_for_the_partners_own_drivers_with_proof() {
    let h = Harness::new().await;
    let other = h.other_partner().await;
    let d = h.driver("07911 100031").await;
    h.link(h.partner, d, "cs-1").await;
    h.link(other, d, "their-1").await;
    h.clock.set(t(10, 0));
    h.send(h.partner, &[ev("c1", "cs-1", JobAccepted, t(9, 30))])
        .await;
    let mut conn = h.conn().await;
    let status =
        partners::partner_cover_status(&mut conn, &h.clock, &h.settings, h.partner, "cs-1", None)
            .await
            .unwrap();
    assert!(status.covered);
    let session = status.session.clone().unwrap();
    assert_eq!(session.started_at, t(9, 30));
    assert_eq!(
        status.certificate_number.as_deref(),
        Some(session.certificate_number.as_str())
    );
    let key = cover::ProofKey::from_settings(&h.settings.cover).unwrap();
    let claims =
        cover::verify_token(&key.public_key(), status.proof_token.as_deref().unwrap()).unwrap();
    assert_eq!(claims.certificate_number, session.certificate_number);

    // Before the session: not covered. The other partner sees the same driver under its own id.
    let before = partners::partner_cover_status(
        &mut conn,
        &h.clock,
        &h.settings,
        h.partner,
        "cs-1",
        Some(t(9, 0)),
    )
    .await
    .unwrap();
    assert!(!before.covered);
    assert!(before.session.is_none());
    let theirs =
        partners::partner_cover_status(&mut conn, &h.clock, &h.settings, other, "their-1", None)
            .await
            .unwrap();
    assert!(theirs.covered);
    // Another partner's id for the driver, or an id never linked: unknown.
    for (scope, id) in [
        (h.partner, "their-1"),
        (other, "cs-1"),
        (h.partner, "nobody"),
    ] {
        let err = partners::partner_cover_status(&mut conn, &h.clock, &h.settings, scope, id, None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("UNKNOWN_DRIVER"));
    }
}

#[tokio::test]
async fn test_keys_act_on_test_data_only() {
    let h = Harness::new().await;
    let sandbox = PartnerScope::test(h.partner.partner_id);
    let d = h.driver("07911 100041").await;
    h.link(sandbox, d, "sb-1").await;
    h.clock.set(t(10, 0));
    let r = h
        .send(sandbox, &[ev("s1", "sb-1", JobAccepted, t(9, 30))])
        .await;
    assert_eq!(r[0].status, ShiftEventStatus::Accepted);
    assert_eq!(r[0].cover, Some(EventCover::Unchanged));
    assert!(
        h.sessions(d).await.is_empty(),
        "the sandbox starts no cover"
    );
    // Live keys do not see the test link, and test keys do not see live ones.
    let r = h
        .send(h.partner, &[ev("s1", "sb-1", JobAccepted, t(9, 30))])
        .await;
    assert_eq!(r[0].code, Some(codes::UNKNOWN_DRIVER));
    h.link(h.partner, d, "live-1").await;
    let mut conn = h.conn().await;
    let test_links = partners::list_links_for_partner(&mut conn, sandbox, None, 10)
        .await
        .unwrap();
    assert_eq!(test_links.len(), 1);
    assert_eq!(test_links[0].external_driver_id, "sb-1");
    let err = partners::get_link_for_partner(&mut conn, sandbox, "live-1")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UNKNOWN_DRIVER"));
    let status =
        partners::partner_cover_status(&mut conn, &h.clock, &h.settings, sandbox, "sb-1", None)
            .await
            .unwrap();
    assert!(!status.covered);
}

#[tokio::test]
async fn work_found_to_go_on_after_an_ended_session_is_covered_by_a_continuation() {
    let h = Harness::new().await;
    let d = h.driver("07911 100051").await;
    h.link(h.partner, d, "cont").await;
    h.clock.set(t(10, 0));
    h.send(
        h.partner,
        &[
            ev("k1", "cont", JobAccepted, t(9, 0)),
            ev("k2", "cont", JobCompleted, t(9, 10)),
        ],
    )
    .await;
    let s = h.sessions(d).await;
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].ended_at, Some(t(9, 35)));

    // A job accepted at 09:30 arrives late: work never stopped, so cover goes on from 09:35.
    h.clock.set(t(10, 5));
    let r = h
        .send(h.partner, &[ev("k3", "cont", JobAccepted, t(9, 30))])
        .await;
    let s = h.sessions(d).await;
    assert_eq!(s.len(), 2);
    assert_eq!(s[1].started_at, t(9, 35));
    assert!(s[1].is_active());
    assert_eq!(
        r[0].cover,
        Some(EventCover::Covered {
            session_id: s[0].id,
            continues: None,
        })
    );
    // An event in the continuation's time says which session it continues.
    let r = h
        .send(h.partner, &[ev("k4", "cont", JobAccepted, t(9, 45))])
        .await;
    assert_eq!(
        r[0].cover,
        Some(EventCover::Covered {
            session_id: s[1].id,
            continues: Some(s[0].id),
        })
    );

    // An event before the ended session cannot restate it: ops are told.
    h.send(h.partner, &[ev("k0", "cont", JobAccepted, t(8, 50))])
        .await;
    let s = h.sessions(d).await;
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].started_at, t(9, 0));
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use shared::schema::audit_log;
    let mut conn = h.conn().await;
    let flagged: i64 = audit_log::table
        .filter(audit_log::action.eq("partners.session_restatement_needed"))
        .filter(audit_log::subject_id.eq(s[0].id.to_string()))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(flagged >= 1);
}

#[tokio::test]
async fn partners_whose_cover_starts_online_are_covered_from_going_online() {
    let h = Harness::new().await;
    let d = h.driver("07911 100061").await;
    h.link(h.partner, d, "on").await;
    let mut conn = h.conn().await;
    partners::set_cover_start_rule(
        &mut conn,
        &h.clock,
        accounts::Actor::System,
        h.partner.partner_id,
        partners::CoverStartsOn::Online,
    )
    .await
    .unwrap();
    drop(conn);
    h.clock.set(t(10, 0));
    h.send(
        h.partner,
        &[
            ev("o2", "on", JobAccepted, t(9, 10)),
            ev("o1", "on", Online, t(9, 0)),
            ev("o3", "on", JobCompleted, t(9, 20)),
        ],
    )
    .await;
    let s = h.sessions(d).await;
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].started_at, t(9, 0));
    assert!(s[0].is_active(), "online and idle is still covered");
}

/// The fault suite's day: 10-minute jobs 30 minutes apart, each event arriving as it happens,
/// and no clock job ever running. A session whose gap-rule end has passed ended then: the next
/// job starts a session of its own instead of reopening it, and nothing stays open.
#[tokio::test]
async fn a_day_of_jobs_without_a_clock_tick_gives_one_session_per_job_and_none_left_open() {
    let h = Harness::new().await;
    let d = h.driver("07911 100071").await;
    h.link(h.partner, d, "day").await;
    // Jobs an hour apart: 50 minutes idle, longer than the gap rule and the tail together.
    let jobs: Vec<_> = (0..8)
        .map(|i| t(9, 0) + Duration::minutes(60 * i))
        .collect();
    for (i, start) in jobs.iter().enumerate() {
        h.clock.set(*start);
        h.send(
            h.partner,
            &[ev(&format!("a{i}"), "day", JobAccepted, *start)],
        )
        .await;
        let done = *start + Duration::minutes(10);
        h.clock.set(done + Duration::seconds(3));
        h.send(
            h.partner,
            &[ev(&format!("c{i}"), "day", JobCompleted, done)],
        )
        .await;
    }
    // The last job's end (gap rule and tail) passes; one more batch from the partner settles it.
    h.clock.set(t(17, 30));
    h.send(h.partner, &[ev("off", "day", Offline, t(17, 29))])
        .await;
    let sessions = h.sessions(d).await;
    assert_eq!(sessions.len(), jobs.len(), "{sessions:#?}");
    for (s, start) in sessions.iter().zip(&jobs) {
        assert_eq!(s.started_at, *start);
        // Completed + the gap rule (10) + the tail (15): before the next job began.
        assert_eq!(s.ended_at, Some(*start + Duration::minutes(35)), "{s:#?}");
        assert_eq!(s.status, SessionStatus::Ended);
        assert!(s.charge.is_some());
    }
    // Each ending queued its charge once.
    let mut conn = h.conn().await;
    let charges = testkit::count(
        &mut conn,
        "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'ChargeSession'",
    )
    .await
    .unwrap();
    assert_eq!(charges, i64::try_from(jobs.len()).unwrap());
}

/// A driver covering themself 10:00–11:00 whose partner reports a job at 10:30 late: the job
/// was covered already; its tail (the ride home) runs to 11:05, so cover goes on from 11:00 as
/// the same working period, and the driver pays 10:00–11:05 with one minimum.
#[tokio::test]
async fn a_late_job_inside_the_drivers_own_cover_is_not_covered_twice() {
    let h = Harness::new().await;
    let d = h.driver("07911 100081").await;
    h.link(h.partner, d, "own").await;
    let mut conn = h.conn().await;
    h.clock.set(t(10, 0));
    let own = cover::start_session(
        &mut conn,
        &h.clock,
        &h.settings.cover,
        d,
        cover::StartCover {
            vehicle_id: h.car(d).await,
            product_id: None,
            quote_id: None,
            idempotency_key: "own".into(),
            source: cover::SessionSource::Driver,
        },
        &h.funds,
    )
    .await
    .unwrap()
    .session;
    h.clock.set(t(11, 0));
    let ended = cover::end_session(&mut conn, &h.clock, d, own.id, EndReason::Driver)
        .await
        .unwrap();
    assert_eq!(ended.session.charge.unwrap().billed_minutes, 60);
    h.clock.set(t(12, 0));
    let r = h
        .send(
            h.partner,
            &[
                ev("j1", "own", JobAccepted, t(10, 30)),
                ev("j2", "own", JobCompleted, t(10, 40)),
            ],
        )
        .await;
    assert_eq!(r[0].status, ShiftEventStatus::Accepted);
    let sessions = h.sessions(d).await;
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    assert_eq!(sessions[0].id, own.id);
    assert_eq!(sessions[0].ended_at, Some(t(11, 0)));
    let tail = &sessions[1];
    assert_eq!((tail.started_at, tail.ended_at), (t(11, 0), Some(t(11, 5))));
    let charge = tail.charge.unwrap();
    // One minimum for the period: the 5 minutes after the driver's hour, no second hour.
    assert_eq!((charge.minutes, charge.billed_minutes), (5, 5));
    let continued = cover::continuation::continuations(&mut conn, &[tail.id])
        .await
        .unwrap();
    assert_eq!(continued.get(&tail.id), Some(&(own.id, 60)));
}

/// The fault suite's late replay: a driver's 16 hours of 10-minute jobs, 30 minutes apart from
/// 15:06 to 07:16 the next morning, sent hours later in quick batches with no clock job between
/// them. A batch whose work ended before it arrived ends its cover then; the next batch, showing
/// the work went on, continues it from that end (one working period, one minimum), so the
/// driver is covered for exactly the time they would be had everything come in one batch; each
/// session's part of each UK day is capped by that day's cap, so the morning after is not free;
/// and nothing stays open.
#[tokio::test]
async fn a_late_replay_across_midnight_is_covered_once_each_day_capped_and_none_open() {
    let h = Harness::new().await;
    let (d, whole) = (
        h.driver("07911 100091").await,
        h.driver("07911 100092").await,
    );
    h.link(h.partner, d, "night").await;
    h.link(h.partner, whole, "whole").await;
    let jobs: Vec<_> = (0..33)
        .map(|i| t(15, 6) + Duration::minutes(30 * i))
        .collect();
    let events = |driver: &str| {
        let mut events = Vec::new();
        for (i, start) in jobs.iter().enumerate() {
            let done = *start + Duration::minutes(10);
            events.push(ev(&format!("{driver}-a{i}"), driver, JobAccepted, *start));
            events.push(ev(&format!("{driver}-c{i}"), driver, JobCompleted, done));
        }
        let last = *jobs.last().unwrap() + Duration::minutes(10);
        let off = format!("{driver}-off");
        events.push(ev(&off, driver, Offline, last + Duration::minutes(1)));
        events
    };
    // Sent three hours after the last event: six events a batch, two seconds apart, and for
    // the other driver all in one batch.
    h.clock.set(*jobs.last().unwrap() + Duration::hours(3));
    for batch in events("night").chunks(6) {
        let r = h.send(h.partner, batch).await;
        assert!(
            r.iter().all(|r| r.status == ShiftEventStatus::Accepted),
            "{r:#?}"
        );
        h.clock.set(h.clock.now() + Duration::seconds(2));
    }
    let r = h.send(h.partner, &events("whole")).await;
    assert!(r.iter().all(|r| r.status == ShiftEventStatus::Accepted));

    let sessions = h.sessions(d).await;
    let covered = |sessions: &[cover::CoverSession]| {
        // Back to back: each session starts where the one before ended.
        for pair in sessions.windows(2) {
            assert_eq!(Some(pair[1].started_at), pair[0].ended_at, "{sessions:#?}");
        }
        assert!(sessions.iter().all(|s| s.status == SessionStatus::Ended));
        (
            sessions.first().map(|s| s.started_at),
            sessions.last().and_then(|s| s.ended_at),
        )
    };
    let in_batches = covered(&sessions);
    assert_eq!(in_batches.0, Some(t(15, 6)));
    assert_eq!(in_batches, covered(&h.sessions(whole).await));
    assert!(sessions.len() > 2, "{sessions:#?}");
    // One working period: every session after the first continues the one before it, and the
    // period pays one minimum however it was cut.
    let mut conn = h.conn().await;
    let continuations = testkit::count(
        &mut conn,
        &format!(
            "SELECT count(*) AS n FROM cover_session_continuations c
               JOIN cover_sessions s ON s.id = c.session_id
              WHERE s.driver_id = '{}'",
            d.uuid()
        ),
    )
    .await
    .unwrap();
    assert_eq!(continuations, i64::try_from(sessions.len() - 1).unwrap());
    let charges: Vec<_> = sessions.iter().map(|s| s.charge.unwrap()).collect();
    assert_eq!(
        charges.iter().map(|c| c.billed_minutes).sum::<i64>(),
        charges.iter().map(|c| c.minutes).sum::<i64>()
    );
    // Each UK day's charges within its own cap, the next morning charged, the parts adding up.
    let cap = h.hire.terms.rules.daily_cap_minor;
    let by_day = |day: &str| {
        format!(
            "SELECT coalesce(sum(charged_minor), 0)::bigint AS n FROM cover_session_days
              WHERE uk_day = '{day}' AND driver_id = '{}'",
            d.uuid()
        )
    };
    let first = testkit::count(&mut conn, &by_day("2026-11-23"))
        .await
        .unwrap();
    let second = testkit::count(&mut conn, &by_day("2026-11-24"))
        .await
        .unwrap();
    assert!(first > 0 && first <= cap, "23rd: {first}");
    assert!(second > 0 && second <= cap, "24th: {second}");
    assert_eq!(
        charges.iter().map(|c| c.total.minor).sum::<i64>(),
        first + second
    );
    let jobs_queued = testkit::count(
        &mut conn,
        &format!(
            "SELECT count(*) AS n FROM outbox_jobs
              WHERE job_type = 'ChargeSession'
                AND payload->>'session_id' IN ({})",
            sessions
                .iter()
                .map(|s| format!("'{}'", s.id))
                .collect::<Vec<_>>()
                .join(",")
        ),
    )
    .await
    .unwrap();
    assert_eq!(jobs_queued, i64::try_from(sessions.len()).unwrap());
}

#[tokio::test]
async fn a_start_replayed_after_its_session_reached_its_maximum_leaves_no_cover_open() {
    let h = Harness::new().await;
    let d = h.driver("07911 100095").await;
    h.link(h.partner, d, "old-shift").await;
    // A ten-minute shift seventeen hours ago: its session is past its maximum length already.
    let on = t(6, 0);
    h.clock.set(on + Duration::hours(17));
    let start = [
        ev("old-on", "old-shift", Online, on),
        ev("old-a", "old-shift", JobAccepted, on + Duration::minutes(1)),
    ];
    let end = [
        ev(
            "old-c",
            "old-shift",
            JobCompleted,
            on + Duration::minutes(9),
        ),
        ev("old-off", "old-shift", Offline, on + Duration::minutes(10)),
    ];
    h.send(h.partner, &start).await;
    // The clock's job closes it at its maximum length before the rest arrives.
    {
        let mut conn = h.conn().await;
        let closed = cover::close_due_sessions(&mut conn, &h.clock, 100)
            .await
            .unwrap();
        assert_eq!(closed.sessions.len(), 1);
    }
    let first = h.sessions(d).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].end_reason, Some(EndReason::MaxLength));
    // The start is delivered again (its answer was lost): the period still looks open, so the
    // work is covered on from the maximum length.
    let replayed = h.send(h.partner, &start).await;
    assert!(
        replayed
            .iter()
            .all(|r| r.status == ShiftEventStatus::Duplicate)
    );
    assert!(h.sessions(d).await.iter().any(|s| s.is_active()));
    // The end arrives: nothing stays open, and the session nothing covered costs nothing.
    h.send(h.partner, &end).await;
    let sessions = h.sessions(d).await;
    assert!(sessions.iter().all(|s| !s.is_active()), "{sessions:#?}");
    let orphan = sessions.last().unwrap();
    assert_eq!(orphan.ended_at, Some(orphan.started_at));
    assert_eq!(orphan.charge.unwrap().total.minor, 0, "{orphan:#?}");
}
