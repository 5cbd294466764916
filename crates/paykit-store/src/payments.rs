//! The transactions that move money for payments. Each is one database transaction that
//! changes the business state, posts the journal entry and writes the consumer's record
//! together; the conditional status updates make each payment happen at most once.

use paykit_core::Money;
use paykit_core::ledger::{AccountKind, EntryKind, JournalEntry};
use paykit_core::order::OrderStatus;
use paykit_core::time::Timestamp;
use sqlx::Row;

use crate::ledger::Owner;
use crate::orders::{Created, ORDER_COLUMNS, Order, order_from_row};
use crate::rows_insert::RowsInsert;
use crate::{Result, Store, StoreError, Tx, ids};

/// Where the money for a payment comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Funding {
    Balance,
    /// A bound card, with what the bank answered.
    Card {
        card_id: String,
        bank: BankAnswer,
    },
}

impl Funding {
    pub fn label(&self) -> &str {
        match self {
            Funding::Balance => "balance",
            Funding::Card { card_id, .. } => card_id,
        }
    }
}

/// A bank's answer to a debit it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BankAnswer {
    Approved,
    /// The bank did not answer in time; the operation settles at `settle_at`.
    Processing {
        settle_at: Timestamp,
    },
}

/// An Idempotency-Key claimed in the same transaction as the money it moves.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub request_digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("no such order")]
    NotFound,
    #[error("the order has expired")]
    Expired,
    #[error("the order is closed")]
    Closed,
    #[error("the order is already paid")]
    AlreadyPaid,
    #[error("the order is {0}")]
    WrongStatus(OrderStatus),
    #[error("insufficient balance")]
    InsufficientBalance,
    #[error("this device already confirmed this order")]
    DeviceProofReused,
    #[error("the payment code was already used")]
    CodeUsed,
    #[error("the confirmation is no longer pending")]
    ConfirmationNotPending,
    #[error("the idempotency key was used with a different request")]
    IdempotencyKeyReused,
    #[error("you already claimed this red packet")]
    AlreadyClaimed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for PayError {
    fn from(e: sqlx::Error) -> Self {
        PayError::Store(StoreError::Database(e))
    }
}

/// A consumer paying a merchant's dynamic-QR order.
pub struct PayOrder<'a> {
    pub order_id: &'a str,
    pub user_id: &'a str,
    pub funding: Funding,
    /// The device whose confirmation authorised this payment (each confirms an order once).
    pub confirmed_by_device: Option<&'a str>,
    pub idempotency: Option<IdempotencyKey>,
    pub now: Timestamp,
}

/// A merchant-scanned payment, already checked against the device's secret.
pub struct Micropay<'a> {
    /// The order to create, in `USERPAYING` (needs confirmation) or `SUCCESS`.
    pub order: Order,
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub time_step: i64,
    pub confirmation_expires_at: Option<Timestamp>,
}

#[derive(Debug)]
pub enum MicropayOutcome {
    Paid(Order),
    AwaitingConfirmation(Order),
    /// The merchant already had this out_trade_no: the caller compares request digests.
    Existing(Order),
}

/// A consumer's record of a business object, as [`Tx::put_record`] writes it.
pub(crate) struct RecordToPut<'a> {
    pub user_id: &'a str,
    pub kind: &'a str,
    pub reference_id: &'a str,
    pub title: &'a str,
    pub signed_amount_minor: i64,
    pub funding: &'a str,
    pub status: &'a str,
    pub now: Timestamp,
}

/// The sandbox bank's account in the ledger: money entering and leaving the system.
pub const BANK_OWNER: Owner<'static> = Owner { owner_type: "bank", owner_id: "sandbox" };

impl Tx {
    async fn account(&mut self, owner: Owner<'_>, kind: AccountKind, amount: Money, now: Timestamp) -> Result<String> {
        Ok(self.open_account(owner, kind, amount.currency(), now).await?.id)
    }

