//! Payments mutations: saving and managing cards, topping up the wallet (3-D Secure handed back
//! to the app), automatic top-ups (drivers), and refunds (ops and finance).
//!
//! Amounts in inputs are integer minor units (pence) of the wallet's currency (GBP).

use super::{
    AutoTopUp, Payment, PaymentMethod, PaymentsLoader, Refund, not_found, payments_env,
    require_money_staff, user_errors,
};
use crate::errors::UserError;
use crate::guard;
use crate::relay::parse_global_id;
use accounts::{Actor, Principal};
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use payments::{PaymentMethodId, TopUpId};
use shared::Money;

fn gbp(minor: i32) -> Money {
    Money::gbp(i64::from(minor))
}

/// Result of `createCardSetup`.
#[derive(SimpleObject, Default)]
pub struct CreateCardSetupPayload {
    /// Stripe's SetupIntent (`seti_…`): confirm it with Stripe's SDK, then call
    /// `confirmCardSetup` with it.
    pub setup_intent_id: Option<String>,
    /// The SetupIntent's client secret, for Stripe's SDK.
    pub client_secret: Option<String>,
    /// The Stripe publishable key the SDK is initialised with.
    pub publishable_key: Option<String>,
    /// None yet; kept for the shape every payload has.
    pub user_errors: Vec<UserError>,
}

/// Input of `confirmCardSetup`.
#[derive(InputObject)]
pub struct ConfirmCardSetupInput {
    /// The SetupIntent the app confirmed (`seti_…`, from `createCardSetup`).
    pub setup_intent_id: String,
}

/// Result of `confirmCardSetup`.
#[derive(SimpleObject, Default)]
pub struct ConfirmCardSetupPayload {
    /// Stripe's status of the SetupIntent: `succeeded` once the card is saved;
    /// `requires_action` while 3-D Secure is pending.
    pub status: Option<String>,
    /// The saved card, once saved.
    pub payment_method: Option<PaymentMethod>,
    /// `NOT_FOUND` (`setupIntentId`), `CARD_DECLINED`.
    pub user_errors: Vec<UserError>,
}

/// Input of `setDefaultPaymentMethod` and `removePaymentMethod`.
#[derive(InputObject)]
pub struct PaymentMethodInput {
    /// The card's global id.
    pub payment_method_id: ID,
}

/// Result of `setDefaultPaymentMethod` and `removePaymentMethod`.
#[derive(SimpleObject, Default)]
pub struct PaymentMethodPayload {
    /// The card, as it now is.
    pub payment_method: Option<PaymentMethod>,
    /// `NOT_FOUND` (`paymentMethodId`).
    pub user_errors: Vec<UserError>,
}

/// Input of `topUpWallet`.
#[derive(InputObject)]
pub struct TopUpWalletInput {
    /// How much, in pence (£5.00 to £250.00).
    pub amount: i32,
    /// A key the app makes once per top-up the driver asks for (1 to 200 characters): sending the
    /// same request again (after a timeout) returns the same payment and never charges twice.
    pub idempotency_key: String,
}

/// Result of `topUpWallet`, `refreshTopUp` and `finishTopUp`.
#[derive(SimpleObject, Default)]
pub struct TopUpPayload {
    /// The payment: `SUCCEEDED` (the wallet is credited), `REQUIRES_ACTION` / `NEEDS_DRIVER` with
    /// a `clientSecret` for Stripe's SDK, or `FAILED` with the reason.
    pub payment: Option<Payment>,
    /// `AMOUNT_TOO_SMALL`, `AMOUNT_TOO_LARGE` (`amount`), `INVALID_IDEMPOTENCY_KEY`,
    /// `IDEMPOTENCY_KEY_REUSED` (`idempotencyKey`), `NO_PAYMENT_METHOD`, `NOT_FOUND`
    /// (`paymentId`).
    pub user_errors: Vec<UserError>,
}

/// Input of `refreshTopUp` and `finishTopUp`.
#[derive(InputObject)]
pub struct TopUpInput {
    /// The payment's global id.
    pub payment_id: ID,
}

/// Input of `setAutoTopUp`.
#[derive(InputObject)]
pub struct SetAutoTopUpInput {
    /// Whether to top up automatically (needs a saved card).
    pub enabled: bool,
    /// Top up when the wallet falls below this, in pence (0 to £100.00).
    pub threshold: i32,
    /// How much each automatic top-up adds, in pence (£5.00 to £250.00).
    pub amount: i32,
}

