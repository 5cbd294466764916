//! What risk rules need to know, and payments held for the consumer's confirmation.

use std::sync::LazyLock;

use paykit_core::time::Timestamp;
use sqlx::Row;

use crate::point_read::{Columns, Param};
use crate::{Result, Store, StoreError, ids};

/// A pending confirmation as the consumer sees it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: String,
    pub kind: String,
    pub order_id: String,
    pub funding: Option<String>,
    pub reason: Option<String>,
    pub expires_at: Timestamp,
}

/// A payer's paid orders as the risk rules weigh them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayerHistory {
    /// Payments since the velocity window's start.
    pub recent_payments: i64,
    /// Minor units paid since the start of the day.
    pub spent_today_minor: i64,
    /// Whether the payer has paid this merchant before.
    pub paid_payee_before: bool,
}

/// The columns of a [`PayerHistory`] read in a larger statement, by parameter number: the
/// payer (`payer`), the window's and the day's starts (`window`, `day`), the earlier of the
/// two (`since`), and an expression for the merchant (`merchant`). Each part reads only
/// what it needs through an index (migration 0010): the payments since the earlier start,
/// and one probe for the merchant.
pub(crate) struct HistorySql {
    /// A derived table of one row, columns `recent` and `today`.
    pub table: String,
    /// A column: 1 when the payer has paid the merchant before, else 0.
    pub paid_before: String,
}

pub(crate) fn history_sql(payer: &str, window: &str, day: &str, since: &str, merchant: &str) -> HistorySql {
    HistorySql {
        table: format!(
            "(SELECT CAST(COALESCE(SUM(CASE WHEN paid_at_us >= {window} THEN 1 ELSE 0 END), 0) AS BIGINT) AS recent, \
                     CAST(COALESCE(SUM(CASE WHEN paid_at_us >= {day} THEN amount_minor ELSE 0 END), 0) AS BIGINT) AS today \
              FROM orders WHERE payer_user_id = {payer} AND status = 'SUCCESS' AND paid_at_us >= {since})"
        ),
        paid_before: format!(
            "CAST(CASE WHEN EXISTS (SELECT 1 FROM orders WHERE payer_user_id = {payer} AND merchant_id = {merchant} \
                  AND status = 'SUCCESS') THEN 1 ELSE 0 END AS BIGINT)"
        ),
    }
}

/// How many columns [`history_at`] decodes: a query can add its own after them.
pub(crate) const HISTORY_COLUMN_COUNT: usize = 3;

/// Decodes the three columns from `first` on: recent, today, paid before.
pub(crate) fn history_at<R: Columns + ?Sized>(r: &R, first: usize) -> Result<PayerHistory> {
    Ok(PayerHistory {
        recent_payments: r.int(first)?,
        spent_today_minor: r.int(first + 1)?,
        paid_payee_before: r.int(first + 2)? > 0,
    })
}

impl Store {
    /// A consumer's history as the risk rules weigh a payment to `merchant_id`.
    pub async fn payer_history(
        &self,
        user_id: &str,
        merchant_id: &str,
        window_start: Timestamp,
        day_start: Timestamp,
    ) -> Result<PayerHistory> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            let h = history_sql("$1", "$2", "$3", "$5", "$4");
            format!("SELECT h.recent, h.today, {} FROM {} h", h.paid_before, h.table)
        });
        let params = [
            Param::Text(user_id),
            Param::Int(window_start.unix_micros()),
            Param::Int(day_start.unix_micros()),
            Param::Text(merchant_id),
            Param::Int(window_start.min(day_start).unix_micros()),
        ];
        self.read_one(&SQL, &params, |r| history_at(r, 0))
            .await?
            .ok_or_else(|| StoreError::Corrupt("an aggregate returned no row".into()))
    }

    /// Holds a payment for the consumer's confirmation, and tells them why.
    pub async fn hold_payment(
        &self,
        user_id: &str,
        order_id: &str,
        funding: &str,
        reasons: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<String> {
        let id = ids::new_id("cfm");
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO confirmations (id, user_id, order_id, kind, status, expires_at_us, created_at_us, funding, reason) \
             VALUES ($1, $2, $3, 'risk_hold', 'PENDING', $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(user_id)
        .bind(order_id)
        .bind(expires_at.unix_micros())
        .bind(now.unix_micros())
        .bind(funding)
        .bind(reasons)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if inserted == 0 {
            // Already held for this consumer: the same confirmation answers both asks.
            let existing: String = sqlx::query_scalar(
                "SELECT id FROM confirmations WHERE user_id = $1 AND order_id = $2 AND status = 'PENDING' AND kind = 'risk_hold'",
            )
            .bind(user_id)
            .bind(order_id)
            .fetch_one(tx.conn())
            .await?;
            tx.commit().await?;
            return Ok(existing);
        }
        tx.add_alert(user_id, "risk_hold", &format!("A payment was held for your confirmation ({reasons})."), now)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn risk_alert(&self, user_id: &str, message: &str, now: Timestamp) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.add_alert(user_id, "risk_block", message, now).await?;
        tx.commit().await
    }

    /// Risk alerts for the operator: (user, kind, message, at), newest first.
    pub async fn risk_alerts(&self, limit: i64) -> Result<Vec<(String, String, String, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT user_id, kind, message, created_at_us FROM user_alerts WHERE kind IN ('risk_hold', 'risk_block', 'device_suspended') \
             ORDER BY created_at_us DESC, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, Timestamp::from_unix_micros(r.try_get(3)?))))
            .collect()
    }

    /// One of the consumer's pending confirmations.
    pub async fn pending_confirmation(&self, user_id: &str, id: &str, now: Timestamp) -> Result<Option<Pending>> {
        let row = sqlx::query(
            "SELECT id, kind, order_id, funding, reason, expires_at_us FROM confirmations \
             WHERE id = $1 AND user_id = $2 AND status = 'PENDING' AND expires_at_us > $3",
        )
        .bind(id)
        .bind(user_id)
        .bind(now.unix_micros())
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| {
            Ok(Pending {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                order_id: r.try_get(2)?,
                funding: r.try_get(3)?,
                reason: r.try_get(4)?,
                expires_at: Timestamp::from_unix_micros(r.try_get(5)?),
            })
        })
        .transpose()
    }

    /// Closes a risk hold as CONFIRMED or DECLINED. Returns false if it was no longer pending.
    pub async fn close_hold(&self, id: &str, user_id: &str, confirmed: bool, now: Timestamp) -> Result<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE confirmations SET status = $1, answered_at_us = $2 WHERE id = $3 AND user_id = $4 AND status = 'PENDING' AND kind = 'risk_hold'",
        )
        .bind(if confirmed { "CONFIRMED" } else { "DECLINED" })
        .bind(now.unix_micros())
        .bind(id)
        .bind(user_id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }
}
