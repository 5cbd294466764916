//! Merchants and the API keys they sign requests with.

use std::collections::HashSet;

use paykit_core::Currency;
use paykit_core::ledger::AccountKind;
use paykit_core::time::Timestamp;
use sqlx::Row;

use crate::ledger::Owner;
use crate::point_read::Param;
use crate::{Result, Store, ids};

/// How many keys a party may hold active at once: two, so a key can be rotated without
/// downtime (new key deployed while the old still works, then the old revoked).
pub const MAX_ACTIVE_KEYS: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub notify_url: Option<String>,
    pub status: String,
    pub created_at: Timestamp,
}

/// What never changes about a merchant after it is created: nothing updates these columns,
/// so they can be cached for as long as the process lives.
#[derive(Debug, Clone)]
pub(crate) struct FixedMerchant {
    pub(crate) name: String,
    pub(crate) notify_url: Option<String>,
}

impl crate::Tx {
    /// A merchant's [`FixedMerchant`] facts, read (in this transaction) only on a cache miss.
    pub(crate) async fn fixed_merchant(&mut self, merchant_id: &str) -> Result<FixedMerchant> {
        if let Some(fixed) = self.store.cached_merchant(merchant_id) {
            return Ok(fixed);
        }
        let store = self.store.clone();
        store
            .read_fixed_merchant(self.conn(), merchant_id)
            .await?
            .ok_or_else(|| crate::StoreError::Corrupt(format!("no merchant {merchant_id}")))
    }
}

/// A key as shown to its owner: never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub key_id: String,
    pub status: String,
    pub created_at: Timestamp,
}

/// What signature checking needs. The secret is only ever handed to the verifier.
#[derive(Clone)]
pub struct SigningKey {
    pub key_id: String,
    pub party_kind: String,
    pub party_id: String,
    pub secret: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("party_kind", &self.party_kind)
            .field("party_id", &self.party_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A freshly issued key: the only moment the secret leaves the gateway.
#[derive(Clone)]
pub struct IssuedKey {
    pub key_id: String,
    pub api_secret: String,
    /// Keys revoked to keep at most [`MAX_ACTIVE_KEYS`] active.
    pub revoked_key_ids: Vec<String>,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey").field("key_id", &self.key_id).field("api_secret", &"<redacted>").finish()
    }
}

impl Store {
    /// Creates a merchant with its CNY settlement account and a first API key.
    pub async fn create_merchant(
        &self,
        name: &str,
        notify_url: Option<&str>,
        now: Timestamp,
    ) -> Result<(Merchant, IssuedKey)> {
        let merchant = Merchant {
            id: ids::new_id("mch"),
            name: name.to_owned(),
            notify_url: notify_url.map(str::to_owned),
            status: "ACTIVE".to_owned(),
            created_at: now,
        };
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO merchants (id, name, notify_url, status, created_at_us) VALUES ($1, $2, $3, $4, $5)")
            .bind(&merchant.id)
            .bind(&merchant.name)
            .bind(merchant.notify_url.as_deref())
            .bind(&merchant.status)
            .bind(now.unix_micros())
            .execute(tx.conn())
            .await?;
        let owner = Owner { owner_type: "merchant", owner_id: &merchant.id };
        tx.open_account(owner, AccountKind::MerchantSettlement, Currency::Cny, now).await?;
        let key = issue_key(&mut tx, "merchant", &merchant.id, now).await?;
        tx.commit().await?;
        Ok((merchant, key))
    }

    pub async fn merchant(&self, merchant_id: &str) -> Result<Option<Merchant>> {
        let row = sqlx::query("SELECT id, name, notify_url, status, created_at_us FROM merchants WHERE id = $1")
            .bind(merchant_id)
            .fetch_optional(self.reader())
            .await?;
        row.map(|r| {
            Ok(Merchant {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                notify_url: r.try_get(2)?,
                status: r.try_get(3)?,
                created_at: Timestamp::from_unix_micros(r.try_get(4)?),
            })
        })
        .transpose()
    }

