//! What MLflow should hold for the registry ([`Wanted`]), what it holds
//! ([`View`], read by [`observe`]), and the steps between them ([`steps`],
//! pure). Plan and apply take the same steps from the same facts.
//!
//! A version's run is found by its identity tag (`reconcile.identity`), not
//! by name or number, and so is its registered model version: MLflow numbers
//! versions itself, and a re-apply finds what an earlier one made.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::client::{Client, KeyValue, Metric, MlflowError, ModelVersion, Run, RunInfo};
use crate::store::registry::{RegistryState, Stage, VersionInfo};

/// The tag holding a version's content address, on its run and its MLflow version.
pub const IDENTITY_TAG: &str = "reconcile.identity";
/// The tag holding the project, on the experiment, runs and registered models.
pub const PROJECT_TAG: &str = "reconcile.project";
/// The tag set once the artifact and its descriptor are uploaded (their hash).
pub const ARTIFACT_TAG: &str = "reconcile.artifacts";
/// The alias that follows the registry's Production version.
pub const PRODUCTION_ALIAS: &str = "production";
/// MLflow's bound on a param value (MLflow ≥ 2.x).
const MAX_PARAM_VALUE: usize = 6000;
/// MLflow's bound on a param, metric or tag key.
const MAX_KEY: usize = 250;

/// One registered version as MLflow should hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedVersion {
    /// Model name.
    pub model: String,
    /// Registry version number.
    pub version: i64,
    /// Content address.
    pub identity: String,
    /// Registry stage.
    pub stage: Stage,
    /// `churn-rf v1`.
    pub run_name: String,
    /// The run spec's parameters, flattened (`algorithm.randomForest.trees`).
    pub params: BTreeMap<String, String>,
    /// Numeric metrics, flattened (`val_auc`, `confusion.0.1`).
    pub metrics: BTreeMap<String, f64>,
    /// Identity tags.
    pub tags: BTreeMap<String, String>,
    /// Hash of the artifact bytes.
    pub artifact_hash: String,
    /// Registration time (the run's start).
    pub start_ms: i64,
    /// Registration time plus the fit's duration (the run's end).
    pub end_ms: i64,
    /// The feature schema (for the descriptor's signature).
    pub features: serde_json::Value,
    /// Algorithm and trainer (for the descriptor).
    pub algorithm: String,
    /// Trainer version.
    pub trainer: String,
}

/// A mirrored model: its versions and which is Production.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedModel {
    /// Model name (also the registered model's name in MLflow).
    pub name: String,
    /// Versions, ascending.
    pub versions: Vec<WantedVersion>,
    /// The registry's Production version.
    pub production: Option<i64>,
}

/// Everything the mirror should hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// Project name (tagged everywhere).
    pub project: String,
    /// Experiment name.
    pub experiment: String,
    /// The mirrored models, in spec order.
    pub models: Vec<WantedModel>,
}

impl Wanted {
    /// What MLflow should hold for `models` given the registry.
    pub fn from_registry(
        project: &str,
        experiment: &str,
        models: &[String],
        registry: &RegistryState,
    ) -> Wanted {
        let models = models
            .iter()
            .map(|name| {
                let versions: Vec<WantedVersion> = registry
                    .get(name)
                    .map(|vs| vs.iter().map(|v| wanted_version(project, v)).collect())
                    .unwrap_or_default();
                let production = versions
                    .iter()
                    .find(|v| v.stage == Stage::Production)
                    .map(|v| v.version);
                WantedModel {
                    name: name.clone(),
                    versions,
                    production,
                }
            })
            .collect();
        Wanted {
            project: project.to_string(),
            experiment: experiment.to_string(),
            models,
        }
    }

    /// How many versions are mirrored.
    pub fn version_count(&self) -> usize {
        self.models.iter().map(|m| m.versions.len()).sum()
    }

    /// A version by model and number.
    pub fn version(&self, model: &str, version: i64) -> Option<&WantedVersion> {
        self.models
            .iter()
            .find(|m| m.name == model)?
            .versions
            .iter()
            .find(|v| v.version == version)
    }
}

