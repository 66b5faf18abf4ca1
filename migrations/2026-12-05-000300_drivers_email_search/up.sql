-- Search by the start of an email address (emails are stored lower-case).
CREATE INDEX CONCURRENTLY IF NOT EXISTS drivers_email_prefix_idx ON drivers (email text_pattern_ops) WHERE email IS NOT NULL
