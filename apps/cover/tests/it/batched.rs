//! Starts and ends batched across concurrent requests (`cover::batched`): they write what the
//! one-at-a-time path writes, share statements, and leave everything that is not plain to that
//! path.

use crate::support::*;
use accounts::{DriverId, VehicleId};
use chrono::Duration;
use cover::{
    CoverSession, CoverSessionId, EndBatch, EndReason, Funding, FundsCheck, SessionSource,
    SessionStatus, StartBatch, StartCover, try_end_batched, try_start_batched,
};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::core::Core;
use shared::outbox::Job;
use shared::schema::outbox_jobs;
use shared::{FixedClock, Money};
use std::sync::Arc;
use testkit::TestDb;

/// Every driver can pay.
#[derive(Debug, Default)]
struct Funded;

#[async_trait::async_trait]
impl FundsCheck for Funded {
    async fn can_pay(
        &self,
        _conn: &mut AsyncPgConnection,
        _driver_id: DriverId,
        _minimum_charge: Money,
    ) -> Result<Funding, anyhow::Error> {
        Ok(Funding::Ok)
    }
}

/// No driver can pay.
#[derive(Debug, Default)]
struct Broke;

#[async_trait::async_trait]
impl FundsCheck for Broke {
    async fn can_pay(
        &self,
        _conn: &mut AsyncPgConnection,
        _driver_id: DriverId,
        _minimum_charge: Money,
    ) -> Result<Funding, anyhow::Error> {
        Ok(Funding::InsufficientFunds { available: None })
    }
}

/// What follows an ending here (the API enqueues the charge).
#[derive(Debug, Serialize, Deserialize)]
struct AfterEnd {
    session_id: CoverSessionId,
}

impl Job for AfterEnd {
    const TYPE: &'static str = "TestAfterEnd";
    const QUEUE: &'static str = "test";

    fn idempotency_key(&self) -> String {
        self.session_id.to_string()
    }
}

impl From<CoverSessionId> for AfterEnd {
    fn from(session_id: CoverSessionId) -> Self {
        AfterEnd { session_id }
    }
}

/// A core on the test's database and clock, running one batch of each kind at a time.
fn core_for(db: &TestDb, clock: &Arc<FixedClock>) -> Core {
    let mut settings = testkit::settings_for(db);
    settings.database.batch_concurrency = 1;
    Core::new(settings, clock.clone()).unwrap()
}

fn plain(vehicle_id: VehicleId, key: &str) -> StartCover {
    StartCover {
        vehicle_id,
        product_id: None,
        quote_id: None,
        idempotency_key: key.into(),
        source: SessionSource::Driver,
    }
}

/// Starts cover on the one-at-a-time path.
async fn start_alone(
    conn: &mut AsyncPgConnection,
    clock: &FixedClock,
    driver_id: DriverId,
    vehicle_id: VehicleId,
    key: &str,
) -> CoverSession {
    cover::start_session(
        conn,
        clock,
        &cover_settings(),
        driver_id,
        plain(vehicle_id, key),
        &Funded,
    )
    .await
    .unwrap()
    .session
}

/// Runs `call` on every input at once, each in its own task; the answers in the inputs' order.
async fn together<I, O, Fut>(inputs: Vec<I>, call: impl Fn(I) -> Fut) -> Vec<O>
where
    I: Send + 'static,
    O: Send + 'static,
    Fut: std::future::Future<Output = O> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let answer = call(input);
        tasks.spawn(async move { (i, answer.await) });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        out.push(done.unwrap());
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, o)| o).collect()
}

/// Starts all at once through the batch; the answers in order.
async fn start_together<F: FundsCheck + Default + 'static>(
    core: &Core,
    starts: Vec<(DriverId, StartCover)>,
) -> Vec<Option<CoverSession>> {
    together(starts, |(driver_id, start)| {
        let core = core.clone();
        async move {
            try_start_batched::<F>(&core, driver_id, &start)
                .await
                .map(|s| s.session)
        }
    })
    .await
}

/// Ends all at once through the batch; the answers in order.
async fn end_together(
    core: &Core,
    ends: Vec<(DriverId, CoverSessionId)>,
) -> Vec<Option<CoverSession>> {
    together(ends, |(driver_id, session_id)| {
        let core = core.clone();
        async move {
            try_end_batched::<AfterEnd>(&core, driver_id, session_id)
                .await
                .map(|s| s.session)
        }
    })
    .await
}

