DROP INDEX IF EXISTS refunds_idempotency_key_unique;
ALTER TABLE refunds
    DROP CONSTRAINT IF EXISTS refunds_key_has_fingerprint,
    DROP COLUMN IF EXISTS request_fingerprint,
    DROP COLUMN IF EXISTS idempotency_key;
