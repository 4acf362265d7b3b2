-- Try-ons and edits: charged once when queued, refunded once when they fail for good.
CREATE TABLE generations (
    id                 UUID PRIMARY KEY,
    user_id            BIGINT      NOT NULL REFERENCES users (id),
    kind               TEXT        NOT NULL CHECK (kind IN ('fitting', 'editing')),
    status             TEXT        NOT NULL DEFAULT 'queued'
                                   CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    zone               TEXT,
    prompt             TEXT        NOT NULL,
    person_upload_id   UUID        REFERENCES uploads (id),
    item_upload_id     UUID        REFERENCES uploads (id),
    source_upload_id   UUID        REFERENCES uploads (id),
    chat_session_id    UUID,
    result_key         TEXT,
    result_width       INTEGER,
    result_height      INTEGER,
    credits_spent      BIGINT      NOT NULL DEFAULT 0 CHECK (credits_spent >= 0),
    paid_with          TEXT        NOT NULL CHECK (paid_with IN ('credits', 'free_allowance', 'subscription')),
    -- The ledger idempotency key of the charge; its refund is keyed from it.
    charge_key         TEXT        NOT NULL UNIQUE,
    provider           TEXT        NOT NULL,
    provider_task_id   TEXT,
    -- createTask calls made (kie.ai has no idempotency: capped).
    attempts           INTEGER     NOT NULL DEFAULT 0,
    progress           SMALLINT    NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    error_code         TEXT,
    error_message      TEXT,
    client_request_id  TEXT        NOT NULL,
    job_id             BIGINT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at         TIMESTAMPTZ,
    finished_at        TIMESTAMPTZ,
    CONSTRAINT generations_client_request_key UNIQUE (user_id, client_request_id),
    CONSTRAINT generations_inputs CHECK (
        (kind = 'fitting' AND zone IS NOT NULL AND person_upload_id IS NOT NULL AND item_upload_id IS NOT NULL)
        OR (kind = 'editing' AND source_upload_id IS NOT NULL))
);
CREATE INDEX generations_user_idx ON generations (user_id, created_at DESC, id DESC);
CREATE INDEX generations_active_idx ON generations (created_at) WHERE status IN ('queued', 'running');
CREATE UNIQUE INDEX generations_provider_task_idx ON generations (provider_task_id) WHERE provider_task_id IS NOT NULL;
CREATE INDEX generations_person_upload_idx ON generations (person_upload_id);
CREATE INDEX generations_item_upload_idx ON generations (item_upload_id);
CREATE INDEX generations_source_upload_idx ON generations (source_upload_id);
