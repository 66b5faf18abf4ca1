//! Data-subject rights for drivers: access (export) and erasure (pseudonymisation).
//!
//! Erasure keeps the driver row — cover sessions, charges, the ledger and claims point at it and
//! insurers must keep those records — but empties every personal field, replaces the phone with a
//! tombstone `deleted:drv_…` (unique, and never a valid phone, so the number can sign up again as
//! a new driver), deletes the phone's login codes, revokes every session and sets `deleted_at`.
//! Texts and emails recorded for the driver (or sent to their phone or email before they had an
//! account) lose their recipient and content, and those not yet sent are never sent
//! (`notifications::erase_recipient`, in the same transaction).
//! From then on the driver cannot authenticate and accounts functions answer `NOT_FOUND` for them.
//!
//! Vehicles are marked removed but keep their registration: it ties past cover and claims to a
//! vehicle, which the insurer's record-keeping duty requires. Whether to clear it after the
//! retention period is a data-protection decision to be made with the underwriter.

use crate::error::AccountsError;
use crate::ids::DriverId;
use crate::principal::Actor;
use crate::schema::{drivers, login_codes, vehicles};
use crate::sessions::{list_driver_sessions, revoke_all_driver_sessions};
use crate::vehicles::all_vehicles_of;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::Clock;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = login_codes)]
struct LoginCodeExport {
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    attempts: i32,
    used_at: Option<DateTime<Utc>>,
}

/// Everything accounts holds about a driver, as JSON: profile, vehicles (removed ones too),
/// sessions and login-code requests (times and counts, never tokens or hashes).
///
/// Errors: `NOT_FOUND` (`driverId`), also for deleted drivers.
pub async fn export_driver_data(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<serde_json::Value, AccountsError> {
    let driver = crate::drivers::get_driver(conn, driver_id).await?;
    let vehicles = all_vehicles_of(conn, driver_id).await?;
    let sessions = list_driver_sessions(conn, driver_id).await?;
    let codes: Vec<LoginCodeExport> = login_codes::table
        .filter(login_codes::phone.eq(driver.phone.as_str()))
        .order(login_codes::created_at.asc())
        .select(LoginCodeExport::as_select())
        .load(conn)
        .await?;
    Ok(serde_json::json!({
        "driver": driver,
        "vehicles": vehicles,
        "sessions": sessions,
        "login_codes": codes,
    }))
}

/// What an account deletion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedAccount {
    /// The driver, now pseudonymised.
    pub driver_id: DriverId,
    /// Live sessions ended.
    pub sessions_revoked: usize,
    /// Vehicles marked removed.
    pub vehicles_removed: usize,
}

#[derive(AsChangeset)]
#[diesel(table_name = drivers, treat_none_as_null = true)]
struct Pseudonymise {
    phone: String,
    name: Option<String>,
    date_of_birth: Option<NaiveDate>,
    email: Option<String>,
    licence_number: Option<String>,
    licence_issued_on: Option<NaiveDate>,
    postcode: Option<String>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
}

/// The phone a deleted driver's row holds instead of theirs.
pub fn phone_tombstone(driver_id: DriverId) -> String {
    format!("deleted:{driver_id}")
}

/// Deletes a driver's account (see the module docs for what that means). `actor` is the driver,
/// or the staff user acting on their request.
///
/// Errors: `NOT_FOUND` (`driverId`), also when already deleted.
pub async fn delete_driver_account(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    driver_id: DriverId,
) -> Result<DeletedAccount, AccountsError> {
    let now = clock.now();
    conn.transaction::<_, AccountsError, _>(async |conn| {
        // Lock the row: a concurrent sign-in or vehicle add waits, then sees it deleted.
        let (phone, email): (String, Option<String>) = drivers::table
            .filter(drivers::id.eq(driver_id))
            .filter(drivers::deleted_at.is_null())
            .select((drivers::phone, drivers::email))
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or(AccountsError::NotFound("driverId"))?;
        diesel::update(drivers::table.find(driver_id))
            .set(Pseudonymise {
                phone: phone_tombstone(driver_id),
                name: None,
                date_of_birth: None,
                email: None,
                licence_number: None,
                licence_issued_on: None,
                postcode: None,
                updated_at: now,
                deleted_at: Some(now),
            })
            .execute(conn)
            .await?;
        // Login codes are keyed by the phone itself: personal data with no further use.
        diesel::delete(login_codes::table.filter(login_codes::phone.eq(&phone)))
            .execute(conn)
            .await?;
        let mut addresses = vec![phone.as_str()];
        addresses.extend(email.as_deref());
        let notifications_erased =
            notifications::erase_recipient(conn, Some(driver_id.uuid()), &addresses)
                .await
                .map_err(|e| AccountsError::Internal(e.into()))?;
        let sessions_revoked = revoke_all_driver_sessions(conn, driver_id, now).await?;
        let vehicles_removed = diesel::update(vehicles::table)
            .filter(vehicles::driver_id.eq(driver_id))
            .filter(vehicles::removed_at.is_null())
            .set(vehicles::removed_at.eq(now))
            .execute(conn)
            .await?;
        shared::audit::record(
            conn,
            &actor.entry(
                "driver.deleted",
                "driver",
                driver_id.to_string(),
                serde_json::json!({
                    "sessions_revoked": sessions_revoked,
                    "vehicles_removed": vehicles_removed,
                    "notifications_erased": notifications_erased,
                }),
            ),
        )
        .await?;
        Ok(DeletedAccount {
            driver_id,
            sessions_revoked,
            vehicles_removed,
        })
    })
    .await
}
