//! Ending sessions: twice, someone else's, by the clock, and the daily cap across sessions.

use crate::support::*;
use chrono::Duration;
use cover::{CoverEventKind, EndReason, SessionFilter, SessionSource, SessionStatus, StartCover};
use diesel_async::RunQueryDsl;
use pricing::ChargeRule;
use shared::{Clock, FixedClock};
use testkit::TestDb;

async fn start(
    conn: &mut diesel_async::AsyncPgConnection,
    clock: &FixedClock,
    driver_id: accounts::DriverId,
    vehicle_id: accounts::VehicleId,
    key: &str,
) -> cover::CoverSession {
    cover::start_session(
        conn,
        clock,
        &cover_settings(),
        driver_id,
        StartCover {
            vehicle_id,
            product_id: None,
            quote_id: None,
            idempotency_key: key.into(),
            source: SessionSource::Driver,
        },
        &TestFunds::ok(),
    )
    .await
    .unwrap()
    .session
}

#[tokio::test]
async fn ending_twice_and_ending_someone_elses_session_are_refused() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let (me, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let (other, _, _) = enrolled_driver(&mut conn, &clock, OTHER_PHONE, food.product_id).await;
    let session = start(&mut conn, &clock, me, car.id, "k").await;

    let err = cover::end_session(&mut conn, &clock, other, session.id, EndReason::Driver)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "SESSION_NOT_FOUND");
    let err = cover::get_session_for_driver(&mut conn, other, session.id)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "SESSION_NOT_FOUND");
    let err = cover::end_session(
        &mut conn,
        &clock,
        me,
        cover::CoverSessionId::new(),
        EndReason::Driver,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "SESSION_NOT_FOUND");

    clock.advance(Duration::minutes(30));
    let first = cover::end_session(&mut conn, &clock, me, session.id, EndReason::Driver)
        .await
        .unwrap();
    clock.advance(Duration::minutes(30));
    let err = cover::end_session(&mut conn, &clock, me, session.id, EndReason::Driver)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "SESSION_ALREADY_ENDED");
    let now = cover::get_session_for_driver(&mut conn, me, session.id)
        .await
        .unwrap();
    assert_eq!(now, first.session, "the second attempt changed nothing");
    assert_eq!(audit_rows(&mut conn, "cover.session_ended").await.len(), 1);
}

#[derive(diesel::QueryableByName)]
struct DayRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    day: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    minutes: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    charged_minor: i64,
}

#[tokio::test]
async fn sessions_past_their_maximum_length_are_closed_at_it() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let (me, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let session = start(&mut conn, &clock, me, car.id, "long").await;

    // Not yet due: nothing happens.
    clock.advance(Duration::hours(15));
    let closed = cover::close_due_sessions(&mut conn, &clock, 10)
        .await
        .unwrap();
    assert!(closed.sessions.is_empty());

    clock.advance(Duration::hours(2));
    let closed = cover::close_due_sessions(&mut conn, &clock, 10)
        .await
        .unwrap();
    assert_eq!(closed.sessions.len(), 1);
    assert_eq!(closed.failed, 0);
    assert_eq!(closed.events.len(), 1);
    assert_eq!(closed.events[0].kind, CoverEventKind::Ended);
    let s = &closed.sessions[0];
    assert_eq!(s.id, session.id);
    assert_eq!(s.end_reason, Some(EndReason::MaxLength));
    assert_eq!(s.ended_at, Some(session.max_end_at));
    assert_eq!(s.charge.unwrap().minutes, 16 * 60);
    // 09:00 to 01:00: fifteen hours on the 23rd, capped at that day's cap, and the hour after
    // midnight charged against the 24th's.
    assert_eq!(s.charge.unwrap().rule, ChargeRule::Capped);
    let last_hour = session.hourly_rate.minor;
    assert_eq!(
        s.charge.unwrap().total.minor,
        food.terms.rules.daily_cap_minor + last_hour
    );
    assert_eq!(
        days_of(&mut conn, session.id).await,
        vec![
            (
                "2026-11-23".into(),
                15 * 60,
                food.terms.rules.daily_cap_minor
            ),
            ("2026-11-24".into(), 60, last_hour),
        ]
    );

    // Idempotent: a second run (or a racing worker) finds nothing.
    let again = cover::close_due_sessions(&mut conn, &clock, 10)
        .await
        .unwrap();
    assert!(again.sessions.is_empty());
    let err = cover::end_session(&mut conn, &clock, me, session.id, EndReason::Driver)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "SESSION_ALREADY_ENDED");
}

