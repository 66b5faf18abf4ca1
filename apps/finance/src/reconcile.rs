//! Reconciling one UTC day of Stripe balance transactions with the ledger.
//!
//! Every imported Stripe balance transaction created that day gets one result, and so does every
//! ledger transaction of that day that moved Stripe clearing but has no Stripe counterpart:
//!
//! | status              | meaning                                                                 |
//! |---------------------|-------------------------------------------------------------------------|
//! | `matched`           | the ledger transaction named by the shared key moved clearing by Stripe's net, and fees agree |
//! | `amount_mismatch`   | found, but the net (or, for charges and refunds, the fee) differs; `detail` says which and by how much |
//! | `missing_in_ledger` | no ledger transaction for the key, or no key at all (unknown type, no metadata) |
//! | `missing_at_stripe` | a ledger movement of clearing with no Stripe transaction carrying its key |
//! | `duplicate`         | a second Stripe transaction carrying a key already matched               |
//!
//! Amounts compared, in the ledger's signs (debit positive): Stripe's `net` (what its balance
//! moved by) against the transaction's postings on `stripe_clearing`, plus those of `fee`
//! transactions posted later for the same cause; Stripe's `fee` against the postings on
//! `stripe_fees`. `ledger_amount` reports clearing + fees, the gross, beside Stripe's `amount`.
//!
//! The whole day is one set-based statement over the day's partition and the ledger's unique
//! (kind, cause) index, inside one database transaction with the run, its summary and the new
//! exceptions: a run is all there or not at all. Running a day again adds a new run; the open
//! exceptions of earlier runs stay (at most one open per item and kind), and people resolve them.

use crate::error::FinanceError;
use crate::import::ensure_partitions;
use crate::period::{check_day_started, day_bounds};
use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Date, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::Clock;
use std::collections::BTreeSet;
use uuid::Uuid;

/// The statuses of a reconciliation item, in report order.
pub const STATUSES: [&str; 5] = [
    "matched",
    "amount_mismatch",
    "missing_in_ledger",
    "missing_at_stripe",
    "duplicate",
];

const ITEMS_SQL: &str = r#"
INSERT INTO finance_recon_items (run_id, day, status, stripe_id, stripe_type, ledger_transaction_id,
    ledger_kind, currency, stripe_amount, ledger_amount, stripe_fee, ledger_fee, detail)
