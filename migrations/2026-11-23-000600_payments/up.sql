-- Payments: the Stripe customer of each driver, saved cards and the SetupIntents that saved
-- them, wallet top-ups (PaymentIntents), auto top-up settings, Stripe webhook events, refunds.
-- Owned by apps/payments; no other app writes these tables. Money is in minor units.
--
-- Invariants kept by the database itself:
-- - one Stripe customer per driver, and a customer belongs to one driver;
-- - a Stripe payment method, SetupIntent, PaymentIntent, refund and event is stored once;
-- - a driver has at most one default card, and a removed card is never the default;
-- - a client idempotency key makes at most one top-up per driver;
-- - a driver has at most one automatic top-up waiting (created, requires_action, needs_driver),
--   so a top-up that needs the driver is never followed by another one off-session;
-- - a succeeded top-up has its PaymentIntent and its ledger transaction.

CREATE TABLE stripe_customers (
    driver_id          uuid        PRIMARY KEY REFERENCES drivers (id),
    stripe_customer_id text        NOT NULL CHECK (stripe_customer_id ~ '^cus_[A-Za-z0-9]+$'),
    created_at         timestamptz NOT NULL,
    CONSTRAINT stripe_customers_customer_unique UNIQUE (stripe_customer_id)
);

CREATE TABLE payment_methods (
    id                       uuid        PRIMARY KEY,
    driver_id                uuid        NOT NULL REFERENCES drivers (id),
    stripe_payment_method_id text        NOT NULL CHECK (stripe_payment_method_id ~ '^(pm|card)_[A-Za-z0-9]+$'),
    brand                    text        NOT NULL CHECK (char_length(brand) BETWEEN 1 AND 40),
    last4                    text        NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month                integer     NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year                 integer     NOT NULL CHECK (exp_year BETWEEN 2000 AND 2200),
    status                   text        NOT NULL CHECK (status IN ('active', 'removed')),
    is_default               boolean     NOT NULL,
    created_at               timestamptz NOT NULL,
    removed_at               timestamptz,
    CONSTRAINT payment_methods_stripe_unique UNIQUE (stripe_payment_method_id),
    CONSTRAINT payment_methods_removed_at_iff_removed CHECK ((status = 'removed') = (removed_at IS NOT NULL)),
    CONSTRAINT payment_methods_default_is_active CHECK (NOT is_default OR status = 'active')
);
CREATE UNIQUE INDEX payment_methods_one_default_per_driver ON payment_methods (driver_id) WHERE is_default;
CREATE INDEX payment_methods_driver_idx ON payment_methods (driver_id, created_at);

CREATE TABLE card_setups (
    id                uuid        PRIMARY KEY,
    driver_id         uuid        NOT NULL REFERENCES drivers (id),
    setup_intent_id   text        NOT NULL CHECK (setup_intent_id ~ '^seti_[A-Za-z0-9]+$'),
    -- Stripe's SetupIntent status, as last read from Stripe.
    status            text        NOT NULL CHECK (status IN ('requires_payment_method',
                                  'requires_confirmation', 'requires_action', 'processing',
                                  'succeeded', 'canceled')),
    payment_method_id uuid        REFERENCES payment_methods (id),
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    CONSTRAINT card_setups_setup_intent_unique UNIQUE (setup_intent_id),
    CONSTRAINT card_setups_succeeded_has_card CHECK (status <> 'succeeded' OR payment_method_id IS NOT NULL)
);
CREATE INDEX card_setups_driver_idx ON card_setups (driver_id, created_at);

CREATE TABLE top_ups (
    id                    uuid        PRIMARY KEY,
    driver_id             uuid        NOT NULL REFERENCES drivers (id),
    amount_minor          bigint      NOT NULL CHECK (amount_minor > 0),
    currency              text        NOT NULL CHECK (currency IN ('GBP', 'EUR')),
    kind                  text        NOT NULL CHECK (kind IN ('on_session', 'auto')),
    -- created → requires_action → succeeded | failed | needs_driver | canceled
    status                text        NOT NULL CHECK (status IN ('created', 'requires_action',
                                      'succeeded', 'failed', 'needs_driver', 'canceled')),
    payment_method_id     uuid        NOT NULL REFERENCES payment_methods (id),
    payment_intent_id     text        CHECK (payment_intent_id ~ '^pi_[A-Za-z0-9]+$'),
    -- The client's key (on-session) or one derived from the cause (auto), with a fingerprint of
    -- the request it first came with.
    idempotency_key       text        NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
    request_fingerprint   text        NOT NULL CHECK (request_fingerprint ~ '^[0-9a-f]{64}$'),
    failure_code          text        CHECK (char_length(failure_code) BETWEEN 1 AND 100),
    failure_message       text        CHECK (char_length(failure_message) BETWEEN 1 AND 500),
    -- The ledger transaction that credited the wallet (ledger_transactions.id).
    ledger_transaction_id uuid,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    succeeded_at          timestamptz,
    CONSTRAINT top_ups_driver_key_unique UNIQUE (driver_id, idempotency_key),
    CONSTRAINT top_ups_payment_intent_unique UNIQUE (payment_intent_id),
    CONSTRAINT top_ups_succeeded_is_booked CHECK (
        (status = 'succeeded') = (succeeded_at IS NOT NULL)
        AND (status <> 'succeeded' OR (payment_intent_id IS NOT NULL AND ledger_transaction_id IS NOT NULL))
    )
);
CREATE UNIQUE INDEX top_ups_one_waiting_auto_per_driver ON top_ups (driver_id)
    WHERE kind = 'auto' AND status IN ('created', 'requires_action', 'needs_driver');
