//! Orders: created by merchants (dynamic QR) or by a scanned payment code (micropay).

use std::collections::HashSet;
use std::sync::LazyLock;

use paykit_core::order::OrderStatus;
use paykit_core::time::Timestamp;
use paykit_core::{Currency, Money};

use crate::nonces::{NonceRow, NonceToSpend, WriteNonce};
use crate::point_read::{Columns, Param};
use crate::{Result, Store, StoreError, Tx, value_rows};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub merchant_id: String,
    pub out_trade_no: String,
    pub kind: String,
    pub amount: Money,
    pub description: String,
    pub notify_url: Option<String>,
    pub status: OrderStatus,
    pub request_digest: String,
    pub expire_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub paid_at: Option<Timestamp>,
    pub payer_user_id: Option<String>,
    /// `balance`, or the id of the card that paid.
    pub funding: Option<String>,
    pub device_id: Option<String>,
}

pub(crate) const ORDER_COLUMNS: &str = "id, merchant_id, out_trade_no, kind, amount_minor, currency, description, notify_url, \
     status, request_digest, expire_at_us, created_at_us, updated_at_us, paid_at_us, payer_user_id, funding, device_id";

/// How many columns [`ORDER_COLUMNS`] names: a query can add its own after them.
pub(crate) const ORDER_COLUMN_COUNT: usize = 17;

pub(crate) fn order_from_row<R: Columns + ?Sized>(r: &R) -> Result<Order> {
    let corrupt = |e: String| StoreError::Corrupt(e);
    let currency: Currency = r.text(5)?.parse().map_err(|e| corrupt(format!("{e}")))?;
    Ok(Order {
        id: r.text(0)?,
        merchant_id: r.text(1)?,
        out_trade_no: r.text(2)?,
        kind: r.text(3)?,
        amount: Money::from_minor(r.int(4)?, currency).map_err(|e| corrupt(e.to_string()))?,
        description: r.text(6)?,
        notify_url: r.opt_text(7)?,
        status: r.text(8)?.parse().map_err(corrupt)?,
        request_digest: r.text(9)?,
        expire_at: Timestamp::from_unix_micros(r.int(10)?),
        created_at: Timestamp::from_unix_micros(r.int(11)?),
        updated_at: Timestamp::from_unix_micros(r.int(12)?),
        paid_at: r.opt_int(13)?.map(Timestamp::from_unix_micros),
        payer_user_id: r.opt_text(14)?,
        funding: r.opt_text(15)?,
        device_id: r.opt_text(16)?,
    })
}

/// What the caller gets from an idempotent create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(Order),
    /// An order with this out_trade_no already existed; the caller compares digests.
    Existing(Order),
}

/// Filters for a merchant's order list; `before` pages backwards through `created_at`.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub before: Option<(Timestamp, String)>,
    pub limit: i64,
}

/// The order's insert: one statement, atomic without a transaction of its own. True when
/// inserted, false when the merchant already had the out_trade_no.
async fn insert_order_row(conn: &mut sqlx::AnyConnection, order: &Order) -> Result<bool> {
    Ok(!insert_order_rows(conn, &[order]).await?.is_empty())
}

/// Inserts orders in one statement, skipping any whose out_trade_no its merchant already
/// has; returns the ids inserted.
pub(crate) async fn insert_order_rows(conn: &mut sqlx::AnyConnection, orders: &[&Order]) -> Result<HashSet<String>> {
    let sql = format!(
        "INSERT INTO orders (id, merchant_id, out_trade_no, kind, amount_minor, currency, description, notify_url, status, \
           request_digest, expire_at_us, created_at_us, updated_at_us, paid_at_us, payer_user_id, funding, device_id) \
         VALUES {} ON CONFLICT (merchant_id, out_trade_no) DO NOTHING RETURNING id",
        value_rows(1, ORDER_COLUMN_COUNT, orders.len())
    );
    let mut insert =
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(crate::for_engine(crate::Engine::of(conn), sql)));
    for order in orders {
        insert = insert
            .bind(&order.id)
            .bind(&order.merchant_id)
            .bind(&order.out_trade_no)
            .bind(&order.kind)
            .bind(order.amount.minor_units())
            .bind(order.amount.currency().code())
            .bind(&order.description)
            .bind(order.notify_url.as_deref())
            .bind(order.status.as_str())
            .bind(&order.request_digest)
            .bind(order.expire_at.unix_micros())
            .bind(order.created_at.unix_micros())
            .bind(order.updated_at.unix_micros())
            .bind(order.paid_at.map(Timestamp::unix_micros))
            .bind(order.payer_user_id.as_deref())
            .bind(order.funding.as_deref())
            .bind(order.device_id.as_deref());
    }
    Ok(insert.fetch_all(conn).await?.into_iter().collect())
}

