//! The online store: the latest feature values per entity for each online view,
//! one JSON object of typed values per (view, entity key), plus a watermark per
//! view. Behind a URL: the SQL stores (`sqlite://`, `postgres://`) or Redis
//! (`redis://host:port/db?prefix=NAME`).
//!
//! A view's rows and its watermark change atomically, so readers see a view either
//! before or after a materialization, never between: one transaction on SQL; on
//! Redis the new rows are written to a scratch hash (a copy of the view's for an
//! incremental write) and swapped in with `RENAME` inside `MULTI`/`EXEC`.
//!
//! Writes go at the store's bulk speed: on PostgreSQL binary `COPY` into a
//! table of the view's own, indexed after the load and swapped in as the
//! view's partition at commit ([`online_pg`]); one prepared upsert stepped per row on a SQLite connection of the write's own
//! (off sqlx's per-value hand-over, [`sqlite_bulk`]), pipelined `HSET`
//! batches on Redis. A materialization hands its rows over in chunks ([`ViewWriter`])
//! into the one transaction or scratch hash, so it never holds a whole view.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::online_pg::{self, PgViewWrite};
use super::{BeginWrite, Db, StoreError, now_ms, sqlite_bulk};
use crate::data::{Batch, Column};
use crate::with_pool;

/// What the online store records about one view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnlineView {
    /// Hash of the view's feature list, types and key.
    pub schema_hash: String,
    /// Hash of the source snapshots (date and file hash) at or below the watermark.
    pub source_hash: String,
    /// Latest snapshot date materialized.
    pub watermark: String,
    /// Entities stored.
    pub entity_count: i64,
}

/// Every view's record, in one query.
async fn observe_sql(db: &Db) -> Result<HashMap<String, OnlineView>, StoreError> {
    let rows: Vec<(String, String, String, String, i64)> = with_pool!(db, p => sqlx::query_as(
        "SELECT view, schema_hash, source_hash, watermark, entity_count FROM reconcile_online_views").fetch_all(p).await)?;
    Ok(rows
        .into_iter()
        .map(
            |(view, schema_hash, source_hash, watermark, entity_count)| {
                (
                    view,
                    OnlineView {
                        schema_hash,
                        source_hash,
                        watermark,
                        entity_count,
                    },
                )
            },
        )
        .collect())
}

/// Rows to write: entity key, its snapshot date and its feature values.
#[derive(Debug, Default)]
pub struct OnlineRows {
    /// Entity keys.
    pub keys: Vec<String>,
    /// Snapshot date of each key's values.
    pub as_of: Vec<String>,
    /// JSON object of feature values per key.
    pub features: Vec<String>,
}

impl OnlineRows {
    /// The latest row per key of `batch` (whose first column is the key), with
    /// `dates` the snapshot date of each batch row.
    pub fn latest(batch: &Batch, dates: &[chrono::NaiveDate]) -> OnlineRows {
        let Some((_, Column::Str(keys))) = batch.columns.first() else {
            return OnlineRows::default();
        };
        let mut latest: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            if let Some(k) = k {
                let e = latest.entry(k.as_str()).or_insert(i);
                if dates[i] > dates[*e] {
                    *e = i;
                }
            }
        }
        let mut picked: Vec<(&str, usize)> = latest.into_iter().collect();
        picked.sort_unstable();
        // Features in name order with their `"name":` prefix rendered once; each
        // row's JSON is then written straight into one buffer (no map per row).
        let mut features: Vec<(String, &Column)> = batch.columns[1..]
            .iter()
            .map(|(name, col)| (format!("{}:", Value::from(name.as_str())), col))
            .collect();
        features.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = OnlineRows {
            keys: Vec::with_capacity(picked.len()),
            as_of: Vec::with_capacity(picked.len()),
            features: Vec::with_capacity(picked.len()),
        };
        // A few snapshot dates cover every row: format each once.
        let mut date_text: Vec<(chrono::NaiveDate, String)> = Vec::new();
        for (k, i) in picked {
            let as_of = match date_text.iter().find(|(d, _)| *d == dates[i]) {
                Some((_, text)) => text.clone(),
                None => {
                    let text = dates[i].to_string();
                    date_text.push((dates[i], text.clone()));
                    text
                }
            };
            let mut json = String::with_capacity(24 * features.len());
            json.push('{');
            for (n, (prefix, col)) in features.iter().enumerate() {
                if n > 0 {
                    json.push(',');
                }
                json.push_str(prefix);
                write_json_value(&mut json, col, i);
            }
            json.push('}');
            out.keys.push(k.to_string());
            out.as_of.push(as_of);
            out.features.push(json);
        }
        out
    }
}

