//! paykit's storage: one API over SQLite (the embedded default) and PostgreSQL.
//!
//! Every query is one SQL text that both engines run (sqlx's `Any` driver; SQLite binds
//! `$1, $2…` too). Money is integer minor units and instants are integer microseconds, the
//! types both engines and the `Any` driver carry exactly.
//!
//! Writes happen inside a [`Tx`]. A `Tx` is the unit the commit pipeline will batch: the
//! ledger operations of several requests can run in one `Tx`, each under its own savepoint
//! ([`Tx::savepoint`]), so that one request's failure rolls back only its own work.

pub mod bank;
pub mod bills;
mod checkpoint;
pub mod console;
pub mod events;
mod group_commit;
pub mod ids;
pub mod ledger;
pub mod merchants;
pub mod nonces;
pub mod operators;
mod order_batch;
pub mod orders;
pub mod pay_context;
mod pay_together;
pub mod payments;
mod point_read;
pub mod print;
pub mod refunds;
pub mod risk;
mod rows_insert;
pub mod secrets;
#[cfg(feature = "testing")]
pub mod testing;
pub mod users;
pub mod verify;
pub mod wallet_money;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Connection, Executor, SqlSafeStr};

pub use ledger::AccountMeta;

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }

    /// The engine a connection talks to.
    pub(crate) fn of(conn: &sqlx::AnyConnection) -> Engine {
        if conn.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME { Engine::Sqlite } else { Engine::Postgres }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {0:?} is neither sqlite: nor postgres:")]
    UnsupportedUrl(String),
    #[error("cannot create the database folder {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From a point read on SQLite ([`point_read`]).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot start the WAL checkpointer: {0}")]
    Checkpointer(std::io::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("account {account_id} has insufficient funds")]
    InsufficientFunds { account_id: String },
    #[error("unknown account {0}")]
    UnknownAccount(String),
    #[error("posting in {posting} to account {account_id} held in {account}")]
    CurrencyMismatch { account_id: String, posting: String, account: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The shared transaction of a group commit failed; nothing of the request was kept.
    #[error("group commit failed: {0}")]
    GroupCommit(String),
    /// The signed request's nonce was already stored: a replay, of which nothing was kept.
    #[error("the request's nonce was already used")]
    NonceReplayed,
    /// The signing key a write's request was checked with is no longer active: nothing
    /// was kept.
    #[error("the request's signing key is not active")]
    KeyRevoked,
}

impl StoreError {
    /// Input the database refused as text (PostgreSQL rejects NUL characters).
    pub fn is_bad_text(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("22021"))
    }

    /// Errors worth retrying as they stand (the database went away or a transaction lost a
    /// serialisation race), as opposed to answers about the data.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::GroupCommit(_) => true,
            StoreError::Sqlite(e) => point_read::is_busy(e),
            StoreError::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|code| transient_code(&code)),
            StoreError::Database(e) => matches!(
                e,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed
            ),
            _ => false,
        }
    }
}

/// Whether a database error code means the same request may succeed if tried again:
/// PostgreSQL's deadlock detected or serialization failure (SQLSTATE, five characters), or
/// SQLite's busy codes (a number; see `point_read::is_busy_code`) — another process held
/// the file's lock past the busy timeout.
fn transient_code(code: &str) -> bool {
    match code {
        "40P01" | "40001" => true,
        _ if code.len() < 5 => code.parse::<i32>().is_ok_and(point_read::is_busy_code),
        _ => false,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Connections for PostgreSQL, and readers for SQLite (which has one writer). With
    /// group commit on, PostgreSQL also has the lane's [`LANE_CONNECTIONS`] and the order
    /// batcher's one.
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { max_connections: 16, acquire_timeout: Duration::from_secs(10) }
    }
}

