//! The payments part of the schema: the driver's wallet (balance, automatic top-up, ledger
//! entries), their payments (wallet top-ups) with refunds, and their saved cards; saving cards,
//! topping up (3-D Secure handed back to the app), and refunds by staff.
//!
//! Who sees what (checked on `node(id)` and on every edge, like [`crate::guard`]'s table):
//!
//! | object                                   | driver    | partner | ops / admin | finance |
//! |------------------------------------------|-----------|---------|-------------|---------|
//! | Wallet, Payment, Refund, PaymentMethod   | their own | no      | yes         | yes     |
//!
//! A Payment's `clientSecret` (what the app needs to pass 3-D Secure) is shown only to the driver
//! who owns it, only while the payment waits for them, and only where it was just read from
//! Stripe (the payloads of `topUpWallet`, `refreshTopUp`, `finishTopUp`): it is never stored.
//!
//! Edges from a page of payments or wallet entries (refunds, cards, the payment behind an
//! entry) go through one [`PaymentsLoader`] made for that page, so a page costs one query per
//! kind of edge, not one per row.

pub mod chargebacks;
pub mod mutation;
pub mod query;

use crate::accounts::{Driver, load_driver};
use crate::errors::{UserError, coded, internal};
use crate::guard;
use crate::relay::to_global_id;
use accounts::{DriverId, Principal, Role};
use async_graphql::connection::{Connection, Edge};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use payments::{PaymentMethodId, PaymentsError, RefundId, StripeFailure, TopUpId};
use shared::DbPool;
use std::collections::HashMap;
use std::sync::Arc;

pub use crate::money::Money;
pub use chargebacks::ChargebacksQuery;
pub use mutation::{PaymentsAdjustMutation, PaymentsMutation};
pub use query::PaymentsQuery;

/// Largest page of payments or wallet entries.
pub const MAX_PAGE: i32 = 100;

/// Whether `principal` may see the money of `driver_id`: the driver themself, and staff with the
/// ops or finance role (admin holds both).
pub fn may_view_money(principal: &Principal, driver_id: DriverId) -> bool {
    match principal {
        Principal::Driver(d) => d.driver_id == driver_id,
        Principal::Staff(s) => s.has(Role::Ops) || s.has(Role::Finance),
        Principal::Partner(_) | Principal::Anonymous => false,
    }
}

/// Staff with the ops or finance role (admin holds both), or `UNAUTHENTICATED` / `FORBIDDEN`.
pub fn require_money_staff(ctx: &Context<'_>) -> async_graphql::Result<accounts::StaffPrincipal> {
    match guard::principal(ctx) {
        Principal::Staff(s) if s.has(Role::Ops) || s.has(Role::Finance) => Ok(*s),
        Principal::Anonymous => Err(guard::unauthenticated()),
        _ => Err(guard::forbidden()),
    }
}

/// The payments handles (Stripe client, clock, public URL) for this process's settings: the
/// server's, built once at start, else built now.
pub(crate) fn payments_env(ctx: &Context<'_>) -> async_graphql::Result<payments::PaymentsEnv> {
    if let Some(env) = ctx.data_opt::<payments::PaymentsEnv>() {
        return Ok(env.clone());
    }
    let core = crate::accounts::core(ctx)?;
    payments::PaymentsEnv::from_settings(&core.settings, core.clock.clone())
        .map_err(|e| internal(ctx, e))
}

/// A payments error as `userErrors`; Stripe being unreachable as the request-level error
/// `PAYMENT_PROVIDER_UNAVAILABLE` (try again later, with the same idempotency key); anything
/// else as an internal error. Domain field names are renamed to the API's (`topUpId` is
/// `paymentId` here).
pub(crate) fn user_errors(
    ctx: &Context<'_>,
    err: PaymentsError,
) -> async_graphql::Result<Vec<UserError>> {
    if let PaymentsError::Stripe(StripeFailure::Unavailable(why)) = &err {
        tracing::warn!(error = %why, "Stripe unavailable");
        return Err(coded(
            "PAYMENT_PROVIDER_UNAVAILABLE",
            "Card payments are unavailable right now. Try again in a minute.",
        ));
    }
    match err.user_error() {
        Some(e) => {
            let mut e = UserError::from(e);
            if e.field.as_deref() == Some("topUpId") {
                e.field = Some("paymentId".into());
            }
            Ok(vec![e])
        }
        None => Err(internal(ctx, err)),
    }
}

