//! The driver's weekly statements: `statements` (the weeks their wallet moved, newest first) and
//! `statement(weekStart)` (any week that has begun, empty when nothing moved). Each statement
//! links its PDF at `/statements/{weekStart}.pdf` (see [`pdf_route`]).

use super::report_error;
use crate::accounts::{conn, core};
use crate::errors::coded;
use crate::guard;
use crate::money::Money;
use crate::scalars::Date;
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, Object};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use finance::statements::{self as st, check_week, statement_weeks, weekly_statement};

/// What moved the wallet.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementMovementKind {
    /// Money the driver paid in.
    TopUp,
    /// A cover session's charge.
    CoverCharge,
    /// Money given back (a refund or the reversal of a charge).
    Refund,
    /// A correction made by our staff.
    Adjustment,
}

impl StatementMovementKind {
    fn of(kind: &str) -> Self {
        match kind {
            "top_up" => Self::TopUp,
            "session_charge" => Self::CoverCharge,
            "refund" | "reversal" => Self::Refund,
            _ => Self::Adjustment,
        }
    }
}

/// One movement of the wallet in a statement.
pub struct StatementMovement(st::StatementEntry);

/// One movement of the wallet.
#[Object]
impl StatementMovement {
    /// When it was booked.
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// What kind of movement.
    async fn kind(&self) -> StatementMovementKind {
        StatementMovementKind::of(&self.0.kind)
    }
    /// What it was, for people.
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Money in is positive, money out negative.
    async fn amount(&self) -> Money {
        Money(shared::Money::gbp(self.0.amount))
    }
}

/// A week of the driver's wallet: opening and closing balance, totals and every movement.
pub struct Statement(st::Statement);

#[Object]
impl Statement {
    /// The Monday the week starts (weeks run Monday 00:00 to Monday 00:00 UTC).
    async fn week_start(&self) -> Date {
        self.0.week_start.into()
    }
    /// The Sunday it ends.
    async fn week_end(&self) -> Date {
        (self.0.week_start + Duration::days(6)).into()
    }
    /// The wallet's balance when the week began.
    async fn opening_balance(&self) -> Money {
        Money(shared::Money::gbp(self.0.opening_balance))
    }
    /// The balance when it ended (or now, for the week in progress).
    async fn closing_balance(&self) -> Money {
        Money(shared::Money::gbp(self.0.closing_balance))
    }
    /// Paid in.
    async fn top_ups(&self) -> Money {
        Money(shared::Money::gbp(self.0.top_ups))
    }
    /// Cover charges (negative).
    async fn charges(&self) -> Money {
        Money(shared::Money::gbp(self.0.charges))
    }
    /// Refunds and corrections.
    async fn refunds_and_other(&self) -> Money {
        Money(shared::Money::gbp(self.0.refunds_and_other))
    }
    /// Every movement, oldest first.
    async fn movements(&self) -> Vec<StatementMovement> {
        self.0
            .entries
            .iter()
            .cloned()
            .map(StatementMovement)
            .collect()
    }
    /// The statement as a PDF (authenticated like this API), e.g. `/statements/2026-11-30.pdf`.
    async fn pdf_path(&self) -> String {
        format!("/statements/{}.pdf", self.0.week_start)
    }
}

/// Statement queries (drivers).
#[derive(Default)]
pub struct StatementsQuery;

#[Object]
impl StatementsQuery {
    /// The signed-in driver's weekly statements: the weeks their wallet moved, newest first.
    async fn statements(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many weeks (at most 20).",
            default = 4,
            validator(minimum = 1, maximum = 20)
        )]
        first: Option<i32>,
        #[graphql(desc = "Weeks before this cursor (a week's start, `YYYY-MM-DD`).")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<Connection<String, Statement>> {
        let driver = guard::require_driver(ctx)?;
        let first = usize::try_from(first.unwrap_or(4)).unwrap_or(4);
        let before = match after.as_deref() {
            None => None,
            Some(c) => Some(
                NaiveDate::parse_from_str(c, "%Y-%m-%d")
                    .map_err(|_| coded("BAD_USER_INPUT", "`after` is not a cursor of this list"))?,
            ),
        };
        let owner = driver.driver_id.to_string();
        let mut conn = conn(ctx).await?;
        let mut weeks = statement_weeks(&mut conn, &owner, before, first as i64 + 1)
            .await
            .map_err(|e| report_error(ctx, e))?;
        let has_next = weeks.len() > first;
        weeks.truncate(first);
        let mut connection = Connection::new(before.is_some(), has_next);
        for week in weeks {
            let s = weekly_statement(&mut conn, &owner, week)
                .await
                .map_err(|e| report_error(ctx, e))?;
            connection
                .edges
                .push(Edge::new(week.to_string(), Statement(s)));
        }
        Ok(connection)
    }

    /// The signed-in driver's statement of the week holding `weekStart` (any day of it); a
    /// week that has not begun is refused with `PERIOD_IN_FUTURE`.
    async fn statement(
        &self,
        ctx: &Context<'_>,
        week_start: Date,
    ) -> async_graphql::Result<Statement> {
        let driver = guard::require_driver(ctx)?;
        let core = core(ctx)?;
        let today = core.clock.now().date_naive();
        let week =
            check_week(today, week_start.0, "weekStart").map_err(|e| report_error(ctx, e))?;
        let mut conn = conn(ctx).await?;
        let s = weekly_statement(&mut conn, &driver.driver_id.to_string(), week)
            .await
            .map_err(|e| report_error(ctx, e))?;
        Ok(Statement(s))
    }
}

