-- Finance: Stripe balance transactions and payouts imported for reconciliation, the import runs
-- that fetched them (with a resume cursor), reconciliation runs and their per-item results, the
-- exceptions queue finance works, and daily rollups of the ledger for reports.
-- Owned by apps/finance; no other app writes these tables. Money is in minor units.
--
-- Invariants kept by the database itself:
-- - a Stripe balance transaction or payout is stored once (its id and creation time never change
--   at Stripe, so the partitioned tables' (id, created) keys are keys on the id);
-- - an import run moves running -> completed | failed, and only a running one has no end;
-- - a reconciliation item has one of five statuses; an exception is open, or resolved with a reason;
-- - at most one open exception per reconciled item.
--
-- Scale: balance transactions (about 100k a day at full size) and reconciliation items are
-- partitioned by month of their day, so a day's reconciliation scans one partition and old months
-- can be detached whole. Partitions are made on demand by finance_ensure_month_partition(); a
-- default partition catches anything outside them so an insert never fails for want of one.

CREATE TABLE finance_import_runs (
    id            uuid        PRIMARY KEY,
    -- What was listed: 'balance_transaction' or 'payout'.
    object        text        NOT NULL CHECK (object IN ('balance_transaction', 'payout')),
    -- The Stripe `created` range listed: [period_start, period_end).
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    status        text        NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    -- The last Stripe id stored; the next page starts after it (Stripe's `starting_after`).
    cursor        text        CHECK (char_length(cursor) BETWEEN 1 AND 255),
    pages         integer     NOT NULL DEFAULT 0 CHECK (pages >= 0),
    items         bigint      NOT NULL DEFAULT 0 CHECK (items >= 0),
    last_error    text        CHECK (char_length(last_error) BETWEEN 1 AND 1000),
    started_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    CONSTRAINT finance_import_runs_period CHECK (period_end > period_start),
    CONSTRAINT finance_import_runs_finished CHECK ((status = 'completed') = (finished_at IS NOT NULL))
);
-- Resuming: the unfinished run of the same object and period.
CREATE INDEX finance_import_runs_period_idx ON finance_import_runs (object, period_start, period_end, started_at DESC);

CREATE TABLE finance_stripe_balance_transactions (
    id                 text        NOT NULL CHECK (char_length(id) BETWEEN 1 AND 255),
    created            timestamptz NOT NULL,
    -- Stripe's type as sent (charge, refund, payout, stripe_fee, adjustment, …).
    type               text        NOT NULL CHECK (char_length(type) BETWEEN 1 AND 100),
    -- Whether this code knows the type; unknown types are stored and flagged for people.
    known_type         boolean     NOT NULL,
    amount             bigint      NOT NULL,
    fee                bigint      NOT NULL,
    net                bigint      NOT NULL,
    currency           text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status             text        NOT NULL CHECK (char_length(status) BETWEEN 1 AND 40),
    reporting_category text        NOT NULL CHECK (char_length(reporting_category) BETWEEN 1 AND 100),
    available_on       timestamptz NOT NULL,
    -- The source object (ch_…, re_…, po_…) and what we learned from it.
    source_id          text        CHECK (char_length(source_id) BETWEEN 1 AND 255),
    payment_intent_id  text        CHECK (char_length(payment_intent_id) BETWEEN 1 AND 255),
    -- The ledger transaction this should match: (kind, cause type, cause id) taken from our ids
    -- in Stripe metadata (top_up_id, refund_id) or from the Stripe id itself (payouts, fees).
    match_kind         text        CHECK (char_length(match_kind) BETWEEN 1 AND 40),
    match_cause_type   text        CHECK (char_length(match_cause_type) BETWEEN 1 AND 40),
    match_cause_id     text        CHECK (char_length(match_cause_id) BETWEEN 1 AND 255),
    description        text,
    raw                jsonb       NOT NULL,
    import_run_id      uuid        NOT NULL,
    imported_at        timestamptz NOT NULL,
    PRIMARY KEY (id, created),
    CONSTRAINT finance_stripe_bt_match_whole CHECK (
        (match_kind IS NULL) = (match_cause_type IS NULL) AND (match_kind IS NULL) = (match_cause_id IS NULL)
    )
) PARTITION BY RANGE (created);
CREATE TABLE finance_stripe_balance_transactions_default
    PARTITION OF finance_stripe_balance_transactions DEFAULT;
-- A day's reconciliation: the day's rows in one range scan, carrying the match key.
CREATE INDEX finance_stripe_bt_created_idx ON finance_stripe_balance_transactions (created)
    INCLUDE (match_kind, match_cause_type, match_cause_id, amount, fee, type);
-- Looking up by Stripe id without knowing `created` (support, exceptions).
CREATE INDEX finance_stripe_bt_id_idx ON finance_stripe_balance_transactions (id);
-- Everything Stripe holds for one of our ledger transactions (duplicates, missing at Stripe).
CREATE INDEX finance_stripe_bt_match_idx ON finance_stripe_balance_transactions (match_cause_id, match_kind)
    WHERE match_cause_id IS NOT NULL;

CREATE TABLE finance_stripe_payouts (
    id                 text        PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 255),
    created            timestamptz NOT NULL,
    amount             bigint      NOT NULL,
    currency           text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status             text        NOT NULL CHECK (char_length(status) BETWEEN 1 AND 40),
    arrival_date       timestamptz NOT NULL,
    balance_transaction_id text,
    raw                jsonb       NOT NULL,
    import_run_id      uuid        NOT NULL REFERENCES finance_import_runs (id),
    imported_at        timestamptz NOT NULL
);
CREATE INDEX finance_stripe_payouts_created_idx ON finance_stripe_payouts (created);

CREATE TABLE finance_recon_runs (
    id          uuid        PRIMARY KEY,
    -- The UTC day reconciled: Stripe transactions created in [day, day + 1).
    day         date        NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    -- Counts and sums per status, fees and payouts, as reported.
    summary     jsonb       NOT NULL CHECK (jsonb_typeof(summary) = 'object')
);
CREATE INDEX finance_recon_runs_day_idx ON finance_recon_runs (day, started_at DESC);

CREATE TABLE finance_recon_items (
    run_id                uuid        NOT NULL,
    day                   date        NOT NULL,
    status                text        NOT NULL CHECK (status IN (
                              'matched', 'amount_mismatch', 'missing_in_ledger', 'missing_at_stripe', 'duplicate')),
    stripe_id             text,
    stripe_type           text,
    ledger_transaction_id uuid,
    ledger_kind           text,
    currency              text        NOT NULL,
    stripe_amount         bigint,
    ledger_amount         bigint,
    stripe_fee            bigint,
    ledger_fee            bigint,
    -- What differs, for people: e.g. 'amount', 'fee', 'no ledger transaction for top_up top_…'.
    detail                text,
    CONSTRAINT finance_recon_items_has_side CHECK (stripe_id IS NOT NULL OR ledger_transaction_id IS NOT NULL)
) PARTITION BY RANGE (day);
CREATE TABLE finance_recon_items_default PARTITION OF finance_recon_items DEFAULT;
CREATE INDEX finance_recon_items_run_idx ON finance_recon_items (run_id, status);

CREATE TABLE finance_exceptions (
    id                    uuid        PRIMARY KEY,
    -- What the exception is about: 'stripe:<id>' or 'ledger:<uuid>'.
    item_key              text        NOT NULL CHECK (char_length(item_key) BETWEEN 1 AND 300),
    day                   date        NOT NULL,
    kind                  text        NOT NULL CHECK (kind IN (
                              'amount_mismatch', 'missing_in_ledger', 'missing_at_stripe', 'duplicate', 'unknown_type')),
    stripe_id             text,
    ledger_transaction_id uuid,
    currency              text        NOT NULL,
    stripe_amount         bigint,
    ledger_amount         bigint,
    detail                text,
    status                text        NOT NULL CHECK (status IN ('open', 'resolved')),
    first_run_id          uuid        NOT NULL,
    created_at            timestamptz NOT NULL,
    resolved_at           timestamptz,
    resolved_by           text,
    resolution            text        CHECK (char_length(resolution) BETWEEN 1 AND 1000),
    CONSTRAINT finance_exceptions_resolved CHECK (
        (status = 'resolved') = (resolved_at IS NOT NULL AND resolution IS NOT NULL)
    )
);
CREATE UNIQUE INDEX finance_exceptions_one_open ON finance_exceptions (item_key, kind) WHERE status = 'open';
CREATE INDEX finance_exceptions_queue_idx ON finance_exceptions (status, created_at, id);

CREATE TABLE finance_exception_notes (
    id           bigserial   PRIMARY KEY,
    exception_id uuid        NOT NULL REFERENCES finance_exceptions (id),
    author       text        NOT NULL CHECK (char_length(author) BETWEEN 1 AND 100),
    body         text        NOT NULL CHECK (char_length(body) BETWEEN 1 AND 2000),
    created_at   timestamptz NOT NULL
);
CREATE INDEX finance_exception_notes_exception_idx ON finance_exception_notes (exception_id, id);

-- The ledger summed per UTC day, account kind, transaction kind and currency (driver wallets
-- summed together: one wallet's history is one index range of the postings already). Trial
-- balances, IPT and bordereau totals read these instead of the postings; days on or after the
-- watermark are summed from the postings at query time, so a report never misses a movement the
-- job has not rolled up yet. About 10 rows a day per currency, whatever the volume.
CREATE TABLE finance_ledger_daily (
    day          date   NOT NULL,
    account_kind text   NOT NULL,
    tx_kind      text   NOT NULL,
    currency     text   NOT NULL,
    debit        bigint NOT NULL CHECK (debit >= 0),
    credit       bigint NOT NULL CHECK (credit >= 0),
    postings     bigint NOT NULL CHECK (postings >= 0),
    PRIMARY KEY (day, account_kind, tx_kind, currency)
);

-- One row: the first day not yet in finance_ledger_daily.
CREATE TABLE finance_rollup_watermark (
    name       text        PRIMARY KEY CHECK (name = 'ledger_daily'),
    next_day   date        NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE FUNCTION finance_ensure_month_partition(parent regclass, month_start date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    start_d date := date_trunc('month', month_start)::date;
    end_d   date := (date_trunc('month', month_start) + interval '1 month')::date;
    part    text := format('%s_%s', parent::text, to_char(start_d, 'YYYYMM'));
    bound_lo text;
    bound_hi text;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN;
    END IF;
    IF parent::text = 'finance_stripe_balance_transactions' THEN
        bound_lo := quote_literal(start_d::timestamp AT TIME ZONE 'UTC');
        bound_hi := quote_literal(end_d::timestamp AT TIME ZONE 'UTC');
    ELSE
        bound_lo := quote_literal(start_d);
        bound_hi := quote_literal(end_d);
    END IF;
    -- Rows already in the default partition for that month would block the new partition; move them.
    EXECUTE format('CREATE TEMP TABLE IF NOT EXISTS finance_part_moving (LIKE %s) ON COMMIT DROP', parent);
    EXECUTE format('WITH moved AS (DELETE FROM %s_default WHERE %s >= %s AND %s < %s RETURNING *) '
                   'INSERT INTO finance_part_moving SELECT * FROM moved',
                   parent, CASE WHEN parent::text = 'finance_recon_items' THEN 'day' ELSE 'created' END,
                   bound_lo, CASE WHEN parent::text = 'finance_recon_items' THEN 'day' ELSE 'created' END,
                   bound_hi);
    EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%s) TO (%s)',
                   part, parent, bound_lo, bound_hi);
    EXECUTE format('INSERT INTO %s SELECT * FROM finance_part_moving', parent);
    EXECUTE 'DROP TABLE finance_part_moving';
END;
$$;
