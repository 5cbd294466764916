//! Reads of one row by its key on the request path, run on SQLite where the request is
//! rather than on sqlx's SQLite threads.
//!
//! sqlx runs each SQLite connection on a thread of its own and passes every statement and
//! every row across a channel, so a read costs a pair of thread wake-ups. SQLite answers a
//! read by primary key from its page cache in microseconds: the hand-offs cost more than
//! the read. A signed `GET /v1/orders/{id}` makes two such reads (its key with the nonce
//! check, then the order); with the gateway busy, the hand-offs kept it near 10 futex calls
//! and 7 context switches per GET (BENCHMARKS.md).
//!
//! So the request path's point reads go through [`Store::read_one`]: on SQLite a small pool
//! of rusqlite connections to the same file, used synchronously on the calling thread (a
//! key look-up holds a Tokio worker for tens of microseconds, less than the hand-offs did);
//! on PostgreSQL the same SQL text through sqlx's pool, as before. Both decode rows through
//! [`Columns`], so each read has one SQL text and one decoder for both engines.
//!
//! Only statements that read one row by a unique key belong here: a scan would hold the
//! worker thread for as long as it runs. The one exception is bounded: a payer's history
//! for the risk rules (`risk::payer_history`, `pay_context`), an index range over one
//! payer's payments of the last day.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Engine, Result, Store, StoreError};

/// A value bound to `$1`, `$2`… of a point read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    Text(&'a str),
    Int(i64),
}

/// The columns of a row, by position, from either engine.
pub(crate) trait Columns {
    fn text(&self, i: usize) -> Result<String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    fn int(&self, i: usize) -> Result<i64>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
}

impl Columns for AnyRow {
    fn text(&self, i: usize) -> Result<String> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.try_get(i)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> Result<String> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.get(i)?)
    }
}

/// How long a read waits for a lock on the calling thread. In WAL mode a reader waits only
/// while SQLite recovers the WAL index (after a crash) or for a checkpoint that truncates
/// the WAL (paykit runs none; a backup tool might): rare, but a wait here holds a Tokio
/// worker, so past this the read goes to sqlx's pool, which waits on its own thread.
const BUSY_TIMEOUT: Duration = Duration::from_millis(20);

/// Idle connections kept; more are opened while more threads read at once (the reads do
/// not wait across an `.await`, so that is at most the runtime's threads).
const MAX_IDLE: usize = 8;

/// `$1`…`$9` as SQLite names them: SQLite numbers parameters in order of first appearance,
/// so `$n` is looked up by name, as sqlx does.
const PARAM_NAMES: [&str; 9] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9"];

/// After a read found SQLite locked, reads go straight to sqlx's pool for this long: a lock
/// that outlasts one read (a backup's checkpoint) would otherwise cost every read its
/// [`BUSY_TIMEOUT`] on a Tokio worker.
const AFTER_BUSY: Duration = Duration::from_millis(500);

/// rusqlite connections to the database file, for point reads on the calling thread.
pub(crate) struct SqliteReaders {
    path: PathBuf,
    pool: Mutex<Pool>,
}

/// The readers' state, behind one lock.
#[derive(Default)]
struct Pool {
    idle: Vec<Connection>,
    closed: bool,
    /// Until when reads skip these connections (see [`AFTER_BUSY`]).
    skip_until: Option<Instant>,
}

/// What a read on the calling thread came to.
enum Inline<T, D> {
    Read(Option<T>),
    /// The database was locked: the read is for sqlx's pool, with its decoder.
    Busy(D),
}

impl SqliteReaders {
    /// Readers of the file at `path` (the one sqlx opened). One connection is opened now,
    /// so that a file rusqlite cannot open fails here rather than on every request.
    pub(crate) fn open_beside(path: &Path) -> Result<SqliteReaders> {
        let readers = SqliteReaders { path: path.to_owned(), pool: Mutex::default() };
        let first = readers.open()?;
        readers.give_back(first, false);
        Ok(readers)
    }

    /// Closes the idle connections; later reads fail as on a closed pool.
    pub(crate) fn close(&self) {
        let mut pool = self.lock();
        pool.closed = true;
        pool.idle.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        // The writer's pool created the file and put it in WAL mode; a reader never creates
        // or writes.
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }

