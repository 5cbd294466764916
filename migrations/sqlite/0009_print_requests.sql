-- Receipts the cashier console asked the counter bridge to print; a bridge claims each once.
CREATE TABLE print_requests (
    id            TEXT PRIMARY KEY,
    merchant_id   TEXT NOT NULL REFERENCES merchants (id),
    order_id      TEXT NOT NULL REFERENCES orders (id),
    requested_by  TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    claimed_at_us BIGINT
);
CREATE INDEX print_requests_waiting ON print_requests (merchant_id, created_at_us) WHERE claimed_at_us IS NULL;

-- When each merchant's bridge last asked for print work: the console offers the counter
-- printer only while a bridge is polling.
CREATE TABLE bridge_polls (
    merchant_id  TEXT PRIMARY KEY REFERENCES merchants (id),
    polled_at_us BIGINT NOT NULL
);
