//! Products and drafts: creation, validation of terms, test cases, reading back.

use crate::support::*;
use accounts::Actor;
use pricing::{
    RatingCase, TimeOfDay, VersionStatus, create_draft_version, create_product, get_product,
    get_product_by_code, get_published, get_version, list_products, list_test_cases, list_versions,
    set_test_cases, update_draft,
};
use testkit::TestDb;

#[tokio::test]
async fn products_are_created_once_per_code_and_listed() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();

    let p = create_product(
        &mut conn,
        &clock,
        Actor::System,
        "courier_hourly",
        " Courier — hourly ",
    )
    .await
    .unwrap();
    assert!(p.id.to_string().starts_with("prd_"));
    assert_eq!(p.name, "Courier — hourly");
    assert_eq!(get_product(&mut conn, p.id).await.unwrap(), p);
    assert_eq!(
        get_product_by_code(&mut conn, "courier_hourly")
            .await
            .unwrap(),
        p
    );

    let dup = create_product(&mut conn, &clock, Actor::System, "courier_hourly", "Other")
        .await
        .unwrap_err();
    assert_eq!(code(&dup), "DUPLICATE_PRODUCT_CODE");
    for bad in ["Courier", "c", "1abc", "has space", "dash-ed"] {
        let e = create_product(&mut conn, &clock, Actor::System, bad, "X")
            .await
            .unwrap_err();
        assert_eq!(code(&e), "INVALID_PRODUCT_CODE", "{bad}");
    }
    let e = create_product(&mut conn, &clock, Actor::System, "ok_code", "  ")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "INVALID_PRODUCT_NAME");

    let listed = list_products(&mut conn).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].product, p);
    assert_eq!(listed[0].published_version_id, None);

    let e = get_published(&mut conn, p.id).await.unwrap_err();
    assert_eq!(code(&e), "PRODUCT_NOT_AVAILABLE");
    let e = get_published(&mut conn, pricing::ProductId::new())
        .await
        .unwrap_err();
    assert_eq!(code(&e), "PRODUCT_NOT_FOUND");
    assert_eq!(audit_rows(&mut conn, "product.created").await.len(), 1);
}

#[tokio::test]
async fn drafts_are_numbered_validated_stored_and_updated() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let p = create_product(&mut conn, &clock, Actor::System, "food", "Food")
        .await
        .unwrap();
    let terms = demo_terms("food_delivery_hourly");

    let v1 = create_draft_version(&mut conn, &clock, Actor::System, p.id, &terms)
        .await
        .unwrap();
    assert!(v1.id.to_string().starts_with("prv_"));
    assert_eq!(v1.version_number, 1);
    assert_eq!(v1.status, VersionStatus::Draft);
    assert_eq!(v1.terms, terms);
    // The JSONB rate table and the typed rules read back exactly as written.
    assert_eq!(get_version(&mut conn, v1.id).await.unwrap(), v1);
    let v2 = create_draft_version(&mut conn, &clock, Actor::System, p.id, &terms)
        .await
        .unwrap();
    assert_eq!(v2.version_number, 2);
    let listed = list_versions(&mut conn, p.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|v| v.version_number).collect::<Vec<_>>(),
        [2, 1]
    );

    // A night band that stops at 05:00 leaves 05:00-06:00 uncovered.
    let mut gap = terms.clone();
    gap.rate_table.time_bands[2].end = TimeOfDay::parse("05:00").unwrap();
    let e = create_draft_version(&mut conn, &clock, Actor::System, p.id, &gap)
        .await
        .unwrap_err();
    let ue = e.user_error().unwrap();
    assert_eq!(ue.code, "TIME_BAND_GAP");
    assert!(ue.message.contains("05:00-06:00"), "{}", ue.message);

    let mut overlap = terms.clone();
    overlap.rate_table.time_bands[0].start = TimeOfDay::parse("05:00").unwrap();
    let e = update_draft(&mut conn, &clock, Actor::System, v1.id, &overlap)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "TIME_BAND_OVERLAP");

    let mut age_gap = terms.clone();
    age_gap.rate_table.age_bands[1].from = 22;
    let e = update_draft(&mut conn, &clock, Actor::System, v1.id, &age_gap)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "BAND_GAP");
    assert_eq!(
        e.user_error().unwrap().field.as_deref(),
        Some("rateTable.ageBands[1]")
    );

    let mut claims_overlap = terms.clone();
    claims_overlap.rate_table.claims_bands[1].to = Some(2);
    let e = update_draft(&mut conn, &clock, Actor::System, v1.id, &claims_overlap)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "BAND_OVERLAP");

    let mut missing = terms.clone();
    missing
        .rate_table
        .base_hourly_rates
        .remove(&accounts::VehicleType::Car);
    let e = update_draft(&mut conn, &clock, Actor::System, v1.id, &missing)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "MISSING_BASE_RATE");

    // A valid change is stored, and bumps updated_at.
    clock.advance(chrono::Duration::minutes(5));
    let mut cheaper = terms.clone();
    cheaper
        .rate_table
        .base_hourly_rates
        .insert(accounts::VehicleType::Car, 170);
    cheaper.wording_version = "FD-2026.2".into();
    let updated = update_draft(&mut conn, &clock, Actor::System, v1.id, &cheaper)
        .await
        .unwrap();
    assert_eq!(updated.terms, cheaper);
    assert!(updated.updated_at > v1.updated_at);
    assert_eq!(get_version(&mut conn, v1.id).await.unwrap(), updated);

    let e = update_draft(
        &mut conn,
        &clock,
        Actor::System,
        pricing::ProductVersionId::new(),
        &terms,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), "VERSION_NOT_FOUND");
    assert_eq!(
        audit_rows(&mut conn, "product_version.draft_updated")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn test_cases_are_stored_in_order_and_replaced() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let def = demo("food_delivery_hourly");
    let p = create_product(&mut conn, &clock, Actor::System, "food", "Food")
        .await
        .unwrap();
    let v = create_draft_version(&mut conn, &clock, Actor::System, p.id, &def.terms)
        .await
        .unwrap();
    assert!(list_test_cases(&mut conn, v.id).await.unwrap().is_empty());

    set_test_cases(&mut conn, &clock, Actor::System, v.id, &def.cases)
        .await
        .unwrap();
    assert_eq!(list_test_cases(&mut conn, v.id).await.unwrap(), def.cases);

    let two: Vec<RatingCase> = def.cases.iter().rev().take(2).cloned().collect();
    set_test_cases(&mut conn, &clock, Actor::System, v.id, &two)
        .await
        .unwrap();
    assert_eq!(list_test_cases(&mut conn, v.id).await.unwrap(), two);

    let mut dup = two.clone();
    dup[1].name = dup[0].name.clone();
    let e = set_test_cases(&mut conn, &clock, Actor::System, v.id, &dup)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "INVALID_TEST_CASES");
    assert_eq!(
        e.user_error().unwrap().field.as_deref(),
        Some("testCases[1]")
    );
    let e = list_test_cases(&mut conn, pricing::ProductVersionId::new())
        .await
        .unwrap_err();
    assert_eq!(code(&e), "VERSION_NOT_FOUND");
}