/// The handle the rest of paykit holds. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Engine,
    /// SQLite allows one writer at a time; a one-connection pool makes writers queue in
    /// the process instead of failing with SQLITE_BUSY. On PostgreSQL both are one pool.
    writer: AnyPool,
    reader: AnyPool,
    /// Account metadata never changes once written, so it is cached for the hot path.
    accounts: Arc<RwLock<HashMap<String, AccountMeta>>>,
    /// The same metadata by owner, kind and currency: every payment looks up two accounts
    /// by owner, and an account's id never changes once committed.
    owner_accounts: Arc<RwLock<HashMap<String, AccountMeta>>>,
    /// What never changes about a merchant once created: its name (for the consumer's
    /// records) and default notify_url (for every payment's event).
    fixed_merchants: Arc<RwLock<HashMap<String, merchants::FixedMerchant>>>,
    /// Signing keys read as active, by key id (the table's primary key; the entry names its
    /// party). A key's secret never changes once issued, only its status does, so whoever
    /// uses one from here reads its status in its own write
    /// ([`nonces::NonceToSpend::key_to_confirm`]).
    known_signing_keys: Arc<RwLock<HashMap<String, merchants::SigningKey>>>,
    group_commit: Option<Arc<group_commit::GroupCommit>>,
    /// SQLite's point reads on the calling thread (see `point_read`); none on PostgreSQL
    /// or for an in-memory database, which another connection cannot open.
    point_readers: Option<Arc<point_read::SqliteReaders>>,
    /// A file database's WAL checkpoints, off the writer (see `checkpoint`).
    checkpointer: Option<Arc<checkpoint::Checkpointer>>,
    /// Started on first use, inside the runtime (see `nonces`).
    nonce_writer: Arc<OnceLock<nonces::NonceWriter>>,
    /// PostgreSQL's new orders in batches, with group commit on (see `order_batch`).
    order_batcher: Option<Arc<order_batch::OrderBatcher>>,
    /// PostgreSQL's commit-pipeline lane's own pool (see [`lane_pool`]), opened on first
    /// use; none on SQLite, whose lane is its writer.
    lane_writer: Option<AnyPool>,
}