WITH sys AS (
    SELECT id, kind FROM ledger_accounts WHERE kind IN ('stripe_clearing', 'stripe_fees')
),
s AS (
    SELECT b.id, b.created, b.type, b.known_type, b.amount, b.fee, b.net, b.currency,
           b.match_kind, b.match_cause_type, b.match_cause_id,
           CASE WHEN b.match_cause_id IS NULL THEN 1 ELSE row_number() OVER (
               PARTITION BY b.match_kind, b.match_cause_type, b.match_cause_id ORDER BY b.created, b.id)
           END AS rn
      FROM finance_stripe_balance_transactions b
     WHERE b.created >= $3 AND b.created < $4
),
j AS (
    SELECT s.*, t.id AS tid, t.kind AS tkind,
           coalesce(g.clearing, 0) + coalesce(ff.clearing, 0) AS l_clearing,
           coalesce(g.fees, 0) + coalesce(ff.fees, 0) AS l_fees,
           (s.rn > 1 OR (s.match_cause_id IS NOT NULL AND EXISTS (
               SELECT 1 FROM finance_stripe_balance_transactions e
                WHERE e.match_cause_id = s.match_cause_id AND e.match_kind = s.match_kind
                  AND e.match_cause_type = s.match_cause_type AND e.created < $3))) AS dup
      FROM s
      LEFT JOIN ledger_transactions t
             ON t.kind = s.match_kind AND t.cause_type = s.match_cause_type AND t.cause_id = s.match_cause_id
      LEFT JOIN LATERAL (
             SELECT sum(p.amount) FILTER (WHERE sys.kind = 'stripe_clearing') AS clearing,
                    sum(p.amount) FILTER (WHERE sys.kind = 'stripe_fees') AS fees
               FROM ledger_postings p JOIN sys ON sys.id = p.account_id
              WHERE p.transaction_id = t.id) g ON t.id IS NOT NULL
      LEFT JOIN LATERAL (
             SELECT sum(p.amount) FILTER (WHERE sys.kind = 'stripe_clearing') AS clearing,
                    sum(p.amount) FILTER (WHERE sys.kind = 'stripe_fees') AS fees
               FROM ledger_transactions f
               JOIN ledger_postings p ON p.transaction_id = f.id
               JOIN sys ON sys.id = p.account_id
              WHERE f.kind = 'fee' AND f.cause_type = s.match_cause_type AND f.cause_id = s.match_cause_id) ff
             ON t.id IS NOT NULL AND s.match_kind = 'top_up'
),
r AS (
    SELECT j.*,
           (j.l_clearing <> j.net) AS net_off,
           (j.match_kind IN ('top_up', 'reversal') AND j.l_fees <> j.fee) AS fee_off
      FROM j
)
SELECT $1, $2,
       CASE WHEN r.dup THEN 'duplicate'
            WHEN r.tid IS NULL THEN 'missing_in_ledger'
            WHEN r.net_off OR r.fee_off THEN 'amount_mismatch'
            ELSE 'matched' END,
       r.id, r.type, r.tid, r.tkind, r.currency, r.amount,
       CASE WHEN r.tid IS NULL THEN NULL ELSE r.l_clearing + r.l_fees END,
       r.fee,
       CASE WHEN r.tid IS NULL THEN NULL ELSE r.l_fees END,
       CASE WHEN r.dup THEN format('another Stripe transaction already carries %s %s %s',
                                   r.match_kind, r.match_cause_type, r.match_cause_id)
            WHEN NOT r.known_type THEN format('unknown Stripe balance transaction type %s', r.type)
            WHEN r.match_cause_id IS NULL THEN format('no ShiftCover id in the metadata of %s', r.type)
            WHEN r.tid IS NULL THEN format('no ledger transaction %s for %s %s',
                                           r.match_kind, r.match_cause_type, r.match_cause_id)
            WHEN r.net_off OR r.fee_off THEN concat_ws('; ',
                 CASE WHEN r.net_off THEN format('net: Stripe %s, ledger clearing %s (difference %s)',
                                                 r.net, r.l_clearing, r.net - r.l_clearing) END,
                 CASE WHEN r.fee_off THEN format('fee: Stripe %s, ledger fees %s (difference %s)',
                                                 r.fee, r.l_fees, r.fee - r.l_fees) END)
       END
  FROM r
UNION ALL
SELECT $1, $2, 'missing_at_stripe', NULL, NULL, t.id, t.kind, t.currency, NULL,
       (SELECT sum(q.amount) FROM ledger_postings q JOIN sys ON sys.id = q.account_id
         WHERE q.transaction_id = t.id),
       NULL,
       (SELECT coalesce(sum(q.amount), 0) FROM ledger_postings q JOIN sys ON sys.id = q.account_id
         WHERE q.transaction_id = t.id AND sys.kind = 'stripe_fees'),
       format('no Stripe balance transaction for %s %s %s', t.kind, t.cause_type, t.cause_id)
  FROM ledger_postings p
  JOIN ledger_transactions t ON t.id = p.transaction_id
 WHERE p.account_id = ANY($5) AND p.created_at >= $3 AND p.created_at < $4
   AND NOT (t.kind = 'fee' AND t.cause_type = 'top_up')
   AND NOT EXISTS (
       SELECT 1 FROM finance_stripe_balance_transactions b
        WHERE b.match_cause_id = t.cause_id AND b.match_kind = t.kind AND b.match_cause_type = t.cause_type)
"#;

const EXCEPTIONS_SQL: &str = r#"
INSERT INTO finance_exceptions (id, item_key, day, kind, stripe_id, ledger_transaction_id, currency,
    stripe_amount, ledger_amount, detail, status, first_run_id, created_at)