/// `calls` calls shared fewer statements than calls.
fn assert_shared(stats: shared::batch::BatchStats, calls: u64) {
    assert_eq!(stats.calls, calls);
    assert!(
        stats.batches < stats.calls && stats.largest > 1,
        "{stats:?}"
    );
}

/// The details of the audit row about `session` among `rows` (from [`audit_rows`]).
fn details_of<'r>(
    rows: &'r [(String, Option<String>, String, serde_json::Value)],
    session: &CoverSession,
) -> &'r serde_json::Value {
    &rows
        .iter()
        .find(|r| r.2 == session.id.to_string())
        .unwrap()
        .3
}

/// `n` drivers with a car, enrolled (active) in `product`.
async fn enrolled_drivers(
    conn: &mut AsyncPgConnection,
    clock: &FixedClock,
    n: usize,
    product: pricing::ProductId,
) -> Vec<(DriverId, accounts::Vehicle, cover::Enrolment)> {
    let mut drivers = Vec::with_capacity(n);
    for i in 0..n {
        let phone = format!("07911 1234{i:02}");
        drivers.push(enrolled_driver(conn, clock, &phone, product).await);
    }
    drivers
}

/// The text recorded for `cause`: (status, body, driver, and whether its delivery job exists).
async fn text(
    conn: &mut AsyncPgConnection,
    cause: &str,
) -> (String, String, Option<uuid::Uuid>, bool) {
    let n = notifications::find_by_cause(conn, cause)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no text for {cause}"));
    let jobs: i64 = outbox_jobs::table
        .filter(outbox_jobs::job_type.eq("DeliverNotification"))
        .filter(outbox_jobs::idempotency_key.eq(n.id.to_string()))
        .count()
        .get_result(conn)
        .await
        .unwrap();
    (n.status.to_string(), n.body_text, n.driver_id, jobs == 1)
}

/// A text with its session's own details replaced, to compare two sessions' texts.
fn generic(body: &str, session: &CoverSession) -> String {
    body.replace(&session.certificate_number, "SC-XXXX-XXXX")
}

/// A start's audit details, checked against its session, with the session's own ids replaced
/// (to compare two sessions' entries).
fn generic_details(details: &serde_json::Value, session: &CoverSession) -> serde_json::Value {
    assert_eq!(details["vehicle_id"], session.vehicle_id.to_string());
    assert_eq!(details["enrolment_id"], session.enrolment_id.to_string());
    assert_eq!(details["quote_id"], session.quote_id.to_string());
    assert_eq!(details["certificate_number"], session.certificate_number);
    let mut d = details.clone();
    for key in [
        "vehicle_id",
        "enrolment_id",
        "quote_id",
        "certificate_number",
    ] {
        d[key] = serde_json::Value::String("…".into());
    }
    d
}

