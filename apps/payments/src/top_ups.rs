//! Wallet top-ups: Stripe PaymentIntents on the driver's saved card that credit the wallet.
//!
//! Life of a top-up: `created` (the row exists; Stripe may not have been asked yet) →
//! `requires_action` (on-session: the bank wants 3-D Secure; the app gets the client secret) →
//! `succeeded` | `failed` | `needs_driver` (an automatic top-up the bank or the card refused
//! without the driver: they are told to finish it in the app) | `canceled`.
//!
//! Invariants:
//! - one row per (driver, client idempotency key); the same key with other parameters is refused
//!   (`IDEMPOTENCY_KEY_REUSED`), the same key with the same parameters returns the first top-up;
//! - the PaymentIntent is created with the Stripe `Idempotency-Key` `top_up:<id>` and the
//!   parameters stored on the row (amount, card), so a retry after a crash or a timeout cannot
//!   charge twice;
//! - every path that learns a PaymentIntent's state (the call that made it, the app's report, a
//!   webhook, the auto top-up job) goes through [`apply_intent`], which locks the row and credits
//!   the wallet through [`ledger::post`] with the top-up as the cause: exactly once, whoever is
//!   first;
//! - a top-up that succeeded at Stripe is succeeded here, whatever was recorded before (Stripe
//!   holds the money); a succeeded top-up never changes status again.

use crate::cards::PaymentMethod;
use crate::env::PaymentsEnv;
use crate::error::PaymentsError;
use crate::ids::{PaymentMethodId, TopUpId};
use crate::schema::{payment_methods, top_ups};
use crate::stripe::{Intent, NewIntent, Presence, StripeFailure};
use accounts::DriverId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use ledger::{Cause, NewTransaction, TransactionId, TransactionKind};
use serde::Serialize;
use sha2::{Digest, Sha256};
use shared::{Currency, Money};
use std::fmt;
use std::str::FromStr;

/// The smallest top-up.
pub const MIN_TOP_UP: Money = Money::gbp(500);
/// The largest top-up.
pub const MAX_TOP_UP: Money = Money::gbp(25_000);
/// Longest client idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;
/// The currency of every wallet.
pub const WALLET_CURRENCY: Currency = Currency::Gbp;

/// Where a top-up is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopUpStatus {
    /// Recorded; the payment is being made.
    Created,
    /// The bank asks the driver to authenticate (3-D Secure) in the app.
    RequiresAction,
    /// Paid; the wallet is credited.
    Succeeded,
    /// Declined or not authenticated; nothing was taken.
    Failed,
    /// An automatic top-up that needs the driver to finish it in the app.
    NeedsDriver,
    /// Given up; nothing was taken.
    Canceled,
}

impl TopUpStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TopUpStatus::Created => "created",
            TopUpStatus::RequiresAction => "requires_action",
            TopUpStatus::Succeeded => "succeeded",
            TopUpStatus::Failed => "failed",
            TopUpStatus::NeedsDriver => "needs_driver",
            TopUpStatus::Canceled => "canceled",
        }
    }

    /// Whether the top-up can still change (a failed or needs-driver one may still succeed if
    /// Stripe says so, so only succeeded and canceled are final).
    pub fn is_final(self) -> bool {
        matches!(self, TopUpStatus::Succeeded | TopUpStatus::Canceled)
    }
}

impl fmt::Display for TopUpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TopUpStatus {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            TopUpStatus::Created,
            TopUpStatus::RequiresAction,
            TopUpStatus::Succeeded,
            TopUpStatus::Failed,
            TopUpStatus::NeedsDriver,
            TopUpStatus::Canceled,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| anyhow::anyhow!("unknown top-up status {s:?}"))
    }
}

/// Who started a top-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopUpKind {
    /// The driver, in the app (3-D Secure possible).
    OnSession,
    /// ShiftCover, when the wallet fell below the driver's threshold (no driver present).
    Auto,
}

impl TopUpKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TopUpKind::OnSession => "on_session",
            TopUpKind::Auto => "auto",
        }
    }

    fn presence(self) -> Presence {
        match self {
            TopUpKind::OnSession => Presence::OnSession,
            TopUpKind::Auto => Presence::OffSession,
        }
    }
}

impl FromStr for TopUpKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on_session" => Ok(TopUpKind::OnSession),
            "auto" => Ok(TopUpKind::Auto),
            _ => Err(anyhow::anyhow!("unknown top-up kind {s:?}")),
        }
    }
}

