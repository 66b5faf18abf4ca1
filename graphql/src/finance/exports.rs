//! Report files built by a job (finance): `requestBordereauExport`, `financeExports` with each
//! one's progress, and the download at `GET /finance/exports/{id}.csv`.

use super::report_error;
use crate::accounts::{conn, core};
use crate::errors::{InternalExt, UserError};
use crate::guard;
use crate::relay::{parse_global_id, to_global_id};
use accounts::Role;
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use finance::period::Month;

/// A report file being built or ready.
pub struct FinanceExport(finance::exports::Export);

/// A report file built by a job: its progress, then its download.
#[Object]
impl FinanceExport {
    /// Its global id.
    async fn id(&self) -> ID {
        to_global_id("FinanceExport", &self.0.id)
    }
    /// `bordereau`.
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    /// The period (`YYYY-MM`).
    async fn period(&self) -> &str {
        &self.0.period
    }
    /// `queued`, `running`, `done` or `failed`.
    async fn status(&self) -> &str {
        &self.0.status
    }
    /// Lines written so far.
    async fn rows_done(&self) -> i64 {
        self.0.rows_done
    }
    /// Lines in all, once known.
    async fn rows_total(&self) -> Option<i64> {
        self.0.rows_total
    }
    /// How far along, 0 to 100.
    async fn percent(&self) -> i32 {
        self.0.percent()
    }
    /// Why the last attempt failed.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    /// When it was asked for.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the file was finished.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// Where to download it (finance staff), once done.
    async fn download_path(&self) -> Option<String> {
        (self.0.status == "done").then(|| format!("/finance/exports/{}.csv", self.0.id))
    }
}

/// Ask for a month's bordereau as a file.
#[derive(InputObject)]
pub struct RequestBordereauExportInput {
    /// `YYYY-MM`: a month that has begun.
    pub month: String,
}

/// Result of `requestBordereauExport`.
#[derive(SimpleObject, Default)]
pub struct RequestBordereauExportPayload {
    /// The export, queued.
    pub export: Option<FinanceExport>,
    /// `INVALID_PERIOD`, `PERIOD_IN_FUTURE` (`month`).
    pub user_errors: Vec<UserError>,
}

/// Export queries (finance).
#[derive(Default)]
pub struct ExportsQuery;

#[Object]
impl ExportsQuery {
    /// The newest report files, with their progress (finance).
    async fn finance_exports(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10, validator(minimum = 1, maximum = 50))] first: i32,
    ) -> async_graphql::Result<Vec<FinanceExport>> {
        guard::require_staff(ctx, Role::Finance)?;
        let mut conn = conn(ctx).await?;
        let rows = finance::exports::list_exports(&mut conn, i64::from(first))
            .await
            .internal(ctx)?;
        Ok(rows.into_iter().map(FinanceExport).collect())
    }

    /// One report file (finance); null when there is none.
    async fn finance_export(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<FinanceExport>> {
        guard::require_staff(ctx, Role::Finance)?;
        let Some(id) = parse_global_id::<uuid::Uuid>(&id, "FinanceExport") else {
            return Ok(None);
        };
        let mut conn = conn(ctx).await?;
        match finance::exports::get_export(&mut conn, id).await {
            Ok(e) => Ok(Some(FinanceExport(e))),
            Err(finance::FinanceError::NotFound(_)) => Ok(None),
            Err(e) => Err(report_error(ctx, e)),
        }
    }
}

/// Export mutations (finance).
#[derive(Default)]
pub struct ExportsMutation;

#[Object]
impl ExportsMutation {
    /// Asks for a month's premium bordereau as a CSV file, built by a job (finance). Follow it
    /// with `financeExport`; download it from its `downloadPath` once done.
    async fn request_bordereau_export(
        &self,
        ctx: &Context<'_>,
        input: RequestBordereauExportInput,
    ) -> async_graphql::Result<RequestBordereauExportPayload> {
        let staff = guard::require_staff(ctx, Role::Finance)?;
        let core = core(ctx)?;
        let month = match Month::parse("month", input.month.trim()) {
            Ok(m) => m,
            Err(e) => {
                return Ok(RequestBordereauExportPayload {
                    user_errors: e.user_error().map(Into::into).into_iter().collect(),
                    ..Default::default()
                });
            }
        };
        let mut conn = conn(ctx).await?;
        match finance::exports::request_bordereau_export(
            &mut conn,
            &*core.clock,
            &staff.staff_id.to_string(),
            month,
        )
        .await
        {
            Ok(e) => Ok(RequestBordereauExportPayload {
                export: Some(FinanceExport(e)),
                user_errors: vec![],
            }),
            Err(e) => match e.user_error() {
                Some(u) => Ok(RequestBordereauExportPayload {
                    user_errors: vec![u.into()],
                    ..Default::default()
                }),
                None => Err(report_error(ctx, e)),
            },
        }
    }
}
