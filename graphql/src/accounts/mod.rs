//! The accounts part of the schema: drivers and their vehicles, staff users, partners and their
//! API keys; sign-in for each; and the `node(id)` resolution of `Driver`, `Vehicle`, `Partner`.
//!
//! Every object carries the principal it is being resolved for, and checks it on each edge it
//! offers (`Driver.vehicles`, `Vehicle.driver`, `Partner.apiKeys`). That principal is the
//! request's viewer, except in a sign-in payload, where it is the principal the sign-in just
//! created (the request itself was anonymous).

pub mod admin;
pub mod driver;
pub mod loaders;
pub mod query;
pub mod sign_in;

use crate::errors::{UserError, internal};
use crate::guard;
use crate::relay::{parse_global_id, to_global_id};
use accounts::{AccountsError, DriverId, PartnerId, Principal, VehicleId};
use async_graphql::connection::{Connection, Edge};
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, ID, Object};
use chrono::{DateTime, Utc};
use loaders::{AccountsLoader, VehiclesOf};
use shared::core::Core;

/// Largest page of a driver's vehicles.
pub const MAX_VEHICLES_PAGE: i32 = 50;

pub use crate::scalars::Date;

/// What a driver works with.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "accounts::VehicleType")]
pub enum VehicleType {
    /// A pedal bicycle (no registration).
    Bicycle,
    /// An electrically assisted pedal cycle (no registration).
    EBike,
    /// A scooter or moped.
    Scooter,
    /// A motorbike.
    Motorbike,
    /// A car.
    Car,
    /// A van.
    Van,
}

/// What a staff user may do.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "accounts::Role")]
pub enum StaffRole {
    /// Operations: drivers, sessions, claims, refunds, partners, failed jobs.
    Ops,
    /// Finance: reconciliation, bordereau, tax and ledger reports.
    Finance,
    /// Everything, including staff users.
    Admin,
}

/// What a partner API key may do.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "accounts::Scope")]
pub enum PartnerScope {
    /// Link the partner's drivers to ShiftCover drivers (`drivers:link`).
    DriversLink,
    /// Send shift and job events that start and stop cover (`shifts:write`).
    ShiftsWrite,
    /// Ask whether a linked driver is covered (`cover:read`).
    CoverRead,
    /// Manage the partner's webhook endpoints (`webhooks:manage`).
    WebhooksManage,
}

/// Whether a partner may call the API.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "accounts::PartnerStatus")]
pub enum PartnerStatus {
    /// Its keys work.
    Active,
    /// Its keys are refused until ops reactivate it.
    Suspended,
}

/// The settings, pool and clock of the process.
pub(crate) fn core<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Core> {
    ctx.data_opt::<Core>()
        .ok_or_else(|| internal(ctx, anyhow::anyhow!("the schema was built without a Core")))
}

/// The request's accounts loader.
pub(crate) fn loader<'a>(
    ctx: &'a Context<'_>,
) -> async_graphql::Result<&'a DataLoader<AccountsLoader>> {
    ctx.data_opt::<DataLoader<AccountsLoader>>().ok_or_else(|| {
        internal(
            ctx,
            anyhow::anyhow!("the request was executed without an accounts loader"),
        )
    })
}

/// A database connection, or an internal error.
pub(crate) async fn conn(ctx: &Context<'_>) -> async_graphql::Result<shared::DbConn> {
    core(ctx)?
        .pool
        .get()
        .await
        .map_err(|e| internal(ctx, anyhow::anyhow!("database pool: {e}")))
}

/// An accounts error as `userErrors`, or an internal error when the user cannot fix it.
pub(crate) fn user_errors(
    ctx: &Context<'_>,
    err: AccountsError,
) -> async_graphql::Result<Vec<UserError>> {
    match err.user_error() {
        Some(e) => Ok(vec![UserError::from(e)]),
        None => Err(internal(ctx, err)),
    }
}

