//! Drivers' vehicles.
//!
//! Invariants: a motor vehicle has a registration (normalised: uppercase, no spaces) and a pedal
//! cycle has none — the database enforces both; a driver holds a registration at most once among
//! vehicles not removed (a unique partial index); removal is a soft delete so that past cover keeps
//! its vehicle. A driver only ever sees their own vehicles: another driver's answers `NOT_FOUND`,
//! exactly like one that does not exist.

use crate::error::AccountsError;
use crate::fields::Vrm;
use crate::ids::{DriverId, VehicleId};
use crate::principal::Actor;
use crate::schema::{drivers, vehicles};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::Clock;
use std::fmt;
use std::str::FromStr;

/// Longest make or model accepted, in characters.
pub const MAX_MAKE_MODEL_CHARS: usize = 50;

/// What a driver works with. Pricing has a base rate per type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleType {
    /// A pedal bicycle.
    Bicycle,
    /// An electrically assisted pedal cycle (EAPC): no registration.
    EBike,
    /// A scooter or moped (registered, including speed pedelecs).
    Scooter,
    /// A motorbike.
    Motorbike,
    /// A car.
    Car,
    /// A van.
    Van,
}

impl VehicleType {
    /// Every type, in the order the app lists them.
    pub const ALL: [VehicleType; 6] = [
        VehicleType::Bicycle,
        VehicleType::EBike,
        VehicleType::Scooter,
        VehicleType::Motorbike,
        VehicleType::Car,
        VehicleType::Van,
    ];

    /// The stored name: `bicycle`, `e_bike`, `scooter`, `motorbike`, `car`, `van`.
    pub fn as_str(self) -> &'static str {
        match self {
            VehicleType::Bicycle => "bicycle",
            VehicleType::EBike => "e_bike",
            VehicleType::Scooter => "scooter",
            VehicleType::Motorbike => "motorbike",
            VehicleType::Car => "car",
            VehicleType::Van => "van",
        }
    }

    /// Whether the type is a motor vehicle, which carries a registration.
    pub fn requires_registration(self) -> bool {
        !matches!(self, VehicleType::Bicycle | VehicleType::EBike)
    }
}

impl fmt::Display for VehicleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VehicleType {
    type Err = AccountsError;

    /// Parses the stored name. Errors: `INVALID_VEHICLE_TYPE`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VehicleType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(AccountsError::InvalidVehicleType)
    }
}

/// A vehicle of a driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vehicle {
    /// The vehicle.
    pub id: VehicleId,
    /// Its driver.
    pub driver_id: DriverId,
    /// Its registration; `None` for bicycles and e-bikes.
    pub registration: Option<Vrm>,
    /// Its type.
    pub vehicle_type: VehicleType,
    /// Make, as the driver typed it.
    pub make: Option<String>,
    /// Model, as the driver typed it.
    pub model: Option<String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When it was removed, if it was.
    pub removed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = vehicles)]
pub(crate) struct VehicleRow {
    id: VehicleId,
    driver_id: DriverId,
    registration: Option<String>,
    vehicle_type: String,
    make: Option<String>,
    model: Option<String>,
    created_at: DateTime<Utc>,
    removed_at: Option<DateTime<Utc>>,
}

impl TryFrom<VehicleRow> for Vehicle {
    type Error = AccountsError;

    fn try_from(r: VehicleRow) -> Result<Self, AccountsError> {
        // The CHECK constraint matches VehicleType; a mismatch is a bug, reported as internal.
        let vehicle_type = r.vehicle_type.parse().map_err(|_| {
            anyhow::anyhow!("vehicle {} has unknown type {:?}", r.id, r.vehicle_type)
        })?;
        Ok(Vehicle {
            id: r.id,
            driver_id: r.driver_id,
            registration: r.registration.map(Vrm::from_stored),
            vehicle_type,
            make: r.make,
            model: r.model,
            created_at: r.created_at,
            removed_at: r.removed_at,
        })
    }
}

fn rows_to_vehicles(rows: Vec<VehicleRow>) -> Result<Vec<Vehicle>, AccountsError> {
    rows.into_iter().map(Vehicle::try_from).collect()
}

/// A vehicle to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVehicle {
    /// Its type.
    pub vehicle_type: VehicleType,
    /// Registration as typed; required for motor vehicles, absent (or blank) for pedal cycles.
    pub registration: Option<String>,
    /// Make, optional, at most 50 characters.
    pub make: Option<String>,
    /// Model, optional, at most 50 characters.
    pub model: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = vehicles)]