impl Store {
    /// Opens `url`: `sqlite:PATH` / `sqlite://PATH` / a bare file path (created with its
    /// folder on first use), or `postgres://…`. Does not migrate; call [`Store::migrate`].
    pub async fn connect(url: &str, config: &StoreConfig) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (engine, url, sqlite_file_readable) = normalise_url(url)?;
        let options = AnyConnectOptions::from_str(&url)?;
        match engine {
            Engine::Sqlite => {
                // The file as sqlx's driver will open it: from the parsed URL, which has
                // lost its dot segments and escapes, so the point readers open the same one.
                let file = sqlx::sqlite::SqliteConnectOptions::try_from(&options)?.get_filename().to_owned();
                // A file database checkpoints on a thread of its own (see `checkpoint`), unless
                // opened read-only: the checkpointer writes the database file.
                let checkpoints_elsewhere = sqlite_file_readable && !url.contains("mode=ro");
                let writer = pool_options(engine, config)
                    .max_connections(1)
                    .after_connect(move |conn, meta| sqlite_writer_pragmas(conn, meta, checkpoints_elsewhere))
                    .connect_with(options.clone())
                    .await?;
                let reader = pool_options(engine, config)
                    .max_connections(config.max_connections.max(1))
                    .after_connect(sqlite_pragmas)
                    .connect_with(options)
                    .await?;
                let mut store = Store::from_pools(engine, writer, reader);
                if sqlite_file_readable {
                    store.point_readers = Some(Arc::new(point_read::SqliteReaders::open_beside(&file)?));
                }
                if checkpoints_elsewhere {
                    store.checkpointer = Some(Arc::new(checkpoint::Checkpointer::start(&file)?));
                }
                Ok(store)
            }
            Engine::Postgres => {
                let lane = lane_pool(&options, config);
                let pool = pool_options(engine, config)
                    .max_connections(config.max_connections.max(1))
                    .connect_with(options)
                    .await?;
                Ok(Store { lane_writer: Some(lane), ..Store::from_pools(engine, pool.clone(), pool) })
            }
        }
    }

    fn from_pools(engine: Engine, writer: AnyPool, reader: AnyPool) -> Store {
        Store {
            engine,
            writer,
            reader,
            accounts: Arc::default(),
            owner_accounts: Arc::default(),
            fixed_merchants: Arc::default(),
            known_signing_keys: Arc::default(),
            group_commit: None,
            point_readers: None,
            checkpointer: None,
            nonce_writer: Arc::default(),
            order_batcher: None,
            lane_writer: None,
        }
    }

    /// Routes writes through a commit pipeline that groups up to `max_batch` concurrent
    /// ones into one transaction: on SQLite every write (see [`Store::write_lane`]), on
    /// PostgreSQL the payments it can settle together, with new orders inserted in batches
    /// beside it (`order_batch`). One lane: parallel lanes' batches would each hold many
    /// balance rows at once. Needs a Tokio runtime.
    pub fn with_group_commit(mut self, max_batch: usize) -> Store {
        let plain = Store { group_commit: None, nonce_writer: Arc::default(), order_batcher: None, ..self.clone() };
        let lane = Store { writer: self.lane_writer.clone().unwrap_or_else(|| self.writer.clone()), ..plain.clone() };
        self.group_commit = Some(group_commit::GroupCommit::start(&plain, lane, max_batch));
        if self.engine == Engine::Postgres {
            self.order_batcher = Some(Arc::new(order_batch::OrderBatcher::start(plain)));
        }
        self
    }

    /// Runs `work` in a write transaction and commits it; an `Err` from `work` rolls back
    /// everything it did. With group commit on SQLite, the transaction is shared with
    /// concurrent callers (`work` in its own savepoint) and this returns after the shared
    /// commit; on PostgreSQL it is the caller's own (see [`Store::write_lane`]).
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<T, E>> + Send + 'static,
    {
        if let Some(group) = self.write_lane() {
            return group.run(Box::new(work)).await;
        }
        let mut tx = self.begin().await?;
        match work(&mut tx).await {
            Ok(v) => {
                tx.commit().await?;
                Ok(v)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// [`Store::write`] for work that is one statement: it joins the [write
    /// lane](Store::write_lane) if there is one, else runs on its own (one statement
    /// commits by itself: no BEGIN and COMMIT round trips).
    pub(crate) async fn write_statement<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'a> FnOnce(&'a mut sqlx::AnyConnection) -> BoxFuture<'a, Result<T, E>> + Send + 'static,
    {
        if let Some(group) = self.write_lane() {
            return group.run(Box::new(move |tx: &mut Tx| work(tx.conn()))).await;
        }
        let mut conn = self.writer.acquire().await.map_err(StoreError::from)?;
        work(&mut conn).await
    }

    /// The group commit every write joins: SQLite's, whose lane holds the one writer. On
    /// PostgreSQL only payments join the lane ([`Store::pay_order`]); any other write
    /// commits on its own connection, in parallel with the lane instead of behind it, and
    /// out of the lane's transaction, whose locks must all come in one order.
    fn write_lane(&self) -> Option<&group_commit::GroupCommit> {
        self.group_commit.as_deref().filter(|_| self.engine == Engine::Sqlite)
    }

    /// Holds the group-commit lane before its next batch until the guard is dropped, so a
    /// test can queue a batch it knows. None without group commit.
    #[cfg(feature = "testing")]
    pub async fn pause_group_commit(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.group_commit {
            Some(group) => Some(group.pause().await),
            None => None,
        }
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Applies the migrations for this engine that have not run yet. Safe to call from
    /// several processes at once (PostgreSQL takes an advisory lock).
    pub async fn migrate(&self) -> Result<()> {
        let migrator = migrator(self.engine);
        if self.engine == Engine::Postgres {
            migrator.run(&self.writer).await?;
            return Ok(());
        }
        // A migration may sort a whole table (CREATE INDEX), which SQLite should be free to
        // spill to a temporary file, unlike a batch's savepoint journals (see
        // `sqlite_writer_pragmas`).
        let mut writer = self.writer.acquire().await?;
        writer.execute("PRAGMA temp_store = DEFAULT;").await?;
        let migrated = migrator.run(&mut *writer).await;
        let restored = writer.execute("PRAGMA temp_store = MEMORY;").await;
        // A failed migration's own error first.
        migrated?;
        restored?;
        Ok(())
    }

    /// Answers whether the database can be reached (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        if self.point_readers.is_some() {
            self.read_one("SELECT 1", &[], |_| Ok(())).await?;
        }
        Ok(())
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx> {
        let inner = match self.engine {
            // IMMEDIATE takes the write lock at once, so a transaction never fails half way
            // when it first writes.
            Engine::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.writer.begin().await?,
        };
        Ok(Tx { inner, store: self.clone(), savepoints: 0, opened_here: Vec::new() })
    }

    /// The pool for queries that only read.
    pub(crate) fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// Closes the pools, once the reads' nonces still gathering are written.
    pub async fn close(&self) {
        if let Some(nonces) = self.nonce_writer.get() {
            nonces.flush().await;
        }
        if let Some(readers) = &self.point_readers {
            readers.close();
        }
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.stop().await;
        }
        self.writer.close().await;
        self.reader.close().await;
        if let Some(lane) = &self.lane_writer {
            lane.close().await;
        }
    }
}

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    inner: sqlx::Transaction<'static, Any>,
    store: Store,
    savepoints: u32,
    /// Accounts this transaction created: not cached until committed (it may roll back).
    opened_here: Vec<String>,
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        self.inner.commit().await?;
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        self.inner.rollback().await?;
        Ok(())
    }

    /// Runs `op` under a savepoint: if it fails, only its own writes are undone and the
    /// transaction carries on. This is what lets a commit pipeline put many requests'
    /// operations in one transaction without one failure failing its neighbours.
    pub async fn savepoint<T, F>(&mut self, op: F) -> Result<T>
    where
        F: AsyncFnOnce(&mut Tx) -> Result<T>,
    {
        self.in_savepoint(op).await?
    }

    /// [`Tx::savepoint`] keeping the two failures apart: the outer `Err` says the
    /// transaction itself broke (the savepoint could not be taken or undone), the inner
    /// one is `op`'s own, whose writes are gone while the transaction carries on.
    pub(crate) async fn in_savepoint<T, E, F>(&mut self, op: F) -> Result<Result<T, E>>
    where
        F: AsyncFnOnce(&mut Tx) -> Result<T, E>,
    {
        self.savepoints += 1;
        let name = format!("sp{}", self.savepoints);
        self.execute_raw(&format!("SAVEPOINT {name}")).await?;
        let outcome = op(self).await;
        if outcome.is_err() {
            self.execute_raw(&format!("ROLLBACK TO SAVEPOINT {name}")).await?;
        }
        self.execute_raw(&format!("RELEASE SAVEPOINT {name}")).await?;
        Ok(outcome)
    }

    pub(crate) async fn execute_raw(&mut self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut *self.inner).await?;
        Ok(())
    }

    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.inner
    }

    pub fn engine(&self) -> Engine {
        self.store.engine
    }
}

