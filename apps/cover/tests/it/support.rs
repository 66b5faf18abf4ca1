//! Helpers shared by the tests: a driver with a complete profile and a vehicle (through the
//! accounts app), the demo products (through the pricing app), and a fake [`FundsCheck`].

use accounts::{
    Actor, DriverId, NewVehicle, Phone, ProfileUpdate, Vehicle, VehicleType, add_vehicle,
    find_or_create_driver_by_phone, update_profile,
};
use chrono::{NaiveDate, TimeZone, Utc};
use cover::{CoverError, EnrolInput, Enrolment, Funding, FundsCheck};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use pricing::{ProductId, ProductVersion};
use shared::schema::audit_log;
use shared::settings::CoverSettings;
use shared::{FixedClock, Money};
use std::sync::Mutex;

/// A clock fixed on a Monday morning in winter (UK time is UTC).
pub fn clock() -> FixedClock {
    FixedClock::at(
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
            .single()
            .unwrap(),
    )
}

/// The default cover settings (16-hour maximum).
pub fn cover_settings() -> CoverSettings {
    CoverSettings::default()
}

/// Answers what a test sets; records the amounts it was asked about.
#[derive(Debug)]
pub struct TestFunds {
    answer: Mutex<Funding>,
    pub asked: Mutex<Vec<Money>>,
}

impl TestFunds {
    pub fn new(answer: Funding) -> Self {
        Self {
            answer: Mutex::new(answer),
            asked: Mutex::new(Vec::new()),
        }
    }

    pub fn ok() -> Self {
        Self::new(Funding::Ok)
    }

    pub fn set(&self, answer: Funding) {
        *self.answer.lock().unwrap() = answer;
    }
}

#[async_trait::async_trait]
impl FundsCheck for TestFunds {
    async fn can_pay(
        &self,
        _conn: &mut AsyncPgConnection,
        _driver_id: DriverId,
        minimum_charge: Money,
    ) -> Result<Funding, anyhow::Error> {
        self.asked.lock().unwrap().push(minimum_charge);
        Ok(*self.answer.lock().unwrap())
    }
}

/// The user-facing code of an error, or "INTERNAL".
pub fn code(e: &CoverError) -> &'static str {
    e.code().unwrap_or("INTERNAL")
}

/// The demo products, published; returns (food delivery, private hire) versions.
pub async fn products(conn: &mut AsyncPgConnection) -> (ProductVersion, ProductVersion) {
    let mut versions = pricing::seed_demo_products(conn).await.unwrap();
    assert_eq!(versions.len(), 2);
    let hire = versions.pop().unwrap();
    let food = versions.pop().unwrap();
    (food, hire)
}

/// A driver with a complete profile (36 years old, licensed 16 years, London SW postcode).
pub async fn driver(conn: &mut AsyncPgConnection, clock: &FixedClock, phone: &str) -> DriverId {
    let phone = Phone::parse(phone).unwrap();
    let (driver, _) = find_or_create_driver_by_phone(conn, clock, Actor::System, &phone)
        .await
        .unwrap();
    update_profile(
        conn,
        clock,
        Actor::Driver(driver.id),
        driver.id,
        ProfileUpdate {
            name: Some("Ada Lovelace".into()),
            date_of_birth: NaiveDate::from_ymd_opt(1990, 3, 14),
            licence_issued_on: NaiveDate::from_ymd_opt(2010, 6, 1),
            postcode: Some("SW1A 1AA".into()),
            ..ProfileUpdate::default()
        },
    )
    .await
    .unwrap();
    driver.id
}

/// Adds a vehicle of `vehicle_type` to the driver.
pub async fn vehicle(
    conn: &mut AsyncPgConnection,
    clock: &FixedClock,
    driver_id: DriverId,
    vehicle_type: VehicleType,
    registration: Option<&str>,
) -> Vehicle {
    add_vehicle(
        conn,
        clock,
        driver_id,
        NewVehicle {
            vehicle_type,
            registration: registration.map(str::to_owned),
            make: Some("Toyota".into()),
            model: Some("Prius".into()),
        },
    )
    .await
    .unwrap()
}

/// A driver with a car enrolled (active) in `product`.
pub async fn enrolled_driver(
    conn: &mut AsyncPgConnection,
    clock: &FixedClock,
    phone: &str,
    product: ProductId,
) -> (DriverId, Vehicle, Enrolment) {
    let driver_id = driver(conn, clock, phone).await;
    let car = vehicle(conn, clock, driver_id, VehicleType::Car, Some("AB12CDE")).await;
    let enrolment = cover::enrol(
        conn,
        clock,
        driver_id,
        EnrolInput {
            product_id: product,
            vehicle_id: car.id,
            accept_terms: true,
        },
        &TestFunds::ok(),
    )
    .await
    .unwrap();
    (driver_id, car, enrolment)
}

/// Audit rows with this action: (actor_type, actor_id, subject_id, details).
pub async fn audit_rows(
    conn: &mut AsyncPgConnection,
    action: &str,
) -> Vec<(String, Option<String>, String, serde_json::Value)> {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .order(audit_log::id.asc())
        .select((
            audit_log::actor_type,
            audit_log::actor_id,
            audit_log::subject_id,
            audit_log::details,
        ))
        .load(conn)
        .await
        .unwrap()
}

pub const PHONE: &str = "07911 123456";
pub const OTHER_PHONE: &str = "+44 7700 123456";
