//! Request and response types of the published surface. Amounts are decimal strings with
//! the currency's minor digits (`"12.30"`), exactly as the wire carries them.

use serde::{Deserialize, Serialize};

/// The calling merchant's profile (`GET /v1/merchant`).
#[derive(Debug, Clone, Deserialize)]
pub struct Merchant {
    /// The merchant's id.
    pub merchant_id: String,
    /// Its display name.
    pub name: String,
    /// Where callbacks go unless an order names its own.
    pub notify_url: Option<String>,
    /// `ACTIVE` or `FROZEN`.
    pub status: String,
    /// Its API keys (ids and status; never secrets).
    pub keys: Vec<Key>,
}

/// An API key as its owner sees it.
#[derive(Debug, Clone, Deserialize)]
pub struct Key {
    /// The key id sent in `key_id`.
    pub key_id: String,
    /// `ACTIVE` or `REVOKED`.
    pub status: String,
}

/// A dynamic-QR order to create (`POST /v1/orders`).
#[derive(Debug, Clone, Serialize)]
pub struct NewOrder {
    /// Your own order number: the idempotency key of this request.
    pub out_trade_no: String,
    /// Amount, e.g. `"12.30"`.
    pub amount: String,
    /// What the consumer sees.
    pub description: String,
    /// Where this order's callbacks go (else the merchant's notify_url).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// When the order stops being payable (RFC 3339); default two hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<String>,
}

impl NewOrder {
    /// An order with the required fields.
    pub fn new(out_trade_no: impl Into<String>, amount: impl Into<String>, description: impl Into<String>) -> NewOrder {
        NewOrder {
            out_trade_no: out_trade_no.into(),
            amount: amount.into(),
            description: description.into(),
            notify_url: None,
            expire_at: None,
        }
    }

    /// Sends this order's callbacks to `url`.
    pub fn notify_url(mut self, url: impl Into<String>) -> NewOrder {
        self.notify_url = Some(url.into());
        self
    }
}

/// An order as the gateway reports it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Order {
    /// The gateway's order id.
    pub order_id: String,
    /// Your order number.
    pub out_trade_no: String,
    /// `native` (dynamic QR) or `micropay` (payment code).
    pub kind: String,
    /// `NOTPAY`, `USERPAYING`, `SUCCESS`, `PAYERROR`, `CLOSED` or `REVOKED`.
    pub status: String,
    /// Amount, e.g. `"12.30"`.
    pub amount: String,
    /// `CNY`.
    pub currency: String,
    /// The description.
    pub description: String,
    /// For dynamic-QR orders: what the QR encodes.
    pub code_url: Option<String>,
    /// When it stops being payable.
    pub expire_at: String,
    /// When it was paid.
    pub paid_at: Option<String>,
    /// `balance` or `card`, once paid.
    pub funding: Option<String>,
}

/// A payment-code payment (`POST /v1/micropay`).
#[derive(Debug, Clone, Serialize)]
pub struct Micropay {
    /// Your order number: the idempotency key of this request.
    pub out_trade_no: String,
    /// Amount, e.g. `"12.30"`.
    pub amount: String,
    /// The 18 digits scanned from the consumer's payment code.
    pub auth_code: String,
    /// What the consumer sees.
    pub description: String,
}

/// A refund to make (`POST /v1/refunds`).
#[derive(Debug, Clone, Serialize)]
pub struct NewRefund {
    /// The order to refund (or give `out_trade_no`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The order to refund, by your order number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    /// Your refund number: the idempotency key of this request.
    pub out_refund_no: String,
    /// Amount to refund, e.g. `"3.00"`.
    pub amount: String,
    /// Why, shown to the consumer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl NewRefund {
    /// A refund of `amount` on the order `order_id`.
    pub fn of_order(
        order_id: impl Into<String>,
        out_refund_no: impl Into<String>,
        amount: impl Into<String>,
    ) -> NewRefund {
        NewRefund {
            order_id: Some(order_id.into()),
            out_trade_no: None,
            out_refund_no: out_refund_no.into(),
            amount: amount.into(),
            reason: None,
        }
    }
}

/// A receipt the cashier console asked the counter bridge to print.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PrintRequest {
    /// The gateway's id of the request.
    pub print_request_id: String,
    /// The paid order whose receipt to print.
    pub order_id: String,
}

#[derive(Deserialize)]
pub(crate) struct PrintRequests {
    pub(crate) print_requests: Vec<PrintRequest>,
}

/// A refund as the gateway reports it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Refund {
    /// The gateway's refund id.
    pub refund_id: String,
    /// Your refund number.
    pub out_refund_no: String,
    /// The refunded order.
    pub order_id: String,
    /// Amount refunded.
    pub amount: String,
    /// `PROCESSING`, `SUCCESS` or `ABNORMAL`.
    pub status: String,
    /// `balance` or `card`: where the money goes back.
    pub channel: String,
}

/// A consumer's refund request and its history.
#[derive(Debug, Clone, Deserialize)]
pub struct RefundRequest {
    /// Its id.
    pub refund_request_id: String,
    /// The order.
    pub order_id: String,
    /// Amount asked for.
    pub amount: String,
    /// The consumer's reason.
    pub reason: String,
    /// `PENDING`, `APPROVED`, `REFUSED`, `ESCALATED`, `FORCED` or `UPHELD`.
    pub status: String,
    /// The refund made for it, if any.
    pub refund_id: Option<String>,
}

/// One callback event with its delivery attempts (`GET /v1/notifications`).
#[derive(Debug, Clone, Deserialize)]
pub struct Notification {
    /// Stable across attempts: drop duplicates by it.
    pub event_id: String,
    /// For example `payment.succeeded`.
    pub event_type: String,
    /// `PENDING`, `DELIVERED`, `DEAD`, or none without a notify_url.
    pub delivery_status: Option<String>,
    /// The event as delivered.
    pub payload: serde_json::Value,
}

/// A bill to post (`POST /v1/bills`).
#[derive(Debug, Clone, Serialize)]
pub struct NewBill {
    /// Your bill number: the idempotency key of this bill.
    pub bill_no: String,
    /// The customer's account number with you.
    pub customer_account: String,
    /// Amount due.
    pub amount: String,
    /// `YYYY-MM-DD`.
    pub due_date: String,
    /// The billing period, e.g. `2026-11`.
    pub period: String,
    /// The customer's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What posting bills did.
#[derive(Debug, Clone, Deserialize)]
pub struct BillBatch {
    /// Bills created now.
    pub accepted: u64,
    /// Bills posted before with the same details (nothing new).
    pub duplicates: u64,
    /// Rows refused, by row number (from 1).
    pub rejected: Vec<RejectedRow>,
}

/// One refused row of a batch.
#[derive(Debug, Clone, Deserialize)]
pub struct RejectedRow {
    /// Row number, from 1 (a CSV header not counted).
    pub row: u64,
    /// The error code.
    pub code: String,
    /// Why.
    pub message: String,
}

/// A bill as the gateway reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Bill {
    /// The gateway's id.
    pub bill_id: String,
    /// Your bill number.
    pub bill_no: String,
    /// The customer's account.
    pub customer_account: String,
    /// Amount due in all.
    pub amount: String,
    /// Paid so far.
    pub paid: String,
    /// `UNPAID`, `PARTIAL`, `PAID` or `CANCELLED`.
    pub status: String,
}
