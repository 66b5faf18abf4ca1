//! Starting cover: [`start_sessions`], the one implementation, and its doors.

use super::{for_batcher, lock_drivers, through_batcher};
use crate::eligibility::{Eligible, Rated, enrolment_for, funded, rate};
use crate::enrolments::{Enrolment, EnrolmentStatus, list_enrolments_of, set_status};
use crate::error::CoverError;
use crate::events::{CoverEvent, CoverEventKind};
use crate::funds::FundsCheck;
use crate::ids::CoverSessionId;
use crate::sessions::{
    CoverSession, STARTED_ACTION, SessionRow, SessionSource, SessionStarted, SessionStatus,
    check_key, check_source, new_certificate_number, started_audit_details,
};
use crate::support::actor_parts;
use accounts::{Actor, DriverId, VehicleId};
use chrono::{DateTime, Duration, Utc};
use diesel::sql_types::{Array, BigInt, Text, Timestamptz, Uuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use pricing::{PricingError, ProductId, ProductVersion, Quote, QuoteId};
use shared::Clock;
use shared::audit::AuditEntry;
use shared::batch::{BatchFuture, BatchQuery};
use shared::core::Core;
use shared::settings::CoverSettings;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::Arc;

/// Starts tried before giving up when the product's published version keeps changing under them.
const VERSION_ATTEMPTS: usize = 3;
/// Draws of a certificate number before giving up (2⁴⁰ numbers: a second draw is already rare).
const CERTIFICATE_ATTEMPTS: usize = 5;

/// One request to start cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    /// Whose cover.
    pub driver_id: DriverId,
    /// The vehicle to cover.
    pub vehicle_id: VehicleId,
    /// The product; `None` for the driver's best enrolment.
    pub product_id: Option<ProductId>,
    /// A quote whose price to lock; `None` to rate afresh.
    pub quote_id: Option<QuoteId>,
    /// The client's key: the same key starts at most one session per driver.
    pub idempotency_key: String,
    /// Who starts it.
    pub source: SessionSource,
    /// When cover starts: now for a tap, the time of the work for a partner's late event. Never
    /// later than now, and never earlier than the end of the driver's last session (cover never
    /// overlaps): a start inside time already covered starts when that cover ended.
    pub at: DateTime<Utc>,
    /// When the work this start covers ended, if it has (a partner replaying a finished period):
    /// when the driver's cover already reached that time, nothing starts (`ALREADY_ON_COVER`).
    pub until: Option<DateTime<Utc>>,
}

impl StartRequest {
    /// A driver's own start now, of the kind the app's "start cover" button sends.
    pub fn now(
        driver_id: DriverId,
        vehicle_id: VehicleId,
        idempotency_key: String,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            driver_id,
            vehicle_id,
            product_id: None,
            quote_id: None,
            idempotency_key,
            source: SessionSource::Driver,
            at: now,
            until: None,
        }
    }
}

/// Starts cover for each request, as if they came one after the other in this order (a request
/// sees what the ones before it did). Each answer is the session started (or, for a repeated
/// key with the same parameters, the one it started before, with `replayed`), or why not:
/// `INVALID_IDEMPOTENCY_KEY`, `INVALID_PARTNER_REF`, `IDEMPOTENCY_KEY_REUSED`,
/// `ALREADY_ON_COVER`, `QUOTE_NOT_FOUND`, `QUOTE_EXPIRED`, `QUOTE_MISMATCH`, then the
/// eligibility rules in their order ([`crate::check_eligibility`]).
///
/// A session records the quote's version and locked rate, a certificate number, and
/// `max_end_at` = start + `settings.max_session_hours`; its audit entry and "cover started" text
/// are written with it, and a pending enrolment whose driver can now pay becomes active.
///
/// The outer error is a failure of the whole batch (the database); nothing was written then.
pub async fn start_sessions(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    settings: &CoverSettings,
    funds: &dyn FundsCheck,
    requests: &[StartRequest],
) -> Result<Vec<Result<SessionStarted, CoverError>>, CoverError> {
    for _ in 0..VERSION_ATTEMPTS {
        let attempt = conn
            .transaction::<_, CoverError, _>(async |conn| {
                start_locked(conn, clock, settings, funds, requests).await
            })
            .await;
        match attempt {
            // A version this process remembered was retired: the quote insert refused it and
            // forgot it, so the next attempt rates on the new one.
            Err(CoverError::Database(e)) if pricing::is_version_not_published(&e) => continue,
            other => return other,
        }
    }
    Err(anyhow::anyhow!("the published version kept changing while cover started").into())
}

