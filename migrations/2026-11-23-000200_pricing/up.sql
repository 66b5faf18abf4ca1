-- Pricing: products, their versioned rate tables and rules, the rating test cases an underwriter
-- signs off with each version, and quotes. Owned by apps/pricing; no other app writes these tables.
--
-- A product version moves draft → published → retired. A published version is immutable: the
-- triggers below refuse any change to it, its rules or its test cases, except the one step
-- published → retired. Quotes, sessions and charges point at the version they used.

CREATE TABLE products (
    id         uuid        PRIMARY KEY,
    code       text        NOT NULL CHECK (code ~ '^[a-z][a-z0-9_]{2,49}$'),
    name       text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL,
    CONSTRAINT products_code_unique UNIQUE (code)
);

-- The rate table is JSONB, validated by the pricing app before it is written (factors are integers
-- in basis points, 10000 = ×1; amounts are integer minor units); the database checks its shape.
CREATE TABLE product_versions (
    id              uuid        PRIMARY KEY,
    product_id      uuid        NOT NULL REFERENCES products (id),
    version_number  integer     NOT NULL CHECK (version_number > 0),
    status          text        NOT NULL CHECK (status IN ('draft', 'published', 'retired')),
    currency        text        NOT NULL CHECK (currency IN ('GBP', 'EUR')),
    wording_version text        NOT NULL CHECK (char_length(wording_version) BETWEEN 1 AND 50),
    rate_table      jsonb       NOT NULL CHECK (
        jsonb_typeof(rate_table) = 'object'
        AND rate_table ?& ARRAY['base_hourly_rates', 'region_factors', 'time_bands', 'age_bands',
                                'years_licensed_bands', 'claims_bands']
    ),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    published_at    timestamptz,
    retired_at      timestamptz,
    CONSTRAINT product_versions_number_unique UNIQUE (product_id, version_number),
    CONSTRAINT product_versions_status_dates CHECK (
        (status = 'draft' AND published_at IS NULL AND retired_at IS NULL)
        OR (status = 'published' AND published_at IS NOT NULL AND retired_at IS NULL)
        OR (status = 'retired' AND published_at IS NOT NULL AND retired_at >= published_at)
    )
);
-- At most one published version per product: the one new quotes are rated with.
CREATE UNIQUE INDEX product_versions_one_published
    ON product_versions (product_id) WHERE status = 'published';

-- The typed rules of a version, one row per version (kept beside the version row so that each
-- table stays narrow; the immutability rules are the same).
CREATE TABLE product_version_rules (
    product_version_id        uuid    PRIMARY KEY REFERENCES product_versions (id) ON DELETE CASCADE,
    minimum_age               integer NOT NULL CHECK (minimum_age BETWEEN 16 AND 100),
    eligible_vehicle_types    text[]  NOT NULL CHECK (
        cardinality(eligible_vehicle_types) > 0
        AND eligible_vehicle_types <@ ARRAY['bicycle', 'e_bike', 'scooter', 'motorbike', 'car', 'van']
    ),
    minimum_charge_minutes    integer NOT NULL CHECK (minimum_charge_minutes BETWEEN 1 AND 1440),
    billing_increment_minutes integer NOT NULL CHECK (billing_increment_minutes BETWEEN 1 AND 60),
    gap_rule_minutes          integer NOT NULL CHECK (gap_rule_minutes BETWEEN 0 AND 240),
    tail_cover_minutes        integer NOT NULL CHECK (tail_cover_minutes BETWEEN 0 AND 240),
    daily_cap_minor           bigint  NOT NULL CHECK (daily_cap_minor > 0),
    commission_bp             integer NOT NULL CHECK (commission_bp BETWEEN 0 AND 9999),
    ipt_bp                    integer NOT NULL CHECK (ipt_bp BETWEEN 0 AND 10000)
);

-- Rating test cases of a version, in the order given: inputs and the expected hourly rate (or
-- decline) and explanation. Publishing runs them all; one failure refuses the publication.
CREATE TABLE rating_test_cases (
    product_version_id uuid    NOT NULL REFERENCES product_versions (id) ON DELETE CASCADE,
    position           integer NOT NULL CHECK (position >= 0),
    name               text    NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    case_data          jsonb   NOT NULL CHECK (jsonb_typeof(case_data) = 'object'),
    PRIMARY KEY (product_version_id, position),
    CONSTRAINT rating_test_cases_name_unique UNIQUE (product_version_id, name)
);

