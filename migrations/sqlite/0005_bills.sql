-- Billers (utilities) onboard like merchants and sign requests the same way.
CREATE TABLE billers (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    category      TEXT NOT NULL,
    notify_url    TEXT,
    allow_partial BIGINT NOT NULL CHECK (allow_partial IN (0, 1)),
    status        TEXT NOT NULL DEFAULT 'ACTIVE',
    created_at_us BIGINT NOT NULL
);
CREATE INDEX billers_category ON billers (category);

CREATE TABLE bills (
    id               TEXT PRIMARY KEY,
    biller_id        TEXT NOT NULL REFERENCES billers (id),
    bill_no          TEXT NOT NULL,
    customer_account TEXT NOT NULL,
    customer_name    TEXT,
    amount_minor     BIGINT NOT NULL CHECK (amount_minor > 0),
    paid_minor       BIGINT NOT NULL DEFAULT 0 CHECK (paid_minor >= 0),
    currency         TEXT NOT NULL,
    due_date         TEXT NOT NULL,
    period           TEXT NOT NULL,
    description      TEXT,
    status           TEXT NOT NULL CHECK (status IN ('UNPAID', 'PARTIAL', 'PAID', 'CANCELLED')),
    request_digest   TEXT NOT NULL,
    created_at_us    BIGINT NOT NULL,
    updated_at_us    BIGINT NOT NULL,
    paid_at_us       BIGINT,
    UNIQUE (biller_id, bill_no),
    CHECK (paid_minor <= amount_minor)
);
CREATE INDEX bills_customer ON bills (biller_id, customer_account);

CREATE TABLE bill_payments (
    id            TEXT PRIMARY KEY,
    bill_id       TEXT NOT NULL REFERENCES bills (id),
    user_id       TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL CHECK (amount_minor > 0),
    created_at_us BIGINT NOT NULL
);
CREATE INDEX bill_payments_bill ON bill_payments (bill_id);
