//! What a wallet payment is decided on — the session's user, the order, its merchant's
//! status, the device that confirms it and the payer's history for the risk rules — in one
//! read. On PostgreSQL each statement is a round trip that wakes a backend, and these were
//! five statements of a payment's ten or so; on SQLite the history's scan moves onto the
//! point readers too.

use std::sync::LazyLock;

use paykit_core::time::Timestamp;

use crate::orders::{ORDER_COLUMN_COUNT, ORDER_COLUMNS, Order, order_from_row};
use crate::point_read::Param;
use crate::risk::{HISTORY_COLUMN_COUNT, PayerHistory, history_at, history_sql};
use crate::users::{
    DEVICE_COLUMN_COUNT, Device, USER_COLUMNS, User, device_at, device_columns, session_user_sql, user_at,
};
use crate::{Result, Store};

/// What a wallet session asks to pay with, read at once.
#[derive(Debug, Clone)]
pub struct SessionPayContext {
    /// The session's user as it is now (the pay-password lock, a freeze).
    pub user: User,
    /// What paying the order is decided on; None when there is no such order.
    pub order: Option<PayContext>,
}

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

/// Where a [`Store::session_pay_context`] read starts: the session's token digest and the
/// wall-clock time its expiry is judged at.
#[derive(Debug, Clone, Copy)]
pub struct SessionAt<'a> {
    pub token_digest: &'a str,
    pub now: Timestamp,
}

impl Store {
    /// Reads the user of the live session `session` and what paying `order_id` as that user
    /// is decided on, `device_id` confirming it (if any); None when the session is not
    /// live. The session is read in the same statement because the wallet's pay route is
    /// the busiest one: its own round trip cost about 8% of PostgreSQL qr-pay.
    pub async fn session_pay_context(
        &self,
        session: SessionAt<'_>,
        order_id: &str,
        device_id: Option<&str>,
        window_start: Timestamp,
        day_start: Timestamp,
    ) -> Result<Option<SessionPayContext>> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            let prefixed = |columns: &str, table: &str| -> String {
                columns.split(',').map(|c| format!("{table}.{}", c.trim())).collect::<Vec<_>>().join(", ")
            };
            // The user's id, for the history, from the one-row `u`: SQLite has no LATERAL.
            let history = history_sql("(SELECT id FROM u)", "$4", "$5", "$6", "o.merchant_id");
            format!(
                "WITH u AS ({}) \
                 SELECT {}, (SELECT m.status FROM merchants m WHERE m.id = o.merchant_id), {}, h.recent, h.today, {}, {} \
                 FROM u LEFT JOIN orders o ON o.id = $3 LEFT JOIN devices d ON d.id = $7 CROSS JOIN {} h",
                session_user_sql("$1", "$2"),
                prefixed(ORDER_COLUMNS, "o"),
                device_columns("d."),
                history.paid_before,
                prefixed(USER_COLUMNS, "u"),
                history.table,
            )
        });
        const MERCHANT_STATUS: usize = ORDER_COLUMN_COUNT;
        const DEVICE: usize = MERCHANT_STATUS + 1;
        const HISTORY: usize = DEVICE + DEVICE_COLUMN_COUNT;
        const USER: usize = HISTORY + HISTORY_COLUMN_COUNT;
        let params = [
            Param::Text(session.token_digest),
            Param::Int(session.now.unix_micros()),
            Param::Text(order_id),
            Param::Int(window_start.unix_micros()),
            Param::Int(day_start.unix_micros()),
            Param::Int(window_start.min(day_start).unix_micros()),
            // No device has an empty id: the join then finds none.
            Param::Text(device_id.unwrap_or("")),
        ];
        self.read_one(&SQL, &params, |r| {
            // No order joined: its id, the first column, is NULL.
            let order = match r.opt_text(0)? {
                None => None,
                Some(_) => Some(PayContext {
                    order: order_from_row(r)?,
                    merchant_status: r.text(MERCHANT_STATUS)?,
                    device: match r.opt_text(DEVICE)? {
                        Some(_) => Some(device_at(r, DEVICE)?),
                        None => None,
                    },
                    history: history_at(r, HISTORY)?,
                }),
            };
            Ok(SessionPayContext { user: user_at(r, USER)?, order })
        })
        .await
    }
}
