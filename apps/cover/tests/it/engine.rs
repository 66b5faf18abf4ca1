//! The cover engine (`cover::engine`): a batch decides each request as if it came alone, one
//! after the other, and every refusal keeps its own code.
//!
//! The main test replays random mixes of starts and ends (own taps, ops, another driver's
//! session, repeated keys with the same or other parameters, a suspended enrolment, an unknown
//! vehicle, the clock closing sessions past their maximum, a cancelled enrolment) on two
//! databases set up alike: on one each round runs as one batch per command, on the other request
//! by request. Answers, sessions, charges, texts, audit entries and charge jobs must agree.

use crate::support::*;
use accounts::{Actor, DriverId, Vehicle};
use chrono::{DateTime, Duration, Utc};
use cover::{
    CoverSession, CoverSessionId, EndReason, EndRequest, SessionSource, SessionStatus, StartRequest,
};
use diesel_async::AsyncPgConnection;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared::{Clock, FixedClock};
use testkit::TestDb;

const PHONES: [&str; 4] = [
    "07911 200001",
    "07911 200002",
    "07911 200003",
    "07911 200004",
];
const KEYS: [&str; 3] = ["k1", "k2", "k3"];

/// One database with four enrolled drivers; the third one's enrolment is suspended.
struct World {
    db: TestDb,
    clock: FixedClock,
    drivers: Vec<DriverId>,
    cars: Vec<Vehicle>,
    enrolments: Vec<cover::EnrolmentId>,
}

impl World {
    async fn new() -> World {
        let db = TestDb::new().await.unwrap();
        let mut conn = db.conn().await.unwrap();
        let clock = clock();
        let (food, _) = products(&mut conn).await;
        let mut drivers = Vec::new();
        let mut cars = Vec::new();
        let mut enrolments = Vec::new();
        for (i, phone) in PHONES.iter().enumerate() {
            let driver = driver(&mut conn, &clock, phone).await;
            let car = vehicle(
                &mut conn,
                &clock,
                driver,
                accounts::VehicleType::Car,
                Some(&format!("AB{i}2CDE")),
            )
            .await;
            let enrolment = cover::enrol(
                &mut conn,
                &clock,
                driver,
                cover::EnrolInput {
                    product_id: food.product_id,
                    vehicle_id: car.id,
                    accept_terms: true,
                },
                &TestFunds::ok(),
            )
            .await
            .unwrap();
            drivers.push(driver);
            cars.push(car);
            enrolments.push(enrolment.id);
        }
        let suspended =
            cover::suspend(&mut conn, &clock, enrolments[2], "ops check", Actor::System)
                .await
                .unwrap();
        assert!(suspended.changed);
        World {
            db,
            clock,
            drivers,
            cars,
            enrolments,
        }
    }

    async fn conn(&self) -> shared::DbConn {
        self.db.conn().await.unwrap()
    }

    /// A driver's sessions, oldest first.
    async fn sessions(&self, conn: &mut AsyncPgConnection, i: usize) -> Vec<CoverSession> {
        let page = cover::list_sessions(
            conn,
            self.drivers[i],
            &cover::SessionFilter::default(),
            None,
            100,
        )
        .await
        .unwrap();
        let mut sessions: Vec<CoverSession> = page.edges.into_iter().map(|e| e.node).collect();
        sessions.reverse();
        sessions
    }
}

/// A start, in terms both worlds understand.
#[derive(Debug, Clone)]
struct Start {
    driver: usize,
    /// Whose car: the driver's own, or another's (`VEHICLE_NOT_FOUND`).
    car_of: usize,
    key: &'static str,
}

/// Which session an ending names.
#[derive(Debug, Clone)]
enum Target {
    /// The driver's active session (or, with none, their last one).
    Current,
    /// Another driver's active session, asked for by this driver (`SESSION_NOT_FOUND`).
    Others(usize),
    /// A session that does not exist.
    Unknown,
}

#[derive(Debug, Clone)]
struct End {
    driver: usize,
    target: Target,
    /// Ended by ops rather than by the driver.
    by_ops: bool,
}

#[derive(Debug, Clone)]
struct Round {
    advance_minutes: i64,
    starts: Vec<Start>,
    ends: Vec<End>,
    /// The clock closes sessions past their deadline after the ends.
    close_due: bool,
    /// The fourth driver cancels their enrolment after everything else.
    cancel: bool,
}

