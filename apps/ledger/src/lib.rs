//! Double-entry ledger: accounts, balanced transactions, balances.
//!
//! Every money movement in ShiftCover — a top-up, a session charge, a refund, a fee, a payout —
//! is one ledger transaction: two or more postings to [`accounts`] that sum to zero.
//!
//! - [`accounts`]: driver wallets (one per owner and currency) and the system accounts (one per
//!   kind and currency), created on first use;
//! - [`transactions`]: [`post`] a balanced transaction, idempotent by (kind, cause);
//! - [`reversal`]: [`reverse`] an earlier transaction in whole or in part, and undo a reversal
//!   once, wholly;
//! - [`balances`] and [`history`]: balances and account histories, derived from postings;
//! - [`builders`]: the lines of a top-up, of a session charge and of a chargeback;
//! - [`integrity`]: [`check_integrity`], the full check finance and the tests run.
//!
//! Invariants across the crate:
//! - amounts are integer minor units; postings are signed **debit positive, credit negative**;
//! - a transaction balances, has at least two postings, one per account, all in its currency:
//!   checked here with coded errors and again by the database at commit (deferred constraint
//!   triggers), so no writer, whatever its language, can store an unbalanced transaction (a caller
//!   must not switch those triggers to `IMMEDIATE`: a header and its postings are separate
//!   statements, checked together at commit);
//! - transactions and postings are append-only (the database refuses updates and deletes);
//!   corrections are new transactions;
//! - balances are never stored, only summed, so they cannot drift from the postings;
//! - service functions take a connection and run in a savepoint inside the caller's transaction
//!   when there is one, so a money movement commits or rolls back with the change that caused it;
//! - this crate depends on no other app (wallet owners are ids as text) and writes only its own
//!   tables: `ledger_accounts`, `ledger_transactions`, `ledger_postings`.

pub mod accounts;
pub mod balances;
pub mod builders;
pub mod error;
pub mod history;
pub mod ids;
pub mod integrity;
pub mod reversal;
pub mod schema;
pub mod transactions;

pub use accounts::{
    Account, AccountKind, AccountRef, NormalBalance, SystemAccount, account_for, find_account,
    get_accounts, lock_account,
};
pub use balances::{balance, balances_by_id, trial_balance, wallet_balance, wallet_balances};
pub use builders::{chargeback_lines, session_charge_lines, stripe_fee_lines, top_up_lines};
pub use error::LedgerError;
pub use history::{
    AccountEntry, EntryCursor, EntryPage, MAX_PAGE_SIZE, Page, PageOrder, transactions_for_account,
};
pub use ids::{AccountId, TransactionId};
pub use integrity::{IntegrityReport, UnbalancedTransaction, check_integrity, wallet_accounts};
pub use reversal::{Portion, reverse, scale_balanced, undo_reversal};
pub use transactions::{
    Cause, LedgerTransaction, Line, MAX_LINE_MINOR, NewTransaction, Posted, Posting,
    TransactionKind, find_by_cause, get_transaction, post, validate_lines,
};