/// What a start stores, once decided.
struct NewSession {
    index: usize,
    row: SessionRow,
    eligible: Eligible,
    /// The quote was rated now and is stored with the session.
    store_quote: bool,
    /// The session whose working period it continues, and that period's minutes before it.
    continues: Option<(CoverSessionId, i64)>,
}

/// A session the idempotency key already names, for a later request of the batch.
#[derive(Clone)]
enum KeyRef {
    Stored(Box<CoverSession>),
    Planned(usize),
}

/// What the batch knows of one driver as it decides their requests in order.
#[derive(Default)]
struct DriverState {
    on_cover: bool,
    /// The driver's last session that ended.
    last: Option<LastSession>,
    keys: HashMap<String, KeyRef>,
}

/// What a new session needs of the driver's last ended one: where cover stopped, and how long
/// the working period it belonged to had run (for the one-minimum rule).
#[derive(Clone, Copy)]
struct LastSession {
    id: CoverSessionId,
    ended_at: DateTime<Utc>,
    /// The period's minutes up to its end: its own and those of the sessions it continued.
    period_minutes: i64,
}

enum Decision {
    Replay(Box<CoverSession>),
    ReplayPlanned(usize),
    New(usize),
}

async fn start_locked(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    settings: &CoverSettings,
    funds: &dyn FundsCheck,
    requests: &[StartRequest],
) -> Result<Vec<Result<SessionStarted, CoverError>>, CoverError> {
    let now = clock.now();
    let n = requests.len();
    let mut answers: Vec<Option<Result<Decision, CoverError>>> = (0..n).map(|_| None).collect();
    for (i, r) in requests.iter().enumerate() {
        if let Err(e) = check_key(&r.idempotency_key).and_then(|()| check_source(&r.source)) {
            answers[i] = Some(Err(e));
        }
    }
    let valid: Vec<usize> = (0..n).filter(|&i| answers[i].is_none()).collect();
    if valid.is_empty() {
        return Ok(finish(answers, &[], &[], now));
    }
    lock_drivers(conn, valid.iter().map(|&i| requests[i].driver_id)).await?;

    // The facts, read once for the batch under the drivers' locks.
    let known = known_sessions(conn, requests, &valid).await?;
    let drivers: Vec<DriverId> = valid.iter().map(|&i| requests[i].driver_id).collect();
    let enrolments = list_enrolments_of(conn, &drivers).await?;
    let no_enrolments: Vec<Enrolment> = Vec::new();
    let enrolments_of = |d: DriverId| enrolments.get(&d).unwrap_or(&no_enrolments);
    let mut quotes: HashMap<usize, Result<Quote, CoverError>> = HashMap::new();
    for &i in &valid {
        let r = &requests[i];
        if let Some(quote_id) = r.quote_id {
            let quote = match pricing::get_valid_quote(conn, clock, r.driver_id, quote_id).await {
                Err(PricingError::Database(e)) => return Err(e.into()),
                other => other.map_err(CoverError::from).and_then(|q| {
                    let mismatch = q.vehicle_id != r.vehicle_id
                        || r.product_id.is_some_and(|p| p != q.product_id);
                    if mismatch {
                        Err(CoverError::QuoteMismatch)
                    } else {
                        Ok(q)
                    }
                }),
            };
            quotes.insert(i, quote);
        }
    }
    // The eligibility rules, step by step, for every request (they do not depend on the order:
    // nothing a start writes changes them).
    let mut rated: HashMap<usize, Result<Rated, CoverError>> = HashMap::new();
    let mut pairs: Vec<(DriverId, VehicleId)> = Vec::new();
    let mut chosen: Vec<(usize, Enrolment)> = Vec::new();
    for &i in &valid {
        let r = &requests[i];
        if matches!(quotes.get(&i), Some(Err(_))) {
            continue;
        }
        let product = quotes
            .get(&i)
            .and_then(|q| q.as_ref().ok())
            .map(|q| q.product_id)
            .or(r.product_id);
        match enrolment_for(enrolments_of(r.driver_id), product) {
            Ok(e) => {
                pairs.push((r.driver_id, r.vehicle_id));
                chosen.push((i, e.clone()));
            }
            Err(e) => {
                rated.insert(i, Err(e));
            }
        }
    }
    if !pairs.is_empty() {
        let people = accounts::DriversWithVehicles.run(conn, &pairs).await?;
        if people.len() != pairs.len() {
            return Err(
                anyhow::anyhow!("{} people for {} asked", people.len(), pairs.len()).into(),
            );
        }
        let mut versions: HashMap<(ProductId, bool), Result<Arc<ProductVersion>, PricingError>> =
            HashMap::new();
        for ((i, enrolment), person) in chosen.into_iter().zip(people) {
            // With a quote, the published version is read now; without, the remembered one is
            // used and the quote's insert checks it is still the published one.
            let read_now = requests[i].quote_id.is_some();
            let key = (enrolment.product_id, read_now);
            let known = match versions.entry(key) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(slot) => {
                    let version = if read_now {
                        pricing::get_published(conn, enrolment.product_id)
                            .await
                            .map(Arc::new)
                    } else {
                        pricing::published_version(conn, enrolment.product_id).await
                    };
                    if let Err(PricingError::Database(e)) = version {
                        return Err(e.into());
                    }
                    slot.insert(version)
                }
            };
            let version = match known {
                Ok(v) => Ok(Arc::clone(v)),
                Err(e) => Err(same_pricing_error(e)),
            };
            rated.insert(
                i,
                rate(&enrolment, person, version, requests[i].at.min(now)),
            );
        }
    }
    let fund_asks: Vec<(usize, (DriverId, shared::Money))> = rated
        .iter()
        .filter_map(|(&i, r)| {
            r.as_ref()
                .ok()
                .map(|r| (i, (requests[i].driver_id, r.quote.minimum_charge)))
        })
        .collect();
    let funding = funds
        .can_pay_all(conn, &fund_asks.iter().map(|(_, a)| *a).collect::<Vec<_>>())
        .await
        .map_err(CoverError::Internal)?;
    if funding.len() != fund_asks.len() {
        return Err(
            anyhow::anyhow!("{} funding answers for {}", funding.len(), fund_asks.len()).into(),
        );
    }
    let funding: HashMap<usize, crate::funds::Funding> =
        fund_asks.iter().map(|(i, _)| *i).zip(funding).collect();

    // Each request in order, against its driver's state as the earlier ones left it.
    let mut state: HashMap<DriverId, DriverState> = HashMap::new();
    let ended: Vec<CoverSessionId> = known
        .iter()
        .filter(|r| r.status != SessionStatus::Active.as_str())
        .map(|r| r.id)
        .collect();
    let before = crate::continuation::minutes_before(conn, &ended).await?;
    for row in known {
        let s = state.entry(row.driver_id).or_default();
        if row.status == SessionStatus::Active.as_str() {
            s.on_cover = true;
        } else if let (Some(ended_at), Some(minutes)) = (row.ended_at, row.minutes)
            && s.last.is_none_or(|l| l.ended_at < ended_at)
        {
            s.last = Some(LastSession {
                id: row.id,
                ended_at,
                period_minutes: before.get(&row.id).copied().unwrap_or(0) + minutes,
            });
        }
        let key = row.idempotency_key.clone();
        s.keys
            .insert(key, KeyRef::Stored(Box::new(CoverSession::try_from(row)?)));
    }
    let mut planned: Vec<NewSession> = Vec::new();
    for &i in &valid {
        let r = &requests[i];
        let s = state.entry(r.driver_id).or_default();
        let decision = match s.keys.get(&r.idempotency_key) {
            Some(KeyRef::Stored(existing)) => {
                let product = enrolments_of(r.driver_id)
                    .iter()
                    .find(|e| e.id == existing.enrolment_id)
                    .map(|e| e.product_id);
                same_start(
                    r,
                    existing.vehicle_id,
                    existing.quote_id,
                    &existing.source,
                    product,
                )
                .map(|()| Decision::Replay(existing.clone()))
            }
            Some(KeyRef::Planned(j)) => {
                let p = &planned[*j];
                same_start(
                    r,
                    p.row.vehicle_id,
                    p.row.quote_id,
                    &requests[p.index].source,
                    Some(p.eligible.enrolment.product_id),
                )
                .map(|()| Decision::ReplayPlanned(*j))
            }
            None if s.on_cover => Err(CoverError::AlreadyOnCover),
            None => {
                decide_new(r, i, s, &mut quotes, &mut rated, &funding, now, settings).map(|new| {
                    planned.push(new);
                    Decision::New(planned.len() - 1)
                })
            }
        };
        if let Ok(Decision::New(j)) = &decision {
            s.on_cover = true;
            s.keys
                .insert(r.idempotency_key.clone(), KeyRef::Planned(*j));
        }
        answers[i] = Some(decision);
    }
    let stored = store(conn, &mut planned, now).await?;
    Ok(finish(answers, &planned, &stored, now))
}

