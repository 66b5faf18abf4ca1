//! Cover sessions: starting one, and reading them back.
//!
//! Invariants:
//! - a driver has at most one active session — the database enforces it with a unique partial
//!   index, so two racing starts cannot both succeed; the loser answers `ALREADY_ON_COVER`;
//! - a client idempotency key starts at most one session per driver (a unique constraint): a
//!   repeated start with the same key and the same parameters returns that session, even when
//!   the two race; with other parameters it answers `IDEMPOTENCY_KEY_REUSED`;
//! - a session records the product version, quote and hourly rate it was priced on when it
//!   started; its charge (see [`crate::ending`]) uses exactly those;
//! - a session never runs past `max_end_at` (start + `cover.max_session_hours`);
//! - a driver only ever sees their own sessions: another driver's answers `SESSION_NOT_FOUND`.
//!
//! Functions that start or end a session return the [`CoverEvent`]s to publish once the caller's
//! transaction has committed (see [`crate::events`]).

use crate::engine::{StartRequest, start_sessions};
use crate::error::CoverError;
use crate::events::CoverEvent;
use crate::funds::FundsCheck;
use crate::ids::{CoverSessionId, EnrolmentId};
use crate::schema::cover_sessions;
use crate::support::MAX_TEXT_CHARS;
use accounts::{DriverId, PartnerId, VehicleId};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use pricing::{ChargeRule, ProductId, ProductVersionId, Quote, QuoteId};
use rand::Rng;
use serde::Serialize;
use shared::settings::CoverSettings;
use shared::{Clock, Money};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// The most sessions one page of [`list_sessions`] returns.
pub const MAX_PAGE_SIZE: i64 = 100;

/// Crockford's base 32: no I, L, O or U, so a number read out over the phone is unambiguous.
const CERTIFICATE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// On cover now.
    Active,
    /// Ended and priced; the charge is not yet taken.
    Ended,
    /// The charge has been taken (payments).
    Charged,
    /// The driver disputes the charge (reserved for ops).
    Disputed,
    /// Ops changed the charge (reserved for ops).
    Adjusted,
}

impl SessionStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Ended => "ended",
            SessionStatus::Charged => "charged",
            SessionStatus::Disputed => "disputed",
            SessionStatus::Adjusted => "adjusted",
        }
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionStatus {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(SessionStatus::Active),
            "ended" => Ok(SessionStatus::Ended),
            "charged" => Ok(SessionStatus::Charged),
            "disputed" => Ok(SessionStatus::Disputed),
            "adjusted" => Ok(SessionStatus::Adjusted),
            other => Err(anyhow::anyhow!("unknown session status {other:?}")),
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
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

impl EndReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Driver => "driver",
            EndReason::Partner => "partner",
            EndReason::GapRule => "gap_rule",
            EndReason::MaxLength => "max_length",
            EndReason::EnrolmentCancelled => "enrolment_cancelled",
            EndReason::Ops => "ops",
            EndReason::OverdraftLimit => "overdraft_limit",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndReason {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "driver" => Ok(EndReason::Driver),
            "partner" => Ok(EndReason::Partner),
            "gap_rule" => Ok(EndReason::GapRule),
            "max_length" => Ok(EndReason::MaxLength),
            "enrolment_cancelled" => Ok(EndReason::EnrolmentCancelled),
            "ops" => Ok(EndReason::Ops),
            "overdraft_limit" => Ok(EndReason::OverdraftLimit),
            other => Err(anyhow::anyhow!("unknown end reason {other:?}")),
        }
    }
}

/// Who started a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionSource {
    /// The driver, in the app.
    Driver,
    /// A partner platform, from a shift or job event.
    Partner {
        /// The partner.
        partner_id: PartnerId,
        /// The partner's reference of the shift or job, when it gave one.
        reference: Option<String>,
    },
}

impl SessionSource {
    /// The stored name: `driver` or `partner`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionSource::Driver => "driver",
            SessionSource::Partner { .. } => "partner",
        }
    }
}

