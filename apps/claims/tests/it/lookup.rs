//! The session lookup at the edges: the first and last minute of a session, inside the gap rule
//! and the tail cover, and just outside each; another vehicle; the nearest session.

use crate::support::*;
use chrono::{DateTime, Utc};
use claims::{CoverAtLoss, CoverBasis, NoCoverReason, cover_at_loss};
use cover::{CoverSessionId, EndReason};
use partners::ShiftEventKind::{JobAccepted, JobCompleted};

/// What the lookup gave, in short: the basis when covered, or the reason and nearest session.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Covered(CoverSessionId, CoverBasis),
    Not(NoCoverReason, Option<CoverSessionId>),
}

async fn look(
    h: &Harness,
    driver: &TestDriver,
    vehicle: accounts::VehicleId,
    at: DateTime<Utc>,
) -> Found {
    let mut conn = h.conn().await;
    match cover_at_loss(&mut conn, driver.id, vehicle, at)
        .await
        .unwrap()
    {
        CoverAtLoss::Covered { session, basis } => Found::Covered(session.id, basis),
        CoverAtLoss::NotCovered { reason, nearest } => Found::Not(reason, nearest.map(|s| s.id)),
    }
}

#[tokio::test]
async fn a_partner_session_covers_its_work_its_gap_and_its_tail_and_nothing_after() {
    let h = Harness::new().await;
    let d = h.driver("+447911100101", Product::Hire).await;
    h.clock.set(t(11, 0));
    h.send(
        &d,
        &[("e1", JobAccepted, t(9, 0)), ("e2", JobCompleted, t(10, 0))],
    )
    .await;
    let sessions = h.sessions(d.id).await;
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    // Work stopped at 10:00; the gap rule (10 min) and the tail (15 min) follow.
    assert_eq!(s.started_at, t(9, 0));
    assert_eq!(s.ended_at, Some(t(10, 25)));
    assert_eq!(s.end_reason, Some(EndReason::GapRule));
    use CoverBasis::*;
    let covered = |b| Found::Covered(s.id, b);
    let cases = [
        (t(8, 59), outside_of(s.id)),
        (t(9, 0), covered(Working)),
        (t(9, 59), covered(Working)),
        (t(10, 0), covered(GapRule)),
        (t(10, 5), covered(GapRule)),
        (t(10, 9), covered(GapRule)),
        // Just outside the gap is inside the tail.
        (t(10, 10), covered(TailCover)),
        (t(10, 20), covered(TailCover)),
        (t(10, 24), covered(TailCover)),
        // Just outside the tail.
        (t(10, 25), outside_of(s.id)),
        (t(10, 26), outside_of(s.id)),
    ];
    for (at, expected) in cases {
        assert_eq!(look(&h, &d, d.car, at).await, expected, "at {at}");
    }
}

fn outside_of(id: CoverSessionId) -> Found {
    Found::Not(NoCoverReason::NoSession, Some(id))
}

#[tokio::test]
async fn without_tail_cover_just_outside_the_gap_is_not_covered() {
    let h = Harness::new().await;
    let d = h.driver("+447911100102", Product::Food).await;
    h.clock.set(t(11, 0));
    h.send(
        &d,
        &[("e1", JobAccepted, t(9, 0)), ("e2", JobCompleted, t(10, 0))],
    )
    .await;
    let s = h.sessions(d.id).await.remove(0);
    assert_eq!(s.ended_at, Some(t(10, 10)));
    let covered = |b| Found::Covered(s.id, b);
    assert_eq!(
        look(&h, &d, d.car, t(9, 59)).await,
        covered(CoverBasis::Working)
    );
    assert_eq!(
        look(&h, &d, d.car, t(10, 1)).await,
        covered(CoverBasis::GapRule)
    );
    assert_eq!(
        look(&h, &d, d.car, t(10, 9)).await,
        covered(CoverBasis::GapRule)
    );
    assert_eq!(look(&h, &d, d.car, t(10, 10)).await, outside_of(s.id));
    assert_eq!(look(&h, &d, d.car, t(10, 11)).await, outside_of(s.id));
}

#[tokio::test]
async fn a_driver_session_covers_its_first_and_last_minute_only() {
    let h = Harness::new().await;
    let d = h.driver("+447911100103", Product::Food).await;
    h.clock.set(t(15, 0));
    let s = h.driver_session(d.id, d.car, t(12, 0), t(13, 30)).await;
    let working = Found::Covered(s.id, CoverBasis::Working);
    assert_eq!(look(&h, &d, d.car, t(11, 59)).await, outside_of(s.id));
    assert_eq!(look(&h, &d, d.car, t(12, 0)).await, working);
    assert_eq!(look(&h, &d, d.car, t(13, 29)).await, working);
    assert_eq!(look(&h, &d, d.car, t(13, 30)).await, outside_of(s.id));
    assert_eq!(look(&h, &d, d.car, t(13, 31)).await, outside_of(s.id));
    // On cover then, but with the car: the bicycle was not covered, and has no sessions.
    assert_eq!(
        look(&h, &d, d.bike, t(12, 30)).await,
        Found::Not(NoCoverReason::OtherVehicle, None)
    );
}

#[tokio::test]
async fn the_nearest_session_is_the_closer_one_on_either_side() {
    let h = Harness::new().await;
    let d = h.driver("+447911100104", Product::Food).await;
    h.clock.set(t(20, 0));
    let morning = h.driver_session(d.id, d.car, t(8, 0), t(9, 0)).await;
    let noon = h.driver_session(d.id, d.car, t(12, 0), t(13, 0)).await;
    // 10:00 is an hour after the morning session and two before noon's.
    assert_eq!(look(&h, &d, d.car, t(10, 0)).await, outside_of(morning.id));
    assert_eq!(look(&h, &d, d.car, t(11, 0)).await, outside_of(noon.id));
    assert_eq!(look(&h, &d, d.car, t(7, 0)).await, outside_of(morning.id));
    assert_eq!(look(&h, &d, d.car, t(19, 0)).await, outside_of(noon.id));
}

#[tokio::test]
async fn a_running_session_covers_up_to_now() {
    let h = Harness::new().await;
    let d = h.driver("+447911100105", Product::Food).await;
    h.clock.set(t(14, 0));
    let mut conn = h.conn().await;
    let started = cover::start_session(
        &mut conn,
        &h.clock,
        &h.settings.cover,
        d.id,
        cover::StartCover {
            vehicle_id: d.car,
            product_id: None,
            quote_id: None,
            idempotency_key: "running".into(),
            source: cover::SessionSource::Driver,
        },
        &h.funds,
    )
    .await
    .unwrap();
    h.clock.set(t(15, 0));
    assert_eq!(
        look(&h, &d, d.car, t(14, 30)).await,
        Found::Covered(started.session.id, CoverBasis::Working)
    );
    assert_eq!(
        look(&h, &d, d.car, t(13, 59)).await,
        outside_of(started.session.id)
    );
}
