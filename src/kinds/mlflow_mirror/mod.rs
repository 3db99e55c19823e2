//! `MlflowMirror`: a copy of the registry in an MLflow tracking server. Every
//! version of the Models it names becomes an MLflow run (params, metrics,
//! identity tags, the artifact and an `MLmodel` descriptor) and a registered
//! model version; the `production` alias (and the stage, where the server
//! still has stages) follows the registry.
//!
//! The mirror depends on its Models, so it runs after their promotions, and
//! nothing depends on it: MLflow down fails this resource's condition, with
//! the server and the cause, and blocks nothing. What MLflow holds is read
//! in `desire` (its REST API, on a thread of its own, so plans work from any
//! runtime); the diff between that and the registry is pure
//! ([`mirror::steps`]), so `plan` shows drift (an alias moved, a run deleted
//! or a metric logged over by hand) and `apply` heals it. Apply takes the
//! steps again from the registry as it is when it runs (a version trained
//! earlier in the same round is mirrored at once) and MLflow as the plan
//! read it; the next round's plan reads MLflow again and finds nothing left.

pub mod client;
pub mod mirror;
pub mod spec;

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use super::record::changed_fields;
use super::{
    Applied, ApplyContext, ApplyError, CheckContext, CommonOp, Desired, Kind, Member, Observed,
    Reference, ResourceKind, Upstream,
};
use crate::diag::SpecDiagnostic;
use crate::plan::{Action, PlanOptions, ResourcePlan};
use crate::spec::{Resource, ResourceId, SpannedStr, SpecSet, env};
use crate::store::state::Condition;
use client::{Client, KeyValue, MlflowError, RunInfo};
use mirror::{ARTIFACT_TAG, MirrorOp, PROJECT_TAG, View, Wanted};
pub use spec::MlflowMirrorSpec;

/// Reasons listed in a plan before the rest are counted.
const MAX_REASONS: usize = 8;

/// The resolved tracking URL: it may hold a secret, so it never prints.
#[derive(Clone)]
pub struct TrackingUrl(String);

impl fmt::Debug for TrackingUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&env::redact_url(&self.0))
    }
}

/// What `desire` found: the wanted mirror (from the observed registry) and
/// what MLflow holds, or why it could not be read.
#[derive(Debug, Clone)]
pub struct MirrorInputs {
    /// The server, resolved.
    pub url: TrackingUrl,
    /// The server as it may be printed.
    pub shown: String,
    /// What MLflow should hold.
    pub wanted: Wanted,
    /// What it holds, or the error reading it (redacted).
    pub view: Result<View, String>,
    /// The desired hashes of the mirrored Models: a Model deciding again
    /// (a run retrained) plans the mirror in the same round, after it.
    pub models_hash: String,
    /// When this was observed (metric timestamps of healed values).
    pub now_ms: i64,
}

/// The `MlflowMirror` kind.
pub struct MlflowMirror;

fn experiment_of(spec: &MlflowMirrorSpec, project: &str) -> String {
    spec.experiment
        .as_ref()
        .map_or_else(|| project.to_string(), |e| e.value.clone())
}

fn model_names(spec: &MlflowMirrorSpec) -> Vec<String> {
    spec.models.iter().map(|m| m.value.clone()).collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Reads MLflow from a synchronous caller: on a thread with a runtime of its
/// own, whatever runtime (if any) the caller is on.
fn observe_blocking(
    url: &str,
    project: &str,
    experiment: &str,
    models: &[String],
) -> Result<View, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime to read MLflow: {e}"))?;
            rt.block_on(async {
                let client = Client::new(url)?;
                mirror::observe(&client, project, experiment, models).await
            })
            .map_err(|e| env::redact_secrets(&e.to_string()))
        })
        .join()
        .unwrap_or_else(|_| Err("reading MLflow panicked".into()))
    })
}

impl ResourceKind for MlflowMirror {
    type Spec = MlflowMirrorSpec;
    type Inputs = MirrorInputs;
    type Op = MirrorOp;

    fn name(spec: &MlflowMirrorSpec) -> &SpannedStr {
        &spec.name
    }

    fn depends_on(spec: &MlflowMirrorSpec) -> &[SpannedStr] {
        &spec.depends_on
    }

