-- Who did what on /admin: every action that changes data, written in the same transaction.
CREATE TABLE admin_audit (
    id          BIGSERIAL PRIMARY KEY,
    -- `api_key` or `telegram:<id>`.
    actor       TEXT        NOT NULL,
    action      TEXT        NOT NULL,
    user_id     BIGINT      REFERENCES users (id),
    details     JSONB       NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX admin_audit_user_id_idx ON admin_audit (user_id);
CREATE INDEX admin_audit_created_at_idx ON admin_audit (created_at);
