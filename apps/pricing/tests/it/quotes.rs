//! Quotes: rating a real driver and vehicle, locking the price, expiry, ownership, declines, and
//! following the published version as it changes.

use crate::support::*;
use accounts::{Actor, VehicleType};
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use pricing::{
    ProductId, VersionStatus, create_draft_version, create_product, create_quote, get_quote,
    get_valid_quote, publish_version, rate, set_test_cases,
};
use shared::Clock;
use testkit::TestDb;

async fn seeded(conn: &mut diesel_async::AsyncPgConnection) -> (ProductId, ProductId) {
    // Published at the tests' fixed time, so versions a test publishes come after.
    let versions = pricing::seed_demo_products_at(conn, &clock())
        .await
        .unwrap();
    (versions[0].product_id, versions[1].product_id)
}

#[tokio::test]
async fn a_quote_rates_the_driver_and_locks_the_price_for_15_minutes() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock(); // Monday 14:00 GMT: the day band
    let (food, _) = seeded(&mut conn).await;
    // Born 1990, licensed 2010, East London: 36, 16 years licensed.
    let me = driver(
        &mut conn,
        &clock,
        "07911 123456",
        date(1990, 5, 17),
        date(2010, 6, 1),
        "E1 6AN",
    )
    .await;
    let car = vehicle(&mut conn, &clock, me, VehicleType::Car, "AB12CDE").await;

    let q = create_quote(&mut conn, &clock, me, car, food)
        .await
        .unwrap();
    assert!(q.id.to_string().starts_with("quo_"));
    assert_eq!(q.product_id, food);
    // £1.80 × 1.30 (E), every other factor ×1: £2.34.
    assert_eq!(q.hourly_rate.minor, 234);
    assert_eq!(q.minimum_charge.minor, 234);
    assert_eq!(q.daily_cap.minor, 2000);
    assert_eq!(q.one_hour.total.minor, 234);
    assert_eq!(
        (
            q.one_hour.net_premium.minor,
            q.one_hour.commission.minor,
            q.one_hour.ipt.minor
        ),
        (157, 52, 25)
    );
    assert_eq!(
        (q.one_hour.ipt_rate_bp, q.one_hour.commission_rate_bp),
        (1200, 2500)
    );
    assert_eq!(q.rating_input.driver_age, 36);
    assert_eq!(q.rating_input.years_licensed, 16);
    assert_eq!(q.rating_input.postcode, "E");
    assert_eq!(q.expires_at, clock.now() + chrono::Duration::minutes(15));
    let lines: Vec<String> = q.explanation.iter().map(ToString::to_string).collect();
    assert_eq!(lines[0], "base rate (car): £1.80");
    assert_eq!(lines[1], "region (E): ×1.3000");

    // What was stored reads back the same, and matches rating the version directly.
    assert_eq!(
        get_valid_quote(&mut conn, &clock, me, q.id).await.unwrap(),
        q
    );
    let version = pricing::get_version(&mut conn, q.product_version_id)
        .await
        .unwrap();
    assert_eq!(
        rate(&version, &q.rating_input).unwrap().hourly,
        q.hourly_rate
    );

    clock.advance(chrono::Duration::minutes(14));
    assert!(get_valid_quote(&mut conn, &clock, me, q.id).await.is_ok());
    clock.advance(chrono::Duration::minutes(1));
    let e = get_valid_quote(&mut conn, &clock, me, q.id)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "QUOTE_EXPIRED");
    // Expired quotes are still there for the record.
    assert_eq!(get_quote(&mut conn, q.id).await.unwrap(), q);
    let e = get_quote(&mut conn, pricing::QuoteId::new())
        .await
        .unwrap_err();
    assert_eq!(code(&e), "QUOTE_NOT_FOUND");
}

