//! Claims: first notice of loss, reading claims back, and their life in ops' hands.
//!
//! States: `reported → acknowledged → under_review → settled | declined | withdrawn`. The driver
//! may withdraw an open claim; staff move it along the rest ([`ClaimStatus::can_become`]), with
//! settlement through [`settle_claim`] (it carries the amount paid).
//!
//! Invariants:
//! - a claim is tied, when it is reported, to the session that covered the vehicle at the time of
//!   loss ([`crate::lookup::cover_at_loss`]), or flagged "no cover at time of loss" with why and
//!   the nearest session; that finding is never recomputed, so what the driver was told stays;
//! - a client idempotency key reports at most one claim per driver (a unique constraint): the
//!   same request again returns the same claim, another request with the key is refused;
//! - every status change is a guarded update of the status it was read in, written with a
//!   `claim_status_changes` row, an audit entry and a text to the driver (cause
//!   `claim_status:<claim>:<status>`, so each is sent once), all in one transaction;
//! - money is integer minor units of the claim's currency (the session's, else GBP).

use crate::error::ClaimsError;
use crate::ids::{ClaimId, ClaimPhotoId};
use crate::lookup::{CoverAtLoss, CoverBasis, NoCoverReason, cover_at_loss};
use crate::notify;
use crate::photos::attach_photos;
use crate::schema::{claim_reserve_changes, claim_status_changes, claims};
use crate::support::{
    Cursor, Edge, ListOrder, MAX_PAGE_SIZE, Page, actor_type_name, audit, clean, idempotency_key,
    new_claim_reference, reason,
};
use accounts::{Actor, DriverId, StaffId, VehicleId};
use chrono::{DateTime, Duration, Utc};
use cover::CoverSessionId;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use sha2::{Digest, Sha256};
use shared::error::is_unique_violation;
use shared::{Clock, Currency, Money};
use std::fmt;

/// How far ahead of our clock a time of loss may be (a phone's clock runs a little fast).
pub const CLOCK_SKEW: Duration = Duration::minutes(5);
/// The oldest loss that can be reported in the app.
pub const MAX_LOSS_AGE_DAYS: i64 = 365;
/// Longest location, in characters.
pub const MAX_LOCATION_CHARS: usize = 300;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;

const KEY_CONSTRAINT: &str = "claims_driver_key_unique";
const REFERENCE_CONSTRAINT: &str = "claims_reference_unique";
const REFERENCE_ATTEMPTS: usize = 5;

/// Where a claim is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// The driver reported it; nobody has looked yet.
    Reported,
    /// The claims team has it.
    Acknowledged,
    /// Being assessed.
    UnderReview,
    /// Paid; closed.
    Settled,
    /// Not covered or not payable; closed.
    Declined,
    /// The driver withdrew it; closed.
    Withdrawn,
}

impl ClaimStatus {
    /// Every status.
    pub const ALL: [ClaimStatus; 6] = [
        ClaimStatus::Reported,
        ClaimStatus::Acknowledged,
        ClaimStatus::UnderReview,
        ClaimStatus::Settled,
        ClaimStatus::Declined,
        ClaimStatus::Withdrawn,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Reported => "reported",
            ClaimStatus::Acknowledged => "acknowledged",
            ClaimStatus::UnderReview => "under_review",
            ClaimStatus::Settled => "settled",
            ClaimStatus::Declined => "declined",
            ClaimStatus::Withdrawn => "withdrawn",
        }
    }

    /// How the status reads in a message to the driver.
    pub fn describe(self) -> &'static str {
        match self {
            ClaimStatus::Reported => "received",
            ClaimStatus::Acknowledged => "with our claims team",
            ClaimStatus::UnderReview => "under review",
            ClaimStatus::Settled => "settled",
            ClaimStatus::Declined => "declined",
            ClaimStatus::Withdrawn => "withdrawn",
        }
    }

    /// Whether the claim is closed (nothing more happens to it).
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            ClaimStatus::Settled | ClaimStatus::Declined | ClaimStatus::Withdrawn
        )
    }

    /// Whether a claim in this status may move to `to`.
    pub fn can_become(self, to: ClaimStatus) -> bool {
        use ClaimStatus::*;
        matches!(
            (self, to),
            (Reported, Acknowledged)
                | (Acknowledged, UnderReview)
                | (UnderReview, Settled)
                | (Reported | Acknowledged | UnderReview, Declined)
                | (Reported | Acknowledged | UnderReview, Withdrawn)
        )
    }
}