fn random_rounds(seed: u64, n: usize) -> Vec<Round> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|r| {
            let starts = (0..rng.random_range(0..6))
                .map(|_| {
                    let driver = rng.random_range(0..4);
                    Start {
                        driver,
                        car_of: if rng.random_bool(0.85) {
                            driver
                        } else {
                            rng.random_range(0..4)
                        },
                        key: KEYS[rng.random_range(0..KEYS.len())],
                    }
                })
                .collect();
            let ends = (0..rng.random_range(0..5))
                .map(|_| End {
                    driver: rng.random_range(0..4),
                    target: match rng.random_range(0..10) {
                        0 => Target::Others(rng.random_range(0..4)),
                        1 => Target::Unknown,
                        _ => Target::Current,
                    },
                    by_ops: rng.random_bool(0.2),
                })
                .collect();
            Round {
                // Now and then past the 16-hour maximum, so the clock has sessions to close.
                advance_minutes: if rng.random_bool(0.15) {
                    17 * 60
                } else {
                    rng.random_range(1..200)
                },
                starts,
                ends,
                close_due: rng.random_bool(0.5),
                cancel: r == n - 2 && rng.random_bool(0.5),
            }
        })
        .collect()
}

fn describe_start(w: &World, r: &Result<cover::SessionStarted, cover::CoverError>) -> String {
    match r {
        Ok(s) => format!(
            "started driver={} at={} replayed={}",
            w.drivers
                .iter()
                .position(|d| *d == s.session.driver_id)
                .unwrap_or(99),
            s.session.started_at,
            s.replayed
        ),
        Err(e) => code(e).to_owned(),
    }
}

fn describe_end(r: &Result<cover::SessionEnded, cover::CoverError>) -> String {
    match r {
        Ok(e) => format!(
            "ended at={:?} reason={:?} total={:?}",
            e.session.ended_at,
            e.session.end_reason,
            e.session.charge.map(|c| c.total.minor)
        ),
        Err(e) => code(e).to_owned(),
    }
}

async fn start_requests(w: &World, starts: &[Start]) -> Vec<StartRequest> {
    let now = w.clock.now();
    starts
        .iter()
        .map(|s| StartRequest {
            driver_id: w.drivers[s.driver],
            vehicle_id: w.cars[s.car_of].id,
            product_id: None,
            quote_id: None,
            idempotency_key: s.key.to_owned(),
            source: SessionSource::Driver,
            at: now,
            until: None,
        })
        .collect()
}

async fn end_requests(w: &World, conn: &mut AsyncPgConnection, ends: &[End]) -> Vec<EndRequest> {
    let now = w.clock.now();
    let mut out = Vec::new();
    for e in ends {
        let whose = match e.target {
            Target::Others(j) => j,
            _ => e.driver,
        };
        let sessions = w.sessions(conn, whose).await;
        let current = sessions
            .iter()
            .find(|s| s.is_active())
            .or(sessions.last())
            .map(|s| s.id);
        let session_id = match (&e.target, current) {
            (Target::Unknown, _) | (_, None) => CoverSessionId::new(),
            (_, Some(id)) => id,
        };
        out.push(EndRequest {
            session_id,
            driver_id: (!e.by_ops).then_some(w.drivers[e.driver]),
            at: now,
            reason: if e.by_ops {
                EndReason::Ops
            } else {
                EndReason::Driver
            },
            actor: None,
        });
    }
    out
}

/// Runs the rounds on `w`, batched or one request at a time; returns every answer.
async fn play(w: &World, rounds: &[Round], batched: bool) -> Vec<String> {
    let mut conn = w.conn().await;
    let funds = TestFunds::ok();
    let settings = cover_settings();
    let mut log = Vec::new();
    for round in rounds {
        w.clock.advance(Duration::minutes(round.advance_minutes));
        let starts = start_requests(w, &round.starts).await;
        let answers: Vec<_> = if batched {
            cover::start_sessions(&mut conn, &w.clock, &settings, &funds, &starts)
                .await
                .unwrap()
        } else {
            let mut out = Vec::new();
            for s in &starts {
                let mut one = cover::start_sessions(
                    &mut conn,
                    &w.clock,
                    &settings,
                    &funds,
                    std::slice::from_ref(s),
                )
                .await
                .unwrap();
                out.push(one.pop().unwrap());
            }
            out
        };
        log.extend(answers.iter().map(|a| describe_start(w, a)));
        let ends = end_requests(w, &mut conn, &round.ends).await;
        let answers: Vec<_> = if batched {
            cover::end_sessions(&mut conn, &w.clock, &ends)
                .await
                .unwrap()
        } else {
            let mut out = Vec::new();
            for e in &ends {
                let mut one = cover::end_sessions(&mut conn, &w.clock, std::slice::from_ref(e))
                    .await
                    .unwrap();
                out.push(one.pop().unwrap());
            }
            out
        };
        log.extend(answers.iter().map(describe_end));
        if round.close_due {
            let closed = cover::close_due_sessions(&mut conn, &w.clock, 100)
                .await
                .unwrap();
            assert_eq!(closed.failed, 0);
            log.push(format!("closed {}", closed.sessions.len()));
        }
        if round.cancel {
            let changed = cover::cancel_enrolment(
                &mut conn,
                &w.clock,
                w.enrolments[3],
                "moving abroad",
                Actor::Driver(w.drivers[3]),
            )
            .await
            .unwrap();
            log.push(format!(
                "cancelled, ended {}",
                changed.ended_session.is_some()
            ));
        }
    }
    log
}