SELECT gen_random_uuid(),
       CASE WHEN i.stripe_id IS NOT NULL THEN 'stripe:' || i.stripe_id
            ELSE 'ledger:' || i.ledger_transaction_id::text END,
       i.day,
       CASE WHEN i.status = 'missing_in_ledger' AND b.known_type = false THEN 'unknown_type'
            ELSE i.status END,
       i.stripe_id, i.ledger_transaction_id, i.currency, i.stripe_amount, i.ledger_amount, i.detail,
       'open', i.run_id, $2
  FROM finance_recon_items i
  LEFT JOIN finance_stripe_balance_transactions b
         ON b.id = i.stripe_id AND b.created >= $3 AND b.created < $4
 WHERE i.run_id = $1 AND i.day = $5 AND i.status <> 'matched'
ON CONFLICT (item_key, kind) WHERE status = 'open' DO NOTHING
"#;

/// Counts and sums of one status (sums in minor units, per currency).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusTotals {
    /// The status.
    pub status: String,
    /// The currency of the sums.
    pub currency: String,
    /// Items.
    pub count: i64,
    /// Sum of Stripe's gross amounts (items with a Stripe side).
    pub stripe_amount: i64,
    /// Sum of the ledger's gross amounts (items with a ledger side).
    pub ledger_amount: i64,
}

/// Cash totals of the day per currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashTotals {
    /// The currency.
    pub currency: String,
    /// Fees Stripe took: the `fee` of every transaction plus `stripe_fee` transactions (positive).
    pub stripe_fees: i64,
    /// What Stripe's balance moved by (sum of `net`).
    pub stripe_net: i64,
    /// What the ledger's Stripe clearing moved by.
    pub ledger_clearing: i64,
    /// Payouts to the bank according to Stripe (sum of payout transactions' amounts; negative).
    pub stripe_payouts: i64,
    /// Payouts according to the ledger (clearing postings of `payout` transactions).
    pub ledger_payouts: i64,
}

/// What a reconciliation run found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconSummary {
    /// The run.
    pub run_id: Uuid,
    /// The UTC day.
    pub day: NaiveDate,
    /// When the run finished.
    pub finished_at: DateTime<Utc>,
    /// Per status and currency, statuses in report order (only those with items).
    pub statuses: Vec<StatusTotals>,
    /// Per currency.
    pub cash: Vec<CashTotals>,
    /// Exceptions this run opened.
    pub new_exceptions: i64,
}

impl ReconSummary {
    /// Items with `status`, all currencies.
    pub fn count(&self, status: &str) -> i64 {
        self.statuses
            .iter()
            .filter(|s| s.status == status)
            .map(|s| s.count)
            .sum()
    }
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

#[derive(QueryableByName)]
struct StatusRow {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = BigInt)]
    stripe_amount: i64,
    #[diesel(sql_type = BigInt)]
    ledger_amount: i64,
}

#[derive(QueryableByName)]
struct CashRow {
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    stripe_fees: i64,
    #[diesel(sql_type = BigInt)]
    stripe_net: i64,
    #[diesel(sql_type = BigInt)]
    ledger_clearing: i64,
    #[diesel(sql_type = BigInt)]
    stripe_payouts: i64,
    #[diesel(sql_type = BigInt)]
    ledger_payouts: i64,
}

const CASH_SQL: &str = r#"
WITH st AS (
    SELECT currency,
           sum(fee) + sum(-amount) FILTER (WHERE type = 'stripe_fee') AS stripe_fees,
           sum(net) AS stripe_net,
           coalesce(sum(amount) FILTER (WHERE type = 'payout'), 0) AS stripe_payouts
      FROM finance_stripe_balance_transactions
     WHERE created >= $1 AND created < $2
     GROUP BY currency
),
lg AS (
    SELECT p.currency,
           sum(p.amount) AS ledger_clearing,
           coalesce(sum(p.amount) FILTER (WHERE t.kind = 'payout'), 0) AS ledger_payouts
      FROM ledger_postings p
      JOIN ledger_transactions t ON t.id = p.transaction_id
     WHERE p.account_id = ANY($3) AND p.created_at >= $1 AND p.created_at < $2
     GROUP BY p.currency
)
SELECT coalesce(st.currency, lg.currency) AS currency,
       coalesce(st.stripe_fees, 0)::bigint AS stripe_fees,
       coalesce(st.stripe_net, 0)::bigint AS stripe_net,
       coalesce(lg.ledger_clearing, 0)::bigint AS ledger_clearing,
       coalesce(st.stripe_payouts, 0)::bigint AS stripe_payouts,
       coalesce(lg.ledger_payouts, 0)::bigint AS ledger_payouts
  FROM st FULL JOIN lg ON lg.currency = st.currency
 ORDER BY 1
