//! A spec folder made ready to act on: specs loaded and validated, the graph
//! built, the stores opened. The CLI, tests and benchmarks share this path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

use crate::diag::SpecDiagnostic;
use crate::engine::{self, ApplyReport};
use crate::graph::DependencyGraph;
use crate::kinds::{self, ApplyContext, ApplyError, DesiredState, Observed, Operation};
use crate::plan::{self, Plan, PlanOptions};
use crate::progress::Progress;
use crate::runtime::containers::{self, SharedDocker};
use crate::shutdown::Stop;
use crate::spec::{ResourceId, SpecSet};
use crate::store::lock::ApplyLock;
use crate::store::online::OnlineStore;
use crate::store::state::{Condition, ResourceRecord, StateStore};
use crate::store::{Db, StoreError};

/// The most rounds one apply runs: a round's outcome may change the next
/// round's plan (monitor → retrain → promote → new reference), and a chain
/// of such changes is short; a longer one means two resources keep changing
/// each other, and stopping says so rather than looping.
pub const MAX_ROUNDS: usize = 6;

/// The embedded default state store, relative to the project spec's folder.
pub const DEFAULT_STATE_URL: &str = "sqlite://.reconcile/state.db";

/// Store URLs given on the command line or in the environment; they win over the specs.
#[derive(Debug, Clone, Default)]
pub struct StoreOverrides {
    /// State store URL.
    pub state: Option<String>,
    /// Offline store URL (defaults to the state store).
    pub offline: Option<String>,
    /// Online store URL (defaults to the offline store).
    pub online: Option<String>,
    /// The folder relative SQLite paths of the Project spec resolve against
    /// (default: the Project spec's folder). GitOps checks each commit out
    /// into a folder of its own, and keeps the stores in one place.
    pub base: Option<PathBuf>,
}

/// Errors of the whole pipeline, for the CLI to print.
#[derive(Debug, Error)]
pub enum WorkspaceError {
    /// The specs have problems.
    #[error("{} problem(s) in the specs", .0.len())]
    Specs(Vec<SpecDiagnostic>),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Inputs could not be read.
    #[error("{}: {}", .0.0, .0.1)]
    Inputs(Box<(ResourceId, ApplyError)>),
    /// A Service the stores run on did not converge, so the stores cannot open.
    #[error("the stores' own services did not converge:\n{}", .0.join("\n"))]
    StoreServices(Vec<String>),
    /// The plan holds conflicts: nothing was applied.
    #[error("the plan has conflicts; nothing was applied:\n{}", .0.join("\n"))]
    Conflicts(Vec<String>),
    /// The Docker engine failed outside any one resource.
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    /// A `--target` names no resource of the specs.
    #[error("--target `{target}`: {why}")]
    UnknownTarget {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Loaded specs and their graph.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The specs.
    pub set: SpecSet,
    /// Their dependency graph.
    pub graph: DependencyGraph,
    /// The Docker engine, connected when something needs it.
    pub docker: SharedDocker,
    /// Outcomes of the stores' own Services, applied before the state store
    /// existed; `apply` records them once it is open.
    bootstrapped: Arc<Mutex<Vec<ResourceRecord>>>,
    /// Interrupts an apply or destroy in flight (never, unless given one).
    stop: Stop,
    /// What `--target` selected: the targets and everything they depend on;
    /// `None`: the whole project.
    targets: Option<HashSet<ResourceId>>,
    /// `--no-containers`: another tool (docker compose) runs the containers;
    /// nothing that runs on the engine is planned, started or removed.
    no_containers: bool,
    /// The part of the graph plans run over (the targets, less the resources
    /// that run on the engine under `--no-containers`); `None`: all of it.
    selection: Option<DependencyGraph>,
    /// What the point-in-time join may hold of one view before it works in
    /// key-ordered chunks (`--memory-budget`).
    memory_budget: crate::features::MemoryBudget,
}

/// Open stores of a workspace.
#[derive(Debug, Clone)]
pub struct Stores {
    /// The state store.
    pub state: StateStore,
    /// The offline store (may share the state store's pool).
    pub offline: Db,
    /// The online store (may share the offline store's pool).
    pub online: crate::store::online::OnlineStore,
}

impl Stores {
    /// The model registry, which lives in the state store.
    pub fn registry(&self) -> crate::store::registry::Registry {
        crate::store::registry::Registry::new(self.state.db.clone(), self.state.project.clone())
    }
}

impl Workspace {
    /// Loads and validates every spec under `dir`.
    pub fn load(dir: &Path) -> Result<Workspace, WorkspaceError> {
        Self::load_ignoring(dir, &[])
    }

