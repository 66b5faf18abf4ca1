//! Reads batched across concurrent requests (`shared::batch`): driver sessions by token, drivers
//! with a vehicle, and how a batch that fails answers each caller.

use crate::support::*;
use accounts::{
    AccountsError, NewVehicle, VehicleType, add_vehicle, authenticate_driver_batched,
    get_driver_and_vehicle, get_driver_and_vehicle_batched, remove_vehicle, sign_out,
};
use diesel::sql_types::{Array, Integer};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use shared::batch::{BatchError, BatchFuture, BatchQuery, Batcher};
use shared::core::Core;
use std::sync::Arc;
use testkit::TestDb;

/// A core running one batch of each kind at a time, so requests made together share one.
fn batching_core(db: &TestDb) -> Core {
    let mut settings = testkit::settings_for(db);
    settings.database.batch_concurrency = 1;
    Core::new(settings, Arc::new(clock())).unwrap()
}

#[tokio::test]
async fn sessions_authenticated_at_once_are_read_together_and_each_judged_on_its_own() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let mut signed_in = Vec::new();
    for n in 0..10 {
        signed_in.push(sign_in(&mut conn, &clock, &format!("07911 1234{n:02}")).await);
    }
    // One signs out; one token is unknown; one is malformed (never reaches the database).
    let principal = accounts::authenticate_driver(&mut conn, &clock, &signed_in[3].token)
        .await
        .unwrap();
    sign_out(&mut conn, &clock, principal.session_id)
        .await
        .unwrap();
    let unknown = format!("sct_{}", "A".repeat(43));
    let core = batching_core(&db);

    let mut tokens: Vec<String> = signed_in.iter().map(|s| s.token.clone()).collect();
    tokens.push(signed_in[0].token.clone()); // the same token twice in one batch
    tokens.push(unknown);
    tokens.push("sct_short".into());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, token) in tokens.iter().cloned().enumerate() {
        let core = core.clone();
        tasks.spawn(async move { (i, authenticate_driver_batched(&core, &token).await) });
    }
    let mut answers = vec![None; tokens.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, answer) = done.unwrap();
        answers[i] = Some(answer.map(|p| p.driver_id).map_err(|e| auth_code(&e)));
    }
    for (i, answer) in answers.iter().enumerate() {
        let expected = match i {
            3 => Err("SESSION_REVOKED"),
            10 => Ok(signed_in[0].driver_id),
            11 | 12 => Err("UNAUTHENTICATED"),
            _ => Ok(signed_in[i].driver_id),
        };
        assert_eq!(answer.as_ref().unwrap(), &expected, "token {i}");
    }
    let stats = core.batcher::<accounts::DriverSessionsByToken>().stats();
    assert_eq!(
        stats.calls, 12,
        "the malformed token is refused before the batch"
    );
    assert!(
        stats.batches < stats.calls && stats.largest > 1,
        "{stats:?}"
    );
}

#[tokio::test]
async fn drivers_with_vehicles_read_together_answer_as_one_read_each() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let a = sign_in(&mut conn, &clock, "07911 123401").await.driver_id;
    let b = sign_in(&mut conn, &clock, "07911 123402").await.driver_id;
    let gone = sign_in(&mut conn, &clock, "07911 123403").await.driver_id;
    let car = |reg: &str| NewVehicle {
        vehicle_type: VehicleType::Car,
        registration: Some(reg.into()),
        make: None,
        model: None,
    };
    let a1 = add_vehicle(&mut conn, &clock, a, car("AB12CDE"))
        .await
        .unwrap()
        .id;
    let a2 = add_vehicle(&mut conn, &clock, a, car("AB12CDF"))
        .await
        .unwrap()
        .id;
    let b1 = add_vehicle(&mut conn, &clock, b, car("AB12CDG"))
        .await
        .unwrap()
        .id;
    let g1 = add_vehicle(&mut conn, &clock, gone, car("AB12CDH"))
        .await
        .unwrap()
        .id;
    remove_vehicle(&mut conn, &clock, a, a2).await.unwrap();
    conn.batch_execute(&format!(
        "UPDATE drivers SET deleted_at = now() WHERE id = '{}'",
        gone.uuid()
    ))
    .await
    .unwrap();
    let nobody = accounts::DriverId::new();
    let no_vehicle = accounts::VehicleId::new();
    let pairs = [
        (a, a1),
        (a, b1),
        (b, b1),
        (a, a2),
        (gone, g1),
        (nobody, a1),
        (b, no_vehicle),
        (a, a1),
    ];
    let core = batching_core(&db);

    let mut tasks = tokio::task::JoinSet::new();
    for (i, (d, v)) in pairs.into_iter().enumerate() {
        let core = core.clone();
        tasks.spawn(async move { (i, get_driver_and_vehicle_batched(&core, d, v).await) });
    }
    let mut answers = vec![None; pairs.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, answer) = done.unwrap();
        answers[i] = Some(describe(answer));
    }
    for (i, (d, v)) in pairs.into_iter().enumerate() {
        let alone = describe(get_driver_and_vehicle(&mut conn, d, v).await);
        assert_eq!(answers[i].as_ref().unwrap(), &alone, "pair {i}");
    }
    let expected = [
        Ok((a, a1)),
        Err("NOT_FOUND vehicleId".to_owned()),
        Ok((b, b1)),
        Err("NOT_FOUND vehicleId".to_owned()),
        Err("NOT_FOUND driverId".to_owned()),
        Err("NOT_FOUND driverId".to_owned()),
        Err("NOT_FOUND vehicleId".to_owned()),
        Ok((a, a1)),
    ];
    for (i, e) in expected.iter().enumerate() {
        assert_eq!(answers[i].as_ref().unwrap(), e, "pair {i}");
    }
    let stats = core.batcher::<accounts::DriversWithVehicles>().stats();
    assert_eq!(stats.calls, pairs.len() as u64);
    assert!(stats.batches < stats.calls, "{stats:?}");
}