#[tokio::test]
async fn quotes_are_refused_with_codes() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, private_hire) = seeded(&mut conn).await;
    let me = driver(
        &mut conn,
        &clock,
        "07911 123456",
        date(1990, 5, 17),
        date(2010, 6, 1),
        "E1 6AN",
    )
    .await;
    let other = driver(
        &mut conn,
        &clock,
        "+44 7700 123456",
        date(1985, 1, 2),
        date(2005, 1, 2),
        "M1 1AE",
    )
    .await;
    let my_car = vehicle(&mut conn, &clock, me, VehicleType::Car, "AB12CDE").await;
    let my_van = vehicle(&mut conn, &clock, me, VehicleType::Van, "VN12ABC").await;
    let their_car = vehicle(&mut conn, &clock, other, VehicleType::Car, "XY12ZZZ").await;

    let refuse = async |conn: &mut diesel_async::AsyncPgConnection, d, v, p| {
        code(&create_quote(conn, &clock, d, v, p).await.unwrap_err())
    };
    assert_eq!(
        refuse(&mut conn, me, their_car, food).await,
        "VEHICLE_NOT_FOUND"
    );
    assert_eq!(
        refuse(&mut conn, me, accounts::VehicleId::new(), food).await,
        "VEHICLE_NOT_FOUND"
    );
    assert_eq!(
        refuse(&mut conn, accounts::DriverId::new(), my_car, food).await,
        "DRIVER_NOT_FOUND"
    );
    assert_eq!(
        refuse(&mut conn, me, my_car, ProductId::new()).await,
        "PRODUCT_NOT_FOUND"
    );
    assert_eq!(
        refuse(&mut conn, me, my_van, food).await,
        "VEHICLE_NOT_COVERED"
    );
    // The van is covered by private hire.
    assert!(
        create_quote(&mut conn, &clock, me, my_van, private_hire)
            .await
            .is_ok()
    );

    let unpublished = create_product(&mut conn, &clock, Actor::System, "new_thing", "New")
        .await
        .unwrap();
    assert_eq!(
        refuse(&mut conn, me, my_car, unpublished.id).await,
        "PRODUCT_NOT_AVAILABLE"
    );

    // 20 years old: fine for food delivery, too young for private hire (21).
    let young = driver(
        &mut conn,
        &clock,
        "07911 123457",
        date(2006, 3, 1),
        date(2024, 4, 1),
        "SW1A 1AA",
    )
    .await;
    let young_car = vehicle(&mut conn, &clock, young, VehicleType::Car, "YN06CAR").await;
    assert!(
        create_quote(&mut conn, &clock, young, young_car, food)
            .await
            .is_ok()
    );
    let e = create_quote(&mut conn, &clock, young, young_car, private_hire)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "UNDER_MINIMUM_AGE");
    assert_eq!(e.user_error().unwrap().field, None);

    // No date of birth yet.
    let fresh = sign_in(&mut conn, &clock, "07911 123458").await;
    let fresh_bike = vehicle(&mut conn, &clock, fresh, VehicleType::Bicycle, "").await;
    let e = create_quote(&mut conn, &clock, fresh, fresh_bike, food)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "PROFILE_INCOMPLETE");
    assert_eq!(
        e.user_error().unwrap().field.as_deref(),
        Some("dateOfBirth")
    );

    // Someone else's quote is not found; so is one that does not exist.
    let q = create_quote(&mut conn, &clock, me, my_car, food)
        .await
        .unwrap();
    let e = get_valid_quote(&mut conn, &clock, other, q.id)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "QUOTE_NOT_FOUND");
    let e = get_valid_quote(&mut conn, &clock, me, pricing::QuoteId::new())
        .await
        .unwrap_err();
    assert_eq!(code(&e), "QUOTE_NOT_FOUND");
}

