//! Whole-database checks of the wallets, for finance and for the test suite's closing check
//! (`shiftcover ledger check`). They read every wallet and every top-up: never on a request path.
//!
//! What they assert, beyond the ledger's own [`ledger::check_integrity`]:
//! - each wallet's balance (what the app shows) equals the sum of the entries its history lists
//!   (what the driver's statement adds up to), read page by page as the API reads them;
//! - each succeeded top-up credited its wallet exactly once, by its amount: one ledger top-up
//!   transaction caused by it, the one the top-up row names; and no top-up that has not succeeded
//!   has one;
//! - each succeeded refund is booked by the reversal it names, and no pending or failed refund is,
//!   except a refund that failed after it succeeded, whose booking is undone by the undoing it
//!   names;
//! - each chargeback's withdrawal and reinstatement name chargeback transactions that exist.

use crate::error::PaymentsError;
use crate::ids::{RefundId, TopUpId};
use crate::schema::{refunds, top_ups};
use crate::top_ups::WALLET_CURRENCY;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use ledger::{AccountRef, Cause, Page, TransactionKind};
use serde::Serialize;

/// What [`check_wallets`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WalletReport {
    /// Wallets examined.
    pub wallets_checked: usize,
    /// Top-ups examined.
    pub top_ups_checked: usize,
    /// Refunds examined.
    pub refunds_checked: usize,
    /// Chargebacks examined.
    pub chargebacks_checked: usize,
    /// Each problem, in words (empty when all is well).
    pub problems: Vec<String>,
}

impl WalletReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every wallet, top-up and refund (see the module doc).
pub async fn check_wallets(conn: &mut AsyncPgConnection) -> Result<WalletReport, PaymentsError> {
    let mut report = WalletReport::default();
    for (owner, currency) in ledger::wallet_accounts(conn).await? {
        report.wallets_checked += 1;
        let account = AccountRef::driver_wallet(owner.clone(), currency);
        let balance = ledger::wallet_balance(conn, &owner, currency).await?;
        let normal = ledger::AccountKind::DriverWallet.normal_balance();
        let mut listed: i64 = 0;
        let mut page = Page::oldest(ledger::MAX_PAGE_SIZE);
        loop {
            let entries = ledger::transactions_for_account(conn, &account, page).await?;
            listed += entries
                .entries
                .iter()
                .map(|e| normal.present(e.amount.minor))
                .sum::<i64>();
            if !entries.has_next_page {
                break;
            }
            page = page.after(entries.end_cursor());
        }
        if listed != balance.minor {
            report.problems.push(format!(
                "wallet of {owner} ({currency}): balance {} but its entries sum to {listed}",
                balance.minor
            ));
        }
    }

    let rows: Vec<(TopUpId, String, i64, String, Option<uuid::Uuid>)> = top_ups::table
        .order(top_ups::id.asc())
        .select((
            top_ups::id,
            top_ups::status,
            top_ups::amount_minor,
            top_ups::currency,
            top_ups::ledger_transaction_id,
        ))
        .load(conn)
        .await?;
    for (id, status, amount, currency, booked) in rows {
        report.top_ups_checked += 1;
        let posted = ledger::find_by_cause(
            conn,
            TransactionKind::TopUp,
            &Cause::new("top_up", id.to_string()),
        )
        .await?;
        match (status.as_str(), posted) {
            ("succeeded", None) => report.problems.push(format!(
                "top-up {id} succeeded but never credited its wallet"
            )),
            ("succeeded", Some(p)) => {
                if booked != Some(p.id().uuid()) {
                    report.problems.push(format!(
                        "top-up {id} names ledger transaction {booked:?}, but {} credited it",
                        p.id()
                    ));
                }
                let credited: i64 = p
                    .postings
                    .iter()
                    .filter(|x| matches!(x.account, AccountRef::DriverWallet { .. }))
                    .map(|x| -x.amount.minor)
                    .sum();
                if credited != amount || currency != WALLET_CURRENCY.code() {
                    report.problems.push(format!(
                        "top-up {id} of {amount} {currency} credited its wallet {credited}"
                    ));
                }
            }
            (other, Some(p)) => report.problems.push(format!(
                "top-up {id} is {other} but ledger transaction {} credited it",
                p.id()
            )),
            (_, None) => {}
        }
    }

    let rows: Vec<(RefundId, String, Option<uuid::Uuid>, Option<uuid::Uuid>)> = refunds::table
        .order(refunds::id.asc())
        .select((
            refunds::id,
            refunds::status,
            refunds::ledger_transaction_id,
            refunds::undone_transaction_id,
        ))
        .load(conn)
        .await?;
    for (id, status, booked, undone) in rows {
        report.refunds_checked += 1;
        let posted = ledger::find_by_cause(
            conn,
            TransactionKind::Reversal,
            &Cause::new("refund", id.to_string()),
        )
        .await?;
        let undoing = ledger::find_by_cause(
            conn,
            TransactionKind::Reversal,
            &Cause::new("refund_failure", id.to_string()),
        )
        .await?;
        match (status.as_str(), posted, undoing) {
            ("succeeded", Some(p), None) if booked == Some(p.id().uuid()) => {}
            ("succeeded", p, u) => report.problems.push(format!(
                "refund {id} succeeded but is booked by {:?} (not {booked:?}) and undone by {:?}",
                p.map(|p| p.id()),
                u.map(|u| u.id())
            )),
            // Failed after it succeeded: its booking is undone by the undoing it names.
            ("failed", Some(p), Some(u))
                if booked == Some(p.id().uuid())
                    && undone == Some(u.id().uuid())
                    && u.transaction.reverses == Some(p.id()) => {}
            (other, Some(p), u) => report.problems.push(format!(
                "refund {id} is {other} but reversal {} booked it (undone by {:?})",
                p.id(),
                u.map(|u| u.id())
            )),
            (other, None, Some(u)) => report.problems.push(format!(
                "refund {id} is {other} and was never booked, but {} undoes it",
                u.id()
            )),
            (_, None, None) => {}
        }
    }

    let chargebacks: Vec<(
        crate::ids::ChargebackId,
        Option<uuid::Uuid>,
        Option<uuid::Uuid>,
    )> = crate::schema::chargebacks::table
        .order(crate::schema::chargebacks::id.asc())
        .select((
            crate::schema::chargebacks::id,
            crate::schema::chargebacks::withdrawn_transaction_id,
            crate::schema::chargebacks::reinstated_transaction_id,
        ))
        .load(conn)
        .await?;
    for (id, withdrawn, reinstated) in chargebacks {
        report.chargebacks_checked += 1;
        for named in [withdrawn, reinstated].into_iter().flatten() {
            match ledger::get_transaction(conn, ledger::TransactionId(named)).await {
                Ok(p) if p.transaction.kind == TransactionKind::Chargeback => {}
                Ok(p) => report.problems.push(format!(
                    "chargeback {id} names {} of kind {}",
                    p.id(),
                    p.transaction.kind
                )),
                Err(ledger::LedgerError::NotFound) => report.problems.push(format!(
                    "chargeback {id} names ledger transaction {named}, which does not exist"
                )),
                Err(e) => return Err(e.into()),
            }
        }
    }
    if !report.is_clean() {
        tracing::error!(
            problems = report.problems.len(),
            "wallet check found problems"
        );
    }
    Ok(report)
}
