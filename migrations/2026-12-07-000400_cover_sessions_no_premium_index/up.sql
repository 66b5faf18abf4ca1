-- Sessions priced nothing still appear on the bordereau (their certificates were issued), found
-- by the month their charge was settled in: a small index of only those sessions.
CREATE INDEX CONCURRENTLY IF NOT EXISTS cover_sessions_no_premium_idx ON cover_sessions (charged_at) WHERE total_minor = 0
