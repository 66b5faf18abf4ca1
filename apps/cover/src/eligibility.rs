//! Whether a driver may start cover on a vehicle now: the rules, written once.
//!
//! The rules are three pure steps over facts read elsewhere, so that one request and a batch of
//! them are decided by the same code: [`enrolment_for`] (which enrolment cover runs under),
//! [`rate`] (the driver, the vehicle, the product's published version and the price now) and
//! [`funded`] (whether the driver can pay the minimum charge). [`check_eligibility`] reads the
//! facts for one driver and runs them (the API asks it before showing the "start cover"
//! button); the cover engine ([`crate::engine`]) reads them for a whole batch and runs the same
//! steps before every start. Nothing here writes.

use crate::enrolments::{Enrolment, EnrolmentStatus, accounts_error, list_enrolments};
use crate::error::CoverError;
use crate::funds::{Funding, FundsCheck};
use accounts::{AccountsError, Driver, DriverId, Vehicle, VehicleId};
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use pricing::{PricingError, ProductId, ProductVersion, Quote};
use shared::Clock;
use std::sync::Arc;

/// A driver may start cover: with what, and at what price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligible {
    /// The enrolment cover would run under (active, or pending with a way to pay).
    pub enrolment: Enrolment,
    /// The driver.
    pub driver: Driver,
    /// The vehicle.
    pub vehicle: Vehicle,
    /// The product's published version the price comes from.
    pub version: Arc<ProductVersion>,
    /// The price now, rated in memory and not stored here (a start without a quote stores it
    /// with its session).
    pub quote: Quote,
}

/// Of a driver's enrolments (newest first), the one cover would run under: for `product_id`, or
/// else the best one (active before pending before suspended, newest first); never a cancelled
/// one.
pub(crate) fn choose_enrolment(
    enrolments: &[Enrolment],
    product_id: Option<ProductId>,
) -> Option<&Enrolment> {
    let rank = |s: EnrolmentStatus| match s {
        EnrolmentStatus::Active => 0,
        EnrolmentStatus::Pending => 1,
        EnrolmentStatus::Suspended => 2,
        EnrolmentStatus::Cancelled => 3,
    };
    // Newest first already; `min_by_key` keeps the first of equal ranks.
    enrolments
        .iter()
        .filter(|e| e.status != EnrolmentStatus::Cancelled)
        .filter(|e| product_id.is_none_or(|p| e.product_id == p))
        .min_by_key(|e| rank(e.status))
}

/// Step one: the enrolment a start runs under. Errors: `NOT_ENROLLED` (no enrolment that is
/// not cancelled, for the product when one is named), `ENROLMENT_SUSPENDED`.
pub(crate) fn enrolment_for(
    enrolments: &[Enrolment],
    product_id: Option<ProductId>,
) -> Result<&Enrolment, CoverError> {
    let enrolment = choose_enrolment(enrolments, product_id).ok_or(CoverError::NotEnrolled)?;
    if enrolment.status == EnrolmentStatus::Suspended {
        return Err(CoverError::EnrolmentSuspended);
    }
    Ok(enrolment)
}

/// A start that passed every rule but the funds check.
#[derive(Debug, Clone)]
pub(crate) struct Rated {
    pub enrolment: Enrolment,
    pub driver: Driver,
    pub vehicle: Vehicle,
    pub version: Arc<ProductVersion>,
    pub quote: Quote,
}

/// Step two: the driver and vehicle exist and belong together, the product is on sale, and the
/// product rates this driver on this vehicle at `at`. Errors, in this order:
/// `DRIVER_NOT_FOUND`, `VEHICLE_NOT_FOUND` (unknown, removed or another driver's),
/// `PRODUCT_NOT_AVAILABLE`, `PROFILE_INCOMPLETE`, the decline codes (`VEHICLE_NOT_COVERED`,
/// `UNDER_MINIMUM_AGE`, …).
pub(crate) fn rate(
    enrolment: &Enrolment,
    person: Result<(Driver, Vehicle), AccountsError>,
    version: Result<Arc<ProductVersion>, PricingError>,
    at: DateTime<Utc>,
) -> Result<Rated, CoverError> {
    let (driver, vehicle) = person.map_err(|e| match e {
        AccountsError::NotFound("driverId") => CoverError::DriverNotFound,
        other => accounts_error(other, CoverError::VehicleNotFound),
    })?;
    let version = version?;
    let rating = pricing::rating_input_for(&driver, &vehicle, at)?;
    let quote = pricing::build_quote(&version, driver.id, vehicle.id, rating, at)?;
    Ok(Rated {
        enrolment: enrolment.clone(),
        driver,
        vehicle,
        version,
        quote,
    })
}

/// Step three: what the payments side says of the minimum charge at the rate now. Errors:
/// `NO_PAYMENT_METHOD`, `INSUFFICIENT_FUNDS`.
pub(crate) fn funded(rated: Rated, funding: Funding) -> Result<Eligible, CoverError> {
    match funding {
        Funding::Ok => Ok(Eligible {
            enrolment: rated.enrolment,
            driver: rated.driver,
            vehicle: rated.vehicle,
            version: rated.version,
            quote: rated.quote,
        }),
        Funding::NoPaymentMethod => Err(CoverError::NoPaymentMethod),
        Funding::InsufficientFunds { available } => Err(CoverError::InsufficientFunds {
            required: rated.quote.minimum_charge,
            available,
        }),
    }
}

/// Checks that a driver may start cover on a vehicle now, under the enrolment for `product_id`
/// (or the driver's best enrolment when `None`): the three steps above, in order
/// (`NOT_ENROLLED`, `ENROLMENT_SUSPENDED`, `DRIVER_NOT_FOUND`, `VEHICLE_NOT_FOUND`,
/// `PRODUCT_NOT_AVAILABLE`, `PROFILE_INCOMPLETE`, the decline codes, `NO_PAYMENT_METHOD`,
/// `INSUFFICIENT_FUNDS`). Reads the product's published version now.
pub async fn check_eligibility(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    vehicle_id: VehicleId,
    product_id: Option<ProductId>,
    funds: &dyn FundsCheck,
) -> Result<Eligible, CoverError> {
    let now = clock.now();
    let enrolments = list_enrolments(conn, driver_id).await?;
    let enrolment = enrolment_for(&enrolments, product_id)?;
    let person = accounts::get_driver_and_vehicle(conn, driver_id, vehicle_id).await;
    let version = match pricing::get_published(conn, enrolment.product_id).await {
        Err(PricingError::Database(e)) => return Err(e.into()),
        other => other.map(Arc::new),
    };
    let rated = rate(enrolment, person, version, now)?;
    let funding = funds
        .can_pay(conn, driver_id, rated.quote.minimum_charge)
        .await
        .map_err(CoverError::Internal)?;
    funded(rated, funding)
}