/// Result of `setAutoTopUp`.
#[derive(SimpleObject, Default)]
pub struct SetAutoTopUpPayload {
    /// The settings now in force.
    pub auto_top_up: Option<AutoTopUp>,
    /// `AMOUNT_TOO_SMALL`, `AMOUNT_TOO_LARGE` (`amount`), `INVALID_AUTO_TOP_UP` (`threshold`),
    /// `NO_PAYMENT_METHOD`.
    pub user_errors: Vec<UserError>,
}

/// Input of `refundPayment`.
#[derive(InputObject)]
pub struct RefundPaymentInput {
    /// The payment's global id.
    pub payment_id: ID,
    /// How much, in pence; omitted for everything still refundable.
    pub amount: Option<i32>,
    /// Why (1 to 500 characters): kept in the audit log and shown on the driver's statement.
    pub reason: String,
    /// A key the back office makes once per refund asked for (1 to 200 characters): the same
    /// request again returns the same refund and never refunds twice.
    pub idempotency_key: String,
}

/// Result of `refundPayment`.
#[derive(SimpleObject, Default)]
pub struct RefundPaymentPayload {
    /// The refund: `SUCCEEDED` once Stripe confirmed it and the ledger is reversed, `PENDING`
    /// while Stripe works on it, `FAILED` when Stripe refused it.
    pub refund: Option<Refund>,
    /// The payment refunded, with its refunds.
    pub payment: Option<Payment>,
    /// `REFUND_TOO_LARGE`, `INVALID_AMOUNT` (`amount`), `INVALID_REASON` (`reason`),
    /// `NOT_REFUNDABLE`, `NOT_FOUND` (`paymentId`), `INVALID_IDEMPOTENCY_KEY`,
    /// `IDEMPOTENCY_KEY_REUSED` (`idempotencyKey`).
    pub user_errors: Vec<UserError>,
}

/// Input of `adjustSessionCharge`.
#[derive(InputObject)]
pub struct AdjustSessionChargeInput {
    /// The cover session's global id (a charged one).
    pub session_id: ID,
    /// How much to give back, in pence; omitted for everything still refundable.
    pub refund_amount: Option<i32>,
    /// Why (1 to 500 characters): kept in the audit log and shown on the driver's statement.
    pub reason: String,
    /// A key the back office makes once per adjustment (1 to 200 characters).
    pub idempotency_key: String,
}

/// Result of `adjustSessionCharge`.
#[derive(SimpleObject, Default)]
pub struct AdjustSessionChargePayload {
    /// The refund of the charge, back to the driver's wallet.
    pub refund: Option<Refund>,
    /// `REFUND_TOO_LARGE`, `INVALID_AMOUNT` (`refundAmount`), `INVALID_REASON` (`reason`),
    /// `NOT_REFUNDABLE` (nothing charged or all given back), `NOT_FOUND` (`sessionId`),
    /// `INVALID_IDEMPOTENCY_KEY`, `IDEMPOTENCY_KEY_REUSED` (`idempotencyKey`).
    pub user_errors: Vec<UserError>,
}

/// The payments mutations.
#[derive(Default)]
pub struct PaymentsMutation;

