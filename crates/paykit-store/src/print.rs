//! Print requests: the cashier console asks for a receipt, the merchant's counter bridge
//! claims it (each once) and prints it.

use paykit_core::time::Timestamp;
use sqlx::Row;

use crate::{Result, Store, ids};

impl Store {
    /// Queues a receipt of `order_id` for the merchant's counter printer.
    pub async fn request_print(&self, merchant_id: &str, order_id: &str, by: &str, now: Timestamp) -> Result<String> {
        let id = ids::new_id("prt");
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO print_requests (id, merchant_id, order_id, requested_by, created_at_us) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(merchant_id)
        .bind(order_id)
        .bind(by)
        .bind(now.unix_micros())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Claims up to `limit` waiting print requests (oldest first) as (id, order id), and
    /// notes that the merchant's bridge is polling. No two claims return the same request.
    pub async fn claim_print_requests(
        &self,
        merchant_id: &str,
        limit: i64,
        now: Timestamp,
    ) -> Result<Vec<(String, String)>> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO bridge_polls (merchant_id, polled_at_us) VALUES ($1, $2) \
             ON CONFLICT (merchant_id) DO UPDATE SET polled_at_us = excluded.polled_at_us",
        )
        .bind(merchant_id)
        .bind(now.unix_micros())
        .execute(tx.conn())
        .await?;
        // `claimed_at_us IS NULL` again outside the subquery: a request another bridge
        // claimed meanwhile is re-checked after its row lock and skipped.
        let rows = sqlx::query(
            "UPDATE print_requests SET claimed_at_us = $1 WHERE claimed_at_us IS NULL AND id IN ( \
               SELECT id FROM print_requests WHERE merchant_id = $2 AND claimed_at_us IS NULL \
               ORDER BY created_at_us, id LIMIT $3) \
             RETURNING id, order_id, created_at_us",
        )
        .bind(now.unix_micros())
        .bind(merchant_id)
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        let mut out: Vec<(i64, String, String)> =
            rows.iter().map(|r| Ok((r.try_get(2)?, r.try_get(0)?, r.try_get(1)?))).collect::<Result<_>>()?;
        out.sort();
        Ok(out.into_iter().map(|(_, id, order)| (id, order)).collect())
    }

    /// When the merchant's bridge last asked for print work.
    pub async fn bridge_last_poll(&self, merchant_id: &str) -> Result<Option<Timestamp>> {
        let us: Option<i64> = sqlx::query_scalar("SELECT polled_at_us FROM bridge_polls WHERE merchant_id = $1")
            .bind(merchant_id)
            .fetch_optional(self.reader())
            .await?;
        Ok(us.map(Timestamp::from_unix_micros))
    }
}
