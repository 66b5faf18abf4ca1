-- The double-entry ledger. Owned by apps/ledger; no other app writes these tables.
--
-- Sign convention: a posting's `amount` is in minor units (pence), DEBIT POSITIVE and CREDIT
-- NEGATIVE. An account's balance is the sum of its postings, so a debit-normal account (an asset
-- or expense) normally shows a positive sum and a credit-normal account (a liability or income,
-- such as a driver's wallet) a negative one.
--
-- Invariants kept by the database itself:
-- - every ledger transaction, when its database transaction commits, has at least two postings,
--   all in the transaction's currency and on accounts of that currency, summing to zero
--   (deferred constraint triggers, so the rows can be inserted in any order first);
-- - transactions and postings are append-only: updates, deletes and truncation are refused, and
--   a mistake is corrected by a new transaction (a reversal or an adjustment);
-- - one transaction per (kind, cause): posting the same cause twice is impossible;
-- - an account appears at most once in a transaction.

-- Accounts: one wallet per driver and currency, one system account per kind and currency.
CREATE TABLE ledger_accounts (
    id             uuid        PRIMARY KEY,
    kind           text        NOT NULL CHECK (kind IN (
                       'driver_wallet', 'stripe_clearing', 'stripe_fees', 'premium_receivable',
                       'insurer_payable', 'commission_income', 'ipt_payable', 'refunds')),
    -- The wallet's owner as text (`drv_…`); NULL for system accounts.
    owner_id       text        CHECK (char_length(owner_id) BETWEEN 1 AND 100),
    currency       text        NOT NULL CHECK (currency IN ('GBP', 'EUR')),
    -- The side on which the account's balance normally sits.
    normal_balance text        NOT NULL CHECK (normal_balance IN ('debit', 'credit')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_accounts_owner_iff_wallet CHECK ((kind = 'driver_wallet') = (owner_id IS NOT NULL)),
    CONSTRAINT ledger_accounts_normal_balance_by_kind CHECK (
        normal_balance = CASE WHEN kind IN ('stripe_clearing', 'stripe_fees', 'premium_receivable')
                              THEN 'debit' ELSE 'credit' END
    ),
    -- Get-or-create relies on this (NULL owners of system accounts count as equal).
    CONSTRAINT ledger_accounts_identity_unique UNIQUE NULLS NOT DISTINCT (kind, owner_id, currency),
    -- Target of the postings' (account, currency) foreign key.
    CONSTRAINT ledger_accounts_id_currency_unique UNIQUE (id, currency)
);

CREATE TABLE ledger_transactions (
    id          uuid        PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN (
                    'top_up', 'session_charge', 'refund', 'adjustment', 'reversal', 'fee', 'payout')),
    -- What caused the movement, e.g. ('top_up', 'top_…'), ('cover_session', 'ses_…').
    cause_type  text        NOT NULL CHECK (cause_type ~ '^[a-z][a-z0-9_]{0,39}$'),
    cause_id    text        NOT NULL CHECK (char_length(cause_id) BETWEEN 1 AND 100),
    description text        NOT NULL CHECK (char_length(description) BETWEEN 1 AND 500),
    currency    text        NOT NULL CHECK (currency IN ('GBP', 'EUR')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    -- For a reversal: the transaction it reverses (wholly or in part).
    reverses_id uuid        REFERENCES ledger_transactions (id),
    CONSTRAINT ledger_transactions_cause_unique UNIQUE (kind, cause_type, cause_id),
    CONSTRAINT ledger_transactions_reversal_has_original CHECK ((kind = 'reversal') = (reverses_id IS NOT NULL)),
    CONSTRAINT ledger_transactions_id_currency_unique UNIQUE (id, currency)
);
CREATE INDEX ledger_transactions_reverses_idx ON ledger_transactions (reverses_id) WHERE reverses_id IS NOT NULL;
CREATE INDEX ledger_transactions_created_idx ON ledger_transactions (created_at, id);

CREATE TABLE ledger_postings (
    transaction_id uuid        NOT NULL,
    account_id     uuid        NOT NULL,
    -- Debit positive, credit negative; never zero. The bound keeps negation and sums far from overflow.
    amount         bigint      NOT NULL CHECK (amount <> 0 AND amount BETWEEN -1000000000000000 AND 1000000000000000),
    currency       text        NOT NULL,
    -- A copy of the transaction's created_at (checked at commit), so that an account's history
    -- pages through one index.
    created_at     timestamptz NOT NULL,
    -- The position of the line as posted, for display and for deterministic rounding in reversals.
    line_no        smallint    NOT NULL CHECK (line_no >= 0),
    PRIMARY KEY (transaction_id, account_id),
    CONSTRAINT ledger_postings_transaction_fk FOREIGN KEY (transaction_id, currency)
        REFERENCES ledger_transactions (id, currency),
    CONSTRAINT ledger_postings_account_fk FOREIGN KEY (account_id, currency)
        REFERENCES ledger_accounts (id, currency)
);
-- Balances (index-only sums) and an account's history in keyset order.
CREATE INDEX ledger_postings_account_idx ON ledger_postings (account_id, created_at, transaction_id) INCLUDE (amount);

-- At commit: every ledger transaction touched must balance. Runs once per inserted transaction
-- and once per inserted posting (a posting added to an old transaction re-checks that one).
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tx_id      uuid;
    tx         record;
    n_postings bigint;
    total      numeric;
    foreign_n  bigint;
    stale_n    bigint;
BEGIN
    IF TG_TABLE_NAME = 'ledger_transactions' THEN
        tx_id := NEW.id;
    ELSE
        tx_id := NEW.transaction_id;
    END IF;
    SELECT t.currency, t.created_at INTO tx FROM ledger_transactions t WHERE t.id = tx_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger: posting refers to missing transaction %', tx_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT count(*),
           coalesce(sum(p.amount), 0),
           count(*) FILTER (WHERE p.currency <> tx.currency),
           count(*) FILTER (WHERE p.created_at <> tx.created_at)
      INTO n_postings, total, foreign_n, stale_n
      FROM ledger_postings p
     WHERE p.transaction_id = tx_id;
    IF n_postings < 2 THEN
        RAISE EXCEPTION 'ledger: transaction % has % posting(s); at least 2 are required', tx_id, n_postings
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger: transaction % is unbalanced: postings sum to %', tx_id, total
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF foreign_n > 0 THEN
        RAISE EXCEPTION 'ledger: transaction % has postings in a currency other than %', tx_id, tx.currency
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF stale_n > 0 THEN
        RAISE EXCEPTION 'ledger: transaction % has postings whose created_at differs from it', tx_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER ledger_transactions_balanced
    AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();
CREATE CONSTRAINT TRIGGER ledger_postings_balanced
    AFTER INSERT ON ledger_postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

-- Append-only: money history is never rewritten.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER ledger_accounts_append_only BEFORE UPDATE OR DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_postings_no_truncate BEFORE TRUNCATE ON ledger_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
