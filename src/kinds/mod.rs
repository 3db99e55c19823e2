//! One module per kind, each implementing [`Reconciler`]: gather the desired
//! inputs, diff them against what was observed (pure), and apply a plan.
//!
//! Adding a kind means: a spec type in `spec::kinds`, a reconciler here, and a
//! line in each dispatch `match` below. Loading, validation, graph, planner and
//! engine stay as they are.

pub mod feature_view;
pub mod model;
pub mod record;
pub mod service;
pub mod table;
pub mod training_run;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

use crate::plan::{PlanOptions, ResourcePlan};
use crate::spec::{Kind, Resource, ResourceId, Spec, SpecSet};
use crate::store::offline::StoredTable;
use crate::store::state::{ResourceRecord, StateStore};
use crate::store::{Db, StoreError};

/// What a resource should be: its spec plus the hashes of its inputs.
#[derive(Debug, Clone)]
pub struct DesiredResource {
    /// Kind and name.
    pub id: ResourceId,
    /// The spec as written.
    pub spec: Spec,
    /// Canonical spec JSON (recorded in the state store).
    pub spec_json: serde_json::Value,
    /// Hash of the spec and its inputs.
    pub spec_hash: String,
    /// Whether its data is protected from deletion.
    pub protect: bool,
    /// Kind-specific inputs.
    pub inputs: Inputs,
}

/// Kind-specific desired inputs.
#[derive(Debug, Clone)]
pub enum Inputs {
    /// Nothing beyond the spec.
    None,
    /// A table's layout and snapshot files.
    Table(table::TableInputs),
    /// A feature view resolved against its table, with the table's snapshots.
    FeatureView(feature_view::ViewInputs),
    /// A training run's resolved features, label and source data hash.
    TrainingRun(training_run::RunInputs),
    /// The runs feeding a model.
    Model(model::ModelInputs),
    /// A container: a Service, or an Endpoint with `runtime: docker`.
    Service(Box<service::ServiceInputs>),
}

/// What was desired of the resources before this one (its dependencies come
/// first in topological order), so a kind can build on their inputs instead of
/// reading and hashing files again.
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    done: &'a [DesiredResource],
    index: &'a HashMap<ResourceId, usize>,
}

impl<'a> Upstream<'a> {
    /// The desired state of an earlier resource.
    pub fn get(&self, id: &ResourceId) -> Option<&'a DesiredResource> {
        self.index.get(id).map(|&i| &self.done[i])
    }
}

/// The desired state of every resource, in execution order.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Resources in topological order.
    pub resources: Vec<DesiredResource>,
}

/// A snapshot of the world: one query per store.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// What the state store recorded.
    pub records: HashMap<ResourceId, ResourceRecord>,
    /// What the offline store holds.
    pub tables: HashMap<String, StoredTable>,
    /// What the online store holds, per view.
    pub online: HashMap<String, crate::store::online::OnlineView>,
    /// Every registered model version.
    pub registry: crate::store::registry::RegistryState,
    /// The project's containers (observed only when something runs in one).
    pub docker: service::DockerView,
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
    pub docker: service::SharedDocker,
}

/// What a successful apply of one resource reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// One line for the user.
    pub message: String,
    /// Kind-specific outputs kept in the state store.
    pub outputs: serde_json::Value,
}

/// Why applying a resource failed.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// Snapshots failed their expectations; nothing of them was stored.
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
        source: std::io::Error,
    },
    /// A background task died.
    #[error("internal task failed: {0}")]
    Task(String),
    /// Building a training set or training failed.
    #[error("{0}")]
    Training(String),
    /// The registry refused a stage change.
    #[error(transparent)]
    Stage(#[from] crate::store::registry::StageError),
    /// The Docker engine is unreachable or refused a request.
    #[error("{0}")]
    Docker(String),
    /// A container crashed, turned unhealthy or did not become healthy in time.
    #[error("{0}")]
    NotReady(String),
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
            ApplyError::Training(_) => "TrainingFailed",
            ApplyError::Stage(_) => "PromotionFailed",
            ApplyError::Docker(_) => "DockerError",
            ApplyError::NotReady(_) => "NotReady",
        }
    }
}

