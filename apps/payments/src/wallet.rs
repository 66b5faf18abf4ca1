//! The wallet: its balance, paying for cover sessions from it, and whether a driver can pay.
//!
//! The balance is the driver's wallet account in the ledger, never a stored number; what can be
//! spent is the available balance, the posted one less its holds (see [`crate::holds`]). A
//! session's charge is always taken when the session has ended (the cover was given): the
//! wallet may go below zero to pay it, down to [`OVERDRAFT_LIMIT`], which
//! [`crate::overdraft`] enforces on running sessions. Cover asks [`WalletFunds`] (its
//! [`cover::FundsCheck`]) before a session starts.
//!
//! Invariants:
//! - a session's charge is posted once (the ledger's cause is the session), under the wallet's
//!   lock, together with whatever it schedules (an automatic top-up), in one transaction;
//! - an enrolment is suspended for lack of funds when the available balance cannot cover the
//!   next minimum charge and the automatic top-up has failed (it needs the driver) — never
//!   while a session is running, which only [`crate::overdraft`] ends — and reactivated once a
//!   top-up brings the available balance back.

use crate::env::PaymentsEnv;
use crate::error::PaymentsError;
use crate::top_ups::WALLET_CURRENCY;
use accounts::{Actor, DriverId};
use cover::{CoverSessionId, EnrolmentStatus, Funding, FundsCheck, SessionStatus};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use ledger::{Cause, NewTransaction, TransactionId, TransactionKind};
use serde::Serialize;
use shared::Money;

/// How far below zero the wallet may go while a session that already started runs on.
pub const OVERDRAFT_LIMIT: Money = Money::gbp(2_000);

/// The reason recorded on an enrolment suspended for lack of funds.
pub const SUSPEND_REASON: &str = "insufficient_funds";

