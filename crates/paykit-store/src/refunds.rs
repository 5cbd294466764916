//! Refunds, consumers' refund requests, expiry of unpaid orders, and statements.
//!
//! Invariant 4 (refunds never exceed what was paid) is one conditional update on the
//! order's `refunded_minor`, which concurrent refunds of one order queue on.

use paykit_core::Money;
use paykit_core::ledger::{AccountKind, EntryKind, JournalEntry};
use paykit_core::order::OrderStatus;
use paykit_core::time::Timestamp;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::ledger::Owner;
use crate::orders::Order;
use crate::payments::{BANK_OWNER, PayError};
use crate::{Result, Store, StoreError, Tx, ids};

pub const MAX_REFUNDS_PER_ORDER: i64 = 50;
pub const REFUND_WINDOW_SECS: i64 = 365 * 86_400;
/// Refunds in flight to cards are held here until the bank settles them.
pub const REFUND_CLEARING: Owner<'static> = Owner { owner_type: "system", owner_id: "refund_clearing" };

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub merchant_id: String,
    pub order_id: String,
    pub out_trade_no: String,
    pub out_refund_no: String,
    pub amount: Money,
    pub reason: String,
    pub status: String,
    pub funding: String,
    pub request_digest: String,
    pub created_at: Timestamp,
    pub succeeded_at: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("no such order")]
    OrderNotFound,
    #[error("only a paid (SUCCESS) order can be refunded; this one is {0}")]
    NotRefundable(OrderStatus),
    #[error("the refunds would exceed what was paid ({paid}); {refunded} is already refunded")]
    ExceedsPaid { paid: Money, refunded: Money },
    #[error("an order can have at most {MAX_REFUNDS_PER_ORDER} refunds")]
    TooMany,
    #[error("refunds are accepted within 365 days of payment")]
    WindowClosed,
    #[error("this out_refund_no was used for a different refund")]
    OutRefundNoReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RefundError {
    fn from(e: sqlx::Error) -> Self {
        RefundError::Store(StoreError::Database(e))
    }
}

const REFUND_COLUMNS: &str = "r.id, r.merchant_id, r.order_id, o.out_trade_no, r.out_refund_no, r.amount_minor, r.currency, r.reason, \
     r.status, r.funding, r.request_digest, r.created_at_us, r.succeeded_at_us";

fn refund_from_row(r: &AnyRow) -> Result<Refund> {
    let currency = r.try_get::<String, _>(6)?.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?;
    Ok(Refund {
        id: r.try_get(0)?,
        merchant_id: r.try_get(1)?,
        order_id: r.try_get(2)?,
        out_trade_no: r.try_get(3)?,
        out_refund_no: r.try_get(4)?,
        amount: Money::from_minor(r.try_get(5)?, currency).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        reason: r.try_get(7)?,
        status: r.try_get(8)?,
        funding: r.try_get(9)?,
        request_digest: r.try_get(10)?,
        created_at: Timestamp::from_unix_micros(r.try_get(11)?),
        succeeded_at: r.try_get::<Option<i64>, _>(12)?.map(Timestamp::from_unix_micros),
    })
}

pub fn refund_event_data(r: &Refund) -> serde_json::Value {
    json!({
        "refund_id": r.id, "out_refund_no": r.out_refund_no, "order_id": r.order_id, "out_trade_no": r.out_trade_no,
        "amount": r.amount.to_string(), "currency": r.amount.currency().code(), "status": r.status,
        "succeeded_at": r.succeeded_at.map(Timestamp::to_rfc3339),
    })
}

pub fn order_event_data(o: &Order) -> serde_json::Value {
    json!({
        "order_id": o.id, "out_trade_no": o.out_trade_no, "amount": o.amount.to_string(), "currency": o.amount.currency().code(),
        "status": o.status.as_str(), "paid_at": o.paid_at.map(Timestamp::to_rfc3339),
        "funding": o.funding.as_deref().map(|f| if f == "balance" { "balance" } else { "card" }),
    })
}

/// What a refund asks for.
pub struct NewRefund<'a> {
    pub merchant_id: &'a str,
    pub order_id: &'a str,
    pub out_refund_no: &'a str,
    pub amount: Money,
    pub reason: &'a str,
    pub request_digest: &'a str,
    /// When a card refund will settle at the bank.
    pub card_settle_at: Timestamp,
    pub now: Timestamp,
}

