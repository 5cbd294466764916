//! Balance payments settled together. A group-commit batch's payments from wallet balances
//! are paid by a fixed set of statements however many there are — lock the orders, lock the
//! balance rows, decide in Rust, then one multi-row write per table — instead of ten
//! statements each: on a CPU-bound database the statements, not the commits, are the cost.
//!
//! The outcomes are those of [`Tx::pay_order`] run one after another: first the payments
//! settled here, in batch order, then everything else in the batch, in batch order (on
//! PostgreSQL, in batch order for each order; see below). Every
//! request in a batch is answered only after its commit and all were queued before it
//! began, so they are concurrent and that serial order is as valid as any other. Whatever
//! this path cannot decide by itself — a card, an idempotency key, an order that is not
//! payable now (its answer depends on who paid it), an account not opened yet, an order
//! that an earlier payment in the batch also pays — it leaves to `pay_order`, which runs
//! after it: on SQLite in the same transaction, on PostgreSQL in a transaction of its own
//! once the batch has committed (those on one order still in batch order), so that the
//! batch holds only the locks this path takes, in one order (see `group_commit.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use paykit_core::ledger::{AccountKind, EntryKind, JournalEntry};
use paykit_core::order::OrderStatus;
use sqlx::Row;

use crate::events::{EventToSend, event_rows};
use crate::ledger::{AccountMeta, Owner, entry_rows, pick_shard};
use crate::orders::{ORDER_COLUMNS, Order, order_from_row};
use crate::payments::{Funding, OwnedPay, PayError, RecordToPut, record_rows};
use crate::rows_insert::RowsInsert;
use crate::{Engine, Result, StoreError, Tx, for_engine, ids, placeholders, value_rows};

/// How many shards of a merchant account a batch tries before it leaves the merchant's
/// payments to run on their own (every one it picked was held by another transaction).
const MERCHANT_SHARD_TRIES: usize = 3;

/// A payment's outcome from [`Tx::pay_orders_together`]; `None` when it was left to
/// [`Tx::pay_order`].
pub(crate) type Settled = Option<Result<Order, PayError>>;

/// A payment this path will make: its order as locked, and the two accounts it moves.
struct Leg<'p> {
    index: usize,
    pay: &'p OwnedPay,
    order: Order,
    wallet: AccountMeta,
    merchant: AccountMeta,
}

/// The payments (indexes into `pays`) this path takes: balance payments without an
/// idempotency key, each the first payment of its order in the batch (whatever that first
/// one's funding). On SQLite none when fewer than two: there one payment alone is cheaper
/// in its savepoint. On PostgreSQL one is enough: paid on its own instead, it would leave
/// the lane idle, and the payments arriving next would each go on their own too, at ten
/// statements and a commit each (see `group_commit.rs`).
pub(crate) fn taken_together(pays: &[&OwnedPay], engine: Engine) -> Vec<usize> {
    let mut orders_seen = HashSet::new();
    let taken: Vec<usize> = (0..pays.len())
        .filter(|&i| {
            let p = pays[i];
            orders_seen.insert(p.order_id.as_str()) && may_settle_together(p)
        })
        .collect();
    let fewest = match engine {
        Engine::Sqlite => 2,
        Engine::Postgres => 1,
    };
    if taken.len() < fewest { Vec::new() } else { taken }
}

/// Whether this path can take a payment at all: from the balance, without an idempotency
/// key.
pub(crate) fn may_settle_together(p: &OwnedPay) -> bool {
    p.funding == Funding::Balance && p.idempotency.is_none()
}

impl Tx {
    /// Settles what it can of `pays`. On a database error nothing of it is kept and every
    /// payment is left to run on its own: on SQLite, where the batch's other work shares
    /// the transaction, this runs in a savepoint and the error is its own; on PostgreSQL,
    /// where the transaction holds nothing else, the error is the transaction's (Err), and
    /// a savepoint would only cost two more round trips on every batch. Otherwise Err only
    /// when the transaction itself broke.
    pub(crate) async fn pay_orders_together(&mut self, pays: &[&OwnedPay]) -> Result<Vec<Settled>> {
        let mut settled: Vec<Settled> = pays.iter().map(|_| None).collect();
        let taken = taken_together(pays, self.engine());
        if taken.is_empty() {
            return Ok(settled);
        }
        let outcome = match self.engine() {
            Engine::Sqlite => self.in_savepoint(async |tx| tx.settle_together(pays, taken, &mut settled).await).await?,
            Engine::Postgres => self.settle_together(pays, taken, &mut settled).await,
        };
        match outcome {
            Ok(()) => {
                metrics::counter!("paykit_payments_settled_together")
                    .increment(settled.iter().filter(|s| s.is_some()).count() as u64);
                Ok(settled)
            }
            Err(e) => {
                tracing::warn!(error = %e, payments = pays.len(), "settling payments together failed; paying them one by one");
                metrics::counter!("paykit_payments_together_fell_back").increment(1);
                match self.engine() {
                    Engine::Sqlite => Ok(pays.iter().map(|_| None).collect()),
                    Engine::Postgres => Err(e),
                }
            }
        }
    }