CREATE INDEX top_ups_driver_idx ON top_ups (driver_id, created_at DESC);

CREATE TABLE auto_top_up_settings (
    driver_id       uuid        PRIMARY KEY REFERENCES drivers (id),
    enabled         boolean     NOT NULL,
    -- A top-up is made when the wallet falls below the threshold.
    threshold_minor bigint      NOT NULL CHECK (threshold_minor >= 0),
    amount_minor    bigint      NOT NULL CHECK (amount_minor > 0),
    currency        text        NOT NULL CHECK (currency IN ('GBP', 'EUR')),
    updated_at      timestamptz NOT NULL
);

CREATE TABLE stripe_events (
    id                uuid        PRIMARY KEY,
    event_id          text        NOT NULL CHECK (char_length(event_id) BETWEEN 1 AND 255),
    event_type        text        NOT NULL CHECK (char_length(event_type) BETWEEN 1 AND 100),
    -- The object the event is about (data.object), when it has one.
    object_type       text        CHECK (char_length(object_type) BETWEEN 1 AND 100),
    object_id         text        CHECK (char_length(object_id) BETWEEN 1 AND 255),
    livemode          boolean     NOT NULL,
    stripe_created_at timestamptz NOT NULL,
    payload           jsonb       NOT NULL,
    received_at       timestamptz NOT NULL,
    -- received → processed | flagged (stored and looked at by people, never applied blindly).
    status            text        NOT NULL CHECK (status IN ('received', 'processed', 'flagged')),
    processed_at      timestamptz,
    flagged_reason    text        CHECK (char_length(flagged_reason) BETWEEN 1 AND 500),
    CONSTRAINT stripe_events_event_unique UNIQUE (event_id),
    CONSTRAINT stripe_events_processed_at CHECK ((status = 'received') = (processed_at IS NULL)),
    CONSTRAINT stripe_events_flagged_reason CHECK ((status = 'flagged') = (flagged_reason IS NOT NULL))
);
CREATE INDEX stripe_events_object_idx ON stripe_events (object_id, stripe_created_at);
CREATE INDEX stripe_events_status_idx ON stripe_events (status, received_at) WHERE status <> 'processed';

CREATE TABLE refunds (
    id                    uuid        PRIMARY KEY,
    driver_id             uuid        NOT NULL REFERENCES drivers (id),
    -- What is refunded: a card top-up (money back to the card) or a session charge (money back
    -- to the wallet).
    target                text        NOT NULL CHECK (target IN ('top_up', 'session_charge')),
    top_up_id             uuid        REFERENCES top_ups (id),
    cover_session_id      uuid        REFERENCES cover_sessions (id),
    amount_minor          bigint      NOT NULL CHECK (amount_minor > 0),
    currency              text        NOT NULL CHECK (currency IN ('GBP', 'EUR')),
    reason                text        NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    actor_type            text        NOT NULL CHECK (actor_type IN ('driver', 'partner', 'staff', 'system')),
    actor_id              text,
    -- pending → succeeded | failed
    status                text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    stripe_refund_id      text        CHECK (stripe_refund_id ~ '^(re|pyr)_[A-Za-z0-9]+$'),
    failure_reason        text        CHECK (char_length(failure_reason) BETWEEN 1 AND 500),
    -- The reversal that booked it (ledger_transactions.id).
    ledger_transaction_id uuid,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    succeeded_at          timestamptz,
    CONSTRAINT refunds_stripe_unique UNIQUE (stripe_refund_id),
    CONSTRAINT refunds_one_target CHECK (
        (target = 'top_up' AND top_up_id IS NOT NULL AND cover_session_id IS NULL)
        OR (target = 'session_charge' AND cover_session_id IS NOT NULL AND top_up_id IS NULL)
    ),
    CONSTRAINT refunds_succeeded_is_booked CHECK (
        (status = 'succeeded') = (succeeded_at IS NOT NULL)
        AND (status <> 'succeeded' OR ledger_transaction_id IS NOT NULL)
    )
);
CREATE INDEX refunds_top_up_idx ON refunds (top_up_id) WHERE top_up_id IS NOT NULL;
CREATE INDEX refunds_session_idx ON refunds (cover_session_id) WHERE cover_session_id IS NOT NULL;
CREATE INDEX refunds_driver_idx ON refunds (driver_id, created_at DESC);
