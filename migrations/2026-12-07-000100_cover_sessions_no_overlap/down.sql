ALTER TABLE cover_sessions DROP CONSTRAINT IF EXISTS cover_sessions_no_overlap;
