//! Diesel table definitions for the payments tables. Kept by hand in step with
//! `migrations/2026-11-23-000600_payments` and
//! `migrations/2026-11-23-000650_refund_idempotency_keys` and
//! `migrations/2026-12-08-000200_chargebacks`.

diesel::table! {
    stripe_customers (driver_id) {
        driver_id -> Uuid,
        stripe_customer_id -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    payment_methods (id) {
        id -> Uuid,
        driver_id -> Uuid,
        stripe_payment_method_id -> Text,
        brand -> Text,
        last4 -> Text,
        exp_month -> Int4,
        exp_year -> Int4,
        status -> Text,
        is_default -> Bool,
        created_at -> Timestamptz,
        removed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    card_setups (id) {
        id -> Uuid,
        driver_id -> Uuid,
        setup_intent_id -> Text,
        status -> Text,
        payment_method_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    top_ups (id) {
        id -> Uuid,
        driver_id -> Uuid,
        amount_minor -> Int8,
        currency -> Text,
        kind -> Text,
        status -> Text,
        payment_method_id -> Uuid,
        payment_intent_id -> Nullable<Text>,
        idempotency_key -> Text,
        request_fingerprint -> Text,
        failure_code -> Nullable<Text>,
        failure_message -> Nullable<Text>,
        ledger_transaction_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        succeeded_at -> Nullable<Timestamptz>,
        stripe_requested_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    auto_top_up_settings (driver_id) {
        driver_id -> Uuid,
        enabled -> Bool,
        threshold_minor -> Int8,
        amount_minor -> Int8,
        currency -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    stripe_events (id) {
        id -> Uuid,
        event_id -> Text,
        event_type -> Text,
        object_type -> Nullable<Text>,
        object_id -> Nullable<Text>,
        livemode -> Bool,
        stripe_created_at -> Timestamptz,
        payload -> Jsonb,
        received_at -> Timestamptz,
        status -> Text,
        processed_at -> Nullable<Timestamptz>,
        flagged_reason -> Nullable<Text>,
    }
}

diesel::table! {
    refunds (id) {
        id -> Uuid,
        driver_id -> Uuid,
        target -> Text,
        top_up_id -> Nullable<Uuid>,
        cover_session_id -> Nullable<Uuid>,
        amount_minor -> Int8,
        currency -> Text,
        reason -> Text,
        actor_type -> Text,
        actor_id -> Nullable<Text>,
        status -> Text,
        stripe_refund_id -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        ledger_transaction_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        succeeded_at -> Nullable<Timestamptz>,
        idempotency_key -> Nullable<Text>,
        request_fingerprint -> Nullable<Text>,
        undone_transaction_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    chargebacks (id) {
        id -> Uuid,
        stripe_dispute_id -> Text,
        driver_id -> Uuid,
        top_up_id -> Uuid,
        payment_intent_id -> Text,
        stripe_charge_id -> Nullable<Text>,
        amount_minor -> Int8,
        currency -> Text,
        reason -> Text,
        stripe_status -> Text,
        evidence_due_by -> Nullable<Timestamptz>,
        withdrawn_transaction_id -> Nullable<Uuid>,
        reinstated_transaction_id -> Nullable<Uuid>,
        fee_minor -> Int8,
        stripe_created_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    stripe_customers,
    payment_methods,
    card_setups,
    top_ups,
    auto_top_up_settings,
    stripe_events,
    refunds,
    chargebacks,
);
