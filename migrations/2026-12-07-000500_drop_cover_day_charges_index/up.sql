-- What a driver was already charged on a day is now read from cover_session_days (by UK day, a
-- session's part on each day); the index that summed ended sessions by start day is no longer
-- read, and every ending paid to maintain it.
DROP INDEX CONCURRENTLY IF EXISTS cover_sessions_day_charges_idx
