//! Charge disputes: a driver disputes what a session cost; ops look at the partner events and
//! the pricing behind the charge, and resolve it — uphold it, adjust it (refund part) or refund
//! it whole — through the payments app's refund of a session charge.
//!
//! Invariants:
//! - only a charged session with a charge above zero can be disputed, by its driver, once: a
//!   session that has had a dispute cannot be disputed again, and the database allows at most
//!   one open dispute per session (a partial unique index), so two racing disputes cannot both
//!   open;
//! - a dispute is resolved once: the resolution is a guarded update of an `open` row it holds
//!   locked, and the refund it makes carries the idempotency key `dispute:<id>`, so a retried
//!   resolution never refunds twice; refund, dispute row, audit entry and text commit together;
//! - the refund reverses the session's ledger charge at its original rates (payments' rule), so
//!   the ledger stays balanced;
//! - the session shows it: `disputed` while its dispute is open, then `adjusted` when the charge
//!   was lowered, else `charged` again (cover's [`cover::record_charge_change`], in the same
//!   transactions).

use crate::error::ClaimsError;
use crate::ids::DisputeId;
use crate::notify;
use crate::schema::charge_disputes;
use crate::support::{Cursor, Edge, ListOrder, MAX_PAGE_SIZE, Page, audit, clean, reason};
use accounts::{Actor, DriverId, StaffId};
use chrono::{DateTime, Utc};
use cover::{CoverSession, CoverSessionId, SessionStatus};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use payments::{KeyedRefundRequest, PaymentsEnv, PaymentsError, RefundId, RefundTarget};
use serde::Serialize;
use shared::error::is_unique_violation;
use shared::{Clock, Currency, Money};

/// Longest dispute details, in characters.
pub const MAX_DETAILS_CHARS: usize = 1000;
const ONE_OPEN_INDEX: &str = "charge_disputes_one_open_per_session";

/// Why a driver disputes a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeReason {
    /// "I was not working then."
    NotWorking,
    /// "That was not the vehicle I was using."
    WrongVehicle,
    /// Something else (details required).
    Other,
}

impl DisputeReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeReason::NotWorking => "not_working",
            DisputeReason::WrongVehicle => "wrong_vehicle",
            DisputeReason::Other => "other",
        }
    }

    fn parse(s: &str) -> Result<Self, ClaimsError> {
        match s {
            "not_working" => Ok(DisputeReason::NotWorking),
            "wrong_vehicle" => Ok(DisputeReason::WrongVehicle),
            "other" => Ok(DisputeReason::Other),
            other => Err(anyhow::anyhow!("unknown dispute reason {other:?}").into()),
        }
    }
}

/// Where a dispute is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    /// Waiting for ops.
    Open,
    /// Ops found the charge right.
    Upheld,
    /// Ops refunded part of it.
    Adjusted,
    /// Ops refunded all of it.
    Refunded,
}

impl DisputeStatus {
    /// Every status.
    pub const ALL: [DisputeStatus; 4] = [
        DisputeStatus::Open,
        DisputeStatus::Upheld,
        DisputeStatus::Adjusted,
        DisputeStatus::Refunded,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::Open => "open",
            DisputeStatus::Upheld => "upheld",
            DisputeStatus::Adjusted => "adjusted",
            DisputeStatus::Refunded => "refunded",
        }
    }

    fn parse(s: &str) -> Result<Self, ClaimsError> {
        DisputeStatus::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown dispute status {s:?}").into())
    }
}

/// A driver's dispute of a session's charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispute {
    /// The dispute (`dsp_…`).
    pub id: DisputeId,
    /// Whose.
    pub driver_id: DriverId,
    /// The session whose charge is disputed.
    pub session_id: CoverSessionId,
    /// Why.
    pub reason: DisputeReason,
    /// The driver's words.
    pub details: Option<String>,
    /// The charge disputed, as it stood when the dispute was opened.
    pub charge: Money,
    /// Where it is.
    pub status: DisputeStatus,
    /// The refund made, when adjusted or refunded.
    pub refund_id: Option<RefundId>,
    /// How much was refunded.
    pub refunded: Option<Money>,
    /// What ops said.
    pub resolution_note: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<StaffId>,
    /// When.
    pub resolved_at: Option<DateTime<Utc>>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = charge_disputes)]
