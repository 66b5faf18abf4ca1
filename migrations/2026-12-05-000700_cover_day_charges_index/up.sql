-- What a driver was already charged on a day (the daily cap), read at every ending: the day's
-- ended sessions and their totals straight from the index, without visiting their rows.
CREATE INDEX CONCURRENTLY IF NOT EXISTS cover_sessions_day_charges_idx ON cover_sessions (driver_id, started_at) INCLUDE (id, currency, total_minor) WHERE status <> 'active'
