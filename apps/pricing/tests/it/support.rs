//! Helpers shared by the tests.

use accounts::{Actor, DriverId, NewVehicle, ProfileUpdate, VehicleId, VehicleType};
use chrono::{NaiveDate, TimeZone, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use pricing::{PricingError, VersionTerms};
use shared::FixedClock;
use shared::schema::audit_log;

/// A clock fixed on a Monday afternoon (14:00 GMT).
pub fn clock() -> FixedClock {
    FixedClock::at(
        Utc.with_ymd_and_hms(2026, 11, 23, 14, 0, 0)
            .single()
            .unwrap(),
    )
}

/// The user-facing code of an error, or "INTERNAL".
pub fn code(e: &PricingError) -> &'static str {
    e.code().unwrap_or("INTERNAL")
}

/// The terms of a demo product, by code.
pub fn demo_terms(code: &str) -> VersionTerms {
    demo(code).terms
}

/// A demo product definition, by code.
pub fn demo(code: &str) -> pricing::seed::ProductDefinition {
    pricing::demo_products()
        .unwrap()
        .into_iter()
        .find(|p| p.code == code)
        .unwrap()
}

/// A new driver with only a phone, as a first sign-in leaves them. Written directly: the tests
/// are about pricing, not about how sign-in delivers its code.
pub async fn sign_in(conn: &mut AsyncPgConnection, _clock: &FixedClock, phone: &str) -> DriverId {
    let phone = accounts::Phone::parse(phone).unwrap();
    let id = DriverId::new();
    diesel::sql_query("INSERT INTO drivers (id, phone) VALUES ($1, $2)")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<diesel::sql_types::Text, _>(phone.as_str())
        .execute(conn)
        .await
        .unwrap();
    id
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// A signed-in driver with a complete profile: born `dob`, licensed since `licensed`, living at
/// `postcode`.
pub async fn driver(
    conn: &mut AsyncPgConnection,
    clock: &FixedClock,
    phone: &str,
    dob: NaiveDate,
    licensed: NaiveDate,
    postcode: &str,
) -> DriverId {
    let id = sign_in(conn, clock, phone).await;
    accounts::update_profile(
        conn,
        clock,
        Actor::Driver(id),
        id,
        ProfileUpdate {
            name: Some("Test Driver".into()),
            date_of_birth: Some(dob),
            licence_issued_on: Some(licensed),
            postcode: Some(postcode.into()),
            ..ProfileUpdate::default()
        },
    )
    .await
    .unwrap();
    id
}

/// Adds a vehicle of `vehicle_type` to a driver.
pub async fn vehicle(
    conn: &mut AsyncPgConnection,
    clock: &FixedClock,
    driver_id: DriverId,
    vehicle_type: VehicleType,
    registration: &str,
) -> VehicleId {
    let registration = vehicle_type
        .requires_registration()
        .then(|| registration.to_owned());
    accounts::add_vehicle(
        conn,
        clock,
        driver_id,
        NewVehicle {
            vehicle_type,
            registration,
            make: None,
            model: None,
        },
    )
    .await
    .unwrap()
    .id
}

/// Audit rows with this action: (actor_type, subject_id, details).
pub async fn audit_rows(
    conn: &mut AsyncPgConnection,
    action: &str,
) -> Vec<(String, String, serde_json::Value)> {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .order(audit_log::id.asc())
        .select((
            audit_log::actor_type,
            audit_log::subject_id,
            audit_log::details,
        ))
        .load(conn)
        .await
        .unwrap()
}

/// `n` drivers born 1990 and licensed since 2010, driver `i` living at `postcode(i)`, each with a
/// car: (driver, car) in order.
pub async fn drivers_with_cars(
    conn: &mut AsyncPgConnection,
    clock: &FixedClock,
    n: usize,
    postcode: impl Fn(usize) -> &'static str,
) -> Vec<(DriverId, VehicleId)> {
    let mut drivers = Vec::new();
    for i in 0..n {
        let phone = format!("07911 1234{i:02}");
        let me = driver(
            conn,
            clock,
            &phone,
            date(1990, 5, 17),
            date(2010, 6, 1),
            postcode(i),
        )
        .await;
        let car = vehicle(conn, clock, me, VehicleType::Car, &format!("AB{i:02}CDE")).await;
        drivers.push((me, car));
    }
    drivers
}
