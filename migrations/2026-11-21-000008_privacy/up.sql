-- Erasure (DELETE /api/v1/me): the user row stays for the ledger and payments, anonymised,
-- and records when it was erased.
ALTER TABLE users ADD COLUMN erased_at TIMESTAMPTZ;
CREATE INDEX users_erased_at_idx ON users (erased_at) WHERE erased_at IS NOT NULL;
