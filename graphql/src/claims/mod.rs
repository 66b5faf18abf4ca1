//! The claims part of the schema: drivers report claims (first notice of loss), follow and
//! withdraw them, and dispute session charges; ops work the claims and disputes queues, move
//! claims along, set reserves, settle, and resolve disputes (uphold, adjust or refund); finance
//! reads the claims bordereau. Photos are uploaded over HTTP first ([`photos`]), then named in
//! `reportClaim`.
//!
//! Who sees what (checked on `node(id)` and on every edge, like [`crate::guard`]'s table):
//!
//! | object                              | driver    | partner | ops / admin | finance |
//! |-------------------------------------|-----------|---------|-------------|---------|
//! | Claim, ClaimPhoto, ChargeDispute    | their own | no      | yes         | no      |
//! | claims bordereau rows               | no        | no      | no (admin)  | yes     |

pub mod mutation;
pub mod photos;
pub mod query;

use crate::accounts::{Driver, Vehicle, load_driver};
use crate::cover::enrolments::load_vehicle;
use crate::cover::sessions::{ChargeRule, CoverSession, SessionCharge};
use crate::errors::{UserError, coded, internal};
use crate::guard;
use crate::money::Money;
use crate::relay::to_global_id;
use accounts::{DriverId, Principal, Role};
use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use claims::ClaimsError;
use std::sync::Arc;
use tokio::sync::OnceCell;

pub use mutation::ClaimsMutation;
pub use query::ClaimsQuery;

/// Whether `principal` may see the claims and disputes of `driver_id`: the driver themself and
/// ops (admin holds every role).
pub fn may_view_claims_of(principal: &Principal, driver_id: DriverId) -> bool {
    match principal {
        Principal::Driver(d) => d.driver_id == driver_id,
        Principal::Staff(s) => s.has(Role::Ops),
        Principal::Partner(_) | Principal::Anonymous => false,
    }
}

/// A claims error as `userErrors`, or an internal error when the user cannot fix it.
pub(crate) fn user_errors(
    ctx: &Context<'_>,
    err: ClaimsError,
) -> async_graphql::Result<Vec<UserError>> {
    match err.user_error() {
        Some(e) => Ok(vec![UserError::from(e)]),
        None => Err(internal(ctx, err)),
    }
}

/// One user error.
pub(crate) fn user_error(field: &str, code: &str, message: &str) -> Vec<UserError> {
    vec![UserError {
        field: Some(field.to_owned()),
        code: code.to_owned(),
        message: message.to_owned(),
    }]
}

/// A page error: a bad cursor is the client's; the rest internal.
pub(crate) fn page_error(ctx: &Context<'_>, e: ClaimsError) -> async_graphql::Error {
    match e {
        ClaimsError::InvalidCursor => {
            coded("BAD_USER_INPUT", "`after` is not a cursor of this list")
        }
        other => internal(ctx, other),
    }
}

/// Where a claim is in its life.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "claims::ClaimStatus")]
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

/// Which part of a cover session covered the time of loss.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "claims::CoverBasis")]
pub enum ClaimCoverBasis {
    /// While the driver was working (or on cover they started themselves).
    Working,
    /// After work stopped, within the partner's gap rule.
    GapRule,
    /// Within the tail cover after the gap.
    TailCover,
}

/// Why there was no cover at the time of loss.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "claims::NoCoverReason")]
pub enum NoCoverReason {
    /// No cover session was running then.
    NoSession,
    /// The driver was on cover then, but with another vehicle.
    OtherVehicle,
}

/// Why a driver disputes a charge.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "claims::DisputeReason")]
pub enum DisputeReason {
    /// "I was not working then."
    NotWorking,
    /// "That was not the vehicle I was using."
    WrongVehicle,
    /// Something else: `details` says what.
    Other,
}

/// Where a charge dispute is.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "claims::DisputeStatus")]
pub enum DisputeStatus {
    /// Waiting for ops.
    Open,
    /// The charge stands.
    Upheld,
    /// Part of the charge was refunded to the wallet.
    Adjusted,
    /// All of the charge was refunded to the wallet.
    Refunded,
}

/// What the claim found about cover at the time of loss.
pub struct ClaimCoverAtLoss {
    claim: claims::Claim,
    viewer: Principal,
}