/// What a batch did with one new order and its request's nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batched {
    /// Inserted, its nonce with it.
    Inserted,
    /// Its nonce was already stored: nothing of it was written.
    Replayed,
    /// Its nonce went in, the order did not (its out_trade_no is taken): it goes on
    /// alone without the nonce.
    NonceSpent,
    /// Nothing of it was written: it goes on alone, nonce and all.
    Left,
    /// The signing key its request was checked with is not active: nothing of it was
    /// written.
    KeyRevoked,
}

impl Batched {
    /// The request's answer, when the batch decided it; None for an order that goes on
    /// alone (without its nonce after [`Batched::NonceSpent`]).
    fn answer(self, order: &Order) -> Option<Result<Created>> {
        match self {
            Batched::Inserted => Some(Ok(Created::New(order.clone()))),
            Batched::Replayed => Some(Err(StoreError::NonceReplayed)),
            Batched::KeyRevoked => Some(Err(StoreError::KeyRevoked)),
            Batched::NonceSpent | Batched::Left => None,
        }
    }
}

/// Signed creates together, in the caller's transaction (a savepoint in SQLite's lane, the
/// order batcher's own on PostgreSQL): the signing keys to confirm read in one statement,
/// the nonces of active keys' requests not stored yet in another, then the orders whose
/// nonce that was (or that came without one) in a third. What became of each, in the
/// order given.
pub(crate) async fn insert_orders_spending(
    conn: &mut sqlx::AnyConnection,
    asked: &[(&Order, Option<&NonceToSpend>)],
) -> Result<Vec<Batched>> {
    let mut to_confirm: Vec<&str> =
        asked.iter().filter_map(|(_, n)| n.and_then(|n| n.key_to_confirm.as_deref())).collect();
    to_confirm.sort_unstable();
    to_confirm.dedup();
    let active = if to_confirm.is_empty() {
        HashSet::new()
    } else {
        crate::merchants::active_key_ids(conn, &to_confirm).await?
    };
    let revoked = |n: &NonceToSpend| n.key_to_confirm.as_ref().is_some_and(|key| !active.contains(key));
    let asked: Vec<(&Order, Option<&NonceRow>, bool)> =
        asked.iter().map(|(order, n)| (*order, n.map(|n| &n.row), n.is_some_and(revoked))).collect();
    let mut nonces: Vec<NonceRow> =
        asked.iter().filter(|(_, _, revoked)| !revoked).filter_map(|(_, nonce, _)| nonce.cloned()).collect();
    // One order for every process's batches (see nonces.rs).
    nonces.sort_unstable();
    let fresh = if nonces.is_empty() { HashSet::new() } else { crate::nonces::insert_new(conn, &nonces).await? };
    let new_nonce = |nonce: &NonceRow| fresh.contains(&(nonce.0.clone(), nonce.1.clone()));
    let orders: Vec<&Order> = asked
        .iter()
        .filter(|(_, nonce, revoked)| !revoked && nonce.is_none_or(new_nonce))
        .map(|(order, _, _)| *order)
        .collect();
    let inserted = if orders.is_empty() { HashSet::new() } else { insert_order_rows(conn, &orders).await? };
    Ok(asked
        .iter()
        .map(|(order, nonce, revoked)| match (nonce.map(new_nonce), inserted.contains(&order.id)) {
            _ if *revoked => Batched::KeyRevoked,
            (Some(false), _) => Batched::Replayed,
            (_, true) => Batched::Inserted,
            (Some(true), false) => Batched::NonceSpent,
            (None, false) => Batched::Left,
        })
        .collect())
}

/// A new order and, for a signed request, the nonce to spend with it (None once spent).
pub(crate) struct NewOrder {
    pub order: Order,
    pub nonce: Option<NonceToSpend>,
}

