//! Bill pay (生活缴费): billers, their bills, and consumers paying them.

use paykit_core::Money;
use paykit_core::ledger::AccountKind;
use paykit_core::time::Timestamp;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::ledger::Owner;
use crate::merchants::IssuedKey;
use crate::payments::{IdempotencyKey, PayError};
use crate::{Result, Store, StoreError, ids};

#[derive(Debug, Clone)]
pub struct Biller {
    pub id: String,
    pub name: String,
    pub category: String,
    pub notify_url: Option<String>,
    pub allow_partial: bool,
    pub status: String,
}

#[derive(Debug, Clone)]
pub struct Bill {
    pub id: String,
    pub biller_id: String,
    pub bill_no: String,
    pub customer_account: String,
    pub customer_name: Option<String>,
    pub amount: Money,
    pub paid: Money,
    pub due_date: String,
    pub period: String,
    pub description: Option<String>,
    pub status: String,
    pub request_digest: String,
    pub paid_at: Option<Timestamp>,
}

/// A validated bill to post.
#[derive(Debug, Clone)]
pub struct NewBill {
    pub bill_no: String,
    pub customer_account: String,
    pub customer_name: Option<String>,
    pub amount: Money,
    pub due_date: String,
    pub period: String,
    pub description: Option<String>,
    pub request_digest: String,
}

/// What posting one bill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    Created,
    /// The same bill was posted before: nothing new.
    Duplicate,
    /// The bill_no exists with different content.
    Conflict,
}

const BILL_COLUMNS: &str = "id, biller_id, bill_no, customer_account, customer_name, amount_minor, paid_minor, due_date, period, description, \
     status, request_digest, paid_at_us";

