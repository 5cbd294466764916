//! Wallet users, their sessions, real-name details, pay-password state, cards and devices.

use std::sync::LazyLock;

use paykit_core::Currency;
use paykit_core::ledger::AccountKind;
use paykit_core::time::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::ledger::Owner;
use crate::point_read::{Columns, Param};
use crate::{Result, Store, StoreError, ids};

#[derive(Clone)]
pub struct User {
    pub id: String,
    pub phone: String,
    pub password_hash: String,
    pub real_name: Option<String>,
    pub id_number_masked: Option<String>,
    pub id_number_digest: Option<String>,
    pub pay_password_hash: Option<String>,
    pub pay_failures: i64,
    pub pay_locked_until: Option<Timestamp>,
    pub frozen: bool,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("id", &self.id).field("phone", &self.phone).finish_non_exhaustive()
    }
}

pub(crate) const USER_COLUMNS: &str = "id, phone, password_hash, real_name, id_number_masked, id_number_digest, \
     pay_password_hash, pay_failures, pay_locked_until_us, frozen, created_at_us";

fn user_from_row<R: Columns + ?Sized>(r: &R) -> Result<User> {
    user_at(r, 0)
}

/// Decodes a [`User`] from [`USER_COLUMNS`] starting at column `first`.
pub(crate) fn user_at<R: Columns + ?Sized>(r: &R, first: usize) -> Result<User> {
    Ok(User {
        id: r.text(first)?,
        phone: r.text(first + 1)?,
        password_hash: r.text(first + 2)?,
        real_name: r.opt_text(first + 3)?,
        id_number_masked: r.opt_text(first + 4)?,
        id_number_digest: r.opt_text(first + 5)?,
        pay_password_hash: r.opt_text(first + 6)?,
        pay_failures: r.int(first + 7)?,
        pay_locked_until: r.opt_int(first + 8)?.map(Timestamp::from_unix_micros),
        frozen: r.int(first + 9)? != 0,
        created_at: Timestamp::from_unix_micros(r.int(first + 10)?),
    })
}

/// The users row of the session whose token has `$digest` and is live at `$now`, as SQL
/// (no row when there is none).
pub(crate) fn session_user_sql(digest: &str, now: &str) -> String {
    format!(
        "SELECT {USER_COLUMNS} FROM users \
         WHERE id = (SELECT user_id FROM sessions WHERE token_digest = {digest} AND expires_at_us > {now})"
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub id: String,
    pub user_id: String,
    pub bank_token: String,
    pub bank_name: String,
    pub last4: String,
    pub kind: String,
    pub created_at: Timestamp,
}

pub struct NewCard<'a> {
    pub user_id: &'a str,
    pub bank_token: &'a str,
    pub bank_name: &'a str,
    pub last4: &'a str,
    pub kind: &'a str,
    pub fingerprint: &'a str,
}

fn card_from_row(r: &AnyRow) -> Result<Card> {
    Ok(Card {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        bank_token: r.try_get(2)?,
        bank_name: r.try_get(3)?,
        last4: r.try_get(4)?,
        kind: r.try_get(5)?,
        created_at: Timestamp::from_unix_micros(r.try_get(6)?),
    })
}

/// How many columns [`device_columns`] names: a query can add its own after them.
pub(crate) const DEVICE_COLUMN_COUNT: usize = 6;

/// A device's columns, each prefixed with `alias` (say `"d."`), in [`device_at`]'s order.
pub(crate) fn device_columns(alias: &str) -> String {
    const NAMES: [&str; DEVICE_COLUMN_COUNT] = ["id", "user_id", "name", "secret", "confirm_payments", "status"];
    NAMES.map(|c| format!("{alias}{c}")).join(", ")
}