    /// Posts `amount` from one party's account to another's.
    async fn move_money(
        &mut self,
        kind: EntryKind,
        reference: &str,
        from: (Owner<'_>, AccountKind),
        to: (Owner<'_>, AccountKind),
        amount: Money,
        now: Timestamp,
    ) -> Result<String> {
        let from = self.account(from.0, from.1, amount, now).await?;
        let to = self.account(to.0, to.1, amount, now).await?;
        let entry = JournalEntry::transfer(kind, reference, &from, &to, amount)
            .map_err(|e| StoreError::Corrupt(format!("unbuildable entry: {e}")))?;
        self.post_entry(&entry, now).await
    }

    /// Writes or updates the consumer's record of a business object.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_record(
        &mut self,
        user_id: &str,
        kind: &str,
        reference_id: &str,
        title: &str,
        signed_amount_minor: i64,
        funding: &str,
        status: &str,
        now: Timestamp,
    ) -> Result<()> {
        let record = RecordToPut { user_id, kind, reference_id, title, signed_amount_minor, funding, status, now };
        self.put_records(&[record]).await
    }

    /// [`Tx::put_record`] for many records in one statement (each (user, kind, reference)
    /// at most once).
    pub(crate) async fn put_records(&mut self, records: &[RecordToPut<'_>]) -> Result<()> {
        self.insert_rows(vec![record_rows(records)]).await
    }

    /// Claims an idempotency key for `resource_id`. `Ok(None)` when newly claimed;
    /// `Ok(Some(id))` when the same request was made before (answer with that resource).
    pub async fn claim_idempotency_key(
        &mut self,
        key: &IdempotencyKey,
        resource_id: &str,
        now: Timestamp,
    ) -> Result<Option<String>, PayError> {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (scope, idem_key, request_digest, resource_id, created_at_us) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, idem_key) DO NOTHING",
        )
        .bind(&key.scope)
        .bind(&key.key)
        .bind(&key.request_digest)
        .bind(resource_id)
        .bind(now.unix_micros())
        .execute(self.conn())
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        let row =
            sqlx::query("SELECT request_digest, resource_id FROM idempotency_keys WHERE scope = $1 AND idem_key = $2")
                .bind(&key.scope)
                .bind(&key.key)
                .fetch_one(self.conn())
                .await?;
        let (digest, resource): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if digest != key.request_digest {
            return Err(PayError::IdempotencyKeyReused);
        }
        Ok(Some(resource))
    }

    /// Queues `payment.succeeded` for the order's merchant.
    pub(crate) async fn payment_succeeded(&mut self, order: &Order, now: Timestamp) -> Result<()> {
        let url = self.merchant_notify_url(&order.merchant_id, order.notify_url.as_deref()).await?;
        let data = crate::refunds::order_event_data(order);
        self.enqueue_event("merchant", &order.merchant_id, "payment.succeeded", data, url.as_deref(), now).await?;
        Ok(())
    }

    async fn merchant_name(&mut self, merchant_id: &str) -> Result<String> {
        Ok(self.fixed_merchant(merchant_id).await?.name)
    }
}

fn status_error(order: &Order, now: Timestamp) -> PayError {
    match order.status {
        OrderStatus::Success | OrderStatus::UserPaying => PayError::AlreadyPaid,
        OrderStatus::NotPay | OrderStatus::Closed if order.expire_at <= now => PayError::Expired,
        OrderStatus::Closed => PayError::Closed,
        other => PayError::WrongStatus(other),
    }
}

