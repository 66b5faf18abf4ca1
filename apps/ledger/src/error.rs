//! Errors of the ledger.
//!
//! Most ledger errors are programming errors of the calling app (an unbalanced set of lines is a
//! bug in the caller, not something a driver can fix), but each still carries a stable code so that
//! callers can test for it and ops tools can show it. [`LedgerError::AlreadyPosted`] is not a
//! failure for an idempotent caller: it names the transaction the same cause posted before.
//! Storage and other internal failures map to `None` in [`LedgerError::user_error`] and must be
//! reported as internal errors, never shown.

use crate::ids::TransactionId;
use shared::{Currency, FieldError, Money};

/// Why a ledger call failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A transaction with no lines. `EMPTY`, field `lines`.
    #[error("a ledger transaction needs lines")]
    Empty,
    /// The lines do not sum to zero (or the parts given to a builder do not add up to the total).
    /// `UNBALANCED`, field `lines`.
    #[error("lines do not balance: they sum to {sum}")]
    Unbalanced {
        /// The sum of the lines, debit positive.
        sum: i128,
    },
    /// A line of zero. `ZERO_AMOUNT`, field `lines`.
    #[error("a line has a zero amount")]
    ZeroAmount,
    /// A line larger than [`crate::MAX_LINE_MINOR`] in absolute value. `AMOUNT_OUT_OF_RANGE`,
    /// field `lines`.
    #[error("a line amount is out of range")]
    AmountOutOfRange,
    /// A negative or otherwise impossible amount given to a builder. `INVALID_AMOUNT`, with the
    /// name of the argument as the field.
    #[error("invalid amount: {0}")]
    InvalidAmount(&'static str),
    /// An account or amount in another currency than the transaction's. `CURRENCY_MISMATCH`,
    /// field `currency`.
    #[error("currency mismatch: expected {expected}, found {found}")]
    CurrencyMismatch {
        /// The transaction's currency.
        expected: Currency,
        /// The currency found on a line.
        found: Currency,
    },
    /// The same account on two lines of one transaction. `DUPLICATE_ACCOUNT`, field `lines`.
    #[error("an account appears on more than one line")]
    DuplicateAccount,
    /// A wallet owner id that is empty, too long or has spaces or control characters.
    /// `INVALID_OWNER`, field `owner`.
    #[error("invalid account owner id")]
    InvalidOwner,
    /// A cause type that is not `snake_case` (at most 40 characters), or an empty or over-long
    /// cause id. `INVALID_CAUSE`, field `cause`.
    #[error("invalid cause: {0}")]
    InvalidCause(&'static str),
    /// An empty or over-long description. `INVALID_DESCRIPTION`, field `description`.
    #[error("invalid description")]
    InvalidDescription,
    /// A transaction kind that [`crate::post`] does not write (`reversal`: use
    /// [`crate::reverse`]). `INVALID_KIND`, field `kind`.
    #[error("kind {0} cannot be posted directly")]
    InvalidKind(crate::transactions::TransactionKind),
    /// Metadata that is not a JSON object. `INVALID_METADATA`, field `metadata`.
    #[error("metadata must be a JSON object")]
    InvalidMetadata,
    /// The cause was posted before, as this transaction. `ALREADY_POSTED`.
    #[error("already posted as {0}")]
    AlreadyPosted(TransactionId),
    /// No such transaction. `NOT_FOUND`, field `transactionId`.
    #[error("ledger transaction not found")]
    NotFound,
    /// A reversal portion that is zero, negative, more than the whole, or rounds to nothing.
    /// `INVALID_PORTION`, field `portion`.
    #[error("invalid reversal portion: {0}")]
    InvalidPortion(&'static str),
    /// The transaction is a reversal itself; post an adjustment instead. `NOT_REVERSIBLE`,
    /// field `transactionId`.
    #[error("a reversal cannot be reversed")]
    NotReversible,
    /// [`crate::undo_reversal`] of a transaction that is not a reversal. `NOT_A_REVERSAL`,
    /// field `transactionId`.
    #[error("the transaction is not a reversal")]
    NotAReversal,
    /// Earlier reversals have already undone the whole transaction. `ALREADY_REVERSED`,
    /// field `transactionId`.
    #[error("transaction already fully reversed")]
    AlreadyReversed,
    /// The reversal asked for more than is left to reverse. `REVERSAL_EXCEEDS_REMAINING`,
    /// field `portion`.
    #[error("reversal of {requested} exceeds the {remaining} left to reverse")]
    ReversalExceedsRemaining {
        /// The gross amount asked for.
        requested: Money,
        /// The gross amount still reversible.
        remaining: Money,
    },
    /// A page size outside `1..=`[`crate::MAX_PAGE_SIZE`]. `INVALID_PAGE_SIZE`, field `first`.
    #[error("invalid page size")]
    InvalidPageSize,
    /// A cursor that does not parse. `INVALID_CURSOR`, field `after`.
    #[error("invalid cursor")]
    InvalidCursor,
    /// The database failed. Internal.
    #[error("database error")]
    Database(#[from] diesel::result::Error),
    /// Something else failed (a stored value the code does not know). Internal.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl LedgerError {
    /// The stable code of the error, or `None` for internal failures.
    pub fn code(&self) -> Option<&'static str> {
        self.user_error().map(|e| e.code)
    }

    /// The transaction a repeated cause posted before, for idempotent callers.
    pub fn already_posted(&self) -> Option<TransactionId> {
        match self {
            LedgerError::AlreadyPosted(id) => Some(*id),
            _ => None,
        }
    }

    /// The error as a caller should see it, or `None` for internal failures.
    pub fn user_error(&self) -> Option<FieldError> {
        use LedgerError::*;
        let (field, code, message): (Option<&str>, &'static str, String) = match self {
            Empty => (
                Some("lines"),
                "EMPTY",
                "A ledger transaction needs lines.".into(),
            ),
            Unbalanced { sum } => (
                Some("lines"),
                "UNBALANCED",
                format!("Debits and credits must be equal; they differ by {sum}."),
            ),
            ZeroAmount => (
                Some("lines"),
                "ZERO_AMOUNT",
                "Every line needs a non-zero amount.".into(),
            ),
            AmountOutOfRange => (
                Some("lines"),
                "AMOUNT_OUT_OF_RANGE",
                "A line amount is too large.".into(),
            ),
            InvalidAmount(what) => (
                Some(*what),
                "INVALID_AMOUNT",
                format!("The {what} amount is not valid."),
            ),
            CurrencyMismatch { expected, found } => (
                Some("currency"),
                "CURRENCY_MISMATCH",
                format!("Expected amounts in {expected}, found {found}."),
            ),
            DuplicateAccount => (
                Some("lines"),
                "DUPLICATE_ACCOUNT",
                "Each account may appear on one line only.".into(),
            ),
            InvalidOwner => (
                Some("owner"),
                "INVALID_OWNER",
                "The account owner id is not valid.".into(),
            ),
            InvalidCause(why) => (
                Some("cause"),
                "INVALID_CAUSE",
                format!("The cause is not valid: {why}."),
            ),
            InvalidDescription => (
                Some("description"),
                "INVALID_DESCRIPTION",
                format!(
                    "Give a description of 1 to {} characters.",
                    crate::transactions::MAX_DESCRIPTION_CHARS
                ),
            ),
            InvalidKind(kind) => (
                Some("kind"),
                "INVALID_KIND",
                format!("A {kind} transaction cannot be posted directly."),
            ),
            InvalidMetadata => (
                Some("metadata"),
                "INVALID_METADATA",
                "Metadata must be a JSON object.".into(),
            ),
            AlreadyPosted(id) => (
                None,
                "ALREADY_POSTED",
                format!("This was already posted as {id}."),
            ),
            NotFound => (Some("transactionId"), "NOT_FOUND", "Not found.".into()),
            InvalidPortion(why) => (
                Some("portion"),
                "INVALID_PORTION",
                format!("The amount to reverse is not valid: {why}."),
            ),
            NotReversible => (
                Some("transactionId"),
                "NOT_REVERSIBLE",
                "A reversal cannot be reversed; post an adjustment instead.".into(),
            ),
            NotAReversal => (
                Some("transactionId"),
                "NOT_A_REVERSAL",
                "Only a reversal can be undone.".into(),
            ),
            AlreadyReversed => (
                Some("transactionId"),
                "ALREADY_REVERSED",
                "This transaction has already been reversed in full.".into(),
            ),
            ReversalExceedsRemaining {
                requested,
                remaining,
            } => (
                Some("portion"),
                "REVERSAL_EXCEEDS_REMAINING",
                format!("Only {remaining} is left to reverse; {requested} was asked for."),
            ),
            InvalidPageSize => (
                Some("first"),
                "INVALID_PAGE_SIZE",
                format!("Ask for 1 to {} items.", crate::history::MAX_PAGE_SIZE),
            ),
            InvalidCursor => (
                Some("after"),
                "INVALID_CURSOR",
                "The cursor is not valid.".into(),
            ),
            Database(_) | Internal(_) => return None,
        };
        Some(FieldError {
            field: field.map(str::to_owned),
            code,
            message,
        })
    }
}
