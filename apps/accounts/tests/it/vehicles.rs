//! Vehicles.

use crate::support::*;
use accounts::{
    DriverId, NewVehicle, VehicleId, VehicleType, add_vehicle, get_driver, get_driver_and_vehicle,
    get_vehicle_for_driver, get_vehicles, list_vehicles, remove_vehicle,
};
use testkit::TestDb;

fn car(registration: &str) -> NewVehicle {
    NewVehicle {
        vehicle_type: VehicleType::Car,
        registration: Some(registration.into()),
        make: Some(" Toyota ".into()),
        model: Some("Prius".into()),
    }
}

#[tokio::test]
async fn vehicles_are_added_normalised_listed_and_fetched() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let me = sign_in(&mut conn, &clock, PHONE).await.driver_id;

    let car = add_vehicle(&mut conn, &clock, me, car(" ab12 cde "))
        .await
        .unwrap();
    assert_eq!(
        car.registration.as_ref().map(|r| r.as_str()),
        Some("AB12CDE")
    );
    assert_eq!(car.vehicle_type, VehicleType::Car);
    assert_eq!(car.make.as_deref(), Some("Toyota"));
    assert_eq!(car.driver_id, me);
    assert!(car.removed_at.is_none());

    let bike = add_vehicle(
        &mut conn,
        &clock,
        me,
        NewVehicle {
            vehicle_type: VehicleType::EBike,
            registration: Some("  ".into()),
            make: None,
            model: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(bike.registration, None);

    let listed = list_vehicles(&mut conn, me).await.unwrap();
    assert_eq!(
        listed.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![car.id, bike.id]
    );
    assert_eq!(
        get_vehicle_for_driver(&mut conn, me, car.id).await.unwrap(),
        car
    );
    assert_eq!(audit_rows(&mut conn, "vehicle.added").await.len(), 2);
}

#[tokio::test]
async fn registration_rules_by_vehicle_type() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let me = sign_in(&mut conn, &clock, PHONE).await.driver_id;

    let cases = [
        (VehicleType::Car, None, "REGISTRATION_REQUIRED"),
        (VehicleType::Scooter, None, "REGISTRATION_REQUIRED"),
        (VehicleType::Motorbike, Some(""), "REGISTRATION_REQUIRED"),
        (
            VehicleType::Bicycle,
            Some("AB12CDE"),
            "REGISTRATION_NOT_ALLOWED",
        ),
        (VehicleType::Van, Some("A"), "INVALID_REGISTRATION"),
        (VehicleType::Van, Some("AB12CDEFG"), "INVALID_REGISTRATION"),
        (VehicleType::Van, Some("AB-12"), "INVALID_REGISTRATION"),
    ];
    for (vehicle_type, registration, expected) in cases {
        let err = add_vehicle(
            &mut conn,
            &clock,
            me,
            NewVehicle {
                vehicle_type,
                registration: registration.map(str::to_owned),
                make: None,
                model: None,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(code(&err), expected, "{vehicle_type} {registration:?}");
        assert_eq!(field(&err).as_deref(), Some("registration"));
    }

    let mut long_make = car("AB12CDE");
    long_make.make = Some("m".repeat(51));
    let err = add_vehicle(&mut conn, &clock, me, long_make)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_MAKE");
    assert_eq!(field(&err).as_deref(), Some("make"));
    let mut long_model = car("AB12CDE");
    long_model.model = Some("m".repeat(51));
    let err = add_vehicle(&mut conn, &clock, me, long_model)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_MODEL");
    assert_eq!(field(&err).as_deref(), Some("model"));
    assert!(list_vehicles(&mut conn, me).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_registration_is_unique_per_driver_among_vehicles_not_removed() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let me = sign_in(&mut conn, &clock, PHONE).await.driver_id;
    let other = sign_in(&mut conn, &clock, OTHER_PHONE).await.driver_id;

    let first = add_vehicle(&mut conn, &clock, me, car("AB12CDE"))
        .await
        .unwrap();
    let err = add_vehicle(&mut conn, &clock, me, car("ab12 cde"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DUPLICATE_VEHICLE");
    assert_eq!(field(&err).as_deref(), Some("registration"));

    // Another driver (a shared or sold car) may hold the same registration.
    add_vehicle(&mut conn, &clock, other, car("AB12CDE"))
        .await
        .unwrap();

    // Once removed, it can be added again.
    remove_vehicle(&mut conn, &clock, me, first.id)
        .await
        .unwrap();
    let again = add_vehicle(&mut conn, &clock, me, car("AB12CDE"))
        .await
        .unwrap();
    assert_ne!(again.id, first.id);
}

#[tokio::test]
async fn removal_is_soft_and_another_drivers_vehicle_is_never_revealed() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let me = sign_in(&mut conn, &clock, PHONE).await.driver_id;
    let other = sign_in(&mut conn, &clock, OTHER_PHONE).await.driver_id;
    let theirs = add_vehicle(&mut conn, &clock, other, car("XY99ZZZ"))
        .await
        .unwrap();
    let mine = add_vehicle(&mut conn, &clock, me, car("AB12CDE"))
        .await
        .unwrap();

    // Someone else's vehicle answers exactly like one that does not exist.
    let theirs_err = get_vehicle_for_driver(&mut conn, me, theirs.id)
        .await
        .unwrap_err();
    let missing_err = get_vehicle_for_driver(&mut conn, me, VehicleId::new())
        .await
        .unwrap_err();
    assert_eq!(code(&theirs_err), "NOT_FOUND");
    assert_eq!(theirs_err.user_error(), missing_err.user_error());
    assert_eq!(field(&theirs_err).as_deref(), Some("vehicleId"));
    let err = remove_vehicle(&mut conn, &clock, me, theirs.id)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
    assert!(
        get_vehicle_for_driver(&mut conn, other, theirs.id)
            .await
            .is_ok()
    );

    let removed = remove_vehicle(&mut conn, &clock, me, mine.id)
        .await
        .unwrap();
    assert_eq!(removed.removed_at, Some(shared::Clock::now(&clock)));
    assert!(list_vehicles(&mut conn, me).await.unwrap().is_empty());
    let err = get_vehicle_for_driver(&mut conn, me, mine.id)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
    let err = remove_vehicle(&mut conn, &clock, me, mine.id)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
    // Past cover still finds it by id.
    let by_id = get_vehicles(&mut conn, &[mine.id]).await.unwrap();
    assert_eq!(by_id.len(), 1);
    assert!(by_id[0].removed_at.is_some());
    assert_eq!(audit_rows(&mut conn, "vehicle.removed").await.len(), 1);
}

#[tokio::test]
async fn a_vehicle_cannot_be_added_to_an_unknown_driver() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let err = add_vehicle(&mut conn, &clock(), DriverId::new(), car("AB12CDE"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");
    assert_eq!(field(&err).as_deref(), Some("driverId"));
}

#[tokio::test]
async fn driver_and_vehicle_in_one_read_answer_as_the_two_reads() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let clock = clock();
    let me = sign_in(&mut conn, &clock, PHONE).await.driver_id;
    let other = sign_in(&mut conn, &clock, OTHER_PHONE).await.driver_id;
    let mine = add_vehicle(&mut conn, &clock, me, car("AB12CDE"))
        .await
        .unwrap();
    let theirs = add_vehicle(&mut conn, &clock, other, car("XY34ZZZ"))
        .await
        .unwrap();

    let (driver, vehicle) = get_driver_and_vehicle(&mut conn, me, mine.id)
        .await
        .unwrap();
    assert_eq!(driver, get_driver(&mut conn, me).await.unwrap());
    assert_eq!(vehicle, mine);

    let not_found = |r: Result<_, accounts::AccountsError>| field(&r.unwrap_err());
    assert_eq!(
        not_found(get_driver_and_vehicle(&mut conn, me, theirs.id).await),
        Some("vehicleId".into())
    );
    assert_eq!(
        not_found(get_driver_and_vehicle(&mut conn, me, VehicleId::new()).await),
        Some("vehicleId".into())
    );
    assert_eq!(
        not_found(get_driver_and_vehicle(&mut conn, DriverId::new(), mine.id).await),
        Some("driverId".into())
    );
    remove_vehicle(&mut conn, &clock, me, mine.id)
        .await
        .unwrap();
    assert_eq!(
        not_found(get_driver_and_vehicle(&mut conn, me, mine.id).await),
        Some("vehicleId".into())
    );
}
