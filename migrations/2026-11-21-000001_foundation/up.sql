-- Foundation: users, the append-only credit ledger and the product catalogue.

CREATE TABLE users (
    id                  BIGSERIAL PRIMARY KEY,
    telegram_id         BIGINT      NOT NULL UNIQUE,
    username            TEXT,
    first_name          TEXT        NOT NULL DEFAULT '',
    last_name           TEXT,
    language_code       TEXT,
    is_premium          BOOLEAN     NOT NULL DEFAULT FALSE,
    photo_url           TEXT,
    allows_write_to_pm  BOOLEAN     NOT NULL DEFAULT FALSE,
    balance_credits     BIGINT      NOT NULL DEFAULT 0 CONSTRAINT users_balance_non_negative CHECK (balance_credits >= 0),
    subscription_plan   TEXT        CHECK (subscription_plan IN ('basic', 'pro', 'premium')),
    subscription_until  TIMESTAMPTZ,
    free_actions_used   INTEGER     NOT NULL DEFAULT 0 CHECK (free_actions_used >= 0),
    free_period_start   DATE        NOT NULL DEFAULT date_trunc('month', now() AT TIME ZONE 'UTC')::date,
    referral_code       TEXT        NOT NULL CONSTRAINT users_referral_code_key UNIQUE,
    referred_by         BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    is_blocked          BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_no_self_referral CHECK (referred_by IS DISTINCT FROM id)
);
CREATE INDEX users_referred_by_idx ON users (referred_by);
CREATE INDEX users_created_at_idx ON users (created_at);
CREATE INDEX users_last_seen_at_idx ON users (last_seen_at);

-- Every credit movement is one row here; users.balance_credits is the running sum.
-- Rows with delta 0 record a use (or return) of the free monthly allowance.
CREATE TABLE credit_ledger (
    id               BIGSERIAL PRIMARY KEY,
    user_id          BIGINT      NOT NULL REFERENCES users (id),
    delta            BIGINT      NOT NULL,
    balance_after    BIGINT      NOT NULL CHECK (balance_after >= 0),
    reason           TEXT        NOT NULL CHECK (reason IN (
                         'signup_bonus', 'free_allowance', 'purchase', 'subscription', 'referral_bonus',
                         'charge', 'refund', 'admin_grant', 'admin_debit')),
    ref_type         TEXT,
    ref_id           TEXT,
    idempotency_key  TEXT        NOT NULL CONSTRAINT credit_ledger_idempotency_key_key UNIQUE,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT credit_ledger_delta_sign CHECK (
        (reason IN ('signup_bonus', 'purchase', 'subscription', 'referral_bonus', 'admin_grant') AND delta > 0)
        OR (reason IN ('charge', 'admin_debit') AND delta < 0)
        OR (reason = 'free_allowance' AND delta = 0)
        OR (reason = 'refund' AND delta >= 0))
);
CREATE INDEX credit_ledger_user_id_idx ON credit_ledger (user_id, id DESC);
CREATE INDEX credit_ledger_created_at_idx ON credit_ledger (created_at);
CREATE INDEX credit_ledger_ref_idx ON credit_ledger (ref_type, ref_id);

-- The ledger is append-only: history is corrected by new rows, never rewritten.
CREATE FUNCTION credit_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit_ledger is append-only';
END;
$$;
CREATE TRIGGER credit_ledger_append_only
    BEFORE UPDATE OR DELETE ON credit_ledger
    FOR EACH ROW EXECUTE FUNCTION credit_ledger_append_only();

CREATE TABLE products (
    id           TEXT PRIMARY KEY,
    kind         TEXT        NOT NULL CHECK (kind IN ('credit_pack', 'subscription')),
    title        TEXT        NOT NULL,
    credits      BIGINT      NOT NULL CHECK (credits > 0),
    plan         TEXT        CHECK (plan IN ('basic', 'pro', 'premium')),
    period_days  INTEGER     CHECK (period_days > 0),
    price_minor  BIGINT      NOT NULL CHECK (price_minor > 0),
    currency     TEXT        NOT NULL DEFAULT 'RUB' CHECK (currency ~ '^[A-Z]{3}$'),
    active       BOOLEAN     NOT NULL DEFAULT TRUE,
    sort_order   INTEGER     NOT NULL DEFAULT 0,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT products_plan_shape CHECK (
        (kind = 'subscription' AND plan IS NOT NULL AND period_days IS NOT NULL)
        OR (kind = 'credit_pack' AND plan IS NULL AND period_days IS NULL))
);

-- The catalogue. Prices are kopecks; a fitting costs 2 credits, an edit 1.
INSERT INTO products (id, kind, title, credits, plan, period_days, price_minor, sort_order) VALUES
    ('pack_10',      'credit_pack',  'Пакет 10 кредитов',          10,  NULL,      NULL, 19900,  10),
    ('pack_30',      'credit_pack',  'Пакет 30 кредитов',          30,  NULL,      NULL, 49900,  20),
    ('pack_100',     'credit_pack',  'Пакет 100 кредитов',         100, NULL,      NULL, 139000, 30),
    ('plan_basic',   'subscription', 'Basic: 60 кредитов в месяц',  60,  'basic',   30,   29900,  110),
    ('plan_pro',     'subscription', 'Pro: 200 кредитов в месяц',   200, 'pro',     30,   79000,  120),
    ('plan_premium', 'subscription', 'Premium: 500 кредитов в месяц', 500, 'premium', 30, 169000, 130);
