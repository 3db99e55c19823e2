//! `Monitor`: data drift of a model's features, drift of the probabilities its
//! endpoint served, and decay on labels that arrived after it was trained —
//! evaluated when what it compares changes, stored with its history, and able
//! to retrain runs when it fires.
//!
//! What an evaluation compares is desired state, known before anything runs:
//! the reference (the Production version's training date, from the observed
//! registry, or a fixed date), the current window (the newest snapshot of the
//! watched tables), their files' hashes and the newest labels. A change to any
//! of them plans an evaluation; the same inputs plan nothing. Apply reads both
//! windows from the offline store, runs [`crate::drift`] per feature and
//! records the verdict (`store::monitors`) and, when it fired, the window runs
//! it retrains are moved to (`retrain_as_of`, kept once reached).

pub mod check;
pub mod spec;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::record::changed_fields;
use super::table::Table;
use super::training_run::{self, TrainingRun};
use super::{
    Applied, ApplyContext, ApplyError, CheckContext, Desired, Kind, Member, Observed, Reference,
    ResourceKind, Upstream,
};
use crate::diag::SpecDiagnostic;
use crate::drift::{self, ColumnOptions, DatasetDrift};
use crate::features::resolve;
use crate::hash;
use crate::plan::{Action, PlanOptions, ResourcePlan};
use crate::spec::{ColumnType, Resource, ResourceId, SpannedStr, SpecSet};
use crate::store::monitors::{Decay, MonitorReport, MonitorStore, NewEvaluation};
use crate::store::offline;
use crate::store::registry::Stage;
use crate::store::state::Condition;
pub use spec::{MonitorSpec, ReferenceSpec};

/// What applying a monitor does.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum MonitorOp {
    /// Compare the windows and record the verdict.
    Evaluate {
        /// The reference, in words.
        reference: String,
        /// The current window's date.
        current: String,
    },
    /// Record that there is nothing to compare with yet.
    Wait {
        /// Why.
        reason: String,
    },
    /// Forget the evaluations of a monitor whose spec is gone.
    ForgetEvaluations,
}

/// A watched feature: where its values live.
#[derive(Debug, Clone)]
pub struct Watched {
    /// `view.feature`, as reports name it.
    pub label: String,
    /// The table it is read from.
    pub table: String,
    /// The column.
    pub column: String,
    /// Its declared type.
    pub ty: ColumnType,
    /// Its override of the default method.
    pub options: ColumnOptions,
}

/// The reference a monitor compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum ReferenceWindow {
    /// The Production version, trained as of `as_of`.
    Version {
        /// Its number.
        version: i64,
        /// Its run.
        run: String,
        /// Its training date.
        as_of: NaiveDate,
        /// Its validation AUC.
        auc: f64,
        /// Its validation F1.
        f1: f64,
    },
    /// A fixed date from the spec.
    Date(NaiveDate),
    /// Nothing to compare with yet (no Production version).
    Waiting(String),
}

impl ReferenceWindow {
    /// The reference date, if there is one.
    pub fn as_of(&self) -> Option<NaiveDate> {
        match self {
            ReferenceWindow::Version { as_of, .. } | ReferenceWindow::Date(as_of) => Some(*as_of),
            ReferenceWindow::Waiting(_) => None,
        }
    }

    /// In words, as plans and reports say it.
    pub fn describe(&self) -> String {
        match self {
            ReferenceWindow::Version { version, as_of, .. } => {
                format!("version {version} (trained as of {as_of})")
            }
            ReferenceWindow::Date(d) => format!("snapshot as of {d}"),
            ReferenceWindow::Waiting(why) => why.clone(),
        }
    }
}

/// Decay's inputs: the label column and its newest snapshot.
#[derive(Debug, Clone)]
pub struct DecayInputs {
    /// The run inputs that rebuild the Production version's training set
    /// (its views), with the label and date of the new labels.
    pub run: training_run::RunInputs,
    /// The newest label snapshot.
    pub labels_as_of: NaiveDate,
    /// Tolerated AUC drop.
    pub max_auc_drop: f64,
}

