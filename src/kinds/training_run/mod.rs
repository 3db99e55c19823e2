//! `TrainingRun`: builds a point-in-time training set (labels as of `asOf`,
//! features joined as of the same date), trains, validates and registers a
//! content-addressed model version.
//!
//! The plan decides from hashes alone: the spec plus the source snapshots at or
//! before `asOf` (DVC-style input hashing, before anything runs). At apply the
//! version identity is hash(run spec, training-set content, trainer version): an
//! identity already in the registry is reused and nothing is trained.

use std::sync::Arc;

use chrono::NaiveDate;

pub mod check;
pub mod spec;

use serde::Serialize;

use super::monitor::Monitor;
use super::record::changed_fields;
use super::table::Table;
use super::{
    Applied, ApplyContext, ApplyError, CheckContext, Desired, Kind, Member, Observed, Reference,
    ResourceKind, Upstream,
};
use crate::data::Column;
use crate::diag::SpecDiagnostic;
use crate::features::{EntityRows, MemoryBudget, ResolvedView, historical_within, resolve};
use crate::hash;
use crate::ml::train::{TRAINER_VERSION, TrainingSet, train};
use crate::plan::{Action, PlanOptions, ResourcePlan};
use crate::spec::{ColumnType, Resource, SpannedStr, SpecSet};
use crate::store::offline;
use crate::store::registry::NewVersion;
pub use spec::TrainingRunSpec;

/// What applying a training run does.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum RunOp {
    /// Build the training set as of `as_of`, train, validate and register a version.
    Train {
        /// The date of the training set: the spec's, or later when a monitor
        /// fired (then `cause` says which and why).
        #[serde(rename = "asOf")]
        as_of: String,
        /// The monitor verdict that moved the date, if one did.
        #[serde(skip_serializing_if = "Option::is_none")]
        cause: Option<String>,
    },
}

/// Desired inputs of a training run.
#[derive(Debug, Clone)]
pub struct RunInputs {
    /// The feature views, each narrowed to the features the run asks for.
    pub views: Vec<ResolvedView>,
    /// The label's table.
    pub label_table: String,
    /// The label column.
    pub label_column: String,
    /// Its declared type.
    pub label_type: ColumnType,
    /// The entity's join key.
    pub key: String,
    /// Point in time: the spec's `asOf` (the newest label snapshot for
    /// `latest`), moved later when a monitor that retrains this run fired.
    pub as_of: NaiveDate,
    /// Why `as_of` is later than the spec says: the monitor and its verdict.
    pub retrain_cause: Option<String>,
    /// Hash of every source snapshot at or before `as_of`.
    pub data_hash: String,
}

/// The word that makes a run follow the newest label snapshot.
pub const LATEST: &str = "latest";

/// What a monitor that retrains runs leaves in its record for them: the
/// newest window it fired on (kept once reached, so a run retrained on it does
/// not fall back when the monitor, now comparing with the new version, is
/// quiet) and why it fired.
pub fn retrain_window(outputs: &serde_json::Value) -> Option<(NaiveDate, String)> {
    let date = outputs.get("retrain_as_of")?.as_str()?;
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let cause = outputs
        .get("retrain_cause")
        .and_then(|c| c.as_str())
        .unwrap_or("drift")
        .to_string();
    Some((date, cause))
}

/// The version identity's view of a spec: what changes the model, not its
/// description; `asOf` is the date actually trained as of (a `latest` run or a
/// retrained one records the date, so the registry says what data it saw).
fn identity_json(spec_json: &serde_json::Value, as_of: NaiveDate) -> serde_json::Value {
    let mut v = spec_json.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("description");
        o.remove("dependsOn");
        o.insert("asOf".into(), serde_json::Value::String(as_of.to_string()));
    }
    v
}

