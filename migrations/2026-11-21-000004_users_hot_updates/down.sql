ALTER TABLE users RESET (fillfactor);
CREATE INDEX users_last_seen_at_idx ON users (last_seen_at);
