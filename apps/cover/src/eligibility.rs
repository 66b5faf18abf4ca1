//! Whether a driver may start cover on a vehicle now: one function, one answer.
//!
//! The API asks it before showing the "start cover" button, partners ask it before sending
//! drivers out, and [`crate::start_session`] asks it before every start. Nothing is written.

use crate::enrolments::{Enrolment, EnrolmentStatus, accounts_error, list_enrolments};
use crate::error::CoverError;
use crate::funds::{Funding, FundsCheck};
use accounts::{AccountsError, Driver, DriverId, Vehicle, VehicleId};
use diesel_async::AsyncPgConnection;
use pricing::{ProductId, ProductVersion, Quote};
use shared::Clock;

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
    pub version: ProductVersion,
    /// The price now, rated in memory and not stored here (a start without a quote stores it
    /// with its session).
    pub quote: Quote,
}

/// Picks the enrolment: the one for `product_id`, or else the driver's best one (active before
/// pending before suspended, newest first).
async fn pick_enrolment(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    product_id: Option<ProductId>,
) -> Result<Enrolment, CoverError> {
    choose_enrolment(list_enrolments(conn, driver_id).await?, product_id)
        .ok_or(CoverError::NotEnrolled)
}

/// Of a driver's enrolments (newest first), the one cover would run under: for `product_id`, or
/// else the best one (active before pending before suspended, newest first); never a cancelled
/// one.
pub(crate) fn choose_enrolment(
    enrolments: Vec<Enrolment>,
    product_id: Option<ProductId>,
) -> Option<Enrolment> {
    let rank = |s: EnrolmentStatus| match s {
        EnrolmentStatus::Active => 0,
        EnrolmentStatus::Pending => 1,
        EnrolmentStatus::Suspended => 2,
        EnrolmentStatus::Cancelled => 3,
    };
    // Newest first already; a stable sort by rank keeps that order within a rank.
    let mut open: Vec<Enrolment> = enrolments
        .into_iter()
        .filter(|e| e.status != EnrolmentStatus::Cancelled)
        .filter(|e| product_id.is_none_or(|p| e.product_id == p))
        .collect();
    open.sort_by_key(|e| rank(e.status));
    open.into_iter().next()
}

/// Checks that a driver may start cover on a vehicle now, under the enrolment for `product_id`
/// (or the driver's active enrolment when `None`).
///
/// In order: `NOT_ENROLLED` (no enrolment that is not cancelled), `ENROLMENT_SUSPENDED`,
/// `DRIVER_NOT_FOUND`, `VEHICLE_NOT_FOUND` (unknown, removed or another driver's),
/// `PRODUCT_NOT_AVAILABLE` (no published version), `PROFILE_INCOMPLETE`, the decline codes
/// (`VEHICLE_NOT_COVERED`, `UNDER_MINIMUM_AGE`, …), then what `funds` says about the minimum
/// charge at the rate now: `NO_PAYMENT_METHOD` or `INSUFFICIENT_FUNDS`.
pub async fn check_eligibility(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    vehicle_id: VehicleId,
    product_id: Option<ProductId>,
    funds: &dyn FundsCheck,
) -> Result<Eligible, CoverError> {
    eligibility(
        conn,
        clock,
        driver_id,
        vehicle_id,
        product_id,
        funds,
        VersionSource::Read,
    )
    .await
}

/// Where [`eligibility`] takes the product's published version from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionSource {
    /// Read now: the answer is exact.
    Read,
    /// The version this process remembers ([`pricing::published_version`]), saving a read: for a
    /// caller that stores the price it gets with [`pricing::store_quote`], whose insert the
    /// database refuses if that version is no longer the published one.
    Remembered,
}

/// [`check_eligibility`], with the published version from `versions`.
pub(crate) async fn eligibility(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    vehicle_id: VehicleId,
    product_id: Option<ProductId>,
    funds: &dyn FundsCheck,
    versions: VersionSource,
) -> Result<Eligible, CoverError> {
    let now = clock.now();
    let enrolment = pick_enrolment(conn, driver_id, product_id).await?;
    if enrolment.status == EnrolmentStatus::Suspended {
        return Err(CoverError::EnrolmentSuspended);
    }
    let (driver, vehicle) = accounts::get_driver_and_vehicle(conn, driver_id, vehicle_id)
        .await
        .map_err(|e| match e {
            AccountsError::NotFound("driverId") => CoverError::DriverNotFound,
            other => accounts_error(other, CoverError::VehicleNotFound),
        })?;
    let version = match versions {
        VersionSource::Read => pricing::get_published(conn, enrolment.product_id).await?,
        VersionSource::Remembered => {
            ProductVersion::clone(&*pricing::published_version(conn, enrolment.product_id).await?)
        }
    };
    let rating = pricing::rating_input_for(&driver, &vehicle, now)?;
    let quote = pricing::build_quote(&version, driver_id, vehicle_id, rating, now)?;
    match funds
        .can_pay(conn, driver_id, quote.minimum_charge)
        .await
        .map_err(CoverError::Internal)?
    {
        Funding::Ok => {}
        Funding::NoPaymentMethod => return Err(CoverError::NoPaymentMethod),
        Funding::InsufficientFunds { available } => {
            return Err(CoverError::InsufficientFunds {
                required: quote.minimum_charge,
                available,
            });
        }
    }
    Ok(Eligible {
        enrolment,
        driver,
        vehicle,
        version,
        quote,
    })
}
