-- A driver's cover never overlaps itself, whoever started it (the driver, any partner): each
-- session occupies [started_at, ended_at) — an active one, [started_at, ∞) — and no two of one
-- driver may intersect. The cover engine already starts late cover where earlier cover ended;
-- this makes the database refuse anything else.
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- lock-ok: PostgreSQL has no ADD EXCLUDE ... USING INDEX, so the GiST index is built under this
-- statement's lock; cover_sessions writes wait for the length of the build. Deploy it in a
-- quiet minute; reads go on meanwhile.
ALTER TABLE cover_sessions
    ADD CONSTRAINT cover_sessions_no_overlap
    EXCLUDE USING gist (
        driver_id WITH =,
        tstzrange(started_at, coalesce(ended_at, 'infinity'::timestamptz), '[)') WITH &&
    );
