//! Replay protection for signed requests: each (party, nonce) is accepted once.
//!
//! Nonces are written by one background writer in multi-row inserts, so a burst of signed
//! requests costs one statement and one commit instead of a transaction each. How long a
//! request waits depends on what it does ([`NonceUse`]):
//!
//! - a request that changes something waits until its nonce is committed, so a replay is
//!   refused even after a crash, and even when another gateway process took the original;
//!   a write that can carry its nonce ([`WriteNonce`], a new order) commits it in its own
//!   transaction instead, so the request costs one commit, not two;
//! - a read waits only for the check: refused when the nonce is in flight in this process
//!   or already stored, otherwise answered while its nonce is written behind it, with the
//!   reads' nonces of the next few milliseconds in one insert (another process, which sees
//!   only what is stored, would take a replay in those milliseconds). A crash can lose
//!   those last read nonces (closing the store writes them first), letting such a read be
//!   replayed once inside the five-minute window; a read changes nothing, so the replay
//!   learns only what the original answer already said. A batch whose insert fails keeps
//!   its reads' nonces in flight and tries them again with the next batch.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use paykit_core::signing::TIMESTAMP_TOLERANCE_SECS;
use paykit_core::time::Timestamp;
use tokio::sync::{mpsc, oneshot};

use crate::{Engine, Result, Store, StoreError, for_engine, value_rows};

/// What the signed request will do, which decides how durable its nonce must be first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceUse {
    /// It may change state: its nonce is committed before it runs.
    Write,
    /// It only reads: its nonce is checked now and written behind it.
    Read,
}

/// Nonces this process has accepted but not yet committed, and the writer's queue.
pub(crate) struct NonceWriter {
    in_flight: Arc<Mutex<HashSet<(String, String)>>>,
    queue: mpsc::UnboundedSender<Queued>,
}

enum Queued {
    Nonce(Spent),
    /// Write what is waiting now, then answer: before the store closes, so reads' nonces
    /// still gathering are not lost with it.
    Flush(oneshot::Sender<()>),
}

struct Spent {
    party_id: String,
    nonce: String,
    at: Timestamp,
    /// Present when the request waits for the commit: true if the nonce was new.
    reply: Option<oneshot::Sender<Result<bool>>>,
}

/// Nonces per insert: three parameters each, far below either engine's limit.
const MAX_BATCH: usize = 500;

/// How long reads' nonces wait for others to share their insert. A crash loses at most
/// this much more of them (see the module documentation); this process still refuses
/// their replays meanwhile, as they stay in flight.
const READS_LINGER: std::time::Duration = std::time::Duration::from_millis(10);

impl NonceWriter {
    /// Starts the writer on `store`, which must not hold a writer itself (its queue would
    /// keep the task alive forever).
    fn start(store: Store) -> NonceWriter {
        let (queue, pending) = mpsc::unbounded_channel();
        let in_flight = Arc::new(Mutex::new(HashSet::new()));
        tokio::spawn(write_nonces(store, pending, in_flight.clone()));
        NonceWriter { in_flight, queue }
    }

    /// Marks the nonce in flight; None when it already is (a concurrent replay).
    fn claim(&self, party_id: &str, nonce: &str) -> Option<Claim> {
        let key = (party_id.to_owned(), nonce.to_owned());
        if !self.in_flight.lock().expect("nonce lock").insert(key.clone()) {
            return None;
        }
        Some(Claim { in_flight: self.in_flight.clone(), key: Some(key) })
    }

    /// Returns once every nonce queued before the call has been written (or its insert
    /// has failed).
    pub(crate) async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(Queued::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

/// A nonce held in flight in this process, refused to any other request here, until it is
/// handed to the writer (which clears it after its commit) or dropped (released: the
/// request was refused, went away, or its own write committed it or failed).
struct Claim {
    in_flight: Arc<Mutex<HashSet<(String, String)>>>,
    /// None once handed to the writer.
    key: Option<(String, String)>,
}

impl Claim {
    fn key(&self) -> &(String, String) {
        self.key.as_ref().expect("a claim holds its key until handed over, which consumes it")
    }

    /// Queues the nonce for the writer, `reply` if the caller waits for its commit.
    fn hand_over(
        mut self,
        writer: &NonceWriter,
        at: Timestamp,
        reply: Option<oneshot::Sender<Result<bool>>>,
    ) -> Result<()> {
        let (party_id, nonce) = self.key().clone();
        if writer.queue.send(Queued::Nonce(Spent { party_id, nonce, at, reply })).is_err() {
            return Err(StoreError::GroupCommit("the nonce writer has stopped".into()));
        }
        self.key = None;
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            self.in_flight.lock().expect("nonce lock").remove(key);
        }
    }
}

/// A signed write's nonce, claimed in flight in this process, for the write to spend in its
/// own transaction ([`Store::create_order_spending`]): the nonce and what the request writes
/// commit together or not at all, and a replay (the nonce already stored) writes nothing.
/// Dropped, it leaves flight; the write holds it until it has committed or failed, even if
/// the request goes away meanwhile. A write that does not carry it spends it with
/// [`Store::spend_write_nonce`].
pub struct WriteNonce {
    claim: Claim,
    at: Timestamp,
    key_to_confirm: Option<String>,
}

/// A nonce as stored: party, nonce, when it was seen (unix microseconds).
pub(crate) type NonceRow = (String, String, i64);

/// A write's nonce as its write spends it.
#[derive(Debug, Clone)]
pub(crate) struct NonceToSpend {
    pub row: NonceRow,
    /// The signing key the request was checked with from memory
    /// ([`Store::known_signing_key`]): the write reads that it is still active before it
    /// writes anything, and refuses with [`StoreError::KeyRevoked`] if not.
    pub key_to_confirm: Option<String>,
}

impl WriteNonce {
    /// The request was checked with a key from memory, `key_id`, whose status this
    /// nonce's write is to read in its own transaction.
    pub fn confirming_key(mut self, key_id: &str) -> WriteNonce {
        self.key_to_confirm = Some(key_id.to_owned());
        self
    }

