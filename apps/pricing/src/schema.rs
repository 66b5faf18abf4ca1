//! Diesel table definitions for the pricing tables, written by hand to match
//! `migrations/2026-11-23-000200_pricing/up.sql` column for column.

diesel::table! {
    /// Products sold to drivers.
    products (id) {
        id -> Uuid,
        code -> Text,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// Versions of a product: status, currency, wording and the JSONB rate table.
    product_versions (id) {
        id -> Uuid,
        product_id -> Uuid,
        version_number -> Int4,
        status -> Text,
        currency -> Text,
        wording_version -> Text,
        rate_table -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        retired_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// The typed rules of a version, one row per version.
    product_version_rules (product_version_id) {
        product_version_id -> Uuid,
        minimum_age -> Int4,
        eligible_vehicle_types -> Array<Text>,
        minimum_charge_minutes -> Int4,
        billing_increment_minutes -> Int4,
        gap_rule_minutes -> Int4,
        tail_cover_minutes -> Int4,
        daily_cap_minor -> Int8,
        commission_bp -> Int4,
        ipt_bp -> Int4,
    }
}

diesel::table! {
    /// The rating test cases of a version, in order.
    rating_test_cases (product_version_id, position) {
        product_version_id -> Uuid,
        position -> Int4,
        name -> Text,
        case_data -> Jsonb,
    }
}

diesel::table! {
    /// Quotes given to drivers.
    quotes (id) {
        id -> Uuid,
        driver_id -> Uuid,
        vehicle_id -> Uuid,
        product_version_id -> Uuid,
        currency -> Text,
        hourly_rate_minor -> Int8,
        minimum_charge_minor -> Int8,
        daily_cap_minor -> Int8,
        one_hour_net_minor -> Int8,
        one_hour_commission_minor -> Int8,
        one_hour_ipt_minor -> Int8,
        one_hour_total_minor -> Int8,
        explanation -> Jsonb,
        rating_input -> Jsonb,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::joinable!(product_versions -> products (product_id));
diesel::joinable!(product_version_rules -> product_versions (product_version_id));
diesel::joinable!(rating_test_cases -> product_versions (product_version_id));
diesel::joinable!(quotes -> product_versions (product_version_id));

diesel::allow_tables_to_appear_in_same_query!(
    products,
    product_versions,
    product_version_rules,
    rating_test_cases,
    quotes,
);
