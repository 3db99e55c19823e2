//! The prediction log in the offline store: every prediction an endpoint
//! answered, written in batches off the request path (`serve` queues them and a
//! writer task drains the queue), so prediction drift can compare what was
//! served with the Production version's validation predictions.

use super::{BeginWrite, Db, StoreError};
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

/// Rows per multi-row `INSERT` on SQLite: 6 bound values a row plus the two
/// shared ones stay far below SQLite's limit of 32 766 variables.
const SQLITE_CHUNK: usize = 256;

/// Rows per `UNNEST` insert on PostgreSQL: bounds the size of one message.
const PG_CHUNK: usize = 50_000;

/// The prediction log of one project's endpoints.
#[derive(Debug, Clone)]
pub struct PredictionLog {
    db: Db,
    project: String,
}

type Row = (i64, String, String, i64, f64, i64);

impl PredictionLog {
    /// The log of `project` in `db` (the offline store).
    pub fn new(db: Db, project: impl Into<String>) -> Self {
        PredictionLog {
            db,
            project: project.into(),
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
            Db::Sqlite { pool, .. } => {
                // Three statement shapes (256 rows, 16 rows, one row), each
                // prepared once and cached: SQLite never parses a statement of
                // a new shape per batch, and few rows go one by one.
                let mut tx = pool.begin_write().await?;
                let mut rest = rows;
                for (shape, n) in [
                    (Shape::Chunk, SQLITE_CHUNK),
                    (Shape::Small, SQLITE_SMALL),
                    (Shape::One, 1),
                ] {
                    let mut chunks = rest.chunks_exact(n);
                    for chunk in &mut chunks {
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sqlite_insert(shape)))
                            .bind(&self.project)
                            .bind(endpoint);
                        for r in chunk {
                            q = q
                                .bind(r.at_ms)
                                .bind(&r.entity)
                                .bind(&r.model)
                                .bind(r.version)
                                .bind(r.probability)
                                .bind(r.class);
                        }
                        q.execute(&mut *tx).await?;
                    }
                    rest = chunks.remainder();
                }
                tx.commit().await?;
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

/// Rows of the middle statement shape, so at most this many minus one go
/// row by row.
const SQLITE_SMALL: usize = 16;

/// The three statement shapes SQLite inserts use.
#[derive(Clone, Copy)]
enum Shape {
    /// One row.
    One,
    /// [`SQLITE_SMALL`] rows.
    Small,
    /// [`SQLITE_CHUNK`] rows.
    Chunk,
}

/// The SQLite insert of one shape (`$1`, `$2` project and endpoint, shared),
/// built once: the statement text is the statement cache's key.
fn sqlite_insert(shape: Shape) -> &'static str {
    static ONE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static SMALL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static FULL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let build = |n: usize| {
        let values: Vec<String> = (0..n)
            .map(|i| {
                let b = 3 + i * 6;
                format!(
                    "($1, $2, ${b}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5
                )
            })
            .collect();
        format!(
            "INSERT INTO reconcile_predictions \
             (project, endpoint, at_ms, entity, model, version, probability, class) \
             VALUES {}",
            values.join(", ")
        )
    };
    match shape {
        Shape::One => ONE.get_or_init(|| build(1)),
        Shape::Small => SMALL.get_or_init(|| build(SQLITE_SMALL)),
        Shape::Chunk => FULL.get_or_init(|| build(SQLITE_CHUNK)),
    }
}