/// Prediction drift's inputs: whose predictions, over which window, and how
/// to rebuild the Production version's validation predictions.
#[derive(Debug, Clone)]
pub struct PredictionInputs {
    /// The endpoint whose logged predictions are the current window.
    pub endpoint: String,
    /// The window's length.
    pub window: chrono::Duration,
    /// The window's end: now, rounded up to a whole `every`, so predictions
    /// are judged again once per period (and whenever the reference or the
    /// data change), and a plan within a period is a no-op.
    pub until_ms: i64,
    /// Fewer logged predictions: not judged.
    pub min_rows: usize,
    /// The Production version's run inputs, as of its training date.
    pub run: training_run::RunInputs,
    /// The method and threshold.
    pub options: ColumnOptions,
}

/// Desired inputs of a monitor.
#[derive(Debug, Clone)]
pub struct MonitorInputs {
    /// The model watched.
    pub model: String,
    /// Features watched for data drift.
    pub watched: Vec<Watched>,
    /// The reference.
    pub reference: ReferenceWindow,
    /// The current window: the newest snapshot date of the watched tables.
    pub current: Option<NaiveDate>,
    /// Snapshots of every table read: (date, file hash), by table.
    pub snapshots: BTreeMap<String, Vec<(String, String)>>,
    /// Decay, when asked for and there are labels newer than the reference.
    pub decay: Option<DecayInputs>,
    /// Prediction drift, when asked for and a Production version exists.
    pub predictions: Option<PredictionInputs>,
    /// The window runs are retrained as of so far, and why (kept once reached).
    pub previous_retrain: Option<(NaiveDate, String)>,
    /// The share of drifted features at which data drift fires.
    pub drift_share: f64,
}

impl MonitorInputs {
    /// Hash of what an evaluation compares: the reference, the current
    /// window, every snapshot read at or before it, and the newest labels.
    fn hash(&self) -> String {
        let mut parts: Vec<String> = vec![
            self.reference.describe(),
            self.current.map(|d| d.to_string()).unwrap_or_default(),
        ];
        let cutoff = self.current.map(|d| d.to_string());
        for (table, snaps) in &self.snapshots {
            parts.push(table.clone());
            for (d, h) in snaps {
                if cutoff.as_deref().is_none_or(|c| d.as_str() <= c) {
                    parts.push(d.clone());
                    parts.push(h.clone());
                }
            }
        }
        if let Some(decay) = &self.decay {
            parts.push(format!("decay {}", decay.labels_as_of));
        }
        if let Some(p) = &self.predictions {
            parts.push(format!("predictions {} until {}", p.endpoint, p.until_ms));
        }
        hash::hash_parts(parts.iter().map(String::as_str))
    }

    /// The tables with a snapshot on the current date, for the plan's reason.
    fn new_snapshot_tables(&self) -> Vec<&str> {
        let Some(current) = self.current.map(|d| d.to_string()) else {
            return Vec::new();
        };
        self.snapshots
            .iter()
            .filter(|(_, s)| s.iter().any(|(d, _)| *d == current))
            .map(|(t, _)| t.as_str())
            .collect()
    }
}

/// The `Monitor` kind.
pub struct Monitor;

impl ResourceKind for Monitor {
    type Spec = MonitorSpec;
    type Inputs = MonitorInputs;
    type Op = MonitorOp;

    fn name(spec: &MonitorSpec) -> &SpannedStr {
        &spec.name
    }

    fn depends_on(spec: &MonitorSpec) -> &[SpannedStr] {
        &spec.depends_on
    }

    fn references(m: &MonitorSpec) -> Vec<Reference> {
        let mut refs: Vec<Reference> = Vec::new();
        for f in &m.features {
            let view = f.value.split_once('.').map_or(f.value.as_str(), |(v, _)| v);
            if !refs.iter().any(|(r, _)| r.value == view) {
                let mut at = f.clone();
                at.value = view.to_string();
                refs.push((at, Some(Kind::FeatureView)));
            }
        }
        if let Some(decay) = &m.decay {
            refs.push((decay.label.table.clone(), Some(Kind::Table)));
        }
        refs
    }

    fn reverse_references(m: &MonitorSpec) -> Vec<Reference> {
        m.on_drift
            .iter()
            .flat_map(|o| &o.retrain)
            .map(|run| (run.clone(), Some(Kind::TrainingRun)))
            .collect()
    }

    fn check(
        cx: &CheckContext<'_>,
        r: &Resource,
        spec: &MonitorSpec,
        diags: &mut Vec<SpecDiagnostic>,
    ) {
        check::check_monitor(cx, r, spec, diags);
    }

