//! Diesel table definitions for the cover tables, written by hand to match
//! `migrations/2026-11-23-000500_cover/up.sql` column for column.

diesel::table! {
    enrolments (id) {
        id -> Uuid,
        driver_id -> Uuid,
        product_id -> Uuid,
        vehicle_id -> Uuid,
        status -> Text,
        status_reason -> Nullable<Text>,
        terms_version -> Text,
        terms_product_version_id -> Uuid,
        terms_accepted_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        cancelled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    enrolment_events (id) {
        id -> Int8,
        enrolment_id -> Uuid,
        from_status -> Nullable<Text>,
        to_status -> Text,
        reason -> Text,
        actor_type -> Text,
        actor_id -> Nullable<Text>,
        occurred_at -> Timestamptz,
    }
}

diesel::table! {
    cover_sessions (id) {
        id -> Uuid,
        driver_id -> Uuid,
        vehicle_id -> Uuid,
        enrolment_id -> Uuid,
        product_version_id -> Uuid,
        quote_id -> Uuid,
        currency -> Text,
        hourly_rate_minor -> Int8,
        status -> Text,
        started_at -> Timestamptz,
        max_end_at -> Timestamptz,
        scheduled_end_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        end_reason -> Nullable<Text>,
        source -> Text,
        partner_id -> Nullable<Uuid>,
        partner_ref -> Nullable<Text>,
        idempotency_key -> Text,
        certificate_number -> Text,
        minutes -> Nullable<Int8>,
        billed_minutes -> Nullable<Int8>,
        charge_rule -> Nullable<Text>,
        uncapped_minor -> Nullable<Int8>,
        net_minor -> Nullable<Int8>,
        commission_minor -> Nullable<Int8>,
        ipt_minor -> Nullable<Int8>,
        total_minor -> Nullable<Int8>,
        ipt_rate_bp -> Nullable<Int4>,
        commission_bp -> Nullable<Int4>,
        charged_at -> Nullable<Timestamptz>,
        disputed_at -> Nullable<Timestamptz>,
        adjusted_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(enrolment_events -> enrolments (enrolment_id));
diesel::joinable!(cover_sessions -> enrolments (enrolment_id));

diesel::allow_tables_to_appear_in_same_query!(enrolments, enrolment_events, cover_sessions);
