//! Ready-made [`FundsCheck`] answers for tests of crates that build on cover (the API, workers).
//! Compiled only with the `test_support` feature; production code gets its answers from payments.

use crate::funds::{Funding, FundsCheck};
use accounts::DriverId;
use diesel_async::AsyncPgConnection;
use shared::Money;
use std::sync::Mutex;

/// Answers every question with the same [`Funding`], which a test may change.
#[derive(Debug)]
pub struct StaticFunds(Mutex<Funding>);

impl StaticFunds {
    /// Answers `funding` until told otherwise.
    pub fn new(funding: Funding) -> Self {
        Self(Mutex::new(funding))
    }

    /// Every driver can pay.
    pub fn ok() -> Self {
        Self::new(Funding::Ok)
    }

    /// Changes the answer.
    pub fn set(&self, funding: Funding) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = funding;
    }
}

#[async_trait::async_trait]
impl FundsCheck for StaticFunds {
    async fn can_pay(
        &self,
        _conn: &mut AsyncPgConnection,
        _driver_id: DriverId,
        _minimum_charge: Money,
    ) -> Result<Funding, anyhow::Error> {
        Ok(*self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