    /// Loads for a command that only reads the stores and starts nothing
    /// (`status`, `models`): a Service's unset `${VAR}` is no problem there,
    /// since no secret is resolved. A store URL's own unset variable still
    /// fails, when that store is opened.
    pub fn load_without_secrets(dir: &Path) -> Result<Workspace, WorkspaceError> {
        Self::load_ignoring(dir, &[crate::diag::DiagCode::UnsetEnv])
    }

    fn load_ignoring(
        dir: &Path,
        ignore: &[crate::diag::DiagCode],
    ) -> Result<Workspace, WorkspaceError> {
        let set = crate::spec::validate::load_and_validate_ignoring(dir, ignore)
            .map_err(WorkspaceError::Specs)?;
        let graph = DependencyGraph::build(&set).map_err(WorkspaceError::Specs)?;
        Ok(Workspace {
            set,
            graph,
            docker: SharedDocker::default(),
            bootstrapped: Arc::default(),
            stop: Stop::new(),
            targets: None,
            no_containers: false,
            selection: None,
            memory_budget: crate::features::MemoryBudget::DEFAULT,
        })
    }

    /// The same workspace, planning and applying only `targets` (`Kind/name`)
    /// and everything they depend on, as terraform's `-target`: nothing else
    /// is created, changed or removed. No targets: the whole project.
    pub fn with_targets(mut self, targets: &[String]) -> Result<Workspace, WorkspaceError> {
        if targets.is_empty() {
            return Ok(self);
        }
        let mut keep: HashSet<ResourceId> = HashSet::new();
        let mut todo = Vec::new();
        for t in targets {
            todo.push(self.resolve_target(t)?);
        }
        while let Some(id) = todo.pop() {
            if keep.insert(id.clone()) {
                todo.extend(self.graph.dependencies(&id));
            }
        }
        self.targets = Some(keep);
        self.select();
        Ok(self)
    }

    /// The same workspace, leaving every container to another tool
    /// (`--no-containers`, for the project's containers run by docker
    /// compose): Services and docker Endpoints are neither planned, started,
    /// replaced nor removed, the engine is not asked, no network or volume is
    /// created, and no store's Service is started. The rest converges as usual.
    pub fn without_containers(mut self) -> Workspace {
        self.no_containers = true;
        self.select();
        self
    }

    /// Recomputes the part of the graph plans run over.
    fn select(&mut self) {
        if self.targets.is_none() && !self.no_containers {
            self.selection = None;
            return;
        }
        let engine = self.engine_resources();
        let keep: Vec<ResourceId> = self
            .graph
            .order
            .iter()
            .filter(|id| self.targets.as_ref().is_none_or(|t| t.contains(*id)))
            .filter(|id| !(self.no_containers && engine.contains(*id)))
            .cloned()
            .collect();
        self.selection = Some(self.graph.restrict(&keep));
    }

    /// The resources of the specs that run on the container engine.
    fn engine_resources(&self) -> HashSet<ResourceId> {
        self.set
            .resources
            .iter()
            .filter(|r| kinds::uses_engine(&r.spec))
            .map(|r| r.id.clone())
            .collect()
    }

    /// The resource a `--target` names: `Kind/name`.
    fn resolve_target(&self, target: &str) -> Result<ResourceId, WorkspaceError> {
        let unknown = |why: String| WorkspaceError::UnknownTarget {
            target: target.to_string(),
            why,
        };
        let (kind, name) = target
            .split_once('/')
            .ok_or_else(|| unknown("write Kind/name, e.g. Table/users".into()))?;
        let kind = crate::spec::Kind::parse(kind).ok_or_else(|| {
            let kinds: Vec<&str> = crate::spec::Kind::ALL.iter().map(|k| k.as_str()).collect();
            unknown(format!("`{kind}` is not a kind ({})", kinds.join(", ")))
        })?;
        let id = ResourceId::new(kind, name);
        if self.graph.index.contains_key(&id) {
            Ok(id)
        } else {
            Err(unknown(format!("no {id} in the specs")))
        }
    }

