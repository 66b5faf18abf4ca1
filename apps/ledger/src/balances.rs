//! Balances, derived from postings every time.
//!
//! No balance is stored: an account's balance is the sum of its postings, read through an
//! index that holds the amounts (an index-only scan), so it can never drift from the history.
//! A stored per-account balance would have to be updated in every posting transaction, which
//! turns each busy system account (Stripe clearing, IPT payable) into one row that every payment
//! in the country locks until commit, and risks deadlocks between transactions that touch the same
//! accounts in different orders; it is not worth that until measurements say so.
//!
//! Signs: [`balance`] returns the ledger's own convention, debit minus credit. [`wallet_balance`]
//! presents a wallet from the driver's side: positive is money the driver holds.

use crate::accounts::{AccountKind, AccountRef, parse_currency};
use crate::error::LedgerError;
use crate::ids::AccountId;
use crate::schema::ledger_postings;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::{Currency, Money};
use std::collections::HashMap;

/// The balance of an account, debit minus credit (zero for an account never used).
///
/// Errors: `INVALID_OWNER`.
pub async fn balance(
    conn: &mut AsyncPgConnection,
    account: &AccountRef,
) -> Result<Money, LedgerError> {
    #[derive(QueryableByName)]
    struct Balance {
        #[diesel(sql_type = BigInt)]
        balance: i64,
    }
    account.validate()?;
    let currency = account.currency();
    // Read before every start of cover: the account and its postings in one statement,
    // prepared once per connection.
    let query = match account.owner() {
        Some(owner) => shared::sql::prepared(
            "SELECT coalesce(sum(p.amount), 0)::bigint AS balance
               FROM ledger_accounts a JOIN ledger_postings p ON p.account_id = a.id
              WHERE a.kind = $1 AND a.currency = $2 AND a.owner_id = $3",
        )
        .bind::<Text, _>(account.kind().as_str())
        .bind::<Text, _>(currency.code())
        .bind::<Text, _>(owner),
        None => shared::sql::prepared(
            "SELECT coalesce(sum(p.amount), 0)::bigint AS balance
               FROM ledger_accounts a JOIN ledger_postings p ON p.account_id = a.id
              WHERE a.kind = $1 AND a.currency = $2 AND a.owner_id IS NULL",
        )
        .bind::<Text, _>(account.kind().as_str())
        .bind::<Text, _>(currency.code()),
    };
    let row: Balance = query.get_result(conn).await?;
    Ok(Money {
        minor: row.balance,
        currency,
    })
}

/// What a driver holds in their wallet: the wallet's credit balance, so positive means money
/// ShiftCover owes the driver (spendable on cover) and negative means the driver owes.
///
/// Errors: `INVALID_OWNER`.
pub async fn wallet_balance(
    conn: &mut AsyncPgConnection,
    owner: &str,
    currency: Currency,
) -> Result<Money, LedgerError> {
    let raw = balance(conn, &AccountRef::driver_wallet(owner, currency)).await?;
    Ok(Money {
        minor: AccountKind::DriverWallet
            .normal_balance()
            .present(raw.minor),
        currency,
    })
}

/// [`wallet_balance`] of several owners in one read: one entry per owner asked for (zero for a
/// wallet never used).
///
/// Errors: `INVALID_OWNER` (for any of them).
pub async fn wallet_balances(
    conn: &mut AsyncPgConnection,
    owners: &[String],
    currency: Currency,
) -> Result<HashMap<String, Money>, LedgerError> {
    #[derive(QueryableByName)]
    struct Balance {
        #[diesel(sql_type = Text)]
        owner: String,
        #[diesel(sql_type = BigInt)]
        balance: i64,
    }
    for owner in owners {
        AccountRef::driver_wallet(owner, currency).validate()?;
    }
    let rows: Vec<Balance> = shared::sql::prepared(
        "SELECT a.owner_id AS owner, coalesce(sum(p.amount), 0)::bigint AS balance
           FROM ledger_accounts a JOIN ledger_postings p ON p.account_id = a.id
          WHERE a.kind = $1 AND a.currency = $2 AND a.owner_id = ANY($3)
          GROUP BY a.owner_id",
    )
    .bind::<Text, _>(AccountKind::DriverWallet.as_str())
    .bind::<Text, _>(currency.code())
    .bind::<diesel::sql_types::Array<Text>, _>(owners)
    .load(conn)
    .await?;
    let normal = AccountKind::DriverWallet.normal_balance();
    let mut out: HashMap<String, Money> = owners
        .iter()
        .map(|o| (o.clone(), Money { minor: 0, currency }))
        .collect();
    for row in rows {
        out.insert(
            row.owner,
            Money {
                minor: normal.present(row.balance),
                currency,
            },
        );
    }
    Ok(out)
}

/// Debit-minus-credit balances of several accounts by id, for loaders; accounts without postings
/// are absent from the map.
pub async fn balances_by_id(
    conn: &mut AsyncPgConnection,
    accounts: &[AccountId],
) -> Result<HashMap<AccountId, i64>, LedgerError> {
    let rows: Vec<(AccountId, i64)> = ledger_postings::table
        .filter(ledger_postings::account_id.eq_any(accounts))
        .group_by(ledger_postings::account_id)
        .select((
            ledger_postings::account_id,
            sql::<BigInt>("coalesce(sum(amount), 0)::bigint"),
        ))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

#[derive(QueryableByName)]
struct KindTotal {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    total: i64,
}

/// A trial balance: the debit-minus-credit total of every account kind in one currency (all
/// driver wallets together), in [`AccountKind::ALL`] order, kinds never used included as zero.
/// The totals sum to zero. Scans every posting of the currency: for finance reports, not requests.
pub async fn trial_balance(
    conn: &mut AsyncPgConnection,
    currency: Currency,
) -> Result<Vec<(AccountKind, Money)>, LedgerError> {
    let rows: Vec<KindTotal> = diesel::sql_query(
        "SELECT a.kind, a.currency, coalesce(sum(p.amount), 0)::bigint AS total \
         FROM ledger_accounts a JOIN ledger_postings p ON p.account_id = a.id \
         WHERE a.currency = $1 GROUP BY a.kind, a.currency",
    )
    .bind::<Text, _>(currency.code())
    .load(conn)
    .await?;
    let mut totals: HashMap<AccountKind, i64> = HashMap::new();
    for row in rows {
        let kind: AccountKind = row
            .kind
            .parse()
            .map_err(|e| LedgerError::Internal(anyhow::anyhow!("{e}")))?;
        if parse_currency(&row.currency)? == currency {
            totals.insert(kind, row.total);
        }
    }
    Ok(AccountKind::ALL
        .into_iter()
        .map(|kind| {
            (
                kind,
                Money {
                    minor: totals.get(&kind).copied().unwrap_or(0),
                    currency,
                },
            )
        })
        .collect())
}
