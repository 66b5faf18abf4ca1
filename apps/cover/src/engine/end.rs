//! Ending cover: [`end_sessions`], the one implementation, and its doors.

use super::{for_batcher, lock_drivers, through_batcher};
use crate::ending::{ENDED_ACTION, effective_end, ended_audit_details, money};
use crate::error::CoverError;
use crate::events::{CoverEvent, CoverEventKind};
use crate::ids::CoverSessionId;
use crate::jobs::ChargeSession;
use crate::schema::cover_sessions;
use crate::sessions::{CoverSession, EndReason, SessionRow, SessionStatus};
use crate::support::actor_parts;
use accounts::{Actor, DriverId};
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Date, Integer, Text, Timestamptz, Uuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use pricing::{DayCharge, PricedSession, SessionCharge};
use shared::Clock;
use shared::audit::AuditEntry;
use shared::batch::{BatchFuture, BatchQuery};
use shared::core::Core;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One request to end a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndRequest {
    /// The session.
    pub session_id: CoverSessionId,
    /// The driver ending their own session (another driver's answers `SESSION_NOT_FOUND`);
    /// `None` for anyone's (ops, a partner, the clock, a cancelled enrolment).
    pub driver_id: Option<DriverId>,
    /// When cover ends: now, or when a partner's work ended. A deadline already passed before
    /// then (the maximum length, a partner's gap rule) ends it at that deadline, for that reason.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: EndReason,
    /// Who, for the audit log; `None`: the driver for `driver`, the session's partner for
    /// `partner`, the system otherwise.
    pub actor: Option<Actor>,
}

impl EndRequest {
    /// A driver ending their own session now.
    pub fn by_driver(driver_id: DriverId, session_id: CoverSessionId, now: DateTime<Utc>) -> Self {
        Self {
            session_id,
            driver_id: Some(driver_id),
            at: now,
            reason: EndReason::Driver,
            actor: None,
        }
    }
}

/// The result of ending a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "publish the events once the change has committed"]
pub struct SessionEnded {
    /// The session, ended and priced.
    pub session: CoverSession,
    /// Events for [`crate::events::publish_cover_event`], after commit.
    pub events: Vec<CoverEvent>,
}

/// Ends and prices each requested session, as if the requests came one after the other in
/// this order. Each ending is priced by [`pricing::VersionTerms::price_session_by_day`] on the
/// session's own version and locked rate, as part of its working period, each UK day's part
/// against what the driver's other sessions were charged for that day (the daily cap); it is
/// written with its parts by day, its audit entry, its "cover ended" text and the
/// [`ChargeSession`] job that takes the charge, all in one transaction (a savepoint inside the
/// caller's).
///
/// Each answer: the ended session, or `SESSION_NOT_FOUND` (also another driver's),
/// `SESSION_ALREADY_ENDED`. The outer error is a failure of the whole batch (the database);
/// nothing was written then.
pub async fn end_sessions(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    requests: &[EndRequest],
) -> Result<Vec<Result<SessionEnded, CoverError>>, CoverError> {
    conn.transaction::<_, CoverError, _>(async |conn| end_locked(conn, clock, requests).await)
        .await
}

/// An ending, decided and priced.
struct Ending {
    index: usize,
    row: SessionRow,
    ended_at: DateTime<Utc>,
    reason: EndReason,
    actor: Actor,
    charge: SessionCharge,
    days: Vec<DayCharge>,
}

