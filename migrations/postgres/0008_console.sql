-- Staff of a merchant who log in to the cashier console (/console). A console user acts
-- for its merchant on the merchant API, without holding the merchant's API secret.
CREATE TABLE console_users (
    id            TEXT PRIMARY KEY,
    merchant_id   TEXT NOT NULL REFERENCES merchants (id),
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);

-- Console log-ins. Only the SHA-256 digest of the cookie's token is kept.
CREATE TABLE console_sessions (
    token_digest    TEXT PRIMARY KEY,
    console_user_id TEXT NOT NULL REFERENCES console_users (id),
    expires_at_us   BIGINT NOT NULL,
    created_at_us   BIGINT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (console_user_id);
