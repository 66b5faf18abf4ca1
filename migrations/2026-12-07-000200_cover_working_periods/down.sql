ALTER TABLE cover_sessions DROP CONSTRAINT IF EXISTS cover_sessions_billed_not_negative;
ALTER TABLE cover_sessions
    ADD CONSTRAINT cover_sessions_billed_covers_minutes CHECK (billed_minutes >= minutes) NOT VALID;
DROP TABLE IF EXISTS cover_session_continuations;
