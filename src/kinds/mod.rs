//! The kinds, and the one list that makes them kinds.
//!
//! A kind is a unit type implementing [`ResourceKind`]: its spec type (parsed
//! straight from YAML, with its JSON Schema), the references that place it in the
//! graph, its checks, what it desires (hashed inputs), a pure `diff` against what
//! was observed, its own typed operations, `apply`, removal, and the concurrency
//! pool its work runs in. The `kinds!` list below generates the
//! [`Kind`] enum, the [`Spec`], [`Typed`] and [`Operation`] enums and every
//! dispatch function from one line per kind; nothing outside this folder matches
//! on a specific kind.
//!
//! Adding a kind: one module here implementing [`ResourceKind`], one line in the
//! list, and its committed JSON Schema (`reconcile schema --out schemas/`).

#[macro_use]
mod registry;

pub mod endpoint;
pub mod entity;
pub mod feature_view;
pub mod mlflow_mirror;
pub mod model;
pub mod monitor;
pub mod observability;
pub mod project;
pub mod record;
pub mod service;
pub mod table;
pub mod training_run;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::diag::SpecDiagnostic;
use crate::plan::{PlanOptions, ResourcePlan};
use crate::runtime::containers::{DesiredContainer, DockerView, SharedDocker};
use crate::spec::validate::ResourceIndex;
use crate::spec::{Resource, ResourceId, SpannedStr, SpecSet};
use crate::store::offline::StoredTable;
use crate::store::state::{ResourceRecord, StateStore};
use crate::store::{Db, StoreError};

kinds! {
    /// Project settings (stores).
    Project => project::Project,
    /// A container run on the project network.
    Service => service::Service,
    /// An entity with join keys.
    Entity => entity::Entity,
    /// A validated table of snapshots.
    Table => table::Table,
    /// Features of an entity from a table.
    FeatureView => feature_view::FeatureView,
    /// A reproducible training run producing a model version.
    TrainingRun => training_run::TrainingRun,
    /// A registered model and its Production choice.
    Model => model::Model,
    /// An HTTP prediction endpoint.
    Endpoint => endpoint::Endpoint,
    /// Drift and decay of a model, and retraining when they fire.
    Monitor => monitor::Monitor,
    /// The monitoring of what the specs declare (Prometheus, Grafana).
    Observability => observability::Observability,
    /// A copy of registered models in an MLflow tracking server.
    MlflowMirror => mlflow_mirror::MlflowMirror,
}

/// A reference from one spec to another, with where it is written and the kind
/// it must name (`None`: any kind, as `dependsOn` allows).
pub type Reference = (SpannedStr, Option<Kind>);

/// Which concurrency bound a resource's apply counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pool {
    /// CPU-heavy work (loading, training): bounded by `--parallelism`.
    Cpu,
    /// Work that waits on a container engine and health checks: a wider bound.
    Containers,
}

/// What a kind's checks may look at besides its own spec.
pub struct CheckContext<'a> {
    /// The project folder: every path must stay inside it.
    pub root: &'a Path,
    /// Every resource, by name.
    pub index: &'a ResourceIndex<'a>,
}

impl<'a> CheckContext<'a> {
    /// Where the Project runs container workloads unless they say otherwise.
    pub fn project_runtime(&self) -> service::deploy::WorkloadRuntime {
        self.index
            .all()
            .iter()
            .find_map(|r| project::Project::spec_of(&r.spec))
            .and_then(|p| p.runtime)
            .unwrap_or_default()
    }

    /// The spec of kind `K` that `at` names, if it resolves (problems with the
    /// reference itself are reported once, by the generic reference check).
    pub fn resolve<K: Member>(&self, from: &Resource, at: &SpannedStr) -> Option<&'a K::Spec> {
        let id =
            crate::spec::validate::resolve_reference(from, at, Some(K::KIND), self.index).ok()?;
        K::spec_of(&self.index.get(&id)?.spec)
    }
}

