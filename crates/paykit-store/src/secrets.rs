//! Secrets only the gateway holds, made once and shared by every gateway process.

use paykit_core::time::Timestamp;

use crate::{Result, Store, ids};

impl Store {
    /// The secret called `name`, created (40 random base32 characters) on first use. Two
    /// processes racing to create it agree on the one that was written first.
    pub async fn gateway_secret(&self, name: &str, now: Timestamp) -> Result<String> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO gateway_secrets (name, secret, created_at_us) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(ids::new_secret())
            .bind(now.unix_micros())
            .execute(tx.conn())
            .await?;
        let secret: String = sqlx::query_scalar("SELECT secret FROM gateway_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(secret)
    }
}
