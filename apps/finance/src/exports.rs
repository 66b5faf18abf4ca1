//! Report files built by a job: finance asks for a month's bordereau, a job writes the CSV in
//! chunks (recording how many lines it has written, so people see it move) and keeps the file
//! for download. A month of busy trading runs to hundreds of thousands of lines: too long for a
//! request, fine for a job.
//!
//! The job is safe to run again: a finished export is left alone, an interrupted one starts its
//! file again from the first line.

use crate::error::FinanceError;
use crate::period::Month;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bytea, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::Clock;
use shared::jobs::{JobContext, JobError};
use shared::outbox::Job;
use uuid::Uuid;

/// Lines written between two progress updates.
pub const CHUNK: usize = 2_000;

/// An export, without its file.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize)]
pub struct Export {
    /// Its id.
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// `bordereau`.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// The period asked for (`YYYY-MM`).
    #[diesel(sql_type = Text)]
    pub period: String,
    /// `queued`, `running`, `done` or `failed`.
    #[diesel(sql_type = Text)]
    pub status: String,
    /// Lines written so far.
    #[diesel(sql_type = BigInt)]
    pub rows_done: i64,
    /// Lines in all, once known.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub rows_total: Option<i64>,
    /// The file's name, once done.
    #[diesel(sql_type = Nullable<Text>)]
    pub file_name: Option<String>,
    /// Why the last attempt failed.
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
    /// Who asked (`stf_…`).
    #[diesel(sql_type = Text)]
    pub requested_by: String,
    /// When.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    /// When the file was finished.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub finished_at: Option<DateTime<Utc>>,
}

impl Export {
    /// How far along, 0 to 100.
    pub fn percent(&self) -> i32 {
        match (self.status.as_str(), self.rows_total) {
            ("done", _) => 100,
            (_, Some(total)) if total > 0 => {
                i32::try_from((self.rows_done.min(total) * 100) / total).unwrap_or(0)
            }
            _ => 0,
        }
    }
}

const COLUMNS: &str = "id, kind, period, status, rows_done, rows_total, file_name, last_error, \
                       requested_by, created_at, finished_at";

/// Builds one export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildFinanceExport {
    /// The export.
    pub export_id: Uuid,
}

impl Job for BuildFinanceExport {
    const TYPE: &'static str = "BuildFinanceExport";
    const QUEUE: &'static str = crate::jobs::QUEUE;
    const MAX_ATTEMPTS: i32 = 5;

    fn idempotency_key(&self) -> String {
        self.export_id.to_string()
    }
}

/// Asks for the bordereau of `month` as a file: the export row and its job, together.
///
/// Errors: `PERIOD_IN_FUTURE` for a month that has not begun; `INVALID_TEXT` for a missing
/// requester.
pub async fn request_bordereau_export(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    requested_by: &str,
    month: Month,
) -> Result<Export, FinanceError> {
    let now = clock.now();
    month.check_started("month", now)?;
    if requested_by.is_empty() || requested_by.len() > 100 {
        return Err(FinanceError::InvalidText("requestedBy"));
    }
    let id = Uuid::now_v7();
    conn.transaction::<_, FinanceError, _>(async |conn| {
        let export: Export = diesel::sql_query(format!(
            "INSERT INTO finance_exports (id, kind, period, status, requested_by, created_at, updated_at) \
             VALUES ($1, 'bordereau', $2, 'queued', $3, $4, $4) RETURNING {COLUMNS}"
        ))
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(month.to_string())
        .bind::<Text, _>(requested_by)
        .bind::<Timestamptz, _>(now)
        .get_result(conn)
        .await?;
        shared::outbox::enqueue(conn, &BuildFinanceExport { export_id: id })
            .await
            .map_err(FinanceError::Internal)?;
        Ok(export)
    })
    .await
}

/// One export, without its file. `NOT_FOUND` when there is none.
pub async fn get_export(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Export, FinanceError> {
    diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM finance_exports WHERE id = $1"
    ))
    .bind::<SqlUuid, _>(id)
    .get_result(conn)
    .await
    .map_err(|e| match e {
        diesel::result::Error::NotFound => FinanceError::NotFound("id"),
        e => e.into(),
    })
}