/// Appends a typed cell as JSON (`null` for null), as serde_json would write it.
fn write_json_value(out: &mut String, col: &Column, i: usize) {
    use std::fmt::Write as _;
    let _ = match col {
        Column::Str(v) => match &v[i] {
            Some(s) => {
                write_json_str(out, s);
                Ok(())
            }
            None => write!(out, "null"),
        },
        Column::Int(v) => match v[i] {
            Some(x) => write!(out, "{x}"),
            None => write!(out, "null"),
        },
        // Debug keeps the shortest round-trip form and a `.0` on whole numbers.
        Column::Float(v) => match v[i] {
            Some(x) => write!(out, "{x:?}"),
            None => write!(out, "null"),
        },
        Column::Bool(v) => match v[i] {
            Some(x) => write!(out, "{x}"),
            None => write!(out, "null"),
        },
        Column::Date(v) => match v[i] {
            Some(d) => write!(out, "\"{d}\""),
            None => write!(out, "null"),
        },
    };
}

/// Appends a JSON string literal with the escapes JSON requires.
fn write_json_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Records a view's watermark and entity count; the last statement of every
/// materialization's transaction.
pub(super) const UPSERT_VIEW: &str = "INSERT INTO reconcile_online_views (view, schema_hash, source_hash, watermark, entity_count, updated_ms) \
    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (view) DO UPDATE SET schema_hash = excluded.schema_hash, \
    source_hash = excluded.source_hash, watermark = excluded.watermark, entity_count = excluded.entity_count, updated_ms = excluded.updated_ms";

/// Entities of a view, counted inside the transaction that wrote them.
pub(super) const COUNT_VIEW: &str = "SELECT COUNT(*) FROM reconcile_online WHERE view = $1";

/// The upsert of one row on SQLite: prepared once per chunk and stepped per
/// row inside the view's transaction.
const UPSERT_ROW: &str = "INSERT INTO reconcile_online (view, entity_key, as_of, features) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (view, entity_key) DO UPDATE SET as_of = excluded.as_of, features = excluded.features";

/// The SQL half of a [`ViewWriter`]: the transaction every chunk goes into.
enum SqlWrite {
    Sqlite(SqliteWrite),
    Postgres(PgViewWrite),
}

/// A SQLite materialization in progress: a write transaction on a connection
/// of its own ([`sqlite_bulk::connect_writer`]), whose statements run on
/// blocking threads. Dropped without a commit, the connection closes and
/// SQLite rolls the transaction back.
struct SqliteWrite {
    conn: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>,
    /// Held until the write ends, as a table load holds it.
    _gate: tokio::sync::OwnedMutexGuard<()>,
}

