//! The cover engine: the one implementation of starting and ending cover.
//!
//! Every start of cover — a driver's tap, a partner's shift event — goes through
//! [`start_sessions`], and every end — a driver's tap, a partner's event, the clock (maximum
//! length, a partner's gap rule), a cancelled enrolment, ops — through [`end_sessions`]. Both
//! take a batch of requests (a single request is a batch of one) and answer each with its own
//! result, in order. Under load the API hands them many requests at once through
//! [`shared::batch`] ([`StartCommand`], [`EndCommand`]); the decision for each request is the
//! same as if it had come alone, one after the other in the batch's order.
//!
//! Each command, in one transaction:
//! 1. takes the cover lock of every driver concerned, in one sorted order (so two batches never
//!    wait for each other in a circle), then reads what it decides on — nothing can change a
//!    driver's cover between the read and the write, so there are no lost races to resolve;
//! 2. decides each request with the pure rules of [`crate::eligibility`] (starts) and
//!    [`crate::ending`] (the end time and reason), carrying each driver's state from one request
//!    to the next in the batch;
//! 3. writes everything in a few statements over arrays: the quotes, sessions, audit entries,
//!    texts, and — for an ending — the [`crate::jobs::ChargeSession`] job that takes its charge.
//!
//! The database backs the rules: one active session per driver (a unique partial index), one
//! session per driver and idempotency key (a unique constraint), and no two sessions of one
//! driver overlapping in time (an exclusion constraint).
//!
//! Results carry the [`CoverEvent`]s to publish once the transaction has committed; the doors
//! that own the commit ([`start_cover`], [`end_cover`], the jobs) publish them.

mod end;
mod start;

pub(crate) use end::price_ending;
pub use end::{EndCommand, EndRequest, SessionEnded, end_cover, end_sessions};
pub use start::{StartCommand, StartRequest, start_cover, start_sessions};

use crate::error::CoverError;
use crate::events::CoverEvent;
use crate::support::driver_lock_key;
use accounts::DriverId;
use diesel::QueryResult;
use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::batch::BatchQuery;
use shared::core::Core;

/// Takes the cover lock of every driver in `drivers` until the transaction ends, in one
/// statement and one global order (see [`crate::support::lock_driver`]).
pub(crate) async fn lock_drivers(
    conn: &mut AsyncPgConnection,
    drivers: impl IntoIterator<Item = DriverId>,
) -> Result<(), CoverError> {
    let mut keys: Vec<String> = drivers.into_iter().map(driver_lock_key).collect();
    keys.sort();
    keys.dedup();
    shared::sql::prepared(
        "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0)))
           FROM unnest($1::text[]) WITH ORDINALITY AS u(k, n)",
    )
    .bind::<Array<Text>, _>(keys)
    .execute(conn)
    .await?;
    Ok(())
}

/// Publishes committed events to the drivers' live status (best effort: a failure is logged).
pub async fn publish(core: &Core, events: &[CoverEvent]) {
    if events.is_empty() {
        return;
    }
    match core.redis.conn().await {
        Ok(mut redis) => {
            crate::events::publish_cover_events(&mut redis, core.redis.prefix(), events).await;
        }
        Err(e) => tracing::warn!(error = %e, "cover events not published: Redis unavailable"),
    }
}

/// What a change of cover returns: its events, to publish once committed.
pub(crate) trait Published {
    fn events(&self) -> &[CoverEvent];
}

impl Published for crate::sessions::SessionStarted {
    fn events(&self) -> &[CoverEvent] {
        &self.events
    }
}

impl Published for SessionEnded {
    fn events(&self) -> &[CoverEvent] {
        &self.events
    }
}

/// A command's answers as the batcher takes them: a database failure of the whole batch is
/// handed back, so that the batcher runs the batch again input by input; any other failure of
/// the whole batch becomes each request's error.
pub(crate) fn for_batcher<T>(
    n: usize,
    result: Result<Vec<Result<T, CoverError>>, CoverError>,
) -> QueryResult<Vec<Result<T, CoverError>>> {
    match result {
        Ok(out) => Ok(out),
        Err(CoverError::Database(e)) => Err(e),
        Err(other) => {
            let message = other.to_string();
            let mut out = Vec::with_capacity(n);
            out.push(Err(other));
            while out.len() < n {
                out.push(Err(CoverError::Internal(anyhow::anyhow!("{message}"))));
            }
            Ok(out)
        }
    }
}

/// Runs one request through the process's batcher of `Q` (concurrent requests share one run of
/// the command), then publishes its events: the door the API uses.
pub(crate) async fn through_batcher<Q, T>(core: &Core, input: Q::Input) -> Result<T, CoverError>
where
    Q: BatchQuery<Output = Result<T, CoverError>>,
    T: Published,
{
    let done = core
        .batcher::<Q>()
        .call(input)
        .await
        .map_err(|e| match e {
            shared::batch::BatchError::Query(e) => CoverError::Database(e),
            other => CoverError::Internal(anyhow::Error::new(other)),
        })??;
    publish(core, done.events()).await;
    Ok(done)
}

/// The one answer of a command run on one request.
pub fn only<T>(answers: Result<Vec<Result<T, CoverError>>, CoverError>) -> Result<T, CoverError> {
    answers?
        .pop()
        .unwrap_or_else(|| Err(anyhow::anyhow!("the command gave no answer").into()))
}
