-- What a person did, newest first: the back office's audit trail of a driver reads the log by
-- actor as well as by subject.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_log_actor_idx ON audit_log (actor_id, occurred_at DESC) WHERE actor_id IS NOT NULL
