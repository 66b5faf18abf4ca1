//! `shiftcover seed`: demo data for a development machine. Idempotent: running it twice leaves
//! the same data as running it once.
//!
//! What it loads:
//! - a demo driver, phone [`DEMO_DRIVER_PHONE`], with a complete profile (only the parts that
//!   are missing are filled in), one car, and an enrolment in [`DEMO_PRODUCT_CODE`] (pending
//!   until a card is saved, as for any driver; the first start of cover makes it active);
//! - ops, finance and admin staff users ([`DEMO_STAFF`]);
//! - a demo partner, [`DEMO_PARTNER_NAME`], with API keys of every scope, the demo driver linked
//!   to it as [`DEMO_EXTERNAL_DRIVER_ID`] in test and live mode, and (when the development inbox
//!   is on) webhook endpoints pointing at the inbox's receiver, [`DEMO_WEBHOOK_PATH`];
//! - the demo products ("Food delivery — hourly", "Private hire — hourly"), published with
//!   their rate tables and the underwriters' test cases;
//! - the demo job, which proves the job path is alive on a fresh machine.
//!
//! Credentials: in development the staff passwords and partner keys are the fixed demo ones
//! below, made so (a password reset, a key added) on every run and printed on every run, so the
//! README's walkthrough can use them as written. Anywhere else they are random, made once and
//! never printed. It refuses to run in production: demo users with well-known credentials have
//! no place there.

use accounts::{AccountsError, Actor, Role};
use chrono::NaiveDate;
use shared::core::Core;
use shared::settings::Environment;

/// The demo driver's phone. Ofcom's drama range (07700 900xxx) would be the natural choice, but
/// the phone-number metadata sign-in validates against rejects it as a number that does not
/// exist, so the demo driver could never sign in with it.
pub const DEMO_DRIVER_PHONE: &str = "+447700100123";
/// The demo driver's car registration.
pub const DEMO_VEHICLE_REGISTRATION: &str = "SC26DMO";
/// The demo driver's email (their emails reach the development inbox).
pub const DEMO_DRIVER_EMAIL: &str = "driver@shiftcover.example";
/// The product the demo driver is enrolled in.
pub const DEMO_PRODUCT_CODE: &str = "food_delivery_hourly";
/// The demo ops user's email.
pub const DEMO_OPS_EMAIL: &str = "ops@shiftcover.example";
/// The demo staff: email, role, name and the password used in development.
pub const DEMO_STAFF: [(&str, Role, &str, &str); 3] = [
    (DEMO_OPS_EMAIL, Role::Ops, "Demo Ops", "demo-ops-password"),
    (
        "finance@shiftcover.example",
        Role::Finance,
        "Demo Finance",
        "demo-finance-password",
    ),
    (
        "admin@shiftcover.example",
        Role::Admin,
        "Demo Admin",
        "demo-admin-password",
    ),
];
/// The demo partner's name.
pub const DEMO_PARTNER_NAME: &str = "Demo Deliveries";
/// The demo partner's test-mode key in development (sandbox: its events start no cover).
pub const DEMO_PARTNER_TEST_KEY: &str =
    "sck_test_demotest_DevelopmentOnlyDemoPartnerTestKey0000000";
/// The demo partner's live-mode key in development (its events start the demo driver's cover).
pub const DEMO_PARTNER_LIVE_KEY: &str =
    "sck_live_demolive_DevelopmentOnlyDemoPartnerLiveKey0000000";
/// The partner's own id for the demo driver.
pub const DEMO_EXTERNAL_DRIVER_ID: &str = "demo-driver-1";
/// Where the demo partner's webhooks go, under the public URL: the development inbox.
pub const DEMO_WEBHOOK_PATH: &str = "/dev/partner-webhooks";

/// One demo staff user, as `seed` left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededStaff {
    /// The sign-in email.
    pub email: String,
    /// The role.
    pub role: Role,
    /// Whether the user was created now.
    pub created: bool,
    /// The password, in development only.
    pub password: Option<String>,
}

