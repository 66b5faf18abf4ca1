//! Helpers shared by the tests: a database, settings pointing Stripe at localstripe, drivers
//! with saved cards, a signed webhook delivery, and a runner for queued jobs.

use accounts::{Actor, DriverId, Phone, ProfileUpdate};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use payments::{PaymentsEnv, TopUpId};
use shared::jobs::JobContext;
use shared::outbox;
use shared::{Clock, FixedClock, Money, Settings};
use std::sync::Arc;
use testkit::TestDb;
use testkit::localstripe::LocalStripe;

pub use testkit::localstripe::cards;

/// The webhook signing secret the tests use.
pub const WEBHOOK_SECRET: &str = "whsec_test_payments";

/// One test's world: its database, settings, clock and payments handles.
pub struct World {
    pub db: TestDb,
    pub settings: Arc<Settings>,
    pub clock: FixedClock,
    pub env: PaymentsEnv,
    pub stripe: &'static LocalStripe,
}

impl World {
    pub async fn new() -> World {
        let db = TestDb::new().await.unwrap();
        let stripe = LocalStripe::shared();
        let mut settings = testkit::settings_for(&db);
        stripe.configure(&mut settings.stripe);
        settings.stripe.webhook_secret = shared::Secret::new(WEBHOOK_SECRET);
        settings.http.public_url = "https://app.shiftcover.test".into();
        // Real time, fixed: localstripe stamps objects with the wall clock.
        let clock = FixedClock::at(Utc::now());
        let env = PaymentsEnv::from_settings(&settings, Arc::new(clock.clone())).unwrap();
        World {
            db,
            settings: Arc::new(settings),
            clock,
            env,
            stripe,
        }
    }

    pub async fn conn(&self) -> shared::DbConn {
        self.db.conn().await.unwrap()
    }

    /// Runs every due job of the given types, as a worker would (claim, handler, complete), until
    /// none is left. Returns how many ran.
    pub async fn run_jobs(&self, conn: &mut AsyncPgConnection) -> usize {
        let mut ran = 0;
        loop {
            let due = outbox::take_due(conn, &payments::JOB_TYPES, 100, 3600, 3600)
                .await
                .unwrap();
            if due.is_empty() {
                return ran;
            }
            for job in due {
                let claimed = outbox::claim(conn, job.id, "test-worker")
                    .await
                    .unwrap()
                    .unwrap();
                let ctx = JobContext {
                    pool: self.db.pool().clone(),
                    job: claimed.clone(),
                    worker: Arc::from("test-worker"),
                    clock: Arc::new(self.clock.clone()),
                    settings: self.settings.clone(),
                };
                let result = match claimed.job_type.as_str() {
                    "ChargeAutoTopUp" => {
                        payments::run_charge_auto_top_up(
                            ctx,
                            serde_json::from_value(claimed.payload.clone()).unwrap(),
                        )
                        .await
                    }
                    "ApplyStripeEvent" => {
                        payments::run_apply_stripe_event(
                            ctx,
                            serde_json::from_value(claimed.payload.clone()).unwrap(),
                        )
                        .await
                    }
                    "ChargeSession" => {
                        payments::run_charge_session(
                            ctx,
                            serde_json::from_value(claimed.payload.clone()).unwrap(),
                        )
                        .await
                    }
                    other => panic!("unexpected job {other}"),
                };
                result.unwrap_or_else(|e| panic!("job {} failed: {e}", claimed.job_type));
                ran += 1;
            }
        }
    }

    /// Signs `payload` as Stripe does, checks the signature as the HTTP route does, and records
    /// the event.
    pub async fn deliver(
        &self,
        conn: &mut AsyncPgConnection,
        payload: &serde_json::Value,
    ) -> payments::RecordedEvent {
        let body = serde_json::to_string(payload).unwrap();
        let now = self.clock.now();
        let header =
            payments::sign_stripe_payload(WEBHOOK_SECRET, body.as_bytes(), now.timestamp());
        payments::verify_stripe_signature(
            self.settings.stripe.webhook_secret.expose(),
            Some(&header),
            body.as_bytes(),
            now,
            self.settings.stripe.webhook_tolerance_secs,
        )
        .unwrap();
        payments::record_event(conn, &self.env, &body)
            .await
            .unwrap()
    }