/// The date a registered version was trained as of (`params.asOf`).
pub fn version_as_of(params: &serde_json::Value) -> Option<NaiveDate> {
    let s = params.get("asOf")?.as_str()?;
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// The `TrainingRun` kind.
pub struct TrainingRun;

impl ResourceKind for TrainingRun {
    type Spec = TrainingRunSpec;
    type Inputs = RunInputs;
    type Op = RunOp;

    fn name(spec: &TrainingRunSpec) -> &SpannedStr {
        &spec.name
    }

    fn depends_on(spec: &TrainingRunSpec) -> &[SpannedStr] {
        &spec.depends_on
    }

    fn references(t: &TrainingRunSpec) -> Vec<Reference> {
        let mut refs = vec![(t.label.table.clone(), Some(Kind::Table))];
        let mut views: Vec<&str> = Vec::new();
        for f in &t.features {
            let view = f.value.split_once('.').map_or(f.value.as_str(), |(v, _)| v);
            if !views.contains(&view) {
                views.push(view);
                let mut at = f.clone();
                at.value = view.to_string();
                refs.push((at, Some(Kind::FeatureView)));
            }
        }
        refs
    }

    fn reverse_references(t: &TrainingRunSpec) -> Vec<Reference> {
        vec![(t.model.clone(), Some(Kind::Model))]
    }

    fn check(
        cx: &CheckContext<'_>,
        r: &Resource,
        spec: &TrainingRunSpec,
        diags: &mut Vec<SpecDiagnostic>,
    ) {
        check::check_training_run(cx, r, spec, diags);
    }

    fn desire(
        r: &Resource,
        t: &TrainingRunSpec,
        set: &SpecSet,
        upstream: Upstream<'_>,
    ) -> Result<RunInputs, ApplyError> {
        let mut inputs = resolve_inputs(r, t, set, upstream)?;
        // A monitor that retrains this run moves its date to the newest label
        // snapshot at or before the window it fired on.
        for (m, spec) in set.specs::<Monitor>() {
            let retrains = spec
                .on_drift
                .as_ref()
                .is_some_and(|o| o.retrain.iter().any(|x| x.value == r.id.name));
            let fired = retrains
                .then(|| upstream.record::<Monitor>(&m.id.name))
                .flatten()
                .and_then(|rec| retrain_window(&rec.outputs));
            let Some((window, cause)) = fired else {
                continue;
            };
            let labels = upstream
                .inputs::<Table>(&inputs.label_table)
                .map(|ti| ti.snapshots.as_slice())
                .unwrap_or_default();
            let newest = labels
                .iter()
                .filter_map(|s| NaiveDate::parse_from_str(&s.as_of, "%Y-%m-%d").ok())
                .filter(|d| *d <= window)
                .max();
            if let Some(d) = newest.filter(|d| *d > inputs.as_of) {
                inputs.as_of = d;
                inputs.retrain_cause = Some(format!("{}: {cause}", m.id.name));
            }
        }
        inputs.data_hash = source_hash(&inputs, upstream);
        Ok(inputs)
    }

    fn input_hash(inputs: &RunInputs) -> String {
        inputs.data_hash.clone()
    }

    fn diff(d: &Desired<'_, Self>, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        let spec = d.spec;
        let name = &d.id.name;
        let mut plan = ResourcePlan::noop(d.id.clone());
        let registered = |identity: &str| {
            observed
                .registry
                .get(&spec.model.value)
                .is_some_and(|vs| vs.iter().any(|v| v.identity == identity))
        };
        match observed.records.get(d.id) {
            None => {
                plan.action = Action::Create;
                plan.reasons.push(format!("train {name} (new run)"));
            }
            Some(rec) if rec.spec_hash != d.spec_hash => {
                plan.action = Action::Update;
                let as_of = d.inputs.as_of.to_string();
                let recorded_as_of = rec.outputs.get("as_of").and_then(|v| v.as_str());
                // Versions recorded before dates were recorded were trained as of the spec's.
                let moved = recorded_as_of.is_some_and(|a| a != as_of)
                    || (recorded_as_of.is_none() && d.inputs.retrain_cause.is_some());
                if rec.spec_json != *d.spec_json {
                    plan.reasons.push(format!(
                        "train {name} (parameters changed: {})",
                        changed_fields(&rec.spec_json, d.spec_json)
                    ));
                } else if moved {
                    plan.reasons.push(match &d.inputs.retrain_cause {
                        Some(cause) => format!("train {name} as of {as_of} ({cause})"),
                        None => format!(
                            "train {name} as of {as_of} (the training set's date moved from {})",
                            recorded_as_of.unwrap_or("the spec's")
                        ),
                    });
                } else if d.inputs.retrain_cause.is_some() || d.spec.as_of.value == LATEST {
                    plan.reasons
                        .push(format!("train {name} (training set as of {as_of} changed)"));
                } else {
                    plan.reasons
                        .push(format!("train {name} (training set changed)"));
                }
            }
            Some(rec) if rec.condition != crate::store::state::Condition::Ready => {
                plan.action = Action::Update;
                plan.reasons.push(format!(
                    "train {name} (last apply ended {}: {})",
                    rec.condition, rec.reason
                ));
            }
            Some(rec) => {
                let identity = rec
                    .outputs
                    .get("identity")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                if !registered(identity) {
                    plan.action = Action::Update;
                    plan.reasons.push(format!(
                        "train {name} (its version is missing from the registry)"
                    ));
                }
            }
        }
        if plan.action != Action::NoOp {
            plan.operations.push(Self::op(RunOp::Train {
                as_of: d.inputs.as_of.to_string(),
                cause: d.inputs.retrain_cause.clone(),
            }));
        }
        plan
    }

    async fn apply(
        ctx: &ApplyContext,
        d: &Desired<'_, Self>,
        _plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        let (spec, inputs) = (d.spec, d.inputs);
        let set = build_training_set(&ctx.offline, inputs, ctx.memory_budget).await?;
        let set_hash = set.content_hash();
        let identity = hash::hash_parts([
            hash::hash_json(&identity_json(d.spec_json, inputs.as_of)).as_str(),
            set_hash.as_str(),
            TRAINER_VERSION,
        ]);
        let model = &spec.model.value;
        if let Some(v) = ctx.registry.by_identity(model, &identity).await? {
            return Ok(Applied {
                message: format!(
                    "{model} version {} already registered for these inputs (val_auc {:.4}): nothing trained",
                    v.version,
                    v.metric("val_auc").unwrap_or(f64::NAN)
                ),
                outputs: outputs(
                    &identity,
                    model,
                    v.version,
                    &set_hash,
                    &without_roc(&v.metrics),
                    inputs,
                ),
            });
        }
        let rows = set.keys.len();
        let features: serde_json::Value = serde_json::json!(
            set.columns
                .iter()
                .zip(&set.types)
                .map(|((n, _), t)| serde_json::json!({"name": n, "type": t.as_str()}))
                .collect::<Vec<_>>()
        );
        let (algorithm, validation, nulls, seed) = (
            spec.algorithm.clone(),
            spec.validation.clone(),
            spec.nulls,
            spec.seed,
        );
        // Trees grown out of trees asked for, counted from the forest's workers.
        let trees = algorithm.trees().map(|n| {
            let units = ctx.progress().units("trees", n as u64);
            let hook: crate::ml::forest::TreeHook = Arc::new(move || units.inc(1));
            hook
        });
        let trained = tokio::task::spawn_blocking(move || {
            let fit = || train(&set, &algorithm, &validation, nulls, seed);
            match trees {
                Some(hook) => crate::ml::forest::with_tree_hook(hook, fit),
                None => fit(),
            }
        })
        .await??;
        let artifact = trained.artifact.to_bytes()?;
        let metrics = trained.metrics_json();
        // The registry also keeps the ROC curve (for the web UI's version
        // page); the state store's outputs stay the figures alone.
        let mut registered = metrics.clone();
        registered[ROC_KEY] = serde_json::json!(trained.metrics.roc);
        let version = ctx
            .registry
            .register(&NewVersion {
                model: model.clone(),
                identity: identity.clone(),
                run: d.id.name.clone(),
                algorithm: spec.algorithm.name().to_string(),
                params: identity_json(d.spec_json, inputs.as_of),
                metrics: registered,
                training_set_hash: set_hash.clone(),
                features: serde_json::json!({
                    "inputs": features,
                    "encoded": trained.artifact.encoder.columns,
                }),
                artifact,
                trainer: TRAINER_VERSION.to_string(),
                training_ms: trained.training_ms as i64,
            })
            .await?;
        let m = &trained.metrics;
        Ok(Applied {
            message: format!(
                "trained {} as of {} on {} of {rows} rows in {:.2} s: val_auc {:.4}, f1 {:.4}, accuracy {:.4} → {model} version {}",
                spec.algorithm.name(),
                inputs.as_of,
                trained.train_rows,
                trained.training_ms as f64 / 1000.0,
                m.auc,
                m.f1,
                m.accuracy,
                version.version
            ),
            outputs: outputs(
                &identity,
                model,
                version.version,
                &set_hash,
                &metrics,
                inputs,
            ),
        })
    }
}

/// A run's inputs as its spec alone says (views, label, date; no monitor),
/// for the run itself and for whoever rebuilds one of its training sets.
pub fn resolve_inputs(
    r: &Resource,
    t: &TrainingRunSpec,
    set: &SpecSet,
    upstream: Upstream<'_>,
) -> Result<RunInputs, ApplyError> {
    let invalid = |m: String| ApplyError::TrainingSet(format!("{}: {m}", r.id));
    let mut views: Vec<ResolvedView> = Vec::new();
    for f in &t.features {
        let (view, feature) = f
            .value
            .split_once('.')
            .ok_or_else(|| invalid(format!("`{}` names no feature", f.value)))?;
        let pos = match views.iter().position(|v| v.name == view) {
            Some(p) => p,
            None => {
                let mut resolved = resolve(set, view).map_err(|e| invalid(e.to_string()))?;
                resolved.features.clear();
                views.push(resolved);
                views.len() - 1
            }
        };
        let all = resolve(set, view).map_err(|e| invalid(e.to_string()))?;
        for (name, ty) in all.features {
            if (feature == "*" || feature == name)
                && !views[pos].features.iter().any(|(n, _)| *n == name)
            {
                views[pos].features.push((name, ty));
            }
        }
    }
    let label_table = t.label.table.value.clone();
    let label_type = set
        .spec::<Table>(&label_table)
        .and_then(|table| table.columns.get(&t.label.column.value).copied())
        .ok_or_else(|| invalid(format!("no label column `{}`", t.label.column.value)))?;
    let key = views
        .first()
        .map(|v| v.key.clone())
        .ok_or_else(|| invalid("no features".into()))?;
    let as_of = if t.as_of.value == LATEST {
        upstream
            .inputs::<Table>(&label_table)
            .and_then(|ti| ti.snapshots.iter().map(|s| s.as_of.as_str()).max())
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .ok_or_else(|| {
                invalid(format!(
                    "`asOf: latest` but table `{label_table}` lists no snapshot"
                ))
            })?
    } else {
        NaiveDate::parse_from_str(&t.as_of.value, "%Y-%m-%d")
            .map_err(|_| invalid(format!("`{}` is not a date", t.as_of.value)))?
    };
    Ok(RunInputs {
        data_hash: String::new(),
        views,
        label_table,
        label_column: t.label.column.value.clone(),
        label_type,
        key,
        as_of,
        retrain_cause: None,
    })
}

/// Hash of every snapshot at or before the run's date of every table it reads.
fn source_hash(inputs: &RunInputs, upstream: Upstream<'_>) -> String {
    let mut tables: Vec<&str> = inputs.views.iter().map(|v| v.table.as_str()).collect();
    tables.push(&inputs.label_table);
    tables.sort_unstable();
    tables.dedup();
    let cutoff = inputs.as_of.to_string();
    let mut parts: Vec<String> = Vec::new();
    for table in tables {
        parts.push(table.to_string());
        if let Some(ti) = upstream.inputs::<Table>(table) {
            for s in ti.snapshots.iter().filter(|s| s.as_of <= cutoff) {
                parts.push(s.as_of.clone());
                parts.push(s.file_hash.clone());
            }
        }
    }
    hash::hash_parts(parts.iter().map(String::as_str))
}

/// The key of a version's metrics holding its ROC curve (`[[fpr, tpr], …]`).
pub const ROC_KEY: &str = "roc";

/// A version's metrics without the ROC curve, as the state store's outputs keep them.
fn without_roc(metrics: &serde_json::Value) -> serde_json::Value {
    let mut m = metrics.clone();
    if let Some(o) = m.as_object_mut() {
        o.remove(ROC_KEY);
    }
    m
}

fn outputs(
    identity: &str,
    model: &str,
    version: i64,
    set_hash: &str,
    metrics: &serde_json::Value,
    inputs: &RunInputs,
) -> serde_json::Value {
    serde_json::json!({
        "identity": identity,
        "model": model,
        "version": version,
        "training_set_hash": set_hash,
        "metrics": metrics,
        "as_of": inputs.as_of.to_string(),
        "retrain_cause": inputs.retrain_cause,
    })
}

/// Labels of the latest label snapshot at or before `as_of`, features joined
/// point-in-time as of the same date; rows sorted by key; null labels dropped.
pub async fn build_training_set(
    db: &crate::store::Db,
    inputs: &RunInputs,
    budget: MemoryBudget,
) -> Result<TrainingSet, ApplyError> {
    let columns = vec![
        (inputs.key.clone(), ColumnType::String),
        (inputs.label_column.clone(), inputs.label_type),
    ];
    // Only the latest label snapshot is read, not every month before it.
    let latest = offline::snapshot_dates(db, &inputs.label_table)
        .await?
        .into_iter()
        .rfind(|d| *d <= inputs.as_of);
    let Some(latest) = latest else {
        return Err(ApplyError::TrainingSet(format!(
            "table `{}` has no snapshot at or before {}",
            inputs.label_table, inputs.as_of
        )));
    };
    let (dates, batch) = offline::read_table(
        db,
        &inputs.label_table,
        &columns,
        (Some(latest), Some(latest)),
    )
    .await?;
    let (Some(Column::Str(keys)), Some(labels)) = (
        batch.columns.first().map(|c| &c.1),
        batch.columns.get(1).map(|c| &c.1),
    ) else {
        return Err(ApplyError::TrainingSet("label table layout".into()));
    };
    let mut rows: Vec<(String, usize)> = Vec::with_capacity(keys.len());
    for i in (0..keys.len()).filter(|&i| dates[i] == latest) {
        let label = match labels {
            Column::Bool(v) => v[i].map(usize::from),
            Column::Int(v) => match v[i] {
                Some(x @ (0 | 1)) => Some(x as usize),
                Some(x) => {
                    return Err(ApplyError::TrainingSet(format!(
                        "label `{}` of `{}` is {x} in snapshot {latest}; labels must be 0 or 1",
                        inputs.label_column,
                        keys[i].as_deref().unwrap_or("?")
                    )));
                }
                None => None,
            },
            _ => None,
        };
        if let (Some(k), Some(l)) = (&keys[i], label) {
            rows.push((k.clone(), l));
        }
    }
    rows.sort_unstable();
    let entities = EntityRows {
        timestamps: vec![inputs.as_of; rows.len()],
        keys: rows.iter().map(|(k, _)| k.clone()).collect(),
    };
    let joined = historical_within(db, &inputs.views, &entities, budget).await?;
    let types = inputs
        .views
        .iter()
        .flat_map(|v| v.features.iter().map(|(_, t)| *t))
        .collect();
    Ok(TrainingSet {
        keys: entities.keys,
        // The first two columns are the key and the timestamp.
        columns: joined.columns.into_iter().skip(2).collect(),
        types,
        labels: rows.into_iter().map(|(_, l)| l).collect(),
    })
}

/// The rows of `set` a run with these parameters (a version's `params`) held
/// out for validation: the same seeded split training made.
pub fn validation_rows(set: &TrainingSet, params: &serde_json::Value) -> Vec<usize> {
    let validation = params.get("validation");
    let fraction = validation
        .and_then(|v| v.get("fraction"))
        .and_then(|v| v.as_f64())
        .unwrap_or(0.25);
    let stratify = validation
        .and_then(|v| v.get("stratify"))
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let seed = params.get("seed").and_then(|v| v.as_u64()).unwrap_or(42);
    crate::ml::train::split(&set.labels, fraction, stratify, seed).1
}

/// P(label 1) of rows `rows` of `set` under a stored model: how a monitor
/// scores the Production version on new labels, and how a champion is scored
/// on a challenger's validation rows. CPU-bound work runs off the executor.
pub async fn score(
    artifact: Vec<u8>,
    set: &TrainingSet,
    rows: Vec<usize>,
) -> Result<Vec<f64>, ApplyError> {
    let batch = crate::data::Batch {
        columns: set.columns.clone(),
        lines: Vec::new(),
    };
    let proba = tokio::task::spawn_blocking(move || {
        let artifact = crate::ml::train::Artifact::from_bytes(&artifact)?;
        let x = artifact
            .encoder
            .encode_batch(&batch, &rows)
            .map_err(crate::ml::train::TrainError::from)?;
        Ok::<_, crate::ml::train::TrainError>(artifact.predict_proba(&x))
    })
    .await??;
    Ok(proba)
}
