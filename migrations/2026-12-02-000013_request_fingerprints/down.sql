ALTER TABLE chat_turns DROP COLUMN request_fingerprint;
ALTER TABLE generations DROP COLUMN request_fingerprint;
