UPDATE outbox_jobs SET status = 'dead' WHERE status = 'discarded';
ALTER TABLE outbox_jobs DROP CONSTRAINT outbox_jobs_status_check;
ALTER TABLE outbox_jobs ADD CONSTRAINT outbox_jobs_status_check
    CHECK (status IN ('pending', 'queued', 'running', 'done', 'dead'));