impl NewOrder {
    /// Confirms the request's signing key and spends the nonce, if still to do, then
    /// inserts the order ([`Tx::insert_order`]); a revoked key or a replayed nonce inserts
    /// nothing. The key comes first even for a request whose own batch committed but whose
    /// answer was lost: a key revoked since gets 401, never the order.
    pub(crate) async fn insert(&mut self, tx: &mut Tx) -> Result<Created> {
        if let Some(key_id) = self.nonce.as_ref().and_then(|n| n.key_to_confirm.as_deref())
            && crate::merchants::active_key_ids(tx.conn(), &[key_id]).await?.is_empty()
        {
            return Err(StoreError::KeyRevoked);
        }
        if let Some(nonce) = &self.nonce
            && !crate::nonces::spend_in(tx.conn(), &nonce.row).await?
        {
            // Unless this request's own batch committed both and its answer was lost with
            // the connection: then the order is there under the id only this request has.
            return match tx.order(&self.order.id).await? {
                Some(mine) => Ok(Created::New(mine)),
                None => Err(StoreError::NonceReplayed),
            };
        }
        tx.insert_order(&self.order).await
    }
}

/// The order an insert conflicted with, which must be there.
fn existing(found: Option<Order>) -> Result<Created> {
    found.map(Created::Existing).ok_or_else(|| StoreError::Corrupt("order vanished after a conflicting insert".into()))
}

impl Tx {
    /// A group-commit batch's new orders, with their requests' nonces, inside a savepoint
    /// ([`insert_orders_spending`]): each order's outcome, or None for one left to
    /// [`NewOrder::insert`], which says why it was not inserted (its out_trade_no is taken,
    /// or a statement failed — say on one order's bad text — and nothing of it was kept).
    /// A nonce spent here is taken off its order.
    pub(crate) async fn insert_orders_together(
        &mut self,
        orders: &mut [&mut NewOrder],
    ) -> Result<Vec<Option<Result<Created>>>> {
        let asked: Vec<(&Order, Option<&NonceToSpend>)> = orders.iter().map(|o| (&o.order, o.nonce.as_ref())).collect();
        let batched = match self.in_savepoint(async |tx| insert_orders_spending(tx.conn(), &asked).await).await? {
            Ok(batched) => batched,
            Err(e) => {
                tracing::warn!(error = %e, orders = orders.len(), "inserting orders together failed; inserting them one by one");
                return Ok(orders.iter().map(|_| None).collect());
            }
        };
        // Taking the spent nonces off their orders is safe because SQLite's lane, the one
        // that settles orders together, never runs a job again after its batch failed.
        Ok(orders
            .iter_mut()
            .zip(batched)
            .map(|(o, batched)| {
                if batched == Batched::NonceSpent {
                    o.nonce = None;
                }
                batched.answer(&o.order)
            })
            .collect())
    }

    /// Inserts `order` unless the merchant already has one with its out_trade_no.
    pub async fn insert_order(&mut self, order: &Order) -> Result<Created> {
        let inserted = insert_order_row(self.conn(), order).await?;
        if inserted {
            return Ok(Created::New(order.clone()));
        }
        existing(self.order_by_out_trade_no(&order.merchant_id, &order.out_trade_no).await?)
    }

    pub async fn order(&mut self, order_id: &str) -> Result<Option<Order>> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(order_id).fetch_optional(self.conn()).await?;
        row.as_ref().map(order_from_row).transpose()
    }

    async fn order_by_out_trade_no(&mut self, merchant_id: &str, out_trade_no: &str) -> Result<Option<Order>> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE merchant_id = $1 AND out_trade_no = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(merchant_id)
            .bind(out_trade_no)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// Moves an order from `from` to `to` if it is still in `from`. Returns whether it moved.
    pub async fn transition_order(
        &mut self,
        order_id: &str,
        from: OrderStatus,
        to: OrderStatus,
        now: Timestamp,
    ) -> Result<bool> {
        assert!(from.can_become(to), "{from} → {to} is not an order transition");
        let n = sqlx::query("UPDATE orders SET status = $1, updated_at_us = $2 WHERE id = $3 AND status = $4")
            .bind(to.as_str())
            .bind(now.unix_micros())
            .bind(order_id)
            .bind(from.as_str())
            .execute(self.conn())
            .await?
            .rows_affected();
        Ok(n == 1)
    }
}

impl Store {
    /// Creates an order, or returns the merchant's existing one with the same out_trade_no.
    pub async fn create_order(&self, order: &Order) -> Result<Created> {
        self.insert_new_order(order, None).await
    }

    /// [`Store::create_order`] for a signed request, whose nonce commits with the order:
    /// [`StoreError::NonceReplayed`] when it was already used, and then nothing is written.
    /// (An order that exists already is answered as such, and the nonce is spent.)
    pub async fn create_order_spending(&self, order: &Order, nonce: WriteNonce) -> Result<Created> {
        // In a task of its own, which a request given up midway does not cancel: the claim
        // stays in flight until the nonce is committed with the order, or nothing was, so
        // a replay in this process cannot slip into the same batch meanwhile.
        let (store, order) = (self.clone(), order.clone());
        tokio::spawn(async move {
            let created = store.insert_new_order(&order, Some(nonce.to_spend())).await;
            drop(nonce);
            created
        })
        .await
        .map_err(|e| StoreError::GroupCommit(format!("creating the order stopped: {e}")))?
    }

