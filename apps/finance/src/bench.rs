//! The finance benchmark (`shiftcover finance-bench`): each report timed beside a plain
//! `SUM … GROUP BY` over the raw tables for the same period, in the same run.

use crate::error::FinanceError;
use crate::period::{Month, day_bounds};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::Clock;
use std::time::Instant;

/// One measurement.
#[derive(Debug, Clone)]
pub struct Measure {
    /// What was timed.
    pub name: String,
    /// Milliseconds.
    pub ms: f64,
    /// What it returned, briefly.
    pub note: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Owner {
    #[diesel(sql_type = Text)]
    owner_id: String,
}

async fn timed_sql(
    conn: &mut AsyncPgConnection,
    name: &str,
    sql: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<Measure, FinanceError> {
    let t = Instant::now();
    let rows: Vec<Count> = diesel::sql_query(format!("SELECT count(*) AS n FROM ({sql}) x"))
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(to)
        .load(conn)
        .await?;
    Ok(Measure {
        name: name.to_owned(),
        ms: t.elapsed().as_secs_f64() * 1000.0,
        note: format!("{} groups", <[Count]>::first(&rows).map_or(0, |r| r.n)),
    })
}

/// Runs every measurement against the data `generate-ledger` made: yesterday's reconciliation,
/// the trial balance at yesterday, last month's bordereau totals, one driver's last full week.
pub async fn run(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
) -> Result<Vec<Measure>, FinanceError> {
    let mut out = Vec::new();
    let yesterday = clock.now().date_naive() - chrono::Duration::days(1);
    let (d0, d1) = day_bounds(yesterday);
    diesel::sql_query("SET work_mem = '64MB'")
        .execute(conn)
        .await?;

    let t = Instant::now();
    let wm = crate::rollups::refresh_ledger_daily(conn, clock).await?;
    out.push(Measure {
        name: "rollup refresh (closed days not yet rolled up)".into(),
        ms: t.elapsed().as_secs_f64() * 1000.0,
        note: format!("watermark {wm:?}"),
    });

    let stripe_rows: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM finance_stripe_balance_transactions WHERE created >= $1 AND created < $2",
    )
    .bind::<Timestamptz, _>(d0)
    .bind::<Timestamptz, _>(d1)
    .get_result(conn)
    .await?;
    let t = Instant::now();
    let summary = crate::reconcile::reconcile_day(conn, clock, yesterday).await?;
    out.push(Measure {
        name: format!(
            "reconcile {yesterday} ({} Stripe transactions)",
            stripe_rows.n
        ),
        ms: t.elapsed().as_secs_f64() * 1000.0,
        note: summary
            .statuses
            .iter()
            .map(|s| format!("{} {}", s.status, s.count))
            .collect::<Vec<_>>()
            .join(", "),
    });
    out.push(
        timed_sql(
            conn,
            "  raw: SUM(postings) GROUP BY kind for that day",
            "SELECT t.kind, sum(p.amount) FROM ledger_postings p \
             JOIN ledger_transactions t ON t.id = p.transaction_id \
             WHERE p.created_at >= $1 AND p.created_at < $2 GROUP BY t.kind",
            d0,
            d1,
        )
        .await?,
    );

    let t = Instant::now();
    let tb = crate::reports::trial_balance(conn, clock, yesterday).await?;
    out.push(Measure {
        name: format!("trial balance at {yesterday} (rollups)"),
        ms: t.elapsed().as_secs_f64() * 1000.0,
        note: format!("{} lines, balances: {}", tb.lines.len(), tb.balances()),
    });
    out.push(
        timed_sql(
            conn,
            "  raw: SUM(postings) GROUP BY account kind",
            "SELECT a.kind, sum(p.amount) FROM ledger_postings p \
             JOIN ledger_accounts a ON a.id = p.account_id \
             WHERE p.created_at >= $1 AND p.created_at < $2 GROUP BY a.kind",
            chrono::DateTime::UNIX_EPOCH,
            d1,
        )
        .await?,
    );

    let month = Month::of(Month::of(yesterday).first_day() - chrono::Duration::days(1));
    let (m0, m1) = month.bounds();
    let t = Instant::now();
    let totals = crate::reports::bordereau_totals(conn, clock, month).await?;
    out.push(Measure {
        name: format!("bordereau totals {month} (rollups)"),
        ms: t.elapsed().as_secs_f64() * 1000.0,
        note: totals
            .iter()
            .map(|t| {
                format!(
                    "{} charges, {} refunds, gross {} IPT {}",
                    t.charges, t.refunds, t.gross_premium, t.ipt
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    });
    out.push(
        timed_sql(
            conn,
            "  raw: SUM(postings) GROUP BY account kind, tx kind for the month",
            "SELECT a.kind, t.kind, sum(p.amount) FROM ledger_postings p \
             JOIN ledger_accounts a ON a.id = p.account_id \
             JOIN ledger_transactions t ON t.id = p.transaction_id \
             WHERE p.created_at >= $1 AND p.created_at < $2 GROUP BY a.kind, t.kind",
            m0,
            m1,
        )
        .await?,
    );

    let owner: Owner = diesel::sql_query(
        "SELECT owner_id FROM ledger_accounts WHERE kind = 'driver_wallet' \
          AND owner_id LIKE 'drv_fffffff1%' ORDER BY owner_id OFFSET 7 LIMIT 1",
    )
    .get_result(conn)
    .await?;
    let week = crate::statements::week_of(yesterday) - chrono::Duration::days(7);
    let t = Instant::now();
    let st = crate::statements::weekly_statement(conn, &owner.owner_id, week).await?;
    out.push(Measure {
        name: format!("statement of {} for the week of {week}", owner.owner_id),
        ms: t.elapsed().as_secs_f64() * 1000.0,
        note: format!(
            "{} entries, opening {} closing {}",
            st.entries.len(),
            st.opening_balance,
            st.closing_balance
        ),
    });
    let w0 = crate::period::day_start(week);
    let t = Instant::now();
    let rows: Vec<Count> = diesel::sql_query(
        "SELECT count(*) AS n FROM (SELECT t.kind, sum(p.amount) FROM ledger_postings p \
           JOIN ledger_transactions t ON t.id = p.transaction_id \
           JOIN ledger_accounts a ON a.id = p.account_id \
          WHERE a.owner_id = $1 AND p.created_at >= $2 AND p.created_at < $3 GROUP BY t.kind) x",
    )
    .bind::<Text, _>(&owner.owner_id)
    .bind::<Timestamptz, _>(w0)
    .bind::<Timestamptz, _>(w0 + chrono::Duration::days(7))
    .load(conn)
    .await?;
    out.push(Measure {
        name: "  raw: SUM(postings) GROUP BY kind for that driver and week".into(),
        ms: t.elapsed().as_secs_f64() * 1000.0,
        note: format!("{} groups", <[Count]>::first(&rows).map_or(0, |r| r.n)),
    });
    let t = Instant::now();
    let rows: Vec<Count> = diesel::sql_query(
        "SELECT count(*) AS n FROM (SELECT sum(p.amount) FROM ledger_postings p \
           JOIN ledger_transactions t ON t.id = p.transaction_id \
          WHERE p.created_at >= $1 AND p.created_at < $2 GROUP BY p.account_id) x",
    )
    .bind::<Timestamptz, _>(w0)
    .bind::<Timestamptz, _>(w0 + chrono::Duration::days(7))
    .load(conn)
    .await?;
    out.push(Measure {
        name: "  raw: SUM(postings) GROUP BY account for that week (every driver)".into(),
        ms: t.elapsed().as_secs_f64() * 1000.0,
        note: format!("{} accounts", <[Count]>::first(&rows).map_or(0, |r| r.n)),
    });
    Ok(out)
}
