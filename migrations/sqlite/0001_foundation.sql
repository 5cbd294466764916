-- Parties that sign API requests, and their keys.
CREATE TABLE merchants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    notify_url    TEXT,
    status        TEXT NOT NULL DEFAULT 'ACTIVE',
    created_at_us BIGINT NOT NULL
);

CREATE TABLE api_keys (
    key_id        TEXT PRIMARY KEY,
    party_kind    TEXT NOT NULL CHECK (party_kind IN ('merchant', 'biller')),
    party_id      TEXT NOT NULL,
    secret        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('ACTIVE', 'REVOKED')),
    created_at_us BIGINT NOT NULL,
    revoked_at_us BIGINT
);
CREATE INDEX api_keys_party ON api_keys (party_kind, party_id);

-- Nonces seen on signed requests, kept past the 300 s timestamp window.
CREATE TABLE request_nonces (
    party_id   TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    seen_at_us BIGINT NOT NULL,
    PRIMARY KEY (party_id, nonce)
);
CREATE INDEX request_nonces_seen ON request_nonces (seen_at_us);

-- The ledger.
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    owner_type    TEXT NOT NULL,
    owner_id      TEXT NOT NULL,
    kind          TEXT NOT NULL,
    currency      TEXT NOT NULL,
    shard_count   BIGINT NOT NULL CHECK (shard_count >= 1),
    floored       BIGINT NOT NULL CHECK (floored IN (0, 1)),
    created_at_us BIGINT NOT NULL,
    UNIQUE (owner_type, owner_id, kind, currency)
);

-- An account's balance is the sum of its shard rows. Floored accounts have one shard, and
-- the CHECK makes "never below zero" hold even against a bug in the code above it.
CREATE TABLE account_balances (
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    shard         BIGINT NOT NULL,
    balance_minor BIGINT NOT NULL,
    floored       BIGINT NOT NULL CHECK (floored IN (0, 1)),
    PRIMARY KEY (account_id, shard),
    CHECK (floored = 0 OR balance_minor >= 0)
);

CREATE TABLE journal_entries (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    reference     TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX journal_entries_reference ON journal_entries (reference);

CREATE TABLE postings (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id      TEXT NOT NULL REFERENCES journal_entries (id),
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    amount_minor  BIGINT NOT NULL CHECK (amount_minor <> 0),
    currency      TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX postings_account ON postings (account_id, created_at_us);
CREATE INDEX postings_entry ON postings (entry_id);

CREATE TRIGGER journal_entries_no_update BEFORE UPDATE ON journal_entries
BEGIN SELECT RAISE(ABORT, 'journal_entries is append-only'); END;
CREATE TRIGGER journal_entries_no_delete BEFORE DELETE ON journal_entries
BEGIN SELECT RAISE(ABORT, 'journal_entries is append-only'); END;
CREATE TRIGGER postings_no_update BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'postings is append-only'); END;
CREATE TRIGGER postings_no_delete BEFORE DELETE ON postings
BEGIN SELECT RAISE(ABORT, 'postings is append-only'); END;
