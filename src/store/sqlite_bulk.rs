//! Bulk reads and writes of the embedded SQLite store, on connections of
//! their own.
//!
//! sqlx's SQLite driver steps each statement on a worker thread and hands
//! every row (and every bound value) across threads, each value copied into
//! an allocation of its own. For the work that streams whole tables (a
//! snapshot load, a materialization's read and its write, the point-in-time
//! join, the prediction log's batches) that hand-over, not SQLite, was most
//! of the time. That work opens rusqlite connections to the same file:
//! reads step their statement on a blocking thread and decode each value in
//! place into typed columns ([`Scan`]); a write holds its transaction on a
//! connection of its own ([`connect_writer`]), on a blocking thread when it
//! owns its rows, or on the async worker in short steps between awaits when
//! it borrows them (a snapshot load). In WAL mode a reader sees a consistent
//! snapshot of what is committed, as a pool connection would; a writer takes
//! SQLite's write lock with `BEGIN IMMEDIATE`, as the pool's writers do, after
//! this process's [`write_gate`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use chrono::NaiveDate;
use rusqlite::types::{Type, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use crate::data::Column;
use crate::spec::ColumnType;

/// How long the read waits for a checkpoint or a writer's lock on the file.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A key-ordered query whose first column is the snapshot date and whose
/// others are `types`, in order.
pub(crate) struct Scan<'a> {
    /// The SELECT, its identifiers quoted by the caller.
    pub sql: &'a str,
    /// Values for `$1`, `$2`, … (the date bounds).
    pub bounds: &'a [NaiveDate],
    /// The type of each column after the date.
    pub types: &'a [ColumnType],
    /// Rows after which a chunk is handed over at the next change of the
    /// first column (the key), so that no key spans two chunks;
    /// `usize::MAX` hands over one chunk (none for no rows).
    pub chunk_rows: usize,
}

/// The in-process write gate of one SQLite file: SQLite has one writer, and
/// a table's load or a view's write can outlast the busy timeout at millions
/// of rows, so this process's bulk writers queue here instead of failing with
/// "database is locked".
pub(crate) fn write_gate(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static GATES: LazyLock<std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Default::default);
    let mut gates = GATES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    gates.entry(path.to_path_buf()).or_default().clone()
}

/// A read-write connection to the store's file, set up as the pool's are
/// (WAL is the file's own setting; synchronous and the busy wait are the
/// connection's).
pub(crate) fn connect_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

/// A read-only connection to the store's file: in WAL mode it reads the
/// last committed state, beside any writer.
pub(crate) fn connect_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

impl Scan<'_> {
    /// Steps the query on this thread, calling `emit` with each chunk's
    /// dates and columns; stops early when `emit` returns false (its
    /// receiver is gone).
    pub(crate) fn run(
        &self,
        path: &Path,
        mut emit: impl FnMut(Vec<NaiveDate>, Vec<Column>) -> bool,
    ) -> Result<(), StoreError> {
        let conn = connect_reader(path)?;
        let mut stmt = conn.prepare(self.sql)?;
        let bounds: Vec<String> = self.bounds.iter().map(|d| d.to_string()).collect();
        let mut rows = stmt.query(rusqlite::params_from_iter(bounds.iter()))?;
        let fresh = || -> Vec<Column> {
            self.types
                .iter()
                .map(|ty| Column::with_capacity(*ty, self.chunk_rows.min(1 << 16)))
                .collect()
        };
        let mut dates: Vec<NaiveDate> = Vec::new();
        let mut cols = fresh();
        // The last key seen, to cut chunks between keys only.
        let mut last_key: Vec<u8> = Vec::new();
        let mut last_null = true;
        while let Some(row) = rows.next()? {
            if dates.len() >= self.chunk_rows {
                let (key, null) = match row.get_ref(1)? {
                    ValueRef::Text(t) => (t, false),
                    _ => (&[][..], true),
                };
                if key != last_key.as_slice() || null != last_null {
                    let full = std::mem::replace(&mut cols, fresh());
                    if !emit(std::mem::take(&mut dates), full) {
                        return Ok(());
                    }
                }
            }
            dates.push(date(row.get_ref(0)?).ok_or_else(|| type_error(row, 0))?);
            for (i, col) in cols.iter_mut().enumerate() {
                let j = i + 1;
                let v = row.get_ref(j)?;
                let ok = match (col, v) {
                    (Column::Str(c), ValueRef::Null) => push(c, None),
                    (Column::Int(c), ValueRef::Null) => push(c, None),
                    (Column::Float(c), ValueRef::Null) => push(c, None),
                    (Column::Bool(c), ValueRef::Null) => push(c, None),
                    (Column::Date(c), ValueRef::Null) => push(c, None),
                    (Column::Str(c), ValueRef::Text(t)) => match std::str::from_utf8(t) {
                        Ok(s) => push(c, Some(s.to_string())),
                        Err(_) => false,
                    },
                    (Column::Int(c), ValueRef::Integer(x)) => push(c, Some(x)),
                    (Column::Float(c), ValueRef::Real(x)) => push(c, Some(x)),
                    // A REAL column may hand back a whole number as an integer.
                    (Column::Float(c), ValueRef::Integer(x)) => push(c, Some(x as f64)),
                    (Column::Bool(c), ValueRef::Integer(x)) => push(c, Some(x != 0)),
                    (Column::Date(c), v) => match date(v) {
                        Some(d) => push(c, Some(d)),
                        None => false,
                    },
                    _ => false,
                };
                if !ok {
                    return Err(type_error(row, j));
                }
            }
            if self.chunk_rows != usize::MAX {
                last_key.clear();
                match row.get_ref(1)? {
                    ValueRef::Text(t) => {
                        last_key.extend_from_slice(t);
                        last_null = false;
                    }
                    _ => last_null = true,
                }
            }
        }
        if !dates.is_empty() {
            emit(dates, cols);
        }
        Ok(())
    }
}

