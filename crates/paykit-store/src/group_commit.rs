//! Group commit: write transactions from concurrent requests share one database transaction
//! and so one commit — one fsync — the way TigerBeetle batches transfers. Each request's
//! work runs inside its own savepoint, so a failing one is rolled back alone while its
//! neighbours commit, and every request hears its outcome only after the shared commit, so
//! an acknowledged write is durable.
//!
//! The lane is one task with one connection at a time: it takes whatever is queued (up to
//! a batch), settles the batch's new orders and balance payments with set-based statements
//! (see [`crate::pay_together`]), runs every other piece of work in a savepoint, commits,
//! then answers everyone. On PostgreSQL only balance payments join the lane, and its
//! transaction holds only what it settles together ([`Scope::SettledOnly`]); the rest of
//! the batch then runs in transactions of its own.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::orders::{Created, NewOrder, Order};
use crate::payments::{OwnedPay, PayError};
use crate::{BoxFuture, Engine, Store, StoreError, Tx};

/// What a batch's transaction holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every job, each in a savepoint: SQLite, whose lane holds its one writer anyway and
    /// has no row locks.
    EveryJob,
    /// Only the payments settled together (PostgreSQL), which skip rows another
    /// transaction holds instead of waiting for them (see `pay_together.rs`), so the batch
    /// cannot wait in a cycle with a transaction outside it, nor behind a long one.
    /// Job-by-job work would wait for locks taken in no order common to the batch, and a
    /// cycle with an outside writer would stall every write behind the lane until
    /// `deadlock_timeout`. So everything else runs in a transaction of its own once the
    /// batch is done (work on one order in batch order, the rest in parallel); so does the
    /// work of a batch that failed, whose outcomes were decided against writes now undone.
    SettledOnly,
}

/// One request's work inside a shared transaction.
trait Job: Send {
    /// Runs the work in its own savepoint, unless the batch already settled it. False when
    /// the transaction itself broke (the savepoint could not be taken or undone): the
    /// batch cannot commit.
    fn run<'a>(&'a mut self, tx: &'a mut Tx) -> BoxFuture<'a, bool>;
    /// Answers the request once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
    /// Work the batch may settle together with others of its kind, and where its outcome
    /// goes if it does.
    fn together(&mut self) -> Together<'_> {
        Together::No
    }
    /// Whether the job has its outcome (the batch settled it or ran it).
    fn done(&self) -> bool;
    /// Jobs with the same key that run on their own run one after another, in batch order.
    fn serial_key(&self) -> Option<&str>;
    /// Runs the work in a transaction of its own on `store` and answers the request.
    fn run_on_its_own(self: Box<Self>, store: Store) -> BoxFuture<'static, ()>;
}

/// What a batch can settle with set-based statements instead of job by job.
enum Together<'a> {
    No,
    Payment(&'a OwnedPay, &'a mut Option<Result<Order, PayError>>),
    NewOrder(&'a mut NewOrder, &'a mut Option<Result<Created, StoreError>>),
}

type WorkFn<T, E> = Box<dyn for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<T, E>> + Send>;

/// A job's work: run on its own in a savepoint (`alone`), and for some kinds also open to
/// being settled with set-based statements together with the batch's others (`together`).
trait Work: Send + Sized + 'static {
    type Out: Send + 'static;
    type Err: From<StoreError> + Send + 'static;
    fn alone<'a>(&'a mut self, tx: &'a mut Tx) -> BoxFuture<'a, Result<Self::Out, Self::Err>>;
    fn together<'a>(&'a mut self, _outcome: &'a mut Option<Result<Self::Out, Self::Err>>) -> Together<'a> {
        Together::No
    }
    fn serial_key(&self) -> Option<&str> {
        None
    }
}

/// Any other write, given as a closure: it runs once, on its own.
struct Closure<T, E>(Option<WorkFn<T, E>>);

impl<T: Send + 'static, E: From<StoreError> + Send + 'static> Work for Closure<T, E> {
    type Out = T;
    type Err = E;
    fn alone<'a>(&'a mut self, tx: &'a mut Tx) -> BoxFuture<'a, Result<T, E>> {
        match self.0.take() {
            Some(work) => work(tx),
            None => Box::pin(async { Err(E::from(StoreError::GroupCommit("the work already ran".into()))) }),
        }
    }
}

impl Work for OwnedPay {
    type Out = Order;
    type Err = PayError;
    fn alone<'a>(&'a mut self, tx: &'a mut Tx) -> BoxFuture<'a, Result<Order, PayError>> {
        Box::pin(tx.pay_order(self))
    }
    fn together<'a>(&'a mut self, outcome: &'a mut Option<Result<Order, PayError>>) -> Together<'a> {
        Together::Payment(self, outcome)
    }
    fn serial_key(&self) -> Option<&str> {
        Some(&self.order_id)
    }
}

