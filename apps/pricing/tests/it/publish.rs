//! Publication (sanity checks, test cases, retiring the previous version), immutability of
//! published versions, retirement, and the demo seed.

use crate::support::*;
use accounts::{Actor, VehicleType};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use pricing::{
    ProductId, ProductVersion, VersionStatus, VersionTerms, create_draft_version, create_product,
    get_published, get_version, list_products, list_versions, publish_version, retire_version,
    seed_demo_products, set_test_cases, update_draft,
};
use shared::Clock;
use shared::FixedClock;
use testkit::TestDb;

/// A product with a draft of the food-delivery terms and its cases.
async fn draft(
    conn: &mut diesel_async::AsyncPgConnection,
    clock: &FixedClock,
    terms: &VersionTerms,
) -> (ProductId, ProductVersion) {
    let def = demo("food_delivery_hourly");
    let p = match pricing::get_product_by_code(conn, "food").await {
        Ok(p) => p,
        Err(_) => create_product(conn, clock, Actor::System, "food", "Food")
            .await
            .unwrap(),
    };
    let v = create_draft_version(conn, clock, Actor::System, p.id, terms)
        .await
        .unwrap();
    set_test_cases(conn, clock, Actor::System, v.id, &def.cases)
        .await
        .unwrap();
    (p.id, v)
}

#[tokio::test]
async fn publishing_runs_the_checks_and_retires_the_previous_version() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let terms = demo_terms("food_delivery_hourly");

    let (product_id, v1) = draft(&mut conn, &clock, &terms).await;
    let published = publish_version(&mut conn, &clock, Actor::System, v1.id)
        .await
        .unwrap();
    assert_eq!(published.status, VersionStatus::Published);
    assert_eq!(published.published_at, Some(clock.now()));
    assert_eq!(
        get_published(&mut conn, product_id).await.unwrap(),
        published
    );
    let e = publish_version(&mut conn, &clock, Actor::System, v1.id)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "VERSION_NOT_DRAFT");

    clock.advance(chrono::Duration::hours(1));
    let (_, v2) = draft(&mut conn, &clock, &terms).await;
    let v2 = publish_version(&mut conn, &clock, Actor::System, v2.id)
        .await
        .unwrap();
    assert_eq!(
        get_published(&mut conn, product_id).await.unwrap().id,
        v2.id
    );
    let v1 = get_version(&mut conn, v1.id).await.unwrap();
    assert_eq!(v1.status, VersionStatus::Retired);
    assert_eq!(v1.retired_at, Some(clock.now()));
    let listed = list_products(&mut conn).await.unwrap();
    assert_eq!(listed[0].published_version_id, Some(v2.id));
    assert_eq!(listed[0].published_version_number, Some(2));

    let published = audit_rows(&mut conn, "product_version.published").await;
    assert_eq!(published.len(), 2);
    assert_eq!(published[1].1, v2.id.to_string());
    assert_eq!(published[1].2["retired_version_id"], v1.id.to_string());
    assert_eq!(
        audit_rows(&mut conn, "product_version.retired").await.len(),
        1
    );
}