/// The contract of a kind, over its whole life. Static dispatch: each kind is a
/// unit type, and the generated functions of this module call it by its type.
pub trait ResourceKind: Sized + Send + Sync + 'static {
    /// What users write (deserialized straight from the document, so locations survive).
    type Spec: DeserializeOwned + Serialize + JsonSchema + Clone + fmt::Debug + Send + Sync;
    /// What `desire` read and hashed: everything the pure diff and apply need.
    type Inputs: Clone + fmt::Debug + Send + Sync;
    /// The kind's own operations (serialized into `plan --json` with an `op` tag).
    type Op: Clone + fmt::Debug + PartialEq + Serialize + Send + Sync;

    /// The spec's name, with its location.
    fn name(spec: &Self::Spec) -> &SpannedStr;

    /// Explicit `dependsOn` edges.
    fn depends_on(_spec: &Self::Spec) -> &[SpannedStr] {
        &[]
    }

    /// Resources this one needs before it (beyond `dependsOn`).
    fn references(_spec: &Self::Spec) -> Vec<Reference> {
        Vec::new()
    }

    /// Resources that need this one before them though this spec names them
    /// (a run feeds the Model it names).
    fn reverse_references(_spec: &Self::Spec) -> Vec<Reference> {
        Vec::new()
    }

    /// Checks that need the other specs; every problem is pushed, none stops the rest.
    fn check(
        _cx: &CheckContext<'_>,
        _r: &Resource,
        _spec: &Self::Spec,
        _diags: &mut Vec<SpecDiagnostic>,
    ) {
    }

    /// Whether the state store must refuse to drop this resource's data.
    fn protect(_spec: &Self::Spec) -> bool {
        false
    }

    /// Reads and hashes the inputs (read-only I/O, before any action).
    fn desire(
        r: &Resource,
        spec: &Self::Spec,
        set: &SpecSet,
        upstream: Upstream<'_>,
    ) -> Result<Self::Inputs, ApplyError>;

    /// What the spec hash covers beyond the spec itself (input files, images).
    fn input_hash(_inputs: &Self::Inputs) -> String {
        String::new()
    }

    /// The pool this resource's apply runs in.
    fn pool(_inputs: &Self::Inputs) -> Pool {
        Pool::Cpu
    }

    /// Desired vs observed: the action, its reasons and the operations. Pure.
    /// By default the kind has no effect outside its record in the state store.
    fn diff(d: &Desired<'_, Self>, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        record::diff(d.id, d.spec_hash, d.spec_json, observed)
    }

    /// The plan of a resource of this kind the specs no longer name. Pure.
    fn diff_removed(id: &ResourceId, _observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        record::forget(id)
    }

    /// Carries out this resource's plan. By default there is nothing to do
    /// beyond the record the engine writes.
    fn apply(
        _ctx: &ApplyContext,
        _d: &Desired<'_, Self>,
        _plan: &ResourcePlan,
    ) -> impl Future<Output = Result<Applied, ApplyError>> + Send {
        async { Ok(Applied::message("recorded")) }
    }

    /// Carries out the removal planned by [`ResourceKind::diff_removed`].
    fn apply_removed(
        _ctx: &ApplyContext,
        _plan: &ResourcePlan,
    ) -> impl Future<Output = Result<Applied, ApplyError>> + Send {
        async { Ok(Applied::message("removed from state")) }
    }

    /// The container this resource runs as, if it runs as one (so dependents
    /// can wait for it).
    fn container(_inputs: &Self::Inputs) -> Option<&DesiredContainer> {
        None
    }

    /// Whether this spec runs on the container engine (so a plan observes it).
    fn uses_engine(_spec: &Self::Spec) -> bool {
        false
    }

    /// Whether a recorded spec (canonical JSON) ran on the container engine, so
    /// its container is observed and pruned once the spec is gone.
    fn recorded_uses_engine(_spec_json: &serde_json::Value) -> bool {
        false
    }

    /// The folder this resource writes generated files into (absolute), so a
    /// Service may bind-mount it before it exists, and a container mounting it
    /// is recreated when what the resource generates changes (its spec hash).
    fn generates(_r: &Resource, _spec: &Self::Spec, _root: &Path) -> Option<PathBuf> {
        None
    }

    /// What this resource generates into [`ResourceKind::generates`]'s folder
    /// (path with `/`, relative to it → content), rendered without writing: an
    /// export to where no project folder exists (a Kubernetes ConfigMap)
    /// carries the files themselves. `None` for a kind that generates nothing.
    fn generated_files(
        _r: &Resource,
        _spec: &Self::Spec,
        _set: &SpecSet,
    ) -> Option<Result<GeneratedFiles, GenerateError>> {
        None
    }

    /// The files beyond its spec document that this resource reads, as
    /// absolute glob patterns, so watch mode knows which file events concern
    /// it (a snapshot CSV, a folder of dated snapshots, a build context).
    fn reads(_r: &Resource, _spec: &Self::Spec, _root: &Path) -> Vec<glob::Pattern> {
        Vec::new()
    }
}

