CREATE INDEX CONCURRENTLY IF NOT EXISTS cover_sessions_day_charges_idx ON cover_sessions (driver_id, started_at) INCLUDE (id, currency, total_minor) WHERE status <> 'active'