/// A top-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopUp {
    /// The top-up (`top_…`).
    pub id: TopUpId,
    /// Whose wallet.
    pub driver_id: DriverId,
    /// How much.
    pub amount: Money,
    /// On-session or automatic.
    pub kind: TopUpKind,
    /// Where it is.
    pub status: TopUpStatus,
    /// The card charged.
    pub payment_method_id: PaymentMethodId,
    /// Stripe's PaymentIntent, once made.
    pub payment_intent_id: Option<String>,
    /// The client's key (on-session) or the one derived for an automatic top-up.
    pub idempotency_key: String,
    /// For the app to authenticate the payment (status `requires_action`, or `needs_driver` when
    /// being finished); read from Stripe, never stored.
    pub client_secret: Option<String>,
    /// Why it failed (Stripe's code, e.g. `card_declined`, `authentication_required`).
    pub failure_code: Option<String>,
    /// Stripe's message about the failure.
    pub failure_message: Option<String>,
    /// The ledger transaction that credited the wallet.
    pub ledger_transaction_id: Option<TransactionId>,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When the wallet was credited.
    pub succeeded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = top_ups)]
pub(crate) struct TopUpRow {
    pub(crate) id: TopUpId,
    pub(crate) driver_id: DriverId,
    pub(crate) amount_minor: i64,
    pub(crate) currency: String,
    pub(crate) kind: String,
    pub(crate) status: String,
    pub(crate) payment_method_id: PaymentMethodId,
    pub(crate) payment_intent_id: Option<String>,
    pub(crate) idempotency_key: String,
    pub(crate) request_fingerprint: String,
    pub(crate) failure_code: Option<String>,
    pub(crate) failure_message: Option<String>,
    pub(crate) ledger_transaction_id: Option<uuid::Uuid>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) succeeded_at: Option<DateTime<Utc>>,
    /// When Stripe was first asked for this top-up's PaymentIntent.
    pub(crate) stripe_requested_at: Option<DateTime<Utc>>,
}

impl TopUpRow {
    pub(crate) fn status(&self) -> Result<TopUpStatus, PaymentsError> {
        Ok(self.status.parse()?)
    }

    pub(crate) fn kind(&self) -> Result<TopUpKind, PaymentsError> {
        Ok(self.kind.parse()?)
    }

    pub(crate) fn amount(&self) -> Result<Money, PaymentsError> {
        Ok(Money {
            minor: self.amount_minor,
            currency: self
                .currency
                .parse()
                .map_err(|e| anyhow::anyhow!("top-up {}: {e}", self.id))?,
        })
    }

    pub(crate) fn to_top_up(&self) -> Result<TopUp, PaymentsError> {
        Ok(TopUp {
            id: self.id,
            driver_id: self.driver_id,
            amount: self.amount()?,
            kind: self.kind()?,
            status: self.status()?,
            payment_method_id: self.payment_method_id,
            payment_intent_id: self.payment_intent_id.clone(),
            idempotency_key: self.idempotency_key.clone(),
            client_secret: None,
            failure_code: self.failure_code.clone(),
            failure_message: self.failure_message.clone(),
            ledger_transaction_id: self.ledger_transaction_id.map(TransactionId),
            created_at: self.created_at,
            updated_at: self.updated_at,
            succeeded_at: self.succeeded_at,
        })
    }
}

/// A new top-up row.
pub(crate) struct NewTopUp<'a> {
    pub(crate) id: TopUpId,
    pub(crate) driver_id: DriverId,
    pub(crate) amount: Money,
    pub(crate) kind: TopUpKind,
    pub(crate) payment_method_id: PaymentMethodId,
    pub(crate) idempotency_key: &'a str,
    pub(crate) now: DateTime<Utc>,
}

/// Inserts a top-up unless its unique keys are taken; `None` then.
pub(crate) async fn insert_top_up(
    conn: &mut AsyncPgConnection,
    new: &NewTopUp<'_>,
) -> Result<Option<TopUpRow>, PaymentsError> {
    Ok(diesel::insert_into(top_ups::table)
        .values((
            top_ups::id.eq(new.id),
            top_ups::driver_id.eq(new.driver_id),
            top_ups::amount_minor.eq(new.amount.minor),
            top_ups::currency.eq(new.amount.currency.code()),
            top_ups::kind.eq(new.kind.as_str()),
            top_ups::status.eq(TopUpStatus::Created.as_str()),
            top_ups::payment_method_id.eq(new.payment_method_id),
            top_ups::idempotency_key.eq(new.idempotency_key),
            top_ups::request_fingerprint.eq(fingerprint(new.kind, new.amount)),
            top_ups::created_at.eq(new.now),
            top_ups::updated_at.eq(new.now),
        ))
        .on_conflict_do_nothing()
        .returning(TopUpRow::as_returning())
        .get_result(conn)
        .await
        .optional()?)
}

