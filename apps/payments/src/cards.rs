//! Saving cards: the driver's Stripe customer, SetupIntents, and the saved payment methods.
//!
//! A card is saved in three steps: [`create_card_setup`] makes a SetupIntent (and, the first
//! time, the driver's Stripe customer) and hands its client secret to the app; the app confirms
//! it with Stripe's SDK (3-D Secure when the bank asks); then either the app reports it done
//! ([`confirm_card_setup`]) or the `setup_intent.succeeded` webhook arrives. Both re-read the
//! SetupIntent from Stripe and store the card through one idempotent function, so whichever comes
//! first saves it and the other changes nothing.
//!
//! Invariants:
//! - Stripe is called outside database transactions; each write to Stripe carries an
//!   idempotency key derived from our ids;
//! - a driver has at most one default card; the first card saved becomes the default, and
//!   removing the default promotes the newest remaining card;
//! - a removed card is detached at Stripe, so it can never be charged again.

use crate::env::PaymentsEnv;
use crate::error::PaymentsError;
use crate::ids::{CardSetupId, PaymentMethodId};
use crate::schema::{card_setups, payment_methods, stripe_customers};
use crate::stripe::{Setup, StripeFailure};
use accounts::DriverId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

/// A saved card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Queryable, Selectable)]
#[diesel(table_name = payment_methods)]
pub struct PaymentMethod {
    /// Ours (`pmt_…`).
    pub id: PaymentMethodId,
    /// Whose card.
    pub driver_id: DriverId,
    /// Stripe's (`pm_…`).
    pub stripe_payment_method_id: String,
    /// `visa`, `mastercard`, …
    pub brand: String,
    /// The last four digits.
    pub last4: String,
    /// Expiry month.
    pub exp_month: i32,
    /// Expiry year.
    pub exp_year: i32,
    /// `active` or `removed`.
    pub status: String,
    /// Whether top-ups charge this card.
    pub is_default: bool,
    /// When it was saved.
    pub created_at: DateTime<Utc>,
    /// When it was removed.
    pub removed_at: Option<DateTime<Utc>>,
}

/// One attempt to save a card, with what the app needs to confirm it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardSetup {
    /// Ours (`cset_…`).
    pub id: CardSetupId,
    /// Whose card.
    pub driver_id: DriverId,
    /// Stripe's SetupIntent (`seti_…`).
    pub setup_intent_id: String,
    /// Stripe's status of it, as last read.
    pub status: String,
    /// For the app's Stripe SDK; present when just read from Stripe, never stored.
    pub client_secret: Option<String>,
    /// The card saved, once it succeeded.
    pub payment_method: Option<PaymentMethod>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = card_setups)]
struct CardSetupRow {
    id: CardSetupId,
    driver_id: DriverId,
    setup_intent_id: String,
    status: String,
    payment_method_id: Option<PaymentMethodId>,
}

const SETUP_STATUSES: [&str; 6] = [
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "succeeded",
    "canceled",
];

