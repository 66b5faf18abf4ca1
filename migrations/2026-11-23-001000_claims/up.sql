-- Claims: first notice of loss from drivers (with photos), the claim's life as handled by ops
-- (status changes, reserve movements, settlement), and drivers' disputes of session charges.
-- Owned by apps/claims; no other app writes these tables.
--
-- Invariants kept by the database itself:
-- - a claim reference names one claim; a client idempotency key reports at most one claim per driver;
-- - a claim is tied to a cover session exactly when it was covered at the time of loss, and says
--   on which basis (working time, the gap rule, tail cover); an uncovered claim says why;
-- - status is one of the six states; a closed claim (settled, declined, withdrawn) has its close
--   time, a settled one its paid amount, and only a settled one has a paid amount;
-- - a photo belongs to one driver and to at most one claim, and is one of four image types;
-- - a session has at most one open dispute (a partial unique index); a resolved dispute has its
--   outcome, time and staff user, and a refunded or adjusted one its refund.

CREATE TABLE claims (
    id                   uuid        PRIMARY KEY,
    -- What the driver quotes: CLM- and two groups of four Crockford base-32 characters.
    reference            text        NOT NULL CHECK (reference ~ '^CLM-[0-9A-Z]{4}-[0-9A-Z]{4}$'),
    driver_id            uuid        NOT NULL REFERENCES drivers (id),
    vehicle_id           uuid        NOT NULL REFERENCES vehicles (id),
    occurred_at          timestamptz NOT NULL,
    -- When the driver told us (the bordereau's "date advised").
    reported_at          timestamptz NOT NULL,
    location             text        NOT NULL CHECK (char_length(location) BETWEEN 1 AND 300),
    description          text        NOT NULL CHECK (char_length(description) BETWEEN 1 AND 4000),
    third_party_involved boolean     NOT NULL,
    injuries             boolean     NOT NULL,
    -- The cover session active at the time of loss for this vehicle, when there was one.
    session_id           uuid        REFERENCES cover_sessions (id),
    certificate_number   text,
    cover_basis          text        CHECK (cover_basis IN ('working', 'gap_rule', 'tail_cover')),
    -- Why there was no cover, and the session nearest to the time of loss (shown to the driver).
    no_cover_reason      text        CHECK (no_cover_reason IN ('no_session', 'other_vehicle')),
    nearest_session_id   uuid        REFERENCES cover_sessions (id),
    status               text        NOT NULL CHECK (status IN
                         ('reported', 'acknowledged', 'under_review', 'settled', 'declined', 'withdrawn')),
    currency             text        NOT NULL CHECK (currency IN ('GBP', 'EUR')),
    reserve_minor        bigint      CHECK (reserve_minor >= 0),
    paid_minor           bigint      CHECK (paid_minor >= 0),
    idempotency_key      text        NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
    request_fingerprint  text        NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    closed_at            timestamptz,
    CONSTRAINT claims_reference_unique UNIQUE (reference),
    CONSTRAINT claims_driver_key_unique UNIQUE (driver_id, idempotency_key),
    CONSTRAINT claims_loss_before_report CHECK (occurred_at <= reported_at + interval '5 minutes'),
    CONSTRAINT claims_covered_has_session CHECK (
        CASE WHEN session_id IS NOT NULL THEN
            cover_basis IS NOT NULL AND certificate_number IS NOT NULL
            AND no_cover_reason IS NULL AND nearest_session_id IS NULL
        ELSE
            cover_basis IS NULL AND certificate_number IS NULL AND no_cover_reason IS NOT NULL
        END
    ),
    CONSTRAINT claims_closed_at_iff_closed CHECK (
        (status IN ('settled', 'declined', 'withdrawn')) = (closed_at IS NOT NULL)
    ),
    CONSTRAINT claims_paid_iff_settled CHECK ((status = 'settled') = (paid_minor IS NOT NULL))
);
CREATE INDEX claims_driver_idx ON claims (driver_id, reported_at DESC, id DESC);
CREATE INDEX claims_status_idx ON claims (status, reported_at, id);
CREATE INDEX claims_session_idx ON claims (session_id) WHERE session_id IS NOT NULL;

-- Every status a claim took, its first (`from_status` NULL) included, with who and why.
CREATE TABLE claim_status_changes (
    id          bigserial   PRIMARY KEY,
    claim_id    uuid        NOT NULL REFERENCES claims (id),
    from_status text        CHECK (from_status IN
                ('reported', 'acknowledged', 'under_review', 'settled', 'declined', 'withdrawn')),
    to_status   text        NOT NULL CHECK (to_status IN
                ('reported', 'acknowledged', 'under_review', 'settled', 'declined', 'withdrawn')),
    reason      text        NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    actor_type  text        NOT NULL CHECK (actor_type IN ('driver', 'staff', 'system')),
    actor_id    text,
    occurred_at timestamptz NOT NULL,
    CONSTRAINT claim_status_changes_moves CHECK (from_status IS DISTINCT FROM to_status)
);
-- A claim reaches each status at most once (the states have no cycles).
CREATE UNIQUE INDEX claim_status_changes_once ON claim_status_changes (claim_id, to_status);

-- Every reserve ops set on a claim (the bordereau reads the reserve as it stood at a month's end).
CREATE TABLE claim_reserve_changes (
    id            bigserial   PRIMARY KEY,
    claim_id      uuid        NOT NULL REFERENCES claims (id),
    reserve_minor bigint      NOT NULL CHECK (reserve_minor >= 0),
    reason        text        NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    staff_id      uuid        NOT NULL REFERENCES staff (id),
    occurred_at   timestamptz NOT NULL
);
CREATE INDEX claim_reserve_changes_claim_idx ON claim_reserve_changes (claim_id, occurred_at, id);

-- Photos a driver uploaded: stored by a `PhotoStore` under `storage_key`, attached to a claim when
-- the claim is reported.
CREATE TABLE claim_photos (
    id           uuid        PRIMARY KEY,
    driver_id    uuid        NOT NULL REFERENCES drivers (id),
    claim_id     uuid        REFERENCES claims (id),
    content_type text        NOT NULL
                 CHECK (content_type IN ('image/jpeg', 'image/png', 'image/heic', 'image/webp')),
    size_bytes   bigint      NOT NULL CHECK (size_bytes > 0),
    sha256       text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    storage_key  text        NOT NULL CHECK (char_length(storage_key) BETWEEN 1 AND 300),
    uploaded_at  timestamptz NOT NULL,
    attached_at  timestamptz,
    CONSTRAINT claim_photos_storage_key_unique UNIQUE (storage_key),
    CONSTRAINT claim_photos_attached_iff_claim CHECK ((claim_id IS NULL) = (attached_at IS NULL))
);
CREATE INDEX claim_photos_claim_idx ON claim_photos (claim_id, uploaded_at) WHERE claim_id IS NOT NULL;
CREATE INDEX claim_photos_driver_idx ON claim_photos (driver_id, uploaded_at);

-- A driver's dispute of a charged session's charge, and how ops resolved it.
CREATE TABLE charge_disputes (
    id              uuid        PRIMARY KEY,
    driver_id       uuid        NOT NULL REFERENCES drivers (id),
    session_id      uuid        NOT NULL REFERENCES cover_sessions (id),
    reason          text        NOT NULL CHECK (reason IN ('not_working', 'wrong_vehicle', 'other')),
    details         text        CHECK (char_length(details) BETWEEN 1 AND 1000),
    -- The charge disputed, as it stood when the dispute was opened.
    charge_minor    bigint      NOT NULL CHECK (charge_minor > 0),
    currency        text        NOT NULL CHECK (currency IN ('GBP', 'EUR')),
    status          text        NOT NULL CHECK (status IN ('open', 'upheld', 'adjusted', 'refunded')),
    refund_id       uuid        REFERENCES refunds (id),
    refund_minor    bigint      CHECK (refund_minor > 0),
    resolution_note text        CHECK (char_length(resolution_note) BETWEEN 1 AND 500),
    resolved_by     uuid        REFERENCES staff (id),
    resolved_at     timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT charge_disputes_other_has_details CHECK (reason <> 'other' OR details IS NOT NULL),
    CONSTRAINT charge_disputes_resolution CHECK (
        CASE WHEN status = 'open' THEN
            resolved_at IS NULL AND resolved_by IS NULL AND resolution_note IS NULL
            AND refund_id IS NULL AND refund_minor IS NULL
        ELSE
            resolved_at IS NOT NULL AND resolved_by IS NOT NULL AND resolution_note IS NOT NULL
        END
    ),
    CONSTRAINT charge_disputes_refund_iff_refunded CHECK (
        (status IN ('adjusted', 'refunded')) = (refund_id IS NOT NULL AND refund_minor IS NOT NULL)
    ),
    CONSTRAINT charge_disputes_refund_within_charge CHECK (refund_minor <= charge_minor)
);
-- One open dispute per session: two racing disputes cannot both be opened.
CREATE UNIQUE INDEX charge_disputes_one_open_per_session ON charge_disputes (session_id) WHERE status = 'open';
CREATE INDEX charge_disputes_session_idx ON charge_disputes (session_id);
CREATE INDEX charge_disputes_driver_idx ON charge_disputes (driver_id, created_at DESC, id DESC);
CREATE INDEX charge_disputes_status_idx ON charge_disputes (status, created_at, id);