#[tokio::test]
async fn quotes_follow_the_published_version_as_it_changes() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = seeded(&mut conn).await;
    let me = driver(
        &mut conn,
        &clock,
        "07911 123456",
        date(1990, 5, 17),
        date(2010, 6, 1),
        "E1 6AN",
    )
    .await;
    let car = vehicle(&mut conn, &clock, me, VehicleType::Car, "AB12CDE").await;
    let q1 = create_quote(&mut conn, &clock, me, car, food)
        .await
        .unwrap();

    // A new version with a dearer car (and cases re-signed for it).
    let def = demo("food_delivery_hourly");
    let mut terms = def.terms.clone();
    terms
        .rate_table
        .base_hourly_rates
        .insert(VehicleType::Car, 200);
    let cases: Vec<_> = def
        .cases
        .iter()
        .filter(|c| c.vehicle_type != VehicleType::Car)
        .cloned()
        .collect();
    let v2 = create_draft_version(&mut conn, &clock, Actor::System, food, &terms)
        .await
        .unwrap();
    set_test_cases(&mut conn, &clock, Actor::System, v2.id, &cases)
        .await
        .unwrap();
    let v2 = publish_version(&mut conn, &clock, Actor::System, v2.id)
        .await
        .unwrap();

    let q2 = create_quote(&mut conn, &clock, me, car, food)
        .await
        .unwrap();
    assert_eq!(q2.product_version_id, v2.id);
    assert_eq!(q2.hourly_rate.minor, 260); // £2.00 × 1.30
    // The first quote keeps its version and price while valid.
    let q1_again = get_valid_quote(&mut conn, &clock, me, q1.id).await.unwrap();
    assert_eq!(q1_again.hourly_rate.minor, 234);
    assert_ne!(q1_again.product_version_id, v2.id);

    // Another process retires the version behind this one's back (raw SQL: no cache is told).
    conn.batch_execute(&format!(
        "UPDATE product_versions SET status = 'retired', retired_at = published_at WHERE id = '{}'",
        v2.id.uuid()
    ))
    .await
    .unwrap();
    let e = create_quote(&mut conn, &clock, me, car, food)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "PRODUCT_NOT_AVAILABLE");
    assert_eq!(
        pricing::get_version(&mut conn, v2.id).await.unwrap().status,
        VersionStatus::Retired
    );
    // The same inside a caller's transaction, which stays usable.
    let v3 = create_draft_version(&mut conn, &clock, Actor::System, food, &terms)
        .await
        .unwrap();
    set_test_cases(&mut conn, &clock, Actor::System, v3.id, &cases)
        .await
        .unwrap();
    let v3 = publish_version(&mut conn, &clock, Actor::System, v3.id)
        .await
        .unwrap();
    let q3 = create_quote(&mut conn, &clock, me, car, food)
        .await
        .unwrap();
    assert_eq!(q3.product_version_id, v3.id);
    conn.batch_execute(&format!(
        "UPDATE product_versions SET status = 'retired', retired_at = published_at WHERE id = '{}'",
        v3.id.uuid()
    ))
    .await
    .unwrap();
    let clock_ref = &clock;
    conn.transaction::<_, pricing::PricingError, _>(async |conn| {
        let e = create_quote(conn, clock_ref, me, car, food)
            .await
            .unwrap_err();
        assert_eq!(code(&e), "PRODUCT_NOT_AVAILABLE");
        assert!(get_valid_quote(conn, clock_ref, me, q3.id).await.is_ok());
        Ok(())
    })
    .await
    .unwrap();

    // And the database itself refuses a quote on a version that is not published.
    let err = conn
        .batch_execute(&format!(
            "INSERT INTO quotes SELECT gen_random_uuid(), driver_id, vehicle_id, product_version_id, \
             currency, hourly_rate_minor, minimum_charge_minor, daily_cap_minor, one_hour_net_minor, \
             one_hour_commission_minor, one_hour_ipt_minor, one_hour_total_minor, explanation, \
             rating_input, created_at, expires_at FROM quotes WHERE id = '{}'",
            q2.id.uuid()
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not published"), "{err}");
    // Nor does a quote ever move to another version.
    let err = conn
        .batch_execute(&format!(
            "UPDATE quotes SET product_version_id = '{}' WHERE id = '{}'",
            q2.product_version_id.uuid(),
            q1.id.uuid()
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot change"), "{err}");
}

/// Quotes per second straight to the database (no HTTP), 8 connections in parallel. Ignored by
/// default; run with `cargo test --release -p shiftcover-pricing --test it quote_throughput --
/// --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn quote_throughput() {
    let db = TestDb::new().await.unwrap();
    let clock = clock();
    let (food, _) = {
        let mut conn = db.conn().await.unwrap();
        seeded(&mut conn).await
    };
    let drivers = {
        let mut conn = db.conn().await.unwrap();
        drivers_with_cars(&mut conn, &clock, 8, |_| "E1 6AN").await
    };
    const PER_TASK: usize = 1_000;
    let started = std::time::Instant::now();
    let tasks: Vec<_> = drivers
        .into_iter()
        .map(|(d, v)| {
            let pool = db.pool().clone();
            let clock = clock.clone();
            tokio::spawn(async move {
                // One checkout per quote, as one request per quote would.
                for _ in 0..PER_TASK {
                    let mut conn = pool.get().await.unwrap();
                    create_quote(&mut conn, &clock, d, v, food).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let n = 8 * PER_TASK;
    println!(
        "create_quote: {n} quotes in {:.2?} = {:.0}/s",
        elapsed,
        n as f64 / elapsed.as_secs_f64()
    );
}

/// A core on `db` running one batch of each kind at a time, so requests made together share one.
fn batching_core(db: &TestDb) -> shared::core::Core {
    let mut settings = testkit::settings_for(db);
    settings.database.batch_concurrency = 1;
    shared::core::Core::new(settings, std::sync::Arc::new(clock())).unwrap()
}

#[tokio::test]
async fn quotes_made_at_once_are_stored_together_each_for_its_own_driver_and_price() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, _) = seeded(&mut conn).await;
    // Every other driver in Manchester (M, a cheaper area than E).
    let drivers = drivers_with_cars(&mut conn, &clock, 16, |i| {
        if i % 2 == 0 { "E1 6AN" } else { "M1 1AE" }
    })
    .await;
    let stranger = drivers[1].1;
    let core = batching_core(&db);

    let mut tasks = tokio::task::JoinSet::new();
    for (i, &(me, car)) in drivers.iter().enumerate() {
        let core = core.clone();
        tasks.spawn(async move { (i, pricing::create_quote_batched(&core, me, car, food).await) });
    }
    // In the same moment, a vehicle of someone else's: refused alone.
    let (me, _) = drivers[0];
    let refused = {
        let core = core.clone();
        tokio::spawn(async move { pricing::create_quote_batched(&core, me, stranger, food).await })
    };
    let mut quotes = vec![None; drivers.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, q) = done.unwrap();
        quotes[i] = Some(q.unwrap());
    }
    assert_eq!(
        code(&refused.await.unwrap().unwrap_err()),
        "VEHICLE_NOT_FOUND"
    );

    for (i, q) in quotes.iter().enumerate() {
        let q = q.as_ref().unwrap();
        let (me, car) = drivers[i];
        assert_eq!((q.driver_id, q.vehicle_id, q.product_id), (me, car, food));
        // The same price as a quote made on its own.
        let alone = create_quote(&mut conn, &clock, me, car, food)
            .await
            .unwrap();
        assert_eq!(q.hourly_rate, alone.hourly_rate, "driver {i}");
        assert_eq!(q.explanation, alone.explanation, "driver {i}");
        let stored = get_quote(&mut conn, q.id).await.unwrap();
        assert_eq!((stored.driver_id, stored.hourly_rate), (me, q.hourly_rate));
    }
    assert_eq!(quotes[0].as_ref().unwrap().hourly_rate.minor, 234); // E: £1.80 × 1.30
    assert_ne!(quotes[1].as_ref().unwrap().hourly_rate.minor, 234);
    // Fewer transactions than quotes: rows inserted by one statement share its transaction id.
    let ids: Vec<String> = quotes
        .iter()
        .map(|q| format!("'{}'", q.as_ref().unwrap().id.uuid()))
        .collect();
    let transactions = count(
        &mut conn,
        &format!(
            "SELECT count(DISTINCT xmin::text) AS n FROM quotes WHERE id IN ({})",
            ids.join(", ")
        ),
    )
    .await;
    assert!(
        (1..quotes.len() as i64).contains(&transactions),
        "{} quotes in {transactions} transactions",
        quotes.len()
    );
}

#[tokio::test]
async fn a_batch_with_quotes_on_a_retired_version_refuses_those_alone() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let (food, taxi) = seeded(&mut conn).await;
    let drivers = drivers_with_cars(&mut conn, &clock, 8, |_| "E1 6AN").await;
    let core = batching_core(&db);
    // Both products' published versions are remembered by this process...
    for product in [food, taxi] {
        let (me, car) = drivers[0];
        pricing::create_quote_batched(&core, me, car, product)
            .await
            .unwrap();
    }
    // ...when another process retires the food version (raw SQL: no cache is told).
    let retired = pricing::get_published(&mut conn, food).await.unwrap();
    conn.batch_execute(&format!(
        "UPDATE product_versions SET status = 'retired', retired_at = published_at WHERE id = '{}'",
        retired.id.uuid()
    ))
    .await
    .unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for (i, &(me, car)) in drivers.iter().enumerate() {
        let core = core.clone();
        let product = if i % 2 == 0 { food } else { taxi };
        tasks.spawn(async move {
            (
                i,
                pricing::create_quote_batched(&core, me, car, product).await,
            )
        });
    }
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        let (i, q) = done.unwrap();
        answered += 1;
        if i % 2 == 0 {
            assert_eq!(code(&q.unwrap_err()), "PRODUCT_NOT_AVAILABLE", "driver {i}");
        } else {
            let q = q.unwrap();
            assert_eq!((q.driver_id, q.product_id), (drivers[i].0, taxi));
        }
    }
    assert_eq!(answered, drivers.len());
    let on_retired = count(
        &mut conn,
        &format!(
            "SELECT count(*) AS n FROM quotes WHERE product_version_id = '{}'",
            retired.id.uuid()
        ),
    )
    .await;
    assert_eq!(on_retired, 1, "only the quote made before it was retired");
}

async fn count(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> i64 {
    testkit::count(conn, sql).await.unwrap()
}