impl fmt::Display for ClaimStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ClaimStatus {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClaimStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown claim status {s:?}"))
    }
}

/// What the claim found about cover at the time of loss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClaimCover {
    /// Covered by a session.
    Covered {
        /// The session.
        session_id: CoverSessionId,
        /// Its certificate number.
        certificate_number: String,
        /// Which part of the session.
        basis: CoverBasis,
    },
    /// No cover at the time of loss.
    NotCovered {
        /// Why.
        reason: NoCoverReason,
        /// The vehicle's session nearest to the time of loss, if any.
        nearest_session_id: Option<CoverSessionId>,
    },
}

/// A claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    /// The claim (`clm_…`).
    pub id: ClaimId,
    /// What the driver quotes, e.g. `CLM-7K4Q-9XM2`.
    pub reference: String,
    /// Whose claim.
    pub driver_id: DriverId,
    /// The vehicle involved.
    pub vehicle_id: VehicleId,
    /// When the loss happened.
    pub occurred_at: DateTime<Utc>,
    /// When the driver reported it.
    pub reported_at: DateTime<Utc>,
    /// Where.
    pub location: String,
    /// What happened, in the driver's words.
    pub description: String,
    /// Whether another party was involved.
    pub third_party_involved: bool,
    /// Whether anyone was hurt.
    pub injuries: bool,
    /// Cover at the time of loss.
    pub cover: ClaimCover,
    /// Where it is.
    pub status: ClaimStatus,
    /// What ops expect it to cost, once set.
    pub reserve: Option<Money>,
    /// What was paid, once settled.
    pub paid: Option<Money>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was closed.
    pub closed_at: Option<DateTime<Utc>>,
}

impl Claim {
    /// The currency of its amounts.
    pub fn currency(&self) -> Currency {
        self.reserve
            .or(self.paid)
            .map_or(Currency::Gbp, |m| m.currency)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = claims)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct ClaimRow {
    pub id: ClaimId,
    pub reference: String,
    pub driver_id: DriverId,
    pub vehicle_id: VehicleId,
    pub occurred_at: DateTime<Utc>,
    pub reported_at: DateTime<Utc>,
    pub location: String,
    pub description: String,
    pub third_party_involved: bool,
    pub injuries: bool,
    pub session_id: Option<CoverSessionId>,
    pub certificate_number: Option<String>,
    pub cover_basis: Option<String>,
    pub no_cover_reason: Option<String>,
    pub nearest_session_id: Option<CoverSessionId>,
    pub status: String,
    pub currency: String,
    pub reserve_minor: Option<i64>,
    pub paid_minor: Option<i64>,
    pub idempotency_key: String,
    pub request_fingerprint: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl ClaimRow {
    pub(crate) fn currency(&self) -> Result<Currency, ClaimsError> {
        Ok(self.currency.parse().map_err(anyhow::Error::new)?)
    }

    pub(crate) fn status(&self) -> Result<ClaimStatus, ClaimsError> {
        Ok(self.status.parse()?)
    }
}

impl TryFrom<ClaimRow> for Claim {
    type Error = ClaimsError;
    fn try_from(r: ClaimRow) -> Result<Self, ClaimsError> {
        let currency = r.currency()?;
        let status = r.status()?;
        let cover = match (r.session_id, r.certificate_number, r.cover_basis.as_deref()) {
            (Some(session_id), Some(certificate_number), Some(basis)) => ClaimCover::Covered {
                session_id,
                certificate_number,
                basis: CoverBasis::parse(basis)?,
            },
            _ => ClaimCover::NotCovered {
                reason: NoCoverReason::parse(r.no_cover_reason.as_deref().unwrap_or(""))?,
                nearest_session_id: r.nearest_session_id,
            },
        };
        let m = |minor: i64| Money { minor, currency };
        Ok(Claim {
            id: r.id,
            reference: r.reference,
            driver_id: r.driver_id,
            vehicle_id: r.vehicle_id,
            occurred_at: r.occurred_at,
            reported_at: r.reported_at,
            location: r.location,
            description: r.description,
            third_party_involved: r.third_party_involved,
            injuries: r.injuries,
            cover,
            status,
            reserve: r.reserve_minor.map(m),
            paid: r.paid_minor.map(m),
            updated_at: r.updated_at,
            closed_at: r.closed_at,
        })
    }
}

/// A first notice of loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportClaim {
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Where (1 to 300 characters).
    pub location: String,
    /// What happened (1 to 4000 characters).
    pub description: String,
    /// The driver's vehicle involved.
    pub vehicle_id: VehicleId,
    /// Whether another party was involved.
    pub third_party_involved: bool,
    /// Whether anyone was hurt.
    pub injuries: bool,
    /// Photos uploaded beforehand ([`crate::upload_photo`]), at most
    /// [`crate::photos::MAX_PHOTOS_PER_CLAIM`].
    pub photo_ids: Vec<ClaimPhotoId>,
    /// The client's key for this report: the same key reports at most one claim.
    pub idempotency_key: String,
}

/// The result of [`report_claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimReported {
    /// The claim.
    pub claim: Claim,
    /// Whether this was a repeat of an earlier report with the same key.
    pub replayed: bool,
}