/// `($first, …), (…), …`: `rows` groups of `per_row` numbered placeholders, for a
/// multi-row `VALUES` list.
pub(crate) fn value_rows(first: usize, per_row: usize, rows: usize) -> String {
    (0..rows).map(|r| format!("({})", placeholders(first + r * per_row, per_row))).collect::<Vec<_>>().join(", ")
}

/// `$first, $first+1, …` for `n` values (one row of a `VALUES` list, or an `IN (…)` list).
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// `sql` as `engine` runs it best: on SQLite, when its placeholders are `$1, $2, …, $n`, each
/// once and in that order (as [`value_rows`] writes them), each becomes an anonymous `?`;
/// otherwise, and on PostgreSQL, `sql` unchanged.
///
/// SQLite finds a named parameter by a linear scan of the statement's names, when it
/// prepares the statement and again each time sqlx asks a parameter's name to bind it: n
/// named parameters cost O(n²). A nonce batch of 500 rows has 1,500, and the scans were 7%
/// of the gateway's CPU under signed GETs (BENCHMARKS.md). Anonymous ones are never looked up.
/// It reads every `$` followed by digits as a placeholder, so it is for generated
/// statements whose text holds no `$` in a literal or comment.
pub(crate) fn for_engine(engine: Engine, sql: String) -> String {
    if engine != Engine::Sqlite || !sql.contains('$') {
        return sql;
    }
    let mut out = String::with_capacity(sql.len());
    let (mut next, mut rest) = (1usize, sql.as_str());
    while let Some(at) = rest.find('$') {
        let digits = rest[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
        if rest[at + 1..at + 1 + digits].parse() != Ok(next) {
            return sql;
        }
        out.push_str(&rest[..at]);
        out.push('?');
        next += 1;
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    out
}

pub type BoxFuture<'c, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'c>>;

/// A PostgreSQL connection idle at least this long is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(2);

/// sqlx pings every connection it hands out by default: one more round trip to the server
/// (or, for SQLite, one more hand-off to the connection's thread) for every query, which
/// on 2 cores cost more than the query. A busy connection has just proved itself, so only
/// one that sat idle is pinged; SQLite's, being a file, never go away.
fn pool_options(engine: Engine, config: &StoreConfig) -> AnyPoolOptions {
    let options = AnyPoolOptions::new().acquire_timeout(config.acquire_timeout).test_before_acquire(false);
    match engine {
        Engine::Sqlite => options,
        Engine::Postgres => options.before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        }),
    }
}