/// The driver's Stripe customer id, if one was made.
pub async fn stripe_customer_id(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Option<String>, PaymentsError> {
    Ok(stripe_customers::table
        .find(driver_id)
        .select(stripe_customers::stripe_customer_id)
        .first(conn)
        .await
        .optional()?)
}

/// The driver's Stripe customer, made on first use. Two racing calls send the same idempotency
/// key, so Stripe makes one customer and both store the same id.
pub async fn ensure_stripe_customer(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
) -> Result<String, PaymentsError> {
    if let Some(id) = stripe_customer_id(conn, driver_id).await? {
        return Ok(id);
    }
    let driver = accounts::get_driver(conn, driver_id)
        .await
        .map_err(|e| match e.user_error() {
            Some(_) => PaymentsError::NotFound("driverId"),
            None => PaymentsError::Internal(anyhow::anyhow!("reading driver: {e}")),
        })?;
    let email = driver.email.as_ref().map(|e| e.as_str().to_owned());
    let customer = env
        .stripe
        .create_customer(
            &driver_id.to_string(),
            email.as_deref(),
            &format!("customer:{driver_id}"),
        )
        .await?;
    diesel::insert_into(stripe_customers::table)
        .values((
            stripe_customers::driver_id.eq(driver_id),
            stripe_customers::stripe_customer_id.eq(&customer),
            stripe_customers::created_at.eq(env.clock.now()),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    stripe_customer_id(conn, driver_id)
        .await?
        .ok_or_else(|| PaymentsError::Internal(anyhow::anyhow!("customer row vanished")))
}

/// Starts saving a card: a SetupIntent for off-session use whose client secret the app confirms
/// with Stripe's SDK. Makes the driver's Stripe customer the first time.
///
/// Errors: `NOT_FOUND` (`driverId`); internal ones (Stripe unavailable).
pub async fn create_card_setup(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
) -> Result<CardSetup, PaymentsError> {
    let customer = ensure_stripe_customer(conn, env, driver_id).await?;
    let id = CardSetupId::new();
    let setup = env
        .stripe
        .create_setup_intent(
            &customer,
            vec![
                ("driver_id", driver_id.to_string()),
                ("card_setup_id", id.to_string()),
            ],
            &format!("card_setup:{id}"),
        )
        .await?;
    let status = known_setup_status(&setup.status)?;
    let now = env.clock.now();
    diesel::insert_into(card_setups::table)
        .values((
            card_setups::id.eq(id),
            card_setups::driver_id.eq(driver_id),
            card_setups::setup_intent_id.eq(&setup.id),
            card_setups::status.eq(status),
            card_setups::created_at.eq(now),
            card_setups::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    tracing::info!(card_setup_id = %id, %driver_id, setup_intent = %setup.id, "card setup created");
    Ok(CardSetup {
        id,
        driver_id,
        setup_intent_id: setup.id,
        status: status.to_owned(),
        client_secret: setup.client_secret,
        payment_method: None,
    })
}

fn known_setup_status(status: &str) -> Result<&'static str, PaymentsError> {
    SETUP_STATUSES
        .into_iter()
        .find(|s| *s == status)
        .ok_or_else(|| {
            PaymentsError::Stripe(StripeFailure::Unreadable(format!(
                "unknown SetupIntent status {status:?}"
            )))
        })
}

/// The app reports that it confirmed a SetupIntent: re-reads it from Stripe and, when it has
/// succeeded, stores the card (idempotent; the `setup_intent.succeeded` webhook does the same).
///
/// Errors: `NOT_FOUND` (`setupIntentId`) when it is not one of this driver's; `CARD_DECLINED`
/// when Stripe cancelled it; internal ones.
pub async fn confirm_card_setup(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
    setup_intent_id: &str,
) -> Result<CardSetup, PaymentsError> {
    let row = find_setup(conn, setup_intent_id).await?;
    if row.as_ref().map(|r| r.driver_id) != Some(driver_id) {
        return Err(PaymentsError::NotFound("setupIntentId"));
    }
    let setup = env.stripe.retrieve_setup_intent(setup_intent_id).await?;
    let stored = sync_setup_intent(conn, env, &setup).await?;
    let mut stored = stored.ok_or(PaymentsError::NotFound("setupIntentId"))?;
    stored.client_secret = setup.client_secret;
    if stored.status == "canceled" {
        return Err(PaymentsError::CardDeclined {
            code: None,
            message: "The card could not be saved. Try another card.".into(),
        });
    }
    Ok(stored)
}

async fn find_setup(
    conn: &mut AsyncPgConnection,
    setup_intent_id: &str,
) -> Result<Option<CardSetupRow>, PaymentsError> {
    Ok(card_setups::table
        .filter(card_setups::setup_intent_id.eq(setup_intent_id))
        .select(CardSetupRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Brings our record of a SetupIntent in line with Stripe's (as just read) and stores its card
/// when it has succeeded. Returns `None` when the SetupIntent is not one of ours.
pub(crate) async fn sync_setup_intent(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    setup: &Setup,
) -> Result<Option<CardSetup>, PaymentsError> {
    let Some(row) = find_setup(conn, &setup.id).await? else {
        return Ok(None);
    };
    let status = known_setup_status(&setup.status)?;
    // The card's details come from Stripe, read before the transaction opens.
    let card = match (&setup.payment_method, status) {
        (Some(pm), "succeeded") if row.payment_method_id.is_none() => {
            Some(env.stripe.retrieve_card(pm).await?)
        }
        _ => None,
    };
    let now = env.clock.now();
    let row = &row;
    let card = &card;
    let (setup_row, method) = conn
        .transaction::<_, PaymentsError, _>(async |conn| {
            let locked: CardSetupRow = card_setups::table
                .find(row.id)
                .select(CardSetupRow::as_select())
                .for_update()
                .first(conn)
                .await?;
            let mut payment_method_id = locked.payment_method_id;
            if payment_method_id.is_none()
                && let Some(card) = card
            {
                payment_method_id = Some(store_card(conn, locked.driver_id, card, now).await?);
            }
            // Once succeeded, a setup stays succeeded (a stale read cannot undo it).
            let new_status = if locked.status == "succeeded" {
                "succeeded"
            } else if status == "succeeded" && payment_method_id.is_none() {
                // Succeeded without a card to store: keep the last status until one is read.
                SETUP_STATUSES
                    .into_iter()
                    .find(|s| *s == locked.status)
                    .unwrap_or("processing")
            } else {
                status
            };
            let updated: CardSetupRow = diesel::update(card_setups::table.find(locked.id))
                .set((
                    card_setups::status.eq(new_status),
                    card_setups::payment_method_id.eq(payment_method_id),
                    card_setups::updated_at.eq(now),
                ))
                .returning(CardSetupRow::as_returning())
                .get_result(conn)
                .await?;
            let method = match updated.payment_method_id {
                Some(id) => payment_methods::table
                    .find(id)
                    .select(PaymentMethod::as_select())
                    .first(conn)
                    .await
                    .optional()?,
                None => None,
            };
            Ok((updated, method))
        })
        .await?;
    Ok(Some(CardSetup {
        id: setup_row.id,
        driver_id: setup_row.driver_id,
        setup_intent_id: setup_row.setup_intent_id,
        status: setup_row.status,
        client_secret: None,
        payment_method: method,
    }))
}

/// Stores a card once (by Stripe's id); the driver's first active card becomes the default.
async fn store_card(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    card: &crate::stripe::Card,
    now: DateTime<Utc>,
) -> Result<PaymentMethodId, PaymentsError> {
    if let Some(existing) = payment_methods::table
        .filter(payment_methods::stripe_payment_method_id.eq(&card.id))
        .select((payment_methods::id, payment_methods::driver_id))
        .first::<(PaymentMethodId, DriverId)>(conn)
        .await
        .optional()?
    {
        if existing.1 != driver_id {
            return Err(PaymentsError::Internal(anyhow::anyhow!(
                "payment method {} belongs to another driver",
                card.id
            )));
        }
        return Ok(existing.0);
    }
    let has_default: bool = diesel::select(diesel::dsl::exists(
        payment_methods::table
            .filter(payment_methods::driver_id.eq(driver_id))
            .filter(payment_methods::is_default),
    ))
    .get_result(conn)
    .await?;
    let id = PaymentMethodId::new();
    let brand: String = card.brand.chars().take(40).collect();
    diesel::insert_into(payment_methods::table)
        .values((
            payment_methods::id.eq(id),
            payment_methods::driver_id.eq(driver_id),
            payment_methods::stripe_payment_method_id.eq(&card.id),
            payment_methods::brand.eq(if brand.is_empty() {
                "unknown".into()
            } else {
                brand
            }),
            payment_methods::last4.eq(&card.last4),
            payment_methods::exp_month.eq(card.exp_month),
            payment_methods::exp_year.eq(card.exp_year),
            payment_methods::status.eq("active"),
            payment_methods::is_default.eq(!has_default),
            payment_methods::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    shared::audit::record(
        conn,
        &shared::audit::AuditEntry {
            actor_type: shared::audit::ActorType::Driver,
            actor_id: Some(driver_id.to_string()),
            action: "payment_method.saved",
            subject_type: "payment_method",
            subject_id: id.to_string(),
            reason: None,
            details: serde_json::json!({ "brand": card.brand, "last4": card.last4 }),
        },
    )
    .await?;
    tracing::info!(payment_method_id = %id, %driver_id, "card saved");
    Ok(id)
}

/// The driver's active cards, the default first, then newest first.
pub async fn payment_methods(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Vec<PaymentMethod>, PaymentsError> {
    Ok(payment_methods::table
        .filter(payment_methods::driver_id.eq(driver_id))
        .filter(payment_methods::status.eq("active"))
        .order((
            payment_methods::is_default.desc(),
            payment_methods::created_at.desc(),
            payment_methods::id.desc(),
        ))
        .select(PaymentMethod::as_select())
        .load(conn)
        .await?)
}

/// The card top-ups charge, if the driver has one.
pub async fn default_payment_method(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
) -> Result<Option<PaymentMethod>, PaymentsError> {
    Ok(payment_methods::table
        .filter(payment_methods::driver_id.eq(driver_id))
        .filter(payment_methods::is_default)
        .select(PaymentMethod::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// One saved card of a driver (active or removed).
///
/// Errors: `NOT_FOUND` (`paymentMethodId`).
pub async fn get_payment_method(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    id: PaymentMethodId,
) -> Result<PaymentMethod, PaymentsError> {
    payment_methods::table
        .find(id)
        .filter(payment_methods::driver_id.eq(driver_id))
        .select(PaymentMethod::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(PaymentsError::NotFound("paymentMethodId"))
}

/// A saved card by id, whoever's it is (ops, the API's `node`; the caller checks who may see it).
///
/// Errors: `NOT_FOUND` (`paymentMethodId`).
pub async fn find_payment_method(
    conn: &mut AsyncPgConnection,
    id: PaymentMethodId,
) -> Result<PaymentMethod, PaymentsError> {
    payment_methods::table
        .find(id)
        .select(PaymentMethod::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(PaymentsError::NotFound("paymentMethodId"))
}

/// Removes a saved card: it is no longer shown or charged, and it is detached at Stripe. When it
/// was the default, the newest remaining card becomes the default. Removing a removed card only
/// retries the detach.
///
/// Errors: `NOT_FOUND` (`paymentMethodId`); internal ones (Stripe unavailable: the card is
/// removed here already and the call can be repeated to detach it).
pub async fn remove_payment_method(
    conn: &mut AsyncPgConnection,
    env: &PaymentsEnv,
    driver_id: DriverId,
    id: PaymentMethodId,
) -> Result<PaymentMethod, PaymentsError> {
    let now = env.clock.now();
    let removed = conn
        .transaction::<_, PaymentsError, _>(async |conn| {
            let card: PaymentMethod = payment_methods::table
                .find(id)
                .filter(payment_methods::driver_id.eq(driver_id))
                .select(PaymentMethod::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?
                .ok_or(PaymentsError::NotFound("paymentMethodId"))?;
            if card.status == "removed" {
                return Ok(card);
            }
            let removed: PaymentMethod = diesel::update(payment_methods::table.find(id))
                .set((
                    payment_methods::status.eq("removed"),
                    payment_methods::is_default.eq(false),
                    payment_methods::removed_at.eq(Some(now)),
                ))
                .returning(PaymentMethod::as_returning())
                .get_result(conn)
                .await?;
            if card.is_default {
                let next: Option<PaymentMethodId> = payment_methods::table
                    .filter(payment_methods::driver_id.eq(driver_id))
                    .filter(payment_methods::status.eq("active"))
                    .order((
                        payment_methods::created_at.desc(),
                        payment_methods::id.desc(),
                    ))
                    .select(payment_methods::id)
                    .first(conn)
                    .await
                    .optional()?;
                if let Some(next) = next {
                    diesel::update(payment_methods::table.find(next))
                        .set(payment_methods::is_default.eq(true))
                        .execute(conn)
                        .await?;
                }
            }
            shared::audit::record(
                conn,
                &shared::audit::AuditEntry {
                    actor_type: shared::audit::ActorType::Driver,
                    actor_id: Some(driver_id.to_string()),
                    action: "payment_method.removed",
                    subject_type: "payment_method",
                    subject_id: id.to_string(),
                    reason: None,
                    details: serde_json::json!({}),
                },
            )
            .await?;
            Ok(removed)
        })
        .await?;
    env.stripe
        .detach_payment_method(&removed.stripe_payment_method_id, &format!("detach:{id}"))
        .await
        .or_else(|e| match e {
            // Already detached (or never attached): nothing left to do.
            StripeFailure::Rejected { .. } => Ok(()),
            other => Err(other),
        })?;
    Ok(removed)
}

/// Makes one of the driver's active cards the default.
///
/// Errors: `NOT_FOUND` (`paymentMethodId`), also for a removed card.
pub async fn set_default_payment_method(
    conn: &mut AsyncPgConnection,
    driver_id: DriverId,
    id: PaymentMethodId,
) -> Result<PaymentMethod, PaymentsError> {
    conn.transaction::<_, PaymentsError, _>(async |conn| {
        let card = get_payment_method(conn, driver_id, id).await?;
        if card.status != "active" {
            return Err(PaymentsError::NotFound("paymentMethodId"));
        }
        diesel::update(
            payment_methods::table
                .filter(payment_methods::driver_id.eq(driver_id))
                .filter(payment_methods::is_default),
        )
        .set(payment_methods::is_default.eq(false))
        .execute(conn)
        .await?;
        Ok(diesel::update(payment_methods::table.find(id))
            .set(payment_methods::is_default.eq(true))
            .returning(PaymentMethod::as_returning())
            .get_result(conn)
            .await?)
    })
    .await
}
