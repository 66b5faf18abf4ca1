//! What is promised out of a wallet: holds, and the available balance they leave.
//!
//! A wallet has a **posted** balance (the sum of its ledger postings) and an **available**
//! balance: posted minus its holds. A hold is money the wallet already owes to something that
//! has not been booked yet:
//!
//! - the running session's charge so far (at its locked rate, up to the day cap, priced as
//!   ending it now would be);
//! - ended sessions whose charge has not been taken yet;
//! - refunds to a card that Stripe has not confirmed;
//! - chargebacks under review whose money the bank has not taken yet.
//!
//! Holds are never stored apart from their causes: each is read from the row that causes it
//! (the session, the refund, the chargeback), so a hold is created and released in the same
//! transaction as its cause, by construction. Every spender that could take money the wallet
//! does not have (a top-up refund) first takes the wallet's lock ([`lock_wallet`]), then checks
//! the available balance, so two spenders cannot both take the same money. What turns a hold
//! into a posting (a refund Stripe confirmed, a session charged, a chargeback withdrawn) takes
//! the lock too, so a spender never reads the balance before the posting and the holds after.

use crate::error::PaymentsError;
use crate::schema::refunds;
use crate::top_ups::WALLET_CURRENCY;
use accounts::DriverId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::Money;
use std::collections::HashMap;

/// What a hold is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    /// The charge so far of the session on cover now.
    RunningSession,
    /// An ended session whose charge has not been taken yet.
    UnchargedSession,
    /// A refund to the card that Stripe has not confirmed.
    PendingRefund,
    /// A chargeback under review; the bank has not taken the money yet.
    Chargeback,
}

/// One hold on a wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    /// What it is for.
    pub kind: HoldKind,
    /// The id of its cause (`cs_…`, `rfd_…`, `cbk_…`).
    pub cause_id: String,
    /// How much it holds back.
    pub amount: Money,
}

/// A wallet's balances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalletPosition {
    /// The sum of the wallet's ledger postings (negative when the driver owes).
    pub posted: Money,
    /// The sum of the holds.
    pub held: Money,
    /// What can be spent: posted − held.
    pub available: Money,
    /// The holds, largest first.
    pub holds: Vec<Hold>,
}

impl WalletPosition {
    fn of(posted: Money, mut holds: Vec<Hold>) -> WalletPosition {
        holds.sort_by(|a, b| {
            b.amount
                .minor
                .cmp(&a.amount.minor)
                .then_with(|| a.cause_id.cmp(&b.cause_id))
        });
        let held: i64 = holds.iter().map(|h| h.amount.minor).sum();
        WalletPosition {
            posted,
            held: Money {
                minor: held,
                currency: posted.currency,
            },
            available: Money {
                minor: posted.minor - held,
                currency: posted.currency,
            },
            holds,
        }
    }
}

/// Locks the driver's wallet until the caller's transaction ends. Every spender takes it before
/// reading the available balance.
pub async fn lock_wallet(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<(), PaymentsError> {
    ledger::lock_account(
        conn,
        &ledger::AccountRef::driver_wallet(driver_id.to_string(), WALLET_CURRENCY),
    )
    .await?;
    Ok(())
}

/// The driver's wallet as of `now`: posted, held (with every hold) and available.
pub async fn wallet_position(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    now: DateTime<Utc>,
) -> Result<WalletPosition, PaymentsError> {
    let posted = crate::wallet::wallet_balance(conn, driver_id).await?;
    let mut holds = settled_holds(conn, &[driver_id])
        .await?
        .remove(&driver_id)
        .unwrap_or_default();
    if let Some(hold) = running_session_hold(conn, driver_id, now).await? {
        holds.push(hold);
    }
    Ok(WalletPosition::of(posted, holds))
}

/// The holds of a driver's running session, if they have one.
async fn running_session_hold(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    now: DateTime<Utc>,
) -> Result<Option<Hold>, PaymentsError> {
    let Some(session) = cover::active_session_for_driver(conn, driver_id)
        .await
        .map_err(|e| anyhow::anyhow!("reading the active session: {e}"))?
    else {
        return Ok(None);
    };
    let charge = cover::preview_charge(conn, &session, now)
        .await
        .map_err(|e| anyhow::anyhow!("pricing session {}: {e}", session.id))?;
    Ok((charge.breakdown.total.minor > 0).then(|| Hold {
        kind: HoldKind::RunningSession,
        cause_id: session.id.to_string(),
        amount: charge.breakdown.total,
    }))
}

/// The holds that do not change with time (everything but a running session), per driver, in
/// a few reads whatever the number of drivers.
pub(crate) async fn settled_holds(
    conn: &mut AsyncPgConnection,
    driver_ids: &[DriverId],
) -> Result<HashMap<DriverId, Vec<Hold>>, PaymentsError> {
    let mut out: HashMap<DriverId, Vec<Hold>> = HashMap::new();
    if driver_ids.is_empty() {
        return Ok(out);
    }
    let uncharged = cover::uncharged_sessions(conn, driver_ids)
        .await
        .map_err(|e| anyhow::anyhow!("reading uncharged sessions: {e}"))?;
    for (driver_id, session_id, amount) in uncharged {
        out.entry(driver_id).or_default().push(Hold {
            kind: HoldKind::UnchargedSession,
            cause_id: session_id.to_string(),
            amount,
        });
    }
    let pending: Vec<(crate::ids::RefundId, DriverId, i64, String)> = refunds::table
        .filter(refunds::driver_id.eq_any(driver_ids))
        .filter(refunds::status.eq("pending"))
        .filter(refunds::top_up_id.is_not_null())
        .select((
            refunds::id,
            refunds::driver_id,
            refunds::amount_minor,
            refunds::currency,
        ))
        .load(conn)
        .await?;
    for (id, driver_id, minor, currency) in pending {
        out.entry(driver_id).or_default().push(Hold {
            kind: HoldKind::PendingRefund,
            cause_id: id.to_string(),
            amount: Money {
                minor,
                currency: currency
                    .parse()
                    .map_err(|e| anyhow::anyhow!("refund {id}: {e}"))?,
            },
        });
    }
    for (id, driver_id, amount) in crate::chargebacks::open_chargebacks(conn, driver_ids).await? {
        out.entry(driver_id).or_default().push(Hold {
            kind: HoldKind::Chargeback,
            cause_id: id.to_string(),
            amount,
        });
    }
    Ok(out)
}

/// The available balance of several drivers without their running sessions (posted minus the
/// holds that do not change with time), in a few reads.
pub(crate) async fn settled_available(
    conn: &mut AsyncPgConnection,
    driver_ids: &[DriverId],
) -> Result<HashMap<DriverId, Money>, PaymentsError> {
    let owners: Vec<String> = driver_ids.iter().map(DriverId::to_string).collect();
    let balances = ledger::wallet_balances(conn, &owners, WALLET_CURRENCY).await?;
    let mut holds = settled_holds(conn, driver_ids).await?;
    Ok(driver_ids
        .iter()
        .zip(&owners)
        .map(|(driver_id, owner)| {
            let posted = balances
                .get(owner)
                .copied()
                .unwrap_or(Money::zero(WALLET_CURRENCY));
            let position = WalletPosition::of(posted, holds.remove(driver_id).unwrap_or_default());
            (*driver_id, position.available)
        })
        .collect())
}