    pub(crate) fn to_spend(&self) -> NonceToSpend {
        let (party_id, nonce) = self.claim.key().clone();
        NonceToSpend { row: (party_id, nonce, self.at.unix_micros()), key_to_confirm: self.key_to_confirm.clone() }
    }
}

/// A signed read's nonce, in flight in this process from its claim until it is spent or
/// dropped ([`Claim`]).
pub struct ReadNonce<'a> {
    writer: &'a NonceWriter,
    claim: Claim,
}

impl ReadNonce<'_> {
    /// Spends the nonce, which the caller has found not stored (after claiming it): it is
    /// written behind the read.
    pub fn spend(self, now: Timestamp) -> Result<()> {
        self.claim.hand_over(self.writer, now, None)
    }
}

async fn write_nonces(
    store: Store,
    mut pending: mpsc::UnboundedReceiver<Queued>,
    in_flight: Arc<Mutex<HashSet<(String, String)>>>,
) {
    let mut received = Vec::with_capacity(MAX_BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    // Reads' nonces whose insert failed: they stay in flight (so this process still
    // refuses their replays) and go again with the next batch.
    let mut unstored: Vec<Spent> = Vec::new();
    while pending.recv_many(&mut received, MAX_BATCH).await > 0 {
        let mut awaited = sort(&mut received, &mut batch, &mut flushes);
        // Reads wait for nobody: their nonces gather for a moment into one insert, until a
        // request that waits joins them. Written at once, a burst of signed GETs was a
        // commit for every few nonces, each dirtying the append pages again (the nonces'
        // own index pages are random either way): 170 MB/s of writes at 10,000 GET/s.
        let linger_until = tokio::time::Instant::now() + READS_LINGER;
        while !awaited && batch.len() < MAX_BATCH {
            let room = MAX_BATCH - batch.len();
            match tokio::time::timeout_at(linger_until, pending.recv_many(&mut received, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => awaited = sort(&mut received, &mut batch, &mut flushes),
            }
        }
        let again = unstored.len().min(MAX_BATCH);
        batch.extend(unstored.drain(..again));
        if !batch.is_empty() {
            store_batch(&store, &mut batch, &in_flight, &mut unstored).await;
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// What arrived, sorted into nonces and requests to flush; true when someone waits on
/// the batch (a write's nonce, or a flush), so it goes now.
fn sort(received: &mut Vec<Queued>, batch: &mut Vec<Spent>, flushes: &mut Vec<oneshot::Sender<()>>) -> bool {
    let mut awaited = false;
    for q in received.drain(..) {
        match q {
            Queued::Nonce(spent) => {
                awaited |= spent.reply.is_some();
                batch.push(spent);
            }
            Queued::Flush(done) => {
                awaited = true;
                flushes.push(done);
            }
        }
    }
    awaited
}

/// Inserts a batch and answers for each of its nonces; reads' nonces whose insert failed
/// go to `unstored`.
async fn store_batch(
    store: &Store,
    batch: &mut Vec<Spent>,
    in_flight: &Mutex<HashSet<(String, String)>>,
    unstored: &mut Vec<Spent>,
) {
    let mut rows: Vec<NonceRow> =
        batch.iter().map(|s| (s.party_id.clone(), s.nonce.clone(), s.at.unix_micros())).collect();
    // One order for every process's batches, so two gateways inserting the same nonces
    // on PostgreSQL wait for each other instead of deadlocking.
    rows.sort_unstable();
    let outcome = store.write_statement(move |conn| Box::pin(async move { insert_new(conn, &rows).await })).await;
    metrics::histogram!("paykit_nonce_batch_size").record(batch.len() as f64);
    if let Err(e) = &outcome {
        tracing::warn!(error = %e, "a batch of nonces was not stored; reads' nonces stay in flight and go again");
    }
    {
        // Out of flight only now: from here on the database answers for them (or, for
        // a write whose insert failed, nothing ran).
        let mut in_flight = in_flight.lock().expect("nonce lock");
        for s in batch.iter().filter(|s| outcome.is_ok() || s.reply.is_some()) {
            in_flight.remove(&(s.party_id.clone(), s.nonce.clone()));
        }
    }
    for s in batch.drain(..) {
        let Some(reply) = s.reply else {
            if outcome.is_err() {
                unstored.push(s);
            }
            continue;
        };
        let answer = match &outcome {
            Ok(inserted) => Ok(inserted.contains(&(s.party_id, s.nonce))),
            Err(e) => Err(StoreError::GroupCommit(format!("recording the nonce failed: {e}"))),
        };
        let _ = reply.send(answer);
    }
}

/// Inserts the nonces not stored yet; returns those it inserted. On PostgreSQL a nonce
/// another transaction is inserting waits for it to end.
pub(crate) async fn insert_new(conn: &mut sqlx::AnyConnection, rows: &[NonceRow]) -> Result<HashSet<(String, String)>> {
    let sql = format!(
        "INSERT INTO request_nonces (party_id, nonce, seen_at_us) VALUES {} \
         ON CONFLICT (party_id, nonce) DO NOTHING RETURNING party_id, nonce",
        value_rows(1, 3, rows.len())
    );
    let mut query = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(for_engine(Engine::of(conn), sql)));
    for (party_id, nonce, at) in rows {
        query = query.bind(party_id).bind(nonce).bind(*at);
    }
    Ok(query.fetch_all(conn).await?.into_iter().collect())
}

/// Spends `nonce` in `conn`'s transaction; false when it is already stored (a replay).
pub(crate) async fn spend_in(conn: &mut sqlx::AnyConnection, nonce: &NonceRow) -> Result<bool> {
    Ok(!insert_new(conn, std::slice::from_ref(nonce)).await?.is_empty())
}

impl Store {
    fn nonce_writer(&self) -> &NonceWriter {
        self.nonce_writer.get_or_init(|| NonceWriter::start(Store { nonce_writer: Arc::default(), ..self.clone() }))
    }

    /// Spends a nonce. Returns false if the party already used it (a replay). See the
    /// module documentation for what `used_for` changes.
    pub async fn spend_nonce(&self, party_id: &str, nonce: &str, now: Timestamp, used_for: NonceUse) -> Result<bool> {
        if used_for == NonceUse::Read {
            let Some(claim) = self.claim_read_nonce(party_id, nonce) else { return Ok(false) };
            if self.nonce_stored(party_id, nonce).await? {
                return Ok(false);
            }
            claim.spend(now)?;
            return Ok(true);
        }
        match self.claim_write_nonce(party_id, nonce, now) {
            Some(claim) => self.spend_write_nonce(claim).await,
            None => Ok(false),
        }
    }

    /// Claims a write's nonce in flight in this process (None when it already is: a
    /// concurrent replay), for its write to spend ([`WriteNonce`]).
    pub fn claim_write_nonce(&self, party_id: &str, nonce: &str, now: Timestamp) -> Option<WriteNonce> {
        Some(WriteNonce { claim: self.nonce_writer().claim(party_id, nonce)?, at: now, key_to_confirm: None })
    }

    /// Spends a claimed write's nonce on its own, waiting for its commit. Returns false if
    /// the party already used it (a replay); [`StoreError::KeyRevoked`], spending nothing,
    /// if its key to confirm is no longer active (the nonce writer reads no keys, so that
    /// read comes first, on its own).
    pub async fn spend_write_nonce(&self, nonce: WriteNonce) -> Result<bool> {
        if let Some(key_id) = &nonce.key_to_confirm
            && !self.key_is_active(key_id).await?
        {
            return Err(StoreError::KeyRevoked);
        }
        let (reply, answer) = oneshot::channel();
        nonce.claim.hand_over(self.nonce_writer(), nonce.at, Some(reply))?;
        answer.await.unwrap_or_else(|_| Err(StoreError::GroupCommit("the nonce writer has stopped".into())))
    }

    async fn nonce_stored(&self, party_id: &str, nonce: &str) -> Result<bool> {
        let stored: Option<i64> = sqlx::query_scalar("SELECT 1 FROM request_nonces WHERE party_id = $1 AND nonce = $2")
            .bind(party_id)
            .bind(nonce)
            .fetch_optional(self.reader())
            .await?;
        Ok(stored.is_some())
    }

    /// Claims a read's nonce in flight in this process (None when it already is), before
    /// the database is asked whether it holds the nonce: asked the other way round, a
    /// replay could slip between the original's commit and its own claim.
    pub fn claim_read_nonce(&self, party_id: &str, nonce: &str) -> Option<ReadNonce<'_>> {
        let writer = self.nonce_writer();
        Some(ReadNonce { writer, claim: writer.claim(party_id, nonce)? })
    }

    /// Forgets nonces old enough that their requests' timestamps are outside the window
    /// anyway (with a margin for clocks on either side). Returns how many were removed.
    pub async fn prune_nonces(&self, now: Timestamp) -> Result<u64> {
        let cutoff = now.plus_secs(-3 * TIMESTAMP_TOLERANCE_SECS);
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM request_nonces WHERE seen_at_us < $1")
            .bind(cutoff.unix_micros())
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
