//! Diesel table definitions for the kernel's own tables (outbox, audit log, demo job effects).
//! Kept by hand in step with `migrations/`; `tests/schema_matches_database` checks them.

diesel::table! {
    outbox_jobs (id) {
        id -> Uuid,
        job_type -> Text,
        queue -> Text,
        payload -> Jsonb,
        idempotency_key -> Text,
        status -> Text,
        attempts -> Int4,
        max_attempts -> Int4,
        run_after -> Timestamptz,
        last_error -> Nullable<Text>,
        locked_by -> Nullable<Text>,
        created_at -> Timestamptz,
        queued_at -> Nullable<Timestamptz>,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    demo_pings (id) {
        id -> Int8,
        job_id -> Uuid,
        message -> Text,
        worker -> Text,
        executed_at -> Timestamptz,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        occurred_at -> Timestamptz,
        actor_type -> Text,
        actor_id -> Nullable<Text>,
        action -> Text,
        subject_type -> Text,
        subject_id -> Text,
        reason -> Nullable<Text>,
        details -> Jsonb,
        request_id -> Nullable<Text>,
    }
}