/// The resources of `resources` that generate files into a folder that `path`
/// lies in (see [`ResourceKind::generates`]). A mount of a parent folder (the
/// whole project, as a docker Endpoint mounts it) does not count: it mounts
/// the project, not the generated config.
pub fn generators_at<'a>(
    resources: &'a [Resource],
    root: &'a Path,
    path: &'a Path,
) -> impl Iterator<Item = &'a Resource> + 'a {
    resources
        .iter()
        .filter(move |r| generated_folder(r, root).is_some_and(|folder| path.starts_with(folder)))
}

/// Files a resource generates: path (with `/`, relative to its folder) → content.
pub type GeneratedFiles = std::collections::BTreeMap<String, String>;

/// Why a resource could not render what it generates.
pub type GenerateError = Box<dyn std::error::Error + Send + Sync>;

/// The resource generating into a folder that `path` lies in, with that folder
/// and what it generates (see [`ResourceKind::generated_files`]).
pub fn generated_at<'a>(
    set: &'a SpecSet,
    path: &Path,
) -> Option<(&'a Resource, PathBuf, Result<GeneratedFiles, GenerateError>)> {
    set.resources.iter().find_map(|r| {
        let folder = generated_folder(r, &set.root)?;
        if !path.starts_with(&folder) {
            return None;
        }
        let files = generated_files(r, set)?;
        Some((r, folder, files))
    })
}

/// The absolute pattern of `rel` (a path or a glob) written in a spec whose
/// folder is `base`: `..` resolved lexically, the folder's own characters
/// escaped so only `rel`'s wildcards are wildcards.
pub fn read_pattern(base: &Path, rel: &str) -> Option<glob::Pattern> {
    let mut folder = base.to_path_buf();
    let mut rest: Vec<&str> = Vec::new();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." if rest.is_empty() => {
                folder.pop();
            }
            ".." => {
                rest.pop();
            }
            p => rest.push(p),
        }
    }
    let text = format!(
        "{}/{}",
        glob::Pattern::escape(&folder.to_string_lossy()),
        rest.join("/")
    );
    glob::Pattern::new(&text).ok()
}

/// How a kind sits in the generated enums. Implemented by the list, never by hand.
pub trait Member: ResourceKind {
    /// Its variant of [`Kind`].
    const KIND: Kind;
    /// Its spec, when `spec` is of this kind.
    fn spec_of(spec: &Spec) -> Option<&Self::Spec>;
    /// Its spec and inputs, when `typed` is of this kind.
    fn typed_of(typed: &Typed) -> Option<(&Self::Spec, &Self::Inputs)>;
    /// Its operation, when `op` is one of this kind's.
    fn op_of(op: &Operation) -> Option<&Self::Op>;
    /// One of its operations, as a plan holds it.
    fn op(op: Self::Op) -> Operation;
}

/// A resource's desired state as its kind sees it: typed spec and inputs.
#[derive(Debug)]
pub struct Desired<'a, K: ResourceKind> {
    /// Kind and name.
    pub id: &'a ResourceId,
    /// The spec as written.
    pub spec: &'a K::Spec,
    /// What `desire` read.
    pub inputs: &'a K::Inputs,
    /// Canonical spec JSON (recorded in the state store).
    pub spec_json: &'a serde_json::Value,
    /// Hash of the spec and its inputs.
    pub spec_hash: &'a str,
    /// Whether its data is protected from deletion.
    pub protect: bool,
}

/// What a resource should be: its spec plus the hashes of its inputs.
#[derive(Debug, Clone)]
pub struct DesiredResource {
    /// Kind and name.
    pub id: ResourceId,
    /// Canonical spec JSON (recorded in the state store).
    pub spec_json: serde_json::Value,
    /// Hash of the spec and its inputs.
    pub spec_hash: String,
    /// Whether its data is protected from deletion.
    pub protect: bool,
    /// The concurrency pool its apply runs in.
    pub pool: Pool,
    /// The typed spec and inputs.
    pub typed: Typed,
}

impl DesiredResource {
    /// The typed view of a resource of kind `K`.
    pub fn of<K: Member>(&self) -> Option<Desired<'_, K>> {
        let (spec, inputs) = K::typed_of(&self.typed)?;
        Some(Desired {
            id: &self.id,
            spec,
            inputs,
            spec_json: &self.spec_json,
            spec_hash: &self.spec_hash,
            protect: self.protect,
        })
    }
}

/// What is known when a resource's desired state is worked out: what was
/// desired of the resources before it (its dependencies come first in
/// topological order), so a kind builds on their inputs instead of reading and
/// hashing files again; and the observed world, for desired states that follow
/// it (a run retrained as of the window its monitor fired on).
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    done: &'a [DesiredResource],
    index: &'a HashMap<ResourceId, usize>,
    observed: &'a Observed,
}

