//! Whether a driver can pay for cover: a question this app asks and the payments app answers.
//!
//! Payments depends on cover, not the reverse, so cover defines the [`FundsCheck`] trait and
//! payments implements it (wallet balance, saved card, auto top-up). Callers — the API and the
//! partner event handlers — pass the implementation in. This library ships no implementation;
//! the `test_support` feature adds [`crate::test_support::StaticFunds`] for other crates' tests.

use accounts::DriverId;
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use shared::Money;

/// The answer to "can this driver pay at least this much for cover now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Funding {
    /// The driver can pay (wallet balance, or a card an automatic top-up can charge).
    Ok,
    /// The driver has no usable payment method.
    NoPaymentMethod,
    /// The driver has a payment method but cannot pay the amount now.
    InsufficientFunds {
        /// What the driver can pay now (e.g. the wallet balance), when known.
        available: Option<Money>,
    },
}

/// Answers whether a driver can pay. Implemented by the payments app.
///
/// `conn` is the caller's connection (possibly inside its transaction): an implementation reads
/// with it and must not commit or roll back anything on it.
#[async_trait::async_trait]
pub trait FundsCheck: Send + Sync {
    /// Whether `driver_id` can pay `minimum_charge` (the least a cover session costs) now.
    async fn can_pay(
        &self,
        conn: &mut AsyncPgConnection,
        driver_id: DriverId,
        minimum_charge: Money,
    ) -> Result<Funding, anyhow::Error>;

    /// [`FundsCheck::can_pay`] for several drivers, one answer per `(driver, minimum charge)` in
    /// order. The default asks one at a time; an implementation may read for all at once.
    async fn can_pay_all(
        &self,
        conn: &mut AsyncPgConnection,
        asks: &[(DriverId, Money)],
    ) -> Result<Vec<Funding>, anyhow::Error> {
        let mut out = Vec::with_capacity(asks.len());
        for (driver_id, minimum_charge) in asks {
            out.push(self.can_pay(conn, *driver_id, *minimum_charge).await?);
        }
        Ok(out)
    }
}