/// A session's charge as stored when it ended: what [`pricing::price_session`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoredCharge {
    /// Minutes covered (a started minute counts as one).
    pub minutes: i64,
    /// Minutes charged for.
    pub billed_minutes: i64,
    /// The rule that set the price.
    pub rule: ChargeRule,
    /// The price before the daily cap.
    pub uncapped: Money,
    /// The insurer's net premium.
    pub net_premium: Money,
    /// The intermediary's commission.
    pub commission: Money,
    /// Insurance premium tax.
    pub ipt: Money,
    /// What the driver pays.
    pub total: Money,
    /// The IPT rate, in basis points of the IPT basis (`total − ipt`).
    pub ipt_rate_bp: u32,
    /// The commission rate, in basis points of the IPT basis.
    pub commission_bp: u32,
}

impl StoredCharge {
    /// The premium IPT was levied on: net premium plus commission.
    pub fn ipt_basis(&self) -> Money {
        Money {
            minor: self.total.minor - self.ipt.minor,
            currency: self.total.currency,
        }
    }
}

/// One period on cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverSession {
    /// The session.
    pub id: CoverSessionId,
    /// Whose cover.
    pub driver_id: DriverId,
    /// The vehicle covered.
    pub vehicle_id: VehicleId,
    /// The enrolment it runs under.
    pub enrolment_id: EnrolmentId,
    /// The product version it is priced on.
    pub product_version_id: ProductVersionId,
    /// The quote whose price it was locked at.
    pub quote_id: QuoteId,
    /// The hourly rate, locked when it started.
    pub hourly_rate: Money,
    /// Where it is in its life.
    pub status: SessionStatus,
    /// When cover started.
    pub started_at: DateTime<Utc>,
    /// When it ends at the latest.
    pub max_end_at: DateTime<Utc>,
    /// An earlier end a partner's gap or tail rule set, if any.
    pub scheduled_end_at: Option<DateTime<Utc>>,
    /// When cover ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended.
    pub end_reason: Option<EndReason>,
    /// Who started it.
    pub source: SessionSource,
    /// The client's idempotency key it was started with.
    pub idempotency_key: String,
    /// The certificate number, e.g. `SC-7K4Q-9XM2`.
    pub certificate_number: String,
    /// The charge, once ended.
    pub charge: Option<StoredCharge>,
    /// When payments took the charge.
    pub charged_at: Option<DateTime<Utc>>,
    /// When the charge was disputed.
    pub disputed_at: Option<DateTime<Utc>>,
    /// When the charge was adjusted.
    pub adjusted_at: Option<DateTime<Utc>>,
}

impl CoverSession {
    /// Whether the session is on cover (it may be past its end, waiting to be closed).
    pub fn is_active(&self) -> bool {
        self.status == SessionStatus::Active
    }

    /// The time cover ends (ended) or will end at the latest (active).
    pub fn covered_until(&self) -> DateTime<Utc> {
        self.ended_at.unwrap_or(match self.scheduled_end_at {
            Some(s) if s < self.max_end_at => s,
            _ => self.max_end_at,
        })
    }
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = cover_sessions)]
#[diesel(treat_none_as_default_value = false)]
pub(crate) struct SessionRow {
    pub id: CoverSessionId,
    pub driver_id: DriverId,
    pub vehicle_id: VehicleId,
    pub enrolment_id: EnrolmentId,
    pub product_version_id: ProductVersionId,
    pub quote_id: QuoteId,
    pub currency: String,
    pub hourly_rate_minor: i64,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub max_end_at: DateTime<Utc>,
    pub scheduled_end_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    pub source: String,
    pub partner_id: Option<PartnerId>,
    pub partner_ref: Option<String>,
    pub idempotency_key: String,
    pub certificate_number: String,
    pub minutes: Option<i64>,
    pub billed_minutes: Option<i64>,
    pub charge_rule: Option<String>,
    pub uncapped_minor: Option<i64>,
    pub net_minor: Option<i64>,
    pub commission_minor: Option<i64>,
    pub ipt_minor: Option<i64>,
    pub total_minor: Option<i64>,
    pub ipt_rate_bp: Option<i32>,
    pub commission_bp: Option<i32>,
    pub charged_at: Option<DateTime<Utc>>,
    pub disputed_at: Option<DateTime<Utc>>,
    pub adjusted_at: Option<DateTime<Utc>>,
}

