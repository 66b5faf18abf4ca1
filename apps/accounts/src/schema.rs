//! Diesel table definitions for the accounts tables, written by hand to match
//! `migrations/2026-11-23-000100_accounts/up.sql` column for column.

diesel::table! {
    drivers (id) {
        id -> Uuid,
        phone -> Text,
        name -> Nullable<Text>,
        date_of_birth -> Nullable<Date>,
        email -> Nullable<Text>,
        licence_number -> Nullable<Text>,
        licence_issued_on -> Nullable<Date>,
        postcode -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    login_codes (id) {
        id -> Uuid,
        phone -> Text,
        code_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        attempts -> Int4,
        max_attempts -> Int4,
        used_at -> Nullable<Timestamptz>,
        superseded_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    driver_sessions (id) {
        id -> Uuid,
        driver_id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        last_seen_at -> Timestamptz,
    }
}

diesel::table! {
    vehicles (id) {
        id -> Uuid,
        driver_id -> Uuid,
        registration -> Nullable<Text>,
        vehicle_type -> Text,
        make -> Nullable<Text>,
        model -> Nullable<Text>,
        created_at -> Timestamptz,
        removed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    staff (id) {
        id -> Uuid,
        email -> Text,
        name -> Text,
        role -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
        disabled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    staff_sessions (id) {
        id -> Uuid,
        staff_id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        last_seen_at -> Timestamptz,
    }
}

diesel::table! {
    partners (id) {
        id -> Uuid,
        name -> Text,
        status -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    partner_api_keys (id) {
        id -> Uuid,
        partner_id -> Uuid,
        prefix -> Text,
        key_hash -> Bytea,
        scopes -> Array<Text>,
        test_mode -> Bool,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(driver_sessions -> drivers (driver_id));
diesel::joinable!(vehicles -> drivers (driver_id));
diesel::joinable!(staff_sessions -> staff (staff_id));
diesel::joinable!(partner_api_keys -> partners (partner_id));

diesel::allow_tables_to_appear_in_same_query!(
    drivers,
    login_codes,
    driver_sessions,
    vehicles,
    staff,
    staff_sessions,
    partners,
    partner_api_keys,
);