    /// The graph plans and applies run over: the `--target` selection, or all.
    fn active_graph(&self) -> &DependencyGraph {
        self.selection.as_ref().unwrap_or(&self.graph)
    }

    /// The same workspace, interrupted when `stop` is cancelled: running work
    /// is rolled back and no new work or round starts.
    pub fn with_stop(mut self, stop: Stop) -> Workspace {
        self.stop = stop;
        self
    }

    /// The same workspace, its point-in-time joins (training sets) held to
    /// `budget` per view: a larger view is joined in key-ordered chunks.
    pub fn with_memory_budget(mut self, budget: crate::features::MemoryBudget) -> Workspace {
        self.memory_budget = budget;
        self
    }

    /// The token that interrupts this workspace's applies.
    pub fn stop(&self) -> &Stop {
        &self.stop
    }

    /// Observes the stores, and the engine when containers are involved.
    async fn observe(&self, stores: &Stores) -> Result<Observed, WorkspaceError> {
        let mut observed = kinds::observe(&stores.state, &stores.offline, &stores.online).await?;
        if !self.no_containers && kinds::needs_engine(&self.set, &observed) {
            let project = &self.set.project.name.value;
            (observed.docker, observed.docker_objects, observed.swarm) = tokio::join!(
                self.docker.observe(project),
                self.docker.observe_objects(project),
                self.docker.observe_swarm(project)
            );
        }
        Ok(observed)
    }

    /// Starts the Services the stores run on (and the Services they depend
    /// on), so the stores can be opened; a no-op when no store URL the command
    /// opens names a Service — `overrides` (`--state`, `RECONCILE_STATE`, …)
    /// win over the Project spec, so a store moved elsewhere starts nothing —
    /// and under `--no-containers`. They go through the same planner and
    /// engine as every resource. No state store exists yet (it lives there),
    /// so the engine records into a staging state store in a temporary folder,
    /// and `apply` copies those records into the real one once it is open.
    pub async fn start_store_services(
        &self,
        overrides: &StoreOverrides,
    ) -> Result<Vec<String>, WorkspaceError> {
        if self.no_containers {
            return Ok(Vec::new());
        }
        let r = self.resolve_stores(overrides);
        let urls = [r.state.0, r.offline.0, r.online.0];
        let order = containers::store_hosts(&self.set, &self.graph, &urls);
        if order.is_empty() {
            return Ok(Vec::new());
        }
        let project = &self.set.project.name.value;
        let (docker, docker_objects, swarm) = tokio::join!(
            self.docker.observe(project),
            self.docker.observe_objects(project),
            self.docker.observe_swarm(project)
        );
        let observed = Observed {
            docker,
            docker_objects,
            swarm,
            ..Observed::default()
        };
        let desired =
            kinds::desire(&self.set, &order, &observed).map_err(WorkspaceError::Inputs)?;
        // Only these resources: nothing else is observed, so nothing is removed.
        let plan = Plan {
            resources: desired
                .resources
                .iter()
                .map(|d| kinds::diff(d, &observed, &PlanOptions::default()))
                .collect(),
            objects: containers::plan_objects(&desired, observed.docker_objects.as_ref()),
        };
        if !plan.has_changes() {
            return Ok(Vec::new());
        }
        let staging = StagingState::open(project).await?;
        let ctx = Arc::new(ApplyContext {
            state: staging.state.clone(),
            offline: staging.state.db.clone(),
            online: OnlineStore::Sql(staging.state.db.clone()),
            registry: crate::store::registry::Registry::new(
                staging.state.db.clone(),
                project.clone(),
            ),
            root: self.set.root.clone(),
            docker: self.docker.clone(),
            memory_budget: self.memory_budget,
        });
        let graph = self.graph.restrict(&order);
        let report = engine::execute(
            ctx,
            &desired,
            &observed,
            &graph,
            &plan,
            1,
            &Progress::new(true),
            &self.stop,
        )
        .await;
        let records = match &report {
            Ok(_) => staging.state.load_all().await,
            Err(_) => Ok(Default::default()),
        };
        staging.close().await;
        let (report, records) = (report?, records?);
        if !report.success() {
            let mut failures: Vec<String> = report
                .outcomes
                .iter()
                .filter(|o| o.condition != crate::store::state::Condition::Ready)
                .map(|o| format!("{}: {}", o.id, o.message))
                .collect();
            failures.extend(report.object_failures.iter().cloned());
            return Err(WorkspaceError::StoreServices(failures));
        }
        if let Ok(mut pending) = self.bootstrapped.lock() {
            pending.extend(records.into_values());
        }
        Ok(report
            .outcomes
            .iter()
            .map(|o| format!("{}: {}", o.id, o.message))
            .collect())
    }