fn wanted_version(project: &str, v: &VersionInfo) -> WantedVersion {
    let mut params = BTreeMap::new();
    flatten_params("", &v.params, &mut params);
    let mut metrics = BTreeMap::new();
    flatten_metrics("", &v.metrics, &mut metrics);
    let tags: BTreeMap<String, String> = [
        (PROJECT_TAG, project.to_string()),
        ("reconcile.model", v.model.clone()),
        ("reconcile.version", v.version.to_string()),
        (IDENTITY_TAG, v.identity.clone()),
        ("reconcile.run", v.run.clone()),
        ("reconcile.algorithm", v.algorithm.clone()),
        ("reconcile.training_set_hash", v.training_set_hash.clone()),
        ("reconcile.artifact_hash", v.artifact_hash.clone()),
        ("reconcile.trainer", v.trainer.clone()),
        ("mlflow.source.name", "reconcile".to_string()),
    ]
    .into_iter()
    .map(|(k, val)| (k.to_string(), val))
    .collect();
    WantedVersion {
        model: v.model.clone(),
        version: v.version,
        identity: v.identity.clone(),
        stage: v.stage,
        run_name: format!("{} v{}", v.run, v.version),
        params,
        metrics,
        tags,
        artifact_hash: v.artifact_hash.clone(),
        start_ms: v.created_ms,
        end_ms: v.created_ms + v.training_ms.max(0),
        features: v.features.clone(),
        algorithm: v.algorithm.clone(),
        trainer: v.trainer.clone(),
    }
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Params as MLflow takes them: leaves by dotted path, arrays as JSON text,
/// within MLflow's bounds. `kind` and `description` are no parameters.
fn flatten_params(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, val) in o {
                if prefix.is_empty() && matches!(k.as_str(), "kind" | "description") {
                    continue;
                }
                flatten_params(&join_key(prefix, k), val, out);
            }
        }
        _ if prefix.is_empty() => {}
        serde_json::Value::String(s) => {
            out.insert(cut(prefix, MAX_KEY), cut(s, MAX_PARAM_VALUE));
        }
        serde_json::Value::Null => {}
        other => {
            out.insert(
                cut(prefix, MAX_KEY),
                cut(&other.to_string(), MAX_PARAM_VALUE),
            );
        }
    }
}

/// Numeric leaves of the metrics, by dotted path (`confusion.0.1`).
fn flatten_metrics(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, val) in o {
                flatten_metrics(&join_key(prefix, k), val, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, val) in a.iter().enumerate() {
                flatten_metrics(&join_key(prefix, &i.to_string()), val, out);
            }
        }
        serde_json::Value::Number(n) if !prefix.is_empty() => {
            if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                out.insert(cut(prefix, MAX_KEY), f);
            }
        }
        _ => {}
    }
}

/// A registered model as MLflow holds it.
#[derive(Debug, Clone, Default)]
pub struct ModelView {
    /// Whether the registered model exists.
    pub exists: bool,
    /// Alias → MLflow version.
    pub aliases: HashMap<String, String>,
    /// Versions carrying an identity tag, by identity (the lowest number first
    /// when two carry one).
    pub versions: HashMap<String, ModelVersion>,
}

/// What MLflow holds, as far as the mirror is concerned.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The experiment: id and whether it is deleted.
    pub experiment: Option<(String, bool)>,
    /// The project's runs by identity (an active one preferred).
    pub runs: HashMap<String, Run>,
    /// Registered models by name.
    pub models: HashMap<String, ModelView>,
    /// Whether the server has stages: `None` until a version says.
    pub stages: Option<bool>,
}

