//! The Stripe API as this app uses it: a thin layer over async-stripe that sends an
//! `Idempotency-Key` with every write and turns Stripe's objects and errors into the few facts
//! the payments code decides on.
//!
//! Invariants:
//! - every write (customer, SetupIntent, PaymentIntent, detach, refund, refund metadata) carries an
//!   `Idempotency-Key` derived from one of our row ids, so a retry after a timeout or a crash gets
//!   Stripe's first answer back instead of a second charge;
//! - the base URL comes from settings (`stripe.base_url`): localstripe in tests and development;
//! - no Stripe object leaves this module: callers see [`Intent`], [`Setup`], [`Card`],
//!   [`StripeRefund`], [`StripeDispute`] and [`StripeFailure`].

use shared::settings::StripeSettings;
use shared::{Currency, Money};
use std::collections::HashMap;
use std::time::Duration;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_core::customer::CreateCustomer;
use stripe_core::dispute::RetrieveDispute;
use stripe_core::payment_intent::{
    CancelPaymentIntent, CreatePaymentIntent, CreatePaymentIntentOffSession, ListPaymentIntent,
    RetrievePaymentIntent,
};
use stripe_core::refund::{CreateRefund, ListRefund, RetrieveRefund, UpdateRefund};
use stripe_core::setup_intent::{CreateSetupIntent, CreateSetupIntentUsage, RetrieveSetupIntent};
use stripe_payment::payment_method::{DetachPaymentMethod, RetrievePaymentMethod};

/// How long one request to Stripe may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a Stripe call did not give the object asked for.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StripeFailure {
    /// The card was declined or needs its holder (`card_error`, HTTP 402). Carries the
    /// PaymentIntent when Stripe sent it with the error (confirming one does).
    #[error("card error {code:?}: {message}")]
    Card {
        /// Stripe's error code, e.g. `card_declined`, `authentication_required`.
        code: Option<String>,
        /// The issuer's reason, e.g. `insufficient_funds`.
        decline_code: Option<String>,
        /// Stripe's message, fit to show the driver.
        message: String,
        /// The PaymentIntent as it stands after the failure.
        intent: Option<Box<Intent>>,
    },
    /// Stripe refused the request and will refuse it again (a 4xx other than a card error,
    /// 409 and 429).
    #[error("rejected by Stripe ({status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Stripe's error code, when it gave one.
        code: Option<String>,
        /// Stripe's message.
        message: String,
    },
    /// No usable answer: a timeout, a connection failure, a 409 (the same key is in flight), a
    /// 429 or a 5xx. Worth another attempt with the same idempotency key.
    #[error("Stripe unavailable: {0}")]
    Unavailable(String),
    /// An answer that could not be read, or a client that could not be built.
    #[error("unusable answer from Stripe: {0}")]
    Unreadable(String),
}

impl StripeFailure {
    /// Whether another attempt with the same idempotency key may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StripeFailure::Unavailable(_))
    }

    fn from_error(e: StripeError) -> Self {
        match e {
            StripeError::Stripe(err, status) => {
                let code = err.code.as_ref().map(|c| c.as_str().to_owned());
                let message = err.message.clone().unwrap_or_else(|| "no message".into());
                let is_card = status == 402 || err.type_.as_str() == "card_error";
                if is_card {
                    StripeFailure::Card {
                        code,
                        decline_code: err.decline_code.clone(),
                        message,
                        intent: err
                            .payment_intent
                            .as_ref()
                            .map(|pi| Box::new(Intent::from_stripe(pi))),
                    }
                } else if status == 409 || status == 429 || status >= 500 {
                    StripeFailure::Unavailable(format!("HTTP {status}: {message}"))
                } else {
                    StripeFailure::Rejected {
                        status,
                        code,
                        message,
                    }
                }
            }
            StripeError::ClientError(m) => StripeFailure::Unavailable(m),
            StripeError::Timeout => StripeFailure::Unavailable("timed out".into()),
            StripeError::JSONDeserialize(m) => StripeFailure::Unreadable(m),
            StripeError::ConfigError(m) => StripeFailure::Unreadable(m),
        }
    }
}