    /// A connection, or None while reads skip them after a busy one.
    fn take(&self) -> Result<Option<Connection>> {
        let mut pool = self.lock();
        if pool.closed {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        if pool.skip_until.is_some_and(|until| Instant::now() < until) {
            return Ok(None);
        }
        let idle = pool.idle.pop();
        drop(pool);
        Ok(Some(match idle {
            Some(conn) => conn,
            None => self.open()?,
        }))
    }

    /// Keeps `conn` for the next read; `busy` when its read found SQLite locked.
    fn give_back(&self, conn: Connection, busy: bool) {
        let mut pool = self.lock();
        if busy {
            pool.skip_until = Some(Instant::now() + AFTER_BUSY);
        }
        if !pool.closed && pool.idle.len() < MAX_IDLE {
            pool.idle.push(conn);
        }
    }

    /// The read, or `Busy` with `decode` unrun when SQLite made it wait past
    /// [`BUSY_TIMEOUT`] (or did so to a read less than [`AFTER_BUSY`] ago).
    fn read_one<T, D>(&self, sql: &str, params: &[Param<'_>], decode: D) -> Result<Inline<T, D>>
    where
        D: FnOnce(&dyn Columns) -> Result<T>,
    {
        let Some(conn) = self.take()? else { return Ok(Inline::Busy(decode)) };
        let answer = read_on(&conn, sql, params, decode);
        match answer {
            // A connection whose read failed on the database's side is dropped, not reused.
            Err(StoreError::Sqlite(_)) => {}
            Ok(Inline::Busy(_)) => self.give_back(conn, true),
            _ => self.give_back(conn, false),
        }
        answer
    }
}

/// SQLite was locked (or, after a long wait to start a WAL read, gave up with
/// SQLITE_PROTOCOL): worth trying again, on sqlx's pool.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if is_busy_code(f.extended_code))
}

/// [`is_busy`] by SQLite's result code, primary or extended (whose low byte is the
/// primary code): BUSY, LOCKED or PROTOCOL. sqlx reports SQLite's errors by this number.
pub(crate) fn is_busy_code(code: i32) -> bool {
    use rusqlite::ffi::{SQLITE_BUSY, SQLITE_LOCKED, SQLITE_PROTOCOL};
    matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED | SQLITE_PROTOCOL)
}

fn read_on<T, D>(conn: &Connection, sql: &str, params: &[Param<'_>], decode: D) -> Result<Inline<T, D>>
where
    D: FnOnce(&dyn Columns) -> Result<T>,
{
    assert!(params.len() <= PARAM_NAMES.len(), "a point read binds at most nine parameters");
    let mut statement = match conn.prepare_cached(sql) {
        Err(e) if is_busy(&e) => return Ok(Inline::Busy(decode)),
        prepared => prepared?,
    };
    // PostgreSQL refuses a statement with a parameter left unbound; SQLite would read it as
    // NULL and quietly find nothing.
    if statement.parameter_count() != params.len() {
        return Err(StoreError::Corrupt(format!("point read binds {} parameters to: {sql}", params.len())));
    }
    for (name, param) in PARAM_NAMES.iter().zip(params) {
        let index = statement.parameter_index(name)?.ok_or_else(|| {
            StoreError::Corrupt(format!("point read binds {name}, which its SQL does not use: {sql}"))
        })?;
        match *param {
            Param::Text(text) => statement.raw_bind_parameter(index, text)?,
            Param::Int(int) => statement.raw_bind_parameter(index, int)?,
        }
    }
    let mut rows = statement.raw_query();
    match rows.next() {
        Ok(Some(row)) => decode(row).map(|v| Inline::Read(Some(v))),
        Ok(None) => Ok(Inline::Read(None)),
        Err(e) if is_busy(&e) => Ok(Inline::Busy(decode)),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// The first row `sql` finds, decoded; `sql` must read at most one row by a unique key
    /// (see the module's note). Both engines run the same text with `$n` parameters.
    pub(crate) async fn read_one<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        mut decode: impl FnOnce(&dyn Columns) -> Result<T>,
    ) -> Result<Option<T>> {
        if let Some(readers) = &self.point_readers {
            debug_assert_eq!(self.engine, Engine::Sqlite);
            match readers.read_one(sql, params, decode)? {
                Inline::Read(found) => return Ok(found),
                Inline::Busy(unrun) => decode = unrun,
            }
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for param in params {
            query = match *param {
                Param::Text(text) => query.bind(text),
                Param::Int(int) => query.bind(int),
            };
        }
        let row = query.fetch_optional(self.reader()).await?;
        row.map(|r| decode(&r)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(conn: &Connection, sql: &str, params: &[Param<'_>]) -> Result<Option<i64>> {
        match read_on(conn, sql, params, |r| r.int(0))? {
            Inline::Read(found) => Ok(found),
            Inline::Busy(_) => panic!("an in-memory database is never busy"),
        }
    }

    #[test]
    fn parameters_bind_by_number_and_all_must_be_bound() {
        let conn = Connection::open_in_memory().unwrap();
        // $2 appears first, so SQLite numbers it 1: binding by position would swap them.
        let sql = "SELECT $2 * 10 + $1";
        assert_eq!(read(&conn, sql, &[Param::Int(1), Param::Int(2)]).unwrap(), Some(21));
        // One short: SQLite would read the other as NULL and find nothing.
        let short = read(&conn, sql, &[Param::Int(1)]);
        assert!(matches!(short, Err(StoreError::Corrupt(_))), "{short:?}");
        let text = read(&conn, "SELECT length(CAST($1 AS BLOB))", &[Param::Text("a\0b")]).unwrap();
        assert_eq!(text, Some(3), "text is bound with its length, NUL and all");
    }
}
