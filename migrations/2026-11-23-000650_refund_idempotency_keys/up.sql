-- Refunds asked for by people (ops and finance in the back office) carry the client's
-- idempotency key, so a double submit or a retry after a timeout refunds once. The key is unique
-- across refunds; the fingerprint of the request it was first used with tells a retry (same
-- request) from a mistake (another request under the same key). Refunds made by code (jobs,
-- tests) may have no key. Expand-only: old code ignores both columns.
ALTER TABLE refunds
    ADD COLUMN idempotency_key     text CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
    ADD COLUMN request_fingerprint text CHECK (request_fingerprint ~ '^[0-9a-f]{64}$'),
    ADD CONSTRAINT refunds_key_has_fingerprint
        CHECK ((idempotency_key IS NULL) = (request_fingerprint IS NULL));
CREATE UNIQUE INDEX refunds_idempotency_key_unique ON refunds (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
