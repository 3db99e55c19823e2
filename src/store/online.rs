//! The online store: the latest feature values per entity for each online view,
//! one row per (view, entity key) holding a JSON object of typed values, plus a
//! watermark per view. A view's rows and its watermark change in one transaction,
//! so readers see a view either before or after a materialization, never between.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

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
pub async fn observe(db: &Db) -> Result<HashMap<String, OnlineView>, StoreError> {
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
        let mut out = OnlineRows::default();
        for (k, i) in picked {
            let mut obj = Map::with_capacity(batch.columns.len() - 1);
            for (name, col) in &batch.columns[1..] {
                obj.insert(name.clone(), value_of(col, i));
            }
            out.keys.push(k.to_string());
            out.as_of.push(dates[i].to_string());
            out.features.push(Value::Object(obj).to_string());
        }
        out
    }
}

/// A typed cell as JSON (null for null).
pub fn value_of(col: &Column, i: usize) -> Value {
    match col {
        Column::Str(v) => v[i].clone().map_or(Value::Null, Value::from),
        Column::Int(v) => v[i].map_or(Value::Null, Value::from),
        Column::Float(v) => v[i].map_or(Value::Null, Value::from),
        Column::Bool(v) => v[i].map_or(Value::Null, Value::from),
        Column::Date(v) => v[i].map_or(Value::Null, |d| Value::from(d.to_string())),
    }
}

/// Writes a materialization of one view in a single transaction. `full` first
/// removes the view's rows (a rebuild); otherwise rows are upserted.
pub async fn write_view(
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
    match db {
        Db::Sqlite { pool, .. } => {
            let mut tx = pool.begin_write().await?;
            if full {
                sqlx::query("DELETE FROM reconcile_online WHERE view = $1")
                    .bind(view)
                    .execute(&mut *tx)
                    .await?;
            }
            // Four values per row; stay under SQLite's bound-parameter limit.
            for start in (0..rows.keys.len()).step_by(5_000) {
                let end = (start + 5_000).min(rows.keys.len());
                let values = vec!["(?, ?, ?, ?)"; end - start].join(", ");
                let sql = format!(
                    "INSERT INTO reconcile_online (view, entity_key, as_of, features) VALUES {values} \
                     ON CONFLICT (view, entity_key) DO UPDATE SET as_of = excluded.as_of, features = excluded.features"
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
            let (n,): (i64,) = sqlx::query_as(COUNT).bind(view).fetch_one(&mut *tx).await?;
            sqlx::query(UPSERT_VIEW)
                .bind(view)
                .bind(&record.schema_hash)
                .bind(&record.source_hash)
                .bind(&record.watermark)
                .bind(n)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Db::Postgres { pool, .. } => {
            let mut tx = pool.begin_write().await?;
            if full {
                sqlx::query("DELETE FROM reconcile_online WHERE view = $1")
                    .bind(view)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO reconcile_online (view, entity_key, as_of, features) \
                 SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[]) \
                 ON CONFLICT (view, entity_key) DO UPDATE SET as_of = excluded.as_of, features = excluded.features",
            )
            .bind(view)
            .bind(&rows.keys)
            .bind(&rows.as_of)
            .bind(&rows.features)
            .execute(&mut *tx)
            .await?;
            let (n,): (i64,) = sqlx::query_as(COUNT).bind(view).fetch_one(&mut *tx).await?;
            sqlx::query(UPSERT_VIEW)
                .bind(view)
                .bind(&record.schema_hash)
                .bind(&record.source_hash)
                .bind(&record.watermark)
                .bind(n)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Removes a view's rows and record, atomically.
pub async fn drop_view(db: &Db, view: &str) -> Result<(), StoreError> {
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
pub async fn read_many(
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
