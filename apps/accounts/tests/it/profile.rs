//! Driver profiles.

use crate::support::*;
use accounts::{
    AccountsError, Actor, DriverId, ProfileUpdate, find_driver_by_phone, get_driver, get_drivers,
    update_profile,
};
use chrono::NaiveDate;
use shared::FixedClock;
use testkit::TestDb;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// A complete, consistent profile: licence MORGA753116SM9IJ encodes 11 March 1976.
fn full_update() -> ProfileUpdate {
    ProfileUpdate {
        name: Some("  Sarah Morgan ".into()),
        date_of_birth: Some(d(1976, 3, 11)),
        email: Some(" Sarah.Morgan@Example.COM".into()),
        licence_number: Some("morga 753116 sm9ij".into()),
        licence_issued_on: Some(d(1994, 6, 1)),
        postcode: Some("sw1a1aa".into()),
    }
}

async fn update(
    conn: &mut diesel_async::AsyncPgConnection,
    clock: &FixedClock,
    driver_id: DriverId,
    update: ProfileUpdate,
) -> Result<accounts::Driver, AccountsError> {
    update_profile(conn, clock, Actor::Driver(driver_id), driver_id, update).await
}

#[tokio::test]
async fn a_new_driver_has_only_a_phone_and_a_full_update_is_normalised() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let me = sign_in(&mut conn, &clock, PHONE).await.driver_id;

    let fresh = get_driver(&mut conn, me).await.unwrap();
    assert_eq!(fresh.phone.as_str(), PHONE_E164);
    assert_eq!(fresh.name, None);
    assert_eq!(fresh.postcode_area(), None);

    clock.advance(chrono::Duration::minutes(3));
    let updated = update(&mut conn, &clock, me, full_update()).await.unwrap();
    assert_eq!(updated.name.as_deref(), Some("Sarah Morgan"));
    assert_eq!(updated.date_of_birth, Some(d(1976, 3, 11)));
    assert_eq!(
        updated.email.as_ref().map(|e| e.as_str()),
        Some("sarah.morgan@example.com")
    );
    assert_eq!(
        updated.licence_number.as_ref().map(|l| l.as_str()),
        Some("MORGA753116SM9IJ")
    );
    assert_eq!(updated.licence_issued_on, Some(d(1994, 6, 1)));
    assert_eq!(
        updated.postcode.as_ref().map(|p| p.as_str()),
        Some("SW1A 1AA")
    );
    assert_eq!(updated.postcode_area(), Some("SW"));
    assert_eq!(updated.age_on(d(2026, 11, 23)), Some(50));
    assert_eq!(updated.years_licensed_on(d(2026, 11, 23)), Some(32));
    assert_eq!(updated.updated_at, shared::Clock::now(&clock));
    assert_eq!(get_driver(&mut conn, me).await.unwrap(), updated);

    // A partial update leaves the other fields alone.
    let moved = update(
        &mut conn,
        &clock,
        me,
        ProfileUpdate {
            postcode: Some("M1 1AE".into()),
            ..ProfileUpdate::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(moved.postcode_area(), Some("M"));
    assert_eq!(moved.name.as_deref(), Some("Sarah Morgan"));

    // The audit row names the fields, never their values.
    let audit = audit_rows(&mut conn, "driver.profile_updated").await;
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[1].3["fields"], serde_json::json!(["postcode"]));
    assert!(!audit[0].3.to_string().contains("Morgan"));

    // Lookups used by other apps.
    let by_phone = find_driver_by_phone(&mut conn, &accounts::Phone::parse(PHONE).unwrap())
        .await
        .unwrap();
    assert_eq!(by_phone.map(|d| d.id), Some(me));
    let many = get_drivers(&mut conn, &[me, DriverId::new()])
        .await
        .unwrap();
    assert_eq!(many.len(), 1);
}

