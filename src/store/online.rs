//! The online store: the latest feature values per entity for each online view,
//! one JSON object of typed values per (view, entity key), plus a watermark per
//! view. Behind a URL: the SQL stores (`sqlite://`, `postgres://`) or Redis
//! (`redis://host:port/db?prefix=NAME`).
//!
//! A view's rows and its watermark change atomically, so readers see a view either
//! before or after a materialization, never between: one transaction on SQL; on
//! Redis a rebuild is written to a scratch hash and swapped in with `RENAME` inside
//! `MULTI`/`EXEC`, and an incremental write is one `MULTI`/`EXEC`.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::{BeginWrite, Db, StoreError, now_ms};
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
        for (k, i) in picked {
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
            out.as_of.push(dates[i].to_string());
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

/// Writes a materialization of one view in a single transaction. `full` first
/// removes the view's rows (a rebuild); otherwise rows are upserted.
async fn write_view_sql(
    db: &Db,
    view: &str,
    record: &OnlineView,
    rows: &OnlineRows,
    full: bool,
) -> Result<(), StoreError> {
    const UPSERT_VIEW: &str = "INSERT INTO reconcile_online_views (view, schema_hash, source_hash, watermark, entity_count, updated_ms) \
        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (view) DO UPDATE SET schema_hash = excluded.schema_hash, \
        source_hash = excluded.source_hash, watermark = excluded.watermark, entity_count = excluded.entity_count, updated_ms = excluded.updated_ms";
    const COUNT: &str = "SELECT COUNT(*) FROM reconcile_online WHERE view = $1";
    // Same statements on both backends around the bulk insert, which differs.
    macro_rules! write_in_tx {
        ($pool:expr, |$tx:ident| $insert:block) => {{
            let mut $tx = $pool.begin_write().await?;
            if full {
                sqlx::query("DELETE FROM reconcile_online WHERE view = $1")
                    .bind(view)
                    .execute(&mut *$tx)
                    .await?;
            }
            $insert
            let (n,): (i64,) = sqlx::query_as(COUNT).bind(view).fetch_one(&mut *$tx).await?;
            sqlx::query(UPSERT_VIEW)
                .bind(view)
                .bind(&record.schema_hash)
                .bind(&record.source_hash)
                .bind(&record.watermark)
                .bind(n)
                .bind(now_ms())
                .execute(&mut *$tx)
                .await?;
            $tx.commit().await?;
        }};
    }
    const UPSERT_ROWS: &str = "ON CONFLICT (view, entity_key) DO UPDATE SET as_of = excluded.as_of, features = excluded.features";
    match db {
        Db::Sqlite { pool, .. } => write_in_tx!(pool, |tx| {
            // Four values per row; stay under SQLite's bound-parameter limit.
            for start in (0..rows.keys.len()).step_by(5_000) {
                let end = (start + 5_000).min(rows.keys.len());
                let values = vec!["(?, ?, ?, ?)"; end - start].join(", ");
                let sql = format!(
                    "INSERT INTO reconcile_online (view, entity_key, as_of, features) VALUES {values} {UPSERT_ROWS}"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for i in start..end {
                    q = q
                        .bind(view)
                        .bind(&rows.keys[i])
                        .bind(&rows.as_of[i])
                        .bind(&rows.features[i]);
                }
                q.execute(&mut *tx).await?;
            }
        }),
        Db::Postgres { pool, .. } => write_in_tx!(pool, |tx| {
            let sql = format!(
                "INSERT INTO reconcile_online (view, entity_key, as_of, features) \
                 SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[]) {UPSERT_ROWS}"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(view)
                .bind(&rows.keys)
                .bind(&rows.as_of)
                .bind(&rows.features)
                .execute(&mut *tx)
                .await?;
        }),
    }
    Ok(())
}

/// Removes a view's rows and record, atomically.
async fn drop_view_sql(db: &Db, view: &str) -> Result<(), StoreError> {
    with_pool!(db, p => {
        let mut tx = p.begin_write().await?;
        sqlx::query("DELETE FROM reconcile_online WHERE view = $1").bind(view).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM reconcile_online_views WHERE view = $1").bind(view).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok::<(), sqlx::Error>(())
    })?;
    Ok(())
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
    Ok(rows
        .into_iter()
        .map(|(k, f)| (k, serde_json::from_str(&f).unwrap_or(Value::Null)))
        .collect())
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
    Ok(rows
        .into_iter()
        .map(|(v, k, f)| (v, k, serde_json::from_str(&f).unwrap_or(Value::Null)))
        .collect())
}

async fn read_all_sql(db: &Db, view: &str) -> Result<HashMap<String, Value>, StoreError> {
    const Q: &str = "SELECT entity_key, features FROM reconcile_online WHERE view = $1";
    let rows: Vec<(String, String)> =
        with_pool!(db, p => sqlx::query_as(Q).bind(view).fetch_all(p).await)?;
    Ok(rows
        .into_iter()
        .map(|(k, f)| (k, serde_json::from_str(&f).unwrap_or(Value::Null)))
        .collect())
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
        rows: &OnlineRows,
        full: bool,
    ) -> Result<(), StoreError> {
        match self {
            OnlineStore::Sql(db) => write_view_sql(db, view, record, rows, full).await,
            OnlineStore::Redis(r) => r.write_view(view, record, rows, full).await,
        }
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
                let all: HashMap<String, String> = redis::cmd("HGETALL")
                    .arg(r.rows_key(view))
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                Ok(all
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(Value::Null)))
                    .collect())
            }
        }
    }
}

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

    async fn write_view(
        &self,
        view: &str,
        record: &OnlineView,
        rows: &OnlineRows,
        full: bool,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let main = self.rows_key(view);
        let fields: Vec<(String, String)> = rows
            .keys
            .iter()
            .zip(&rows.features)
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        let target = if full {
            format!("{main}:next")
        } else {
            main.clone()
        };
        if full {
            // Build the new rows aside; readers keep seeing the old ones.
            redis::cmd("DEL")
                .arg(&target)
                .query_async::<()>(&mut conn)
                .await
                .map_err(redis_err)?;
            for chunk in fields.chunks(5_000) {
                redis::cmd("HSET")
                    .arg(&target)
                    .arg(chunk)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(redis_err)?;
            }
        }
        let count: i64 = if full {
            rows.keys.len() as i64
        } else {
            let existing: Vec<Option<String>> = if rows.keys.is_empty() {
                Vec::new()
            } else {
                redis::cmd("HMGET")
                    .arg(&main)
                    .arg(&rows.keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?
            };
            let total: i64 = redis::cmd("HLEN")
                .arg(&main)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            total + existing.iter().filter(|e| e.is_none()).count() as i64
        };
        let meta = serde_json::json!({
            "schema_hash": record.schema_hash, "source_hash": record.source_hash,
            "watermark": record.watermark, "entity_count": count,
        })
        .to_string();
        let mut pipe = redis::pipe();
        pipe.atomic();
        if full {
            if rows.keys.is_empty() {
                pipe.cmd("DEL").arg(&main).ignore();
            } else {
                pipe.cmd("RENAME").arg(&target).arg(&main).ignore();
            }
        } else if !fields.is_empty() {
            pipe.cmd("HSET").arg(&main).arg(&fields).ignore();
        }
        pipe.cmd("HSET")
            .arg(self.meta_key())
            .arg(view)
            .arg(meta)
            .ignore();
        pipe.query_async::<()>(&mut conn).await.map_err(redis_err)
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
                    let value = serde_json::from_str(&json).unwrap_or(Value::Null);
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
        Ok(keys
            .iter()
            .zip(values)
            .filter_map(|(k, v)| {
                Some((k.clone(), serde_json::from_str(&v?).unwrap_or(Value::Null)))
            })
            .collect())
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
