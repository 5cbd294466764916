-- At most one open refund request per order, even when two arrive at once.
CREATE UNIQUE INDEX refund_requests_one_open ON refund_requests (order_id) WHERE status IN ('PENDING', 'REFUSED', 'ESCALATED');

-- One pending risk hold per consumer and order: confirming twice cannot pay twice.
CREATE UNIQUE INDEX confirmations_one_hold ON confirmations (user_id, order_id) WHERE status = 'PENDING' AND kind = 'risk_hold';
