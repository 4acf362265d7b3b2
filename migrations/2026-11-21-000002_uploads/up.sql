-- Uploaded photos (already validated, normalised and stripped of metadata).
CREATE TABLE uploads (
    id           UUID PRIMARY KEY,
    user_id      BIGINT      NOT NULL REFERENCES users (id),
    purpose      TEXT        NOT NULL CHECK (purpose IN ('fitting_person', 'fitting_item', 'editing_source')),
    storage_key  TEXT        NOT NULL UNIQUE,
    mime         TEXT        NOT NULL CHECK (mime IN ('image/jpeg', 'image/png')),
    width        INTEGER     NOT NULL CHECK (width > 0),
    height       INTEGER     NOT NULL CHECK (height > 0),
    bytes        BIGINT      NOT NULL CHECK (bytes > 0),
    sha256       TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- When the retention sweep erases it (object and row marked deleted).
    expires_at   TIMESTAMPTZ NOT NULL,
    deleted_at   TIMESTAMPTZ
);
CREATE INDEX uploads_user_id_idx ON uploads (user_id, created_at DESC);
CREATE INDEX uploads_expiry_idx ON uploads (expires_at) WHERE deleted_at IS NULL;