/// `GET /statements/{weekStart}.pdf`: the signed-in driver's statement of that week as a PDF
/// (bearer token as for `/graphql`). Finance and ops staff add `?driver=drv_…`. No credentials →
/// 401; a bad or future week → 400 with its code; a driver id the caller may not see → 404.
pub mod pdf_route {
    use crate::http::ApiState;
    use crate::viewer;
    use accounts::{DriverId, Principal, Role};
    use actix_web::http::header;
    use actix_web::{HttpRequest, HttpResponse, web};
    use chrono::NaiveDate;
    use finance::statements::{check_week, render_statement_pdf, weekly_statement};
    use serde_json::json;
    use std::collections::HashMap;

    /// Registers the route.
    pub fn routes(cfg: &mut web::ServiceConfig) {
        cfg.route("/statements/{file}", web::get().to(statement_pdf));
    }

    fn answer(status: u16, body: serde_json::Value) -> HttpResponse {
        let mut r = match status {
            401 => HttpResponse::Unauthorized(),
            404 => HttpResponse::NotFound(),
            _ => HttpResponse::BadRequest(),
        };
        if status == 401 {
            r.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        r.insert_header((header::CACHE_CONTROL, "no-store"))
            .json(body)
    }

    /// `2026-11-30.pdf` → the date.
    pub(crate) fn parse_file(file: &str) -> Option<NaiveDate> {
        let day = file.strip_suffix(".pdf")?;
        NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
    }

    async fn statement_pdf(
        state: web::Data<ApiState>,
        req: HttpRequest,
        file: web::Path<String>,
        query: web::Query<HashMap<String, String>>,
    ) -> HttpResponse {
        let core = &state.core;
        let viewer = match viewer::authenticate_document(core, &req, "statement").await {
            Ok(v) => v,
            Err(refused) => return refused,
        };
        let driver: DriverId = match (viewer.principal(), query.get("driver")) {
            (Principal::Driver(d), None) => d.driver_id,
            (Principal::Staff(s), Some(id)) if s.has(Role::Finance) || s.has(Role::Ops) => {
                match id.parse::<DriverId>() {
                    Ok(d) => d,
                    Err(_) => return answer(404, json!({ "error": "NOT_FOUND" })),
                }
            }
            (Principal::Anonymous, _) => {
                return answer(401, json!({ "error": "UNAUTHENTICATED" }));
            }
            _ => return answer(404, json!({ "error": "NOT_FOUND" })),
        };
        let Some(day) = parse_file(&file) else {
            return answer(404, json!({ "error": "NOT_FOUND" }));
        };
        let week = match check_week(core.clock.now().date_naive(), day, "weekStart") {
            Ok(w) => w,
            Err(e) => {
                let u = e.user_error();
                return answer(
                    400,
                    json!({ "error": u.as_ref().map(|u| u.code), "field": "weekStart" }),
                );
            }
        };
        let mut conn = match core.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "statement: database unavailable");
                return HttpResponse::ServiceUnavailable().finish();
            }
        };
        let statement = match weekly_statement(&mut conn, &driver.to_string(), week).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "statement");
                return HttpResponse::InternalServerError().finish();
            }
        };
        HttpResponse::Ok()
            .content_type("application/pdf")
            .insert_header((header::CACHE_CONTROL, "private, no-store"))
            .insert_header(("x-robots-tag", "noindex"))
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"shiftcover-statement-{week}.pdf\""),
            ))
            .body(render_statement_pdf(&statement))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn file_names_give_the_week() {
            assert_eq!(
                parse_file("2026-11-30.pdf"),
                NaiveDate::from_ymd_opt(2026, 11, 30)
            );
            assert_eq!(parse_file("2026-11-30.html"), None);
            assert_eq!(parse_file("2026-13-01.pdf"), None);
            assert_eq!(parse_file("../x.pdf"), None);
        }
    }
}
