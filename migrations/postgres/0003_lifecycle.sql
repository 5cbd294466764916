-- Refund totals kept on the order, so "never refund more than was paid" is one
-- conditional update that concurrent refunds queue on.
ALTER TABLE orders ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN refund_count BIGINT NOT NULL DEFAULT 0;

CREATE TABLE refunds (
    id             TEXT PRIMARY KEY,
    merchant_id    TEXT NOT NULL,
    order_id       TEXT NOT NULL REFERENCES orders (id),
    out_refund_no  TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
    currency       TEXT NOT NULL,
    reason         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('PROCESSING', 'SUCCESS', 'ABNORMAL')),
    funding        TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    settle_at_us   BIGINT,
    created_at_us  BIGINT NOT NULL,
    succeeded_at_us BIGINT,
    UNIQUE (merchant_id, out_refund_no)
);
CREATE INDEX refunds_order ON refunds (order_id);
CREATE INDEX refunds_due ON refunds (status, settle_at_us);
CREATE INDEX refunds_merchant_succeeded ON refunds (merchant_id, succeeded_at_us);

-- Consumers' refund requests (申请退款) and every step taken on them.
CREATE TABLE refund_requests (
    id            TEXT PRIMARY KEY,
    order_id      TEXT NOT NULL REFERENCES orders (id),
    merchant_id   TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL CHECK (amount_minor > 0),
    reason        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('PENDING', 'APPROVED', 'REFUSED', 'ESCALATED', 'FORCED', 'UPHELD')),
    refund_id     TEXT,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL
);
CREATE INDEX refund_requests_merchant ON refund_requests (merchant_id, status);
CREATE INDEX refund_requests_user ON refund_requests (user_id);

CREATE TABLE refund_request_steps (
    id         TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES refund_requests (id),
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    note       TEXT,
    at_us      BIGINT NOT NULL
);
CREATE INDEX refund_request_steps_request ON refund_request_steps (request_id, at_us);

-- The outbox: events written in the same transaction as the change they report, and the
-- delivery of each to its party's notify_url.
CREATE TABLE events (
    id            TEXT PRIMARY KEY,
    party_kind    TEXT NOT NULL,
    party_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX events_party ON events (party_id, created_at_us);

CREATE TABLE deliveries (
    event_id           TEXT PRIMARY KEY REFERENCES events (id),
    notify_url         TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'DEAD')),
    attempts           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_us BIGINT NOT NULL,
    lease_until_us     BIGINT,
    leased_by          TEXT,
    last_error         TEXT,
    delivered_at_us    BIGINT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at_us);

CREATE TABLE delivery_attempts (
    id             TEXT PRIMARY KEY,
    event_id       TEXT NOT NULL REFERENCES events (id),
    attempt_no     BIGINT NOT NULL,
    worker         TEXT NOT NULL,
    started_at_us  BIGINT NOT NULL,
    finished_at_us BIGINT NOT NULL,
    http_status    BIGINT,
    error          TEXT,
    UNIQUE (event_id, attempt_no)
);

-- The sandbox clock's offset, shared by every gateway process and the CLI.
CREATE TABLE sandbox_clock (
    id        BIGINT PRIMARY KEY CHECK (id = 1),
    offset_us BIGINT NOT NULL CHECK (offset_us >= 0)
);
INSERT INTO sandbox_clock (id, offset_us) VALUES (1, 0);

-- Operators of the gateway: bearer tokens for /ops/v1, stored as digests.
CREATE TABLE operators (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    token_digest  TEXT NOT NULL UNIQUE,
    created_at_us BIGINT NOT NULL
);
