//! Typed ids of the ledger tables.

shared::typed_id!(
    /// A ledger account (`lac_…`).
    AccountId,
    "lac"
);
shared::typed_id!(
    /// A ledger transaction (`ltx_…`).
    TransactionId,
    "ltx"
);