    /// Adds a new active key; if that would make more than [`MAX_ACTIVE_KEYS`] active, the
    /// oldest active keys are revoked.
    pub async fn rotate_merchant_key(&self, merchant_id: &str, now: Timestamp) -> Result<Option<IssuedKey>> {
        if self.merchant(merchant_id).await?.is_none() {
            return Ok(None);
        }
        let mut tx = self.begin().await?;
        let key = issue_key(&mut tx, "merchant", merchant_id, now).await?;
        tx.commit().await?;
        Ok(Some(key))
    }

    /// Revokes one of the party's keys. Returns false when no such active key exists.
    pub async fn revoke_key(&self, party_id: &str, key_id: &str, now: Timestamp) -> Result<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE api_keys SET status = 'REVOKED', revoked_at_us = $1 WHERE key_id = $2 AND party_id = $3 AND status = 'ACTIVE'",
        )
        .bind(now.unix_micros())
        .bind(key_id)
        .bind(party_id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    pub async fn keys(&self, party_id: &str) -> Result<Vec<KeyInfo>> {
        let rows = sqlx::query(
            "SELECT key_id, status, created_at_us FROM api_keys WHERE party_id = $1 ORDER BY created_at_us, key_id",
        )
        .bind(party_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyInfo {
                    key_id: r.try_get(0)?,
                    status: r.try_get(1)?,
                    created_at: Timestamp::from_unix_micros(r.try_get(2)?),
                })
            })
            .collect()
    }

    /// A merchant's name, from the cache when it is there (names never change).
    pub async fn merchant_name(&self, merchant_id: &str) -> Result<Option<String>> {
        if let Some(fixed) = self.cached_merchant(merchant_id) {
            return Ok(Some(fixed.name));
        }
        let mut conn = self.reader().acquire().await?;
        Ok(self.read_fixed_merchant(&mut conn, merchant_id).await?.map(|fixed| fixed.name))
    }

    fn cached_merchant(&self, merchant_id: &str) -> Option<FixedMerchant> {
        self.fixed_merchants.read().expect("merchant cache lock").get(merchant_id).cloned()
    }

    /// Reads a merchant's [`FixedMerchant`] facts on `conn` and caches them.
    async fn read_fixed_merchant(
        &self,
        conn: &mut sqlx::AnyConnection,
        merchant_id: &str,
    ) -> Result<Option<FixedMerchant>> {
        let row = sqlx::query_as::<_, (String, Option<String>)>("SELECT name, notify_url FROM merchants WHERE id = $1")
            .bind(merchant_id)
            .fetch_optional(conn)
            .await?;
        let fixed = row.map(|(name, notify_url)| FixedMerchant { name, notify_url });
        if let Some(fixed) = &fixed {
            self.fixed_merchants.write().expect("merchant cache lock").insert(merchant_id.to_owned(), fixed.clone());
        }
        Ok(fixed)
    }

    /// [`Store::active_signing_key`] and, in the same read, whether `nonce` is already
    /// stored for the party: a signed read's checks in one round trip. Claim the nonce
    /// first ([`Store::claim_read_nonce`]).
    pub async fn signing_key_and_nonce(
        &self,
        party_kind: &str,
        party_id: &str,
        key_id: &str,
        nonce: &str,
    ) -> Result<Option<(SigningKey, bool)>> {
        let sql = "SELECT k.secret, CAST(CASE WHEN EXISTS (SELECT 1 FROM request_nonces n WHERE n.party_id = $3 AND n.nonce = $4) \
               THEN 1 ELSE 0 END AS BIGINT) \
             FROM api_keys k WHERE k.key_id = $1 AND k.party_kind = $2 AND k.party_id = $3 AND k.status = 'ACTIVE'";
        let params = [Param::Text(key_id), Param::Text(party_kind), Param::Text(party_id), Param::Text(nonce)];
        let found = self
            .read_one(sql, &params, |r| Ok((signing_key(party_kind, party_id, key_id, r.text(0)?), r.int(1)? != 0)))
            .await?;
        if let Some((key, _)) = &found {
            self.remember_signing_key(key);
        }
        Ok(found)
    }

    /// The active key `key_id` of the given party, for checking a signature.
    pub async fn active_signing_key(
        &self,
        party_kind: &str,
        party_id: &str,
        key_id: &str,
    ) -> Result<Option<SigningKey>> {
        let sql =
            "SELECT secret FROM api_keys WHERE key_id = $1 AND party_kind = $2 AND party_id = $3 AND status = 'ACTIVE'";
        let params = [Param::Text(key_id), Param::Text(party_kind), Param::Text(party_id)];
        let found = self.read_one(sql, &params, |r| Ok(signing_key(party_kind, party_id, key_id, r.text(0)?))).await?;
        if let Some(key) = &found {
            self.remember_signing_key(key);
        }
        Ok(found)
    }

    /// The key `key_id` of the given party as this process last read it active, from
    /// memory: its secret is right (a key's secret never changes), but it may have been
    /// revoked since. Whoever answers with it must read that it is still active first: a
    /// write in its own transaction ([`crate::nonces::WriteNonce::confirming_key`]).
    pub fn known_signing_key(&self, party_kind: &str, party_id: &str, key_id: &str) -> Option<SigningKey> {
        let known = self.known_signing_keys.read().expect("key cache lock");
        known.get(key_id).filter(|k| k.party_kind == party_kind && k.party_id == party_id).cloned()
    }

    /// Whether the key `key_id` is active now (a point read).
    pub(crate) async fn key_is_active(&self, key_id: &str) -> Result<bool> {
        let sql = "SELECT 1 FROM api_keys WHERE key_id = $1 AND status = 'ACTIVE'";
        Ok(self.read_one(sql, &[Param::Text(key_id)], |r| r.int(0)).await?.is_some())
    }

    fn remember_signing_key(&self, key: &SigningKey) {
        if self.known_signing_keys.read().expect("key cache lock").contains_key(&key.key_id) {
            return;
        }
        self.known_signing_keys
            .write()
            .expect("key cache lock")
            .entry(key.key_id.clone())
            .or_insert_with(|| key.clone());
    }
}

