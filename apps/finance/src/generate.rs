//! Synthetic ledger data for benchmarks: `shiftcover generate-ledger --rows N`.
//!
//! Builds, set-based (`INSERT … SELECT generate_series`, one statement per batch of a million
//! transactions), a year of realistic books ending at the start of today (UTC):
//! - a driver population (one wallet per 200 transactions, at least 1 000);
//! - per 20 transactions: 4 card top-ups (wallet credited, Stripe clearing debited), 15 session
//!   charges (wallet debited; insurer payable, commission and IPT credited, IPT 3/28 of the
//!   premium inside it, commission 20% of the rest) and 1 whole refund of the charge before it
//!   (a reversal at the original split) — about 3.6 postings per transaction;
//! - a busy day (yesterday) of `stripe_day` extra top-ups, each with its Stripe balance
//!   transaction imported as the importer would store it (one in a thousand off by a penny, so
//!   reconciliation has something to find).
//!
//! Every generated transaction balances by construction. For speed the batches run with
//! `session_replication_role = replica`, which skips the ledger's per-row triggers (the deferred
//! balance check and the append-only guards) and foreign-key triggers; a final set-based check
//! proves every generated transaction sums to zero. It needs a superuser, and is meant for
//! benchmark databases only. Ids start with `fffffff` so they never meet real ones; running the
//! command twice on one database is refused.

use crate::error::FinanceError;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::Instant;
use uuid::Uuid;

