//! Starting and ending cover for many drivers at once ([`shared::batch`]).
//!
//! Under load, `startCover` and `endCover` requests of different drivers arrive together. One at
//! a time, a start costs a dozen statements and a commit, and so does an end. The batches here
//! do the plain case for every request waiting at that moment in a few statements over arrays
//! and one commit: a start reads the drivers' sessions, enrolments, drivers and vehicles and
//! wallets once for all, then locks their enrolments and stores the quotes, sessions, audit
//! entries and texts in one transaction; an end locks the drivers and sessions, reads the day's
//! charges, and stores the endings, audit entries, texts and charge jobs in one transaction.
//!
//! Only the plain case is batched. A request that is anything else answers
//! [`Batched::Fallback`] and its caller runs the one-at-a-time path ([`crate::start_session`],
//! [`crate::end_session`]), which gives the exact answer: a repeated key or a driver already on
//! cover, an enrolment that is not active, a start that is not eligible (any error), a session
//! that is not the driver's or not active, two requests of one driver in one batch, a race lost
//! to another request. So the batched path writes exactly what the single path writes for a
//! plain start or end, and its errors are always the single path's. A batch the database refuses
//! is run again request by request (see [`shared::batch`]); a request refused alone falls back.

use crate::eligibility::choose_enrolment;
use crate::ending::{ENDED_ACTION, SessionEnded, effective_end, ended_audit_details, price_with};
use crate::enrolments::{EnrolmentStatus, list_enrolments_of};
use crate::error::CoverError;
use crate::events::{CoverEvent, CoverEventKind};
use crate::funds::{Funding, FundsCheck};
use crate::ids::CoverSessionId;
use crate::sessions::{
    CoverSession, EndReason, STARTED_ACTION, SessionRow, SessionSource, SessionStarted,
    SessionStatus, StartCover, new_certificate_number, started_audit_details,
};
use crate::support::{actor_parts, driver_lock_key};
use accounts::{Actor, DriverId, VehicleId};
use chrono::{DateTime, Duration, Utc};
use diesel::QueryResult;
use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamptz, Uuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use pricing::{ProductId, Quote};
use shared::audit::AuditEntry;
use shared::batch::{BatchFuture, BatchQuery};
use shared::core::Core;
use shared::outbox::Job;
use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;

/// A batched request's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batched<T> {
    /// Done, and committed.
    Done(T),
    /// Not the plain case: nothing was written for it; run the one-at-a-time path.
    Fallback,
}

/// A plain start: the driver's own, without a quote, on the enrolment for `product_id` (or
/// the driver's best one).
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Who.
    pub driver_id: DriverId,
    /// On which vehicle.
    pub vehicle_id: VehicleId,
    /// Under which product's enrolment.
    pub product_id: Option<ProductId>,
    /// The client's key.
    pub idempotency_key: String,
    /// When.
    pub now: DateTime<Utc>,
    /// The session's maximum end.
    pub max_end_at: DateTime<Utc>,
}

/// Plain starts, batched; `F` answers whether the drivers can pay.
pub struct StartBatch<F>(PhantomData<fn() -> F>);

impl<F> Default for StartBatch<F> {
    fn default() -> Self {
        StartBatch(PhantomData)
    }
}

impl<F: FundsCheck + Default + 'static> BatchQuery for StartBatch<F> {
    type Input = StartRequest;
    type Output = Batched<CoverSession>;
    const NAME: &'static str = "cover starts";

    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        inputs: &'a [StartRequest],
    ) -> BatchFuture<'a, Batched<CoverSession>> {
        Box::pin(start_all(conn, inputs, F::default()))
    }
}

/// A plain end: the driver's own session, ended now by the driver.
#[derive(Debug, Clone)]
pub struct EndRequest {
    /// Who.
    pub driver_id: DriverId,
    /// Which session.
    pub session_id: CoverSessionId,
    /// When.
    pub now: DateTime<Utc>,
}