/// What the driver holds in their wallet (negative when they owe).
pub async fn wallet_balance(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Money, PaymentsError> {
    Ok(ledger::wallet_balance(conn, &driver_id.to_string(), WALLET_CURRENCY).await?)
}

/// What a new session may still cost before the overdraft limit is reached: the available
/// balance (holds other than a running session's) plus [`OVERDRAFT_LIMIT`], never below zero.
pub async fn spendable(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Money, PaymentsError> {
    let available = crate::holds::settled_available(conn, &[driver_id])
        .await?
        .remove(&driver_id)
        .unwrap_or(Money::zero(WALLET_CURRENCY));
    Ok(Money {
        minor: (available.minor + OVERDRAFT_LIMIT.minor).max(0),
        currency: available.currency,
    })
}

/// The wallet-and-card answer to cover's "can this driver pay?": yes when the available
/// balance (posted − holds) covers the minimum charge, or when an automatic top-up can charge a
/// saved card (enabled, a default card, and none waiting for the driver or stuck).
///
/// Reads only. Before a session starts, callers also call
/// [`crate::maybe_schedule_auto_top_up`] so a low wallet is topped up.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalletFunds;

#[async_trait::async_trait]
impl FundsCheck for WalletFunds {
    async fn can_pay(
        &self,
        conn: &mut AsyncPgConnection,
        driver_id: DriverId,
        minimum_charge: Money,
    ) -> Result<Funding, anyhow::Error> {
        let balance = crate::holds::settled_available(conn, &[driver_id])
            .await?
            .remove(&driver_id)
            .unwrap_or(Money::zero(WALLET_CURRENCY));
        if minimum_charge.currency == balance.currency && balance.minor >= minimum_charge.minor {
            return Ok(Funding::Ok);
        }
        // Stripe's time, not the caller's clock: whether a top-up is stuck is about real time.
        if crate::auto_top_up::auto_top_up_available(conn, driver_id, chrono::Utc::now()).await? {
            return Ok(Funding::Ok);
        }
        if crate::cards::default_payment_method(conn, driver_id)
            .await?
            .is_none()
        {
            return Ok(Funding::NoPaymentMethod);
        }
        Ok(Funding::InsufficientFunds {
            available: Some(balance),
        })
    }

    /// The wallets of all in a few reads; only a driver whose wallet does not cover the charge
    /// is then asked about as [`WalletFunds::can_pay`] does.
    async fn can_pay_all(
        &self,
        conn: &mut AsyncPgConnection,
        asks: &[(DriverId, Money)],
    ) -> Result<Vec<Funding>, anyhow::Error> {
        let drivers: Vec<DriverId> = asks.iter().map(|(d, _)| *d).collect();
        let balances = crate::holds::settled_available(conn, &drivers).await?;
        let mut out = Vec::with_capacity(asks.len());
        for (driver_id, minimum_charge) in asks {
            let covered = balances.get(driver_id).is_some_and(|b| {
                minimum_charge.currency == b.currency && b.minor >= minimum_charge.minor
            });
            if covered {
                out.push(Funding::Ok);
            } else {
                out.push(self.can_pay(conn, *driver_id, *minimum_charge).await?);
            }
        }
        Ok(out)
    }
}

/// A session's charge, taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionCharged {
    /// The ledger transaction (none for a session that cost nothing).
    pub ledger_transaction_id: Option<TransactionId>,
    /// Whether this call posted it (false when it had been taken before).
    pub newly_charged: bool,
    /// The wallet afterwards.
    pub balance: Money,
    /// The automatic top-up scheduled because of it, if any.
    pub auto_top_up: Option<crate::ids::TopUpId>,
}

/// Takes an ended session's stored charge from the wallet, once, under the wallet's lock: debit
/// the wallet, credit insurer payable (net premium), commission income and IPT payable; marks
/// the session charged (cover's [`cover::mark_session_charged`]), which releases its hold. The
/// charge is taken whatever the balance (the cover was given). Then schedules an automatic top-up when the wallet
/// fell below the driver's threshold, and suspends the enrolment when the wallet can no longer
/// pay and the automatic top-up has failed. All in one transaction (a savepoint inside the
/// caller's). Repeating it changes nothing.
///
/// Errors: `NOT_FOUND` (`sessionId`); `SESSION_NOT_ENDED` for an active session; internal ones.
pub async fn charge_session(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    session_id: CoverSessionId,
) -> Result<SessionCharged, PaymentsError> {
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        let session =
            cover::get_session(conn, session_id)
                .await
                .map_err(|e| match e.user_error() {
                    Some(_) => PaymentsError::NotFound("sessionId"),
                    None => PaymentsError::Internal(anyhow::anyhow!("reading session: {e}")),
                })?;
        if session.is_active() {
            return Err(PaymentsError::SessionNotEnded);
        }
        let charge = session.charge.ok_or(PaymentsError::SessionNotEnded)?;
        crate::holds::lock_wallet(conn, session.driver_id).await?;
        let owner = session.driver_id.to_string();
        let (ledger_transaction_id, newly_charged) = if charge.total.minor > 0 {
            let tx = NewTransaction {
                kind: TransactionKind::SessionCharge,
                cause: Cause::new("cover_session", session.id.to_string()),
                currency: charge.total.currency,
                description: format!("Cover session {}", session.certificate_number),
                lines: ledger::session_charge_lines(
                    &owner,
                    charge.total,
                    charge.net_premium,
                    charge.commission,
                    charge.ipt,
                )?,
                metadata: serde_json::json!({
                    "certificate": session.certificate_number,
                    "product_version_id": session.product_version_id.to_string(),
                    "minutes": charge.minutes,
                    "billed_minutes": charge.billed_minutes,
                    "ipt_rate_bp": charge.ipt_rate_bp,
                    "commission_bp": charge.commission_bp,
                    "ipt_basis_minor": charge.ipt_basis().minor,
                }),
            };
            match ledger::post(conn, tx).await {
                Ok(posted) => (Some(posted.id()), true),
                Err(e) => match e.already_posted() {
                    Some(id) => (Some(id), false),
                    None => return Err(e.into()),
                },
            }
        } else {
            (None, false)
        };
        if session.status == SessionStatus::Ended {
            cover::mark_session_charged(conn, env.clock.as_ref(), session.id)
                .await
                .map_err(|e| anyhow::anyhow!("marking session {} charged: {e}", session.id))?;
        }
        let auto_top_up =
            crate::auto_top_up::maybe_schedule_auto_top_up(conn, env, session.driver_id).await?;
        review_funding(conn, env, session.driver_id).await?;
        let balance = wallet_balance(conn, session.driver_id).await?;
        if newly_charged {
            tracing::info!(%session_id, total = %charge.total, %balance, "session charged");
        }
        Ok(SessionCharged {
            ledger_transaction_id,
            newly_charged,
            balance,
            auto_top_up,
        })
    })
    .await
}

