//! Products, versioned rate tables, rating, quotes and session pricing.