async fn end_locked(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    requests: &[EndRequest],
) -> Result<Vec<Result<SessionEnded, CoverError>>, CoverError> {
    let now = clock.now();
    // Whose sessions: the drivers named, and the owners of the others.
    let unnamed: Vec<CoverSessionId> = requests
        .iter()
        .filter(|r| r.driver_id.is_none())
        .map(|r| r.session_id)
        .collect();
    let owners: HashMap<CoverSessionId, DriverId> = if unnamed.is_empty() {
        HashMap::new()
    } else {
        cover_sessions::table
            .filter(cover_sessions::id.eq_any(&unnamed))
            .select((cover_sessions::id, cover_sessions::driver_id))
            .load::<(CoverSessionId, DriverId)>(conn)
            .await?
            .into_iter()
            .collect()
    };
    let asked: Vec<Option<(CoverSessionId, DriverId)>> = requests
        .iter()
        .map(|r| {
            r.driver_id
                .or_else(|| owners.get(&r.session_id).copied())
                .map(|d| (r.session_id, d))
        })
        .collect();
    lock_drivers(conn, asked.iter().flatten().map(|(_, d)| *d)).await?;
    let pairs: Vec<(CoverSessionId, DriverId)> = asked.iter().flatten().copied().collect();
    let rows: HashMap<CoverSessionId, SessionRow> = lock_rows(conn, &pairs)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();

    // Each request in order: a session ends once.
    let mut answers: Vec<Option<Result<(), CoverError>>> = Vec::with_capacity(requests.len());
    let mut ended: HashSet<CoverSessionId> = HashSet::new();
    let mut to_price: Vec<(usize, SessionRow, DateTime<Utc>, EndReason, Actor)> = Vec::new();
    for (index, (r, asked)) in requests.iter().zip(&asked).enumerate() {
        let row = asked
            .and_then(|(id, driver)| rows.get(&id).filter(|row| row.driver_id == driver).cloned());
        let decision = match row {
            None => Err(CoverError::SessionNotFound),
            Some(row)
                if row.status != SessionStatus::Active.as_str() || ended.contains(&row.id) =>
            {
                Err(CoverError::SessionAlreadyEnded)
            }
            Some(row) => {
                ended.insert(row.id);
                let (ended_at, reason) = effective_end(&row, r.at, r.reason);
                let actor = r.actor.unwrap_or(match (r.reason, row.partner_id) {
                    (EndReason::Driver, _) => Actor::Driver(row.driver_id),
                    (EndReason::Partner, Some(partner_id)) => Actor::Partner(partner_id),
                    _ => Actor::System,
                });
                to_price.push((index, row, ended_at, reason, actor));
                Ok(())
            }
        };
        answers.push(Some(decision));
    }
    let ids: Vec<CoverSessionId> = to_price.iter().map(|(_, row, ..)| row.id).collect();
    let before = crate::continuation::minutes_before(conn, &ids).await?;
    let to_charge: Vec<(&SessionRow, DateTime<Utc>, Option<i64>)> = to_price
        .iter()
        .map(|(_, row, at, ..)| (row, *at, before.get(&row.id).copied()))
        .collect();
    let charges = price_endings(conn, &to_charge).await?;
    let endings: Vec<Ending> = to_price
        .into_iter()
        .zip(charges)
        .map(|((index, row, ended_at, reason, actor), priced)| Ending {
            index,
            row,
            ended_at,
            reason,
            actor,
            charge: priced.charge,
            days: priced.days,
        })
        .collect();
    let sessions = store(conn, &endings).await?;
    let mut by_index: HashMap<usize, CoverSession> =
        endings.iter().map(|e| e.index).zip(sessions).collect();
    Ok(answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| match a {
            Some(Ok(())) => match by_index.remove(&i) {
                Some(session) => Ok(SessionEnded {
                    events: vec![CoverEvent {
                        driver_id: session.driver_id,
                        session_id: Some(session.id),
                        kind: CoverEventKind::Ended,
                        at: now,
                    }],
                    session,
                }),
                None => Err(CoverError::Internal(anyhow::anyhow!(
                    "ending {i} not stored"
                ))),
            },
            Some(Err(e)) => Err(e),
            None => Err(CoverError::Internal(anyhow::anyhow!(
                "ending {i} undecided"
            ))),
        })
        .collect())
}

/// The sessions of `pairs`, each only if it is its driver's, locked for update in id order.
async fn lock_rows(
    conn: &mut AsyncPgConnection,
    pairs: &[(CoverSessionId, DriverId)],
) -> Result<Vec<SessionRow>, CoverError> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    Ok(shared::sql::prepared(
        "SELECT c.* FROM cover_sessions c
           JOIN unnest($1::uuid[], $2::uuid[]) AS u(id, driver_id)
             ON c.id = u.id AND c.driver_id = u.driver_id
          ORDER BY c.id
            FOR UPDATE OF c",
    )
    .bind::<Array<Uuid>, _>(pairs.iter().map(|(s, _)| s.uuid()).collect::<Vec<_>>())
    .bind::<Array<Uuid>, _>(pairs.iter().map(|(_, d)| d.uuid()).collect::<Vec<_>>())
    .load(conn)
    .await?)
}

/// Prices sessions ending at the given times: each on its own version and locked rate, as part
/// of its working period (the period's minutes before it, for a session that continues one),
/// each UK day's part against what its driver's other sessions were charged for that day.
async fn price_endings(
    conn: &mut AsyncPgConnection,
    endings: &[(&SessionRow, DateTime<Utc>, Option<i64>)],
) -> Result<Vec<PricedSession>, CoverError> {
    if endings.is_empty() {
        return Ok(Vec::new());
    }
    let already = charged_on_days(conn, endings).await?;
    let mut priced = Vec::with_capacity(endings.len());
    for (row, ended_at, before) in endings {
        let version = pricing::get_version_terms(conn, row.product_version_id).await?;
        let zero = money(0, &row.currency)?;
        let already_on = |day: NaiveDate| {
            already
                .get(&(row.driver_id, day))
                .map_or(zero, |&minor| shared::Money { minor, ..zero })
        };
        priced.push(version.terms.price_session_by_day(
            money(row.hourly_rate_minor, &row.currency)?,
            row.started_at,
            *ended_at,
            *before,
            already_on,
        )?);
    }
    Ok(priced)
}