    fn references(spec: &MlflowMirrorSpec) -> Vec<Reference> {
        spec.models
            .iter()
            .map(|m| (m.clone(), Some(Kind::Model)))
            .collect()
    }

    fn check(
        _cx: &CheckContext<'_>,
        r: &Resource,
        spec: &MlflowMirrorSpec,
        diags: &mut Vec<SpecDiagnostic>,
    ) {
        spec::check_mirror(r, spec, diags);
    }

    fn desire(
        r: &Resource,
        spec: &MlflowMirrorSpec,
        set: &SpecSet,
        upstream: Upstream<'_>,
    ) -> Result<MirrorInputs, ApplyError> {
        let url =
            env::interpolate_url(&spec.tracking_uri.value).map_err(|source| ApplyError::Env {
                what: format!("{}: trackingUri", r.id),
                source,
            })?;
        let shown = env::redact_url(&url);
        let project = &set.project.name.value;
        let experiment = experiment_of(spec, project);
        let models = model_names(spec);
        let wanted =
            Wanted::from_registry(project, &experiment, &models, &upstream.observed().registry);
        let models_hash = crate::hash::hash_parts(models.iter().flat_map(|m| {
            let hash = upstream
                .get(&ResourceId::new(Kind::Model, m.clone()))
                .map_or("", |d| d.spec_hash.as_str());
            [m.as_str(), hash]
        }));
        let view = observe_blocking(&url, project, &experiment, &models);
        Ok(MirrorInputs {
            url: TrackingUrl(url),
            shown,
            wanted,
            view,
            models_hash,
            now_ms: now_ms(),
        })
    }

    fn input_hash(inputs: &MirrorInputs) -> String {
        inputs.models_hash.clone()
    }

    fn diff(d: &Desired<'_, Self>, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        let mut plan = ResourcePlan::noop(d.id.clone());
        let inputs = d.inputs;
        match observed.records.get(d.id) {
            None => {
                plan.action = Action::Create;
                plan.reasons.push(format!(
                    "mirror the registered versions of {} to MLflow at {}",
                    model_names(d.spec).join(", "),
                    inputs.shown
                ));
            }
            Some(rec) if rec.spec_hash != d.spec_hash => {
                plan.action = Action::Update;
                plan.reasons.push(if rec.spec_json != *d.spec_json {
                    format!(
                        "spec changed: {}",
                        changed_fields(&rec.spec_json, d.spec_json)
                    )
                } else {
                    "a mirrored Model decides again: mirror after it".to_string()
                });
            }
            Some(rec) if rec.condition != Condition::Ready => {
                plan.action = Action::Update;
                plan.reasons.push(format!(
                    "last apply ended {}: {}",
                    rec.condition, rec.reason
                ));
            }
            Some(_) => {}
        }
        match &inputs.view {
            Err(e) => {
                if plan.action == Action::NoOp {
                    plan.action = Action::Update;
                }
                // First: `status` shows a plan's first reason.
                plan.reasons
                    .insert(0, format!("cannot read MLflow ({e}); apply tries again"));
                plan.operations.push(CommonOp::Record.into());
            }
            Ok(view) => {
                let steps = mirror::steps(&inputs.wanted, view, inputs.now_ms);
                if !steps.is_empty() && plan.action == Action::NoOp {
                    plan.action = Action::Update;
                }
                let shown = steps.len().min(MAX_REASONS);
                for s in &steps[..shown] {
                    plan.reasons.push(if s.drift {
                        format!("drift: {}", s.reason)
                    } else {
                        s.reason.clone()
                    });
                }
                if steps.len() > shown {
                    plan.reasons
                        .push(format!("… and {} more step(s)", steps.len() - shown));
                }
                if view.experiment.is_some()
                    && inputs.wanted.version_count() > 0
                    && view
                        .runs
                        .values()
                        .all(|r| client::proxied_path(&r.info.artifact_uri).is_none())
                    && !view.runs.is_empty()
                {
                    plan.warnings.push(format!(
                        "MLflow at {} does not proxy artifacts (start it with --serve-artifacts): runs are mirrored without their artifact",
                        inputs.shown
                    ));
                }
                plan.operations
                    .extend(steps.into_iter().map(|s| Self::op(s.op)));
                if plan.action != Action::NoOp && plan.operations.is_empty() {
                    plan.operations.push(CommonOp::Record.into());
                }
            }
        }
        plan
    }