/// Everything written, with ids replaced by what both worlds share.
async fn state(w: &World) -> Vec<String> {
    let mut conn = w.conn().await;
    let mut out = Vec::new();
    for i in 0..4 {
        for s in w.sessions(&mut conn, i).await {
            out.push(format!(
                "driver {i}: {:?} {} → {:?} {:?} {:?} charge={:?}",
                s.status,
                s.started_at,
                s.ended_at,
                s.end_reason,
                w.cars.iter().position(|c| c.id == s.vehicle_id),
                s.charge.map(|c| (c.minutes, c.total.minor, c.ipt.minor)),
            ));
        }
    }
    for sql in [
        "SELECT count(*) AS n FROM notifications WHERE template = 'cover_started'",
        "SELECT count(*) AS n FROM notifications WHERE template = 'cover_ended'",
        "SELECT count(*) AS n FROM audit_log WHERE action = 'cover.session_started'",
        "SELECT count(*) AS n FROM audit_log WHERE action = 'cover.session_ended'",
        "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'ChargeSession'",
        "SELECT count(*) AS n FROM quotes",
    ] {
        out.push(format!(
            "{sql}: {}",
            testkit::count(&mut conn, sql).await.unwrap()
        ));
    }
    out
}

#[tokio::test]
async fn a_batch_decides_each_request_as_if_it_came_alone() {
    let mut seen_codes = std::collections::BTreeSet::new();
    for seed in 1..=6u64 {
        let rounds = random_rounds(seed, 10);
        let (batched, alone) = tokio::join!(World::new(), World::new());
        let a = play(&batched, &rounds, true).await;
        let b = play(&alone, &rounds, false).await;
        assert_eq!(a, b, "answers differ for seed {seed}: {rounds:#?}");
        assert_eq!(
            state(&batched).await,
            state(&alone).await,
            "stored state differs for seed {seed}"
        );
        seen_codes.extend(
            a.into_iter()
                .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned()),
        );
    }
    // The mixes reached every kind of answer, so the comparison above covered them.
    for expected in [
        "started",
        "ended",
        "ALREADY_ON_COVER",
        "ENROLMENT_SUSPENDED",
        "VEHICLE_NOT_FOUND",
        "SESSION_NOT_FOUND",
        "SESSION_ALREADY_ENDED",
        "closed",
    ] {
        assert!(
            seen_codes.contains(expected),
            "{expected} never seen: {seen_codes:?}"
        );
    }
}

#[tokio::test]
async fn repeated_keys_in_one_batch_replay_or_refuse_like_repeated_requests() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let now = w.clock.now();
    let start = |driver: usize, car: usize, key: &str| StartRequest {
        driver_id: w.drivers[driver],
        vehicle_id: w.cars[car].id,
        product_id: None,
        quote_id: None,
        idempotency_key: key.into(),
        source: SessionSource::Driver,
        at: now,
        until: None,
    };
    let answers = cover::start_sessions(
        &mut conn,
        &w.clock,
        &cover_settings(),
        &TestFunds::ok(),
        &[
            start(0, 0, "a"),
            start(0, 0, "a"),
            start(0, 1, "a"),
            start(0, 0, "b"),
            start(1, 1, ""),
            start(1, 1, "x"),
        ],
    )
    .await
    .unwrap();
    let first = answers[0].as_ref().unwrap();
    assert!(!first.replayed);
    assert_eq!(first.events.len(), 1);
    let again = answers[1].as_ref().unwrap();
    assert!(again.replayed && again.events.is_empty());
    assert_eq!(again.session.id, first.session.id);
    // The key is looked at first: it names a session on another vehicle.
    assert_eq!(
        code(answers[2].as_ref().unwrap_err()),
        "IDEMPOTENCY_KEY_REUSED"
    );
    assert_eq!(code(answers[3].as_ref().unwrap_err()), "ALREADY_ON_COVER");
    assert_eq!(
        code(answers[4].as_ref().unwrap_err()),
        "INVALID_IDEMPOTENCY_KEY"
    );
    assert!(answers[5].is_ok());
    // Same key, other vehicle of one's own: the key names a session with other parameters.
    let van = vehicle(
        &mut conn,
        &w.clock,
        w.drivers[0],
        accounts::VehicleType::Car,
        Some("VA11AAA"),
    )
    .await;
    let mut other = start(0, 0, "a");
    other.vehicle_id = van.id;
    let answer = cover::start_sessions(
        &mut conn,
        &w.clock,
        &cover_settings(),
        &TestFunds::ok(),
        &[other],
    )
    .await
    .unwrap();
    assert_eq!(
        code(answer[0].as_ref().unwrap_err()),
        "IDEMPOTENCY_KEY_REUSED"
    );
    assert_eq!(w.sessions(&mut conn, 0).await.len(), 1);
}