/// Reads what the mirror needs: the experiment and the project's runs in
/// it, beside each model's registration (with its aliases) and versions.
/// Independent calls go out together: two round trips whatever the number
/// of models.
pub async fn observe(
    client: &Client,
    project: &str,
    experiment: &str,
    models: &[String],
) -> Result<View, MlflowError> {
    let runs = async {
        let Some(e) = client.experiment_by_name(experiment).await? else {
            return Ok::<_, MlflowError>((None, Vec::new()));
        };
        let filter = format!(
            "tags.`{PROJECT_TAG}` = '{}'",
            project.replace('\\', "\\\\").replace('\'', "\\'")
        );
        let runs = client.search_runs(&e.experiment_id, &filter).await?;
        Ok((
            Some((e.experiment_id, e.lifecycle_stage == "deleted")),
            runs,
        ))
    };
    let registered = futures_util::future::try_join_all(models.iter().map(|name| async move {
        let (rm, versions) =
            tokio::try_join!(client.registered_model(name), client.model_versions(name))?;
        Ok::<_, MlflowError>((name.clone(), rm, versions))
    }));
    let ((experiment, runs), registered) = tokio::try_join!(runs, registered)?;
    let mut view = View {
        experiment,
        ..View::default()
    };
    for run in runs {
        let Some(id) = tag(&run.data.tags, IDENTITY_TAG).map(str::to_string) else {
            continue;
        };
        let keep = match view.runs.get(&id) {
            Some(old) => old.info.lifecycle_stage != "active",
            None => true,
        };
        if keep {
            view.runs.insert(id, run);
        }
    }
    for (name, rm, mut versions) in registered {
        let Some(rm) = rm else {
            view.models.insert(name, ModelView::default());
            continue;
        };
        let mut mv = ModelView {
            exists: true,
            aliases: rm
                .aliases
                .into_iter()
                .map(|a| (a.alias, a.version))
                .collect(),
            versions: HashMap::new(),
        };
        versions.sort_by_key(|v| v.version.parse::<i64>().unwrap_or(i64::MAX));
        for v in versions {
            if view.stages.is_none() {
                view.stages = Some(v.current_stage.is_some());
            }
            if let Some(id) = tag(&v.tags, IDENTITY_TAG).map(str::to_string) {
                mv.versions.entry(id).or_insert(v);
            }
        }
        view.models.insert(name, mv);
    }
    Ok(view)
}

/// A tag's value.
pub fn tag<'a>(tags: &'a [KeyValue], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

/// One thing to do in MLflow. Versions are the registry's numbers; MLflow's
/// are looked up (or learnt when created) when the step runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum MirrorOp {
    /// Create the experiment.
    CreateExperiment {
        /// Its name.
        name: String,
    },
    /// Restore the experiment, deleted in MLflow.
    RestoreExperiment {
        /// Its name.
        name: String,
    },
    /// Create a version's run: params, metrics, tags, artifact, descriptor.
    CreateRun {
        /// Model.
        model: String,
        /// Registry version.
        version: i64,
    },
    /// Delete a run whose params differ from the version's and create it again.
    ReplaceRun {
        /// Model.
        model: String,
        /// Registry version.
        version: i64,
        /// The run deleted.
        run_id: String,
    },
    /// Restore a version's run, deleted in MLflow.
    RestoreRun {
        /// Model.
        model: String,
        /// Registry version.
        version: i64,
        /// The run.
        run_id: String,
    },
    /// Log the params, metrics and tags a run lacks or that were changed.
    LogRun {
        /// Model.
        model: String,
        /// Registry version.
        version: i64,
        /// The run.
        run_id: String,
    },
    /// Upload the artifact and its `MLmodel` descriptor.
    UploadArtifact {
        /// Model.
        model: String,
        /// Registry version.
        version: i64,
        /// The run.
        run_id: String,
    },
    /// Register the model name.
    CreateRegisteredModel {
        /// Model.
        model: String,
    },
    /// Register a version from its run.
    CreateModelVersion {
        /// Model.
        model: String,
        /// Registry version.
        version: i64,
    },
    /// Move an MLflow version to the registry's stage.
    TransitionStage {
        /// Model.
        model: String,
        /// Registry version.
        version: i64,
        /// The stage.
        stage: String,
    },
    /// Point an alias at a version.
    SetAlias {
        /// Model.
        model: String,
        /// Alias.
        alias: String,
        /// Registry version.
        version: i64,
    },
    /// Remove an alias (no version is Production).
    DeleteAlias {
        /// Model.
        model: String,
        /// Alias.
        alias: String,
    },
}

