//! Enrolments: a driver's standing pay-as-you-go agreement for one product.
//!
//! Life: `pending → active ⇄ suspended → cancelled` (any status but cancelled may be cancelled;
//! a pending one becomes active once the driver can pay).
//!
//! Invariants:
//! - a driver has at most one enrolment per product that is not cancelled (a unique partial
//!   index; a concurrent second enrolment answers `ALREADY_ENROLLED`);
//! - every status change, creation included, writes one `enrolment_events` row (from, to, reason,
//!   actor) and one audit entry, in the transaction that makes it;
//! - cancelling ends the enrolment's open session first, priced like any other ending;
//! - a driver only ever sees their own enrolments: another driver's answers `ENROLMENT_NOT_FOUND`.
//!
//! Lock order, shared with the session functions: the driver's cover lock, then the enrolment
//! row, then session rows.

use crate::ending::{end_one, open_session_of_enrolment, preview_charge};
use crate::error::CoverError;
use crate::events::{CoverEvent, CoverEventKind};
use crate::funds::{Funding, FundsCheck};
use crate::ids::EnrolmentId;
use crate::schema::{cover_sessions, enrolment_events, enrolments};
use crate::sessions::{CoverSession, EndReason, SessionStatus};
use crate::support::{actor_parts, actor_type_name, audit, clean_text, lock_driver};
use accounts::{AccountsError, Actor, DriverId, VehicleId};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use pricing::{ProductId, ProductVersionId, SessionCharge};
use serde::Serialize;
use shared::{Clock, Money};
use std::fmt;
use std::str::FromStr;

/// The reason recorded when an enrolment waits for a payment method.
pub const AWAITING_PAYMENT_METHOD: &str = "awaiting_payment_method";
/// The reason recorded when an enrolment waits for the driver to be able to pay the minimum charge.
pub const AWAITING_FUNDS: &str = "awaiting_funds";
/// The reason recorded when an enrolment is created active.
pub const ENROLLED: &str = "enrolled";

/// Where an enrolment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrolmentStatus {
    /// Terms accepted; waits for a way to pay.
    Pending,
    /// Cover can start.
    Active,
    /// Cover cannot start until it is reactivated (payment trouble, or ops).
    Suspended,
    /// Ended for good.
    Cancelled,
}

impl EnrolmentStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrolmentStatus::Pending => "pending",
            EnrolmentStatus::Active => "active",
            EnrolmentStatus::Suspended => "suspended",
            EnrolmentStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for EnrolmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EnrolmentStatus {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(EnrolmentStatus::Pending),
            "active" => Ok(EnrolmentStatus::Active),
            "suspended" => Ok(EnrolmentStatus::Suspended),
            "cancelled" => Ok(EnrolmentStatus::Cancelled),
            other => Err(anyhow::anyhow!("unknown enrolment status {other:?}")),
        }
    }
}

/// A driver's enrolment in a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enrolment {
    /// The enrolment.
    pub id: EnrolmentId,
    /// Whose it is.
    pub driver_id: DriverId,
    /// The product.
    pub product_id: ProductId,
    /// The vehicle cover starts on when the driver names none.
    pub vehicle_id: VehicleId,
    /// Where it is in its life.
    pub status: EnrolmentStatus,
    /// Why it is in that status, when there is a reason to tell.
    pub status_reason: Option<String>,
    /// The policy wording version the driver accepted.
    pub terms_version: String,
    /// The product version whose wording that was.
    pub terms_product_version_id: ProductVersionId,
    /// When the terms were accepted.
    pub terms_accepted_at: DateTime<Utc>,
    /// When the driver enrolled.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enrolments)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct EnrolmentRow {
    id: EnrolmentId,
    driver_id: DriverId,
    product_id: ProductId,
    vehicle_id: VehicleId,
    status: String,
    status_reason: Option<String>,
    terms_version: String,
    terms_product_version_id: ProductVersionId,
    terms_accepted_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    cancelled_at: Option<DateTime<Utc>>,
}