#[diesel(treat_none_as_default_value = false)]
struct NewVehicleRow<'a> {
    id: VehicleId,
    driver_id: DriverId,
    registration: Option<&'a str>,
    vehicle_type: &'a str,
    make: Option<&'a str>,
    model: Option<&'a str>,
    created_at: DateTime<Utc>,
}

/// Blank means absent; otherwise trimmed and at most [`MAX_MAKE_MODEL_CHARS`].
fn optional_text(input: Option<&str>, err: AccountsError) -> Result<Option<String>, AccountsError> {
    match input.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > MAX_MAKE_MODEL_CHARS || t.chars().any(char::is_control) => {
            Err(err)
        }
        Some(t) => Ok(Some(t.to_owned())),
    }
}

/// Adds a vehicle to a driver.
///
/// Errors: `INVALID_REGISTRATION`, `REGISTRATION_REQUIRED`, `REGISTRATION_NOT_ALLOWED`,
/// `DUPLICATE_VEHICLE` (field `registration`); `INVALID_MAKE`, `INVALID_MODEL`; `NOT_FOUND`
/// (`driverId`) for a missing or deleted driver.
pub async fn add_vehicle(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    input: NewVehicle,
) -> Result<Vehicle, AccountsError> {
    let registration = match input.registration.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(r) => Some(Vrm::parse(r)?),
    };
    match (input.vehicle_type.requires_registration(), &registration) {
        (true, None) => return Err(AccountsError::RegistrationRequired),
        (false, Some(_)) => return Err(AccountsError::RegistrationNotAllowed),
        _ => {}
    }
    let make = optional_text(input.make.as_deref(), AccountsError::InvalidMake)?;
    let model = optional_text(input.model.as_deref(), AccountsError::InvalidModel)?;
    let now = clock.now();

    conn.transaction::<_, AccountsError, _>(async |conn| {
        // Share-lock the driver so a concurrent account deletion cannot slip in between.
        let live = drivers::table
            .filter(drivers::id.eq(driver_id))
            .filter(drivers::deleted_at.is_null())
            .select(drivers::id)
            .for_share()
            .first::<DriverId>(conn)
            .await
            .optional()?;
        if live.is_none() {
            return Err(AccountsError::NotFound("driverId"));
        }
        let row: VehicleRow = diesel::insert_into(vehicles::table)
            .values(NewVehicleRow {
                id: VehicleId::new(),
                driver_id,
                registration: registration.as_ref().map(Vrm::as_str),
                vehicle_type: input.vehicle_type.as_str(),
                make: make.as_deref(),
                model: model.as_deref(),
                created_at: now,
            })
            .returning(VehicleRow::as_returning())
            .get_result(conn)
            .await
            .map_err(|e| {
                if shared::error::is_unique_violation(
                    &e,
                    Some("vehicles_driver_registration_unique"),
                ) {
                    AccountsError::DuplicateVehicle
                } else {
                    e.into()
                }
            })?;
        let vehicle = Vehicle::try_from(row)?;
        shared::audit::record(
            conn,
            &Actor::Driver(driver_id).entry(
                "vehicle.added",
                "vehicle",
                vehicle.id.to_string(),
                serde_json::json!({ "vehicle_type": vehicle.vehicle_type.as_str() }),
            ),
        )
        .await?;
        Ok(vehicle)
    })
    .await
}

/// Removes (soft-deletes) one of the driver's vehicles and returns it.
///
/// Errors: `NOT_FOUND` (`vehicleId`) for a vehicle that does not exist, is already removed, or
/// belongs to another driver.
pub async fn remove_vehicle(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    vehicle_id: VehicleId,
) -> Result<Vehicle, AccountsError> {
    let now = clock.now();
    conn.transaction::<_, AccountsError, _>(async |conn| {
        // One guarded update: ownership and liveness are checked where the write happens.
        let row: VehicleRow = diesel::update(vehicles::table)
            .filter(vehicles::id.eq(vehicle_id))
            .filter(vehicles::driver_id.eq(driver_id))
            .filter(vehicles::removed_at.is_null())
            .set(vehicles::removed_at.eq(now))
            .returning(VehicleRow::as_returning())
            .get_result(conn)
            .await
            .optional()?
            .ok_or(AccountsError::NotFound("vehicleId"))?;
        shared::audit::record(
            conn,
            &Actor::Driver(driver_id).entry(
                "vehicle.removed",
                "vehicle",
                vehicle_id.to_string(),
                serde_json::json!({}),
            ),
        )
        .await?;
        Vehicle::try_from(row)
    })
    .await
}

