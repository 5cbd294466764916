-- At most one open refund request per order, even when two arrive at once.
CREATE UNIQUE INDEX refund_requests_one_open ON refund_requests (order_id) WHERE status IN ('PENDING', 'REFUSED', 'ESCALATED');