/// What `seed` did, for its output and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// Whether the demo driver was created now.
    pub driver_created: bool,
    /// Whether the demo driver's vehicle was added now.
    pub vehicle_created: bool,
    /// The demo driver's enrolment's status (`pending`, `active`, …).
    pub enrolment_status: String,
    /// The staff users.
    pub staff: Vec<SeededStaff>,
    /// Whether the demo partner was created now.
    pub partner_created: bool,
    /// The partner's test key: in development, always; elsewhere only when created now (and
    /// then not printed).
    pub partner_test_key: Option<String>,
    /// The partner's live key (development only).
    pub partner_live_key: Option<String>,
    /// The modes (test, live) the demo driver was linked in now.
    pub links_created: usize,
    /// The URL the partner's webhook endpoints point at, when the development inbox is on.
    pub webhook_url: Option<String>,
    /// How many demo products have a published version (the same on every run).
    pub products_published: usize,
}

fn seed_error(what: &str, e: AccountsError) -> anyhow::Error {
    match e.user_error() {
        Some(u) => anyhow::anyhow!("seeding {what}: {u}"),
        None => anyhow::Error::new(e).context(format!("seeding {what}")),
    }
}

fn other_error(what: &str, e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("seeding {what} failed: {e:?}")
}

fn created(now: bool) -> &'static str {
    if now { "created" } else { "already there" }
}

/// Loads the demo data and prints it (credentials only in development).
pub async fn run(core: &Core) -> anyhow::Result<()> {
    let environment = core.settings.environment;
    let seeded = load(core).await?;
    let base = core.settings.http.public_url.trim_end_matches('/');
    println!(
        "demo driver {DEMO_DRIVER_PHONE}: {}; car {DEMO_VEHICLE_REGISTRATION}; enrolment in {DEMO_PRODUCT_CODE} {}",
        created(seeded.driver_created),
        seeded.enrolment_status,
    );
    if core.settings.dev.inbox {
        println!("  sign in with a code texted to {base}/dev/inbox");
    }
    for s in &seeded.staff {
        match &s.password {
            Some(password) => println!(
                "{} user {}: password {password} (sign in at {base}/admin)",
                s.role.as_str(),
                s.email
            ),
            None if s.created => println!(
                "{} user {}: created; its password is shown only in development",
                s.role.as_str(),
                s.email
            ),
            None => println!("{} user {}: already there", s.role.as_str(), s.email),
        }
    }
    match (&seeded.partner_test_key, environment) {
        (Some(key), Environment::Development) => {
            println!("partner {DEMO_PARTNER_NAME}: test key {key}");
            if let Some(live) = &seeded.partner_live_key {
                println!("partner {DEMO_PARTNER_NAME}: live key {live}");
            }
        }
        _ if seeded.partner_created => println!(
            "partner {DEMO_PARTNER_NAME}: created; its API key is shown only in development"
        ),
        _ => println!("partner {DEMO_PARTNER_NAME}: already there"),
    }
    println!(
        "partner {DEMO_PARTNER_NAME}: demo driver linked as {DEMO_EXTERNAL_DRIVER_ID} (test and live)"
    );
    if let Some(url) = &seeded.webhook_url {
        println!("partner {DEMO_PARTNER_NAME}: webhooks to {url}");
    }
    tracing::info!(?environment, "demo data loaded");
    Ok(())
}

