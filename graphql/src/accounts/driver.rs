//! A signed-in driver's own account: sessions, profile, vehicles, data export and deletion.
//! Every mutation here acts only on the driver of the request's session.

use super::{
    Date, Driver, Vehicle, VehicleType, conn, core, not_found, parse_input_id, user_errors,
};
use crate::errors::{UserError, internal};
use crate::guard;
use crate::relay::to_global_id;
use accounts::{Actor, NewVehicle, ProfileUpdate, VehicleId};
use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};

/// Result of `signOut`.
#[derive(SimpleObject, Default)]
pub struct SignOutPayload {
    /// True when a live session was ended (false when it had already ended).
    pub signed_out: bool,
    /// Nothing the user can fix; always empty.
    pub user_errors: Vec<UserError>,
}

/// Result of `signOutEverywhere`.
#[derive(SimpleObject, Default)]
pub struct SignOutEverywherePayload {
    /// How many live sessions were ended, this one included.
    pub sessions_ended: i32,
    /// Nothing the user can fix; always empty.
    pub user_errors: Vec<UserError>,
}

/// Input of `updateProfile`. Omitted fields are left as they are.
#[derive(InputObject, Default)]
pub struct UpdateProfileInput {
    /// Full name as on the licence, 1 to 100 characters.
    pub name: Option<String>,
    /// Date of birth: 16 to 100 years ago.
    pub date_of_birth: Option<Date>,
    /// Email address.
    pub email: Option<String>,
    /// UK driving licence number (16 characters).
    pub licence_number: Option<String>,
    /// When the licence was first issued.
    pub licence_issued_on: Option<Date>,
    /// UK postcode.
    pub postcode: Option<String>,
}

/// Result of `updateProfile`.
#[derive(SimpleObject, Default)]
pub struct UpdateProfilePayload {
    /// The profile as it now is.
    pub driver: Option<Driver>,
    /// `INVALID_NAME`, `INVALID_DATE_OF_BIRTH`, `TOO_YOUNG`, `INVALID_EMAIL`,
    /// `INVALID_LICENCE_NUMBER`, `INVALID_LICENCE_DATE`, `INVALID_POSTCODE`, each with its field.
    pub user_errors: Vec<UserError>,
}

/// Input of `addVehicle`.
#[derive(InputObject)]
pub struct AddVehicleInput {
    /// Its type.
    pub vehicle_type: VehicleType,
    /// The registration on the number plate; required for motor vehicles, omitted for bicycles
    /// and e-bikes.
    pub registration: Option<String>,
    /// Make, at most 50 characters.
    pub make: Option<String>,
    /// Model, at most 50 characters.
    pub model: Option<String>,
}

/// Result of `addVehicle`.
#[derive(SimpleObject, Default)]
pub struct AddVehiclePayload {
    /// The vehicle added.
    pub vehicle: Option<Vehicle>,
    /// `INVALID_REGISTRATION`, `REGISTRATION_REQUIRED`, `REGISTRATION_NOT_ALLOWED`,
    /// `DUPLICATE_VEHICLE` (`registration`); `INVALID_MAKE`, `INVALID_MODEL`.
    pub user_errors: Vec<UserError>,
}

/// Input of `removeVehicle`.
#[derive(InputObject)]
pub struct RemoveVehicleInput {
    /// The vehicle's global id.
    pub vehicle_id: ID,
}

/// Result of `removeVehicle`.
#[derive(SimpleObject, Default)]
pub struct RemoveVehiclePayload {
    /// The vehicle, now removed.
    pub vehicle: Option<Vehicle>,
    /// `NOT_FOUND` (`vehicleId`): no such vehicle among the driver's own.
    pub user_errors: Vec<UserError>,
}

/// Result of `exportMyData`.
#[derive(SimpleObject, Default)]
pub struct ExportMyDataPayload {
    /// Everything ShiftCover's accounts hold about the driver: profile, vehicles (removed ones
    /// too), sessions and sign-in code requests (never tokens or codes).
    pub data: Option<Json<serde_json::Value>>,
    /// Nothing the user can fix; always empty.
    pub user_errors: Vec<UserError>,
}

/// Input of `deleteAccount`.
#[derive(InputObject)]
pub struct DeleteAccountInput {
    /// Must be true: the driver has confirmed that they want their account deleted.
    pub confirm: bool,
}

/// Result of `deleteAccount`.
#[derive(SimpleObject, Default)]
pub struct DeleteAccountPayload {
    /// The deleted driver's global id.
    pub deleted_driver_id: Option<ID>,
    /// `CONFIRMATION_REQUIRED` (`confirm`).
    pub user_errors: Vec<UserError>,
}

/// A driver's own-account mutations.
#[derive(Default)]
pub struct DriverMutation;

#[Object]
impl DriverMutation {
    /// Ends this session (the app's "sign out").
    async fn sign_out(&self, ctx: &Context<'_>) -> async_graphql::Result<SignOutPayload> {
        let me = guard::require_driver(ctx)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let signed_out = accounts::sign_out(&mut conn, core.clock.as_ref(), me.session_id)
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(SignOutPayload {
            signed_out,
            user_errors: vec![],
        })
    }

