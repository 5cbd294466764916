//! What a wallet payment is decided on — the order, its merchant's status, the device that
//! confirms it and the payer's history for the risk rules — in one read. On PostgreSQL each
//! statement is a round trip that wakes a backend, and these were four statements of a
//! payment's eight or so; on SQLite the history's scan moves onto the point readers too.

use std::sync::LazyLock;

use paykit_core::time::Timestamp;

use crate::orders::{ORDER_COLUMN_COUNT, ORDER_COLUMNS, Order, order_from_row};
use crate::point_read::Param;
use crate::risk::{PayerHistory, history_at, history_sql};
use crate::users::{DEVICE_COLUMN_COUNT, Device, device_at, device_columns};
use crate::{Result, Store};

/// One snapshot of what a payment's checks read.
#[derive(Debug, Clone)]
pub struct PayContext {
    pub order: Order,
    /// The status of the order's merchant (FROZEN ones cannot be paid).
    pub merchant_status: String,
    /// The device asked for, whoever owns it; None when there is no such device.
    pub device: Option<Device>,
    /// The payer's history, weighed as a payment to the order's merchant.
    pub history: PayerHistory,
}

impl Store {
    /// Reads what paying `order_id` as `payer_id` is decided on, `device_id` confirming it
    /// (if any); None when there is no such order.
    pub async fn pay_context(
        &self,
        order_id: &str,
        payer_id: &str,
        device_id: Option<&str>,
        window_start: Timestamp,
        day_start: Timestamp,
    ) -> Result<Option<PayContext>> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            let order_columns: Vec<String> = ORDER_COLUMNS.split(',').map(|c| format!("o.{}", c.trim())).collect();
            let history = history_sql("$2", "$3", "$4", "$5", "o.merchant_id");
            format!(
                "SELECT {}, (SELECT m.status FROM merchants m WHERE m.id = o.merchant_id), {}, h.recent, h.today, {} \
                 FROM orders o CROSS JOIN {} h LEFT JOIN devices d ON d.id = $6 WHERE o.id = $1",
                order_columns.join(", "),
                device_columns("d."),
                history.paid_before,
                history.table,
            )
        });
        const MERCHANT_STATUS: usize = ORDER_COLUMN_COUNT;
        const DEVICE: usize = MERCHANT_STATUS + 1;
        const HISTORY: usize = DEVICE + DEVICE_COLUMN_COUNT;
        let params = [
            Param::Text(order_id),
            Param::Text(payer_id),
            Param::Int(window_start.unix_micros()),
            Param::Int(day_start.unix_micros()),
            Param::Int(window_start.min(day_start).unix_micros()),
            // No device has an empty id: the join then finds none.
            Param::Text(device_id.unwrap_or("")),
        ];
        self.read_one(&SQL, &params, |r| {
            Ok(PayContext {
                order: order_from_row(r)?,
                merchant_status: r.text(MERCHANT_STATUS)?,
                device: match r.opt_text(DEVICE)? {
                    Some(_) => Some(device_at(r, DEVICE)?),
                    None => None,
                },
                history: history_at(r, HISTORY)?,
            })
        })
        .await
    }
}
