//! Diesel table definitions for the notifications tables, written by hand to match
//! `migrations/2026-11-23-000300_notifications/up.sql` column for column.

diesel::table! {
    notifications (id) {
        id -> Uuid,
        cause -> Text,
        channel -> Text,
        template -> Text,
        recipient -> Text,
        driver_id -> Nullable<Uuid>,
        subject -> Nullable<Text>,
        body_text -> Text,
        body_html -> Nullable<Text>,
        status -> Text,
        failure_reason -> Nullable<Text>,
        provider_message_id -> Nullable<Text>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        sending_since -> Nullable<Timestamptz>,
        first_attempt_at -> Nullable<Timestamptz>,
        last_attempt_at -> Nullable<Timestamptz>,
        ambiguous_at -> Nullable<Timestamptz>,
        resent_after_ambiguity -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        delivered_at -> Nullable<Timestamptz>,
        failed_at -> Nullable<Timestamptz>,
        erased_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    mailgun_webhook_tokens (token) {
        token -> Text,
        received_at -> Timestamptz,
    }
}