/// A step and why it is needed.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What to do.
    pub op: MirrorOp,
    /// Why, in words.
    pub reason: String,
    /// True when MLflow held this object and it was changed there (drift),
    /// rather than something new to mirror.
    pub drift: bool,
}

/// What a run lacks or holds differently from its version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunDelta {
    /// Params the run does not have.
    pub missing_params: Vec<KeyValue>,
    /// Params with another value (MLflow params cannot change: the run is replaced).
    pub conflicting_params: Vec<String>,
    /// Metrics missing or with another latest value, to log again.
    pub metrics: Vec<Metric>,
    /// Tags missing or changed, to set again.
    pub tags: Vec<KeyValue>,
    /// Words for the plan.
    pub changes: Vec<String>,
}

impl RunDelta {
    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.missing_params.is_empty()
            && self.conflicting_params.is_empty()
            && self.metrics.is_empty()
            && self.tags.is_empty()
    }
}

/// Compares a run with its version. Metrics to log again carry the latest
/// value's step and a later timestamp, so they become the latest.
pub fn run_delta(w: &WantedVersion, run: &Run, now_ms: i64) -> RunDelta {
    let mut d = RunDelta::default();
    let params: HashMap<&str, &str> = run
        .data
        .params
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    for (k, v) in &w.params {
        match params.get(k.as_str()) {
            None => {
                d.missing_params.push(KeyValue::new(k, v));
                d.changes.push(format!("param {k} missing"));
            }
            Some(have) if have != v => {
                d.conflicting_params.push(k.clone());
                d.changes
                    .push(format!("param {k} is {have}, registry says {v}"));
            }
            Some(_) => {}
        }
    }
    let metrics: HashMap<&str, &Metric> = run
        .data
        .metrics
        .iter()
        .map(|m| (m.key.as_str(), m))
        .collect();
    for (k, v) in &w.metrics {
        let have = metrics.get(k.as_str());
        let same = have.is_some_and(|m| (m.value - v).abs() <= 1e-12 * v.abs().max(1.0));
        if !same {
            d.changes.push(match have {
                Some(m) => format!("metric {k} is {}, registry says {v}", m.value),
                None => format!("metric {k} missing"),
            });
            d.metrics.push(Metric {
                key: k.clone(),
                value: *v,
                timestamp: have.map_or(w.start_ms, |m| m.timestamp.max(now_ms - 1) + 1),
                step: have.map_or(0, |m| m.step),
            });
        }
    }
    for (k, v) in &w.tags {
        match tag(&run.data.tags, k) {
            Some(have) if have == v => {}
            have => {
                d.changes.push(match have {
                    Some(h) => format!("tag {k} is {h}, registry says {v}"),
                    None => format!("tag {k} missing"),
                });
                d.tags.push(KeyValue::new(k, v));
            }
        }
    }
    d
}

fn short(identity: &str) -> &str {
    &identity[..identity.len().min(12)]
}

