//! A full check of the ledger, for finance and for the test suite.
//!
//! The database already refuses to commit an unbalanced transaction, so a clean report is the
//! normal case. The check exists for what the triggers cannot see: rows loaded while triggers
//! were switched off (a restore with `session_replication_role = replica`, a manual repair), and
//! reversals that together undo more than their original. It scans every posting: run it from
//! reports and jobs, never on a request path.
//!
//! No balance is stored anywhere (see [`crate::balances`]), so there is no cached balance that
//! could disagree with the postings.

use crate::accounts::parse_currency;
use crate::error::LedgerError;
use crate::ids::TransactionId;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::Currency;

/// Most problems of each kind listed in one report (counts stay exact).
pub const MAX_LISTED: i64 = 1000;

/// A transaction that breaks the double-entry rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnbalancedTransaction {
    /// The transaction.
    pub id: TransactionId,
    /// Its currency.
    pub currency: Currency,
    /// How many postings it has (fewer than two is a fault).
    pub postings: i64,
    /// The sum of its postings (anything but zero is a fault).
    pub sum_minor: i128,
    /// Postings in another currency than the transaction's, or on an account that is missing or
    /// of another currency.
    pub foreign_currency_postings: i64,
    /// Postings whose copy of the booking time differs from the transaction's.
    pub mismatched_times: i64,
}

/// What [`check_integrity`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct IntegrityReport {
    /// Transactions examined.
    pub transactions_checked: i64,
    /// Postings examined.
    pub postings_checked: i64,
    /// Transactions whose postings do not balance, are fewer than two, or mix currencies
    /// (at most [`MAX_LISTED`], oldest first).
    pub unbalanced: Vec<UnbalancedTransaction>,
    /// Postings whose transaction does not exist.
    pub orphan_postings: i64,
    /// Originals whose reversals, on some account, go past the original amount or in the wrong
    /// direction (at most [`MAX_LISTED`]).
    pub over_reversed: Vec<TransactionId>,
    /// Currencies whose postings, all together, do not sum to zero, with the sum.
    pub nonzero_currency_totals: Vec<(Currency, i128)>,
}

impl IntegrityReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.unbalanced.is_empty()
            && self.orphan_postings == 0
            && self.over_reversed.is_empty()
            && self.nonzero_currency_totals.is_empty()
    }
}

#[derive(diesel::QueryableByName)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    transactions: i64,
    #[diesel(sql_type = BigInt)]
    postings: i64,
    #[diesel(sql_type = BigInt)]
    orphans: i64,
}

#[derive(diesel::QueryableByName)]
struct UnbalancedRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: TransactionId,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    postings: i64,
    #[diesel(sql_type = Text)]
    sum_minor: String,
    #[diesel(sql_type = BigInt)]
    foreign_currency: i64,
    #[diesel(sql_type = BigInt)]
    mismatched_times: i64,
}

#[derive(diesel::QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: TransactionId,
}

#[derive(diesel::QueryableByName)]
struct CurrencyTotal {
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Text)]
    total: String,
}

fn parse_sum(text: &str) -> Result<i128, LedgerError> {
    text.parse()
        .map_err(|_| LedgerError::Internal(anyhow::anyhow!("sum {text:?} out of range")))
}

#[derive(diesel::QueryableByName)]
struct WalletRow {
    #[diesel(sql_type = Text)]
    owner: String,
    #[diesel(sql_type = Text)]
    currency: String,
}

/// Every driver wallet account, as (owner, currency), in owner order: for checks that walk all
/// wallets (finance, the test suite). Never on a request path.
pub async fn wallet_accounts(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<(String, Currency)>, LedgerError> {
    let rows: Vec<WalletRow> = diesel::sql_query(
        "SELECT owner_id AS owner, currency FROM ledger_accounts \
         WHERE kind = 'driver_wallet' AND owner_id IS NOT NULL ORDER BY owner_id, currency",
    )
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|r| Ok((r.owner, parse_currency(&r.currency)?)))
        .collect()
}

