//! A driver's money, a page at a time, for the app's wallet screen and for ops: the wallet's
//! ledger entries ([`wallet_history`]) and the driver's top-ups ([`list_top_ups_page`]).
//!
//! Both are keyset-paginated: a cursor is the position of the last item seen (its time and id,
//! as `<micros>_<uuid hex>`), and the next page starts strictly after it, newest first, so pages
//! never repeat or skip items that existed when the first page was read, however many are added
//! meanwhile. Cursors are opaque to clients; a malformed one is `INVALID_CURSOR`.

use crate::error::PaymentsError;
use crate::ids::TopUpId;
use crate::schema::top_ups;
use crate::top_ups::{TopUp, TopUpRow, WALLET_CURRENCY};
use accounts::DriverId;
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use ledger::{AccountRef, EntryCursor, Page, TransactionId, TransactionKind};
use serde::Serialize;
use shared::Money;

/// Largest page.
pub const MAX_PAGE: u32 = 100;

fn check_first(first: u32) -> Result<u32, PaymentsError> {
    if first == 0 || first > MAX_PAGE {
        return Err(PaymentsError::InvalidPageSize);
    }
    Ok(first)
}

/// What a wallet entry was, as the driver understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletEntryKind {
    /// Money paid in from a card.
    TopUp,
    /// A cover session paid for.
    SessionCharge,
    /// Money given back (to the card, or a session's price back to the wallet).
    Refund,
    /// Money the card's bank took back for a disputed top-up (a chargeback), or gave back when
    /// the dispute was won.
    Chargeback,
    /// Any other correction.
    Adjustment,
}

/// One ledger transaction that moved money in or out of a driver's wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalletEntry {
    /// The ledger transaction.
    pub transaction_id: TransactionId,
    /// What it was.
    pub kind: WalletEntryKind,
    /// From the driver's side: positive adds to the wallet, negative takes from it.
    pub amount: Money,
    /// What caused it: `top_up`, `cover_session`, `refund`, …
    pub cause_type: String,
    /// The causing row's id (`top_…`, `cs_…`, `rfd_…`).
    pub cause_id: String,
    /// For people, e.g. "Card top-up".
    pub description: String,
    /// When it was booked.
    pub at: DateTime<Utc>,
    /// Its position, for the next page.
    pub cursor: String,
}

/// A page of wallet entries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalletPage {
    /// The entries.
    pub entries: Vec<WalletEntry>,
    /// Whether more follow the last one.
    pub has_next_page: bool,
}

fn entry_kind(kind: TransactionKind, cause_type: &str) -> WalletEntryKind {
    match kind {
        TransactionKind::TopUp => WalletEntryKind::TopUp,
        TransactionKind::SessionCharge => WalletEntryKind::SessionCharge,
        TransactionKind::Refund => WalletEntryKind::Refund,
        TransactionKind::Reversal if cause_type == "refund" => WalletEntryKind::Refund,
        TransactionKind::Chargeback => WalletEntryKind::Chargeback,
        _ => WalletEntryKind::Adjustment,
    }
}

/// The ledger transactions on the driver's wallet, newest first, `first` (1 to [`MAX_PAGE`])
/// after the cursor `after`.
///
/// Errors: `INVALID_CURSOR` (`after`), `INVALID_PAGE_SIZE` (`first`).
pub async fn wallet_history(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    after: Option<&str>,
    first: u32,
) -> Result<WalletPage, PaymentsError> {
    let first = check_first(first)?;
    let after = after
        .map(|a| a.parse::<EntryCursor>())
        .transpose()
        .map_err(|_| PaymentsError::InvalidCursor)?;
    let account = AccountRef::driver_wallet(driver_id.to_string(), WALLET_CURRENCY);
    let page =
        ledger::transactions_for_account(conn, &account, Page::newest(first).after(after)).await?;
    let normal = ledger::AccountKind::DriverWallet.normal_balance();
    Ok(WalletPage {
        has_next_page: page.has_next_page,
        entries: page
            .entries
            .into_iter()
            .map(|e| WalletEntry {
                transaction_id: e.transaction.id,
                kind: entry_kind(e.transaction.kind, &e.transaction.cause.cause_type),
                amount: Money {
                    minor: normal.present(e.amount.minor),
                    currency: e.amount.currency,
                },
                cause_type: e.transaction.cause.cause_type,
                cause_id: e.transaction.cause.cause_id,
                description: e.transaction.description,
                at: e.transaction.created_at,
                cursor: e.cursor.to_string(),
            })
            .collect(),
    })
}