/// The newest `limit` exports.
pub async fn list_exports(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> Result<Vec<Export>, FinanceError> {
    Ok(diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM finance_exports ORDER BY created_at DESC, id DESC LIMIT $1"
    ))
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

#[derive(QueryableByName)]
struct File {
    #[diesel(sql_type = Nullable<Text>)]
    file_name: Option<String>,
    #[diesel(sql_type = Nullable<Bytea>)]
    file: Option<Vec<u8>>,
}

/// A finished export's file name and bytes; `None` while it is not done.
pub async fn export_file(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<(String, Vec<u8>)>, FinanceError> {
    let row: Option<File> = diesel::sql_query(
        "SELECT file_name, file FROM finance_exports WHERE id = $1 AND status = 'done'",
    )
    .bind::<SqlUuid, _>(id)
    .get_result(conn)
    .await
    .map(Some)
    .or_else(|e| match e {
        diesel::result::Error::NotFound => Ok(None),
        e => Err(e),
    })?;
    Ok(row.and_then(|r| r.file_name.zip(r.file)))
}

async fn progress(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    rows_done: i64,
) -> Result<(), FinanceError> {
    diesel::sql_query(
        "UPDATE finance_exports SET rows_done = $2, updated_at = now() WHERE id = $1",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<BigInt, _>(rows_done)
    .execute(conn)
    .await?;
    Ok(())
}

/// Builds the export's file (the job's work). A finished export is left alone.
pub async fn build_export(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    id: Uuid,
) -> Result<Export, FinanceError> {
    let export = get_export(conn, id).await?;
    if export.status == "done" {
        return Ok(export);
    }
    let month = Month::parse("month", &export.period)?;
    let b = crate::reports::bordereau(conn, clock, month).await?;
    let total = i64::try_from(b.lines.len()).unwrap_or(i64::MAX);
    diesel::sql_query(
        "UPDATE finance_exports SET status = 'running', rows_done = 0, rows_total = $2, \
                last_error = NULL, updated_at = now() WHERE id = $1",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<BigInt, _>(total)
    .execute(conn)
    .await?;
    let mut out = String::new();
    crate::csv::bordereau_csv_header(&mut out);
    for (i, chunk) in b.lines.chunks(CHUNK).enumerate() {
        for line in chunk {
            crate::csv::bordereau_csv_line(&mut out, &b.month, line);
        }
        let done = i64::try_from(i * CHUNK + chunk.len()).unwrap_or(total);
        if done < total {
            progress(conn, id, done).await?;
        }
    }
    crate::csv::bordereau_csv_totals(&mut out, &b);
    let file_name = format!("bordereau-{month}.csv");
    Ok(diesel::sql_query(format!(
        "UPDATE finance_exports SET status = 'done', rows_done = $2, file_name = $3, file = $4, \
                finished_at = $5, updated_at = $5 WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<BigInt, _>(total)
    .bind::<Text, _>(file_name)
    .bind::<Bytea, _>(out.into_bytes())
    .bind::<Timestamptz, _>(clock.now())
    .get_result(conn)
    .await?)
}

/// Runs [`BuildFinanceExport`]. A failure is recorded on the export (people see why) and the
/// job retried; the last attempt marks the export failed.
pub async fn run_build_finance_export(
    ctx: JobContext,
    job: BuildFinanceExport,
) -> Result<(), JobError> {
    let mut conn = ctx.pool.get().await?;
    match build_export(&mut conn, &*ctx.clock, job.export_id).await {
        Ok(_) => {
            conn.transaction::<_, JobError, _>(async |conn| ctx.complete_in(conn).await)
                .await
        }
        Err(e) => {
            let message: String = format!("{e}").chars().take(1000).collect();
            let _ = diesel::sql_query(
                "UPDATE finance_exports SET last_error = $2, \
                        status = CASE WHEN $3 THEN 'failed' ELSE 'queued' END, updated_at = now() \
                  WHERE id = $1 AND status <> 'done'",
            )
            .bind::<SqlUuid, _>(job.export_id)
            .bind::<Text, _>(message)
            .bind::<diesel::sql_types::Bool, _>(ctx.job.attempts >= ctx.job.max_attempts)
            .execute(&mut conn)
            .await;
            Err(match e {
                FinanceError::Db(_) | FinanceError::Pool(_) => {
                    JobError::Retry(anyhow::Error::new(e))
                }
                e => JobError::Permanent(anyhow::Error::new(e)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(status: &str, done: i64, total: Option<i64>) -> Export {
        Export {
            id: Uuid::nil(),
            kind: "bordereau".into(),
            period: "2026-11".into(),
            status: status.into(),
            rows_done: done,
            rows_total: total,
            file_name: None,
            last_error: None,
            requested_by: "stf_1".into(),
            created_at: Utc::now(),
            finished_at: None,
        }
    }

    #[test]
    fn progress_is_a_whole_percentage_of_the_lines() {
        assert_eq!(export("queued", 0, None).percent(), 0);
        assert_eq!(export("running", 2_000, Some(6_000)).percent(), 33);
        assert_eq!(export("running", 0, Some(0)).percent(), 0);
        assert_eq!(export("done", 0, Some(0)).percent(), 100);
    }
}