-- Published and retired versions are immutable. The only change allowed after publication is
-- published → retired (status and retired_at); drafts may be edited, published or deleted.
CREATE FUNCTION product_versions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'product version % is %: only drafts can be deleted', OLD.id, OLD.status
                USING ERRCODE = 'integrity_constraint_violation',
                      CONSTRAINT = 'product_versions_immutable';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'draft' AND NEW.status IN ('draft', 'published') THEN
        RETURN NEW;
    END IF;
    IF OLD.status = 'published' AND NEW.status = 'retired'
       AND (to_jsonb(NEW) - 'status' - 'retired_at') = (to_jsonb(OLD) - 'status' - 'retired_at') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'product version % is %: it cannot be changed', OLD.id, OLD.status
        USING ERRCODE = 'integrity_constraint_violation',
              CONSTRAINT = 'product_versions_immutable';
END;
$$;
CREATE TRIGGER product_versions_immutable BEFORE UPDATE OR DELETE ON product_versions
    FOR EACH ROW EXECUTE FUNCTION product_versions_guard();

-- Rules and test cases may be written only while their version is a draft. (Deleting a draft
-- cascades to them: the parent is still a draft when the cascade runs.)
CREATE FUNCTION product_version_children_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parent_id     uuid;
    parent_status text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        parent_id := OLD.product_version_id;
    ELSE
        parent_id := NEW.product_version_id;
    END IF;
    SELECT status INTO parent_status FROM product_versions WHERE id = parent_id;
    IF parent_status IS NOT NULL AND parent_status <> 'draft' THEN
        RAISE EXCEPTION 'product version % is %: its % cannot be changed', parent_id, parent_status, TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation',
                  CONSTRAINT = 'product_versions_immutable';
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.product_version_id <> NEW.product_version_id THEN
        RAISE EXCEPTION '% rows cannot move to another product version', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation',
                  CONSTRAINT = 'product_versions_immutable';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER product_version_rules_immutable BEFORE INSERT OR UPDATE OR DELETE ON product_version_rules
    FOR EACH ROW EXECUTE FUNCTION product_version_children_guard();
CREATE TRIGGER rating_test_cases_immutable BEFORE INSERT OR UPDATE OR DELETE ON rating_test_cases
    FOR EACH ROW EXECUTE FUNCTION product_version_children_guard();

-- A quote: the price of cover for one driver and vehicle on one product version, locked until it
-- expires. Amounts are minor units of `currency`; the one-hour breakdown adds up to its total.
CREATE TABLE quotes (
    id                        uuid        PRIMARY KEY,
    driver_id                 uuid        NOT NULL REFERENCES drivers (id),
    vehicle_id                uuid        NOT NULL REFERENCES vehicles (id),
    -- No foreign key: every quote of a product would share a key-share lock on its one published
    -- version row, serialising concurrent quotes. The insert trigger below checks the version
    -- exists and is published, and published or retired versions can never be deleted.
    product_version_id        uuid        NOT NULL,
    currency                  text        NOT NULL CHECK (currency IN ('GBP', 'EUR')),
    hourly_rate_minor         bigint      NOT NULL CHECK (hourly_rate_minor > 0),
    minimum_charge_minor      bigint      NOT NULL CHECK (minimum_charge_minor >= 0),
    daily_cap_minor           bigint      NOT NULL CHECK (daily_cap_minor > 0),
    one_hour_net_minor        bigint      NOT NULL CHECK (one_hour_net_minor >= 0),
    one_hour_commission_minor bigint      NOT NULL CHECK (one_hour_commission_minor >= 0),
    one_hour_ipt_minor        bigint      NOT NULL CHECK (one_hour_ipt_minor >= 0),
    one_hour_total_minor      bigint      NOT NULL,
    -- One line per rating factor, in the order applied.
    explanation               jsonb       NOT NULL CHECK (jsonb_typeof(explanation) = 'array'),
    -- The facts rated (vehicle type, age, years licensed, claims, postcode area, start time).
    rating_input              jsonb       NOT NULL CHECK (jsonb_typeof(rating_input) = 'object'),
    created_at                timestamptz NOT NULL,
    expires_at                timestamptz NOT NULL CHECK (expires_at > created_at),
    CONSTRAINT quotes_one_hour_adds_up CHECK (
        one_hour_net_minor + one_hour_commission_minor + one_hour_ipt_minor = one_hour_total_minor
    ),
    CONSTRAINT quotes_one_hour_is_the_rate CHECK (one_hour_total_minor = hourly_rate_minor)
);
CREATE INDEX quotes_driver_idx ON quotes (driver_id, created_at DESC);
CREATE INDEX quotes_version_idx ON quotes (product_version_id);

-- New quotes are only ever rated on the product's published version, and a quote keeps the
-- version it was rated on.
CREATE FUNCTION quotes_on_published_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'quote %: the product version of a quote cannot change', OLD.id
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'quotes_version_published';
    END IF;
    PERFORM 1 FROM product_versions WHERE id = NEW.product_version_id AND status = 'published';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product version % is not published', NEW.product_version_id
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'quotes_version_published';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER quotes_version_published BEFORE INSERT OR UPDATE OF product_version_id ON quotes
    FOR EACH ROW EXECUTE FUNCTION quotes_on_published_version();
