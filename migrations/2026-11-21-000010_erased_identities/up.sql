-- Telegram accounts whose owners erased their data, as a keyed hash (HMAC-SHA256 of the id under
-- the server's JWT secret): not the id itself, yet enough that the same account signing up again
-- earns no second signup bonus and no second referral bonus for whoever invited it.
CREATE TABLE erased_identities (
    identity_hash BYTEA PRIMARY KEY,
    erased_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