/// Whether the vehicle was covered when the loss happened, by which session and on which basis;
/// when it was not, why, and the vehicle's nearest session.
#[Object]
impl ClaimCoverAtLoss {
    /// Whether there was cover at the time of loss.
    async fn covered(&self) -> bool {
        matches!(self.claim.cover, claims::ClaimCover::Covered { .. })
    }
    /// Which part of the session covered it.
    async fn basis(&self) -> Option<ClaimCoverBasis> {
        match self.claim.cover {
            claims::ClaimCover::Covered { basis, .. } => Some(basis.into()),
            claims::ClaimCover::NotCovered { .. } => None,
        }
    }
    /// Why there was no cover.
    async fn no_cover_reason(&self) -> Option<NoCoverReason> {
        match self.claim.cover {
            claims::ClaimCover::NotCovered { reason, .. } => Some(reason.into()),
            claims::ClaimCover::Covered { .. } => None,
        }
    }
    /// The certificate of the covering session.
    async fn certificate_number(&self) -> Option<&str> {
        match &self.claim.cover {
            claims::ClaimCover::Covered {
                certificate_number, ..
            } => Some(certificate_number.as_str()),
            claims::ClaimCover::NotCovered { .. } => None,
        }
    }
    /// What to tell the driver, in a sentence.
    async fn message(&self) -> String {
        match &self.claim.cover {
            claims::ClaimCover::Covered {
                certificate_number,
                basis,
                ..
            } => {
                let when = match basis {
                    claims::CoverBasis::Working => "while you were on cover",
                    claims::CoverBasis::GapRule => "in the gap-rule cover after your work stopped",
                    claims::CoverBasis::TailCover => "in the tail cover after your shift",
                };
                format!("Covered: this happened {when} (certificate {certificate_number}).")
            }
            claims::ClaimCover::NotCovered { reason, .. } => match reason {
                claims::NoCoverReason::NoSession => {
                    "No cover at time of loss: this vehicle was not on cover then.".to_owned()
                }
                claims::NoCoverReason::OtherVehicle => {
                    "No cover at time of loss: you were on cover with another vehicle then."
                        .to_owned()
                }
            },
        }
    }
    /// The session that covered the loss.
    async fn session(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<CoverSession>> {
        match self.claim.cover {
            claims::ClaimCover::Covered { session_id, .. } => {
                load_session(ctx, &self.viewer, session_id).await
            }
            claims::ClaimCover::NotCovered { .. } => Ok(None),
        }
    }
    /// The vehicle's session nearest to the time of loss, when there was no cover.
    async fn nearest_session(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<CoverSession>> {
        match self.claim.cover {
            claims::ClaimCover::NotCovered {
                nearest_session_id: Some(id),
                ..
            } => load_session(ctx, &self.viewer, id).await,
            _ => Ok(None),
        }
    }
}

/// A session for `viewer`, through the request's cover loader; `None` when not theirs to see.
async fn load_session(
    ctx: &Context<'_>,
    viewer: &Principal,
    id: cover::CoverSessionId,
) -> async_graphql::Result<Option<CoverSession>> {
    if !matches!(viewer, Principal::Driver(_) | Principal::Staff(_)) {
        return Ok(None);
    }
    crate::cover::sessions::session_node(ctx, &id.to_string()).await
}

/// A claim (first notice of loss and its handling).
#[derive(Clone)]
pub struct Claim {
    inner: claims::Claim,
    viewer: Principal,
}

impl Claim {
    /// Wraps a claim that `viewer` has been found allowed to see.
    pub(crate) fn new(inner: claims::Claim, viewer: Principal) -> Self {
        Self { inner, viewer }
    }
}

/// A claim a driver reported: what happened, the cover at the time, and where the claims team
/// has got to. Visible to its driver and to ops.
#[Object]
impl Claim {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        to_global_id("Claim", &self.inner.id)
    }
    /// What the driver quotes, e.g. `CLM-7K4Q-9XM2`.
    async fn reference(&self) -> &str {
        &self.inner.reference
    }
    /// Where it is.
    async fn status(&self) -> ClaimStatus {
        self.inner.status.into()
    }
    /// When the loss happened.
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.inner.occurred_at
    }
    /// When the driver reported it.
    async fn reported_at(&self) -> DateTime<Utc> {
        self.inner.reported_at
    }
    /// Where it happened.
    async fn location(&self) -> &str {
        &self.inner.location
    }
    /// What happened, in the driver's words.
    async fn description(&self) -> &str {
        &self.inner.description
    }
    /// Whether another party was involved.
    async fn third_party_involved(&self) -> bool {
        self.inner.third_party_involved
    }
    /// Whether anyone was hurt.
    async fn injuries(&self) -> bool {
        self.inner.injuries
    }
    /// The vehicle involved.
    async fn vehicle(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vehicle>> {
        load_vehicle(ctx, &self.viewer, self.inner.vehicle_id).await
    }
    /// Cover at the time of loss, as found when the claim was reported.
    async fn cover_at_loss(&self) -> ClaimCoverAtLoss {
        ClaimCoverAtLoss {
            claim: self.inner.clone(),
            viewer: self.viewer.clone(),
        }
    }
    /// The photos the driver sent, oldest first.
    async fn photos(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ClaimPhoto>> {
        let mut conn = crate::accounts::conn(ctx).await?;
        let photos = claims::photos_of_claims(&mut conn, &[self.inner.id])
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(photos.into_iter().map(ClaimPhoto).collect())
    }
    /// Every status the claim took, oldest first, with why.
    async fn history(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ClaimStatusChange>> {
        let mut conn = crate::accounts::conn(ctx).await?;
        let changes = claims::claim_history(&mut conn, self.inner.id)
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(changes.into_iter().map(ClaimStatusChange).collect())
    }
    /// What the claims team expects it to cost, once set (ops only).
    async fn reserve(&self) -> Option<Money> {
        match self.viewer {
            Principal::Staff(_) => self.inner.reserve.map(Money::from),
            _ => None,
        }
    }
    /// What was paid, once settled.
    async fn paid(&self) -> Option<Money> {
        self.inner.paid.map(Money::from)
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.inner.updated_at
    }
    /// When it was closed (settled, declined or withdrawn).
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.inner.closed_at
    }
    /// Whose claim.
    async fn driver(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Driver>> {
        load_driver(ctx, &self.viewer, self.inner.driver_id).await
    }
}

/// A photo sent with a claim.
#[derive(Clone)]
pub struct ClaimPhoto(claims::ClaimPhoto);

/// A photo sent with a claim. Its bytes are at `url` (with the same credentials).
#[Object]
impl ClaimPhoto {
    /// The photo's id, as returned by the upload (`POST /claims/photos`).
    async fn id(&self) -> ID {
        to_global_id("ClaimPhoto", &self.0.id)
    }
    /// `image/jpeg`, `image/png`, `image/heic` or `image/webp` (by its content).
    async fn content_type(&self) -> &'static str {
        self.0.photo_type.content_type()
    }
    /// Its size in bytes.
    async fn size_bytes(&self) -> i64 {
        self.0.size_bytes
    }
    /// When it was uploaded.
    async fn uploaded_at(&self) -> DateTime<Utc> {
        self.0.uploaded_at
    }
    /// Where to fetch it (its driver's or a staff credential).
    async fn url(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let core = crate::accounts::core(ctx)?;
        Ok(photos::photo_url(&core.settings.http.public_url, self.0.id))
    }
}

/// One status change of a claim.
pub struct ClaimStatusChange(claims::ClaimStatusChange);

/// One step of a claim's life.
#[Object]
impl ClaimStatusChange {
    /// The status before (null for the first).
    async fn from_status(&self) -> Option<ClaimStatus> {
        self.0.from.map(Into::into)
    }
    /// The status after.
    async fn to_status(&self) -> ClaimStatus {
        self.0.to.into()
    }
    /// Why.
    async fn reason(&self) -> &str {
        &self.0.reason
    }
    /// Who: `driver`, `staff` or `system`.
    async fn actor_type(&self) -> &str {
        &self.0.actor_type
    }
    /// When.
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
}

/// A driver's dispute of a session's charge.
#[derive(Clone)]
pub struct ChargeDispute {
    inner: claims::Dispute,
    viewer: Principal,
    evidence: Arc<OnceCell<claims::DisputeEvidence>>,
}

impl ChargeDispute {
    /// Wraps a dispute that `viewer` has been found allowed to see.
    pub(crate) fn new(inner: claims::Dispute, viewer: Principal) -> Self {
        Self {
            inner,
            viewer,
            evidence: Arc::new(OnceCell::new()),
        }
    }

    async fn evidence(&self, ctx: &Context<'_>) -> async_graphql::Result<&claims::DisputeEvidence> {
        self.evidence
            .get_or_try_init(|| async {
                let mut conn = crate::accounts::conn(ctx).await?;
                claims::dispute_evidence(&mut conn, self.inner.session_id)
                    .await
                    .map_err(|e| internal(ctx, e))
            })
            .await
    }
}

/// A partner event behind a disputed session.
#[derive(SimpleObject)]
pub struct PartnerShiftEvent {
    /// The partner's id for the event.
    pub partner_event_id: String,
    /// `online`, `job_accepted`, `job_completed` or `offline`.
    pub kind: String,
    /// When it happened, by the partner's clock.
    pub occurred_at: DateTime<Utc>,
    /// When it reached us.
    pub received_at: DateTime<Utc>,
    /// The partner's reference of the shift or job.
    pub reference: Option<String>,
}

/// The rule that priced a session: the product version's billing rules and the rate locked when
/// the session started.
#[derive(SimpleObject)]
pub struct ChargePricingRule {
    /// Which billing rule set the price (minimum, per minute, capped).
    pub rule: Option<ChargeRule>,
    /// The hourly rate locked when the session started.
    pub hourly_rate: Money,
    /// The shortest time charged for.
    pub minimum_charge_minutes: i32,
    /// Time beyond the minimum is charged in steps of this many started minutes.
    pub billing_increment_minutes: i32,
    /// The most a driver pays in one UK day.
    pub daily_cap: Money,
    /// The partner gap rule, in minutes.
    pub gap_rule_minutes: i32,
    /// Tail cover after the gap, in minutes.
    pub tail_cover_minutes: i32,
}

fn minutes(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// A driver's dispute of what a session cost, with what lies behind the charge and how ops
/// resolved it. Visible to its driver and to ops.
#[Object]
impl ChargeDispute {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        to_global_id("ChargeDispute", &self.inner.id)
    }
    /// Where it is.
    async fn status(&self) -> DisputeStatus {
        self.inner.status.into()
    }
    /// Why the driver disputes it.
    async fn reason(&self) -> DisputeReason {
        self.inner.reason.into()
    }
    /// The driver's words.
    async fn details(&self) -> Option<&str> {
        self.inner.details.as_deref()
    }
    /// The charge disputed.
    async fn charge(&self) -> Money {
        self.inner.charge.into()
    }
    /// When it was opened.
    async fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    /// The session whose charge is disputed.
    async fn session(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<CoverSession>> {
        load_session(ctx, &self.viewer, self.inner.session_id).await
    }
    /// The session's priced charge: minutes, billed minutes, the rule and the split.
    async fn charge_breakdown(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<SessionCharge>> {
        Ok(self.evidence(ctx).await?.pricing.charge.map(Into::into))
    }
    /// The rule that produced the charge.
    async fn pricing_rule(&self, ctx: &Context<'_>) -> async_graphql::Result<ChargePricingRule> {
        let p = &self.evidence(ctx).await?.pricing;
        Ok(ChargePricingRule {
            rule: p.charge.map(|c| c.rule.into()),
            hourly_rate: p.hourly_rate.into(),
            minimum_charge_minutes: minutes(p.minimum_charge_minutes),
            billing_increment_minutes: minutes(p.billing_increment_minutes),
            daily_cap: p.daily_cap.into(),
            gap_rule_minutes: minutes(p.gap_rule_minutes),
            tail_cover_minutes: minutes(p.tail_cover_minutes),
        })
    }
    /// The partner events behind the session, in the order they happened (none when the driver
    /// started the session).
    async fn partner_events(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<PartnerShiftEvent>> {
        Ok(self
            .evidence(ctx)
            .await?
            .partner_events
            .iter()
            .map(|e| PartnerShiftEvent {
                partner_event_id: e.partner_event_id.clone(),
                kind: e.kind.as_str().to_owned(),
                occurred_at: e.occurred_at,
                received_at: e.received_at,
                reference: e.reference.clone(),
            })
            .collect())
    }
    /// How much was refunded to the wallet, when adjusted or refunded.
    async fn refunded(&self) -> Option<Money> {
        self.inner.refunded.map(Money::from)
    }
    /// The refund made.
    async fn refund(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<crate::payments::Refund>> {
        let Some(id) = self.inner.refund_id else {
            return Ok(None);
        };
        crate::payments::refund_node(ctx, &id.to_string()).await
    }
    /// What ops said when they resolved it.
    async fn resolution_note(&self) -> Option<&str> {
        self.inner.resolution_note.as_deref()
    }
    /// When it was resolved.
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.inner.resolved_at
    }
    /// Whose dispute.
    async fn driver(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Driver>> {
        load_driver(ctx, &self.viewer, self.inner.driver_id).await
    }
}

/// One row of the claims bordereau.
#[derive(SimpleObject)]
pub struct ClaimsBordereauRow {
    /// The claim reference.
    pub claim_reference: String,
    /// The certificate of the covering session; null when there was no cover.
    pub certificate_reference: Option<String>,
    /// When the loss happened.
    pub date_of_loss: DateTime<Utc>,
    /// When the driver reported it.
    pub date_advised: DateTime<Utc>,
    /// The status at the month's end.
    pub status: ClaimStatus,
    /// Paid by the month's end.
    pub paid: Money,
    /// The reserve at the month's end.
    pub reserve: Money,
}

/// `node(id)` for `Claim`.
pub(crate) async fn claim_node(
    ctx: &Context<'_>,
    raw: &str,
) -> async_graphql::Result<Option<Claim>> {
    let Ok(id) = raw.parse::<claims::ClaimId>() else {
        return Ok(None);
    };
    let viewer = guard::principal(ctx);
    if !matches!(viewer, Principal::Driver(_) | Principal::Staff(_)) {
        return Ok(None);
    }
    let mut conn = crate::accounts::conn(ctx).await?;
    match claims::get_claim(&mut conn, id).await {
        Ok(c) if may_view_claims_of(viewer, c.driver_id) => Ok(Some(Claim::new(c, viewer.clone()))),
        Ok(_) | Err(ClaimsError::ClaimNotFound) => Ok(None),
        Err(e) => Err(internal(ctx, e)),
    }
}

/// `node(id)` for `ChargeDispute`.
pub(crate) async fn dispute_node(
    ctx: &Context<'_>,
    raw: &str,
) -> async_graphql::Result<Option<ChargeDispute>> {
    let Ok(id) = raw.parse::<claims::DisputeId>() else {
        return Ok(None);
    };
    let viewer = guard::principal(ctx);
    if !matches!(viewer, Principal::Driver(_) | Principal::Staff(_)) {
        return Ok(None);
    }
    let mut conn = crate::accounts::conn(ctx).await?;
    match claims::get_dispute(&mut conn, id).await {
        Ok(d) if may_view_claims_of(viewer, d.driver_id) => {
            Ok(Some(ChargeDispute::new(d, viewer.clone())))
        }
        Ok(_) | Err(ClaimsError::DisputeNotFound) => Ok(None),
        Err(e) => Err(internal(ctx, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accounts::{DriverPrincipal, DriverSessionId, StaffId, StaffPrincipal, StaffSessionId};

    #[test]
    fn claims_are_seen_by_their_driver_and_ops_only() {
        let a = DriverId::new();
        let driver = |id| {
            Principal::Driver(DriverPrincipal {
                driver_id: id,
                session_id: DriverSessionId::new(),
            })
        };
        let staff = |role| {
            Principal::Staff(StaffPrincipal {
                staff_id: StaffId::new(),
                session_id: StaffSessionId::new(),
                role,
            })
        };
        assert!(may_view_claims_of(&driver(a), a));
        assert!(!may_view_claims_of(&driver(DriverId::new()), a));
        assert!(may_view_claims_of(&staff(Role::Ops), a));
        assert!(may_view_claims_of(&staff(Role::Admin), a));
        assert!(!may_view_claims_of(&staff(Role::Finance), a));
        assert!(!may_view_claims_of(&Principal::Anonymous, a));
    }
}