/// A PaymentIntent, as far as top-ups care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// `pi_…`.
    pub id: String,
    /// Stripe's status: `requires_payment_method`, `requires_confirmation`, `requires_action`,
    /// `processing`, `requires_capture`, `canceled` or `succeeded`.
    pub status: String,
    /// The amount asked for.
    pub amount: i64,
    /// The currency code, lower case as Stripe writes it.
    pub currency: String,
    /// For the app to confirm or authenticate the payment; never stored.
    pub client_secret: Option<String>,
    /// The customer (`cus_…`).
    pub customer: Option<String>,
    /// The payment method charged (`pm_…`).
    pub payment_method: Option<String>,
    /// The code of the last failure (`card_declined`, `authentication_required`, …).
    pub last_error_code: Option<String>,
    /// The message of the last failure.
    pub last_error_message: Option<String>,
    /// Our metadata on it (`top_up_id`, `driver_id`).
    pub metadata: HashMap<String, String>,
}

impl Intent {
    fn from_stripe(pi: &stripe_shared_types::PaymentIntent) -> Self {
        let error = pi.last_payment_error.as_deref();
        Intent {
            id: pi.id.as_str().to_owned(),
            status: pi.status.as_str().to_owned(),
            amount: pi.amount,
            currency: pi.currency.to_string(),
            client_secret: pi.client_secret.clone(),
            customer: pi.customer.as_ref().map(|c| c.id().as_str().to_owned()),
            payment_method: pi
                .payment_method
                .as_ref()
                .map(|p| p.id().as_str().to_owned()),
            last_error_code: error.and_then(|e| e.code.as_ref().map(|c| c.as_str().to_owned())),
            last_error_message: error.and_then(|e| e.message.clone()),
            metadata: pi.metadata.clone(),
        }
    }
}

/// A SetupIntent, as far as saving cards cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// `seti_…`.
    pub id: String,
    /// Stripe's status: `requires_payment_method`, `requires_confirmation`, `requires_action`,
    /// `processing`, `canceled` or `succeeded`.
    pub status: String,
    /// For the app to confirm it; never stored.
    pub client_secret: Option<String>,
    /// The customer (`cus_…`).
    pub customer: Option<String>,
    /// The payment method being saved (`pm_…`), once the app has given one.
    pub payment_method: Option<String>,
}

impl Setup {
    fn from_stripe(si: &stripe_shared_types::SetupIntent) -> Self {
        Setup {
            id: si.id.as_str().to_owned(),
            status: si.status.as_str().to_owned(),
            client_secret: si.client_secret.clone(),
            customer: si.customer.as_ref().map(|c| c.id().as_str().to_owned()),
            payment_method: si
                .payment_method
                .as_ref()
                .map(|p| p.id().as_str().to_owned()),
        }
    }
}

/// A card payment method: what the driver sees of a saved card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// `pm_…`.
    pub id: String,
    /// The customer it is attached to.
    pub customer: Option<String>,
    /// `visa`, `mastercard`, … (`unknown` when Stripe does not say).
    pub brand: String,
    /// The last four digits.
    pub last4: String,
    /// Expiry month, 1 to 12.
    pub exp_month: i32,
    /// Expiry year, four digits.
    pub exp_year: i32,
}

/// A refund at Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeRefund {
    /// `re_…`.
    pub id: String,
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// The amount refunded.
    pub amount: i64,
    /// The PaymentIntent refunded.
    pub payment_intent: Option<String>,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    /// The currency code, lower case as Stripe writes it.
    pub currency: String,
    /// The metadata on it: ours carry `refund_id`; a refund made in the Stripe dashboard has
    /// none.
    pub metadata: HashMap<String, String>,
}

/// A dispute (chargeback) at Stripe, as far as the wallet cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeDispute {
    /// `dp_…` (or `du_…`).
    pub id: String,
    /// The disputed amount.
    pub amount: i64,
    /// The currency code, lower case as Stripe writes it.
    pub currency: String,
    /// The disputed charge (`ch_…`).
    pub charge: String,
    /// The disputed PaymentIntent, when the charge had one.
    pub payment_intent: Option<String>,
    /// `warning_needs_response`, `warning_under_review`, `warning_closed`, `needs_response`,
    /// `under_review`, `won`, `lost` or `prevented`.
    pub status: String,
    /// The cardholder's reason, e.g. `fraudulent`.
    pub reason: String,
    /// When evidence is due (Unix time), while it can be given.
    pub evidence_due_by: Option<i64>,
    /// When Stripe created it (Unix time).
    pub created: i64,
    /// The money it moved in our Stripe balance: a withdrawal, then perhaps a reinstatement.
    pub balance_transactions: Vec<DisputeMovement>,
}