/// Of `key_ids`, those whose keys are active, read in the caller's transaction.
pub(crate) async fn active_key_ids(conn: &mut sqlx::AnyConnection, key_ids: &[&str]) -> Result<HashSet<String>> {
    let sql = format!(
        "SELECT key_id FROM api_keys WHERE status = 'ACTIVE' AND key_id IN ({})",
        crate::placeholders(1, key_ids.len())
    );
    let mut query =
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(crate::for_engine(crate::Engine::of(conn), sql)));
    for key_id in key_ids {
        query = query.bind(*key_id);
    }
    Ok(query.fetch_all(conn).await?.into_iter().collect())
}

fn signing_key(party_kind: &str, party_id: &str, key_id: &str, secret: String) -> SigningKey {
    SigningKey { key_id: key_id.to_owned(), party_kind: party_kind.to_owned(), party_id: party_id.to_owned(), secret }
}

pub(crate) async fn issue_key(
    tx: &mut crate::Tx,
    party_kind: &str,
    party_id: &str,
    now: Timestamp,
) -> Result<IssuedKey> {
    let active: Vec<String> = sqlx::query_scalar(
        "SELECT key_id FROM api_keys WHERE party_kind = $1 AND party_id = $2 AND status = 'ACTIVE' ORDER BY created_at_us, key_id",
    )
    .bind(party_kind)
    .bind(party_id)
    .fetch_all(tx.conn())
    .await?;
    let excess = (active.len() + 1).saturating_sub(MAX_ACTIVE_KEYS);
    let revoked_key_ids: Vec<String> = active.into_iter().take(excess).collect();
    for key_id in &revoked_key_ids {
        sqlx::query("UPDATE api_keys SET status = 'REVOKED', revoked_at_us = $1 WHERE key_id = $2")
            .bind(now.unix_micros())
            .bind(key_id)
            .execute(tx.conn())
            .await?;
    }
    let key = IssuedKey { key_id: ids::new_id("key"), api_secret: ids::new_secret(), revoked_key_ids };
    sqlx::query(
        "INSERT INTO api_keys (key_id, party_kind, party_id, secret, status, created_at_us) VALUES ($1, $2, $3, $4, 'ACTIVE', $5)",
    )
    .bind(&key.key_id)
    .bind(party_kind)
    .bind(party_id)
    .bind(&key.api_secret)
    .bind(now.unix_micros())
    .execute(tx.conn())
    .await?;
    Ok(key)
}