impl SessionRow {
    /// A session starting `now`, priced on `quote`, as stored.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_started(
        driver_id: DriverId,
        vehicle_id: VehicleId,
        enrolment_id: EnrolmentId,
        quote: &Quote,
        now: DateTime<Utc>,
        max_end_at: DateTime<Utc>,
        source: &SessionSource,
        idempotency_key: String,
        certificate_number: String,
    ) -> SessionRow {
        let (partner_id, partner_ref) = match source {
            SessionSource::Driver => (None, None),
            SessionSource::Partner {
                partner_id,
                reference,
            } => (Some(*partner_id), reference.clone()),
        };
        SessionRow {
            id: CoverSessionId::new(),
            driver_id,
            vehicle_id,
            enrolment_id,
            product_version_id: quote.product_version_id,
            quote_id: quote.id,
            currency: quote.hourly_rate.currency.code().to_owned(),
            hourly_rate_minor: quote.hourly_rate.minor,
            status: SessionStatus::Active.as_str().to_owned(),
            started_at: now,
            max_end_at,
            scheduled_end_at: None,
            ended_at: None,
            end_reason: None,
            source: source.as_str().to_owned(),
            partner_id,
            partner_ref,
            idempotency_key,
            certificate_number,
            minutes: None,
            billed_minutes: None,
            charge_rule: None,
            uncapped_minor: None,
            net_minor: None,
            commission_minor: None,
            ipt_minor: None,
            total_minor: None,
            ipt_rate_bp: None,
            commission_bp: None,
            charged_at: None,
            disputed_at: None,
            adjusted_at: None,
        }
    }
}

fn parse_rule(s: &str) -> anyhow::Result<ChargeRule> {
    match s {
        "minimum" => Ok(ChargeRule::Minimum),
        "per_minute" => Ok(ChargeRule::PerMinute),
        "capped" => Ok(ChargeRule::Capped),
        other => Err(anyhow::anyhow!("unknown charge rule {other:?}")),
    }
}

fn rate_bp(bp: i32) -> anyhow::Result<u32> {
    u32::try_from(bp).map_err(|_| anyhow::anyhow!("stored rate {bp} is negative"))
}

impl TryFrom<SessionRow> for CoverSession {
    type Error = CoverError;

    fn try_from(r: SessionRow) -> Result<Self, CoverError> {
        let currency: shared::Currency = r.currency.parse().map_err(anyhow::Error::new)?;
        let m = |minor: i64| Money { minor, currency };
        let source = match (r.source.as_str(), r.partner_id) {
            ("driver", _) => SessionSource::Driver,
            ("partner", Some(partner_id)) => SessionSource::Partner {
                partner_id,
                reference: r.partner_ref,
            },
            (other, _) => {
                return Err(anyhow::anyhow!("session {} has source {other:?}", r.id).into());
            }
        };
        // The table's CHECK keeps these all set or all empty together.
        let charge = match (
            r.minutes,
            r.billed_minutes,
            r.charge_rule.as_deref(),
            r.uncapped_minor,
            r.net_minor,
            r.commission_minor,
            r.ipt_minor,
            r.total_minor,
            r.ipt_rate_bp,
            r.commission_bp,
        ) {
            (
                Some(minutes),
                Some(billed_minutes),
                Some(rule),
                Some(uncapped),
                Some(net),
                Some(commission),
                Some(ipt),
                Some(total),
                Some(ipt_bp),
                Some(commission_bp),
            ) => Some(StoredCharge {
                minutes,
                billed_minutes,
                rule: parse_rule(rule)?,
                uncapped: m(uncapped),
                net_premium: m(net),
                commission: m(commission),
                ipt: m(ipt),
                total: m(total),
                ipt_rate_bp: rate_bp(ipt_bp)?,
                commission_bp: rate_bp(commission_bp)?,
            }),
            _ => None,
        };
        Ok(CoverSession {
            id: r.id,
            driver_id: r.driver_id,
            vehicle_id: r.vehicle_id,
            enrolment_id: r.enrolment_id,
            product_version_id: r.product_version_id,
            quote_id: r.quote_id,
            hourly_rate: m(r.hourly_rate_minor),
            status: r.status.parse()?,
            started_at: r.started_at,
            max_end_at: r.max_end_at,
            scheduled_end_at: r.scheduled_end_at,
            ended_at: r.ended_at,
            end_reason: r.end_reason.as_deref().map(str::parse).transpose()?,
            source,
            idempotency_key: r.idempotency_key,
            certificate_number: r.certificate_number,
            charge,
            charged_at: r.charged_at,
            disputed_at: r.disputed_at,
            adjusted_at: r.adjusted_at,
        })
    }
}

