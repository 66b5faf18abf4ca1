-- The daily cap is by UK day: a session crossing midnight (Europe/London) is priced as its parts,
-- each against what is left of its own day's cap. Each ended session has one row per UK day it
-- covered with that part's minutes and charge; the parts' charges add up to the session's total
-- (checked when the ending commits). What a driver was already charged on a day is the sum of
-- their rows of that day.
CREATE TABLE cover_session_days (
    session_id     uuid   NOT NULL REFERENCES cover_sessions (id),
    uk_day         date   NOT NULL,
    driver_id      uuid   NOT NULL,
    currency       text   NOT NULL,
    minutes        bigint NOT NULL CHECK (minutes >= 0),
    billed_minutes bigint NOT NULL CHECK (billed_minutes >= 0),
    uncapped_minor bigint NOT NULL CHECK (uncapped_minor >= 0),
    charged_minor  bigint NOT NULL CHECK (charged_minor >= 0 AND charged_minor <= uncapped_minor),
    PRIMARY KEY (session_id, uk_day)
);

CREATE INDEX cover_session_days_driver_day_idx
    ON cover_session_days (driver_id, uk_day) INCLUDE (currency, charged_minor);

-- Sessions ended before this migration were capped by the day they started on: that is the day
-- their whole charge belongs to.
INSERT INTO cover_session_days (session_id, uk_day, driver_id, currency, minutes, billed_minutes,
                                uncapped_minor, charged_minor)
SELECT id, (started_at AT TIME ZONE 'Europe/London')::date, driver_id, currency, minutes,
       billed_minutes, greatest(uncapped_minor, total_minor), total_minor
  FROM cover_sessions
 WHERE status <> 'active' AND total_minor IS NOT NULL;

-- A day's part is written once, with its session's ending.
CREATE FUNCTION cover_session_days_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'cover_session_days rows are never changed or removed'
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER cover_session_days_immutable
    BEFORE UPDATE OR DELETE ON cover_session_days
    FOR EACH ROW EXECUTE FUNCTION cover_session_days_immutable();

-- When an ending commits, its day parts add up to its total. A session ended by a release that
-- wrote no parts (one still running during a deploy) was priced against the day it started on:
-- its whole charge is recorded as that day's part.
CREATE FUNCTION cover_session_days_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parts bigint;
    charged bigint;
BEGIN
    SELECT count(*), coalesce(sum(charged_minor), 0) INTO parts, charged
      FROM cover_session_days WHERE session_id = NEW.id;
    IF parts = 0 THEN
        INSERT INTO cover_session_days (session_id, uk_day, driver_id, currency, minutes,
                                        billed_minutes, uncapped_minor, charged_minor)
        VALUES (NEW.id, (NEW.started_at AT TIME ZONE 'Europe/London')::date, NEW.driver_id,
                NEW.currency, NEW.minutes, NEW.billed_minutes,
                greatest(NEW.uncapped_minor, NEW.total_minor), NEW.total_minor);
    ELSIF charged <> NEW.total_minor THEN
        RAISE EXCEPTION 'session % is charged % but its days add up to %', NEW.id,
            NEW.total_minor, charged
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER cover_session_days_balance
    AFTER UPDATE OF status ON cover_sessions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (OLD.status = 'active' AND NEW.status <> 'active')
    EXECUTE FUNCTION cover_session_days_balance();

CREATE CONSTRAINT TRIGGER cover_session_days_balance_insert
    AFTER INSERT ON cover_sessions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (NEW.status <> 'active')
    EXECUTE FUNCTION cover_session_days_balance();
