-- The outbox: jobs committed in the same transaction as the change that causes them.
-- A relay moves due rows to Redis; a worker claims a row before running its effect.
CREATE TABLE outbox_jobs (
    id              uuid        PRIMARY KEY,
    job_type        text        NOT NULL,
    queue           text        NOT NULL,
    payload         jsonb       NOT NULL,
    -- One job per (type, key): enqueueing the same cause twice is a no-op.
    idempotency_key text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'queued', 'running', 'done', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts    integer     NOT NULL DEFAULT 8 CHECK (max_attempts > 0),
    run_after       timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    locked_by       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    queued_at       timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    CONSTRAINT outbox_jobs_type_key_unique UNIQUE (job_type, idempotency_key)
);

-- The relay's scan: due pending rows, and queued/running rows that have gone stale.
CREATE INDEX outbox_jobs_due_idx ON outbox_jobs (run_after) WHERE status = 'pending';
CREATE INDEX outbox_jobs_inflight_idx ON outbox_jobs (status, queued_at) WHERE status IN ('queued', 'running');
CREATE INDEX outbox_jobs_dead_idx ON outbox_jobs (finished_at) WHERE status = 'dead';

-- Effects of the demo job, one row per execution (no uniqueness on purpose: tests count them).
CREATE TABLE demo_pings (
    id          bigserial   PRIMARY KEY,
    job_id      uuid        NOT NULL,
    message     text        NOT NULL,
    worker      text        NOT NULL,
    executed_at timestamptz NOT NULL DEFAULT now()
);

-- Append-only record of every staff action and every change of money or cover.
CREATE TABLE audit_log (
    id          bigserial   PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor_type  text        NOT NULL CHECK (actor_type IN ('driver', 'partner', 'staff', 'system')),
    actor_id    text,
    action      text        NOT NULL,
    subject_type text       NOT NULL,
    subject_id  text        NOT NULL,
    reason      text,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    request_id  text
);
CREATE INDEX audit_log_subject_idx ON audit_log (subject_type, subject_id, occurred_at DESC);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