    /// A store URL as this process must use it: a URL naming a Service is
    /// pointed at the service's published port (or its network address) once
    /// the service is ready; other URLs are returned as they are.
    async fn reach(&self, url: String) -> Result<String, StoreError> {
        if self.no_containers
            && std::env::var_os(crate::container::IN_NETWORK_ENV).is_none()
            && let Some(on) = crate::container::store_service(&url, &self.set)
        {
            return Err(StoreError::OnService(format!(
                "the store on Service/{}: with --no-containers another tool runs the \
                 containers, so reconcile neither starts nor looks for it; give the \
                 address that tool publishes it at (--state, --offline, --online, or \
                 RECONCILE_STATE, RECONCILE_OFFLINE, RECONCILE_ONLINE)",
                on.service
            )));
        }
        containers::reach_store(&self.set, &self.docker, url).await
    }

    /// The store URLs a command opens, each with the folder a relative SQLite
    /// path resolves against: overrides first, then the Project spec, then
    /// the default. The one precedence both opening the stores and starting
    /// their Services follow.
    fn resolve_stores(&self, overrides: &StoreOverrides) -> ResolvedStores {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let p = &self.set.project;
        let state = self.state_url(overrides);
        let offline = match (&overrides.offline, &overrides.state, &p.offline) {
            (Some(u), _, _) => (u.clone(), cwd.clone()),
            (None, Some(_), _) | (None, None, None) => state.clone(),
            (None, None, Some(u)) => (u.value.clone(), self.store_base(overrides)),
        };
        let overridden = overrides.state.is_some() || overrides.offline.is_some();
        let (online, online_shared) = match (&overrides.online, overridden, &p.online) {
            (Some(u), _, _) => ((u.clone(), cwd), false),
            (None, false, Some(u)) => ((u.value.clone(), self.store_base(overrides)), false),
            _ => (offline.clone(), true),
        };
        ResolvedStores {
            state,
            offline,
            online,
            online_shared,
        }
    }

    /// Opens the stores: overrides first, then the Project spec, then the default.
    pub async fn open_stores(&self, overrides: &StoreOverrides) -> Result<Stores, StoreError> {
        let r = self.resolve_stores(overrides);
        let ((state_url, state_base), (offline_url, offline_base)) = (r.state, r.offline);
        let state_url = self.reach(state_url).await?;
        let offline_url = self.reach(offline_url).await?;
        let state_db = Db::open(&state_url, &state_base).await?;
        let offline = if offline_url == state_url && offline_base == state_base {
            state_db.clone()
        } else {
            Db::open(&offline_url, &offline_base).await?
        };
        let online = if r.online_shared {
            OnlineStore::Sql(offline.clone())
        } else {
            let (url, base) = r.online;
            OnlineStore::open(&self.reach(url).await?, &base).await?
        };
        Ok(Stores {
            state: StateStore::new(state_db, self.set.project.name.value.clone()),
            offline,
            online,
        })
    }

    /// The folder the Project spec's relative SQLite paths resolve against.
    fn store_base(&self, overrides: &StoreOverrides) -> PathBuf {
        overrides
            .base
            .clone()
            .unwrap_or_else(|| self.set.project_dir.clone())
    }

    /// The state store's URL and the folder a relative SQLite path resolves against.
    fn state_url(&self, overrides: &StoreOverrides) -> (String, PathBuf) {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        match (&overrides.state, &self.set.project.state) {
            (Some(u), _) => (u.clone(), cwd),
            (None, Some(u)) => (u.value.clone(), self.store_base(overrides)),
            (None, None) => (DEFAULT_STATE_URL.to_string(), self.store_base(overrides)),
        }
    }

