//! The ledger in the database: accounts, their balance rows, journal entries and postings.
//!
//! Invariants enforced here, at write time:
//! 1. every entry balances per currency (only balanced `JournalEntry` values exist, and
//!    they are written whole in one transaction);
//! 2. each posting moves its account's balance rows by exactly its amount in the same
//!    transaction, so balance = sum of postings;
//! 3. a floored account (a wallet) is debited with a conditional update that refuses to go
//!    below zero, backed by a CHECK constraint, so concurrent spending cannot overdraw it.

use paykit_core::Currency;
use paykit_core::ledger::{AccountKind, JournalEntry};
use paykit_core::money::Money;
use paykit_core::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::Row;

use crate::rows_insert::RowsInsert;
use crate::{Result, Store, StoreError, Tx, ids};

/// What storage needs to know about an account to post to it. Immutable once created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMeta {
    pub id: String,
    pub owner_type: String,
    pub owner_id: String,
    pub kind: AccountKind,
    pub currency: Currency,
    pub shard_count: u16,
    pub floored: bool,
}

/// Who an account belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub owner_type: &'a str,
    pub owner_id: &'a str,
}

impl Tx {
    /// Returns the account of `kind` in `currency` for `owner`, creating it (with its
    /// balance rows at zero) if it does not exist yet.
    pub async fn open_account(
        &mut self,
        owner: Owner<'_>,
        kind: AccountKind,
        currency: Currency,
        now: Timestamp,
    ) -> Result<AccountMeta> {
        if let Some(meta) = self.find_account(owner, kind, currency).await? {
            return Ok(meta);
        }
        let meta = AccountMeta {
            id: ids::new_id("acc"),
            owner_type: owner.owner_type.to_owned(),
            owner_id: owner.owner_id.to_owned(),
            kind,
            currency,
            shard_count: kind.balance_shards(),
            floored: kind.floored_at_zero(),
        };
        let inserted = sqlx::query(
            "INSERT INTO accounts (id, owner_type, owner_id, kind, currency, shard_count, floored, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (owner_type, owner_id, kind, currency) DO NOTHING",
        )
        .bind(&meta.id)
        .bind(&meta.owner_type)
        .bind(&meta.owner_id)
        .bind(kind.as_str())
        .bind(currency.code())
        .bind(i64::from(meta.shard_count))
        .bind(i64::from(meta.floored))
        .bind(now.unix_micros())
        .execute(self.conn())
        .await?
        .rows_affected();
        if inserted == 1 {
            self.opened_here.push(meta.id.clone());
        }
        if inserted == 0 {
            // Another transaction opened it first.
            return self
                .find_account(owner, kind, currency)
                .await?
                .ok_or_else(|| StoreError::Corrupt("account vanished after a conflicting insert".into()));
        }
        // Every balance row in one statement (shard numbers are ours, so they go in as text).
        let rows: Vec<String> = (0..meta.shard_count).map(|shard| format!("($1, {shard}, 0, $2)")).collect();
        let sql = format!(
            "INSERT INTO account_balances (account_id, shard, balance_minor, floored) VALUES {}",
            rows.join(", ")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&meta.id).bind(i64::from(meta.floored)).execute(self.conn()).await?;
        Ok(meta)
    }

    pub(crate) async fn find_account(
        &mut self,
        owner: Owner<'_>,
        kind: AccountKind,
        currency: Currency,
    ) -> Result<Option<AccountMeta>> {
        let key = format!("{}\u{0}{}\u{0}{}\u{0}{}", owner.owner_type, owner.owner_id, kind.as_str(), currency.code());
        if let Some(meta) = self.store.owner_accounts.read().expect("account cache lock").get(&key) {
            return Ok(Some(meta.clone()));
        }
        let row = sqlx::query(
            "SELECT id, owner_type, owner_id, kind, currency, shard_count, floored FROM accounts \
             WHERE owner_type = $1 AND owner_id = $2 AND kind = $3 AND currency = $4",
        )
        .bind(owner.owner_type)
        .bind(owner.owner_id)
        .bind(kind.as_str())
        .bind(currency.code())
        .fetch_optional(self.conn())
        .await?;
        let meta = row.map(|r| account_from_row(&r)).transpose()?;
        if let Some(meta) = &meta
            && !self.opened_here.contains(&meta.id)
        {
            self.store.owner_accounts.write().expect("account cache lock").insert(key, meta.clone());
        }
        Ok(meta)
    }

