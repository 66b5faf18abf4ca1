//! Driver profiles.
//!
//! Invariants: a stored profile field is always in its normalised form (see [`crate::fields`]);
//! a driver is at least 16 and at most 100 years old on the day the date of birth is set; a
//! licence was not issued in the future nor before the driver's 16th birthday, and its number
//! encodes the driver's date of birth when both are known. Deleted drivers are invisible here:
//! every function answers `NOT_FOUND` for them.

use crate::error::AccountsError;
use crate::fields::{
    Email, LicenceNumber, Phone, Postcode, age_on, check_date_of_birth, parse_name,
};
use crate::ids::DriverId;
use crate::principal::Actor;
use crate::schema::drivers;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::Clock;

/// A driver's profile. Fields other than the phone are empty until the driver fills them in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Driver {
    /// The driver.
    pub id: DriverId,
    /// Their login, E.164.
    pub phone: Phone,
    /// Full name as on the licence.
    pub name: Option<String>,
    /// Date of birth.
    pub date_of_birth: Option<NaiveDate>,
    /// Email, lowercased.
    pub email: Option<Email>,
    /// UK driving licence number.
    pub licence_number: Option<LicenceNumber>,
    /// When the licence was first issued.
    pub licence_issued_on: Option<NaiveDate>,
    /// Home postcode, canonical form.
    pub postcode: Option<Postcode>,
    /// When the driver first signed in.
    pub created_at: DateTime<Utc>,
    /// When the profile last changed.
    pub updated_at: DateTime<Utc>,
}

impl Driver {
    /// The postcode area (`SW`) pricing rates by, once a postcode is set.
    pub fn postcode_area(&self) -> Option<&str> {
        self.postcode.as_ref().map(Postcode::area)
    }

    /// Age in whole years on `on`, once a date of birth is set.
    pub fn age_on(&self, on: NaiveDate) -> Option<i32> {
        self.date_of_birth.map(|dob| age_on(dob, on))
    }

