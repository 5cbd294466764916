//! Card operations at the bank: top-ups, card-funded payments, and the settling of those
//! the bank answered late (exactly once, whichever gateway process gets there first).

use paykit_core::Money;
use paykit_core::ledger::{AccountKind, EntryKind, JournalEntry};
use paykit_core::order::OrderStatus;
use paykit_core::time::Timestamp;
use sqlx::Row;

use crate::ledger::Owner;
use crate::payments::{BANK_OWNER, BankAnswer, IdempotencyKey, PayError};
use crate::{Result, Store, StoreError, Tx, ids};

/// A card operation as the consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankOperation {
    pub id: String,
    pub kind: String,
    pub user_id: String,
    pub card_id: String,
    pub amount: Money,
    pub reference: String,
    pub status: String,
    pub created_at: Timestamp,
    pub settled_at: Option<Timestamp>,
}

impl Tx {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_bank_operation(
        &mut self,
        id: &str,
        kind: &str,
        user_id: &str,
        card_id: &str,
        amount: Money,
        reference: &str,
        status: &str,
        settle_at_us: Option<i64>,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO bank_operations (id, kind, user_id, card_id, amount_minor, currency, reference, status, settle_at_us, \
               created_at_us, settled_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(kind)
        .bind(user_id)
        .bind(card_id)
        .bind(amount.minor_units())
        .bind(amount.currency().code())
        .bind(reference)
        .bind(status)
        .bind(settle_at_us)
        .bind(now.unix_micros())
        .bind((status == "SUCCESS").then_some(now.unix_micros()))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn post(
        &mut self,
        kind: EntryKind,
        reference: &str,
        from: &str,
        to: &str,
        amount: Money,
        now: Timestamp,
    ) -> Result<()> {
        let entry = JournalEntry::transfer(kind, reference, from, to, amount)
            .map_err(|e| StoreError::Corrupt(format!("unbuildable entry: {e}")))?;
        self.post_entry(&entry, now).await.map(|_| ())
    }
}

impl Store {
    /// Tops up a wallet from a card the bank has accepted (or will settle later). With an
    /// idempotency key, a replay returns the first top-up.
    pub async fn top_up(
        &self,
        user_id: &str,
        card_id: &str,
        amount: Money,
        bank: BankAnswer,
        idempotency: Option<IdempotencyKey>,
        now: Timestamp,
    ) -> Result<BankOperation, PayError> {
        let owner = user_id.to_owned();
        let (user_id, card_id, id) = (user_id.to_owned(), card_id.to_owned(), ids::new_id("top"));
        // Through `Store::write` (SQLite's group commit).
        let made = self
            .write_new(id.clone(), idempotency, now, move |tx| {
                Box::pin(async move {
                    let (status, settle_at) = match bank {
                        BankAnswer::Approved => ("SUCCESS", None),
                        BankAnswer::Processing { settle_at } => ("PROCESSING", Some(settle_at.unix_micros())),
                    };
                    tx.insert_bank_operation(&id, "top_up", &user_id, &card_id, amount, "", status, settle_at, now)
                        .await?;
                    if status == "SUCCESS" {
                        let bank = tx.open_account(BANK_OWNER, AccountKind::External, amount.currency(), now).await?.id;
                        let wallet = tx
                            .open_account(
                                Owner { owner_type: "user", owner_id: &user_id },
                                AccountKind::WalletBalance,
                                amount.currency(),
                                now,
                            )
                            .await?
                            .id;
                        tx.post(EntryKind::TopUp, &id, &bank, &wallet, amount, now).await?;
                    }
                    tx.put_record(&user_id, "top_up", &id, "Top-up", amount.minor_units(), &card_id, status, now)
                        .await?;
                    Ok(())
                })
            })
            .await?;
        self.bank_operation(&owner, &made).await?.ok_or(PayError::NotFound)
    }

    pub async fn bank_operation(&self, user_id: &str, id: &str) -> Result<Option<BankOperation>> {
        let row = sqlx::query(
            "SELECT id, kind, user_id, card_id, amount_minor, currency, reference, status, created_at_us, settled_at_us \
             FROM bank_operations WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| {
            let currency = r.try_get::<String, _>(5)?.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?;
            Ok(BankOperation {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                user_id: r.try_get(2)?,
                card_id: r.try_get(3)?,
                amount: Money::from_minor(r.try_get(4)?, currency).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                reference: r.try_get(6)?,
                status: r.try_get(7)?,
                created_at: Timestamp::from_unix_micros(r.try_get(8)?),
                settled_at: r.try_get::<Option<i64>, _>(9)?.map(Timestamp::from_unix_micros),
            })
        })
        .transpose()
    }

    /// Settles every late bank operation due by `now`. Each settles once: the first
    /// transaction to move it out of PROCESSING applies its money; others skip it.
    /// Returns how many this call settled.
    pub async fn settle_due_bank_operations(&self, now: Timestamp) -> Result<u64> {
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM bank_operations WHERE status = 'PROCESSING' AND settle_at_us <= $1 ORDER BY settle_at_us LIMIT 100",
        )
        .bind(now.unix_micros())
        .fetch_all(self.reader())
        .await?;
        let mut settled = 0;
        for id in due {
            let mut tx = self.begin().await?;
            let claimed = sqlx::query(
                "UPDATE bank_operations SET status = 'SUCCESS', settled_at_us = $1 WHERE id = $2 AND status = 'PROCESSING'",
            )
            .bind(now.unix_micros())
            .bind(&id)
            .execute(tx.conn())
            .await?
            .rows_affected();
            if claimed == 0 {
                continue;
            }
            let row = sqlx::query(
                "SELECT kind, user_id, card_id, amount_minor, currency, reference FROM bank_operations WHERE id = $1",
            )
            .bind(&id)
            .fetch_one(tx.conn())
            .await?;
            let (kind, user_id, card_id, minor, currency, reference): (String, String, String, i64, String, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?, row.try_get(5)?);
            let currency = currency.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?;
            let amount = Money::from_minor(minor, currency).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let bank = tx.open_account(BANK_OWNER, AccountKind::External, currency, now).await?.id;
            match kind.as_str() {
                "top_up" => {
                    let wallet = tx
                        .open_account(
                            Owner { owner_type: "user", owner_id: &user_id },
                            AccountKind::WalletBalance,
                            currency,
                            now,
                        )
                        .await?
                        .id;
                    tx.post(EntryKind::TopUp, &id, &bank, &wallet, amount, now).await?;
                    tx.put_record(&user_id, "top_up", &id, "Top-up", minor, &card_id, "SUCCESS", now).await?;
                }
                "payment" => {
                    let order = tx
                        .order(&reference)
                        .await?
                        .ok_or_else(|| StoreError::Corrupt(format!("bank operation {id} for missing order")))?;
                    if !tx.transition_order(&reference, OrderStatus::UserPaying, OrderStatus::Success, now).await? {
                        // The order moved on (reversed) while the bank was slow: void the charge.
                        sqlx::query("UPDATE bank_operations SET status = 'FAILED', failure_code = 'ORDER_NOT_PAYABLE' WHERE id = $1")
                            .bind(&id)
                            .execute(tx.conn())
                            .await?;
                    } else {
                        sqlx::query("UPDATE orders SET paid_at_us = $1 WHERE id = $2")
                            .bind(now.unix_micros())
                            .bind(&reference)
                            .execute(tx.conn())
                            .await?;
                        let merchant = tx
                            .open_account(
                                Owner { owner_type: "merchant", owner_id: &order.merchant_id },
                                AccountKind::MerchantSettlement,
                                currency,
                                now,
                            )
                            .await?
                            .id;
                        tx.post(EntryKind::Payment, &reference, &bank, &merchant, amount, now).await?;
                        tx.put_record(&user_id, "payment", &reference, "", -minor, &card_id, "SUCCESS", now).await?;
                        let paid = tx
                            .order(&reference)
                            .await?
                            .ok_or_else(|| StoreError::Corrupt(format!("order {reference} vanished")))?;
                        tx.payment_succeeded(&paid, now).await?;
                    }
                }
                other => return Err(StoreError::Corrupt(format!("bank operation {id} of unknown kind {other}"))),
            }
            tx.commit().await?;
            settled += 1;
        }
        Ok(settled)
    }
}

