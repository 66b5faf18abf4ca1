//! Idempotent starts and racing starts: the database has the last word.

use crate::support::*;
use cover::{SessionSource, SessionStatus, StartCover};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use shared::Secret;
use shared::db::build_pool;
use shared::settings::DatabaseSettings;
use std::sync::Arc;
use testkit::TestDb;

fn start(vehicle_id: accounts::VehicleId, key: &str) -> StartCover {
    StartCover {
        vehicle_id,
        product_id: None,
        quote_id: None,
        idempotency_key: key.into(),
        source: SessionSource::Driver,
    }
}

#[tokio::test]
async fn the_same_key_returns_the_same_session_and_other_parameters_are_refused() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, hire) = products(&mut conn).await;
    let (driver_id, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
    let funds = TestFunds::ok();
    let settings = cover_settings();

    let first = cover::start_session(
        &mut conn,
        &clock,
        &settings,
        driver_id,
        start(car.id, "tap-1"),
        &funds,
    )
    .await
    .unwrap();
    assert!(!first.replayed);
    clock.advance(chrono::Duration::seconds(5));
    let again = cover::start_session(
        &mut conn,
        &clock,
        &settings,
        driver_id,
        start(car.id, "tap-1"),
        &funds,
    )
    .await
    .unwrap();
    assert!(again.replayed);
    assert!(again.events.is_empty());
    assert_eq!(again.session, first.session);

    // Same key, another vehicle or another product: refused.
    let bike = vehicle(
        &mut conn,
        &clock,
        driver_id,
        accounts::VehicleType::EBike,
        None,
    )
    .await;
    let err = cover::start_session(
        &mut conn,
        &clock,
        &settings,
        driver_id,
        start(bike.id, "tap-1"),
        &funds,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "IDEMPOTENCY_KEY_REUSED");
    let mut other_product = start(car.id, "tap-1");
    other_product.product_id = Some(hire.product_id);
    let err = cover::start_session(
        &mut conn,
        &clock,
        &settings,
        driver_id,
        other_product,
        &funds,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "IDEMPOTENCY_KEY_REUSED");

    // A new key while on cover.
    let err = cover::start_session(
        &mut conn,
        &clock,
        &settings,
        driver_id,
        start(car.id, "tap-2"),
        &funds,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "ALREADY_ON_COVER");

    // Keys are per driver: another driver may use "tap-1".
    let (other, other_car, _) =
        enrolled_driver(&mut conn, &clock, OTHER_PHONE, food.product_id).await;
    let theirs = cover::start_session(
        &mut conn,
        &clock,
        &settings,
        other,
        start(other_car.id, "tap-1"),
        &funds,
    )
    .await
    .unwrap();
    assert_ne!(theirs.session.id, first.session.id);

    let err = cover::start_session(
        &mut conn,
        &clock,
        &settings,
        driver_id,
        start(car.id, ""),
        &funds,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "INVALID_IDEMPOTENCY_KEY");
}

async fn racing_pool(db: &TestDb) -> shared::DbPool {
    build_pool(&DatabaseSettings {
        url: Secret::new(db.url()),
        pool_size: 20,
        acquire_timeout_ms: 60_000,
        batch_concurrency: 1,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_racing_starts_with_different_keys_make_one_session() {
    let db = TestDb::new().await.unwrap();
    let clock = clock();
    let (driver_id, car) = {
        let mut conn = db.conn().await.unwrap();
        let (food, _) = products(&mut conn).await;
        let (driver_id, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
        (driver_id, car)
    };
    let pool = racing_pool(&db).await;
    let funds = Arc::new(TestFunds::ok());
    let settings = Arc::new(cover_settings());
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (pool, funds, settings, clock, barrier) = (
            pool.clone(),
            funds.clone(),
            settings.clone(),
            clock.clone(),
            barrier.clone(),
        );
        let car_id = car.id;
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut conn = pool.get().await.unwrap();
            cover::start_session(
                &mut conn,
                &clock,
                &settings,
                driver_id,
                start(car_id, &format!("racer-{i}")),
                &*funds,
            )
            .await
        }));
    }
    let mut started = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(s) => started.push(s),
            Err(e) => assert_eq!(code(&e), "ALREADY_ON_COVER", "{e:?}"),
        }
    }
    assert_eq!(started.len(), 1, "exactly one start wins");
    assert!(!started[0].replayed);

    let mut conn = db.conn().await.unwrap();
    let rows: Vec<(cover::CoverSessionId, String)> = cover::schema::cover_sessions::table
        .filter(cover::schema::cover_sessions::driver_id.eq(driver_id))
        .select((
            cover::schema::cover_sessions::id,
            cover::schema::cover_sessions::status,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![(started[0].session.id, SessionStatus::Active.to_string())]
    );
    assert_eq!(
        audit_rows(&mut conn, "cover.session_started").await.len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_starts_with_the_same_key_all_get_the_one_session() {
    let db = TestDb::new().await.unwrap();
    let clock = clock();
    let (driver_id, car) = {
        let mut conn = db.conn().await.unwrap();
        let (food, _) = products(&mut conn).await;
        let (driver_id, car, _) = enrolled_driver(&mut conn, &clock, PHONE, food.product_id).await;
        (driver_id, car)
    };
    let pool = racing_pool(&db).await;
    let funds = Arc::new(TestFunds::ok());
    let settings = Arc::new(cover_settings());
    let barrier = Arc::new(tokio::sync::Barrier::new(30));
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (pool, funds, settings, clock, barrier) = (
            pool.clone(),
            funds.clone(),
            settings.clone(),
            clock.clone(),
            barrier.clone(),
        );
        let car_id = car.id;
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut conn = pool.get().await.unwrap();
            cover::start_session(
                &mut conn,
                &clock,
                &settings,
                driver_id,
                start(car_id, "double-tap"),
                &*funds,
            )
            .await
            .unwrap()
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let id = results[0].session.id;
    assert!(results.iter().all(|r| r.session.id == id));
    assert_eq!(results.iter().filter(|r| !r.replayed).count(), 1);
    assert_eq!(results.iter().map(|r| r.events.len()).sum::<usize>(), 1);
}