/// A late start never overlaps the driver's earlier cover: it starts when that cover ended, and
/// a start for work that ended before then starts nothing.
#[tokio::test]
async fn late_starts_begin_where_earlier_cover_ended() {
    let w = World::new().await;
    let mut conn = w.conn().await;
    let t0 = w.clock.now();
    let own = cover::start_session(
        &mut conn,
        &w.clock,
        &cover_settings(),
        w.drivers[0],
        cover::StartCover {
            vehicle_id: w.cars[0].id,
            product_id: None,
            quote_id: None,
            idempotency_key: "own".into(),
            source: SessionSource::Driver,
        },
        &TestFunds::ok(),
    )
    .await
    .unwrap()
    .session;
    w.clock.advance(Duration::hours(1));
    let ended = cover::end_session(&mut conn, &w.clock, w.drivers[0], own.id, EndReason::Driver)
        .await
        .unwrap();
    assert_eq!(ended.session.charge.unwrap().billed_minutes, 60);
    w.clock.advance(Duration::hours(1));
    let late = |key: &str, at: DateTime<Utc>, until: Option<DateTime<Utc>>| StartRequest {
        driver_id: w.drivers[0],
        vehicle_id: w.cars[0].id,
        product_id: None,
        quote_id: None,
        idempotency_key: key.into(),
        source: SessionSource::Driver,
        at,
        until,
    };
    // Work from 09:30 to 09:45 was covered already by the 09:00–10:00 session.
    let answers = cover::start_sessions(
        &mut conn,
        &w.clock,
        &cover_settings(),
        &TestFunds::ok(),
        &[late(
            "inside",
            t0 + Duration::minutes(30),
            Some(t0 + Duration::minutes(45)),
        )],
    )
    .await
    .unwrap();
    assert_eq!(code(answers[0].as_ref().unwrap_err()), "ALREADY_ON_COVER");
    // Work from 09:30, still going on: covered from 10:00, when the first session ended.
    let answers = cover::start_sessions(
        &mut conn,
        &w.clock,
        &cover_settings(),
        &TestFunds::ok(),
        &[late("after", t0 + Duration::minutes(30), None)],
    )
    .await
    .unwrap();
    let started = answers[0].as_ref().unwrap();
    assert_eq!(started.session.started_at, t0 + Duration::hours(1));
    assert_eq!(started.session.status, SessionStatus::Active);
    // It resumes cover at once (within the gap rule): the same working period, one minimum.
    assert_eq!(started.continues, Some(own.id));
    w.clock.advance(Duration::minutes(1));
    let ended = cover::end_session(
        &mut conn,
        &w.clock,
        w.drivers[0],
        started.session.id,
        EndReason::Driver,
    )
    .await
    .unwrap();
    let charge = ended.session.charge.unwrap();
    // 10:00 to 11:01: 61 minutes, all beyond the hour the period's minimum paid (09:00–10:00).
    assert_eq!((charge.minutes, charge.billed_minutes), (61, 61));
    // The database refuses overlapping cover whatever the code does.
    let overlap = diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE cover_sessions SET started_at = started_at - interval '30 minutes' \
              WHERE id = '{}'",
            ended.session.id.uuid()
        )),
        &mut conn,
    )
    .await
    .unwrap_err();
    assert!(
        overlap.to_string().contains("cover_sessions_no_overlap"),
        "{overlap}"
    );
}
