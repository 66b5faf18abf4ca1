//! Shift events: a partner's batch of `online`, `job_accepted`, `job_completed` and `offline`
//! events, each answered on its own.
//!
//! Invariants:
//! - a batch holds at most [`MAX_BATCH`] events (`BATCH_TOO_LARGE` refuses the whole call);
//!   within it, one bad event never fails the others: each gets `accepted`, `duplicate`, or
//!   `rejected` with a code from [`codes`];
//! - idempotent per partner event id: the same id with the same content is a `duplicate` (with
//!   what the event gave for cover), with other content it is rejected (`CONFLICTING_DUPLICATE`)
//!   and logged; every rejection is logged in `shift_event_rejections`;
//! - events up to [`MAX_LATENESS_HOURS`] late and in any order are accepted; sessions are then
//!   recomputed from each driver's ordered stream (see [`crate::sessions`]);
//! - an event for a driver who cannot be covered (never linked, unlinked, not enrolled, no
//!   funds…) answers "not covered" with the reason and sends `cover.not_covered` at once;
//! - test keys record test events for test links only, and start no cover.

use crate::error::PartnersError;
use crate::ids::LinkId;
use crate::links::{LinkRow, resolve_link};
use crate::schema::{partner_driver_links, shift_event_rejections, shift_events};
use crate::scope::PartnerScope;
use crate::sessions::recompute_link;
use crate::stream::ShiftEventKind;
use crate::support::{clean_text, sha256};
use crate::webhooks::{EventType, enqueue_event};
use accounts::VehicleType;
use chrono::{DateTime, Duration, Utc};
use cover::{CoverSessionId, FundsCheck};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::Clock;
use shared::settings::CoverSettings;
use std::collections::{BTreeSet, HashMap};

/// The most events one call takes.
pub const MAX_BATCH: usize = 500;
/// How late an event may arrive.
pub const MAX_LATENESS_HOURS: i64 = 24;
/// How far ahead of our clock an event's time may be (clock skew).
pub const MAX_CLOCK_SKEW_MINUTES: i64 = 5;

/// The codes of rejected events (and of events that cannot give cover).
pub mod codes {
    /// The partner's event id is empty, too long or has control characters.
    pub const INVALID_EVENT_ID: &str = "INVALID_EVENT_ID";
    /// The external driver id is empty, too long or has control characters.
    pub const INVALID_EXTERNAL_DRIVER_ID: &str = "INVALID_EXTERNAL_DRIVER_ID";
    /// The reference is empty, too long or has control characters.
    pub const INVALID_REFERENCE: &str = "INVALID_REFERENCE";
    /// The event happened more than 24 hours ago.
    pub const EVENT_TOO_OLD: &str = "EVENT_TOO_OLD";
    /// The event's time is in the future (beyond five minutes of clock skew).
    pub const EVENT_IN_FUTURE: &str = "EVENT_IN_FUTURE";
    /// The partner never linked this external driver id.
    pub const UNKNOWN_DRIVER: &str = "UNKNOWN_DRIVER";
    /// The external driver id was linked once but is unlinked now.
    pub const NOT_LINKED: &str = "NOT_LINKED";
    /// The event id was used before for an event with other content.
    pub const CONFLICTING_DUPLICATE: &str = "CONFLICTING_DUPLICATE";
}

/// One event as a partner sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftEventInput {
    /// The partner's id of the event: the idempotency key.
    pub event_id: String,
    /// The partner's id of the driver.
    pub external_driver_id: String,
    /// What happened.
    pub kind: ShiftEventKind,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// What the driver works with.
    pub vehicle_type: VehicleType,
    /// The partner's reference of the shift or job, if any.
    pub reference: Option<String>,
}

/// How an event was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShiftEventStatus {
    /// Recorded now.
    Accepted,
    /// Recorded before with the same content; nothing new happened.
    Duplicate,
    /// Refused; `code` says why.
    Rejected,
}

/// What an event gave for cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventCover {
    /// The driver is covered by this session for the event's time.
    Covered {
        /// The session.
        session_id: CoverSessionId,
        /// The session whose working period it continues (cover resumed within the gap rule,
        /// so no second minimum charge), if it does.
        continues: Option<CoverSessionId>,
    },
    /// The driver cannot be covered; the code says why (`UNKNOWN_DRIVER`, `NOT_LINKED`,
    /// `NOT_ENROLLED`, `INSUFFICIENT_FUNDS`, `NO_MATCHING_VEHICLE`, …).
    NotCovered {
        /// Why.
        code: String,
    },
    /// The event changes no cover (outside working time, the driver already on cover by other
    /// means, or a sandbox event).
    Unchanged,
}

