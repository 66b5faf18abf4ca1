//! Enrolment: `enrol`, `cancelEnrolment`, `cancelEnrolmentPreview`, and the `Enrolment` object
//! (reached through `Driver.enrolments` and `node`).

use super::loaders::CoverLoader;
use super::sessions::{CoverSession, SessionCharge};
use super::{bad_id, conn, core, cover_user_errors, may_view_cover_of, publish_events};
use crate::accounts::Vehicle;
use crate::accounts::loaders::AccountsLoader;
use crate::errors::{UserError, internal};
use crate::guard;
use crate::money::Money;
use crate::relay::{parse_global_id, to_global_id};
use accounts::{Actor, Principal, VehicleId};
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use cover::{CoverError, EnrolmentId};
use diesel_async::AsyncConnection;
use pricing::ProductId;

/// Where an enrolment is in its life: `PENDING → ACTIVE ⇄ SUSPENDED → CANCELLED`.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "cover::EnrolmentStatus")]
pub enum EnrolmentStatus {
    /// Terms accepted; waits for a way to pay (a card, or funds in the wallet).
    Pending,
    /// Cover can start.
    Active,
    /// Cover cannot start until it is reactivated (payment trouble, or ops).
    Suspended,
    /// Ended for good.
    Cancelled,
}

/// One change of an enrolment's status.
#[derive(SimpleObject, Debug, Clone)]
pub struct EnrolmentStatusChange {
    /// The status before; null for the enrolment's creation.
    pub from_status: Option<EnrolmentStatus>,
    /// The status after.
    pub to_status: EnrolmentStatus,
    /// Why, e.g. `enrolled`, `awaiting_funds`, `insufficient_funds`, `driver_request`.
    pub reason: String,
    /// Who made the change: `driver`, `partner`, `staff` or `system`.
    pub actor: String,
    /// When.
    pub occurred_at: DateTime<Utc>,
}

/// What cancelling an enrolment now would cost.
#[derive(Debug, Clone)]
pub struct CancelEnrolmentPreview {
    inner: cover::CancelPreview,
    wallet_balance: shared::Money,
    viewer: Principal,
}

/// What cancelling an enrolment now would cost: the open session (which cancelling ends) and
/// its charge if it ended now, plus ended sessions not yet charged. Pay-as-you-go cover is paid
/// per minute used, so cancelling refunds nothing and the wallet stays the driver's.
#[Object]
impl CancelEnrolmentPreview {
    /// The enrolment's global id.
    async fn enrolment_id(&self) -> ID {
        to_global_id("Enrolment", &self.inner.enrolment_id)
    }
    /// The session cancelling would end now, if one is running.
    async fn open_session(&self) -> Option<CoverSession> {
        self.inner
            .open_session
            .clone()
            .map(|s| CoverSession::new(s, self.viewer.clone()))
    }
    /// That session's charge if it ended now.
    async fn open_session_charge(&self) -> Option<SessionCharge> {
        self.inner.open_session_charge.map(SessionCharge::from)
    }
    /// Ended sessions of the enrolment whose charge is not taken yet, added up.
    async fn uncharged_total(&self) -> Money {
        self.inner.uncharged_total.into()
    }
    /// What the driver still owes after cancelling now: the two above together.
    async fn total_due(&self) -> Money {
        self.inner.total_due.into()
    }
    /// What is refunded for cancelling: always zero (cover is paid per minute used).
    async fn refund(&self) -> Money {
        shared::Money::zero(self.inner.total_due.currency).into()
    }
    /// The wallet balance now.
    async fn wallet_balance(&self) -> Money {
        self.wallet_balance.into()
    }
    /// The wallet balance once what is due has been taken.
    async fn wallet_balance_after(&self) -> Money {
        let after = self
            .wallet_balance
            .checked_sub(self.inner.total_due)
            .unwrap_or(self.wallet_balance);
        after.into()
    }
}

/// A driver's enrolment in a product.
#[derive(Debug, Clone)]
pub struct Enrolment {
    inner: cover::Enrolment,
    viewer: Principal,
}

impl Enrolment {
    /// Wraps an enrolment that `viewer` has been found allowed to see.
    pub(crate) fn new(inner: cover::Enrolment, viewer: Principal) -> Self {
        Self { inner, viewer }
    }
}