/// A session the database refused as a duplicate of another (same parameters) or not.
fn same_start(
    r: &StartRequest,
    vehicle_id: VehicleId,
    quote_id: QuoteId,
    source: &SessionSource,
    product_id: Option<ProductId>,
) -> Result<(), CoverError> {
    let same = vehicle_id == r.vehicle_id
        && r.quote_id.is_none_or(|q| q == quote_id)
        && *source == r.source
        && r.product_id.is_none_or(|p| Some(p) == product_id);
    if same {
        Ok(())
    } else {
        Err(CoverError::IdempotencyKeyReused)
    }
}

/// A new session for request `i`, when the rules allow it.
#[allow(clippy::too_many_arguments)]
fn decide_new(
    r: &StartRequest,
    i: usize,
    s: &DriverState,
    quotes: &mut HashMap<usize, Result<Quote, CoverError>>,
    rated: &mut HashMap<usize, Result<Rated, CoverError>>,
    funding: &HashMap<usize, crate::funds::Funding>,
    now: DateTime<Utc>,
    settings: &CoverSettings,
) -> Result<NewSession, CoverError> {
    let given = quotes.remove(&i).transpose()?;
    let rated = rated
        .remove(&i)
        .ok_or_else(|| CoverError::Internal(anyhow::anyhow!("start {i} was not rated")))??;
    let funding = funding
        .get(&i)
        .copied()
        .ok_or_else(|| CoverError::Internal(anyhow::anyhow!("start {i} was not funded")))?;
    let eligible = funded(rated, funding)?;
    // Cover never overlaps: a late start inside time already covered starts when it ended.
    let mut at = r.at.min(now);
    if let Some(last) = s.last
        && last.ended_at > at
    {
        at = last.ended_at;
    }
    if r.until.is_some_and(|until| until <= at) {
        return Err(CoverError::AlreadyOnCover);
    }
    // Cover resumed within the gap rule continues the working period: one minimum for it.
    let gap = Duration::minutes(i64::from(eligible.version.terms.rules.gap_rule_minutes));
    let continues = s
        .last
        .filter(|last| at - last.ended_at <= gap)
        .map(|last| (last.id, last.period_minutes));
    let (quote, store_quote) = match given {
        Some(q) => (q, false),
        None => (eligible.quote.clone(), true),
    };
    let row = SessionRow::new_started(
        r.driver_id,
        r.vehicle_id,
        eligible.enrolment.id,
        &quote,
        at,
        at + Duration::hours(settings.max_session_hours),
        &r.source,
        r.idempotency_key.clone(),
        new_certificate_number(),
    );
    Ok(NewSession {
        index: i,
        row,
        eligible: Eligible { quote, ..eligible },
        store_quote,
        continues,
    })
}