/// What identifies a request under one idempotency key.
fn fingerprint(kind: TopUpKind, amount: Money) -> String {
    let mut h = Sha256::new();
    h.update(
        format!(
            "{}|{}|{}",
            kind.as_str(),
            amount.minor,
            amount.currency.code()
        )
        .as_bytes(),
    );
    hex::encode(h.finalize())
}

/// Checks a top-up amount: pounds sterling, between [`MIN_TOP_UP`] and [`MAX_TOP_UP`].
///
/// Errors: `UNSUPPORTED_CURRENCY`, `AMOUNT_TOO_SMALL`, `AMOUNT_TOO_LARGE`.
pub fn validate_amount(amount: Money) -> Result<(), PaymentsError> {
    if amount.currency != WALLET_CURRENCY {
        return Err(PaymentsError::UnsupportedCurrency);
    }
    if amount.minor < MIN_TOP_UP.minor {
        return Err(PaymentsError::AmountTooSmall { min: MIN_TOP_UP });
    }
    if amount.minor > MAX_TOP_UP.minor {
        return Err(PaymentsError::AmountTooLarge { max: MAX_TOP_UP });
    }
    Ok(())
}

pub(crate) async fn load_row(
    conn: &mut AsyncPgConnection,
    id: TopUpId,
) -> Result<Option<TopUpRow>, PaymentsError> {
    Ok(top_ups::table
        .find(id)
        .select(TopUpRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub(crate) async fn find_by_intent(
    conn: &mut AsyncPgConnection,
    payment_intent_id: &str,
) -> Result<Option<TopUpRow>, PaymentsError> {
    Ok(top_ups::table
        .filter(top_ups::payment_intent_id.eq(payment_intent_id))
        .select(TopUpRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Tops up the driver's wallet by `amount` from their default card, now, with the driver
/// present. Returns the top-up: `succeeded` (the wallet is credited), `requires_action` with the
/// client secret for 3-D Secure (success then arrives by webhook or [`refresh_top_up`]), or
/// `failed` with Stripe's reason.
///
/// The same `idempotency_key` with the same amount returns the same top-up (and resumes it if an
/// earlier attempt could not reach Stripe); with another amount it is refused.
///
/// Errors: `INVALID_IDEMPOTENCY_KEY`, `IDEMPOTENCY_KEY_REUSED`, `UNSUPPORTED_CURRENCY`,
/// `AMOUNT_TOO_SMALL`, `AMOUNT_TOO_LARGE`, `NO_PAYMENT_METHOD`; internal ones (Stripe
/// unavailable: retry with the same key).
pub async fn top_up_wallet(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
    amount: Money,
    idempotency_key: &str,
) -> Result<TopUp, PaymentsError> {
    let key_chars = idempotency_key.chars().count();
    if key_chars == 0
        || key_chars > MAX_IDEMPOTENCY_KEY_CHARS
        || idempotency_key.chars().any(char::is_control)
    {
        return Err(PaymentsError::InvalidIdempotencyKey);
    }
    validate_amount(amount)?;
    let existing = top_ups::table
        .filter(top_ups::driver_id.eq(driver_id))
        .filter(top_ups::idempotency_key.eq(idempotency_key))
        .select(TopUpRow::as_select())
        .first(conn)
        .await
        .optional()?;
    let row = match existing {
        Some(row) => row,
        None => {
            let card = crate::cards::default_payment_method(conn, driver_id)
                .await?
                .ok_or(PaymentsError::NoPaymentMethod)?;
            let new = NewTopUp {
                id: TopUpId::new(),
                driver_id,
                amount,
                kind: TopUpKind::OnSession,
                payment_method_id: card.id,
                idempotency_key,
                now: env.clock.now(),
            };
            match insert_top_up(conn, &new).await? {
                Some(row) => row,
                // A concurrent request with the same key won: answer as a repeat.
                None => {
                    top_ups::table
                        .filter(top_ups::driver_id.eq(driver_id))
                        .filter(top_ups::idempotency_key.eq(idempotency_key))
                        .select(TopUpRow::as_select())
                        .first(conn)
                        .await?
                }
            }
        }
    };
    if row.request_fingerprint != fingerprint(TopUpKind::OnSession, amount)
        || row.kind()? != TopUpKind::OnSession
    {
        return Err(PaymentsError::IdempotencyKeyReused);
    }
    match row.status()? {
        TopUpStatus::Created => charge_top_up(conn, env, &row).await,
        TopUpStatus::RequiresAction => with_client_secret(env, row.to_top_up()?).await,
        _ => row.to_top_up(),
    }
}

/// Asks Stripe for the payment of a `created` top-up and applies the answer. Safe to repeat:
/// the idempotency key and parameters come from the row.
/// Hours after which a retried top-up no longer trusts Stripe's idempotency key (which Stripe
/// keeps for 24) and looks its PaymentIntent up by metadata first.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 23;

pub(crate) async fn charge_top_up(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    row: &TopUpRow,
) -> Result<TopUp, PaymentsError> {
    let kind = row.kind()?;
    let card: PaymentMethod = payment_methods::table
        .find(row.payment_method_id)
        .select(PaymentMethod::as_select())
        .first(conn)
        .await?;
    let customer = crate::cards::stripe_customer_id(conn, row.driver_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("driver {} has a card but no customer", row.driver_id))?;
    let amount = row.amount()?;
    let new = NewIntent {
        amount,
        customer: &customer,
        payment_method: &card.stripe_payment_method_id,
        presence: kind.presence(),
        metadata: vec![
            ("top_up_id", row.id.to_string()),
            ("driver_id", row.driver_id.to_string()),
        ],
    };
    let key = format!("top_up:{}", row.id);
    // Stripe forgets idempotency keys after 24 hours: a request retried later than that would
    // make a second PaymentIntent. Look for the first one by our metadata instead.
    if let Some(asked) = row.stripe_requested_at
        && env.clock.now() - asked > chrono::Duration::hours(IDEMPOTENCY_WINDOW_HOURS)
        && let Some(intent) = env
            .stripe
            .find_payment_intent(
                &customer,
                (asked - chrono::Duration::hours(1)).timestamp(),
                "top_up_id",
                &row.id.to_string(),
            )
            .await?
    {
        tracing::info!(top_up_id = %row.id, payment_intent = %intent.id, "late retry found the top-up's PaymentIntent by its metadata");
        return apply_intent(conn, env, row.id, &intent).await;
    }
    // Recorded before the call: from now on Stripe may hold a PaymentIntent for this top-up, so
    // it is never cancelled without asking Stripe.
    if row.stripe_requested_at.is_none() {
        diesel::update(top_ups::table.find(row.id))
            .filter(top_ups::stripe_requested_at.is_null())
            .set(top_ups::stripe_requested_at.eq(env.clock.now()))
            .execute(conn)
            .await?;
    }
    match env.stripe.create_payment_intent(&new, &key).await {
        Ok(intent) => {
            let secret = intent.client_secret.clone();
            let mut top_up = apply_intent(conn, env, row.id, &intent).await?;
            if matches!(
                top_up.status,
                TopUpStatus::RequiresAction | TopUpStatus::NeedsDriver
            ) {
                top_up.client_secret = secret;
            }
            Ok(top_up)
        }
        Err(StripeFailure::Card {
            intent: Some(intent),
            ..
        }) => apply_intent(conn, env, row.id, &intent).await,
        Err(StripeFailure::Card { code, message, .. }) => {
            apply_failure(conn, env, row.id, code.as_deref(), &message).await
        }
        Err(StripeFailure::Rejected { code, message, .. }) => {
            tracing::error!(top_up_id = %row.id, ?code, %message, "Stripe rejected a top-up request");
            apply_failure(
                conn,
                env,
                row.id,
                Some(code.as_deref().unwrap_or("request_rejected")),
                &message,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

async fn with_client_secret(env: &PaymentsEnv, mut top_up: TopUp) -> Result<TopUp, PaymentsError> {
    if let Some(pi) = &top_up.payment_intent_id {
        top_up.client_secret = env.stripe.retrieve_payment_intent(pi).await?.client_secret;
    }
    Ok(top_up)
}

/// What a Stripe PaymentIntent status means for a top-up of `kind` now in `current`.
fn next_status(kind: TopUpKind, current: TopUpStatus, intent: &Intent) -> TopUpStatus {
    if current == TopUpStatus::Succeeded {
        return current;
    }
    match intent.status.as_str() {
        "succeeded" => TopUpStatus::Succeeded,
        "canceled" => TopUpStatus::Canceled,
        _ if current == TopUpStatus::Canceled => current,
        "requires_action" | "requires_confirmation" => match kind {
            TopUpKind::Auto => TopUpStatus::NeedsDriver,
            TopUpKind::OnSession if current == TopUpStatus::Failed => current,
            TopUpKind::OnSession => TopUpStatus::RequiresAction,
        },
        "requires_payment_method" if intent.last_error_code.is_some() => match kind {
            TopUpKind::Auto => TopUpStatus::NeedsDriver,
            TopUpKind::OnSession => TopUpStatus::Failed,
        },
        // processing, requires_capture, or not yet confirmed: nothing new.
        _ => current,
    }
}

/// Applies what Stripe says about a top-up's PaymentIntent (as just read, or as returned by the
/// call that made it). Locks the row; credits the wallet once when it succeeded; tells the
/// driver when an automatic top-up now needs them. Returns the top-up as stored.
pub async fn apply_intent(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    top_up_id: TopUpId,
    intent: &Intent,
) -> Result<TopUp, PaymentsError> {
    let now = env.clock.now();
    let (top_up, notify, credited) = conn
        .transaction::<_, PaymentsError, _>(async |conn| {
            let row = lock_row(conn, top_up_id).await?;
            if let Some(known) = &row.payment_intent_id
                && known != &intent.id
            {
                return Err(anyhow::anyhow!(
                    "top-up {top_up_id} has PaymentIntent {known}, not {}",
                    intent.id
                )
                .into());
            }
            let current = row.status()?;
            let kind = row.kind()?;
            let next = next_status(kind, current, intent);
            let (code, message) = match next {
                TopUpStatus::Failed | TopUpStatus::NeedsDriver => (
                    intent
                        .last_error_code
                        .clone()
                        .or_else(|| Some("authentication_required".into())),
                    intent.last_error_message.clone().or_else(|| {
                        Some("The bank asked the cardholder to authenticate the payment.".into())
                    }),
                ),
                _ => (row.failure_code.clone(), row.failure_message.clone()),
            };
            let ledger_tx = if next == TopUpStatus::Succeeded && current != TopUpStatus::Succeeded
            {
                Some(credit_wallet(conn, &row, &intent.id).await?)
            } else {
                row.ledger_transaction_id.map(TransactionId)
            };
            let updated = update_row(
                conn,
                &row,
                Update {
                    status: next,
                    payment_intent_id: Some(&intent.id),
                    failure_code: code.as_deref(),
                    failure_message: message.as_deref(),
                    ledger_transaction_id: ledger_tx,
                    now,
                },
            )
            .await?;
            let notify = next == TopUpStatus::NeedsDriver && current != TopUpStatus::NeedsDriver;
            if notify {
                notify_driver(conn, env, &updated).await?;
            }
            if next != current {
                tracing::info!(%top_up_id, from = %current, to = %next, payment_intent = %intent.id, "top-up status changed");
            }
            let credited = next == TopUpStatus::Succeeded && current != TopUpStatus::Succeeded;
            Ok((updated.to_top_up()?, notify, credited))
        })
        .await?;
    if notify {
        crate::wallet::after_auto_top_up_failed(conn, env, top_up.driver_id).await?;
    }
    if credited {
        crate::wallet::review_after_top_up(conn, env, top_up.driver_id).await?;
        crate::chargebacks::review_after_top_up(conn, env, top_up.driver_id).await?;
    }
    Ok(top_up)
}

/// Applies a card error that came without a PaymentIntent: on-session the top-up failed; an
/// automatic one needs the driver.
pub(crate) async fn apply_failure(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    top_up_id: TopUpId,
    code: Option<&str>,
    message: &str,
) -> Result<TopUp, PaymentsError> {
    let now = env.clock.now();
    let (top_up, notify) = conn
        .transaction::<_, PaymentsError, _>(async |conn| {
            let row = lock_row(conn, top_up_id).await?;
            let current = row.status()?;
            if current.is_final() {
                return Ok((row.to_top_up()?, false));
            }
            let next = match row.kind()? {
                TopUpKind::Auto => TopUpStatus::NeedsDriver,
                TopUpKind::OnSession => TopUpStatus::Failed,
            };
            let message: String = message.chars().take(500).collect();
            let code: Option<String> = code.map(|c| c.chars().take(100).collect());
            let updated = update_row(
                conn,
                &row,
                Update {
                    status: next,
                    payment_intent_id: row.payment_intent_id.as_deref(),
                    failure_code: Some(code.as_deref().unwrap_or("card_error")),
                    failure_message: Some(if message.is_empty() {
                        "card error"
                    } else {
                        &message
                    }),
                    ledger_transaction_id: None,
                    now,
                },
            )
            .await?;
            let notify = next == TopUpStatus::NeedsDriver && current != TopUpStatus::NeedsDriver;
            if notify {
                notify_driver(conn, env, &updated).await?;
            }
            Ok((updated.to_top_up()?, notify))
        })
        .await?;
    if notify {
        crate::wallet::after_auto_top_up_failed(conn, env, top_up.driver_id).await?;
    }
    Ok(top_up)
}

/// Cancels a top-up that was never sent to Stripe (still `created`, no PaymentIntent), with
/// the reason; anything else is returned as it is.
pub(crate) async fn cancel_unsent(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    top_up_id: TopUpId,
    code: &str,
    message: &str,
) -> Result<TopUp, PaymentsError> {
    cancel_created(conn, env, top_up_id, code, message, false).await
}

/// Cancels a top-up Stripe was asked for more than a day ago and holds no PaymentIntent for
/// (looked up by metadata by the caller): none can appear any more.
pub(crate) async fn give_up_unanswered(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    top_up_id: TopUpId,
) -> Result<TopUp, PaymentsError> {
    cancel_created(
        conn,
        env,
        top_up_id,
        "no_payment_intent",
        "Stripe made no payment for it; given up after a day",
        true,
    )
    .await
}

async fn cancel_created(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    top_up_id: TopUpId,
    code: &str,
    message: &str,
    even_if_asked: bool,
) -> Result<TopUp, PaymentsError> {
    let now = env.clock.now();
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        let row = lock_row(conn, top_up_id).await?;
        if row.status()? != TopUpStatus::Created
            || row.payment_intent_id.is_some()
            || (row.stripe_requested_at.is_some() && !even_if_asked)
        {
            return row.to_top_up();
        }
        let updated = update_row(
            conn,
            &row,
            Update {
                status: TopUpStatus::Canceled,
                payment_intent_id: None,
                failure_code: Some(code),
                failure_message: Some(message),
                ledger_transaction_id: None,
                now,
            },
        )
        .await?;
        tracing::info!(%top_up_id, code, "top-up canceled before it was charged");
        updated.to_top_up()
    })
    .await
}

/// Whether the driver has a top-up other than `except` under way (made in the last
/// [`crate::auto_top_up::STUCK_AFTER_MINUTES`] and neither succeeded nor failed yet).
pub(crate) async fn other_top_up_under_way(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    except: TopUpId,
    now: DateTime<Utc>,
) -> Result<bool, PaymentsError> {
    let since = now - chrono::Duration::minutes(crate::auto_top_up::STUCK_AFTER_MINUTES);
    let found: Option<TopUpId> = top_ups::table
        .filter(top_ups::driver_id.eq(driver_id))
        .filter(top_ups::id.ne(except))
        .filter(top_ups::status.eq_any([
            TopUpStatus::Created.as_str(),
            TopUpStatus::RequiresAction.as_str(),
        ]))
        .filter(top_ups::created_at.ge(since))
        .select(top_ups::id)
        .first(conn)
        .await
        .optional()?;
    Ok(found.is_some())
}

async fn lock_row(conn: &mut AsyncPgConnection, id: TopUpId) -> Result<TopUpRow, PaymentsError> {
    top_ups::table
        .find(id)
        .select(TopUpRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(PaymentsError::NotFound("topUpId"))
}

struct Update<'a> {
    status: TopUpStatus,
    payment_intent_id: Option<&'a str>,
    failure_code: Option<&'a str>,
    failure_message: Option<&'a str>,
    ledger_transaction_id: Option<TransactionId>,
    now: DateTime<Utc>,
}

async fn update_row(
    conn: &mut AsyncPgConnection,
    row: &TopUpRow,
    u: Update<'_>,
) -> Result<TopUpRow, PaymentsError> {
    let succeeded_at = match u.status {
        TopUpStatus::Succeeded => Some(row.succeeded_at.unwrap_or(u.now)),
        _ => None,
    };
    let (code, message) = if u.status == TopUpStatus::Succeeded {
        (None, None)
    } else {
        (
            u.failure_code
                .map(|c| c.chars().take(100).collect::<String>()),
            u.failure_message
                .map(|m| m.chars().take(500).collect::<String>()),
        )
    };
    Ok(diesel::update(top_ups::table.find(row.id))
        .set((
            top_ups::status.eq(u.status.as_str()),
            top_ups::payment_intent_id.eq(u.payment_intent_id),
            top_ups::failure_code.eq(code.filter(|c| !c.is_empty())),
            top_ups::failure_message.eq(message.filter(|m| !m.is_empty())),
            top_ups::ledger_transaction_id.eq(u.ledger_transaction_id.map(|t| t.uuid())),
            top_ups::updated_at.eq(u.now),
            top_ups::succeeded_at.eq(succeeded_at),
        ))
        .returning(TopUpRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Credits the wallet for a top-up (idempotent by the top-up as cause).
async fn credit_wallet(
    conn: &mut AsyncPgConnection,
    row: &TopUpRow,
    payment_intent_id: &str,
) -> Result<TransactionId, PaymentsError> {
    let amount = row.amount()?;
    let owner = row.driver_id.to_string();
    let tx = NewTransaction {
        kind: TransactionKind::TopUp,
        cause: Cause::new("top_up", row.id.to_string()),
        currency: amount.currency,
        description: match row.kind()? {
            TopUpKind::OnSession => "Card top-up".into(),
            TopUpKind::Auto => "Automatic card top-up".into(),
        },
        lines: ledger::top_up_lines(&owner, amount, Money::zero(amount.currency))?,
        metadata: serde_json::json!({ "payment_intent": payment_intent_id }),
    };
    match ledger::post(conn, tx).await {
        Ok(posted) => Ok(posted.id()),
        Err(e) => match e.already_posted() {
            Some(id) => Ok(id),
            None => Err(e.into()),
        },
    }
}

/// Tells the driver (SMS, and email when they gave one) that a top-up needs them, with a link to
/// finish it in the app. Each message is recorded once per top-up.
async fn notify_driver(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    row: &TopUpRow,
) -> Result<(), PaymentsError> {
    let driver = accounts::get_driver(conn, row.driver_id)
        .await
        .map_err(|e| anyhow::anyhow!("reading driver {}: {e}", row.driver_id))?;
    let vars = notifications::vars([
        ("amount", row.amount()?.to_string()),
        ("link", env.top_up_link(row.id)),
    ]);
    let mut recipients = vec![(
        notifications::Channel::Sms,
        driver.phone.as_str().to_owned(),
    )];
    if let Some(email) = &driver.email {
        recipients.push((notifications::Channel::Email, email.as_str().to_owned()));
    }
    for (channel, recipient) in recipients {
        notifications::enqueue_notification(
            conn,
            notifications::NewNotification {
                cause: format!("top_up_action_needed:{}:{channel}", row.id),
                channel,
                template: notifications::Template::TopUpActionNeeded,
                recipient,
                driver_id: Some(row.driver_id.uuid()),
                vars: vars.clone(),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("recording the top-up notification: {e}"))?;
    }
    Ok(())
}

/// One of the driver's top-ups.
///
/// Errors: `NOT_FOUND` (`topUpId`).
pub async fn get_top_up(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    id: TopUpId,
) -> Result<TopUp, PaymentsError> {
    match load_row(conn, id).await? {
        Some(row) if row.driver_id == driver_id => row.to_top_up(),
        _ => Err(PaymentsError::NotFound("topUpId")),
    }
}

/// A top-up by id, whoever's it is (ops, jobs).
///
/// Errors: `NOT_FOUND` (`topUpId`).
pub async fn find_top_up(
    conn: &mut AsyncPgConnection,
    id: TopUpId,
) -> Result<TopUp, PaymentsError> {
    load_row(conn, id)
        .await?
        .ok_or(PaymentsError::NotFound("topUpId"))?
        .to_top_up()
}

/// The driver's top-ups, newest first, at most `limit` (1 to 100).
pub async fn list_top_ups(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    limit: i64,
) -> Result<Vec<TopUp>, PaymentsError> {
    top_ups::table
        .filter(top_ups::driver_id.eq(driver_id))
        .order((top_ups::created_at.desc(), top_ups::id.desc()))
        .limit(limit.clamp(1, 100))
        .select(TopUpRow::as_select())
        .load(conn)
        .await?
        .iter()
        .map(TopUpRow::to_top_up)
        .collect()
}

/// The app reports that the driver finished (or gave up) 3-D Secure: re-reads the
/// PaymentIntent from Stripe and applies it (as the webhook would). Idempotent.
///
/// Errors: `NOT_FOUND` (`topUpId`); internal ones.
pub async fn refresh_top_up(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
    id: TopUpId,
) -> Result<TopUp, PaymentsError> {
    let top_up = get_top_up(conn, driver_id, id).await?;
    let Some(pi) = &top_up.payment_intent_id else {
        return Ok(top_up);
    };
    let intent = env.stripe.retrieve_payment_intent(pi).await?;
    let mut top_up = apply_intent(conn, env, id, &intent).await?;
    if matches!(
        top_up.status,
        TopUpStatus::RequiresAction | TopUpStatus::NeedsDriver
    ) {
        top_up.client_secret = intent.client_secret;
    }
    Ok(top_up)
}

/// The driver opens the link of a top-up that needs them: returns it with the client secret, so
/// the app can complete the payment on-session with Stripe's SDK (3-D Secure, or another
/// confirmation of the saved card). The result then arrives by webhook or [`refresh_top_up`].
///
/// Errors: `NOT_FOUND` (`topUpId`); internal ones.
pub async fn finish_top_up(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
    id: TopUpId,
) -> Result<TopUp, PaymentsError> {
    let top_up = refresh_top_up(conn, env, driver_id, id).await?;
    match (top_up.status, &top_up.payment_intent_id) {
        (TopUpStatus::NeedsDriver | TopUpStatus::RequiresAction, Some(_))
            if top_up.client_secret.is_some() =>
        {
            Ok(top_up)
        }
        (TopUpStatus::NeedsDriver | TopUpStatus::RequiresAction, Some(pi)) => {
            let mut top_up = top_up.clone();
            top_up.client_secret = env.stripe.retrieve_payment_intent(pi).await?.client_secret;
            Ok(top_up)
        }
        _ => Ok(top_up),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn intent(status: &str, error: Option<&str>) -> Intent {
        Intent {
            id: "pi_1".into(),
            status: status.into(),
            amount: 1000,
            currency: "gbp".into(),
            client_secret: None,
            customer: None,
            payment_method: None,
            last_error_code: error.map(str::to_owned),
            last_error_message: None,
            metadata: Default::default(),
        }
    }

    #[test]
    fn amounts_are_checked() {
        assert_eq!(
            validate_amount(Money::gbp(499)).unwrap_err().code(),
            Some("AMOUNT_TOO_SMALL")
        );
        assert!(validate_amount(Money::gbp(500)).is_ok());
        assert!(validate_amount(Money::gbp(25_000)).is_ok());
        assert_eq!(
            validate_amount(Money::gbp(25_001)).unwrap_err().code(),
            Some("AMOUNT_TOO_LARGE")
        );
        assert_eq!(
            validate_amount(Money {
                minor: 1000,
                currency: Currency::Eur
            })
            .unwrap_err()
            .code(),
            Some("UNSUPPORTED_CURRENCY")
        );
    }

    #[test]
    fn stripe_states_map_to_top_up_states() {
        use TopUpKind::*;
        use TopUpStatus::*;
        let ra = intent("requires_action", None);
        assert_eq!(next_status(OnSession, Created, &ra), RequiresAction);
        assert_eq!(next_status(Auto, Created, &ra), NeedsDriver);
        let declined = intent("requires_payment_method", Some("card_declined"));
        assert_eq!(next_status(OnSession, RequiresAction, &declined), Failed);
        assert_eq!(next_status(Auto, Created, &declined), NeedsDriver);
        assert_eq!(
            next_status(Auto, Created, &intent("requires_payment_method", None)),
            Created
        );
        let ok = intent("succeeded", None);
        assert_eq!(next_status(Auto, NeedsDriver, &ok), Succeeded);
        assert_eq!(next_status(OnSession, Failed, &ok), Succeeded);
        assert_eq!(next_status(OnSession, Succeeded, &ra), Succeeded);
        assert_eq!(
            next_status(OnSession, Succeeded, &intent("canceled", None)),
            Succeeded
        );
        assert_eq!(next_status(OnSession, Canceled, &ra), Canceled);
        assert_eq!(
            next_status(OnSession, Created, &intent("processing", None)),
            Created
        );
    }

    #[test]
    fn fingerprints_differ_by_amount_and_kind() {
        let a = fingerprint(TopUpKind::OnSession, Money::gbp(1000));
        assert_eq!(a.len(), 64);
        assert_ne!(a, fingerprint(TopUpKind::OnSession, Money::gbp(1001)));
        assert_ne!(a, fingerprint(TopUpKind::Auto, Money::gbp(1000)));
    }
}
