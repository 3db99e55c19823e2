//! The shapes of every `--json` output, as typed structs: one casing
//! (camelCase, as the specs use) by construction, and a JSON Schema per output
//! generated from these types (`reconcile schema` writes them to
//! `schemas/output/`), so scripts can rely on the keys.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema};
use serde::Serialize;
use serde_json::Value;

use crate::engine::ApplyReport;
use crate::plan::Plan;

/// One problem in the specs (`validate --json`, and any command's `--json`
/// when the specs do not load).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    /// The class of problem, e.g. `unknown-field`.
    pub code: String,
    /// File, relative to the spec folder.
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when known.
    pub hint: Option<String>,
}

impl From<&crate::diag::SpecDiagnostic> for Diagnostic {
    fn from(d: &crate::diag::SpecDiagnostic) -> Self {
        Diagnostic {
            code: serde_json::to_value(d.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            file: d.file.clone(),
            line: d.line,
            column: d.column,
            message: d.message.clone(),
            hint: d.hint.clone(),
        }
    }
}

/// `apply --json`: the first round's plan and what every round did.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyOutput {
    /// The plan of the first round.
    pub plan: Plan,
    /// Outcomes of every round.
    pub report: ApplyReport,
}

/// `destroy --json`: the plan of removal, and what was removed when `--yes`
/// was given (`report` is null in a dry run).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestroyOutput {
    /// What is (or would be) removed.
    pub plan: Plan,
    /// True when the removal ran (`--yes`).
    pub applied: bool,
    /// Outcomes of the removal; null in a dry run.
    pub report: Option<ApplyReport>,
}

pub use crate::status::StatusRow;

/// `features get --json`: the online values of one entity.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeaturesGet {
    /// The entity's name.
    pub entity: String,
    /// The entity's key.
    pub key: String,
    /// Per feature view: its feature values (keyed by feature name).
    pub features: BTreeMap<String, Value>,
    /// Online views of the entity holding no row for the key.
    pub missing_views: Vec<String>,
}

/// One row of `models list --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelRow {
    /// The model's name.
    pub model: String,
    /// How many versions are registered.
    pub versions: usize,
    /// The newest version number.
    pub latest: Option<i64>,
    /// The Production version, if any.
    pub production: Option<i64>,
    /// The run that trained the Production version.
    pub production_run: Option<String>,
    /// The Production version's validation AUC.
    pub val_auc: Option<f64>,
}

/// `models show --json`: one registered version.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelVersion {
    /// The model's name.
    pub model: String,
    /// The version number.
    pub version: i64,
    /// Content identity (run spec, training set, trainer).
    pub identity: String,
    /// The run that trained it.
    pub run: String,
    /// The algorithm.
    pub algorithm: String,
    /// Its parameters.
    pub params: Value,
    /// Validation metrics, keyed by metric name (`val_auc`, …).
    pub metrics: Value,
    /// Hash of the training set.
    pub training_set_hash: String,
    /// The features it reads.
    pub features: Value,
    /// Hash of the artifact's bytes.
    pub artifact_hash: String,
    /// The trainer's version.
    pub trainer: String,
    /// Training time in milliseconds.
    pub training_ms: i64,
    /// `None`, `Staging`, `Production` or `Archived`.
    pub stage: String,
    /// When it was registered (RFC 3339).
    pub created_at: String,
}

impl From<&crate::store::registry::VersionInfo> for ModelVersion {
    fn from(v: &crate::store::registry::VersionInfo) -> Self {
        ModelVersion {
            model: v.model.clone(),
            version: v.version,
            identity: v.identity.clone(),
            run: v.run.clone(),
            algorithm: v.algorithm.clone(),
            params: v.params.clone(),
            metrics: v.metrics.clone(),
            training_set_hash: v.training_set_hash.clone(),
            features: v.features.clone(),
            artifact_hash: v.artifact_hash.clone(),
            trainer: v.trainer.clone(),
            training_ms: v.training_ms,
            stage: v.stage.to_string(),
            created_at: rfc3339(v.created_ms).unwrap_or_default(),
        }
    }
}

/// One stage change of `models history --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageChange {
    /// The version.
    pub version: i64,
    /// Its stage before.
    pub from_stage: String,
    /// Its stage after.
    pub to_stage: String,
    /// `spec`, `policy` or `manual`.
    pub cause: String,
    /// Why, in words.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

impl From<&crate::store::registry::Promotion> for StageChange {
    fn from(p: &crate::store::registry::Promotion) -> Self {
        StageChange {
            version: p.version,
            from_stage: p.from_stage.clone(),
            to_stage: p.to_stage.clone(),
            cause: p.cause.clone(),
            reason: p.reason.clone(),
            at: rfc3339(p.at_ms).unwrap_or_default(),
        }
    }
}

/// One column's verdict in a monitor's evaluation.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnVerdict {
    /// `view.feature`, or the predictions' column.
    pub column: String,
    /// The statistical test.
    pub method: String,
    /// Its score.
    pub score: f64,
    /// The threshold it is judged against.
    pub threshold: f64,
    /// Whether the column drifted.
    pub drifted: bool,
}

