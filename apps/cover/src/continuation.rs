//! Working periods: a session that starts within the product's gap rule after the driver's
//! previous session ended continues that session's period, which pays one minimum charge (see
//! [`pricing::VersionTerms::price_session_by_day`]). The cover engine decides it when the
//! session starts and records it here (`cover_session_continuations`), with the minutes the
//! period had covered before; the ending prices the session from it.

use crate::error::CoverError;
use crate::ids::CoverSessionId;
use diesel::sql_types::{Array, BigInt, Uuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;

/// Records continuations: (session, the session it continues, the period's minutes before it).
pub(crate) async fn record(
    conn: &mut AsyncPgConnection,
    continued: &[(CoverSessionId, CoverSessionId, i64)],
) -> Result<(), CoverError> {
    if continued.is_empty() {
        return Ok(());
    }
    shared::sql::prepared(
        "INSERT INTO cover_session_continuations (session_id, continues_session_id, minutes_before)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int8[])",
    )
    .bind::<Array<Uuid>, _>(continued.iter().map(|c| c.0.uuid()).collect::<Vec<_>>())
    .bind::<Array<Uuid>, _>(continued.iter().map(|c| c.1.uuid()).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(continued.iter().map(|c| c.2).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Of `sessions`, those that continue a working period, with the period's minutes before each.
pub(crate) async fn minutes_before(
    conn: &mut AsyncPgConnection,
    sessions: &[CoverSessionId],
) -> Result<HashMap<CoverSessionId, i64>, CoverError> {
    Ok(continuations(conn, sessions)
        .await?
        .into_iter()
        .map(|(id, (_, before))| (id, before))
        .collect())
}

/// Of `sessions`, those that continue a working period: the session each continues, and the
/// period's minutes before it.
pub async fn continuations(
    conn: &mut AsyncPgConnection,
    sessions: &[CoverSessionId],
) -> Result<HashMap<CoverSessionId, (CoverSessionId, i64)>, CoverError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Uuid)]
        session_id: uuid::Uuid,
        #[diesel(sql_type = Uuid)]
        continues_session_id: uuid::Uuid,
        #[diesel(sql_type = BigInt)]
        minutes_before: i64,
    }
    if sessions.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Row> = shared::sql::prepared(
        "SELECT session_id, continues_session_id, minutes_before
           FROM cover_session_continuations WHERE session_id = ANY($1)",
    )
    .bind::<Array<Uuid>, _>(sessions.iter().map(|s| s.uuid()).collect::<Vec<_>>())
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                CoverSessionId(r.session_id),
                (CoverSessionId(r.continues_session_id), r.minutes_before),
            )
        })
        .collect())
}