/// Plain ends, batched; each ending also enqueues the job `J` made from its session (what must
/// follow an ending, such as taking the charge), in the same transaction.
pub struct EndBatch<J>(PhantomData<fn() -> J>);

impl<J> Default for EndBatch<J> {
    fn default() -> Self {
        EndBatch(PhantomData)
    }
}

impl<J: Job + From<CoverSessionId>> BatchQuery for EndBatch<J> {
    type Input = EndRequest;
    type Output = Batched<CoverSession>;
    const NAME: &'static str = "cover ends";

    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        inputs: &'a [EndRequest],
    ) -> BatchFuture<'a, Batched<CoverSession>> {
        Box::pin(end_all::<J>(conn, inputs))
    }
}

/// An error that fails the whole batch (it is then run again request by request).
fn batch_error(e: impl Into<anyhow::Error>) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(e.into().into())
}

fn cover_error(e: CoverError) -> diesel::result::Error {
    match e {
        CoverError::Database(e) => e,
        other => batch_error(other),
    }
}

fn notifications_error(e: notifications::NotificationsError) -> diesel::result::Error {
    match e {
        notifications::NotificationsError::Database(e) => e,
        other => batch_error(other),
    }
}

/// The rows the database stored, as sessions in the order of `ids`. A row it skipped (a guard or
/// a unique rule) rolls the batch back, to be run again request by request.
fn in_order(
    rows: Vec<SessionRow>,
    ids: impl Iterator<Item = CoverSessionId>,
) -> QueryResult<Vec<CoverSession>> {
    let mut by_id: HashMap<CoverSessionId, SessionRow> =
        rows.into_iter().map(|r| (r.id, r)).collect();
    let sessions = ids
        .map(|id| {
            let row = by_id
                .remove(&id)
                .ok_or(diesel::result::Error::RollbackTransaction)?;
            CoverSession::try_from(row).map_err(cover_error)
        })
        .collect::<QueryResult<Vec<_>>>()?;
    if by_id.is_empty() {
        Ok(sessions)
    } else {
        Err(diesel::result::Error::RollbackTransaction)
    }
}

/// The audit entries of drivers acting on their own sessions, with `details` of the i-th.
fn drivers_audit<'a>(
    action: &'a str,
    sessions: &[CoverSession],
    details: impl Fn(usize, &CoverSession) -> serde_json::Value,
) -> Vec<AuditEntry<'a>> {
    sessions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (actor_type, actor_id) = actor_parts(Actor::Driver(s.driver_id));
            AuditEntry {
                actor_type,
                actor_id,
                action,
                subject_type: "cover_session",
                subject_id: s.id.to_string(),
                reason: None,
                details: details(i, s),
            }
        })
        .collect()
}

/// What a plain start will store, once everything it needs has been read.
struct Planned {
    index: usize,
    row: SessionRow,
    quote: Quote,
    driver: accounts::Driver,
    vehicle: accounts::Vehicle,
}