/// A new certificate number: `SC-` and two groups of four Crockford base-32 characters.
pub fn new_certificate_number() -> String {
    let mut rng = rand::rng();
    let mut out = String::with_capacity(12);
    out.push_str("SC-");
    for i in 0..8 {
        if i == 4 {
            out.push('-');
        }
        let c = CERTIFICATE_ALPHABET[rng.random_range(0..CERTIFICATE_ALPHABET.len())];
        out.push(char::from(c));
    }
    out
}

/// What starting cover needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartCover {
    /// The vehicle to cover.
    pub vehicle_id: VehicleId,
    /// The product; `None` for the driver's enrolment (the active one, when there are several).
    pub product_id: Option<ProductId>,
    /// A quote whose price to lock; `None` to quote afresh now.
    pub quote_id: Option<QuoteId>,
    /// The client's key for this start: the same key starts at most one session.
    pub idempotency_key: String,
    /// Who starts it.
    pub source: SessionSource,
}

/// The result of [`start_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "publish the events once the change has committed"]
pub struct SessionStarted {
    /// The session.
    pub session: CoverSession,
    /// True when the idempotency key had already started it (nothing new happened).
    pub replayed: bool,
    /// The session whose working period this one continues (it started within the gap rule
    /// after that one ended, so the period pays one minimum), when it does; `None` on a replay.
    pub continues: Option<CoverSessionId>,
    /// Events for [`crate::events::publish_cover_event`], after commit (none for a replay).
    pub events: Vec<CoverEvent>,
}

pub(crate) fn check_key(key: &str) -> Result<(), CoverError> {
    let ok = !key.is_empty()
        && key.chars().count() <= MAX_TEXT_CHARS
        && !key.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(CoverError::InvalidIdempotencyKey)
    }
}

pub(crate) fn check_source(source: &SessionSource) -> Result<(), CoverError> {
    if let SessionSource::Partner {
        reference: Some(r), ..
    } = source
        && (r.is_empty() || r.chars().count() > MAX_TEXT_CHARS || r.chars().any(char::is_control))
    {
        return Err(CoverError::InvalidPartnerRef);
    }
    Ok(())
}

/// Starts cover for a driver now: [`crate::engine::start_sessions`] for one request.
///
/// Errors: `INVALID_IDEMPOTENCY_KEY`, `INVALID_PARTNER_REF`, `IDEMPOTENCY_KEY_REUSED`,
/// `ALREADY_ON_COVER`, `QUOTE_NOT_FOUND`, `QUOTE_EXPIRED`, `QUOTE_MISMATCH`, and those of
/// [`crate::check_eligibility`].
pub async fn start_session(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    settings: &CoverSettings,
    driver_id: DriverId,
    input: StartCover,
    funds: &dyn FundsCheck,
) -> Result<SessionStarted, CoverError> {
    let request = StartRequest {
        driver_id,
        vehicle_id: input.vehicle_id,
        product_id: input.product_id,
        quote_id: input.quote_id,
        idempotency_key: input.idempotency_key,
        source: input.source,
        at: clock.now(),
        until: None,
    };
    crate::engine::only(
        start_sessions(conn, clock, settings, funds, std::slice::from_ref(&request)).await,
    )
}

/// The audit action of a start.
pub(crate) const STARTED_ACTION: &str = "cover.session_started";

/// What the audit entry of a start records.
pub(crate) fn started_audit_details(session: &CoverSession) -> serde_json::Value {
    serde_json::json!({
        "vehicle_id": session.vehicle_id.to_string(),
        "enrolment_id": session.enrolment_id.to_string(),
        "product_version_id": session.product_version_id.to_string(),
        "quote_id": session.quote_id.to_string(),
        "hourly_rate_minor": session.hourly_rate.minor,
        "currency": session.hourly_rate.currency.code(),
        "certificate_number": session.certificate_number,
        "max_end_at": session.max_end_at,
    })
}