/// The contract of a kind. Static dispatch: each kind is a unit type.
pub trait Reconciler {
    /// Reads and hashes the resource's inputs (read-only I/O, before any action).
    fn desire(r: &Resource, set: &SpecSet, upstream: Upstream<'_>) -> Result<Inputs, ApplyError>;
    /// Desired vs observed → plan. Pure.
    fn diff(d: &DesiredResource, observed: &Observed, opts: &PlanOptions) -> ResourcePlan;
    /// Carries out a plan.
    fn apply(
        ctx: &ApplyContext,
        d: &DesiredResource,
        plan: &ResourcePlan,
    ) -> impl std::future::Future<Output = Result<Applied, ApplyError>> + Send;
}

/// Builds the desired state of every resource in `order`.
pub fn desire(
    set: &SpecSet,
    order: &[ResourceId],
) -> Result<Desired, Box<(ResourceId, ApplyError)>> {
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
        };
        let inputs = match r.id.kind {
            _ if service::service_of(r, set).is_some() => service::desire(r, set, upstream),
            Kind::Project | Kind::Service | Kind::Entity | Kind::Endpoint => {
                record::RecordOnly::desire(r, set, upstream)
            }
            Kind::Table => table::TableReconciler::desire(r, set, upstream),
            Kind::FeatureView => feature_view::FeatureViewReconciler::desire(r, set, upstream),
            Kind::TrainingRun => training_run::TrainingRunReconciler::desire(r, set, upstream),
            Kind::Model => model::ModelReconciler::desire(r, set, upstream),
        }
        .map_err(|e| Box::new((id.clone(), e)))?;
        let spec_json = r.spec.canonical_json();
        let input_hash = match &inputs {
            Inputs::None => String::new(),
            Inputs::Table(t) => t.input_hash(),
            Inputs::FeatureView(v) => v.source_hash(None),
            Inputs::TrainingRun(t) => t.data_hash.clone(),
            Inputs::Model(m) => m.runs_hash(),
            Inputs::Service(s) => s.input_hash(),
        };
        let spec_hash = crate::hash::hash_parts([
            crate::hash::hash_json(&spec_json).as_str(),
            input_hash.as_str(),
        ]);
        let protect = matches!(&r.spec, Spec::Table(t) if t.protect);
        index.insert(id.clone(), resources.len());
        resources.push(DesiredResource {
            id: id.clone(),
            spec: r.spec.clone(),
            spec_json,
            spec_hash,
            protect,
            inputs,
        });
    }
    Ok(Desired { resources })
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
    Ok(Observed {
        records,
        tables,
        online,
        registry,
        docker: service::DockerView::NotObserved,
    })
}

/// Per-kind diff.
pub fn diff(d: &DesiredResource, observed: &Observed, opts: &PlanOptions) -> ResourcePlan {
    if matches!(d.inputs, Inputs::Service(_)) {
        return service::diff(d, observed);
    }
    match d.id.kind {
        Kind::Project | Kind::Service | Kind::Entity | Kind::Endpoint => {
            record::RecordOnly::diff(d, observed, opts)
        }
        Kind::Table => table::TableReconciler::diff(d, observed, opts),
        Kind::FeatureView => feature_view::FeatureViewReconciler::diff(d, observed, opts),
        Kind::TrainingRun => training_run::TrainingRunReconciler::diff(d, observed, opts),
        Kind::Model => model::ModelReconciler::diff(d, observed, opts),
    }
}

/// The plan for a resource the specs no longer name.
pub fn diff_removed(id: &ResourceId, observed: &Observed, opts: &PlanOptions) -> ResourcePlan {
    if let Some(plan) = service::diff_removed(id, observed) {
        return plan;
    }
    match id.kind {
        Kind::Project
        | Kind::Service
        | Kind::Entity
        | Kind::TrainingRun
        | Kind::Model
        | Kind::Endpoint => record::diff_removed(id),
        Kind::Table => table::diff_removed(id, observed, opts),
        Kind::FeatureView => feature_view::diff_removed(id, observed),
    }
}

/// Per-kind apply.
pub async fn apply(
    ctx: &ApplyContext,
    d: &DesiredResource,
    plan: &ResourcePlan,
) -> Result<Applied, ApplyError> {
    if matches!(d.inputs, Inputs::Service(_)) {
        return service::apply(&ctx.docker, d, plan).await;
    }
    match d.id.kind {
        Kind::Project | Kind::Service | Kind::Entity | Kind::Endpoint => {
            record::RecordOnly::apply(ctx, d, plan).await
        }
        Kind::Table => table::TableReconciler::apply(ctx, d, plan).await,
        Kind::FeatureView => feature_view::FeatureViewReconciler::apply(ctx, d, plan).await,
        Kind::TrainingRun => training_run::TrainingRunReconciler::apply(ctx, d, plan).await,
        Kind::Model => model::ModelReconciler::apply(ctx, d, plan).await,
    }
}

/// Applies the plan of a resource that is no longer in the specs.
pub async fn apply_removed(ctx: &ApplyContext, plan: &ResourcePlan) -> Result<Applied, ApplyError> {
    if plan
        .operations
        .iter()
        .any(|op| matches!(op, crate::plan::Operation::RemoveContainer { .. }))
    {
        return service::apply_removed(&ctx.docker, plan).await;
    }
    match plan.id.kind {
        // Registered versions outlive the specs that produced them: a registry
        // keeps history, and a removed run or model is only forgotten.
        Kind::Project
        | Kind::Service
        | Kind::Entity
        | Kind::TrainingRun
        | Kind::Model
        | Kind::Endpoint => Ok(Applied {
            message: "removed from state".into(),
            outputs: serde_json::Value::Null,
        }),
        Kind::Table => table::apply_removed(ctx, plan).await,
        Kind::FeatureView => feature_view::apply_removed(ctx, plan).await,
    }
}