    /// Opens the state store alone (registry commands need nothing else).
    pub async fn open_state(&self, overrides: &StoreOverrides) -> Result<StateStore, StoreError> {
        let (url, base) = self.state_url(overrides);
        let url = self.reach(url).await?;
        Ok(StateStore::new(
            Db::open(&url, &base).await?,
            self.set.project.name.value.clone(),
        ))
    }

    /// Hashes inputs, observes the stores and computes the plan.
    pub async fn plan(
        &self,
        stores: &Stores,
        opts: &PlanOptions,
    ) -> Result<(DesiredState, Observed, Plan), WorkspaceError> {
        let observed = self.observe(stores).await?;
        let graph = self.active_graph();
        let desired =
            kinds::desire(&self.set, &graph.order, &observed).map_err(WorkspaceError::Inputs)?;
        let mut plan = plan::diff(&desired, &observed, opts);
        if self.targets.is_some() {
            // A targeted plan touches nothing outside the selection: no
            // removal of what merely is not selected.
            plan.resources.retain(|r| graph.index.contains_key(&r.id));
            plan.objects
                .retain(|o| o.describe().0 == crate::plan::Action::Create);
        }
        if self.no_containers {
            // Containers are another tool's: neither those the specs name nor
            // those an earlier apply recorded are created or removed.
            let engine = self.engine_resources();
            plan.resources.retain(|r| {
                !engine.contains(&r.id)
                    && !observed
                        .records
                        .get(&r.id)
                        .is_some_and(|rec| kinds::recorded_uses_engine(rec.id.kind, &rec.spec_json))
            });
            plan.objects.clear();
        }
        Ok((desired, observed, plan))
    }

    /// Takes the apply lock, plans under it and converges. What one round
    /// changes can change what others desire (a monitor's verdict moves the
    /// runs it retrains; a new Production version is a monitor's new
    /// reference), so apply plans again after each round that converged and
    /// runs what the new plan holds, as a controller requeues, until the plan
    /// is empty or [`MAX_ROUNDS`] ran. `on_plan` sees each round's plan (from 1).
    pub async fn apply(
        &self,
        stores: &Stores,
        opts: &PlanOptions,
        parallelism: usize,
        lock_timeout: Duration,
        progress: &Progress,
        mut on_plan: impl FnMut(usize, &Plan),
    ) -> Result<(Plan, ApplyReport), WorkspaceError> {
        let lock =
            ApplyLock::acquire(&stores.state.db, &stores.state.project, lock_timeout).await?;
        let result = async {
            let pending: Vec<ResourceRecord> = self
                .bootstrapped
                .lock()
                .map(|mut p| std::mem::take(&mut *p))
                .unwrap_or_default();
            for rec in &pending {
                stores.state.record(rec, "create").await?;
            }
            let ctx = Arc::new(ApplyContext {
                state: stores.state.clone(),
                offline: stores.offline.clone(),
                online: stores.online.clone(),
                registry: stores.registry(),
                root: self.set.root.clone(),
                docker: self.docker.clone(),
                memory_budget: self.memory_budget,
            });
            let mut first: Option<Plan> = None;
            let mut total = ApplyReport::default();
            // Resources that failed or were blocked in an earlier round, and
            // everything depending on them: not tried again in this apply.
            // The rest goes on, so a side effect that fails (a mirror, say)
            // does not hold back a retrain a monitor asked for.
            let mut settled: HashSet<ResourceId> = HashSet::new();
            // Likewise a shared object (the project network) that failed: the
            // containers needing it failed with it.
            let mut objects_failed = false;
            for round in 1..=MAX_ROUNDS {
                let (desired, observed, mut plan) = self.plan(stores, opts).await?;
                plan.resources.retain(|r| !settled.contains(&r.id));
                if objects_failed {
                    plan.objects.clear();
                }
                if round == 1 || plan.has_changes() {
                    on_plan(round, &plan);
                }
                if !plan.has_changes() {
                    first.get_or_insert(plan);
                    break;
                }
                let conflicts: Vec<String> = plan
                    .conflicts()
                    .iter()
                    .map(|p| format!("{}: {}", p.id, p.reasons.join("; ")))
                    .collect();
                if !conflicts.is_empty() {
                    return Err(WorkspaceError::Conflicts(conflicts));
                }
                let report = engine::execute(
                    ctx.clone(),
                    &desired,
                    &observed,
                    self.active_graph(),
                    &plan,
                    parallelism,
                    progress,
                    &self.stop,
                )
                .await?;
                first.get_or_insert(plan);
                total.rounds = round;
                objects_failed |= !report.object_failures.is_empty();
                let mut todo: Vec<ResourceId> = report
                    .outcomes
                    .iter()
                    .filter(|o| matches!(o.condition, Condition::Failed | Condition::Blocked))
                    .map(|o| o.id.clone())
                    .collect();
                total.merge(report);
                if self.stop.is_cancelled() {
                    break;
                }
                while let Some(id) = todo.pop() {
                    if settled.insert(id.clone()) {
                        todo.extend(self.active_graph().dependents(&id));
                    }
                }
            }
            Ok((first.unwrap_or_default(), total))
        }
        .await;
        lock.release().await;
        result
    }