/// What a session ending at `at` would be charged, priced as an ending is. Reads only.
pub(crate) async fn price_ending(
    conn: &mut AsyncPgConnection,
    row: &SessionRow,
    at: DateTime<Utc>,
) -> Result<SessionCharge, CoverError> {
    let before = crate::continuation::minutes_before(conn, &[row.id]).await?;
    price_endings(conn, &[(row, at, before.get(&row.id).copied())])
        .await?
        .pop()
        .map(|p| p.charge)
        .ok_or_else(|| anyhow::anyhow!("no price for session {}", row.id).into())
}

/// What each ending's driver was charged, in the ending's currency, on each UK day the ending
/// covers (the daily cap's "already charged"), in one read.
async fn charged_on_days(
    conn: &mut AsyncPgConnection,
    endings: &[(&SessionRow, DateTime<Utc>, Option<i64>)],
) -> Result<HashMap<(DriverId, NaiveDate), i64>, CoverError> {
    #[derive(diesel::QueryableByName)]
    struct Total {
        #[diesel(sql_type = Uuid)]
        driver_id: DriverId,
        #[diesel(sql_type = Date)]
        day: NaiveDate,
        #[diesel(sql_type = BigInt)]
        total: i64,
    }
    let (mut drivers, mut days, mut currencies) = (Vec::new(), Vec::new(), Vec::new());
    for (row, at, _) in endings {
        for (day, _) in pricing::uk_day_parts(row.started_at, *at) {
            drivers.push(row.driver_id.uuid());
            days.push(day);
            currencies.push(row.currency.as_str());
        }
    }
    let totals: Vec<Total> = shared::sql::prepared(
        "SELECT u.driver_id, u.day,
                coalesce((SELECT sum(d.charged_minor)
                            FROM cover_session_days d
                           WHERE d.driver_id = u.driver_id AND d.uk_day = u.day
                             AND d.currency = u.currency),
                         0)::bigint AS total
           FROM unnest($1::uuid[], $2::date[], $3::text[]) AS u(driver_id, day, currency)",
    )
    .bind::<Array<Uuid>, _>(drivers)
    .bind::<Array<Date>, _>(days)
    .bind::<Array<Text>, _>(currencies)
    .load(conn)
    .await?;
    Ok(totals
        .into_iter()
        .map(|t| ((t.driver_id, t.day), t.total))
        .collect())
}