    async fn apply(
        ctx: &ApplyContext,
        d: &Desired<'_, Self>,
        _plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        let t0 = Instant::now();
        let client = Client::new(&d.inputs.url.0)?;
        let wanted = &d.inputs.wanted;
        // The registry as it is now: a version trained or promoted earlier
        // in this round is mirrored at once. MLflow as the plan read it
        // (nothing else in a round writes there; the next round's plan
        // checks what this one did), or again if it could not be read.
        let registry = ctx.registry.observe().await?;
        let wanted = Wanted::from_registry(
            &wanted.project,
            &wanted.experiment,
            &model_names(d.spec),
            &registry,
        );
        let view = match &d.inputs.view {
            Ok(view) => view.clone(),
            Err(_) => {
                mirror::observe(
                    &client,
                    &wanted.project,
                    &wanted.experiment,
                    &model_names(d.spec),
                )
                .await?
            }
        };
        let steps = mirror::steps(&wanted, &view, now_ms());
        let mut done = Done {
            versions: wanted.version_count(),
            ..Done::default()
        };
        let mut run = Execution::new(ctx, &client, &wanted, view);
        run.all(&steps, &mut done).await?;
        done.experiment_id = run.experiment_id.clone();
        Ok(done.applied(client.shown(), t0))
    }
}

/// Versions whose runs are written at once.
const RUN_PARALLELISM: usize = 8;

/// What one apply did, for its message.
#[derive(Debug, Default)]
struct Done {
    runs: usize,
    healed: usize,
    artifacts: usize,
    versions_created: usize,
    stages: usize,
    aliases: Vec<String>,
    versions: usize,
    experiment_id: Option<String>,
    skipped_artifacts: usize,
}

impl Done {
    fn merge(&mut self, other: Done) {
        self.runs += other.runs;
        self.healed += other.healed;
        self.artifacts += other.artifacts;
        self.versions_created += other.versions_created;
        self.stages += other.stages;
        self.aliases.extend(other.aliases);
        self.skipped_artifacts += other.skipped_artifacts;
    }

    fn applied(&self, shown: &str, t0: Instant) -> Applied {
        let mut parts = Vec::new();
        if self.runs > 0 {
            parts.push(format!("{} run(s) created", self.runs));
        }
        if self.healed > 0 {
            parts.push(format!("{} run(s) healed", self.healed));
        }
        if self.artifacts > 0 {
            parts.push(format!("{} artifact(s) uploaded", self.artifacts));
        }
        if self.versions_created > 0 {
            parts.push(format!(
                "{} model version(s) registered",
                self.versions_created
            ));
        }
        if self.stages > 0 {
            parts.push(format!("{} stage(s) moved", self.stages));
        }
        parts.extend(self.aliases.iter().cloned());
        if parts.is_empty() {
            parts.push("up to date".into());
        }
        if self.skipped_artifacts > 0 {
            parts.push(format!(
                "{} artifact(s) not uploaded (the server does not proxy artifacts)",
                self.skipped_artifacts
            ));
        }
        let ms = t0.elapsed().as_millis();
        Applied {
            message: format!(
                "MLflow at {shown}: {} ({} version(s) mirrored)",
                parts.join(", "),
                self.versions
            ),
            outputs: serde_json::json!({
                "trackingUri": shown,
                "experimentId": self.experiment_id,
                "versions": self.versions,
                "millis": ms,
            }),
        }
    }
}

/// True for the steps that touch one version's run only: versions' runs
/// are written concurrently.
fn is_run_step(op: &MirrorOp) -> bool {
    matches!(
        op,
        MirrorOp::CreateRun { .. }
            | MirrorOp::ReplaceRun { .. }
            | MirrorOp::RestoreRun { .. }
            | MirrorOp::LogRun { .. }
            | MirrorOp::UploadArtifact { .. }
    )
}

/// True for the steps that only need versions to exist: stage moves and
/// aliases.
fn is_last_step(op: &MirrorOp) -> bool {
    matches!(
        op,
        MirrorOp::TransitionStage { .. } | MirrorOp::SetAlias { .. } | MirrorOp::DeleteAlias { .. }
    )
}

