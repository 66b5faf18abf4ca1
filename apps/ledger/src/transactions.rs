//! Posting balanced transactions.
//!
//! A ledger transaction is one money movement: a header (kind, cause, currency, description,
//! metadata) and two or more postings, one per account, signed **debit positive, credit
//! negative**, summing to zero. [`post`] checks all of that in code and the database checks it
//! again when the surrounding database transaction commits (see the migration), so an unbalanced
//! transaction can never be stored, whoever writes it.
//!
//! Idempotency: a transaction is unique per (kind, cause type, cause id). Posting a cause again
//! writes nothing and answers [`LedgerError::AlreadyPosted`] with the id of the first posting, so a
//! retried job or webhook can call [`post`] again safely and treat that error as success.

use crate::accounts::{Account, AccountRef, AccountRow, parse_currency};
use crate::error::LedgerError;
use crate::ids::{AccountId, TransactionId};
use crate::schema::{ledger_accounts, ledger_postings, ledger_transactions};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::on_constraint;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::{Currency, Money};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Longest cause id, in characters.
pub const MAX_CAUSE_ID_CHARS: usize = 100;
/// Longest cause type, in characters.
pub const MAX_CAUSE_TYPE_CHARS: usize = 40;
/// Largest absolute line amount in minor units (ten trillion pounds): far from `i64` overflow in
/// sums and negations, and checked by the database too.
pub const MAX_LINE_MINOR: i64 = 1_000_000_000_000_000;

/// What kind of movement a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    /// A driver paid money into their wallet (see [`crate::top_up_lines`]).
    TopUp,
    /// A cover session was paid for from the wallet (see [`crate::session_charge_lines`]).
    SessionCharge,
    /// Money going back to a driver's card.
    Refund,
    /// A correction by finance or ops that is not a reversal of one transaction.
    Adjustment,
    /// The whole or partial undoing of an earlier transaction (see [`crate::reverse`]).
    Reversal,
    /// A processor fee learned after the payment it belongs to.
    Fee,
    /// Money leaving the ledger's custody: a Stripe payout to the bank, a settlement with the
    /// insurer or HMRC.
    Payout,
    /// Money the card network took back for a disputed payment (a chargeback), with Stripe's
    /// fee, or returned when the dispute was won (see [`crate::chargeback_lines`]).
    Chargeback,
}

impl TransactionKind {
    /// Every kind.
    pub const ALL: [TransactionKind; 8] = [
        TransactionKind::TopUp,
        TransactionKind::SessionCharge,
        TransactionKind::Refund,
        TransactionKind::Adjustment,
        TransactionKind::Reversal,
        TransactionKind::Fee,
        TransactionKind::Payout,
        TransactionKind::Chargeback,
    ];

    /// The stored name, e.g. `session_charge`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionKind::TopUp => "top_up",
            TransactionKind::SessionCharge => "session_charge",
            TransactionKind::Refund => "refund",
            TransactionKind::Adjustment => "adjustment",
            TransactionKind::Reversal => "reversal",
            TransactionKind::Fee => "fee",
            TransactionKind::Payout => "payout",
            TransactionKind::Chargeback => "chargeback",
        }
    }
}