/// Checks every transaction and posting (see the module doc).
pub async fn check_integrity(conn: &mut AsyncPgConnection) -> Result<IntegrityReport, LedgerError> {
    let counts: Counts = diesel::sql_query(
        "SELECT (SELECT count(*) FROM ledger_transactions) AS transactions, \
                (SELECT count(*) FROM ledger_postings) AS postings, \
                (SELECT count(*) FROM ledger_postings p WHERE NOT EXISTS \
                    (SELECT 1 FROM ledger_transactions t WHERE t.id = p.transaction_id)) AS orphans",
    )
    .get_result(conn)
    .await?;

    // Sums are numeric in PostgreSQL and read as text, so a broken ledger cannot overflow them.
    let unbalanced: Vec<UnbalancedRow> = diesel::sql_query(
        "SELECT t.id, t.currency, \
                count(p.transaction_id) AS postings, \
                coalesce(sum(p.amount), 0)::text AS sum_minor, \
                count(p.transaction_id) FILTER \
                    (WHERE p.currency <> t.currency OR a.currency IS DISTINCT FROM t.currency) \
                    AS foreign_currency, \
                count(p.transaction_id) FILTER (WHERE p.created_at <> t.created_at) \
                    AS mismatched_times \
         FROM ledger_transactions t \
         LEFT JOIN ledger_postings p ON p.transaction_id = t.id \
         LEFT JOIN ledger_accounts a ON a.id = p.account_id \
         GROUP BY t.id \
         HAVING count(p.transaction_id) < 2 \
             OR coalesce(sum(p.amount), 0) <> 0 \
             OR count(p.transaction_id) FILTER \
                    (WHERE p.currency <> t.currency OR a.currency IS DISTINCT FROM t.currency) > 0 \
             OR count(p.transaction_id) FILTER (WHERE p.created_at <> t.created_at) > 0 \
         ORDER BY min(t.created_at), t.id \
         LIMIT $1",
    )
    .bind::<BigInt, _>(MAX_LISTED)
    .load(conn)
    .await?;

    // Per original and account: what the reversals took back (net of the undoings of those
    // reversals) must point the other way and not exceed what was posted.
    let over_reversed: Vec<IdRow> = diesel::sql_query(
        "WITH reversing AS ( \
             SELECT r.id, r.reverses_id AS original FROM ledger_transactions r \
             WHERE r.reverses_id IS NOT NULL \
             UNION ALL \
             SELECT u.id, r.reverses_id FROM ledger_transactions u \
             JOIN ledger_transactions r ON u.reverses_id = r.id \
             WHERE r.reverses_id IS NOT NULL), \
         reversed AS ( \
             SELECT rv.original, p.account_id, sum(p.amount) AS amount \
             FROM reversing rv JOIN ledger_postings p ON p.transaction_id = rv.id \
             GROUP BY rv.original, p.account_id) \
         SELECT DISTINCT rv.original AS id \
         FROM reversed rv \
         LEFT JOIN ledger_postings o \
                ON o.transaction_id = rv.original AND o.account_id = rv.account_id \
         WHERE rv.amount <> 0 AND (o.amount IS NULL \
                OR sign(rv.amount) = sign(o.amount) \
                OR abs(rv.amount) > abs(o.amount)) \
         ORDER BY 1 \
         LIMIT $1",
    )
    .bind::<BigInt, _>(MAX_LISTED)
    .load(conn)
    .await?;

    let totals: Vec<CurrencyTotal> = diesel::sql_query(
        "SELECT currency, sum(amount)::text AS total FROM ledger_postings \
         GROUP BY currency HAVING sum(amount) <> 0 ORDER BY currency",
    )
    .load(conn)
    .await?;

    let report = IntegrityReport {
        transactions_checked: counts.transactions,
        postings_checked: counts.postings,
        unbalanced: unbalanced
            .into_iter()
            .map(|r| {
                Ok(UnbalancedTransaction {
                    id: r.id,
                    currency: parse_currency(&r.currency)?,
                    postings: r.postings,
                    sum_minor: parse_sum(&r.sum_minor)?,
                    foreign_currency_postings: r.foreign_currency,
                    mismatched_times: r.mismatched_times,
                })
            })
            .collect::<Result<_, LedgerError>>()?,
        orphan_postings: counts.orphans,
        over_reversed: over_reversed.into_iter().map(|r| r.id).collect(),
        nonzero_currency_totals: totals
            .into_iter()
            .map(|t| Ok((parse_currency(&t.currency)?, parse_sum(&t.total)?)))
            .collect::<Result<_, LedgerError>>()?,
    };
    if !report.is_clean() {
        tracing::error!(
            unbalanced = report.unbalanced.len(),
            orphan_postings = report.orphan_postings,
            over_reversed = report.over_reversed.len(),
            "ledger integrity check found problems"
        );
    }
    Ok(report)
}
