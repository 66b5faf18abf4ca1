//! Diesel table definitions for the partners tables, written by hand to match
//! `migrations/2026-11-23-000800_partners/up.sql` column for column.

diesel::table! {
    partner_link_codes (id) {
        id -> Uuid,
        driver_id -> Uuid,
        code_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        link_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    partner_driver_links (id) {
        id -> Uuid,
        partner_id -> Uuid,
        driver_id -> Uuid,
        external_driver_id -> Text,
        test_mode -> Bool,
        linked_at -> Timestamptz,
        unlinked_at -> Nullable<Timestamptz>,
        unlinked_by -> Nullable<Text>,
        last_event_at -> Nullable<Timestamptz>,
        flagged_stale_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    partner_shift_rules (partner_id) {
        partner_id -> Uuid,
        cover_starts_on -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    shift_events (id) {
        id -> Int8,
        partner_id -> Uuid,
        test_mode -> Bool,
        partner_event_id -> Text,
        content_hash -> Bytea,
        link_id -> Uuid,
        external_driver_id -> Text,
        kind -> Text,
        occurred_at -> Timestamptz,
        received_at -> Timestamptz,
        vehicle_type -> Text,
        reference -> Nullable<Text>,
        result -> Text,
        result_code -> Nullable<Text>,
        session_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    shift_event_rejections (id) {
        id -> Int8,
        partner_id -> Uuid,
        test_mode -> Bool,
        partner_event_id -> Text,
        external_driver_id -> Text,
        code -> Text,
        event -> Jsonb,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    partner_sessions (session_id) {
        session_id -> Uuid,
        partner_id -> Uuid,
        link_id -> Uuid,
        started_at -> Timestamptz,
        created_at -> Timestamptz,
        ended_notified_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Uuid,
        partner_id -> Uuid,
        test_mode -> Bool,
        url -> Text,
        event_types -> Array<Text>,
        secret -> Text,
        previous_secret -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<Timestamptz>,
        enabled -> Bool,
        timeout_ms -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        endpoint_id -> Uuid,
        partner_id -> Uuid,
        event_type -> Text,
        event_id -> Text,
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        replays -> Int4,
        next_attempt_at -> Nullable<Timestamptz>,
        last_attempt_at -> Nullable<Timestamptz>,
        give_up_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        failed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Int8,
        delivery_id -> Uuid,
        attempted_at -> Timestamptz,
        status_code -> Nullable<Int4>,
        latency_ms -> Int4,
        response_snippet -> Nullable<Text>,
        error -> Nullable<Text>,
        succeeded -> Bool,
    }
}

diesel::joinable!(shift_events -> partner_driver_links (link_id));
diesel::joinable!(partner_sessions -> partner_driver_links (link_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));

diesel::allow_tables_to_appear_in_same_query!(
    partner_link_codes,
    partner_driver_links,
    partner_shift_rules,
    shift_events,
    shift_event_rejections,
    partner_sessions,
    webhook_endpoints,
    webhook_deliveries,
    webhook_attempts,
);
