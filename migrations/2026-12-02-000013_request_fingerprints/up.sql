-- The SHA-256 of the parsed request an idempotency key first came with: the same key with
-- another request is refused (422 idempotency_key_reused). NULL on rows from before.
ALTER TABLE generations ADD COLUMN request_fingerprint TEXT;
ALTER TABLE chat_turns ADD COLUMN request_fingerprint TEXT;
