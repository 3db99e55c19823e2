//! The offline store: one SQL table per `Table` resource, keyed by (primary key,
//! `as_of`), plus a manifest (`reconcile_tables`, `reconcile_snapshots`) written in
//! the same transaction as the rows it describes. Readers therefore see a snapshot
//! either whole or not at all, and a crash mid-load rolls back to the old snapshot.
//!
//! Identifiers reaching SQL were validated by `spec::validate::is_identifier`
//! and are quoted as well; every value is bound.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::sqlite_bulk::{self, Scan};
use super::{BeginWrite, Db, StoreError, now_ms};
use crate::data::{Batch, Column};
use crate::spec::ColumnType;
use crate::with_pool;

/// What the manifest says about one stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredSnapshot {
    /// Hash of the file bytes that were loaded.
    pub file_hash: String,
    /// Hash of the expectations they were validated against.
    pub expect_hash: String,
    /// Rows stored.
    pub row_count: i64,
    /// The file they came from (relative to the project).
    pub source: String,
    /// When they were loaded.
    pub loaded_ms: i64,
}

/// What the offline store holds for one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoredTable {
    /// Hash of the schema (columns, types, primary key) the SQL table was created with.
    pub schema_hash: String,
    /// Snapshots by `as_of` date.
    pub snapshots: HashMap<String, StoredSnapshot>,
}

/// The physical layout of a table, derived from its spec.
#[derive(Debug, Clone)]
pub struct TableLayout {
    /// SQL table name.
    pub name: String,
    /// Columns and types, in declared order.
    pub columns: Vec<(String, ColumnType)>,
    /// Primary key columns (`as_of` is appended).
    pub primary_key: Vec<String>,
    /// Hash of all of the above.
    pub schema_hash: String,
}

/// Marks SQL built from validated, quoted identifiers (values are always bound).
fn trusted(sql: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql.to_string())
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn sql_type(db: &Db, ty: ColumnType) -> &'static str {
    match (db, ty) {
        (_, ColumnType::String) => "TEXT",
        (Db::Sqlite { .. }, ColumnType::Int | ColumnType::Bool) => "INTEGER",
        (Db::Sqlite { .. }, ColumnType::Float) => "REAL",
        (Db::Sqlite { .. }, ColumnType::Date) => "TEXT",
        (Db::Postgres { .. }, ColumnType::Int) => "BIGINT",
        (Db::Postgres { .. }, ColumnType::Bool) => "BOOLEAN",
        (Db::Postgres { .. }, ColumnType::Float) => "DOUBLE PRECISION",
        (Db::Postgres { .. }, ColumnType::Date) => "DATE",
    }
}

fn create_sql(db: &Db, layout: &TableLayout) -> String {
    let as_of_ty = match db {
        Db::Sqlite { .. } => "TEXT",
        Db::Postgres { .. } => "DATE",
    };
    let mut cols = vec![format!("{} {as_of_ty} NOT NULL", quote("as_of"))];
    for (name, ty) in &layout.columns {
        cols.push(format!("{} {}", quote(name), sql_type(db, *ty)));
    }
    let mut pk: Vec<String> = layout.primary_key.iter().map(|c| quote(c)).collect();
    pk.push(quote("as_of"));
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
        quote(&layout.name),
        cols.join(", "),
        pk.join(", ")
    )
}

/// Reads the whole manifest: two queries, whatever the number of tables.
pub async fn observe(db: &Db) -> Result<HashMap<String, StoredTable>, StoreError> {
    let tables: Vec<(String, String)> = with_pool!(db, p => sqlx::query_as("SELECT table_name, schema_hash FROM reconcile_tables").fetch_all(p).await)?;
    let snaps: Vec<(String, String, String, String, i64, String, i64)> = with_pool!(db, p => sqlx::query_as(
        "SELECT table_name, as_of, file_hash, expect_hash, row_count, source, loaded_ms FROM reconcile_snapshots").fetch_all(p).await)?;
    let mut out: HashMap<String, StoredTable> = tables
        .into_iter()
        .map(|(name, schema_hash)| {
            (
                name,
                StoredTable {
                    schema_hash,
                    snapshots: HashMap::new(),
                },
            )
        })
        .collect();
    for (table, as_of, file_hash, expect_hash, row_count, source, loaded_ms) in snaps {
        out.entry(table).or_default().snapshots.insert(
            as_of,
            StoredSnapshot {
                file_hash,
                expect_hash,
                row_count,
                source,
                loaded_ms,
            },
        );
    }
    Ok(out)
}

