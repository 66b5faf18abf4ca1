//! Data export and account deletion.

use crate::support::*;
use accounts::schema::{drivers, login_codes};
use accounts::{
    Actor, NewVehicle, ProfileUpdate, VehicleType, add_vehicle, authenticate_driver,
    delete_driver_account, export_driver_data, get_driver, get_vehicles, update_profile,
};
use chrono::NaiveDate;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use testkit::TestDb;

#[tokio::test]
async fn the_export_holds_profile_vehicles_and_sessions_but_no_secret() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let signed_in = sign_in(&mut conn, &clock, PHONE).await;
    let me = signed_in.driver_id;
    update_profile(
        &mut conn,
        &clock,
        Actor::Driver(me),
        me,
        ProfileUpdate {
            name: Some("Sarah Morgan".into()),
            postcode: Some("SW1A 1AA".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    add_vehicle(
        &mut conn,
        &clock,
        me,
        NewVehicle {
            vehicle_type: VehicleType::Scooter,
            registration: Some("LX21ABC".into()),
            make: None,
            model: None,
        },
    )
    .await
    .unwrap();

    let export = export_driver_data(&mut conn, me).await.unwrap();
    assert_eq!(export["driver"]["id"], me.to_string());
    assert_eq!(export["driver"]["phone"], PHONE_E164);
    assert_eq!(export["driver"]["name"], "Sarah Morgan");
    assert_eq!(export["driver"]["postcode"], "SW1A 1AA");
    assert_eq!(export["vehicles"][0]["registration"], "LX21ABC");
    assert_eq!(export["vehicles"][0]["vehicle_type"], "scooter");
    assert_eq!(export["sessions"].as_array().map(Vec::len), Some(1));
    assert_eq!(export["login_codes"].as_array().map(Vec::len), Some(1));
    let text = export.to_string();
    assert!(!text.contains(&signed_in.token));
    assert!(!text.contains("hash"));
}

#[tokio::test]
async fn deletion_pseudonymises_revokes_and_frees_the_phone_for_a_new_account() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let signed_in = sign_in(&mut conn, &clock, PHONE).await;
    let me = signed_in.driver_id;
    update_profile(
        &mut conn,
        &clock,
        Actor::Driver(me),
        me,
        ProfileUpdate {
            name: Some("Sarah Morgan".into()),
            date_of_birth: NaiveDate::from_ymd_opt(1976, 3, 11),
            email: Some("sarah@example.com".into()),
            licence_number: Some("MORGA753116SM9IJ".into()),
            licence_issued_on: NaiveDate::from_ymd_opt(1994, 6, 1),
            postcode: Some("SW1A 1AA".into()),
        },
    )
    .await
    .unwrap();
    let vehicle = add_vehicle(
        &mut conn,
        &clock,
        me,
        NewVehicle {
            vehicle_type: VehicleType::Car,
            registration: Some("AB12CDE".into()),
            make: None,
            model: None,
        },
    )
    .await
    .unwrap();

    let deleted = delete_driver_account(&mut conn, &clock, Actor::Driver(me), me)
        .await
        .unwrap();
    assert_eq!(deleted.sessions_revoked, 1);
    assert_eq!(deleted.vehicles_removed, 1);

    // Personal fields are gone; the row stays for cover and claims history.
    #[allow(clippy::type_complexity)]
    let row: (
        String,
        Option<String>,
        Option<NaiveDate>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = drivers::table
        .find(me)
        .select((
            drivers::phone,
            drivers::name,
            drivers::date_of_birth,
            drivers::email,
            drivers::licence_number,
            drivers::postcode,
            drivers::deleted_at,
        ))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(row.0, format!("deleted:{me}"));
    assert_eq!(
        (&row.1, &row.2, &row.3, &row.4, &row.5),
        (&None, &None, &None, &None, &None)
    );
    assert!(row.6.is_some());
    let codes: i64 = login_codes::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(codes, 0);
    assert!(
        get_vehicles(&mut conn, &[vehicle.id]).await.unwrap()[0]
            .removed_at
            .is_some()
    );

    // The deleted driver cannot authenticate or be found.
    let err = authenticate_driver(&mut conn, &clock, &signed_in.token)
        .await
        .unwrap_err();
    assert_eq!(auth_code(&err), "SESSION_REVOKED");
    assert_eq!(
        code(&get_driver(&mut conn, me).await.unwrap_err()),
        "NOT_FOUND"
    );
    assert_eq!(
        code(&export_driver_data(&mut conn, me).await.unwrap_err()),
        "NOT_FOUND"
    );
    assert_eq!(
        code(
            &delete_driver_account(&mut conn, &clock, Actor::Driver(me), me)
                .await
                .unwrap_err()
        ),
        "NOT_FOUND"
    );

    // The same phone signs up again as a new driver.
    let again = sign_in(&mut conn, &clock, PHONE).await;
    assert!(again.new_driver);
    assert_ne!(again.driver_id, me);

    let audit = audit_rows(&mut conn, "driver.deleted").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].2, me.to_string());
    assert_eq!(audit[0].3["sessions_revoked"], 1);
}

#[tokio::test]
async fn deletion_erases_the_drivers_texts_and_stops_those_not_yet_sent() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    // The first code's text predates the driver (no driver id); the second names them.
    let me = sign_in(&mut conn, &clock, PHONE).await.driver_id;
    accounts::request_login_code(&mut conn, &clock, PHONE, &settings())
        .await
        .unwrap();
    let before = sms_sent(&mut conn).await;
    assert_eq!(before.len(), 2);
    assert_eq!(before[0].driver_id, None);
    assert_eq!(before[1].driver_id, Some(me.uuid()));
    // Another person's text is left alone.
    accounts::request_login_code(&mut conn, &clock, OTHER_PHONE, &settings())
        .await
        .unwrap();

    delete_driver_account(&mut conn, &clock, Actor::Driver(me), me)
        .await
        .unwrap();

    let after = sms_sent(&mut conn).await;
    assert_eq!(after.len(), 3);
    for n in after.iter().filter(|n| before.iter().any(|b| b.id == n.id)) {
        assert_eq!(n.recipient, "erased");
        assert_eq!(n.body_text, "");
        assert!(n.erased_at.is_some());
        assert_eq!(n.status, notifications::Status::Failed);
        // The first code was used to sign in, so its text had already been withdrawn.
        let reason = if n.id == before[0].id {
            "withdrawn"
        } else {
            "recipient_erased"
        };
        assert_eq!(n.failure_reason.as_deref(), Some(reason));
    }
    let other = after
        .iter()
        .find(|n| before.iter().all(|b| b.id != n.id))
        .unwrap();
    assert_eq!(other.status, notifications::Status::Pending);
    assert!(other.body_text.contains("code is"));
    assert!(
        notifications::latest_body_for(&mut conn, PHONE_E164)
            .await
            .is_none()
    );
    let audit = audit_rows(&mut conn, "driver.deleted").await;
    assert_eq!(audit[0].3["notifications_erased"], 2);
}