impl SqliteWrite {
    /// Opens the connection and begins the transaction; a rebuild removes
    /// the view's rows first.
    async fn begin(
        path: &std::path::Path,
        view: &str,
        full: bool,
    ) -> Result<SqliteWrite, StoreError> {
        let gate = sqlite_bulk::write_gate(path).lock_owned().await;
        let path = path.to_path_buf();
        let view = view.to_string();
        let conn = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let conn = sqlite_bulk::connect_writer(&path)?;
            conn.execute_batch("BEGIN IMMEDIATE")?;
            if full {
                conn.execute(DELETE_VIEW, [&view])?;
            }
            Ok(conn)
        })
        .await??;
        Ok(SqliteWrite {
            conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
            _gate: gate,
        })
    }

    /// Runs `work` on the connection on a blocking thread.
    async fn on_conn<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic in an earlier step already failed the write; the
            // transaction is only ever rolled back after it.
            let conn = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&conn)
        })
        .await?
    }

    /// Upserts one chunk, a prepared statement stepped per row.
    async fn write(&self, view: &str, rows: OnlineRows) -> Result<(), StoreError> {
        let view = view.to_string();
        self.on_conn(move |conn| {
            let mut upsert = conn.prepare(UPSERT_ROW)?;
            for ((key, as_of), features) in rows.keys.iter().zip(&rows.as_of).zip(&rows.features) {
                upsert.execute((view.as_str(), key, as_of, features))?;
            }
            Ok(())
        })
        .await
    }

    /// Records the view (its entity count `written` on a rebuild, counted
    /// otherwise) and commits.
    async fn commit(
        self,
        view: &str,
        record: &OnlineView,
        full: bool,
        written: i64,
    ) -> Result<i64, StoreError> {
        let view = view.to_string();
        let record = record.clone();
        self.on_conn(move |conn| {
            let n = if full {
                written
            } else {
                conn.query_row(COUNT_VIEW, [&view], |r| r.get(0))?
            };
            conn.execute(
                UPSERT_VIEW,
                (
                    &view,
                    &record.schema_hash,
                    &record.source_hash,
                    &record.watermark,
                    n,
                    now_ms(),
                ),
            )?;
            conn.execute_batch("COMMIT")?;
            Ok(n)
        })
        .await
    }
}

const DELETE_VIEW: &str = "DELETE FROM reconcile_online WHERE view = $1";

/// One stored row's features. Every row is written as a JSON object by a
/// materialization, so one that does not parse is an error that names it,
/// never an entity answered with no features.
fn parse_row(view: &str, key: &str, features: &str) -> Result<Value, StoreError> {
    serde_json::from_str(features).map_err(|source| StoreError::CorruptRow {
        view: view.to_string(),
        key: key.to_string(),
        source,
    })
}

/// Removes a view's record (with its rows, in the same transaction).
pub(super) const DELETE_RECORD: &str = "DELETE FROM reconcile_online_views WHERE view = $1";

/// Begins a view's write: on SQLite a transaction (a rebuild removes the
/// view's rows first); on PostgreSQL the table its chunks are copied into
/// ([`PgViewWrite`]).
async fn begin_view_sql(db: &Db, view: &str, full: bool) -> Result<SqlWrite, StoreError> {
    Ok(match db {
        Db::Sqlite { path, .. } => SqlWrite::Sqlite(SqliteWrite::begin(path, view, full).await?),
        Db::Postgres { pool, .. } => {
            SqlWrite::Postgres(PgViewWrite::begin(pool, view, full).await?)
        }
    })
}

impl SqlWrite {
    /// Adds one chunk of rows (no key twice across the chunks of a write).
    async fn write(&mut self, view: &str, rows: OnlineRows) -> Result<(), StoreError> {
        match self {
            SqlWrite::Sqlite(w) => w.write(view, rows).await,
            SqlWrite::Postgres(w) => w.write(&rows).await,
        }
    }

    /// Records the view and its entity count (`written` rows were handed
    /// over) and commits: the view's rows and record change together.
    async fn commit(
        self,
        view: &str,
        record: &OnlineView,
        full: bool,
        written: i64,
    ) -> Result<i64, StoreError> {
        match self {
            SqlWrite::Sqlite(w) => w.commit(view, record, full, written).await,
            SqlWrite::Postgres(w) => w.commit(record, written).await,
        }
    }
}

/// Removes a view's rows and record, atomically.
async fn drop_view_sql(db: &Db, view: &str) -> Result<(), StoreError> {
    match db {
        Db::Sqlite { pool, .. } => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(DELETE_VIEW)
                .bind(view)
                .execute(&mut *tx)
                .await?;
            sqlx::query(DELETE_RECORD)
                .bind(view)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }
        Db::Postgres { pool, .. } => online_pg::drop_view(pool, view).await,
    }
}

