-- Chargebacks (Stripe disputes on wallet top-ups), refunds made outside ShiftCover, and refunds
-- that fail after they succeeded. Expand-only: the running release never writes the new kinds,
-- never reads the new table or column, and the widened checks accept everything it writes.

-- The ledger learns the dispute fees account (an expense, debit-normal) and the `chargeback`
-- transaction kind (money Stripe took back for a dispute, or returned when it was won).
-- ledger_accounts and ledger_transactions are small next to postings; the checks are re-added
-- NOT VALID and validated separately, so no write waits on the validation's scan.
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_kind_check;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_kind_check CHECK (kind IN (
    'driver_wallet', 'stripe_clearing', 'stripe_fees', 'premium_receivable',
    'insurer_payable', 'commission_income', 'ipt_payable', 'refunds', 'dispute_fees')) NOT VALID;
ALTER TABLE ledger_accounts VALIDATE CONSTRAINT ledger_accounts_kind_check;
ALTER TABLE ledger_accounts DROP CONSTRAINT ledger_accounts_normal_balance_by_kind;
ALTER TABLE ledger_accounts ADD CONSTRAINT ledger_accounts_normal_balance_by_kind CHECK (
    normal_balance = CASE WHEN kind IN ('stripe_clearing', 'stripe_fees', 'premium_receivable', 'dispute_fees')
                          THEN 'debit' ELSE 'credit' END
) NOT VALID;
ALTER TABLE ledger_accounts VALIDATE CONSTRAINT ledger_accounts_normal_balance_by_kind;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check CHECK (kind IN (
    'top_up', 'session_charge', 'refund', 'adjustment', 'reversal', 'fee', 'payout',
    'chargeback')) NOT VALID;
ALTER TABLE ledger_transactions VALIDATE CONSTRAINT ledger_transactions_kind_check;

-- One row per Stripe dispute on one of our top-ups. Stripe's dispute is the truth: the row is
-- its last state as re-read from Stripe, plus the ledger transactions that booked its balance
-- transactions (each once: the ledger's cause is Stripe's balance transaction id).
CREATE TABLE chargebacks (
    id                         uuid        PRIMARY KEY,
    stripe_dispute_id          text        NOT NULL CHECK (stripe_dispute_id ~ '^(dp|du)_[A-Za-z0-9]+$'),
    driver_id                  uuid        NOT NULL REFERENCES drivers (id),
    top_up_id                  uuid        NOT NULL REFERENCES top_ups (id),
    payment_intent_id          text        NOT NULL CHECK (char_length(payment_intent_id) BETWEEN 1 AND 255),
    stripe_charge_id           text        CHECK (char_length(stripe_charge_id) BETWEEN 1 AND 255),
    amount_minor               bigint      NOT NULL CHECK (amount_minor > 0),
    currency                   text        NOT NULL CHECK (currency IN ('GBP', 'EUR')),
    reason                     text        NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 100),
    -- Stripe's status, as last read (needs_response, under_review, won, lost, warning_…).
    stripe_status              text        NOT NULL CHECK (char_length(stripe_status) BETWEEN 1 AND 50),
    evidence_due_by            timestamptz,
    -- The ledger transactions of the withdrawal and of the reinstatement, once booked.
    withdrawn_transaction_id   uuid,
    reinstated_transaction_id  uuid,
    -- Stripe's dispute fees net of any returned, in minor units.
    fee_minor                  bigint      NOT NULL DEFAULT 0,
    stripe_created_at          timestamptz NOT NULL,
    created_at                 timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL,
    CONSTRAINT chargebacks_dispute_unique UNIQUE (stripe_dispute_id)
);
CREATE INDEX chargebacks_driver_idx ON chargebacks (driver_id);
CREATE INDEX chargebacks_top_up_idx ON chargebacks (top_up_id);
CREATE INDEX chargebacks_created_idx ON chargebacks (created_at DESC, id DESC);

-- A refund that succeeded and then failed at Stripe (the bank returned it) keeps the reversal
-- that booked it and names the transaction that undid that booking.
ALTER TABLE refunds ADD COLUMN undone_transaction_id uuid;
