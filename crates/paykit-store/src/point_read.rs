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
//! worker thread for as long as it runs.

use std::sync::Mutex;
use std::time::Duration;

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

/// How long a read waits for a lock. In WAL mode a reader waits only while SQLite recovers
/// the WAL index (after a crash) or for a checkpoint that truncates the WAL, which paykit
/// does not run; past this, the request answers SERVICE_UNAVAILABLE.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Idle connections kept; more are opened while more threads read at once (the reads do
/// not wait across an `.await`, so that is at most the runtime's threads).
const MAX_IDLE: usize = 8;

/// `$1`…`$9` as SQLite names them: SQLite numbers parameters in order of first appearance,
/// so `$n` is looked up by name, as sqlx does.
const PARAM_NAMES: [&str; 9] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9"];

/// rusqlite connections to the database file, for point reads on the calling thread.
pub(crate) struct SqliteReaders {
    path: String,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReaders {
    pub(crate) fn new(path: &str) -> SqliteReaders {
        SqliteReaders { path: path.to_owned(), idle: Mutex::new(Vec::new()) }
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

    fn read_one<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        decode: impl FnOnce(&dyn Columns) -> Result<T>,
    ) -> Result<Option<T>> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let answer = read_on(&conn, sql, params, decode);
        // A connection whose read failed on the database's side is dropped, not reused.
        if !matches!(answer, Err(StoreError::Sqlite(_))) {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        answer
    }
}

fn read_on<T>(
    conn: &Connection,
    sql: &str,
    params: &[Param<'_>],
    decode: impl FnOnce(&dyn Columns) -> Result<T>,
) -> Result<Option<T>> {
    assert!(params.len() <= PARAM_NAMES.len(), "a point read binds at most nine parameters");
    let mut statement = conn.prepare_cached(sql)?;
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
    match rows.next()? {
        Some(row) => decode(row).map(Some),
        None => Ok(None),
    }
}

impl Store {
    /// The first row `sql` finds, decoded; `sql` must read at most one row by a unique key
    /// (see the module's note). Both engines run the same text with `$n` parameters.
    pub(crate) async fn read_one<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        decode: impl FnOnce(&dyn Columns) -> Result<T>,
    ) -> Result<Option<T>> {
        if let Some(readers) = &self.point_readers {
            debug_assert_eq!(self.engine, Engine::Sqlite);
            return readers.read_one(sql, params, decode);
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