impl<'a> Upstream<'a> {
    /// The world as observed before this plan.
    pub fn observed(&self) -> &'a Observed {
        self.observed
    }

    /// What the state store recorded of a resource of kind `K` named `name`.
    pub fn record<K: Member>(&self, name: &str) -> Option<&'a ResourceRecord> {
        self.observed.records.get(&ResourceId::new(K::KIND, name))
    }

    /// The desired state of an earlier resource.
    pub fn get(&self, id: &ResourceId) -> Option<&'a DesiredResource> {
        self.index.get(id).map(|&i| &self.done[i])
    }

    /// The inputs of an earlier resource of kind `K` named `name`.
    pub fn inputs<K: Member>(&self, name: &str) -> Option<&'a K::Inputs> {
        let d = self.get(&ResourceId::new(K::KIND, name))?;
        K::typed_of(&d.typed).map(|(_, i)| i)
    }
}

/// The desired state of every resource, in execution order.
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    /// Resources in topological order.
    pub resources: Vec<DesiredResource>,
}

/// A snapshot of the world: one query per store, shared by every kind's diff.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// What the state store recorded.
    pub records: HashMap<ResourceId, ResourceRecord>,
    /// What the offline store holds.
    pub tables: HashMap<String, StoredTable>,
    /// Tables in the offline database that reconcile did not create.
    pub foreign_tables: std::collections::HashSet<String>,
    /// What the online store holds, per view.
    pub online: HashMap<String, crate::store::online::OnlineView>,
    /// Every registered model version.
    pub registry: crate::store::registry::RegistryState,
    /// The project's containers (observed only when something runs in one).
    pub docker: DockerView,
    /// The project's networks and volumes (observed with the containers).
    pub docker_objects: Option<crate::runtime::containers::ProjectObjects>,
    /// The project's swarm services (observed with the containers).
    pub swarm: crate::runtime::swarm::SwarmView,
}

/// Everything an apply needs to act.
#[derive(Debug)]
pub struct ApplyContext {
    /// The state store.
    pub state: StateStore,
    /// The offline store.
    pub offline: Db,
    /// The online store.
    pub online: crate::store::online::OnlineStore,
    /// The model registry (in the state store).
    pub registry: crate::store::registry::Registry,
    /// The project folder (for messages).
    pub root: PathBuf,
    /// The Docker engine, connected on first use.
    pub docker: SharedDocker,
    /// What a point-in-time join may hold of one view (`--memory-budget`).
    pub memory_budget: crate::features::MemoryBudget,
}

impl ApplyContext {
    /// Where the resource being applied reports counted work (rows, entities,
    /// trees, bytes): `ctx.progress().units("rows", total)`. The context is
    /// shared by every resource; the engine runs each apply with its own
    /// reporter ([`crate::progress::scope`]). Take the units before moving
    /// work onto a blocking thread.
    pub fn progress(&self) -> crate::progress::Reporter {
        crate::progress::current()
    }
}

/// What a successful apply of one resource reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// One line for the user.
    pub message: String,
    /// Kind-specific outputs kept in the state store.
    pub outputs: serde_json::Value,
}

impl Applied {
    /// A message with no outputs.
    pub fn message(message: impl Into<String>) -> Applied {
        Applied {
            message: message.into(),
            outputs: serde_json::Value::Null,
        }
    }
}