"#;

/// Reconciles the Stripe balance transactions imported for `day` (UTC) with the ledger.
///
/// Errors: `PERIOD_IN_FUTURE` for a day that has not begun; storage failures.
pub async fn reconcile_day(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    day: NaiveDate,
) -> Result<ReconSummary, FinanceError> {
    let started_at = clock.now();
    check_day_started("day", day, started_at)?;
    let (start, end) = day_bounds(day);
    let run_id = Uuid::now_v7();
    // Fees Stripe reported since the payments were booked go into the ledger first, so that a
    // day's card payments match on fees as well as amounts.
    crate::fees::book_learned_fees(conn, day).await?;
    conn.transaction::<_, FinanceError, _>(async |conn| {
        // The day's rows are a small slice of tables of tens of millions: probing the ledger's
        // unique (kind, cause) index per Stripe row beats hashing the whole ledger, which the
        // planner picks under the default (spinning-disk) page costs.
        diesel::sql_query("SET LOCAL random_page_cost = 1.1")
            .execute(conn)
            .await?;
        // The clearing accounts' ids, so the day's clearing postings are one index range each.
        let clearing: Vec<Uuid> = diesel::sql_query(
            "SELECT id FROM ledger_accounts WHERE kind = 'stripe_clearing' AND owner_id IS NULL",
        )
        .load::<IdRow>(conn)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
        ensure_partitions(conn, "finance_recon_items", &BTreeSet::from([day])).await?;
        diesel::sql_query(ITEMS_SQL)
            .bind::<SqlUuid, _>(run_id)
            .bind::<Date, _>(day)
            .bind::<Timestamptz, _>(start)
            .bind::<Timestamptz, _>(end)
            .bind::<Array<SqlUuid>, _>(&clearing)
            .execute(conn)
            .await?;
        let rows: Vec<StatusRow> = diesel::sql_query(
            "SELECT status, currency, count(*) AS count, \
                    coalesce(sum(stripe_amount), 0)::bigint AS stripe_amount, \
                    coalesce(sum(ledger_amount), 0)::bigint AS ledger_amount \
               FROM finance_recon_items WHERE run_id = $1 AND day = $2 \
              GROUP BY status, currency",
        )
        .bind::<SqlUuid, _>(run_id)
        .bind::<Date, _>(day)
        .load(conn)
        .await?;
        let mut statuses: Vec<StatusTotals> = rows
            .into_iter()
            .map(|r| StatusTotals {
                status: r.status,
                currency: r.currency,
                count: r.count,
                stripe_amount: r.stripe_amount,
                ledger_amount: r.ledger_amount,
            })
            .collect();
        statuses.sort_by_key(|s| {
            (
                STATUSES
                    .iter()
                    .position(|x| *x == s.status)
                    .unwrap_or(STATUSES.len()),
                s.currency.clone(),
            )
        });
        let cash: Vec<CashRow> = diesel::sql_query(CASH_SQL)
            .bind::<Timestamptz, _>(start)
            .bind::<Timestamptz, _>(end)
            .bind::<Array<SqlUuid>, _>(&clearing)
            .load(conn)
            .await?;
        let cash = cash
            .into_iter()
            .map(|c| CashTotals {
                currency: c.currency,
                stripe_fees: c.stripe_fees,
                stripe_net: c.stripe_net,
                ledger_clearing: c.ledger_clearing,
                stripe_payouts: c.stripe_payouts,
                ledger_payouts: c.ledger_payouts,
            })
            .collect();
        let finished_at = clock.now();
        let new_exceptions = diesel::sql_query(EXCEPTIONS_SQL)
            .bind::<SqlUuid, _>(run_id)
            .bind::<Timestamptz, _>(finished_at)
            .bind::<Timestamptz, _>(start)
            .bind::<Timestamptz, _>(end)
            .bind::<Date, _>(day)
            .execute(conn)
            .await?;
        let summary = ReconSummary {
            run_id,
            day,
            finished_at,
            statuses,
            cash,
            new_exceptions: i64::try_from(new_exceptions).unwrap_or(i64::MAX),
        };
        let json = serde_json::to_value(&summary).map_err(anyhow::Error::from)?;
        diesel::sql_query(
            "INSERT INTO finance_recon_runs (id, day, started_at, finished_at, summary) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind::<SqlUuid, _>(run_id)
        .bind::<Date, _>(day)
        .bind::<Timestamptz, _>(started_at)
        .bind::<Timestamptz, _>(finished_at)
        .bind::<diesel::sql_types::Jsonb, _>(json)
        .execute(conn)
        .await?;
        Ok(summary)
    })
    .await
}

#[derive(QueryableByName)]
struct SummaryRow {
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    summary: serde_json::Value,
}

/// The summary of the latest reconciliation of `day`; `None` when the day was never reconciled.
/// Errors: `PERIOD_IN_FUTURE`.
pub async fn latest_summary(
    conn: &mut AsyncPgConnection,
    clock: &dyn Clock,
    day: NaiveDate,
) -> Result<Option<ReconSummary>, FinanceError> {
    check_day_started("day", day, clock.now())?;
    let row: Option<SummaryRow> = diesel::sql_query(
        "SELECT summary FROM finance_recon_runs WHERE day = $1 ORDER BY started_at DESC, id DESC LIMIT 1",
    )
    .bind::<Date, _>(day)
    .get_result(conn)
    .await
    .map(Some)
    .or_else(|e| match e {
        diesel::result::Error::NotFound => Ok(None),
        e => Err(e),
    })?;
    row.map(|r| serde_json::from_value(r.summary).map_err(|e| FinanceError::Internal(e.into())))
        .transpose()
}

/// One reconciliation result.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize)]
pub struct ReconItem {
    /// The status.
    #[diesel(sql_type = Text)]
    pub status: String,
    /// The Stripe balance transaction, when there is one.
    #[diesel(sql_type = Nullable<Text>)]
    pub stripe_id: Option<String>,
    /// Its type.
    #[diesel(sql_type = Nullable<Text>)]
    pub stripe_type: Option<String>,
    /// The ledger transaction, when there is one.
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub ledger_transaction_id: Option<Uuid>,
    /// Its kind.
    #[diesel(sql_type = Nullable<Text>)]
    pub ledger_kind: Option<String>,
    /// The currency.
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Stripe's gross amount.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub stripe_amount: Option<i64>,
    /// The ledger's gross (clearing + fees).
    #[diesel(sql_type = Nullable<BigInt>)]
    pub ledger_amount: Option<i64>,
    /// Stripe's fee.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub stripe_fee: Option<i64>,
    /// The ledger's fees.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub ledger_fee: Option<i64>,
    /// What differs.
    #[diesel(sql_type = Nullable<Text>)]
    pub detail: Option<String>,
}

/// The items of a run, optionally of one status, in a stable order (`limit` at most 10 000).
pub async fn run_items(
    conn: &mut AsyncPgConnection,
    run_id: Uuid,
    day: NaiveDate,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<ReconItem>, FinanceError> {
    Ok(diesel::sql_query(
        "SELECT status, stripe_id, stripe_type, ledger_transaction_id, ledger_kind, currency, \
                stripe_amount, ledger_amount, stripe_fee, ledger_fee, detail \
           FROM finance_recon_items \
          WHERE run_id = $1 AND day = $2 AND ($3::text IS NULL OR status = $3) \
          ORDER BY status, stripe_id NULLS LAST, ledger_transaction_id LIMIT $4",
    )
    .bind::<SqlUuid, _>(run_id)
    .bind::<Date, _>(day)
    .bind::<Nullable<Text>, _>(status)
    .bind::<BigInt, _>(limit.clamp(1, 10_000))
    .load(conn)
    .await?)
}