fn same_pricing_error(e: &PricingError) -> PricingError {
    match e {
        PricingError::ProductNotFound => PricingError::ProductNotFound,
        _ => PricingError::ProductNotAvailable,
    }
}

/// The answers, in the requests' order.
fn finish(
    answers: Vec<Option<Result<Decision, CoverError>>>,
    planned: &[NewSession],
    stored: &[CoverSession],
    now: DateTime<Utc>,
) -> Vec<Result<SessionStarted, CoverError>> {
    answers
        .into_iter()
        .map(|a| match a {
            None => Err(CoverError::Internal(anyhow::anyhow!(
                "start left undecided"
            ))),
            Some(Err(e)) => Err(e),
            Some(Ok(Decision::Replay(session))) => Ok(SessionStarted {
                session: *session,
                replayed: true,
                continues: None,
                events: Vec::new(),
            }),
            Some(Ok(Decision::ReplayPlanned(j))) => match stored.get(j) {
                Some(session) => Ok(SessionStarted {
                    session: session.clone(),
                    replayed: true,
                    continues: None,
                    events: Vec::new(),
                }),
                None => Err(CoverError::Internal(anyhow::anyhow!(
                    "start {j} not stored"
                ))),
            },
            Some(Ok(Decision::New(j))) => match (stored.get(j), planned.get(j)) {
                (Some(session), Some(p)) => Ok(SessionStarted {
                    continues: p.continues.map(|(of, _)| of),
                    events: vec![CoverEvent {
                        driver_id: session.driver_id,
                        session_id: Some(session.id),
                        kind: CoverEventKind::Started,
                        at: now,
                    }],
                    session: session.clone(),
                    replayed: false,
                }),
                _ => Err(CoverError::Internal(anyhow::anyhow!(
                    "start {j} not stored"
                ))),
            },
        })
        .collect()
}