async fn start_all<F: FundsCheck>(
    conn: &mut AsyncPgConnection,
    inputs: &[StartRequest],
    funds: F,
) -> QueryResult<Vec<Batched<CoverSession>>> {
    let mut out: Vec<Batched<CoverSession>> = inputs.iter().map(|_| Batched::Fallback).collect();
    // One request per driver; the others fall back (and see what the first one did).
    let mut seen = HashSet::new();
    let firsts: Vec<usize> = (0..inputs.len())
        .filter(|&i| seen.insert(inputs[i].driver_id))
        .collect();
    let busy = drivers_with_key_or_cover(conn, inputs, &firsts).await?;
    let firsts: Vec<usize> = firsts
        .into_iter()
        .filter(|&i| !busy.contains(&inputs[i].driver_id))
        .collect();
    if firsts.is_empty() {
        return Ok(out);
    }
    let driver_ids: Vec<DriverId> = firsts.iter().map(|&i| inputs[i].driver_id).collect();
    let mut enrolments = list_enrolments_of(conn, &driver_ids)
        .await
        .map_err(cover_error)?;
    let pairs: Vec<(DriverId, VehicleId)> = firsts
        .iter()
        .map(|&i| (inputs[i].driver_id, inputs[i].vehicle_id))
        .collect();
    let people = accounts::DriversWithVehicles.run(conn, &pairs).await?;
    if people.len() != pairs.len() {
        return Err(batch_error(anyhow::anyhow!(
            "{} drivers with vehicles for {} asked",
            people.len(),
            pairs.len()
        )));
    }
    let mut planned = Vec::with_capacity(firsts.len());
    for (&i, person) in firsts.iter().zip(people) {
        let input = &inputs[i];
        let Some(enrolment) = choose_enrolment(
            enrolments.remove(&input.driver_id).unwrap_or_default(),
            input.product_id,
        ) else {
            continue;
        };
        if enrolment.status != EnrolmentStatus::Active {
            continue;
        }
        let Ok((driver, vehicle)) = person else {
            continue;
        };
        let Ok(version) = pricing::published_version(conn, enrolment.product_id).await else {
            continue;
        };
        let Ok(rating) = pricing::rating_input_for(&driver, &vehicle, input.now) else {
            continue;
        };
        let Ok(quote) = pricing::build_quote(
            &version,
            input.driver_id,
            input.vehicle_id,
            rating,
            input.now,
        ) else {
            continue;
        };
        let row = SessionRow::new_started(
            input.driver_id,
            input.vehicle_id,
            enrolment.id,
            &quote,
            input.now,
            input.max_end_at,
            &SessionSource::Driver,
            input.idempotency_key.clone(),
            new_certificate_number(),
        );
        planned.push(Planned {
            index: i,
            row,
            quote,
            driver,
            vehicle,
        });
    }
    let asks: Vec<(DriverId, shared::Money)> = planned
        .iter()
        .map(|p| (p.row.driver_id, p.quote.minimum_charge))
        .collect();
    let funding = funds.can_pay_all(conn, &asks).await.map_err(batch_error)?;
    if funding.len() != planned.len() {
        return Err(batch_error(anyhow::anyhow!(
            "{} funding answers for {} asked",
            funding.len(),
            planned.len()
        )));
    }
    let planned: Vec<Planned> = planned
        .into_iter()
        .zip(funding)
        .filter(|(_, f)| *f == Funding::Ok)
        .map(|(p, _)| p)
        .collect();
    if planned.is_empty() {
        return Ok(out);
    }
    let stored = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| store_starts(conn, planned).await)
        .await?;
    for (index, session) in stored {
        out[index] = Batched::Done(session);
    }
    Ok(out)
}

/// Of the drivers of `inputs[firsts]`, those with a session under their request's key or an
/// active session (their request is not a plain start).
async fn drivers_with_key_or_cover(
    conn: &mut AsyncPgConnection,
    inputs: &[StartRequest],
    firsts: &[usize],
) -> QueryResult<HashSet<DriverId>> {
    #[derive(diesel::QueryableByName)]
    struct Busy {
        #[diesel(sql_type = Uuid)]
        driver_id: uuid::Uuid,
    }
    let drivers: Vec<uuid::Uuid> = firsts.iter().map(|&i| inputs[i].driver_id.uuid()).collect();
    let keys: Vec<&str> = firsts
        .iter()
        .map(|&i| inputs[i].idempotency_key.as_str())
        .collect();
    let busy: Vec<Busy> = shared::sql::prepared(
        // Two probes of unique indexes per driver. Written as scalar subqueries so that the
        // planner cannot turn them into a join over every session of every driver.
        "SELECT u.driver_id
           FROM unnest($1::uuid[], $2::text[]) AS u(driver_id, key)
          WHERE (SELECT true FROM cover_sessions c
                  WHERE c.driver_id = u.driver_id AND c.idempotency_key = u.key)
             OR (SELECT true FROM cover_sessions c
                  WHERE c.driver_id = u.driver_id AND c.status = 'active')",
    )
    .bind::<Array<Uuid>, _>(drivers)
    .bind::<Array<Text>, _>(keys)
    .load(conn)
    .await?;
    Ok(busy.into_iter().map(|b| DriverId(b.driver_id)).collect())
}