impl Tx {
    async fn refund(&mut self, id: &str) -> Result<Option<Refund>> {
        let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds r JOIN orders o ON o.id = r.order_id WHERE r.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.conn()).await?;
        row.as_ref().map(refund_from_row).transpose()
    }

    async fn post_transfer(
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

    async fn account_of(
        &mut self,
        owner: Owner<'_>,
        kind: AccountKind,
        amount: Money,
        now: Timestamp,
    ) -> Result<String> {
        Ok(self.open_account(owner, kind, amount.currency(), now).await?.id)
    }

    /// Creates a refund inside the caller's transaction. See [`Store::create_refund`].
    pub async fn create_refund(&mut self, r: &NewRefund<'_>) -> Result<(Refund, bool), RefundError> {
        let id = ids::new_id("rfd");
        let inserted = sqlx::query(
            "INSERT INTO refunds (id, merchant_id, order_id, out_refund_no, amount_minor, currency, reason, status, funding, \
               request_digest, created_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, 'PROCESSING', '', $8, $9) \
             ON CONFLICT (merchant_id, out_refund_no) DO NOTHING",
        )
        .bind(&id)
        .bind(r.merchant_id)
        .bind(r.order_id)
        .bind(r.out_refund_no)
        .bind(r.amount.minor_units())
        .bind(r.amount.currency().code())
        .bind(r.reason)
        .bind(r.request_digest)
        .bind(r.now.unix_micros())
        .execute(self.conn())
        .await?
        .rows_affected();
        if inserted == 0 {
            let existing_id: String =
                sqlx::query_scalar("SELECT id FROM refunds WHERE merchant_id = $1 AND out_refund_no = $2")
                    .bind(r.merchant_id)
                    .bind(r.out_refund_no)
                    .fetch_one(self.conn())
                    .await?;
            let existing = self.refund(&existing_id).await?.ok_or(RefundError::OrderNotFound)?;
            if existing.request_digest != r.request_digest {
                return Err(RefundError::OutRefundNoReused);
            }
            return Ok((existing, false));
        }
        let order = self
            .order(r.order_id)
            .await?
            .filter(|o| o.merchant_id == r.merchant_id)
            .ok_or(RefundError::OrderNotFound)?;
        if order.status != OrderStatus::Success {
            return Err(RefundError::NotRefundable(order.status));
        }
        if order.paid_at.is_none_or(|paid| paid.plus_secs(REFUND_WINDOW_SECS) < r.now) {
            return Err(RefundError::WindowClosed);
        }
        let moved = sqlx::query(
            "UPDATE orders SET refunded_minor = refunded_minor + $1, refund_count = refund_count + 1, updated_at_us = $2 \
             WHERE id = $3 AND status = 'SUCCESS' AND refunded_minor + $1 <= amount_minor AND refund_count < $4",
        )
        .bind(r.amount.minor_units())
        .bind(r.now.unix_micros())
        .bind(&order.id)
        .bind(MAX_REFUNDS_PER_ORDER)
        .execute(self.conn())
        .await?
        .rows_affected();
        if moved == 0 {
            let row = sqlx::query("SELECT refunded_minor, refund_count FROM orders WHERE id = $1")
                .bind(&order.id)
                .fetch_one(self.conn())
                .await?;
            let (refunded, count): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            if count >= MAX_REFUNDS_PER_ORDER {
                return Err(RefundError::TooMany);
            }
            let refunded =
                Money::from_minor(refunded, order.amount.currency()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            return Err(RefundError::ExceedsPaid { paid: order.amount, refunded });
        }
        let funding = order.funding.clone().unwrap_or_else(|| "balance".to_owned());
        let payer = order
            .payer_user_id
            .clone()
            .ok_or_else(|| StoreError::Corrupt(format!("paid order {} without payer", order.id)))?;
        let merchant = self
            .account_of(
                Owner { owner_type: "merchant", owner_id: &order.merchant_id },
                AccountKind::MerchantSettlement,
                r.amount,
                r.now,
            )
            .await?;
        let title = format!("Refund: {}", order.description);
        if funding == "balance" {
            let wallet = self
                .account_of(Owner { owner_type: "user", owner_id: &payer }, AccountKind::WalletBalance, r.amount, r.now)
                .await?;
            self.post_transfer(EntryKind::Refund, &id, &merchant, &wallet, r.amount, r.now).await?;
            sqlx::query(
                "UPDATE refunds SET status = 'SUCCESS', funding = 'balance', succeeded_at_us = $1 WHERE id = $2",
            )
            .bind(r.now.unix_micros())
            .bind(&id)
            .execute(self.conn())
            .await?;
            self.put_record(&payer, "refund", &id, &title, r.amount.minor_units(), "balance", "SUCCESS", r.now).await?;
        } else {
            let clearing = self.account_of(REFUND_CLEARING, AccountKind::RefundClearing, r.amount, r.now).await?;
            self.post_transfer(EntryKind::Refund, &id, &merchant, &clearing, r.amount, r.now).await?;
            sqlx::query("UPDATE refunds SET funding = $1, settle_at_us = $2 WHERE id = $3")
                .bind(&funding)
                .bind(r.card_settle_at.unix_micros())
                .bind(&id)
                .execute(self.conn())
                .await?;
            self.put_record(&payer, "refund", &id, &title, r.amount.minor_units(), &funding, "PROCESSING", r.now)
                .await?;
        }
        let refund = self.refund(&id).await?.ok_or(RefundError::OrderNotFound)?;
        if refund.status == "SUCCESS" {
            let url = self.merchant_notify_url(&order.merchant_id, order.notify_url.as_deref()).await?;
            self.enqueue_event(
                "merchant",
                &order.merchant_id,
                "refund.succeeded",
                refund_event_data(&refund),
                url.as_deref(),
                r.now,
            )
            .await?;
        }
        Ok((refund, true))
    }
}

impl Store {
    /// Refunds part or all of a paid order. Idempotent on (merchant, out_refund_no): the
    /// same request returns the first refund (`false`: not new).
    pub async fn create_refund(&self, r: &NewRefund<'_>) -> Result<(Refund, bool), RefundError> {
        let owned = (
            r.merchant_id.to_owned(),
            r.order_id.to_owned(),
            r.out_refund_no.to_owned(),
            r.reason.to_owned(),
            r.request_digest.to_owned(),
        );
        let (amount, card_settle_at, now) = (r.amount, r.card_settle_at, r.now);
        self.write(move |tx| {
            Box::pin(async move {
                let (merchant_id, order_id, out_refund_no, reason, request_digest) = &owned;
                let r = NewRefund {
                    merchant_id,
                    order_id,
                    out_refund_no,
                    amount,
                    reason,
                    request_digest,
                    card_settle_at,
                    now,
                };
                tx.create_refund(&r).await
            })
        })
        .await
    }

    pub async fn merchant_refund(&self, merchant_id: &str, refund_id: &str) -> Result<Option<Refund>> {
        let sql = format!(
            "SELECT {REFUND_COLUMNS} FROM refunds r JOIN orders o ON o.id = r.order_id WHERE r.id = $1 AND r.merchant_id = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(refund_id)
            .bind(merchant_id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(refund_from_row).transpose()
    }

    /// One merchant's refunds of one order, oldest first.
    pub async fn order_refunds(&self, merchant_id: &str, order_id: &str) -> Result<Vec<Refund>> {
        let sql = format!(
            "SELECT {REFUND_COLUMNS} FROM refunds r JOIN orders o ON o.id = r.order_id \
             WHERE r.order_id = $1 AND r.merchant_id = $2 ORDER BY r.created_at_us, r.id"
        );
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(order_id).bind(merchant_id).fetch_all(self.reader()).await?;
        rows.iter().map(refund_from_row).collect()
    }

    /// Settles card refunds whose bank delay has passed: SUCCESS when the card is still
    /// bound, ABNORMAL (money back to the merchant) when it is not. Each settles once.
    pub async fn settle_due_refunds(&self, now: Timestamp) -> Result<u64> {
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM refunds WHERE status = 'PROCESSING' AND settle_at_us <= $1 ORDER BY settle_at_us LIMIT 100",
        )
        .bind(now.unix_micros())
        .fetch_all(self.reader())
        .await?;
        let mut settled = 0;
        for id in due {
            let mut tx = self.begin().await?;
            let Some(refund) = tx.refund(&id).await?.filter(|r| r.status == "PROCESSING") else { continue };
            let card_active: Option<String> =
                sqlx::query_scalar("SELECT id FROM cards WHERE id = $1 AND status = 'ACTIVE'")
                    .bind(&refund.funding)
                    .fetch_optional(tx.conn())
                    .await?;
            let status = if card_active.is_some() { "SUCCESS" } else { "ABNORMAL" };
            let claimed = sqlx::query(
                "UPDATE refunds SET status = $1, succeeded_at_us = $2 WHERE id = $3 AND status = 'PROCESSING'",
            )
            .bind(status)
            .bind((status == "SUCCESS").then_some(now.unix_micros()))
            .bind(&id)
            .execute(tx.conn())
            .await?
            .rows_affected();
            if claimed == 0 {
                continue;
            }
            let clearing = tx.account_of(REFUND_CLEARING, AccountKind::RefundClearing, refund.amount, now).await?;
            let order = tx
                .order(&refund.order_id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("refund {id} without order")))?;
            let payer = order.payer_user_id.clone().unwrap_or_default();
            if status == "SUCCESS" {
                let bank = tx.account_of(BANK_OWNER, AccountKind::External, refund.amount, now).await?;
                tx.post_transfer(EntryKind::RefundSettlement, &id, &clearing, &bank, refund.amount, now).await?;
            } else {
                let merchant = tx
                    .account_of(
                        Owner { owner_type: "merchant", owner_id: &refund.merchant_id },
                        AccountKind::MerchantSettlement,
                        refund.amount,
                        now,
                    )
                    .await?;
                tx.post_transfer(EntryKind::RefundSettlement, &id, &clearing, &merchant, refund.amount, now).await?;
                sqlx::query("UPDATE orders SET refunded_minor = refunded_minor - $1 WHERE id = $2")
                    .bind(refund.amount.minor_units())
                    .bind(&order.id)
                    .execute(tx.conn())
                    .await?;
            }
            tx.put_record(&payer, "refund", &id, "", refund.amount.minor_units(), &refund.funding, status, now).await?;
            let refund = tx.refund(&id).await?.ok_or_else(|| StoreError::Corrupt(format!("refund {id} vanished")))?;
            let url = tx.merchant_notify_url(&order.merchant_id, order.notify_url.as_deref()).await?;
            let event = if status == "SUCCESS" { "refund.succeeded" } else { "refund.failed" };
            tx.enqueue_event("merchant", &order.merchant_id, event, refund_event_data(&refund), url.as_deref(), now)
                .await?;
            tx.commit().await?;
            settled += 1;
        }
        Ok(settled)
    }

    /// Closes unpaid orders whose time is up (`payment.closed`), and fails payment-code
    /// orders whose consumer never confirmed. Returns how many orders changed.
    pub async fn expire_due_orders(&self, now: Timestamp) -> Result<u64> {
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE status = 'NOTPAY' AND expire_at_us <= $1 ORDER BY expire_at_us LIMIT 200",
        )
        .bind(now.unix_micros())
        .fetch_all(self.reader())
        .await?;
        let mut changed = 0;
        for id in due {
            let mut tx = self.begin().await?;
            if !tx.transition_order(&id, OrderStatus::NotPay, OrderStatus::Closed, now).await? {
                continue;
            }
            let order = tx.order(&id).await?.ok_or_else(|| StoreError::Corrupt(format!("order {id} vanished")))?;
            let url = tx.merchant_notify_url(&order.merchant_id, order.notify_url.as_deref()).await?;
            tx.enqueue_event(
                "merchant",
                &order.merchant_id,
                "payment.closed",
                order_event_data(&order),
                url.as_deref(),
                now,
            )
            .await?;
            tx.commit().await?;
            changed += 1;
        }
        let unconfirmed: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM confirmations WHERE status = 'PENDING' AND expires_at_us <= $1 ORDER BY expires_at_us LIMIT 200",
        )
        .bind(now.unix_micros())
        .fetch_all(self.reader())
        .await?;
        for id in unconfirmed {
            let mut tx = self.begin().await?;
            let row = sqlx::query("SELECT order_id, user_id, kind FROM confirmations WHERE id = $1")
                .bind(&id)
                .fetch_one(tx.conn())
                .await?;
            let (order_id, user_id, kind): (String, String, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            // The order row first, as every path that touches both locks them.
            let failed = kind == "micropay"
                && tx.transition_order(&order_id, OrderStatus::UserPaying, OrderStatus::PayError, now).await?;
            let expired = sqlx::query(
                "UPDATE confirmations SET status = 'EXPIRED', answered_at_us = $1 WHERE id = $2 AND status = 'PENDING'",
            )
            .bind(now.unix_micros())
            .bind(&id)
            .execute(tx.conn())
            .await?
            .rows_affected();
            if expired == 0 {
                continue;
            }
            if failed {
                let order = tx
                    .order(&order_id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("order {order_id} vanished")))?;
                tx.put_record(
                    &user_id,
                    "payment",
                    &order_id,
                    "",
                    -order.amount.minor_units(),
                    "balance",
                    "PAYERROR",
                    now,
                )
                .await?;
                changed += 1;
            }
            tx.commit().await?;
        }
        Ok(changed)
    }
}

