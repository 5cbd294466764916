//! New orders on PostgreSQL, inserted in batches. SQLite's lane already inserts a batch's
//! new orders with one statement; on PostgreSQL an order commits on its own, and a burst of
//! order creations costs a statement and a commit record each. Here one task inserts what
//! is queued in one autocommitted statement (the nonces' pattern, `nonces.rs`), outside the
//! payment lane's transaction.
//!
//! The batch only ever says "inserted": an order it did not insert (its out_trade_no is
//! taken, or the statement failed — one order's bad text fails them all — or the task has
//! stopped) is inserted again on its own by [`crate::Store::create_order`], which then says
//! exactly why. Every caller hears back only after the commit, so an acknowledged order is
//! durable. (Should a batch commit and its answer be lost with the connection, the order
//! inserted again alone finds itself already there: the merchant gets it as existing, 200
//! instead of 201, the same order.)
//!
//! An insert waits when its out_trade_no conflicts with a row another transaction is
//! writing (a retried create while the order is being paid, a micropay not yet committed).
//! A batch must not wait there with every other merchant's orders queued behind it, so the
//! task's own connection has a short `lock_timeout`: the batch fails, and its orders go one
//! by one, where only the one that conflicts waits.

use std::collections::HashSet;

use tokio::sync::{mpsc, oneshot};

use crate::orders::{Order, insert_order_rows};
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
    /// True when the batch inserted the order.
    reply: oneshot::Sender<bool>,
}

impl OrderBatcher {
    /// Starts the task on `store`, which must not hold a batcher itself (its queue would
    /// keep the task alive forever).
    pub(crate) fn start(store: Store) -> OrderBatcher {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(insert_batches(store, pending));
        OrderBatcher { queue }
    }

    /// Whether a batch inserted and committed `order`; false leaves it to the caller.
    pub(crate) async fn insert(&self, order: Order) -> bool {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Queued { order, reply }).is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
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
        let orders: Vec<&Order> = batch.iter().map(|q| &q.order).collect();
        let outcome = insert_on_own_connection(&store, &mut own, &orders).await;
        if outcome.is_err() {
            own = None;
        }
        metrics::histogram!("paykit_order_batch_size").record(batch.len() as f64);
        let inserted = outcome.unwrap_or_else(|e| {
            tracing::warn!(error = %e, orders = batch.len(), "inserting orders together failed; inserting them one by one");
            Default::default()
        });
        for queued in batch.drain(..) {
            let _ = queued.reply.send(inserted.contains(&queued.order.id));
        }
    }
}

async fn insert_on_own_connection(
    store: &Store,
    own: &mut Option<sqlx::AnyConnection>,
    orders: &[&Order],
) -> Result<HashSet<String>> {
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
    insert_order_rows(conn, orders).await
}
