//! PostgreSQL's online writes: each view in a partition of its own of
//! `reconcile_online` (partitioned by view, migration 0008), built beside the
//! live one and swapped in at commit.
//!
//! Maintaining one shared table's index row by row was the server's time: a
//! rebuild of 700 000 rows (`DELETE` then `COPY` under the `(view,
//! entity_key)` key) took about 6 s in `psql` on this machine, where a fresh
//! table loaded with `COPY … FREEZE` and indexed after the load took 1.3–1.5
//! s. So a rebuild loads `<partition>_next`, builds its key after the load
//! and, at commit, drops the view's partition and attaches the new table in
//! its place. An incremental write stages its rows in a temporary table and,
//! when they are a large part of the view, rewrites the view the same way
//! (the rows it keeps plus the staged ones; 2.5 s against 8.6 s in place for
//! 700 000 staged over 700 000); a small one is applied in place. The swap,
//! the rows and the view's record commit in one transaction, so readers see
//! the view before or after, never between, as on every store.
//!
//! Rows stored before partitions (migration 0008 made the old table the
//! default partition, `reconcile_online_shared`) stay readable there until
//! their view's first swap removes them.

// Every statement built with `format!` below names tables by
// [`partition_of`] (hex of a hash) and views by [`literal`]: `AssertSqlSafe`
// marks those, not user text.
use sqlx::{AssertSqlSafe, Postgres, Transaction};

use super::StoreError;
use super::online::{COUNT_VIEW, DELETE_RECORD, OnlineRows, OnlineView, UPSERT_VIEW};
use crate::store::now_ms;

/// The partitioned table every view's rows are read through.
const PARENT: &str = "reconcile_online";

/// The default partition: rows written before views had partitions.
const SHARED: &str = "reconcile_online_shared";

/// An incremental write stages at least this fraction (1/N) of the view's
/// entities before it rewrites the view rather than applying in place: in
/// `psql`, 70 000 staged over 700 000 took 0.75 s in place and 1.7 s
/// rewritten; 700 000 took 8.6 s in place and 2.5 s rewritten.
const REWRITE_FRACTION: i64 = 4;

/// Serializes the commit half of online writes (the swap, an in-place
/// upsert, a drop) across connections. Every writer takes it before it
/// touches the partitioned table, the default partition or a view's
/// partition, so no two writers ever wait on each other's table locks in
/// opposite orders; the loads before it run in parallel.
const COMMIT_LOCK: i64 = 0x7265_636f_6e63_696c; // "reconcil"

/// Bytes of COPY data sent per message: bounds the buffer, not the transaction.
const COPY_BUFFER: usize = 4 << 20;

/// A view's partition: a name of its own whatever the view is called
/// (identifiers are at most 63 bytes), stable across runs.
fn partition_of(view: &str) -> String {
    let hash = blake3::hash(view.as_bytes()).to_hex();
    format!("{PARENT}_{}", &hash[..16])
}