#[Object]
impl PaymentsMutation {
    /// Starts saving a card: a Stripe SetupIntent whose client secret the app confirms with
    /// Stripe's SDK (3-D Secure when the bank asks). The card is saved when Stripe's webhook
    /// arrives or the app calls `confirmCardSetup`, whichever comes first. Drivers only.
    async fn create_card_setup(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<CreateCardSetupPayload> {
        let driver = guard::require_driver(ctx)?;
        let env = payments_env(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match payments::create_card_setup(&mut conn, &env, driver.driver_id).await {
            Ok(setup) => Ok(CreateCardSetupPayload {
                setup_intent_id: Some(setup.setup_intent_id),
                client_secret: setup.client_secret,
                publishable_key: Some(
                    crate::accounts::core(ctx)?
                        .settings
                        .stripe
                        .publishable_key
                        .clone(),
                ),
                user_errors: vec![],
            }),
            Err(e) => Ok(CreateCardSetupPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// The app reports that it confirmed a SetupIntent: re-reads it from Stripe and saves the
    /// card once it succeeded (idempotent; Stripe's webhook does the same). Drivers only.
    async fn confirm_card_setup(
        &self,
        ctx: &Context<'_>,
        input: ConfirmCardSetupInput,
    ) -> async_graphql::Result<ConfirmCardSetupPayload> {
        let driver = guard::require_driver(ctx)?;
        let id = input.setup_intent_id.trim();
        if id.is_empty() || id.len() > 255 {
            return Ok(ConfirmCardSetupPayload {
                user_errors: not_found("setupIntentId"),
                ..Default::default()
            });
        }
        let env = payments_env(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match payments::confirm_card_setup(&mut conn, &env, driver.driver_id, id).await {
            Ok(setup) => Ok(ConfirmCardSetupPayload {
                status: Some(setup.status),
                payment_method: setup
                    .payment_method
                    .map(|m| PaymentMethod::new(m, guard::principal(ctx).clone())),
                user_errors: vec![],
            }),
            Err(e) => Ok(ConfirmCardSetupPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// Makes one of the driver's cards the one top-ups charge. Drivers only.
    async fn set_default_payment_method(
        &self,
        ctx: &Context<'_>,
        input: PaymentMethodInput,
    ) -> async_graphql::Result<PaymentMethodPayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(id) =
            parse_global_id::<PaymentMethodId>(&input.payment_method_id, "PaymentMethod")
        else {
            return Ok(PaymentMethodPayload {
                user_errors: not_found("paymentMethodId"),
                ..Default::default()
            });
        };
        let mut conn = crate::accounts::conn(ctx).await?;
        match payments::set_default_payment_method(&mut conn, driver.driver_id, id).await {
            Ok(m) => Ok(PaymentMethodPayload {
                payment_method: Some(PaymentMethod::new(m, guard::principal(ctx).clone())),
                user_errors: vec![],
            }),
            Err(e) => Ok(PaymentMethodPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// Removes one of the driver's cards: it is detached at Stripe and never charged again; when
    /// it was the default, the newest remaining card becomes the default. Drivers only.
    async fn remove_payment_method(
        &self,
        ctx: &Context<'_>,
        input: PaymentMethodInput,
    ) -> async_graphql::Result<PaymentMethodPayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(id) =
            parse_global_id::<PaymentMethodId>(&input.payment_method_id, "PaymentMethod")
        else {
            return Ok(PaymentMethodPayload {
                user_errors: not_found("paymentMethodId"),
                ..Default::default()
            });
        };
        let env = payments_env(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match payments::remove_payment_method(&mut conn, &env, driver.driver_id, id).await {
            Ok(m) => Ok(PaymentMethodPayload {
                payment_method: Some(PaymentMethod::new(m, guard::principal(ctx).clone())),
                user_errors: vec![],
            }),
            Err(e) => Ok(PaymentMethodPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// Tops up the driver's wallet from their default card, now. The payment comes back
    /// `SUCCEEDED`, `REQUIRES_ACTION` with a `clientSecret` for 3-D Secure (then call
    /// `refreshTopUp`; Stripe's webhook also completes it), or `FAILED`. Drivers only.
    async fn top_up_wallet(
        &self,
        ctx: &Context<'_>,
        input: TopUpWalletInput,
    ) -> async_graphql::Result<TopUpPayload> {
        let driver = guard::require_driver(ctx)?;
        // Bounds and the key are checked before anything is read or Stripe is asked.
        let amount = gbp(input.amount);
        if let Err(e) = payments::validate_amount(amount) {
            return Ok(TopUpPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            });
        }
        let env = payments_env(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let result = payments::top_up_wallet(
            &mut conn,
            &env,
            driver.driver_id,
            amount,
            &input.idempotency_key,
        )
        .await;
        top_up_payload(ctx, result)
    }

    /// The app reports that the driver finished (or gave up) 3-D Secure: re-reads the payment
    /// from Stripe and credits the wallet once it succeeded (idempotent; Stripe's webhook does
    /// the same). Drivers only, on their own payments.
    async fn refresh_top_up(
        &self,
        ctx: &Context<'_>,
        input: TopUpInput,
    ) -> async_graphql::Result<TopUpPayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(id) = parse_global_id::<TopUpId>(&input.payment_id, "Payment") else {
            return Ok(TopUpPayload {
                user_errors: not_found("paymentId"),
                ..Default::default()
            });
        };
        let env = payments_env(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let result = payments::refresh_top_up(&mut conn, &env, driver.driver_id, id).await;
        top_up_payload(ctx, result)
    }

    /// The driver opens a payment that waits for them (an automatic top-up the bank wanted them
    /// to authenticate, from the link in their SMS or email): returns it with the `clientSecret`
    /// to complete it with Stripe's SDK, then call `refreshTopUp`. Drivers only, on their own
    /// payments.
    async fn finish_top_up(
        &self,
        ctx: &Context<'_>,
        input: TopUpInput,
    ) -> async_graphql::Result<TopUpPayload> {
        let driver = guard::require_driver(ctx)?;
        let Some(id) = parse_global_id::<TopUpId>(&input.payment_id, "Payment") else {
            return Ok(TopUpPayload {
                user_errors: not_found("paymentId"),
                ..Default::default()
            });
        };
        let env = payments_env(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let result = payments::finish_top_up(&mut conn, &env, driver.driver_id, id).await;
        top_up_payload(ctx, result)
    }

    /// Sets the driver's automatic top-up: when enabled, `amount` is charged to the default card
    /// whenever the wallet falls below `threshold` (checked at once). Drivers only.
    async fn set_auto_top_up(
        &self,
        ctx: &Context<'_>,
        input: SetAutoTopUpInput,
    ) -> async_graphql::Result<SetAutoTopUpPayload> {
        let driver = guard::require_driver(ctx)?;
        let env = payments_env(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        match payments::set_auto_top_up(
            &mut conn,
            &env,
            driver.driver_id,
            input.enabled,
            gbp(input.threshold),
            gbp(input.amount),
        )
        .await
        {
            Ok(settings) => Ok(SetAutoTopUpPayload {
                auto_top_up: Some(settings.into()),
                user_errors: vec![],
            }),
            Err(e) => Ok(SetAutoTopUpPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }

    /// Refunds a payment to the driver's card, in part or whole (ops, finance and admin). Once
    /// Stripe confirms, the ledger reverses the top-up for the amount. No more than what is left
    /// of the payment, and no more than the wallet still holds, can be refunded.
    async fn refund_payment(
        &self,
        ctx: &Context<'_>,
        input: RefundPaymentInput,
    ) -> async_graphql::Result<RefundPaymentPayload> {
        let staff = require_money_staff(ctx)?;
        let Some(id) = parse_global_id::<TopUpId>(&input.payment_id, "Payment") else {
            return Ok(RefundPaymentPayload {
                user_errors: not_found("paymentId"),
                ..Default::default()
            });
        };
        let env = payments_env(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let request = payments::KeyedRefundRequest {
            target: payments::RefundTarget::TopUp(id),
            amount: input.amount.map(gbp),
            reason: input.reason,
            actor: Actor::Staff(staff.staff_id),
            idempotency_key: input.idempotency_key,
        };
        match payments::refund_with_key(&mut conn, &env, request).await {
            Ok(refund) => {
                let viewer: Principal = guard::principal(ctx).clone();
                let loader = PaymentsLoader::shared(ctx)?;
                let payment = payments::find_top_up(&mut conn, id)
                    .await
                    .ok()
                    .map(|t| Payment::new(t, viewer.clone(), loader.clone()));
                Ok(RefundPaymentPayload {
                    refund: Some(Refund::new(refund, viewer, loader)),
                    payment,
                    user_errors: vec![],
                })
            }
            Err(e) => Ok(RefundPaymentPayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }
}

#[Object]
impl PaymentsAdjustMutation {
    /// Lowers what a driver paid for a cover session (ops, finance and admin): the amount goes
    /// back to the driver's wallet as a refund of the session's charge, and the ledger reverses
    /// the charge's premium, commission and IPT in proportion.
    async fn adjust_session_charge(
        &self,
        ctx: &Context<'_>,
        input: AdjustSessionChargeInput,
    ) -> async_graphql::Result<AdjustSessionChargePayload> {
        let staff = require_money_staff(ctx)?;
        let Some(id) = parse_global_id::<cover::CoverSessionId>(&input.session_id, "CoverSession")
        else {
            return Ok(AdjustSessionChargePayload {
                user_errors: not_found("sessionId"),
                ..Default::default()
            });
        };
        let env = payments_env(ctx)?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let request = payments::KeyedRefundRequest {
            target: payments::RefundTarget::SessionCharge(id),
            amount: input.refund_amount.map(gbp),
            reason: input.reason,
            actor: Actor::Staff(staff.staff_id),
            idempotency_key: input.idempotency_key,
        };
        match payments::refund_with_key(&mut conn, &env, request).await {
            Ok(refund) => Ok(AdjustSessionChargePayload {
                refund: Some(Refund::new(
                    refund,
                    guard::principal(ctx).clone(),
                    PaymentsLoader::shared(ctx)?,
                )),
                user_errors: vec![],
            }),
            Err(e) => Ok(AdjustSessionChargePayload {
                user_errors: user_errors(ctx, e)?,
                ..Default::default()
            }),
        }
    }
}

/// Staff changes to what a driver paid for cover.
#[derive(Default)]
pub struct PaymentsAdjustMutation;

fn top_up_payload(
    ctx: &Context<'_>,
    result: Result<payments::TopUp, payments::PaymentsError>,
) -> async_graphql::Result<TopUpPayload> {
    match result {
        Ok(top_up) => Ok(TopUpPayload {
            payment: Some(Payment::new(
                top_up,
                guard::principal(ctx).clone(),
                PaymentsLoader::shared(ctx)?,
            )),
            user_errors: vec![],
        }),
        Err(e) => Ok(TopUpPayload {
            user_errors: user_errors(ctx, e)?,
            ..Default::default()
        }),
    }
}