/// The `NOT_FOUND` user error for an id argument that names nothing the caller may act on.
pub(crate) fn not_found(field: &'static str) -> Vec<UserError> {
    AccountsError::NotFound(field)
        .user_error()
        .map(UserError::from)
        .into_iter()
        .collect()
}

/// A driver's profile.
#[derive(Debug, Clone)]
pub struct Driver {
    inner: accounts::Driver,
    viewer: Principal,
}

impl Driver {
    /// Wraps a driver that `viewer` has been found allowed to see.
    pub(crate) fn new(inner: accounts::Driver, viewer: Principal) -> Self {
        Self { inner, viewer }
    }
}

/// A driver: the person covered. Visible to the driver themself and to ops.
#[Object]
impl Driver {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        to_global_id("Driver", &self.inner.id)
    }
    /// The mobile number they sign in with, E.164 (`+447911123456`).
    async fn phone(&self) -> &str {
        self.inner.phone.as_str()
    }
    /// Full name as on the licence.
    async fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }
    /// Date of birth.
    async fn date_of_birth(&self) -> Option<Date> {
        self.inner.date_of_birth.map(Date)
    }
    /// Email address.
    async fn email(&self) -> Option<&str> {
        self.inner.email.as_ref().map(|e| e.as_str())
    }
    /// UK driving licence number.
    async fn licence_number(&self) -> Option<&str> {
        self.inner.licence_number.as_ref().map(|l| l.as_str())
    }
    /// When the licence was first issued.
    async fn licence_issued_on(&self) -> Option<Date> {
        self.inner.licence_issued_on.map(Date)
    }
    /// Home postcode, e.g. `SW1A 1AA`.
    async fn postcode(&self) -> Option<&str> {
        self.inner.postcode.as_ref().map(|p| p.as_str())
    }
    /// When the driver first signed in.
    async fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    /// When the profile last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.inner.updated_at
    }
    /// The driver's vehicles (not removed), oldest first.
    async fn vehicles(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return (at most 50).",
            default = 20,
            validator(minimum = 0, maximum = 50)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return vehicles after this cursor.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Vehicle>> {
        if !guard::may_view_driver(&self.viewer, self.inner.id) {
            return Err(guard::forbidden());
        }
        let all = loader(ctx)?
            .load_one(VehiclesOf(self.inner.id))
            .await
            .map_err(|e| internal(ctx, anyhow::anyhow!("{e:#}")))?
            .unwrap_or_default();
        let start = match after {
            None => 0,
            Some(cursor) => match all
                .iter()
                .position(|v| to_global_id("Vehicle", &v.id).0 == cursor)
            {
                Some(i) => i + 1,
                None => {
                    return Err(crate::errors::coded(
                        "BAD_USER_INPUT",
                        "`after` is not a cursor of this list",
                    ));
                }
            },
        };
        let first = usize::try_from(first.unwrap_or(20).clamp(0, MAX_VEHICLES_PAGE)).unwrap_or(0);
        let end = start.saturating_add(first).min(all.len());
        let mut connection = Connection::new(start > 0, end < all.len());
        for v in all.into_iter().skip(start).take(end - start) {
            let cursor = to_global_id("Vehicle", &v.id).0;
            connection
                .edges
                .push(Edge::new(cursor, Vehicle::new(v, self.viewer.clone())));
        }
        Ok(connection)
    }
    /// The driver's cover: `enrolments`, `coverSessions`, `activeSession`.
    #[graphql(flatten)]
    async fn cover(&self, _ctx: &Context<'_>) -> crate::cover::sessions::DriverCover {
        crate::cover::sessions::DriverCover::new(self.inner.id, self.viewer.clone())
    }
    /// The driver's wallet: balance, movements, payments and cards (the driver themself, ops).
    async fn wallet(&self) -> Option<crate::payments::Wallet> {
        crate::payments::may_view_money(&self.viewer, self.inner.id).then(|| {
            crate::payments::Wallet {
                driver_id: self.inner.id,
                viewer: self.viewer.clone(),
                position: Default::default(),
            }
        })
    }
}