/// Transactions per statement.
const BATCH: i64 = 1_000_000;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct GenerateOptions {
    /// Ledger postings to write (about; transactions = rows / 3.6).
    pub rows: i64,
    /// Days the history spans, ending at the start of today UTC.
    pub days: i64,
    /// Extra top-ups on yesterday with their Stripe balance transactions.
    pub stripe_day: i64,
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Ledger transactions written.
    pub transactions: i64,
    /// Postings written.
    pub postings: i64,
    /// Wallets.
    pub drivers: i64,
    /// Stripe balance transactions written.
    pub stripe_rows: i64,
    /// Seconds taken.
    pub seconds: f64,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn system_account(conn: &mut AsyncPgConnection, kind: &str) -> Result<Uuid, FinanceError> {
    let normal = if matches!(
        kind,
        "stripe_clearing" | "stripe_fees" | "premium_receivable"
    ) {
        "debit"
    } else {
        "credit"
    };
    diesel::sql_query(format!(
        "INSERT INTO ledger_accounts (id, kind, owner_id, currency, normal_balance) \
         VALUES (gen_random_uuid(), '{kind}', NULL, 'GBP', '{normal}') \
         ON CONFLICT ON CONSTRAINT ledger_accounts_identity_unique DO NOTHING"
    ))
    .execute(conn)
    .await?;
    let row: IdRow = diesel::sql_query(format!(
        "SELECT id FROM ledger_accounts WHERE kind = '{kind}' AND owner_id IS NULL AND currency = 'GBP'"
    ))
    .get_result(conn)
    .await?;
    Ok(row.id)
}

/// SQL pieces shared by the batches: `$1` first index, `$2` last index + 1, `$3` base time,
/// `$4` seconds per transaction, `$5`..`$8` clearing, insurer, commission, IPT account ids,
/// `$9` drivers.
const TX_SQL: &str = r#"
INSERT INTO ledger_transactions (id, kind, cause_type, cause_id, description, currency, created_at, metadata, reverses_id)
SELECT ('fffffff0' || lpad(to_hex(i), 24, '0'))::uuid,
       CASE WHEN i % 20 < 4 THEN 'top_up' WHEN i % 20 = 19 THEN 'reversal' ELSE 'session_charge' END,
       CASE WHEN i % 20 < 4 THEN 'top_up' WHEN i % 20 = 19 THEN 'refund' ELSE 'cover_session' END,
       CASE WHEN i % 20 < 4 THEN 'top_fffffff0' WHEN i % 20 = 19 THEN 'ref_fffffff0' ELSE 'cvs_fffffff0' END
           || lpad(to_hex(i), 24, '0'),
       CASE WHEN i % 20 < 4 THEN 'Card top-up' WHEN i % 20 = 19 THEN 'Refund of a session charge'
            ELSE 'Cover session' END,
       'GBP', $3 + make_interval(secs => i * $4), '{}'::jsonb,
       CASE WHEN i % 20 = 19 THEN ('fffffff0' || lpad(to_hex(i - 1), 24, '0'))::uuid END
  FROM generate_series($1, $2 - 1) i
"#;

const POSTINGS_SQL: &str = r#"
INSERT INTO ledger_postings (transaction_id, account_id, amount, currency, created_at, line_no)
SELECT ('fffffff0' || lpad(to_hex(g.i), 24, '0'))::uuid, x.account_id, x.amount, 'GBP', g.created_at, x.line_no
  FROM (
    SELECT i, $3 + make_interval(secs => i * $4) AS created_at,
           CASE WHEN i % 20 < 4 THEN 'top_up' WHEN i % 20 = 19 THEN 'reversal' ELSE 'session_charge' END AS kind,
           ('fffffff1' || lpad(to_hex(((CASE WHEN i % 20 = 19 THEN i - 1 ELSE i END) * 2654435761) % $9), 24, '0'))::uuid AS wallet,
           500 + (i * 7919) % 4500 AS topup,
           150 + ((CASE WHEN i % 20 = 19 THEN i - 1 ELSE i END) * 104729) % 900 AS total
      FROM generate_series($1, $2 - 1) i
  ) g
  CROSS JOIN LATERAL (
    SELECT g.total * 3 / 28 AS ipt, (g.total - g.total * 3 / 28) / 5 AS com
  ) s
  CROSS JOIN LATERAL (VALUES
    ($5, CASE WHEN g.kind = 'top_up' THEN g.topup END, 0::smallint),
    (g.wallet, CASE g.kind WHEN 'top_up' THEN -g.topup WHEN 'session_charge' THEN g.total ELSE -g.total END, 1::smallint),
    ($6, CASE g.kind WHEN 'session_charge' THEN -(g.total - s.ipt - s.com) WHEN 'reversal' THEN g.total - s.ipt - s.com END, 2::smallint),
    ($7, CASE g.kind WHEN 'session_charge' THEN -s.com WHEN 'reversal' THEN s.com END, 3::smallint),
    ($8, CASE g.kind WHEN 'session_charge' THEN -s.ipt WHEN 'reversal' THEN s.ipt END, 4::smallint)
  ) x(account_id, amount, line_no)
 WHERE x.amount IS NOT NULL AND x.amount <> 0
 ORDER BY x.account_id, g.created_at
"#;

/// Generates the data. `progress` is told after each batch (transactions so far, total).
pub async fn generate_ledger(
    conn: &mut AsyncPgConnection,
    options: GenerateOptions,
    mut progress: impl FnMut(i64, i64),
) -> Result<Generated, FinanceError> {
    let started = Instant::now();
    if options.rows < 10 || options.days < 2 || options.stripe_day < 0 {
        return Err(FinanceError::InvalidPeriod {
            field: "rows",
            reason: "at least 10 rows over at least 2 days".into(),
        });
    }
    let existing: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM ledger_transactions WHERE id = 'fffffff0000000000000000000000000'",
    )
    .get_result(conn)
    .await?;
    if existing.n > 0 {
        return Err(FinanceError::InvalidPeriod {
            field: "rows",
            reason: "this database already holds generated data".into(),
        });
    }
    let transactions = (options.rows * 10 / 36).max(1);
    let drivers = (transactions / 200).max(1000);
    let clearing = system_account(conn, "stripe_clearing").await?;
    let insurer = system_account(conn, "insurer_payable").await?;
    let commission = system_account(conn, "commission_income").await?;
    let ipt = system_account(conn, "ipt_payable").await?;
    for sql in [
        "SET session_replication_role = replica",
        "SET synchronous_commit = off",
        "SET work_mem = '256MB'",
        "SET maintenance_work_mem = '512MB'",
    ] {
        diesel::sql_query(sql).execute(conn).await?;
    }
    diesel::sql_query(format!(
        "INSERT INTO ledger_accounts (id, kind, owner_id, currency, normal_balance, created_at) \
         SELECT ('fffffff1' || lpad(to_hex(d), 24, '0'))::uuid, 'driver_wallet', \
                'drv_fffffff1' || lpad(to_hex(d), 24, '0'), 'GBP', 'credit', now() - interval '400 days' \
           FROM generate_series(0, {} - 1) d",
        drivers
    ))
    .execute(conn)
    .await?;
    let today = chrono::Utc::now().date_naive();
    let end = crate::period::day_start(today);
    let base = end - chrono::Duration::days(options.days);
    // Leave the last day to the busy day's top-ups as well as the spread.
    #[allow(clippy::cast_precision_loss)]
    let step = (options.days * 86_400) as f64 / transactions as f64;
    let mut postings = 0_i64;
    let mut lo = 0_i64;
    while lo < transactions {
        let hi = (lo + BATCH).min(transactions);
        for sql in [TX_SQL, POSTINGS_SQL] {
            let q = diesel::sql_query(sql)
                .bind::<BigInt, _>(lo)
                .bind::<BigInt, _>(hi)
                .bind::<Timestamptz, _>(base)
                .bind::<Double, _>(step);
            let n = if sql == TX_SQL {
                q.execute(conn).await?
            } else {
                q.bind::<SqlUuid, _>(clearing)
                    .bind::<SqlUuid, _>(insurer)
                    .bind::<SqlUuid, _>(commission)
                    .bind::<SqlUuid, _>(ipt)
                    .bind::<BigInt, _>(drivers)
                    .execute(conn)
                    .await?
            };
            if sql == POSTINGS_SQL {
                postings += i64::try_from(n).unwrap_or(0);
            }
        }
        lo = hi;
        progress(lo, transactions);
    }
    let stripe_rows = busy_day(conn, options.stripe_day, end, clearing, drivers).await?;
    postings += 2 * stripe_rows;
    diesel::sql_query("SET session_replication_role = origin")
        .execute(conn)
        .await?;
    let unbalanced: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM (SELECT transaction_id FROM ledger_postings \
          WHERE transaction_id >= 'fffffff0000000000000000000000000' \
          GROUP BY transaction_id HAVING sum(amount) <> 0) x",
    )
    .get_result(conn)
    .await?;
    if unbalanced.n != 0 {
        return Err(FinanceError::Internal(anyhow::anyhow!(
            "{} generated transactions do not balance",
            unbalanced.n
        )));
    }
    diesel::sql_query("ANALYZE ledger_transactions, ledger_postings, ledger_accounts, finance_stripe_balance_transactions")
        .execute(conn)
        .await?;
    Ok(Generated {
        transactions: transactions + stripe_rows,
        postings,
        drivers,
        stripe_rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Yesterday's extra top-ups and their Stripe balance transactions.
async fn busy_day(
    conn: &mut AsyncPgConnection,
    n: i64,
    end: chrono::DateTime<chrono::Utc>,
    clearing: Uuid,
    drivers: i64,
) -> Result<i64, FinanceError> {
    if n == 0 {
        return Ok(0);
    }
    let day_start = end - chrono::Duration::days(1);
    #[allow(clippy::cast_precision_loss)]
    let step = 86_000.0 / n as f64;
    let run = Uuid::now_v7();
    diesel::sql_query(
        "SELECT finance_ensure_month_partition('finance_stripe_balance_transactions'::regclass, ($1 AT TIME ZONE 'UTC')::date)",
    )
    .bind::<Timestamptz, _>(day_start)
    .execute(conn)
    .await?;
    diesel::sql_query(
        "INSERT INTO ledger_transactions (id, kind, cause_type, cause_id, description, currency, created_at, metadata) \
         SELECT ('fffffff2' || lpad(to_hex(k), 24, '0'))::uuid, 'top_up', 'top_up', \
                'top_fffffff2' || lpad(to_hex(k), 24, '0'), 'Card top-up', 'GBP', \
                $2 + make_interval(secs => k * $3), '{}'::jsonb \
           FROM generate_series(0, $1 - 1) k",
    )
    .bind::<BigInt, _>(n)
    .bind::<Timestamptz, _>(day_start)
    .bind::<Double, _>(step)
    .execute(conn)
    .await?;
    diesel::sql_query(
        "INSERT INTO ledger_postings (transaction_id, account_id, amount, currency, created_at, line_no) \
         SELECT ('fffffff2' || lpad(to_hex(k), 24, '0'))::uuid, x.account_id, x.amount, 'GBP', \
                $2 + make_interval(secs => k * $3), x.line_no \
           FROM generate_series(0, $1 - 1) k \
          CROSS JOIN LATERAL (VALUES \
                ($4, 500 + (k * 7919) % 4500, 0::smallint), \
                (('fffffff1' || lpad(to_hex((k * 40503) % $5), 24, '0'))::uuid, -(500 + (k * 7919) % 4500), 1::smallint) \
          ) x(account_id, amount, line_no)",
    )
    .bind::<BigInt, _>(n)
    .bind::<Timestamptz, _>(day_start)
    .bind::<Double, _>(step)
    .bind::<SqlUuid, _>(clearing)
    .bind::<BigInt, _>(drivers)
    .execute(conn)
    .await?;
    let rows = diesel::sql_query(
        "INSERT INTO finance_stripe_balance_transactions (id, created, type, known_type, amount, fee, net, \
             currency, status, reporting_category, available_on, source_id, payment_intent_id, match_kind, \
             match_cause_type, match_cause_id, description, raw, import_run_id, imported_at) \
         SELECT 'txn_gen' || k, date_trunc('second', $2 + make_interval(secs => k * $3)), 'charge', true, \
                a, 0, a, 'GBP', 'available', 'charge', $2 + interval '2 days', 'ch_gen' || k, 'pi_gen' || k, \
                'top_up', 'top_up', 'top_fffffff2' || lpad(to_hex(k), 24, '0'), NULL, '{}'::jsonb, $4, now() \
           FROM generate_series(0, $1 - 1) k \
          CROSS JOIN LATERAL (SELECT 500 + (k * 7919) % 4500 + CASE WHEN k % 1000 = 999 THEN 1 ELSE 0 END AS a) s",
    )
    .bind::<BigInt, _>(n)
    .bind::<Timestamptz, _>(day_start)
    .bind::<Double, _>(step)
    .bind::<SqlUuid, _>(run)
    .execute(conn)
    .await?;
    Ok(i64::try_from(rows).unwrap_or(0))
}