/// One balance transaction of a dispute, with Stripe's signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeMovement {
    /// `txn_…`.
    pub id: String,
    /// Negative when Stripe withdrew the amount, positive when it returned it.
    pub amount: i64,
    /// Stripe's fee: positive when charged, negative when returned.
    pub fee: i64,
    /// The currency code, lower case.
    pub currency: String,
    /// `dispute` (a withdrawal) or `dispute_reversal` (a reinstatement).
    pub reporting_category: String,
}

/// Whether a payment is made with the driver present (who can pass 3-D Secure) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The driver is in the app now.
    OnSession,
    /// The driver is not there: an automatic top-up.
    OffSession,
}

/// A PaymentIntent to create and confirm at once on a saved card.
#[derive(Debug, Clone)]
pub struct NewIntent<'a> {
    /// The amount.
    pub amount: Money,
    /// The customer (`cus_…`).
    pub customer: &'a str,
    /// The saved card (`pm_…`).
    pub payment_method: &'a str,
    /// With or without the driver.
    pub presence: Presence,
    /// Key/value pairs stored on the PaymentIntent (`top_up_id`, `driver_id`).
    pub metadata: Vec<(&'a str, String)>,
}

// Stripe object types live in the shared crate the split crates re-export.
mod stripe_shared_types {
    pub use stripe_core::{Dispute, PaymentIntent, Refund, SetupIntent};
}

/// The Stripe client of a process: cheap to clone, safe to share.
#[derive(Clone)]
pub struct StripeApi {
    client: Client,
}

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeApi").finish_non_exhaustive()
    }
}

fn key(k: &str) -> Result<RequestStrategy, StripeFailure> {
    IdempotencyKey::new(k)
        .map(RequestStrategy::Idempotent)
        .map_err(|e| StripeFailure::Unreadable(format!("idempotency key: {e}")))
}

fn stripe_currency(currency: Currency) -> Result<stripe_types::Currency, StripeFailure> {
    currency
        .code()
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| StripeFailure::Unreadable(format!("currency {currency}")))
}

impl StripeApi {
    /// A client for the API at `settings.base_url` with `settings.secret_key`.
    pub fn new(settings: &StripeSettings) -> anyhow::Result<Self> {
        // `main` installs the ring provider; a test or tool that did not go through it still
        // needs one before the first TLS client is built (a no-op when one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::new(settings.secret_key.expose())
            .url(settings.base_url.trim_end_matches('/').to_owned() + "/")
            .timeout(REQUEST_TIMEOUT)
            .app_info("shiftcover", Some(env!("CARGO_PKG_VERSION").into()), None)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the Stripe client: {e}"))?;
        Ok(Self { client })
    }