/// Of the drivers of `requests[valid]`: the session under each request's key, the active
/// session, and the last session that ended — three probes of indexes per driver.
async fn known_sessions(
    conn: &mut AsyncPgConnection,
    requests: &[StartRequest],
    valid: &[usize],
) -> Result<Vec<SessionRow>, CoverError> {
    let drivers: Vec<uuid::Uuid> = valid
        .iter()
        .map(|&i| requests[i].driver_id.uuid())
        .collect();
    let keys: Vec<&str> = valid
        .iter()
        .map(|&i| requests[i].idempotency_key.as_str())
        .collect();
    let rows: Vec<SessionRow> = shared::sql::prepared(
        "SELECT c.*
           FROM unnest($1::uuid[], $2::text[]) AS u(driver_id, key)
           CROSS JOIN LATERAL (
                SELECT * FROM cover_sessions k
                 WHERE k.driver_id = u.driver_id AND k.idempotency_key = u.key
                UNION ALL
                SELECT * FROM cover_sessions a
                 WHERE a.driver_id = u.driver_id AND a.status = 'active'
                UNION ALL
                (SELECT * FROM cover_sessions e
                  WHERE e.driver_id = u.driver_id AND e.status <> 'active'
                  ORDER BY e.started_at DESC LIMIT 1)
           ) AS c",
    )
    .bind::<Array<Uuid>, _>(drivers)
    .bind::<Array<Text>, _>(keys)
    .load(conn)
    .await?;
    let mut seen = HashSet::new();
    Ok(rows.into_iter().filter(|r| seen.insert(r.id)).collect())
}