#[tokio::test]
async fn starts_and_ends_made_together_write_what_one_at_a_time_writes() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = Arc::new(clock());
    let (food, _) = products(&mut conn).await;
    let drivers = enrolled_drivers(&mut conn, &clock, 13, food.product_id).await;
    let core = core_for(&db, &clock);

    // The first driver starts alone, on the one-at-a-time path; twelve more start together.
    let (alone, alone_car, _) = &drivers[0];
    let single = start_alone(&mut conn, &clock, *alone, alone_car.id, "alone").await;
    let starts = drivers[1..]
        .iter()
        .enumerate()
        .map(|(i, (d, car, _))| (*d, plain(car.id, &format!("key-{i}"))))
        .collect();
    let started = start_together::<Funded>(&core, starts).await;
    assert_shared(core.batcher::<StartBatch<Funded>>().stats(), 12);

    let single_audit = audit_rows(&mut conn, "cover.session_started").await;
    let single_details = details_of(&single_audit, &single);
    let (_, single_body, _, _) = text(&mut conn, &format!("cover_started:{}", single.id)).await;
    for (i, session) in started.iter().enumerate() {
        let session = session
            .as_ref()
            .unwrap_or_else(|| panic!("start {i} fell back"));
        let (driver_id, car, enrolment) = &drivers[i + 1];
        assert_eq!(session.driver_id, *driver_id);
        assert_eq!(session.vehicle_id, car.id);
        assert_eq!(session.enrolment_id, enrolment.id);
        assert_eq!(session.status, SessionStatus::Active);
        assert_eq!(session.idempotency_key, format!("key-{i}"));
        assert_eq!(session.source, SessionSource::Driver);
        // Same profile, same moment, same product: the same price and version as alone.
        assert_eq!(session.hourly_rate, single.hourly_rate);
        assert_eq!(session.product_version_id, single.product_version_id);
        assert_eq!(session.started_at, single.started_at);
        assert_eq!(session.max_end_at, single.max_end_at);
        assert_ne!(session.certificate_number, single.certificate_number);
        // Stored as read back, with its quote.
        let stored = cover::get_session_for_driver(&mut conn, *driver_id, session.id)
            .await
            .unwrap();
        assert_eq!(&stored, session);
        let quote = pricing::get_quote(&mut conn, session.quote_id)
            .await
            .unwrap();
        assert_eq!(quote.hourly_rate, session.hourly_rate);
        assert_eq!(quote.vehicle_id, car.id);
        // Its audit entry and text, as a single start's.
        let audit = audit_rows(&mut conn, "cover.session_started").await;
        let mine: Vec<_> = audit
            .iter()
            .filter(|r| r.2 == session.id.to_string())
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].0, "driver");
        assert_eq!(mine[0].1.as_deref(), Some(driver_id.to_string().as_str()));
        assert_eq!(
            generic_details(&mine[0].3, session),
            generic_details(single_details, &single)
        );
        let (status, body, text_driver, job) =
            text(&mut conn, &format!("cover_started:{}", session.id)).await;
        assert_eq!(status, "pending");
        assert_eq!(text_driver, Some(driver_id.uuid()));
        assert!(job, "the text's delivery job is enqueued");
        assert_eq!(generic(&body, session), generic(&single_body, &single));
    }

    // 75 minutes later: the lone driver ends alone, the others together.
    clock.advance(Duration::minutes(75));
    let single_end = cover::end_session(
        &mut conn,
        clock.as_ref(),
        *alone,
        single.id,
        EndReason::Driver,
    )
    .await
    .unwrap()
    .session;
    let ends = started
        .iter()
        .map(|s| {
            let s = s.as_ref().unwrap();
            (s.driver_id, s.id)
        })
        .collect();
    let ended = end_together(&core, ends).await;
    assert_shared(core.batcher::<EndBatch<AfterEnd>>().stats(), 12);
    let end_audit = audit_rows(&mut conn, "cover.session_ended").await;
    let single_end_details = details_of(&end_audit, &single);
    let (_, single_end_body, _, _) = text(&mut conn, &format!("cover_ended:{}", single.id)).await;
    assert_eq!(single_end.charge.unwrap().minutes, 75);
    for (i, session) in ended.iter().enumerate() {
        let session = session
            .as_ref()
            .unwrap_or_else(|| panic!("end {i} fell back"));
        assert_eq!(session.id, started[i].as_ref().unwrap().id);
        assert_eq!(session.status, SessionStatus::Ended);
        assert_eq!(session.end_reason, Some(EndReason::Driver));
        assert_eq!(session.ended_at, single_end.ended_at);
        assert_eq!(session.charge, single_end.charge, "priced as alone");
        let stored = cover::get_session_for_driver(&mut conn, session.driver_id, session.id)
            .await
            .unwrap();
        assert_eq!(&stored, session);
        let mine: Vec<_> = end_audit
            .iter()
            .filter(|r| r.2 == session.id.to_string())
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(&mine[0].3, single_end_details, "the same details as alone");
        let (status, body, _, job) = text(&mut conn, &format!("cover_ended:{}", session.id)).await;
        assert_eq!(status, "pending");
        assert!(job);
        assert_eq!(generic(&body, session), generic(&single_end_body, &single));
        let follow_ups: i64 = outbox_jobs::table
            .filter(outbox_jobs::job_type.eq(AfterEnd::TYPE))
            .filter(outbox_jobs::idempotency_key.eq(session.id.to_string()))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(follow_ups, 1, "the follow-up job commits with the ending");
    }
}