impl fmt::Display for TransactionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored kind name that is not a [`TransactionKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transaction kind {0:?}")]
pub struct UnknownTransactionKind(pub String);

impl FromStr for TransactionKind {
    type Err = UnknownTransactionKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TransactionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownTransactionKind(s.to_owned()))
    }
}

/// What caused a transaction: the row in another app whose money movement this is, e.g.
/// (`top_up`, `top_…`) or (`cover_session`, `ses_…`). Together with the kind it is the
/// transaction's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cause {
    /// `snake_case`, at most [`MAX_CAUSE_TYPE_CHARS`] characters.
    pub cause_type: String,
    /// The causing row's id as text, 1 to [`MAX_CAUSE_ID_CHARS`] characters.
    pub cause_id: String,
}

impl Cause {
    /// A cause.
    pub fn new(cause_type: impl Into<String>, cause_id: impl Into<String>) -> Self {
        Self {
            cause_type: cause_type.into(),
            cause_id: cause_id.into(),
        }
    }

    /// Checks both parts. Errors: `INVALID_CAUSE`.
    pub fn validate(&self) -> Result<(), LedgerError> {
        let t = self.cause_type.as_bytes();
        let type_ok = matches!(t.first(), Some(b'a'..=b'z'))
            && t.len() <= MAX_CAUSE_TYPE_CHARS
            && t.iter()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
        if !type_ok {
            return Err(LedgerError::InvalidCause(
                "the type must be snake_case, at most 40 characters",
            ));
        }
        let id_chars = self.cause_id.chars().count();
        if id_chars == 0
            || id_chars > MAX_CAUSE_ID_CHARS
            || self.cause_id.chars().any(char::is_control)
        {
            return Err(LedgerError::InvalidCause(
                "the id must be 1 to 100 printable characters",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.cause_type, self.cause_id)
    }
}

/// One line of a transaction: an account and a signed amount in minor units, debit positive,
/// credit negative.
pub type Line = (AccountRef, i64);

/// A transaction to post.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransaction {
    /// What kind of movement it is. Use [`crate::reverse`] for reversals.
    pub kind: TransactionKind,
    /// What caused it; with `kind`, its idempotency key.
    pub cause: Cause,
    /// The currency of every line and account.
    pub currency: Currency,
    /// A sentence for finance and ops, 1 to [`MAX_DESCRIPTION_CHARS`] characters. Keep personal
    /// data out of it: the ledger is never erased.
    pub description: String,
    /// The lines: at least two, none zero, one per account, summing to zero.
    pub lines: Vec<Line>,
    /// Anything else worth keeping (Stripe ids, rates): a JSON object, or `Null` for none.
    pub metadata: serde_json::Value,
}

/// A stored transaction header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerTransaction {
    /// The transaction.
    pub id: TransactionId,
    /// Its kind.
    pub kind: TransactionKind,
    /// What caused it.
    pub cause: Cause,
    /// What it was, for people.
    pub description: String,
    /// Its currency.
    pub currency: Currency,
    /// When it was booked (the database's transaction time).
    pub created_at: DateTime<Utc>,
    /// Extra facts (always a JSON object).
    pub metadata: serde_json::Value,
    /// For a reversal, the transaction it reverses.
    pub reverses: Option<TransactionId>,
}

/// One posting of a stored transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Posting {
    /// The account posted to.
    pub account_id: AccountId,
    /// What that account is.
    pub account: AccountRef,
    /// The amount, debit positive, credit negative.
    pub amount: Money,
}

/// A stored transaction with its postings, in line order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Posted {
    /// The header.
    pub transaction: LedgerTransaction,
    /// The postings, in the order the lines were given.
    pub postings: Vec<Posting>,
}

impl Posted {
    /// The transaction's id.
    pub fn id(&self) -> TransactionId {
        self.transaction.id
    }

    /// The amount posted to `account`, if the transaction touches it.
    pub fn amount_for(&self, account: &AccountRef) -> Option<Money> {
        self.postings
            .iter()
            .find(|p| &p.account == account)
            .map(|p| p.amount)
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ledger_transactions)]
pub(crate) struct TransactionRow {
    pub(crate) id: TransactionId,
    pub(crate) kind: String,
    pub(crate) cause_type: String,
    pub(crate) cause_id: String,
    pub(crate) description: String,
    pub(crate) currency: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) metadata: serde_json::Value,
    pub(crate) reverses_id: Option<TransactionId>,
}

impl TryFrom<TransactionRow> for LedgerTransaction {
    type Error = LedgerError;

    fn try_from(r: TransactionRow) -> Result<Self, LedgerError> {
        let kind = r
            .kind
            .parse()
            .map_err(|e| anyhow::anyhow!("transaction {}: {e}", r.id))?;
        Ok(LedgerTransaction {
            id: r.id,
            kind,
            cause: Cause {
                cause_type: r.cause_type,
                cause_id: r.cause_id,
            },
            description: r.description,
            currency: parse_currency(&r.currency)?,
            created_at: r.created_at,
            metadata: r.metadata,
            reverses: r.reverses_id,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = ledger_transactions)]
#[diesel(treat_none_as_default_value = false)]
struct NewTransactionRow<'a> {
    id: TransactionId,
    kind: &'a str,
    cause_type: &'a str,
    cause_id: &'a str,
    description: &'a str,
    currency: &'a str,
    metadata: &'a serde_json::Value,
    reverses_id: Option<TransactionId>,
}

#[derive(Insertable)]
#[diesel(table_name = ledger_postings)]
#[diesel(treat_none_as_default_value = false)]
struct NewPostingRow<'a> {
    transaction_id: TransactionId,
    account_id: AccountId,
    amount: i64,
    currency: &'a str,
    created_at: DateTime<Utc>,
    line_no: i16,
}

/// Checks lines against the rules the database enforces, so a caller gets a coded error instead
/// of a failed commit: lines present, none zero or out of range, all in `currency`, one per
/// account, summing to zero.
///
/// Errors: `EMPTY`, `ZERO_AMOUNT`, `AMOUNT_OUT_OF_RANGE`, `CURRENCY_MISMATCH`, `INVALID_OWNER`,
/// `DUPLICATE_ACCOUNT`, `UNBALANCED`.
pub fn validate_lines(currency: Currency, lines: &[Line]) -> Result<(), LedgerError> {
    if lines.is_empty() {
        return Err(LedgerError::Empty);
    }
    let mut seen = HashSet::with_capacity(lines.len());
    let mut sum: i128 = 0;
    for (account, amount) in lines {
        if *amount == 0 {
            return Err(LedgerError::ZeroAmount);
        }
        if amount.unsigned_abs() > MAX_LINE_MINOR.unsigned_abs() {
            return Err(LedgerError::AmountOutOfRange);
        }
        if account.currency() != currency {
            return Err(LedgerError::CurrencyMismatch {
                expected: currency,
                found: account.currency(),
            });
        }
        account.validate()?;
        if !seen.insert(account) {
            return Err(LedgerError::DuplicateAccount);
        }
        sum += i128::from(*amount);
    }
    if sum != 0 {
        return Err(LedgerError::Unbalanced { sum });
    }
    // A single non-zero line cannot sum to zero, so at least two lines remain here.
    Ok(())
}

fn validate_description(description: &str) -> Result<(), LedgerError> {
    let chars = description.chars().count();
    if description.trim().is_empty()
        || chars > MAX_DESCRIPTION_CHARS
        || description.chars().any(char::is_control)
    {
        return Err(LedgerError::InvalidDescription);
    }
    Ok(())
}

fn normalise_metadata(metadata: &serde_json::Value) -> Result<serde_json::Value, LedgerError> {
    match metadata {
        serde_json::Value::Null => Ok(serde_json::json!({})),
        serde_json::Value::Object(_) => Ok(metadata.clone()),
        _ => Err(LedgerError::InvalidMetadata),
    }
}

/// Posts a balanced transaction and returns it with its postings.
///
/// Runs in its own database transaction, or in a savepoint when the caller already has one (so a
/// money movement can commit together with the domain change and outbox job that cause it).
/// Accounts are created on first use.
///
/// Errors: `ALREADY_POSTED` with the earlier transaction's id when (kind, cause) was posted
/// before (nothing is written); `EMPTY`, `ZERO_AMOUNT`, `AMOUNT_OUT_OF_RANGE`,
/// `CURRENCY_MISMATCH`, `DUPLICATE_ACCOUNT`, `UNBALANCED`, `INVALID_OWNER`, `INVALID_CAUSE`,
/// `INVALID_DESCRIPTION`, `INVALID_METADATA`; `INVALID_KIND` for the `reversal` kind, which
/// only [`crate::reverse`] posts.
pub async fn post(conn: &mut AsyncPgConnection, tx: NewTransaction) -> Result<Posted, LedgerError> {
    if tx.kind == TransactionKind::Reversal {
        return Err(LedgerError::InvalidKind(tx.kind));
    }
    tx.cause.validate()?;
    validate_description(&tx.description)?;
    let metadata = normalise_metadata(&tx.metadata)?;
    validate_lines(tx.currency, &tx.lines)?;
    let header = Header {
        kind: tx.kind,
        cause: &tx.cause,
        currency: tx.currency,
        description: &tx.description,
        metadata: &metadata,
        reverses: None,
    };
    conn.transaction::<_, LedgerError, _>(async |conn| {
        // Claim the cause first, so a repeat writes nothing at all (not even new accounts).
        let row = insert_header(conn, &header).await?;
        // Accounts are resolved (and, on first use, created) in one canonical order, so two
        // transactions creating the same new accounts wait for each other instead of deadlocking.
        let mut order: Vec<usize> = (0..tx.lines.len()).collect();
        order.sort_by_cached_key(|i| tx.lines[*i].0.to_string());
        let mut accounts: Vec<Option<Account>> = vec![None; tx.lines.len()];
        for i in order {
            accounts[i] = Some(crate::accounts::account_for(conn, &tx.lines[i].0).await?);
        }
        let resolved = accounts
            .into_iter()
            .zip(&tx.lines)
            .map(|(account, (_, amount))| {
                account
                    .map(|a| (a, *amount))
                    .ok_or_else(|| LedgerError::Internal(anyhow::anyhow!("unresolved account")))
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        insert_postings(conn, row, &resolved).await
    })
    .await
}

/// The header of a transaction being written.
pub(crate) struct Header<'a> {
    pub(crate) kind: TransactionKind,
    pub(crate) cause: &'a Cause,
    pub(crate) currency: Currency,
    pub(crate) description: &'a str,
    pub(crate) metadata: &'a serde_json::Value,
    pub(crate) reverses: Option<TransactionId>,
}

/// Inserts the header unless its cause was posted before; then answers `ALREADY_POSTED`.
pub(crate) async fn insert_header(
    conn: &mut AsyncPgConnection,
    header: &Header<'_>,
) -> Result<TransactionRow, LedgerError> {
    // ON CONFLICT on the cause constraint: a concurrent poster of the same cause waits for the
    // first to commit or roll back, and never aborts the caller's transaction with an error.
    let inserted = diesel::insert_into(ledger_transactions::table)
        .values(NewTransactionRow {
            id: TransactionId::new(),
            kind: header.kind.as_str(),
            cause_type: &header.cause.cause_type,
            cause_id: &header.cause.cause_id,
            description: header.description,
            currency: header.currency.code(),
            metadata: header.metadata,
            reverses_id: header.reverses,
        })
        .on_conflict(on_constraint("ledger_transactions_cause_unique"))
        .do_nothing()
        .returning(TransactionRow::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    match inserted {
        Some(row) => Ok(row),
        None => {
            let existing = find_id_by_cause(conn, header.kind, header.cause)
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "cause {} conflicted but no transaction has it",
                        header.cause
                    )
                })?;
            Err(LedgerError::AlreadyPosted(existing))
        }
    }
}

/// Inserts the postings of a freshly inserted header and returns the whole transaction.
pub(crate) async fn insert_postings(
    conn: &mut AsyncPgConnection,
    row: TransactionRow,
    lines: &[(Account, i64)],
) -> Result<Posted, LedgerError> {
    let transaction = LedgerTransaction::try_from(row)?;
    let currency = transaction.currency.code();
    let rows = lines
        .iter()
        .enumerate()
        .map(|(i, (account, amount))| {
            Ok(NewPostingRow {
                transaction_id: transaction.id,
                account_id: account.id,
                amount: *amount,
                currency,
                created_at: transaction.created_at,
                line_no: i16::try_from(i).map_err(|_| LedgerError::AmountOutOfRange)?,
            })
        })
        .collect::<Result<Vec<_>, LedgerError>>()?;
    diesel::insert_into(ledger_postings::table)
        .values(&rows)
        .execute(conn)
        .await?;
    let postings = lines
        .iter()
        .map(|(account, amount)| Posting {
            account_id: account.id,
            account: account.account.clone(),
            amount: Money {
                minor: *amount,
                currency: transaction.currency,
            },
        })
        .collect();
    tracing::debug!(
        transaction_id = %transaction.id,
        kind = %transaction.kind,
        cause = %transaction.cause,
        "ledger transaction posted"
    );
    Ok(Posted {
        transaction,
        postings,
    })
}

async fn find_id_by_cause(
    conn: &mut AsyncPgConnection,
    kind: TransactionKind,
    cause: &Cause,
) -> Result<Option<TransactionId>, LedgerError> {
    Ok(ledger_transactions::table
        .filter(ledger_transactions::kind.eq(kind.as_str()))
        .filter(ledger_transactions::cause_type.eq(&cause.cause_type))
        .filter(ledger_transactions::cause_id.eq(&cause.cause_id))
        .select(ledger_transactions::id)
        .first(conn)
        .await
        .optional()?)
}

/// The transaction a (kind, cause) posted, with its postings, if any.
pub async fn find_by_cause(
    conn: &mut AsyncPgConnection,
    kind: TransactionKind,
    cause: &Cause,
) -> Result<Option<Posted>, LedgerError> {
    match find_id_by_cause(conn, kind, cause).await? {
        Some(id) => get_transaction(conn, id).await.map(Some),
        None => Ok(None),
    }
}

/// A transaction with its postings, in line order.
///
/// Errors: `NOT_FOUND` (`transactionId`).
pub async fn get_transaction(
    conn: &mut AsyncPgConnection,
    id: TransactionId,
) -> Result<Posted, LedgerError> {
    let row = ledger_transactions::table
        .find(id)
        .select(TransactionRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(LedgerError::NotFound)?;
    let transaction = LedgerTransaction::try_from(row)?;
    let postings = load_postings(conn, id, transaction.currency).await?;
    Ok(Posted {
        transaction,
        postings,
    })
}

/// The postings of one transaction, in line order.
pub(crate) async fn load_postings(
    conn: &mut AsyncPgConnection,
    id: TransactionId,
    currency: Currency,
) -> Result<Vec<Posting>, LedgerError> {
    let rows: Vec<(i64, AccountRow)> = ledger_postings::table
        .inner_join(ledger_accounts::table)
        .filter(ledger_postings::transaction_id.eq(id))
        .order(ledger_postings::line_no.asc())
        .select((ledger_postings::amount, AccountRow::as_select()))
        .load(conn)
        .await?;
    rows.into_iter()
        .map(|(amount, account)| {
            let account = Account::try_from(account)?;
            Ok(Posting {
                account_id: account.id,
                account: account.account,
                amount: Money {
                    minor: amount,
                    currency,
                },
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::accounts::SystemAccount;

    fn wallet() -> AccountRef {
        AccountRef::driver_wallet("drv_1", Currency::Gbp)
    }

    fn clearing() -> AccountRef {
        AccountRef::system(SystemAccount::StripeClearing, Currency::Gbp)
    }

    fn code(r: Result<(), LedgerError>) -> &'static str {
        r.err().and_then(|e| e.code()).unwrap_or("OK")
    }

    #[test]
    fn lines_are_checked_with_specific_codes() {
        let gbp = Currency::Gbp;
        assert_eq!(code(validate_lines(gbp, &[])), "EMPTY");
        assert_eq!(code(validate_lines(gbp, &[(wallet(), 5)])), "UNBALANCED");
        assert_eq!(
            code(validate_lines(gbp, &[(wallet(), 5), (clearing(), -4)])),
            "UNBALANCED"
        );
        assert_eq!(
            code(validate_lines(gbp, &[(wallet(), 0), (clearing(), 0)])),
            "ZERO_AMOUNT"
        );
        assert_eq!(
            code(validate_lines(
                gbp,
                &[
                    (wallet(), 5),
                    (
                        AccountRef::system(SystemAccount::StripeFees, Currency::Eur),
                        -5
                    )
                ]
            )),
            "CURRENCY_MISMATCH"
        );
        assert_eq!(
            code(validate_lines(
                Currency::Eur,
                &[(wallet(), 5), (clearing(), -5)]
            )),
            "CURRENCY_MISMATCH"
        );
        assert_eq!(
            code(validate_lines(gbp, &[(wallet(), 5), (wallet(), -5)])),
            "DUPLICATE_ACCOUNT"
        );
        assert_eq!(
            code(validate_lines(
                gbp,
                &[(wallet(), i64::MIN), (clearing(), i64::MAX)]
            )),
            "AMOUNT_OUT_OF_RANGE"
        );
        assert_eq!(
            code(validate_lines(
                gbp,
                &[(AccountRef::driver_wallet("", gbp), 5), (clearing(), -5)]
            )),
            "INVALID_OWNER"
        );
        assert_eq!(
            code(validate_lines(gbp, &[(wallet(), -5), (clearing(), 5)])),
            "OK"
        );
    }

    #[test]
    fn causes_descriptions_and_metadata_are_checked() {
        assert!(Cause::new("top_up", "top_1").validate().is_ok());
        for bad in [
            Cause::new("", "x"),
            Cause::new("Top", "x"),
            Cause::new("1top", "x"),
            Cause::new("top-up", "x"),
            Cause::new("t".repeat(41), "x"),
            Cause::new("top_up", ""),
            Cause::new("top_up", "x".repeat(101)),
            Cause::new("top_up", "a\nb"),
        ] {
            assert_eq!(code(bad.validate()), "INVALID_CAUSE", "{bad:?}");
        }
        assert!(validate_description("Top-up").is_ok());
        assert!(validate_description("  ").is_err());
        assert!(validate_description(&"d".repeat(501)).is_err());
        assert_eq!(
            normalise_metadata(&serde_json::Value::Null).unwrap(),
            serde_json::json!({})
        );
        assert!(normalise_metadata(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for k in TransactionKind::ALL {
            assert_eq!(k.as_str().parse::<TransactionKind>().ok(), Some(k));
        }
        assert!("gift".parse::<TransactionKind>().is_err());
    }
}