/// Writes the decided starts: activates pending enrolments, stores the new quotes, the
/// sessions (drawing certificate numbers again for any the database found taken), their audit
/// entries and texts. Returns the stored sessions, in `planned`'s order.
async fn store(
    conn: &mut AsyncPgConnection,
    planned: &mut [NewSession],
    now: DateTime<Utc>,
) -> Result<Vec<CoverSession>, CoverError> {
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    let mut activated = HashSet::new();
    for p in planned.iter() {
        let e = &p.eligible.enrolment;
        if e.status == EnrolmentStatus::Pending && activated.insert(e.id) {
            let locked = crate::enrolments::lock_enrolment(conn, e.id).await?;
            set_status(
                conn,
                &locked,
                EnrolmentStatus::Active,
                "funds_available",
                Actor::System,
                now,
            )
            .await?;
        }
    }
    let quotes: Vec<Quote> = planned
        .iter()
        .filter(|p| p.store_quote)
        .map(|p| p.eligible.quote.clone())
        .collect();
    pricing::store_quotes(conn, &quotes)
        .await
        .map_err(|e| match e {
            PricingError::Database(e) => CoverError::Database(e),
            other => CoverError::from(other),
        })?;
    let mut by_id: HashMap<CoverSessionId, SessionRow> = HashMap::new();
    for _ in 0..CERTIFICATE_ATTEMPTS {
        let missing: Vec<&SessionRow> = planned
            .iter()
            .map(|p| &p.row)
            .filter(|r| !by_id.contains_key(&r.id))
            .collect();
        if missing.is_empty() {
            break;
        }
        for row in insert_sessions(conn, &missing).await? {
            by_id.insert(row.id, row);
        }
        // Under the drivers' locks the keys and the one-active rule were checked: a row the
        // database skipped drew a certificate number already taken.
        for p in planned.iter_mut() {
            if !by_id.contains_key(&p.row.id) {
                p.row.certificate_number = new_certificate_number();
            }
        }
    }
    let sessions = planned
        .iter()
        .map(|p| {
            by_id
                .remove(&p.row.id)
                .ok_or_else(|| {
                    CoverError::Internal(anyhow::anyhow!(
                        "no unused certificate number after {CERTIFICATE_ATTEMPTS} draws"
                    ))
                })
                .and_then(CoverSession::try_from)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let continued: Vec<(CoverSessionId, CoverSessionId, i64)> = planned
        .iter()
        .filter_map(|p| p.continues.map(|(of, before)| (p.row.id, of, before)))
        .collect();
    crate::continuation::record(conn, &continued).await?;
    let entries: Vec<AuditEntry<'_>> = sessions
        .iter()
        .map(|s| {
            let actor = match &s.source {
                SessionSource::Driver => Actor::Driver(s.driver_id),
                SessionSource::Partner { partner_id, .. } => Actor::Partner(*partner_id),
            };
            let (actor_type, actor_id) = actor_parts(actor);
            AuditEntry {
                actor_type,
                actor_id,
                action: STARTED_ACTION,
                subject_type: "cover_session",
                subject_id: s.id.to_string(),
                reason: None,
                details: started_audit_details(s),
            }
        })
        .collect();
    shared::audit::record_all(conn, &entries).await?;
    let texts: Vec<_> = planned
        .iter()
        .zip(&sessions)
        .map(|(p, s)| crate::notify::started_message(&p.eligible.driver, &p.eligible.vehicle, s))
        .collect();
    notifications::enqueue_notifications(conn, &texts).await?;
    Ok(sessions)
}

/// Inserts new sessions in one statement; a row that would break a unique rule is skipped.
/// Returns the rows stored.
async fn insert_sessions(
    conn: &mut AsyncPgConnection,
    rows: &[&SessionRow],
) -> Result<Vec<SessionRow>, CoverError> {
    fn column<'r, T>(rows: &[&'r SessionRow], f: impl Fn(&'r SessionRow) -> T) -> Vec<T> {
        rows.iter().map(|r| f(r)).collect()
    }
    Ok(shared::sql::prepared(
        "INSERT INTO cover_sessions (id, driver_id, vehicle_id, enrolment_id, product_version_id,
                quote_id, currency, hourly_rate_minor, status, started_at, max_end_at, source,
                partner_id, partner_ref, idempotency_key, certificate_number)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                              $6::uuid[], $7::text[], $8::int8[], $9::text[], $10::timestamptz[],
                              $11::timestamptz[], $12::text[], $13::uuid[], $14::text[],
                              $15::text[], $16::text[])
         ON CONFLICT DO NOTHING
         RETURNING *",
    )
    .bind::<Array<Uuid>, _>(column(rows, |r| r.id.uuid()))
    .bind::<Array<Uuid>, _>(column(rows, |r| r.driver_id.uuid()))
    .bind::<Array<Uuid>, _>(column(rows, |r| r.vehicle_id.uuid()))
    .bind::<Array<Uuid>, _>(column(rows, |r| r.enrolment_id.uuid()))
    .bind::<Array<Uuid>, _>(column(rows, |r| r.product_version_id.uuid()))
    .bind::<Array<Uuid>, _>(column(rows, |r| r.quote_id.uuid()))
    .bind::<Array<Text>, _>(column(rows, |r| r.currency.as_str()))
    .bind::<Array<BigInt>, _>(column(rows, |r| r.hourly_rate_minor))
    .bind::<Array<Text>, _>(column(rows, |r| r.status.as_str()))
    .bind::<Array<Timestamptz>, _>(column(rows, |r| r.started_at))
    .bind::<Array<Timestamptz>, _>(column(rows, |r| r.max_end_at))
    .bind::<Array<Text>, _>(column(rows, |r| r.source.as_str()))
    .bind::<Array<diesel::sql_types::Nullable<Uuid>>, _>(column(rows, |r| {
        r.partner_id.map(|p| p.uuid())
    }))
    .bind::<Array<diesel::sql_types::Nullable<Text>>, _>(column(rows, |r| r.partner_ref.as_deref()))
    .bind::<Array<Text>, _>(column(rows, |r| r.idempotency_key.as_str()))
    .bind::<Array<Text>, _>(column(rows, |r| r.certificate_number.as_str()))
    .load(conn)
    .await?)
}