/// `value` as an SQL string literal. DDL takes no bind parameters, and a
/// partition's bound and check name its view. An escape string (`E'…'`)
/// reads a backslash the same whatever `standard_conforming_strings` says,
/// so doubling backslashes and quotes is the whole escape.
fn literal(value: &str) -> String {
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The table a rebuild or rewrite loads: the partition's columns, with a
/// check that lets `ATTACH PARTITION` skip scanning it.
fn create_next(next: &str, view: &str) -> String {
    format!(
        "CREATE TABLE {next} (view TEXT NOT NULL, entity_key TEXT COLLATE \"C\" NOT NULL, \
         as_of TEXT NOT NULL, features TEXT NOT NULL, CHECK (view = {}))",
        literal(view)
    )
}

/// How a view's write proceeds.
enum Load {
    /// A rebuild: rows go straight into the new table.
    Rebuild,
    /// An incremental write: rows are staged in a temporary table.
    Staged,
}

/// One view's write in progress on PostgreSQL. Dropped without a commit,
/// the transaction rolls back, and the tables it made with it.
pub(super) struct PgViewWrite {
    tx: Transaction<'static, Postgres>,
    view: String,
    partition: String,
    load: Load,
}

impl PgViewWrite {
    /// Begins the transaction and makes the table the rows go into.
    pub(super) async fn begin(
        pool: &sqlx::PgPool,
        view: &str,
        full: bool,
    ) -> Result<PgViewWrite, StoreError> {
        let mut tx = pool.begin().await?;
        let partition = partition_of(view);
        let load = if full {
            let sql = create_next(&format!("{partition}_next"), view);
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
            Load::Rebuild
        } else {
            sqlx::raw_sql(
                "CREATE TEMPORARY TABLE reconcile_online_incoming (entity_key TEXT COLLATE \"C\" NOT NULL, \
                 as_of TEXT NOT NULL, features TEXT NOT NULL) ON COMMIT DROP",
            )
            .execute(&mut *tx)
            .await?;
            Load::Staged
        };
        Ok(PgViewWrite {
            tx,
            view: view.to_string(),
            partition,
            load,
        })
    }

    /// Copies one chunk of rows (no key twice across the chunks of a write).
    pub(super) async fn write(&mut self, rows: &OnlineRows) -> Result<(), StoreError> {
        match self.load {
            // FREEZE: the table was made in this transaction, so its rows
            // can be written frozen, and no later pass rewrites them.
            Load::Rebuild => {
                let copy = format!(
                    "COPY {}_next (view, entity_key, as_of, features) FROM STDIN (FORMAT binary, FREEZE)",
                    self.partition
                );
                copy_rows(&mut self.tx, &copy, Some(&self.view), rows).await?
            }
            Load::Staged => {
                copy_rows(
                    &mut self.tx,
                    "COPY reconcile_online_incoming (entity_key, as_of, features) FROM STDIN (FORMAT binary)",
                    None,
                    rows,
                )
                .await?
            }
        }
        Ok(())
    }

    /// Puts the written rows in place, records the view and its entity
    /// count (`written` rows were copied) and commits.
    pub(super) async fn commit(
        mut self,
        record: &OnlineView,
        written: i64,
    ) -> Result<i64, StoreError> {
        let next = format!("{}_next", self.partition);
        let n = match self.load {
            Load::Rebuild => {
                // The key is built after the load, before the commit lock:
                // concurrent rebuilds sort their keys in parallel.
                self.index(&next).await?;
                self.lock_commit().await?;
                self.swap(&next).await?;
                written
            }
            Load::Staged => {
                self.lock_commit().await?;
                let (existing,): (i64,) = sqlx::query_as(
                    "SELECT COALESCE((SELECT entity_count FROM reconcile_online_views WHERE view = $1), 0)",
                )
                .bind(&self.view)
                .fetch_one(&mut *self.tx)
                .await?;
                if written.saturating_mul(REWRITE_FRACTION) >= existing {
                    self.rewrite(&next).await?
                } else {
                    self.upsert_in_place().await?
                }
            }
        };
        sqlx::query(UPSERT_VIEW)
            .bind(&self.view)
            .bind(&record.schema_hash)
            .bind(&record.source_hash)
            .bind(&record.watermark)
            .bind(n)
            .bind(now_ms())
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(n)
    }

    /// Builds the new table's key (and fails on a key written twice).
    async fn index(&mut self, table: &str) -> Result<(), StoreError> {
        let sql =
            format!("ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (entity_key)");
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Waits for the commit lock; held until the commit.
    async fn lock_commit(&mut self) -> Result<(), StoreError> {
        lock_commits(&mut self.tx).await
    }

    /// The view's rows now: its partition's, or the default partition's
    /// for a view not swapped since the upgrade. Read from the table itself,
    /// not through the parent, so only the commit lock orders writers.
    async fn current_table(&mut self) -> Result<Option<String>, StoreError> {
        let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL")
            .bind(&self.partition)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(exists.then(|| self.partition.clone()))
    }

    /// A new table of the rows the staged ones do not replace and the staged
    /// ones, indexed and swapped in; returns its row count.
    async fn rewrite(&mut self, next: &str) -> Result<i64, StoreError> {
        sqlx::raw_sql(AssertSqlSafe(create_next(next, &self.view)))
            .execute(&mut *self.tx)
            .await?;
        // Statistics and memory for a hash anti-join: without them the
        // planner guessed a temporary table's size and took seconds more.
        sqlx::raw_sql("ANALYZE reconcile_online_incoming; SET LOCAL work_mem = '128MB'")
            .execute(&mut *self.tx)
            .await?;
        let source = match self.current_table().await? {
            Some(partition) => partition,
            None => SHARED.to_string(),
        };
        let kept = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {next} (view, entity_key, as_of, features) \
             SELECT view, entity_key, as_of, features FROM {source} o WHERE o.view = $1 \
             AND NOT EXISTS (SELECT 1 FROM reconcile_online_incoming i WHERE i.entity_key = o.entity_key)"
        )))
        .bind(&self.view)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        let staged = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {next} (view, entity_key, as_of, features) \
             SELECT $1, entity_key, as_of, features FROM reconcile_online_incoming"
        )))
        .bind(&self.view)
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        self.index(next).await?;
        self.swap(next).await?;
        Ok(i64::try_from(kept + staged).unwrap_or(i64::MAX))
    }

    /// Replaces the staged keys' rows where they are: a delete of the rows
    /// they replace, then an insert (the staged keys are distinct; in
    /// `psql` this took 6.6 s at 700 000 rows where `INSERT … ON CONFLICT
    /// DO UPDATE` took 9.6 s). Returns the view's count after.
    async fn upsert_in_place(&mut self) -> Result<i64, StoreError> {
        sqlx::query(
            "DELETE FROM reconcile_online o USING reconcile_online_incoming i \
             WHERE o.view = $1 AND o.entity_key = i.entity_key",
        )
        .persistent(false)
        .bind(&self.view)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query(
            "INSERT INTO reconcile_online (view, entity_key, as_of, features) \
             SELECT $1, entity_key, as_of, features FROM reconcile_online_incoming",
        )
        .persistent(false)
        .bind(&self.view)
        .execute(&mut *self.tx)
        .await?;
        let (n,): (i64,) = sqlx::query_as(COUNT_VIEW)
            .bind(&self.view)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(n)
    }

    /// Drops the view's rows where they are and attaches `next` as its
    /// partition. Under the commit lock; the parent's exclusive lock, which
    /// makes readers wait, is held from here to the commit only.
    async fn swap(&mut self, next: &str) -> Result<(), StoreError> {
        remove_rows(&mut self.tx, &self.view, &self.partition).await?;
        let partition = &self.partition;
        let sql = format!(
            "ALTER TABLE {next} RENAME TO {partition}; \
             ALTER INDEX {next}_pkey RENAME TO {partition}_pkey; \
             ALTER TABLE {PARENT} ATTACH PARTITION {partition} FOR VALUES IN ({})",
            literal(&self.view)
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

/// Waits for [`COMMIT_LOCK`] in `tx`; held until it ends.
async fn lock_commits(tx: &mut Transaction<'static, Postgres>) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(COMMIT_LOCK)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes a view's rows: its partition, and any rows of it in the default
/// partition.
async fn remove_rows(
    tx: &mut Transaction<'static, Postgres>,
    view: &str,
    partition: &str,
) -> Result<(), StoreError> {
    let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL")
        .bind(partition)
        .fetch_one(&mut **tx)
        .await?;
    if exists {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {partition}")))
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("DELETE FROM reconcile_online_shared WHERE view = $1")
        .bind(view)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes a view's rows and record, atomically.
pub(super) async fn drop_view(pool: &sqlx::PgPool, view: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    lock_commits(&mut tx).await?;
    remove_rows(&mut tx, view, &partition_of(view)).await?;
    sqlx::query(DELETE_RECORD)
        .bind(view)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Streams `rows` through `copy` (a `COPY … FROM STDIN (FORMAT binary)` of
/// text columns: the view first when given, then key, date and features).
/// Binary COPY carries each value as its length and bytes, so no text needs
/// escaping.
async fn copy_rows(
    tx: &mut Transaction<'static, Postgres>,
    copy: &str,
    view: Option<&str>,
    rows: &OnlineRows,
) -> Result<(), sqlx::Error> {
    fn field(buf: &mut Vec<u8>, value: &str) {
        // A value of 2 GiB or more cannot be sent; PostgreSQL caps text at 1 GB.
        let len = i32::try_from(value.len()).unwrap_or(i32::MAX);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(value.as_bytes());
    }
    let columns: i16 = if view.is_some() { 4 } else { 3 };
    let mut buf: Vec<u8> = Vec::with_capacity(COPY_BUFFER + 4096);
    // Signature, flags (no OIDs), no header extension.
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    let mut sink = tx.copy_in_raw(copy).await?;
    for i in 0..rows.keys.len() {
        buf.extend_from_slice(&columns.to_be_bytes());
        if let Some(view) = view {
            field(&mut buf, view);
        }
        field(&mut buf, &rows.keys[i]);
        field(&mut buf, &rows.as_of[i]);
        field(&mut buf, &rows.features[i]);
        if buf.len() >= COPY_BUFFER {
            sink.send(buf.as_slice()).await?;
            buf.clear();
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    sink.send(buf.as_slice()).await?;
    sink.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_short_identifiers() {
        let p = partition_of("customer_features");
        assert_eq!(p, partition_of("customer_features"));
        assert_ne!(p, partition_of("customer-features"));
        // Room for the `_next_pkey` suffix under PostgreSQL's 63 bytes.
        assert!(p.len() + "_next_pkey".len() <= 63, "{p}");
        assert!(
            p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }

    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(literal("churn"), "E'churn'");
        assert_eq!(literal("it's"), "E'it''s'");
        assert_eq!(literal(r"a\'b"), r"E'a\\''b'");
    }
}
