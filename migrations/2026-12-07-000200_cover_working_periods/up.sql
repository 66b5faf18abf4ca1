-- One minimum charge per continuous working period: a session that starts within the product's
-- gap rule after the driver's previous session ended continues that session's period instead of
-- paying a second minimum. Such a session has a row here naming the session it continues and the
-- minutes the period had covered before it; a session without one began its own period.
CREATE TABLE cover_session_continuations (
    session_id           uuid   PRIMARY KEY REFERENCES cover_sessions (id),
    continues_session_id uuid   NOT NULL UNIQUE REFERENCES cover_sessions (id),
    minutes_before       bigint NOT NULL CHECK (minutes_before >= 0),
    CHECK (session_id <> continues_session_id)
);

-- A continuation bills what its period grows by, which can be fewer minutes than it covered (the
-- period's minimum already paid for them): billed minutes are no longer at least the minutes.
ALTER TABLE cover_sessions DROP CONSTRAINT cover_sessions_billed_covers_minutes;
ALTER TABLE cover_sessions
    ADD CONSTRAINT cover_sessions_billed_not_negative CHECK (billed_minutes >= 0) NOT VALID;
ALTER TABLE cover_sessions VALIDATE CONSTRAINT cover_sessions_billed_not_negative;
