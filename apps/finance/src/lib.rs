//! Finance: the Stripe side of our money brought in and matched against the ledger, and the
//! reports finance and the underwriter read.
//!
//! - [`import`]: Stripe balance transactions and payouts for a period, stored once by Stripe id,
//!   resumable after a crash;
//! - [`fees`]: Stripe's fees on card payments, booked in the ledger once Stripe reports them;
//! - [`reconcile`]: one UTC day's Stripe transactions matched to ledger transactions by the
//!   shared key, with a result per item and an exceptions queue for people;
//! - [`rollups`]: the ledger summed per day, account and transaction kind, so reports stay fast
//!   at tens of millions of postings;
//! - [`reports`]: reconciliation summary, trial balance, IPT payable, the premium bordereau;
//!
//! Invariants across the crate:
//! - money is integer minor units with a currency; sums are `bigint`/`numeric` in SQL, never floats;
//! - finance writes only its own tables (`finance_*`); it reads the ledger (and, for bordereau
//!   lines, cover sessions, drivers and vehicles) with set-based SQL, because row-at-a-time calls
//!   through other apps cannot reconcile 100k transactions in seconds;
//! - periods are UTC days and months; a period that has not begun is refused (`PERIOD_IN_FUTURE`),
//!   an empty one gives an empty report.

pub mod error;
pub mod exports;
pub mod fees;
pub mod import;
pub mod period;
pub mod schema;

pub use error::FinanceError;
pub use import::{ImportOutcome, StripeReader, import_balance_transactions, import_payouts};
pub use period::Month;
pub mod csv;
pub mod exceptions;
pub mod reconcile;
pub mod reports;
pub mod rollups;

pub use reconcile::{ReconSummary, reconcile_day};
pub mod bench;
pub mod generate;
pub mod jobs;
pub mod statements;