/// A vehicle of a driver.
#[derive(Debug, Clone)]
pub struct Vehicle {
    inner: accounts::Vehicle,
    viewer: Principal,
}

impl Vehicle {
    /// Wraps a vehicle that `viewer` has been found allowed to see.
    pub(crate) fn new(inner: accounts::Vehicle, viewer: Principal) -> Self {
        Self { inner, viewer }
    }
}

/// A vehicle a driver works with. Visible to its driver and to ops.
#[Object]
impl Vehicle {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        to_global_id("Vehicle", &self.inner.id)
    }
    /// Its type.
    async fn vehicle_type(&self) -> VehicleType {
        self.inner.vehicle_type.into()
    }
    /// Its registration, uppercase without spaces; null for bicycles and e-bikes.
    async fn registration(&self) -> Option<&str> {
        self.inner.registration.as_ref().map(|r| r.as_str())
    }
    /// Make, as the driver typed it.
    async fn make(&self) -> Option<&str> {
        self.inner.make.as_deref()
    }
    /// Model, as the driver typed it.
    async fn model(&self) -> Option<&str> {
        self.inner.model.as_deref()
    }
    /// When it was added.
    async fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    /// When it was removed, if it was.
    async fn removed_at(&self) -> Option<DateTime<Utc>> {
        self.inner.removed_at
    }
    /// Its driver; null when the viewer may not see them or the account was deleted.
    async fn driver(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Driver>> {
        load_driver(ctx, &self.viewer, self.inner.driver_id).await
    }
}

/// A partner platform.
#[derive(Debug, Clone)]
pub struct Partner {
    inner: accounts::Partner,
    viewer: Principal,
}

impl Partner {
    /// Wraps a partner that `viewer` has been found allowed to see.
    pub(crate) fn new(inner: accounts::Partner, viewer: Principal) -> Self {
        Self { inner, viewer }
    }
}

/// A delivery or ride-hailing platform that starts and stops its drivers' cover. Visible to
/// itself (through its API keys) and to ops.
#[Object]
impl Partner {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        to_global_id("Partner", &self.inner.id)
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.inner.name
    }
    /// Whether its keys work.
    async fn status(&self) -> PartnerStatus {
        self.inner.status.into()
    }
    /// When it was set up.
    async fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    /// Its API keys, oldest first, revoked and expired ones included (never their secrets).
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PartnerApiKey>> {
        if !guard::may_view_partner(&self.viewer, self.inner.id) {
            return Err(guard::forbidden());
        }
        let mut conn = conn(ctx).await?;
        let keys = accounts::list_api_keys(&mut conn, self.inner.id)
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(keys.into_iter().map(PartnerApiKey).collect())
    }
}

/// A partner's API key as shown to ops and the partner; the secret is shown only once, when the
/// key is created or rotated.
#[derive(Debug, Clone)]
pub struct PartnerApiKey(pub(crate) accounts::ApiKeyInfo);

