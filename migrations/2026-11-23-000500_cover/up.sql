-- Cover: enrolments (the standing pay-as-you-go agreement of a driver for a product), their
-- history, and cover sessions (one period on cover each, with its charge once it has ended).
-- Owned by apps/cover; no other app writes these tables.
--
-- Invariants kept by the database itself:
-- - a driver has at most one enrolment per product that is not cancelled;
-- - a driver has at most one active cover session (whatever the product or vehicle);
-- - a client idempotency key starts at most one session per driver;
-- - a certificate number names one session;
-- - an active session has no end and no charge; any other has both, and its charge adds up
--   (net premium + commission + IPT = total) and never runs past the session's maximum length.

CREATE TABLE enrolments (
    id                       uuid        PRIMARY KEY,
    driver_id                uuid        NOT NULL REFERENCES drivers (id),
    product_id               uuid        NOT NULL REFERENCES products (id),
    -- The vehicle cover starts on when the driver does not name one.
    vehicle_id               uuid        NOT NULL REFERENCES vehicles (id),
    status                   text        NOT NULL
                             CHECK (status IN ('pending', 'active', 'suspended', 'cancelled')),
    -- Why the enrolment is in its status (e.g. `awaiting_payment_method`, `card_needs_authentication`).
    status_reason            text        CHECK (char_length(status_reason) BETWEEN 1 AND 200),
    -- The policy wording the driver accepted, and the product version that carried it.
    terms_version            text        NOT NULL CHECK (char_length(terms_version) BETWEEN 1 AND 50),
    terms_product_version_id uuid        NOT NULL REFERENCES product_versions (id),
    terms_accepted_at        timestamptz NOT NULL,
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL,
    cancelled_at             timestamptz,
    CONSTRAINT enrolments_cancelled_at_iff_cancelled CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);
CREATE UNIQUE INDEX enrolments_one_open_per_driver_product
    ON enrolments (driver_id, product_id) WHERE status <> 'cancelled';
CREATE INDEX enrolments_driver_idx ON enrolments (driver_id, created_at DESC);

-- Every change of an enrolment's status, including its creation (`from_status` NULL).
CREATE TABLE enrolment_events (
    id           bigserial   PRIMARY KEY,
    enrolment_id uuid        NOT NULL REFERENCES enrolments (id),
    from_status  text        CHECK (from_status IN ('pending', 'active', 'suspended', 'cancelled')),
    to_status    text        NOT NULL CHECK (to_status IN ('pending', 'active', 'suspended', 'cancelled')),
    reason       text        NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 200),
    actor_type   text        NOT NULL CHECK (actor_type IN ('driver', 'partner', 'staff', 'system')),
    actor_id     text,
    occurred_at  timestamptz NOT NULL
);
CREATE INDEX enrolment_events_enrolment_idx ON enrolment_events (enrolment_id, id);

