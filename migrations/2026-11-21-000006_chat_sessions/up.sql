-- The editing assistant: one row per conversation, its history as JSONB, and one row per turn
-- (a paid exchange) that carries the charge, the token accounting and the idempotency key.

CREATE TABLE chat_sessions (
    id                 BIGSERIAL PRIMARY KEY,
    user_id            BIGINT      NOT NULL REFERENCES users (id),
    session_id         UUID        NOT NULL CONSTRAINT chat_sessions_session_id_key UNIQUE,
    -- The photo the conversation is about (an editing_source upload); erased with the session.
    upload_id          UUID        REFERENCES uploads (id),
    -- [{role, content, upload_id?, variants?, timestamp, turn_id?, usage?}], oldest first.
    messages           JSONB       NOT NULL DEFAULT '[]'::jsonb
                                   CONSTRAINT chat_sessions_messages_array CHECK (jsonb_typeof(messages) = 'array'),
    prompt_tokens      BIGINT      NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens  BIGINT      NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    -- What the provider billed for this session, in millionths of a US dollar.
    cost_usd_micros    BIGINT      NOT NULL DEFAULT 0 CHECK (cost_usd_micros >= 0),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The last message (or reset): the session is deleted CHAT_SESSION_TTL_SECS after it.
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX chat_sessions_user_idx ON chat_sessions (user_id, updated_at DESC, session_id DESC);
CREATE INDEX chat_sessions_updated_at_idx ON chat_sessions (updated_at);
CREATE INDEX chat_sessions_upload_idx ON chat_sessions (upload_id);

-- One paid exchange. Inserted `pending` in the transaction that charges it; `completed` in the
-- transaction that appends the history; `failed` (and refunded) when the assistant fails for good,
-- or by the sweeper when a crash left it pending. Rows outlive their session (numbers only, no
-- text), so token and cost figures stay queryable.
CREATE TABLE chat_turns (
    id                 UUID PRIMARY KEY,
    user_id            BIGINT      NOT NULL REFERENCES users (id),
    session_id         UUID        REFERENCES chat_sessions (session_id) ON DELETE SET NULL,
    status             TEXT        NOT NULL DEFAULT 'pending'
                                   CHECK (status IN ('pending', 'completed', 'failed')),
    client_request_id  TEXT        NOT NULL,
    -- The ledger idempotency key of the charge; its refund is keyed from it.
    charge_key         TEXT        NOT NULL UNIQUE,
    credits_spent      BIGINT      NOT NULL CHECK (credits_spent >= 0),
    paid_with          TEXT        NOT NULL CHECK (paid_with IN ('credits', 'free_allowance')),
    model              TEXT        NOT NULL,
    -- Calls made to the provider (retries included): each one is billed.
    attempts           INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    prompt_tokens      BIGINT      NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens  BIGINT      NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    cost_usd_micros    BIGINT      NOT NULL DEFAULT 0 CHECK (cost_usd_micros >= 0),
    error_code         TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at        TIMESTAMPTZ,
    CONSTRAINT chat_turns_client_request_key UNIQUE (user_id, client_request_id),
    CONSTRAINT chat_turns_finished CHECK ((status = 'pending') = (finished_at IS NULL))
);
-- One turn at a time per session: the history is appended in order.
CREATE UNIQUE INDEX chat_turns_one_pending_idx ON chat_turns (session_id) WHERE status = 'pending';
CREATE INDEX chat_turns_pending_idx ON chat_turns (created_at) WHERE status = 'pending';
CREATE INDEX chat_turns_user_pending_idx ON chat_turns (user_id) WHERE status = 'pending';
CREATE INDEX chat_turns_session_idx ON chat_turns (session_id);
CREATE INDEX chat_turns_created_at_idx ON chat_turns (created_at);

-- Generations started from a proposed variant point at their session (kept when it is deleted).
ALTER TABLE generations
    ADD CONSTRAINT generations_chat_session_fk
    FOREIGN KEY (chat_session_id) REFERENCES chat_sessions (session_id) ON DELETE SET NULL;
CREATE INDEX generations_chat_session_idx ON generations (chat_session_id);