/// Statements each lane connection keeps prepared: its multi-row statements have one text
/// for every row count, about six kinds for every batch size up to the group-commit
/// maximum (64 by default). With sqlx's default of 100, and the lane taking whichever pool
/// connection was free, most batches prepared (parsed and planned) about five statements
/// again, each one more round trip.
const LANE_STATEMENT_CACHE: &str = "1024";

/// See [`lane_pool`].
pub const LANE_CONNECTIONS: u32 = 2;

/// The lane waits at most this long for a row lock: the batch skips locked rows rather than
/// wait, but should any statement of it still wait this long, its settling fails and its
/// payments run on their own instead of the lane sitting behind it.
const LANE_LOCK_TIMEOUT: &str = "250ms";

/// PostgreSQL's commit-pipeline lane's own pool: its prepared statements stay with the
/// connections that run its batches, and its sessions' lock timeout touches nothing else.
/// Two connections for one batch at a time: sqlx pings a connection as it goes back to
/// its pool, and with one the next batch would wait for that round trip. Opened on first
/// use.
fn lane_pool(options: &AnyConnectOptions, config: &StoreConfig) -> AnyPool {
    let mut options = options.clone();
    if !options.database_url.query_pairs().any(|(k, _)| k == "statement-cache-capacity") {
        options.database_url.query_pairs_mut().append_pair("statement-cache-capacity", LANE_STATEMENT_CACHE);
    }
    pool_options(Engine::Postgres, config)
        .max_connections(LANE_CONNECTIONS)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // The lane reads and writes rows by key only, so it never wants a sequential
                // scan. Prepared statements move to a generic plan after five runs, made for
                // no rows in particular; one made while a table was still small
                // (device_proofs_used on a new database) scanned all of it for each batch
                // long after. Forcing a plan per run instead (plan_cache_mode) also planned
                // every foreign-key check again, a third of the lane's time in PostgreSQL.
                let settings = format!("SET lock_timeout = '{LANE_LOCK_TIMEOUT}'; SET enable_seqscan = off");
                sqlx::raw_sql(sqlx::AssertSqlSafe(settings)).execute(conn).await?;
                Ok(())
            })
        })
        .connect_lazy_with(options)
}