/// Feature values of many keys of one view in one round trip; absent keys are absent.
async fn read_many_sql(
    db: &Db,
    view: &str,
    keys: &[String],
) -> Result<HashMap<String, Value>, StoreError> {
    let rows: Vec<(String, String)> = match db {
        Db::Sqlite { pool, .. } => {
            let list = serde_json::to_string(keys).unwrap_or_else(|_| "[]".into());
            sqlx::query_as(
                "SELECT entity_key, features FROM reconcile_online WHERE view = $1 \
                 AND entity_key IN (SELECT value FROM json_each($2))",
            )
            .bind(view)
            .bind(list)
            .fetch_all(pool)
            .await?
        }
        Db::Postgres { pool, .. } => {
            sqlx::query_as("SELECT entity_key, features FROM reconcile_online WHERE view = $1 AND entity_key = ANY($2)")
                .bind(view)
                .bind(keys)
                .fetch_all(pool)
                .await?
        }
    };
    rows.into_iter()
        .map(|(k, f)| {
            let value = parse_row(view, &k, &f)?;
            Ok((k, value))
        })
        .collect()
}

/// Feature values of `keys` in each of `views`, in one round trip: the keyed
/// read an endpoint's read-through cache makes on a miss. Absent pairs are absent.
async fn read_keys_sql(
    db: &Db,
    views: &[&str],
    keys: &[&str],
) -> Result<Vec<(String, String, Value)>, StoreError> {
    let rows: Vec<(String, String, String)> = match db {
        Db::Sqlite { pool, .. } => {
            let views = serde_json::to_string(views).unwrap_or_else(|_| "[]".into());
            let keys = serde_json::to_string(keys).unwrap_or_else(|_| "[]".into());
            sqlx::query_as(
                "SELECT view, entity_key, features FROM reconcile_online \
                 WHERE view IN (SELECT value FROM json_each($1)) \
                 AND entity_key IN (SELECT value FROM json_each($2))",
            )
            .bind(views)
            .bind(keys)
            .fetch_all(pool)
            .await?
        }
        Db::Postgres { pool, .. } => {
            sqlx::query_as(
                "SELECT view, entity_key, features FROM reconcile_online \
                 WHERE view = ANY($1) AND entity_key = ANY($2)",
            )
            .bind(views)
            .bind(keys)
            .fetch_all(pool)
            .await?
        }
    };
    rows.into_iter()
        .map(|(v, k, f)| {
            let value = parse_row(&v, &k, &f)?;
            Ok((v, k, value))
        })
        .collect()
}

async fn read_all_sql(db: &Db, view: &str) -> Result<HashMap<String, Value>, StoreError> {
    const Q: &str = "SELECT entity_key, features FROM reconcile_online WHERE view = $1";
    match db {
        // An endpoint's start reads every row of its views: on a connection
        // of its own, each row parsed where it is stepped, off the async
        // workers (through the pool, 704 000 rows a view took seconds in the
        // driver's hand-over alone).
        Db::Sqlite { path, .. } => {
            let (path, view) = (path.clone(), view.to_string());
            tokio::task::spawn_blocking(move || {
                let conn = sqlite_bulk::connect_reader(&path)?;
                let mut stmt = conn.prepare(Q)?;
                let mut rows = stmt.query([&view])?;
                let mut out = HashMap::new();
                while let Some(row) = rows.next()? {
                    let key: String = row.get(0)?;
                    // Text that is not UTF-8 (or not text) fails the parse
                    // as an empty document does.
                    let text = match row.get_ref(1)? {
                        rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t).unwrap_or(""),
                        _ => "",
                    };
                    let features = parse_row(&view, &key, text)?;
                    out.insert(key, features);
                }
                Ok(out)
            })
            .await?
        }
        Db::Postgres { pool, .. } => {
            let rows: Vec<(String, String)> = sqlx::query_as(Q).bind(view).fetch_all(pool).await?;
            rows.into_iter()
                .map(|(k, f)| {
                    let value = parse_row(view, &k, &f)?;
                    Ok((k, value))
                })
                .collect()
        }
    }
}

