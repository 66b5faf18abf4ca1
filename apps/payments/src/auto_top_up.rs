//! Automatic top-ups: when the wallet falls below the driver's threshold, ShiftCover charges
//! their default card off-session.
//!
//! Invariants:
//! - [`maybe_schedule_auto_top_up`] records the top-up and its [`ChargeAutoTopUp`] job in the
//!   caller's transaction; the database allows one waiting automatic top-up per driver, so
//!   repeated or concurrent calls schedule one;
//! - the job charges with `off_session=true, confirm=true` and the Stripe `Idempotency-Key`
//!   `top_up:<id>`: a retried job cannot charge twice;
//! - a card that needs its holder (Stripe's `authentication_required`, localstripe's
//!   `requires_action`) or a decline moves the top-up to `needs_driver` and the driver is told by
//!   SMS and email; it is never retried off-session. While it waits, no other automatic top-up
//!   is made;
//! - a top-up still `created` or `requires_action` [`STUCK_AFTER_MINUTES`] after it was made
//!   no longer counts as money on its way ([`auto_top_up_available`], [`top_up_prospect`]);
//! - the job checks again before Stripe is first asked: auto top-up turned off, an available
//!   balance back at the threshold, or another top-up under way cancels it without charging.

use crate::env::PaymentsEnv;
use crate::error::PaymentsError;
use crate::ids::TopUpId;
use crate::schema::auto_top_up_settings;
use crate::top_ups::{
    self, NewTopUp, TopUp, TopUpKind, TopUpStatus, WALLET_CURRENCY, insert_top_up,
};
use accounts::DriverId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::Money;
use shared::outbox::Job;

/// Minutes after which an automatic top-up that has neither succeeded nor failed no longer
/// counts as money on its way.
pub const STUCK_AFTER_MINUTES: i64 = 30;

/// The highest threshold a driver may set.
pub const MAX_THRESHOLD: Money = Money::gbp(10_000);

/// A driver's automatic top-up settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AutoTopUp {
    /// Whether automatic top-ups are made.
    pub enabled: bool,
    /// A top-up is made when the wallet falls below this.
    pub threshold: Money,
    /// How much each automatic top-up adds.
    pub amount: Money,
    /// When the settings last changed.
    pub updated_at: DateTime<Utc>,
}

/// The job that charges one automatic top-up off-session. Carries only the top-up's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeAutoTopUp {
    /// The top-up to charge.
    pub top_up_id: TopUpId,
}

impl Job for ChargeAutoTopUp {
    const TYPE: &'static str = "ChargeAutoTopUp";
    const QUEUE: &'static str = "payments";
    const MAX_ATTEMPTS: i32 = 8;

    fn idempotency_key(&self) -> String {
        format!("charge_auto_top_up:{}", self.top_up_id)
    }
}

