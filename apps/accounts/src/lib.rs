//! Accounts and access control: who drivers, staff and partners are, and how each proves it.
//!
//! - Drivers sign in with a one-time SMS code ([`login`]) and hold a bearer session token
//!   ([`sessions`]); their profile ([`drivers`]) and vehicles ([`vehicles`]) live here, and so do
//!   their data-protection rights ([`gdpr`]).
//! - Staff (ops, finance, admin) sign in with email and password ([`staff`]).
//! - Partner platforms call with scoped, rotatable API keys ([`partners`]).
//! - [`rate_limit`] holds the Redis limits the API applies before sign-in calls.
//! - [`principal`] holds the types the API layer puts on each request.
//!
//! Invariants across the crate:
//! - plain Rust: service functions take a connection, a [`shared::Clock`] and typed inputs, and
//!   return typed results or [`AccountsError`] / [`AuthError`]; nothing here knows HTTP or GraphQL;
//! - every secret (login code, session token, API key, password) is stored only as a hash, and the
//!   plaintext of a token or key is returned exactly once, at creation;
//! - user-fixable failures carry a stable code (`AccountsError::user_error`); internal ones none;
//! - a caller never learns that something it may not see exists: another driver's vehicle, an
//!   unknown phone, an unknown staff email all answer like a plain "not found" or "wrong";
//! - this crate writes only its own tables (drivers, login_codes, driver_sessions, vehicles, staff,
//!   staff_sessions, partners, partner_api_keys) plus the kernel's audit log; texts go out through
//!   `notifications` (`enqueue_notification`, `erase_recipient`), always inside the transaction of
//!   the change they record.

pub mod drivers;
pub mod error;
pub mod fields;
pub mod gdpr;
pub mod ids;
pub mod login;
pub mod partners;
pub mod principal;
pub mod rate_limit;
pub mod schema;
pub mod sessions;
pub mod staff;
mod tokens;
pub mod vehicles;

pub use drivers::{
    Driver, ProfileUpdate, find_driver_by_phone, find_or_create_driver_by_phone, get_driver,
    get_drivers, update_profile,
};
pub use error::{AccountsError, AuthError};
pub use fields::{Email, LicenceNumber, Phone, Postcode, Vrm, postcode_area};
pub use gdpr::{DeletedAccount, delete_driver_account, export_driver_data};
pub use ids::{
    ApiKeyId, DriverId, DriverSessionId, LoginCodeId, PartnerId, StaffId, StaffSessionId, VehicleId,
};
pub use login::{
    LoginCodeRequested, LoginCodeSettings, SignedIn, request_login_code, verify_login_code,
};
pub use partners::{
    ApiKeyInfo, Partner, PartnerStatus, Scope, authenticate_partner_key, create_api_key,
    create_api_key_because, create_partner, create_partner_because, ensure_api_key_with_plaintext,
    get_api_key, get_partner, list_api_keys, list_partners, revoke_api_key, revoke_api_key_because,
    rotate_api_key, rotate_api_key_because, set_partner_status,
};
pub use principal::{Actor, DriverPrincipal, PartnerPrincipal, Principal, StaffPrincipal};
pub use sessions::{
    DriverSessionInfo, DriverSessionsByToken, authenticate_driver, authenticate_driver_batched,
    list_driver_sessions, sign_out, sign_out_everywhere,
};
pub use staff::{
    NewStaff, Role, Staff, StaffSignedIn, authenticate_staff, create_staff, disable_staff,
    ensure_staff_password, generate_password, get_staff, staff_sign_in, staff_sign_out,
};
pub use vehicles::{
    DriversWithVehicles, NewVehicle, Vehicle, VehicleType, add_vehicle, get_driver_and_vehicle,
    get_driver_and_vehicle_batched, get_vehicle_for_driver, get_vehicles, list_vehicles,
    list_vehicles_of_drivers, remove_vehicle,
};