/// In the batch's transaction: locks the enrolments, and stores the quotes, the sessions, their
/// audit entries and "cover started" texts of the starts whose enrolment is still active.
/// Answers each stored session with its request's index. A session the database skips (a race
/// lost to another start of the driver, a certificate number drawn twice) rolls the whole
/// batch back, to be run again request by request.
async fn store_starts(
    conn: &mut AsyncPgConnection,
    planned: Vec<Planned>,
) -> QueryResult<Vec<(usize, CoverSession)>> {
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Uuid)]
        id: uuid::Uuid,
        #[diesel(sql_type = Text)]
        status: String,
    }
    let enrolment_ids: Vec<uuid::Uuid> =
        planned.iter().map(|p| p.row.enrolment_id.uuid()).collect();
    // Serialises with suspension and cancellation, as a single start does; in id order, so two
    // batches never wait for each other in a circle.
    let locked: Vec<Locked> = shared::sql::prepared(
        "SELECT id, status FROM enrolments WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind::<Array<Uuid>, _>(enrolment_ids)
    .load(conn)
    .await?;
    let active: HashSet<uuid::Uuid> = locked
        .into_iter()
        .filter(|l| l.status == EnrolmentStatus::Active.as_str())
        .map(|l| l.id)
        .collect();
    let planned: Vec<Planned> = planned
        .into_iter()
        .filter(|p| active.contains(&p.row.enrolment_id.uuid()))
        .collect();
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    let quotes: Vec<Quote> = planned.iter().map(|p| p.quote.clone()).collect();
    pricing::store_quotes(conn, &quotes)
        .await
        .map_err(|e| match e {
            pricing::PricingError::Database(e) => e,
            other => batch_error(other),
        })?;
    let rows: Vec<&SessionRow> = planned.iter().map(|p| &p.row).collect();
    let stored = insert_sessions(conn, &rows).await?;
    let sessions = in_order(stored, planned.iter().map(|p| p.row.id))?;
    let entries = drivers_audit(STARTED_ACTION, &sessions, |_, s| started_audit_details(s));
    shared::audit::record_all(conn, &entries).await?;
    let texts: Vec<_> = planned
        .iter()
        .zip(&sessions)
        .map(|(p, s)| crate::notify::started_message(&p.driver, &p.vehicle, s))
        .collect();
    notifications::enqueue_notifications(conn, &texts)
        .await
        .map_err(notifications_error)?;
    Ok(planned.iter().map(|p| p.index).zip(sessions).collect())
}

/// Inserts new sessions in one statement; a row that would break a unique rule (the key, one
/// active session per driver, the certificate number) is skipped. Returns the rows stored.
async fn insert_sessions(
    conn: &mut AsyncPgConnection,
    rows: &[&SessionRow],
) -> QueryResult<Vec<SessionRow>> {
    fn column<'r, T>(rows: &[&'r SessionRow], f: impl Fn(&'r SessionRow) -> T) -> Vec<T> {
        rows.iter().map(|r| f(r)).collect()
    }
    shared::sql::prepared(
        "INSERT INTO cover_sessions (id, driver_id, vehicle_id, enrolment_id, product_version_id,
                quote_id, currency, hourly_rate_minor, status, started_at, max_end_at, source,
                idempotency_key, certificate_number)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                              $6::uuid[], $7::text[], $8::int8[], $9::text[], $10::timestamptz[],
                              $11::timestamptz[], $12::text[], $13::text[], $14::text[])
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
    .bind::<Array<Text>, _>(column(rows, |r| r.idempotency_key.as_str()))
    .bind::<Array<Text>, _>(column(rows, |r| r.certificate_number.as_str()))
    .load(conn)
    .await
}

/// A plain end, priced, ready to store.
struct Ending {
    index: usize,
    row: SessionRow,
    ended_at: DateTime<Utc>,
    reason: EndReason,
    charge: pricing::SessionCharge,
}