impl Store {
    /// Makes the resource `id` with `work` through [`Store::write`], unless `idempotency`
    /// already names an earlier one. Returns the id to answer with: `id`, or the earlier.
    pub(crate) async fn write_new<F>(
        &self,
        id: String,
        idempotency: Option<IdempotencyKey>,
        now: Timestamp,
        work: F,
    ) -> Result<String, PayError>
    where
        F: for<'a> FnOnce(&'a mut Tx) -> crate::BoxFuture<'a, Result<(), PayError>> + Send + 'static,
    {
        self.write(move |tx| {
            Box::pin(async move {
                if let Some(key) = &idempotency
                    && let Some(previous) = tx.claim_idempotency_key(key, &id, now).await?
                {
                    return Ok(previous);
                }
                work(tx).await?;
                Ok(id)
            })
        })
        .await
    }

    /// What an idempotency key already points at, if it was used with the same request.
    pub async fn idempotent_resource(&self, key: &IdempotencyKey) -> Result<Option<String>, PayError> {
        let row =
            sqlx::query("SELECT request_digest, resource_id FROM idempotency_keys WHERE scope = $1 AND idem_key = $2")
                .bind(&key.scope)
                .bind(&key.key)
                .fetch_optional(self.reader())
                .await?;
        let Some(row) = row else { return Ok(None) };
        let (digest, resource): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if digest != key.request_digest {
            return Err(PayError::IdempotencyKeyReused);
        }
        Ok(Some(resource))
    }

    /// A consumer pays an order. Paying again an order this consumer already paid (a
    /// retry after a lost answer) returns it as it stands instead of charging twice.
    pub async fn pay_order(&self, p: PayOrder<'_>) -> Result<Order, PayError> {
        let p = OwnedPay {
            order_id: p.order_id.to_owned(),
            user_id: p.user_id.to_owned(),
            funding: p.funding,
            confirmed_by_device: p.confirmed_by_device.map(str::to_owned),
            idempotency: p.idempotency,
            now: p.now,
        };
        // On PostgreSQL the lane only settles payments together: the others would wait
        // behind its batch only to run on their own.
        let lane = self
            .group_commit
            .as_deref()
            .filter(|_| self.engine == crate::Engine::Sqlite || crate::pay_together::may_settle_together(&p));
        if let Some(group) = lane {
            return group.pay(p).await;
        }
        self.write(move |tx| Box::pin(async move { tx.pay_order(&p).await })).await
    }

    /// A merchant-scanned payment: creates the order, spends the code, and either pays
    /// from the balance or leaves the order waiting for the consumer's confirmation.
    pub async fn micropay(&self, m: Micropay<'_>) -> Result<MicropayOutcome, PayError> {
        let m = OwnedMicropay {
            order: m.order,
            user_id: m.user_id.to_owned(),
            device_id: m.device_id.to_owned(),
            time_step: m.time_step,
            confirmation_expires_at: m.confirmation_expires_at,
        };
        self.write(move |tx| Box::pin(async move { tx.micropay(&m).await })).await
    }

    /// The consumer answers a pending confirmation: `accept` pays from the balance,
    /// otherwise the order fails.
    pub async fn answer_confirmation(
        &self,
        confirmation_id: &str,
        user_id: &str,
        accept: bool,
        now: Timestamp,
    ) -> Result<Order, PayError> {
        let mut tx = self.begin().await?;
        let order_id: Option<String> =
            sqlx::query_scalar("SELECT order_id FROM confirmations WHERE id = $1 AND user_id = $2")
                .bind(confirmation_id)
                .bind(user_id)
                .fetch_optional(tx.conn())
                .await?;
        let order_id = order_id.ok_or(PayError::NotFound)?;
        // The order row first, then the confirmation: the order every path keeps, so a
        // merchant's reversal and a consumer's answer cannot deadlock.
        let to = if accept { OrderStatus::Success } else { OrderStatus::PayError };
        if !tx.transition_order(&order_id, OrderStatus::UserPaying, to, now).await? {
            return Err(PayError::ConfirmationNotPending);
        }
        let answered = sqlx::query(
            "UPDATE confirmations SET status = $1, answered_at_us = $2 WHERE id = $3 AND status = 'PENDING' AND expires_at_us > $2",
        )
        .bind(if accept { "CONFIRMED" } else { "DECLINED" })
        .bind(now.unix_micros())
        .bind(confirmation_id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if answered == 0 {
            return Err(PayError::ConfirmationNotPending);
        }
        let order = tx.order(&order_id).await?.ok_or(PayError::NotFound)?;
        if accept {
            sqlx::query("UPDATE orders SET paid_at_us = $1 WHERE id = $2")
                .bind(now.unix_micros())
                .bind(&order_id)
                .execute(tx.conn())
                .await?;
            let wallet = (Owner { owner_type: "user", owner_id: user_id }, AccountKind::WalletBalance);
            let merchant =
                (Owner { owner_type: "merchant", owner_id: &order.merchant_id }, AccountKind::MerchantSettlement);
            match tx.move_money(EntryKind::Payment, &order_id, wallet, merchant, order.amount, now).await {
                Err(StoreError::InsufficientFunds { .. }) => return Err(PayError::InsufficientBalance),
                other => other?,
            };
        }
        let title = tx.merchant_name(&order.merchant_id).await?;
        tx.put_record(user_id, "payment", &order_id, &title, -order.amount.minor_units(), "balance", to.as_str(), now)
            .await?;
        let order = tx.order(&order_id).await?.ok_or(PayError::NotFound)?;
        if accept {
            tx.payment_succeeded(&order, now).await?;
        }
        tx.commit().await?;
        Ok(order)
    }

    /// The confirmations waiting for a consumer: (id, order, expires_at).
    pub async fn pending_confirmations(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(String, Order, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT id, order_id, expires_at_us FROM confirmations WHERE user_id = $1 AND status = 'PENDING' AND expires_at_us > $2 \
             ORDER BY created_at_us",
        )
        .bind(user_id)
        .bind(now.unix_micros())
        .fetch_all(self.reader())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let order_id: String = r.try_get(1)?;
            if let Some(order) = self.order(&order_id).await? {
                out.push((r.try_get(0)?, order, Timestamp::from_unix_micros(r.try_get(2)?)));
            }
        }
        Ok(out)
    }

    /// The merchant reverses (撤销) a payment-code order: a waiting one is cancelled, a
    /// paid one is returned to the consumer's balance in full. Reversing twice is harmless.
    pub async fn reverse_order(&self, merchant_id: &str, order_id: &str, now: Timestamp) -> Result<Order, PayError> {
        let mut tx = self.begin().await?;
        let order = tx.order(order_id).await?.filter(|o| o.merchant_id == merchant_id).ok_or(PayError::NotFound)?;
        if order.kind != "micropay" {
            return Err(PayError::WrongStatus(order.status));
        }
        match order.status {
            OrderStatus::Revoked => {
                tx.rollback().await?;
                return Ok(order);
            }
            OrderStatus::UserPaying | OrderStatus::Success => {}
            other => return Err(PayError::WrongStatus(other)),
        }
        let refunded: i64 = sqlx::query_scalar("SELECT refunded_minor FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(tx.conn())
            .await?;
        if refunded > 0 {
            // Part of it went back already: reversing would return it twice. Refund the rest.
            return Err(PayError::WrongStatus(order.status));
        }
        if !tx.transition_order(order_id, order.status, OrderStatus::Revoked, now).await? {
            let current = tx.order(order_id).await?.ok_or(PayError::NotFound)?;
            return Err(PayError::WrongStatus(current.status));
        }
        sqlx::query("UPDATE confirmations SET status = 'EXPIRED', answered_at_us = $1 WHERE order_id = $2 AND status = 'PENDING'")
            .bind(now.unix_micros())
            .bind(order_id)
            .execute(tx.conn())
            .await?;
        let user_id =
            order.payer_user_id.clone().ok_or_else(|| StoreError::Corrupt("micropay order without payer".into()))?;
        if order.status == OrderStatus::Success {
            let merchant = (Owner { owner_type: "merchant", owner_id: merchant_id }, AccountKind::MerchantSettlement);
            let wallet = (Owner { owner_type: "user", owner_id: &user_id }, AccountKind::WalletBalance);
            tx.move_money(EntryKind::Reversal, order_id, merchant, wallet, order.amount, now).await?;
        }
        let title = tx.merchant_name(merchant_id).await?;
        tx.put_record(&user_id, "payment", order_id, &title, -order.amount.minor_units(), "balance", "REVOKED", now)
            .await?;
        let order = tx.order(order_id).await?.ok_or(PayError::NotFound)?;
        tx.commit().await?;
        Ok(order)
    }

    /// Counts a failed payment code for a merchant (and the device, when known).
    pub async fn record_code_failure(&self, merchant_id: &str, device_id: Option<&str>, now: Timestamp) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO payment_code_failures (id, merchant_id, device_id, at_us) VALUES ($1, $2, $3, $4)")
            .bind(ids::new_id("pcf"))
            .bind(merchant_id)
            .bind(device_id)
            .bind(now.unix_micros())
            .execute(tx.conn())
            .await?;
        tx.commit().await
    }

    /// Failed payment codes since `since`, for a merchant and for a device.
    pub async fn code_failures_since(
        &self,
        merchant_id: Option<&str>,
        device_id: Option<&str>,
        since: Timestamp,
    ) -> Result<i64> {
        let count = match (merchant_id, device_id) {
            (Some(m), _) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM payment_code_failures WHERE merchant_id = $1 AND at_us >= $2")
                    .bind(m)
                    .bind(since.unix_micros())
                    .fetch_one(self.reader())
                    .await?
            }
            (None, Some(d)) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM payment_code_failures WHERE device_id = $1 AND at_us >= $2")
                    .bind(d)
                    .bind(since.unix_micros())
                    .fetch_one(self.reader())
                    .await?
            }
            (None, None) => 0,
        };
        Ok(count)
    }
}

