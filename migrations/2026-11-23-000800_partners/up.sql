-- Partners: links between a partner's drivers and ShiftCover drivers, the raw shift events
-- partners send, and the signed webhooks sent back to them. Owned by apps/partners; no other
-- app writes these tables.
--
-- Sandbox: every row carries `test_mode`. A partner's test keys read and write only test rows,
-- its live keys only live rows; test-mode events never start real cover.

-- Short codes a driver creates in the app and gives to a partner to link the two accounts.
-- Only the SHA-256 of the normalised code is stored; a code links once and expires soon.
CREATE TABLE partner_link_codes (
    id          uuid        PRIMARY KEY,
    driver_id   uuid        NOT NULL REFERENCES drivers (id),
    code_hash   bytea       NOT NULL CHECK (octet_length(code_hash) = 32),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    -- The link the code made, once used.
    link_id     uuid,
    CONSTRAINT partner_link_codes_hash_unique UNIQUE (code_hash),
    CONSTRAINT partner_link_codes_expiry_after_creation CHECK (expires_at > created_at),
    CONSTRAINT partner_link_codes_used_has_link CHECK ((used_at IS NULL) = (link_id IS NULL))
);
CREATE INDEX partner_link_codes_driver_idx ON partner_link_codes (driver_id, created_at DESC);

-- A partner's driver (its own id for them) linked to a ShiftCover driver. A driver may be linked
-- to several partners; to one partner at most once at a time; an external id names one linked
-- driver per partner at a time. Unlinking keeps the row (events for it then answer NOT_LINKED).
CREATE TABLE partner_driver_links (
    id                 uuid        PRIMARY KEY,
    partner_id         uuid        NOT NULL REFERENCES partners (id),
    driver_id          uuid        NOT NULL REFERENCES drivers (id),
    external_driver_id text        NOT NULL CHECK (char_length(external_driver_id) BETWEEN 1 AND 200),
    test_mode          boolean     NOT NULL,
    linked_at          timestamptz NOT NULL,
    unlinked_at        timestamptz,
    unlinked_by        text        CHECK (unlinked_by IN ('driver', 'partner', 'staff')),
    -- The latest accepted shift event, and when the link was flagged for having none for long.
    last_event_at      timestamptz,
    flagged_stale_at   timestamptz,
    CONSTRAINT partner_driver_links_unlinked_by CHECK ((unlinked_at IS NULL) = (unlinked_by IS NULL))
);
CREATE UNIQUE INDEX partner_driver_links_external_unique
    ON partner_driver_links (partner_id, test_mode, external_driver_id) WHERE unlinked_at IS NULL;
CREATE UNIQUE INDEX partner_driver_links_driver_unique
    ON partner_driver_links (partner_id, test_mode, driver_id) WHERE unlinked_at IS NULL;
CREATE INDEX partner_driver_links_driver_idx ON partner_driver_links (driver_id);
CREATE INDEX partner_driver_links_lookup_idx
    ON partner_driver_links (partner_id, test_mode, external_driver_id, linked_at DESC);

-- How a partner's events start cover: from the first accepted job (the default) or from going
-- online. A partner without a row uses the default.
CREATE TABLE partner_shift_rules (
    partner_id      uuid        PRIMARY KEY REFERENCES partners (id),
    cover_starts_on text        NOT NULL CHECK (cover_starts_on IN ('job_accepted', 'online')),
    updated_at      timestamptz NOT NULL
);

-- Accepted shift events, one row per partner event id (idempotency: a repeat with the same
-- content is a duplicate, with other content it is rejected). Sessions are computed from these,
-- in `occurred_at` order.
CREATE TABLE shift_events (
    id                 bigserial   PRIMARY KEY,
    partner_id         uuid        NOT NULL REFERENCES partners (id),
    test_mode          boolean     NOT NULL,
    partner_event_id   text        NOT NULL CHECK (char_length(partner_event_id) BETWEEN 1 AND 200),
    -- SHA-256 of the event's content (kind, driver, time, vehicle type, reference).
    content_hash       bytea       NOT NULL CHECK (octet_length(content_hash) = 32),
    link_id            uuid        NOT NULL REFERENCES partner_driver_links (id),
    external_driver_id text        NOT NULL CHECK (char_length(external_driver_id) BETWEEN 1 AND 200),
    kind               text        NOT NULL
                       CHECK (kind IN ('online', 'job_accepted', 'job_completed', 'offline')),
    occurred_at        timestamptz NOT NULL,
    received_at        timestamptz NOT NULL,
    vehicle_type       text        NOT NULL
                       CHECK (vehicle_type IN ('bicycle', 'e_bike', 'scooter', 'motorbike', 'car', 'van')),
    reference          text        CHECK (char_length(reference) BETWEEN 1 AND 200),
    -- What the event did for cover: `covered` (session_id set), `not_covered` (result_code says
    -- why), or `recorded` (no cover change: outside any working period, or a sandbox event).
    result             text        NOT NULL CHECK (result IN ('covered', 'not_covered', 'recorded')),
    result_code        text        CHECK (char_length(result_code) BETWEEN 1 AND 100),
    session_id         uuid,
    CONSTRAINT shift_events_partner_event_unique UNIQUE (partner_id, test_mode, partner_event_id),
    CONSTRAINT shift_events_not_covered_has_code CHECK ((result = 'not_covered') = (result_code IS NOT NULL))
);
CREATE INDEX shift_events_link_time_idx ON shift_events (link_id, occurred_at);

