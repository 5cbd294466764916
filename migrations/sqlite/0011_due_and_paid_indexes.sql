-- The expiry sweeps read the orders and confirmations still waiting whose time is up. With
-- no index on when they expire, each sweep (every few seconds) read the whole table, which
-- only grows: these partial indexes hold only what is still waiting, so a sweep reads what
-- it closes, and an order leaves the index when it is paid.
CREATE INDEX orders_expiring ON orders (expire_at_us) WHERE status = 'NOTPAY';
CREATE INDEX confirmations_expiring ON confirmations (expires_at_us) WHERE status = 'PENDING';

-- The risk check's reads of a payer's history ask only for paid orders: indexing only
-- those keeps every new (unpaid, payer-less) order out of both indexes, and the amount in
-- the first lets the day's sum come from the index alone where the table's pages allow it.
DROP INDEX orders_payer_paid;
DROP INDEX orders_payer_merchant;
-- (SQLite reads a partial index alone only when it holds every column the query names,
-- status included.)
CREATE INDEX orders_payer_paid ON orders (payer_user_id, paid_at_us, amount_minor, status) WHERE status = 'SUCCESS';
CREATE INDEX orders_payer_merchant ON orders (payer_user_id, merchant_id) WHERE status = 'SUCCESS';
