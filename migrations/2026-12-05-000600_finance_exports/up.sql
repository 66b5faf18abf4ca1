-- Report files built by a job for people to download (a month's bordereau can run to hundreds of
-- thousands of lines): who asked, how far the job has got, and the file once it is done.
CREATE TABLE finance_exports (
    id           uuid        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('bordereau')),
    -- The period, as the report takes it (`YYYY-MM` for the bordereau).
    period       text        NOT NULL CHECK (char_length(period) BETWEEN 1 AND 40),
    status       text        NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    rows_done    bigint      NOT NULL DEFAULT 0 CHECK (rows_done >= 0),
    rows_total   bigint      CHECK (rows_total >= 0),
    file_name    text        CHECK (char_length(file_name) BETWEEN 1 AND 200),
    file         bytea,
    last_error   text        CHECK (char_length(last_error) BETWEEN 1 AND 1000),
    requested_by text        NOT NULL CHECK (char_length(requested_by) BETWEEN 1 AND 100),
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    CONSTRAINT finance_exports_done_has_file CHECK ((status = 'done') = (file IS NOT NULL AND finished_at IS NOT NULL))
);
CREATE INDEX finance_exports_created_idx ON finance_exports (created_at DESC, id DESC);