#[tokio::test]
async fn each_invalid_field_is_refused_with_its_code_and_field_and_nothing_is_written() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let me = sign_in(&mut conn, &clock, PHONE).await.driver_id;
    let before = get_driver(&mut conn, me).await.unwrap();

    let cases: Vec<(ProfileUpdate, &str, &str)> = vec![
        (
            ProfileUpdate {
                name: Some("   ".into()),
                ..Default::default()
            },
            "INVALID_NAME",
            "name",
        ),
        (
            ProfileUpdate {
                name: Some("x".repeat(101)),
                ..Default::default()
            },
            "INVALID_NAME",
            "name",
        ),
        (
            ProfileUpdate {
                date_of_birth: Some(d(2027, 1, 1)),
                ..Default::default()
            },
            "INVALID_DATE_OF_BIRTH",
            "dateOfBirth",
        ),
        (
            ProfileUpdate {
                date_of_birth: Some(d(1920, 1, 1)),
                ..Default::default()
            },
            "INVALID_DATE_OF_BIRTH",
            "dateOfBirth",
        ),
        (
            ProfileUpdate {
                date_of_birth: Some(d(2010, 11, 24)),
                ..Default::default()
            },
            "TOO_YOUNG",
            "dateOfBirth",
        ),
        (
            ProfileUpdate {
                email: Some("sarah@".into()),
                ..Default::default()
            },
            "INVALID_EMAIL",
            "email",
        ),
        (
            ProfileUpdate {
                licence_number: Some("AB123".into()),
                ..Default::default()
            },
            "INVALID_LICENCE_NUMBER",
            "licenceNumber",
        ),
        (
            ProfileUpdate {
                licence_issued_on: Some(d(2026, 11, 24)),
                ..Default::default()
            },
            "INVALID_LICENCE_DATE",
            "licenceIssuedOn",
        ),
        (
            ProfileUpdate {
                postcode: Some("SW1A".into()),
                ..Default::default()
            },
            "INVALID_POSTCODE",
            "postcode",
        ),
        // A valid field next to an invalid one is not written either.
        (
            ProfileUpdate {
                name: Some("Sarah Morgan".into()),
                postcode: Some("nowhere".into()),
                ..Default::default()
            },
            "INVALID_POSTCODE",
            "postcode",
        ),
    ];
    for (input, expected_code, expected_field) in cases {
        let err = update(&mut conn, &clock, me, input.clone())
            .await
            .unwrap_err();
        assert_eq!(code(&err), expected_code, "{input:?}");
        assert_eq!(field(&err).as_deref(), Some(expected_field), "{input:?}");
    }
    assert_eq!(get_driver(&mut conn, me).await.unwrap(), before);
    assert!(
        audit_rows(&mut conn, "driver.profile_updated")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn cross_field_rules_hold_against_the_stored_profile() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let me = sign_in(&mut conn, &clock, PHONE).await.driver_id;
    update(
        &mut conn,
        &clock,
        me,
        ProfileUpdate {
            date_of_birth: Some(d(1976, 3, 11)),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Licence issued the day before the 16th birthday.
    let err = update(
        &mut conn,
        &clock,
        me,
        ProfileUpdate {
            licence_issued_on: Some(d(1992, 3, 10)),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "INVALID_LICENCE_DATE");
    assert_eq!(field(&err).as_deref(), Some("licenceIssuedOn"));
    update(
        &mut conn,
        &clock,
        me,
        ProfileUpdate {
            licence_issued_on: Some(d(1992, 3, 11)),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // A well-formed licence number that encodes another date of birth.
    let err = update(
        &mut conn,
        &clock,
        me,
        ProfileUpdate {
            licence_number: Some("MORGA753126SM9IJ".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "INVALID_LICENCE_NUMBER");
    assert_eq!(field(&err).as_deref(), Some("licenceNumber"));
}

#[tokio::test]
async fn an_unknown_driver_is_not_found() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let nobody = DriverId::new();
    let err = get_driver(&mut conn, nobody).await.unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
    assert_eq!(field(&err).as_deref(), Some("driverId"));
    let err = update(&mut conn, &clock, nobody, full_update())
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
}
