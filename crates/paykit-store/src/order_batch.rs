//! New orders on PostgreSQL, inserted in batches. SQLite's lane already inserts a batch's
//! new orders together (`orders::insert_orders_spending`, in its savepoint); on PostgreSQL
//! an order commits on its own, and a burst of order creations costs a statement and a
//! commit record each. Here one task inserts what is queued in one transaction, outside the
//! payment lane's, with the same function: the status of the keys its requests were checked
//! with from memory in one statement, their nonces in another, then the orders whose nonce
//! was new (or that came without one) in a third (the nonces' pattern, `nonces.rs`), so a
//! signed create costs one commit shared with its neighbours instead of two of its own.
//!
//! The batch answers "inserted", "replayed" (the nonce was stored already, so nothing of
//! the request was written) or "key revoked" (the key is not active: nothing written
//! either); an order it did not insert (its out_trade_no is taken, or a statement failed —
//! one order's bad text fails them all — or the task has stopped) is inserted again on its
//! own by [`crate::Store::create_order_spending`] (or [`crate::Store::create_order`],
//! without a nonce), which then says exactly why, spending the nonce with it unless the
//! batch committed it. Every caller hears back
//! only after the commit, so an acknowledged order is durable. (Should a batch commit and
//! its answer be lost with the connection, the order inserted again alone finds its nonce
//! already stored, and its own order under the id only this request has: it is answered
//! as created.)
//!
//! An insert waits when its out_trade_no conflicts with a row another transaction is
//! writing (a retried create while the order is being paid, a micropay not yet committed),
//! and so does a nonce another process is inserting (a replay sent to two gateways).
//! A batch must not wait there with every other merchant's orders queued behind it, so the
//! task's own connection has a short `lock_timeout`: the batch fails, and its orders go one
//! by one, where only the one that conflicts waits.

use tokio::sync::{mpsc, oneshot};

use crate::nonces::NonceToSpend;
use crate::orders::{Batched, Order, insert_orders_spending};
use crate::{Result, Store};

/// How long a batch waits for a row lock before its orders go one by one.
const BATCH_LOCK_TIMEOUT: &str = "50ms";

/// Orders per insert: 17 parameters each, far below PostgreSQL's 65,535.
const MAX_BATCH: usize = 256;

pub(crate) struct OrderBatcher {
    queue: mpsc::UnboundedSender<Queued>,
}

struct Queued {
    order: Order,
    /// The signed request's nonce, to spend with the order.
    nonce: Option<NonceToSpend>,
    reply: oneshot::Sender<Batched>,
}

impl OrderBatcher {
    /// Starts the task on `store`, which must not hold a batcher itself (its queue would
    /// keep the task alive forever).
    pub(crate) fn start(store: Store) -> OrderBatcher {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(insert_batches(store, pending));
        OrderBatcher { queue }
    }

    /// What a batch did with `order` and its request's nonce.
    pub(crate) async fn insert(&self, order: Order, nonce: Option<NonceToSpend>) -> Batched {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Queued { order, nonce, reply }).is_err() {
            return Batched::Left;
        }
        answer.await.unwrap_or(Batched::Left)
    }
}

async fn insert_batches(store: Store, mut pending: mpsc::UnboundedReceiver<Queued>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // The task's own connection, out of the pool, so its session's lock timeout touches
    // nothing else; dropped after any error, in case the error was the connection's.
    let mut own: Option<sqlx::AnyConnection> = None;
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // One order for every process's batches, so two gateways inserting the same
        // out_trade_no wait for each other instead of deadlocking.
        batch.sort_unstable_by(|a: &Queued, b: &Queued| {
            (&a.order.merchant_id, &a.order.out_trade_no).cmp(&(&b.order.merchant_id, &b.order.out_trade_no))
        });
        let outcome = insert_on_own_connection(&store, &mut own, &batch).await;
        if outcome.is_err() {
            own = None;
        }
        metrics::histogram!("paykit_order_batch_size").record(batch.len() as f64);
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, orders = batch.len(), "inserting orders together failed; inserting them one by one");
        }
        let answers = outcome.unwrap_or_else(|_| vec![Batched::Left; batch.len()]);
        for (queued, answer) in batch.drain(..).zip(answers) {
            let _ = queued.reply.send(answer);
        }
    }
}

/// Inserts the batch in one transaction ([`insert_orders_spending`]).
async fn insert_on_own_connection(
    store: &Store,
    own: &mut Option<sqlx::AnyConnection>,
    batch: &[Queued],
) -> Result<Vec<Batched>> {
    let conn = match own {
        Some(conn) => conn,
        None => {
            let mut conn = store.writer.acquire().await?.detach();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET lock_timeout = '{BATCH_LOCK_TIMEOUT}'")))
                .execute(&mut conn)
                .await?;
            own.insert(conn)
        }
    };
    let asked: Vec<(&Order, Option<&NonceToSpend>)> = batch.iter().map(|q| (&q.order, q.nonce.as_ref())).collect();
    let mut tx = sqlx::Connection::begin(conn).await?;
    let batched = insert_orders_spending(&mut tx, &asked).await?;
    tx.commit().await?;
    Ok(batched)
}