type Described = Result<(accounts::DriverId, accounts::VehicleId), String>;

fn describe(answer: Result<(accounts::Driver, accounts::Vehicle), AccountsError>) -> Described {
    answer
        .map(|(d, v)| (d.id, v.id))
        .map_err(|e| format!("{} {}", code(&e), field(&e).unwrap_or_default()))
}

/// 100 divided by each input, in one statement: a zero fails the whole statement.
#[derive(Default)]
struct HundredDividedBy;

impl BatchQuery for HundredDividedBy {
    type Input = i32;
    type Output = i32;
    const NAME: &'static str = "hundred divided by";

    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        inputs: &'a [i32],
    ) -> BatchFuture<'a, i32> {
        #[derive(diesel::QueryableByName)]
        struct Quotient {
            #[diesel(sql_type = Integer)]
            q: i32,
        }
        Box::pin(async move {
            let rows: Vec<Quotient> = shared::sql::prepared(
                "SELECT 100 / x AS q FROM unnest($1::int4[]) WITH ORDINALITY AS t(x, n) ORDER BY n",
            )
            .bind::<Array<Integer>, _>(inputs.to_vec())
            .load(conn)
            .await?;
            Ok(rows.into_iter().map(|r| r.q).collect())
        })
    }
}

#[tokio::test]
async fn a_failed_batch_is_answered_input_by_input_so_only_the_bad_input_fails() {
    let db = TestDb::new().await.unwrap();
    let batcher = Arc::new(Batcher::<HundredDividedBy>::new(db.pool().clone(), 1, 64));
    let inputs = [5, 0, 20, 50, 0, 4];
    let mut tasks = tokio::task::JoinSet::new();
    for (i, x) in inputs.into_iter().enumerate() {
        let batcher = Arc::clone(&batcher);
        tasks.spawn(async move { (i, batcher.call(x).await) });
    }
    let mut answers: Vec<Option<Result<i32, BatchError>>> = inputs.iter().map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, answer) = done.unwrap();
        answers[i] = Some(answer);
    }
    for (i, x) in inputs.into_iter().enumerate() {
        match answers[i].as_ref().unwrap() {
            Ok(q) => assert_eq!((x, *q), (x, 100 / x), "input {i}"),
            Err(BatchError::Query(e)) => {
                assert_eq!(x, 0, "input {i} failed: {e}");
                assert!(e.to_string().contains("division by zero"), "{e}");
            }
            Err(e) => panic!("input {i}: {e}"),
        }
    }
    assert_eq!(
        answers.iter().filter(|a| matches!(a, Some(Err(_)))).count(),
        2
    );
    let stats = batcher.stats();
    assert_eq!(stats.calls, 6);
    assert!(
        stats.largest > 1,
        "the zeros shared a batch with others: {stats:?}"
    );
}

#[tokio::test]
async fn batches_run_on_their_own_connections_with_generic_plans() {
    #[derive(diesel::QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        plan_cache_mode: String,
    }
    async fn mode(pool: &shared::DbPool) -> String {
        let mut conn = pool.get().await.unwrap();
        diesel::sql_query("SHOW plan_cache_mode")
            .get_result::<Mode>(&mut conn)
            .await
            .unwrap()
            .plan_cache_mode
    }
    let db = TestDb::new().await.unwrap();
    let core = batching_core(&db);
    assert_eq!(mode(&core.batch_pool).await, "force_generic_plan");
    assert_eq!(mode(&core.pool).await, "auto");
    assert_eq!(
        core.batch_pool.status().max_size,
        shared::db::BATCH_POOL_PER_SLOT * core.settings.database.batch_concurrency
    );
}

/// Answers nothing, whatever it is asked: a query that breaks the one-answer-per-input rule.
#[derive(Default)]
struct AnswersNothing;

impl BatchQuery for AnswersNothing {
    type Input = i32;
    type Output = i32;
    const NAME: &'static str = "answers nothing";

    fn run<'a>(
        &'a self,
        _conn: &'a mut AsyncPgConnection,
        _inputs: &'a [i32],
    ) -> BatchFuture<'a, i32> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

#[tokio::test]
async fn a_batch_without_a_connection_or_with_too_few_answers_fails_each_caller_plainly() {
    let db = TestDb::new().await.unwrap();
    let miscounted = Batcher::<AnswersNothing>::new(db.pool().clone(), 1, 64);
    match miscounted.call(7).await {
        Err(BatchError::Miscounted {
            query,
            inputs,
            outputs,
        }) => assert_eq!((query, inputs, outputs), ("answers nothing", 1, 0)),
        other => panic!("expected a miscount, got {other:?}"),
    }

    // Nothing listens on port 1: the pool gives up and every caller is told why.
    let unreachable = shared::db::build_pool(&shared::settings::DatabaseSettings {
        url: shared::Secret::new("postgres://postgres@127.0.0.1:1/nowhere"),
        pool_size: 1,
        acquire_timeout_ms: 500,
        batch_concurrency: 1,
    })
    .unwrap();
    let batcher = Batcher::<HundredDividedBy>::new(unreachable, 1, 64);
    match batcher.call(5).await {
        Err(e @ BatchError::Pool { .. }) => {
            assert!(
                e.to_string()
                    .starts_with("hundred divided by: database pool"),
                "{e}"
            )
        }
        other => panic!("expected a pool error, got {other:?}"),
    }
}
