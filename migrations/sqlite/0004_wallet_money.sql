-- Every freeze and unfreeze, who did it and why.
CREATE TABLE freeze_audit (
    id         TEXT PRIMARY KEY,
    party_kind TEXT NOT NULL CHECK (party_kind IN ('user', 'merchant', 'biller')),
    party_id   TEXT NOT NULL,
    frozen     BIGINT NOT NULL CHECK (frozen IN (0, 1)),
    actor      TEXT NOT NULL,
    reason     TEXT,
    at_us      BIGINT NOT NULL
);
CREATE INDEX freeze_audit_party ON freeze_audit (party_id, at_us);

-- Transfers (转账). Money waits in the transfer escrow while PENDING.
CREATE TABLE transfers (
    id                TEXT PRIMARY KEY,
    payer_user_id     TEXT NOT NULL,
    payee_kind        TEXT NOT NULL CHECK (payee_kind IN ('user', 'merchant', 'phone')),
    payee_user_id     TEXT,
    payee_merchant_id TEXT,
    payee_phone       TEXT,
    amount_minor      BIGINT NOT NULL CHECK (amount_minor > 0),
    currency          TEXT NOT NULL,
    memo              TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'ACCEPTED', 'RETURNED', 'COMPLETED')),
    expires_at_us     BIGINT NOT NULL,
    created_at_us     BIGINT NOT NULL,
    settled_at_us     BIGINT
);
CREATE INDEX transfers_payer ON transfers (payer_user_id, created_at_us);
CREATE INDEX transfers_payee_user ON transfers (payee_user_id, status);
CREATE INDEX transfers_payee_phone ON transfers (payee_phone, status);
CREATE INDEX transfers_due ON transfers (status, expires_at_us);

-- Red packets (红包): shares are fixed when the packet is made and claimed one by one.
CREATE TABLE red_packets (
    id             TEXT PRIMARY KEY,
    sender_user_id TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('fixed', 'lucky')),
    total_minor    BIGINT NOT NULL CHECK (total_minor > 0),
    currency       TEXT NOT NULL,
    share_count    BIGINT NOT NULL CHECK (share_count BETWEEN 1 AND 100),
    memo           TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('OPEN', 'FINISHED', 'EXPIRED')),
    expires_at_us  BIGINT NOT NULL,
    created_at_us  BIGINT NOT NULL
);
CREATE INDEX red_packets_due ON red_packets (status, expires_at_us);

CREATE TABLE red_packet_shares (
    packet_id     TEXT NOT NULL REFERENCES red_packets (id),
    idx           BIGINT NOT NULL,
    amount_minor  BIGINT NOT NULL CHECK (amount_minor > 0),
    claimed_by    TEXT,
    claimed_at_us BIGINT,
    PRIMARY KEY (packet_id, idx)
);
CREATE UNIQUE INDEX red_packet_one_claim_each ON red_packet_shares (packet_id, claimed_by) WHERE claimed_by IS NOT NULL;

-- Money leaving for a card: withdrawals to a debit card, repayments of a credit card.
CREATE TABLE payouts (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('withdrawal', 'repayment')),
    user_id       TEXT NOT NULL,
    card_id       TEXT NOT NULL,
    funding       TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL CHECK (amount_minor > 0),
    fee_minor     BIGINT NOT NULL CHECK (fee_minor >= 0),
    currency      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('PROCESSING', 'SUCCESS', 'FAILED')),
    settle_at_us  BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL,
    settled_at_us BIGINT
);
CREATE INDEX payouts_due ON payouts (status, settle_at_us);
CREATE INDEX payouts_user ON payouts (user_id, created_at_us);