impl Work for NewOrder {
    type Out = Created;
    type Err = StoreError;
    fn alone<'a>(&'a mut self, tx: &'a mut Tx) -> BoxFuture<'a, Result<Created, StoreError>> {
        Box::pin(self.insert(tx))
    }
    fn together<'a>(&'a mut self, outcome: &'a mut Option<Result<Created, StoreError>>) -> Together<'a> {
        Together::NewOrder(self, outcome)
    }
}

struct WorkJob<W: Work> {
    work: W,
    result: Option<Result<W::Out, W::Err>>,
    reply: oneshot::Sender<Result<W::Out, W::Err>>,
}

impl<W: Work> Job for WorkJob<W> {
    fn run<'a>(&'a mut self, tx: &'a mut Tx) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if self.result.is_some() {
                return true;
            }
            // Not Tx::in_savepoint: a job whose savepoint could not be undone still reports
            // its own outcome (the batch then fails as a whole).
            if let Err(e) = tx.execute_raw("SAVEPOINT group_job").await {
                self.result = Some(Err(e.into()));
                return false;
            }
            let result = self.work.alone(tx).await;
            let undo = if result.is_ok() {
                tx.execute_raw("RELEASE SAVEPOINT group_job").await
            } else {
                match tx.execute_raw("ROLLBACK TO SAVEPOINT group_job").await {
                    Ok(()) => tx.execute_raw("RELEASE SAVEPOINT group_job").await,
                    Err(e) => Err(e),
                }
            };
            self.result = Some(result);
            undo.is_ok()
        })
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let _ = self.reply.send(answer(commit, self.result));
    }

    fn together(&mut self) -> Together<'_> {
        self.work.together(&mut self.result)
    }

    fn done(&self) -> bool {
        self.result.is_some()
    }

    fn serial_key(&self) -> Option<&str> {
        self.work.serial_key()
    }

    fn run_on_its_own(self: Box<Self>, store: Store) -> BoxFuture<'static, ()> {
        let WorkJob { mut work, reply, .. } = *self;
        Box::pin(async move {
            let outcome = store.write(move |tx| Box::pin(async move { work.alone(tx).await })).await;
            let _ = reply.send(outcome);
        })
    }
}

/// A job's answer once the batch's fate is known.
fn answer<T, E: From<StoreError>>(commit: Result<(), &StoreError>, result: Option<Result<T, E>>) -> Result<T, E> {
    match (commit, result) {
        // Its own refusal stands whatever happened to the others: nothing of it was kept.
        (_, Some(Err(e))) => Err(e),
        (Ok(()), Some(Ok(v))) => Ok(v),
        (Err(e), _) => Err(E::from(StoreError::GroupCommit(e.to_string()))),
        (Ok(()), None) => Err(E::from(StoreError::GroupCommit("the work never ran".into()))),
    }
}

/// A store's group commit: one lane (see [`crate::Store::with_group_commit`] for why one).
pub(crate) struct GroupCommit {
    lane: mpsc::UnboundedSender<Box<dyn Job>>,
    /// Taken by the lane before each batch; held by a test that wants to queue a known
    /// batch (`Store::pause_group_commit`).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    gate: Arc<Mutex<()>>,
}

impl GroupCommit {
    /// Starts the lane: its batches on `lane_store` (on PostgreSQL a small pool of its
    /// own), the work they leave on `store`. Neither may itself have group commit, or the
    /// lane would keep its own queue alive forever.
    pub(crate) fn start(store: &Store, lane_store: Store, max_batch: usize) -> Arc<GroupCommit> {
        let (lane, queue) = mpsc::unbounded_channel();
        let gate = Arc::new(Mutex::new(()));
        let scope = match store.engine() {
            Engine::Sqlite => Scope::EveryJob,
            Engine::Postgres => Scope::SettledOnly,
        };
        tokio::spawn(run_lane(store.clone(), lane_store, queue, max_batch.max(1), scope, gate.clone()));
        Arc::new(GroupCommit { lane, gate })
    }

    /// Holds the lane before its next batch until the guard is dropped.
    #[cfg(feature = "testing")]
    pub(crate) async fn pause(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.gate.clone().lock_owned().await
    }

