//! Daily rollups of the ledger: `finance_ledger_daily` holds, per UTC day, account kind,
//! transaction kind and currency, the debits, credits and number of postings.
//!
//! [`refresh_ledger_daily`] rolls up every closed day (before today, UTC) from the watermark on,
//! one set-based statement per call, and moves the watermark. Days already rolled up are never
//! touched again: the ledger is append-only and stamps postings with the time they are written,
//! so a closed day cannot gain postings. Reports add the days from the watermark on from the
//! postings themselves ([`ledger_totals`]), so they are exact whether or not the job has run.

use crate::error::FinanceError;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Date, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::Clock;

use crate::period::day_start;

#[derive(QueryableByName)]
struct WatermarkRow {
    #[diesel(sql_type = Date)]
    next_day: NaiveDate,
}

/// The first day not rolled up yet; `None` before the first refresh.
pub async fn watermark(conn: &mut AsyncPgConnection) -> Result<Option<NaiveDate>, FinanceError> {
    let rows: Vec<WatermarkRow> = diesel::sql_query(
        "SELECT next_day FROM finance_rollup_watermark WHERE name = 'ledger_daily'",
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|r| r.next_day))
}

#[derive(QueryableByName)]
struct FirstDay {
    #[diesel(sql_type = diesel::sql_types::Nullable<Date>)]
    day: Option<NaiveDate>,
}

/// Rolls up every closed day not rolled up yet. Returns the new watermark (today, UTC), or `None`
/// when the ledger is empty. Safe to run concurrently (the watermark row is locked).
pub async fn refresh_ledger_daily(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
) -> Result<Option<NaiveDate>, FinanceError> {
    let today = clock.now().date_naive();
    conn.transaction::<_, FinanceError, _>(async |conn| {
        let current: Vec<WatermarkRow> = diesel::sql_query(
            "SELECT next_day FROM finance_rollup_watermark WHERE name = 'ledger_daily' FOR UPDATE",
        )
        .load(conn)
        .await?;
        let from = match current.into_iter().next() {
            Some(w) => w.next_day,
            None => {
                let first: FirstDay = diesel::sql_query(
                    "SELECT (min(created_at) AT TIME ZONE 'UTC')::date AS day FROM ledger_transactions",
                )
                .get_result(conn)
                .await?;
                match first.day {
                    Some(d) => d,
                    None => return Ok(None),
                }
            }
        };
        if from < today {
            roll_up(conn, day_start(from), day_start(today)).await?;
        }
        let next = from.max(today);
        diesel::sql_query(
            "INSERT INTO finance_rollup_watermark (name, next_day, updated_at) \
             VALUES ('ledger_daily', $1, $2) \
             ON CONFLICT (name) DO UPDATE SET next_day = EXCLUDED.next_day, updated_at = EXCLUDED.updated_at",
        )
        .bind::<Date, _>(next)
        .bind::<Timestamptz, _>(clock.now())
        .execute(conn)
        .await?;
        Ok(Some(next))
    })
    .await
}

