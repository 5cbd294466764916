//! Group commit: write transactions from concurrent requests share one database transaction
//! and so one commit — one fsync — the way TigerBeetle batches transfers. Each request's
//! work runs inside its own savepoint, so a failing one is rolled back alone while its
//! neighbours commit, and every request hears its outcome only after the shared commit, so
//! an acknowledged write is durable.
//!
//! The lane is one task with one connection at a time: it takes whatever is queued (up to
//! a batch), runs each piece of work in a savepoint, commits, then answers everyone.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{BoxFuture, Store, StoreError, Tx};

/// One request's work inside a shared transaction.
trait Job: Send {
    /// Runs the work in its own savepoint. False when the transaction itself broke (the
    /// savepoint could not be taken or undone): the batch cannot commit.
    fn run<'a>(&'a mut self, tx: &'a mut Tx) -> BoxFuture<'a, bool>;
    /// Answers the request once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

type WorkFn<T, E> = Box<dyn for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<T, E>> + Send>;

struct TypedJob<T, E> {
    work: Option<WorkFn<T, E>>,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T: Send + 'static, E: From<StoreError> + Send + 'static> Job for TypedJob<T, E> {
    fn run<'a>(&'a mut self, tx: &'a mut Tx) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Some(work) = self.work.take() else { return true };
            if let Err(e) = tx.execute_raw("SAVEPOINT group_job").await {
                self.result = Some(Err(E::from(e)));
                return false;
            }
            let result = work(tx).await;
            let undo = match &result {
                Ok(_) => tx.execute_raw("RELEASE SAVEPOINT group_job").await,
                Err(_) => match tx.execute_raw("ROLLBACK TO SAVEPOINT group_job").await {
                    Ok(()) => tx.execute_raw("RELEASE SAVEPOINT group_job").await,
                    Err(e) => Err(e),
                },
            };
            self.result = Some(result);
            undo.is_ok()
        })
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let answer = match (commit, self.result) {
            // Its own refusal stands whatever happened to the others: nothing of it was kept.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Err(e), _) => Err(E::from(StoreError::GroupCommit(e.to_string()))),
            (Ok(()), None) => Err(E::from(StoreError::GroupCommit("the work never ran".into()))),
        };
        let _ = self.reply.send(answer);
    }
}

/// A store's group commit: one lane (see [`crate::Store::with_group_commit`] for why one).
pub(crate) struct GroupCommit {
    lane: mpsc::UnboundedSender<Box<dyn Job>>,
}

impl GroupCommit {
    /// Starts the lane on `store` (which must not itself have group commit, or the lane
    /// would keep its own queue alive forever).
    pub(crate) fn start(store: &Store, max_batch: usize) -> Arc<GroupCommit> {
        let (lane, queue) = mpsc::unbounded_channel();
        tokio::spawn(run_lane(store.clone(), queue, max_batch.max(1)));
        Arc::new(GroupCommit { lane })
    }

    pub(crate) async fn run<T, E>(&self, work: WorkFn<T, E>) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob { work: Some(work), result: None, reply });
        let stopped = || E::from(StoreError::GroupCommit("the commit pipeline has stopped".into()));
        self.lane.send(job).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn run_lane(store: Store, mut queue: mpsc::UnboundedReceiver<Box<dyn Job>>, max_batch: usize) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        let outcome = run_batch(&store, &mut batch).await;
        metrics::histogram!("paykit_group_commit_batch_size").record(batch.len() as f64);
        for job in batch.drain(..) {
            job.finish(outcome.as_ref().map(|_| ()));
        }
    }
}

async fn run_batch(store: &Store, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    for job in batch.iter_mut() {
        if !job.run(&mut tx).await {
            let _ = tx.rollback().await;
            return Err(StoreError::GroupCommit("the shared transaction broke".into()));
        }
    }
    tx.commit().await
}