/// A consumer's refund request and its history.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub id: String,
    pub order_id: String,
    pub merchant_id: String,
    pub user_id: String,
    pub amount: Money,
    pub reason: String,
    pub status: String,
    pub refund_id: Option<String>,
    pub created_at: Timestamp,
    pub steps: Vec<(String, String, Option<String>, Timestamp)>,
}

/// Who may move a request from which status to which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestAction {
    MerchantApprove,
    MerchantRefuse,
    ConsumerEscalate,
    OperatorForceRefund,
    OperatorUphold,
}

impl RequestAction {
    fn transition(self) -> (&'static str, &'static str, &'static str) {
        match self {
            RequestAction::MerchantApprove => ("PENDING", "APPROVED", "approved"),
            RequestAction::MerchantRefuse => ("PENDING", "REFUSED", "refused"),
            RequestAction::ConsumerEscalate => ("REFUSED", "ESCALATED", "escalated"),
            RequestAction::OperatorForceRefund => ("ESCALATED", "FORCED", "forced_refund"),
            RequestAction::OperatorUphold => ("ESCALATED", "UPHELD", "upheld_refusal"),
        }
    }

    fn refunds(self) -> bool {
        matches!(self, RequestAction::MerchantApprove | RequestAction::OperatorForceRefund)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no such refund request or order")]
    NotFound,
    #[error("the request is {0}, so that cannot be done now")]
    WrongStatus(String),
    #[error("an open refund request already exists for this order")]
    AlreadyOpen,
    #[error(transparent)]
    Refund(#[from] RefundError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RequestError {
    fn from(e: sqlx::Error) -> Self {
        RequestError::Store(StoreError::Database(e))
    }
}

impl From<PayError> for RequestError {
    fn from(e: PayError) -> Self {
        match e {
            PayError::Store(s) => RequestError::Store(s),
            _ => RequestError::NotFound,
        }
    }
}

impl Tx {
    async fn add_step(
        &mut self,
        request_id: &str,
        actor: &str,
        action: &str,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query("INSERT INTO refund_request_steps (id, request_id, actor, action, note, at_us) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(ids::new_id("stp"))
            .bind(request_id)
            .bind(actor)
            .bind(action)
            .bind(note)
            .bind(now.unix_micros())
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

impl Store {
    /// A consumer asks the merchant to refund (part of) a paid order.
    pub async fn create_refund_request(
        &self,
        user_id: &str,
        order_id: &str,
        amount: Option<Money>,
        reason: &str,
        now: Timestamp,
    ) -> Result<RefundRequest, RequestError> {
        let mut tx = self.begin().await?;
        let order = tx
            .order(order_id)
            .await?
            .filter(|o| o.payer_user_id.as_deref() == Some(user_id))
            .ok_or(RequestError::NotFound)?;
        if order.status != OrderStatus::Success {
            return Err(RefundError::NotRefundable(order.status).into());
        }
        let refunded: i64 = sqlx::query_scalar("SELECT refunded_minor FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(tx.conn())
            .await?;
        let left = order.amount.minor_units() - refunded;
        let amount = amount.unwrap_or(
            Money::from_minor(left.max(0), order.amount.currency()).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        );
        if amount.minor_units() > left || amount.is_zero() {
            let refunded =
                Money::from_minor(refunded, order.amount.currency()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            return Err(RefundError::ExceedsPaid { paid: order.amount, refunded }.into());
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM refund_requests WHERE order_id = $1 AND status IN ('PENDING', 'REFUSED', 'ESCALATED')",
        )
        .bind(order_id)
        .fetch_one(tx.conn())
        .await?;
        if open > 0 {
            return Err(RequestError::AlreadyOpen);
        }
        let id = ids::new_id("rrq");
        let inserted = sqlx::query(
            "INSERT INTO refund_requests (id, order_id, merchant_id, user_id, amount_minor, reason, status, created_at_us, updated_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', $7, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(order_id)
        .bind(&order.merchant_id)
        .bind(user_id)
        .bind(amount.minor_units())
        .bind(reason)
        .bind(now.unix_micros())
        .execute(tx.conn())
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(RequestError::AlreadyOpen);
        }
        tx.add_step(&id, &format!("consumer:{user_id}"), "requested", Some(reason), now).await?;
        let url = tx.merchant_notify_url(&order.merchant_id, order.notify_url.as_deref()).await?;
        let data = json!({
            "refund_request_id": id, "order_id": order.id, "out_trade_no": order.out_trade_no,
            "amount": amount.to_string(), "currency": amount.currency().code(), "reason": reason,
        });
        tx.enqueue_event("merchant", &order.merchant_id, "refund_request.created", data, url.as_deref(), now).await?;
        tx.commit().await?;
        self.refund_request(&id).await?.ok_or(RequestError::NotFound)
    }

    /// Moves a request on. For approvals and forced refunds the refund is made in the same
    /// transaction (out_refund_no `RR-<request id>`), so the two cannot disagree.
    pub async fn act_on_refund_request(
        &self,
        request_id: &str,
        action: RequestAction,
        actor: &str,
        note: Option<&str>,
        card_settle_at: Timestamp,
        now: Timestamp,
    ) -> Result<RefundRequest, RequestError> {
        let (from, to, verb) = action.transition();
        let mut tx = self.begin().await?;
        let moved =
            sqlx::query("UPDATE refund_requests SET status = $1, updated_at_us = $2 WHERE id = $3 AND status = $4")
                .bind(to)
                .bind(now.unix_micros())
                .bind(request_id)
                .bind(from)
                .execute(tx.conn())
                .await?
                .rows_affected();
        if moved == 0 {
            let status: Option<String> = sqlx::query_scalar("SELECT status FROM refund_requests WHERE id = $1")
                .bind(request_id)
                .fetch_optional(tx.conn())
                .await?;
            return Err(status.map_or(RequestError::NotFound, RequestError::WrongStatus));
        }
        if action.refunds() {
            let row =
                sqlx::query("SELECT merchant_id, order_id, amount_minor, reason FROM refund_requests WHERE id = $1")
                    .bind(request_id)
                    .fetch_one(tx.conn())
                    .await?;
            let (merchant_id, order_id, minor, reason): (String, String, i64, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
            let amount =
                Money::from_minor(minor, paykit_core::Currency::Cny).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let out_refund_no = format!("RR-{request_id}");
            let (refund, _) = tx
                .create_refund(&NewRefund {
                    merchant_id: &merchant_id,
                    order_id: &order_id,
                    out_refund_no: &out_refund_no,
                    amount,
                    reason: &reason,
                    request_digest: &out_refund_no,
                    card_settle_at,
                    now,
                })
                .await?;
            sqlx::query("UPDATE refund_requests SET refund_id = $1 WHERE id = $2")
                .bind(&refund.id)
                .bind(request_id)
                .execute(tx.conn())
                .await?;
        }
        tx.add_step(request_id, actor, verb, note, now).await?;
        tx.commit().await?;
        self.refund_request(request_id).await?.ok_or(RequestError::NotFound)
    }

    pub async fn refund_request(&self, id: &str) -> Result<Option<RefundRequest>> {
        let row = sqlx::query(
            "SELECT id, order_id, merchant_id, user_id, amount_minor, reason, status, refund_id, created_at_us FROM refund_requests WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.reader())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let steps = sqlx::query(
            "SELECT actor, action, note, at_us FROM refund_request_steps WHERE request_id = $1 ORDER BY at_us, id",
        )
        .bind(id)
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(|s| Ok((s.try_get(0)?, s.try_get(1)?, s.try_get(2)?, Timestamp::from_unix_micros(s.try_get(3)?))))
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(RefundRequest {
            id: r.try_get(0)?,
            order_id: r.try_get(1)?,
            merchant_id: r.try_get(2)?,
            user_id: r.try_get(3)?,
            amount: Money::from_minor(r.try_get(4)?, paykit_core::Currency::Cny)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            reason: r.try_get(5)?,
            status: r.try_get(6)?,
            refund_id: r.try_get(7)?,
            created_at: Timestamp::from_unix_micros(r.try_get(8)?),
            steps,
        }))
    }

    /// Requests visible to a party: `column` is merchant_id, user_id, or None for all.
    pub async fn refund_requests(
        &self,
        column: Option<(&str, &str)>,
        status: Option<&str>,
    ) -> Result<Vec<RefundRequest>> {
        let sql = match column.map(|c| c.0) {
            Some("merchant_id") => {
                "SELECT id FROM refund_requests WHERE merchant_id = $1 AND ($2 IS NULL OR status = $2) ORDER BY created_at_us DESC LIMIT 200"
            }
            Some("user_id") => {
                "SELECT id FROM refund_requests WHERE user_id = $1 AND ($2 IS NULL OR status = $2) ORDER BY created_at_us DESC LIMIT 200"
            }
            _ => {
                "SELECT id FROM refund_requests WHERE $1 = $1 AND ($2 IS NULL OR status = $2) ORDER BY created_at_us DESC LIMIT 200"
            }
        };
        let ids: Vec<String> =
            sqlx::query_scalar(sql).bind(column.map_or("", |c| c.1)).bind(status).fetch_all(self.reader()).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.refund_request(&id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The merchant's statement lines for [from, to): every posting on its settlement
    /// account, with the business object it came from. Built from the ledger, so it
    /// agrees with the ledger to the cent.
    pub async fn merchant_statement(
        &self,
        merchant_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<StatementLine>> {
        self.statement("merchant", "merchant_settlement", merchant_id, from, to).await
    }

    /// Statement lines for any party's settlement account (merchants and billers).
    pub async fn statement(
        &self,
        owner_type: &str,
        kind: &str,
        owner_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<StatementLine>> {
        let rows = sqlx::query(
            "SELECT p.created_at_us, e.kind, e.reference, p.amount_minor, p.currency, \
               COALESCE(o.id, r.order_id, b.bill_no), COALESCE(o.out_trade_no, ro.out_trade_no, b.customer_account), r.id, r.out_refund_no \
             FROM postings p JOIN journal_entries e ON e.id = p.entry_id JOIN accounts a ON a.id = p.account_id \
             LEFT JOIN orders o ON o.id = e.reference LEFT JOIN refunds r ON r.id = e.reference \
             LEFT JOIN orders ro ON ro.id = r.order_id \
             LEFT JOIN bill_payments bp ON bp.id = e.reference LEFT JOIN bills b ON b.id = bp.bill_id \
             WHERE a.owner_type = $4 AND a.owner_id = $1 AND a.kind = $5 \
               AND p.created_at_us >= $2 AND p.created_at_us < $3 ORDER BY p.created_at_us, p.id",
        )
        .bind(owner_id)
        .bind(from.unix_micros())
        .bind(to.unix_micros())
        .bind(owner_type)
        .bind(kind)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let currency = r.try_get::<String, _>(4)?.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?;
                Ok(StatementLine {
                    at: Timestamp::from_unix_micros(r.try_get(0)?),
                    entry_kind: r.try_get(1)?,
                    reference: r.try_get(2)?,
                    amount: Money::from_minor(r.try_get(3)?, currency)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    order_id: r.try_get(5)?,
                    out_trade_no: r.try_get(6)?,
                    refund_id: r.try_get(7)?,
                    out_refund_no: r.try_get(8)?,
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct StatementLine {
    pub at: Timestamp,
    pub entry_kind: String,
    pub reference: String,
    /// Signed: positive into the merchant's settlement, negative out of it.
    pub amount: Money,
    pub order_id: Option<String>,
    pub out_trade_no: Option<String>,
    pub refund_id: Option<String>,
    pub out_refund_no: Option<String>,
}
