//! Weekly driver statements: a driver's wallet movements over one week (Monday 00:00 UTC to the
//! next Monday), with the opening and closing balance and totals of top-ups, session charges and
//! refunds.
//!
//! Read from the ledger alone: the driver's wallet is one account, and its postings in a period
//! are one range of the postings' (account, created_at) index, so a statement costs the same at
//! fifty million postings as at fifty. The opening balance is the sum of the wallet's postings
//! before the week (the same index, read to its start).
//!
//! Signs for people: the ledger credits the wallet (negative) when money comes in; a statement
//! shows money in as positive, money out as negative.

use crate::error::FinanceError;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

/// The Monday starting the week that contains `day`.
pub fn week_of(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// One movement of the wallet.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize)]
pub struct StatementEntry {
    /// When.
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
    /// The ledger transaction.
    #[diesel(sql_type = SqlUuid)]
    pub transaction_id: Uuid,
    /// `top_up`, `session_charge`, `reversal` (a refund), …
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// What caused it (`top_…`, `cvs_…`, `ref_…`).
    #[diesel(sql_type = Text)]
    pub cause_id: String,
    /// The ledger's description.
    #[diesel(sql_type = Text)]
    pub description: String,
    /// Money in (positive) or out (negative), minor units.
    #[diesel(sql_type = BigInt)]
    pub amount: i64,
}

/// A week's statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The driver (`drv_…`).
    pub driver: String,
    /// The Monday the week starts.
    pub week_start: NaiveDate,
    /// The currency.
    pub currency: String,
    /// Balance held at the start of the week.
    pub opening_balance: i64,
    /// Balance held at its end.
    pub closing_balance: i64,
    /// Sum of top-ups.
    pub top_ups: i64,
    /// Sum of session charges (negative).
    pub charges: i64,
    /// Sum of refunds and other movements.
    pub refunds_and_other: i64,
    /// Movements, oldest first.
    pub entries: Vec<StatementEntry>,
}

/// The Monday of the week holding `day`, refused when that week has not begun on `today`. The
/// week in progress is allowed: its statement shows the movements so far.
pub fn check_week(
    today: NaiveDate,
    day: NaiveDate,
    field: &'static str,
) -> Result<NaiveDate, FinanceError> {
    let week = week_of(day);
    if week > today {
        return Err(FinanceError::PeriodInFuture(field));
    }
    Ok(week)
}

#[derive(QueryableByName)]
struct Week {
    #[diesel(sql_type = diesel::sql_types::Date)]
    week: NaiveDate,
}

/// The weeks (their Mondays) in which `driver`'s wallet moved, newest first, starting before
/// the week `before` when given; at most `limit`. Read from the wallet's postings index.
pub async fn statement_weeks(
    conn: &mut AsyncPgConnection,
    driver: &str,
    before: Option<NaiveDate>,
    limit: i64,
) -> Result<Vec<NaiveDate>, FinanceError> {
    let before = before.map(|w| crate::period::day_start(week_of(w)));
    let rows: Vec<Week> = diesel::sql_query(
        "SELECT DISTINCT date_trunc('week', p.created_at AT TIME ZONE 'UTC')::date AS week \
           FROM ledger_postings p \
          WHERE p.account_id = (SELECT id FROM ledger_accounts \
                                 WHERE kind = 'driver_wallet' AND owner_id = $1 AND currency = 'GBP') \
            AND ($2::timestamptz IS NULL OR p.created_at < $2) \
          ORDER BY week DESC LIMIT $3",
    )
    .bind::<Text, _>(driver)
    .bind::<Nullable<Timestamptz>, _>(before)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.week).collect())
}

#[derive(QueryableByName)]
struct Opening {
    #[diesel(sql_type = Nullable<BigInt>)]
    held: Option<i64>,
}