    /// A driver with an email address.
    pub async fn driver(&self, conn: &mut AsyncPgConnection, phone: &str) -> DriverId {
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
                name: Some("Ada Lovelace".into()),
                email: Some("ada@example.com".into()),
                date_of_birth: chrono::NaiveDate::from_ymd_opt(1990, 3, 14),
                licence_issued_on: chrono::NaiveDate::from_ymd_opt(2010, 6, 1),
                postcode: Some("SW1A 1AA".into()),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
        driver.id
    }

    /// Saves `card` for the driver as the app would: SetupIntent, confirm with the SDK (twice for
    /// a 3-D Secure card), report back.
    pub async fn save_card(
        &self,
        conn: &mut AsyncPgConnection,
        driver: DriverId,
        card: &str,
    ) -> payments::PaymentMethod {
        let setup = payments::create_card_setup(conn, &self.env, driver)
            .await
            .unwrap();
        let secret = setup.client_secret.clone().unwrap();
        let pm = self.stripe.create_card(card).await.unwrap();
        let si = self
            .stripe
            .confirm_setup_intent(&setup.setup_intent_id, &secret, Some(&pm))
            .await
            .unwrap();
        if si["status"] == "requires_action" {
            self.stripe
                .confirm_setup_intent(&setup.setup_intent_id, &secret, None)
                .await
                .unwrap();
        }
        payments::confirm_card_setup(conn, &self.env, driver, &setup.setup_intent_id)
            .await
            .unwrap()
            .payment_method
            .unwrap()
    }

    /// The driver's wallet balance.
    pub async fn balance(&self, conn: &mut AsyncPgConnection, driver: DriverId) -> Money {
        payments::wallet_balance(conn, driver).await.unwrap()
    }

    /// The PaymentIntents localstripe holds for the driver's customer.
    pub async fn stripe_intents(
        &self,
        conn: &mut AsyncPgConnection,
        driver: DriverId,
    ) -> Vec<serde_json::Value> {
        let customer = payments::stripe_customer_id(conn, driver)
            .await
            .unwrap()
            .unwrap();
        self.stripe.payment_intents_of(&customer).await.unwrap()
    }
}

/// A PaymentIntent event as Stripe would send it, with the object as it stands now.
pub async fn intent_event(
    stripe: &LocalStripe,
    event_id: &str,
    event_type: &str,
    payment_intent: &str,
    created: i64,
) -> serde_json::Value {
    let object = stripe
        .get(&format!("/v1/payment_intents/{payment_intent}"))
        .await
        .unwrap();
    event(event_id, event_type, object, created)
}

/// A Stripe event wrapping `object`.
pub fn event(
    event_id: &str,
    event_type: &str,
    object: serde_json::Value,
    created: i64,
) -> serde_json::Value {
    serde_json::json!({
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": event_type,
        "data": { "object": object },
    })
}

/// A fresh event id.
pub fn event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

/// The user-facing code of an error, or "INTERNAL".
pub fn code(e: &payments::PaymentsError) -> &'static str {
    e.code().unwrap_or("INTERNAL")
}

/// Checks the whole ledger.
pub async fn assert_ledger_clean(conn: &mut AsyncPgConnection) {
    let report = ledger::check_integrity(conn).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// The notifications recorded for a top-up: (channel, recipient, body).
pub async fn top_up_notifications(
    conn: &mut AsyncPgConnection,
    top_up: TopUpId,
) -> Vec<(String, String, String)> {
    use notifications::schema::notifications as n;
    n::table
        .filter(n::cause.like(format!("top_up_action_needed:{top_up}:%")))
        .order(n::cause.asc())
        .select((n::cause, n::recipient, n::body_text))
        .load::<(String, String, String)>(conn)
        .await
        .unwrap()
}

/// Jobs of a type in the outbox: (status, idempotency key).
pub async fn outbox_jobs(conn: &mut AsyncPgConnection, job_type: &str) -> Vec<(String, String)> {
    use shared::schema::outbox_jobs as o;
    o::table
        .filter(o::job_type.eq(job_type))
        .order(o::created_at.asc())
        .select((o::status, o::idempotency_key))
        .load(conn)
        .await
        .unwrap()
}

/// A clock-independent "now" for event timestamps.
pub fn unix_now() -> i64 {
    Utc::now().timestamp()
}

pub const PHONE: &str = "07911 123456";
pub const OTHER_PHONE: &str = "+44 7700 123456";