/// Writes the endings: the sessions (one guarded update), audit entries, texts and charge jobs.
/// Returns the ended sessions in `endings`' order.
async fn store(
    conn: &mut AsyncPgConnection,
    endings: &[Ending],
) -> Result<Vec<CoverSession>, CoverError> {
    if endings.is_empty() {
        return Ok(Vec::new());
    }
    let mut updated: HashMap<CoverSessionId, SessionRow> = update_endings(conn, endings)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let sessions = endings
        .iter()
        .map(|e| {
            updated
                .remove(&e.row.id)
                .ok_or_else(|| {
                    // Impossible under the row lock: say so rather than answer wrongly.
                    CoverError::Internal(anyhow::anyhow!("session {} did not end", e.row.id))
                })
                .and_then(CoverSession::try_from)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let entries: Vec<AuditEntry<'_>> = endings
        .iter()
        .zip(&sessions)
        .map(|(e, s)| {
            let (actor_type, actor_id) = actor_parts(e.actor);
            AuditEntry {
                actor_type,
                actor_id,
                action: ENDED_ACTION,
                subject_type: "cover_session",
                subject_id: s.id.to_string(),
                reason: None,
                details: ended_audit_details(s, e.reason, e.ended_at, &e.charge),
            }
        })
        .collect();
    shared::audit::record_all(conn, &entries).await?;
    store_days(conn, endings).await?;
    // A driver whose account is deleted gets no text.
    let driver_ids: Vec<DriverId> = sessions.iter().map(|s| s.driver_id).collect();
    let drivers: HashMap<DriverId, accounts::Driver> = accounts::get_drivers(conn, &driver_ids)
        .await
        .map_err(|e| crate::enrolments::accounts_error(e, CoverError::DriverNotFound))?
        .into_iter()
        .map(|d| (d.id, d))
        .collect();
    let mut texts = Vec::with_capacity(sessions.len());
    for s in &sessions {
        if let Some(driver) = drivers.get(&s.driver_id) {
            texts.push(crate::notify::ended_message(driver, s)?);
        }
    }
    notifications::enqueue_notifications(conn, &texts).await?;
    let jobs: Vec<ChargeSession> = sessions
        .iter()
        .map(|s| ChargeSession { session_id: s.id })
        .collect();
    shared::outbox::enqueue_all(conn, &jobs)
        .await
        .map_err(CoverError::Internal)?;
    Ok(sessions)
}

/// Writes each ending's parts by UK day (the database checks at commit that they add up to the
/// session's total).
async fn store_days(conn: &mut AsyncPgConnection, endings: &[Ending]) -> Result<(), CoverError> {
    let parts: Vec<(&Ending, &DayCharge)> = endings
        .iter()
        .flat_map(|e| e.days.iter().map(move |d| (e, d)))
        .collect();
    fn column<'p, T>(
        parts: &[(&'p Ending, &'p DayCharge)],
        f: impl Fn(&'p Ending, &'p DayCharge) -> T,
    ) -> Vec<T> {
        parts.iter().map(|(e, d)| f(e, d)).collect()
    }
    shared::sql::prepared(
        "INSERT INTO cover_session_days (session_id, uk_day, driver_id, currency, minutes,
                                         billed_minutes, uncapped_minor, charged_minor)
         SELECT * FROM unnest($1::uuid[], $2::date[], $3::uuid[], $4::text[], $5::int8[],
                              $6::int8[], $7::int8[], $8::int8[])",
    )
    .bind::<Array<Uuid>, _>(column(&parts, |e, _| e.row.id.uuid()))
    .bind::<Array<Date>, _>(column(&parts, |_, d| d.day))
    .bind::<Array<Uuid>, _>(column(&parts, |e, _| e.row.driver_id.uuid()))
    .bind::<Array<Text>, _>(column(&parts, |e, _| e.row.currency.as_str()))
    .bind::<Array<BigInt>, _>(column(&parts, |_, d| d.minutes))
    .bind::<Array<BigInt>, _>(column(&parts, |_, d| d.billed_minutes))
    .bind::<Array<BigInt>, _>(column(&parts, |_, d| d.uncapped.minor))
    .bind::<Array<BigInt>, _>(column(&parts, |_, d| d.charged.minor))
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends and prices the sessions in one guarded update (each only while still active); returns
/// the rows updated.
async fn update_endings(
    conn: &mut AsyncPgConnection,
    endings: &[Ending],
) -> Result<Vec<SessionRow>, CoverError> {
    fn column<'e, T>(endings: &'e [Ending], f: impl Fn(&'e Ending) -> T) -> Vec<T> {
        endings.iter().map(f).collect()
    }
    let bp = |rate: u32| {
        i32::try_from(rate).map_err(|_| CoverError::from(anyhow::anyhow!("rate {rate} too large")))
    };
    let ipt_bp = endings
        .iter()
        .map(|e| bp(e.charge.breakdown.ipt_rate_bp))
        .collect::<Result<Vec<i32>, _>>()?;
    let commission_bp = endings
        .iter()
        .map(|e| bp(e.charge.breakdown.commission_rate_bp))
        .collect::<Result<Vec<i32>, _>>()?;
    Ok(shared::sql::prepared(
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
    .await?)
}

/// Ends through the process's batcher ([`shared::batch`]): concurrent calls share one run of
/// [`end_sessions`].
#[derive(Default)]
pub struct EndCommand;

/// An ending as the batcher carries it, with the clock it runs under.
pub struct BatchedEnd {
    request: EndRequest,
    clock: Arc<dyn Clock>,
}

impl BatchQuery for EndCommand {
    type Input = BatchedEnd;
    type Output = Result<SessionEnded, CoverError>;
    const NAME: &'static str = "cover ends";

    fn run<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        inputs: &'a [BatchedEnd],
    ) -> BatchFuture<'a, Self::Output> {
        Box::pin(async move {
            let Some(first) = inputs.first() else {
                return Ok(Vec::new());
            };
            let requests: Vec<EndRequest> = inputs.iter().map(|b| b.request.clone()).collect();
            let answers = end_sessions(conn, first.clock.as_ref(), &requests).await;
            for_batcher(requests.len(), answers)
        })
    }
}

/// Ends one session, batched with the other endings of the moment in this process, and
/// publishes its event once committed. The door the API uses.
pub async fn end_cover(core: &Core, request: EndRequest) -> Result<SessionEnded, CoverError> {
    let input = BatchedEnd {
        request,
        clock: core.clock.clone(),
    };
    through_batcher::<EndCommand, _>(core, input).await
}