/// A `NOT_FOUND` user error on `field`.
pub(crate) fn not_found(field: &str) -> Vec<UserError> {
    vec![UserError {
        field: Some(field.to_owned()),
        code: "NOT_FOUND".into(),
        message: "Not found.".into(),
    }]
}

/// Where a payment is.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "payments::TopUpStatus")]
pub enum PaymentStatus {
    /// Recorded; the card is being charged.
    Created,
    /// The bank asks the driver to authenticate (3-D Secure): pass `clientSecret` to Stripe's SDK.
    RequiresAction,
    /// Paid; the wallet is credited.
    Succeeded,
    /// Declined or not authenticated; nothing was taken.
    Failed,
    /// An automatic top-up that needs the driver: finish it with `finishTopUp`.
    NeedsDriver,
    /// Given up; nothing was taken.
    Canceled,
}

/// Who started a payment.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "payments::TopUpKind")]
pub enum PaymentKind {
    /// The driver, in the app.
    OnSession,
    /// ShiftCover, when the wallet fell below the driver's threshold.
    Auto,
}

/// Where a refund is.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "payments::RefundStatus")]
pub enum RefundStatus {
    /// Asked of Stripe; not confirmed yet.
    Pending,
    /// Done and booked.
    Succeeded,
    /// Refused or failed; nothing moved.
    Failed,
}

/// What a wallet entry was.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "payments::WalletEntryKind")]
pub enum WalletTransactionKind {
    /// Money paid in from a card.
    TopUp,
    /// A cover session paid for.
    SessionCharge,
    /// Money given back (to the card, or a session's price back to the wallet).
    Refund,
    /// Money the card's bank took back for a disputed top-up (a chargeback), or gave back when
    /// the dispute was won.
    Chargeback,
    /// Any other correction.
    Adjustment,
}

/// The key of a top-up's refunds in [`PaymentsLoader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RefundsOf(pub TopUpId);

/// Loads payments rows in batches: top-ups, saved cards, and refunds of top-ups.
pub struct PaymentsLoader {
    pool: DbPool,
}

/// A loader failure, shareable between the resolvers that waited on the same batch.
pub type LoadError = Arc<anyhow::Error>;

/// One loader shared by the objects of one page (or one object), never across requests.
pub type SharedLoader = Arc<DataLoader<PaymentsLoader>>;

impl PaymentsLoader {
    /// A loader over the process's pool.
    pub fn shared(ctx: &Context<'_>) -> async_graphql::Result<SharedLoader> {
        let pool = crate::accounts::core(ctx)?.pool.clone();
        Ok(Arc::new(DataLoader::new(
            PaymentsLoader { pool },
            tokio::spawn,
        )))
    }

    async fn conn(&self) -> Result<shared::DbConn, LoadError> {
        self.pool
            .get()
            .await
            .map_err(|e| Arc::new(anyhow::anyhow!("database pool: {e}")))
    }
}

fn load_error(e: PaymentsError) -> LoadError {
    Arc::new(anyhow::Error::new(e))
}

impl Loader<TopUpId> for PaymentsLoader {
    type Value = payments::TopUp;
    type Error = LoadError;

    async fn load(&self, keys: &[TopUpId]) -> Result<HashMap<TopUpId, Self::Value>, LoadError> {
        let mut conn = self.conn().await?;
        let rows = payments::get_top_ups(&mut conn, keys)
            .await
            .map_err(load_error)?;
        Ok(rows.into_iter().map(|t| (t.id, t)).collect())
    }
}