/// What recording a batch of shift events did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "publish the cover events once the change has committed"]
pub struct RecordedShiftEvents {
    /// One answer per event, in the batch's order.
    pub results: Vec<ShiftEventResult>,
    /// The drivers' cover events the batch caused (sessions started, ending soon, ended), for
    /// [`cover::publish_cover_events`]: committed once this returns.
    pub cover_events: Vec<cover::CoverEvent>,
}

/// The answer for one event of a batch, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShiftEventResult {
    /// The partner's event id, as sent.
    pub event_id: String,
    /// Accepted, duplicate or rejected.
    pub status: ShiftEventStatus,
    /// Why it was rejected.
    pub code: Option<&'static str>,
    /// What it gave for cover; `None` for a rejected event that says nothing about cover.
    pub cover: Option<EventCover>,
}

impl ShiftEventResult {
    fn rejected(event_id: &str, code: &'static str) -> Self {
        Self {
            event_id: event_id.to_owned(),
            status: ShiftEventStatus::Rejected,
            code: Some(code),
            cover: None,
        }
    }
}

fn content_hash(e: &ShiftEventInput, external: &str, reference: Option<&str>) -> Vec<u8> {
    let text = format!(
        "{}\n{}\n{}\n{}\n{}",
        external,
        e.kind.as_str(),
        e.occurred_at.timestamp_micros(),
        e.vehicle_type.as_str(),
        reference.unwrap_or("")
    );
    sha256(text.as_bytes())
}

#[derive(Insertable)]
#[diesel(table_name = shift_events)]
#[diesel(treat_none_as_default_value = false)]
struct NewShiftEvent<'a> {
    partner_id: accounts::PartnerId,
    test_mode: bool,
    partner_event_id: &'a str,
    content_hash: Vec<u8>,
    link_id: LinkId,
    external_driver_id: &'a str,
    kind: &'a str,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    vehicle_type: &'a str,
    reference: Option<&'a str>,
    result: &'a str,
}

async fn log_rejection(
    conn: &mut AsyncPgConnection,
    scope: PartnerScope,
    event: &ShiftEventInput,
    code: &'static str,
    now: DateTime<Utc>,
) -> Result<(), PartnersError> {
    let trim = |s: &str| crate::support::truncate(s, 200);
    diesel::insert_into(shift_event_rejections::table)
        .values((
            shift_event_rejections::partner_id.eq(scope.partner_id),
            shift_event_rejections::test_mode.eq(scope.test_mode),
            shift_event_rejections::partner_event_id.eq(trim(&event.event_id)),
            shift_event_rejections::external_driver_id.eq(trim(&event.external_driver_id)),
            shift_event_rejections::code.eq(code),
            shift_event_rejections::event
                .eq(serde_json::to_value(event).map_err(anyhow::Error::new)?),
            shift_event_rejections::received_at.eq(now),
        ))
        .execute(conn)
        .await?;
    tracing::info!(partner_id = %scope.partner_id, code, "shift event rejected");
    Ok(())
}

/// Where each event of the batch stands after it was stored.
enum Stored {
    Done(ShiftEventResult),
    /// Accepted or duplicate: the answer is read back after the sessions are recomputed.
    Pending {
        status: ShiftEventStatus,
        event_id: String,
        row_id: i64,
    },
}

