-- Search by a vehicle's registration across drivers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS vehicles_registration_idx ON vehicles (registration) WHERE removed_at IS NULL AND registration IS NOT NULL