/// A partner's API key (never its secret).
#[Object]
impl PartnerApiKey {
    /// The global id.
    async fn id(&self) -> ID {
        to_global_id("PartnerApiKey", &self.0.id)
    }
    /// The public part that tells keys apart (the 8 characters after `sck_live_`).
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    /// What it may do.
    async fn scopes(&self) -> Vec<PartnerScope> {
        self.0.scopes.iter().map(|s| (*s).into()).collect()
    }
    /// Test keys see and create only test data.
    async fn test_mode(&self) -> bool {
        self.0.test_mode
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it stops working, if it does (set by rotation).
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    /// When it was revoked, if it was.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    /// Roughly when it was last used (to the minute).
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
}

/// An ops, finance or admin user.
#[derive(Debug, Clone)]
pub struct StaffUser(pub(crate) accounts::Staff);

/// A back-office user (never their password).
#[Object]
impl StaffUser {
    /// The global id.
    async fn id(&self) -> ID {
        to_global_id("StaffUser", &self.0.id)
    }
    /// Sign-in email, lowercase.
    async fn email(&self) -> &str {
        self.0.email.as_str()
    }
    /// Name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Role.
    async fn role(&self) -> StaffRole {
        self.0.role.into()
    }
    /// When the user was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the user was disabled, if they were.
    async fn disabled_at(&self) -> Option<DateTime<Utc>> {
        self.0.disabled_at
    }
}

/// Loads a driver for `viewer`; `None` when absent, deleted, or not theirs to see (checked
/// before loading, so what is not visible is not even read).
pub(crate) async fn load_driver(
    ctx: &Context<'_>,
    viewer: &Principal,
    id: DriverId,
) -> async_graphql::Result<Option<Driver>> {
    if !guard::may_view_driver(viewer, id) {
        return Ok(None);
    }
    let driver = loader(ctx)?
        .load_one(id)
        .await
        .map_err(|e| internal(ctx, anyhow::anyhow!("{e:#}")))?;
    Ok(driver.map(|d| Driver::new(d, viewer.clone())))
}

/// `node(id)` for `Driver`.
pub(crate) async fn driver_node(
    ctx: &Context<'_>,
    raw: &str,
) -> async_graphql::Result<Option<Driver>> {
    let Ok(id) = raw.parse::<DriverId>() else {
        return Ok(None);
    };
    load_driver(ctx, guard::principal(ctx), id).await
}

/// `node(id)` for `Vehicle`: removed vehicles included (past cover names them).
pub(crate) async fn vehicle_node(
    ctx: &Context<'_>,
    raw: &str,
) -> async_graphql::Result<Option<Vehicle>> {
    let Ok(id) = raw.parse::<VehicleId>() else {
        return Ok(None);
    };
    let viewer = guard::principal(ctx);
    // Only drivers and ops can see any vehicle at all: nobody else causes a read.
    let may_see_some = match viewer {
        Principal::Driver(_) => true,
        Principal::Staff(s) => s.has(accounts::Role::Ops),
        Principal::Partner(_) | Principal::Anonymous => false,
    };
    if !may_see_some {
        return Ok(None);
    }
    let vehicle = loader(ctx)?
        .load_one(id)
        .await
        .map_err(|e| internal(ctx, anyhow::anyhow!("{e:#}")))?;
    Ok(vehicle
        .filter(|v| guard::may_view_driver(viewer, v.driver_id))
        .map(|v| Vehicle::new(v, viewer.clone())))
}

/// `node(id)` for `Partner`.
pub(crate) async fn partner_node(
    ctx: &Context<'_>,
    raw: &str,
) -> async_graphql::Result<Option<Partner>> {
    let Ok(id) = raw.parse::<PartnerId>() else {
        return Ok(None);
    };
    let viewer = guard::principal(ctx);
    if !guard::may_view_partner(viewer, id) {
        return Ok(None);
    }
    let mut conn = conn(ctx).await?;
    match accounts::get_partner(&mut conn, id).await {
        Ok(p) => Ok(Some(Partner::new(p, viewer.clone()))),
        Err(AccountsError::NotFound(_)) => Ok(None),
        Err(e) => Err(internal(ctx, e)),
    }
}

/// Parses a global id of `type_name` given in an input field; `None` when it is not one.
pub(crate) fn parse_input_id<T: std::str::FromStr>(id: &ID, type_name: &str) -> Option<T> {
    parse_global_id(id, type_name)
}

/// Seconds to wait, as a GraphQL `Int`.
pub(crate) fn retry_after(secs: u64) -> i32 {
    i32::try_from(secs).unwrap_or(i32::MAX)
}