/// Records a batch of shift events (see the module docs) and recomputes the sessions of the
/// drivers they concern. Returns one result per event, in the batch's order, and the cover
/// events to publish.
///
/// Errors (the whole batch): `BATCH_TOO_LARGE`; internal ones.
pub async fn record_shift_events(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    settings: &CoverSettings,
    funds: &dyn FundsCheck,
    scope: PartnerScope,
    events: &[ShiftEventInput],
) -> Result<RecordedShiftEvents, PartnersError> {
    if events.len() > MAX_BATCH {
        return Err(PartnersError::BatchTooLarge {
            size: events.len(),
            max: MAX_BATCH,
        });
    }
    let now = clock.now();
    let oldest = now - Duration::hours(MAX_LATENESS_HOURS);
    let latest = now + Duration::minutes(MAX_CLOCK_SKEW_MINUTES);

    let (stored, links) = conn
        .transaction::<_, PartnersError, _>(async |conn| {
            // Stored by driver, then by position in the batch: concurrent batches that touch
            // the same drivers then update their links in one order and cannot deadlock.
            let mut order: Vec<usize> = (0..events.len()).collect();
            order.sort_by(|&a, &b| {
                events[a]
                    .external_driver_id
                    .trim()
                    .cmp(events[b].external_driver_id.trim())
                    .then(a.cmp(&b))
            });
            let mut slots: Vec<Option<Stored>> = (0..events.len()).map(|_| None).collect();
            let mut links: BTreeSet<LinkId> = BTreeSet::new();
            let mut resolved: HashMap<String, Result<LinkRow, &'static str>> = HashMap::new();
            for i in order {
                let event = &events[i];
                let outcome = store_one(
                    conn,
                    clock,
                    scope,
                    event,
                    now,
                    oldest,
                    latest,
                    &mut resolved,
                )
                .await?;
                if let Stored::Pending { .. } = &outcome
                    && let Some(Ok(link)) = resolved.get(event.external_driver_id.trim())
                {
                    links.insert(link.id);
                }
                slots[i] = Some(outcome);
            }
            let stored: Vec<Stored> = slots.into_iter().flatten().collect();
            Ok((stored, links))
        })
        .await?;

    let mut cover_events = Vec::new();
    for link_id in links {
        cover_events.extend(recompute_link(conn, clock, settings, funds, link_id).await?);
    }

    let mut results = Vec::with_capacity(stored.len());
    for s in stored {
        match s {
            Stored::Done(result) => results.push(result),
            Stored::Pending {
                status,
                event_id,
                row_id,
            } => {
                let (result, code, session_id): (String, Option<String>, Option<CoverSessionId>) =
                    shift_events::table
                        .find(row_id)
                        .select((
                            shift_events::result,
                            shift_events::result_code,
                            shift_events::session_id,
                        ))
                        .first(conn)
                        .await?;
                let cover = match (result.as_str(), code, session_id) {
                    ("covered", _, Some(session_id)) => EventCover::Covered {
                        session_id,
                        continues: None,
                    },
                    ("not_covered", Some(code), _) => EventCover::NotCovered { code },
                    _ => EventCover::Unchanged,
                };
                results.push(ShiftEventResult {
                    event_id,
                    status,
                    code: None,
                    cover: Some(cover),
                });
            }
        }
    }
    // Which of the covering sessions continue a working period: one read for the batch.
    let covering: Vec<CoverSessionId> = results
        .iter()
        .filter_map(|r| match &r.cover {
            Some(EventCover::Covered { session_id, .. }) => Some(*session_id),
            _ => None,
        })
        .collect();
    let continued = cover::continuations(conn, &covering).await?;
    for r in &mut results {
        if let Some(EventCover::Covered {
            session_id,
            continues,
        }) = &mut r.cover
        {
            *continues = continued.get(session_id).map(|(previous, _)| *previous);
        }
    }
    Ok(RecordedShiftEvents {
        results,
        cover_events,
    })
}

