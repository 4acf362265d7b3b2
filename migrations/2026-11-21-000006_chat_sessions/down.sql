DROP INDEX generations_chat_session_idx;
ALTER TABLE generations DROP CONSTRAINT generations_chat_session_fk;
DROP TABLE chat_turns;
DROP TABLE chat_sessions;
