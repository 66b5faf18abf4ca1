//! Cover sessions: `startCover`, `endCover`, the `CoverSession` node with its charge and
//! certificate, and the driver's `coverSessions` connection and `activeSession`.

use super::enrolments::{Enrolment, load_product, load_vehicle, load_version};
use super::loaders::{ContinuationOf, CoverLoader, DaysOf};
use super::{bad_id, conn, core, cover_user_errors, may_view_cover_of};
use crate::accounts::Vehicle;
use crate::accounts::loaders::AccountsLoader;
use crate::errors::{UserError, coded, internal};
use crate::guard;
use crate::money::Money;
use crate::relay::{parse_global_id, to_global_id};
use crate::scalars::Date;
use accounts::{DriverId, Principal, VehicleId};
use async_graphql::connection::{Connection, Edge};
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use cover::{CoverError, CoverSessionId};
use pricing::{ProductId, QuoteId};
use shared::core::Core;

/// The largest page of `coverSessions`.
pub const MAX_SESSIONS_PAGE: i32 = 100;

/// Where a cover session is in its life.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "cover::SessionStatus")]
pub enum CoverSessionStatus {
    /// On cover now.
    Active,
    /// Ended and priced; the charge is not taken yet.
    Ended,
    /// The charge has been taken from the wallet.
    Charged,
    /// The driver disputes the charge.
    Disputed,
    /// Ops changed the charge.
    Adjusted,
}

/// Why a session ended.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "cover::EndReason")]
pub enum CoverEndReason {
    /// The driver stopped cover in the app.
    Driver,
    /// The partner reported the shift over.
    Partner,
    /// A partner's gap rule ran out (no new job in time).
    GapRule,
    /// The session reached its maximum length.
    MaxLength,
    /// The enrolment was cancelled.
    EnrolmentCancelled,
    /// An ops user ended it.
    Ops,
    /// The wallet reached its overdraft limit and could not be topped up.
    OverdraftLimit,
}

/// Who started a session.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoverSessionSource {
    /// The driver, in the app.
    Driver,
    /// A partner platform, from a shift or job event.
    Partner,
}

/// Which billing rule set a session's price.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "pricing::ChargeRule")]
pub enum ChargeRule {
    /// The session was no longer than the minimum charge: the minimum applies.
    Minimum,
    /// Charged per started minute beyond the minimum.
    PerMinute,
    /// The daily cap limited the charge.
    Capped,
}

/// The price of a session: minutes, the rule applied and the split of the total.
#[derive(SimpleObject, Debug, Clone)]
pub struct SessionCharge {
    /// Minutes covered (a started minute counts as a whole one).
    pub minutes: i64,
    /// Minutes charged for (at least the minimum).
    pub billed_minutes: i64,
    /// The rule that set the price.
    pub rule: ChargeRule,
    /// The price before the daily cap.
    pub uncapped: Money,
    /// What the driver pays.
    pub total: Money,
    /// The insurer's premium.
    pub net_premium: Money,
    /// ShiftCover's commission.
    pub commission: Money,
    /// Insurance premium tax.
    pub ipt: Money,
    /// What IPT is levied on: net premium plus commission.
    pub ipt_basis: Money,
    /// The IPT rate, in basis points of the IPT basis (1200 = 12%).
    pub ipt_rate_bp: i32,
    /// The commission rate, in basis points of the IPT basis.
    pub commission_rate_bp: i32,
}