    /// Decides `taken` (indexes into `pays`) into `settled`, leaving `None` for what it
    /// leaves to [`Tx::pay_order`].
    async fn settle_together(&mut self, pays: &[&OwnedPay], taken: Vec<usize>, settled: &mut [Settled]) -> Result<()> {
        let mut orders = self.lock_orders(taken.iter().map(|&i| pays[i].order_id.as_str())).await?;
        let payable: Vec<usize> = taken
            .into_iter()
            .filter(|&i| {
                let p = pays[i];
                orders.get(&p.order_id).is_some_and(|o| o.expire_at > p.now)
            })
            .collect();
        if payable.is_empty() {
            return Ok(());
        }

        // A device confirms an order once. The order rows are locked, and every path that
        // records a proof locks its order first, so what is read here stays true.
        let used = self.used_device_proofs(payable.iter().map(|&i| pays[i].order_id.as_str())).await?;
        let mut legs = Vec::with_capacity(payable.len());
        for i in payable {
            let p = pays[i];
            if let Some(device) = &p.confirmed_by_device
                && used.contains(&(p.order_id.clone(), device.clone()))
            {
                settled[i] = Some(Err(PayError::DeviceProofReused));
                continue;
            }
            let order = orders.remove(&p.order_id).ok_or_else(|| StoreError::Corrupt("a locked order went".into()))?;
            let currency = order.amount.currency();
            let wallet_owner = Owner { owner_type: "user", owner_id: &p.user_id };
            let merchant_owner = Owner { owner_type: "merchant", owner_id: &order.merchant_id };
            let wallet = self.find_account(wallet_owner, AccountKind::WalletBalance, currency).await?;
            let merchant = self.find_account(merchant_owner, AccountKind::MerchantSettlement, currency).await?;
            match (wallet, merchant) {
                (Some(wallet), Some(merchant)) if wallet.floored && wallet.shard_count == 1 => {
                    legs.push(Leg { index: i, pay: p, order, wallet, merchant });
                }
                // Opening an account belongs to the payment's own savepoint.
                _ => {}
            }
        }

        // Balance rows another transaction holds are skipped, not waited for, so the batch
        // never waits on a lock and cannot sit in a cycle or behind a long transaction: a
        // payment whose wallet row is taken is left to run on its own (and wait there like
        // any writer). One shard per merchant account for the whole batch — a hot
        // merchant's payments then touch one of its rows per commit, and different batches
        // different rows — and another if the one picked is taken.
        let wallets: BTreeSet<(String, u16)> = legs.iter().map(|l| (l.wallet.id.clone(), 0)).collect();
        let mut balances = self.try_lock_balance_rows(&wallets).await?;
        // Only the merchants of payers whose rows it holds: a shard locked for nothing would
        // stay locked to the commit.
        let merchants: BTreeMap<&str, u16> = legs
            .iter()
            .filter(|l| balances.contains_key(&(l.wallet.id.clone(), 0)))
            .map(|l| (l.merchant.id.as_str(), l.merchant.shard_count))
            .collect();
        let mut shards: HashMap<String, u16> = HashMap::new();
        for _ in 0..MERCHANT_SHARD_TRIES {
            let wanted: BTreeSet<(String, u16)> = merchants
                .iter()
                .filter(|(id, _)| !shards.contains_key(**id))
                .map(|(id, &count)| ((*id).to_owned(), pick_shard(count)))
                .collect();
            if wanted.is_empty() {
                break;
            }
            for ((id, shard), balance) in self.try_lock_balance_rows(&wanted).await? {
                shards.insert(id.clone(), shard);
                balances.insert((id, shard), balance);
            }
        }

        // Decide in batch order, as one payment after another would.
        let mut paying = Vec::with_capacity(legs.len());
        for leg in legs {
            // A row it skipped leaves the payment to run on its own.
            if !shards.contains_key(&leg.merchant.id) {
                continue;
            }
            let Some(balance) = balances.get_mut(&(leg.wallet.id.clone(), 0)) else { continue };
            let amount = leg.order.amount.minor_units();
            if *balance >= amount {
                *balance -= amount;
                paying.push(leg);
            } else {
                settled[leg.index] = Some(Err(PayError::InsufficientBalance));
            }
        }
        if paying.is_empty() {
            return Ok(());
        }

        let entries = paying
            .iter()
            .map(|l| {
                JournalEntry::transfer(EntryKind::Payment, &l.order.id, &l.wallet.id, &l.merchant.id, l.order.amount)
                    .map(|entry| (ids::new_id("je"), entry))
                    .map_err(|e| StoreError::Corrupt(format!("unbuildable entry: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut deltas: BTreeMap<(String, u16), i64> = BTreeMap::new();
        for leg in &paying {
            let amount = leg.order.amount.minor_units();
            *deltas.entry((leg.wallet.id.clone(), 0)).or_default() -= amount;
            *deltas.entry((leg.merchant.id.clone(), shards[&leg.merchant.id])).or_default() += amount;
        }
        self.move_balance_rows(&deltas).await?;

        let paid = self.mark_paid_from_balance(&paying).await?;
        let mut proofs =
            RowsInsert::new("INSERT INTO device_proofs_used (order_id, device_id, used_at_us)", "", 3).when_set(2);
        for leg in &paying {
            let device = leg.pay.confirmed_by_device.as_deref();
            proofs.row([leg.order.id.as_str().into(), device.into(), leg.pay.now.unix_micros().into()]);
        }

        let mut merchants = HashMap::new();
        for order in &paid {
            if !merchants.contains_key(order.merchant_id.as_str()) {
                merchants.insert(order.merchant_id.as_str(), self.fixed_merchant(&order.merchant_id).await?);
            }
        }
        let records: Vec<RecordToPut> = paying
            .iter()
            .zip(&paid)
            .map(|(leg, order)| RecordToPut {
                user_id: &leg.pay.user_id,
                kind: "payment",
                reference_id: &order.id,
                title: &merchants[order.merchant_id.as_str()].name,
                signed_amount_minor: -order.amount.minor_units(),
                funding: Funding::Balance.label(),
                status: OrderStatus::Success.as_str(),
                now: leg.pay.now,
            })
            .collect();
        let events: Vec<EventToSend> = paying
            .iter()
            .zip(&paid)
            .map(|(leg, order)| EventToSend {
                party_kind: "merchant",
                party_id: &order.merchant_id,
                event_type: "payment.succeeded",
                data: crate::refunds::order_event_data(order),
                notify_url: order.notify_url.as_deref().or(merchants[order.merchant_id.as_str()].notify_url.as_deref()),
                now: leg.pay.now,
            })
            .collect();
        // The batch's new rows, every table's, in one statement on PostgreSQL.
        let entries: Vec<(&str, &JournalEntry, _)> =
            entries.iter().zip(&paying).map(|((id, entry), l)| (id.as_str(), entry, l.pay.now)).collect();
        let [journal, postings] = entry_rows(&entries);
        let (_, [events, deliveries]) = event_rows(&events);
        self.insert_rows(vec![journal, postings, proofs, record_rows(&records), events, deliveries]).await?;
        for (leg, order) in paying.iter().zip(paid) {
            settled[leg.index] = Some(Ok(order));
        }
        Ok(())
    }

    /// Those of these orders still waiting for payment, locked, except those another
    /// transaction holds (skipped, not waited for, like the balance rows). The others it
    /// also locks, when free, and does not return. The status is checked here, not in
    /// the statement: given `status = 'NOTPAY'`, PostgreSQL's planner read the partial
    /// index `orders_expiring` whole — every unpaid order, and each paid one's entry until
    /// a vacuum — instead of looking the ids up (0.66 ms a batch against 0.09 ms).
    async fn lock_orders<'a>(&mut self, ids: impl Iterator<Item = &'a str>) -> Result<HashMap<String, Order>> {
        let ids: BTreeSet<&str> = ids.collect();
        // NO KEY: the batch changes no key of an order, and a refund's foreign-key check on
        // one (here an already paid order, locked and passed over) need not wait for it.
        let lock = if self.engine() == Engine::Postgres { " FOR NO KEY UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id IN ({}) ORDER BY id{lock}",
            placeholders(1, ids.len())
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(for_engine(self.engine(), sql)));
        for id in &ids {
            select = select.bind(*id);
        }
        let mut orders = HashMap::with_capacity(ids.len());
        for row in select.fetch_all(self.conn()).await? {
            let order = order_from_row(&row)?;
            if order.status == OrderStatus::NotPay {
                orders.insert(order.id.clone(), order);
            }
        }
        Ok(orders)
    }

    /// The (order, device) confirmations already spent on these orders.
    async fn used_device_proofs<'a>(
        &mut self,
        order_ids: impl Iterator<Item = &'a str>,
    ) -> Result<HashSet<(String, String)>> {
        let ids: Vec<&str> = order_ids.collect();
        let sql = format!(
            "SELECT order_id, device_id FROM device_proofs_used WHERE order_id IN ({})",
            placeholders(1, ids.len())
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(for_engine(self.engine(), sql)));
        for id in &ids {
            select = select.bind(*id);
        }
        let rows = select.fetch_all(self.conn()).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Moves the legs' orders to SUCCESS, paid from the balance; returns them as stored,
    /// in the legs' order. They are locked and were unpaid ([`Tx::lock_orders`]), so the
    /// statement does not check their status again (which would read `orders_expiring`
    /// whole on PostgreSQL, as there).
    async fn mark_paid_from_balance(&mut self, legs: &[Leg<'_>]) -> Result<Vec<Order>> {
        let sql = format!(
            "UPDATE orders SET status = 'SUCCESS', paid_at_us = v.column2, payer_user_id = v.column3, funding = 'balance', \
               updated_at_us = v.column2 \
             FROM (VALUES {}) AS v \
             WHERE orders.id = v.column1 \
             RETURNING {ORDER_COLUMNS}",
            value_rows(1, 3, legs.len()),
        );
        let mut update = sqlx::query(sqlx::AssertSqlSafe(for_engine(self.engine(), sql)));
        for leg in legs {
            update = update.bind(&leg.order.id).bind(leg.pay.now.unix_micros()).bind(&leg.pay.user_id);
        }
        let mut paid = HashMap::with_capacity(legs.len());
        for row in update.fetch_all(self.conn()).await? {
            let order = order_from_row(&row)?;
            paid.insert(order.id.clone(), order);
        }
        legs.iter()
            .map(|l| {
                paid.remove(&l.order.id)
                    .ok_or_else(|| StoreError::Corrupt(format!("order {} did not move", l.order.id)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use paykit_core::time::Timestamp;

    use super::taken_together;
    use crate::Engine;
    use crate::payments::{Funding, IdempotencyKey, OwnedPay};

    fn pay(order_id: &str, funding: Funding, keyed: bool) -> OwnedPay {
        OwnedPay {
            order_id: order_id.into(),
            user_id: "usr_1".into(),
            funding,
            confirmed_by_device: None,
            idempotency: keyed.then(|| IdempotencyKey {
                scope: "s".into(),
                key: "k".into(),
                request_digest: "d".into(),
            }),
            now: Timestamp::from_unix_secs(1_700_000_000),
        }
    }

    #[test]
    fn one_payment_is_taken_together_on_postgres_only() {
        let alone = pay("ord_a", Funding::Balance, false);
        assert_eq!(taken_together(&[&alone], Engine::Postgres), vec![0]);
        assert_eq!(taken_together(&[&alone], Engine::Sqlite), Vec::<usize>::new());
        let second = pay("ord_b", Funding::Balance, false);
        assert_eq!(taken_together(&[&alone, &second], Engine::Sqlite), vec![0, 1]);
    }

    #[test]
    fn keyed_card_and_repeated_payments_are_left_to_run_on_their_own() {
        let card = Funding::Card { card_id: "card_1".into(), bank: crate::payments::BankAnswer::Approved };
        let pays = [
            pay("ord_a", Funding::Balance, true),
            pay("ord_b", card, false),
            pay("ord_c", Funding::Balance, false),
            pay("ord_c", Funding::Balance, false),
        ];
        let refs: Vec<&OwnedPay> = pays.iter().collect();
        assert_eq!(taken_together(&refs, Engine::Postgres), vec![2]);
        assert_eq!(taken_together(&refs, Engine::Sqlite), Vec::<usize>::new());
    }
}