/// The steps that make MLflow hold `wanted`, in the order they must run:
/// the experiment, each version's run, the registered model, its versions,
/// their stages, then the alias. Pure.
pub fn steps(wanted: &Wanted, view: &View, now_ms: i64) -> Vec<Step> {
    let mut out = Vec::new();
    let mut push = |op: MirrorOp, reason: String, drift: bool| out.push(Step { op, reason, drift });
    match &view.experiment {
        None => push(
            MirrorOp::CreateExperiment {
                name: wanted.experiment.clone(),
            },
            format!(
                "experiment `{}` does not exist in MLflow",
                wanted.experiment
            ),
            false,
        ),
        Some((_, true)) => push(
            MirrorOp::RestoreExperiment {
                name: wanted.experiment.clone(),
            },
            format!("experiment `{}` was deleted in MLflow", wanted.experiment),
            true,
        ),
        Some(_) => {}
    }
    for m in &wanted.models {
        for w in &m.versions {
            let (model, version) = (m.name.clone(), w.version);
            let what = format!("{} version {}", m.name, w.version);
            let Some(run) = view.runs.get(&w.identity) else {
                push(
                    MirrorOp::CreateRun { model, version },
                    format!("{what} ({}) has no MLflow run", short(&w.identity)),
                    false,
                );
                continue;
            };
            let run_id = run.info.run_id.clone();
            let delta = run_delta(w, run, now_ms);
            if !delta.conflicting_params.is_empty() {
                push(
                    MirrorOp::ReplaceRun {
                        model,
                        version,
                        run_id: run_id.clone(),
                    },
                    format!(
                        "run {run_id} of {what} holds other params ({}): replace it",
                        delta.changes.join(", ")
                    ),
                    true,
                );
                continue;
            }
            if run.info.lifecycle_stage != "active" {
                push(
                    MirrorOp::RestoreRun {
                        model: model.clone(),
                        version,
                        run_id: run_id.clone(),
                    },
                    format!("run {run_id} of {what} was deleted in MLflow"),
                    true,
                );
            }
            if !delta.is_empty() {
                push(
                    MirrorOp::LogRun {
                        model: model.clone(),
                        version,
                        run_id: run_id.clone(),
                    },
                    format!("run {run_id} of {what}: {}", delta.changes.join(", ")),
                    true,
                );
            }
            let uploaded = tag(&run.data.tags, ARTIFACT_TAG) == Some(w.artifact_hash.as_str());
            if !uploaded && super::client::proxied_path(&run.info.artifact_uri).is_some() {
                push(
                    MirrorOp::UploadArtifact {
                        model,
                        version,
                        run_id,
                    },
                    format!("run of {what} lacks the artifact"),
                    false,
                );
            }
        }
        let empty = ModelView::default();
        let mv = view.models.get(&m.name).unwrap_or(&empty);
        if !mv.exists {
            push(
                MirrorOp::CreateRegisteredModel {
                    model: m.name.clone(),
                },
                format!("registered model `{}` does not exist in MLflow", m.name),
                false,
            );
        }
        for w in &m.versions {
            let (model, version) = (m.name.clone(), w.version);
            match mv.versions.get(&w.identity) {
                None => {
                    push(
                        MirrorOp::CreateModelVersion {
                            model: model.clone(),
                            version,
                        },
                        format!(
                            "{} version {version} is not a registered MLflow version",
                            m.name
                        ),
                        false,
                    );
                    if view.stages != Some(false) && w.stage != Stage::None {
                        push(
                            MirrorOp::TransitionStage {
                                model,
                                version,
                                stage: w.stage.to_string(),
                            },
                            format!(
                                "{} version {version} is {} in the registry",
                                m.name, w.stage
                            ),
                            false,
                        );
                    }
                }
                Some(v) => {
                    if let Some(stage) = &v.current_stage
                        && !stage.eq_ignore_ascii_case(w.stage.as_str())
                    {
                        push(
                            MirrorOp::TransitionStage {
                                model,
                                version,
                                stage: w.stage.to_string(),
                            },
                            format!(
                                "MLflow version {} of `{}` is in stage {stage}, registry version {version} is {}",
                                v.version, m.name, w.stage
                            ),
                            true,
                        );
                    }
                }
            }
        }
        let current = mv.aliases.get(PRODUCTION_ALIAS);
        let mlflow_of = |v: i64| {
            let w = m.versions.iter().find(|w| w.version == v)?;
            mv.versions.get(&w.identity).map(|x| x.version.clone())
        };
        match (m.production, current) {
            (Some(p), cur) => {
                let target = mlflow_of(p);
                if target.is_none() || target.as_ref() != cur {
                    let want = match &target {
                        Some(t) => format!("MLflow version {t}"),
                        None => "a new MLflow version".into(),
                    };
                    let reason = match cur {
                        Some(c) => format!(
                            "alias {PRODUCTION_ALIAS} of `{}` points at MLflow version {c}, registry says version {p} ({want})",
                            m.name
                        ),
                        None => format!(
                            "alias {PRODUCTION_ALIAS} of `{}` is not set, registry says version {p} ({want})",
                            m.name
                        ),
                    };
                    push(
                        MirrorOp::SetAlias {
                            model: m.name.clone(),
                            alias: PRODUCTION_ALIAS.into(),
                            version: p,
                        },
                        reason,
                        cur.is_some(),
                    );
                }
            }
            (None, Some(c)) => push(
                MirrorOp::DeleteAlias {
                    model: m.name.clone(),
                    alias: PRODUCTION_ALIAS.into(),
                },
                format!(
                    "alias {PRODUCTION_ALIAS} of `{}` points at MLflow version {c}, but no version is Production in the registry",
                    m.name
                ),
                true,
            ),
            (None, None) => {}
        }
    }
    out
}

