-- Payments (YooKassa, its local sandbox, Telegram Stars), their notification inbox, referrals.

-- Taking back the credits of a refunded purchase is its own ledger reason (a negative delta).
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_reason_check;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_reason_check CHECK (reason IN (
    'signup_bonus', 'free_allowance', 'purchase', 'subscription', 'referral_bonus',
    'charge', 'refund', 'admin_grant', 'admin_debit', 'purchase_refund'));
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_delta_sign;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_delta_sign CHECK (
    (reason IN ('signup_bonus', 'purchase', 'subscription', 'referral_bonus', 'admin_grant') AND delta > 0)
    OR (reason IN ('charge', 'admin_debit', 'purchase_refund') AND delta < 0)
    OR (reason = 'free_allowance' AND delta = 0)
    OR (reason = 'refund' AND delta >= 0));

-- The price in Telegram Stars (whole Stars); NULL: not sold for Stars.
ALTER TABLE products ADD COLUMN price_stars BIGINT CHECK (price_stars > 0);
UPDATE products SET price_stars = CASE id
    WHEN 'pack_10' THEN 150 WHEN 'pack_30' THEN 350 WHEN 'pack_100' THEN 1000
    WHEN 'plan_basic' THEN 220 WHEN 'plan_pro' THEN 550 WHEN 'plan_premium' THEN 1200 END;

CREATE TABLE payments (
    id                   UUID PRIMARY KEY,
    user_id              BIGINT      NOT NULL REFERENCES users (id),
    provider             TEXT        NOT NULL CHECK (provider IN ('yookassa', 'sandbox', 'telegram_stars')),
    -- The provider's id (YooKassa payment id, Stars telegram_payment_charge_id); NULL until known.
    provider_payment_id  TEXT,
    product_id           TEXT        NOT NULL REFERENCES products (id),
    -- Kopecks for RUB, whole Stars for XTR; copied from the catalogue when the payment is created.
    amount_minor         BIGINT      NOT NULL CHECK (amount_minor > 0),
    currency             TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status               TEXT        NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'succeeded', 'canceled', 'refunded')),
    credits              BIGINT      NOT NULL CHECK (credits > 0),
    plan                 TEXT        CHECK (plan IN ('basic', 'pro', 'premium')),
    period_days          INTEGER     CHECK (period_days > 0),
    -- НПД and the provider's commission, set when the payment succeeds (RUB only).
    tax_minor            BIGINT      CHECK (tax_minor >= 0),
    commission_minor     BIGINT      CHECK (commission_minor >= 0),
    net_minor            BIGINT,
    -- Our Idempotence-Key at the provider, stored before the provider is called.
    idempotency_key      TEXT        NOT NULL CONSTRAINT payments_idempotency_key_key UNIQUE,
    -- The client's Idempotency-Key: a repeated create returns the same payment.
    client_key           TEXT,
    -- The exact provider request, kept until the provider has answered it (a retry must repeat it).
    create_request       JSONB,
    confirmation_url     TEXT,
    -- Credits of a refunded purchase that had already been spent and could not be taken back.
    refund_shortfall     BIGINT      NOT NULL DEFAULT 0 CHECK (refund_shortfall >= 0),
    last_error           TEXT,
    checked_at           TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    paid_at              TIMESTAMPTZ,
    CONSTRAINT payments_provider_payment_id_key UNIQUE (provider, provider_payment_id),
    CONSTRAINT payments_client_key_key UNIQUE (user_id, client_key),
    CONSTRAINT payments_paid_shape CHECK (status IN ('pending', 'canceled') OR paid_at IS NOT NULL)
);
CREATE INDEX payments_user_id_idx ON payments (user_id, created_at DESC);
CREATE INDEX payments_product_id_idx ON payments (product_id);
CREATE INDEX payments_pending_idx ON payments (created_at) WHERE status = 'pending';
CREATE INDEX payments_paid_at_idx ON payments (paid_at) WHERE paid_at IS NOT NULL;

-- The notification inbox: one row per (provider, event, object), processed once.
CREATE TABLE payment_events (
    id            BIGSERIAL PRIMARY KEY,
    provider      TEXT        NOT NULL,
    event         TEXT        NOT NULL,
    object_id     TEXT        NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    body          JSONB       NOT NULL,
    -- applied | ignored | rejected; NULL until a verified answer was acted on.
    outcome       TEXT,
    processed_at  TIMESTAMPTZ,
    CONSTRAINT payment_events_unique UNIQUE (provider, event, object_id)
);

CREATE TABLE referrals (
    id               BIGSERIAL PRIMARY KEY,
    referrer_id      BIGINT      NOT NULL REFERENCES users (id),
    referred_id      BIGINT      NOT NULL CONSTRAINT referrals_referred_id_key UNIQUE REFERENCES users (id),
    -- 0 when the referrer's daily cap was reached.
    credits_awarded  BIGINT      NOT NULL CHECK (credits_awarded >= 0),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT referrals_no_self CHECK (referrer_id <> referred_id)
);
CREATE INDEX referrals_referrer_id_idx ON referrals (referrer_id, created_at);

-- The sandbox payment provider's own records: what YooKassa would hold. Used only without keys.
CREATE TABLE sandbox_payments (
    id               TEXT PRIMARY KEY,
    idempotence_key  TEXT        NOT NULL UNIQUE,
    request          JSONB       NOT NULL,
    status           TEXT        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'canceled')),
    amount_minor     BIGINT      NOT NULL,
    currency         TEXT        NOT NULL,
    description      TEXT        NOT NULL,
    metadata         JSONB       NOT NULL,
    return_url       TEXT        NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