/// The statement of `driver` (`drv_…`) for the week starting `week_start` (a Monday; any other
/// day is moved back to its Monday) in GBP. A driver with no wallet gets an empty statement.
pub async fn weekly_statement(
    conn: &mut AsyncPgConnection,
    driver: &str,
    week_start: NaiveDate,
) -> Result<Statement, FinanceError> {
    let week_start = week_of(week_start);
    let from = crate::period::day_start(week_start);
    let to = from + Duration::days(7);
    let currency = "GBP";
    let opening: Opening = diesel::sql_query(
        "SELECT -sum(p.amount)::bigint AS held FROM ledger_postings p \
          WHERE p.account_id = (SELECT id FROM ledger_accounts \
                                 WHERE kind = 'driver_wallet' AND owner_id = $1 AND currency = $2) \
            AND p.created_at < $3",
    )
    .bind::<Text, _>(driver)
    .bind::<Text, _>(currency)
    .bind::<Timestamptz, _>(from)
    .get_result(conn)
    .await?;
    let entries: Vec<StatementEntry> = diesel::sql_query(
        "SELECT p.created_at AS at, t.id AS transaction_id, t.kind, t.cause_id, t.description, \
                -p.amount AS amount \
           FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.transaction_id \
          WHERE p.account_id = (SELECT id FROM ledger_accounts \
                                 WHERE kind = 'driver_wallet' AND owner_id = $1 AND currency = $2) \
            AND p.created_at >= $3 AND p.created_at < $4 \
          ORDER BY p.created_at, t.id",
    )
    .bind::<Text, _>(driver)
    .bind::<Text, _>(currency)
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)
    .await?;
    let opening_balance = opening.held.unwrap_or(0);
    let sum_of = |f: &dyn Fn(&StatementEntry) -> bool| -> i64 {
        entries.iter().filter(|e| f(e)).map(|e| e.amount).sum()
    };
    let top_ups = sum_of(&|e| e.kind == "top_up");
    let charges = sum_of(&|e| e.kind == "session_charge");
    let refunds_and_other = sum_of(&|e| e.kind != "top_up" && e.kind != "session_charge");
    Ok(Statement {
        driver: driver.to_owned(),
        week_start,
        currency: currency.to_owned(),
        opening_balance,
        closing_balance: opening_balance + top_ups + charges + refunds_and_other,
        top_ups,
        charges,
        refunds_and_other,
        entries,
    })
}

fn money(minor: i64) -> String {
    shared::Money::gbp(minor).to_string()
}

/// Movements listed on the first page of a statement PDF (below the totals) and on each later page.
const FIRST_PAGE_ROWS: usize = 42;
const PAGE_ROWS: usize = 60;

fn movement_header(page: &mut cover::pdf::Page, y: f32) {
    use cover::pdf::Font;
    page.text(50.0, y, 10.0, Font::Bold, "Date");
    page.text(170.0, y, 10.0, Font::Bold, "Movement");
    page.text(450.0, y, 10.0, Font::Bold, "Amount");
}

/// The statement as a PDF: the totals on the first page, then every movement, as many pages as
/// they take, each page numbered.
pub fn render_statement_pdf(st: &Statement) -> Vec<u8> {
    use cover::pdf::{Font, PAGE_HEIGHT, Page};
    let week_end = st.week_start + Duration::days(6);
    let later = st.entries.len().saturating_sub(FIRST_PAGE_ROWS);
    let page_count = 1 + later.div_ceil(PAGE_ROWS);
    let mut pages = Vec::with_capacity(page_count);
    let mut page = Page::new();
    let mut y = PAGE_HEIGHT - 60.0;
    page.text(50.0, y, 18.0, Font::Bold, "ShiftCover weekly statement");
    y -= 24.0;
    page.text(
        50.0,
        y,
        11.0,
        Font::Regular,
        &format!(
            "{}   week {} to {}",
            st.driver,
            st.week_start.format("%-d %b %Y"),
            week_end.format("%-d %b %Y")
        ),
    );
    y -= 28.0;
    for (label, value) in [
        ("Opening balance", st.opening_balance),
        ("Top-ups", st.top_ups),
        ("Cover charges", st.charges),
        ("Refunds and other", st.refunds_and_other),
        ("Closing balance", st.closing_balance),
    ] {
        page.text(50.0, y, 11.0, Font::Bold, label);
        page.text(250.0, y, 11.0, Font::Regular, &money(value));
        y -= 16.0;
    }
    y -= 12.0;
    if st.entries.is_empty() {
        page.text(50.0, y, 10.0, Font::Regular, "No movements this week.");
    } else {
        movement_header(&mut page, y);
        y -= 14.0;
    }
    let mut rows_left = FIRST_PAGE_ROWS;
    for e in &st.entries {
        if rows_left == 0 {
            pages.push(std::mem::take(&mut page));
            y = PAGE_HEIGHT - 60.0;
            movement_header(&mut page, y);
            y -= 14.0;
            rows_left = PAGE_ROWS;
        }
        page.text(
            50.0,
            y,
            9.0,
            Font::Regular,
            &e.at.format("%a %-d %b %H:%M").to_string(),
        );
        page.text(170.0, y, 9.0, Font::Regular, &e.description);
        page.text(450.0, y, 9.0, Font::Regular, &money(e.amount));
        y -= 12.0;
        rows_left -= 1;
    }
    pages.push(page);
    let n = pages.len();
    for (i, p) in pages.iter_mut().enumerate() {
        p.text(
            50.0,
            30.0,
            8.0,
            Font::Regular,
            &format!(
                "{} · week of {} · page {} of {n}",
                st.driver,
                st.week_start,
                i + 1
            ),
        );
    }
    cover::pdf::document(pages, &format!("Statement {} {}", st.driver, st.week_start))
}
