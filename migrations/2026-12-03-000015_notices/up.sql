-- Notices the bot sends a user (a generation failed and was refunded, a payment was credited, a
-- referral bonus was earned, the monthly free actions are back), and the user's choice of them.

-- One row per user who changed a default: notices on, "free actions are back" off (opt-in).
CREATE TABLE notice_settings (
    user_id           BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    notices           BOOLEAN NOT NULL DEFAULT true,
    free_actions_back BOOLEAN NOT NULL DEFAULT false,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Each notice once: `key` names the event (`generation_failed:<id>`, `payment:<id>`, ...), so
-- a hook that runs twice enqueues one notice; the job claims `sent_at` before it sends, so a
-- retried or reclaimed job never sends it twice.
CREATE TABLE notices (
    key        TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN
                   ('generation_failed', 'payment_credited', 'referral_bonus', 'free_actions_back')),
    args       JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set when the job starts sending (cleared again when Telegram asks it to retry).
    sent_at    TIMESTAMPTZ
);
CREATE INDEX notices_user_idx ON notices (user_id);

-- The retention sweep drops handled update ids by age.
CREATE INDEX bot_updates_handled_at_idx ON bot_updates (handled_at);
