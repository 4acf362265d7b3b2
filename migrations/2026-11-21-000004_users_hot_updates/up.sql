-- Every login rewrites last_seen_at. Without an index on it (and with room left in each page),
-- those updates are HOT: no index is touched. Activity figures scan users instead.
DROP INDEX users_last_seen_at_idx;
ALTER TABLE users SET (fillfactor = 80);