    fn desire(
        r: &Resource,
        m: &MonitorSpec,
        set: &SpecSet,
        upstream: Upstream<'_>,
    ) -> Result<MonitorInputs, ApplyError> {
        let invalid = |msg: String| ApplyError::TrainingSet(format!("{}: {msg}", r.id));
        let mut watched: Vec<Watched> = Vec::new();
        for f in &m.features {
            let (view, feature) = f
                .value
                .split_once('.')
                .ok_or_else(|| invalid(format!("`{}` names no feature", f.value)))?;
            let resolved = resolve(set, view).map_err(|e| invalid(e.to_string()))?;
            for (name, ty) in &resolved.features {
                let label = format!("{view}.{name}");
                if (feature == "*" || feature == name) && !watched.iter().any(|w| w.label == label)
                {
                    let options = m
                        .columns
                        .get(&label)
                        .map(|c| ColumnOptions {
                            method: c.method,
                            threshold: c.threshold,
                        })
                        .unwrap_or_default();
                    watched.push(Watched {
                        label,
                        table: resolved.table.clone(),
                        column: name.clone(),
                        ty: *ty,
                        options,
                    });
                }
            }
        }
        let mut snapshots: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut tables: Vec<&str> = watched.iter().map(|w| w.table.as_str()).collect();
        if let Some(decay) = &m.decay {
            tables.push(&decay.label.table.value);
        }
        for table in tables {
            if let Some(ti) = upstream.inputs::<Table>(table) {
                snapshots.insert(
                    table.to_string(),
                    ti.snapshots
                        .iter()
                        .map(|s| (s.as_of.clone(), s.file_hash.clone()))
                        .collect(),
                );
            }
        }
        let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        // The current window: the newest snapshot of the watched tables (of
        // the label table when only decay is watched).
        let current = snapshots
            .iter()
            .filter(|(t, _)| watched.is_empty() || watched.iter().any(|w| w.table == **t))
            .flat_map(|(_, s)| s.iter().filter_map(|(d, _)| date(d)))
            .max();
        let production = upstream
            .observed()
            .registry
            .get(&m.model.value)
            .and_then(|vs| vs.iter().find(|v| v.stage == Stage::Production));
        let reference = match (&m.reference, production) {
            (Some(ReferenceSpec::AsOf(a)), _) => ReferenceWindow::Date(
                date(&a.as_of.value)
                    .ok_or_else(|| invalid(format!("`{}` is not a date", a.as_of.value)))?,
            ),
            (_, Some(v)) => match training_run::version_as_of(&v.params) {
                Some(as_of) => ReferenceWindow::Version {
                    version: v.version,
                    run: v.run.clone(),
                    as_of,
                    auc: v.metric("val_auc").unwrap_or(f64::NAN),
                    f1: v.metric("val_f1").unwrap_or(f64::NAN),
                },
                None => ReferenceWindow::Waiting(format!(
                    "version {} of {} records no training date",
                    v.version, m.model.value
                )),
            },
            (_, None) => {
                ReferenceWindow::Waiting(format!("no Production version of {} yet", m.model.value))
            }
        };
        let run_of_production =
            |run: &str, as_of: NaiveDate| -> Result<Option<training_run::RunInputs>, ApplyError> {
                let id = ResourceId::new(Kind::TrainingRun, run.to_string());
                match (
                    set.resources.iter().find(|x| x.id == id),
                    set.spec::<TrainingRun>(run),
                ) {
                    (Some(rr), Some(spec)) => {
                        let mut inputs = training_run::resolve_inputs(rr, spec, set, upstream)?;
                        inputs.as_of = as_of;
                        Ok(Some(inputs))
                    }
                    _ => Ok(None),
                }
            };
        let predictions = match (&m.predictions, &reference) {
            (Some(spec), ReferenceWindow::Version { run, as_of, .. }) => {
                let every = crate::duration::parse(&spec.every.value)
                    .ok()
                    .and_then(|d| i64::try_from(d.as_millis()).ok());
                match (
                    crate::kinds::feature_view::parse_ttl(&spec.window.value),
                    every,
                    run_of_production(run, *as_of)?,
                ) {
                    (Some(window), Some(every), Some(run)) => {
                        let step = every.max(1);
                        let now = crate::store::now_ms();
                        Some(PredictionInputs {
                            endpoint: spec.endpoint.value.clone(),
                            window,
                            until_ms: now - now.rem_euclid(step) + step,
                            min_rows: spec.min_rows,
                            run,
                            options: ColumnOptions {
                                method: spec.method,
                                threshold: spec.threshold,
                            },
                        })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let decay = match (&m.decay, &reference) {
            (Some(spec), ReferenceWindow::Version { run, as_of, .. }) => {
                let labels_as_of = snapshots
                    .get(&spec.label.table.value)
                    .and_then(|s| s.iter().filter_map(|(d, _)| date(d)).max())
                    .filter(|d| d > as_of);
                let run_resource = set
                    .resources
                    .iter()
                    .find(|x| x.id == ResourceId::new(Kind::TrainingRun, run.clone()));
                match (labels_as_of, run_resource, set.spec::<TrainingRun>(run)) {
                    (Some(labels_as_of), Some(rr), Some(run_spec)) => {
                        let mut inputs = training_run::resolve_inputs(rr, run_spec, set, upstream)?;
                        inputs.label_table = spec.label.table.value.clone();
                        inputs.label_column = spec.label.column.value.clone();
                        if let Some(ty) = set
                            .spec::<Table>(&inputs.label_table)
                            .and_then(|t| t.columns.get(&inputs.label_column))
                        {
                            inputs.label_type = *ty;
                        }
                        inputs.as_of = labels_as_of;
                        Some(DecayInputs {
                            run: inputs,
                            labels_as_of,
                            max_auc_drop: spec.max_auc_drop,
                        })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let previous_retrain = upstream
            .record::<Monitor>(&r.id.name)
            .and_then(|rec| training_run::retrain_window(&rec.outputs));
        Ok(MonitorInputs {
            model: m.model.value.clone(),
            watched,
            reference,
            current,
            snapshots,
            decay,
            predictions,
            previous_retrain,
            drift_share: m.drift_share,
        })
    }

    fn input_hash(inputs: &MonitorInputs) -> String {
        inputs.hash()
    }

    fn diff(d: &Desired<'_, Self>, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        let name = &d.id.name;
        let inputs = d.inputs;
        let mut plan = ResourcePlan::noop(d.id.clone());
        let current = inputs
            .current
            .map_or_else(|| "no snapshot".to_string(), |c| c.to_string());
        let reason = match observed.records.get(d.id) {
            None => Some(format!(
                "evaluate {name} (first evaluation: {} against {})",
                current,
                inputs.reference.describe()
            )),
            Some(rec) if rec.spec_hash != d.spec_hash => {
                let recorded = |k: &str| rec.outputs.get(k).and_then(|v| v.as_str());
                Some(if rec.spec_json != *d.spec_json {
                    format!(
                        "evaluate {name} (spec changed: {})",
                        changed_fields(&rec.spec_json, d.spec_json)
                    )
                } else if recorded("current") != Some(current.as_str()) {
                    format!(
                        "evaluate {name} (new snapshot {current} of {})",
                        inputs.new_snapshot_tables().join(", ")
                    )
                } else if recorded("reference") != Some(inputs.reference.describe().as_str()) {
                    format!(
                        "evaluate {name} (reference is now {})",
                        inputs.reference.describe()
                    )
                } else if let Some(decay) = &inputs.decay {
                    format!(
                        "evaluate {name} (labels as of {} arrived)",
                        decay.labels_as_of
                    )
                } else {
                    format!("evaluate {name} (the data it compares changed)")
                })
            }
            Some(rec) if rec.condition != Condition::Ready => Some(format!(
                "evaluate {name} (last apply ended {}: {})",
                rec.condition, rec.reason
            )),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            plan.action = if observed.records.contains_key(d.id) {
                Action::Update
            } else {
                Action::Create
            };
            let op = match &inputs.reference {
                ReferenceWindow::Waiting(why) => {
                    plan.reasons.push(format!("record {name} ({why})"));
                    MonitorOp::Wait {
                        reason: why.clone(),
                    }
                }
                _ => {
                    plan.reasons.push(reason);
                    MonitorOp::Evaluate {
                        reference: inputs.reference.describe(),
                        current,
                    }
                }
            };
            plan.operations.push(Self::op(op));
        }
        plan
    }

    fn diff_removed(id: &ResourceId, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        let mut plan = super::record::forget(id);
        if observed.records.contains_key(id) {
            plan.operations.push(Self::op(MonitorOp::ForgetEvaluations));
        }
        plan
    }

    async fn apply(
        ctx: &ApplyContext,
        d: &Desired<'_, Self>,
        plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        let inputs = d.inputs;
        let previous = inputs.previous_retrain.as_ref();
        let kept = serde_json::json!({
            "retrain_as_of": previous.map(|(w, _)| w.to_string()),
            "retrain_cause": previous.map(|(_, c)| c.clone()),
        });
        if let Some(MonitorOp::Wait { reason }) = super::ops_of::<Self>(plan).next() {
            let mut outputs = kept;
            outputs["waiting"] = serde_json::Value::String(reason.clone());
            return Ok(Applied {
                message: format!("waiting: {reason}"),
                outputs,
            });
        }
        let data = match (
            inputs.watched.is_empty(),
            inputs.reference.as_of(),
            inputs.current,
        ) {
            (true, _, _) => None,
            (false, Some(reference_as_of), Some(current)) => {
                Some(data_drift(ctx, inputs, reference_as_of, current).await?)
            }
            (false, _, _) => {
                return Err(ApplyError::Validation(format!(
                    "{}: no data to compare (reference {}, current window {:?})",
                    d.id,
                    inputs.reference.describe(),
                    inputs.current
                )));
            }
        };
        let decay = match (&inputs.decay, &inputs.reference) {
            (
                Some(decay),
                ReferenceWindow::Version {
                    version, auc, f1, ..
                },
            ) => Some(decay_of(ctx, inputs, decay, *version, *auc, *f1).await?),
            _ => None,
        };
        let mut too_few = None;
        let predictions = match (&inputs.predictions, &inputs.reference) {
            (Some(p), ReferenceWindow::Version { version, .. }) => {
                let (drift, logged) = prediction_drift(ctx, inputs, p, *version).await?;
                if drift.is_none() {
                    too_few = Some(format!(
                        "predictions: {logged} of version {version} logged by {} in the last {}, fewer than minRows {}: not judged",
                        p.endpoint,
                        humantime::format_duration(p.window.to_std().unwrap_or_default()),
                        p.min_rows
                    ));
                }
                drift
            }
            _ => None,
        };
        let report = MonitorReport {
            data,
            predictions,
            decay,
        };
        let (fired, mut summary) = verdict(&report);
        if let Some(note) = too_few {
            if !summary.is_empty() {
                summary.push_str("; ");
            }
            summary.push_str(&note);
        }
        let reference = inputs.reference.describe();
        let current_s = inputs
            .current
            .map_or_else(|| "no snapshot".to_string(), |c| c.to_string());
        // Runs are retrained as of the newest labels at or before the window
        // (today's, for a monitor that watches only served predictions).
        let current = inputs
            .current
            .unwrap_or_else(|| chrono::Utc::now().date_naive());
        let stored = MonitorStore::new(ctx.state.db.clone(), ctx.state.project.clone())
            .record(&NewEvaluation {
                monitor: &d.id.name,
                reference: &reference,
                current: &current_s,
                drifted: fired,
                summary: &summary,
                report: &report,
            })
            .await?;
        // Runs it retrains move to the newest window it fired on, and stay there.
        let retrain = match previous {
            Some((w, c)) if !fired || *w >= current => Some((*w, c.clone())),
            _ if fired => Some((current, summary.clone())),
            _ => None,
        };
        Ok(Applied {
            message: format!(
                "{}: {summary} ({current_s} against {reference})",
                if fired { "fired" } else { "no drift" }
            ),
            outputs: serde_json::json!({
                "reference": reference,
                "current": current_s,
                "drifted": fired,
                "summary": summary,
                "evaluation": stored.id,
                "retrain_as_of": retrain.as_ref().map(|(w, _)| w.to_string()),
                "retrain_cause": retrain.map(|(_, c)| c),
            }),
        })
    }

    async fn apply_removed(ctx: &ApplyContext, plan: &ResourcePlan) -> Result<Applied, ApplyError> {
        if super::ops_of::<Self>(plan).any(|op| *op == MonitorOp::ForgetEvaluations) {
            MonitorStore::new(ctx.state.db.clone(), ctx.state.project.clone())
                .forget(&plan.id.name)
                .await?;
        }
        Ok(Applied::message("removed from state with its evaluations"))
    }
}

/// Whether a report fires, and one line saying why (the drifted features
/// with score and threshold, the decay figures).
pub fn verdict(report: &MonitorReport) -> (bool, String) {
    let mut fired = false;
    let mut parts: Vec<String> = Vec::new();
    let describe = |what: &str, d: &DatasetDrift| {
        let drifted: Vec<String> = d
            .columns
            .iter()
            .filter(|c| c.drifted)
            .map(|c| {
                let cmp = if c.method.is_p_value() { "<" } else { "≥" };
                format!(
                    "{} {} {:.3} {cmp} {}",
                    c.column,
                    c.method.as_str(),
                    c.score,
                    c.threshold
                )
            })
            .collect();
        let head = format!(
            "{what} {} of {} drifted ({:.0} %, share {})",
            d.drifted_columns,
            d.columns.len(),
            d.share * 100.0,
            d.drift_share
        );
        if drifted.is_empty() {
            head
        } else {
            format!("{head}: {}", drifted.join(", "))
        }
    };
    if let Some(d) = &report.data {
        fired |= d.dataset_drift;
        parts.push(describe("features:", d));
    }
    if let Some(d) = &report.predictions {
        fired |= d.dataset_drift;
        parts.push(describe("predictions:", d));
    }
    if let Some(decay) = &report.decay {
        fired |= decay.decayed;
        parts.push(format!(
            "decay: auc {:.4} on labels as of {} vs {:.4} at validation (drop {:.4}, max {})",
            decay.current_auc,
            decay.labels_as_of,
            decay.validation_auc,
            decay.validation_auc - decay.current_auc,
            decay.max_auc_drop
        ));
    }
    (fired, parts.join("; "))
}

/// Reads the reference and current snapshots of every watched table (one
/// query per table, both windows at once) and compares each feature.
async fn data_drift(
    ctx: &ApplyContext,
    inputs: &MonitorInputs,
    reference: NaiveDate,
    current: NaiveDate,
) -> Result<DatasetDrift, ApplyError> {
    let mut by_table: BTreeMap<&str, Vec<&Watched>> = BTreeMap::new();
    for w in &inputs.watched {
        by_table.entry(w.table.as_str()).or_default().push(w);
    }
    let mut results = Vec::with_capacity(inputs.watched.len());
    for (table, features) in by_table {
        let columns: Vec<(String, ColumnType)> =
            features.iter().map(|w| (w.column.clone(), w.ty)).collect();
        // The two windows' snapshots only, each read on its own: memory is
        // two snapshots, never every month up to the current one.
        let dates = offline::snapshot_dates(&ctx.offline, table).await?;
        let latest_at_or_before = |day: NaiveDate| dates.iter().rfind(|d| **d <= day).copied();
        let (Some(ref_day), Some(cur_day)) =
            (latest_at_or_before(reference), latest_at_or_before(current))
        else {
            return Err(ApplyError::Validation(format!(
                "table `{table}` has no snapshot at or before {reference} (reference) and {current} (current)"
            )));
        };
        let (_, reference_rows) = offline::read_table(
            &ctx.offline,
            table,
            &columns,
            (Some(ref_day), Some(ref_day)),
        )
        .await?;
        let (_, current_rows) = offline::read_table(
            &ctx.offline,
            table,
            &columns,
            (Some(cur_day), Some(cur_day)),
        )
        .await?;
        for (w, ((_, reference), (_, current))) in features
            .iter()
            .zip(reference_rows.columns.iter().zip(&current_rows.columns))
        {
            let drift = drift::column_drift(&w.label, reference, current, w.options)
                .map_err(|e| ApplyError::Validation(format!("{}: {e}", w.label)))?;
            results.push(drift);
        }
    }
    // Report in the order the spec lists them.
    results.sort_by_key(|c| {
        inputs
            .watched
            .iter()
            .position(|w| w.label == c.column)
            .unwrap_or(usize::MAX)
    });
    Ok(drift::dataset_drift(results, inputs.drift_share))
}

/// The served probabilities of the Production version over the window against
/// its probabilities on its own validation rows, and how many were logged.
/// `None` when fewer than `min_rows` predictions were logged (too few to judge).
async fn prediction_drift(
    ctx: &ApplyContext,
    inputs: &MonitorInputs,
    p: &PredictionInputs,
    version: i64,
) -> Result<(Option<DatasetDrift>, usize), ApplyError> {
    let since = p.until_ms - p.window.num_milliseconds();
    let logged = crate::store::predictions::PredictionLog::new(
        ctx.offline.clone(),
        ctx.state.project.clone(),
    )
    .window(&p.endpoint, since, p.until_ms)
    .await?;
    let served: Vec<Option<f64>> = logged
        .iter()
        .filter(|l| l.model == inputs.model && l.version == version)
        .map(|l| Some(l.probability))
        .collect();
    let logged = served.len();
    if logged < p.min_rows {
        return Ok((None, logged));
    }
    let set = training_run::build_training_set(&ctx.offline, &p.run, ctx.memory_budget).await?;
    let params = ctx
        .registry
        .versions(&inputs.model)
        .await?
        .into_iter()
        .find(|v| v.version == version)
        .map(|v| v.params)
        .unwrap_or_default();
    let rows = training_run::validation_rows(&set, &params);
    let artifact = ctx
        .registry
        .artifact(&inputs.model, version)
        .await?
        .ok_or_else(|| {
            ApplyError::Validation(format!(
                "version {version} of {} has no stored artifact",
                inputs.model
            ))
        })?;
    let reference: Vec<Option<f64>> = training_run::score(artifact, &set, rows)
        .await?
        .into_iter()
        .map(Some)
        .collect();
    let drift = drift::column_drift(
        "probability",
        &crate::data::Column::Float(reference),
        &crate::data::Column::Float(served),
        p.options,
    )
    .map_err(|e| ApplyError::Validation(format!("predictions: {e}")))?;
    Ok((Some(drift::dataset_drift(vec![drift], 1.0)), logged))
}

/// Scores the Production version on the newest labels and compares with its
/// validation figures.
async fn decay_of(
    ctx: &ApplyContext,
    inputs: &MonitorInputs,
    decay: &DecayInputs,
    version: i64,
    validation_auc: f64,
    validation_f1: f64,
) -> Result<Decay, ApplyError> {
    let set = training_run::build_training_set(&ctx.offline, &decay.run, ctx.memory_budget).await?;
    let artifact = ctx
        .registry
        .artifact(&inputs.model, version)
        .await?
        .ok_or_else(|| {
            ApplyError::Validation(format!(
                "version {version} of {} has no stored artifact",
                inputs.model
            ))
        })?;
    let rows: Vec<usize> = (0..set.labels.len()).collect();
    let proba = training_run::score(artifact, &set, rows).await?;
    let m = crate::ml::metrics::evaluate(&set.labels, &proba);
    Ok(Decay {
        version,
        labels_as_of: decay.labels_as_of.to_string(),
        rows: set.labels.len(),
        validation_auc,
        current_auc: m.auc,
        validation_f1,
        current_f1: m.f1,
        max_auc_drop: decay.max_auc_drop,
        decayed: validation_auc - m.auc > decay.max_auc_drop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{ColumnKind, Distribution, Method};
    use crate::store::state::ResourceRecord;

    fn column(name: &str, score: f64, drifted: bool) -> crate::drift::ColumnDrift {
        crate::drift::ColumnDrift {
            column: name.into(),
            kind: ColumnKind::Numerical,
            method: Method::Wasserstein,
            score,
            threshold: 0.1,
            drifted,
            reference_rows: 10,
            current_rows: 10,
            reference_nulls: 0,
            current_nulls: 0,
            distribution: Distribution::Histogram {
                edges: vec![0.0, 1.0],
                reference: vec![1.0],
                current: vec![1.0],
            },
        }
    }

    #[test]
    fn a_report_fires_on_data_drift_or_decay_and_says_which() {
        let data = drift::dataset_drift(
            vec![column("v.a", 0.2051, true), column("v.b", 0.01, false)],
            0.5,
        );
        let (fired, summary) = verdict(&MonitorReport {
            data: Some(data),
            ..MonitorReport::default()
        });
        assert!(fired);
        assert_eq!(
            summary,
            "features: 1 of 2 drifted (50 %, share 0.5): v.a wasserstein 0.205 ≥ 0.1"
        );
        let quiet = drift::dataset_drift(vec![column("v.a", 0.2, true)], 0.0 + 1.0);
        let decay = Decay {
            version: 1,
            labels_as_of: "2024-02-29".into(),
            rows: 100,
            validation_auc: 0.80,
            current_auc: 0.70,
            validation_f1: 0.5,
            current_f1: 0.4,
            max_auc_drop: 0.05,
            decayed: true,
        };
        let (fired, summary) = verdict(&MonitorReport {
            data: Some(quiet),
            predictions: None,
            decay: Some(decay),
        });
        assert!(fired, "decay alone fires");
        assert!(
            summary.contains("decay: auc 0.7000 on labels as of 2024-02-29"),
            "{summary}"
        );
    }

    fn inputs(reference: ReferenceWindow, current: &str) -> MonitorInputs {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        MonitorInputs {
            model: "m".into(),
            watched: Vec::new(),
            reference,
            current: day(current),
            snapshots: BTreeMap::from([(
                "usage".to_string(),
                vec![
                    ("2024-01-31".to_string(), "h1".to_string()),
                    ("2024-02-29".to_string(), "h2".to_string()),
                ],
            )]),
            decay: None,
            predictions: None,
            previous_retrain: None,
            drift_share: 0.5,
        }
    }

    fn version(v: i64, as_of: &str) -> ReferenceWindow {
        ReferenceWindow::Version {
            version: v,
            run: "r".into(),
            as_of: NaiveDate::parse_from_str(as_of, "%Y-%m-%d").expect("date"),
            auc: 0.8,
            f1: 0.5,
        }
    }

    fn plan_of(i: &MonitorInputs, hash: &str, observed: &Observed) -> ResourcePlan {
        let spec = serde_json::json!({"kind": "Monitor"});
        let d = Desired::<Monitor> {
            id: &ResourceId::new(Monitor::KIND, "drift"),
            spec: &serde_saphyr::from_str("kind: Monitor\nname: drift\nmodel: m\n").expect("spec"),
            inputs: i,
            spec_json: &spec,
            spec_hash: hash,
            protect: false,
        };
        Monitor::diff(&d, observed, &PlanOptions::default())
    }

    fn recorded(hash: &str, reference: &str, current: &str) -> Observed {
        let id = ResourceId::new(Monitor::KIND, "drift");
        let mut o = Observed::default();
        o.records.insert(
            id.clone(),
            ResourceRecord {
                id,
                spec_hash: hash.into(),
                spec_json: serde_json::json!({"kind": "Monitor"}),
                condition: Condition::Ready,
                reason: "Applied".into(),
                message: String::new(),
                outputs: serde_json::json!({"reference": reference, "current": current}),
                protect: false,
                last_change_ms: 0,
                last_apply_ms: 0,
            },
        );
        o
    }

    #[test]
    fn plans_say_what_changed_in_what_it_compares() {
        let jan = version(1, "2024-01-31");
        let i = inputs(jan.clone(), "2024-02-29");
        // Never evaluated.
        let p = plan_of(&i, "h", &Observed::default());
        assert_eq!(p.action, Action::Create);
        assert_eq!(
            p.reasons,
            [
                "evaluate drift (first evaluation: 2024-02-29 against version 1 (trained as of 2024-01-31))"
            ]
        );
        assert!(matches!(
            Monitor::op_of(&p.operations[0]),
            Some(MonitorOp::Evaluate { .. })
        ));
        // Same inputs: nothing.
        let o = recorded("h", &jan.describe(), "2024-02-29");
        assert_eq!(plan_of(&i, "h", &o).action, Action::NoOp);
        // A new month.
        let o = recorded("old", &jan.describe(), "2024-01-31");
        assert_eq!(
            plan_of(&i, "h", &o).reasons,
            ["evaluate drift (new snapshot 2024-02-29 of usage)"]
        );
        // A new Production version.
        let feb = version(2, "2024-02-29");
        let o = recorded("old", &jan.describe(), "2024-02-29");
        assert_eq!(
            plan_of(&inputs(feb, "2024-02-29"), "h", &o).reasons,
            ["evaluate drift (reference is now version 2 (trained as of 2024-02-29))"]
        );
        // Nothing to compare with yet.
        let waiting = inputs(
            ReferenceWindow::Waiting("no Production".into()),
            "2024-01-31",
        );
        let p = plan_of(&waiting, "h", &Observed::default());
        assert_eq!(p.reasons, ["record drift (no Production)"]);
        assert!(matches!(
            Monitor::op_of(&p.operations[0]),
            Some(MonitorOp::Wait { .. })
        ));
    }

    #[test]
    fn the_hash_covers_the_reference_and_the_data_up_to_the_current_window() {
        let a = inputs(version(1, "2024-01-31"), "2024-01-31");
        let mut b = a.clone();
        b.snapshots.get_mut("usage").expect("usage")[1].1 = "changed".into();
        assert_eq!(
            a.hash(),
            b.hash(),
            "a snapshot after the window does not count"
        );
        b.current = NaiveDate::from_ymd_opt(2024, 2, 29);
        assert_ne!(a.hash(), b.hash());
        let c = inputs(version(2, "2024-01-31"), "2024-01-31");
        assert_ne!(a.hash(), c.hash());
    }
}