#[tokio::test]
async fn a_late_stop_ends_at_the_deadline_and_a_partner_gap_rule_ends_early() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let (me, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;

    // The driver stops after the maximum length, before the job closed it.
    let s1 = start(&mut conn, &clock, me, car.id, "late").await;
    clock.advance(Duration::hours(20));
    let ended = cover::end_session(&mut conn, &clock, me, s1.id, EndReason::Driver)
        .await
        .unwrap()
        .session;
    assert_eq!(ended.ended_at, Some(s1.max_end_at));
    assert_eq!(ended.end_reason, Some(EndReason::MaxLength));

    // A gap rule ends the next one at its scheduled time.
    clock.advance(Duration::hours(10));
    let s2 = start(&mut conn, &clock, me, car.id, "gap").await;
    let at = clock.now() + Duration::minutes(75);
    let scheduled =
        cover::schedule_session_end(&mut conn, &clock, s2.id, Some(at), accounts::Actor::System)
            .await
            .unwrap();
    assert_eq!(scheduled.session.scheduled_end_at, Some(at));
    assert_eq!(scheduled.events[0].kind, CoverEventKind::EndingSoon);
    assert_eq!(scheduled.session.covered_until(), at);
    clock.advance(Duration::minutes(80));
    let closed = cover::close_due_sessions(&mut conn, &clock, 10)
        .await
        .unwrap();
    assert_eq!(closed.sessions.len(), 1);
    assert_eq!(closed.sessions[0].end_reason, Some(EndReason::GapRule));
    assert_eq!(closed.sessions[0].ended_at, Some(at));
    assert_eq!(closed.sessions[0].charge.unwrap().minutes, 75);
}

#[tokio::test]
async fn the_daily_cap_holds_across_sessions_of_one_uk_day() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let cap = food.terms.rules.daily_cap_minor;
    let (me, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;

    // 09:00–16:00, then 16:30–23:30: together well past the cap.
    let s1 = start(&mut conn, &clock, me, car.id, "morning").await;
    clock.advance(Duration::hours(7));
    let c1 = cover::end_session(&mut conn, &clock, me, s1.id, EndReason::Driver)
        .await
        .unwrap()
        .session
        .charge
        .unwrap();
    assert!(
        c1.total.minor < cap,
        "one session alone stays under the cap"
    );
    clock.advance(Duration::minutes(30));
    let s2 = start(&mut conn, &clock, me, car.id, "evening").await;
    clock.advance(Duration::hours(7));
    let c2 = cover::end_session(&mut conn, &clock, me, s2.id, EndReason::Driver)
        .await
        .unwrap()
        .session
        .charge
        .unwrap();
    assert!(c1.uncapped.minor + c2.uncapped.minor > cap);
    assert_eq!(c2.rule, ChargeRule::Capped);
    assert_eq!(c1.total.minor + c2.total.minor, cap);
    assert_eq!(
        c2.net_premium.minor + c2.commission.minor + c2.ipt.minor,
        c2.total.minor
    );

    // A session that starts the next UK day starts a new cap.
    clock.set(
        chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 24, 9, 0, 0)
            .single()
            .unwrap(),
    );
    let s3 = start(&mut conn, &clock, me, car.id, "tuesday").await;
    clock.advance(Duration::hours(2));
    let c3 = cover::end_session(&mut conn, &clock, me, s3.id, EndReason::Driver)
        .await
        .unwrap()
        .session
        .charge
        .unwrap();
    assert_eq!(c3.rule, ChargeRule::PerMinute);
    assert_eq!(c3.total, c3.uncapped);
}

async fn days_of(
    conn: &mut diesel_async::AsyncPgConnection,
    session: cover::CoverSessionId,
) -> Vec<(String, i64, i64)> {
    diesel::sql_query(
        "SELECT uk_day::text AS day, minutes, charged_minor FROM cover_session_days
          WHERE session_id = $1 ORDER BY uk_day",
    )
    .bind::<diesel::sql_types::Uuid, _>(session.uuid())
    .load::<DayRow>(conn)
    .await
    .unwrap()
    .into_iter()
    .map(|d| (d.day, d.minutes, d.charged_minor))
    .collect()
}

