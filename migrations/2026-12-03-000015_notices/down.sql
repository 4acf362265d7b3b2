DROP INDEX bot_updates_handled_at_idx;
DROP TABLE notices;
DROP TABLE notice_settings;
