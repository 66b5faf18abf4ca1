//! Diesel table definitions for the finance tables, kept by hand in step with
//! `migrations/2026-11-23-000900_finance`. Reports and reconciliation are set-based SQL
//! (`sql_query`); these serve the row-at-a-time paths.

diesel::table! {
    finance_import_runs (id) {
        id -> Uuid,
        object -> Text,
        period_start -> Timestamptz,
        period_end -> Timestamptz,
        status -> Text,
        cursor -> Nullable<Text>,
        pages -> Integer,
        items -> BigInt,
        last_error -> Nullable<Text>,
        started_at -> Timestamptz,
        updated_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    finance_stripe_balance_transactions (id, created) {
        id -> Text,
        created -> Timestamptz,
        #[sql_name = "type"]
        type_ -> Text,
        known_type -> Bool,
        amount -> BigInt,
        fee -> BigInt,
        net -> BigInt,
        currency -> Text,
        status -> Text,
        reporting_category -> Text,
        available_on -> Timestamptz,
        source_id -> Nullable<Text>,
        payment_intent_id -> Nullable<Text>,
        match_kind -> Nullable<Text>,
        match_cause_type -> Nullable<Text>,
        match_cause_id -> Nullable<Text>,
        description -> Nullable<Text>,
        raw -> Jsonb,
        import_run_id -> Uuid,
        imported_at -> Timestamptz,
    }
}

diesel::table! {
    finance_stripe_payouts (id) {
        id -> Text,
        created -> Timestamptz,
        amount -> BigInt,
        currency -> Text,
        status -> Text,
        arrival_date -> Timestamptz,
        balance_transaction_id -> Nullable<Text>,
        raw -> Jsonb,
        import_run_id -> Uuid,
        imported_at -> Timestamptz,
    }
}

diesel::table! {
    finance_exceptions (id) {
        id -> Uuid,
        item_key -> Text,
        day -> Date,
        kind -> Text,
        stripe_id -> Nullable<Text>,
        ledger_transaction_id -> Nullable<Uuid>,
        currency -> Text,
        stripe_amount -> Nullable<BigInt>,
        ledger_amount -> Nullable<BigInt>,
        detail -> Nullable<Text>,
        status -> Text,
        first_run_id -> Uuid,
        created_at -> Timestamptz,
        resolved_at -> Nullable<Timestamptz>,
        resolved_by -> Nullable<Text>,
        resolution -> Nullable<Text>,
    }
}

diesel::table! {
    finance_exception_notes (id) {
        id -> BigInt,
        exception_id -> Uuid,
        author -> Text,
        body -> Text,
        created_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(finance_exceptions, finance_exception_notes);
