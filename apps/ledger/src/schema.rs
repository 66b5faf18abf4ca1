//! Diesel table definitions for the ledger's tables, kept by hand in step with
//! `migrations/2026-11-23-000400_ledger`.

diesel::table! {
    ledger_accounts (id) {
        id -> Uuid,
        kind -> Text,
        owner_id -> Nullable<Text>,
        currency -> Text,
        normal_balance -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ledger_transactions (id) {
        id -> Uuid,
        kind -> Text,
        cause_type -> Text,
        cause_id -> Text,
        description -> Text,
        currency -> Text,
        created_at -> Timestamptz,
        metadata -> Jsonb,
        reverses_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    ledger_postings (transaction_id, account_id) {
        transaction_id -> Uuid,
        account_id -> Uuid,
        amount -> Int8,
        currency -> Text,
        created_at -> Timestamptz,
        line_no -> Int2,
    }
}

diesel::joinable!(ledger_postings -> ledger_accounts (account_id));
diesel::joinable!(ledger_postings -> ledger_transactions (transaction_id));
diesel::allow_tables_to_appear_in_same_query!(
    ledger_accounts,
    ledger_transactions,
    ledger_postings
);