impl Loader<RefundsOf> for PaymentsLoader {
    type Value = Vec<payments::Refund>;
    type Error = LoadError;

    async fn load(&self, keys: &[RefundsOf]) -> Result<HashMap<RefundsOf, Self::Value>, LoadError> {
        let mut conn = self.conn().await?;
        let ids: Vec<TopUpId> = keys.iter().map(|k| k.0).collect();
        let by_top_up = payments::refunds_of_top_ups(&mut conn, &ids)
            .await
            .map_err(load_error)?;
        Ok(by_top_up
            .into_iter()
            .map(|(t, r)| (RefundsOf(t), r))
            .collect())
    }
}

impl Loader<PaymentMethodId> for PaymentsLoader {
    type Value = payments::PaymentMethod;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[PaymentMethodId],
    ) -> Result<HashMap<PaymentMethodId, Self::Value>, LoadError> {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use payments::schema::payment_methods;
        let mut conn = self.conn().await?;
        let rows: Vec<payments::PaymentMethod> = payment_methods::table
            .filter(payment_methods::id.eq_any(keys))
            .select(payments::PaymentMethod::as_select())
            .load(&mut conn)
            .await
            .map_err(|e| Arc::new(anyhow::Error::new(e)))?;
        Ok(rows.into_iter().map(|m| (m.id, m)).collect())
    }
}

fn loader_failed(ctx: &Context<'_>, e: LoadError) -> async_graphql::Error {
    internal(ctx, anyhow::anyhow!("{e:#}"))
}

/// A driver's prepaid wallet.
#[derive(Clone)]
pub struct Wallet {
    pub(crate) driver_id: DriverId,
    pub(crate) viewer: Principal,
    /// The balances and holds, read once per wallet in a response.
    pub(crate) position: Arc<tokio::sync::OnceCell<payments::WalletPosition>>,
}