/// The position of a top-up in the driver's list.
fn top_up_cursor(t: &TopUp) -> String {
    format!(
        "{}_{}",
        t.created_at.timestamp_micros(),
        t.id.uuid().simple()
    )
}

fn parse_top_up_cursor(s: &str) -> Result<(DateTime<Utc>, uuid::Uuid), PaymentsError> {
    let (micros, id) = s.split_once('_').ok_or(PaymentsError::InvalidCursor)?;
    let micros: i64 = micros.parse().map_err(|_| PaymentsError::InvalidCursor)?;
    let at = DateTime::from_timestamp_micros(micros).ok_or(PaymentsError::InvalidCursor)?;
    if id.len() != 32 {
        return Err(PaymentsError::InvalidCursor);
    }
    let id = uuid::Uuid::try_parse(id).map_err(|_| PaymentsError::InvalidCursor)?;
    Ok((at, id))
}

/// A page of top-ups, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopUpPage {
    /// The top-ups, each with its cursor.
    pub top_ups: Vec<(TopUp, String)>,
    /// Whether more follow the last one.
    pub has_next_page: bool,
}

/// The driver's top-ups, newest first, `first` (1 to [`MAX_PAGE`]) after the cursor `after`.
///
/// Errors: `INVALID_CURSOR` (`after`), `INVALID_PAGE_SIZE` (`first`).
pub async fn list_top_ups_page(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    after: Option<&str>,
    first: u32,
) -> Result<TopUpPage, PaymentsError> {
    let first = check_first(first)?;
    let mut query = top_ups::table
        .filter(top_ups::driver_id.eq(driver_id))
        .order((top_ups::created_at.desc(), top_ups::id.desc()))
        .limit(i64::from(first) + 1)
        .select(TopUpRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        let (at, id) = parse_top_up_cursor(after)?;
        query = query.filter(
            sql::<Bool>("(top_ups.created_at, top_ups.id) < (")
                .bind::<Timestamptz, _>(at)
                .sql(", ")
                .bind::<diesel::sql_types::Uuid, _>(id)
                .sql(")"),
        );
    }
    let mut rows: Vec<TopUpRow> = query.load(conn).await?;
    let limit = usize::try_from(first).unwrap_or(usize::MAX);
    let has_next_page = rows.len() > limit;
    rows.truncate(limit);
    let top_ups = rows
        .iter()
        .map(|r| {
            let t = r.to_top_up()?;
            let cursor = top_up_cursor(&t);
            Ok((t, cursor))
        })
        .collect::<Result<Vec<_>, PaymentsError>>()?;
    Ok(TopUpPage {
        top_ups,
        has_next_page,
    })
}

/// Top-ups by id, whoever's they are (for loaders; the caller checks who may see them).
pub async fn get_top_ups(
    conn: &mut AsyncPgConnection,
    ids: &[TopUpId],
) -> Result<Vec<TopUp>, PaymentsError> {
    top_ups::table
        .filter(top_ups::id.eq_any(ids))
        .select(TopUpRow::as_select())
        .load(conn)
        .await?
        .iter()
        .map(TopUpRow::to_top_up)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn top_up_cursors_refuse_junk() {
        for junk in ["", "x", "1_", "a_0190f4b2c3d47e8f9a0b1c2d3e4f5a6b", "1_zz"] {
            assert!(parse_top_up_cursor(junk).is_err(), "{junk:?}");
        }
        let (at, id) =
            parse_top_up_cursor("1795000000123456_0190f4b2c3d47e8f9a0b1c2d3e4f5a6b").unwrap();
        assert_eq!(at.timestamp_micros(), 1_795_000_000_123_456);
        assert_eq!(id.simple().to_string(), "0190f4b2c3d47e8f9a0b1c2d3e4f5a6b");
    }

    #[test]
    fn refunds_and_other_reversals_are_told_apart() {
        assert_eq!(
            entry_kind(TransactionKind::Reversal, "refund"),
            WalletEntryKind::Refund
        );
        assert_eq!(
            entry_kind(TransactionKind::Reversal, "correction"),
            WalletEntryKind::Adjustment
        );
        assert_eq!(
            entry_kind(TransactionKind::TopUp, "top_up"),
            WalletEntryKind::TopUp
        );
    }
}