fn bp(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl From<cover::StoredCharge> for SessionCharge {
    fn from(c: cover::StoredCharge) -> Self {
        Self {
            minutes: c.minutes,
            billed_minutes: c.billed_minutes,
            rule: c.rule.into(),
            uncapped: c.uncapped.into(),
            total: c.total.into(),
            net_premium: c.net_premium.into(),
            commission: c.commission.into(),
            ipt: c.ipt.into(),
            ipt_basis: c.ipt_basis().into(),
            ipt_rate_bp: bp(c.ipt_rate_bp),
            commission_rate_bp: bp(c.commission_bp),
        }
    }
}

impl From<pricing::SessionCharge> for SessionCharge {
    fn from(c: pricing::SessionCharge) -> Self {
        let b = c.breakdown;
        Self {
            minutes: c.minutes,
            billed_minutes: c.billed_minutes,
            rule: c.rule.into(),
            uncapped: c.uncapped.into(),
            total: b.total.into(),
            net_premium: b.net_premium.into(),
            commission: b.commission.into(),
            ipt: b.ipt.into(),
            ipt_basis: b.ipt_basis.into(),
            ipt_rate_bp: bp(b.ipt_rate_bp),
            commission_rate_bp: bp(b.commission_rate_bp),
        }
    }
}

/// The product version a session is priced on.
#[derive(SimpleObject, Debug, Clone)]
pub struct SessionProductVersion {
    /// The product's global id.
    pub product_id: ID,
    /// The product's stable machine name.
    pub product_code: String,
    /// The product's name.
    pub product_name: String,
    /// The version's number.
    pub version_number: i32,
    /// The policy wording version that applies.
    pub wording_version: String,
}

/// A session's certificate of motor insurance, and how to prove the cover at the roadside.
#[derive(SimpleObject, Debug, Clone)]
pub struct CoverCertificate {
    /// The certificate number, e.g. `SC-7K4Q-9XM2`.
    pub number: String,
    /// The signed proof-of-cover token (checked by `verifyCover`).
    pub proof_token: String,
    /// The public page that checks the token (the certificate's QR code).
    pub verify_url: String,
    /// The certificate as an HTML page (the driver's bearer token is required).
    pub html_url: String,
    /// The certificate as a PDF (the driver's bearer token is required).
    pub pdf_url: String,
    /// Cover starts.
    pub valid_from: DateTime<Utc>,
    /// Cover ends (ended), or ends at the latest (active).
    pub valid_until: DateTime<Utc>,
    /// When `proofToken` stops proving cover offline (minutes after it was issued, never past
    /// the cover's end): the app fetches the certificate again for a fresh one while cover runs.
    pub proof_expires_at: DateTime<Utc>,
}

/// One period on cover.
#[derive(Debug, Clone)]
pub struct CoverSession {
    inner: cover::CoverSession,
    viewer: Principal,
}

impl CoverSession {
    /// Wraps a session that `viewer` has been found allowed to see.
    pub(crate) fn new(inner: cover::CoverSession, viewer: Principal) -> Self {
        Self { inner, viewer }
    }
}

/// The URL of a certificate document: `<public url>/certificates/<number>.<ext>`.
pub(crate) fn certificate_url(core: &Core, number: &str, ext: &str) -> String {
    format!(
        "{}/certificates/{number}.{ext}",
        core.settings.http.public_url.trim_end_matches('/')
    )
}

/// One period on cover: a driver's or a partner's start until its end, priced on its product
/// version. Visible to its driver and to ops.
#[Object]
impl CoverSession {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        to_global_id("CoverSession", &self.inner.id)
    }
    /// Where it is in its life.
    async fn status(&self) -> CoverSessionStatus {
        self.inner.status.into()
    }
    /// Who started it.
    async fn source(&self) -> CoverSessionSource {
        match self.inner.source {
            cover::SessionSource::Driver => CoverSessionSource::Driver,
            cover::SessionSource::Partner { .. } => CoverSessionSource::Partner,
        }
    }
    /// When cover started.
    async fn started_at(&self) -> DateTime<Utc> {
        self.inner.started_at
    }
    /// When cover ended.
    async fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.inner.ended_at
    }
    /// Why it ended.
    async fn end_reason(&self) -> Option<CoverEndReason> {
        self.inner.end_reason.map(Into::into)
    }
    /// When it ends at the latest (its maximum length).
    async fn max_end_at(&self) -> DateTime<Utc> {
        self.inner.max_end_at
    }
    /// An earlier end a partner's gap or tail rule set, if any.
    async fn scheduled_end_at(&self) -> Option<DateTime<Utc>> {
        self.inner.scheduled_end_at
    }
    /// When cover ended, or ends at the latest while active.
    async fn covered_until(&self) -> DateTime<Utc> {
        self.inner.covered_until()
    }
    /// The hourly rate, locked when it started.
    async fn hourly_rate(&self) -> Money {
        self.inner.hourly_rate.into()
    }
    /// Minutes covered: final once ended, so far while active.
    async fn minutes(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        if let Some(c) = self.inner.charge {
            return Ok(c.minutes);
        }
        let now = core(ctx)?.clock.now();
        let end = now
            .min(self.inner.covered_until())
            .max(self.inner.started_at);
        Ok(pricing::charges::started_minutes(self.inner.started_at, end).unwrap_or(0))
    }
    /// The charge, once ended: minutes, the rule applied (minimum, per minute, capped) and the
    /// split of the total.
    async fn charge(&self) -> Option<SessionCharge> {
        self.inner.charge.map(SessionCharge::from)
    }
    /// While active: what ending it now would cost.
    async fn current_charge(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<SessionCharge>> {
        if !self.inner.is_active() {
            return Ok(None);
        }
        let core = core(ctx)?;
        let mut conn = conn(ctx).await?;
        let charge = cover::current_charge(&mut conn, core.clock.as_ref(), &self.inner)
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(charge.map(SessionCharge::from))
    }
    /// When the charge was taken from the wallet.
    async fn charged_at(&self) -> Option<DateTime<Utc>> {
        self.inner.charged_at
    }
    /// Once ended: the charge by UK day. The daily cap applies to each UK day, so a session
    /// across midnight has one part for each day, each within what was left of its day's cap;
    /// the parts' charges add up to the total. Empty while active.
    async fn charge_days(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<CoverSessionDay>> {
        if self.inner.is_active() {
            return Ok(Vec::new());
        }
        let days = cover_loader(ctx)?
            .load_one(DaysOf(self.inner.id))
            .await
            .map_err(|e| internal(ctx, anyhow::anyhow!("{e:#}")))?
            .unwrap_or_default();
        Ok(days.into_iter().map(CoverSessionDay::from).collect())
    }
    /// The session whose working period this one continues: cover resumed within the gap rule
    /// after it ended, so the period pays one minimum charge. Null when this session began its
    /// own period.
    async fn continues_session(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<CoverSession>> {
        let loader = cover_loader(ctx)?;
        let Some(previous) = loader
            .load_one(ContinuationOf(self.inner.id))
            .await
            .map_err(|e| internal(ctx, anyhow::anyhow!("{e:#}")))?
        else {
            return Ok(None);
        };
        let session = loader
            .load_one(previous)
            .await
            .map_err(|e| internal(ctx, anyhow::anyhow!("{e:#}")))?;
        Ok(session
            .filter(|s| may_view_cover_of(&self.viewer, s.driver_id))
            .map(|s| CoverSession::new(s, self.viewer.clone())))
    }
    /// The vehicle covered.
    async fn vehicle(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vehicle>> {
        load_vehicle(ctx, &self.viewer, self.inner.vehicle_id).await
    }
    /// The product version it is priced on.
    async fn product_version(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<SessionProductVersion>> {
        let Some(version) = load_version(ctx, self.inner.product_version_id).await? else {
            return Ok(None);
        };
        let Some(product) = load_product(ctx, version.product_id).await? else {
            return Ok(None);
        };
        Ok(Some(SessionProductVersion {
            product_id: to_global_id("Product", &product.id),
            product_code: product.code,
            product_name: product.name,
            version_number: version.version_number,
            wording_version: version.terms.wording_version,
        }))
    }
    /// The enrolment it runs under.
    async fn enrolment(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Enrolment>> {
        if !may_view_cover_of(&self.viewer, self.inner.driver_id) {
            return Ok(None);
        }
        let mut conn = conn(ctx).await?;
        match cover::get_enrolment(&mut conn, self.inner.enrolment_id).await {
            Ok(e) => Ok(Some(Enrolment::new(e, self.viewer.clone()))),
            Err(CoverError::EnrolmentNotFound) => Ok(None),
            Err(e) => Err(internal(ctx, e)),
        }
    }
    /// The certificate, with the signed proof-of-cover token and the links to its documents.
    async fn certificate(&self, ctx: &Context<'_>) -> async_graphql::Result<CoverCertificate> {
        if !may_view_cover_of(&self.viewer, self.inner.driver_id) {
            return Err(guard::forbidden());
        }
        let core = core(ctx)?;
        let registration = registration_of(ctx, self.inner.vehicle_id).await?;
        let claims = cover::ProofClaims::for_session(&self.inner, registration, core.clock.now());
        let key =
            cover::ProofKey::from_settings(&core.settings.cover).map_err(|e| internal(ctx, e))?;
        let token = key.sign_token(&claims).map_err(|e| internal(ctx, e))?;
        let number = &self.inner.certificate_number;
        Ok(CoverCertificate {
            number: number.clone(),
            verify_url: format!(
                "{}/verify/{token}",
                core.settings.http.public_url.trim_end_matches('/')
            ),
            proof_token: token,
            html_url: certificate_url(core, number, "html"),
            pdf_url: certificate_url(core, number, "pdf"),
            valid_from: claims.valid_from,
            valid_until: self.inner.covered_until(),
            proof_expires_at: claims.valid_until,
        })
    }
}

/// A vehicle's registration, read whoever's it is (the caller has checked the session).
async fn registration_of(
    ctx: &Context<'_>,
    id: VehicleId,
) -> async_graphql::Result<Option<String>> {
    let vehicle = match ctx.data_opt::<DataLoader<AccountsLoader>>() {
        Some(loader) => loader
            .load_one(id)
            .await
            .map_err(|e| internal(ctx, anyhow::anyhow!("{e:#}")))?,
        None => {
            let mut conn = conn(ctx).await?;
            accounts::get_vehicles(&mut conn, &[id])
                .await
                .map_err(|e| internal(ctx, e))?
                .into_iter()
                .next()
        }
    };
    Ok(vehicle.and_then(|v| v.registration.map(|r| r.as_str().to_owned())))
}

/// Whether a viewer could see some session at all (drivers their own, ops all): nobody else
/// causes a read.
fn may_see_some_session(viewer: &Principal) -> bool {
    match viewer {
        Principal::Driver(_) => true,
        Principal::Staff(s) => s.has(accounts::Role::Ops),
        Principal::Partner(_) | Principal::Anonymous => false,
    }
}

/// The request's cover loader.
fn cover_loader<'c>(ctx: &Context<'c>) -> async_graphql::Result<&'c DataLoader<CoverLoader>> {
    ctx.data_opt::<DataLoader<CoverLoader>>().ok_or_else(|| {
        internal(
            ctx,
            anyhow::anyhow!("the request was executed without a cover loader"),
        )
    })
}

/// One UK day's part of an ended session's charge.
#[derive(SimpleObject, Debug, Clone)]
pub struct CoverSessionDay {
    /// The UK calendar day.
    pub day: Date,
    /// The session's minutes on that day.
    pub minutes: i64,
    /// The minutes billed for that day (what the minimum charge and the billing increment add
    /// is billed on the session's last day).
    pub billed_minutes: i64,
    /// The day's part before the daily cap.
    pub uncapped: Money,
    /// What the day's part was charged: no more than what was left of that day's cap.
    pub charged: Money,
}

impl From<pricing::DayCharge> for CoverSessionDay {
    fn from(d: pricing::DayCharge) -> Self {
        Self {
            day: Date(d.day),
            minutes: d.minutes,
            billed_minutes: d.billed_minutes,
            uncapped: d.uncapped.into(),
            charged: d.charged.into(),
        }
    }
}

/// `node(id)` for `CoverSession`: null for another driver's session.
pub(crate) async fn session_node(
    ctx: &Context<'_>,
    raw: &str,
) -> async_graphql::Result<Option<CoverSession>> {
    let Ok(id) = raw.parse::<CoverSessionId>() else {
        return Ok(None);
    };
    let viewer = guard::principal(ctx);
    if !may_see_some_session(viewer) {
        return Ok(None);
    }
    let session = cover_loader(ctx)?
        .load_one(id)
        .await
        .map_err(|e| internal(ctx, anyhow::anyhow!("{e:#}")))?;
    Ok(session
        .filter(|s| may_view_cover_of(viewer, s.driver_id))
        .map(|s| CoverSession::new(s, viewer.clone())))
}

/// Which of a driver's sessions `coverSessions` returns.
#[derive(InputObject, Default)]
pub struct CoverSessionFilter {
    /// Only sessions in this status.
    pub status: Option<CoverSessionStatus>,
    /// Only sessions started at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only sessions started before this time.
    pub to: Option<DateTime<Utc>>,
}

/// The cover fields of a driver (`Driver.enrolments`, `Driver.coverSessions`,
/// `Driver.activeSession`), checked against the viewer the driver was resolved for.
#[derive(Debug, Clone)]
pub struct DriverCover {
    driver_id: DriverId,
    viewer: Principal,
}

impl DriverCover {
    /// The cover fields of `driver_id` as `viewer` sees them.
    pub fn new(driver_id: DriverId, viewer: Principal) -> Self {
        Self { driver_id, viewer }
    }
}

/// A driver's cover.
#[Object]
impl DriverCover {
    /// The driver's enrolments, cancelled ones included, newest first.
    async fn enrolments(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Enrolment>> {
        super::enrolments::enrolments_of(ctx, &self.viewer, self.driver_id).await
    }

    /// The driver's cover sessions, newest first.
    async fn cover_sessions(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return (at most 100).",
            default = 20,
            validator(minimum = 0, maximum = 100)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return sessions after this cursor.")] after: Option<String>,
        #[graphql(desc = "Which sessions.")] filter: Option<CoverSessionFilter>,
    ) -> async_graphql::Result<Connection<String, CoverSession>> {
        if !may_view_cover_of(&self.viewer, self.driver_id) {
            return Err(guard::forbidden());
        }
        let filter = filter.unwrap_or_default();
        let filter = cover::SessionFilter {
            status: filter.status.map(Into::into),
            from: filter.from,
            to: filter.to,
        };
        let first = i64::from(first.unwrap_or(20).clamp(0, MAX_SESSIONS_PAGE));
        let mut conn = conn(ctx).await?;
        let page =
            match cover::list_sessions(&mut conn, self.driver_id, &filter, after.as_deref(), first)
                .await
            {
                Ok(p) => p,
                Err(CoverError::InvalidCursor) => {
                    return Err(coded(
                        "BAD_USER_INPUT",
                        "`after` is not a cursor of this list",
                    ));
                }
                Err(e) => return Err(internal(ctx, e)),
            };
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        for edge in page.edges {
            connection.edges.push(Edge::new(
                edge.cursor,
                CoverSession::new(edge.node, self.viewer.clone()),
            ));
        }
        Ok(connection)
    }

    /// The session on cover now, if any.
    async fn active_session(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<CoverSession>> {
        if !may_view_cover_of(&self.viewer, self.driver_id) {
            return Err(guard::forbidden());
        }
        let mut conn = conn(ctx).await?;
        let session = cover::active_session_for_driver(&mut conn, self.driver_id)
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(session.map(|s| CoverSession::new(s, self.viewer.clone())))
    }
}

/// Input of `startCover`.
#[derive(InputObject)]
pub struct StartCoverInput {
    /// The vehicle to cover: one of the driver's.
    pub vehicle_id: ID,
    /// The app's key for this tap (1 to 200 printable characters): repeating the call with the
    /// same key returns the same session instead of starting another.
    pub idempotency_key: String,
    /// The product; the driver's active enrolment when omitted.
    pub product_id: Option<ID>,
    /// A quote whose price to lock (from `createQuote`); a fresh price when omitted.
    pub quote_id: Option<ID>,
}

/// Result of `startCover`.
#[derive(SimpleObject, Default)]
pub struct StartCoverPayload {
    /// The session on cover.
    pub session: Option<CoverSession>,
    /// True when the idempotency key had already started this session (nothing new happened).
    pub replayed: bool,
    /// `ALREADY_ON_COVER`; `NOT_ENROLLED`; `ENROLMENT_SUSPENDED`; `NO_PAYMENT_METHOD`;
    /// `INSUFFICIENT_FUNDS`; `VEHICLE_NOT_FOUND` (`vehicleId`); `PRODUCT_NOT_FOUND`,
    /// `PRODUCT_NOT_AVAILABLE` (`productId`); `QUOTE_NOT_FOUND`, `QUOTE_EXPIRED`, `QUOTE_MISMATCH`
    /// (`quoteId`); `INVALID_IDEMPOTENCY_KEY`, `IDEMPOTENCY_KEY_REUSED` (`idempotencyKey`);
    /// `PROFILE_INCOMPLETE`; a decline's code (`VEHICLE_NOT_COVERED`, …).
    pub user_errors: Vec<UserError>,
}

/// Input of `endCover`.
#[derive(InputObject)]
pub struct EndCoverInput {
    /// The session to end: one of the driver's.
    pub session_id: ID,
}

/// Result of `endCover`.
#[derive(SimpleObject, Default)]
pub struct EndCoverPayload {
    /// The session, ended and priced.
    pub session: Option<CoverSession>,
    /// `SESSION_NOT_FOUND` (`sessionId`: unknown or another driver's); `SESSION_ALREADY_ENDED`
    /// (`sessionId`).
    pub user_errors: Vec<UserError>,
}

/// Cover session mutations.
#[derive(Default)]
pub struct SessionMutation;

#[Object]
impl SessionMutation {
    /// Starts cover now for the signed-in driver on one of their vehicles. Idempotent by
    /// `idempotencyKey`. Drivers only.
    async fn start_cover(
        &self,
        ctx: &Context<'_>,
        input: StartCoverInput,
    ) -> async_graphql::Result<StartCoverPayload> {
        let driver = guard::require_driver(ctx)?;
        let refuse = |user_errors| {
            Ok(StartCoverPayload {
                user_errors,
                ..StartCoverPayload::default()
            })
        };
        let Some(vehicle_id) = parse_global_id::<VehicleId>(&input.vehicle_id, "Vehicle") else {
            return refuse(bad_id("vehicleId", "VEHICLE_NOT_FOUND"));
        };
        let product_id = match &input.product_id {
            None => None,
            Some(id) => match parse_global_id::<ProductId>(id, "Product") {
                Some(p) => Some(p),
                None => return refuse(bad_id("productId", "PRODUCT_NOT_FOUND")),
            },
        };
        let quote_id = match &input.quote_id {
            None => None,
            Some(id) => match parse_global_id::<QuoteId>(id, "Quote") {
                Some(q) => Some(q),
                None => return refuse(bad_id("quoteId", "QUOTE_NOT_FOUND")),
            },
        };
        let core = core(ctx)?;
        let request = cover::StartRequest {
            driver_id: driver.driver_id,
            vehicle_id,
            product_id,
            quote_id,
            idempotency_key: input.idempotency_key,
            source: cover::SessionSource::Driver,
            at: core.clock.now(),
            until: None,
        };
        // Batched with the other starts of the moment; the door publishes the event.
        match cover::start_cover::<payments::WalletFunds>(core, request).await {
            Ok(started) => {
                if !started.replayed {
                    let mut conn = conn(ctx).await?;
                    schedule_auto_top_up(ctx, core, &mut conn, driver.driver_id).await;
                }
                Ok(StartCoverPayload {
                    session: Some(CoverSession::new(
                        started.session,
                        guard::principal(ctx).clone(),
                    )),
                    replayed: started.replayed,
                    user_errors: vec![],
                })
            }
            Err(e) => refuse(cover_user_errors(ctx, e)?),
        }
    }

    /// Ends one of the signed-in driver's sessions now and prices it; the charge is taken from
    /// the wallet by a job committed with the ending. Drivers only.
    async fn end_cover(
        &self,
        ctx: &Context<'_>,
        input: EndCoverInput,
    ) -> async_graphql::Result<EndCoverPayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(session_id) = parse_global_id::<CoverSessionId>(&input.session_id, "CoverSession")
        else {
            return Ok(EndCoverPayload {
                session: None,
                user_errors: bad_id("sessionId", "SESSION_NOT_FOUND"),
            });
        };
        let core = core(ctx)?;
        let request = cover::EndRequest::by_driver(driver.driver_id, session_id, core.clock.now());
        // Batched with the other endings of the moment; the ending commits with its charge job,
        // and the door publishes the event.
        match cover::end_cover(core, request).await {
            Ok(ended) => Ok(EndCoverPayload {
                session: Some(CoverSession::new(
                    ended.session,
                    guard::principal(ctx).clone(),
                )),
                user_errors: vec![],
            }),
            Err(e) => Ok(EndCoverPayload {
                session: None,
                user_errors: cover_user_errors(ctx, e)?,
            }),
        }
    }
}

/// Schedules an automatic top-up when the driver's wallet is below their threshold (payments
/// asks callers to, before cover runs). Best effort: the session has started either way, and
/// the session charge schedules one too.
async fn schedule_auto_top_up(
    ctx: &Context<'_>,
    core: &Core,
    conn: &mut diesel_async::AsyncPgConnection,
    driver_id: DriverId,
) {
    // The server's, built once at start (a Stripe client sets up TLS: too costly per request).
    let built;
    let env = match ctx.data_opt::<payments::PaymentsEnv>() {
        Some(env) => env,
        None => match payments::PaymentsEnv::from_settings(&core.settings, core.clock.clone()) {
            Ok(env) => {
                built = env;
                &built
            }
            Err(e) => {
                tracing::warn!(error = %e, "auto top-up not checked: payments environment");
                return;
            }
        },
    };
    if let Err(e) = payments::maybe_schedule_auto_top_up(conn, env, driver_id).await {
        tracing::warn!(%driver_id, error = %e, "auto top-up not scheduled after cover started");
    }
}
