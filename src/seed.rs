//! `shiftcover seed`: demo data for a development machine. Idempotent: running it twice leaves
//! the same data as running it once, and nothing that exists is changed.
//!
//! What it loads:
//! - a demo driver, phone [`DEMO_DRIVER_PHONE`], with one car;
//! - an ops staff user, [`DEMO_OPS_EMAIL`], with a random password printed once (in development
//!   only; elsewhere use `shiftcover staff create`);
//! - a demo partner, [`DEMO_PARTNER_NAME`], with an API key of every scope (test mode) printed
//!   once, in development only;
//! - the demo products ("Food delivery — hourly", "Private hire — hourly"), published with
//!   their rate tables and the underwriters' test cases;
//! - the demo job, which proves the job path is alive on a fresh machine.
//!
//! It refuses to run in production: a demo driver with a well-known phone has no place there.

use accounts::{AccountsError, Actor};
use shared::core::Core;
use shared::settings::Environment;

/// The demo driver's phone. Ofcom's drama range (07700 900xxx) would be the natural choice, but
/// the phone-number metadata sign-in validates against rejects it as a number that does not
/// exist, so the demo driver could never sign in with it.
pub const DEMO_DRIVER_PHONE: &str = "+447700100123";
/// The demo driver's car registration.
pub const DEMO_VEHICLE_REGISTRATION: &str = "SC26DMO";
/// The demo ops user's email.
pub const DEMO_OPS_EMAIL: &str = "ops@shiftcover.example";
/// The demo partner's name.
pub const DEMO_PARTNER_NAME: &str = "Demo Deliveries";

/// What `seed` did, for its output and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// Whether the demo driver was created now.
    pub driver_created: bool,
    /// Whether the demo driver's vehicle was added now.
    pub vehicle_created: bool,
    /// The ops user's password, when the user was created now.
    pub ops_password: Option<String>,
    /// The demo partner's API key, when the partner was created now.
    pub partner_key: Option<String>,
    /// How many demo products have a published version (the same on every run).
    pub products_published: usize,
}

fn seed_error(what: &str, e: AccountsError) -> anyhow::Error {
    match e.user_error() {
        Some(u) => anyhow::anyhow!("seeding {what}: {u}"),
        None => anyhow::Error::new(e).context(format!("seeding {what}")),
    }
}

/// Loads the demo data and prints what was created (secrets only in development).
pub async fn run(core: &Core) -> anyhow::Result<()> {
    let environment = core.settings.environment;
    let seeded = load(core).await?;
    let show_secrets = environment == Environment::Development;
    println!(
        "demo driver {DEMO_DRIVER_PHONE}: {}",
        if seeded.driver_created {
            "created"
        } else {
            "already there"
        }
    );
    match (&seeded.ops_password, show_secrets) {
        (Some(password), true) => {
            println!("ops user {DEMO_OPS_EMAIL}: created, password {password}")
        }
        (Some(_), false) => println!(
            "ops user {DEMO_OPS_EMAIL}: created; its password is shown only in development"
        ),
        (None, _) => println!("ops user {DEMO_OPS_EMAIL}: already there"),
    }
    match (&seeded.partner_key, show_secrets) {
        (Some(key), true) => println!("partner {DEMO_PARTNER_NAME}: created, API key {key}"),
        (Some(_), false) => println!(
            "partner {DEMO_PARTNER_NAME}: created; its API key is shown only in development"
        ),
        (None, _) => println!("partner {DEMO_PARTNER_NAME}: already there"),
    }
    tracing::info!(?environment, "demo data loaded");
    Ok(())
}

/// Loads the demo data; returns what was created.
pub async fn load(core: &Core) -> anyhow::Result<Seeded> {
    if core.settings.environment == Environment::Production {
        anyhow::bail!("seed loads demo data and refuses to run in production");
    }
    let clock = core.clock.as_ref();
    let mut conn = core.pool.get().await?;
    let mut seeded = Seeded::default();

    let phone = accounts::Phone::parse(DEMO_DRIVER_PHONE).map_err(|e| seed_error("driver", e))?;
    let (driver, created) =
        accounts::find_or_create_driver_by_phone(&mut conn, clock, Actor::System, &phone)
            .await
            .map_err(|e| seed_error("driver", e))?;
    seeded.driver_created = created;
    let vehicles = accounts::list_vehicles(&mut conn, driver.id)
        .await
        .map_err(|e| seed_error("vehicle", e))?;
    if vehicles.is_empty() {
        accounts::add_vehicle(
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
    }

    let password = accounts::generate_password();
    match accounts::create_staff(
        &mut conn,
        clock,
        Actor::System,
        accounts::NewStaff {
            email: DEMO_OPS_EMAIL.into(),
            name: "Demo Ops".into(),
            role: accounts::Role::Ops,
            password: password.clone(),
        },
    )
    .await
    {
        Ok(_) => seeded.ops_password = Some(password),
        Err(AccountsError::DuplicateEmail) => {}
        Err(e) => return Err(seed_error("ops user", e)),
    }

    let partners = accounts::list_partners(&mut conn)
        .await
        .map_err(|e| seed_error("partner", e))?;
    if !partners.iter().any(|p| p.name == DEMO_PARTNER_NAME) {
        let partner = accounts::create_partner(&mut conn, clock, Actor::System, DEMO_PARTNER_NAME)
            .await
            .map_err(|e| seed_error("partner", e))?;
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
        seeded.partner_key = Some(key);
    }

    let versions = pricing::seed_demo_products(&mut conn)
        .await
        .map_err(|e| anyhow::anyhow!("seeding the demo products failed: {e}"))?;
    seeded.products_published = versions.len();

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