/// Where online feature values live.
#[derive(Clone)]
pub enum OnlineStore {
    /// A SQL store (SQLite or PostgreSQL), possibly shared with the offline store.
    Sql(Db),
    /// A Redis server.
    Redis(RedisOnline),
}

impl std::fmt::Debug for OnlineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnlineStore::Sql(db) => write!(f, "OnlineStore::Sql({})", db.backend()),
            OnlineStore::Redis(r) => write!(f, "OnlineStore::Redis(prefix {})", r.prefix),
        }
    }
}

/// A Redis connection and the key prefix of this project's online data.
#[derive(Clone)]
pub struct RedisOnline {
    conn: redis::aio::MultiplexedConnection,
    prefix: String,
}

impl OnlineStore {
    /// Opens `url`: `redis://…` for Redis, anything else as a SQL store.
    pub async fn open(url: &str, base: &std::path::Path) -> Result<OnlineStore, StoreError> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Ok(OnlineStore::Sql(Db::open(url, base).await?));
        }
        let resolved = crate::spec::env::interpolate_url(url)?;
        let (address, query) = resolved.split_once('?').unwrap_or((resolved.as_str(), ""));
        let prefix = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("prefix="))
            .unwrap_or("reconcile")
            .to_string();
        let connect = |e: redis::RedisError| {
            StoreError::Redis(crate::spec::env::redact_secrets(&format!(
                "cannot open {}: {e}",
                crate::spec::env::redact_url(url)
            )))
        };
        let client = redis::Client::open(address).map_err(connect)?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(connect)?;
        Ok(OnlineStore::Redis(RedisOnline { conn, prefix }))
    }

    /// Every view's record.
    pub async fn observe(&self) -> Result<HashMap<String, OnlineView>, StoreError> {
        match self {
            OnlineStore::Sql(db) => observe_sql(db).await,
            OnlineStore::Redis(r) => r.observe().await,
        }
    }

    /// Writes a materialization of one view atomically; `full` replaces its rows.
    pub async fn write_view(
        &self,
        view: &str,
        record: &OnlineView,
        rows: OnlineRows,
        full: bool,
    ) -> Result<(), StoreError> {
        let mut w = self.begin_view(view, full).await?;
        w.write(rows).await?;
        w.commit(record).await?;
        Ok(())
    }

    /// Starts a materialization of one view that takes its rows in chunks
    /// ([`ViewWriter::write`]), so a view of millions of entities is never
    /// held whole; readers see none of it until [`ViewWriter::commit`].
    /// `full` replaces the view's rows, otherwise they are upserted.
    pub async fn begin_view(&self, view: &str, full: bool) -> Result<ViewWriter, StoreError> {
        let target = match self {
            OnlineStore::Sql(db) => WriteTarget::Sql(begin_view_sql(db, view, full).await?),
            OnlineStore::Redis(r) => WriteTarget::Redis(r.begin_view(view, full).await?),
        };
        Ok(ViewWriter {
            target,
            view: view.to_string(),
            full,
            written: 0,
        })
    }

    /// Removes a view's rows and record atomically.
    pub async fn drop_view(&self, view: &str) -> Result<(), StoreError> {
        match self {
            OnlineStore::Sql(db) => drop_view_sql(db, view).await,
            OnlineStore::Redis(r) => r.drop_view(view).await,
        }
    }

    /// Feature values of many keys of one view in one round trip.
    pub async fn read_many(
        &self,
        view: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Value>, StoreError> {
        match self {
            OnlineStore::Sql(db) => read_many_sql(db, view, keys).await,
            OnlineStore::Redis(r) => r.read_many(view, keys).await,
        }
    }

    /// Feature values of `keys` in each of `views`, as `(view, key, values)`, in
    /// one round trip (one query; one Redis pipeline): the keyed read behind an
    /// endpoint's read-through cache. Pairs the store does not hold are absent.
    pub async fn read_keys(
        &self,
        views: &[&str],
        keys: &[&str],
    ) -> Result<Vec<(String, String, Value)>, StoreError> {
        if views.is_empty() || keys.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            OnlineStore::Sql(db) => read_keys_sql(db, views, keys).await,
            OnlineStore::Redis(r) => r.read_keys(views, keys).await,
        }
    }

    /// Every entity's values of a view: what an endpoint caches in memory.
    pub async fn read_all(&self, view: &str) -> Result<HashMap<String, Value>, StoreError> {
        match self {
            OnlineStore::Sql(db) => read_all_sql(db, view).await,
            OnlineStore::Redis(r) => {
                let mut conn = r.conn.clone();
                // One reply of every entity: at 704 000 entities about 170 MB,
                // more than the client's default 500 ms to arrive (an
                // endpoint's start failed with `redis: timed out`). Keyed
                // reads keep the short timeout.
                conn.set_response_timeout(REDIS_WRITE_TIMEOUT);
                let all: HashMap<String, String> = redis::cmd("HGETALL")
                    .arg(r.rows_key(view))
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                all.into_iter()
                    .map(|(k, v)| {
                        let value = parse_row(view, &k, &v)?;
                        Ok((k, value))
                    })
                    .collect()
            }
        }
    }
}

