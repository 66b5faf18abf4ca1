//! Importing Stripe balance transactions and payouts for a period.
//!
//! An import run lists one kind of Stripe object created in `[start, end)`, a page of up to 100
//! at a time (Stripe's list API: `created[gte|lt]`, `limit`, `starting_after`), through
//! async-stripe. Each page is stored in one database transaction together with the run's cursor
//! (the last id of the page), so:
//! - a crash or a failed page leaves the run with the cursor of the last stored page; the next
//!   import of the same object and period resumes after it instead of starting over;
//! - rows are keyed by their Stripe id (insert-or-ignore), so a page fetched twice — a resumed
//!   run, a re-import of a period — stores nothing twice.
//!
//! Balance transactions are listed with their source expanded (and the source's PaymentIntent),
//! so the shared key with our ledger is stored on the row at import time:
//! - a charge: `top_up_id` from the charge's metadata, else from its PaymentIntent's metadata →
//!   the ledger's `top_up` transaction caused by that top-up;
//! - a refund: `refund_id` from the refund's metadata → the ledger's `reversal` caused by it;
//! - a payout: the payout id → the ledger's `payout` transaction with cause `stripe_payout`;
//! - a Stripe fee: the balance transaction id → a `fee` transaction with cause `stripe_fee`.
//!
//! Types this code does not know are stored as sent with `known_type = false`, and reconciliation
//! puts them in front of people; they are never dropped.

use crate::error::FinanceError;
use crate::schema::{
    finance_import_runs, finance_stripe_balance_transactions, finance_stripe_payouts,
};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared::Clock;
use shared::settings::StripeSettings;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use stripe::{Client, ClientBuilder, StripeError};
use stripe_core::balance_transaction::ListBalanceTransaction;
use stripe_core::payout::ListPayout;
use stripe_core::{BalanceTransaction, BalanceTransactionSource, Payout};
use stripe_types::{Expandable, RangeBoundsTs, RangeQueryTs};
use uuid::Uuid;

/// Items per page asked of Stripe (its maximum).
pub const PAGE_SIZE: i64 = 100;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Balance-transaction types reconciliation knows how to match.
pub const KNOWN_TYPES: [&str; 10] = [
    "charge",
    "payment",
    "refund",
    "payment_refund",
    "refund_failure",
    "payout",
    "payout_cancel",
    "payout_failure",
    "stripe_fee",
    "adjustment",
];

/// Reads Stripe for finance: a client on the configured base URL.
#[derive(Clone)]
pub struct StripeReader {
    client: Client,
}

impl std::fmt::Debug for StripeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeReader").finish_non_exhaustive()
    }
}

impl StripeReader {
    /// A client for `settings.base_url` with `settings.secret_key`.
    pub fn new(settings: &StripeSettings) -> anyhow::Result<Self> {
        // A no-op when `main` installed the provider already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::new(settings.secret_key.expose())
            .url(settings.base_url.trim_end_matches('/').to_owned() + "/")
            .timeout(REQUEST_TIMEOUT)
            .app_info("shiftcover", Some(env!("CARGO_PKG_VERSION").into()), None)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the Stripe client: {e}"))?;
        Ok(Self { client })
    }
}

fn stripe_error(e: StripeError) -> FinanceError {
    FinanceError::Stripe(e.to_string())
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The run (a resumed run keeps its id).
    pub run_id: Uuid,
    /// Whether an unfinished run of the same object and period was resumed.
    pub resumed: bool,
    /// Pages fetched by this call.
    pub pages: i32,
    /// Items Stripe sent in those pages.
    pub fetched: i64,
    /// Items stored for the first time (the rest were already there).
    pub inserted: i64,
}

/// The Stripe object an import lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportObject {
    /// `/v1/balance_transactions`.
    BalanceTransaction,
    /// `/v1/payouts`.
    Payout,
}