/// Starts through the process's batcher ([`shared::batch`]): concurrent calls share one run of
/// [`start_sessions`].
pub struct StartCommand<F>(PhantomData<fn() -> F>);

impl<F> Default for StartCommand<F> {
    fn default() -> Self {
        StartCommand(PhantomData)
    }
}

/// A start as the batcher carries it, with the settings it runs under.
pub struct BatchedStart {
    request: StartRequest,
    settings: CoverSettings,
    clock: Arc<dyn Clock>,
}

impl<F: FundsCheck + Default + 'static> BatchQuery for StartCommand<F> {
    type Input = BatchedStart;
    type Output = Result<SessionStarted, CoverError>;
    const NAME: &'static str = "cover starts";

    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        inputs: &'a [BatchedStart],
    ) -> BatchFuture<'a, Self::Output> {
        Box::pin(async move {
            let Some(first) = inputs.first() else {
                return Ok(Vec::new());
            };
            let requests: Vec<StartRequest> = inputs.iter().map(|b| b.request.clone()).collect();
            let funds = F::default();
            let answers = start_sessions(
                conn,
                first.clock.as_ref(),
                &first.settings,
                &funds,
                &requests,
            )
            .await;
            for_batcher(requests.len(), answers)
        })
    }
}

/// Starts cover for one request, batched with the other starts of the moment in this process,
/// and publishes its event once committed. The door the API uses.
pub async fn start_cover<F: FundsCheck + Default + 'static>(
    core: &Core,
    request: StartRequest,
) -> Result<SessionStarted, CoverError> {
    let input = BatchedStart {
        request,
        settings: core.settings.cover.clone(),
        clock: core.clock.clone(),
    };
    through_batcher::<StartCommand<F>, _>(core, input).await
}