/// One view's materialization in progress ([`OnlineStore::begin_view`]):
/// a SQL transaction, or on Redis the scratch hash swapped in at commit.
/// Dropped without a commit, nothing of it is visible (the transaction rolls
/// back; the next write of the view removes the scratch hash).
pub struct ViewWriter {
    target: WriteTarget,
    view: String,
    full: bool,
    /// Rows handed to `write` so far.
    written: i64,
}

enum WriteTarget {
    Sql(SqlWrite),
    Redis(RedisWrite),
}

impl ViewWriter {
    /// Adds a chunk of rows. A key must not appear in two chunks of one
    /// write (a rebuild counts the rows it was given as the view's entities).
    pub async fn write(&mut self, rows: OnlineRows) -> Result<(), StoreError> {
        let n = rows.keys.len() as i64;
        match &mut self.target {
            WriteTarget::Sql(w) => w.write(&self.view, rows).await?,
            WriteTarget::Redis(w) => w.write(&rows).await?,
        }
        self.written += n;
        Ok(())
    }

    /// Makes every chunk and the view's record visible at once; returns the
    /// view's entity count.
    pub async fn commit(self, record: &OnlineView) -> Result<i64, StoreError> {
        match self.target {
            WriteTarget::Sql(w) => w.commit(&self.view, record, self.full, self.written).await,
            WriteTarget::Redis(w) => w.commit(&self.view, record, self.written).await,
        }
    }
}

/// How long a write to Redis, or a read of a whole view, waits for one
/// reply: a server-side `COPY` of a view of millions of entities, or its
/// `HGETALL`, takes seconds on a busy machine.
const REDIS_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Fields per `HSET` while a view is written to Redis.
const REDIS_HSET_FIELDS: usize = 1_000;

/// `HSET`s sent per pipeline before its replies are awaited: about 64 000
/// rows in flight, which bounds the buffered request, not the view's size.
const REDIS_PIPELINE_COMMANDS: usize = 64;

fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError::Redis(e.to_string())
}

impl RedisOnline {
    fn rows_key(&self, view: &str) -> String {
        format!("{}:online:{view}", self.prefix)
    }

    fn meta_key(&self) -> String {
        format!("{}:online_views", self.prefix)
    }