#[tokio::test]
async fn publication_refuses_absurd_prices_missing_and_failing_cases() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let terms = demo_terms("food_delivery_hourly");

    // A car base rate of £9: the dearest car combination is far above £50/hour.
    let mut dear = terms.clone();
    dear.rate_table
        .base_hourly_rates
        .insert(VehicleType::Car, 900);
    let (_, v) = draft(&mut conn, &clock, &dear).await;
    let e = publish_version(&mut conn, &clock, Actor::System, v.id)
        .await
        .unwrap_err();
    let ue = e.user_error().unwrap();
    assert_eq!(ue.code, "PRICE_TOO_HIGH");
    assert!(ue.message.contains("car"), "{}", ue.message);
    assert_eq!(
        get_version(&mut conn, v.id).await.unwrap().status,
        VersionStatus::Draft
    );

    // A bicycle at 5p/hour: below the 10p floor.
    let mut cheap = terms.clone();
    cheap
        .rate_table
        .base_hourly_rates
        .insert(VehicleType::Bicycle, 5);
    update_draft(&mut conn, &clock, Actor::System, v.id, &cheap)
        .await
        .unwrap();
    let e = publish_version(&mut conn, &clock, Actor::System, v.id)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "PRICE_TOO_LOW");

    // A bicycle at 1p/hour in an area at ×0.4 rounds to 0p.
    let mut zero = terms.clone();
    zero.rate_table
        .base_hourly_rates
        .insert(VehicleType::Bicycle, 1);
    zero.rate_table
        .region_factors
        .areas
        .insert("OX".into(), 4_000);
    update_draft(&mut conn, &clock, Actor::System, v.id, &zero)
        .await
        .unwrap();
    let e = publish_version(&mut conn, &clock, Actor::System, v.id)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "PRICE_NOT_POSITIVE");

    // Sane prices, but a night factor the underwriter did not sign off: cases fail.
    let mut changed = terms.clone();
    changed.rate_table.time_bands[2].factor_bp = 13_000;
    update_draft(&mut conn, &clock, Actor::System, v.id, &changed)
        .await
        .unwrap();
    let e = publish_version(&mut conn, &clock, Actor::System, v.id)
        .await
        .unwrap_err();
    let ue = e.user_error().unwrap();
    assert_eq!(ue.code, "TEST_CASES_FAILED");
    assert!(
        ue.message.contains(
            "\"Young e-bike rider, Manchester, winter night\": expected £1.80/hour, got £1.87/hour"
        ),
        "{}",
        ue.message
    );

    // No cases at all.
    set_test_cases(&mut conn, &clock, Actor::System, v.id, &[])
        .await
        .unwrap();
    update_draft(&mut conn, &clock, Actor::System, v.id, &terms)
        .await
        .unwrap();
    let e = publish_version(&mut conn, &clock, Actor::System, v.id)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "NO_TEST_CASES");
    assert!(
        audit_rows(&mut conn, "product_version.published")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn published_versions_are_immutable_even_to_raw_sql() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let terms = demo_terms("food_delivery_hourly");
    let (_, v) = draft(&mut conn, &clock, &terms).await;
    let v = publish_version(&mut conn, &clock, Actor::System, v.id)
        .await
        .unwrap();

    let e = update_draft(&mut conn, &clock, Actor::System, v.id, &terms)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "VERSION_NOT_DRAFT");
    let e = set_test_cases(&mut conn, &clock, Actor::System, v.id, &[])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "VERSION_NOT_DRAFT");

    let id = v.id.uuid();
    for sql in [
        format!("UPDATE product_versions SET wording_version = 'X' WHERE id = '{id}'"),
        format!(
            "UPDATE product_versions SET rate_table = rate_table || '{{\"x\": 1}}' WHERE id = '{id}'"
        ),
        format!(
            "UPDATE product_versions SET status = 'retired', retired_at = now(), wording_version = 'X' WHERE id = '{id}'"
        ),
        format!(
            "UPDATE product_versions SET status = 'draft', published_at = NULL WHERE id = '{id}'"
        ),
        format!("DELETE FROM product_versions WHERE id = '{id}'"),
        format!(
            "UPDATE product_version_rules SET daily_cap_minor = 1 WHERE product_version_id = '{id}'"
        ),
        format!("DELETE FROM product_version_rules WHERE product_version_id = '{id}'"),
        format!("UPDATE rating_test_cases SET name = 'x' WHERE product_version_id = '{id}'"),
        format!("DELETE FROM rating_test_cases WHERE product_version_id = '{id}'"),
        format!(
            "INSERT INTO rating_test_cases (product_version_id, position, name, case_data) VALUES ('{id}', 999, 'new', '{{}}')"
        ),
    ] {
        let err = conn.batch_execute(&sql).await.unwrap_err();
        assert!(
            err.to_string().contains("cannot be") || err.to_string().contains("only drafts"),
            "{sql}: {err}"
        );
    }
    assert_eq!(get_version(&mut conn, v.id).await.unwrap(), v);

    // Retiring is the one change allowed; after it, nothing.
    let retired = retire_version(&mut conn, &clock, Actor::System, v.id)
        .await
        .unwrap();
    assert_eq!(retired.status, VersionStatus::Retired);
    assert_eq!(retired.terms, v.terms);
    let e = retire_version(&mut conn, &clock, Actor::System, v.id)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "VERSION_NOT_PUBLISHED");
    let err = conn
        .batch_execute(&format!(
            "UPDATE product_versions SET status = 'published', retired_at = NULL WHERE id = '{id}'"
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot be changed"), "{err}");
    let e = get_published(&mut conn, v.product_id).await.unwrap_err();
    assert_eq!(code(&e), "PRODUCT_NOT_AVAILABLE");

    // Drafts, by contrast, may be deleted (with their rules and cases).
    let (_, d) = draft(&mut conn, &clock, &terms).await;
    diesel::sql_query(format!(
        "DELETE FROM product_versions WHERE id = '{}'",
        d.id.uuid()
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_demo_seed_publishes_two_products_idempotently() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let first = seed_demo_products(&mut conn).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|v| v.status == VersionStatus::Published));
    let second = seed_demo_products(&mut conn).await.unwrap();
    assert_eq!(first, second);

    let products = list_products(&mut conn).await.unwrap();
    let names: Vec<&str> = products.iter().map(|p| p.product.name.as_str()).collect();
    assert_eq!(names, ["Food delivery — hourly", "Private hire — hourly"]);
    for p in &products {
        assert_eq!(
            list_versions(&mut conn, p.product.id).await.unwrap().len(),
            1
        );
    }

    // Concurrent seeds on a fresh database agree too.
    let db = TestDb::new().await.unwrap();
    let (mut a, mut b) = (db.conn().await.unwrap(), db.conn().await.unwrap());
    let (ra, rb) = tokio::join!(seed_demo_products(&mut a), seed_demo_products(&mut b));
    assert_eq!(ra.unwrap(), rb.unwrap());
}