/// Decodes a device from [`device_columns`] starting at column `first`.
pub(crate) fn device_at<R: Columns + ?Sized>(r: &R, first: usize) -> Result<Device> {
    Ok(Device {
        id: r.text(first)?,
        user_id: r.text(first + 1)?,
        name: r.text(first + 2)?,
        secret_b64: r.text(first + 3)?,
        confirm_payments: r.int(first + 4)? != 0,
        status: r.text(first + 5)?,
    })
}

#[derive(Clone)]
pub struct Device {
    /// The 8-digit device number printed inside payment codes.
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub secret_b64: String,
    pub confirm_payments: bool,
    pub status: String,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("id", &self.id).field("user_id", &self.user_id).finish_non_exhaustive()
    }
}

/// Failed pay-password attempts before paying is locked, and for how long.
pub const PAY_PASSWORD_MAX_FAILURES: i64 = 5;
pub const PAY_PASSWORD_LOCK_SECS: i64 = 3 * 3600;

impl Store {
    /// Registers a user and opens their CNY wallet. `None` when the phone is taken.
    pub async fn create_user(&self, phone: &str, password_hash: &str, now: Timestamp) -> Result<Option<User>> {
        let id = ids::new_id("usr");
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, phone, password_hash, created_at_us) VALUES ($1, $2, $3, $4) ON CONFLICT (phone) DO NOTHING",
        )
        .bind(&id)
        .bind(phone)
        .bind(password_hash)
        .bind(now.unix_micros())
        .execute(tx.conn())
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        tx.open_account(Owner { owner_type: "user", owner_id: &id }, AccountKind::WalletBalance, Currency::Cny, now)
            .await?;
        tx.commit().await?;
        self.user(&id).await
    }

    pub async fn user(&self, user_id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_optional(self.reader()).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_by_phone(&self, phone: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE phone = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(phone).fetch_optional(self.reader()).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The user's CNY wallet account id.
    pub async fn wallet_account(&self, user_id: &str) -> Result<String> {
        sqlx::query_scalar(
            "SELECT id FROM accounts WHERE owner_type = 'user' AND owner_id = $1 AND kind = 'wallet_balance' AND currency = 'CNY'",
        )
        .bind(user_id)
        .fetch_optional(self.reader())
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("user {user_id} has no wallet account")))
    }

    pub async fn create_session(
        &self,
        token_digest: &str,
        user_id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (token_digest, user_id, expires_at_us, created_at_us) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_digest)
        .bind(user_id)
        .bind(expires_at.unix_micros())
        .bind(now.unix_micros())
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// The user a live session belongs to, read with the session in one round trip.
    pub async fn session_user(&self, token_digest: &str, now: Timestamp) -> Result<Option<User>> {
        static SQL: LazyLock<String> = LazyLock::new(|| session_user_sql("$1", "$2"));
        self.read_one(&SQL, &[Param::Text(token_digest), Param::Int(now.unix_micros())], |r| user_from_row(r)).await
    }

    /// Records verified real-name details once. Returns false if the user already has
    /// different ones (the same ones again is a success).
    pub async fn set_real_name(
        &self,
        user_id: &str,
        name: &str,
        masked: &str,
        digest: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE users SET real_name = $1, id_number_masked = $2, id_number_digest = $3, real_name_at_us = $4 \
             WHERE id = $5 AND real_name IS NULL",
        )
        .bind(name)
        .bind(masked)
        .bind(digest)
        .bind(now.unix_micros())
        .bind(user_id)
        .execute(tx.conn())
        .await?;
        let row = sqlx::query("SELECT real_name, id_number_digest FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(tx.conn())
            .await?;
        tx.commit().await?;
        let (stored_name, stored_digest): (Option<String>, Option<String>) = (row.try_get(0)?, row.try_get(1)?);
        Ok(stored_name.as_deref() == Some(name) && stored_digest.as_deref() == Some(digest))
    }

    pub async fn set_pay_password(&self, user_id: &str, hash: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE users SET pay_password_hash = $1, pay_failures = 0 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(tx.conn())
            .await?;
        tx.commit().await
    }

    /// Takes one pay-password guess before the hash is checked: counts it as a failure up
    /// front, in one conditional update, so concurrent guesses cannot all see the lock
    /// open. `Ok(Some(n))`: the guess is the n-th since the last success; `Ok(None)`:
    /// paying is locked, or the guesses left are all in flight.
    pub async fn take_pay_password_guess(&self, user_id: &str, now: Timestamp) -> Result<Option<i64>> {
        let user_id = user_id.to_owned();
        // Through `Store::write` (SQLite's group commit): every pay-password check writes twice (take, settle).
        self.write(move |tx| {
            Box::pin(async move {
                Ok(sqlx::query_scalar(
                    "UPDATE users SET pay_failures = pay_failures + 1 \
                     WHERE id = $1 AND pay_failures < $2 AND (pay_locked_until_us IS NULL OR pay_locked_until_us <= $3) \
                     RETURNING pay_failures",
                )
                .bind(&user_id)
                .bind(PAY_PASSWORD_MAX_FAILURES)
                .bind(now.unix_micros())
                .fetch_optional(tx.conn())
                .await?)
            })
        })
        .await
    }

    /// A taken guess was wrong. The `guess`-th wrong one in a row locks paying until
    /// `now + PAY_PASSWORD_LOCK_SECS` (and starts the count again); returns the lock's end.
    pub async fn pay_password_guess_failed(
        &self,
        user_id: &str,
        guess: i64,
        now: Timestamp,
    ) -> Result<Option<Timestamp>> {
        if guess < PAY_PASSWORD_MAX_FAILURES {
            return Ok(None);
        }
        let lock_until = now.plus_secs(PAY_PASSWORD_LOCK_SECS);
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE users SET pay_locked_until_us = $1, pay_failures = 0 WHERE id = $2")
            .bind(lock_until.unix_micros())
            .bind(user_id)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(Some(lock_until))
    }

    /// The pay-password lock in force now, if any (for answering a refused guess).
    pub async fn pay_password_locked_until(&self, user_id: &str, now: Timestamp) -> Result<Option<Timestamp>> {
        let locked: Option<Option<i64>> = sqlx::query_scalar("SELECT pay_locked_until_us FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.reader())
            .await?;
        Ok(locked.flatten().map(Timestamp::from_unix_micros).filter(|&t| t > now))
    }

    /// A taken guess that was never checked (the hashing queue was full): not a failure.
    pub async fn give_back_pay_password_guess(&self, user_id: &str) -> Result<()> {
        self.set_pay_failures(user_id, "pay_failures - 1 WHERE id = $1 AND pay_failures > 0").await
    }

    /// A taken guess was right: the count starts again.
    pub async fn reset_pay_password_failures(&self, user_id: &str) -> Result<()> {
        self.set_pay_failures(user_id, "0 WHERE id = $1 AND pay_failures <> 0").await
    }

    /// `UPDATE users SET pay_failures = <change>`, through `Store::write` (SQLite's group commit).
    async fn set_pay_failures(&self, user_id: &str, change: &'static str) -> Result<()> {
        let user_id = user_id.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let sql = format!("UPDATE users SET pay_failures = {change}");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&user_id).execute(tx.conn()).await?;
                Ok(())
            })
        })
        .await
    }

    /// Binds a card. `None` when the same card is already bound to this user.
    pub async fn bind_card(&self, card: NewCard<'_>, now: Timestamp) -> Result<Option<Card>> {
        let id = ids::new_id("card");
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO cards (id, user_id, bank_token, bank_name, last4, card_kind, fingerprint, status, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'ACTIVE', $8) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(card.user_id)
        .bind(card.bank_token)
        .bind(card.bank_name)
        .bind(card.last4)
        .bind(card.kind)
        .bind(card.fingerprint)
        .bind(now.unix_micros())
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        if inserted == 0 {
            return Ok(None);
        }
        self.card(card.user_id, &id).await
    }

    pub async fn cards(&self, user_id: &str) -> Result<Vec<Card>> {
        let rows = sqlx::query(
            "SELECT id, user_id, bank_token, bank_name, last4, card_kind, created_at_us FROM cards \
             WHERE user_id = $1 AND status = 'ACTIVE' ORDER BY created_at_us, id",
        )
        .bind(user_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(card_from_row).collect()
    }

    /// One of the user's active cards.
    pub async fn card(&self, user_id: &str, card_id: &str) -> Result<Option<Card>> {
        let row = sqlx::query(
            "SELECT id, user_id, bank_token, bank_name, last4, card_kind, created_at_us FROM cards \
             WHERE id = $1 AND user_id = $2 AND status = 'ACTIVE'",
        )
        .bind(card_id)
        .bind(user_id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(card_from_row).transpose()
    }

    pub async fn remove_card(&self, user_id: &str, card_id: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE cards SET status = 'REMOVED' WHERE id = $1 AND user_id = $2 AND status = 'ACTIVE'")
            .bind(card_id)
            .bind(user_id)
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Registers a device under a fresh random 8-digit number.
    pub async fn create_device(
        &self,
        user_id: &str,
        name: &str,
        secret_b64: &str,
        confirm_payments: bool,
        now: Timestamp,
    ) -> Result<Device> {
        loop {
            let mut b = [0u8; 4];
            getrandom::fill(&mut b).expect("the operating system's random generator is available");
            // 10000000..99999999: always 8 digits, never a leading zero.
            let id = (10_000_000 + u32::from_le_bytes(b) % 90_000_000).to_string();
            let mut tx = self.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO devices (id, user_id, name, secret, confirm_payments, status, created_at_us) \
                 VALUES ($1, $2, $3, $4, $5, 'ACTIVE', $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&id)
            .bind(user_id)
            .bind(name)
            .bind(secret_b64)
            .bind(i64::from(confirm_payments))
            .bind(now.unix_micros())
            .execute(tx.conn())
            .await?
            .rows_affected();
            tx.commit().await?;
            if inserted == 1 {
                return Ok(Device {
                    id,
                    user_id: user_id.to_owned(),
                    name: name.to_owned(),
                    secret_b64: secret_b64.to_owned(),
                    confirm_payments,
                    status: "ACTIVE".to_owned(),
                });
            }
        }
    }

    pub async fn device(&self, device_id: &str) -> Result<Option<Device>> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {} FROM devices WHERE id = $1", device_columns("")));
        self.read_one(&SQL, &[Param::Text(device_id)], |r| device_at(r, 0)).await
    }

    /// Suspends a device and tells its owner. Returns false if it already was.
    pub async fn suspend_device(&self, device_id: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE devices SET status = 'SUSPENDED' WHERE id = $1 AND status = 'ACTIVE'")
            .bind(device_id)
            .execute(tx.conn())
            .await?
            .rows_affected();
        if n == 1 {
            let user_id: String = sqlx::query_scalar("SELECT user_id FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_one(tx.conn())
                .await?;
            tx.add_alert(
                &user_id,
                "device_suspended",
                &format!("Device {device_id} was suspended after repeated failed payment codes. If this was not you, freeze your account."),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    pub async fn alerts(&self, user_id: &str, limit: i64) -> Result<Vec<(String, String, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT kind, message, created_at_us FROM user_alerts WHERE user_id = $1 ORDER BY created_at_us DESC, id LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, Timestamp::from_unix_micros(r.try_get(2)?)))).collect()
    }
}

impl crate::Tx {
    pub async fn add_alert(&mut self, user_id: &str, kind: &str, message: &str, now: Timestamp) -> Result<()> {
        sqlx::query("INSERT INTO user_alerts (id, user_id, kind, message, created_at_us) VALUES ($1, $2, $3, $4, $5)")
            .bind(ids::new_id("alr"))
            .bind(user_id)
            .bind(kind)
            .bind(message)
            .bind(now.unix_micros())
            .execute(self.conn())
            .await?;
        Ok(())
    }
}