    /// Ends every session of the driver, on every device (a lost phone).
    async fn sign_out_everywhere(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<SignOutEverywherePayload> {
        let me = guard::require_driver(ctx)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let ended = accounts::sign_out_everywhere(&mut conn, core.clock.as_ref(), me.driver_id)
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(SignOutEverywherePayload {
            sessions_ended: i32::try_from(ended).unwrap_or(i32::MAX),
            user_errors: vec![],
        })
    }

    /// Changes the driver's profile. Every given field is checked before anything is written.
    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        input: UpdateProfileInput,
    ) -> async_graphql::Result<UpdateProfilePayload> {
        let me = guard::require_driver(ctx)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let update = ProfileUpdate {
            name: input.name,
            date_of_birth: input.date_of_birth.map(|d| d.0),
            email: input.email,
            licence_number: input.licence_number,
            licence_issued_on: input.licence_issued_on.map(|d| d.0),
            postcode: input.postcode,
        };
        match accounts::update_profile(
            &mut conn,
            core.clock.as_ref(),
            Actor::Driver(me.driver_id),
            me.driver_id,
            update,
        )
        .await
        {
            Ok(d) => Ok(UpdateProfilePayload {
                driver: Some(Driver::new(d, guard::principal(ctx).clone())),
                user_errors: vec![],
            }),
            Err(e) => Ok(UpdateProfilePayload {
                driver: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Adds a vehicle to the driver.
    async fn add_vehicle(
        &self,
        ctx: &Context<'_>,
        input: AddVehicleInput,
    ) -> async_graphql::Result<AddVehiclePayload> {
        let me = guard::require_driver(ctx)?;
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let new = NewVehicle {
            vehicle_type: input.vehicle_type.into(),
            registration: input.registration,
            make: input.make,
            model: input.model,
        };
        match accounts::add_vehicle(&mut conn, core.clock.as_ref(), me.driver_id, new).await {
            Ok(v) => Ok(AddVehiclePayload {
                vehicle: Some(Vehicle::new(v, guard::principal(ctx).clone())),
                user_errors: vec![],
            }),
            Err(e) => Ok(AddVehiclePayload {
                vehicle: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Removes one of the driver's vehicles (past cover keeps naming it).
    async fn remove_vehicle(
        &self,
        ctx: &Context<'_>,
        input: RemoveVehicleInput,
    ) -> async_graphql::Result<RemoveVehiclePayload> {
        let me = guard::require_driver(ctx)?;
        let Some(vehicle_id) = parse_input_id::<VehicleId>(&input.vehicle_id, "Vehicle") else {
            return Ok(RemoveVehiclePayload {
                vehicle: None,
                user_errors: not_found("vehicleId"),
            });
        };
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        match accounts::remove_vehicle(&mut conn, core.clock.as_ref(), me.driver_id, vehicle_id)
            .await
        {
            Ok(v) => Ok(RemoveVehiclePayload {
                vehicle: Some(Vehicle::new(v, guard::principal(ctx).clone())),
                user_errors: vec![],
            }),
            Err(e) => Ok(RemoveVehiclePayload {
                vehicle: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Everything the accounts hold about the driver, as JSON (the right of access).
    async fn export_my_data(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ExportMyDataPayload> {
        let me = guard::require_driver(ctx)?;
        let mut conn = conn(ctx).await?;
        match accounts::export_driver_data(&mut conn, me.driver_id).await {
            Ok(data) => Ok(ExportMyDataPayload {
                data: Some(Json(data)),
                user_errors: vec![],
            }),
            Err(e) => Ok(ExportMyDataPayload {
                data: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }

    /// Deletes the driver's account: personal data is erased, every session ends. Records that
    /// insurers must keep (past cover, payments, claims) stay, tied to a pseudonymous driver.
    async fn delete_account(
        &self,
        ctx: &Context<'_>,
        input: DeleteAccountInput,
    ) -> async_graphql::Result<DeleteAccountPayload> {
        let me = guard::require_driver(ctx)?;
        if !input.confirm {
            return Ok(DeleteAccountPayload {
                deleted_driver_id: None,
                user_errors: vec![UserError {
                    field: Some("confirm".into()),
                    code: "CONFIRMATION_REQUIRED".into(),
                    message: "Confirm that you want your account deleted.".into(),
                }],
            });
        }
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        match accounts::delete_driver_account(
            &mut conn,
            core.clock.as_ref(),
            Actor::Driver(me.driver_id),
            me.driver_id,
        )
        .await
        {
            Ok(deleted) => Ok(DeleteAccountPayload {
                deleted_driver_id: Some(to_global_id("Driver", &deleted.driver_id)),
                user_errors: vec![],
            }),
            Err(e) => Ok(DeleteAccountPayload {
                deleted_driver_id: None,
                user_errors: user_errors(ctx, e)?,
            }),
        }
    }
}
