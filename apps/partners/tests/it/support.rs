//! Helpers shared by the tests: a partner, drivers enrolled in the demo private-hire product
//! (through the accounts, pricing and cover apps), a fixed clock, and a runner for webhook jobs.

use accounts::{
    Actor, DriverId, NewVehicle, Phone, ProfileUpdate, VehicleType, add_vehicle,
    find_or_create_driver_by_phone, update_profile,
};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use cover::EnrolInput;
use cover::test_support::StaticFunds;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use partners::{
    DeliverPartnerWebhook, Link, PartnerScope, ShiftEventInput, ShiftEventKind, WebhookDeliveryId,
};
use pricing::ProductVersion;
use shared::FixedClock;
use shared::clock::SharedClock;
use shared::jobs::{JobContext, JobError};
use shared::outbox::{self, ClaimedJob, Job};
use shared::schema::outbox_jobs;
use shared::settings::Settings;
use std::sync::Arc;
use testkit::TestDb;

/// 23 November 2026 (a Monday; UK time is UTC) at `h:m`.
pub fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0)
        .single()
        .unwrap()
}

pub struct Harness {
    pub db: TestDb,
    pub clock: FixedClock,
    pub settings: Arc<Settings>,
    pub funds: StaticFunds,
    pub partner: PartnerScope,
    pub hire: ProductVersion,
}

impl Harness {
    pub async fn new() -> Harness {
        let db = TestDb::new().await.expect("test database");
        let clock = FixedClock::at(t(7, 0));
        let mut conn = db.conn().await.unwrap();
        let mut versions = pricing::seed_demo_products(&mut conn).await.unwrap();
        let hire = versions.pop().unwrap();
        assert_eq!(hire.terms.rules.tail_cover_minutes, 15);
        let partner = accounts::create_partner(&mut conn, &clock, Actor::System, "Rides Ltd")
            .await
            .unwrap();
        let settings = Arc::new(testkit::settings_for(&db));
        Harness {
            db,
            clock,
            settings,
            funds: StaticFunds::ok(),
            partner: PartnerScope::live(partner.id),
            hire,
        }
    }

    pub async fn conn(&self) -> shared::DbConn {
        self.db.conn().await.expect("connection")
    }

    /// Another partner.
    pub async fn other_partner(&self) -> PartnerScope {
        let mut conn = self.conn().await;
        let p = accounts::create_partner(&mut conn, &self.clock, Actor::System, "Food Co")
            .await
            .unwrap();
        PartnerScope::live(p.id)
    }

    /// A driver with a complete profile and a car, enrolled in private hire.
    pub async fn driver(&self, phone: &str) -> DriverId {
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
        let car = add_vehicle(
            &mut conn,
            &self.clock,
            driver.id,
            NewVehicle {
                vehicle_type: VehicleType::Car,
                registration: Some(format!(
                    "AB{}CDE",
                    &phone.as_str()[phone.as_str().len() - 2..]
                )),
                make: Some("Toyota".into()),
                model: Some("Prius".into()),
            },
        )
        .await
        .unwrap();
        cover::enrol(
            &mut conn,
            &self.clock,
            driver.id,
            EnrolInput {
                product_id: self.hire.product_id,
                vehicle_id: car.id,
                accept_terms: true,
            },
            &self.funds,
        )
        .await
        .unwrap();
        driver.id
    }

    /// Links `driver` to `scope` under `external`.
    pub async fn link(&self, scope: PartnerScope, driver: DriverId, external: &str) -> Link {
        let mut conn = self.conn().await;
        let code = partners::create_link_code(&mut conn, &self.clock, driver)
            .await
            .unwrap();
        partners::link_driver(&mut conn, &self.clock, scope, &code.code, external)
            .await
            .unwrap()
    }

    pub async fn send(
        &self,
        scope: PartnerScope,
        events: &[ShiftEventInput],
    ) -> Vec<partners::ShiftEventResult> {
        let mut conn = self.conn().await;
        partners::record_shift_events(
            &mut conn,
            &self.clock,
            &self.settings.cover,
            &self.funds,
            scope,
            events,
        )
        .await
        .unwrap()
        .results
    }

