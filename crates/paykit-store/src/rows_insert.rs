//! Multi-row inserts that travel together. A batch of payments writes six tables' rows
//! (journal entries, postings, device proofs, records, events, deliveries); on PostgreSQL
//! each statement is a round trip to a server that shares the machine's two cores with the
//! gateway, and the lane waits out every one of them with the whole batch behind it. So
//! there they go as one statement, all but the last in data-modifying `WITH` clauses. On
//! SQLite, which has no such clauses, they go as one string of statements: sqlx hands each
//! statement to the connection's own thread and waits to be woken with the answer, and
//! those hand-offs, not SQLite's work, were most of the lane's time.
//!
//! The inserts do not read one another's rows. A foreign key between them (a posting's
//! entry) is checked at the end of PostgreSQL's one statement, when every row is in; on
//! SQLite at the end of each statement, which come in the order the caller gave (entries
//! before their postings, events before their deliveries).
//!
//! sqlx 0.9 binds anonymous placeholders in order across the statements of one query
//! (`sqlx-sqlite`'s `SqliteArguments::bind` continues from the statement before), and the
//! numbering here runs on across them, so each statement gets its own values. sqlx marks
//! several statements in one prepared query as deprecated (launchbadge/sqlx#3108): an
//! upgrade that drops them must split this call again.

use std::borrow::Cow;
use std::fmt::Write;

use crate::{Engine, Result, Tx, value_rows};

/// A value for one placeholder, borrowed from the caller's rows where it can be.
pub(crate) enum Value<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    /// Only in the column a [`RowsInsert::when_set`] tests: the row is not inserted.
    Unset,
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Value<'a> {
        v.map_or(Value::Unset, Value::from)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Value<'a> {
        Value::Text(Cow::Borrowed(v))
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(Cow::Owned(v))
    }
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

/// One multi-row `INSERT`: `head` up to the `VALUES` list (table and columns), `tail` after
/// it (an `ON CONFLICT` clause, or nothing), and the rows' values, `per_row` a row.
pub(crate) struct RowsInsert<'a> {
    head: &'static str,
    tail: &'static str,
    per_row: usize,
    values: Vec<Value<'a>>,
    /// The column (from 1) whose [`Value::Unset`] leaves its row out.
    when_set: Option<usize>,
}

impl<'a> RowsInsert<'a> {
    pub(crate) fn new(head: &'static str, tail: &'static str, per_row: usize) -> RowsInsert<'a> {
        RowsInsert { head, tail, per_row, values: Vec::new(), when_set: None }
    }

    /// Rows that only some of the batch's payments have (a device proof, a delivery): each
    /// payment gives a row, and those whose `column` (from 1) is [`Value::Unset`] are left
    /// out by the statement itself. The statement's text then depends on the number of
    /// payments and on whether any has one, not on how many: the lane keeps a few prepared
    /// statements per batch size instead of one per mix. (A part none has is left out
    /// whole: its rows would cost the server more than the text saves.)
    pub(crate) fn when_set(mut self, column: usize) -> RowsInsert<'a> {
        self.when_set = Some(column);
        self
    }

    /// Adds a row; `row` must hold `per_row` values.
    pub(crate) fn row<const N: usize>(&mut self, row: [Value<'a>; N]) {
        debug_assert_eq!(N, self.per_row, "a row of {} for {}", N, self.head);
        self.values.extend(row);
    }

    fn rows(&self) -> usize {
        self.values.len() / self.per_row
    }

    /// The statement, its placeholders numbered from `first`.
    fn sql(&self, first: usize) -> String {
        let rows = value_rows(first, self.per_row, self.rows());
        match self.when_set {
            // Both engines name a VALUES list's columns column1, column2, …
            Some(column) => {
                format!(
                    "{} SELECT * FROM (VALUES {rows}) AS v WHERE v.column{column} IS NOT NULL{}",
                    self.head, self.tail
                )
            }
            None => format!("{} VALUES {rows}{}", self.head, self.tail),
        }
    }

    /// Whether the statement would insert nothing.
    fn inserts_nothing(&self) -> bool {
        match self.when_set {
            Some(column) => {
                self.values.chunks(self.per_row).all(|row| matches!(row.get(column - 1), Some(Value::Unset)))
            }
            None => self.values.is_empty(),
        }
    }
}

impl Tx {
    /// Runs `inserts` (those with rows), as one statement on PostgreSQL and one string of
    /// statements on SQLite (placeholders numbered on across them, so they bind in order).
    /// On an error, what SQLite's earlier statements wrote stays in the transaction, for
    /// the caller to undo with it (as every caller's savepoint or transaction does).
    pub(crate) async fn insert_rows(&mut self, inserts: Vec<RowsInsert<'_>>) -> Result<()> {
        let inserts: Vec<RowsInsert<'_>> = inserts.into_iter().filter(|i| !i.inserts_nothing()).collect();
        let Some((last, rest)) = inserts.split_last() else { return Ok(()) };
        let mut sql = String::new();
        let mut first = 1;
        match self.engine() {
            Engine::Sqlite => {
                for insert in &inserts {
                    let _ = write!(sql, "{}; ", insert.sql(first));
                    first += insert.values.len();
                }
            }
            Engine::Postgres => {
                for (i, insert) in rest.iter().enumerate() {
                    let _ = write!(sql, "{} w{i} AS ({})", if i == 0 { "WITH" } else { "," }, insert.sql(first));
                    first += insert.values.len();
                }
                let _ = write!(sql, " {}", last.sql(first));
            }
        }
        let mut statements = sqlx::query(sqlx::AssertSqlSafe(crate::for_engine(self.engine(), sql)));
        for insert in &inserts {
            statements = bind(statements, &insert.values);
        }
        statements.execute(self.conn()).await?;
        Ok(())
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind<'q>(mut statement: Query<'q>, values: &'q [Value<'_>]) -> Query<'q> {
    for value in values {
        statement = match value {
            Value::Text(v) => statement.bind(v.as_ref()),
            Value::Int(v) => statement.bind(*v),
            Value::Unset => statement.bind(None::<&str>),
        };
    }
    statement
}