/// The session a driver started with an idempotency key, if any.
pub async fn find_by_key(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    idempotency_key: &str,
) -> Result<Option<CoverSession>, CoverError> {
    cover_sessions::table
        .filter(cover_sessions::driver_id.eq(driver_id))
        .filter(cover_sessions::idempotency_key.eq(idempotency_key))
        .select(SessionRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(CoverSession::try_from)
        .transpose()
}

/// The driver's active session, if any.
pub async fn active_session_for_driver(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Option<CoverSession>, CoverError> {
    cover_sessions::table
        .filter(cover_sessions::driver_id.eq(driver_id))
        .filter(cover_sessions::status.eq(SessionStatus::Active.as_str()))
        .select(SessionRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(CoverSession::try_from)
        .transpose()
}

/// A session by id, whoever's it is (ops, jobs, certificates). Errors: `SESSION_NOT_FOUND`.
pub async fn get_session(
    conn: &mut AsyncPgConnection,
    session_id: CoverSessionId,
) -> Result<CoverSession, CoverError> {
    cover_sessions::table
        .find(session_id)
        .select(SessionRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(CoverError::SessionNotFound)
        .and_then(CoverSession::try_from)
}

/// One of the driver's sessions. Errors: `SESSION_NOT_FOUND`, also for another driver's.
pub async fn get_session_for_driver(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    session_id: CoverSessionId,
) -> Result<CoverSession, CoverError> {
    cover_sessions::table
        .filter(cover_sessions::id.eq(session_id))
        .filter(cover_sessions::driver_id.eq(driver_id))
        .select(SessionRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(CoverError::SessionNotFound)
        .and_then(CoverSession::try_from)
}

/// Several sessions at once (for DataLoaders); unknown ids are left out. The caller checks that
/// the viewer may see each one.
pub async fn get_sessions(
    conn: &mut AsyncPgConnection,
    session_ids: &[CoverSessionId],
) -> Result<Vec<CoverSession>, CoverError> {
    cover_sessions::table
        .filter(cover_sessions::id.eq_any(session_ids))
        .select(SessionRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(CoverSession::try_from)
        .collect()
}

/// The charges of ended sessions by UK day (the daily cap applies to each day), each session's
/// days in order; a session not ended has none. The caller checks the viewer may see them.
pub async fn session_days(
    conn: &mut AsyncPgConnection,
    session_ids: &[CoverSessionId],
) -> Result<HashMap<CoverSessionId, Vec<pricing::DayCharge>>, CoverError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        session_id: CoverSessionId,
        #[diesel(sql_type = diesel::sql_types::Date)]
        uk_day: chrono::NaiveDate,
        #[diesel(sql_type = diesel::sql_types::Text)]
        currency: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        minutes: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        billed_minutes: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        uncapped_minor: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        charged_minor: i64,
    }
    if session_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Row> = shared::sql::prepared(
        "SELECT session_id, uk_day, currency, minutes, billed_minutes, uncapped_minor,
                charged_minor
           FROM cover_session_days WHERE session_id = ANY($1) ORDER BY session_id, uk_day",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(
        session_ids.iter().map(|s| s.uuid()).collect::<Vec<_>>(),
    )
    .load(conn)
    .await?;
    let mut out: HashMap<CoverSessionId, Vec<pricing::DayCharge>> = HashMap::new();
    for r in rows {
        out.entry(r.session_id)
            .or_default()
            .push(pricing::DayCharge {
                day: r.uk_day,
                minutes: r.minutes,
                billed_minutes: r.billed_minutes,
                uncapped: crate::ending::money(r.uncapped_minor, &r.currency)?,
                charged: crate::ending::money(r.charged_minor, &r.currency)?,
            });
    }
    Ok(out)
}

/// The session with a certificate number, if any.
pub async fn find_by_certificate_number(
    conn: &mut AsyncPgConnection,
    certificate_number: &str,
) -> Result<Option<CoverSession>, CoverError> {
    cover_sessions::table
        .filter(cover_sessions::certificate_number.eq(certificate_number))
        .select(SessionRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(CoverSession::try_from)
        .transpose()
}

/// Which of a driver's sessions [`list_sessions`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Only sessions in this status.
    pub status: Option<SessionStatus>,
    /// Only sessions started at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only sessions started before this time.
    pub to: Option<DateTime<Utc>>,
}

/// A position in a driver's session list: the last session seen, by start time then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCursor {
    /// The session's start, in microseconds since the epoch (the database's precision).
    pub started_at_micros: i64,
    /// The session.
    pub id: CoverSessionId,
}

impl SessionCursor {
    /// The cursor just after `session`.
    pub fn of(session: &CoverSession) -> Self {
        Self {
            started_at_micros: session.started_at.timestamp_micros(),
            id: session.id,
        }
    }

    /// The opaque text form handed to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "s1:{}:{}",
            self.started_at_micros,
            self.id.uuid().simple()
        ))
    }

    /// Parses [`SessionCursor::encode`]'s output. Errors: `INVALID_CURSOR`.
    pub fn decode(text: &str) -> Result<Self, CoverError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CoverError::InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| CoverError::InvalidCursor)?;
        let mut parts = text.splitn(3, ':');
        let (Some("s1"), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CoverError::InvalidCursor);
        };
        Ok(Self {
            started_at_micros: micros.parse().map_err(|_| CoverError::InvalidCursor)?,
            id: CoverSessionId(uuid::Uuid::try_parse(id).map_err(|_| CoverError::InvalidCursor)?),
        })
    }
}