/// The least the driver's next session would cost: the minimum charge of the quote of their
/// latest session (`None` before their first).
async fn next_minimum_charge(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Option<Money>, PaymentsError> {
    let page = cover::list_sessions(conn, driver_id, &Default::default(), None, 1)
        .await
        .map_err(|e| anyhow::anyhow!("listing sessions: {e}"))?;
    let Some(latest) = page.edges.first() else {
        return Ok(None);
    };
    let quote = pricing::get_quote(conn, latest.node.quote_id)
        .await
        .map_err(|e| anyhow::anyhow!("reading quote {}: {e}", latest.node.quote_id))?;
    Ok(Some(quote.minimum_charge))
}

/// Suspends the driver's active enrolments when the wallet cannot cover the next minimum charge
/// and the automatic top-up has failed; never while a session runs. Returns how many were
/// suspended. Called after an automatic top-up needs the driver and after each session charge.
///
/// The enrolment change's events (for live updates) are not published from here.
pub async fn review_funding(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
) -> Result<usize, PaymentsError> {
    let active = cover::active_session_for_driver(conn, driver_id)
        .await
        .map_err(|e| anyhow::anyhow!("reading the active session: {e}"))?;
    if active.is_some() {
        return Ok(0);
    }
    let Some(minimum) = next_minimum_charge(conn, driver_id).await? else {
        return Ok(0);
    };
    let balance = crate::holds::wallet_position(conn, driver_id, env.clock.now())
        .await?
        .available;
    if balance.minor >= minimum.minor {
        return Ok(0);
    }
    let failed = crate::auto_top_up::waiting_auto_top_up(conn, driver_id)
        .await?
        .is_some_and(|t| t.status == crate::TopUpStatus::NeedsDriver);
    if !failed {
        return Ok(0);
    }
    let enrolments = cover::list_enrolments(conn, driver_id)
        .await
        .map_err(|e| anyhow::anyhow!("listing enrolments: {e}"))?;
    let mut suspended = 0;
    for enrolment in enrolments
        .iter()
        .filter(|e| e.status == EnrolmentStatus::Active)
    {
        let changed = cover::suspend(
            conn,
            env.clock.as_ref(),
            enrolment.id,
            SUSPEND_REASON,
            Actor::System,
        )
        .await
        .map_err(|e| anyhow::anyhow!("suspending enrolment {}: {e}", enrolment.id))?;
        if changed.changed {
            suspended += 1;
            tracing::info!(enrolment_id = %enrolment.id, %driver_id, %balance, %minimum, "enrolment suspended: wallet cannot pay and the automatic top-up failed");
        }
    }
    Ok(suspended)
}

/// After a top-up succeeded: reactivates enrolments suspended for lack of funds once the wallet
/// covers the next minimum charge again. Returns how many were reactivated.
pub async fn review_after_top_up(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
) -> Result<usize, PaymentsError> {
    let enrolments = cover::list_enrolments(conn, driver_id)
        .await
        .map_err(|e| anyhow::anyhow!("listing enrolments: {e}"))?;
    let suspended: Vec<_> = enrolments
        .into_iter()
        .filter(|e| {
            e.status == EnrolmentStatus::Suspended
                && e.status_reason.as_deref() == Some(SUSPEND_REASON)
        })
        .collect();
    if suspended.is_empty() {
        return Ok(0);
    }
    let balance = crate::holds::wallet_position(conn, driver_id, env.clock.now())
        .await?
        .available;
    let minimum = next_minimum_charge(conn, driver_id).await?;
    if minimum.is_some_and(|m| balance.minor < m.minor) {
        return Ok(0);
    }
    let mut reactivated = 0;
    for enrolment in suspended {
        let changed = cover::reactivate(
            conn,
            env.clock.as_ref(),
            enrolment.id,
            "wallet_topped_up",
            Actor::System,
        )
        .await
        .map_err(|e| anyhow::anyhow!("reactivating enrolment {}: {e}", enrolment.id))?;
        if changed.changed {
            reactivated += 1;
        }
    }
    Ok(reactivated)
}

/// Called after an automatic top-up moved to `needs_driver`.
pub(crate) async fn after_auto_top_up_failed(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
) -> Result<(), PaymentsError> {
    review_funding(conn, env, driver_id).await.map(|_| ())
}