/// Sums the postings of `[from, to)` into the daily table (rows for those days must not exist).
async fn roll_up(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(), FinanceError> {
    diesel::sql_query(
        "INSERT INTO finance_ledger_daily (day, account_kind, tx_kind, currency, debit, credit, postings) \
         SELECT (p.created_at AT TIME ZONE 'UTC')::date, a.kind, t.kind, p.currency, \
                coalesce(sum(p.amount) FILTER (WHERE p.amount > 0), 0), \
                coalesce(-sum(p.amount) FILTER (WHERE p.amount < 0), 0), \
                count(*) \
           FROM ledger_transactions t \
           JOIN ledger_postings p ON p.transaction_id = t.id \
           JOIN ledger_accounts a ON a.id = p.account_id \
          WHERE t.created_at >= $1 AND t.created_at < $2 \
          GROUP BY 1, 2, 3, 4",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .execute(conn)
    .await?;
    Ok(())
}

/// Debits and credits of one account kind, transaction kind and currency over a period.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct KindTotals {
    /// The account kind (`ipt_payable`, `driver_wallet`, …).
    #[diesel(sql_type = Text)]
    pub account_kind: String,
    /// The transaction kind (`session_charge`, `reversal`, …).
    #[diesel(sql_type = Text)]
    pub tx_kind: String,
    /// The currency.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Sum of debits (positive).
    #[diesel(sql_type = BigInt)]
    pub debit: i64,
    /// Sum of credits (positive).
    #[diesel(sql_type = BigInt)]
    pub credit: i64,
    /// Postings.
    #[diesel(sql_type = BigInt)]
    pub postings: i64,
}

/// The ledger's debits and credits per account kind, transaction kind and currency for postings
/// in `[from, to)` (midnights UTC): days before the watermark from the rollup, the rest from the
/// postings (an index range of the transactions' `created_at`, only for days not rolled up).
pub async fn ledger_totals(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<KindTotals>, FinanceError> {
    let wm = watermark(conn)
        .await?
        .map(day_start)
        .unwrap_or(DateTime::UNIX_EPOCH);
    let mut out: Vec<KindTotals> = Vec::new();
    let rolled_to = to.min(wm);
    if rolled_to > from {
        let rolled: Vec<KindTotals> = diesel::sql_query(
            "SELECT account_kind, tx_kind, currency, sum(debit)::bigint AS debit, \
                    sum(credit)::bigint AS credit, sum(postings)::bigint AS postings \
               FROM finance_ledger_daily \
              WHERE day >= ($1 AT TIME ZONE 'UTC')::date AND day < ($2 AT TIME ZONE 'UTC')::date \
              GROUP BY 1, 2, 3",
        )
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(rolled_to)
        .load(conn)
        .await?;
        out.extend(rolled);
    }
    let fresh_from = from.max(wm);
    if to > fresh_from {
        let fresh: Vec<KindTotals> = diesel::sql_query(
            "SELECT a.kind AS account_kind, t.kind AS tx_kind, p.currency, \
                    coalesce(sum(p.amount) FILTER (WHERE p.amount > 0), 0)::bigint AS debit, \
                    coalesce(-sum(p.amount) FILTER (WHERE p.amount < 0), 0)::bigint AS credit, \
                    count(*) AS postings \
               FROM ledger_transactions t \
               JOIN ledger_postings p ON p.transaction_id = t.id \
               JOIN ledger_accounts a ON a.id = p.account_id \
              WHERE t.created_at >= $1 AND t.created_at < $2 \
              GROUP BY 1, 2, 3",
        )
        .bind::<Timestamptz, _>(fresh_from)
        .bind::<Timestamptz, _>(to)
        .load(conn)
        .await?;
        for f in fresh {
            match out.iter_mut().find(|o| {
                o.account_kind == f.account_kind
                    && o.tx_kind == f.tx_kind
                    && o.currency == f.currency
            }) {
                Some(o) => {
                    o.debit += f.debit;
                    o.credit += f.credit;
                    o.postings += f.postings;
                }
                None => out.push(f),
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.account_kind, &a.tx_kind, &a.currency).cmp(&(&b.account_kind, &b.tx_kind, &b.currency))
    });
    Ok(out)
}

/// The same totals summed from the postings alone (no rollup): the baseline the benchmark
/// compares with, and the check the tests use.
pub async fn ledger_totals_raw(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<KindTotals>, FinanceError> {
    Ok(diesel::sql_query(
        "SELECT a.kind AS account_kind, t.kind AS tx_kind, p.currency, \
                coalesce(sum(p.amount) FILTER (WHERE p.amount > 0), 0)::bigint AS debit, \
                coalesce(-sum(p.amount) FILTER (WHERE p.amount < 0), 0)::bigint AS credit, \
                count(*) AS postings \
           FROM ledger_postings p \
           JOIN ledger_transactions t ON t.id = p.transaction_id \
           JOIN ledger_accounts a ON a.id = p.account_id \
          WHERE p.created_at >= $1 AND p.created_at < $2 \
          GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)
    .await?)
}