/// Run on every new SQLite connection.
fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        // WAL lets readers run beside the writer; synchronous=FULL makes an acknowledged
        // commit survive power loss.
        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
            .await?;
        Ok(())
    })
}

/// Run on the one SQLite writer connection, after [`sqlite_pragmas`].
/// `checkpoints_elsewhere`: a [`checkpoint::Checkpointer`] runs for this database.
fn sqlite_writer_pragmas(
    conn: &mut sqlx::AnyConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
    checkpoints_elsewhere: bool,
) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        sqlite_pragmas(conn, meta).await?;
        // A group-commit batch runs each request in a savepoint, and SQLite spilled the
        // savepoints' journal to a temporary file, created, written and unlinked on almost
        // every commit. A batch's journal is bounded by the batch: it stays in memory.
        conn.execute("PRAGMA temp_store = MEMORY;").await?;
        if checkpoints_elsewhere {
            let pages = checkpoint::WRITER_CHECKPOINT_PAGES;
            conn.execute(sqlx::AssertSqlSafe(format!("PRAGMA wal_autocheckpoint = {pages};"))).await?;
        }
        Ok(())
    })
}

/// The engine, sqlx's URL, and whether point reads may open the SQLite file beside sqlx:
/// not an in-memory database, which only its own connection sees, nor one opened with a
/// VFS or as immutable, which rusqlite's plain open would not match.
fn normalise_url(url: &str) -> Result<(Engine, String, bool)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Engine::Postgres, url.to_owned(), false));
    }
    let path = if let Some(rest) = url.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        rest
    } else if url.contains("://") {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    } else {
        url
    };
    let (file, query) = match path.split_once('?') {
        Some((f, q)) => (f, Some(q)),
        None => (path, None),
    };
    // SQLite gives each connection to an empty name a private temporary database of its
    // own: the writer and the readers would each see a different one.
    if file.is_empty() {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    if file != ":memory:"
        && let Some(dir) = Path::new(file).parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|source| StoreError::CreateDir { path: dir.display().to_string(), source })?;
    }
    let query = query.map_or_else(
        || "mode=rwc".to_owned(),
        |q| {
            if q.contains("mode=") { q.to_owned() } else { format!("{q}&mode=rwc") }
        },
    );
    let plain_file = file != ":memory:" && !["mode=memory", "vfs=", "immutable="].iter().any(|o| query.contains(o));
    Ok((Engine::Sqlite, format!("sqlite://{file}?{query}"), plain_file))
}