impl ImportObject {
    fn as_str(self) -> &'static str {
        match self {
            ImportObject::BalanceTransaction => "balance_transaction",
            ImportObject::Payout => "payout",
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = finance_import_runs)]
struct RunRow {
    id: Uuid,
    cursor: Option<String>,
}

/// Finds the unfinished run of this object and period, or starts one.
async fn open_run(
    conn: &mut AsyncPgConnection,
    object: ImportObject,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(RunRow, bool), FinanceError> {
    let existing: Option<RunRow> = finance_import_runs::table
        .filter(finance_import_runs::object.eq(object.as_str()))
        .filter(finance_import_runs::period_start.eq(start))
        .filter(finance_import_runs::period_end.eq(end))
        .filter(finance_import_runs::status.ne("completed"))
        .order(finance_import_runs::started_at.desc())
        .select(RunRow::as_select())
        .first(conn)
        .await
        .optional()?;
    if let Some(run) = existing {
        diesel::update(finance_import_runs::table.find(run.id))
            .set((
                finance_import_runs::status.eq("running"),
                finance_import_runs::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        return Ok((run, true));
    }
    let id = Uuid::now_v7();
    diesel::insert_into(finance_import_runs::table)
        .values((
            finance_import_runs::id.eq(id),
            finance_import_runs::object.eq(object.as_str()),
            finance_import_runs::period_start.eq(start),
            finance_import_runs::period_end.eq(end),
            finance_import_runs::status.eq("running"),
            finance_import_runs::started_at.eq(now),
            finance_import_runs::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok((RunRow { id, cursor: None }, false))
}

async fn fail_run(conn: &mut AsyncPgConnection, run: Uuid, now: DateTime<Utc>, error: &str) {
    let message: String = error.chars().take(1000).collect();
    let result = diesel::update(finance_import_runs::table.find(run))
        .set((
            finance_import_runs::status.eq("failed"),
            finance_import_runs::last_error.eq(if message.is_empty() {
                None
            } else {
                Some(message)
            }),
            finance_import_runs::updated_at.eq(now),
        ))
        .execute(conn)
        .await;
    if let Err(e) = result {
        tracing::warn!(%run, "could not mark the import run failed: {e}");
    }
}

fn check_period(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), FinanceError> {
    if end <= start {
        return Err(FinanceError::InvalidPeriod {
            field: "end",
            reason: "the end must be after the start".into(),
        });
    }
    if start > now {
        return Err(FinanceError::PeriodInFuture("start"));
    }
    Ok(())
}

fn range(start: DateTime<Utc>, end: DateTime<Utc>) -> RangeQueryTs {
    RangeQueryTs::Bounds(RangeBoundsTs {
        gt: None,
        gte: Some(start.timestamp()),
        lt: Some(end.timestamp()),
        lte: None,
    })
}

fn ts(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

/// The months a set of instants fall in (first days), for making partitions.
fn months_of(times: impl Iterator<Item = DateTime<Utc>>) -> BTreeSet<NaiveDate> {
    times
        .filter_map(|t| NaiveDate::from_ymd_opt(t.year(), t.month(), 1))
        .collect()
}

/// Makes the month partitions of a partitioned finance table exist.
pub(crate) async fn ensure_partitions(
    conn: &mut AsyncPgConnection,
    table: &str,
    months: &BTreeSet<NaiveDate>,
) -> Result<(), FinanceError> {
    for month in months {
        diesel::sql_query("SELECT finance_ensure_month_partition($1::regclass, $2)")
            .bind::<diesel::sql_types::Text, _>(table)
            .bind::<diesel::sql_types::Date, _>(*month)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// A balance transaction as stored.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = finance_stripe_balance_transactions)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewBalanceTransaction {
    pub id: String,
    pub created: DateTime<Utc>,
    pub type_: String,
    pub known_type: bool,
    pub amount: i64,
    pub fee: i64,
    pub net: i64,
    pub currency: String,
    pub status: String,
    pub reporting_category: String,
    pub available_on: DateTime<Utc>,
    pub source_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub match_kind: Option<String>,
    pub match_cause_type: Option<String>,
    pub match_cause_id: Option<String>,
    pub description: Option<String>,
    pub raw: serde_json::Value,
    pub import_run_id: Uuid,
    pub imported_at: DateTime<Utc>,
}

fn our_id(metadata: Option<&HashMap<String, String>>, key: &str) -> Option<String> {
    metadata
        .and_then(|m| m.get(key))
        .filter(|v| !v.is_empty() && v.len() <= 255)
        .cloned()
}

/// The row of one Stripe balance transaction, with the ledger key worked out from its source.
pub fn balance_transaction_row(
    txn: &BalanceTransaction,
    run: Uuid,
    now: DateTime<Utc>,
) -> NewBalanceTransaction {
    let type_ = txn.type_.as_str().to_owned();
    let source = txn.source.as_ref();
    let source_id = source.map(|s| s.id().to_string());
    let mut payment_intent_id = None;
    let mut key: Option<(&str, &str, String)> = None;
    match source.and_then(Expandable::as_object) {
        Some(BalanceTransactionSource::Charge(charge)) => {
            let pi = charge.payment_intent.as_ref();
            payment_intent_id = pi.map(|p| p.id().to_string());
            let top_up = our_id(Some(&charge.metadata), "top_up_id").or_else(|| {
                pi.and_then(Expandable::as_object)
                    .and_then(|p| our_id(Some(&p.metadata), "top_up_id"))
            });
            key = top_up.map(|id| ("top_up", "top_up", id));
        }
        Some(BalanceTransactionSource::Refund(refund)) => {
            payment_intent_id = refund.payment_intent.as_ref().map(|p| p.id().to_string());
            // A refund that failed after it succeeded comes back as its own balance
            // transaction; payments undoes the refund's reversal, caused by the refund.
            let cause = if type_ == "refund_failure" {
                "refund_failure"
            } else {
                "refund"
            };
            key = our_id(refund.metadata.as_ref(), "refund_id").map(|id| ("reversal", cause, id));
        }
        _ => {}
    }
    if key.is_none() {
        key = match type_.as_str() {
            "payout" | "payout_cancel" | "payout_failure" => {
                source_id.clone().map(|id| ("payout", "stripe_payout", id))
            }
            "stripe_fee" => Some(("fee", "stripe_fee", txn.id.to_string())),
            // A dispute's withdrawal or reinstatement: payments books each balance transaction
            // as a `chargeback` caused by its id.
            "adjustment"
                if matches!(
                    txn.reporting_category.as_str(),
                    "dispute" | "dispute_reversal"
                ) =>
            {
                Some((
                    "chargeback",
                    "stripe_balance_transaction",
                    txn.id.to_string(),
                ))
            }
            _ => None,
        };
    }
    let currency = txn.currency.to_string().to_ascii_uppercase();
    let raw = serde_json::json!({
        "id": txn.id.as_str(),
        "type": type_,
        "amount": txn.amount,
        "fee": txn.fee,
        "net": txn.net,
        "currency": currency,
        "created": txn.created,
        "source": source_id,
        "payment_intent": payment_intent_id,
        "reporting_category": txn.reporting_category,
        "fee_details": txn.fee_details.iter().map(|f| serde_json::json!({
            "amount": f.amount, "type": f.type_, "description": f.description,
        })).collect::<Vec<_>>(),
    });
    NewBalanceTransaction {
        id: txn.id.to_string(),
        created: ts(txn.created),
        known_type: KNOWN_TYPES.contains(&type_.as_str()),
        type_,
        amount: txn.amount,
        fee: txn.fee,
        net: txn.net,
        currency,
        status: txn.status.clone(),
        reporting_category: txn.reporting_category.clone(),
        available_on: ts(txn.available_on),
        source_id,
        payment_intent_id,
        match_kind: key.as_ref().map(|k| k.0.to_owned()),
        match_cause_type: key.as_ref().map(|k| k.1.to_owned()),
        match_cause_id: key.map(|k| k.2),
        description: txn.description.clone(),
        raw,
        import_run_id: run,
        imported_at: now,
    }
}

/// One page of rows to store.
enum PageRows {
    BalanceTransactions(Vec<NewBalanceTransaction>),
    Payouts(Vec<NewPayout>),
}

/// Stores one page and advances the run's cursor, in one transaction. Returns rows inserted.
async fn store_page(
    conn: &mut AsyncPgConnection,
    run: Uuid,
    rows: PageRows,
    last_id: Option<String>,
    now: DateTime<Utc>,
) -> Result<i64, FinanceError> {
    conn.transaction::<_, FinanceError, _>(async move |conn| {
        let (n, inserted) = match rows {
            PageRows::BalanceTransactions(rows) => {
                let months = months_of(rows.iter().map(|r| r.created));
                ensure_partitions(conn, "finance_stripe_balance_transactions", &months).await?;
                let inserted = diesel::insert_into(finance_stripe_balance_transactions::table)
                    .values(&rows)
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                (rows.len(), inserted)
            }
            PageRows::Payouts(rows) => {
                let inserted = diesel::insert_into(finance_stripe_payouts::table)
                    .values(&rows)
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                (rows.len(), inserted)
            }
        };
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        diesel::update(finance_import_runs::table.find(run))
            .set((
                finance_import_runs::cursor.eq(last_id),
                finance_import_runs::pages.eq(finance_import_runs::pages + 1),
                finance_import_runs::items.eq(finance_import_runs::items + n),
                finance_import_runs::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        Ok(i64::try_from(inserted).unwrap_or(i64::MAX))
    })
    .await
}

async fn complete_run(
    conn: &mut AsyncPgConnection,
    run: Uuid,
    now: DateTime<Utc>,
) -> Result<(), FinanceError> {
    diesel::update(finance_import_runs::table.find(run))
        .set((
            finance_import_runs::status.eq("completed"),
            finance_import_runs::finished_at.eq(Some(now)),
            finance_import_runs::last_error.eq(None::<String>),
            finance_import_runs::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Imports the Stripe balance transactions created in `[start, end)`, resuming an unfinished run
/// of the same period. A page that fails leaves the run `failed` with its cursor and returns the
/// error; calling again resumes.
///
/// Errors: `INVALID_PERIOD`, `PERIOD_IN_FUTURE`; Stripe and storage failures (retryable).
pub async fn import_balance_transactions(
    conn: &mut AsyncPgConnection,
    stripe: &StripeReader,
    clock: &dyn Clock,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<ImportOutcome, FinanceError> {
    check_period(start, end, clock.now())?;
    let (run, resumed) = open_run(
        conn,
        ImportObject::BalanceTransaction,
        start,
        end,
        clock.now(),
    )
    .await?;
    let mut outcome = ImportOutcome {
        run_id: run.id,
        resumed,
        pages: 0,
        fetched: 0,
        inserted: 0,
    };
    let mut cursor = run.cursor;
    loop {
        let mut req = ListBalanceTransaction::new()
            .created(range(start, end))
            .limit(PAGE_SIZE)
            .expand(vec![
                "data.source".to_owned(),
                "data.source.payment_intent".to_owned(),
            ]);
        if let Some(c) = &cursor {
            req = req.starting_after(c.clone());
        }
        let page = match req.send(&stripe.client).await {
            Ok(page) => page,
            Err(e) => {
                let e = stripe_error(e);
                fail_run(conn, run.id, clock.now(), &e.to_string()).await;
                return Err(e);
            }
        };
        let now = clock.now();
        let last_id = page
            .data
            .last()
            .map(|t| t.id.to_string())
            .or(cursor.clone());
        let rows: Vec<NewBalanceTransaction> = page
            .data
            .iter()
            .map(|t| balance_transaction_row(t, run.id, now))
            .collect();
        outcome.pages += 1;
        outcome.fetched += i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let stored = store_page(
            conn,
            run.id,
            PageRows::BalanceTransactions(rows),
            last_id.clone(),
            now,
        )
        .await;
        match stored {
            Ok(n) => outcome.inserted += n,
            Err(e) => {
                fail_run(conn, run.id, clock.now(), &e.to_string()).await;
                return Err(e);
            }
        }
        cursor = last_id;
        if !page.has_more || page.data.is_empty() {
            break;
        }
    }
    complete_run(conn, run.id, clock.now()).await?;
    Ok(outcome)
}

/// A payout as stored.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = finance_stripe_payouts)]
#[diesel(treat_none_as_default_value = false)]
struct NewPayout {
    id: String,
    created: DateTime<Utc>,
    amount: i64,
    currency: String,
    status: String,
    arrival_date: DateTime<Utc>,
    balance_transaction_id: Option<String>,
    raw: serde_json::Value,
    import_run_id: Uuid,
    imported_at: DateTime<Utc>,
}

fn payout_row(p: &Payout, run: Uuid, now: DateTime<Utc>) -> NewPayout {
    let currency = p.currency.to_string().to_ascii_uppercase();
    let bt = p.balance_transaction.as_ref().map(|b| b.id().to_string());
    NewPayout {
        id: p.id.to_string(),
        created: ts(p.created),
        amount: p.amount,
        currency: currency.clone(),
        status: p.status.clone(),
        arrival_date: ts(p.arrival_date),
        raw: serde_json::json!({
            "id": p.id.as_str(), "amount": p.amount, "currency": currency,
            "status": p.status, "created": p.created, "arrival_date": p.arrival_date,
            "balance_transaction": bt, "automatic": p.automatic, "method": p.method,
        }),
        balance_transaction_id: bt,
        import_run_id: run,
        imported_at: now,
    }
}

/// Imports the Stripe payouts created in `[start, end)`, as [`import_balance_transactions`]
/// does for balance transactions (resumable, idempotent by payout id).
pub async fn import_payouts(
    conn: &mut AsyncPgConnection,
    stripe: &StripeReader,
    clock: &dyn Clock,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<ImportOutcome, FinanceError> {
    check_period(start, end, clock.now())?;
    let (run, resumed) = open_run(conn, ImportObject::Payout, start, end, clock.now()).await?;
    let mut outcome = ImportOutcome {
        run_id: run.id,
        resumed,
        pages: 0,
        fetched: 0,
        inserted: 0,
    };
    let mut cursor = run.cursor;
    loop {
        let mut req = ListPayout::new()
            .created(range(start, end))
            .limit(PAGE_SIZE);
        if let Some(c) = &cursor {
            req = req.starting_after(c.clone());
        }
        let page = match req.send(&stripe.client).await {
            Ok(page) => page,
            Err(e) => {
                let e = stripe_error(e);
                fail_run(conn, run.id, clock.now(), &e.to_string()).await;
                return Err(e);
            }
        };
        let now = clock.now();
        let last_id = page
            .data
            .last()
            .map(|p| p.id.to_string())
            .or(cursor.clone());
        let rows: Vec<NewPayout> = page
            .data
            .iter()
            .map(|p| payout_row(p, run.id, now))
            .collect();
        outcome.pages += 1;
        outcome.fetched += i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let stored = store_page(conn, run.id, PageRows::Payouts(rows), last_id.clone(), now).await;
        match stored {
            Ok(n) => outcome.inserted += n,
            Err(e) => {
                fail_run(conn, run.id, clock.now(), &e.to_string()).await;
                return Err(e);
            }
        }
        cursor = last_id;
        if !page.has_more || page.data.is_empty() {
            break;
        }
    }
    complete_run(conn, run.id, clock.now()).await?;
    Ok(outcome)
}