-- Events refused, with the code they were answered with: the log partners and ops read.
CREATE TABLE shift_event_rejections (
    id                 bigserial   PRIMARY KEY,
    partner_id         uuid        NOT NULL REFERENCES partners (id),
    test_mode          boolean     NOT NULL,
    partner_event_id   text        NOT NULL,
    external_driver_id text        NOT NULL,
    code               text        NOT NULL CHECK (char_length(code) BETWEEN 1 AND 100),
    event              jsonb       NOT NULL,
    received_at        timestamptz NOT NULL
);
CREATE INDEX shift_event_rejections_partner_idx ON shift_event_rejections (partner_id, received_at DESC);

-- The cover sessions started from a partner's events, and whether the partner was told that
-- each started and ended (so each is told once, whoever ends the session).
CREATE TABLE partner_sessions (
    session_id        uuid        PRIMARY KEY,
    partner_id        uuid        NOT NULL REFERENCES partners (id),
    link_id           uuid        NOT NULL REFERENCES partner_driver_links (id),
    started_at        timestamptz NOT NULL,
    created_at        timestamptz NOT NULL,
    ended_notified_at timestamptz
);
CREATE INDEX partner_sessions_link_idx ON partner_sessions (link_id, started_at);
CREATE INDEX partner_sessions_open_idx ON partner_sessions (created_at) WHERE ended_notified_at IS NULL;

-- Where a partner wants webhooks. The signing secret is kept in clear (it signs, it is not a
-- password); after a rotation the previous secret also signs until it expires.
CREATE TABLE webhook_endpoints (
    id                         uuid        PRIMARY KEY,
    partner_id                 uuid        NOT NULL REFERENCES partners (id),
    test_mode                  boolean     NOT NULL,
    url                        text        NOT NULL CHECK (url ~ '^https?://' AND char_length(url) <= 2000),
    event_types                text[]      NOT NULL CHECK (
        cardinality(event_types) >= 1
        AND event_types <@ ARRAY['cover.started', 'cover.ended', 'cover.not_covered', 'driver.unlinked']::text[]
    ),
    secret                     text        NOT NULL CHECK (char_length(secret) BETWEEN 16 AND 200),
    previous_secret            text        CHECK (char_length(previous_secret) BETWEEN 16 AND 200),
    previous_secret_expires_at timestamptz,
    enabled                    boolean     NOT NULL,
    -- How long one delivery attempt waits for the endpoint's answer.
    timeout_ms                 integer     NOT NULL CHECK (timeout_ms BETWEEN 100 AND 10000),
    created_at                 timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL,
    CONSTRAINT webhook_endpoints_previous_secret_expires CHECK (
        (previous_secret IS NULL) = (previous_secret_expires_at IS NULL)
    )
);
CREATE INDEX webhook_endpoints_partner_idx ON webhook_endpoints (partner_id, test_mode);

-- One event for one endpoint: the payload as sent, where delivery stands, and when to give up.
CREATE TABLE webhook_deliveries (
    id              uuid        PRIMARY KEY,
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id),
    partner_id      uuid        NOT NULL REFERENCES partners (id),
    event_type      text        NOT NULL
                    CHECK (event_type IN ('cover.started', 'cover.ended', 'cover.not_covered', 'driver.unlinked')),
    -- Our id of the event (`evt_…`), the same for every endpoint it goes to.
    event_id        text        NOT NULL CHECK (char_length(event_id) BETWEEN 1 AND 200),
    payload         jsonb       NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Replays asked for by the partner or ops; each is a new round of attempts.
    replays         integer     NOT NULL DEFAULT 0 CHECK (replays >= 0),
    next_attempt_at timestamptz,
    last_attempt_at timestamptz,
    give_up_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    failed_at       timestamptz,
    created_at      timestamptz NOT NULL,
    CONSTRAINT webhook_deliveries_event_unique UNIQUE (endpoint_id, event_id),
    CONSTRAINT webhook_deliveries_succeeded_at CHECK ((status = 'succeeded') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at DESC);
CREATE INDEX webhook_deliveries_partner_idx ON webhook_deliveries (partner_id, created_at DESC);

-- Every attempt at a delivery: what the endpoint answered, how fast, or why there was no answer.
CREATE TABLE webhook_attempts (
    id               bigserial   PRIMARY KEY,
    delivery_id      uuid        NOT NULL REFERENCES webhook_deliveries (id),
    attempted_at     timestamptz NOT NULL,
    status_code      integer     CHECK (status_code BETWEEN 100 AND 999),
    latency_ms       integer     NOT NULL CHECK (latency_ms >= 0),
    response_snippet text        CHECK (char_length(response_snippet) <= 500),
    error            text        CHECK (char_length(error) <= 500),
    succeeded        boolean     NOT NULL
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, id);