/// One session of a page, with the cursor that points just after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEdge {
    /// Pass as `after` to get the sessions after this one.
    pub cursor: String,
    /// The session.
    pub node: CoverSession,
}

/// A page of a driver's sessions, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    /// The sessions.
    pub edges: Vec<SessionEdge>,
    /// Whether more sessions follow the last one.
    pub has_next_page: bool,
}

impl SessionPage {
    /// The cursor of the last session, if the page has any.
    pub fn end_cursor(&self) -> Option<&str> {
        self.edges.last().map(|e| e.cursor.as_str())
    }
}

/// A driver's sessions, newest first (by start, then id), `first` at a time (at most
/// [`MAX_PAGE_SIZE`]) after the cursor `after` — keyset pagination, stable while sessions are
/// added. Errors: `INVALID_CURSOR`.
pub async fn list_sessions(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    filter: &SessionFilter,
    after: Option<&str>,
    first: i64,
) -> Result<SessionPage, CoverError> {
    let first = first.clamp(0, MAX_PAGE_SIZE);
    let mut query = cover_sessions::table
        .filter(cover_sessions::driver_id.eq(driver_id))
        .select(SessionRow::as_select())
        .into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(cover_sessions::status.eq(status.as_str()));
    }
    if let Some(from) = filter.from {
        query = query.filter(cover_sessions::started_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(cover_sessions::started_at.lt(to));
    }
    if let Some(after) = after {
        let cursor = SessionCursor::decode(after)?;
        let at = DateTime::from_timestamp_micros(cursor.started_at_micros)
            .ok_or(CoverError::InvalidCursor)?;
        query = query.filter(
            cover_sessions::started_at
                .lt(at)
                .or(cover_sessions::started_at
                    .eq(at)
                    .and(cover_sessions::id.lt(cursor.id))),
        );
    }
    let mut rows = query
        .order((cover_sessions::started_at.desc(), cover_sessions::id.desc()))
        .limit(first + 1)
        .load(conn)
        .await?;
    let has_next_page = i64::try_from(rows.len()).unwrap_or(i64::MAX) > first;
    rows.truncate(usize::try_from(first).unwrap_or(0));
    let edges = rows
        .into_iter()
        .map(|r| {
            let node = CoverSession::try_from(r)?;
            Ok(SessionEdge {
                cursor: SessionCursor::of(&node).encode(),
                node,
            })
        })
        .collect::<Result<Vec<_>, CoverError>>()?;
    Ok(SessionPage {
        edges,
        has_next_page,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn certificate_numbers_have_the_published_shape() {
        for _ in 0..200 {
            let n = new_certificate_number();
            assert_eq!(n.len(), 12, "{n}");
            assert!(n.starts_with("SC-"));
            assert_eq!(&n[7..8], "-");
            assert!(
                n[3..7]
                    .chars()
                    .chain(n[8..].chars())
                    .all(|c| CERTIFICATE_ALPHABET.contains(&(c as u8)))
            );
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_strangers() {
        let c = SessionCursor {
            started_at_micros: 1_795_000_000_123_456,
            id: CoverSessionId::new(),
        };
        assert_eq!(SessionCursor::decode(&c.encode()).unwrap(), c);
        assert!(SessionCursor::decode("bm9wZQ").is_err());
        assert!(SessionCursor::decode("!!").is_err());
    }

    #[test]
    fn keys_and_partner_references_are_bounded() {
        assert!(check_key("k1").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(201)).is_err());
        assert!(check_key("a\nb").is_err());
        let partner = |r: &str| SessionSource::Partner {
            partner_id: PartnerId::new(),
            reference: Some(r.into()),
        };
        assert!(check_source(&partner("job-1")).is_ok());
        assert!(check_source(&partner("")).is_err());
    }
}