/// The driver's vehicles not removed, oldest first.
pub async fn list_vehicles(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Vec<Vehicle>, AccountsError> {
    rows_to_vehicles(
        vehicles::table
            .filter(vehicles::driver_id.eq(driver_id))
            .filter(vehicles::removed_at.is_null())
            .order((vehicles::created_at.asc(), vehicles::id.asc()))
            .select(VehicleRow::as_select())
            .load(conn)
            .await?,
    )
}

/// The vehicles not removed of several drivers at once (for DataLoaders), oldest first for each
/// driver; a driver without vehicles has no entry.
pub async fn list_vehicles_of_drivers(
    conn: &mut AsyncPgConnection,
    driver_ids: &[DriverId],
) -> Result<std::collections::HashMap<DriverId, Vec<Vehicle>>, AccountsError> {
    let vehicles = rows_to_vehicles(
        vehicles::table
            .filter(vehicles::driver_id.eq_any(driver_ids))
            .filter(vehicles::removed_at.is_null())
            .order((
                vehicles::driver_id.asc(),
                vehicles::created_at.asc(),
                vehicles::id.asc(),
            ))
            .select(VehicleRow::as_select())
            .load(conn)
            .await?,
    )?;
    let mut out: std::collections::HashMap<DriverId, Vec<Vehicle>> =
        std::collections::HashMap::new();
    for v in vehicles {
        out.entry(v.driver_id).or_default().push(v);
    }
    Ok(out)
}

/// One of the driver's vehicles not removed.
///
/// Errors: `NOT_FOUND` (`vehicleId`), also when it is another driver's.
pub async fn get_vehicle_for_driver(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    vehicle_id: VehicleId,
) -> Result<Vehicle, AccountsError> {
    let row = vehicles::table
        .filter(vehicles::id.eq(vehicle_id))
        .filter(vehicles::driver_id.eq(driver_id))
        .filter(vehicles::removed_at.is_null())
        .select(VehicleRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(AccountsError::NotFound("vehicleId"))?;
    Vehicle::try_from(row)
}

/// A driver and one of their vehicles not removed, in one read (what quoting and starting cover
/// need, on their hot path).
///
/// Errors: `NOT_FOUND` (`driverId`) for an unknown or deleted driver, then `NOT_FOUND`
/// (`vehicleId`) for a vehicle that is unknown, removed or another driver's — as
/// [`get_driver`](crate::get_driver) followed by [`get_vehicle_for_driver`] would answer.
pub async fn get_driver_and_vehicle(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    vehicle_id: VehicleId,
) -> Result<(crate::Driver, Vehicle), AccountsError> {
    let (driver, vehicle): (crate::drivers::DriverRow, Option<VehicleRow>) = drivers::table
        .left_join(
            vehicles::table.on(vehicles::driver_id
                .eq(drivers::id)
                .and(vehicles::id.eq(vehicle_id))
                .and(vehicles::removed_at.is_null())),
        )
        .filter(drivers::id.eq(driver_id))
        .filter(drivers::deleted_at.is_null())
        .select((
            crate::drivers::DriverRow::as_select(),
            Option::<VehicleRow>::as_select(),
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or(AccountsError::NotFound("driverId"))?;
    let vehicle = vehicle.ok_or(AccountsError::NotFound("vehicleId"))?;
    Ok((crate::Driver::from(driver), Vehicle::try_from(vehicle)?))
}

/// [`get_driver_and_vehicle`] for a request: read in one statement with the other requests
/// reading a driver and vehicle at that moment ([`shared::batch`]), on a pooled connection.
///
/// Errors: those of [`get_driver_and_vehicle`]; `Internal` when the database cannot be reached.
pub async fn get_driver_and_vehicle_batched(
    core: &shared::core::Core,
    driver_id: DriverId,
    vehicle_id: VehicleId,
) -> Result<(crate::Driver, Vehicle), AccountsError> {
    core.batcher::<DriversWithVehicles>()
        .call((driver_id, vehicle_id))
        .await
        .map_err(|e| match e {
            shared::batch::BatchError::Query(e) => AccountsError::Database(e),
            other => AccountsError::Internal(other.into()),
        })?
}

/// Drivers with one of their vehicles each, for many pairs in one statement: the batched read of
/// [`get_driver_and_vehicle_batched`], answering each pair as [`get_driver_and_vehicle`] would.
#[derive(Debug, Default)]
pub struct DriversWithVehicles;

impl shared::batch::BatchQuery for DriversWithVehicles {
    type Input = (DriverId, VehicleId);
    type Output = Result<(crate::Driver, Vehicle), AccountsError>;
    const NAME: &'static str = "drivers with vehicles";

    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        pairs: &'a [(DriverId, VehicleId)],
    ) -> shared::batch::BatchFuture<'a, Self::Output> {
        Box::pin(async move {
            let driver_ids: Vec<DriverId> = pairs.iter().map(|(d, _)| *d).collect();
            let vehicle_ids: Vec<VehicleId> = pairs.iter().map(|(_, v)| *v).collect();
            // Each driver asked for, with each of its vehicles asked for by anyone (a vehicle asked
            // for with another driver is matched to its owner here and refused below).
            let rows: Vec<(crate::drivers::DriverRow, Option<VehicleRow>)> = drivers::table
                .left_join(
                    vehicles::table.on(vehicles::driver_id
                        .eq(drivers::id)
                        .and(vehicles::id.eq_any(&vehicle_ids))
                        .and(vehicles::removed_at.is_null())),
                )
                .filter(drivers::id.eq_any(&driver_ids))
                .filter(drivers::deleted_at.is_null())
                .select((
                    crate::drivers::DriverRow::as_select(),
                    Option::<VehicleRow>::as_select(),
                ))
                .load(conn)
                .await?;
            Ok(pairs
                .iter()
                .map(|&(driver_id, vehicle_id)| {
                    let mut of_driver = rows.iter().filter(|(d, _)| d.id == driver_id).peekable();
                    let driver = of_driver
                        .peek()
                        .map(|(d, _)| d.clone())
                        .ok_or(AccountsError::NotFound("driverId"))?;
                    let vehicle = of_driver
                        .find_map(|(_, v)| v.as_ref().filter(|v| v.id == vehicle_id))
                        .cloned()
                        .ok_or(AccountsError::NotFound("vehicleId"))?;
                    Ok((crate::Driver::from(driver), Vehicle::try_from(vehicle)?))
                })
                .collect())
        })
    }
}

/// Vehicles by id, removed ones included (past cover sessions name the vehicle they covered), for
/// DataLoaders and other apps. The caller checks that the viewer may see each one.
pub async fn get_vehicles(
    conn: &mut AsyncPgConnection,
    vehicle_ids: &[VehicleId],
) -> Result<Vec<Vehicle>, AccountsError> {
    rows_to_vehicles(
        vehicles::table
            .filter(vehicles::id.eq_any(vehicle_ids))
            .select(VehicleRow::as_select())
            .load(conn)
            .await?,
    )
}

/// Every vehicle of a driver, removed ones included, oldest first (data export).
pub(crate) async fn all_vehicles_of(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Vec<Vehicle>, AccountsError> {
    rows_to_vehicles(
        vehicles::table
            .filter(vehicles::driver_id.eq(driver_id))
            .order((vehicles::created_at.asc(), vehicles::id.asc()))
            .select(VehicleRow::as_select())
            .load(conn)
            .await?,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn vehicle_types_round_trip_and_know_which_need_a_registration() {
        for t in VehicleType::ALL {
            assert_eq!(t.as_str().parse::<VehicleType>().ok(), Some(t));
            assert_eq!(
                serde_json::to_value(t).ok(),
                Some(serde_json::json!(t.as_str()))
            );
        }
        let names: Vec<&str> = VehicleType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            ["bicycle", "e_bike", "scooter", "motorbike", "car", "van"]
        );
        assert!(!VehicleType::Bicycle.requires_registration());
        assert!(!VehicleType::EBike.requires_registration());
        assert!(VehicleType::Scooter.requires_registration());
        assert!(VehicleType::Van.requires_registration());
        let err = "lorry".parse::<VehicleType>().unwrap_err();
        assert_eq!(err.user_error().unwrap().code, "INVALID_VEHICLE_TYPE");
    }

    #[test]
    fn make_and_model_are_optional_trimmed_and_bounded() {
        assert_eq!(
            optional_text(Some("  Honda "), AccountsError::InvalidMake).unwrap(),
            Some("Honda".to_owned())
        );
        assert_eq!(
            optional_text(Some("   "), AccountsError::InvalidMake).unwrap(),
            None
        );
        assert_eq!(
            optional_text(None, AccountsError::InvalidMake).unwrap(),
            None
        );
        assert!(matches!(
            optional_text(Some(&"x".repeat(51)), AccountsError::InvalidModel),
            Err(AccountsError::InvalidModel)
        ));
    }
}
