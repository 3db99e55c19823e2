//! The prediction log in the offline store: every prediction an endpoint
//! answered, written in batches off the request path (`serve` queues them and a
//! writer task drains the queue), so prediction drift can compare what was
//! served with the Production version's validation predictions.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use super::{BeginWrite, Db, StoreError, sqlite_bulk};
use crate::with_pool;

/// One answered prediction, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedPrediction {
    /// When it was answered (ms since the epoch).
    pub at_ms: i64,
    /// The entity key it was asked for.
    pub entity: String,
    /// The model that answered.
    pub model: String,
    /// Its version.
    pub version: i64,
    /// P(class 1).
    pub probability: f64,
    /// The predicted class (0 or 1).
    pub class: i64,
}

/// Rows per `UNNEST` insert on PostgreSQL: bounds the size of one message.
const PG_CHUNK: usize = 50_000;

/// The prediction log of one project's endpoints.
#[derive(Debug, Clone)]
pub struct PredictionLog {
    db: Db,
    project: String,
    /// The SQLite writer's connection, shared by the clones of this log.
    sqlite: SqliteLogWriter,
}

/// The insert of one logged prediction on SQLite.
const SQLITE_INSERT: &str = "INSERT INTO reconcile_predictions \
    (project, endpoint, at_ms, entity, model, version, probability, class) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// A SQLite connection of the log's own ([`sqlite_bulk::connect_writer`]),
/// opened at the first batch and kept: a batch is one transaction of a
/// prepared insert stepped per row on a blocking thread, off sqlx's
/// per-value hand-over (a logged row cost about 13 000 instructions through
/// sqlx, most of what logging adds to a `/predict`).
#[derive(Debug, Clone, Default)]
struct SqliteLogWriter {
    conn: Arc<Mutex<Option<rusqlite::Connection>>>,
}

impl SqliteLogWriter {
    /// Inserts `rows` in one transaction; after a failure the connection is
    /// closed (rolling back) and the next batch opens a new one.
    fn insert(
        &self,
        path: &Path,
        project: &str,
        endpoint: &str,
        rows: &[LoggedPrediction],
    ) -> Result<(), StoreError> {
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = match slot.take() {
            Some(conn) => conn,
            None => sqlite_bulk::connect_writer(path)?,
        };
        let written = (|| -> Result<(), StoreError> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let mut insert = conn.prepare(SQLITE_INSERT)?;
            for r in rows {
                insert.execute((
                    project,
                    endpoint,
                    r.at_ms,
                    &r.entity,
                    &r.model,
                    r.version,
                    r.probability,
                    r.class,
                ))?;
            }
            drop(insert);
            conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        if written.is_ok() {
            *slot = Some(conn);
        }
        written
    }
}

type Row = (i64, String, String, i64, f64, i64);

impl PredictionLog {
    /// The log of `project` in `db` (the offline store).
    pub fn new(db: Db, project: impl Into<String>) -> Self {
        PredictionLog {
            db,
            project: project.into(),
            sqlite: SqliteLogWriter::default(),
        }
    }

    /// The store it writes to (for messages: its backend).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Appends `rows` answered by `endpoint`, in one transaction: either every
    /// row of the batch is logged or none is.
    pub async fn insert_batch(
        &self,
        endpoint: &str,
        rows: &[LoggedPrediction],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        match &self.db {
            Db::Sqlite { path, .. } => {
                let writer = self.sqlite.clone();
                let path = path.clone();
                let project = self.project.clone();
                let endpoint = endpoint.to_string();
                let rows = rows.to_vec();
                tokio::task::spawn_blocking(move || {
                    writer.insert(&path, &project, &endpoint, &rows)
                })
                .await??;
            }
            Db::Postgres { pool, .. } => {
                let mut tx = pool.begin_write().await?;
                for chunk in rows.chunks(PG_CHUNK) {
                    let at: Vec<i64> = chunk.iter().map(|r| r.at_ms).collect();
                    let entity: Vec<&str> = chunk.iter().map(|r| r.entity.as_str()).collect();
                    let model: Vec<&str> = chunk.iter().map(|r| r.model.as_str()).collect();
                    let version: Vec<i64> = chunk.iter().map(|r| r.version).collect();
                    let probability: Vec<f64> = chunk.iter().map(|r| r.probability).collect();
                    let class: Vec<i64> = chunk.iter().map(|r| r.class).collect();
                    sqlx::query(
                        "INSERT INTO reconcile_predictions \
                         (project, endpoint, at_ms, entity, model, version, probability, class) \
                         SELECT $1, $2, * FROM UNNEST($3::bigint[], $4::text[], $5::text[], \
                         $6::bigint[], $7::float8[], $8::bigint[])",
                    )
                    .bind(&self.project)
                    .bind(endpoint)
                    .bind(&at)
                    .bind(&entity)
                    .bind(&model)
                    .bind(&version)
                    .bind(&probability)
                    .bind(&class)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// The predictions `endpoint` answered in `[since_ms, until_ms)`, oldest
    /// first: the current window of a prediction-drift monitor.
    pub async fn window(
        &self,
        endpoint: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<LoggedPrediction>, StoreError> {
        let sql = "SELECT at_ms, entity, model, version, probability, class \
                   FROM reconcile_predictions \
                   WHERE project = $1 AND endpoint = $2 AND at_ms >= $3 AND at_ms < $4 \
                   ORDER BY at_ms";
        let rows: Vec<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql)
                .bind(&self.project)
                .bind(endpoint)
                .bind(since_ms)
                .bind(until_ms)
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(at_ms, entity, model, version, probability, class)| LoggedPrediction {
                    at_ms,
                    entity,
                    model,
                    version,
                    probability,
                    class,
                },
            )
            .collect())
    }

    /// How many predictions of `endpoint` are logged.
    pub async fn count(&self, endpoint: &str) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM reconcile_predictions WHERE project = $1 AND endpoint = $2";
        let n: i64 = with_pool!(&self.db, pool => {
            sqlx::query_scalar(sql)
                .bind(&self.project)
                .bind(endpoint)
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }
}