    async fn account_meta(&mut self, account_id: &str) -> Result<AccountMeta> {
        if let Some(meta) = self.store.accounts.read().expect("account cache lock").get(account_id) {
            return Ok(meta.clone());
        }
        let row = sqlx::query(
            "SELECT id, owner_type, owner_id, kind, currency, shard_count, floored FROM accounts WHERE id = $1",
        )
        .bind(account_id)
        .fetch_optional(self.conn())
        .await?
        .ok_or_else(|| StoreError::UnknownAccount(account_id.to_owned()))?;
        let meta = account_from_row(&row)?;
        if !self.opened_here.contains(&meta.id) {
            self.store.accounts.write().expect("account cache lock").insert(meta.id.clone(), meta.clone());
        }
        Ok(meta)
    }

    /// Writes `entry` and moves the balances of its accounts. On any error nothing of the
    /// entry is kept once the caller rolls back (or the enclosing savepoint does).
    pub async fn post_entry(&mut self, entry: &JournalEntry, now: Timestamp) -> Result<String> {
        let entry_id = ids::new_id("je");
        let mut moves = Vec::with_capacity(entry.postings().len());
        for posting in entry.postings() {
            let meta = self.account_meta(&posting.account_id).await?;
            if meta.currency != posting.amount.currency() {
                return Err(StoreError::CurrencyMismatch {
                    account_id: meta.id,
                    posting: posting.amount.currency().to_string(),
                    account: meta.currency.to_string(),
                });
            }
            let shard = if meta.shard_count > 1 { pick_shard(meta.shard_count) } else { 0 };
            moves.push((meta, shard, posting.amount));
        }
        // A fixed lock order (account, shard) means two entries touching the same rows can
        // never wait on each other in a cycle.
        moves.sort_by(|a, b| (&a.0.id, a.1).cmp(&(&b.0.id, b.1)));

        self.insert_entries(&[(&entry_id, entry, now)]).await?;
        for (meta, shard, amount) in &moves {
            let minor = amount.minor_units();
            let updated = if meta.floored {
                sqlx::query(
                    "UPDATE account_balances SET balance_minor = balance_minor + $1 \
                     WHERE account_id = $2 AND shard = $3 AND balance_minor + $1 >= 0",
                )
            } else {
                sqlx::query("UPDATE account_balances SET balance_minor = balance_minor + $1 WHERE account_id = $2 AND shard = $3")
            }
            .bind(minor)
            .bind(&meta.id)
            .bind(i64::from(*shard))
            .execute(self.conn())
            .await?
            .rows_affected();
            if updated != 1 {
                return Err(StoreError::InsufficientFunds { account_id: meta.id.clone() });
            }
        }
        Ok(entry_id)
    }

    /// Writes entries' rows — the entries and all their postings — in one statement on
    /// PostgreSQL, one call of two statements on SQLite, however many there are. Balances
    /// are the caller's: this moves none.
    pub(crate) async fn insert_entries(&mut self, entries: &[(&str, &JournalEntry, Timestamp)]) -> Result<()> {
        self.insert_rows(entry_rows(entries).into()).await
    }