fn fingerprint(input: &ReportClaim, location: &str, description: &str) -> String {
    let mut photos: Vec<String> = input.photo_ids.iter().map(|p| p.to_string()).collect();
    photos.sort();
    let text = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        input.occurred_at.timestamp_micros(),
        location,
        description,
        input.vehicle_id,
        input.third_party_involved,
        input.injuries,
        photos.join(",")
    );
    hex::encode(Sha256::digest(text.as_bytes()))
}

async fn find_by_key(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    key: &str,
) -> Result<Option<ClaimRow>, ClaimsError> {
    Ok(claims::table
        .filter(claims::driver_id.eq(driver_id))
        .filter(claims::idempotency_key.eq(key))
        .select(ClaimRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

fn replay(row: ClaimRow, fingerprint: &str) -> Result<ClaimReported, ClaimsError> {
    if row.request_fingerprint != fingerprint {
        return Err(ClaimsError::IdempotencyKeyReused);
    }
    Ok(ClaimReported {
        claim: Claim::try_from(row)?,
        replayed: true,
    })
}

/// Reports a claim for one of the driver's vehicles: finds the cover at the time of loss,
/// attaches the photos, records the first status, and texts the driver the reference.
///
/// Errors: `LOSS_TIME_IN_FUTURE`, `LOSS_TIME_TOO_OLD` (`occurredAt`), `VEHICLE_NOT_FOUND`
/// (`vehicleId`, also another driver's or a removed one), `INVALID_LOCATION`,
/// `INVALID_DESCRIPTION`, `INVALID_IDEMPOTENCY_KEY`, `IDEMPOTENCY_KEY_REUSED`,
/// `TOO_MANY_PHOTOS`, `PHOTO_NOT_FOUND`, `PHOTO_ALREADY_ATTACHED` (`photoIds`).
pub async fn report_claim(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    input: ReportClaim,
) -> Result<ClaimReported, ClaimsError> {
    let now = clock.now();
    let key = idempotency_key(&input.idempotency_key)?;
    let location =
        clean(&input.location, MAX_LOCATION_CHARS, false).ok_or(ClaimsError::InvalidLocation)?;
    let description = clean(&input.description, MAX_DESCRIPTION_CHARS, true)
        .ok_or(ClaimsError::InvalidDescription)?;
    let fingerprint = fingerprint(&input, location, description);
    if let Some(existing) = find_by_key(conn, driver_id, key).await? {
        return replay(existing, &fingerprint);
    }
    if input.occurred_at > now + CLOCK_SKEW {
        return Err(ClaimsError::LossTimeInFuture);
    }
    if input.occurred_at < now - Duration::days(MAX_LOSS_AGE_DAYS) {
        return Err(ClaimsError::LossTimeTooOld);
    }
    if input.photo_ids.len() > crate::photos::MAX_PHOTOS_PER_CLAIM {
        return Err(ClaimsError::TooManyPhotos);
    }
    match accounts::get_vehicle_for_driver(conn, driver_id, input.vehicle_id).await {
        Ok(_) => {}
        Err(accounts::AccountsError::NotFound(_)) => return Err(ClaimsError::VehicleNotFound),
        Err(e) => return Err(e.into()),
    }
    let cover = cover_at_loss(conn, driver_id, input.vehicle_id, input.occurred_at).await?;
    let (session_id, certificate_number, basis, no_cover, nearest, currency) = match &cover {
        CoverAtLoss::Covered { session, basis } => (
            Some(session.id),
            Some(session.certificate_number.clone()),
            Some(basis.as_str().to_owned()),
            None,
            None,
            session.hourly_rate.currency,
        ),
        CoverAtLoss::NotCovered { reason, nearest } => (
            None,
            None,
            None,
            Some(reason.as_str().to_owned()),
            nearest.as_ref().map(|s| s.id),
            Currency::Gbp,
        ),
    };
    for _ in 0..REFERENCE_ATTEMPTS {
        let row = ClaimRow {
            id: ClaimId::new(),
            reference: new_claim_reference(),
            driver_id,
            vehicle_id: input.vehicle_id,
            occurred_at: input.occurred_at,
            reported_at: now,
            location: location.to_owned(),
            description: description.to_owned(),
            third_party_involved: input.third_party_involved,
            injuries: input.injuries,
            session_id,
            certificate_number: certificate_number.clone(),
            cover_basis: basis.clone(),
            no_cover_reason: no_cover.clone(),
            nearest_session_id: nearest,
            status: ClaimStatus::Reported.as_str().to_owned(),
            currency: currency.code().to_owned(),
            reserve_minor: None,
            paid_minor: None,
            idempotency_key: key.to_owned(),
            request_fingerprint: fingerprint.clone(),
            created_at: now,
            updated_at: now,
            closed_at: None,
        };
        match insert_claim(conn, row, &input.photo_ids, now).await {
            Ok(claim) => {
                tracing::info!(claim_id = %claim.id, reference = %claim.reference, covered = matches!(claim.cover, ClaimCover::Covered { .. }), "claim reported");
                return Ok(ClaimReported {
                    claim,
                    replayed: false,
                });
            }
            Err(ClaimsError::Database(e))
                if is_unique_violation(&e, Some(REFERENCE_CONSTRAINT)) =>
            {
                continue;
            }
            Err(ClaimsError::Database(e)) if is_unique_violation(&e, Some(KEY_CONSTRAINT)) => {
                // Lost a race with the same key: answer as a repeat.
                let existing = find_by_key(conn, driver_id, key)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("claim with key vanished"))?;
                return replay(existing, &fingerprint);
            }
            Err(e) => return Err(e),
        }
    }
    Err(anyhow::anyhow!("no unused claim reference after {REFERENCE_ATTEMPTS} draws").into())
}

async fn insert_claim(
    conn: &mut AsyncPgConnection,
    row: ClaimRow,
    photo_ids: &[ClaimPhotoId],
    now: DateTime<Utc>,
) -> Result<Claim, ClaimsError> {
    let row = &row;
    conn.transaction::<_, ClaimsError, _>(async |conn| {
        let stored: ClaimRow = diesel::insert_into(claims::table)
            .values(row)
            .returning(ClaimRow::as_returning())
            .get_result(conn)
            .await?;
        let claim = Claim::try_from(stored)?;
        attach_photos(conn, claim.driver_id, claim.id, photo_ids, now).await?;
        record_change(
            conn,
            claim.id,
            None,
            ClaimStatus::Reported,
            "Reported by the driver",
            Actor::Driver(claim.driver_id),
            now,
        )
        .await?;
        audit(
            conn,
            Actor::Driver(claim.driver_id),
            "claim.reported",
            "claim",
            claim.id.to_string(),
            None,
            serde_json::json!({
                "reference": claim.reference,
                "vehicle_id": claim.vehicle_id.to_string(),
                "occurred_at": claim.occurred_at,
                "cover": claim.cover,
                "photos": photo_ids.len(),
            }),
        )
        .await?;
        notify::claim_received(conn, &claim).await?;
        Ok(claim)
    })
    .await
}

async fn record_change(
    conn: &mut AsyncPgConnection,
    claim_id: ClaimId,
    from: Option<ClaimStatus>,
    to: ClaimStatus,
    reason: &str,
    actor: Actor,
    at: DateTime<Utc>,
) -> Result<(), ClaimsError> {
    let (_, actor_id) = crate::support::actor_parts(actor);
    diesel::insert_into(claim_status_changes::table)
        .values((
            claim_status_changes::claim_id.eq(claim_id),
            claim_status_changes::from_status.eq(from.map(ClaimStatus::as_str)),
            claim_status_changes::to_status.eq(to.as_str()),
            claim_status_changes::reason.eq(reason),
            claim_status_changes::actor_type.eq(actor_type_name(actor)),
            claim_status_changes::actor_id.eq(actor_id),
            claim_status_changes::occurred_at.eq(at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// A claim by id, whoever's it is (ops). Errors: `CLAIM_NOT_FOUND`.
pub async fn get_claim(
    conn: &mut AsyncPgConnection,
    claim_id: ClaimId,
) -> Result<Claim, ClaimsError> {
    claims::table
        .find(claim_id)
        .select(ClaimRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(ClaimsError::ClaimNotFound)
        .and_then(Claim::try_from)
}

/// One of the driver's claims. Errors: `CLAIM_NOT_FOUND`, also for another driver's.
pub async fn get_claim_for_driver(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    claim_id: ClaimId,
) -> Result<Claim, ClaimsError> {
    let claim = get_claim(conn, claim_id).await?;
    if claim.driver_id != driver_id {
        return Err(ClaimsError::ClaimNotFound);
    }
    Ok(claim)
}

/// The claim with a reference, if any.
pub async fn find_by_reference(
    conn: &mut AsyncPgConnection,
    reference: &str,
) -> Result<Option<Claim>, ClaimsError> {
    claims::table
        .filter(claims::reference.eq(reference.trim().to_ascii_uppercase()))
        .select(ClaimRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(Claim::try_from)
        .transpose()
}

/// Which claims [`list_claims`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimFilter {
    /// Only this driver's.
    pub driver_id: Option<DriverId>,
    /// Only claims in one of these statuses (all when empty).
    pub statuses: Vec<ClaimStatus>,
}

/// Claims by report time (newest or oldest first, then id), `first` at a time (at most
/// [`MAX_PAGE_SIZE`]) after the cursor `after`. Errors: `INVALID_CURSOR`.
pub async fn list_claims(
    conn: &mut AsyncPgConnection,
    filter: &ClaimFilter,
    order: ListOrder,
    after: Option<&str>,
    first: i64,
) -> Result<Page<Claim>, ClaimsError> {
    let first = first.clamp(0, MAX_PAGE_SIZE);
    let mut query = claims::table.select(ClaimRow::as_select()).into_boxed();
    if let Some(driver_id) = filter.driver_id {
        query = query.filter(claims::driver_id.eq(driver_id));
    }
    if !filter.statuses.is_empty() {
        let names: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        query = query.filter(claims::status.eq_any(names));
    }
    if let Some(after) = after {
        let cursor = Cursor::decode(after)?;
        let at = cursor.at()?;
        let id = ClaimId(cursor.id);
        query = match order {
            ListOrder::NewestFirst => query.filter(
                claims::reported_at
                    .lt(at)
                    .or(claims::reported_at.eq(at).and(claims::id.lt(id))),
            ),
            ListOrder::OldestFirst => query.filter(
                claims::reported_at
                    .gt(at)
                    .or(claims::reported_at.eq(at).and(claims::id.gt(id))),
            ),
        };
    }
    query = match order {
        ListOrder::NewestFirst => query.order((claims::reported_at.desc(), claims::id.desc())),
        ListOrder::OldestFirst => query.order((claims::reported_at.asc(), claims::id.asc())),
    };
    let mut rows = query.limit(first + 1).load(conn).await?;
    let has_next_page = i64::try_from(rows.len()).unwrap_or(i64::MAX) > first;
    rows.truncate(usize::try_from(first).unwrap_or(0));
    let edges = rows
        .into_iter()
        .map(|r| {
            let node = Claim::try_from(r)?;
            Ok(Edge {
                cursor: Cursor::of(node.reported_at, node.id.uuid()).encode(),
                node,
            })
        })
        .collect::<Result<Vec<_>, ClaimsError>>()?;
    Ok(Page {
        edges,
        has_next_page,
    })
}

/// One status change of a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimStatusChange {
    /// The status before (`None` for the first).
    pub from: Option<ClaimStatus>,
    /// The status after.
    pub to: ClaimStatus,
    /// Why.
    pub reason: String,
    /// `driver`, `staff` or `system`.
    pub actor_type: String,
    /// The actor's id (`drv_…`, `stf_…`), when there is one.
    pub actor_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A claim's status changes, oldest first.
pub async fn claim_history(
    conn: &mut AsyncPgConnection,
    claim_id: ClaimId,
) -> Result<Vec<ClaimStatusChange>, ClaimsError> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        Option<String>,
        String,
        String,
        String,
        Option<String>,
        DateTime<Utc>,
    )> = claim_status_changes::table
        .filter(claim_status_changes::claim_id.eq(claim_id))
        .order((
            claim_status_changes::occurred_at.asc(),
            claim_status_changes::id.asc(),
        ))
        .select((
            claim_status_changes::from_status,
            claim_status_changes::to_status,
            claim_status_changes::reason,
            claim_status_changes::actor_type,
            claim_status_changes::actor_id,
            claim_status_changes::occurred_at,
        ))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(from, to, reason, actor_type, actor_id, at)| {
            Ok(ClaimStatusChange {
                from: from.as_deref().map(str::parse).transpose()?,
                to: to.parse()?,
                reason,
                actor_type,
                actor_id,
                at,
            })
        })
        .collect()
}

async fn lock_claim(
    conn: &mut AsyncPgConnection,
    claim_id: ClaimId,
) -> Result<ClaimRow, ClaimsError> {
    claims::table
        .find(claim_id)
        .select(ClaimRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(ClaimsError::ClaimNotFound)
}

/// Moves a locked claim to `to` (checked), with its change row, audit entry and text.
async fn move_claim(
    conn: &mut AsyncPgConnection,
    row: ClaimRow,
    to: ClaimStatus,
    why: &str,
    actor: Actor,
    paid: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Claim, ClaimsError> {
    let from = row.status()?;
    if !from.can_become(to) {
        return Err(ClaimsError::InvalidTransition {
            from: from.as_str(),
            to: to.as_str(),
        });
    }
    let closed_at = to.is_closed().then_some(now);
    let updated: ClaimRow = diesel::update(claims::table.find(row.id))
        .filter(claims::status.eq(from.as_str()))
        .set((
            claims::status.eq(to.as_str()),
            claims::paid_minor.eq(paid),
            claims::closed_at.eq(closed_at),
            claims::updated_at.eq(now),
        ))
        .returning(ClaimRow::as_returning())
        .get_result(conn)
        .await?;
    let claim = Claim::try_from(updated)?;
    record_change(conn, claim.id, Some(from), to, why, actor, now).await?;
    audit(
        conn,
        actor,
        "claim.status_changed",
        "claim",
        claim.id.to_string(),
        Some(why),
        serde_json::json!({
            "reference": claim.reference,
            "from": from.as_str(),
            "to": to.as_str(),
            "paid_minor": paid,
        }),
    )
    .await?;
    notify::claim_status_changed(conn, &claim).await?;
    Ok(claim)
}

/// Moves a claim along its states (staff): to `acknowledged`, `under_review` or `declined`.
/// Settlement goes through [`settle_claim`]; withdrawal is the driver's ([`withdraw_claim`]).
///
/// Errors: `CLAIM_NOT_FOUND`, `INVALID_TRANSITION` (`status`), `INVALID_REASON`.
pub async fn transition_claim(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    staff_id: StaffId,
    claim_id: ClaimId,
    to: ClaimStatus,
    why: &str,
) -> Result<Claim, ClaimsError> {
    let why = reason(why)?;
    let now = clock.now();
    conn.transaction::<_, ClaimsError, _>(async |conn| {
        let row = lock_claim(conn, claim_id).await?;
        if matches!(
            to,
            ClaimStatus::Settled | ClaimStatus::Withdrawn | ClaimStatus::Reported
        ) {
            return Err(ClaimsError::InvalidTransition {
                from: row.status()?.as_str(),
                to: to.as_str(),
            });
        }
        move_claim(conn, row, to, why, Actor::Staff(staff_id), None, now).await
    })
    .await
}

/// The driver withdraws one of their open claims.
///
/// Errors: `CLAIM_NOT_FOUND` (also another driver's), `INVALID_TRANSITION` (a closed claim),
/// `INVALID_REASON`.
pub async fn withdraw_claim(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    driver_id: DriverId,
    claim_id: ClaimId,
    why: &str,
) -> Result<Claim, ClaimsError> {
    let why = reason(why)?;
    let now = clock.now();
    conn.transaction::<_, ClaimsError, _>(async |conn| {
        let row = lock_claim(conn, claim_id).await?;
        if row.driver_id != driver_id {
            return Err(ClaimsError::ClaimNotFound);
        }
        move_claim(
            conn,
            row,
            ClaimStatus::Withdrawn,
            why,
            Actor::Driver(driver_id),
            None,
            now,
        )
        .await
    })
    .await
}

/// Settles a claim under review with the amount paid (minor units of the claim's currency).
///
/// Errors: `CLAIM_NOT_FOUND`, `INVALID_AMOUNT` (`amount`), `INVALID_TRANSITION`,
/// `INVALID_REASON`.
pub async fn settle_claim(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    staff_id: StaffId,
    claim_id: ClaimId,
    paid_minor: i64,
    why: &str,
) -> Result<Claim, ClaimsError> {
    let why = reason(why)?;
    if paid_minor < 0 {
        return Err(ClaimsError::InvalidAmount);
    }
    let now = clock.now();
    conn.transaction::<_, ClaimsError, _>(async |conn| {
        let row = lock_claim(conn, claim_id).await?;
        move_claim(
            conn,
            row,
            ClaimStatus::Settled,
            why,
            Actor::Staff(staff_id),
            Some(paid_minor),
            now,
        )
        .await
    })
    .await
}

/// Sets what ops expect a claim to cost (minor units of the claim's currency). Every change is
/// kept, so the bordereau can read the reserve as it stood at a month's end.
///
/// Errors: `CLAIM_NOT_FOUND`, `INVALID_AMOUNT` (`amount`), `CLAIM_CLOSED`, `INVALID_REASON`.
pub async fn set_claim_reserve(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    staff_id: StaffId,
    claim_id: ClaimId,
    reserve_minor: i64,
    why: &str,
) -> Result<Claim, ClaimsError> {
    let why = reason(why)?;
    if reserve_minor < 0 {
        return Err(ClaimsError::InvalidAmount);
    }
    let now = clock.now();
    conn.transaction::<_, ClaimsError, _>(async |conn| {
        let row = lock_claim(conn, claim_id).await?;
        if row.status()?.is_closed() {
            return Err(ClaimsError::ClaimClosed);
        }
        let previous = row.reserve_minor;
        let updated: ClaimRow = diesel::update(claims::table.find(claim_id))
            .set((
                claims::reserve_minor.eq(reserve_minor),
                claims::updated_at.eq(now),
            ))
            .returning(ClaimRow::as_returning())
            .get_result(conn)
            .await?;
        diesel::insert_into(claim_reserve_changes::table)
            .values((
                claim_reserve_changes::claim_id.eq(claim_id),
                claim_reserve_changes::reserve_minor.eq(reserve_minor),
                claim_reserve_changes::reason.eq(why),
                claim_reserve_changes::staff_id.eq(staff_id),
                claim_reserve_changes::occurred_at.eq(now),
            ))
            .execute(conn)
            .await?;
        let claim = Claim::try_from(updated)?;
        audit(
            conn,
            Actor::Staff(staff_id),
            "claim.reserve_set",
            "claim",
            claim.id.to_string(),
            Some(why),
            serde_json::json!({
                "reference": claim.reference,
                "from_minor": previous,
                "to_minor": reserve_minor,
                "currency": row.currency,
            }),
        )
        .await?;
        Ok(claim)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::ClaimStatus::*;
    use super::*;

    #[test]
    fn the_state_machine_moves_forward_only() {
        let allowed = [
            (Reported, Acknowledged),
            (Acknowledged, UnderReview),
            (UnderReview, Settled),
            (Reported, Declined),
            (Acknowledged, Declined),
            (UnderReview, Declined),
            (Reported, Withdrawn),
            (Acknowledged, Withdrawn),
            (UnderReview, Withdrawn),
        ];
        for from in ClaimStatus::ALL {
            for to in ClaimStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} → {to}"
                );
            }
        }
        for closed in [Settled, Declined, Withdrawn] {
            assert!(closed.is_closed());
            assert!(ClaimStatus::ALL.iter().all(|to| !closed.can_become(*to)));
        }
        for s in ClaimStatus::ALL {
            assert_eq!(s.as_str().parse::<ClaimStatus>().ok(), Some(s));
        }
    }
}
