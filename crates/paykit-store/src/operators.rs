//! Operators of the gateway: bearer tokens for the ops API.

use paykit_core::time::Timestamp;

use crate::{Result, Store, ids};

impl Store {
    /// Creates an operator whose token has the given digest.
    pub async fn create_operator(&self, name: &str, token_digest: &str, now: Timestamp) -> Result<String> {
        let id = ids::new_id("op");
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO operators (id, name, token_digest, created_at_us) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(name)
            .bind(token_digest)
            .bind(now.unix_micros())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The operator (id, name) a token digest belongs to.
    pub async fn operator_by_token(&self, token_digest: &str) -> Result<Option<(String, String)>> {
        use sqlx::Row;
        let row = sqlx::query("SELECT id, name FROM operators WHERE token_digest = $1")
            .bind(token_digest)
            .fetch_optional(self.reader())
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }
}