fn version_of(op: &MirrorOp) -> Option<(&str, i64)> {
    match op {
        MirrorOp::CreateRun { model, version }
        | MirrorOp::ReplaceRun { model, version, .. }
        | MirrorOp::RestoreRun { model, version, .. }
        | MirrorOp::LogRun { model, version, .. }
        | MirrorOp::UploadArtifact { model, version, .. }
        | MirrorOp::CreateModelVersion { model, version }
        | MirrorOp::TransitionStage { model, version, .. }
        | MirrorOp::SetAlias { model, version, .. } => Some((model, *version)),
        _ => None,
    }
}

/// The steps against MLflow, learning ids as it creates objects.
struct Execution<'a> {
    ctx: &'a ApplyContext,
    client: &'a Client,
    wanted: &'a Wanted,
    view: View,
    experiment_id: Option<String>,
    /// Runs by identity (found or created).
    runs: HashMap<String, RunInfo>,
    /// MLflow version numbers by (model, identity).
    versions: HashMap<(String, String), String>,
}

impl<'a> Execution<'a> {
    fn new(ctx: &'a ApplyContext, client: &'a Client, wanted: &'a Wanted, view: View) -> Self {
        let runs = view
            .runs
            .iter()
            .map(|(id, r)| (id.clone(), r.info.clone()))
            .collect();
        let versions = view
            .models
            .iter()
            .flat_map(|(model, mv)| {
                mv.versions
                    .iter()
                    .map(move |(id, v)| ((model.clone(), id.clone()), v.version.clone()))
            })
            .collect();
        Execution {
            ctx,
            client,
            wanted,
            experiment_id: view.experiment.as_ref().map(|(id, _)| id.clone()),
            view,
            runs,
            versions,
        }
    }