    async fn insert_new_order(&self, order: &Order, mut nonce: Option<NonceToSpend>) -> Result<Created> {
        if let Some(group) = self.write_lane() {
            return group.create_order(NewOrder { order: order.clone(), nonce }).await;
        }
        if let Some(batcher) = &self.order_batcher {
            let batched = batcher.insert(order.clone(), nonce.clone()).await;
            if let Some(answer) = batched.answer(order) {
                return answer;
            }
            if batched == Batched::NonceSpent {
                nonce = None;
            }
        }
        if nonce.is_none() {
            let row = order.clone();
            if self.write_statement(move |conn| Box::pin(async move { insert_order_row(conn, &row).await })).await? {
                return Ok(Created::New(order.clone()));
            }
            // The conflicting order is committed (the insert waited for it): a read finds it.
            return existing(self.order_by_out_trade_no(&order.merchant_id, &order.out_trade_no).await?);
        }
        let mut new = NewOrder { order: order.clone(), nonce };
        self.write(move |tx| Box::pin(async move { new.insert(tx).await })).await
    }

    /// An order as its merchant sees it (another merchant's id is simply not found).
    pub async fn merchant_order(&self, merchant_id: &str, order_id: &str) -> Result<Option<Order>> {
        Ok(self.order(order_id).await?.filter(|o| o.merchant_id == merchant_id))
    }

    pub async fn order(&self, order_id: &str) -> Result<Option<Order>> {
        static SQL: LazyLock<String> = LazyLock::new(|| format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"));
        self.read_one(&SQL, &[Param::Text(order_id)], |r| order_from_row(r)).await
    }

    pub async fn order_by_out_trade_no(&self, merchant_id: &str, out_trade_no: &str) -> Result<Option<Order>> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!("SELECT {ORDER_COLUMNS} FROM orders WHERE merchant_id = $1 AND out_trade_no = $2")
        });
        self.read_one(&SQL, &[Param::Text(merchant_id), Param::Text(out_trade_no)], |r| order_from_row(r)).await
    }

    /// Closes an unpaid order. Returns the order as it now stands.
    pub async fn close_order(&self, merchant_id: &str, order_id: &str, now: Timestamp) -> Result<Option<Order>> {
        let mut tx = self.begin().await?;
        let Some(order) = tx.order(order_id).await?.filter(|o| o.merchant_id == merchant_id) else {
            return Ok(None);
        };
        if order.status == OrderStatus::NotPay {
            tx.transition_order(order_id, OrderStatus::NotPay, OrderStatus::Closed, now).await?;
        }
        let order = tx.order(order_id).await?;
        tx.commit().await?;
        Ok(order)
    }

    /// A page of the merchant's orders, newest first.
    pub async fn list_orders(&self, merchant_id: &str, filter: &OrderFilter) -> Result<Vec<Order>> {
        let mut sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE merchant_id = $1");
        let mut n = 1;
        let mut next = |clause: &str| {
            n += 1;
            format!(" AND {}", clause.replace('?', &format!("${n}")))
        };
        if filter.status.is_some() {
            sql += &next("status = ?");
        }
        if filter.from.is_some() {
            sql += &next("created_at_us >= ?");
        }
        if filter.to.is_some() {
            sql += &next("created_at_us < ?");
        }
        if filter.before.is_some() {
            let a = next("(created_at_us < ?");
            n += 1;
            sql += &format!("{a} OR (created_at_us = ${} AND id < ${}))", n - 1, n);
        }
        sql += &format!(" ORDER BY created_at_us DESC, id DESC LIMIT ${}", n + 1);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(merchant_id);
        if let Some(s) = filter.status {
            q = q.bind(s.as_str());
        }
        if let Some(t) = filter.from {
            q = q.bind(t.unix_micros());
        }
        if let Some(t) = filter.to {
            q = q.bind(t.unix_micros());
        }
        if let Some((t, id)) = &filter.before {
            q = q.bind(t.unix_micros()).bind(id.clone());
        }
        let rows = q.bind(filter.limit).fetch_all(self.reader()).await?;
        rows.iter().map(order_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_column_count_matches_the_column_list() {
        assert_eq!(super::ORDER_COLUMNS.split(',').count(), super::ORDER_COLUMN_COUNT);
    }
}
