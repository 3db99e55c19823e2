//! Monitor evaluations in the state store, with their history: every
//! evaluation is one row holding the whole verdict as JSON, so `reconcile
//! monitor report` and the endpoint's drift gauges read exactly what apply
//! decided, long after the data it looked at has changed.

use serde::{Deserialize, Serialize};

use super::{BeginWrite, Db, StoreError, now_ms};
use crate::drift::DatasetDrift;
use crate::with_pool;

/// Model decay: the Production version's figures on labels newer than its
/// training set, beside its validation figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decay {
    /// The version evaluated.
    pub version: i64,
    /// The label snapshot the new labels come from.
    pub labels_as_of: String,
    /// Rows with a new label and features.
    pub rows: usize,
    /// AUC on its validation split.
    pub validation_auc: f64,
    /// AUC on the new labels.
    pub current_auc: f64,
    /// F1 on its validation split.
    pub validation_f1: f64,
    /// F1 on the new labels.
    pub current_f1: f64,
    /// The largest AUC drop tolerated.
    pub max_auc_drop: f64,
    /// Whether the drop exceeds it.
    pub decayed: bool,
}

/// What one evaluation found: each part is present when the monitor asks for it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorReport {
    /// Data drift of the monitored features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DatasetDrift>,
    /// Drift of the served probabilities (one column, `probability`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<DatasetDrift>,
    /// Decay of the Production version on newer labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<Decay>,
}

/// One stored evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// Its sequence number (increasing per store).
    pub id: i64,
    /// The monitor.
    pub monitor: String,
    /// When it ran (ms since the epoch).
    pub evaluated_ms: i64,
    /// The reference window, in words.
    pub reference: String,
    /// The current window, in words.
    pub current: String,
    /// Whether the monitor fired.
    pub drifted: bool,
    /// One line: what fired and by how much.
    pub summary: String,
    /// Everything it computed.
    pub report: MonitorReport,
}

impl Evaluation {
    /// The data and prediction columns as one table, as `monitor report`
    /// and its HTML page show them; the verdict is the monitor's (it may
    /// have fired on decay alone).
    pub fn combined(&self) -> DatasetDrift {
        let mut columns: Vec<crate::drift::ColumnDrift> = Vec::new();
        let mut share = 0.5;
        for d in [&self.report.data, &self.report.predictions]
            .into_iter()
            .flatten()
        {
            columns.extend(d.columns.iter().cloned());
            share = d.drift_share;
        }
        let mut out = crate::drift::dataset_drift(columns, share);
        out.dataset_drift = self.drifted;
        out
    }

    /// The words around the numbers of the HTML report: monitor, time, windows.
    pub fn report_context(&self) -> crate::drift::report::ReportContext {
        crate::drift::report::ReportContext {
            monitor: self.monitor.clone(),
            evaluated_at: chrono::DateTime::from_timestamp_millis(self.evaluated_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            reference: self.reference.clone(),
            current: self.current.clone(),
        }
    }

    /// The whole evaluation as the self-contained HTML report.
    pub fn html(&self) -> String {
        crate::drift::report::html(&self.report_context(), &self.combined())
    }
}

/// A new evaluation, before it is stored.
#[derive(Debug, Clone)]
pub struct NewEvaluation<'a> {
    /// The monitor.
    pub monitor: &'a str,
    /// The reference window, in words.
    pub reference: &'a str,
    /// The current window, in words.
    pub current: &'a str,
    /// Whether the monitor fired.
    pub drifted: bool,
    /// One line.
    pub summary: &'a str,
    /// Everything it computed.
    pub report: &'a MonitorReport,
}

/// Evaluations of one project's monitors.
#[derive(Debug, Clone)]
pub struct MonitorStore {
    db: Db,
    project: String,
}

type Row = (i64, String, i64, String, String, i64, String, String);