impl TryFrom<EnrolmentRow> for Enrolment {
    type Error = CoverError;
    fn try_from(r: EnrolmentRow) -> Result<Self, CoverError> {
        Ok(Enrolment {
            id: r.id,
            driver_id: r.driver_id,
            product_id: r.product_id,
            vehicle_id: r.vehicle_id,
            status: r.status.parse()?,
            status_reason: r.status_reason,
            terms_version: r.terms_version,
            terms_product_version_id: r.terms_product_version_id,
            terms_accepted_at: r.terms_accepted_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            cancelled_at: r.cancelled_at,
        })
    }
}

/// One change of an enrolment's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrolmentEvent {
    /// The enrolment.
    pub enrolment_id: EnrolmentId,
    /// The status before; `None` for the creation.
    pub from_status: Option<EnrolmentStatus>,
    /// The status after.
    pub to_status: EnrolmentStatus,
    /// Why.
    pub reason: String,
    /// Who: `driver`, `partner`, `staff` or `system`.
    pub actor_type: String,
    /// Their id, when there is one.
    pub actor_id: Option<String>,
    /// When.
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = enrolment_events)]
struct EventRow {
    enrolment_id: EnrolmentId,
    from_status: Option<String>,
    to_status: String,
    reason: String,
    actor_type: String,
    actor_id: Option<String>,
    occurred_at: DateTime<Utc>,
}

