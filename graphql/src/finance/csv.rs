//! CSV downloads of the finance reports, for finance staff signed in to the back office:
//!
//! - `GET /finance/bordereau.csv?month=YYYY-MM`
//! - `GET /finance/trial-balance.csv?at=YYYY-MM-DD`
//! - `GET /finance/ipt.csv?from=YYYY-MM&to=YYYY-MM`
//! - `GET /finance/reconciliation.csv?day=YYYY-MM-DD`
//! - `GET /finance/exports/{id}.csv` (a file built by a job, see [`super::exports`])
//!
//! Only a staff session cookie with the finance role (or admin) gets a file: no credentials →
//! 401; a driver, a partner or another staff role → 403. Bad or future periods → 400 with the
//! code (`INVALID_PERIOD`, `PERIOD_IN_FUTURE`); never a 500 for input.

use crate::http::ApiState;
use crate::viewer;
use accounts::{Principal, Role};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::NaiveDate;
use finance::FinanceError;
use finance::period::Month;
use serde_json::json;
use std::collections::HashMap;

/// Registers the CSV routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/finance/exports/{file}", web::get().to(export_file))
        .route("/finance/{report}", web::get().to(report_csv));
}

/// `GET /finance/exports/{id}.csv`: a finished export's file (finance staff); 404 while it is
/// being built or when there is none.
async fn export_file(
    state: web::Data<ApiState>,
    req: HttpRequest,
    file: web::Path<String>,
) -> HttpResponse {
    let core = &state.core;
    let viewer = match viewer::authenticate_document(core, &req, "finance export").await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    match viewer.principal() {
        Principal::Anonymous => return refuse(401, "UNAUTHENTICATED"),
        Principal::Staff(s) if s.has(Role::Finance) => {}
        _ => return refuse(403, "FORBIDDEN"),
    }
    let Some(id) = file
        .strip_suffix(".csv")
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
    else {
        return refuse(404, "NOT_FOUND");
    };
    let mut conn = match core.pool.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "finance export: database unavailable");
            return HttpResponse::ServiceUnavailable().finish();
        }
    };
    match finance::exports::export_file(&mut conn, id).await {
        Ok(Some((name, bytes))) => HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "private, no-store"))
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ))
            .body(bytes),
        Ok(None) => refuse(404, "NOT_FOUND"),
        Err(e) => {
            tracing::error!(error = %e, "finance export");
            HttpResponse::InternalServerError().finish()
        }
    }
}

fn refuse(status: u16, code: &str) -> HttpResponse {
    let mut r = match status {
        401 => HttpResponse::Unauthorized(),
        403 => HttpResponse::Forbidden(),
        404 => HttpResponse::NotFound(),
        _ => HttpResponse::BadRequest(),
    };
    r.insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "error": code }))
}

fn bad(e: &FinanceError) -> Option<HttpResponse> {
    e.user_error().map(|u| {
        HttpResponse::BadRequest()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({ "error": u.code, "field": u.field, "message": u.message }))
    })
}

fn date_param(q: &HashMap<String, String>, name: &'static str) -> Result<NaiveDate, FinanceError> {
    q.get(name)
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .ok_or(FinanceError::InvalidPeriod {
            field: name,
            reason: "expected YYYY-MM-DD".into(),
        })
}

fn month_param(q: &HashMap<String, String>, name: &'static str) -> Result<Month, FinanceError> {
    Month::parse(name, q.get(name).map(String::as_str).unwrap_or(""))
}

async fn report_csv(
    state: web::Data<ApiState>,
    req: HttpRequest,
    report: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let core = &state.core;
    let viewer = match viewer::authenticate_document(core, &req, "finance csv").await {
        Ok(v) => v,
        Err(refused) => return refused,
    };
    match viewer.principal() {
        Principal::Anonymous => return refuse(401, "UNAUTHENTICATED"),
        Principal::Staff(s) if s.has(Role::Finance) => {}
        _ => return refuse(403, "FORBIDDEN"),
    }
    let mut conn = match core.pool.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "finance csv: database unavailable");
            return HttpResponse::ServiceUnavailable().finish();
        }
    };
    let clock = &*core.clock;
    let q = query.into_inner();
    let result: Result<(String, String), FinanceError> = async {
        match report.as_str() {
            "bordereau.csv" => {
                let month = month_param(&q, "month")?;
                let b = finance::reports::bordereau(&mut conn, clock, month).await?;
                Ok((
                    format!("bordereau-{month}.csv"),
                    finance::csv::bordereau_csv(&b),
                ))
            }
            "trial-balance.csv" => {
                let at = date_param(&q, "at")?;
                let tb = finance::reports::trial_balance(&mut conn, clock, at).await?;
                Ok((
                    format!("trial-balance-{at}.csv"),
                    finance::csv::trial_balance_csv(&tb),
                ))
            }
            "ipt.csv" => {
                let (from, to) = (month_param(&q, "from")?, month_param(&q, "to")?);
                let months = finance::reports::ipt_by_month(&mut conn, clock, from, to).await?;
                Ok((
                    format!("ipt-{from}-{to}.csv"),
                    finance::csv::ipt_csv(&months),
                ))
            }
            "reconciliation.csv" => {
                let day = date_param(&q, "day")?;
                let summary = finance::reconcile::latest_summary(&mut conn, clock, day).await?;
                let items = match &summary {
                    Some(s) => {
                        finance::reconcile::run_items(&mut conn, s.run_id, day, None, 10_000)
                            .await?
                    }
                    None => Vec::new(),
                };
                Ok((
                    format!("reconciliation-{day}.csv"),
                    finance::csv::reconciliation_csv(summary.as_ref(), &items),
                ))
            }
            _ => Err(FinanceError::NotFound("report")),
        }
    }
    .await;
    match result {
        Ok((name, body)) => HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "private, no-store"))
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ))
            .body(body),
        Err(FinanceError::NotFound(_)) => refuse(404, "NOT_FOUND"),
        Err(e) => bad(&e).unwrap_or_else(|| {
            tracing::error!(error = %e, "finance csv");
            HttpResponse::InternalServerError().finish()
        }),
    }
}
