//! Typed ids of the pricing tables.

shared::typed_id!(
    /// A product, e.g. "Food delivery — hourly" (`prd_…`).
    ProductId,
    "prd"
);
shared::typed_id!(
    /// One version of a product's rate table and rules (`prv_…`).
    ProductVersionId,
    "prv"
);
shared::typed_id!(
    /// A quote: a driver's locked price for a vehicle and product version (`quo_…`).
    QuoteId,
    "quo"
);