    /// Runs `steps` in their order; a stretch of run steps goes out
    /// version by version concurrently, and so does a stretch of stage moves.
    async fn all(&mut self, steps: &[mirror::Step], done: &mut Done) -> Result<(), ApplyError> {
        use futures_util::FutureExt;
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let mut i = 0;
        while i < steps.len() {
            let op = &steps[i].op;
            if is_run_step(op) {
                let end = steps[i..]
                    .iter()
                    .position(|s| !is_run_step(&s.op))
                    .map_or(steps.len(), |n| i + n);
                // Each version's steps in order, versions side by side.
                let mut groups: Vec<((&str, i64), Vec<&MirrorOp>)> = Vec::new();
                for s in &steps[i..end] {
                    let key = version_of(&s.op).unwrap_or(("", 0));
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, ops)) => ops.push(&s.op),
                        None => groups.push((key, vec![&s.op])),
                    }
                }
                let this = &*self;
                // Boxed first: a stream of futures made by a closure is not
                // provably `Send` for every lifetime.
                let futures: Vec<_> = groups
                    .into_iter()
                    .map(|(_, ops)| this.run_steps(ops).boxed())
                    .collect();
                let results: Vec<(Option<(String, RunInfo)>, Done)> = stream::iter(futures)
                    .buffer_unordered(RUN_PARALLELISM)
                    .try_collect()
                    .await?;
                for (created, d) in results {
                    if let Some((identity, info)) = created {
                        self.runs.insert(identity, info);
                    }
                    done.merge(d);
                }
                i = end;
            } else if is_last_step(op) {
                // Stages and aliases of versions that exist by now: side by side.
                let end = steps[i..]
                    .iter()
                    .position(|s| !is_last_step(&s.op))
                    .map_or(steps.len(), |n| i + n);
                let this = &*self;
                let futures: Vec<_> = steps[i..end]
                    .iter()
                    .map(|s| this.last_step(&s.op).boxed())
                    .collect();
                let results: Vec<Done> = stream::iter(futures)
                    .buffer_unordered(RUN_PARALLELISM)
                    .try_collect()
                    .await?;
                for d in results {
                    done.merge(d);
                }
                i = end;
            } else {
                self.step(op, done).await?;
                i += 1;
            }
        }
        Ok(())
    }

    fn version(&self, model: &str, version: i64) -> Result<&'a mirror::WantedVersion, ApplyError> {
        self.wanted.version(model, version).ok_or_else(|| {
            ApplyError::Validation(format!(
                "{model} version {version} left the registry during the mirror"
            ))
        })
    }

    fn run_of(&self, identity: &str) -> Result<&RunInfo, ApplyError> {
        self.runs
            .get(identity)
            .ok_or_else(|| ApplyError::Validation(format!("no MLflow run for version {identity}")))
    }

    fn mlflow_version(&self, model: &str, identity: &str) -> Result<String, ApplyError> {
        self.versions
            .get(&(model.to_string(), identity.to_string()))
            .cloned()
            .ok_or_else(|| {
                ApplyError::Validation(format!("no MLflow version of {model} for {identity}"))
            })
    }

    /// One version's run steps, in order; the run it created, if any.
    async fn run_steps(
        &self,
        ops: Vec<&MirrorOp>,
    ) -> Result<(Option<(String, RunInfo)>, Done), ApplyError> {
        let client = self.client;
        let mut done = Done::default();
        let mut created = None;
        for op in ops {
            match op {
                MirrorOp::CreateRun { model, version } => {
                    let w = self.version(model, *version)?;
                    created = Some((w.identity.clone(), self.create_run(w, &mut done).await?));
                }
                MirrorOp::ReplaceRun {
                    model,
                    version,
                    run_id,
                } => {
                    let w = self.version(model, *version)?;
                    client.delete_run(run_id).await?;
                    created = Some((w.identity.clone(), self.create_run(w, &mut done).await?));
                }
                MirrorOp::RestoreRun { run_id, .. } => {
                    client.restore_run(run_id).await?;
                    done.healed += 1;
                }
                MirrorOp::LogRun {
                    model,
                    version,
                    run_id,
                } => {
                    let w = self.version(model, *version)?;
                    if let Some(run) = self.view.runs.get(&w.identity) {
                        let delta = mirror::run_delta(w, run, now_ms());
                        client
                            .log_batch(run_id, &delta.missing_params, &delta.metrics, &delta.tags)
                            .await?;
                        done.healed += 1;
                    }
                }
                MirrorOp::UploadArtifact {
                    model,
                    version,
                    run_id,
                } => {
                    let w = self.version(model, *version)?;
                    let info = self.run_of(&w.identity)?.clone();
                    if self.upload(w, &info, &mut done).await? {
                        let tag = [KeyValue::new(ARTIFACT_TAG, &w.artifact_hash)];
                        client.log_batch(run_id, &[], &[], &tag).await?;
                    }
                }
                _ => {}
            }
        }
        Ok((created, done))
    }

    /// A stage move or an alias change; a stage move does nothing on a
    /// server without stages.
    async fn last_step(&self, op: &MirrorOp) -> Result<Done, ApplyError> {
        let mut done = Done::default();
        match op {
            MirrorOp::TransitionStage {
                model,
                version,
                stage,
            } if self.view.stages != Some(false) => {
                let w = self.version(model, *version)?;
                let v = self.mlflow_version(model, &w.identity)?;
                self.client.transition_stage(model, &v, stage).await?;
                done.stages += 1;
            }
            MirrorOp::SetAlias {
                model,
                alias,
                version,
            } => {
                let w = self.version(model, *version)?;
                let v = self.mlflow_version(model, &w.identity)?;
                self.client.set_alias(model, alias, &v).await?;
                done.aliases
                    .push(format!("{alias} → MLflow version {v} of {model}"));
            }
            MirrorOp::DeleteAlias { model, alias } => {
                self.client.delete_alias(model, alias).await?;
                done.aliases.push(format!("{alias} of {model} removed"));
            }
            _ => {}
        }
        Ok(done)
    }

    async fn step(&mut self, op: &MirrorOp, done: &mut Done) -> Result<(), ApplyError> {
        let client = self.client;
        match op {
            MirrorOp::CreateExperiment { name } => {
                let tags = [KeyValue::new(PROJECT_TAG, &self.wanted.project)];
                self.experiment_id = Some(client.create_experiment(name, &tags).await?);
            }
            MirrorOp::RestoreExperiment { .. } => {
                if let Some(id) = &self.experiment_id {
                    client.restore_experiment(id).await?;
                }
            }
            MirrorOp::CreateRegisteredModel { model } => {
                let tags = [KeyValue::new(PROJECT_TAG, &self.wanted.project)];
                client.create_registered_model(model, &tags).await?;
            }
            MirrorOp::CreateModelVersion { model, version } => {
                let w = self.version(model, *version)?;
                let run = self.run_of(&w.identity)?;
                let tags = [
                    KeyValue::new(mirror::IDENTITY_TAG, &w.identity),
                    KeyValue::new("reconcile.version", w.version.to_string()),
                    KeyValue::new(PROJECT_TAG, &self.wanted.project),
                ];
                let created = client
                    .create_model_version(
                        model,
                        &mirror::source_of(run),
                        &run.run_id.clone(),
                        &tags,
                        &format!("{} (reconcile version {})", w.run_name, w.version),
                    )
                    .await?;
                if self.view.stages.is_none() {
                    self.view.stages = Some(created.current_stage.is_some());
                }
                self.versions
                    .insert((model.clone(), w.identity.clone()), created.version);
                done.versions_created += 1;
            }
            MirrorOp::TransitionStage { .. }
            | MirrorOp::SetAlias { .. }
            | MirrorOp::DeleteAlias { .. } => {
                done.merge(self.last_step(op).await?);
            }
            other => {
                let (created, d) = self.run_steps(vec![other]).await?;
                if let Some((identity, info)) = created {
                    self.runs.insert(identity, info);
                }
                done.merge(d);
            }
        }
        Ok(())
    }

    /// A version's run, whole: created with its tags; the artifact and its
    /// descriptor uploaded side by side; params, metrics and the artifact
    /// tag (only once uploaded) in one batch; finished at the fit's end.
    async fn create_run(
        &self,
        w: &mirror::WantedVersion,
        done: &mut Done,
    ) -> Result<RunInfo, ApplyError> {
        let client = self.client;
        let experiment = self.experiment_id.clone().ok_or_else(|| {
            ApplyError::Validation(format!(
                "experiment `{}` is missing in MLflow",
                self.wanted.experiment
            ))
        })?;
        let tags: Vec<KeyValue> = w.tags.iter().map(|(k, v)| KeyValue::new(k, v)).collect();
        let run = client
            .create_run(&experiment, &w.run_name, w.start_ms, &tags)
            .await?;
        let params: Vec<KeyValue> = w.params.iter().map(|(k, v)| KeyValue::new(k, v)).collect();
        let metrics: Vec<client::Metric> = w
            .metrics
            .iter()
            .map(|(k, v)| client::Metric {
                key: k.clone(),
                value: *v,
                timestamp: w.start_ms,
                step: 0,
            })
            .collect();
        let run_id = run.info.run_id.clone();
        // Finishing does not wait on the data: MLflow takes params and
        // metrics on a finished run, and each round trip counts.
        let data = async {
            let uploaded = self.upload(w, &run.info, done).await?;
            let tags = if uploaded {
                vec![KeyValue::new(ARTIFACT_TAG, &w.artifact_hash)]
            } else {
                Vec::new()
            };
            client.log_batch(&run_id, &params, &metrics, &tags).await?;
            Ok::<_, ApplyError>(())
        };
        let finish = async { Ok(client.finish_run(&run_id, w.end_ms).await?) };
        tokio::try_join!(data, finish)?;
        done.runs += 1;
        Ok(run.info)
    }

    /// Uploads a version's artifact and descriptor side by side; false when
    /// the server does not proxy artifacts.
    async fn upload(
        &self,
        w: &mirror::WantedVersion,
        run: &RunInfo,
        done: &mut Done,
    ) -> Result<bool, ApplyError> {
        if client::proxied_path(&run.artifact_uri).is_none() {
            done.skipped_artifacts += 1;
            return Ok(false);
        }
        let bytes = self
            .ctx
            .registry
            .artifact(&w.model, w.version)
            .await?
            .ok_or_else(|| {
                ApplyError::Validation(format!(
                    "{} version {} has no artifact in the registry",
                    w.model, w.version
                ))
            })?;
        let descriptor = mirror::descriptor(w, &run.run_id, bytes.len());
        let (bin, mlmodel) = tokio::try_join!(
            self.client
                .put_artifact(&run.artifact_uri, "model/model.bin", bytes),
            self.client
                .put_artifact(&run.artifact_uri, "model/MLmodel", descriptor.into_bytes()),
        )?;
        let uploaded = bin.is_some() && mlmodel.is_some();
        if uploaded {
            done.artifacts += 1;
        }
        Ok(uploaded)
    }
}

impl From<MlflowError> for ApplyError {
    fn from(e: MlflowError) -> Self {
        ApplyError::Mlflow(Box::new(e))
    }
}