    /// Creates a customer for a driver. `idempotency_key` should name the driver, so that two
    /// racing first card setups make one customer.
    pub async fn create_customer(
        &self,
        driver_id: &str,
        email: Option<&str>,
        idempotency_key: &str,
    ) -> Result<String, StripeFailure> {
        let mut req = CreateCustomer::new().metadata(HashMap::from([(
            "driver_id".to_owned(),
            driver_id.to_owned(),
        )]));
        if let Some(email) = email {
            req = req.email(email);
        }
        let customer = req
            .customize()
            .request_strategy(key(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        Ok(customer.id.as_str().to_owned())
    }

    /// Creates a SetupIntent to save a card for off-session use.
    pub async fn create_setup_intent(
        &self,
        customer: &str,
        metadata: Vec<(&str, String)>,
        idempotency_key: &str,
    ) -> Result<Setup, StripeFailure> {
        let si = CreateSetupIntent::new()
            .customer(customer)
            .usage(CreateSetupIntentUsage::OffSession)
            .metadata(
                metadata
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<HashMap<_, _>>(),
            )
            .customize()
            .request_strategy(key(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        Ok(Setup::from_stripe(&si))
    }

    /// Reads a SetupIntent.
    pub async fn retrieve_setup_intent(&self, id: &str) -> Result<Setup, StripeFailure> {
        let si = RetrieveSetupIntent::new(id)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        Ok(Setup::from_stripe(&si))
    }

    /// Reads a card payment method. `Rejected` when it is not a card.
    pub async fn retrieve_card(&self, id: &str) -> Result<Card, StripeFailure> {
        let pm = RetrievePaymentMethod::new(id)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        let card = pm.card.as_ref().ok_or_else(|| StripeFailure::Rejected {
            status: 400,
            code: None,
            message: format!("payment method {id} is not a card"),
        })?;
        let exp_month = i32::try_from(card.exp_month)
            .map_err(|_| StripeFailure::Unreadable("card expiry month".into()))?;
        let exp_year = i32::try_from(card.exp_year)
            .map_err(|_| StripeFailure::Unreadable("card expiry year".into()))?;
        Ok(Card {
            id: pm.id.as_str().to_owned(),
            customer: pm.customer.as_ref().map(|c| c.id().as_str().to_owned()),
            brand: if card.brand.is_empty() {
                "unknown".into()
            } else {
                card.brand.to_ascii_lowercase()
            },
            last4: card.last4.clone(),
            exp_month,
            exp_year,
        })
    }

    /// Detaches a payment method from its customer, so it can never be charged again.
    pub async fn detach_payment_method(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<(), StripeFailure> {
        DetachPaymentMethod::new(id)
            .customize()
            .request_strategy(key(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        Ok(())
    }

    /// Creates a PaymentIntent on a saved card and confirms it at once. Off-session, Stripe
    /// answers a card that needs its holder with a card error (`authentication_required`); some
    /// fakes answer `requires_action` instead. Both reach the caller.
    pub async fn create_payment_intent(
        &self,
        new: &NewIntent<'_>,
        idempotency_key: &str,
    ) -> Result<Intent, StripeFailure> {
        let mut req =
            CreatePaymentIntent::new(new.amount.minor, stripe_currency(new.amount.currency)?)
                .customer(new.customer)
                .payment_method(new.payment_method)
                .confirm(true)
                .metadata(
                    new.metadata
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect::<HashMap<_, _>>(),
                );
        if new.presence == Presence::OffSession {
            req = req.off_session(CreatePaymentIntentOffSession::Bool(true));
        }
        let pi = req
            .customize()
            .request_strategy(key(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        Ok(Intent::from_stripe(&pi))
    }

    /// Reads a PaymentIntent.
    pub async fn retrieve_payment_intent(&self, id: &str) -> Result<Intent, StripeFailure> {
        let pi = RetrievePaymentIntent::new(id)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        Ok(Intent::from_stripe(&pi))
    }

    /// The customer's PaymentIntent created since `since` whose metadata has `key` = `value`,
    /// if any: how a top-up finds the PaymentIntent an earlier request made once Stripe's
    /// idempotency keys (24 hours) can no longer. Reads at most ten pages of a hundred.
    pub async fn find_payment_intent(
        &self,
        customer: &str,
        since: i64,
        key: &str,
        value: &str,
    ) -> Result<Option<Intent>, StripeFailure> {
        let mut after: Option<String> = None;
        for _ in 0..10 {
            let mut req = ListPaymentIntent::new()
                .customer(customer)
                .created(stripe_types::RangeQueryTs::gte(since))
                .limit(100);
            if let Some(a) = &after {
                req = req.starting_after(a.clone());
            }
            let page = req
                .send(&self.client)
                .await
                .map_err(StripeFailure::from_error)?;
            if let Some(pi) = page
                .data
                .iter()
                .find(|pi| pi.metadata.get(key).is_some_and(|v| v == value))
            {
                return Ok(Some(Intent::from_stripe(pi)));
            }
            match page.data.last() {
                Some(last) if page.has_more => after = Some(last.id.as_str().to_owned()),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Cancels a PaymentIntent that has not succeeded.
    pub async fn cancel_payment_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<Intent, StripeFailure> {
        let pi = CancelPaymentIntent::new(id)
            .customize()
            .request_strategy(key(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        Ok(Intent::from_stripe(&pi))
    }

    /// Refunds `amount` of a PaymentIntent.
    pub async fn create_refund(
        &self,
        payment_intent: &str,
        amount: i64,
        metadata: Vec<(&str, String)>,
        idempotency_key: &str,
    ) -> Result<StripeRefund, StripeFailure> {
        let refund = CreateRefund::new()
            .payment_intent(payment_intent)
            .amount(amount)
            .metadata(
                metadata
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<HashMap<_, _>>(),
            )
            .customize()
            .request_strategy(key(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        Ok(refund_of(&refund))
    }

    /// Reads a refund.
    pub async fn retrieve_refund(&self, id: &str) -> Result<StripeRefund, StripeFailure> {
        let refund = RetrieveRefund::new(id)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        Ok(refund_of(&refund))
    }

    /// Adds `metadata` to a refund (keys not given are kept).
    pub async fn tag_refund(
        &self,
        id: &str,
        metadata: Vec<(&str, String)>,
        idempotency_key: &str,
    ) -> Result<StripeRefund, StripeFailure> {
        let refund = UpdateRefund::new(id)
            .metadata(
                metadata
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<HashMap<_, _>>(),
            )
            .customize()
            .request_strategy(key(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        Ok(refund_of(&refund))
    }

    /// Every refund of a PaymentIntent, whoever made it, newest first.
    pub async fn list_refunds(
        &self,
        payment_intent: &str,
    ) -> Result<Vec<StripeRefund>, StripeFailure> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        // A card payment has a handful of refunds; the bound only stops a fake looping forever.
        for _ in 0..50 {
            let mut req = ListRefund::new().payment_intent(payment_intent).limit(100);
            if let Some(a) = &after {
                req = req.starting_after(a.as_str());
            }
            let page = req
                .send(&self.client)
                .await
                .map_err(StripeFailure::from_error)?;
            out.extend(page.data.iter().map(refund_of));
            after = page.data.last().map(|r| r.id.as_str().to_owned());
            if !page.has_more || after.is_none() {
                return Ok(out);
            }
        }
        Err(StripeFailure::Unreadable(format!(
            "the refunds of {payment_intent} do not end"
        )))
    }

    /// Reads a dispute.
    pub async fn retrieve_dispute(&self, id: &str) -> Result<StripeDispute, StripeFailure> {
        let dispute = RetrieveDispute::new(id)
            .send(&self.client)
            .await
            .map_err(StripeFailure::from_error)?;
        Ok(dispute_of(&dispute))
    }
}

fn dispute_of(d: &stripe_shared_types::Dispute) -> StripeDispute {
    StripeDispute {
        id: d.id.as_str().to_owned(),
        amount: d.amount,
        currency: d.currency.to_string(),
        charge: d.charge.id().as_str().to_owned(),
        payment_intent: d
            .payment_intent
            .as_ref()
            .map(|p| p.id().as_str().to_owned()),
        status: d.status.as_str().to_owned(),
        reason: d.reason.clone(),
        evidence_due_by: d.evidence_details.due_by,
        created: d.created,
        balance_transactions: d
            .balance_transactions
            .iter()
            .map(|t| DisputeMovement {
                id: t.id.as_str().to_owned(),
                amount: t.amount,
                fee: t.fee,
                currency: t.currency.to_string(),
                reporting_category: t.reporting_category.clone(),
            })
            .collect(),
    }
}

fn refund_of(r: &stripe_shared_types::Refund) -> StripeRefund {
    StripeRefund {
        id: r.id.as_str().to_owned(),
        status: r.status.clone().unwrap_or_else(|| "pending".into()),
        amount: r.amount,
        payment_intent: r
            .payment_intent
            .as_ref()
            .map(|p| p.id().as_str().to_owned()),
        failure_reason: r.failure_reason.clone(),
        currency: r.currency.to_string(),
        metadata: r.metadata.clone().unwrap_or_default(),
    }
}
