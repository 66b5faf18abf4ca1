//! Pricing: products, their versioned rate tables and rules, rating, quotes and session pricing.
//!
//! - [`version`] and [`rate_table`]: what a product version pins ([`VersionTerms`]: currency,
//!   rules, rate table, wording version) and the checks a draft must pass.
//! - [`products`]: products and versions in the database: `create_draft_version`,
//!   `update_draft`, `set_test_cases`, `publish_version` (sanity checks and test cases first),
//!   `retire_version`, `get_published`, `list_products`, `get_version`.
//! - [`rating`]: the pure [`rate`] function: base rate × region × time band × age × years licensed
//!   × claims, exact in integers, rounded once.
//! - [`charges`]: the pure [`charge_breakdown`] (net premium, commission, IPT inside the price)
//!   and [`price_session`] (minimum charge, per started minute, daily cap by UK day).
//! - [`cases`]: rating test cases as data (TOML), run at publication and by the test suite.
//! - [`quotes`]: `create_quote` and `get_valid_quote`.
//! - [`seed`]: the demo products `shiftcover seed` publishes.
//!
//! Invariants across the crate:
//! - plain Rust: service functions take a connection, a [`shared::Clock`] and typed inputs, and
//!   return typed results or [`PricingError`], whose `user_error` gives stable codes; nothing here
//!   knows HTTP or GraphQL;
//! - money is integer minor units; factors are integer basis points; nothing is a float; every
//!   rounding names its rule ([`rating::RATE_ROUNDING`], [`charges::IPT_ROUNDING`],
//!   [`charges::COMMISSION_ROUNDING`], [`charges::SESSION_ROUNDING`]);
//! - a published product version never changes (the database refuses it); anything priced on it
//!   records its id and can be recomputed;
//! - drivers and vehicles are read through the accounts app's public functions; this crate writes
//!   only its own tables (products, product_versions, product_version_rules, rating_test_cases,
//!   quotes) plus the kernel's audit log, inside the transaction of the change it records.

pub mod cases;
pub mod charges;
pub mod error;
pub mod ids;
pub mod products;
pub mod quotes;
pub mod rate_table;
pub mod rating;
pub mod schema;
pub mod seed;
pub mod version;

pub use cases::{CaseFailure, RatingCase, RatingCaseFile, parse_rating_cases, run_cases};
pub use charges::{
    CAP_TIME_ZONE, ChargeBreakdown, ChargeError, ChargeRule, DayCharge, PricedSession,
    SessionCharge, charge_breakdown, price_session, uk_day, uk_day_bounds, uk_day_parts,
};
pub use error::PricingError;
pub use ids::{ProductId, ProductVersionId, QuoteId};
pub use products::{
    check_prices, check_publishable, create_draft_version, create_product, get_product,
    get_product_by_code, get_published, get_version, get_versions, list_products, list_test_cases,
    list_versions, publish_version, publish_version_because, retire_version,
    retire_version_because, set_test_cases, update_draft,
};
pub use quotes::{
    QUOTE_VALIDITY_MINUTES, Quote, QuoteLabels, build_quote, create_quote, create_quote_batched,
    create_quote_for, get_quote, get_valid_quote, get_version_terms, is_version_not_published,
    published_version, quote_insert_stats, quote_labels, rating_input_for, remembered_quote_labels,
    store_quote, store_quotes,
};
pub use rate_table::{Band, RateTable, RegionFactors, TimeBand, TimeOfDay};
pub use rating::{Decline, DeclineCode, FactorKind, FactorLine, Rate, RatingInput, rate};
pub use seed::{demo_products, seed_demo_products, seed_demo_products_at};
pub use version::{
    Product, ProductSummary, ProductVersion, VersionRules, VersionStatus, VersionTerms,
};