fn cover_loader<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a DataLoader<CoverLoader>> {
    ctx.data_opt::<DataLoader<CoverLoader>>().ok_or_else(|| {
        internal(
            ctx,
            anyhow::anyhow!("the request was executed without a cover loader"),
        )
    })
}

pub(crate) async fn load_vehicle(
    ctx: &Context<'_>,
    viewer: &Principal,
    id: VehicleId,
) -> async_graphql::Result<Option<Vehicle>> {
    let loader = ctx
        .data_opt::<DataLoader<AccountsLoader>>()
        .ok_or_else(|| internal(ctx, anyhow::anyhow!("no accounts loader")))?;
    let vehicle = loader
        .load_one(id)
        .await
        .map_err(|e| internal(ctx, anyhow::anyhow!("{e:#}")))?;
    Ok(vehicle
        .filter(|v| guard::may_view_driver(viewer, v.driver_id))
        .map(|v| Vehicle::new(v, viewer.clone())))
}

pub(crate) async fn load_product(
    ctx: &Context<'_>,
    id: ProductId,
) -> async_graphql::Result<Option<pricing::Product>> {
    cover_loader(ctx)?
        .load_one(id)
        .await
        .map_err(|e| internal(ctx, anyhow::anyhow!("{e:#}")))
}

pub(crate) async fn load_version(
    ctx: &Context<'_>,
    id: pricing::ProductVersionId,
) -> async_graphql::Result<Option<pricing::ProductVersion>> {
    cover_loader(ctx)?
        .load_one(id)
        .await
        .map_err(|e| internal(ctx, anyhow::anyhow!("{e:#}")))
}