/// Appends a decoded value; true, for the decode's match arms.
fn push<T>(column: &mut Vec<Option<T>>, value: Option<T>) -> bool {
    column.push(value);
    true
}

/// A stored date (`YYYY-MM-DD` text).
fn date(v: ValueRef<'_>) -> Option<NaiveDate> {
    match v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.parse().ok(),
        _ => None,
    }
}

/// The error for a stored value the column's type cannot hold, naming the
/// column.
fn type_error(row: &rusqlite::Row<'_>, j: usize) -> StoreError {
    let name = row
        .as_ref()
        .column_name(j)
        .map_or_else(|_| format!("#{j}"), str::to_string);
    let found = row.get_ref(j).map_or(Type::Null, |v| v.data_type());
    StoreError::Sqlite(rusqlite::Error::InvalidColumnType(j, name, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(path: &Path) {
        let conn = Connection::open(path).expect("open");
        conn.execute_batch(
            "CREATE TABLE t (as_of TEXT, k TEXT, n INTEGER, x REAL, b INTEGER, d TEXT);
             INSERT INTO t VALUES
               ('2024-01-31', 'a', 1, 1.5, 1, '2024-01-01'),
               ('2024-02-29', 'a', 2, 2.0, 0, NULL),
               ('2024-01-31', 'b', NULL, 3, NULL, '2024-01-02'),
               ('2024-01-31', 'c', 4, NULL, 1, NULL);",
        )
        .expect("fill");
    }

    const TYPES: [ColumnType; 5] = [
        ColumnType::String,
        ColumnType::Int,
        ColumnType::Float,
        ColumnType::Bool,
        ColumnType::Date,
    ];

    fn chunks(
        path: &Path,
        chunk_rows: usize,
        bounds: &[NaiveDate],
    ) -> Vec<(Vec<NaiveDate>, Vec<Column>)> {
        let sql = if bounds.is_empty() {
            "SELECT as_of, k, n, x, b, d FROM t ORDER BY k, as_of"
        } else {
            "SELECT as_of, k, n, x, b, d FROM t WHERE as_of >= $1 ORDER BY k, as_of"
        };
        let mut out = Vec::new();
        Scan {
            sql,
            bounds,
            types: &TYPES,
            chunk_rows,
        }
        .run(path, |d, c| {
            out.push((d, c));
            true
        })
        .expect("scan");
        out
    }

    #[test]
    fn values_decode_into_their_columns_and_chunks_never_split_a_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        table(&path);
        let whole = chunks(&path, usize::MAX, &[]);
        assert_eq!(whole.len(), 1);
        let (dates, cols) = &whole[0];
        assert_eq!(dates.len(), 4);
        assert!(
            matches!(&cols[0], Column::Str(v) if v == &[Some("a".into()), Some("a".into()), Some("b".into()), Some("c".into())])
        );
        assert!(matches!(&cols[1], Column::Int(v) if v == &[Some(1), Some(2), None, Some(4)]));
        assert!(
            matches!(&cols[2], Column::Float(v) if v == &[Some(1.5), Some(2.0), Some(3.0), None])
        );
        assert!(
            matches!(&cols[3], Column::Bool(v) if v == &[Some(true), Some(false), None, Some(true)])
        );
        assert!(
            matches!(&cols[4], Column::Date(v) if v.iter().filter(|d| d.is_some()).count() == 2)
        );
        // One row per chunk asked: key `a`'s two rows stay together.
        let split = chunks(&path, 1, &[]);
        let sizes: Vec<usize> = split.iter().map(|(d, _)| d.len()).collect();
        assert_eq!(sizes, vec![2, 1, 1]);
        // A bound is bound as the stored text.
        let feb: NaiveDate = "2024-02-01".parse().expect("date");
        let late = chunks(&path, usize::MAX, &[feb]);
        assert_eq!(late[0].0.len(), 1);
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        table(&path);
        Connection::open(&path)
            .and_then(|c| c.execute("UPDATE t SET n = 'seven' WHERE k = 'c'", []))
            .expect("update");
        let err = Scan {
            sql: "SELECT as_of, k, n, x, b, d FROM t ORDER BY k",
            bounds: &[],
            types: &TYPES,
            chunk_rows: usize::MAX,
        }
        .run(&path, |_, _| true)
        .expect_err("text in an integer column");
        assert!(err.to_string().contains("name: n"), "{err}");
    }
}