async fn record_event(
    conn: &mut AsyncPgConnection,
    enrolment_id: EnrolmentId,
    from: Option<EnrolmentStatus>,
    to: EnrolmentStatus,
    reason: &str,
    actor: Actor,
    at: DateTime<Utc>,
) -> Result<(), CoverError> {
    let (actor_type, actor_id) = actor_parts(actor);
    diesel::insert_into(enrolment_events::table)
        .values((
            enrolment_events::enrolment_id.eq(enrolment_id),
            enrolment_events::from_status.eq(from.map(EnrolmentStatus::as_str)),
            enrolment_events::to_status.eq(to.as_str()),
            enrolment_events::reason.eq(reason),
            enrolment_events::actor_type.eq(actor_type_name(actor_type)),
            enrolment_events::actor_id.eq(actor_id),
            enrolment_events::occurred_at.eq(at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// What a driver enrols with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolInput {
    /// The product.
    pub product_id: ProductId,
    /// The vehicle cover starts on by default; it must be one the product covers.
    pub vehicle_id: VehicleId,
    /// Whether the driver accepted the policy terms (the published version's wording).
    pub accept_terms: bool,
}

/// Maps an accounts error: its `NOT_FOUND` to `not_found`, anything else to an internal error.
pub(crate) fn accounts_error(e: AccountsError, not_found: CoverError) -> CoverError {
    match e {
        AccountsError::NotFound(_) => not_found,
        AccountsError::Database(e) => CoverError::Database(e),
        other => CoverError::Internal(anyhow::Error::new(other)),
    }
}

/// Enrols a driver in a product.
///
/// The vehicle is rated on the product's published version to check the product covers it and
/// the driver; the minimum charge at that rate is what `funds` is asked about. The enrolment is
/// `active` when the driver can pay, otherwise `pending` with reason
/// [`AWAITING_PAYMENT_METHOD`] (no payment method) or [`AWAITING_FUNDS`] (cannot pay now).
///
/// Errors: `TERMS_NOT_ACCEPTED`; `PRODUCT_NOT_FOUND`, `PRODUCT_NOT_AVAILABLE`; `DRIVER_NOT_FOUND`;
/// `VEHICLE_NOT_FOUND`; `PROFILE_INCOMPLETE`; the decline codes (`VEHICLE_NOT_COVERED`,
/// `UNDER_MINIMUM_AGE`, …); `ALREADY_ENROLLED`.
pub async fn enrol(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    input: EnrolInput,
    funds: &dyn FundsCheck,
) -> Result<Enrolment, CoverError> {
    if !input.accept_terms {
        return Err(CoverError::TermsNotAccepted);
    }
    let now = clock.now();
    let version = pricing::get_published(conn, input.product_id).await?;
    let driver = accounts::get_driver(conn, driver_id)
        .await
        .map_err(|e| accounts_error(e, CoverError::DriverNotFound))?;
    let vehicle = accounts::get_vehicle_for_driver(conn, driver_id, input.vehicle_id)
        .await
        .map_err(|e| accounts_error(e, CoverError::VehicleNotFound))?;
    let rating = pricing::rating_input_for(&driver, &vehicle, now)?;
    let quote = pricing::build_quote(&version, driver_id, vehicle.id, rating, now)?;

    if open_enrolment(conn, driver_id, input.product_id)
        .await?
        .is_some()
    {
        return Err(CoverError::AlreadyEnrolled);
    }
    let funding = funds
        .can_pay(conn, driver_id, quote.minimum_charge)
        .await
        .map_err(CoverError::Internal)?;
    let (status, reason) = match funding {
        Funding::Ok => (EnrolmentStatus::Active, None),
        Funding::NoPaymentMethod => (EnrolmentStatus::Pending, Some(AWAITING_PAYMENT_METHOD)),
        Funding::InsufficientFunds { .. } => (EnrolmentStatus::Pending, Some(AWAITING_FUNDS)),
    };
    let row = EnrolmentRow {
        id: EnrolmentId::new(),
        driver_id,
        product_id: input.product_id,
        vehicle_id: vehicle.id,
        status: status.as_str().to_owned(),
        status_reason: reason.map(str::to_owned),
        terms_version: version.terms.wording_version.clone(),
        terms_product_version_id: version.id,
        terms_accepted_at: now,
        created_at: now,
        updated_at: now,
        cancelled_at: None,
    };
    let row = &row;
    conn.transaction::<_, CoverError, _>(async |conn| {
        let stored: EnrolmentRow = diesel::insert_into(enrolments::table)
            .values(row)
            .returning(EnrolmentRow::as_returning())
            .get_result(conn)
            .await
            .map_err(|e| {
                if shared::error::is_unique_violation(
                    &e,
                    Some("enrolments_one_open_per_driver_product"),
                ) {
                    CoverError::AlreadyEnrolled
                } else {
                    e.into()
                }
            })?;
        let enrolment = Enrolment::try_from(stored)?;
        let actor = Actor::Driver(driver_id);
        record_event(
            conn,
            enrolment.id,
            None,
            status,
            reason.unwrap_or(ENROLLED),
            actor,
            now,
        )
        .await?;
        audit(
            conn,
            actor,
            "enrolment.created",
            "enrolment",
            enrolment.id.to_string(),
            None,
            serde_json::json!({
                "product_id": enrolment.product_id.to_string(),
                "vehicle_id": enrolment.vehicle_id.to_string(),
                "status": status.as_str(),
                "terms_version": enrolment.terms_version,
                "product_version_id": enrolment.terms_product_version_id.to_string(),
            }),
        )
        .await?;
        Ok(enrolment)
    })
    .await
}

/// The driver's enrolment in a product that is not cancelled, if any.
pub async fn open_enrolment(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    product_id: ProductId,
) -> Result<Option<Enrolment>, CoverError> {
    enrolments::table
        .filter(enrolments::driver_id.eq(driver_id))
        .filter(enrolments::product_id.eq(product_id))
        .filter(enrolments::status.ne(EnrolmentStatus::Cancelled.as_str()))
        .select(EnrolmentRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(Enrolment::try_from)
        .transpose()
}

/// An enrolment by id, whoever's it is (ops, jobs). Errors: `ENROLMENT_NOT_FOUND`.
pub async fn get_enrolment(
    conn: &mut AsyncPgConnection,
    enrolment_id: EnrolmentId,
) -> Result<Enrolment, CoverError> {
    enrolments::table
        .find(enrolment_id)
        .select(EnrolmentRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(CoverError::EnrolmentNotFound)
        .and_then(Enrolment::try_from)
}

/// One of the driver's enrolments. Errors: `ENROLMENT_NOT_FOUND`, also for another driver's.
pub async fn get_enrolment_for_driver(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    enrolment_id: EnrolmentId,
) -> Result<Enrolment, CoverError> {
    let enrolment = get_enrolment(conn, enrolment_id).await?;
    if enrolment.driver_id != driver_id {
        return Err(CoverError::EnrolmentNotFound);
    }
    Ok(enrolment)
}

/// The driver's enrolments, cancelled ones included, newest first.
pub async fn list_enrolments(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Vec<Enrolment>, CoverError> {
    enrolments::table
        .filter(enrolments::driver_id.eq(driver_id))
        .order((enrolments::created_at.desc(), enrolments::id.desc()))
        .select(EnrolmentRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(Enrolment::try_from)
        .collect()
}

/// The enrolments of several drivers in one read, each driver's newest first (as
/// [`list_enrolments`]); a driver without any is absent.
pub(crate) async fn list_enrolments_of(
    conn: &mut AsyncPgConnection,
    driver_ids: &[DriverId],
) -> Result<std::collections::HashMap<DriverId, Vec<Enrolment>>, CoverError> {
    let rows: Vec<EnrolmentRow> = enrolments::table
        .filter(enrolments::driver_id.eq_any(driver_ids))
        .order((
            enrolments::driver_id,
            enrolments::created_at.desc(),
            enrolments::id.desc(),
        ))
        .select(EnrolmentRow::as_select())
        .load(conn)
        .await?;
    let mut out: std::collections::HashMap<DriverId, Vec<Enrolment>> =
        std::collections::HashMap::new();
    for row in rows {
        let enrolment = Enrolment::try_from(row)?;
        out.entry(enrolment.driver_id).or_default().push(enrolment);
    }
    Ok(out)
}

/// An enrolment's status history, oldest first.
pub async fn list_enrolment_events(
    conn: &mut AsyncPgConnection,
    enrolment_id: EnrolmentId,
) -> Result<Vec<EnrolmentEvent>, CoverError> {
    enrolment_events::table
        .filter(enrolment_events::enrolment_id.eq(enrolment_id))
        .order(enrolment_events::id.asc())
        .select(EventRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(|r| {
            Ok(EnrolmentEvent {
                enrolment_id: r.enrolment_id,
                from_status: r.from_status.as_deref().map(str::parse).transpose()?,
                to_status: r.to_status.parse()?,
                reason: r.reason,
                actor_type: r.actor_type,
                actor_id: r.actor_id,
                occurred_at: r.occurred_at,
            })
        })
        .collect()
}

/// The result of an enrolment change: the enrolment as it now is, the session the change ended
/// (cancellation only), and the events to publish once the caller's transaction has committed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "publish the events once the change has committed"]
pub struct EnrolmentChanged {
    /// The enrolment after the change.
    pub enrolment: Enrolment,
    /// Whether the status changed (false when it already was the status asked for).
    pub changed: bool,
    /// The session the change ended, if it ended one.
    pub ended_session: Option<CoverSession>,
    /// Events for [`crate::events::publish_cover_event`], after commit.
    pub events: Vec<CoverEvent>,
}

/// Locks an enrolment row for update (inside a transaction).
pub(crate) async fn lock_enrolment(
    conn: &mut AsyncPgConnection,
    enrolment_id: EnrolmentId,
) -> Result<Enrolment, CoverError> {
    enrolments::table
        .find(enrolment_id)
        .select(EnrolmentRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(CoverError::EnrolmentNotFound)
        .and_then(Enrolment::try_from)
}

/// Moves a locked enrolment to `to`, with its event and audit entry.
pub(crate) async fn set_status(
    conn: &mut AsyncPgConnection,
    current: &Enrolment,
    to: EnrolmentStatus,
    reason: &str,
    actor: Actor,
    now: DateTime<Utc>,
) -> Result<Enrolment, CoverError> {
    let status_reason = (to != EnrolmentStatus::Active).then_some(reason);
    let cancelled_at = (to == EnrolmentStatus::Cancelled).then_some(now);
    let row: EnrolmentRow = diesel::update(enrolments::table.find(current.id))
        .set((
            enrolments::status.eq(to.as_str()),
            enrolments::status_reason.eq(status_reason),
            enrolments::updated_at.eq(now),
            enrolments::cancelled_at.eq(cancelled_at),
        ))
        .returning(EnrolmentRow::as_returning())
        .get_result(conn)
        .await?;
    record_event(
        conn,
        current.id,
        Some(current.status),
        to,
        reason,
        actor,
        now,
    )
    .await?;
    let action = match to {
        EnrolmentStatus::Pending => "enrolment.pending",
        EnrolmentStatus::Active => "enrolment.activated",
        EnrolmentStatus::Suspended => "enrolment.suspended",
        EnrolmentStatus::Cancelled => "enrolment.cancelled",
    };
    audit(
        conn,
        actor,
        action,
        "enrolment",
        current.id.to_string(),
        Some(reason),
        serde_json::json!({ "from": current.status.as_str(), "to": to.as_str() }),
    )
    .await?;
    Enrolment::try_from(row)
}

async fn active_session_id(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Option<crate::ids::CoverSessionId>, CoverError> {
    Ok(cover_sessions::table
        .filter(cover_sessions::driver_id.eq(driver_id))
        .filter(cover_sessions::status.eq(SessionStatus::Active.as_str()))
        .select(cover_sessions::id)
        .first(conn)
        .await
        .optional()?)
}

/// Suspends an active enrolment: no new session can start on it until it is reactivated.
///
/// A session already running keeps running (ending cover in the middle of a job is worse than
/// the unpaid minutes); the caller ends it with [`crate::end_session`] when it must. Suspending a
/// suspended enrolment changes nothing. Returns a `Suspended` event for the driver.
///
/// Errors: `INVALID_REASON`; `ENROLMENT_NOT_FOUND`; `INVALID_ENROLMENT_STATUS` unless active.
pub async fn suspend(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    enrolment_id: EnrolmentId,
    reason: &str,
    actor: Actor,
) -> Result<EnrolmentChanged, CoverError> {
    let reason = clean_text(reason).ok_or(CoverError::InvalidReason)?;
    let now = clock.now();
    let driver_id = get_enrolment(conn, enrolment_id).await?.driver_id;
    conn.transaction::<_, CoverError, _>(async |conn| {
        // Serialises with the cover engine, which decides starts under this lock.
        lock_driver(conn, driver_id).await?;
        let current = lock_enrolment(conn, enrolment_id).await?;
        match current.status {
            EnrolmentStatus::Suspended => {
                return Ok(EnrolmentChanged {
                    enrolment: current,
                    changed: false,
                    ended_session: None,
                    events: Vec::new(),
                });
            }
            EnrolmentStatus::Active => {}
            other => {
                return Err(CoverError::InvalidEnrolmentStatus {
                    from: other.as_str(),
                    to: EnrolmentStatus::Suspended.as_str(),
                });
            }
        }
        let enrolment = set_status(
            conn,
            &current,
            EnrolmentStatus::Suspended,
            reason,
            actor,
            now,
        )
        .await?;
        let session_id = active_session_id(conn, enrolment.driver_id).await?;
        Ok(EnrolmentChanged {
            events: vec![CoverEvent {
                driver_id: enrolment.driver_id,
                session_id,
                kind: CoverEventKind::Suspended,
                at: now,
            }],
            enrolment,
            changed: true,
            ended_session: None,
        })
    })
    .await
}

/// Makes a pending or suspended enrolment active again (payments, once the driver can pay; or
/// ops). The caller has checked that the driver can pay. Reactivating an active enrolment
/// changes nothing.
///
/// Errors: `INVALID_REASON`; `ENROLMENT_NOT_FOUND`; `INVALID_ENROLMENT_STATUS` when cancelled.
pub async fn reactivate(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    enrolment_id: EnrolmentId,
    reason: &str,
    actor: Actor,
) -> Result<EnrolmentChanged, CoverError> {
    let reason = clean_text(reason).ok_or(CoverError::InvalidReason)?;
    let now = clock.now();
    conn.transaction::<_, CoverError, _>(async |conn| {
        let current = lock_enrolment(conn, enrolment_id).await?;
        match current.status {
            EnrolmentStatus::Active => Ok(EnrolmentChanged {
                enrolment: current,
                changed: false,
                ended_session: None,
                events: Vec::new(),
            }),
            EnrolmentStatus::Pending | EnrolmentStatus::Suspended => {
                let enrolment =
                    set_status(conn, &current, EnrolmentStatus::Active, reason, actor, now).await?;
                Ok(EnrolmentChanged {
                    enrolment,
                    changed: true,
                    ended_session: None,
                    events: Vec::new(),
                })
            }
            EnrolmentStatus::Cancelled => Err(CoverError::InvalidEnrolmentStatus {
                from: EnrolmentStatus::Cancelled.as_str(),
                to: EnrolmentStatus::Active.as_str(),
            }),
        }
    })
    .await
}

/// What cancelling an enrolment now would cost the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CancelPreview {
    /// The enrolment.
    pub enrolment_id: EnrolmentId,
    /// Its open session, which cancelling would end.
    pub open_session: Option<CoverSession>,
    /// That session's charge if it ended now.
    pub open_session_charge: Option<SessionCharge>,
    /// Sessions of the enrolment that have ended but are not yet charged, added up.
    pub uncharged_total: Money,
    /// What the driver still owes after cancelling now: the two above together.
    pub total_due: Money,
}

/// What cancelling `enrolment` now would cost: the open session's charge if it ended now, plus
/// the ended sessions not yet charged. Reads only.
pub async fn cancel_preview(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    enrolment: &Enrolment,
) -> Result<CancelPreview, CoverError> {
    let now = clock.now();
    let version = pricing::get_version(conn, enrolment.terms_product_version_id).await?;
    let currency = version.terms.currency;
    let open_session = open_session_of_enrolment(conn, enrolment.id).await?;
    let open_session_charge = match &open_session {
        Some(s) => Some(preview_charge(conn, s, now).await?),
        None => None,
    };
    let uncharged: Vec<(Option<i64>, String)> = cover_sessions::table
        .filter(cover_sessions::enrolment_id.eq(enrolment.id))
        .filter(cover_sessions::status.eq(SessionStatus::Ended.as_str()))
        .select((cover_sessions::total_minor, cover_sessions::currency))
        .load(conn)
        .await?;
    let mut uncharged_total = Money::zero(currency);
    for (total, cur) in uncharged {
        let m = Money {
            minor: total.unwrap_or(0),
            currency: cur.parse().map_err(anyhow::Error::new)?,
        };
        uncharged_total = uncharged_total.checked_add(m).map_err(anyhow::Error::new)?;
    }
    let total_due = match &open_session_charge {
        Some(c) => uncharged_total
            .checked_add(c.breakdown.total)
            .map_err(anyhow::Error::new)?,
        None => uncharged_total,
    };
    Ok(CancelPreview {
        enrolment_id: enrolment.id,
        open_session,
        open_session_charge,
        uncharged_total,
        total_due,
    })
}

/// Cancels an enrolment for good. Its open session, if any, is ended first (reason
/// `enrolment_cancelled`) and charged like any other. Cancelling a cancelled enrolment changes
/// nothing. Returns the `Ended` event of that session, to publish after commit.
///
/// Errors: `INVALID_REASON`; `ENROLMENT_NOT_FOUND`.
pub async fn cancel_enrolment(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    enrolment_id: EnrolmentId,
    reason: &str,
    actor: Actor,
) -> Result<EnrolmentChanged, CoverError> {
    let reason = clean_text(reason).ok_or(CoverError::InvalidReason)?;
    let now = clock.now();
    let driver_id = get_enrolment(conn, enrolment_id).await?.driver_id;
    conn.transaction::<_, CoverError, _>(async |conn| {
        lock_driver(conn, driver_id).await?;
        let current = lock_enrolment(conn, enrolment_id).await?;
        if current.status == EnrolmentStatus::Cancelled {
            return Ok(EnrolmentChanged {
                enrolment: current,
                changed: false,
                ended_session: None,
                events: Vec::new(),
            });
        }
        let mut events = Vec::new();
        let ended_session = match open_session_of_enrolment(conn, enrolment_id).await? {
            Some(open) => {
                let request = crate::engine::EndRequest {
                    session_id: open.id,
                    driver_id: Some(driver_id),
                    at: now,
                    reason: EndReason::EnrolmentCancelled,
                    actor: Some(actor),
                };
                let ended = end_one(conn, clock, request).await?;
                events.extend(ended.events);
                Some(ended.session)
            }
            None => None,
        };
        let enrolment = set_status(
            conn,
            &current,
            EnrolmentStatus::Cancelled,
            reason,
            actor,
            now,
        )
        .await?;
        Ok(EnrolmentChanged {
            enrolment,
            changed: true,
            ended_session,
            events,
        })
    })
    .await
}