/// A driver's standing pay-as-you-go agreement for one product. Visible to the driver and ops.
#[Object]
impl Enrolment {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        to_global_id("Enrolment", &self.inner.id)
    }
    /// Where it is in its life.
    async fn status(&self) -> EnrolmentStatus {
        self.inner.status.into()
    }
    /// Why it is in that status, when there is a reason to tell (e.g. `awaiting_funds`).
    async fn status_reason(&self) -> Option<&str> {
        self.inner.status_reason.as_deref()
    }
    /// The product's global id.
    async fn product_id(&self) -> ID {
        to_global_id("Product", &self.inner.product_id)
    }
    /// The product's name.
    async fn product_name(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(load_product(ctx, self.inner.product_id)
            .await?
            .map(|p| p.name))
    }
    /// The vehicle cover starts on when the driver names none.
    async fn vehicle(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vehicle>> {
        load_vehicle(ctx, &self.viewer, self.inner.vehicle_id).await
    }
    /// The policy wording version the driver accepted.
    async fn terms_version(&self) -> &str {
        &self.inner.terms_version
    }
    /// The number of the product version whose wording that was.
    async fn terms_product_version_number(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<i32>> {
        Ok(load_version(ctx, self.inner.terms_product_version_id)
            .await?
            .map(|v| v.version_number))
    }
    /// When the terms were accepted.
    async fn terms_accepted_at(&self) -> DateTime<Utc> {
        self.inner.terms_accepted_at
    }
    /// When the driver enrolled.
    async fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.inner.updated_at
    }
    /// When it was cancelled.
    async fn cancelled_at(&self) -> Option<DateTime<Utc>> {
        self.inner.cancelled_at
    }
    /// Every status change, oldest first, with its reason.
    async fn history(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<EnrolmentStatusChange>> {
        if !may_view_cover_of(&self.viewer, self.inner.driver_id) {
            return Err(guard::forbidden());
        }
        let mut conn = conn(ctx).await?;
        let events = cover::list_enrolment_events(&mut conn, self.inner.id)
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(events
            .into_iter()
            .map(|e| EnrolmentStatusChange {
                from_status: e.from_status.map(Into::into),
                to_status: e.to_status.into(),
                reason: e.reason,
                actor: e.actor_type,
                occurred_at: e.occurred_at,
            })
            .collect())
    }
    /// What cancelling it now would cost; null once cancelled.
    async fn cancel_preview(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<CancelEnrolmentPreview>> {
        if !may_view_cover_of(&self.viewer, self.inner.driver_id) {
            return Err(guard::forbidden());
        }
        preview(ctx, &self.inner, &self.viewer).await
    }
}

async fn preview(
    ctx: &Context<'_>,
    enrolment: &cover::Enrolment,
    viewer: &Principal,
) -> async_graphql::Result<Option<CancelEnrolmentPreview>> {
    if enrolment.status == cover::EnrolmentStatus::Cancelled {
        return Ok(None);
    }
    let core = core(ctx)?;
    let mut conn = conn(ctx).await?;
    let inner = cover::cancel_preview(&mut conn, core.clock.as_ref(), enrolment)
        .await
        .map_err(|e| internal(ctx, e))?;
    let wallet_balance = payments::wallet_balance(&mut conn, enrolment.driver_id)
        .await
        .map_err(|e| internal(ctx, e))?;
    Ok(Some(CancelEnrolmentPreview {
        inner,
        wallet_balance,
        viewer: viewer.clone(),
    }))
}

/// The driver's enrolments (cancelled ones included), newest first.
pub(crate) async fn enrolments_of(
    ctx: &Context<'_>,
    viewer: &Principal,
    driver_id: accounts::DriverId,
) -> async_graphql::Result<Vec<Enrolment>> {
    if !may_view_cover_of(viewer, driver_id) {
        return Err(guard::forbidden());
    }
    let mut conn = conn(ctx).await?;
    let list = cover::list_enrolments(&mut conn, driver_id)
        .await
        .map_err(|e| internal(ctx, e))?;
    Ok(list
        .into_iter()
        .map(|e| Enrolment::new(e, viewer.clone()))
        .collect())
}

/// `node(id)` for `Enrolment`.
pub(crate) async fn enrolment_node(
    ctx: &Context<'_>,
    raw: &str,
) -> async_graphql::Result<Option<Enrolment>> {
    let Ok(id) = raw.parse::<EnrolmentId>() else {
        return Ok(None);
    };
    let viewer = guard::principal(ctx);
    let may_see_some = match viewer {
        Principal::Driver(_) => true,
        Principal::Staff(s) => s.has(accounts::Role::Ops),
        Principal::Partner(_) | Principal::Anonymous => false,
    };
    if !may_see_some {
        return Ok(None);
    }
    let mut conn = conn(ctx).await?;
    match cover::get_enrolment(&mut conn, id).await {
        Ok(e) if may_view_cover_of(viewer, e.driver_id) => {
            Ok(Some(Enrolment::new(e, viewer.clone())))
        }
        Ok(_) | Err(CoverError::EnrolmentNotFound) => Ok(None),
        Err(e) => Err(internal(ctx, e)),
    }
}

/// Enrolment queries.
#[derive(Default)]
pub struct EnrolmentQuery;

#[Object]
impl EnrolmentQuery {
    /// What cancelling one of the signed-in driver's enrolments now would cost; null for an
    /// enrolment that is not theirs or is already cancelled. Drivers only.
    async fn cancel_enrolment_preview(
        &self,
        ctx: &Context<'_>,
        enrolment_id: ID,
    ) -> async_graphql::Result<Option<CancelEnrolmentPreview>> {
        let driver = guard::require_driver(ctx)?;
        let Some(id) = parse_global_id::<EnrolmentId>(&enrolment_id, "Enrolment") else {
            return Ok(None);
        };
        let mut conn = conn(ctx).await?;
        let enrolment = match cover::get_enrolment_for_driver(&mut conn, driver.driver_id, id).await
        {
            Ok(e) => e,
            Err(CoverError::EnrolmentNotFound) => return Ok(None),
            Err(e) => return Err(internal(ctx, e)),
        };
        drop(conn);
        preview(ctx, &enrolment, guard::principal(ctx)).await
    }
}

/// Input of `enrol`.
#[derive(InputObject)]
pub struct EnrolInput {
    /// A product on sale (from `products`).
    pub product_id: ID,
    /// The vehicle cover starts on by default; the product must cover it.
    pub vehicle_id: ID,
    /// Must be true: the driver accepts the product's policy terms.
    pub accept_terms: bool,
}

/// Result of `enrol`.
#[derive(SimpleObject, Default)]
pub struct EnrolPayload {
    /// The enrolment: `ACTIVE` when the driver can pay, otherwise `PENDING` (add a card or top
    /// up).
    pub enrolment: Option<Enrolment>,
    /// `TERMS_NOT_ACCEPTED` (`acceptTerms`); `PRODUCT_NOT_FOUND`, `PRODUCT_NOT_AVAILABLE`,
    /// `ALREADY_ENROLLED` (`productId`); `VEHICLE_NOT_FOUND` (`vehicleId`); `PROFILE_INCOMPLETE`;
    /// a decline's code (`VEHICLE_NOT_COVERED`, `UNDER_MINIMUM_AGE`, …).
    pub user_errors: Vec<UserError>,
}

/// Input of `cancelEnrolment`.
#[derive(InputObject)]
pub struct CancelEnrolmentInput {
    /// One of the driver's enrolments.
    pub enrolment_id: ID,
    /// Why, in a few words (1 to 200 characters); `driver_request` when omitted.
    pub reason: Option<String>,
}

/// Result of `cancelEnrolment`.
#[derive(SimpleObject, Default)]
pub struct CancelEnrolmentPayload {
    /// The enrolment, now cancelled.
    pub enrolment: Option<Enrolment>,
    /// The session cancelling ended (and priced), if one was running.
    pub ended_session: Option<CoverSession>,
    /// `ENROLMENT_NOT_FOUND` (`enrolmentId`: unknown or another driver's); `INVALID_REASON`
    /// (`reason`).
    pub user_errors: Vec<UserError>,
}

/// Enrolment mutations.
#[derive(Default)]
pub struct EnrolmentMutation;

#[Object]
impl EnrolmentMutation {
    /// Enrols the signed-in driver in a product's pay-as-you-go cover. Drivers only.
    async fn enrol(
        &self,
        ctx: &Context<'_>,
        input: EnrolInput,
    ) -> async_graphql::Result<EnrolPayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(product_id) = parse_global_id::<ProductId>(&input.product_id, "Product") else {
            return Ok(EnrolPayload {
                enrolment: None,
                user_errors: bad_id("productId", "PRODUCT_NOT_FOUND"),
            });
        };
        let Some(vehicle_id) = parse_global_id::<VehicleId>(&input.vehicle_id, "Vehicle") else {
            return Ok(EnrolPayload {
                enrolment: None,
                user_errors: bad_id("vehicleId", "VEHICLE_NOT_FOUND"),
            });
        };
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let result = cover::enrol(
            &mut conn,
            core.clock.as_ref(),
            driver.driver_id,
            cover::EnrolInput {
                product_id,
                vehicle_id,
                accept_terms: input.accept_terms,
            },
            &payments::WalletFunds,
        )
        .await;
        match result {
            Ok(e) => Ok(EnrolPayload {
                enrolment: Some(Enrolment::new(e, guard::principal(ctx).clone())),
                user_errors: vec![],
            }),
            Err(e) => Ok(EnrolPayload {
                enrolment: None,
                user_errors: cover_user_errors(ctx, e)?,
            }),
        }
    }

    /// Cancels one of the signed-in driver's enrolments for good. A running session on it ends
    /// now and is charged like any other (see `cancelEnrolmentPreview`). Drivers only.
    async fn cancel_enrolment(
        &self,
        ctx: &Context<'_>,
        input: CancelEnrolmentInput,
    ) -> async_graphql::Result<CancelEnrolmentPayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(id) = parse_global_id::<EnrolmentId>(&input.enrolment_id, "Enrolment") else {
            return Ok(CancelEnrolmentPayload {
                user_errors: bad_id("enrolmentId", "ENROLMENT_NOT_FOUND"),
                ..CancelEnrolmentPayload::default()
            });
        };
        let reason = input.reason.unwrap_or_else(|| "driver_request".to_owned());
        let core = core(ctx)?;
        let clock = core.clock.as_ref();
        let mut conn = conn(ctx).await?;
        let driver_id = driver.driver_id;
        let result = conn
            .transaction::<_, CoverError, _>(async |conn| {
                // Another driver's enrolment answers like an unknown one.
                cover::get_enrolment_for_driver(conn, driver_id, id).await?;
                cover::cancel_enrolment(conn, clock, id, &reason, Actor::Driver(driver_id)).await
            })
            .await;
        match result {
            Ok(changed) => {
                publish_events(core, &changed.events).await;
                let viewer = guard::principal(ctx).clone();
                Ok(CancelEnrolmentPayload {
                    enrolment: Some(Enrolment::new(changed.enrolment, viewer.clone())),
                    ended_session: changed.ended_session.map(|s| CoverSession::new(s, viewer)),
                    user_errors: vec![],
                })
            }
            Err(e) => Ok(CancelEnrolmentPayload {
                user_errors: cover_user_errors(ctx, e)?,
                ..CancelEnrolmentPayload::default()
            }),
        }
    }
}