#[tokio::test]
async fn the_daily_cap_counts_what_the_day_already_charged() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = Arc::new(clock());
    let (food, _) = products(&mut conn).await;
    let (me, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let (twin, twin_car, _) =
        enrolled_driver(&mut conn, &clock, OTHER_PHONE, food.product_id).await;
    let core = core_for(&db, &clock);

    // Both drivers work the same long day: a first session, then a second one that reaches the
    // cap. One ends each session alone, the other through the batch.
    let mut charges = Vec::new();
    for (round, hours) in [(0, 9), (1, 6)] {
        let mine = start_alone(&mut conn, &clock, me, car.id, &format!("mine-{round}")).await;
        let theirs = start_together::<Funded>(
            &core,
            vec![(twin, plain(twin_car.id, &format!("twin-{round}")))],
        )
        .await
        .remove(0)
        .expect("a plain start");
        clock.advance(Duration::hours(hours));
        let alone = cover::end_session(&mut conn, clock.as_ref(), me, mine.id, EndReason::Driver)
            .await
            .unwrap()
            .session;
        let batched = end_together(&core, vec![(twin, theirs.id)])
            .await
            .remove(0)
            .expect("a plain end");
        assert_eq!(batched.charge, alone.charge, "round {round}");
        charges.push(batched.charge.unwrap());
        clock.advance(Duration::minutes(10));
    }
    assert_eq!(charges[1].rule, pricing::ChargeRule::Capped, "{charges:?}");
}

