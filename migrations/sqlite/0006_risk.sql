-- Risk holds remember how the consumer chose to pay and why the payment was held.
ALTER TABLE confirmations ADD COLUMN funding TEXT;
ALTER TABLE confirmations ADD COLUMN reason TEXT;
