-- The risk check reads a payer's recent payments and whether they paid this merchant
-- before. With only (payer, created_at) it summed every order the consumer ever paid, on
-- every payment; these two indexes make it a range read and a probe, however long the
-- consumer's history.
DROP INDEX orders_payer;
CREATE INDEX orders_payer_paid ON orders (payer_user_id, paid_at_us);
CREATE INDEX orders_payer_merchant ON orders (payer_user_id, merchant_id);