    async fn observe(&self) -> Result<HashMap<String, OnlineView>, StoreError> {
        let mut conn = self.conn.clone();
        let meta: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.meta_key())
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(meta
            .into_iter()
            .filter_map(|(view, json)| {
                let v: Value = serde_json::from_str(&json).ok()?;
                Some((
                    view,
                    OnlineView {
                        schema_hash: v["schema_hash"].as_str()?.to_string(),
                        source_hash: v["source_hash"].as_str()?.to_string(),
                        watermark: v["watermark"].as_str()?.to_string(),
                        entity_count: v["entity_count"].as_i64()?,
                    },
                ))
            })
            .collect())
    }

    /// Every materialization, rebuild or incremental, builds the view's new
    /// hash aside (`…:next`) and swaps it in with `RENAME` inside
    /// `MULTI`/`EXEC`, together with the record: an incremental one starts
    /// the scratch hash as a server-side `COPY` of the current one. The rows
    /// go in pipelined `HSET` batches, so neither the size of one command nor
    /// a round trip per batch bounds the speed, and the entity count is the
    /// scratch hash's `HLEN` (no read of the existing rows). The apply lock
    /// makes this process the view's only writer; a scratch hash a killed
    /// process left behind is removed first.
    async fn begin_view(&self, view: &str, full: bool) -> Result<RedisWrite, StoreError> {
        let mut conn = self.conn.clone();
        // A server-side COPY of a large hash, or freeing the replaced one,
        // outlasts the client's default 500 ms response timeout: this clone
        // of the connection waits longer (readers keep the short one).
        conn.set_response_timeout(REDIS_WRITE_TIMEOUT);
        let main = self.rows_key(view);
        let scratch = format!("{main}:next");
        let retired = format!("{main}:old");
        let mut prepare = redis::pipe();
        prepare.cmd("UNLINK").arg(&scratch).arg(&retired).ignore();
        if !full {
            // Redis ≥ 6.2. A missing view copies nothing (and returns 0).
            prepare.cmd("COPY").arg(&main).arg(&scratch).ignore();
        }
        prepare.cmd("EXISTS").arg(&scratch);
        prepare.cmd("EXISTS").arg(&main);
        let (copied, existing): (i64, i64) =
            prepare.query_async(&mut conn).await.map_err(redis_err)?;
        Ok(RedisWrite {
            conn,
            meta_key: self.meta_key(),
            main,
            scratch,
            retired,
            copied,
            existing,
        })
    }

    async fn drop_view(&self, view: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(self.rows_key(view))
            .ignore()
            .cmd("HDEL")
            .arg(self.meta_key())
            .arg(view)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }

    async fn read_keys(
        &self,
        views: &[&str],
        keys: &[&str],
    ) -> Result<Vec<(String, String, Value)>, StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for view in views {
            pipe.cmd("HMGET").arg(self.rows_key(view)).arg(keys);
        }
        let found: Vec<Vec<Option<String>>> =
            pipe.query_async(&mut conn).await.map_err(redis_err)?;
        let mut out = Vec::new();
        for (view, values) in views.iter().zip(found) {
            for (key, v) in keys.iter().zip(values) {
                if let Some(json) = v {
                    let value = parse_row(view, key, &json)?;
                    out.push((view.to_string(), key.to_string(), value));
                }
            }
        }
        Ok(out)
    }

    async fn read_many(
        &self,
        view: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Value>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let mut conn = self.conn.clone();
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.rows_key(view))
            .arg(keys)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        keys.iter()
            .zip(values)
            .filter_map(|(k, v)| Some((k, v?)))
            .map(|(k, v)| Ok((k.clone(), parse_row(view, k, &v)?)))
            .collect()
    }
}

/// A Redis materialization in progress: the scratch hash being filled.
struct RedisWrite {
    conn: redis::aio::MultiplexedConnection,
    meta_key: String,
    main: String,
    scratch: String,
    retired: String,
    /// Whether the scratch hash started as a copy of the view's.
    copied: i64,
    /// Whether the view's hash existed when the write began.
    existing: i64,
}