/// A consumer's transaction record (交易记录).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub kind: String,
    pub reference_id: String,
    pub title: String,
    /// Negative: money out of the wallet (or card) to someone; positive: money in.
    pub amount: Money,
    pub funding: String,
    pub status: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub kind: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub before: Option<(Timestamp, String)>,
    pub limit: i64,
}

impl Store {
    /// A page of a consumer's records, newest first.
    pub async fn records(&self, user_id: &str, f: &RecordFilter) -> Result<Vec<Record>> {
        let rows = sqlx::query(
            "SELECT id, kind, reference_id, title, amount_minor, currency, funding, status, created_at_us, updated_at_us FROM records \
             WHERE user_id = $1 AND ($2 IS NULL OR kind = $2) AND created_at_us >= $3 AND created_at_us < $4 \
               AND ($5 IS NULL OR created_at_us < $5 OR (created_at_us = $5 AND id < $6)) \
             ORDER BY created_at_us DESC, id DESC LIMIT $7",
        )
        .bind(user_id)
        .bind(f.kind.as_deref())
        .bind(f.from.map_or(i64::MIN, Timestamp::unix_micros))
        .bind(f.to.map_or(i64::MAX, Timestamp::unix_micros))
        .bind(f.before.as_ref().map(|(t, _)| t.unix_micros()))
        .bind(f.before.as_ref().map(|(_, id)| id.as_str()))
        .bind(f.limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let currency = r.try_get::<String, _>(5)?.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?;
                Ok(Record {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    reference_id: r.try_get(2)?,
                    title: r.try_get(3)?,
                    amount: Money::from_minor(r.try_get(4)?, currency)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    funding: r.try_get(6)?,
                    status: r.try_get(7)?,
                    created_at: Timestamp::from_unix_micros(r.try_get(8)?),
                    updated_at: Timestamp::from_unix_micros(r.try_get(9)?),
                })
            })
            .collect()
    }
}