#[allow(clippy::too_many_arguments)]
async fn store_one(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    scope: PartnerScope,
    event: &ShiftEventInput,
    now: DateTime<Utc>,
    oldest: DateTime<Utc>,
    latest: DateTime<Utc>,
    resolved: &mut HashMap<String, Result<LinkRow, &'static str>>,
) -> Result<Stored, PartnersError> {
    let reject =
        |code: &'static str| Stored::Done(ShiftEventResult::rejected(&event.event_id, code));
    let Some(event_id) = clean_text(&event.event_id) else {
        log_rejection(conn, scope, event, codes::INVALID_EVENT_ID, now).await?;
        return Ok(reject(codes::INVALID_EVENT_ID));
    };
    let Some(external) = clean_text(&event.external_driver_id) else {
        log_rejection(conn, scope, event, codes::INVALID_EXTERNAL_DRIVER_ID, now).await?;
        return Ok(reject(codes::INVALID_EXTERNAL_DRIVER_ID));
    };
    let reference = match event.reference.as_deref() {
        None => None,
        Some(r) => match clean_text(r) {
            Some(r) => Some(r),
            None => {
                log_rejection(conn, scope, event, codes::INVALID_REFERENCE, now).await?;
                return Ok(reject(codes::INVALID_REFERENCE));
            }
        },
    };
    if event.occurred_at < oldest {
        log_rejection(conn, scope, event, codes::EVENT_TOO_OLD, now).await?;
        return Ok(reject(codes::EVENT_TOO_OLD));
    }
    if event.occurred_at > latest {
        log_rejection(conn, scope, event, codes::EVENT_IN_FUTURE, now).await?;
        return Ok(reject(codes::EVENT_IN_FUTURE));
    }
    if !resolved.contains_key(external) {
        let found = match resolve_link(conn, scope, external).await {
            Ok(link) => Ok(link),
            Err(PartnersError::UnknownDriver) => Err(codes::UNKNOWN_DRIVER),
            Err(PartnersError::NotLinked) => Err(codes::NOT_LINKED),
            Err(e) => return Err(e),
        };
        resolved.insert(external.to_owned(), found);
    }
    let link = match resolved.get(external) {
        Some(Ok(link)) => link.clone(),
        Some(Err(code)) => {
            let code = *code;
            log_rejection(conn, scope, event, code, now).await?;
            // The partner thinks this driver works for it: tell it at once that they are not
            // covered.
            enqueue_event(
                conn,
                clock,
                scope,
                EventType::CoverNotCovered,
                &format!("cover.not_covered:event:{}:{event_id}", scope.partner_id),
                serde_json::json!({
                    "external_driver_id": external,
                    "reason": code,
                    "partner_event_id": event_id,
                    "occurred_at": event.occurred_at,
                }),
            )
            .await?;
            return Ok(Stored::Done(ShiftEventResult {
                event_id: event.event_id.clone(),
                status: ShiftEventStatus::Rejected,
                code: Some(code),
                cover: Some(EventCover::NotCovered {
                    code: code.to_owned(),
                }),
            }));
        }
        None => return Err(anyhow::anyhow!("link lookup lost").into()),
    };
    let hash = content_hash(event, external, reference);
    let inserted: Option<i64> = diesel::insert_into(shift_events::table)
        .values(NewShiftEvent {
            partner_id: scope.partner_id,
            test_mode: scope.test_mode,
            partner_event_id: event_id,
            content_hash: hash.clone(),
            link_id: link.id,
            external_driver_id: external,
            kind: event.kind.as_str(),
            occurred_at: event.occurred_at,
            received_at: now,
            vehicle_type: event.vehicle_type.as_str(),
            reference,
            result: "recorded",
        })
        .on_conflict_do_nothing()
        .returning(shift_events::id)
        .get_result(conn)
        .await
        .optional()?;
    if let Some(row_id) = inserted {
        diesel::update(partner_driver_links::table.find(link.id))
            .set(
                (
                    partner_driver_links::last_event_at.eq(diesel::dsl::sql::<
                        diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
                    >(
                        "GREATEST(last_event_at, "
                    )
                    .bind::<diesel::sql_types::Timestamptz, _>(event.occurred_at)
                    .sql(")")),
                    partner_driver_links::flagged_stale_at.eq(None::<DateTime<Utc>>),
                ),
            )
            .execute(conn)
            .await?;
        return Ok(Stored::Pending {
            status: ShiftEventStatus::Accepted,
            event_id: event.event_id.clone(),
            row_id,
        });
    }
    let (row_id, stored_hash): (i64, Vec<u8>) = shift_events::table
        .filter(shift_events::partner_id.eq(scope.partner_id))
        .filter(shift_events::test_mode.eq(scope.test_mode))
        .filter(shift_events::partner_event_id.eq(event_id))
        .select((shift_events::id, shift_events::content_hash))
        .first(conn)
        .await?;
    if stored_hash == hash {
        Ok(Stored::Pending {
            status: ShiftEventStatus::Duplicate,
            event_id: event.event_id.clone(),
            row_id,
        })
    } else {
        log_rejection(conn, scope, event, codes::CONFLICTING_DUPLICATE, now).await?;
        Ok(reject(codes::CONFLICTING_DUPLICATE))
    }
}