/// A session started after the day's cap was reached is free only until midnight: its part on
/// the next UK day is charged against that day's cap.
#[tokio::test]
async fn a_session_after_the_days_cap_pays_for_the_next_day() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let cap = food.terms.rules.daily_cap_minor;
    let (me, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;

    // 09:00–21:00 reaches the 23rd's cap.
    let day = start(&mut conn, &clock, me, car.id, "day").await;
    clock.advance(Duration::hours(12));
    let c = cover::end_session(&mut conn, &clock, me, day.id, EndReason::Driver)
        .await
        .unwrap()
        .session
        .charge
        .unwrap();
    assert_eq!(c.total.minor, cap);

    // 23:50 to 15:50 the next day.
    clock.advance(Duration::minutes(170));
    let night = start(&mut conn, &clock, me, car.id, "night").await;
    clock.advance(Duration::hours(16));
    let ended = cover::end_session(&mut conn, &clock, me, night.id, EndReason::Driver)
        .await
        .unwrap()
        .session;
    let charge = ended.charge.unwrap();
    let rate = night.hourly_rate.minor;
    // The 24th's 950 minutes: rate × 960 / 60 − rate × 10 / 60, no more than the 24th's cap.
    let round = |minutes: i64| (rate * minutes * 2 + 60) / 120;
    let next_day = (round(960) - round(10)).min(cap);
    assert!(next_day > 0);
    assert_eq!(charge.total.minor, next_day);
    assert_eq!(charge.minutes, 960);
    assert_eq!(
        days_of(&mut conn, night.id).await,
        vec![
            ("2026-11-23".into(), 10, 0),
            ("2026-11-24".into(), 950, next_day),
        ]
    );

    // And a session later on the 24th sees what the night session charged for that day.
    clock.advance(Duration::minutes(30));
    let evening = start(&mut conn, &clock, me, car.id, "evening").await;
    clock.advance(Duration::hours(1));
    let c = cover::end_session(&mut conn, &clock, me, evening.id, EndReason::Driver)
        .await
        .unwrap()
        .session
        .charge
        .unwrap();
    assert_eq!(c.total.minor, (cap - next_day).min(c.uncapped.minor));
}