/// Why applying a resource failed. Every variant keeps its cause.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// Data failed its checks; the text is the report (rows, lines, expectations).
    #[error("{0}")]
    Validation(String),
    /// A CSV could not be read as declared.
    #[error(transparent)]
    Csv(#[from] table::csv::CsvError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A background task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The training set could not be built as the spec asks.
    #[error("{0}")]
    TrainingSet(String),
    /// Point-in-time retrieval failed.
    #[error(transparent)]
    Features(#[from] crate::features::FeatureError),
    /// Training or serializing the model failed.
    #[error(transparent)]
    Train(#[from] crate::ml::train::TrainError),
    /// No Production version could be chosen.
    #[error("cannot choose Production: {0}")]
    Choice(String),
    /// The registry refused a stage change.
    #[error(transparent)]
    Stage(#[from] crate::store::registry::StageError),
    /// The Docker engine is unreachable or refused a request.
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    /// The endpoint image could not be assembled from this binary.
    #[error(transparent)]
    Image(#[from] crate::serve_image::ServeImageError),
    /// A `${VAR}` could not be resolved when the value was needed.
    #[error("{what}: {source}")]
    Env {
        /// Where the reference is.
        what: String,
        /// Which variable.
        #[source]
        source: crate::spec::env::UnsetVar,
    },
    /// A container crashed, turned unhealthy or did not become healthy in time.
    #[error("{0}")]
    NotReady(String),
    /// The MLflow tracking server is unreachable or refused a call.
    #[error(transparent)]
    Mlflow(Box<mlflow_mirror::client::MlflowError>),
}

impl ApplyError {
    /// Short machine-readable reason for the status condition.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Validation(_) => "ValidationFailed",
            ApplyError::Csv(_) => "BadInput",
            ApplyError::Store(_) => "StoreError",
            ApplyError::Io { .. } => "InputMissing",
            ApplyError::Task(_) => "InternalError",
            ApplyError::TrainingSet(_) | ApplyError::Features(_) | ApplyError::Train(_) => {
                "TrainingFailed"
            }
            ApplyError::Choice(_) | ApplyError::Stage(_) => "PromotionFailed",
            ApplyError::Docker(_) | ApplyError::Image(_) => "DockerError",
            ApplyError::Env { .. } => "UnsetVariable",
            ApplyError::NotReady(_) => "NotReady",
            ApplyError::Mlflow(_) => "MlflowUnavailable",
        }
    }
}

/// Builds the desired state of every resource in `order`, given what was observed.
pub fn desire(
    set: &SpecSet,
    order: &[ResourceId],
    observed: &Observed,
) -> Result<DesiredState, Box<(ResourceId, ApplyError)>> {
    let mut resources: Vec<DesiredResource> = Vec::with_capacity(order.len());
    let mut index: HashMap<ResourceId, usize> = HashMap::with_capacity(order.len());
    let by_id: HashMap<&ResourceId, &Resource> = set.resources.iter().map(|r| (&r.id, r)).collect();
    for id in order {
        let Some(r) = by_id.get(id).copied() else {
            continue;
        };
        let upstream = Upstream {
            done: &resources,
            index: &index,
            observed,
        };
        let one = desire_one(r, set, upstream).map_err(|e| Box::new((id.clone(), e)))?;
        let spec_json = r.spec.canonical_json();
        let spec_hash = crate::hash::hash_parts([
            crate::hash::hash_json(&spec_json).as_str(),
            one.input_hash.as_str(),
        ]);
        index.insert(id.clone(), resources.len());
        resources.push(DesiredResource {
            id: id.clone(),
            spec_json,
            spec_hash,
            protect: one.protect,
            pool: one.pool,
            typed: one.typed,
        });
    }
    Ok(DesiredState { resources })
}

/// Reads the state store, the offline store and the online store.
pub async fn observe(
    state: &StateStore,
    offline: &Db,
    online: &crate::store::online::OnlineStore,
) -> Result<Observed, StoreError> {
    let registry = crate::store::registry::Registry::new(state.db.clone(), state.project.clone());
    let (records, tables, online, registry) = tokio::try_join!(
        state.load_all(),
        crate::store::offline::observe(offline),
        online.observe(),
        registry.observe()
    )?;
    let foreign_tables = crate::store::offline::foreign_tables(offline, &tables).await?;
    Ok(Observed {
        records,
        tables,
        foreign_tables,
        online,
        registry,
        docker: DockerView::NotObserved,
        docker_objects: None,
        swarm: crate::runtime::swarm::SwarmView::NotObserved,
    })
}

/// Whether a command must ask the container engine: a spec runs on it now, or a
/// recorded resource ran on it (so its container is pruned).
pub fn needs_engine(set: &SpecSet, observed: &Observed) -> bool {
    set.resources.iter().any(|r| uses_engine(&r.spec))
        || observed
            .records
            .values()
            .any(|rec| recorded_uses_engine(rec.id.kind, &rec.spec_json))
}

/// What [`desire_one`] found for one resource.
#[derive(Debug)]
pub struct DesiredOne {
    /// What the spec hash covers beyond the spec.
    pub input_hash: String,
    /// Whether its data is protected.
    pub protect: bool,
    /// Its pool.
    pub pool: Pool,
    /// The typed spec and inputs.
    pub typed: Typed,
}

/// Operations every kind may plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum CommonOp {
    /// Record the spec in the state store (no effect outside it).
    Record,
    /// Remove the resource from the state store.
    Forget,
}

impl From<CommonOp> for Operation {
    fn from(op: CommonOp) -> Self {
        Operation::Common(op)
    }
}

/// The operations of kinds that have none of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NoOp {}

/// The operations of `plan` that belong to kind `K`, in order.
pub fn ops_of<K: Member>(plan: &ResourcePlan) -> impl Iterator<Item = &K::Op> {
    plan.operations.iter().filter_map(K::op_of)
}