/// Loads the demo data; returns what was done.
pub async fn load(core: &Core) -> anyhow::Result<Seeded> {
    if core.settings.environment == Environment::Production {
        anyhow::bail!("seed loads demo data and refuses to run in production");
    }
    let development = core.settings.environment == Environment::Development;
    let clock = core.clock.as_ref();
    let mut conn = core.pool.get().await?;
    let mut seeded = Seeded::default();

    // Products first: the enrolment needs one.
    let versions = pricing::seed_demo_products(&mut conn)
        .await
        .map_err(|e| anyhow::anyhow!("seeding the demo products failed: {e}"))?;
    seeded.products_published = versions.len();

    let phone = accounts::Phone::parse(DEMO_DRIVER_PHONE).map_err(|e| seed_error("driver", e))?;
    let (driver, driver_created) =
        accounts::find_or_create_driver_by_phone(&mut conn, clock, Actor::System, &phone)
            .await
            .map_err(|e| seed_error("driver", e))?;
    seeded.driver_created = driver_created;
    complete_profile(core, &mut conn, &driver).await?;
    let vehicles = accounts::list_vehicles(&mut conn, driver.id)
        .await
        .map_err(|e| seed_error("vehicle", e))?;
    let vehicle_id = match vehicles.first() {
        Some(v) => v.id,
        None => {
            let v = accounts::add_vehicle(
                &mut conn,
                clock,
                driver.id,
                accounts::NewVehicle {
                    vehicle_type: accounts::VehicleType::Car,
                    registration: Some(DEMO_VEHICLE_REGISTRATION.into()),
                    make: Some("Toyota".into()),
                    model: Some("Prius".into()),
                },
            )
            .await
            .map_err(|e| seed_error("vehicle", e))?;
            seeded.vehicle_created = true;
            v.id
        }
    };
    let product = pricing::get_product_by_code(&mut conn, DEMO_PRODUCT_CODE)
        .await
        .map_err(|e| other_error("the demo product", e))?;
    let enrolment = match cover::open_enrolment(&mut conn, driver.id, product.id)
        .await
        .map_err(|e| other_error("the enrolment", e))?
    {
        Some(e) => e,
        None => cover::enrol(
            &mut conn,
            clock,
            driver.id,
            cover::EnrolInput {
                product_id: product.id,
                vehicle_id,
                accept_terms: true,
            },
            &payments::WalletFunds,
        )
        .await
        .map_err(|e| other_error("the enrolment", e))?,
    };
    seeded.enrolment_status = enrolment.status.as_str().to_owned();
    if let Some(reason) = &enrolment.status_reason {
        seeded.enrolment_status = format!("{} ({reason})", seeded.enrolment_status);
    }

    for (email, role, name, demo_password) in DEMO_STAFF {
        let password = if development {
            demo_password.to_owned()
        } else {
            accounts::generate_password()
        };
        let made = accounts::create_staff(
            &mut conn,
            clock,
            Actor::System,
            accounts::NewStaff {
                email: email.into(),
                name: name.into(),
                role,
                password: password.clone(),
            },
        )
        .await;
        let created = match made {
            Ok(_) => true,
            Err(AccountsError::DuplicateEmail) => false,
            Err(e) => return Err(seed_error("staff user", e)),
        };
        if development && !created {
            // A user made by an earlier seed with another password gets the demo one back.
            accounts::ensure_staff_password(&mut conn, clock, Actor::System, email, &password)
                .await
                .map_err(|e| seed_error("staff user", e))?;
        }
        seeded.staff.push(SeededStaff {
            email: email.to_owned(),
            role,
            created,
            password: development.then_some(password),
        });
    }

    let partners = accounts::list_partners(&mut conn)
        .await
        .map_err(|e| seed_error("partner", e))?;
    let partner = match partners.into_iter().find(|p| p.name == DEMO_PARTNER_NAME) {
        Some(p) => p,
        None => {
            seeded.partner_created = true;
            accounts::create_partner(&mut conn, clock, Actor::System, DEMO_PARTNER_NAME)
                .await
                .map_err(|e| seed_error("partner", e))?
        }
    };
    if development {
        for key in [DEMO_PARTNER_TEST_KEY, DEMO_PARTNER_LIVE_KEY] {
            accounts::ensure_api_key_with_plaintext(
                &mut conn,
                clock,
                Actor::System,
                partner.id,
                &accounts::Scope::ALL,
                key,
            )
            .await
            .map_err(|e| seed_error("partner API key", e))?;
        }
        seeded.partner_test_key = Some(DEMO_PARTNER_TEST_KEY.to_owned());
        seeded.partner_live_key = Some(DEMO_PARTNER_LIVE_KEY.to_owned());
    } else if seeded.partner_created {
        let (_, key) = accounts::create_api_key(
            &mut conn,
            clock,
            Actor::System,
            partner.id,
            &accounts::Scope::ALL,
            true,
        )
        .await
        .map_err(|e| seed_error("partner API key", e))?;
        seeded.partner_test_key = Some(key);
    }

    let webhook_url = core.settings.dev.inbox.then(|| {
        format!(
            "{}{DEMO_WEBHOOK_PATH}",
            core.settings.http.public_url.trim_end_matches('/')
        )
    });
    let links = partners::list_links_for_driver(&mut conn, driver.id)
        .await
        .map_err(|e| other_error("the partner link", e))?;
    for scope in [
        partners::PartnerScope::test(partner.id),
        partners::PartnerScope::live(partner.id),
    ] {
        let linked = links
            .iter()
            .any(|l| l.partner_id == partner.id && l.test_mode == scope.test_mode);
        if !linked {
            let code = partners::create_link_code(&mut conn, clock, driver.id)
                .await
                .map_err(|e| other_error("the partner link", e))?;
            partners::link_driver(&mut conn, clock, scope, &code.code, DEMO_EXTERNAL_DRIVER_ID)
                .await
                .map_err(|e| other_error("the partner link", e))?;
            seeded.links_created += 1;
        }
        if let Some(url) = &webhook_url {
            let endpoints = partners::list_webhook_endpoints(&mut conn, scope)
                .await
                .map_err(|e| other_error("the webhook endpoint", e))?;
            if !endpoints.iter().any(|e| e.url == *url) {
                partners::register_webhook_endpoint(
                    &mut conn,
                    clock,
                    &core.settings.partner_webhooks,
                    scope,
                    url,
                    &partners::EventType::ALL,
                    None,
                )
                .await
                .map_err(|e| other_error("the webhook endpoint", e))?;
            }
        }
    }
    seeded.webhook_url = webhook_url;

    shared::outbox::enqueue(
        &mut conn,
        &shared::demo::DemoPing {
            message: "ShiftCover demo data loaded".into(),
            key: "seed:demo-ping".into(),
        },
    )
    .await?;
    Ok(seeded)
}