fn migrator(engine: Engine) -> Migrator {
    let files: &[(i64, &str, &'static str)] = match engine {
        Engine::Sqlite => &[
            (1, "foundation", include_str!("../../../migrations/sqlite/0001_foundation.sql")),
            (2, "pay", include_str!("../../../migrations/sqlite/0002_pay.sql")),
            (3, "lifecycle", include_str!("../../../migrations/sqlite/0003_lifecycle.sql")),
            (4, "wallet_money", include_str!("../../../migrations/sqlite/0004_wallet_money.sql")),
            (5, "bills", include_str!("../../../migrations/sqlite/0005_bills.sql")),
            (6, "risk", include_str!("../../../migrations/sqlite/0006_risk.sql")),
            (7, "refund_request_once", include_str!("../../../migrations/sqlite/0007_refund_request_once.sql")),
            (8, "console", include_str!("../../../migrations/sqlite/0008_console.sql")),
            (9, "print_requests", include_str!("../../../migrations/sqlite/0009_print_requests.sql")),
            (10, "risk_facts_by_index", include_str!("../../../migrations/sqlite/0010_risk_facts_by_index.sql")),
            (11, "due_and_paid_indexes", include_str!("../../../migrations/sqlite/0011_due_and_paid_indexes.sql")),
        ],
        Engine::Postgres => &[
            (1, "foundation", include_str!("../../../migrations/postgres/0001_foundation.sql")),
            (2, "pay", include_str!("../../../migrations/postgres/0002_pay.sql")),
            (3, "lifecycle", include_str!("../../../migrations/postgres/0003_lifecycle.sql")),
            (4, "wallet_money", include_str!("../../../migrations/postgres/0004_wallet_money.sql")),
            (5, "bills", include_str!("../../../migrations/postgres/0005_bills.sql")),
            (6, "risk", include_str!("../../../migrations/postgres/0006_risk.sql")),
            (7, "refund_request_once", include_str!("../../../migrations/postgres/0007_refund_request_once.sql")),
            (8, "console", include_str!("../../../migrations/postgres/0008_console.sql")),
            (9, "print_requests", include_str!("../../../migrations/postgres/0009_print_requests.sql")),
            (10, "risk_facts_by_index", include_str!("../../../migrations/postgres/0010_risk_facts_by_index.sql")),
            (11, "due_and_paid_indexes", include_str!("../../../migrations/postgres/0011_due_and_paid_indexes.sql")),
        ],
    };
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(sql).into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_locked_deadlock_and_serialization_failures_are_transient() {
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT, SQLITE_LOCKED, SQLITE_PROTOCOL; deadlock,
        // serialization failure.
        for code in ["5", "517", "6", "15", "40P01", "40001"] {
            assert!(transient_code(code), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT, SQLITE_FULL; unique violation,
        // invalid byte sequence.
        for code in ["2067", "19", "13", "23505", "22021", ""] {
            assert!(!transient_code(code), "{code}");
        }
    }

    #[test]
    fn sqlite_gets_anonymous_placeholders_only_when_they_run_in_order() {
        let rows = format!("INSERT INTO t (a, b) VALUES {} RETURNING a", value_rows(1, 2, 6));
        let anonymous = for_engine(Engine::Sqlite, rows.clone());
        assert_eq!(anonymous, format!("INSERT INTO t (a, b) VALUES {} RETURNING a", ["(?, ?)"; 6].join(", ")));
        assert_eq!(
            for_engine(Engine::Postgres, rows),
            format!("INSERT INTO t (a, b) VALUES {}", value_rows(1, 2, 6)) + " RETURNING a"
        );
        // Out of order, repeated, starting past $1, or a `$` that is not a placeholder: as is.
        for sql in ["SELECT $2, $1", "SELECT $1 WHERE x = $1", "SELECT $2, $3", "SELECT '$' || $1", "SELECT $1, $3"] {
            assert_eq!(for_engine(Engine::Sqlite, sql.to_owned()), sql);
        }
        assert_eq!(for_engine(Engine::Sqlite, "SELECT 1".to_owned()), "SELECT 1");
        assert_eq!(for_engine(Engine::Sqlite, "SELECT $1, $2 FROM t".to_owned()), "SELECT ?, ? FROM t");
    }

    #[test]
    fn urls_normalise() {
        assert_eq!(normalise_url("postgres://u@h/db").unwrap().0, Engine::Postgres);
        let tmp = std::env::temp_dir().join("paykit-url-test/x.db");
        let (engine, url, readable) = normalise_url(tmp.to_str().unwrap()).unwrap();
        assert_eq!(engine, Engine::Sqlite);
        assert!(url.ends_with("x.db?mode=rwc"), "{url}");
        assert!(readable);
        assert!(!normalise_url("sqlite::memory:").unwrap().2);
        assert!(!normalise_url("sqlite://x.db?mode=memory").unwrap().2);
        assert!(!normalise_url("sqlite://x.db?vfs=unix-dotfile").unwrap().2);
        assert!(normalise_url("sqlite://").is_err());
        assert!(normalise_url("sqlite:?mode=rwc").is_err());
        assert!(normalise_url("mysql://x").is_err());
    }
}