impl Wallet {
    async fn position(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<&payments::WalletPosition> {
        self.check()?;
        self.position
            .get_or_try_init(|| async {
                let mut conn = crate::accounts::conn(ctx).await?;
                let now = payments_env(ctx)?.clock.now();
                payments::wallet_position(&mut conn, self.driver_id, now)
                    .await
                    .map_err(|e| internal(ctx, e))
            })
            .await
    }
}

/// What a hold on a wallet is for.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "payments::HoldKind")]
pub enum WalletHoldKind {
    /// The charge so far of the session on cover now.
    RunningSession,
    /// An ended session whose charge has not been taken yet.
    UnchargedSession,
    /// A refund to the card that the card network has not confirmed.
    PendingRefund,
    /// A chargeback under review; the bank has not taken the money yet.
    Chargeback,
}

/// Money the wallet already owes to something not yet booked; it is not available to spend.
pub struct WalletHold {
    inner: payments::Hold,
}

#[Object]
impl WalletHold {
    /// What it is for.
    async fn kind(&self) -> WalletHoldKind {
        self.inner.kind.into()
    }
    /// How much it holds back.
    async fn amount(&self) -> Money {
        self.inner.amount.into()
    }
    /// The global id of its cause (a `CoverSession`, a `Refund`, …).
    async fn cause_id(&self) -> ID {
        let type_name = match self.inner.kind {
            payments::HoldKind::RunningSession | payments::HoldKind::UnchargedSession => {
                "CoverSession"
            }
            payments::HoldKind::PendingRefund => "Refund",
            payments::HoldKind::Chargeback => "Chargeback",
        };
        to_global_id(type_name, &self.inner.cause_id)
    }
}

/// A driver's prepaid balance, what it is topped up with, and what moved it. Visible to the
/// driver and to ops and finance.
#[Object]
impl Wallet {
    /// Whose wallet; null when the viewer may not see the driver's profile (finance).
    async fn driver(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Driver>> {
        load_driver(ctx, &self.viewer, self.driver_id).await
    }

    /// The posted balance: what the driver holds once everything booked is counted (negative
    /// when they owe for cover already given). What can be spent is `available`.
    async fn balance(&self, ctx: &Context<'_>) -> async_graphql::Result<Money> {
        Ok(self.position(ctx).await?.posted.into())
    }

    /// What can be spent or refunded now: `balance` less `held`. A running session, sessions not
    /// yet charged, refunds on their way and chargebacks under review are held back.
    async fn available(&self, ctx: &Context<'_>) -> async_graphql::Result<Money> {
        Ok(self.position(ctx).await?.available.into())
    }

    /// The total of `holds`.
    async fn held(&self, ctx: &Context<'_>) -> async_graphql::Result<Money> {
        Ok(self.position(ctx).await?.held.into())
    }

    /// What is held back from the balance, largest first.
    async fn holds(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WalletHold>> {
        Ok(self
            .position(ctx)
            .await?
            .holds
            .iter()
            .map(|h| WalletHold { inner: h.clone() })
            .collect())
    }

    /// How far below zero the wallet may go while a session runs; cover ends there.
    async fn overdraft_limit(&self) -> Money {
        payments::OVERDRAFT_LIMIT.into()
    }

    /// Chargebacks on the driver's top-ups (their bank disputing a payment), newest first.
    async fn chargebacks(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<chargebacks::Chargeback>> {
        self.check()?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let list = payments::chargebacks_of_driver(&mut conn, self.driver_id)
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(list
            .into_iter()
            .map(|c| chargebacks::Chargeback::new(c, self.viewer.clone()))
            .collect())
    }

    /// The automatic top-up settings; null until the driver first sets them.
    async fn auto_top_up(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<AutoTopUp>> {
        self.check()?;
        let mut conn = crate::accounts::conn(ctx).await?;
        let settings = payments::auto_top_up(&mut conn, self.driver_id)
            .await
            .map_err(|e| internal(ctx, e))?;
        Ok(settings.map(AutoTopUp::from))
    }

    /// The ledger entries that moved the wallet, newest first.
    async fn transactions(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return (at most 100).",
            default = 20,
            validator(minimum = 0, maximum = 100)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return entries after this cursor.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, WalletTransaction>> {
        self.check()?;
        let first = page_size(first);
        if first == 0 {
            return Ok(Connection::new(after.is_some(), false));
        }
        let mut conn = crate::accounts::conn(ctx).await?;
        let page = payments::wallet_history(&mut conn, self.driver_id, after.as_deref(), first)
            .await
            .map_err(|e| page_error(ctx, e))?;
        let loader = PaymentsLoader::shared(ctx)?;
        let mut connection = Connection::new(after.is_some(), page.has_next_page);
        for entry in page.entries {
            connection.edges.push(Edge::new(
                entry.cursor.clone(),
                WalletTransaction {
                    inner: entry,
                    viewer: self.viewer.clone(),
                    loader: loader.clone(),
                },
            ));
        }
        Ok(connection)
    }

    /// The driver's payments (wallet top-ups), newest first.
    async fn payments(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "How many to return (at most 100).",
            default = 20,
            validator(minimum = 0, maximum = 100)
        )]
        first: Option<i32>,
        #[graphql(desc = "Return payments after this cursor.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Payment>> {
        self.check()?;
        payments_page(ctx, &self.viewer, self.driver_id, first, after).await
    }

    /// The driver's saved cards (not removed), the default first.
    async fn payment_methods(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<PaymentMethod>> {
        self.check()?;
        cards_of(ctx, &self.viewer, self.driver_id).await
    }
}

impl Wallet {
    fn check(&self) -> async_graphql::Result<()> {
        if may_view_money(&self.viewer, self.driver_id) {
            Ok(())
        } else {
            Err(guard::forbidden())
        }
    }
}

fn page_size(first: Option<i32>) -> u32 {
    u32::try_from(first.unwrap_or(20).clamp(0, MAX_PAGE)).unwrap_or(0)
}

fn page_error(ctx: &Context<'_>, e: PaymentsError) -> async_graphql::Error {
    match e {
        PaymentsError::InvalidCursor => {
            coded("BAD_USER_INPUT", "`after` is not a cursor of this list")
        }
        other => internal(ctx, other),
    }
}

/// A page of a driver's payments for `viewer` (who has been found allowed to see them).
pub(crate) async fn payments_page(
    ctx: &Context<'_>,
    viewer: &Principal,
    driver_id: DriverId,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, Payment>> {
    let first = page_size(first);
    if first == 0 {
        return Ok(Connection::new(after.is_some(), false));
    }
    let mut conn = crate::accounts::conn(ctx).await?;
    let page = payments::list_top_ups_page(&mut conn, driver_id, after.as_deref(), first)
        .await
        .map_err(|e| page_error(ctx, e))?;
    let loader = PaymentsLoader::shared(ctx)?;
    let mut connection = Connection::new(after.is_some(), page.has_next_page);
    for (top_up, cursor) in page.top_ups {
        connection.edges.push(Edge::new(
            cursor,
            Payment::new(top_up, viewer.clone(), loader.clone()),
        ));
    }
    Ok(connection)
}

/// A driver's active cards for `viewer` (who has been found allowed to see them).
pub(crate) async fn cards_of(
    ctx: &Context<'_>,
    viewer: &Principal,
    driver_id: DriverId,
) -> async_graphql::Result<Vec<PaymentMethod>> {
    let mut conn = crate::accounts::conn(ctx).await?;
    let cards = payments::payment_methods(&mut conn, driver_id)
        .await
        .map_err(|e| internal(ctx, e))?;
    Ok(cards
        .into_iter()
        .map(|c| PaymentMethod::new(c, viewer.clone()))
        .collect())
}

/// A driver's automatic top-up settings.
#[derive(SimpleObject, Debug, Clone)]
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

impl From<payments::AutoTopUp> for AutoTopUp {
    fn from(a: payments::AutoTopUp) -> Self {
        AutoTopUp {
            enabled: a.enabled,
            threshold: a.threshold.into(),
            amount: a.amount.into(),
            updated_at: a.updated_at,
        }
    }
}

/// One ledger entry on a wallet.
#[derive(Clone)]
pub struct WalletTransaction {
    inner: payments::WalletEntry,
    viewer: Principal,
    loader: SharedLoader,
}

/// A movement of money in or out of a wallet: a top-up, a session's charge, a refund, or a
/// correction. Each is one balanced ledger transaction.
#[Object]
impl WalletTransaction {
    /// The ledger transaction's id.
    async fn id(&self) -> ID {
        to_global_id("LedgerTransaction", &self.inner.transaction_id)
    }
    /// What it was.
    async fn kind(&self) -> WalletTransactionKind {
        self.inner.kind.into()
    }
    /// Signed from the driver's side: positive adds to the wallet, negative takes from it.
    async fn amount(&self) -> Money {
        self.inner.amount.into()
    }
    /// For people, e.g. "Card top-up".
    async fn description(&self) -> &str {
        &self.inner.description
    }
    /// What caused it: `top_up`, `cover_session`, `refund`, …
    async fn cause_type(&self) -> &str {
        &self.inner.cause_type
    }
    /// The global id of what caused it (a `Payment`, a `Refund`, a `CoverSession`, …).
    async fn cause_id(&self) -> ID {
        let type_name = match self.inner.cause_type.as_str() {
            "top_up" => "Payment",
            "refund" | "refund_failure" => "Refund",
            "cover_session" => "CoverSession",
            other => other,
        };
        to_global_id(type_name, &self.inner.cause_id)
    }
    /// The payment behind a top-up entry.
    async fn payment(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Payment>> {
        if self.inner.cause_type != "top_up" {
            return Ok(None);
        }
        let Ok(id) = self.inner.cause_id.parse::<TopUpId>() else {
            return Ok(None);
        };
        load_payment(ctx, &self.viewer, &self.loader, id).await
    }
    /// When it was booked.
    async fn at(&self) -> DateTime<Utc> {
        self.inner.at
    }
}

/// A payment into a wallet: a Stripe PaymentIntent on a saved card.
#[derive(Clone)]
pub struct Payment {
    inner: payments::TopUp,
    viewer: Principal,
    loader: SharedLoader,
}

impl Payment {
    pub(crate) fn new(inner: payments::TopUp, viewer: Principal, loader: SharedLoader) -> Self {
        Self {
            inner,
            viewer,
            loader,
        }
    }
}

/// A payment into a driver's wallet (a card top-up). Visible to its driver, ops and finance.
#[Object]
impl Payment {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        to_global_id("Payment", &self.inner.id)
    }
    /// How much.
    async fn amount(&self) -> Money {
        self.inner.amount.into()
    }
    /// Where it is.
    async fn status(&self) -> PaymentStatus {
        self.inner.status.into()
    }
    /// Who started it.
    async fn kind(&self) -> PaymentKind {
        self.inner.kind.into()
    }
    /// For Stripe's SDK to authenticate the payment (3-D Secure). Only for the driver who owns
    /// the payment, while it waits for them (`REQUIRES_ACTION`, `NEEDS_DRIVER`), and only in
    /// the payloads of `topUpWallet`, `refreshTopUp` and `finishTopUp` (it is never stored:
    /// call `finishTopUp` to get it again).
    async fn client_secret(&self) -> Option<&str> {
        let owner =
            matches!(&self.viewer, Principal::Driver(d) if d.driver_id == self.inner.driver_id);
        let waiting = matches!(
            self.inner.status,
            payments::TopUpStatus::RequiresAction | payments::TopUpStatus::NeedsDriver
        );
        if owner && waiting {
            self.inner.client_secret.as_deref()
        } else {
            None
        }
    }
    /// Why it failed, e.g. `card_declined`, `authentication_required`.
    async fn failure_code(&self) -> Option<&str> {
        self.inner.failure_code.as_deref()
    }
    /// The bank's or Stripe's words about the failure.
    async fn failure_message(&self) -> Option<&str> {
        self.inner.failure_message.as_deref()
    }
    /// When it was asked for.
    async fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.inner.updated_at
    }
    /// When the wallet was credited.
    async fn settled_at(&self) -> Option<DateTime<Utc>> {
        self.inner.succeeded_at
    }
    /// The card charged (also when it has since been removed).
    async fn payment_method(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<PaymentMethod>> {
        if !may_view_money(&self.viewer, self.inner.driver_id) {
            return Ok(None);
        }
        let card = self
            .loader
            .load_one(self.inner.payment_method_id)
            .await
            .map_err(|e| loader_failed(ctx, e))?;
        Ok(card.map(|c| PaymentMethod::new(c, self.viewer.clone())))
    }
    /// Its refunds, newest first.
    async fn refunds(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Refund>> {
        Ok(self
            .load_refunds(ctx)
            .await?
            .into_iter()
            .map(|r| Refund::new(r, self.viewer.clone(), self.loader.clone()))
            .collect())
    }
    /// What has been refunded (pending refunds included, failed ones not).
    async fn refunded_amount(&self, ctx: &Context<'_>) -> async_graphql::Result<Money> {
        let refunded: i64 = self
            .load_refunds(ctx)
            .await?
            .iter()
            .filter(|r| r.status != payments::RefundStatus::Failed)
            .map(|r| r.amount.minor)
            .sum();
        Ok(shared::Money {
            minor: refunded,
            currency: self.inner.amount.currency,
        }
        .into())
    }
    /// The driver who paid; null when the viewer may not see the driver's profile (finance).
    async fn driver(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Driver>> {
        load_driver(ctx, &self.viewer, self.inner.driver_id).await
    }
}

impl Payment {
    async fn load_refunds(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<payments::Refund>> {
        if !may_view_money(&self.viewer, self.inner.driver_id) {
            return Ok(Vec::new());
        }
        Ok(self
            .loader
            .load_one(RefundsOf(self.inner.id))
            .await
            .map_err(|e| loader_failed(ctx, e))?
            .unwrap_or_default())
    }
}

/// A refund.
#[derive(Clone)]
pub struct Refund {
    inner: payments::Refund,
    viewer: Principal,
    loader: SharedLoader,
}

impl Refund {
    pub(crate) fn new(inner: payments::Refund, viewer: Principal, loader: SharedLoader) -> Self {
        Self {
            inner,
            viewer,
            loader,
        }
    }
}

/// Money given back to a driver: part or all of a payment (to the card), or of a session's
/// charge (to the wallet). Visible to its driver, ops and finance.
#[Object]
impl Refund {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        to_global_id("Refund", &self.inner.id)
    }
    /// How much.
    async fn amount(&self) -> Money {
        self.inner.amount.into()
    }
    /// Where it is.
    async fn status(&self) -> RefundStatus {
        self.inner.status.into()
    }
    /// Why it was made.
    async fn reason(&self) -> &str {
        &self.inner.reason
    }
    /// Why it failed.
    async fn failure_reason(&self) -> Option<&str> {
        self.inner.failure_reason.as_deref()
    }
    /// When it was asked for.
    async fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    /// When it was booked.
    async fn succeeded_at(&self) -> Option<DateTime<Utc>> {
        self.inner.succeeded_at
    }
    /// The payment refunded to the card; null for a refund of a session's charge.
    async fn payment(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Payment>> {
        match self.inner.target {
            payments::RefundTarget::TopUp(id) => {
                load_payment(ctx, &self.viewer, &self.loader, id).await
            }
            payments::RefundTarget::SessionCharge(_) => Ok(None),
        }
    }
    /// The global id of the cover session whose charge was refunded to the wallet, if that is
    /// what was refunded.
    async fn cover_session_id(&self) -> Option<ID> {
        match self.inner.target {
            payments::RefundTarget::SessionCharge(s) => Some(to_global_id("CoverSession", &s)),
            payments::RefundTarget::TopUp(_) => None,
        }
    }
}

/// A saved card.
#[derive(Clone)]
pub struct PaymentMethod {
    inner: payments::PaymentMethod,
}

impl PaymentMethod {
    pub(crate) fn new(inner: payments::PaymentMethod, _viewer: Principal) -> Self {
        Self { inner }
    }
}

/// A card saved for top-ups (never its number). Visible to its driver, ops and finance.
#[Object]
impl PaymentMethod {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        to_global_id("PaymentMethod", &self.inner.id)
    }
    /// `visa`, `mastercard`, …
    async fn brand(&self) -> &str {
        &self.inner.brand
    }
    /// The last four digits.
    async fn last4(&self) -> &str {
        &self.inner.last4
    }
    /// Expiry month, 1 to 12.
    async fn exp_month(&self) -> i32 {
        self.inner.exp_month
    }
    /// Expiry year, e.g. 2034.
    async fn exp_year(&self) -> i32 {
        self.inner.exp_year
    }
    /// Whether top-ups charge this card.
    async fn is_default(&self) -> bool {
        self.inner.is_default
    }
    /// Whether it was removed (a removed card is never charged again).
    async fn removed(&self) -> bool {
        self.inner.status == "removed"
    }
    /// When it was saved.
    async fn created_at(&self) -> DateTime<Utc> {
        self.inner.created_at
    }
    /// When it was removed.
    async fn removed_at(&self) -> Option<DateTime<Utc>> {
        self.inner.removed_at
    }
}

/// Loads a payment for `viewer`; `None` when absent or not theirs to see.
async fn load_payment(
    ctx: &Context<'_>,
    viewer: &Principal,
    loader: &SharedLoader,
    id: TopUpId,
) -> async_graphql::Result<Option<Payment>> {
    if matches!(viewer, Principal::Anonymous | Principal::Partner(_)) {
        return Ok(None);
    }
    let top_up = loader
        .load_one(id)
        .await
        .map_err(|e| loader_failed(ctx, e))?;
    Ok(top_up
        .filter(|t| may_view_money(viewer, t.driver_id))
        .map(|t| Payment::new(t, viewer.clone(), loader.clone())))
}

/// Whether `viewer` could see any money at all (nobody else causes a read).
fn may_see_some_money(viewer: &Principal) -> bool {
    match viewer {
        Principal::Driver(_) => true,
        Principal::Staff(s) => s.has(Role::Ops) || s.has(Role::Finance),
        Principal::Partner(_) | Principal::Anonymous => false,
    }
}

/// `node(id)` for `Payment`.
pub(crate) async fn payment_node(
    ctx: &Context<'_>,
    raw: &str,
) -> async_graphql::Result<Option<Payment>> {
    let Ok(id) = raw.parse::<TopUpId>() else {
        return Ok(None);
    };
    let viewer = guard::principal(ctx);
    if !may_see_some_money(viewer) {
        return Ok(None);
    }
    let loader = PaymentsLoader::shared(ctx)?;
    load_payment(ctx, viewer, &loader, id).await
}

/// `node(id)` for `Refund`.
pub(crate) async fn refund_node(
    ctx: &Context<'_>,
    raw: &str,
) -> async_graphql::Result<Option<Refund>> {
    let Ok(id) = raw.parse::<RefundId>() else {
        return Ok(None);
    };
    let viewer = guard::principal(ctx);
    if !may_see_some_money(viewer) {
        return Ok(None);
    }
    let mut conn = crate::accounts::conn(ctx).await?;
    match payments::get_refund(&mut conn, id).await {
        Ok(r) if may_view_money(viewer, r.driver_id) => Ok(Some(Refund::new(
            r,
            viewer.clone(),
            PaymentsLoader::shared(ctx)?,
        ))),
        Ok(_) | Err(PaymentsError::NotFound(_)) => Ok(None),
        Err(e) => Err(internal(ctx, e)),
    }
}

/// `node(id)` for `PaymentMethod`: removed cards included (past payments name them).
pub(crate) async fn payment_method_node(
    ctx: &Context<'_>,
    raw: &str,
) -> async_graphql::Result<Option<PaymentMethod>> {
    let Ok(id) = raw.parse::<PaymentMethodId>() else {
        return Ok(None);
    };
    let viewer = guard::principal(ctx);
    if !may_see_some_money(viewer) {
        return Ok(None);
    }
    let mut conn = crate::accounts::conn(ctx).await?;
    match payments::find_payment_method(&mut conn, id).await {
        Ok(m) if may_view_money(viewer, m.driver_id) => {
            Ok(Some(PaymentMethod::new(m, viewer.clone())))
        }
        Ok(_) | Err(PaymentsError::NotFound(_)) => Ok(None),
        Err(e) => Err(internal(ctx, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accounts::{DriverPrincipal, DriverSessionId, StaffId, StaffPrincipal, StaffSessionId};

    fn staff(role: Role) -> Principal {
        Principal::Staff(StaffPrincipal {
            staff_id: StaffId::new(),
            session_id: StaffSessionId::new(),
            role,
        })
    }

    #[test]
    fn money_is_seen_by_its_driver_ops_and_finance_only() {
        let a = DriverId::new();
        let driver = |id| {
            Principal::Driver(DriverPrincipal {
                driver_id: id,
                session_id: DriverSessionId::new(),
            })
        };
        assert!(may_view_money(&driver(a), a));
        assert!(!may_view_money(&driver(DriverId::new()), a));
        assert!(may_view_money(&staff(Role::Ops), a));
        assert!(may_view_money(&staff(Role::Finance), a));
        assert!(may_view_money(&staff(Role::Admin), a));
        assert!(!may_view_money(&Principal::Anonymous, a));
    }
}
