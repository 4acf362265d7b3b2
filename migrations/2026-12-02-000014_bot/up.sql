-- The bot's webhook: each Telegram update is acted on once (Telegram resends an update until
-- it gets a 2xx), and what the bot knows about each private chat with it.
CREATE TABLE bot_updates (
    update_id BIGINT PRIMARY KEY,
    handled_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Keyed by the Telegram account, not our user row: a chat exists before (and without) an
-- account, e.g. for /start before the Mini App was ever opened.
CREATE TABLE bot_chats (
    telegram_id BIGINT PRIMARY KEY,
    -- The user wrote to the bot: it may write to them, whatever initData said.
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The user blocked the bot (403, or my_chat_member "kicked"); cleared when they come back.
    blocked_at TIMESTAMPTZ,
    -- The first /start payload that was not a referral (acquisition source).
    start_source TEXT,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