/// Fills in the parts of the demo driver's profile that are missing (what quoting and
/// enrolment need), leaving what is there alone.
async fn complete_profile(
    core: &Core,
    conn: &mut diesel_async::AsyncPgConnection,
    driver: &accounts::Driver,
) -> anyhow::Result<()> {
    let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
    let update = accounts::ProfileUpdate {
        name: driver.name.is_none().then(|| "Dana Demo".to_owned()),
        date_of_birth: driver
            .date_of_birth
            .is_none()
            .then(|| date(1990, 3, 14))
            .flatten(),
        email: driver.email.is_none().then(|| DEMO_DRIVER_EMAIL.to_owned()),
        licence_number: None,
        licence_issued_on: driver
            .licence_issued_on
            .is_none()
            .then(|| date(2010, 6, 1))
            .flatten(),
        postcode: driver.postcode.is_none().then(|| "SW1A 1AA".to_owned()),
    };
    if update == accounts::ProfileUpdate::default() {
        return Ok(());
    }
    accounts::update_profile(conn, core.clock.as_ref(), Actor::System, driver.id, update)
        .await
        .map_err(|e| seed_error("driver profile", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_keys_are_well_formed_keys() {
        for (key, mode) in [
            (DEMO_PARTNER_TEST_KEY, "sck_test_"),
            (DEMO_PARTNER_LIVE_KEY, "sck_live_"),
        ] {
            let rest = key.strip_prefix(mode).expect(mode);
            let (prefix, secret) = rest.split_once('_').expect("prefix_secret");
            assert_eq!(prefix.len(), accounts::partners::KEY_PREFIX_LEN, "{key}");
            assert_eq!(secret.len(), accounts::partners::KEY_SECRET_LEN, "{key}");
        }
        for (_, _, _, password) in DEMO_STAFF {
            assert!(password.len() >= accounts::staff::MIN_PASSWORD_CHARS);
        }
    }
}
