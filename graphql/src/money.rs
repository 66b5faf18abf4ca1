//! `Money` as clients see it: integer minor units (`minor`), the currency code, and the amount
//! written for people (`formatted`). Every amount in the schema uses this one type.

use async_graphql::Object;

/// An amount of money. Always integer minor units (pence); never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money(pub shared::Money);

impl From<shared::Money> for Money {
    fn from(m: shared::Money) -> Self {
        Money(m)
    }
}

/// An amount of money in integer minor units (pence for GBP).
#[Object]
impl Money {
    /// The amount in minor units (pence), e.g. `1050` for £10.50. Negative when owed.
    async fn minor(&self) -> i64 {
        self.0.minor
    }
    /// ISO 4217 code, e.g. `GBP`.
    async fn currency(&self) -> &'static str {
        self.0.currency.code()
    }
    /// For people, e.g. `£10.50`.
    async fn formatted(&self) -> String {
        self.0.to_string()
    }
}
