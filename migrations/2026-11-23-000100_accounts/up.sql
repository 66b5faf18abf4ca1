-- Accounts and access control: drivers and their vehicles, SMS login codes, driver and staff
-- sessions, staff users, partners and their API keys. Owned by apps/accounts; no other app writes
-- these tables. Secrets (codes, tokens, keys, passwords) are stored only as hashes.

-- A driver. The phone (E.164) is the login. Deleting an account pseudonymises the row instead of
-- removing it (cover, charges and claims keep pointing at it): personal fields are cleared and the
-- phone becomes a tombstone `deleted:drv_<uuid hex>`, so the number can sign up again as a new driver.
CREATE TABLE drivers (
    id                uuid        PRIMARY KEY,
    phone             text        NOT NULL,
    name              text        CHECK (char_length(name) BETWEEN 1 AND 100),
    date_of_birth     date,
    email             text        CHECK (email = lower(email)),
    licence_number    text        CHECK (licence_number ~ '^[A-Z9]{5}[0-9]{6}[A-Z9]{2}[0-9][A-Z]{2}$'),
    licence_issued_on date,
    postcode          text        CHECK (postcode ~ '^[A-Z0-9]{2,4} [0-9][A-Z]{2}$'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    CONSTRAINT drivers_phone_unique UNIQUE (phone),
    CONSTRAINT drivers_phone_shape CHECK (
        phone ~ '^\+[1-9][0-9]{6,14}$'
        OR (deleted_at IS NOT NULL AND phone = 'deleted:drv_' || replace(id::text, '-', ''))
    ),
    -- Deleted means pseudonymised: no personal field survives deletion.
    CONSTRAINT drivers_deleted_is_pseudonymised CHECK (
        deleted_at IS NULL
        OR (name IS NULL AND date_of_birth IS NULL AND email IS NULL AND licence_number IS NULL
            AND licence_issued_on IS NULL AND postcode IS NULL)
    )
);

-- One-time SMS login codes, one row per request. Only the HMAC of (phone, code) is stored.
-- A newer request supersedes older unused codes for the same phone.
CREATE TABLE login_codes (
    id            uuid        PRIMARY KEY,
    phone         text        NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    code_hash     bytea       NOT NULL CHECK (octet_length(code_hash) = 32),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL CHECK (expires_at > created_at),
    attempts      integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  integer     NOT NULL CHECK (max_attempts > 0),
    used_at       timestamptz,
    superseded_at timestamptz,
    CONSTRAINT login_codes_attempts_capped CHECK (attempts <= max_attempts)
);
-- Verification reads the newest live code of a phone.
CREATE INDEX login_codes_phone_idx ON login_codes (phone, created_at DESC);

-- Driver sign-in sessions (not cover sessions). Only the SHA-256 of the bearer token is stored.
CREATE TABLE driver_sessions (
    id           uuid        PRIMARY KEY,
    driver_id    uuid        NOT NULL REFERENCES drivers (id),
    token_hash   bytea       NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL CHECK (expires_at > created_at),
    revoked_at   timestamptz,
    last_seen_at timestamptz NOT NULL,
    CONSTRAINT driver_sessions_token_hash_unique UNIQUE (token_hash)
);
CREATE INDEX driver_sessions_driver_idx ON driver_sessions (driver_id, created_at DESC);

-- Vehicle types are a closed list; the Rust enum `VehicleType` mirrors it.
CREATE TABLE vehicles (
    id           uuid        PRIMARY KEY,
    driver_id    uuid        NOT NULL REFERENCES drivers (id),
    registration text        CHECK (registration ~ '^[A-Z0-9]{2,8}$'),
    vehicle_type text        NOT NULL
                 CHECK (vehicle_type IN ('bicycle', 'e_bike', 'scooter', 'motorbike', 'car', 'van')),
    make         text        CHECK (char_length(make) BETWEEN 1 AND 50),
    model        text        CHECK (char_length(model) BETWEEN 1 AND 50),
    created_at   timestamptz NOT NULL DEFAULT now(),
    removed_at   timestamptz,
    -- Pedal cycles carry no registration; every motor vehicle does.
    CONSTRAINT vehicles_registration_by_type CHECK (
        (vehicle_type IN ('bicycle', 'e_bike')) = (registration IS NULL)
    )
);
CREATE INDEX vehicles_driver_idx ON vehicles (driver_id, created_at);
-- A driver cannot hold the same registration twice at once; a removed vehicle can be added again.
CREATE UNIQUE INDEX vehicles_driver_registration_unique
    ON vehicles (driver_id, registration)
    WHERE removed_at IS NULL AND registration IS NOT NULL;

-- Ops, finance and admin users of the back office.
CREATE TABLE staff (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL CHECK (email = lower(email)),
    name          text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    role          text        NOT NULL CHECK (role IN ('ops', 'finance', 'admin')),
    -- PHC string, argon2id.
    password_hash text        NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz,
    CONSTRAINT staff_email_unique UNIQUE (email)
);

CREATE TABLE staff_sessions (
    id           uuid        PRIMARY KEY,
    staff_id     uuid        NOT NULL REFERENCES staff (id),
    token_hash   bytea       NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL CHECK (expires_at > created_at),
    revoked_at   timestamptz,
    last_seen_at timestamptz NOT NULL,
    CONSTRAINT staff_sessions_token_hash_unique UNIQUE (token_hash)
);
CREATE INDEX staff_sessions_staff_idx ON staff_sessions (staff_id, created_at DESC);

-- Partner platforms. The partners app adds driver links, shift events and webhooks in its own tables.
CREATE TABLE partners (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    status     text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Partner API keys: `sck_live_<prefix>_<secret>` / `sck_test_…`. The prefix finds the row; only the
-- SHA-256 of the whole key is stored. Rotation gives the old key an expiry (the overlap window).
CREATE TABLE partner_api_keys (
    id           uuid        PRIMARY KEY,
    partner_id   uuid        NOT NULL REFERENCES partners (id),
    prefix       text        NOT NULL CHECK (prefix ~ '^[a-z0-9]{8}$'),
    key_hash     bytea       NOT NULL CHECK (octet_length(key_hash) = 32),
    scopes       text[]      NOT NULL CHECK (cardinality(scopes) > 0 AND array_position(scopes, NULL) IS NULL),
    test_mode    boolean     NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CONSTRAINT partner_api_keys_prefix_unique UNIQUE (prefix)
);
CREATE INDEX partner_api_keys_partner_idx ON partner_api_keys (partner_id, created_at);