    /// What [`Workspace::destroy`] would remove, without removing anything
    /// (`destroy` without `--yes`): reads the stores, takes no lock.
    pub async fn destroy_plan(&self, stores: &Stores, purge: bool) -> Result<Plan, WorkspaceError> {
        Ok(self.destroy_plan_observed(stores, purge).await?.0)
    }

    async fn destroy_plan_observed(
        &self,
        stores: &Stores,
        purge: bool,
    ) -> Result<(Plan, Observed), WorkspaceError> {
        let observed = self.observe(stores).await?;
        let opts = PlanOptions { prune_data: true };
        // Everything recorded, and whatever a kind finds to remove even
        // without a record (a container, a table's data).
        let resources = self
            .graph
            .order
            .iter()
            .rev()
            .map(|id| kinds::diff_removed(id, &observed, &opts))
            .filter(|p| {
                observed.records.contains_key(&p.id)
                    || p.operations
                        .iter()
                        .any(|op| !matches!(op, Operation::Common(_)))
            })
            .collect();
        let plan = Plan {
            resources,
            objects: containers::plan_teardown(
                &self.set.project.name.value,
                observed.docker_objects.as_ref(),
                purge,
            ),
        };
        Ok((plan, observed))
    }

    /// Removes every resource the specs name (dependents first), dropping table
    /// data and containers; protected resources are kept and reported. Named
    /// volumes survive unless `purge`.
    pub async fn destroy(
        &self,
        stores: &Stores,
        lock_timeout: Duration,
        purge: bool,
        progress: &Progress,
    ) -> Result<(Plan, ApplyReport), WorkspaceError> {
        let lock =
            ApplyLock::acquire(&stores.state.db, &stores.state.project, lock_timeout).await?;
        let result = async {
            let (plan, observed) = self.destroy_plan_observed(stores, purge).await?;
            let ctx = Arc::new(ApplyContext {
                state: stores.state.clone(),
                offline: stores.offline.clone(),
                online: stores.online.clone(),
                registry: stores.registry(),
                root: self.set.root.clone(),
                docker: self.docker.clone(),
                memory_budget: self.memory_budget,
            });
            let report = engine::execute(
                ctx,
                &DesiredState::default(),
                &observed,
                &self.graph,
                &plan,
                1,
                progress,
                &self.stop,
            )
            .await?;
            Ok((plan, report))
        }
        .await;
        lock.release().await;
        result
    }
}

/// The store URLs a command opens, with the folders relative SQLite paths
/// resolve against.
struct ResolvedStores {
    state: (String, PathBuf),
    offline: (String, PathBuf),
    online: (String, PathBuf),
    /// The online store is the offline database itself (no URL of its own).
    online_shared: bool,
}

/// A state store in a temporary folder, for the work done before the real one
/// can be opened; removed when closed.
struct StagingState {
    state: StateStore,
    dir: PathBuf,
}

impl StagingState {
    async fn open(project: &str) -> Result<StagingState, StoreError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("reconcile-staging-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        let db = Db::open("sqlite://staging.db", &dir).await?;
        Ok(StagingState {
            state: StateStore::new(db, project),
            dir,
        })
    }

    async fn close(self) {
        self.state.db.close().await;
        // A leftover folder in the temp dir is harmless; nothing to report.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
