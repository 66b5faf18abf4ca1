//! An account's history, a page at a time, for Relay connections.
//!
//! Keyset pagination on (created_at, transaction id): a cursor is the position of the last entry
//! seen, and the next page starts strictly after it, so pages never repeat or skip entries that
//! were there when the first page was read, however many are added meanwhile. Each posting carries
//! its transaction's `created_at`, so a page is one range scan of the postings' account index.
//!
//! One account appears at most once in a transaction, so an account's entries and the
//! transactions that touched it are the same list.

use crate::accounts::{AccountRef, find_account};
use crate::error::LedgerError;
use crate::ids::TransactionId;
use crate::schema::{ledger_postings, ledger_transactions};
use crate::transactions::{LedgerTransaction, TransactionRow};
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::Money;
use std::fmt;
use std::str::FromStr;

/// Largest page.
pub const MAX_PAGE_SIZE: u32 = 200;

/// The order entries come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum PageOrder {
    /// Oldest first (statements, exports).
    OldestFirst,
    /// Newest first (the app's wallet history).
    #[default]
    NewestFirst,
}

/// The position of one entry in an account's history. Its text form (`<micros>_<uuid hex>`) is
/// stable and may be wrapped into an opaque API cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EntryCursor {
    /// The transaction's booking time.
    pub created_at: DateTime<Utc>,
    /// The transaction.
    pub transaction_id: TransactionId,
}

impl fmt::Display for EntryCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}",
            self.created_at.timestamp_micros(),
            self.transaction_id.uuid().simple()
        )
    }
}

impl FromStr for EntryCursor {
    type Err = LedgerError;

    /// Errors: `INVALID_CURSOR`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (micros, id) = s.split_once('_').ok_or(LedgerError::InvalidCursor)?;
        let micros: i64 = micros.parse().map_err(|_| LedgerError::InvalidCursor)?;
        let created_at =
            DateTime::from_timestamp_micros(micros).ok_or(LedgerError::InvalidCursor)?;
        if id.len() != 32 {
            return Err(LedgerError::InvalidCursor);
        }
        let uuid = uuid::Uuid::try_parse(id).map_err(|_| LedgerError::InvalidCursor)?;
        Ok(EntryCursor {
            created_at,
            transaction_id: TransactionId(uuid),
        })
    }
}

/// Which page to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Start after this entry; `None` for the first page.
    pub after: Option<EntryCursor>,
    /// How many entries, 1 to [`MAX_PAGE_SIZE`].
    pub first: u32,
    /// In which order.
    pub order: PageOrder,
}

impl Page {
    /// The first `first` entries, newest first.
    pub fn newest(first: u32) -> Self {
        Self {
            after: None,
            first,
            order: PageOrder::NewestFirst,
        }
    }

    /// The first `first` entries, oldest first.
    pub fn oldest(first: u32) -> Self {
        Self {
            after: None,
            first,
            order: PageOrder::OldestFirst,
        }
    }

    /// The same page size and order, after `cursor`.
    pub fn after(self, cursor: Option<EntryCursor>) -> Self {
        Self {
            after: cursor,
            ..self
        }
    }
}

/// One transaction as seen from one account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountEntry {
    /// The transaction.
    pub transaction: LedgerTransaction,
    /// The amount it posted to this account, debit positive (a wallet top-up is negative here:
    /// present wallets with [`crate::NormalBalance::present`]).
    pub amount: Money,
    /// This entry's position, for the next page.
    pub cursor: EntryCursor,
}

/// A page of an account's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryPage {
    /// The entries, in the order asked for.
    pub entries: Vec<AccountEntry>,
    /// Whether more entries follow the last one.
    pub has_next_page: bool,
}

impl EntryPage {
    /// The cursor of the last entry, to ask for the next page.
    pub fn end_cursor(&self) -> Option<EntryCursor> {
        self.entries.last().map(|e| e.cursor)
    }
}

/// The transactions that touched `account`, a page at a time (an account never used has none).
///
/// Errors: `INVALID_PAGE_SIZE` (`first`), `INVALID_OWNER`.
pub async fn transactions_for_account(
    conn: &mut AsyncPgConnection,
    account: &AccountRef,
    page: Page,
) -> Result<EntryPage, LedgerError> {
    if page.first == 0 || page.first > MAX_PAGE_SIZE {
        return Err(LedgerError::InvalidPageSize);
    }
    let Some(found) = find_account(conn, account).await? else {
        return Ok(EntryPage {
            entries: Vec::new(),
            has_next_page: false,
        });
    };
    let mut query = ledger_postings::table
        .inner_join(ledger_transactions::table)
        .filter(ledger_postings::account_id.eq(found.id))
        .select((ledger_postings::amount, TransactionRow::as_select()))
        .limit(i64::from(page.first) + 1)
        .into_boxed();
    if let Some(after) = page.after {
        // A row comparison, so that PostgreSQL turns it into one index range.
        let op = match page.order {
            PageOrder::OldestFirst => ">",
            PageOrder::NewestFirst => "<",
        };
        query = query.filter(
            sql::<Bool>("(ledger_postings.created_at, ledger_postings.transaction_id) ")
                .sql(op)
                .sql(" (")
                .bind::<Timestamptz, _>(after.created_at)
                .sql(", ")
                .bind::<diesel::sql_types::Uuid, _>(after.transaction_id.uuid())
                .sql(")"),
        );
    }
    query = match page.order {
        PageOrder::OldestFirst => query.order((
            ledger_postings::created_at.asc(),
            ledger_postings::transaction_id.asc(),
        )),
        PageOrder::NewestFirst => query.order((
            ledger_postings::created_at.desc(),
            ledger_postings::transaction_id.desc(),
        )),
    };
    let mut rows: Vec<(i64, TransactionRow)> = query.load(conn).await?;
    let has_next_page = rows.len() > usize::try_from(page.first).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(page.first).unwrap_or(usize::MAX));
    let currency = account.currency();
    let entries = rows
        .into_iter()
        .map(|(amount, row)| {
            let transaction = LedgerTransaction::try_from(row)?;
            Ok(AccountEntry {
                cursor: EntryCursor {
                    created_at: transaction.created_at,
                    transaction_id: transaction.id,
                },
                amount: Money {
                    minor: amount,
                    currency,
                },
                transaction,
            })
        })
        .collect::<Result<Vec<_>, LedgerError>>()?;
    Ok(EntryPage {
        entries,
        has_next_page,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_through_text_and_refuse_junk() {
        let cursor = EntryCursor {
            created_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap(),
            transaction_id: TransactionId::new(),
        };
        let text = cursor.to_string();
        assert_eq!(text.parse::<EntryCursor>().unwrap(), cursor);
        for junk in [
            "",
            "x",
            "12_",
            "abc_0190f4b2c3d47e8f9a0b1c2d3e4f5a6b",
            "12_0190f4b2c3d47e8f9a0b1c2d3e4f5a6",
            "12_0190f4b2-c3d4-7e8f-9a0b-1c2d3e4f",
        ] {
            assert!(junk.parse::<EntryCursor>().is_err(), "{junk:?}");
        }
    }
}
