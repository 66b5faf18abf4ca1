//! Helpers shared by the tests: drivers enrolled in a demo product (through the accounts,
//! pricing and cover apps), partner-driven sessions from shift events, driver-started sessions
//! at given times, a fixed clock, and a payments environment for charges and refunds.

use accounts::{
    Actor, DriverId, NewVehicle, Phone, ProfileUpdate, VehicleId, VehicleType, add_vehicle,
    find_or_create_driver_by_phone, update_profile,
};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use cover::test_support::StaticFunds;
use cover::{CoverSession, EndReason, EnrolInput, SessionSource, StartCover};
use partners::{PartnerScope, ShiftEventInput, ShiftEventKind};
use payments::PaymentsEnv;
use pricing::ProductVersion;
use shared::{FixedClock, Settings};
use std::sync::Arc;
use testkit::TestDb;

/// 23 November 2026 (a Monday; UK time is UTC) at `h:m`.
pub fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0)
        .single()
        .unwrap()
}

/// Which demo product a driver is enrolled in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// Food delivery: gap rule 10 minutes, no tail cover.
    Food,
    /// Private hire: gap rule 10 minutes, tail cover 15 minutes.
    Hire,
}

pub struct Harness {
    pub db: TestDb,
    pub clock: FixedClock,
    pub settings: Arc<Settings>,
    pub funds: StaticFunds,
    pub partner: PartnerScope,
    pub food: ProductVersion,
    pub hire: ProductVersion,
    pub env: PaymentsEnv,
}

pub struct TestDriver {
    pub id: DriverId,
    pub car: VehicleId,
    pub bike: VehicleId,
    pub external: String,
}