#[diesel(treat_none_as_default_value = false)]
struct DisputeRow {
    id: DisputeId,
    driver_id: DriverId,
    session_id: CoverSessionId,
    reason: String,
    details: Option<String>,
    charge_minor: i64,
    currency: String,
    status: String,
    refund_id: Option<RefundId>,
    refund_minor: Option<i64>,
    resolution_note: Option<String>,
    resolved_by: Option<StaffId>,
    resolved_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<DisputeRow> for Dispute {
    type Error = ClaimsError;
    fn try_from(r: DisputeRow) -> Result<Self, ClaimsError> {
        let currency: Currency = r.currency.parse().map_err(anyhow::Error::new)?;
        let m = |minor: i64| Money { minor, currency };
        Ok(Dispute {
            id: r.id,
            driver_id: r.driver_id,
            session_id: r.session_id,
            reason: DisputeReason::parse(&r.reason)?,
            details: r.details,
            charge: m(r.charge_minor),
            status: DisputeStatus::parse(&r.status)?,
            refund_id: r.refund_id,
            refunded: r.refund_minor.map(m),
            resolution_note: r.resolution_note,
            resolved_by: r.resolved_by,
            resolved_at: r.resolved_at,
            created_at: r.created_at,
        })
    }
}

/// A dispute to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeCharge {
    /// The driver's session whose charge is disputed.
    pub session_id: CoverSessionId,
    /// Why.
    pub reason: DisputeReason,
    /// The driver's words: required for [`DisputeReason::Other`], at most 1000 characters.
    pub details: Option<String>,
}

/// Opens a dispute of one of the driver's charged sessions.
///
/// Errors: `SESSION_NOT_FOUND` (also another driver's), `SESSION_NOT_CHARGED`,
/// `ALREADY_DISPUTED` (`sessionId`); `INVALID_DISPUTE_DETAILS` (`details`).
pub async fn dispute_charge(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    input: DisputeCharge,
) -> Result<Dispute, ClaimsError> {
    let details = match input.details.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(d) => {
            Some(clean(d, MAX_DETAILS_CHARS, true).ok_or(ClaimsError::InvalidDisputeDetails)?)
        }
    };
    if input.reason == DisputeReason::Other && details.is_none() {
        return Err(ClaimsError::InvalidDisputeDetails);
    }
    let session = match cover::get_session_for_driver(conn, driver_id, input.session_id).await {
        Ok(s) => s,
        Err(cover::CoverError::SessionNotFound) => return Err(ClaimsError::SessionNotFound),
        Err(e) => return Err(e.into()),
    };
    let charge = charged_amount(&session).ok_or(ClaimsError::SessionNotCharged)?;
    let now = clock.now();
    let row = DisputeRow {
        id: DisputeId::new(),
        driver_id,
        session_id: session.id,
        reason: input.reason.as_str().to_owned(),
        details: details.map(str::to_owned),
        charge_minor: charge.minor,
        currency: charge.currency.code().to_owned(),
        status: DisputeStatus::Open.as_str().to_owned(),
        refund_id: None,
        refund_minor: None,
        resolution_note: None,
        resolved_by: None,
        resolved_at: None,
        created_at: now,
        updated_at: now,
    };
    let row = &row;
    let result = conn
        .transaction::<_, ClaimsError, _>(async |conn| {
            let earlier: i64 = charge_disputes::table
                .filter(charge_disputes::session_id.eq(row.session_id))
                .count()
                .get_result(conn)
                .await?;
            if earlier > 0 {
                return Err(ClaimsError::AlreadyDisputed);
            }
            let stored: DisputeRow = diesel::insert_into(charge_disputes::table)
                .values(row)
                .returning(DisputeRow::as_returning())
                .get_result(conn)
                .await?;
            let dispute = Dispute::try_from(stored)?;
            cover::record_charge_change(
                conn,
                clock,
                dispute.session_id,
                cover::ChargeChange::Disputed,
                Actor::Driver(driver_id),
            )
            .await?;
            audit(
                conn,
                Actor::Driver(driver_id),
                "dispute.opened",
                "cover_session",
                dispute.session_id.to_string(),
                dispute.details.as_deref(),
                serde_json::json!({
                    "dispute_id": dispute.id.to_string(),
                    "reason": dispute.reason.as_str(),
                    "charge_minor": dispute.charge.minor,
                    "currency": dispute.charge.currency.code(),
                }),
            )
            .await?;
            Ok(dispute)
        })
        .await;
    match result {
        Err(ClaimsError::Database(e)) if is_unique_violation(&e, Some(ONE_OPEN_INDEX)) => {
            Err(ClaimsError::AlreadyDisputed)
        }
        other => other,
    }
}