/// Sets the driver's automatic top-up: when enabled, a top-up of `amount` is made whenever the
/// wallet falls below `threshold`. Enabling it needs a saved card; the wallet is checked at once.
///
/// Errors: `UNSUPPORTED_CURRENCY`, `AMOUNT_TOO_SMALL`, `AMOUNT_TOO_LARGE` (`amount`),
/// `INVALID_AUTO_TOP_UP` (`threshold`: negative, above [`MAX_THRESHOLD`] or in another currency),
/// `NO_PAYMENT_METHOD` when enabling without a card.
pub async fn set_auto_top_up(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
    enabled: bool,
    threshold: Money,
    amount: Money,
) -> Result<AutoTopUp, PaymentsError> {
    top_ups::validate_amount(amount)?;
    if threshold.currency != WALLET_CURRENCY {
        return Err(PaymentsError::InvalidAutoTopUp {
            field: "threshold",
            reason: "The threshold must be in pounds sterling".into(),
        });
    }
    if threshold.minor < 0 || threshold.minor > MAX_THRESHOLD.minor {
        return Err(PaymentsError::InvalidAutoTopUp {
            field: "threshold",
            reason: format!("Set a threshold between £0.00 and {MAX_THRESHOLD}"),
        });
    }
    let now = env.clock.now();
    let settings = conn
        .transaction::<_, PaymentsError, _>(async |conn| {
            if enabled
                && crate::cards::default_payment_method(conn, driver_id)
                    .await?
                    .is_none()
            {
                return Err(PaymentsError::NoPaymentMethod);
            }
            diesel::insert_into(auto_top_up_settings::table)
                .values((
                    auto_top_up_settings::driver_id.eq(driver_id),
                    auto_top_up_settings::enabled.eq(enabled),
                    auto_top_up_settings::threshold_minor.eq(threshold.minor),
                    auto_top_up_settings::amount_minor.eq(amount.minor),
                    auto_top_up_settings::currency.eq(amount.currency.code()),
                    auto_top_up_settings::updated_at.eq(now),
                ))
                .on_conflict(auto_top_up_settings::driver_id)
                .do_update()
                .set((
                    auto_top_up_settings::enabled.eq(enabled),
                    auto_top_up_settings::threshold_minor.eq(threshold.minor),
                    auto_top_up_settings::amount_minor.eq(amount.minor),
                    auto_top_up_settings::currency.eq(amount.currency.code()),
                    auto_top_up_settings::updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
            shared::audit::record(
                conn,
                &shared::audit::AuditEntry {
                    actor_type: shared::audit::ActorType::Driver,
                    actor_id: Some(driver_id.to_string()),
                    action: "auto_top_up.set",
                    subject_type: "driver",
                    subject_id: driver_id.to_string(),
                    reason: None,
                    details: serde_json::json!({
                        "enabled": enabled,
                        "threshold_minor": threshold.minor,
                        "amount_minor": amount.minor,
                    }),
                },
            )
            .await?;
            maybe_schedule_auto_top_up(conn, env, driver_id).await?;
            Ok(AutoTopUp {
                enabled,
                threshold,
                amount,
                updated_at: now,
            })
        })
        .await?;
    Ok(settings)
}

/// The driver's automatic top-up settings, if they ever set them.
pub async fn auto_top_up(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Option<AutoTopUp>, PaymentsError> {
    let row: Option<(bool, i64, i64, String, DateTime<Utc>)> = auto_top_up_settings::table
        .find(driver_id)
        .select((
            auto_top_up_settings::enabled,
            auto_top_up_settings::threshold_minor,
            auto_top_up_settings::amount_minor,
            auto_top_up_settings::currency,
            auto_top_up_settings::updated_at,
        ))
        .first(conn)
        .await
        .optional()?;
    row.map(|(enabled, threshold, amount, currency, updated_at)| {
        let currency = currency
            .parse()
            .map_err(|e| anyhow::anyhow!("auto top-up of {driver_id}: {e}"))?;
        Ok(AutoTopUp {
            enabled,
            threshold: Money {
                minor: threshold,
                currency,
            },
            amount: Money {
                minor: amount,
                currency,
            },
            updated_at,
        })
    })
    .transpose()
}

/// Whether the driver's automatic top-up can charge a card now: enabled, a default card, and no
/// top-up waiting for the driver or stuck (see [`STUCK_AFTER_MINUTES`]).
pub async fn auto_top_up_available(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    now: DateTime<Utc>,
) -> Result<bool, PaymentsError> {
    let Some(settings) = auto_top_up(conn, driver_id).await? else {
        return Ok(false);
    };
    if !settings.enabled
        || crate::cards::default_payment_method(conn, driver_id)
            .await?
            .is_none()
    {
        return Ok(false);
    }
    Ok(waiting_auto_top_up(conn, driver_id)
        .await?
        .is_none_or(|t| given_up_since(&t, now).is_none()))
}

/// Since when a waiting automatic top-up can no longer be counted on: since it came to need
/// the driver, or since it became stuck. `None` while it may still succeed by itself.
fn given_up_since(top_up: &TopUp, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match top_up.status {
        TopUpStatus::NeedsDriver => Some(top_up.updated_at),
        TopUpStatus::Created | TopUpStatus::RequiresAction => {
            let stuck = top_up.created_at + chrono::Duration::minutes(STUCK_AFTER_MINUTES);
            (stuck <= now).then_some(stuck)
        }
        _ => None,
    }
}

/// What the automatic top-up can do for a wallet that is short now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prospect {
    /// One is being charged and may still succeed.
    OnItsWay,
    /// One was scheduled just now.
    Scheduled,
    /// It cannot help: off, no card, waiting for the driver or stuck. `since`: when it stopped
    /// being able to (when known).
    CannotHelp {
        /// When it stopped being able to help.
        since: Option<DateTime<Utc>>,
    },
}

/// What the driver's automatic top-up can do now for a wallet that is short; schedules one
/// (in the caller's transaction) when none is waiting and the settings allow.
pub async fn top_up_prospect(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
) -> Result<Prospect, PaymentsError> {
    let now = env.clock.now();
    let Some(settings) = auto_top_up(conn, driver_id).await? else {
        return Ok(Prospect::CannotHelp { since: None });
    };
    if !settings.enabled {
        return Ok(Prospect::CannotHelp {
            since: Some(settings.updated_at),
        });
    }
    if let Some(waiting) = waiting_auto_top_up(conn, driver_id).await? {
        return Ok(match given_up_since(&waiting, now) {
            Some(since) => Prospect::CannotHelp { since: Some(since) },
            None => Prospect::OnItsWay,
        });
    }
    match maybe_schedule_auto_top_up(conn, env, driver_id).await? {
        Some(_) => Ok(Prospect::Scheduled),
        None => Ok(Prospect::CannotHelp { since: None }),
    }
}

/// The driver's automatic top-up that is under way or waiting for them, if any.
pub async fn waiting_auto_top_up(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Option<TopUp>, PaymentsError> {
    use crate::schema::top_ups as t;
    let row = t::table
        .filter(t::driver_id.eq(driver_id))
        .filter(t::kind.eq(TopUpKind::Auto.as_str()))
        .filter(t::status.eq_any([
            TopUpStatus::Created.as_str(),
            TopUpStatus::RequiresAction.as_str(),
            TopUpStatus::NeedsDriver.as_str(),
        ]))
        .select(top_ups::TopUpRow::as_select())
        .first(conn)
        .await
        .optional()?;
    row.map(|r| r.to_top_up()).transpose()
}

/// Schedules an automatic top-up when the driver's settings ask for one: enabled, a saved card,
/// the wallet's available balance (posted − holds, the running session's charge so far
/// included) below the threshold, and none already waiting. Call it after every change that
/// lowers the wallet (a session charge) and before cover starts. Writes with `conn`, inside the
/// caller's transaction when there is one; the job runs after commit.
///
/// Returns the scheduled top-up's id, or `None` when none was needed or one is already waiting.
pub async fn maybe_schedule_auto_top_up(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
) -> Result<Option<TopUpId>, PaymentsError> {
    let Some(settings) = auto_top_up(conn, driver_id).await? else {
        return Ok(None);
    };
    if !settings.enabled {
        return Ok(None);
    }
    let balance = crate::holds::wallet_position(conn, driver_id, env.clock.now())
        .await?
        .available;
    if balance.minor >= settings.threshold.minor {
        return Ok(None);
    }
    let Some(card) = crate::cards::default_payment_method(conn, driver_id).await? else {
        return Ok(None);
    };
    let id = TopUpId::new();
    let key = format!("auto:{id}");
    let now = env.clock.now();
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        let inserted = insert_top_up(
            conn,
            &NewTopUp {
                id,
                driver_id,
                amount: settings.amount,
                kind: TopUpKind::Auto,
                payment_method_id: card.id,
                idempotency_key: &key,
                now,
            },
        )
        .await?;
        if inserted.is_none() {
            return Ok(None);
        }
        shared::outbox::enqueue(conn, &ChargeAutoTopUp { top_up_id: id }).await?;
        tracing::info!(top_up_id = %id, %driver_id, %balance, "automatic top-up scheduled");
        Ok(Some(id))
    })
    .await
}

/// Schedules the automatic top-ups that are due for every driver who enabled them (a sweep for
/// the workers' cron, catching wallets lowered by something that did not schedule one itself).
/// Returns how many were scheduled. Each driver's check runs in its own transaction.
pub async fn schedule_due_auto_top_ups(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
) -> Result<usize, PaymentsError> {
    let drivers: Vec<DriverId> = auto_top_up_settings::table
        .filter(auto_top_up_settings::enabled)
        .order(auto_top_up_settings::driver_id.asc())
        .select(auto_top_up_settings::driver_id)
        .load(conn)
        .await?;
    let mut scheduled = 0;
    for driver_id in drivers {
        if maybe_schedule_auto_top_up(conn, env, driver_id)
            .await?
            .is_some()
        {
            scheduled += 1;
        }
    }
    Ok(scheduled)
}

/// Charges a scheduled automatic top-up off-session (the work of [`ChargeAutoTopUp`]). Does
/// nothing to a top-up that is no longer `created`.
///
/// While Stripe has never been asked for it (no request recorded on the row), it first checks
/// again and cancels the top-up without charging when auto top-up was turned off, when the
/// wallet's available balance is back at the threshold (a manual top-up fixed it), or when
/// another top-up of the driver's is under way. Once Stripe has been asked, a retry may follow
/// a call Stripe already answered, so it always charges again, with the same idempotency key.
///
/// Errors: `NOT_FOUND` (`topUpId`); internal ones, retryable when Stripe was unavailable.
pub async fn charge_auto_top_up(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    top_up_id: TopUpId,
) -> Result<TopUp, PaymentsError> {
    let row = top_ups::load_row(conn, top_up_id)
        .await?
        .ok_or(PaymentsError::NotFound("topUpId"))?;
    if row.kind()? != TopUpKind::Auto || row.status()? != TopUpStatus::Created {
        return row.to_top_up();
    }
    if row.stripe_requested_at.is_none()
        && row.payment_intent_id.is_none()
        && let Some((code, why)) = no_longer_needed(conn, env, &row).await?
    {
        return top_ups::cancel_unsent(conn, env, top_up_id, code, why).await;
    }
    top_ups::charge_top_up(conn, env, &row).await
}

/// Why a scheduled automatic top-up should not be charged after all, if so.
async fn no_longer_needed(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    row: &top_ups::TopUpRow,
) -> Result<Option<(&'static str, &'static str)>, PaymentsError> {
    let driver_id = row.driver_id;
    let Some(settings) = auto_top_up(conn, driver_id).await?.filter(|s| s.enabled) else {
        return Ok(Some(("auto_top_up_off", "Automatic top-up was turned off")));
    };
    let available = crate::holds::wallet_position(conn, driver_id, env.clock.now())
        .await?
        .available;
    if available.minor >= settings.threshold.minor {
        return Ok(Some((
            "not_needed",
            "The wallet was back at the threshold before the card was charged",
        )));
    }
    if top_ups::other_top_up_under_way(conn, driver_id, row.id, env.clock.now()).await? {
        return Ok(Some((
            "top_up_under_way",
            "Another top-up was already under way",
        )));
    }
    Ok(None)
}
