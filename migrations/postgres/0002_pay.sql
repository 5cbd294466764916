-- Keys only the gateway knows (the QR token key, card fingerprint pepper), made on first start.
CREATE TABLE gateway_secrets (
    name          TEXT PRIMARY KEY,
    secret        TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);

-- Wallet users. Passwords are Argon2id PHC strings; the ID number is kept masked plus a
-- keyed digest (to check it again when unfreezing), never in full.
CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    phone               TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    real_name           TEXT,
    id_number_masked    TEXT,
    id_number_digest    TEXT,
    real_name_at_us     BIGINT,
    pay_password_hash   TEXT,
    pay_failures        BIGINT NOT NULL DEFAULT 0,
    pay_locked_until_us BIGINT,
    frozen              BIGINT NOT NULL DEFAULT 0 CHECK (frozen IN (0, 1)),
    created_at_us       BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_digest  TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    expires_at_us BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Bound bank cards: the bank's token, its name and the last four digits only.
CREATE TABLE cards (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    bank_token    TEXT NOT NULL,
    bank_name     TEXT NOT NULL,
    last4         TEXT NOT NULL,
    card_kind     TEXT NOT NULL CHECK (card_kind IN ('debit', 'credit')),
    fingerprint   TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('ACTIVE', 'REMOVED')),
    created_at_us BIGINT NOT NULL
);
CREATE UNIQUE INDEX cards_one_active_binding ON cards (user_id, fingerprint) WHERE status = 'ACTIVE';

-- Wallet devices: payment codes and device confirmations are computed from their secret.
CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id),
    name             TEXT NOT NULL,
    secret           TEXT NOT NULL,
    confirm_payments BIGINT NOT NULL CHECK (confirm_payments IN (0, 1)),
    status           TEXT NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED')),
    created_at_us    BIGINT NOT NULL
);
CREATE INDEX devices_user ON devices (user_id);

-- A payment code is one device and one 30 s step: each is accepted once.
CREATE TABLE used_payment_codes (
    device_id  TEXT NOT NULL,
    time_step  BIGINT NOT NULL,
    order_id   TEXT NOT NULL,
    used_at_us BIGINT NOT NULL,
    PRIMARY KEY (device_id, time_step)
);

CREATE TABLE payment_code_failures (
    id          TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    device_id   TEXT,
    at_us       BIGINT NOT NULL
);
CREATE INDEX payment_code_failures_merchant ON payment_code_failures (merchant_id, at_us);
CREATE INDEX payment_code_failures_device ON payment_code_failures (device_id, at_us);

CREATE TABLE orders (
    id             TEXT PRIMARY KEY,
    merchant_id    TEXT NOT NULL REFERENCES merchants (id),
    out_trade_no   TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('native', 'micropay')),
    amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
    currency       TEXT NOT NULL,
    description    TEXT NOT NULL,
    notify_url     TEXT,
    status         TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    expire_at_us   BIGINT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    updated_at_us  BIGINT NOT NULL,
    paid_at_us     BIGINT,
    payer_user_id  TEXT,
    funding        TEXT,
    device_id      TEXT,
    UNIQUE (merchant_id, out_trade_no)
);
CREATE INDEX orders_merchant_created ON orders (merchant_id, created_at_us);
CREATE INDEX orders_payer ON orders (payer_user_id, created_at_us);

-- A device confirms a given order at most once.
CREATE TABLE device_proofs_used (
    order_id   TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    used_at_us BIGINT NOT NULL,
    PRIMARY KEY (order_id, device_id)
);

-- Payments waiting for the consumer (large micropays, risk holds).
CREATE TABLE confirmations (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    order_id       TEXT NOT NULL,
    kind           TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'DECLINED', 'EXPIRED')),
    expires_at_us  BIGINT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    answered_at_us BIGINT
);
CREATE INDEX confirmations_user ON confirmations (user_id, status);
CREATE INDEX confirmations_order ON confirmations (order_id);

-- Card operations at the bank. PROCESSING ones settle later, exactly once.
CREATE TABLE bank_operations (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('top_up', 'payment')),
    user_id        TEXT NOT NULL,
    card_id        TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
    currency       TEXT NOT NULL,
    reference      TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('PROCESSING', 'SUCCESS', 'FAILED')),
    failure_code   TEXT,
    settle_at_us   BIGINT,
    created_at_us  BIGINT NOT NULL,
    settled_at_us  BIGINT
);
CREATE INDEX bank_operations_due ON bank_operations (status, settle_at_us);

-- The consumer's transaction records (交易记录), one per business object.
CREATE TABLE records (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    reference_id  TEXT NOT NULL,
    title         TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    funding       TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    UNIQUE (user_id, kind, reference_id)
);
CREATE INDEX records_user_created ON records (user_id, created_at_us);

-- Money-moving requests carrying an Idempotency-Key. The key is claimed in the same
-- transaction as the money movement and points at what it created, so a replay answers
-- with that object's current state and concurrent replays move money once.
CREATE TABLE idempotency_keys (
    scope          TEXT NOT NULL,
    idem_key       TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    created_at_us  BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);

CREATE TABLE user_alerts (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    message       TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX user_alerts_user ON user_alerts (user_id, created_at_us);
