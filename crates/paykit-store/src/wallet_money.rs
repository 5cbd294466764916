//! Wallet money beyond paying: freezing, transfers, red packets, withdrawals and credit-card
//! repayments. Escrowed money (pending transfers, unclaimed red-packet shares) sits in
//! floored escrow accounts that `verify` checks against what is still claimable.

use paykit_core::Money;
use paykit_core::ledger::{AccountKind, EntryKind, JournalEntry};
use paykit_core::time::Timestamp;
use sqlx::Row;

use crate::ledger::Owner;
use crate::payments::{BANK_OWNER, IdempotencyKey, PayError};
use crate::{Result, Store, StoreError, Tx, ids};

pub const TRANSFER_ESCROW: Owner<'static> = Owner { owner_type: "system", owner_id: "transfer_escrow" };
pub const RED_PACKET_ESCROW: Owner<'static> = Owner { owner_type: "system", owner_id: "red_packet_escrow" };
pub const FEES: Owner<'static> = Owner { owner_type: "system", owner_id: "fees" };

fn user(id: &str) -> Owner<'_> {
    Owner { owner_type: "user", owner_id: id }
}

impl Tx {
    /// Moves `amount` between two parties' accounts in one entry.
    pub(crate) async fn transfer_between(
        &mut self,
        kind: EntryKind,
        reference: &str,
        from: (Owner<'_>, AccountKind),
        to: (Owner<'_>, AccountKind),
        amount: Money,
        now: Timestamp,
    ) -> Result<(), PayError> {
        let from = self.open_account(from.0, from.1, amount.currency(), now).await?.id;
        let to = self.open_account(to.0, to.1, amount.currency(), now).await?.id;
        let entry = JournalEntry::transfer(kind, reference, &from, &to, amount)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match self.post_entry(&entry, now).await {
            Err(StoreError::InsufficientFunds { .. }) => Err(PayError::InsufficientBalance),
            other => other.map(|_| ()).map_err(PayError::from),
        }
    }

    async fn audit_freeze(
        &mut self,
        kind: &str,
        id: &str,
        frozen: bool,
        actor: &str,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query("INSERT INTO freeze_audit (id, party_kind, party_id, frozen, actor, reason, at_us) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(ids::new_id("frz"))
            .bind(kind)
            .bind(id)
            .bind(i64::from(frozen))
            .bind(actor)
            .bind(reason)
            .bind(now.unix_micros())
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Transfer {
    pub id: String,
    pub payer_user_id: String,
    pub payee_kind: String,
    pub payee: String,
    pub amount: Money,
    pub memo: String,
    pub status: String,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
}

/// Where a transfer goes.
pub enum Payee<'a> {
    User(&'a str),
    Merchant(&'a str),
    Phone(&'a str),
}

/// A transfer as the payer asks for it.
pub struct TransferToMake<'a> {
    pub payer: &'a str,
    pub payee: Payee<'a>,
    pub amount: Money,
    pub memo: &'a str,
    /// When an unaccepted transfer goes back to the payer.
    pub expires_at: Timestamp,
}

/// A red packet as its sender asks for it, the shares already split.
pub struct RedPacketToMake<'a> {
    pub sender: &'a str,
    pub kind: &'a str,
    pub shares: &'a [i64],
    pub memo: &'a str,
    /// When what is unclaimed goes back to the sender.
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct RedPacket {
    pub id: String,
    pub sender_user_id: String,
    pub kind: String,
    pub total: Money,
    pub share_count: i64,
    pub claimed: Vec<(String, Money, Timestamp)>,
    pub status: String,
    pub memo: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct Payout {
    pub id: String,
    pub kind: String,
    pub card_id: String,
    pub funding: String,
    pub amount: Money,
    pub fee: Money,
    pub status: String,
    pub created_at: Timestamp,
    pub settled_at: Option<Timestamp>,
}

fn money(minor: i64) -> Result<Money> {
    Money::from_minor(minor, paykit_core::Currency::Cny).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const TRANSFER_COLUMNS: &str = "id, payer_user_id, payee_kind, COALESCE(payee_user_id, payee_merchant_id, payee_phone), amount_minor, memo, \
     status, expires_at_us, created_at_us";

fn transfer_from_row(r: &sqlx::any::AnyRow) -> Result<Transfer> {
    Ok(Transfer {
        id: r.try_get(0)?,
        payer_user_id: r.try_get(1)?,
        payee_kind: r.try_get(2)?,
        payee: r.try_get(3)?,
        amount: money(r.try_get(4)?)?,
        memo: r.try_get(5)?,
        status: r.try_get(6)?,
        expires_at: Timestamp::from_unix_micros(r.try_get(7)?),
        created_at: Timestamp::from_unix_micros(r.try_get(8)?),
    })
}

impl Store {
    /// Freezes or unfreezes a user, merchant or biller, and audits it. Returns false for
    /// an unknown party.
    pub async fn set_frozen(
        &self,
        kind: &str,
        id: &str,
        frozen: bool,
        actor: &str,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<bool> {
        let sql = match kind {
            "user" => "UPDATE users SET frozen = $1 WHERE id = $2",
            "merchant" => {
                "UPDATE merchants SET status = CASE WHEN $1 = 1 THEN 'FROZEN' ELSE 'ACTIVE' END WHERE id = $2"
            }
            "biller" => "UPDATE billers SET status = CASE WHEN $1 = 1 THEN 'FROZEN' ELSE 'ACTIVE' END WHERE id = $2",
            _ => return Ok(false),
        };
        let mut tx = self.begin().await?;
        let n = sqlx::query(sql).bind(i64::from(frozen)).bind(id).execute(tx.conn()).await?.rows_affected();
        if n == 0 {
            return Ok(false);
        }
        tx.audit_freeze(kind, id, frozen, actor, reason, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The freeze history: (party kind, id, frozen, actor, reason, at).
    pub async fn freeze_audit(
        &self,
        party_id: Option<&str>,
    ) -> Result<Vec<(String, String, bool, String, Option<String>, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT party_kind, party_id, frozen, actor, reason, at_us FROM freeze_audit WHERE ($1 IS NULL OR party_id = $1) \
             ORDER BY at_us DESC, id LIMIT 200",
        )
        .bind(party_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get::<i64, _>(2)? != 0,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    Timestamp::from_unix_micros(r.try_get(5)?),
                ))
            })
            .collect()
    }

    /// Sum of the user's transfers out since `since` (for the daily limit).
    pub async fn transferred_since(&self, user_id: &str, since: Timestamp) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM transfers WHERE payer_user_id = $1 AND created_at_us >= $2 \
             AND status <> 'RETURNED'",
        )
        .bind(user_id)
        .bind(since.unix_micros())
        .fetch_one(self.reader())
        .await?)
    }

    /// Sends money. To a merchant it lands at once; to a person it waits in escrow until
    /// they accept (a phone number not yet registered: until it registers and verifies).
    pub async fn create_transfer(
        &self,
        asked: TransferToMake<'_>,
        idempotency: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<Transfer, PayError> {
        let TransferToMake { payer, payee, amount, memo, expires_at } = asked;
        let id = ids::new_id("trf");
        let (kind, payee_user, payee_merchant, payee_phone) = match payee {
            Payee::User(u) => ("user", Some(u), None, None),
            Payee::Merchant(m) => ("merchant", None, Some(m), None),
            Payee::Phone(p) => ("phone", None, None, Some(p)),
        };
        let status = if kind == "merchant" { "COMPLETED" } else { "PENDING" };
        let owned = |v: Option<&str>| v.map(str::to_owned);
        let (payee_user, payee_merchant, payee_phone) = (owned(payee_user), owned(payee_merchant), owned(payee_phone));
        let (payer, memo, idempotency) = (payer.to_owned(), memo.to_owned(), idempotency.cloned());
        // Through `Store::write` (SQLite's group commit).
        let made = self
            .write_new(id.clone(), idempotency, now, move |tx| {
                Box::pin(async move {
                sqlx::query(
                    "INSERT INTO transfers (id, payer_user_id, payee_kind, payee_user_id, payee_merchant_id, payee_phone, amount_minor, currency, \
                       memo, status, expires_at_us, created_at_us, settled_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, 'CNY', $8, $9, $10, $11, $12)",
                )
                .bind(&id)
                .bind(&payer)
                .bind(kind)
                .bind(payee_user.as_deref())
                .bind(payee_merchant.as_deref())
                .bind(payee_phone.as_deref())
                .bind(amount.minor_units())
                .bind(&memo)
                .bind(status)
                .bind(expires_at.unix_micros())
                .bind(now.unix_micros())
                .bind((status == "COMPLETED").then_some(now.unix_micros()))
                .execute(tx.conn())
                .await?;
                let to = match payee_merchant.as_deref() {
                    Some(m) => (Owner { owner_type: "merchant", owner_id: m }, AccountKind::MerchantSettlement),
                    None => (TRANSFER_ESCROW, AccountKind::TransferEscrow),
                };
                tx.transfer_between(EntryKind::Transfer, &id, (user(&payer), AccountKind::WalletBalance), to, amount, now)
                    .await?;
                tx.put_record(
                    &payer,
                    "transfer",
                    &id,
                    &format!("Transfer: {memo}"),
                    -amount.minor_units(),
                    "balance",
                    status,
                    now,
                )
                .await?;
                    Ok(())
                })
            })
            .await?;
        self.transfer(&made).await?.ok_or(PayError::NotFound)
    }

    pub async fn transfer(&self, id: &str) -> Result<Option<Transfer>> {
        let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.reader()).await?;
        row.as_ref().map(transfer_from_row).transpose()
    }

    /// A user's transfers out, and those waiting for them (to their id or their phone).
    pub async fn transfers_for(&self, user_id: &str, phone: &str) -> Result<(Vec<Transfer>, Vec<Transfer>)> {
        let out_sql = format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE payer_user_id = $1 ORDER BY created_at_us DESC LIMIT 100"
        );
        let in_sql = format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE (payee_user_id = $1 OR payee_phone = $2) ORDER BY created_at_us DESC LIMIT 100"
        );
        let outgoing = sqlx::query(sqlx::AssertSqlSafe(out_sql)).bind(user_id).fetch_all(self.reader()).await?;
        let incoming =
            sqlx::query(sqlx::AssertSqlSafe(in_sql)).bind(user_id).bind(phone).fetch_all(self.reader()).await?;
        Ok((
            outgoing.iter().map(transfer_from_row).collect::<Result<_>>()?,
            incoming.iter().map(transfer_from_row).collect::<Result<_>>()?,
        ))
    }

    /// The payee accepts a pending transfer (to their id, or to their verified phone).
    pub async fn accept_transfer(
        &self,
        id: &str,
        user_id: &str,
        phone: &str,
        now: Timestamp,
    ) -> Result<Transfer, PayError> {
        let (id, user_id, phone) = (id.to_owned(), user_id.to_owned(), phone.to_owned());
        let accepted = id.clone();
        // Through `Store::write` (SQLite's group commit).
        self.write(move |tx| {
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE transfers SET status = 'ACCEPTED', settled_at_us = $1, payee_user_id = $2 WHERE id = $3 AND status = 'PENDING' \
                     AND expires_at_us > $1 AND (payee_user_id = $2 OR payee_phone = $4)",
                )
                .bind(now.unix_micros())
                .bind(&user_id)
                .bind(&id)
                .bind(&phone)
                .execute(tx.conn())
                .await?
                .rows_affected();
                if n == 0 {
                    return Err(PayError::ConfirmationNotPending);
                }
                let t = {
                    let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1");
                    transfer_from_row(&sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&id).fetch_one(tx.conn()).await?)?
                };
                tx.transfer_between(
                    EntryKind::Transfer,
                    &id,
                    (TRANSFER_ESCROW, AccountKind::TransferEscrow),
                    (user(&user_id), AccountKind::WalletBalance),
                    t.amount,
                    now,
                )
                .await?;
                tx.put_record(&t.payer_user_id, "transfer", &id, "", -t.amount.minor_units(), "balance", "ACCEPTED", now)
                    .await?;
                tx.put_record(
                    &user_id,
                    "transfer_in",
                    &id,
                    &format!("Transfer: {}", t.memo),
                    t.amount.minor_units(),
                    "balance",
                    "ACCEPTED",
                    now,
                )
                .await?;
                Ok(())
            })
        })
        .await?;
        self.transfer(&accepted).await?.ok_or(PayError::NotFound)
    }

    /// Makes a red packet: the shares are fixed now and the total moves to escrow.
    pub async fn create_red_packet(
        &self,
        asked: RedPacketToMake<'_>,
        idempotency: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<RedPacket, PayError> {
        let RedPacketToMake { sender, kind, shares, memo, expires_at } = asked;
        let id = ids::new_unguessable_id("rpk");
        let total = money(shares.iter().sum())?;
        let (sender, kind, shares, memo, idempotency) =
            (sender.to_owned(), kind.to_owned(), shares.to_vec(), memo.to_owned(), idempotency.cloned());
        // Through `Store::write` (SQLite's group commit).
        let made = self
            .write_new(id.clone(), idempotency, now, move |tx| {
                Box::pin(async move {
                sqlx::query(
                    "INSERT INTO red_packets (id, sender_user_id, kind, total_minor, currency, share_count, memo, status, expires_at_us, created_at_us) \
                     VALUES ($1, $2, $3, $4, 'CNY', $5, $6, 'OPEN', $7, $8)",
                )
                .bind(&id)
                .bind(&sender)
                .bind(&kind)
                .bind(total.minor_units())
                .bind(shares.len() as i64)
                .bind(&memo)
                .bind(expires_at.unix_micros())
                .bind(now.unix_micros())
                .execute(tx.conn())
                .await?;
                for (idx, amount) in shares.iter().enumerate() {
                    sqlx::query("INSERT INTO red_packet_shares (packet_id, idx, amount_minor) VALUES ($1, $2, $3)")
                        .bind(&id)
                        .bind(idx as i64)
                        .bind(amount)
                        .execute(tx.conn())
                        .await?;
                }
                tx.transfer_between(
                    EntryKind::RedPacket,
                    &id,
                    (user(&sender), AccountKind::WalletBalance),
                    (RED_PACKET_ESCROW, AccountKind::RedPacketEscrow),
                    total,
                    now,
                )
                .await?;
                let title = format!("Red packet: {memo}");
                tx.put_record(&sender, "red_packet", &id, &title, -total.minor_units(), "balance", "OPEN", now).await?;
                    Ok(())
                })
            })
            .await?;
        self.red_packet(&made).await?.ok_or(PayError::NotFound)
    }

    pub async fn red_packet(&self, id: &str) -> Result<Option<RedPacket>> {
        let row = sqlx::query(
            "SELECT id, sender_user_id, kind, total_minor, share_count, status, memo, expires_at_us FROM red_packets WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.reader())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let claimed = sqlx::query(
            "SELECT claimed_by, amount_minor, claimed_at_us FROM red_packet_shares WHERE packet_id = $1 AND claimed_by IS NOT NULL ORDER BY claimed_at_us, idx",
        )
        .bind(id)
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(|c| Ok((c.try_get(0)?, money(c.try_get(1)?)?, Timestamp::from_unix_micros(c.try_get(2)?))))
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(RedPacket {
            id: r.try_get(0)?,
            sender_user_id: r.try_get(1)?,
            kind: r.try_get(2)?,
            total: money(r.try_get(3)?)?,
            share_count: r.try_get(4)?,
            status: r.try_get(5)?,
            memo: r.try_get(6)?,
            expires_at: Timestamp::from_unix_micros(r.try_get(7)?),
            claimed,
        }))
    }

    /// Claims the next share of an open packet for `user_id`: once per user; `Ok(None)`
    /// when none is left. On PostgreSQL concurrent claimers skip each other's locked
    /// shares; when every unclaimed share is locked by someone else (who may yet roll
    /// back), the claim waits and tries again rather than reporting the packet empty.
    pub async fn claim_red_packet(&self, id: &str, user_id: &str, now: Timestamp) -> Result<Option<Money>, PayError> {
        for _ in 0..200 {
            match self.try_claim_red_packet(id, user_id, now).await? {
                Claim::Got(amount) => return Ok(Some(amount)),
                Claim::Empty => return Ok(None),
                Claim::Contended => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
        Err(PayError::Store(StoreError::Corrupt(format!("red packet {id}: claims stayed contended"))))
    }

    async fn try_claim_red_packet(&self, id: &str, user_id: &str, now: Timestamp) -> Result<Claim, PayError> {
        let lock = if self.engine() == crate::Engine::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let (id, user_id) = (id.to_owned(), user_id.to_owned());
        // Through `Store::write` (SQLite's group commit): a packet in a busy group is claimed by many at once.
        self.write(move |tx| {
            Box::pin(async move {
                // Lock the packet row first (as expiry does), so a claim and the expiry of the same
                // packet serialise: a share is either claimed or returned, never both.
                let open = sqlx::query(
                    "UPDATE red_packets SET status = status WHERE id = $1 AND status = 'OPEN' AND expires_at_us > $2",
                )
                .bind(&id)
                .bind(now.unix_micros())
                .execute(tx.conn())
                .await?
                .rows_affected();
                if open == 0 {
                    return Ok(Claim::Empty);
                }
                let already: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM red_packet_shares WHERE packet_id = $1 AND claimed_by = $2")
                        .bind(&id)
                        .bind(&user_id)
                        .fetch_one(tx.conn())
                        .await?;
                if already > 0 {
                    return Err(PayError::AlreadyClaimed);
                }
                let pick = format!(
                    "SELECT idx, amount_minor FROM red_packet_shares WHERE packet_id = $1 AND claimed_by IS NULL ORDER BY idx LIMIT 1 {lock}"
                );
                let Some(row) = sqlx::query(sqlx::AssertSqlSafe(pick)).bind(&id).fetch_optional(tx.conn()).await? else {
                    let unclaimed: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM red_packet_shares WHERE packet_id = $1 AND claimed_by IS NULL",
                    )
                    .bind(&id)
                    .fetch_one(tx.conn())
                    .await?;
                    return Ok(if unclaimed > 0 { Claim::Contended } else { Claim::Empty });
                };
                let (idx, minor): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                let took = sqlx::query(
                    "UPDATE red_packet_shares SET claimed_by = $1, claimed_at_us = $2 WHERE packet_id = $3 AND idx = $4 AND claimed_by IS NULL",
                )
                .bind(&user_id)
                .bind(now.unix_micros())
                .bind(&id)
                .bind(idx)
                .execute(tx.conn())
                .await;
                match took {
                    Ok(r) if r.rows_affected() == 1 => {}
                    // A unique violation means this user claimed in a concurrent transaction.
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(PayError::AlreadyClaimed),
                    Ok(_) => return Ok(Claim::Contended),
                    Err(e) => return Err(e.into()),
                }
                let amount = money(minor)?;
                tx.transfer_between(
                    EntryKind::RedPacket,
                    &id,
                    (RED_PACKET_ESCROW, AccountKind::RedPacketEscrow),
                    (user(&user_id), AccountKind::WalletBalance),
                    amount,
                    now,
                )
                .await?;
                let left: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM red_packet_shares WHERE packet_id = $1 AND claimed_by IS NULL")
                        .bind(&id)
                        .fetch_one(tx.conn())
                        .await?;
                if left == 0 {
                    sqlx::query("UPDATE red_packets SET status = 'FINISHED' WHERE id = $1").bind(&id).execute(tx.conn()).await?;
                }
                tx.put_record(&user_id, "red_packet_in", &id, "Red packet", minor, "balance", "CLAIMED", now).await?;
                Ok(Claim::Got(amount))
            })
        })
        .await
    }

    /// Returns expired pending transfers and unclaimed red-packet shares to their senders.
    pub async fn expire_wallet_money(&self, now: Timestamp) -> Result<u64> {
        let mut changed = 0;
        let due: Vec<String> =
            sqlx::query_scalar("SELECT id FROM transfers WHERE status = 'PENDING' AND expires_at_us <= $1 LIMIT 200")
                .bind(now.unix_micros())
                .fetch_all(self.reader())
                .await?;
        for id in due {
            let mut tx = self.begin().await?;
            let n = sqlx::query(
                "UPDATE transfers SET status = 'RETURNED', settled_at_us = $1 WHERE id = $2 AND status = 'PENDING'",
            )
            .bind(now.unix_micros())
            .bind(&id)
            .execute(tx.conn())
            .await?
            .rows_affected();
            if n == 0 {
                continue;
            }
            let row = sqlx::query("SELECT payer_user_id, amount_minor FROM transfers WHERE id = $1")
                .bind(&id)
                .fetch_one(tx.conn())
                .await?;
            let (payer, minor): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
            tx.transfer_between(
                EntryKind::Transfer,
                &id,
                (TRANSFER_ESCROW, AccountKind::TransferEscrow),
                (user(&payer), AccountKind::WalletBalance),
                money(minor)?,
                now,
            )
            .await
            .map_err(pay_to_store)?;
            tx.put_record(&payer, "transfer", &id, "", -minor, "balance", "RETURNED", now).await?;
            tx.commit().await?;
            changed += 1;
        }
        let packets: Vec<String> =
            sqlx::query_scalar("SELECT id FROM red_packets WHERE status = 'OPEN' AND expires_at_us <= $1 LIMIT 200")
                .bind(now.unix_micros())
                .fetch_all(self.reader())
                .await?;
        for id in packets {
            let mut tx = self.begin().await?;
            let n = sqlx::query("UPDATE red_packets SET status = 'EXPIRED' WHERE id = $1 AND status = 'OPEN'")
                .bind(&id)
                .execute(tx.conn())
                .await?
                .rows_affected();
            if n == 0 {
                continue;
            }
            let row = sqlx::query(
                "SELECT p.sender_user_id, CAST(COALESCE(SUM(s.amount_minor), 0) AS BIGINT) FROM red_packets p \
                 LEFT JOIN red_packet_shares s ON s.packet_id = p.id AND s.claimed_by IS NULL WHERE p.id = $1 GROUP BY p.sender_user_id",
            )
            .bind(&id)
            .fetch_one(tx.conn())
            .await?;
            let (sender, left): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
            if left > 0 {
                tx.transfer_between(
                    EntryKind::RedPacket,
                    &id,
                    (RED_PACKET_ESCROW, AccountKind::RedPacketEscrow),
                    (user(&sender), AccountKind::WalletBalance),
                    money(left)?,
                    now,
                )
                .await
                .map_err(pay_to_store)?;
                tx.put_record(
                    &sender,
                    "red_packet_refund",
                    &id,
                    "Red packet remainder returned",
                    left,
                    "balance",
                    "RETURNED",
                    now,
                )
                .await?;
            }
            tx.commit().await?;
            changed += 1;
        }
        changed += self.settle_due_payouts(now).await?;
        Ok(changed)
    }

    /// Money leaves for a card: a withdrawal (from the balance, with its fee) or a credit
    /// card repayment (from the balance or a debit card). The wallet is debited now; the
    /// payout is PROCESSING until the bank settles it at `settle_at`.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_payout(
        &self,
        kind: &str,
        user_id: &str,
        card_id: &str,
        funding: &str,
        amount: Money,
        fee: Money,
        settle_at: Timestamp,
        idempotency: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<Payout, PayError> {
        let id = ids::new_id(if kind == "withdrawal" { "wdr" } else { "rpy" });
        let mut tx = self.begin().await?;
        if let Some(key) = idempotency
            && let Some(previous) = tx.claim_idempotency_key(key, &id, now).await?
        {
            tx.rollback().await?;
            return self.payout(user_id, &previous).await?.ok_or(PayError::NotFound);
        }
        sqlx::query(
            "INSERT INTO payouts (id, kind, user_id, card_id, funding, amount_minor, fee_minor, currency, status, settle_at_us, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'CNY', 'PROCESSING', $8, $9)",
        )
        .bind(&id)
        .bind(kind)
        .bind(user_id)
        .bind(card_id)
        .bind(funding)
        .bind(amount.minor_units())
        .bind(fee.minor_units())
        .bind(settle_at.unix_micros())
        .bind(now.unix_micros())
        .execute(tx.conn())
        .await?;
        if funding == "balance" {
            let entry_kind = if kind == "withdrawal" { EntryKind::Withdrawal } else { EntryKind::CardRepayment };
            let wallet = tx.open_account(user(user_id), AccountKind::WalletBalance, amount.currency(), now).await?.id;
            let bank = tx.open_account(BANK_OWNER, AccountKind::External, amount.currency(), now).await?.id;
            let mut postings = vec![
                paykit_core::ledger::Posting {
                    account_id: wallet.clone(),
                    amount: amount.checked_add(fee).map_err(|e| StoreError::Corrupt(e.to_string()))?.negated(),
                },
                paykit_core::ledger::Posting { account_id: bank, amount },
            ];
            if !fee.is_zero() {
                let fees = tx.open_account(FEES, AccountKind::FeeRevenue, amount.currency(), now).await?.id;
                postings.push(paykit_core::ledger::Posting { account_id: fees, amount: fee });
            }
            let entry = JournalEntry::new(entry_kind, &id, postings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            match tx.post_entry(&entry, now).await {
                Err(StoreError::InsufficientFunds { .. }) => return Err(PayError::InsufficientBalance),
                other => other?,
            };
        }
        let title = if kind == "withdrawal" { "Withdrawal" } else { "Credit card repayment" };
        let signed = -(amount.minor_units() + fee.minor_units());
        tx.put_record(user_id, kind, &id, title, signed, funding, "PROCESSING", now).await?;
        tx.commit().await?;
        self.payout(user_id, &id).await?.ok_or(PayError::NotFound)
    }

    pub async fn payout(&self, user_id: &str, id: &str) -> Result<Option<Payout>> {
        let row = sqlx::query(
            "SELECT id, kind, card_id, funding, amount_minor, fee_minor, status, created_at_us, settled_at_us FROM payouts WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| {
            Ok(Payout {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                card_id: r.try_get(2)?,
                funding: r.try_get(3)?,
                amount: money(r.try_get(4)?)?,
                fee: money(r.try_get(5)?)?,
                status: r.try_get(6)?,
                created_at: Timestamp::from_unix_micros(r.try_get(7)?),
                settled_at: r.try_get::<Option<i64>, _>(8)?.map(Timestamp::from_unix_micros),
            })
        })
        .transpose()
    }

    /// Withdrawn so far (minor units), against the lifetime free quota.
    pub async fn withdrawn_total(&self, user_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM payouts WHERE user_id = $1 AND kind = 'withdrawal' AND status <> 'FAILED'",
        )
        .bind(user_id)
        .fetch_one(self.reader())
        .await?)
    }

    async fn settle_due_payouts(&self, now: Timestamp) -> Result<u64> {
        let due: Vec<String> =
            sqlx::query_scalar("SELECT id FROM payouts WHERE status = 'PROCESSING' AND settle_at_us <= $1 LIMIT 200")
                .bind(now.unix_micros())
                .fetch_all(self.reader())
                .await?;
        let mut settled = 0;
        for id in due {
            let mut tx = self.begin().await?;
            let n = sqlx::query(
                "UPDATE payouts SET status = 'SUCCESS', settled_at_us = $1 WHERE id = $2 AND status = 'PROCESSING'",
            )
            .bind(now.unix_micros())
            .bind(&id)
            .execute(tx.conn())
            .await?
            .rows_affected();
            if n == 1 {
                let row =
                    sqlx::query("SELECT user_id, kind, funding, amount_minor, fee_minor FROM payouts WHERE id = $1")
                        .bind(&id)
                        .fetch_one(tx.conn())
                        .await?;
                let (user_id, kind, funding, amount, fee): (String, String, String, i64, i64) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
                tx.put_record(&user_id, &kind, &id, "", -(amount + fee), &funding, "SUCCESS", now).await?;
                tx.commit().await?;
                settled += 1;
            }
        }
        Ok(settled)
    }
}

enum Claim {
    Got(Money),
    Empty,
    /// Every unclaimed share is locked by a concurrent claim: try again.
    Contended,
}

fn pay_to_store(e: PayError) -> StoreError {
    match e {
        PayError::Store(s) => s,
        other => StoreError::Corrupt(other.to_string()),
    }
}