async fn end_all<J: Job + From<CoverSessionId>>(
    conn: &mut AsyncPgConnection,
    inputs: &[EndRequest],
) -> QueryResult<Vec<Batched<CoverSession>>> {
    let mut out: Vec<Batched<CoverSession>> = inputs.iter().map(|_| Batched::Fallback).collect();
    let stored = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            end_locked_all::<J>(conn, inputs).await
        })
        .await?;
    for (index, session) in stored {
        out[index] = Batched::Done(session);
    }
    Ok(out)
}

async fn end_locked_all<J: Job + From<CoverSessionId>>(
    conn: &mut AsyncPgConnection,
    inputs: &[EndRequest],
) -> QueryResult<Vec<(usize, CoverSession)>> {
    // The drivers' locks first (in one order for every batch), then the rows, as every ending.
    let mut keys: Vec<String> = inputs
        .iter()
        .map(|i| driver_lock_key(i.driver_id))
        .collect();
    keys.sort();
    keys.dedup();
    shared::sql::prepared(
        "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0)))
           FROM unnest($1::text[]) WITH ORDINALITY AS u(k, n)",
    )
    .bind::<Array<Text>, _>(keys)
    .execute(conn)
    .await?;
    let ids: Vec<uuid::Uuid> = inputs.iter().map(|i| i.session_id.uuid()).collect();
    let rows: Vec<SessionRow> = shared::sql::prepared(
        "SELECT * FROM cover_sessions WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind::<Array<Uuid>, _>(ids)
    .load(conn)
    .await?;
    let mut rows: HashMap<CoverSessionId, SessionRow> =
        rows.into_iter().map(|r| (r.id, r)).collect();
    // Each session once, ended by its own driver, and only while active.
    let mut endings: Vec<(usize, SessionRow, DateTime<Utc>, EndReason)> = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let Some(row) = rows.remove(&input.session_id) else {
            continue;
        };
        if row.driver_id != input.driver_id || row.status != SessionStatus::Active.as_str() {
            continue;
        }
        let (ended_at, reason) = effective_end(&row, input.now, EndReason::Driver);
        endings.push((index, row, ended_at, reason));
    }
    if endings.is_empty() {
        return Ok(Vec::new());
    }
    let already = charged_today(conn, &endings).await?;
    let mut priced = Vec::with_capacity(endings.len());
    for ((index, row, ended_at, reason), already) in endings.into_iter().zip(already) {
        let Ok(already) = crate::ending::money(already, &row.currency) else {
            continue;
        };
        let Ok(charge) = price_with(conn, &row, ended_at, already).await else {
            continue;
        };
        priced.push(Ending {
            index,
            row,
            ended_at,
            reason,
            charge,
        });
    }
    if priced.is_empty() {
        return Ok(Vec::new());
    }
    let updated = update_endings(conn, &priced).await?;
    let sessions = in_order(updated, priced.iter().map(|e| e.row.id))?;
    let entries = drivers_audit(ENDED_ACTION, &sessions, |i, s| {
        let e = &priced[i];
        ended_audit_details(s, e.reason, e.ended_at, &e.charge)
    });
    shared::audit::record_all(conn, &entries).await?;
    // A driver whose account is deleted gets no text, as with a single ending.
    let driver_ids: Vec<DriverId> = sessions.iter().map(|s| s.driver_id).collect();
    let drivers: HashMap<DriverId, accounts::Driver> = accounts::get_drivers(conn, &driver_ids)
        .await
        .map_err(|e| match e {
            accounts::AccountsError::Database(e) => e,
            other => batch_error(other),
        })?
        .into_iter()
        .map(|d| (d.id, d))
        .collect();
    let mut texts = Vec::with_capacity(sessions.len());
    for s in &sessions {
        if let Some(driver) = drivers.get(&s.driver_id) {
            texts.push(crate::notify::ended_message(driver, s).map_err(cover_error)?);
        }
    }
    notifications::enqueue_notifications(conn, &texts)
        .await
        .map_err(notifications_error)?;
    let jobs: Vec<J> = sessions.iter().map(|s| J::from(s.id)).collect();
    shared::outbox::enqueue_all(conn, &jobs)
        .await
        .map_err(batch_error)?;
    Ok(priced.iter().map(|e| e.index).zip(sessions).collect())
}