/// What a session was charged, when it has been charged something.
fn charged_amount(session: &CoverSession) -> Option<Money> {
    let charged = matches!(
        session.status,
        SessionStatus::Charged | SessionStatus::Disputed | SessionStatus::Adjusted
    );
    session
        .charge
        .map(|c| c.total)
        .filter(|total| charged && total.minor > 0)
}

/// How ops resolve a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The charge stands.
    Uphold,
    /// Refund part of the charge to the wallet.
    Adjust {
        /// How much to refund (more than nothing, less than what is left of the charge).
        refund: Money,
    },
    /// Refund all that is left of the charge to the wallet.
    Refund,
}

/// Resolves an open dispute (ops). A refund goes back to the driver's wallet through
/// [`payments::refund_with_key`] (key `dispute:<id>`), reversing the ledger charge at its
/// original rates.
///
/// Errors: `DISPUTE_NOT_FOUND`, `DISPUTE_ALREADY_RESOLVED`, `NOTHING_TO_REFUND` (`disputeId`);
/// `INVALID_ADJUSTMENT` (`refundAmount`); `INVALID_REASON` (the note).
pub async fn resolve_dispute(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    staff_id: StaffId,
    dispute_id: DisputeId,
    resolution: Resolution,
    note: &str,
) -> Result<Dispute, ClaimsError> {
    let note = reason(note)?;
    let now = env.clock.now();
    conn.transaction::<_, ClaimsError, _>(async |conn| {
        let row: DisputeRow = charge_disputes::table
            .find(dispute_id)
            .select(DisputeRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or(ClaimsError::DisputeNotFound)?;
        let dispute = Dispute::try_from(row)?;
        if dispute.status != DisputeStatus::Open {
            return Err(ClaimsError::DisputeAlreadyResolved);
        }
        let target = RefundTarget::SessionCharge(dispute.session_id);
        let (status, amount) = match resolution {
            Resolution::Uphold => (DisputeStatus::Upheld, None),
            Resolution::Refund | Resolution::Adjust { .. } => {
                let refundable = payments::refundable_amount(conn, target, now)
                    .await
                    .map_err(payments_error)?;
                if refundable.minor <= 0 {
                    return Err(ClaimsError::NothingToRefund);
                }
                match resolution {
                    Resolution::Adjust { refund } => {
                        if refund.currency != refundable.currency
                            || refund.minor <= 0
                            || refund.minor >= refundable.minor
                        {
                            return Err(ClaimsError::InvalidAdjustment { refundable });
                        }
                        (DisputeStatus::Adjusted, Some(refund))
                    }
                    _ => (DisputeStatus::Refunded, Some(refundable)),
                }
            }
        };
        let refund = match amount {
            None => None,
            Some(amount) => Some(
                payments::refund_with_key(
                    conn,
                    env,
                    KeyedRefundRequest {
                        target,
                        amount: Some(amount),
                        reason: format!("Charge dispute: {note}")
                            .chars()
                            .take(payments::refunds::MAX_REASON_CHARS)
                            .collect(),
                        actor: Actor::Staff(staff_id),
                        idempotency_key: format!("dispute:{dispute_id}"),
                    },
                )
                .await
                .map_err(payments_error)?,
            ),
        };
        let updated: DisputeRow = diesel::update(charge_disputes::table.find(dispute_id))
            .filter(charge_disputes::status.eq(DisputeStatus::Open.as_str()))
            .set((
                charge_disputes::status.eq(status.as_str()),
                charge_disputes::refund_id.eq(refund.as_ref().map(|r| r.id)),
                charge_disputes::refund_minor.eq(refund.as_ref().map(|r| r.amount.minor)),
                charge_disputes::resolution_note.eq(note),
                charge_disputes::resolved_by.eq(staff_id),
                charge_disputes::resolved_at.eq(now),
                charge_disputes::updated_at.eq(now),
            ))
            .returning(DisputeRow::as_returning())
            .get_result(conn)
            .await?;
        let resolved = Dispute::try_from(updated)?;
        audit(
            conn,
            Actor::Staff(staff_id),
            "dispute.resolved",
            "cover_session",
            resolved.session_id.to_string(),
            Some(note),
            serde_json::json!({
                "dispute_id": resolved.id.to_string(),
                "outcome": status.as_str(),
                "refund_id": resolved.refund_id.map(|r| r.to_string()),
                "refund_minor": resolved.refunded.map(|m| m.minor),
            }),
        )
        .await?;
        let session = cover::record_charge_change(
            conn,
            env.clock.as_ref(),
            resolved.session_id,
            cover::ChargeChange::DisputeSettled,
            Actor::Staff(staff_id),
        )
        .await?;
        let outcome = match resolved.refunded {
            None => "the charge stands".to_owned(),
            Some(m) => format!("{m} refunded to your wallet"),
        };
        notify::dispute_resolved(
            conn,
            resolved.driver_id,
            resolved.id,
            &session.certificate_number,
            outcome,
        )
        .await?;
        Ok(resolved)
    })
    .await
}

/// Payments' answer as ours: what ops can fix keeps its meaning, the rest is internal.
fn payments_error(e: PaymentsError) -> ClaimsError {
    match e {
        PaymentsError::Database(e) => ClaimsError::Database(e),
        PaymentsError::RefundTooLarge { refundable, .. } => {
            ClaimsError::InvalidAdjustment { refundable }
        }
        PaymentsError::NotRefundable(_) => ClaimsError::NothingToRefund,
        other => ClaimsError::Internal(anyhow::Error::new(other)),
    }
}

/// A dispute by id, whoever's it is (ops). Errors: `DISPUTE_NOT_FOUND`.
pub async fn get_dispute(
    conn: &mut AsyncPgConnection,
    dispute_id: DisputeId,
) -> Result<Dispute, ClaimsError> {
    charge_disputes::table
        .find(dispute_id)
        .select(DisputeRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(ClaimsError::DisputeNotFound)
        .and_then(Dispute::try_from)
}

/// Which disputes [`list_disputes`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisputeFilter {
    /// Only this driver's.
    pub driver_id: Option<DriverId>,
    /// Only disputes in one of these statuses (all when empty).
    pub statuses: Vec<DisputeStatus>,
}

/// Disputes by opening time (newest or oldest first, then id), `first` at a time (at most
/// [`MAX_PAGE_SIZE`]) after the cursor `after`. Errors: `INVALID_CURSOR`.
pub async fn list_disputes(
    conn: &mut AsyncPgConnection,
    filter: &DisputeFilter,
    order: ListOrder,
    after: Option<&str>,
    first: i64,
) -> Result<Page<Dispute>, ClaimsError> {
    let first = first.clamp(0, MAX_PAGE_SIZE);
    let mut query = charge_disputes::table
        .select(DisputeRow::as_select())
        .into_boxed();
    if let Some(driver_id) = filter.driver_id {
        query = query.filter(charge_disputes::driver_id.eq(driver_id));
    }
    if !filter.statuses.is_empty() {
        let names: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        query = query.filter(charge_disputes::status.eq_any(names));
    }
    if let Some(after) = after {
        let cursor = Cursor::decode(after)?;
        let at = cursor.at()?;
        let id = DisputeId(cursor.id);
        query = match order {
            ListOrder::NewestFirst => query.filter(
                charge_disputes::created_at
                    .lt(at)
                    .or(charge_disputes::created_at
                        .eq(at)
                        .and(charge_disputes::id.lt(id))),
            ),
            ListOrder::OldestFirst => query.filter(
                charge_disputes::created_at
                    .gt(at)
                    .or(charge_disputes::created_at
                        .eq(at)
                        .and(charge_disputes::id.gt(id))),
            ),
        };
    }
    query = match order {
        ListOrder::NewestFirst => query.order((
            charge_disputes::created_at.desc(),
            charge_disputes::id.desc(),
        )),
        ListOrder::OldestFirst => {
            query.order((charge_disputes::created_at.asc(), charge_disputes::id.asc()))
        }
    };
    let mut rows = query.limit(first + 1).load(conn).await?;
    let has_next_page = i64::try_from(rows.len()).unwrap_or(i64::MAX) > first;
    rows.truncate(usize::try_from(first).unwrap_or(0));
    let edges = rows
        .into_iter()
        .map(|r| {
            let node = Dispute::try_from(r)?;
            Ok(Edge {
                cursor: Cursor::of(node.created_at, node.id.uuid()).encode(),
                node,
            })
        })
        .collect::<Result<Vec<_>, ClaimsError>>()?;
    Ok(Page {
        edges,
        has_next_page,
    })
}

/// The rule that produced a session's charge: the product version's billing rules and the
/// session's locked rate, beside the stored breakdown ([`cover::StoredCharge`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChargeExplanation {
    /// The session's stored charge (minutes, billed minutes, rule, split), if priced.
    pub charge: Option<cover::StoredCharge>,
    /// The hourly rate locked when the session started.
    pub hourly_rate: Money,
    /// The product version it was priced on.
    pub product_version_id: pricing::ProductVersionId,
    /// The shortest time charged for.
    pub minimum_charge_minutes: u32,
    /// Time beyond the minimum is charged in steps of this many started minutes.
    pub billing_increment_minutes: u32,
    /// The most a driver pays in one UK day.
    pub daily_cap: Money,
    /// The partner gap rule, in minutes.
    pub gap_rule_minutes: u32,
    /// Tail cover after the gap, in minutes.
    pub tail_cover_minutes: u32,
}

