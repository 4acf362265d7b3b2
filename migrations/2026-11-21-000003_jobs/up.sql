-- The durable job queue. A job is enqueued in the same transaction as the write that needs it;
-- workers claim runnable rows with FOR UPDATE SKIP LOCKED and hold them under a lease
-- (locked_by, locked_until) that they extend while the job runs. A `running` row whose lease
-- lapsed belongs to a lost worker and is claimed again.
CREATE TABLE jobs (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT        NOT NULL CHECK (kind <> ''),
    payload       JSONB       NOT NULL DEFAULT '{}'::jsonb,
    status        TEXT        NOT NULL DEFAULT 'queued'
                              CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    -- Higher runs first.
    priority      SMALLINT    NOT NULL DEFAULT 0,
    -- Claims so far (a claim counts; a release at shutdown or a reschedule gives it back).
    attempts      INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  INTEGER     NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    -- Not claimed before this time (backoff, reschedule, delayed jobs).
    run_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    locked_by     TEXT,
    locked_until  TIMESTAMPTZ,
    last_error    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A lease exists exactly while the job runs.
    CONSTRAINT jobs_lease_shape CHECK (
        (status = 'running') = (locked_by IS NOT NULL AND locked_until IS NOT NULL))
);

-- Serves the claim: unfinished rows in claim order; finished rows stay out of the index.
-- locked_until and updated_at are deliberately not indexed, so extending a lease is a HOT update.
CREATE INDEX jobs_claim_idx ON jobs (priority DESC, run_at, id) WHERE status IN ('queued', 'running');