impl Harness {
    pub async fn new() -> Harness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = TestDb::new().await.expect("test database");
        let clock = FixedClock::at(t(7, 0));
        let mut conn = db.conn().await.unwrap();
        let mut versions = pricing::seed_demo_products_at(&mut conn, &clock)
            .await
            .unwrap();
        let hire = versions.pop().unwrap();
        let food = versions.pop().unwrap();
        assert_eq!(hire.terms.rules.gap_rule_minutes, 10);
        assert_eq!(hire.terms.rules.tail_cover_minutes, 15);
        assert_eq!(food.terms.rules.gap_rule_minutes, 10);
        assert_eq!(food.terms.rules.tail_cover_minutes, 0);
        let partner = accounts::create_partner(&mut conn, &clock, Actor::System, "Rides Ltd")
            .await
            .unwrap();
        let settings = testkit::settings_for(&db);
        let env = PaymentsEnv::from_settings(&settings, Arc::new(clock.clone())).unwrap();
        Harness {
            db,
            clock,
            settings: Arc::new(settings),
            funds: StaticFunds::ok(),
            partner: PartnerScope::live(partner.id),
            food,
            hire,
            env,
        }
    }

    pub async fn conn(&self) -> shared::DbConn {
        self.db.conn().await.expect("connection")
    }

    /// A driver with a complete profile, a car and a bicycle, enrolled (with the car) in
    /// `product`, and linked to the partner.
    pub async fn driver(&self, phone: &str, product: Product) -> TestDriver {
        let mut conn = self.conn().await;
        let phone = Phone::parse(phone).unwrap();
        let (driver, _) =
            find_or_create_driver_by_phone(&mut conn, &self.clock, Actor::System, &phone)
                .await
                .unwrap();
        update_profile(
            &mut conn,
            &self.clock,
            Actor::Driver(driver.id),
            driver.id,
            ProfileUpdate {
                name: Some("Grace Hopper".into()),
                date_of_birth: NaiveDate::from_ymd_opt(1988, 5, 1),
                licence_issued_on: NaiveDate::from_ymd_opt(2008, 6, 1),
                postcode: Some("SW1A 1AA".into()),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
        let tail = &phone.as_str()[phone.as_str().len() - 2..];
        let car = add_vehicle(
            &mut conn,
            &self.clock,
            driver.id,
            NewVehicle {
                vehicle_type: VehicleType::Car,
                registration: Some(format!("AB{tail}CDE")),
                make: Some("Toyota".into()),
                model: Some("Prius".into()),
            },
        )
        .await
        .unwrap();
        let bike = add_vehicle(
            &mut conn,
            &self.clock,
            driver.id,
            NewVehicle {
                vehicle_type: VehicleType::Bicycle,
                registration: None,
                make: None,
                model: None,
            },
        )
        .await
        .unwrap();
        let product_id = match product {
            Product::Food => self.food.product_id,
            Product::Hire => self.hire.product_id,
        };
        cover::enrol(
            &mut conn,
            &self.clock,
            driver.id,
            EnrolInput {
                product_id,
                vehicle_id: car.id,
                accept_terms: true,
            },
            &self.funds,
        )
        .await
        .unwrap();
        let external = format!("ext-{tail}");
        let code = partners::create_link_code(&mut conn, &self.clock, driver.id)
            .await
            .unwrap();
        partners::link_driver(&mut conn, &self.clock, self.partner, &code.code, &external)
            .await
            .unwrap();
        TestDriver {
            id: driver.id,
            car: car.id,
            bike: bike.id,
            external,
        }
    }

    /// Sends the partner's events for a driver (at the harness clock's now).
    pub async fn send(
        &self,
        driver: &TestDriver,
        events: &[(&str, ShiftEventKind, DateTime<Utc>)],
    ) {
        let inputs: Vec<ShiftEventInput> = events
            .iter()
            .map(|(id, kind, at)| ShiftEventInput {
                event_id: (*id).into(),
                external_driver_id: driver.external.clone(),
                kind: *kind,
                occurred_at: *at,
                vehicle_type: VehicleType::Car,
                reference: Some(format!("job-{id}")),
            })
            .collect();
        let mut conn = self.conn().await;
        let results = partners::record_shift_events(
            &mut conn,
            &self.clock,
            &self.settings.cover,
            &self.funds,
            self.partner,
            &inputs,
        )
        .await
        .unwrap()
        .results;
        assert_eq!(results.len(), inputs.len());
    }

    /// The driver's sessions, oldest first.
    pub async fn sessions(&self, driver: DriverId) -> Vec<CoverSession> {
        let mut conn = self.conn().await;
        let page = cover::list_sessions(
            &mut conn,
            driver,
            &cover::SessionFilter::default(),
            None,
            100,
        )
        .await
        .unwrap();
        let mut out: Vec<_> = page.edges.into_iter().map(|e| e.node).collect();
        out.reverse();
        out
    }

    /// A session the driver starts on `vehicle` at `from` and ends at `to`.
    pub async fn driver_session(
        &self,
        driver: DriverId,
        vehicle: VehicleId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> CoverSession {
        let mut conn = self.conn().await;
        let started = cover::start_session(
            &mut conn,
            &FixedClock::at(from),
            &self.settings.cover,
            driver,
            StartCover {
                vehicle_id: vehicle,
                product_id: None,
                quote_id: None,
                idempotency_key: format!("key-{}", from.timestamp()),
                source: SessionSource::Driver,
            },
            &self.funds,
        )
        .await
        .unwrap();
        cover::end_session(
            &mut conn,
            &FixedClock::at(to),
            driver,
            started.session.id,
            EndReason::Driver,
        )
        .await
        .unwrap()
        .session
    }

    /// Credits the driver's wallet (as a top-up would), so charges leave it in credit.
    pub async fn fund(&self, driver: DriverId, pence: i64) {
        let mut conn = self.conn().await;
        let amount = shared::Money::gbp(pence);
        ledger::post(
            &mut conn,
            ledger::NewTransaction {
                kind: ledger::TransactionKind::TopUp,
                cause: ledger::Cause::new("test_credit", uuid::Uuid::new_v4().to_string()),
                currency: amount.currency,
                description: "Test credit".into(),
                lines: ledger::top_up_lines(
                    &driver.to_string(),
                    amount,
                    shared::Money::zero(amount.currency),
                )
                .unwrap(),
                metadata: serde_json::Value::Null,
            },
        )
        .await
        .unwrap();
    }

    /// Takes a session's charge from the wallet, as the ChargeSession job does.
    pub async fn charge(&self, session: &CoverSession) -> CoverSession {
        let mut conn = self.conn().await;
        payments::charge_session(&mut conn, &self.env, session.id)
            .await
            .unwrap();
        cover::get_session(&mut conn, session.id).await.unwrap()
    }
}

/// A report of a loss at `at` on `vehicle`.
pub fn report(vehicle: VehicleId, at: DateTime<Utc>, key: &str) -> claims::ReportClaim {
    claims::ReportClaim {
        occurred_at: at,
        location: "Junction of Old Street and City Road".into(),
        description: "A van reversed into my car while I was waiting at the lights.".into(),
        vehicle_id: vehicle,
        third_party_involved: true,
        injuries: false,
        photo_ids: Vec::new(),
        idempotency_key: key.into(),
    }
}