CREATE TABLE cover_sessions (
    id                 uuid        PRIMARY KEY,
    driver_id          uuid        NOT NULL REFERENCES drivers (id),
    vehicle_id         uuid        NOT NULL REFERENCES vehicles (id),
    enrolment_id       uuid        NOT NULL REFERENCES enrolments (id),
    -- The version the session is priced on (the quote's).
    product_version_id uuid        NOT NULL REFERENCES product_versions (id),
    quote_id           uuid        NOT NULL REFERENCES quotes (id),
    currency           text        NOT NULL CHECK (currency IN ('GBP', 'EUR')),
    -- Locked when the session starts.
    hourly_rate_minor  bigint      NOT NULL CHECK (hourly_rate_minor >= 0),
    -- active → ended → charged; disputed → adjusted when ops change a charge.
    status             text        NOT NULL
                       CHECK (status IN ('active', 'ended', 'charged', 'disputed', 'adjusted')),
    started_at         timestamptz NOT NULL,
    -- The session is ended for the driver at this time at the latest.
    max_end_at         timestamptz NOT NULL,
    -- An earlier end set by a partner's gap or tail rule.
    scheduled_end_at   timestamptz,
    ended_at           timestamptz,
    end_reason         text        CHECK (end_reason IN
                       ('driver', 'partner', 'gap_rule', 'max_length', 'enrolment_cancelled', 'ops')),
    source             text        NOT NULL CHECK (source IN ('driver', 'partner')),
    partner_id         uuid        REFERENCES partners (id),
    -- The partner's reference of the shift or job that started the session.
    partner_ref        text        CHECK (char_length(partner_ref) BETWEEN 1 AND 200),
    idempotency_key    text        NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
    certificate_number text        NOT NULL CHECK (certificate_number ~ '^SC-[0-9A-Z]{4}-[0-9A-Z]{4}$'),
    -- The charge, once ended (minor units of `currency`; rates in basis points).
    minutes            bigint      CHECK (minutes >= 0),
    billed_minutes     bigint,
    charge_rule        text        CHECK (charge_rule IN ('minimum', 'per_minute', 'capped')),
    uncapped_minor     bigint      CHECK (uncapped_minor >= 0),
    net_minor          bigint,
    commission_minor   bigint,
    ipt_minor          bigint,
    total_minor        bigint      CHECK (total_minor >= 0),
    ipt_rate_bp        integer     CHECK (ipt_rate_bp BETWEEN 0 AND 10000),
    commission_bp      integer     CHECK (commission_bp BETWEEN 0 AND 9999),
    -- When payments took the charge; disputes and adjustments are reserved for ops.
    charged_at         timestamptz,
    disputed_at        timestamptz,
    adjusted_at        timestamptz,
    CONSTRAINT cover_sessions_driver_key_unique UNIQUE (driver_id, idempotency_key),
    CONSTRAINT cover_sessions_certificate_unique UNIQUE (certificate_number),
    CONSTRAINT cover_sessions_max_after_start CHECK (max_end_at > started_at),
    CONSTRAINT cover_sessions_scheduled_in_range CHECK (
        scheduled_end_at IS NULL OR (scheduled_end_at >= started_at AND scheduled_end_at <= max_end_at)
    ),
    CONSTRAINT cover_sessions_end_in_range CHECK (
        ended_at IS NULL OR (ended_at >= started_at AND ended_at <= max_end_at)
    ),
    CONSTRAINT cover_sessions_partner_source CHECK (
        (source = 'partner') = (partner_id IS NOT NULL)
        AND (partner_ref IS NULL OR source = 'partner')
    ),
    -- An active session has neither end nor charge; an ended one has both, whole.
    CONSTRAINT cover_sessions_ended_has_end_and_charge CHECK (
        CASE WHEN status = 'active' THEN
            ended_at IS NULL AND end_reason IS NULL AND minutes IS NULL AND billed_minutes IS NULL
            AND charge_rule IS NULL AND uncapped_minor IS NULL AND net_minor IS NULL
            AND commission_minor IS NULL AND ipt_minor IS NULL AND total_minor IS NULL
            AND ipt_rate_bp IS NULL AND commission_bp IS NULL
        ELSE
            ended_at IS NOT NULL AND end_reason IS NOT NULL AND minutes IS NOT NULL
            AND billed_minutes IS NOT NULL AND charge_rule IS NOT NULL AND uncapped_minor IS NOT NULL
            AND net_minor IS NOT NULL AND commission_minor IS NOT NULL AND ipt_minor IS NOT NULL
            AND total_minor IS NOT NULL AND ipt_rate_bp IS NOT NULL AND commission_bp IS NOT NULL
        END
    ),
    CONSTRAINT cover_sessions_charge_adds_up CHECK (
        total_minor IS NULL OR net_minor + commission_minor + ipt_minor = total_minor
    ),
    CONSTRAINT cover_sessions_billed_covers_minutes CHECK (billed_minutes >= minutes),
    CONSTRAINT cover_sessions_charged_at_when_charged CHECK (status <> 'charged' OR charged_at IS NOT NULL)
);
-- At most one active session per driver: the database, not the code, is the last word.
CREATE UNIQUE INDEX cover_sessions_one_active_per_driver ON cover_sessions (driver_id) WHERE status = 'active';
-- A driver's sessions, newest first (keyset pagination on (started_at, id)); the day's charges.
CREATE INDEX cover_sessions_driver_started_idx ON cover_sessions (driver_id, started_at DESC, id DESC);
-- The closing job's scans.
CREATE INDEX cover_sessions_active_max_end_idx ON cover_sessions (max_end_at) WHERE status = 'active';
CREATE INDEX cover_sessions_active_scheduled_end_idx
    ON cover_sessions (scheduled_end_at) WHERE status = 'active' AND scheduled_end_at IS NOT NULL;
CREATE INDEX cover_sessions_enrolment_idx ON cover_sessions (enrolment_id, status);