    /// The partner's sessions of a driver, oldest first.
    pub async fn sessions(&self, driver: DriverId) -> Vec<cover::CoverSession> {
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

    /// The driver's car.
    pub async fn car(&self, driver: DriverId) -> accounts::VehicleId {
        let mut conn = self.conn().await;
        accounts::list_vehicles(&mut conn, driver).await.unwrap()[0].id
    }

    /// The delivery jobs not yet done: (job id, payload).
    pub async fn webhook_jobs(&self) -> Vec<(shared::ids::JobId, DeliverPartnerWebhook)> {
        let mut conn = self.conn().await;
        let rows: Vec<(shared::ids::JobId, serde_json::Value)> = outbox_jobs::table
            .filter(outbox_jobs::job_type.eq(DeliverPartnerWebhook::TYPE))
            .filter(outbox_jobs::status.eq_any(["pending", "queued", "running"]))
            .order(outbox_jobs::created_at.asc())
            .select((outbox_jobs::id, outbox_jobs::payload))
            .load(&mut conn)
            .await
            .unwrap();
        rows.into_iter()
            .map(|(id, p)| (id, serde_json::from_value(p).unwrap()))
            .collect()
    }

    /// Runs one attempt of a delivery job through the real handler, as the runtime would, and
    /// records the outcome on the outbox row (a retry is due at once).
    pub async fn run_job(&self, job_id: shared::ids::JobId) -> Result<(), JobError> {
        let mut conn = self.conn().await;
        diesel::update(outbox_jobs::table.find(job_id))
            .filter(outbox_jobs::status.ne("dead"))
            .set((
                outbox_jobs::status.eq("queued"),
                outbox_jobs::queued_at.eq(diesel::dsl::now),
            ))
            .execute(&mut conn)
            .await
            .unwrap();
        let claimed: ClaimedJob = outbox::claim(&mut conn, job_id, "test-worker")
            .await
            .unwrap()
            .expect("claimed");
        let payload: DeliverPartnerWebhook =
            serde_json::from_value(claimed.payload.clone()).unwrap();
        let clock: SharedClock = Arc::new(self.clock.clone());
        let ctx = JobContext {
            pool: self.db.pool().clone(),
            job: claimed.clone(),
            worker: Arc::from("test-worker"),
            clock,
            settings: self.settings.clone(),
        };
        let result = partners::deliver_partner_webhook(ctx, payload).await;
        match &result {
            Ok(()) => {
                outbox::complete(&mut conn, &claimed, "test-worker")
                    .await
                    .unwrap();
            }
            Err(JobError::ClaimLost) => {}
            Err(e) => {
                let last = claimed.attempts >= claimed.max_attempts;
                let retry_at = (!last && matches!(e, JobError::Retry(_))).then(Utc::now);
                outbox::fail(&mut conn, &claimed, "test-worker", &e.to_string(), retry_at)
                    .await
                    .unwrap();
            }
        }
        result
    }

    /// Runs every pending delivery job once; returns how many ran.
    pub async fn run_webhooks(&self) -> usize {
        let jobs = self.webhook_jobs().await;
        for (id, _) in &jobs {
            let _ = self.run_job(*id).await;
        }
        jobs.len()
    }

    /// The delivery job of a delivery (first round).
    pub async fn job_of(&self, delivery: WebhookDeliveryId) -> shared::ids::JobId {
        let mut conn = self.conn().await;
        outbox_jobs::table
            .filter(outbox_jobs::job_type.eq(DeliverPartnerWebhook::TYPE))
            .filter(outbox_jobs::idempotency_key.eq(format!("{delivery}:0")))
            .select(outbox_jobs::id)
            .first(&mut conn)
            .await
            .unwrap()
    }
}

/// An event.
pub fn ev(id: &str, external: &str, kind: ShiftEventKind, at: DateTime<Utc>) -> ShiftEventInput {
    ShiftEventInput {
        event_id: id.into(),
        external_driver_id: external.into(),
        kind,
        occurred_at: at,
        vehicle_type: VehicleType::Car,
        reference: None,
    }
}
