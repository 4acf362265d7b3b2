DROP INDEX users_erased_at_idx;
ALTER TABLE users DROP COLUMN erased_at;