#[tokio::test]
async fn what_is_not_plain_is_left_to_the_single_path_and_nothing_is_written_for_it() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = Arc::new(clock());
    let (food, _) = products(&mut conn).await;
    let drivers = enrolled_drivers(&mut conn, &clock, 6, food.product_id).await;
    let core = core_for(&db, &clock);
    let (on_cover, on_cover_car, _) = &drivers[0];
    let running = start_alone(&mut conn, &clock, *on_cover, on_cover_car.id, "first").await;
    let (suspended, suspended_car, suspended_enrolment) = &drivers[2];
    let changed = cover::suspend(
        &mut conn,
        clock.as_ref(),
        suspended_enrolment.id,
        "card_failed",
        accounts::Actor::System,
    )
    .await
    .unwrap();
    assert_eq!(changed.enrolment.status, cover::EnrolmentStatus::Suspended);
    let (someone, _, _) = &drivers[4];
    let (plain_driver, plain_car, _) = &drivers[5];
    let (twice, twice_car, _) = &drivers[3];

    let answers = start_together::<Funded>(
        &core,
        vec![
            // Already on cover, with a new key; and the same key again.
            (*on_cover, plain(on_cover_car.id, "second")),
            (*on_cover, plain(on_cover_car.id, "first")),
            // A suspended enrolment.
            (*suspended, plain(suspended_car.id, "s")),
            // Another driver's vehicle.
            (*someone, plain(plain_car.id, "theirs")),
            // A quote given, and a partner's start: not plain.
            (
                *twice,
                StartCover {
                    quote_id: Some(pricing::QuoteId::new()),
                    ..plain(twice_car.id, "quoted")
                },
            ),
            (
                *plain_driver,
                StartCover {
                    source: SessionSource::Partner {
                        partner_id: accounts::PartnerId::new(),
                        reference: None,
                    },
                    ..plain(plain_car.id, "partner")
                },
            ),
        ],
    )
    .await;
    assert!(answers.iter().all(Option::is_none), "{answers:?}");
    // Two starts of one driver in one burst: one is stored, the other left to the single path.
    let answers = start_together::<Funded>(
        &core,
        vec![
            (*twice, plain(twice_car.id, "a")),
            (*twice, plain(twice_car.id, "b")),
        ],
    )
    .await;
    assert_eq!(
        answers.iter().filter(|a| a.is_some()).count(),
        1,
        "{answers:?}"
    );
    // A driver who cannot pay.
    let answers =
        start_together::<Broke>(&core, vec![(*plain_driver, plain(plain_car.id, "p"))]).await;
    assert_eq!(answers, vec![None]);
    let open: i64 = cover::schema::cover_sessions::table
        .filter(cover::schema::cover_sessions::status.eq("active"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(open, 2, "only the running session and one of the burst's");

    // Ends: another driver's session, an unknown one, the same session twice, an ended one.
    let first_twice = cover::active_session_for_driver(&mut conn, *twice)
        .await
        .unwrap()
        .unwrap();
    let answers = end_together(
        &core,
        vec![
            (*someone, running.id),
            (*on_cover, CoverSessionId::new()),
            (*twice, first_twice.id),
            (*twice, first_twice.id),
        ],
    )
    .await;
    assert_eq!(answers[0], None);
    assert_eq!(answers[1], None);
    assert_eq!(
        answers[2..].iter().filter(|a| a.is_some()).count(),
        1,
        "{answers:?}"
    );
    let again = end_together(&core, vec![(*twice, first_twice.id)]).await;
    assert_eq!(
        again,
        vec![None],
        "an ended session is left to the single path"
    );
    let still = cover::get_session_for_driver(&mut conn, *on_cover, running.id)
        .await
        .unwrap();
    assert_eq!(still.status, SessionStatus::Active);
    assert_eq!(audit_rows(&mut conn, "cover.session_ended").await.len(), 1);
    let follow_ups: i64 = outbox_jobs::table
        .filter(outbox_jobs::job_type.eq(AfterEnd::TYPE))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(follow_ups, 1);
}

#[tokio::test]
async fn a_start_the_database_refuses_is_left_to_the_single_path_and_the_others_are_stored() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = Arc::new(clock());
    let (food, hire) = products(&mut conn).await;
    let (a, a_car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let (b, b_car, _) = enrolled_driver(&mut conn, &clock, OTHER_PHONE, hire.product_id).await;
    let core = core_for(&db, &clock);
    // The process remembers the hire product's published version; the database then retires it
    // behind the process's back, so that start's quote insert is refused and fails the batch.
    let _ = pricing::published_version(&mut conn, hire.product_id)
        .await
        .unwrap();
    diesel::sql_query(
        "UPDATE product_versions SET status = 'retired', retired_at = published_at WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(hire.id.uuid())
    .execute(&mut conn)
    .await
    .unwrap();
    let answers = start_together::<Funded>(
        &core,
        vec![(a, plain(a_car.id, "a")), (b, plain(b_car.id, "b"))],
    )
    .await;
    assert!(
        answers[0].is_some(),
        "the other start is stored: {answers:?}"
    );
    assert_eq!(
        answers[1], None,
        "the refused start is left to the single path"
    );
    let b_sessions: i64 = cover::schema::cover_sessions::table
        .filter(cover::schema::cover_sessions::driver_id.eq(b))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(b_sessions, 0);
}

#[tokio::test]
async fn a_start_that_loses_a_race_rolls_its_batch_back_and_is_left_to_the_single_path() {
    use diesel_async::AsyncConnection;
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = Arc::new(clock());
    let (food, _) = products(&mut conn).await;
    let drivers = enrolled_drivers(&mut conn, &clock, 2, food.product_id).await;
    let core = core_for(&db, &clock);
    let (racer, racer_car, _) = drivers[0].clone();
    let (other, other_car, _) = drivers[1].clone();

    // Another request starts the racer's cover and has not committed yet.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (commit_tx, commit_rx) = tokio::sync::oneshot::channel::<()>();
    let mut held = db.conn().await.unwrap();
    let held_clock = Arc::clone(&clock);
    let holder = tokio::spawn(async move {
        held.transaction::<_, cover::CoverError, _>(async |conn| {
            let session = cover::start_session(
                conn,
                held_clock.as_ref(),
                &cover_settings(),
                racer,
                plain(racer_car.id, "held"),
                &Funded,
            )
            .await?
            .session;
            started_tx.send(()).unwrap();
            commit_rx.await.unwrap();
            Ok(session)
        })
        .await
        .unwrap()
    });
    started_rx.await.unwrap();
    // The batch reads no open session for the racer, then waits for the enrolment's lock, and
    // its insert then finds the session the other request committed.
    let batch = tokio::spawn({
        let core = core.clone();
        async move {
            start_together::<Funded>(
                &core,
                vec![
                    (racer, plain(racer_car.id, "batched")),
                    (other, plain(other_car.id, "other")),
                ],
            )
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    commit_tx.send(()).unwrap();
    let held_session = holder.await.unwrap();
    let answers = batch.await.unwrap();

    assert_eq!(
        answers[0], None,
        "the racer's start is left to the single path"
    );
    let stored = answers[1]
        .as_ref()
        .expect("the other driver's start is stored");
    assert_eq!(stored.driver_id, other);
    let racer_sessions: Vec<uuid::Uuid> = cover::schema::cover_sessions::table
        .filter(cover::schema::cover_sessions::driver_id.eq(racer))
        .select(cover::schema::cover_sessions::id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(racer_sessions, vec![held_session.id.uuid()]);
    let texts: i64 = notifications::schema::notifications::table
        .filter(notifications::schema::notifications::driver_id.eq(racer.uuid()))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(texts, 1, "only the committed start's text");
}