fn cny(minor: i64) -> Result<Money> {
    Money::from_minor(minor, paykit_core::Currency::Cny).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn bill_from_row(r: &AnyRow) -> Result<Bill> {
    Ok(Bill {
        id: r.try_get(0)?,
        biller_id: r.try_get(1)?,
        bill_no: r.try_get(2)?,
        customer_account: r.try_get(3)?,
        customer_name: r.try_get(4)?,
        amount: cny(r.try_get(5)?)?,
        paid: cny(r.try_get(6)?)?,
        due_date: r.try_get(7)?,
        period: r.try_get(8)?,
        description: r.try_get(9)?,
        status: r.try_get(10)?,
        request_digest: r.try_get(11)?,
        paid_at: r.try_get::<Option<i64>, _>(12)?.map(Timestamp::from_unix_micros),
    })
}

fn biller_from_row(r: &AnyRow) -> Result<Biller> {
    Ok(Biller {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        category: r.try_get(2)?,
        notify_url: r.try_get(3)?,
        allow_partial: r.try_get::<i64, _>(4)? != 0,
        status: r.try_get(5)?,
    })
}

impl Store {
    pub async fn create_biller(
        &self,
        name: &str,
        category: &str,
        notify_url: Option<&str>,
        allow_partial: bool,
        now: Timestamp,
    ) -> Result<(Biller, IssuedKey)> {
        let id = ids::new_id("blr");
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO billers (id, name, category, notify_url, allow_partial, status, created_at_us) VALUES ($1, $2, $3, $4, $5, 'ACTIVE', $6)",
        )
        .bind(&id)
        .bind(name)
        .bind(category)
        .bind(notify_url)
        .bind(i64::from(allow_partial))
        .bind(now.unix_micros())
        .execute(tx.conn())
        .await?;
        tx.open_account(
            Owner { owner_type: "biller", owner_id: &id },
            AccountKind::BillerSettlement,
            paykit_core::Currency::Cny,
            now,
        )
        .await?;
        let key = crate::merchants::issue_key(&mut tx, "biller", &id, now).await?;
        tx.commit().await?;
        Ok((self.biller(&id).await?.ok_or_else(|| StoreError::Corrupt("biller vanished".into()))?, key))
    }

    pub async fn biller(&self, id: &str) -> Result<Option<Biller>> {
        let row =
            sqlx::query("SELECT id, name, category, notify_url, allow_partial, status FROM billers WHERE id = $1")
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
        row.as_ref().map(biller_from_row).transpose()
    }

    pub async fn billers(&self, category: Option<&str>) -> Result<Vec<Biller>> {
        let rows = sqlx::query(
            "SELECT id, name, category, notify_url, allow_partial, status FROM billers WHERE ($1 IS NULL OR category = $1) \
             AND status = 'ACTIVE' ORDER BY name, id",
        )
        .bind(category)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(biller_from_row).collect()
    }

    /// Posts bills in one transaction; each is idempotent on its bill_no.
    pub async fn post_bills(&self, biller_id: &str, bills: &[NewBill], now: Timestamp) -> Result<Vec<Posted>> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(bills.len());
        for b in bills {
            let inserted = sqlx::query(
                "INSERT INTO bills (id, biller_id, bill_no, customer_account, customer_name, amount_minor, paid_minor, currency, due_date, \
                   period, description, status, request_digest, created_at_us, updated_at_us) \
                 VALUES ($1, $2, $3, $4, $5, $6, 0, 'CNY', $7, $8, $9, 'UNPAID', $10, $11, $11) ON CONFLICT (biller_id, bill_no) DO NOTHING",
            )
            .bind(ids::new_id("bil"))
            .bind(biller_id)
            .bind(&b.bill_no)
            .bind(&b.customer_account)
            .bind(b.customer_name.as_deref())
            .bind(b.amount.minor_units())
            .bind(&b.due_date)
            .bind(&b.period)
            .bind(b.description.as_deref())
            .bind(&b.request_digest)
            .bind(now.unix_micros())
            .execute(tx.conn())
            .await?
            .rows_affected();
            if inserted == 1 {
                out.push(Posted::Created);
                continue;
            }
            let digest: String =
                sqlx::query_scalar("SELECT request_digest FROM bills WHERE biller_id = $1 AND bill_no = $2")
                    .bind(biller_id)
                    .bind(&b.bill_no)
                    .fetch_one(tx.conn())
                    .await?;
            out.push(if digest == b.request_digest { Posted::Duplicate } else { Posted::Conflict });
        }
        tx.commit().await?;
        Ok(out)
    }

    pub async fn bill(&self, biller_id: &str, bill_no: &str) -> Result<Option<Bill>> {
        let sql = format!("SELECT {BILL_COLUMNS} FROM bills WHERE biller_id = $1 AND bill_no = $2");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(biller_id).bind(bill_no).fetch_optional(self.reader()).await?;
        row.as_ref().map(bill_from_row).transpose()
    }

    pub async fn bill_by_id(&self, id: &str) -> Result<Option<Bill>> {
        let sql = format!("SELECT {BILL_COLUMNS} FROM bills WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.reader()).await?;
        row.as_ref().map(bill_from_row).transpose()
    }

    /// A customer's open and recent bills at one biller.
    pub async fn customer_bills(&self, biller_id: &str, customer_account: &str) -> Result<Vec<Bill>> {
        let sql = format!(
            "SELECT {BILL_COLUMNS} FROM bills WHERE biller_id = $1 AND customer_account = $2 AND status <> 'CANCELLED' \
             ORDER BY due_date DESC, bill_no LIMIT 100"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(biller_id)
            .bind(customer_account)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(bill_from_row).collect()
    }

    /// Cancels or amends an unpaid bill. Returns the bill as it now stands, or None.
    pub async fn change_unpaid_bill(
        &self,
        biller_id: &str,
        bill_no: &str,
        cancel: bool,
        amount: Option<Money>,
        due_date: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Bill>> {
        let mut tx = self.begin().await?;
        let n = if cancel {
            sqlx::query("UPDATE bills SET status = 'CANCELLED', updated_at_us = $1 WHERE biller_id = $2 AND bill_no = $3 AND status = 'UNPAID'")
                .bind(now.unix_micros())
                .bind(biller_id)
                .bind(bill_no)
                .execute(tx.conn())
                .await?
                .rows_affected()
        } else {
            sqlx::query(
                "UPDATE bills SET amount_minor = COALESCE($1, amount_minor), due_date = COALESCE($2, due_date), updated_at_us = $3 \
                 WHERE biller_id = $4 AND bill_no = $5 AND status = 'UNPAID'",
            )
            .bind(amount.map(|a| a.minor_units()))
            .bind(due_date)
            .bind(now.unix_micros())
            .bind(biller_id)
            .bind(bill_no)
            .execute(tx.conn())
            .await?
            .rows_affected()
        };
        tx.commit().await?;
        if n == 0 {
            return Ok(None);
        }
        self.bill(biller_id, bill_no).await
    }

    /// A consumer pays (part of) a bill from the balance; `bill.paid` goes to the biller
    /// when the bill is paid in full.
    pub async fn pay_bill(
        &self,
        bill_id: &str,
        user_id: &str,
        amount: Money,
        allow_partial: bool,
        idempotency: Option<&IdempotencyKey>,
        now: Timestamp,
    ) -> Result<Bill, PayError> {
        let payment_id = ids::new_id("bpy");
        let mut tx = self.begin().await?;
        if let Some(key) = idempotency
            && let Some(previous) = tx.claim_idempotency_key(key, &payment_id, now).await?
        {
            tx.rollback().await?;
            let bill_id: Option<String> = sqlx::query_scalar("SELECT bill_id FROM bill_payments WHERE id = $1")
                .bind(&previous)
                .fetch_optional(self.reader())
                .await?;
            return self.bill_by_id(&bill_id.ok_or(PayError::NotFound)?).await?.ok_or(PayError::NotFound);
        }
        let moved = sqlx::query(
            "UPDATE bills SET paid_minor = paid_minor + $1, \
               status = CASE WHEN paid_minor + $1 = amount_minor THEN 'PAID' ELSE 'PARTIAL' END, \
               paid_at_us = CASE WHEN paid_minor + $1 = amount_minor THEN $2 ELSE paid_at_us END, updated_at_us = $2 \
             WHERE id = $3 AND status IN ('UNPAID', 'PARTIAL') AND paid_minor + $1 <= amount_minor \
               AND ($4 = 1 OR paid_minor + $1 = amount_minor)",
        )
        .bind(amount.minor_units())
        .bind(now.unix_micros())
        .bind(bill_id)
        .bind(i64::from(allow_partial))
        .execute(tx.conn())
        .await?
        .rows_affected();
        if moved == 0 {
            return Err(PayError::AlreadyPaid);
        }
        let bill = {
            let sql = format!("SELECT {BILL_COLUMNS} FROM bills WHERE id = $1");
            bill_from_row(&sqlx::query(sqlx::AssertSqlSafe(sql)).bind(bill_id).fetch_one(tx.conn()).await?)?
        };
        sqlx::query(
            "INSERT INTO bill_payments (id, bill_id, user_id, amount_minor, created_at_us) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&payment_id)
        .bind(bill_id)
        .bind(user_id)
        .bind(amount.minor_units())
        .bind(now.unix_micros())
        .execute(tx.conn())
        .await?;
        tx.transfer_between(
            paykit_core::ledger::EntryKind::BillPayment,
            &payment_id,
            (Owner { owner_type: "user", owner_id: user_id }, AccountKind::WalletBalance),
            (Owner { owner_type: "biller", owner_id: &bill.biller_id }, AccountKind::BillerSettlement),
            amount,
            now,
        )
        .await?;
        let biller = sqlx::query("SELECT name, notify_url FROM billers WHERE id = $1")
            .bind(&bill.biller_id)
            .fetch_one(tx.conn())
            .await?;
        let (name, notify_url): (String, Option<String>) = (biller.try_get(0)?, biller.try_get(1)?);
        tx.put_record(
            user_id,
            "bill",
            &payment_id,
            &format!("{name}: {}", bill.period),
            -amount.minor_units(),
            "balance",
            "SUCCESS",
            now,
        )
        .await?;
        if bill.status == "PAID" || bill.status == "PARTIAL" {
            let data = json!({
                "bill_no": bill.bill_no, "customer_account": bill.customer_account, "amount": bill.amount.to_string(),
                "paid": bill.paid.to_string(), "payment_amount": amount.to_string(), "status": bill.status,
                "payment_id": payment_id, "paid_at": now.to_rfc3339(),
            });
            tx.enqueue_event("biller", &bill.biller_id, "bill.paid", data, notify_url.as_deref(), now).await?;
        }
        tx.commit().await?;
        Ok(bill)
    }
}