/// For each ending, what its driver was charged for their other sessions that started on the
/// same UK day (as a single ending reads it), in one read.
async fn charged_today(
    conn: &mut AsyncPgConnection,
    endings: &[(usize, SessionRow, DateTime<Utc>, EndReason)],
) -> QueryResult<Vec<i64>> {
    #[derive(diesel::QueryableByName)]
    struct Total {
        #[diesel(sql_type = BigInt)]
        total: i64,
    }
    let mut starts = Vec::with_capacity(endings.len());
    let mut ends = Vec::with_capacity(endings.len());
    for (_, row, _, _) in endings {
        let (start, end) = crate::support::uk_day_bounds(row.started_at);
        starts.push(start);
        ends.push(end);
    }
    let totals: Vec<Total> = shared::sql::prepared(
        "SELECT coalesce((SELECT sum(c.total_minor)
                            FROM cover_sessions c
                           WHERE c.driver_id = u.driver_id AND c.id <> u.id
                             AND c.status <> 'active' AND c.currency = u.currency
                             AND c.started_at >= u.day_start AND c.started_at < u.day_end),
                         0)::bigint AS total
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[])
                WITH ORDINALITY AS u(driver_id, id, currency, day_start, day_end, n)
          ORDER BY u.n",
    )
    .bind::<Array<Uuid>, _>(
        endings
            .iter()
            .map(|e| e.1.driver_id.uuid())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Uuid>, _>(endings.iter().map(|e| e.1.id.uuid()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        endings
            .iter()
            .map(|e| e.1.currency.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Timestamptz>, _>(starts)
    .bind::<Array<Timestamptz>, _>(ends)
    .load(conn)
    .await?;
    if totals.len() != endings.len() {
        return Err(batch_error(anyhow::anyhow!(
            "{} day totals for {} endings",
            totals.len(),
            endings.len()
        )));
    }
    Ok(totals.into_iter().map(|t| t.total).collect())
}

/// Ends and prices the sessions in one guarded update (each only while still active); returns
/// the rows updated.
async fn update_endings(
    conn: &mut AsyncPgConnection,
    endings: &[Ending],
) -> QueryResult<Vec<SessionRow>> {
    fn column<'e, T>(endings: &'e [Ending], f: impl Fn(&'e Ending) -> T) -> Vec<T> {
        endings.iter().map(f).collect()
    }
    let ipt_bp = endings
        .iter()
        .map(|e| i32::try_from(e.charge.breakdown.ipt_rate_bp).map_err(batch_error))
        .collect::<QueryResult<Vec<i32>>>()?;
    let commission_bp = endings
        .iter()
        .map(|e| i32::try_from(e.charge.breakdown.commission_rate_bp).map_err(batch_error))
        .collect::<QueryResult<Vec<i32>>>()?;
    shared::sql::prepared(
        "UPDATE cover_sessions c
            SET status = 'ended', ended_at = u.ended_at, end_reason = u.end_reason,
                minutes = u.minutes, billed_minutes = u.billed_minutes,
                charge_rule = u.charge_rule, uncapped_minor = u.uncapped_minor,
                net_minor = u.net_minor, commission_minor = u.commission_minor,
                ipt_minor = u.ipt_minor, total_minor = u.total_minor,
                ipt_rate_bp = u.ipt_rate_bp, commission_bp = u.commission_bp
           FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::int8[], $5::int8[],
                       $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[],
                       $12::int4[], $13::int4[])
                AS u(id, ended_at, end_reason, minutes, billed_minutes, charge_rule,
                     uncapped_minor, net_minor, commission_minor, ipt_minor, total_minor,
                     ipt_rate_bp, commission_bp)
          WHERE c.id = u.id AND c.status = 'active'
      RETURNING c.*",
    )
    .bind::<Array<Uuid>, _>(column(endings, |e| e.row.id.uuid()))
    .bind::<Array<Timestamptz>, _>(column(endings, |e| e.ended_at))
    .bind::<Array<Text>, _>(column(endings, |e| e.reason.as_str()))
    .bind::<Array<BigInt>, _>(column(endings, |e| e.charge.minutes))
    .bind::<Array<BigInt>, _>(column(endings, |e| e.charge.billed_minutes))
    .bind::<Array<Text>, _>(column(endings, |e| e.charge.rule.as_str()))
    .bind::<Array<BigInt>, _>(column(endings, |e| e.charge.uncapped.minor))
    .bind::<Array<BigInt>, _>(column(endings, |e| e.charge.breakdown.net_premium.minor))
    .bind::<Array<BigInt>, _>(column(endings, |e| e.charge.breakdown.commission.minor))
    .bind::<Array<BigInt>, _>(column(endings, |e| e.charge.breakdown.ipt.minor))
    .bind::<Array<BigInt>, _>(column(endings, |e| e.charge.breakdown.total.minor))
    .bind::<Array<Integer>, _>(ipt_bp)
    .bind::<Array<Integer>, _>(commission_bp)
    .load(conn)
    .await
}

/// Starts cover for the driver as [`crate::start_session`] would, when it is a plain start (see
/// the module documentation), batched with the other requests of this process. `None` when it is
/// not, or the batch left it, or the batch could not run: the caller then runs
/// [`crate::start_session`], which gives the exact answer.
pub async fn try_start_batched<F: FundsCheck + Default + 'static>(
    core: &Core,
    driver_id: DriverId,
    input: &StartCover,
) -> Option<SessionStarted> {
    let plain = input.quote_id.is_none()
        && input.source == SessionSource::Driver
        && crate::sessions::check_key(&input.idempotency_key).is_ok();
    if !plain {
        return None;
    }
    let now = core.clock.now();
    let request = StartRequest {
        driver_id,
        vehicle_id: input.vehicle_id,
        product_id: input.product_id,
        idempotency_key: input.idempotency_key.clone(),
        now,
        max_end_at: now + Duration::hours(core.settings.cover.max_session_hours),
    };
    match core.batcher::<StartBatch<F>>().call(request).await {
        Ok(Batched::Done(session)) => Some(SessionStarted {
            events: vec![CoverEvent {
                driver_id,
                session_id: Some(session.id),
                kind: CoverEventKind::Started,
                at: now,
            }],
            session,
            replayed: false,
        }),
        Ok(Batched::Fallback) => None,
        Err(e) => {
            tracing::debug!(%driver_id, error = %e, "batched start refused; starting alone");
            None
        }
    }
}

/// Ends one of the driver's sessions now as [`crate::end_session`] would, with the job `J` for
/// it in the same transaction, when it is a plain end (see the module documentation), batched
/// with the other requests of this process. `None` when it is not, or the batch left it, or the
/// batch could not run: the caller then runs [`crate::end_session`] (and enqueues `J`), which
/// gives the exact answer.
pub async fn try_end_batched<J: Job + From<CoverSessionId>>(
    core: &Core,
    driver_id: DriverId,
    session_id: CoverSessionId,
) -> Option<SessionEnded> {
    let now = core.clock.now();
    let request = EndRequest {
        driver_id,
        session_id,
        now,
    };
    match core.batcher::<EndBatch<J>>().call(request).await {
        Ok(Batched::Done(session)) => Some(SessionEnded {
            events: vec![CoverEvent {
                driver_id,
                session_id: Some(session.id),
                kind: CoverEventKind::Ended,
                at: now,
            }],
            session,
        }),
        Ok(Batched::Fallback) => None,
        Err(e) => {
            tracing::debug!(%driver_id, %session_id, error = %e, "batched end refused; ending alone");
            None
        }
    }
}
