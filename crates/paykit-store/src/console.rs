//! Cashier-console users and their log-ins. A console user belongs to one merchant and acts
//! for it in the web console; it never sees the merchant's API secret.

use paykit_core::time::Timestamp;
use sqlx::Row;

use crate::{Result, Store, ids};

/// A console user as the console needs it after log-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    pub id: String,
    pub merchant_id: String,
    pub username: String,
    pub password_hash: String,
}

const COLUMNS: &str = "u.id, u.merchant_id, u.username, u.password_hash";

fn from_row(r: &sqlx::any::AnyRow) -> Result<ConsoleUser> {
    Ok(ConsoleUser {
        id: r.try_get(0)?,
        merchant_id: r.try_get(1)?,
        username: r.try_get(2)?,
        password_hash: r.try_get(3)?,
    })
}

impl Store {
    /// Adds a console user to a merchant. `None` when the username is taken (usernames are
    /// unique across merchants, so a cashier logs in with the username alone).
    pub async fn create_console_user(
        &self,
        merchant_id: &str,
        username: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ConsoleUser>> {
        let id = ids::new_id("cu");
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO console_users (id, merchant_id, username, password_hash, created_at_us) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&id)
        .bind(merchant_id)
        .bind(username)
        .bind(password_hash)
        .bind(now.unix_micros())
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((inserted == 1).then(|| ConsoleUser {
            id,
            merchant_id: merchant_id.to_owned(),
            username: username.to_owned(),
            password_hash: password_hash.to_owned(),
        }))
    }

    pub async fn console_user_by_username(&self, username: &str) -> Result<Option<ConsoleUser>> {
        let sql = format!("SELECT {COLUMNS} FROM console_users u WHERE u.username = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(username).fetch_optional(self.reader()).await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn create_console_session(
        &self,
        token_digest: &str,
        console_user_id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO console_sessions (token_digest, console_user_id, expires_at_us, created_at_us) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_digest)
        .bind(console_user_id)
        .bind(expires_at.unix_micros())
        .bind(now.unix_micros())
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// The console user of a live session.
    pub async fn console_session_user(&self, token_digest: &str, now: Timestamp) -> Result<Option<ConsoleUser>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM console_sessions s JOIN console_users u ON u.id = s.console_user_id \
             WHERE s.token_digest = $1 AND s.expires_at_us > $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_digest)
            .bind(now.unix_micros())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Logs a console session out.
    pub async fn end_console_session(&self, token_digest: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM console_sessions WHERE token_digest = $1")
            .bind(token_digest)
            .execute(tx.conn())
            .await?;
        tx.commit().await
    }

    /// Logs a wallet session out.
    pub async fn end_session(&self, token_digest: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE token_digest = $1").bind(token_digest).execute(tx.conn()).await?;
        tx.commit().await
    }
}
