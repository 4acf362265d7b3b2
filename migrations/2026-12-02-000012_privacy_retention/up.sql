-- Erasing an account gives nothing new: what the account had used of this month's free actions,
-- when it started its generations of the last hour (the hourly task limit), and a block stay
-- with the identity hash and apply to the next account of the same Telegram account (a blocked
-- user may erase their data; that must not lift the block).
ALTER TABLE erased_identities
    ADD COLUMN blocked BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN free_actions_used INTEGER NOT NULL DEFAULT 0 CHECK (free_actions_used >= 0),
    ADD COLUMN free_period_start DATE NOT NULL DEFAULT date_trunc('month', now() AT TIME ZONE 'UTC')::date,
    ADD COLUMN recent_generations TIMESTAMPTZ[] NOT NULL DEFAULT '{}';

-- A result its owner deleted (DELETE /api/v1/generations/{id}): the image, the prompt and the
-- error go; the row stays (hidden) so that the hourly task limit still counts it, until the
-- retention sweep removes it with the others (RESULT_RETENTION_DAYS).
ALTER TABLE generations ADD COLUMN deleted_at TIMESTAMPTZ;
CREATE INDEX generations_retention_idx ON generations (created_at)
    WHERE status IN ('succeeded', 'failed', 'canceled');