    pub(crate) async fn run<T, E>(&self, work: WorkFn<T, E>) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.queue(Closure(Some(work))).await
    }

    pub(crate) async fn pay(&self, pay: OwnedPay) -> Result<Order, PayError> {
        self.queue(pay).await
    }

    pub(crate) async fn create_order(&self, order: NewOrder) -> Result<Created, StoreError> {
        self.queue(order).await
    }

    async fn queue<W: Work>(&self, work: W) -> Result<W::Out, W::Err> {
        let (reply, answer) = oneshot::channel();
        let stopped = || W::Err::from(StoreError::GroupCommit("the commit pipeline has stopped".into()));
        self.lane.send(Box::new(WorkJob { work, result: None, reply })).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn run_lane(
    store: Store,
    lane_store: Store,
    mut queue: mpsc::UnboundedReceiver<Box<dyn Job>>,
    max_batch: usize,
    scope: Scope,
    gate: Arc<Mutex<()>>,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        drop(gate.lock().await);
        while batch.len() < max_batch
            && let Ok(job) = queue.try_recv()
        {
            batch.push(job);
        }
        // On PostgreSQL a batch with nothing to settle together opens no transaction.
        let shared = scope == Scope::EveryJob || worth_settling_together(&mut batch, store.engine());
        let outcome = if shared {
            let started = std::time::Instant::now();
            let outcome = run_batch(&lane_store, &mut batch, scope).await;
            let in_commit = batch.iter().filter(|job| scope == Scope::EveryJob || job.done()).count();
            metrics::histogram!("paykit_group_commit_batch_size").record(in_commit as f64);
            metrics::histogram!("paykit_group_commit_batch_seconds").record(started.elapsed().as_secs_f64());
            outcome
        } else {
            Ok(())
        };
        // Jobs the batch did not run (SettledOnly) run on their own, whatever became of
        // the batch: nothing of theirs was in it. After a failed batch, so do its settled
        // ones: a refusal decided against its undone writes (a wallet emptied by payments
        // that did not commit) would be wrong, and paying again is safe — a payment that did
        // commit after all comes back as this payer's.
        let mut leftovers = Vec::new();
        for job in batch.drain(..) {
            if scope == Scope::EveryJob || (job.done() && outcome.is_ok()) {
                job.finish(outcome.as_ref().map(|_| ()));
            } else {
                leftovers.push(job);
            }
        }
        run_on_their_own(&store, leftovers);
    }
}

/// Runs each job in a transaction of its own: those with the same serial key one after
/// another in the order given, the rest in parallel.
fn run_on_their_own(store: &Store, jobs: Vec<Box<dyn Job>>) {
    let mut lines: Vec<Vec<Box<dyn Job>>> = Vec::new();
    let mut line_of_key: HashMap<String, usize> = HashMap::new();
    for job in jobs {
        let line = job.serial_key().and_then(|key| line_of_key.get(key).copied());
        match line {
            Some(line) => lines[line].push(job),
            None => {
                if let Some(key) = job.serial_key() {
                    line_of_key.insert(key.to_owned(), lines.len());
                }
                lines.push(vec![job]);
            }
        }
    }
    for jobs in lines {
        let store = store.clone();
        tokio::spawn(async move {
            for job in jobs {
                job.run_on_its_own(store.clone()).await;
            }
        });
    }
}

async fn run_batch(store: &Store, batch: &mut [Box<dyn Job>], scope: Scope) -> Result<(), StoreError> {
    // On PostgreSQL the lane's connections wait at most a quarter second for a lock
    // (`lane_pool`).
    let mut tx = store.begin().await?;
    if let Err(e) = settle_together(&mut tx, batch).await {
        let _ = tx.rollback().await;
        return Err(StoreError::GroupCommit(format!("the shared transaction broke: {e}")));
    }
    for job in batch.iter_mut().filter(|_| scope == Scope::EveryJob) {
        if !job.run(&mut tx).await {
            let _ = tx.rollback().await;
            return Err(StoreError::GroupCommit("the shared transaction broke".into()));
        }
    }
    let committing = std::time::Instant::now();
    let committed = tx.commit().await;
    metrics::histogram!("paykit_group_commit_commit_seconds").record(committing.elapsed().as_secs_f64());
    committed
}

/// Whether the batch has payments to settle together (else, on PostgreSQL, it needs no
/// transaction of its own).
fn worth_settling_together(batch: &mut [Box<dyn Job>], engine: Engine) -> bool {
    let mut pays = Vec::new();
    for job in batch.iter_mut() {
        if let Together::Payment(pay, _) = job.together() {
            pays.push(pay);
        }
    }
    !crate::pay_together::taken_together(&pays, engine).is_empty()
}

/// Settles the batch's new orders, then its payments, with set-based statements; what
/// they leave runs job by job afterwards.
async fn settle_together(tx: &mut Tx, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let mut orders = Vec::new();
    let mut payments = Vec::new();
    for job in batch.iter_mut() {
        match job.together() {
            Together::No => {}
            Together::Payment(pay, outcome) => payments.push((pay, outcome)),
            Together::NewOrder(order, outcome) => orders.push((order, outcome)),
        }
    }
    if !orders.is_empty() {
        let (mut new, outcomes): (Vec<&mut NewOrder>, Vec<_>) = orders.into_iter().unzip();
        for (outcome, settled) in outcomes.into_iter().zip(tx.insert_orders_together(&mut new).await?) {
            *outcome = settled;
        }
    }
    if !payments.is_empty() {
        let pays: Vec<&OwnedPay> = payments.iter().map(|(pay, _)| *pay).collect();
        for ((_, outcome), settled) in payments.into_iter().zip(tx.pay_orders_together(&pays).await?) {
            *outcome = settled;
        }
    }
    Ok(())
}