    /// Locks those of `rows` no other transaction holds, and returns their balances; the
    /// rows held are skipped, not waited for (missing from the answer). A locker that never
    /// waits cannot wait in a cycle, whatever order it asks in. SQLite has no row locks:
    /// its one writer holds the whole database already.
    pub(crate) async fn try_lock_balance_rows(
        &mut self,
        rows: &BTreeSet<(String, u16)>,
    ) -> Result<HashMap<(String, u16), i64>> {
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        let lock = if self.engine() == crate::Engine::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "SELECT account_id, shard, balance_minor FROM account_balances WHERE (account_id, shard) IN (VALUES {}) \
             ORDER BY account_id, shard{lock}",
            crate::value_rows(1, 2, rows.len())
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(crate::for_engine(self.engine(), sql)));
        for (account_id, shard) in rows {
            select = select.bind(account_id).bind(i64::from(*shard));
        }
        let mut balances = HashMap::with_capacity(rows.len());
        for row in select.fetch_all(self.conn()).await? {
            let shard: i64 = row.try_get(1)?;
            let shard = u16::try_from(shard).map_err(|_| StoreError::Corrupt(format!("shard {shard}")))?;
            balances.insert((row.try_get(0)?, shard), row.try_get(2)?);
        }
        Ok(balances)
    }

    /// Moves balance rows by the given deltas in one statement: the rows a batch locked
    /// with [`Tx::try_lock_balance_rows`] and checked its debits against. A floored row still
    /// refuses to go below zero; any row that did not move fails the whole call.
    pub(crate) async fn move_balance_rows(&mut self, deltas: &BTreeMap<(String, u16), i64>) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE account_balances SET balance_minor = account_balances.balance_minor + v.column3 \
             FROM (VALUES {}) AS v \
             WHERE account_balances.account_id = v.column1 AND account_balances.shard = v.column2 \
               AND (account_balances.floored = 0 OR account_balances.balance_minor + v.column3 >= 0)",
            crate::value_rows(1, 3, deltas.len())
        );
        let mut update = sqlx::query(sqlx::AssertSqlSafe(crate::for_engine(self.engine(), sql)));
        for ((account_id, shard), delta) in deltas {
            update = update.bind(account_id).bind(i64::from(*shard)).bind(*delta);
        }
        let moved = update.execute(self.conn()).await?.rows_affected();
        if moved != deltas.len() as u64 {
            return Err(StoreError::Corrupt(format!("{moved} of {} balance rows moved", deltas.len())));
        }
        Ok(())
    }
}

impl Store {
    /// An account's balance: the sum of its balance rows.
    pub async fn balance(&self, account_id: &str) -> Result<Money> {
        let row = sqlx::query(
            "SELECT a.currency, CAST(COALESCE(SUM(b.balance_minor), 0) AS BIGINT) \
             FROM accounts a LEFT JOIN account_balances b ON b.account_id = a.id WHERE a.id = $1 GROUP BY a.currency",
        )
        .bind(account_id)
        .fetch_optional(self.reader())
        .await?
        .ok_or_else(|| StoreError::UnknownAccount(account_id.to_owned()))?;
        let currency: String = row.try_get(0)?;
        let currency = currency.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?;
        Money::from_minor(row.try_get(1)?, currency).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Number of postings on an account (for tests and reports).
    pub async fn posting_count(&self, account_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM postings WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(self.reader())
            .await?)
    }
}

pub(crate) fn pick_shard(shard_count: u16) -> u16 {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).expect("the operating system's random generator is available");
    u16::from_le_bytes(b) % shard_count
}

fn account_from_row(row: &sqlx::any::AnyRow) -> Result<AccountMeta> {
    let corrupt = |what: String| StoreError::Corrupt(what);
    let kind: String = row.try_get("kind")?;
    let currency: String = row.try_get("currency")?;
    let shard_count: i64 = row.try_get("shard_count")?;
    Ok(AccountMeta {
        id: row.try_get("id")?,
        owner_type: row.try_get("owner_type")?,
        owner_id: row.try_get("owner_id")?,
        kind: kind.parse().map_err(corrupt)?,
        currency: currency.parse().map_err(|e| corrupt(format!("{e}")))?,
        shard_count: u16::try_from(shard_count).map_err(|_| corrupt(format!("shard_count {shard_count}")))?,
        floored: row.try_get::<i64, _>("floored")? != 0,
    })
}

/// The rows of `entries`: the entries, then their postings.
pub(crate) fn entry_rows<'a>(entries: &[(&'a str, &'a JournalEntry, Timestamp)]) -> [RowsInsert<'a>; 2] {
    let mut journal = RowsInsert::new("INSERT INTO journal_entries (id, kind, reference, created_at_us)", "", 4);
    let mut postings =
        RowsInsert::new("INSERT INTO postings (entry_id, account_id, amount_minor, currency, created_at_us)", "", 5);
    for (id, entry, now) in entries {
        journal.row([(*id).into(), entry.kind().as_str().into(), entry.reference().into(), now.unix_micros().into()]);
        for posting in entry.postings() {
            postings.row([
                (*id).into(),
                posting.account_id.as_str().into(),
                posting.amount.minor_units().into(),
                posting.amount.currency().code().into(),
                now.unix_micros().into(),
            ]);
        }
    }
    [journal, postings]
}