/// The database keeps the days honest: their charges add up to the session's total when the
/// ending commits, and a day once written never changes.
#[tokio::test]
async fn the_database_refuses_days_that_do_not_add_up() {
    use diesel_async::SimpleAsyncConnection;
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let (me, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let s = start(&mut conn, &clock, me, car.id, "a").await;
    let id = s.id.uuid();
    // Ending with a day part that does not add up to the total: refused at commit.
    let err = conn
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO cover_session_days (session_id, uk_day, driver_id, currency, minutes,
                    billed_minutes, uncapped_minor, charged_minor)
                  SELECT id, '2026-11-23', driver_id, currency, 60, 60, 500, 500
                    FROM cover_sessions WHERE id = '{id}';
             UPDATE cover_sessions SET status = 'ended', ended_at = started_at + interval '1 hour',
                    end_reason = 'driver', minutes = 60, billed_minutes = 60,
                    charge_rule = 'minimum', uncapped_minor = 400, net_minor = 300,
                    commission_minor = 57, ipt_minor = 43, total_minor = 400,
                    ipt_rate_bp = 1200, commission_bp = 1600
              WHERE id = '{id}';
             COMMIT;"
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("days add up to 500"), "{err}");
    conn.batch_execute("ROLLBACK").await.ok();
    // Ended through the engine, its day is written and cannot be changed.
    clock.advance(Duration::hours(1));
    let ended = cover::end_session(&mut conn, &clock, me, s.id, EndReason::Driver)
        .await
        .unwrap();
    let total = ended.session.charge.unwrap().total.minor;
    assert_eq!(
        days_of(&mut conn, s.id).await,
        vec![("2026-11-23".into(), 60, total)]
    );
    let err = conn
        .batch_execute(&format!(
            "UPDATE cover_session_days SET charged_minor = 0 WHERE session_id = '{id}'"
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("never changed"), "{err}");
}

#[tokio::test]
async fn sessions_list_newest_first_in_pages_with_filters() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let (me, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let s = start(&mut conn, &clock, me, car.id, &format!("s{i}")).await;
        ids.push(s.id);
        clock.advance(Duration::minutes(20));
        if i < 4 {
            let ended = cover::end_session(&mut conn, &clock, me, s.id, EndReason::Driver)
                .await
                .unwrap();
            assert_eq!(ended.session.status, SessionStatus::Ended);
        }
        clock.advance(Duration::minutes(10));
    }
    ids.reverse();

    let all = SessionFilter::default();
    let p1 = cover::list_sessions(&mut conn, me, &all, None, 2)
        .await
        .unwrap();
    assert!(p1.has_next_page);
    let p2 = cover::list_sessions(&mut conn, me, &all, p1.end_cursor(), 2)
        .await
        .unwrap();
    let p3 = cover::list_sessions(&mut conn, me, &all, p2.end_cursor(), 2)
        .await
        .unwrap();
    assert!(!p3.has_next_page);
    let listed: Vec<_> = [p1, p2, p3]
        .iter()
        .flat_map(|p| p.edges.iter().map(|e| e.node.id))
        .collect();
    assert_eq!(listed, ids);

    let active = SessionFilter {
        status: Some(SessionStatus::Active),
        ..SessionFilter::default()
    };
    let page = cover::list_sessions(&mut conn, me, &active, None, 10)
        .await
        .unwrap();
    assert_eq!(page.edges.len(), 1);
    assert_eq!(page.edges[0].node.id, ids[0]);

    let start_of_second = clock.now() - Duration::minutes(30 * 4);
    let window = SessionFilter {
        from: Some(start_of_second),
        to: Some(start_of_second + Duration::minutes(60)),
        ..SessionFilter::default()
    };
    let page = cover::list_sessions(&mut conn, me, &window, None, 10)
        .await
        .unwrap();
    assert_eq!(
        page.edges.iter().map(|e| e.node.id).collect::<Vec<_>>(),
        vec![ids[2], ids[3]]
    );

    let err = cover::list_sessions(&mut conn, me, &all, Some("garbage"), 10)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_CURSOR");
    let (other, _, _) = enrolled_driver(&mut conn, &clock, OTHER_PHONE, food.product_id).await;
    let theirs = cover::list_sessions(&mut conn, other, &all, None, 10)
        .await
        .unwrap();
    assert!(theirs.edges.is_empty());
}

#[tokio::test]
async fn the_close_job_ends_due_sessions_and_completes_in_one_transaction() {
    use cover::jobs::CloseDueSessions;
    use shared::jobs::JobContext;
    use shared::outbox::{self, Job};
    use std::sync::Arc;

    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = products(&mut conn).await;
    let (me, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let session = start(&mut conn, &clock, me, car.id, "job").await;
    clock.advance(Duration::hours(17));

    let job = CloseDueSessions::for_tick(clock.now());
    assert!(outbox::enqueue(&mut conn, &job).await.unwrap().is_some());
    assert!(
        outbox::enqueue(&mut conn, &job).await.unwrap().is_none(),
        "one job per tick"
    );
    let due = outbox::take_due(&mut conn, &[CloseDueSessions::TYPE], 10, 60, 300)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].queue, "cover");
    let claimed = outbox::claim(&mut conn, due[0].id, "worker-1")
        .await
        .unwrap()
        .unwrap();
    let payload: CloseDueSessions = serde_json::from_value(claimed.payload.clone()).unwrap();
    assert_eq!(payload, job);
    let ctx = JobContext {
        pool: db.pool().clone(),
        job: claimed,
        worker: Arc::from("worker-1"),
        clock: Arc::new(clock.clone()),
        settings: Arc::new(shared::Settings::default()),
    };
    cover::jobs::run_close_due_sessions(ctx, payload)
        .await
        .unwrap();
    // The ending's charge job committed with it, once.
    let charge_jobs = testkit::count(
        &mut conn,
        &format!(
            "SELECT count(*) AS n FROM outbox_jobs WHERE job_type = 'ChargeSession' \
             AND idempotency_key = 'charge_session:{}'",
            session.id
        ),
    )
    .await
    .unwrap();
    assert_eq!(charge_jobs, 1);
    let ended = cover::get_session(&mut conn, session.id).await.unwrap();
    assert_eq!(ended.end_reason, Some(EndReason::MaxLength));
    let counts = outbox::counts_by_status(&mut conn).await.unwrap();
    assert!(counts.contains(&("done".to_owned(), 1)), "{counts:?}");
}