/// The `MLmodel` descriptor uploaded beside the artifact, in MLflow's
/// format, with a `reconcile` flavor (MLflow cannot load it, but its UI and
/// clients read the signature, the run and the sizes).
pub fn descriptor(w: &WantedVersion, run_id: &str, size: usize) -> String {
    let column = |c: &serde_json::Value| {
        let name = c.get("name").and_then(|n| n.as_str()).unwrap_or("");
        let ty = match c.get("type").and_then(|t| t.as_str()).unwrap_or("") {
            "int" => "long",
            "float" => "double",
            "bool" => "boolean",
            "date" => "datetime",
            _ => "string",
        };
        serde_json::json!({ "type": ty, "name": name, "required": false })
    };
    let inputs: Vec<serde_json::Value> = w
        .features
        .get("inputs")
        .and_then(|i| i.as_array())
        .map(|a| a.iter().map(column).collect())
        .unwrap_or_default();
    let outputs =
        serde_json::json!([{ "type": "double", "name": "probability", "required": true }]);
    let created = chrono::DateTime::from_timestamp_millis(w.start_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_default();
    let doc = serde_json::json!({
        "artifact_path": "model",
        "flavors": {
            "reconcile": {
                "data": "model.bin",
                "format": "postcard",
                "algorithm": w.algorithm,
                "trainer": w.trainer,
                "code": null,
            }
        },
        "model_size_bytes": size,
        "model_uuid": w.identity.chars().take(32).collect::<String>(),
        "run_id": run_id,
        "utc_time_created": created,
        "signature": {
            "inputs": serde_json::Value::Array(inputs).to_string(),
            "outputs": outputs.to_string(),
            "params": null,
        },
        "metadata": {
            "reconcile_model": w.model,
            "reconcile_version": w.version,
            "identity": w.identity,
            "training_set_hash": w.tags.get("reconcile.training_set_hash"),
            "artifact_hash": w.artifact_hash,
        },
    });
    serde_saphyr::to_string(&doc).unwrap_or_else(|_| doc.to_string())
}

/// The run info a step runs against, once known.
pub fn source_of(run: &RunInfo) -> String {
    format!("{}/model", run.artifact_uri.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::mlflow_mirror::client::RunData;

    fn version(v: i64, stage: Stage) -> VersionInfo {
        VersionInfo {
            model: "m".into(),
            version: v,
            identity: format!("identity{v:0>40}"),
            run: "churn-rf".into(),
            algorithm: "randomForest".into(),
            params: serde_json::json!({
                "kind": "TrainingRun", "name": "churn-rf", "seed": 42,
                "algorithm": { "randomForest": { "trees": 300 } },
                "features": ["a.*", "b.x"],
            }),
            metrics: serde_json::json!({ "val_auc": 0.83, "confusion": [[1, 2], [3, 4]] }),
            training_set_hash: "tsh".into(),
            features: serde_json::json!({ "inputs": [{ "name": "a.x", "type": "float" }] }),
            artifact_hash: format!("art{v}"),
            trainer: "t".into(),
            training_ms: 10,
            stage,
            created_ms: 1_000,
        }
    }

    fn wanted(versions: Vec<VersionInfo>) -> Wanted {
        let registry: RegistryState = [("m".to_string(), versions)].into_iter().collect();
        Wanted::from_registry("p", "p", &["m".into()], &registry)
    }

    /// The view of an MLflow that holds exactly `w` (MLflow numbers = registry's).
    fn mirrored(w: &Wanted) -> View {
        let mut view = View {
            experiment: Some(("1".into(), false)),
            stages: Some(true),
            ..View::default()
        };
        let m = &w.models[0];
        let mut mv = ModelView {
            exists: true,
            ..ModelView::default()
        };
        for v in &m.versions {
            let mut tags: Vec<KeyValue> = v.tags.iter().map(|(k, x)| KeyValue::new(k, x)).collect();
            tags.push(KeyValue::new(ARTIFACT_TAG, &v.artifact_hash));
            view.runs.insert(
                v.identity.clone(),
                Run {
                    info: RunInfo {
                        run_id: format!("run{}", v.version),
                        lifecycle_stage: "active".into(),
                        artifact_uri: format!("mlflow-artifacts:/1/run{}/artifacts", v.version),
                        status: "FINISHED".into(),
                    },
                    data: RunData {
                        metrics: v
                            .metrics
                            .iter()
                            .map(|(k, x)| Metric {
                                key: k.clone(),
                                value: *x,
                                timestamp: 1_000,
                                step: 0,
                            })
                            .collect(),
                        params: v.params.iter().map(|(k, x)| KeyValue::new(k, x)).collect(),
                        tags,
                    },
                },
            );
            mv.versions.insert(
                v.identity.clone(),
                ModelVersion {
                    name: "m".into(),
                    version: v.version.to_string(),
                    run_id: format!("run{}", v.version),
                    current_stage: Some(v.stage.to_string()),
                    tags: vec![KeyValue::new(IDENTITY_TAG, &v.identity)],
                },
            );
        }
        if let Some(p) = m.production {
            mv.aliases.insert(PRODUCTION_ALIAS.into(), p.to_string());
        }
        view.models.insert("m".into(), mv);
        view
    }

    fn ops(steps: &[Step]) -> Vec<&MirrorOp> {
        steps.iter().map(|s| &s.op).collect()
    }

    #[test]
    fn params_and_metrics_are_flattened() {
        let w = wanted(vec![version(1, Stage::Production)]);
        let v = &w.models[0].versions[0];
        assert_eq!(v.params.get("seed").map(String::as_str), Some("42"));
        assert_eq!(
            v.params
                .get("algorithm.randomForest.trees")
                .map(String::as_str),
            Some("300")
        );
        assert_eq!(
            v.params.get("features").map(String::as_str),
            Some(r#"["a.*","b.x"]"#)
        );
        assert!(!v.params.contains_key("kind"));
        assert_eq!(v.metrics.get("confusion.1.0"), Some(&3.0));
        assert_eq!(v.tags.get(IDENTITY_TAG), Some(&v.identity));
        assert_eq!(w.models[0].production, Some(1));
    }

    #[test]
    fn an_empty_mlflow_gets_everything_in_order() {
        let w = wanted(vec![
            version(1, Stage::Archived),
            version(2, Stage::Production),
        ]);
        let s = steps(&w, &View::default(), 5_000);
        let kinds: Vec<&str> = s
            .iter()
            .map(|s| match &s.op {
                MirrorOp::CreateExperiment { .. } => "experiment",
                MirrorOp::CreateRun { .. } => "run",
                MirrorOp::CreateRegisteredModel { .. } => "model",
                MirrorOp::CreateModelVersion { .. } => "version",
                MirrorOp::TransitionStage { .. } => "stage",
                MirrorOp::SetAlias { .. } => "alias",
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "experiment",
                "run",
                "run",
                "model",
                "version",
                "stage",
                "version",
                "stage",
                "alias"
            ]
        );
        assert!(s.iter().all(|s| !s.drift));
    }

    #[test]
    fn a_mirrored_registry_needs_nothing() {
        let w = wanted(vec![
            version(1, Stage::Archived),
            version(2, Stage::Production),
        ]);
        assert_eq!(steps(&w, &mirrored(&w), 5_000), Vec::new());
    }

    #[test]
    fn a_moved_alias_is_drift_with_both_numbers() {
        let w = wanted(vec![
            version(1, Stage::Archived),
            version(2, Stage::Production),
        ]);
        let mut view = mirrored(&w);
        let mv = view.models.get_mut("m").unwrap();
        mv.aliases.insert(PRODUCTION_ALIAS.into(), "1".into());
        let s = steps(&w, &view, 5_000);
        assert_eq!(
            ops(&s),
            [&MirrorOp::SetAlias {
                model: "m".into(),
                alias: "production".into(),
                version: 2
            }]
        );
        assert!(s[0].drift);
        assert_eq!(
            s[0].reason,
            "alias production of `m` points at MLflow version 1, registry says version 2 (MLflow version 2)"
        );
    }

    #[test]
    fn hand_changes_to_runs_are_healed() {
        let w = wanted(vec![version(1, Stage::Production)]);
        let mut view = mirrored(&w);
        let run = view.runs.values_mut().next().unwrap();
        run.data.metrics.retain(|m| m.key != "val_auc");
        run.data.metrics.push(Metric {
            key: "val_auc".into(),
            value: 0.5,
            timestamp: 9_000,
            step: 3,
        });
        run.info.lifecycle_stage = "deleted".into();
        let s = steps(&w, &view, 5_000);
        assert!(matches!(s[0].op, MirrorOp::RestoreRun { .. }), "{s:?}");
        assert!(matches!(s[1].op, MirrorOp::LogRun { .. }), "{s:?}");
        assert!(
            s[1].reason
                .contains("metric val_auc is 0.5, registry says 0.83")
        );
        let d = run_delta(
            &w.models[0].versions[0],
            view.runs.values().next().unwrap(),
            5_000,
        );
        // Logged after the hand-made value, at its step: it becomes the latest.
        assert_eq!((d.metrics[0].step, d.metrics[0].timestamp), (3, 9_001));
        // Another param value cannot be logged over: the run is replaced.
        let run = view.runs.values_mut().next().unwrap();
        run.data.params.retain(|p| p.key != "seed");
        run.data.params.push(KeyValue::new("seed", "7"));
        let s = steps(&w, &view, 5_000);
        assert!(matches!(s[0].op, MirrorOp::ReplaceRun { .. }), "{s:?}");
    }

    #[test]
    fn stages_follow_the_registry_where_the_server_has_them() {
        let w = wanted(vec![version(1, Stage::Production)]);
        let mut view = mirrored(&w);
        let mv = view.models.get_mut("m").unwrap();
        for v in mv.versions.values_mut() {
            v.current_stage = Some("Archived".into());
        }
        let s = steps(&w, &view, 5_000);
        assert!(
            matches!(&s[0].op, MirrorOp::TransitionStage { stage, .. } if stage == "Production")
        );
        // A server without stages: no transition planned.
        let mut view = mirrored(&w);
        view.stages = Some(false);
        for v in view.models.get_mut("m").unwrap().versions.values_mut() {
            v.current_stage = None;
        }
        assert!(steps(&w, &view, 5_000).is_empty());
    }

    #[test]
    fn no_production_removes_the_alias() {
        let w = wanted(vec![version(1, Stage::Archived)]);
        let mut view = mirrored(&w);
        view.models
            .get_mut("m")
            .unwrap()
            .aliases
            .insert(PRODUCTION_ALIAS.into(), "1".into());
        let s = steps(&w, &view, 5_000);
        assert!(matches!(s[0].op, MirrorOp::DeleteAlias { .. }), "{s:?}");
    }

    #[test]
    fn the_descriptor_is_yaml_with_a_signature() {
        let w = wanted(vec![version(1, Stage::Production)]);
        let text = descriptor(&w.models[0].versions[0], "run1", 42);
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(doc["run_id"], "run1");
        assert_eq!(doc["model_size_bytes"], 42);
        assert!(
            doc["signature"]["inputs"]
                .as_str()
                .unwrap()
                .contains("\"double\"")
        );
        assert_eq!(doc["flavors"]["reconcile"]["data"], "model.bin");
    }
}