/// The columns of an evaluation row, in `Row` order (a macro so queries stay literals).
macro_rules! columns {
    () => {
        "id, monitor, evaluated_ms, reference, current, drifted, summary, report"
    };
}

fn from_row(r: Row) -> Result<Evaluation, StoreError> {
    let report = serde_json::from_str(&r.7).map_err(|e| {
        StoreError::Query(sqlx::Error::Decode(
            format!("evaluation {} of monitor `{}`: {e}", r.0, r.1).into(),
        ))
    })?;
    Ok(Evaluation {
        id: r.0,
        monitor: r.1,
        evaluated_ms: r.2,
        reference: r.3,
        current: r.4,
        drifted: r.5 != 0,
        summary: r.6,
        report,
    })
}

impl MonitorStore {
    /// Evaluations of `project` in `db` (the state store).
    pub fn new(db: Db, project: impl Into<String>) -> Self {
        MonitorStore {
            db,
            project: project.into(),
        }
    }

    /// Stores an evaluation; returns it as stored.
    pub async fn record(&self, new: &NewEvaluation<'_>) -> Result<Evaluation, StoreError> {
        let report = serde_json::to_string(new.report).map_err(|e| {
            StoreError::Query(sqlx::Error::Encode(
                format!("evaluation of monitor `{}`: {e}", new.monitor).into(),
            ))
        })?;
        let at = now_ms();
        let sql = "INSERT INTO reconcile_monitor_evaluations \
             (project, monitor, evaluated_ms, reference, current, drifted, summary, report) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id";
        let id: i64 = with_pool!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let id: i64 = sqlx::query_scalar(sql)
                .bind(&self.project)
                .bind(new.monitor)
                .bind(at)
                .bind(new.reference)
                .bind(new.current)
                .bind(i64::from(new.drifted))
                .bind(new.summary)
                .bind(&report)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            id
        });
        Ok(Evaluation {
            id,
            monitor: new.monitor.to_string(),
            evaluated_ms: at,
            reference: new.reference.to_string(),
            current: new.current.to_string(),
            drifted: new.drifted,
            summary: new.summary.to_string(),
            report: new.report.clone(),
        })
    }

    /// The newest evaluation of `monitor`, if it was ever evaluated.
    pub async fn latest(&self, monitor: &str) -> Result<Option<Evaluation>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM reconcile_monitor_evaluations \
             WHERE project = $1 AND monitor = $2 ORDER BY id DESC LIMIT 1"
        );
        let row: Option<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(&self.project).bind(monitor).fetch_optional(pool).await?
        });
        row.map(from_row).transpose()
    }

    /// The newest evaluation of every monitor, by name.
    pub async fn latest_all(&self) -> Result<Vec<Evaluation>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM reconcile_monitor_evaluations e \
             WHERE project = $1 AND id = (SELECT MAX(id) FROM reconcile_monitor_evaluations \
             WHERE project = e.project AND monitor = e.monitor) ORDER BY monitor"
        );
        let rows: Vec<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(&self.project).fetch_all(pool).await?
        });
        rows.into_iter().map(from_row).collect()
    }

    /// Every evaluation of `monitor`, oldest first (at most `limit`, newest kept).
    pub async fn history(&self, monitor: &str, limit: i64) -> Result<Vec<Evaluation>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM reconcile_monitor_evaluations \
             WHERE project = $1 AND monitor = $2 ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(&self.project).bind(monitor).bind(limit).fetch_all(pool).await?
        });
        let mut out: Vec<Evaluation> = rows.into_iter().map(from_row).collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// Forgets a monitor's evaluations (its spec is gone).
    pub async fn forget(&self, monitor: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM reconcile_monitor_evaluations WHERE project = $1 AND monitor = $2";
        with_pool!(&self.db, pool => {
            sqlx::query(sql).bind(&self.project).bind(monitor).execute(pool).await.map(|_| ())?
        });
        Ok(())
    }
}
