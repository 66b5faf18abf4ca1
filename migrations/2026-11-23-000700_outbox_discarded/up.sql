-- Ops can give up on a failed job for good: `discarded` is a terminal status next to `done`,
-- with the staff user's reason kept in the audit log.
ALTER TABLE outbox_jobs DROP CONSTRAINT outbox_jobs_status_check;
ALTER TABLE outbox_jobs ADD CONSTRAINT outbox_jobs_status_check
    CHECK (status IN ('pending', 'queued', 'running', 'done', 'dead', 'discarded'));