/// Tables (and views) that exist in the offline database but that reconcile
/// did not create: not in its manifest, and not one of the names the stores
/// or their engines own. A Table spec of such a name is a conflict.
pub async fn foreign_tables(
    db: &Db,
    manifest: &HashMap<String, StoredTable>,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let names: Vec<(String,)> = match db {
        Db::Sqlite { pool, .. } => {
            sqlx::query_as("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
                .fetch_all(pool)
                .await?
        }
        Db::Postgres { pool, .. } => {
            sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
            )
            .fetch_all(pool)
            .await?
        }
    };
    Ok(names
        .into_iter()
        .map(|(n,)| n)
        .filter(|n| {
            !manifest.contains_key(n) && crate::spec::validate::reserved_table_owner(n).is_none()
        })
        .collect())
}

/// A snapshot ready to be written.
#[derive(Debug)]
pub struct SnapshotWrite<'a> {
    /// Its date.
    pub as_of: NaiveDate,
    /// The validated rows.
    pub batch: &'a Batch,
    /// Manifest entry to record with them.
    pub manifest: StoredSnapshot,
}

/// Writes snapshots of one table in a single transaction. With `recreate`, the SQL
/// table is dropped and created anew first (a schema change), and every snapshot
/// not in `writes` disappears with it.
pub async fn write_snapshots(
    db: &Db,
    layout: &TableLayout,
    writes: &[SnapshotWrite<'_>],
    recreate: bool,
) -> Result<(), StoreError> {
    let mut w = SnapshotWriter::begin(db, layout, recreate).await?;
    for s in writes {
        w.write(s).await?;
    }
    w.commit().await
}

/// One table's write transaction, taking snapshots one at a time: the caller
/// parses, validates and writes a snapshot, then drops it before reading the
/// next, so an apply holds one snapshot in memory however many months a table
/// has. Dropped without [`SnapshotWriter::commit`], everything rolls back.
pub struct SnapshotWriter {
    tx: WriteTx,
    layout: TableLayout,
    /// Held until commit: SQLite has one writer, and a table's transaction
    /// can outlast the busy timeout at millions of rows; other tables of this
    /// process wait here instead of failing with "database is locked".
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

enum WriteTx {
    /// A connection of the write's own in `BEGIN IMMEDIATE`
    /// ([`sqlite_bulk::connect_writer`]); closing it uncommitted rolls back.
    Sqlite(rusqlite::Connection),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl SnapshotWriter {
    /// Begins the transaction: with `recreate`, drops the table and its
    /// manifest first; creates the table if missing and records its schema.
    pub async fn begin(
        db: &Db,
        layout: &TableLayout,
        recreate: bool,
    ) -> Result<SnapshotWriter, StoreError> {
        let create = create_sql(db, layout);
        let drop = format!("DROP TABLE IF EXISTS {}", quote(&layout.name));
        let (tx, gate) = match db {
            Db::Sqlite { path, .. } => {
                let gate = sqlite_bulk::write_gate(path).lock_owned().await;
                // Off the async workers: `BEGIN IMMEDIATE` may wait out
                // another process's write for up to the busy timeout.
                let path = path.clone();
                let (name, schema_hash) = (layout.name.clone(), layout.schema_hash.clone());
                let conn = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
                    let conn = sqlite_bulk::connect_writer(&path)?;
                    conn.execute_batch("BEGIN IMMEDIATE")?;
                    if recreate {
                        conn.execute(&drop, [])?;
                        conn.execute(
                            "DELETE FROM reconcile_snapshots WHERE table_name = $1",
                            [&name],
                        )?;
                    }
                    conn.execute(&create, [])?;
                    conn.execute(UPSERT_TABLE, (&name, &schema_hash, now_ms()))?;
                    Ok(conn)
                })
                .await??;
                (WriteTx::Sqlite(conn), Some(gate))
            }
            Db::Postgres { pool, .. } => {
                let mut tx = pool.begin_write().await?;
                if recreate {
                    sqlx::query(trusted(&drop)).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM reconcile_snapshots WHERE table_name = $1")
                        .bind(&layout.name)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(trusted(&create)).execute(&mut *tx).await?;
                sqlx::query(UPSERT_TABLE)
                    .bind(&layout.name)
                    .bind(&layout.schema_hash)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                (WriteTx::Postgres(tx), None)
            }
        };
        Ok(SnapshotWriter {
            tx,
            layout: layout.clone(),
            _gate: gate,
        })
    }

    /// Replaces one snapshot's rows and its manifest entry.
    pub async fn write(&mut self, w: &SnapshotWrite<'_>) -> Result<(), StoreError> {
        let layout = &self.layout;
        let delete_rows = format!("DELETE FROM {} WHERE \"as_of\" = $1", quote(&layout.name));
        match &mut self.tx {
            WriteTx::Sqlite(conn) => {
                let as_of = w.as_of.to_string();
                conn.execute(&delete_rows, [&as_of])?;
                let insert = insert_sql(layout);
                for rows in key_order(w.batch, &layout.primary_key).chunks(SQLITE_INSERT_ROWS) {
                    insert_rows_sqlite(conn, &insert, &as_of, w.batch, rows)?;
                    // The work runs on the async worker (its rows are
                    // borrowed), a few milliseconds a chunk; this await lets
                    // the worker's other tasks run and is where an
                    // interrupted apply stops, dropping the transaction.
                    // (`block_in_place` would hand the worker's role to a new
                    // thread, whose new malloc arena raised a 704 000-user
                    // ingest's peak from 410 to 611 MB.)
                    tokio::task::yield_now().await;
                }
                let m = &w.manifest;
                conn.execute(
                    UPSERT_SNAPSHOT,
                    (
                        &layout.name,
                        &as_of,
                        &m.file_hash,
                        &m.expect_hash,
                        m.row_count,
                        &m.source,
                        m.loaded_ms,
                    ),
                )?;
            }
            WriteTx::Postgres(tx) => {
                sqlx::query(trusted(&delete_rows))
                    .bind(w.as_of)
                    .execute(&mut **tx)
                    .await?;
                insert_postgres(tx, layout, w).await?;
                let m = &w.manifest;
                sqlx::query(UPSERT_SNAPSHOT)
                    .bind(&layout.name)
                    .bind(w.as_of.to_string())
                    .bind(&m.file_hash)
                    .bind(&m.expect_hash)
                    .bind(m.row_count)
                    .bind(&m.source)
                    .bind(m.loaded_ms)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Commits every snapshot written.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self.tx {
            WriteTx::Sqlite(conn) => {
                // An interrupt that came during the last step stops the
                // apply here, before anything is visible.
                tokio::task::yield_now().await;
                conn.execute_batch("COMMIT")?
            }
            WriteTx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

const UPSERT_TABLE: &str = "INSERT INTO reconcile_tables (table_name, schema_hash, created_ms) VALUES ($1, $2, $3) \
     ON CONFLICT (table_name) DO UPDATE SET schema_hash = excluded.schema_hash";

const UPSERT_SNAPSHOT: &str = "INSERT INTO reconcile_snapshots (table_name, as_of, file_hash, expect_hash, row_count, source, loaded_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (table_name, as_of) DO UPDATE SET \
     file_hash = excluded.file_hash, expect_hash = excluded.expect_hash, row_count = excluded.row_count, \
     source = excluded.source, loaded_ms = excluded.loaded_ms";

/// Rows a SQLite snapshot write inserts between two awaits: a few
/// milliseconds of work on the async worker, so the worker's other tasks and
/// an interrupt wait no longer than that.
const SQLITE_INSERT_ROWS: usize = 4_096;

/// The insert of one row of a table on SQLite (`as_of` first).
fn insert_sql(layout: &TableLayout) -> String {
    let col_list = std::iter::once(quote("as_of"))
        .chain(layout.columns.iter().map(|(n, _)| quote(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let params = (1..=layout.columns.len() + 1)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {} ({col_list}) VALUES ({params})",
        quote(&layout.name)
    )
}

/// Inserts `rows` of `batch` on SQLite, one prepared statement stepped per
/// row. Values are stored as sqlx binds them: text, integers, reals,
/// booleans as 0/1, dates as ISO text.
fn insert_rows_sqlite(
    conn: &rusqlite::Connection,
    insert: &str,
    as_of: &str,
    batch: &Batch,
    rows: &[usize],
) -> Result<(), rusqlite::Error> {
    let mut insert = conn.prepare(insert)?;
    for &i in rows {
        insert.raw_bind_parameter(1, as_of)?;
        for (j, (_, col)) in batch.columns.iter().enumerate() {
            let at = j + 2;
            match col {
                Column::Str(v) => insert.raw_bind_parameter(at, v[i].as_deref())?,
                Column::Int(v) => insert.raw_bind_parameter(at, v[i])?,
                Column::Float(v) => insert.raw_bind_parameter(at, v[i])?,
                Column::Bool(v) => insert.raw_bind_parameter(at, v[i].map(i64::from))?,
                Column::Date(v) => insert.raw_bind_parameter(at, v[i].map(|d| d.to_string()))?,
            }
        }
        insert.raw_execute()?;
    }
    Ok(())
}

/// The snapshot's rows in primary-key order (stable, so equal keys keep
/// their file order). Its `as_of` is one value, so inserting in this order
/// appends to the key index on a first load and walks it front to back on
/// the next snapshot: each index page is read and written once, where rows
/// in file order (random ids) each land on a random page, which past
/// SQLite's page cache costs a read and a write through the OS per row
/// (ingest at 704 000 users took 46 times as long as at 70 000).
fn key_order(batch: &Batch, primary_key: &[String]) -> Vec<usize> {
    let keys: Vec<&Column> = primary_key.iter().filter_map(|k| batch.column(k)).collect();
    let mut order: Vec<usize> = (0..batch.rows()).collect();
    if !keys.is_empty() {
        order.sort_by(|&i, &j| {
            keys.iter()
                .map(|c| c.cmp_rows(i, j))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    order
}

/// One `INSERT … SELECT FROM UNNEST(arrays)` per snapshot: a single round trip.
async fn insert_postgres(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    layout: &TableLayout,
    w: &SnapshotWrite<'_>,
) -> Result<(), sqlx::Error> {
    let col_list = std::iter::once(quote("as_of"))
        .chain(layout.columns.iter().map(|(n, _)| quote(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let arrays = w
        .batch
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, c))| {
            let ty = match c {
                Column::Str(_) => "text",
                Column::Int(_) => "int8",
                Column::Float(_) => "float8",
                Column::Bool(_) => "bool",
                Column::Date(_) => "date",
            };
            format!("${}::{ty}[]", i + 2)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {} ({col_list}) SELECT $1::date, * FROM UNNEST({arrays})",
        quote(&layout.name)
    );
    // The columns are bound by reference: no copy of the snapshot.
    let mut q = sqlx::query(trusted(&sql)).bind(w.as_of);
    for (_, col) in &w.batch.columns {
        q = match col {
            Column::Str(v) => q.bind(v.as_slice()),
            Column::Int(v) => q.bind(v.as_slice()),
            Column::Float(v) => q.bind(v.as_slice()),
            Column::Bool(v) => q.bind(v.as_slice()),
            Column::Date(v) => q.bind(v.as_slice()),
        };
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// Removes one snapshot's rows and manifest entry, atomically.
pub async fn drop_snapshot(db: &Db, table: &str, as_of: &str) -> Result<(), StoreError> {
    let date = NaiveDate::parse_from_str(as_of, "%Y-%m-%d").ok();
    let del_rows = format!("DELETE FROM {} WHERE \"as_of\" = $1", quote(table));
    with_pool!(db, p => {
        let mut tx = p.begin_write().await?;
        sqlx::query(trusted(&del_rows)).bind(date).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM reconcile_snapshots WHERE table_name = $1 AND as_of = $2")
            .bind(table).bind(as_of).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok::<(), sqlx::Error>(())
    })?;
    Ok(())
}

/// Drops a table and its manifest, atomically.
pub async fn drop_table(db: &Db, table: &str) -> Result<(), StoreError> {
    let drop = format!("DROP TABLE IF EXISTS {}", quote(table));
    with_pool!(db, p => {
        let mut tx = p.begin_write().await?;
        sqlx::query(trusted(&drop)).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM reconcile_snapshots WHERE table_name = $1").bind(table).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM reconcile_tables WHERE table_name = $1").bind(table).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok::<(), sqlx::Error>(())
    })?;
    Ok(())
}

/// Rows stored for one snapshot (for status, tests and verification).
pub async fn count_rows(db: &Db, table: &str, as_of: &str) -> Result<i64, StoreError> {
    let date = NaiveDate::parse_from_str(as_of, "%Y-%m-%d").ok();
    let sql = format!("SELECT COUNT(*) FROM {} WHERE \"as_of\" = $1", quote(table));
    let (n,): (i64,) =
        with_pool!(db, p => sqlx::query_as(trusted(&sql)).bind(date).fetch_one(p).await)?;
    Ok(n)
}

/// The `SELECT` of a table's columns after `date` (`"as_of"` or an aggregate
/// of it), between optional dates, and the dates to bind, in order. Bounds are bound as dates on both
/// backends (SQLite stores them as ISO text, which compares in date order); a
/// missing bound is left out of the query.
fn select_dated(
    table: &str,
    columns: &[(String, ColumnType)],
    (from, to): (Option<NaiveDate>, Option<NaiveDate>),
    date: &str,
) -> (String, Vec<NaiveDate>) {
    let list = columns
        .iter()
        .map(|(c, _)| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let bounds: Vec<NaiveDate> = [from, to].into_iter().flatten().collect();
    let mut conditions = Vec::new();
    if from.is_some() {
        conditions.push(format!("\"as_of\" >= ${}", conditions.len() + 1));
    }
    if to.is_some() {
        conditions.push(format!("\"as_of\" <= ${}", conditions.len() + 1));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    (
        format!("SELECT {date}, {list} FROM {}{filter}", quote(table)),
        bounds,
    )
}

/// Reads `columns` of every snapshot of a table, with `as_of` first, as a typed
/// batch (one query). The point-in-time join runs on this in memory, so its cost
/// does not depend on a query planner's row estimates.
pub async fn read_table(
    db: &Db,
    table: &str,
    columns: &[(String, ColumnType)],
    dates_between: (Option<NaiveDate>, Option<NaiveDate>),
) -> Result<(Vec<NaiveDate>, Batch), StoreError> {
    use futures_util::TryStreamExt;
    let (sql, bounds) = select_dated(table, columns, dates_between, "\"as_of\"");
    let mut dates = Vec::new();
    let mut cols: Vec<Column> = columns
        .iter()
        .map(|(_, ty)| Column::with_capacity(*ty, 0))
        .collect();
    match db {
        Db::Sqlite { path, .. } => {
            let path = path.clone();
            let types: Vec<ColumnType> = columns.iter().map(|(_, ty)| *ty).collect();
            let read = tokio::task::spawn_blocking(move || {
                let mut whole = None;
                Scan {
                    sql: &sql,
                    bounds: &bounds,
                    types: &types,
                    chunk_rows: usize::MAX,
                }
                .run(&path, |d, c| {
                    whole = Some((d, c));
                    true
                })
                .map(|()| whole)
            });
            if let Some((d, c)) = read.await?? {
                dates = d;
                cols = c;
            }
        }
        Db::Postgres { pool, .. } => {
            // Rows are decoded as they stream in, never all held as driver
            // rows at once (at 1.4 M rows those were gigabytes, and the time
            // to build them).
            let mut q = sqlx::query(trusted(&sql));
            for b in &bounds {
                q = q.bind(*b);
            }
            let mut rows = q.fetch(pool);
            while let Some(row) = rows.try_next().await? {
                dates.push(push_pg_row(&row, &mut cols)?);
            }
        }
    }
    let lines = (1..=dates.len() as u64).collect();
    let batch = Batch {
        columns: columns.iter().map(|(c, _)| c.clone()).zip(cols).collect(),
        lines,
    };
    Ok((dates, batch))
}

/// Rows the manifest records for a table's snapshots between `dates_between`
/// (inclusive; a missing bound is open): what a read of those dates returns,
/// known without reading it.
pub async fn rows_between(
    db: &Db,
    table: &str,
    dates_between: (Option<NaiveDate>, Option<NaiveDate>),
) -> Result<i64, StoreError> {
    let snaps: Vec<(String, i64)> = with_pool!(db, p => sqlx::query_as(
        "SELECT as_of, row_count FROM reconcile_snapshots WHERE table_name = $1")
        .bind(table).fetch_all(p).await)?;
    let (from, to) = dates_between;
    Ok(snaps
        .into_iter()
        .filter(|(as_of, _)| {
            let Ok(d) = as_of.parse::<NaiveDate>() else {
                return true;
            };
            from.is_none_or(|f| d >= f) && to.is_none_or(|t| d <= t)
        })
        .map(|(_, n)| n)
        .sum())
}

/// The snapshot dates the manifest holds for a table, oldest first: reads
/// can then ask for one snapshot at a time.
pub async fn snapshot_dates(db: &Db, table: &str) -> Result<Vec<NaiveDate>, StoreError> {
    let dates: Vec<(String,)> = with_pool!(db, p => sqlx::query_as(
        "SELECT as_of FROM reconcile_snapshots WHERE table_name = $1")
        .bind(table).fetch_all(p).await)?;
    let mut dates: Vec<NaiveDate> = dates
        .into_iter()
        .filter_map(|(d,)| d.parse().ok())
        .collect();
    dates.sort_unstable();
    Ok(dates)
}

/// The distinct values of `key` in the snapshots at or before `to`.
pub async fn distinct_keys(
    db: &Db,
    table: &str,
    key: &str,
    to: NaiveDate,
) -> Result<Vec<String>, StoreError> {
    let sql = format!(
        "SELECT DISTINCT {} FROM {} WHERE \"as_of\" <= $1 AND {} IS NOT NULL",
        quote(key),
        quote(table),
        quote(key)
    );
    let keys: Vec<(String,)> =
        with_pool!(db, p => sqlx::query_as(trusted(&sql)).bind(to).fetch_all(p).await)?;
    Ok(keys.into_iter().map(|(k,)| k).collect())
}

/// Which rows of each key [`read_table_by_key`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRows {
    /// Every snapshot's row (the point-in-time join needs them all).
    All,
    /// At least the row of the key's newest snapshot, perhaps more: what a
    /// materialization keeps. On SQLite the query returns that row alone
    /// (`GROUP BY` the key with `MAX` of the date, whose other columns SQLite
    /// takes from the row holding the maximum), so a table of many months
    /// hands one row per key to the driver, whose per-row hand-over between
    /// threads is most of a materialization's read. PostgreSQL streams every
    /// row: its protocol costs little per row, and a `DISTINCT ON` would sort
    /// against the key index's order.
    Latest,
}

/// Streams `columns` (the first one a text key) of the snapshots between
/// `dates_between`, ordered by key then date, and hands them to `on_chunk` in
/// chunks of about `chunk_rows` rows that never split a key: the chunked
/// point-in-time join and materialization hold a chunk, never the table.
/// The read waits for the future `on_chunk` returns before it goes on, so a
/// chunk can be written somewhere (asynchronously) before the next is read.
pub async fn read_table_by_key<E, F>(
    db: &Db,
    table: &str,
    columns: &[(String, ColumnType)],
    dates_between: (Option<NaiveDate>, Option<NaiveDate>),
    rows: KeyRows,
    chunk_rows: usize,
    mut on_chunk: impl FnMut(Vec<NaiveDate>, Batch) -> F,
) -> Result<(), E>
where
    E: From<StoreError>,
    F: std::future::Future<Output = Result<(), E>>,
{
    let date = match (rows, db) {
        (KeyRows::Latest, Db::Sqlite { .. }) => "MAX(\"as_of\")",
        _ => "\"as_of\"",
    };
    let (select, bounds) = select_dated(table, columns, dates_between, date);
    let key = columns
        .first()
        .map_or_else(|| quote("as_of"), |(k, _)| quote(k));
    let sql = match (rows, db) {
        (KeyRows::Latest, Db::Sqlite { .. }) => format!("{select} GROUP BY {key} ORDER BY {key}"),
        _ => format!("{select} ORDER BY {key}, \"as_of\""),
    };
    let types: Vec<ColumnType> = columns.iter().map(|(_, ty)| *ty).collect();
    // The read runs ahead by one chunk, on a thread (SQLite) or a task
    // (PostgreSQL) of its own, so the next chunk is read and decoded while
    // `on_chunk` works on this one.
    let (ready, mut chunks) = tokio::sync::mpsc::channel(1);
    let read = match db {
        Db::Sqlite { path, .. } => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                Scan {
                    sql: &sql,
                    bounds: &bounds,
                    types: &types,
                    chunk_rows,
                }
                .run(&path, |d, c| ready.blocking_send((d, c)).is_ok())
            })
        }
        Db::Postgres { pool, .. } => {
            let pool = pool.clone();
            tokio::spawn(async move {
                stream_postgres(&pool, &sql, &bounds, &types, chunk_rows, ready).await
            })
        }
    };
    while let Some((dates, cols)) = chunks.recv().await {
        let batch = Batch {
            lines: (1..=dates.len() as u64).collect(),
            columns: columns.iter().map(|(c, _)| c.clone()).zip(cols).collect(),
        };
        on_chunk(dates, batch).await?;
    }
    read.await.map_err(StoreError::from)??;
    Ok(())
}

/// Appends a PostgreSQL row of a dated read (the date first, then one value
/// per column of `cols`) to `cols`; returns its date.
fn push_pg_row(row: &sqlx::postgres::PgRow, cols: &mut [Column]) -> Result<NaiveDate, sqlx::Error> {
    use sqlx::Row;
    for (i, col) in cols.iter_mut().enumerate() {
        let j = i + 1;
        match col {
            Column::Str(v) => v.push(row.try_get::<Option<String>, _>(j)?),
            Column::Int(v) => v.push(row.try_get::<Option<i64>, _>(j)?),
            Column::Float(v) => v.push(row.try_get::<Option<f64>, _>(j)?),
            Column::Bool(v) => v.push(row.try_get::<Option<bool>, _>(j)?),
            Column::Date(v) => v.push(row.try_get::<Option<NaiveDate>, _>(j)?),
        }
    }
    row.try_get(0)
}

/// [`read_table_by_key`]'s read on PostgreSQL: rows of `sql` (the date
/// first, then the columns, the key first among them) decoded into chunks
/// of about `chunk_rows` rows that never split a key, each sent to `ready`.
/// Stops early, without error, when the receiver is gone.
async fn stream_postgres(
    pool: &sqlx::PgPool,
    sql: &str,
    bounds: &[NaiveDate],
    types: &[ColumnType],
    chunk_rows: usize,
    ready: tokio::sync::mpsc::Sender<(Vec<NaiveDate>, Vec<Column>)>,
) -> Result<(), StoreError> {
    use futures_util::TryStreamExt;
    use sqlx::Row;
    let fresh = || -> Vec<Column> {
        types
            .iter()
            .map(|ty| Column::with_capacity(*ty, 0))
            .collect()
    };
    let mut q = sqlx::query(trusted(sql));
    for b in bounds {
        q = q.bind(*b);
    }
    let mut rows = q.fetch(pool);
    let mut dates: Vec<NaiveDate> = Vec::new();
    let mut cols = fresh();
    let mut last_key: Option<String> = None;
    while let Some(row) = rows.try_next().await? {
        let key: Option<String> = row.try_get(1)?;
        if dates.len() >= chunk_rows && key != last_key {
            let chunk = (
                std::mem::take(&mut dates),
                std::mem::replace(&mut cols, fresh()),
            );
            if ready.send(chunk).await.is_err() {
                return Ok(());
            }
        }
        dates.push(push_pg_row(&row, &mut cols)?);
        last_key = key;
    }
    if !dates.is_empty() {
        // A receiver gone by now has stopped on an error of its own.
        let _ = ready.send((dates, cols)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_sorts_by_the_primary_key_nulls_first_ties_in_file_order() {
        let batch = Batch {
            columns: vec![
                (
                    "id".into(),
                    Column::Str(vec![
                        Some("b".into()),
                        Some("a".into()),
                        None,
                        Some("b".into()),
                        Some("a".into()),
                    ]),
                ),
                (
                    "n".into(),
                    Column::Float(vec![Some(2.0), Some(1.0), Some(0.0), None, Some(1.0)]),
                ),
            ],
            lines: vec![1, 2, 3, 4, 5],
        };
        assert_eq!(key_order(&batch, &["id".into()]), [2, 1, 4, 0, 3]);
        assert_eq!(
            key_order(&batch, &["id".into(), "n".into()]),
            [2, 1, 4, 3, 0]
        );
        assert_eq!(key_order(&batch, &[]), [0, 1, 2, 3, 4]);
    }
}