impl RedisWrite {
    /// Adds rows to the scratch hash in pipelined `HSET` batches.
    async fn write(&mut self, rows: &OnlineRows) -> Result<(), StoreError> {
        let mut batch = redis::pipe();
        let mut queued = 0;
        for start in (0..rows.keys.len()).step_by(REDIS_HSET_FIELDS) {
            let end = (start + REDIS_HSET_FIELDS).min(rows.keys.len());
            let cmd = batch.cmd("HSET").arg(&self.scratch);
            for i in start..end {
                cmd.arg(rows.keys[i].as_str())
                    .arg(rows.features[i].as_str());
            }
            cmd.ignore();
            queued += 1;
            if queued == REDIS_PIPELINE_COMMANDS || end == rows.keys.len() {
                batch
                    .query_async::<()>(&mut self.conn)
                    .await
                    .map_err(redis_err)?;
                batch = redis::pipe();
                queued = 0;
            }
        }
        Ok(())
    }

    /// Swaps the scratch hash in with the view's record, then frees the
    /// replaced hash.
    async fn commit(
        mut self,
        view: &str,
        record: &OnlineView,
        written: i64,
    ) -> Result<i64, StoreError> {
        let count: i64 = if written == 0 && self.copied == 0 {
            0
        } else {
            redis::cmd("HLEN")
                .arg(&self.scratch)
                .query_async(&mut self.conn)
                .await
                .map_err(redis_err)?
        };
        let meta = serde_json::json!({
            "schema_hash": record.schema_hash, "source_hash": record.source_hash,
            "watermark": record.watermark, "entity_count": count,
        })
        .to_string();
        let mut swap = redis::pipe();
        swap.atomic();
        // The replaced hash is renamed aside and freed with UNLINK after the
        // swap: RENAME over it would free it inside the transaction, blocking
        // every reader of the server for as long as that takes.
        if self.existing > 0 {
            swap.cmd("RENAME")
                .arg(&self.main)
                .arg(&self.retired)
                .ignore();
        }
        if count > 0 {
            swap.cmd("RENAME")
                .arg(&self.scratch)
                .arg(&self.main)
                .ignore();
        }
        // (An empty hash does not exist in Redis: with no rows, the view's
        // hash is simply gone.)
        swap.cmd("HSET")
            .arg(&self.meta_key)
            .arg(view)
            .arg(meta)
            .ignore();
        swap.query_async::<()>(&mut self.conn)
            .await
            .map_err(redis_err)?;
        if self.existing > 0 {
            redis::cmd("UNLINK")
                .arg(&self.retired)
                .query_async::<()>(&mut self.conn)
                .await
                .map_err(redis_err)?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_the_latest_per_key_as_json_in_name_order() {
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let batch = Batch {
            columns: vec![
                (
                    "k".into(),
                    Column::Str(vec![Some("a".into()), Some("a".into()), Some("b".into())]),
                ),
                ("z".into(), Column::Float(vec![Some(1.0), Some(2.5), None])),
                (
                    "s".into(),
                    Column::Str(vec![
                        Some("x".into()),
                        Some("q\"uo\\te\n".into()),
                        Some("y".into()),
                    ]),
                ),
                (
                    "b".into(),
                    Column::Bool(vec![Some(true), Some(false), None]),
                ),
            ],
            lines: vec![1, 2, 3],
        };
        let rows = OnlineRows::latest(&batch, &[d("2024-02-01"), d("2024-01-01"), d("2024-01-01")]);
        assert_eq!(rows.keys, ["a", "b"]);
        assert_eq!(rows.as_of, ["2024-02-01", "2024-01-01"]);
        assert_eq!(rows.features[0], r#"{"b":true,"s":"x","z":1.0}"#);
        assert_eq!(rows.features[1], r#"{"b":null,"s":"y","z":null}"#);
        // Escapes agree with serde_json.
        let mut s = String::new();
        write_json_str(&mut s, "q\"uo\\te\n\u{1}");
        assert_eq!(s, serde_json::to_string("q\"uo\\te\n\u{1}").unwrap());
    }
}
