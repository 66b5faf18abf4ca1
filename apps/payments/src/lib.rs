//! Payments: saved cards, the prepaid wallet and its top-ups, paying for cover, Stripe webhooks
//! and refunds.
//!
//! - [`cards`]: save a card with a Stripe SetupIntent ([`create_card_setup`],
//!   [`confirm_card_setup`]); list and remove saved cards.
//! - [`top_ups`]: [`top_up_wallet`] on-session (3-D Secure handed back to the app as
//!   `requires_action`), [`refresh_top_up`] and [`finish_top_up`]; [`apply_intent`] is the one
//!   place a PaymentIntent's state reaches a top-up and the wallet is credited, once.
//! - [`auto_top_up`]: [`set_auto_top_up`], [`maybe_schedule_auto_top_up`] and the off-session
//!   [`ChargeAutoTopUp`] job; a card that needs the driver makes the top-up `needs_driver` and
//!   the driver is told by SMS and email.
//! - [`holds`]: what is promised out of a wallet, and the available balance
//!   ([`wallet_position`]: posted − holds); [`lock_wallet`], taken by every spender.
//! - [`overdraft`]: [`enforce_overdraft`], ending running sessions at the overdraft limit.
//! - [`limbo`]: [`sweep_limbo`], finishing refunds, charges and top-ups left unfinished, and
//!   [`unresolved`], what is still unfinished.
//! - [`wallet`]: the balance, [`charge_session`] (a session's charge posted to the ledger once),
//!   [`WalletFunds`] (cover's [`cover::FundsCheck`]), the overdraft limit and suspension for lack
//!   of funds.
//! - [`webhooks`]: [`verify_stripe_signature`], [`record_event`] and [`apply_stripe_event`].
//! - [`refunds`]: [`refund`] a top-up (to the card) or a session charge (to the wallet);
//!   [`refund_with_key`] once per client idempotency key.
//! - [`refund_sync`]: Stripe's refunds of a top-up applied from webhooks: ours settled, those
//!   made in the Stripe dashboard booked, those that failed after succeeding undone.
//! - [`chargebacks`]: Stripe disputes on top-ups: held, withdrawn from the wallet (which may go
//!   negative), reinstated; fees booked; enrolments suspended while in chargeback debt;
//!   [`chargeback_holds`] for the available balance.
//! - [`checks`]: [`check_wallets`], every wallet against its entries and every top-up and refund
//!   against the ledger (finance, the test suite's closing check).
//! - [`history`]: the wallet's ledger entries and the driver's top-ups, a page at a time.
//! - [`stripe`]: the Stripe API as used here, over async-stripe, with an `Idempotency-Key` on
//!   every write.
//! - [`jobs`]: the job payloads and handlers the workers register.
//!
//! Invariants across the crate:
//! - plain Rust: service functions take a connection, a [`PaymentsEnv`] (Stripe client, clock,
//!   public URL) and typed inputs, and return typed results or [`PaymentsError`];
//! - money is integer minor units; every money movement is a ledger transaction posted through
//!   the ledger app with our row as its cause, so it happens once whatever retries;
//! - Stripe is never called inside a database transaction, and every Stripe write carries an
//!   idempotency key derived from our row ids;
//! - this crate writes only its own tables (`stripe_customers`, `payment_methods`, `card_setups`,
//!   `top_ups`, `auto_top_up_settings`, `stripe_events`, `refunds`, `chargebacks`) plus the kernel's outbox and
//!   audit log; the ledger, cover (suspend, reactivate, mark charged) and notifications are
//!   changed through their apps' public functions.

pub mod auto_top_up;
pub mod cards;
pub mod chargebacks;
pub mod checks;
pub mod env;
pub mod error;
pub mod history;
pub mod holds;
pub mod ids;
pub mod jobs;
pub mod limbo;
pub mod overdraft;
pub mod refund_sync;
pub mod refunds;
pub mod schema;
pub mod stripe;
pub mod top_ups;
pub mod wallet;
pub mod webhooks;

pub use auto_top_up::{
    AutoTopUp, ChargeAutoTopUp, MAX_THRESHOLD, Prospect, STUCK_AFTER_MINUTES, auto_top_up,
    auto_top_up_available, charge_auto_top_up, maybe_schedule_auto_top_up,
    schedule_due_auto_top_ups, set_auto_top_up, top_up_prospect, waiting_auto_top_up,
};
pub use cards::{
    CardSetup, PaymentMethod, confirm_card_setup, create_card_setup, default_payment_method,
    ensure_stripe_customer, find_payment_method, get_payment_method, payment_methods,
    remove_payment_method, set_default_payment_method, stripe_customer_id,
};
pub use chargebacks::{
    CHARGEBACK_SUSPEND_REASON, Chargeback, chargeback_holds, chargebacks_of_driver,
    ensure_not_disputed, list_chargebacks, review_chargeback_debt,
};
pub use checks::{WalletReport, check_wallets};
pub use env::PaymentsEnv;
pub use error::PaymentsError;
pub use history::{
    TopUpPage, WalletEntry, WalletEntryKind, WalletPage, get_top_ups, list_top_ups_page,
    wallet_history,
};
pub use holds::{Hold, HoldKind, WalletPosition, lock_wallet, wallet_position};
pub use ids::{CardSetupId, ChargebackId, PaymentMethodId, RefundId, StripeEventRowId, TopUpId};
pub use jobs::{
    ChargeSession, JOB_TYPES, ScheduleDueAutoTopUps, run_apply_stripe_event,
    run_charge_auto_top_up, run_charge_session, run_enforce_overdraft,
    run_schedule_due_auto_top_ups, run_sweep_payments_limbo,
};
pub use limbo::{LimboSweep, SweepPaymentsLimbo, sweep_limbo, unresolved};
pub use overdraft::{EnforceOverdraft, OverdraftReview, WARNING_BP, enforce_overdraft};
pub use refund_sync::OUTSIDE_REFUND_REASON;
pub use refunds::{
    KeyedRefundRequest, Refund, RefundRequest, RefundStatus, RefundTarget, get_refund,
    list_refunds, refund, refund_with_key, refundable_amount, refunds_of_top_ups, retry_refund,
};
pub use stripe::{StripeApi, StripeFailure};
pub use top_ups::{
    MAX_TOP_UP, MIN_TOP_UP, TopUp, TopUpKind, TopUpStatus, apply_intent, find_top_up,
    finish_top_up, get_top_up, list_top_ups, refresh_top_up, top_up_wallet, validate_amount,
};
pub use wallet::{
    OVERDRAFT_LIMIT, SUSPEND_REASON, SessionCharged, WalletFunds, charge_session, review_funding,
    spendable, wallet_balance,
};
pub use webhooks::{
    ApplyStripeEvent, EventOutcome, RecordedEvent, SignatureError, StripeEvent, apply_stripe_event,
    flagged_events, get_event, record_event, sign_stripe_payload, verify_stripe_signature,
};