impl From<&crate::drift::ColumnDrift> for ColumnVerdict {
    fn from(c: &crate::drift::ColumnDrift) -> Self {
        ColumnVerdict {
            column: c.column.clone(),
            method: c.method.as_str().to_string(),
            score: c.score,
            threshold: c.threshold,
            drifted: c.drifted,
        }
    }
}

/// The dataset-level verdict of data or prediction drift.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetVerdict {
    /// Columns that drifted.
    pub drifted_columns: usize,
    /// Columns tested.
    pub columns: usize,
    /// Share of the columns that drifted.
    pub share: f64,
    /// The share at which the dataset counts as drifted.
    pub drift_share: f64,
    /// Whether it did.
    pub dataset_drift: bool,
}

impl From<&crate::drift::DatasetDrift> for DatasetVerdict {
    fn from(d: &crate::drift::DatasetDrift) -> Self {
        DatasetVerdict {
            drifted_columns: d.drifted_columns,
            columns: d.columns.len(),
            share: d.share,
            drift_share: d.drift_share,
            dataset_drift: d.dataset_drift,
        }
    }
}

/// `monitor report --json`: the newest evaluation of a monitor.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorReport {
    /// The monitor's name.
    pub monitor: String,
    /// When it was evaluated (RFC 3339).
    pub evaluated_at: Option<String>,
    /// The reference window.
    pub reference: String,
    /// The current window.
    pub current: String,
    /// Whether the monitor fired.
    pub drifted: bool,
    /// The verdict in words.
    pub summary: String,
    /// Every tested column, data and predictions.
    pub columns: Vec<ColumnVerdict>,
    /// Data drift of the features.
    pub data: Option<DatasetVerdict>,
    /// Drift of the served probabilities.
    pub predictions: Option<DatasetVerdict>,
    /// Decay of the Production version on newer labels.
    pub decay: Option<crate::store::monitors::Decay>,
}

/// One evaluation of `monitor history --json`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorEvaluation {
    /// The evaluation's id.
    pub id: i64,
    /// When it was evaluated (RFC 3339).
    pub evaluated_at: Option<String>,
    /// The reference window.
    pub reference: String,
    /// The current window.
    pub current: String,
    /// Whether the monitor fired.
    pub drifted: bool,
    /// The verdict in words.
    pub summary: String,
    /// Every tested column.
    pub columns: Vec<ColumnVerdict>,
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339())
}

/// Prints a value as pretty JSON on stdout.
pub fn print<T: Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot write JSON: {e}"),
    }
}

/// Every object that lists its properties accepts no others, so an output
/// key missing from the schema (or spelt in another casing) fails validation.
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for child in map.values_mut() {
                close_objects(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

fn schema_of<T: JsonSchema>(title: &str, description: &str) -> Value {
    let schema: Schema = schemars::schema_for!(T);
    let mut v = schema.to_value();
    close_objects(&mut v);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("title".into(), Value::String(title.into()));
        obj.insert("description".into(), Value::String(description.into()));
    }
    v
}

/// `(file name, schema)` of every `--json` output, written to `schemas/output/`.
pub fn schemas() -> Vec<(String, Value)> {
    vec![
        (
            "validate.json".into(),
            schema_of::<Vec<Diagnostic>>(
                "reconcile validate --json",
                "Every problem in the specs (empty when they are valid); also what any --json command prints when the specs do not load.",
            ),
        ),
        (
            "plan.json".into(),
            schema_of::<Plan>(
                "reconcile plan --json",
                "What apply would change and why, resources in execution order.",
            ),
        ),
        (
            "apply.json".into(),
            schema_of::<ApplyOutput>(
                "reconcile apply --json",
                "The first round's plan and the outcome of every resource acted on.",
            ),
        ),
        (
            "destroy.json".into(),
            schema_of::<DestroyOutput>(
                "reconcile destroy --json",
                "The plan of removal and, with --yes, what was removed.",
            ),
        ),
        (
            "status.json".into(),
            schema_of::<Vec<StatusRow>>(
                "reconcile status --json",
                "Every resource of the specs: state, last change, reason.",
            ),
        ),
        (
            "features-get.json".into(),
            schema_of::<FeaturesGet>(
                "reconcile features get --json",
                "The online feature values of one entity.",
            ),
        ),
        (
            "models-list.json".into(),
            schema_of::<Vec<ModelRow>>("reconcile models list --json", "Every registered model."),
        ),
        (
            "models-show.json".into(),
            schema_of::<ModelVersion>("reconcile models show --json", "One registered version."),
        ),
        (
            "models-history.json".into(),
            schema_of::<Vec<StageChange>>(
                "reconcile models history --json",
                "Every stage change of a model, oldest first.",
            ),
        ),
        (
            "monitor-report.json".into(),
            schema_of::<MonitorReport>(
                "reconcile monitor report --json",
                "The newest evaluation of a monitor.",
            ),
        ),
        (
            "monitor-history.json".into(),
            schema_of::<Vec<MonitorEvaluation>>(
                "reconcile monitor history --json",
                "Every evaluation of a monitor, oldest first.",
            ),
        ),
    ]
}
