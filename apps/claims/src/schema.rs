//! Diesel table definitions for the claims tables, written by hand to match
//! `migrations/2026-11-23-001000_claims/up.sql` column for column.

diesel::table! {
    claims (id) {
        id -> Uuid,
        reference -> Text,
        driver_id -> Uuid,
        vehicle_id -> Uuid,
        occurred_at -> Timestamptz,
        reported_at -> Timestamptz,
        location -> Text,
        description -> Text,
        third_party_involved -> Bool,
        injuries -> Bool,
        session_id -> Nullable<Uuid>,
        certificate_number -> Nullable<Text>,
        cover_basis -> Nullable<Text>,
        no_cover_reason -> Nullable<Text>,
        nearest_session_id -> Nullable<Uuid>,
        status -> Text,
        currency -> Text,
        reserve_minor -> Nullable<Int8>,
        paid_minor -> Nullable<Int8>,
        idempotency_key -> Text,
        request_fingerprint -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        closed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    claim_status_changes (id) {
        id -> Int8,
        claim_id -> Uuid,
        from_status -> Nullable<Text>,
        to_status -> Text,
        reason -> Text,
        actor_type -> Text,
        actor_id -> Nullable<Text>,
        occurred_at -> Timestamptz,
    }
}

diesel::table! {
    claim_reserve_changes (id) {
        id -> Int8,
        claim_id -> Uuid,
        reserve_minor -> Int8,
        reason -> Text,
        staff_id -> Uuid,
        occurred_at -> Timestamptz,
    }
}

diesel::table! {
    claim_photos (id) {
        id -> Uuid,
        driver_id -> Uuid,
        claim_id -> Nullable<Uuid>,
        content_type -> Text,
        size_bytes -> Int8,
        sha256 -> Text,
        storage_key -> Text,
        uploaded_at -> Timestamptz,
        attached_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    charge_disputes (id) {
        id -> Uuid,
        driver_id -> Uuid,
        session_id -> Uuid,
        reason -> Text,
        details -> Nullable<Text>,
        charge_minor -> Int8,
        currency -> Text,
        status -> Text,
        refund_id -> Nullable<Uuid>,
        refund_minor -> Nullable<Int8>,
        resolution_note -> Nullable<Text>,
        resolved_by -> Nullable<Uuid>,
        resolved_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(claim_status_changes -> claims (claim_id));
diesel::joinable!(claim_reserve_changes -> claims (claim_id));
diesel::joinable!(claim_photos -> claims (claim_id));

diesel::allow_tables_to_appear_in_same_query!(
    claims,
    claim_status_changes,
    claim_reserve_changes,
    claim_photos,
    charge_disputes,
);