    /// Whole years since the licence was issued, on `on`, once known.
    pub fn years_licensed_on(&self, on: NaiveDate) -> Option<i32> {
        self.licence_issued_on.map(|issued| age_on(issued, on))
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = drivers)]
pub(crate) struct DriverRow {
    pub id: DriverId,
    pub phone: String,
    pub name: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub email: Option<String>,
    pub licence_number: Option<String>,
    pub licence_issued_on: Option<NaiveDate>,
    pub postcode: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DriverRow> for Driver {
    fn from(r: DriverRow) -> Self {
        // The table's CHECK constraints hold these to the shapes the parsers produce.
        Driver {
            id: r.id,
            phone: Phone::from_stored(r.phone),
            name: r.name,
            date_of_birth: r.date_of_birth,
            email: r.email.map(Email::from_stored),
            licence_number: r.licence_number.map(LicenceNumber::from_stored),
            licence_issued_on: r.licence_issued_on,
            postcode: r.postcode.map(Postcode::from_stored),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A driver by id. Errors: `NOT_FOUND` (field `driverId`), also for deleted drivers.
pub async fn get_driver(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Driver, AccountsError> {
    drivers::table
        .filter(drivers::id.eq(driver_id))
        .filter(drivers::deleted_at.is_null())
        .select(DriverRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(Driver::from)
        .ok_or(AccountsError::NotFound("driverId"))
}

/// Several drivers at once (for DataLoaders); missing and deleted ones are left out.
pub async fn get_drivers(
    conn: &mut AsyncPgConnection,
    driver_ids: &[DriverId],
) -> Result<Vec<Driver>, AccountsError> {
    Ok(drivers::table
        .filter(drivers::id.eq_any(driver_ids))
        .filter(drivers::deleted_at.is_null())
        .select(DriverRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(Driver::from)
        .collect())
}

/// The live driver with this phone, if any (ops search, partner linking).
pub async fn find_driver_by_phone(
    conn: &mut AsyncPgConnection,
    phone: &Phone,
) -> Result<Option<Driver>, AccountsError> {
    Ok(drivers::table
        .filter(drivers::phone.eq(phone.as_str()))
        .filter(drivers::deleted_at.is_null())
        .select(DriverRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(Driver::from))
}

/// Changes to a profile. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// Full name, 1 to 100 characters.
    pub name: Option<String>,
    /// Date of birth: age 16 to 100 today.
    pub date_of_birth: Option<NaiveDate>,
    /// Email address.
    pub email: Option<String>,
    /// UK driving licence number (16 characters).
    pub licence_number: Option<String>,
    /// When the licence was first issued: not in the future, not before the 16th birthday.
    pub licence_issued_on: Option<NaiveDate>,
    /// UK postcode.
    pub postcode: Option<String>,
}

impl ProfileUpdate {
    fn is_empty(&self) -> bool {
        self == &ProfileUpdate::default()
    }
}

#[derive(AsChangeset, Default)]
#[diesel(table_name = drivers)]
struct ProfileChanges {
    name: Option<String>,
    date_of_birth: Option<NaiveDate>,
    email: Option<String>,
    licence_number: Option<String>,
    licence_issued_on: Option<NaiveDate>,
    postcode: Option<String>,
    updated_at: Option<DateTime<Utc>>,
}

/// Updates a driver's profile and returns it. `actor` is the driver themself, or the staff user
/// correcting it.
///
/// Every given field is checked before anything is written; the first failure is returned.
/// Errors: `INVALID_NAME` (`name`), `INVALID_DATE_OF_BIRTH` / `TOO_YOUNG` (`dateOfBirth`),
/// `INVALID_EMAIL` (`email`), `INVALID_LICENCE_NUMBER` (`licenceNumber`, also when it contradicts
/// the date of birth), `INVALID_LICENCE_DATE` (`licenceIssuedOn`), `INVALID_POSTCODE`
/// (`postcode`), `NOT_FOUND` (`driverId`).
pub async fn update_profile(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    driver_id: DriverId,
    update: ProfileUpdate,
) -> Result<Driver, AccountsError> {
    let now = clock.now();
    // Dates are judged on the UTC calendar day; at most an hour off the UK day, in summer.
    let today = now.date_naive();
    let name = update.name.as_deref().map(parse_name).transpose()?;
    let date_of_birth = update
        .date_of_birth
        .map(|d| check_date_of_birth(d, today))
        .transpose()?;
    let email = update.email.as_deref().map(Email::parse).transpose()?;
    let licence_number = update
        .licence_number
        .as_deref()
        .map(LicenceNumber::parse)
        .transpose()?;
    if let Some(issued) = update.licence_issued_on
        && issued > today
    {
        return Err(AccountsError::InvalidLicenceDate("cannot be in the future"));
    }
    let postcode = update
        .postcode
        .as_deref()
        .map(Postcode::parse)
        .transpose()?;

    if update.is_empty() {
        return get_driver(conn, driver_id).await;
    }

    conn.transaction::<_, AccountsError, _>(async |conn| {
        let current: Driver = drivers::table
            .filter(drivers::id.eq(driver_id))
            .filter(drivers::deleted_at.is_null())
            .select(DriverRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .map(Driver::from)
            .ok_or(AccountsError::NotFound("driverId"))?;

        // Cross-field rules apply to the profile as it will be after the update.
        let dob = date_of_birth.or(current.date_of_birth);
        let issued = update.licence_issued_on.or(current.licence_issued_on);
        let number = licence_number.as_ref().or(current.licence_number.as_ref());
        if let (Some(dob), Some(issued)) = (dob, issued)
            && age_on(dob, issued) < crate::fields::MIN_DRIVER_AGE
        {
            return Err(AccountsError::InvalidLicenceDate(
                "cannot be before your 16th birthday",
            ));
        }
        if let (Some(dob), Some(number)) = (dob, number)
            && !number.matches_date_of_birth(dob)
        {
            return Err(AccountsError::InvalidLicenceNumber(
                "it does not match your date of birth",
            ));
        }

        let mut changed: Vec<&str> = Vec::new();
        let mut mark = |field: &'static str, given: bool| {
            if given {
                changed.push(field);
            }
        };
        mark("name", name.is_some());
        mark("date_of_birth", date_of_birth.is_some());
        mark("email", email.is_some());
        mark("licence_number", licence_number.is_some());
        mark("licence_issued_on", update.licence_issued_on.is_some());
        mark("postcode", postcode.is_some());

        let row: DriverRow = diesel::update(drivers::table.find(driver_id))
            .set(ProfileChanges {
                name,
                date_of_birth,
                email: email.map(|e| e.as_str().to_owned()),
                licence_number: licence_number.map(|l| l.as_str().to_owned()),
                licence_issued_on: update.licence_issued_on,
                postcode: postcode.map(|p| p.as_str().to_owned()),
                updated_at: Some(now),
            })
            .returning(DriverRow::as_returning())
            .get_result(conn)
            .await?;
        // Which fields changed, not their values: the audit log is no second copy of
        // personal data (it cannot be erased on deletion).
        shared::audit::record(
            conn,
            &actor.entry(
                "driver.profile_updated",
                "driver",
                driver_id.to_string(),
                serde_json::json!({ "fields": changed }),
            ),
        )
        .await?;
        Ok(Driver::from(row))
    })
    .await
}

/// The live driver with this phone, created when there is none, and whether it was created.
///
/// Drivers normally come into being at their first SMS sign-in; this is for demo data and support
/// tooling, which have no code to verify. A creation is audited with `actor`.
pub async fn find_or_create_driver_by_phone(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    actor: Actor,
    phone: &Phone,
) -> Result<(Driver, bool), AccountsError> {
    let now = clock.now();
    conn.transaction::<_, AccountsError, _>(async |conn| {
        let (driver_id, created) = crate::login::find_or_create_driver(conn, phone, now).await?;
        if created {
            shared::audit::record(
                conn,
                &actor.entry(
                    "driver.created",
                    "driver",
                    driver_id.to_string(),
                    serde_json::json!({}),
                ),
            )
            .await?;
        }
        Ok((get_driver(conn, driver_id).await?, created))
    })
    .await
}
