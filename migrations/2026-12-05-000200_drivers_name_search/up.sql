-- Search by any part of a driver's name. Built without locking writes to drivers (alone in its
-- migration, outside a transaction, as CONCURRENTLY requires).
CREATE INDEX CONCURRENTLY IF NOT EXISTS drivers_name_trgm_idx ON drivers USING gin (lower(name) gin_trgm_ops)
