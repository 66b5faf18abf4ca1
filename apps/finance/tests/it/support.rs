//! A test's world: its database, settings pointing Stripe at localstripe, a driver with a card,
//! a car and an enrolment, and helpers that make a day of money movements.

use accounts::{Actor, DriverId, NewVehicle, Phone, ProfileUpdate, VehicleType};
use chrono::{Duration, Utc};
use cover::{EndReason, EnrolInput, SessionSource, StartCover};
use diesel_async::AsyncPgConnection;
use payments::{PaymentsEnv, WalletFunds};
use shared::{FixedClock, Settings};
use std::sync::Arc;
use testkit::TestDb;
use testkit::localstripe::LocalStripe;

pub use testkit::localstripe::cards;

pub struct World {
    pub db: TestDb,
    pub settings: Arc<Settings>,
    pub clock: FixedClock,
    pub env: PaymentsEnv,
}

impl World {
    /// A world on localstripe.
    pub async fn new() -> World {
        let db = TestDb::new().await.unwrap();
        let stripe = LocalStripe::shared();
        let mut settings = testkit::settings_for(&db);
        stripe.configure(&mut settings.stripe);
        // Real time, fixed: localstripe stamps objects with the wall clock.
        let clock = FixedClock::at(Utc::now());
        let env = PaymentsEnv::from_settings(&settings, Arc::new(clock.clone())).unwrap();
        World {
            db,
            settings: Arc::new(settings),
            clock,
            env,
        }
    }

    pub async fn conn(&self) -> shared::DbConn {
        self.db.conn().await.unwrap()
    }

    pub fn reader(&self) -> finance::StripeReader {
        finance::StripeReader::new(&self.settings.stripe).unwrap()
    }

    /// A driver with a profile and a saved Visa card.
    pub async fn driver_with_card(&self, conn: &mut AsyncPgConnection, phone: &str) -> DriverId {
        let phone = Phone::parse(phone).unwrap();
        let (driver, _) =
            accounts::find_or_create_driver_by_phone(conn, &self.clock, Actor::System, &phone)
                .await
                .unwrap();
        accounts::update_profile(
            conn,
            &self.clock,
            Actor::Driver(driver.id),
            driver.id,
            ProfileUpdate {
                name: Some("Grace Hopper".into()),
                email: Some("grace@example.com".into()),
                date_of_birth: chrono::NaiveDate::from_ymd_opt(1988, 12, 9),
                licence_issued_on: chrono::NaiveDate::from_ymd_opt(2009, 6, 1),
                postcode: Some("EC1A 1BB".into()),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
        let stripe = LocalStripe::shared();
        let setup = payments::create_card_setup(conn, &self.env, driver.id)
            .await
            .unwrap();
        let secret = setup.client_secret.clone().unwrap();
        let pm = stripe.create_card(cards::VISA).await.unwrap();
        stripe
            .confirm_setup_intent(&setup.setup_intent_id, &secret, Some(&pm))
            .await
            .unwrap();
        payments::confirm_card_setup(conn, &self.env, driver.id, &setup.setup_intent_id)
            .await
            .unwrap();
        driver.id
    }

    /// A car and an active enrolment in the food-delivery product.
    pub async fn car_enrolled(
        &self,
        conn: &mut AsyncPgConnection,
        driver: DriverId,
    ) -> accounts::VehicleId {
        let mut versions = pricing::seed_demo_products(conn).await.unwrap();
        let _hire = versions.pop().unwrap();
        let food = versions.pop().unwrap();
        let car = accounts::add_vehicle(
            conn,
            &self.clock,
            driver,
            NewVehicle {
                vehicle_type: VehicleType::Car,
                registration: Some("AB12CDE".into()),
                make: Some("Toyota".into()),
                model: Some("Prius".into()),
            },
        )
        .await
        .unwrap();
        cover::enrol(
            conn,
            &self.clock,
            driver,
            EnrolInput {
                product_id: food.product_id,
                vehicle_id: car.id,
                accept_terms: true,
            },
            &WalletFunds,
        )
        .await
        .unwrap();
        car.id
    }

    /// A session of `minutes`, ended and charged to the wallet.
    pub async fn charged_ride(
        &self,
        conn: &mut AsyncPgConnection,
        driver: DriverId,
        vehicle: accounts::VehicleId,
        key: &str,
        minutes: i64,
    ) -> cover::CoverSession {
        let started = cover::start_session(
            conn,
            &self.clock,
            &Default::default(),
            driver,
            StartCover {
                vehicle_id: vehicle,
                product_id: None,
                quote_id: None,
                idempotency_key: key.into(),
                source: SessionSource::Driver,
            },
            &WalletFunds,
        )
        .await
        .unwrap();
        self.clock.advance(Duration::minutes(minutes));
        let session = cover::end_session(
            conn,
            &self.clock,
            driver,
            started.session.id,
            EndReason::Driver,
        )
        .await
        .unwrap()
        .session;
        payments::charge_session(conn, &self.env, session.id)
            .await
            .unwrap();
        session
    }
}

/// The user-facing code of an error, or "INTERNAL".
pub fn code(e: &finance::FinanceError) -> &'static str {
    e.code().unwrap_or("INTERNAL")
}