/// Everything behind a disputed charge: the session, the partner events that drove it, and the
/// rule that priced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisputeEvidence {
    /// The session.
    pub session: CoverSession,
    /// The partner events recorded against it, in the order they happened (none for a session
    /// the driver started).
    pub partner_events: Vec<partners::SessionShiftEvent>,
    /// How it was priced.
    pub pricing: ChargeExplanation,
}

/// What ops (and the driver) see behind a dispute's charge.
pub async fn dispute_evidence(
    conn: &mut AsyncPgConnection,
    session_id: CoverSessionId,
) -> Result<DisputeEvidence, ClaimsError> {
    let session = cover::get_session(conn, session_id).await?;
    let partner_events = partners::shift_events_for_session(conn, session_id).await?;
    let version = pricing::get_version(conn, session.product_version_id).await?;
    let rules = &version.terms.rules;
    let pricing = ChargeExplanation {
        charge: session.charge,
        hourly_rate: session.hourly_rate,
        product_version_id: session.product_version_id,
        minimum_charge_minutes: rules.minimum_charge_minutes,
        billing_increment_minutes: rules.billing_increment_minutes,
        daily_cap: version.terms.daily_cap(),
        gap_rule_minutes: rules.gap_rule_minutes,
        tail_cover_minutes: rules.tail_cover_minutes,
    };
    Ok(DisputeEvidence {
        session,
        partner_events,
        pricing,
    })
}