/// [`Micropay`] owned, to travel into a (possibly shared) write transaction.
struct OwnedMicropay {
    order: Order,
    user_id: String,
    device_id: String,
    time_step: i64,
    confirmation_expires_at: Option<Timestamp>,
}

impl Tx {
    /// [`Store::micropay`] inside a transaction (the caller commits).
    async fn micropay(&mut self, m: &OwnedMicropay) -> Result<MicropayOutcome, PayError> {
        let now = m.order.created_at;
        let order = match self.insert_order(&m.order).await? {
            Created::New(order) => order,
            Created::Existing(existing) => {
                return Ok(MicropayOutcome::Existing(existing));
            }
        };
        let fresh = sqlx::query(
            "INSERT INTO used_payment_codes (device_id, time_step, order_id, used_at_us) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&m.device_id)
        .bind(m.time_step)
        .bind(&order.id)
        .bind(now.unix_micros())
        .execute(self.conn())
        .await?
        .rows_affected();
        if fresh == 0 {
            return Err(PayError::CodeUsed);
        }
        let title = self.merchant_name(&order.merchant_id).await?;
        if let Some(expires_at) = m.confirmation_expires_at {
            sqlx::query(
                "INSERT INTO confirmations (id, user_id, order_id, kind, status, expires_at_us, created_at_us) \
                 VALUES ($1, $2, $3, 'micropay', 'PENDING', $4, $5)",
            )
            .bind(ids::new_id("cfm"))
            .bind(&m.user_id)
            .bind(&order.id)
            .bind(expires_at.unix_micros())
            .bind(now.unix_micros())
            .execute(self.conn())
            .await?;
            self.put_record(
                &m.user_id,
                "payment",
                &order.id,
                &title,
                -order.amount.minor_units(),
                "balance",
                "USERPAYING",
                now,
            )
            .await?;
            return Ok(MicropayOutcome::AwaitingConfirmation(order));
        }
        let wallet = (Owner { owner_type: "user", owner_id: &m.user_id }, AccountKind::WalletBalance);
        let merchant =
            (Owner { owner_type: "merchant", owner_id: &order.merchant_id }, AccountKind::MerchantSettlement);
        match self.move_money(EntryKind::Payment, &order.id, wallet, merchant, order.amount, now).await {
            Err(StoreError::InsufficientFunds { .. }) => return Err(PayError::InsufficientBalance),
            other => other?,
        };
        self.put_record(
            &m.user_id,
            "payment",
            &order.id,
            &title,
            -order.amount.minor_units(),
            "balance",
            "SUCCESS",
            now,
        )
        .await?;
        self.payment_succeeded(&order, now).await?;
        Ok(MicropayOutcome::Paid(order))
    }
}

/// [`PayOrder`] owned, to travel into a (possibly shared) write transaction.
pub(crate) struct OwnedPay {
    pub(crate) order_id: String,
    pub(crate) user_id: String,
    pub(crate) funding: Funding,
    pub(crate) confirmed_by_device: Option<String>,
    pub(crate) idempotency: Option<IdempotencyKey>,
    pub(crate) now: Timestamp,
}

impl Tx {
    /// [`Store::pay_order`] inside a transaction (the caller commits).
    pub(crate) async fn pay_order(&mut self, p: &OwnedPay) -> Result<Order, PayError> {
        if let Some(key) = &p.idempotency
            && let Some(previous) = self.claim_idempotency_key(key, &p.order_id, p.now).await?
        {
            return self.order(&previous).await?.ok_or(PayError::NotFound);
        }
        let pending = matches!(p.funding, Funding::Card { bank: BankAnswer::Processing { .. }, .. });
        let status = if pending { OrderStatus::UserPaying } else { OrderStatus::Success };
        // The conditional update is the check: it moves the order only if it is still
        // payable, and hands back the paid order, so the common case reads nothing first.
        let sql = format!(
            "UPDATE orders SET status = $1, paid_at_us = $2, payer_user_id = $3, funding = $4, updated_at_us = $5 \
             WHERE id = $6 AND status = 'NOTPAY' AND expire_at_us > $5 RETURNING {ORDER_COLUMNS}"
        );
        let paid = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status.as_str())
            .bind((!pending).then_some(p.now.unix_micros()))
            .bind(&p.user_id)
            .bind(p.funding.label())
            .bind(p.now.unix_micros())
            .bind(&p.order_id)
            .fetch_optional(self.conn())
            .await?;
        let Some(paid) = paid else {
            // Not payable: say why, or hand back this consumer's own earlier payment.
            let order = self.order(&p.order_id).await?.ok_or(PayError::NotFound)?;
            let mine = order.payer_user_id.as_deref() == Some(&p.user_id);
            if mine && matches!(order.status, OrderStatus::Success | OrderStatus::UserPaying) {
                return Ok(order);
            }
            return Err(status_error(&order, p.now));
        };
        let order = order_from_row(&paid)?;
        if let Some(device_id) = &p.confirmed_by_device {
            let fresh = sqlx::query(
                "INSERT INTO device_proofs_used (order_id, device_id, used_at_us) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(&order.id)
            .bind(device_id)
            .bind(p.now.unix_micros())
            .execute(self.conn())
            .await?
            .rows_affected();
            if fresh == 0 {
                return Err(PayError::DeviceProofReused);
            }
        }
        let merchant =
            (Owner { owner_type: "merchant", owner_id: &order.merchant_id }, AccountKind::MerchantSettlement);
        match &p.funding {
            Funding::Balance => {
                let wallet = (Owner { owner_type: "user", owner_id: &p.user_id }, AccountKind::WalletBalance);
                match self.move_money(EntryKind::Payment, &order.id, wallet, merchant, order.amount, p.now).await {
                    Err(StoreError::InsufficientFunds { .. }) => return Err(PayError::InsufficientBalance),
                    other => other?,
                };
            }
            Funding::Card { card_id, bank } => {
                let (op_status, settle_at) = match bank {
                    BankAnswer::Approved => ("SUCCESS", None),
                    BankAnswer::Processing { settle_at } => ("PROCESSING", Some(settle_at.unix_micros())),
                };
                self.insert_bank_operation(
                    &ids::new_id("bop"),
                    "payment",
                    &p.user_id,
                    card_id,
                    order.amount,
                    &order.id,
                    op_status,
                    settle_at,
                    p.now,
                )
                .await?;
                if !pending {
                    self.move_money(
                        EntryKind::Payment,
                        &order.id,
                        (BANK_OWNER, AccountKind::External),
                        merchant,
                        order.amount,
                        p.now,
                    )
                    .await?;
                }
            }
        }
        let title = self.merchant_name(&order.merchant_id).await?;
        self.put_record(
            &p.user_id,
            "payment",
            &order.id,
            &title,
            -order.amount.minor_units(),
            p.funding.label(),
            status.as_str(),
            p.now,
        )
        .await?;
        if order.status == OrderStatus::Success {
            self.payment_succeeded(&order, p.now).await?;
        }
        Ok(order)
    }
}

/// The rows of `records`; a record already there (the same user, kind and reference) takes
/// the new status.
pub(crate) fn record_rows<'a>(records: &[RecordToPut<'a>]) -> RowsInsert<'a> {
    let mut rows = RowsInsert::new(
        "INSERT INTO records (id, user_id, kind, reference_id, title, amount_minor, currency, funding, status, created_at_us, updated_at_us)",
        " ON CONFLICT (user_id, kind, reference_id) DO UPDATE SET status = excluded.status, updated_at_us = excluded.updated_at_us",
        11,
    );
    for r in records {
        rows.row([
            ids::new_id("rec").into(),
            r.user_id.into(),
            r.kind.into(),
            r.reference_id.into(),
            r.title.into(),
            r.signed_amount_minor.into(),
            "CNY".into(),
            r.funding.into(),
            r.status.into(),
            r.now.unix_micros().into(),
            r.now.unix_micros().into(),
        ]);
    }
    rows
}
