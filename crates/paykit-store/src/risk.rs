//! What risk rules need to know, and payments held for the consumer's confirmation.

use paykit_core::time::Timestamp;
use sqlx::Row;

use crate::{Result, Store, ids};

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

impl Store {
    /// (payments since `window_start`, minor units paid since `day_start`, paid this
    /// merchant before) for a consumer.
    pub async fn risk_facts(
        &self,
        user_id: &str,
        merchant_id: &str,
        window_start: Timestamp,
        day_start: Timestamp,
    ) -> Result<(i64, i64, bool)> {
        // Each part reads only what it needs through an index (migration 0010): the
        // payments since the earlier of the two starts, and one probe for the merchant.
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN paid_at_us >= $2 THEN 1 ELSE 0 END), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(CASE WHEN paid_at_us >= $3 THEN amount_minor ELSE 0 END), 0) AS BIGINT), \
                    CAST(CASE WHEN EXISTS (SELECT 1 FROM orders WHERE payer_user_id = $1 AND merchant_id = $4 AND status = 'SUCCESS') \
                         THEN 1 ELSE 0 END AS BIGINT) \
             FROM orders WHERE payer_user_id = $1 AND status = 'SUCCESS' AND paid_at_us >= $5",
        )
        .bind(user_id)
        .bind(window_start.unix_micros())
        .bind(day_start.unix_micros())
        .bind(merchant_id)
        .bind(window_start.min(day_start).unix_micros())
        .fetch_one(self.reader())
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?, row.try_get::<i64, _>(2)? > 0))
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
