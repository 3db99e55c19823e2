//! Containers as one runtime: what a container should be ([`DesiredContainer`]),
//! what the engine shows ([`DockerView`], one labelled list per command), the
//! pure plan between the two ([`plan`]) and carrying out its [`ContainerOp`]s
//! through [`crate::docker::Engine`]: image, network, volumes, container,
//! readiness.
//!
//! Kinds that run containers (Service, and Endpoint with `runtime: docker`) call
//! these with their own type, so the operations land in the plan as theirs. A
//! cluster runtime would sit beside this module behind [`ContainerRuntime`],
//! leaving the planner untouched.
//!
//! A container is ready when its health check says `healthy`, or, without one,
//! when it has stayed up for [`SETTLE`]. A dependent is started only after its
//! service dependencies are ready; a readiness failure reports the last health
//! check output and the container's last log lines.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Mutex, OnceCell};

use crate::docker::{
    ContainerConfig, ContainerObs, DockerError, Engine, HealthConfigSpec, LABEL_HASH,
    LABEL_PROJECT, LABEL_RESOURCE, MountConfig, MountFrom, PortConfig,
};
use crate::kinds::service::Service;
use crate::kinds::service::spec::{
    HealthTiming, MountSource, ServiceSpec, parse_memory, parse_port, parse_volume,
};
use crate::kinds::{Applied, ApplyError, CommonOp, Desired, Member, Observed, Upstream, ops_of};
use crate::plan::{Action, ResourcePlan};
use crate::spec::{Kind, Resource, ResourceId, SpecSet};
use crate::store::state::Condition;

/// What a container runtime does for the kinds that run containers: observe the
/// project's workloads in one call, and carry out a resource's operations.
pub trait ContainerRuntime: Send + Sync {
    /// The project's workloads, by resource label.
    fn observe(&self, project: &str) -> impl Future<Output = DockerView> + Send;
}

impl ContainerRuntime for DockerRuntime {
    fn observe(&self, project: &str) -> impl Future<Output = DockerView> + Send {
        DockerRuntime::observe(self, project)
    }
}

/// The project-wide objects containers share, as the engine shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectObjects {
    /// Networks labelled with the project.
    pub networks: HashSet<String>,
    /// Named volumes labelled with the project.
    pub volumes: HashSet<String>,
    /// Swarm secrets labelled with the project (empty without a swarm).
    pub secrets: HashSet<String>,
}

/// Operations on the project-wide objects containers share: run before any
/// resource when creating, after every resource when tearing down (as compose
/// plans networks and volumes apart from services).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ObjectOp {
    /// Create the project network.
    CreateNetwork {
        /// Its name.
        name: String,
    },
    /// Create the project network as an attachable overlay (a workload runs
    /// on the swarm).
    CreateOverlayNetwork {
        /// Its name.
        name: String,
    },
    /// Create a named volume.
    CreateVolume {
        /// Its engine name.
        name: String,
    },
    /// Remove the project network.
    RemoveNetwork {
        /// Its name.
        name: String,
    },
    /// Remove the images built for the project's services.
    RemoveBuiltImages,
    /// Remove a named volume and its data.
    RemoveVolume {
        /// Its engine name.
        name: String,
    },
    /// Remove the project's swarm secrets no service uses any more.
    RemoveSecrets {
        /// How many.
        count: usize,
    },
}

impl ObjectOp {
    /// The line `plan` prints for it.
    pub fn describe(&self) -> (crate::plan::Action, String) {
        use crate::plan::Action;
        match self {
            ObjectOp::CreateNetwork { name } => (Action::Create, format!("network {name}")),
            ObjectOp::CreateOverlayNetwork { name } => {
                (Action::Create, format!("overlay network {name}"))
            }
            ObjectOp::RemoveSecrets { count } => (
                Action::Delete,
                format!("{count} swarm secret(s) of the project"),
            ),
            ObjectOp::CreateVolume { name } => (Action::Create, format!("volume {name}")),
            ObjectOp::RemoveNetwork { name } => (Action::Delete, format!("network {name}")),
            ObjectOp::RemoveBuiltImages => (Action::Delete, "images built for the project".into()),
            ObjectOp::RemoveVolume { name } => {
                (Action::Delete, format!("volume {name} (its data is lost)"))
            }
        }
    }
}

/// The networks and volumes the desired containers need and the engine lacks.
/// Pure. With no view of the engine, everything needed is planned.
pub fn plan_objects(
    desired: &crate::kinds::DesiredState,
    objects: Option<&ProjectObjects>,
) -> Vec<ObjectOp> {
    let containers: Vec<&DesiredContainer> = desired
        .resources
        .iter()
        .filter_map(|d| crate::kinds::container_of(&d.typed))
        .collect();
    let Some(first) = containers.first() else {
        return Vec::new();
    };
    let mut ops = Vec::new();
    if objects.is_none_or(|o| !o.networks.contains(&first.network)) {
        let name = first.network.clone();
        ops.push(if first.overlay {
            ObjectOp::CreateOverlayNetwork { name }
        } else {
            ObjectOp::CreateNetwork { name }
        });
    }
    let mut volumes: Vec<&String> = containers
        .iter()
        .flat_map(|c| c.mounts.iter())
        .filter_map(|m| match &m.from {
            MountFrom::Volume(v) => Some(v),
            MountFrom::Bind(_) => None,
        })
        .filter(|v| objects.is_none_or(|o| !o.volumes.contains(*v)))
        .collect();
    volumes.sort();
    volumes.dedup();
    ops.extend(
        volumes
            .into_iter()
            .map(|v| ObjectOp::CreateVolume { name: v.clone() }),
    );
    ops
}

/// What `destroy` removes once every container is gone: the project network,
/// the images built for it, and with `purge` its named volumes. Pure.
pub fn plan_teardown(
    project: &str,
    objects: Option<&ProjectObjects>,
    purge: bool,
) -> Vec<ObjectOp> {
    let Some(objects) = objects else {
        return Vec::new();
    };
    let mut ops = Vec::new();
    let network = network_name(project);
    if objects.networks.contains(&network) {
        ops.push(ObjectOp::RemoveNetwork { name: network });
    }
    ops.push(ObjectOp::RemoveBuiltImages);
    if !objects.secrets.is_empty() {
        ops.push(ObjectOp::RemoveSecrets {
            count: objects.secrets.len(),
        });
    }
    if purge {
        let mut volumes: Vec<&String> = objects.volumes.iter().collect();
        volumes.sort();
        ops.extend(
            volumes
                .into_iter()
                .map(|v| ObjectOp::RemoveVolume { name: v.clone() }),
        );
    }
    ops
}

/// Carries out one project-object operation.
pub async fn apply_object(
    rt: &DockerRuntime,
    project: &str,
    op: &ObjectOp,
) -> Result<String, DockerError> {
    let engine = rt.connect().await?;
    match op {
        ObjectOp::CreateNetwork { name } => engine.ensure_network(name, project, false).await?,
        ObjectOp::CreateOverlayNetwork { name } => {
            if let crate::docker::swarm::SwarmRole::Not(why) = engine.swarm_role().await? {
                return Err(DockerError::Api {
                    what: format!("creating overlay network {name} for the swarm runtime"),
                    message: why,
                });
            }
            engine.ensure_network(name, project, true).await?
        }
        ObjectOp::RemoveSecrets { .. } => {
            for (id, _, _) in engine.list_secrets(project).await? {
                engine.remove_secret(&id, Duration::from_secs(30)).await?;
            }
        }
        ObjectOp::CreateVolume { name } => engine.ensure_volume(name, project).await?,
        ObjectOp::RemoveNetwork { name } => engine.remove_network(name).await?,
        ObjectOp::RemoveBuiltImages => {
            engine.remove_built_images(project).await?;
        }
        ObjectOp::RemoveVolume { name } => engine.remove_volume(name).await?,
    }
    let (action, what) = op.describe();
    Ok(format!("{} {what}", action.verb()))
}

/// Operations on containers, planned by kinds that run one.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ContainerOp {
    /// Pull the image, or build it, when the engine does not have it.
    PrepareImage {
        /// The image reference.
        image: String,
    },
    /// Create and start the container, replacing `replaces` if given, then wait
    /// until it is ready.
    RunContainer {
        /// The container this one replaces.
        replaces: Option<String>,
    },
    /// Start a stopped container and wait until it is ready.
    StartContainer {
        /// Container id.
        id: String,
    },
    /// Remove a container (its named volumes are kept).
    RemoveContainer {
        /// Container id.
        id: String,
    },
    /// Create the swarm service, then wait until its replicas run.
    CreateService,
    /// Roll the swarm service to the desired spec (or back to its replicas),
    /// then wait until it converged; a rollback is a failure.
    UpdateService {
        /// Service id.
        id: String,
    },
    /// Remove a swarm service and its secrets.
    RemoveService {
        /// Service id.
        id: String,
    },
}

/// Without a health check, a container counts as ready once it stayed up this long.
pub const SETTLE: Duration = Duration::from_millis(300);

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(50);

/// Log lines quoted in a readiness error.
const LOG_LINES: usize = 15;

/// What a container should be.
#[derive(Debug, Clone)]
pub struct DesiredContainer {
    /// The service (synthesized for a docker Endpoint).
    pub spec: ServiceSpec,
    /// Where the image comes from.
    pub image: ImageSource,
    /// Project name (labels, names).
    pub project: String,
    /// Container name: `<project>-<name>`.
    pub container_name: String,
    /// The project network.
    pub network: String,
    /// Mounts, resolved to engine volume names and absolute paths.
    pub mounts: Vec<MountConfig>,
    /// Services this one waits for, with their readiness deadlines.
    pub waits_for: Vec<Dependency>,
    /// Hash of what the spec does not show (build context, binary).
    pub content_hash: String,
    /// Runs on the swarm, deployed so; on the local engine when `None`.
    pub swarm: Option<crate::kinds::service::deploy::DeploySpec>,
    /// The project network is an overlay (some workload runs on the swarm).
    pub overlay: bool,
    /// On the swarm, the secret each `${VAR}` env value becomes, by env key
    /// (`None` while a variable is unset here: nothing to compare).
    pub secrets: Vec<(String, Option<String>)>,
}

/// A service dependency to wait for.
#[derive(Debug, Clone)]
pub struct Dependency {
    /// Its resource.
    pub id: ResourceId,
    /// Its container name.
    pub container: String,
    /// Its health timing, if it has a check.
    pub health: Option<HealthTiming>,
    /// It runs as a swarm service (`container` is the service's name).
    pub swarm: bool,
}

impl DesiredContainer {
    /// What the spec hash must cover beyond the spec: the build context or
    /// binary, and the resolved mount paths (a moved project is a new container).
    pub fn input_hash(&self) -> String {
        let mounts: Vec<String> = self
            .mounts
            .iter()
            .map(|m| format!("{:?}:{}:{}", m.from, m.target, m.read_only))
            .collect();
        let mounts = mounts.join("\n");
        if self.swarm.is_some() {
            // Moving between runtimes is a change of its own.
            crate::hash::hash_parts([self.content_hash.as_str(), mounts.as_str(), "swarm"])
        } else {
            crate::hash::hash_parts([self.content_hash.as_str(), mounts.as_str()])
        }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// Pulled from a registry when missing.
    Pull(String),
    /// Built from a folder of the project.
    Build {
        /// Tag given to the result.
        tag: String,
        /// Context folder.
        context: PathBuf,
        /// Dockerfile, relative to the context.
        dockerfile: String,
    },
    /// Built from this very binary (docker Endpoints).
    Serve {
        /// The binary.
        binary: PathBuf,
    },
}

impl ImageSource {
    /// The reference containers are created from.
    pub fn reference(&self, content_hash: &str) -> String {
        match self {
            ImageSource::Pull(image) => image.clone(),
            ImageSource::Build { tag, .. } => tag.clone(),
            ImageSource::Serve { .. } => format!(
                "{}:{}",
                crate::container::SERVE_IMAGE,
                &content_hash[..16.min(content_hash.len())]
            ),
        }
    }
}

/// The resource a label (`Service/web`) names, if it names one.
pub fn resource_of_label(label: &str) -> Option<ResourceId> {
    let (kind, name) = label.split_once('/')?;
    Some(ResourceId::new(Kind::parse(kind)?, name))
}

/// The resource label of a container: `Service/web`.
pub fn resource_label(id: &ResourceId) -> String {
    id.to_string()
}

/// The project network's name.
pub fn network_name(project: &str) -> String {
    format!("reconcile-{project}")
}

/// The engine name of a project's named volume.
pub fn volume_name(project: &str, volume: &str) -> String {
    format!("{project}_{volume}")
}

/// The container name of a resource.
pub fn container_name(project: &str, name: &str) -> String {
    format!("{project}-{name}")
}

/// Where a container's image comes from, as its kind decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFrom {
    /// The spec's `image` or `build`.
    Spec,
    /// This very binary (the endpoint image).
    ThisBinary,
}

/// Reads what a container needs (build context hash, mounts, dependencies to
/// wait for) from the service it runs as.
pub fn desire(
    r: &Resource,
    spec: ServiceSpec,
    from: ImageFrom,
    set: &SpecSet,
    upstream: Upstream<'_>,
) -> Result<DesiredContainer, ApplyError> {
    let project = set.project.name.value.clone();
    let base = r.base_dir();
    let (image, content_hash) = match (from, &spec.build) {
        (ImageFrom::ThisBinary, _) => {
            let binary = std::env::current_exe().map_err(|source| ApplyError::Io {
                path: "the reconcile binary".into(),
                source,
            })?;
            let hash = file_identity(&binary)?;
            (ImageSource::Serve { binary }, hash)
        }
        (_, Some(build)) => {
            let context = base.join(&build.context.value);
            let hash = hash_folder(&context)?;
            let tag = spec.image.as_ref().map_or_else(
                || format!("reconcile-{project}-{}:{}", spec.name.value, &hash[..16]),
                |i| i.value.clone(),
            );
            (
                ImageSource::Build {
                    tag,
                    context,
                    dockerfile: build.dockerfile.clone(),
                },
                hash,
            )
        }
        (_, None) => (
            ImageSource::Pull(
                spec.image
                    .as_ref()
                    .map(|i| i.value.clone())
                    .unwrap_or_default(),
            ),
            String::new(),
        ),
    };
    let mut mounts = Vec::new();
    let mut generated: Vec<String> = Vec::new();
    for v in &spec.volumes {
        let Ok(m) = parse_volume(&v.value) else {
            continue;
        };
        let from = match &m.source {
            MountSource::Named(n) => MountFrom::Volume(volume_name(&project, n)),
            MountSource::Bind(p) => {
                let path = crate::spec::validate::confine(&set.root, base, p).map_err(|e| {
                    ApplyError::Io {
                        path: v.value.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, e),
                    }
                })?;
                // Generated config in the folder: what generates it is part of the container.
                for g in crate::kinds::generators_at(&set.resources, &set.root, &path) {
                    if let Some(d) = upstream.get(&g.id) {
                        generated.push(d.spec_hash.clone());
                    }
                }
                MountFrom::Bind(path.display().to_string())
            }
        };
        mounts.push(MountConfig {
            from,
            target: m.target,
            read_only: m.read_only,
        });
    }
    let waits_for = set
        .resources
        .iter()
        .filter(|other| other.id != r.id)
        .filter(|other| {
            spec.depends_on
                .iter()
                .any(|d| d.value == other.id.name || d.value == other.id.to_string())
        })
        .filter_map(|other| {
            let dep = upstream
                .get(&other.id)
                .and_then(|d| crate::kinds::container_of(&d.typed))?;
            Some(Dependency {
                id: other.id.clone(),
                container: dep.container_name.clone(),
                health: dep.spec.health.as_ref().map(|h| h.timing()),
                swarm: dep.swarm.is_some(),
            })
        })
        .collect();
    let content_hash = if generated.is_empty() {
        content_hash
    } else {
        let mut parts = vec![content_hash];
        parts.extend(generated);
        crate::hash::hash_parts(parts.iter().map(String::as_str))
    };
    let swarm =
        super::swarm::service_on_swarm(set, &spec).then(|| spec.deploy.clone().unwrap_or_default());
    let secrets = if swarm.is_some() {
        super::swarm::desired_secrets(&project, &spec)
    } else {
        Vec::new()
    };
    Ok(DesiredContainer {
        container_name: container_name(&project, &spec.name.value),
        network: network_name(&project),
        overlay: super::swarm::project_uses_swarm(set),
        swarm,
        secrets,
        spec,
        image,
        project,
        mounts,
        waits_for,
        content_hash,
    })
}

/// Size, modification time and path: enough to notice a rebuilt binary without
/// hashing a hundred megabytes on every plan.
fn file_identity(path: &Path) -> Result<String, ApplyError> {
    let meta = std::fs::metadata(path).map_err(|source| ApplyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(crate::hash::hash_parts([
        path.display().to_string().as_str(),
        &meta.len().to_string(),
        &mtime.to_string(),
    ]))
}

/// Hash of every file (path and content) under a build context.
fn hash_folder(dir: &Path) -> Result<String, ApplyError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let io = |path: &Path, source| ApplyError::Io {
        path: path.display().to_string(),
        source,
    };
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
            let entry = entry.map_err(|e| io(&d, e))?;
            let path = entry.path();
            if entry.file_type().map_err(|e| io(&path, e))?.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut h = blake3::Hasher::new();
    for f in &files {
        h.update(
            f.strip_prefix(dir)
                .unwrap_or(f)
                .to_string_lossy()
                .as_bytes(),
        );
        h.update(&[0]);
        h.update(&std::fs::read(f).map_err(|e| io(f, e))?);
        h.update(&[0]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// What the engine showed, for the planner.
#[derive(Debug, Clone, Default)]
pub enum DockerView {
    /// Nothing in the specs or the state runs in a container: not asked.
    #[default]
    NotObserved,
    /// No engine answered; the message says where it was looked for.
    Unreachable(String),
    /// The project's containers by resource label.
    Seen(HashMap<String, ContainerObs>),
}

impl DockerView {
    /// Resources with a container the project owns.
    pub fn owned(&self) -> Vec<ResourceId> {
        let DockerView::Seen(map) = self else {
            return Vec::new();
        };
        map.keys().filter_map(|l| resource_of_label(l)).collect()
    }

    /// The container of a resource.
    pub fn container(&self, id: &ResourceId) -> Option<&ContainerObs> {
        match self {
            DockerView::Seen(map) => map.get(&resource_label(id)),
            _ => None,
        }
    }
}

/// Desired vs observed for a container of kind `K`. Pure.
pub fn plan<K: Member<Op = ContainerOp>>(
    d: &Desired<'_, K>,
    inputs: &DesiredContainer,
    observed: &Observed,
) -> ResourcePlan {
    if inputs.swarm.is_some() {
        return super::swarm::plan(d, inputs, observed);
    }
    let mut plan = plan_container(d, inputs, observed);
    // A swarm service left from when it ran on the swarm goes first.
    if let Some(s) = observed.swarm.service(d.id) {
        plan.reasons.push(format!(
            "it ran as swarm service {}; that service is removed",
            s.name
        ));
        if plan.operations.is_empty() {
            plan.action = Action::Update;
        }
        plan.operations
            .insert(0, K::op(ContainerOp::RemoveService { id: s.id.clone() }));
    }
    plan
}

fn plan_container<K: Member<Op = ContainerOp>>(
    d: &Desired<'_, K>,
    inputs: &DesiredContainer,
    observed: &Observed,
) -> ResourcePlan {
    let mut plan = ResourcePlan::noop(d.id.clone());
    let image = inputs.image.reference(&inputs.content_hash);
    let record = observed.records.get(d.id);
    let run = |replaces: Option<String>| {
        vec![
            K::op(ContainerOp::PrepareImage {
                image: image.clone(),
            }),
            K::op(ContainerOp::RunContainer { replaces }),
        ]
    };
    match &observed.docker {
        DockerView::NotObserved | DockerView::Unreachable(_) => {
            let why = match &observed.docker {
                DockerView::Unreachable(msg) => Some(msg.as_str()),
                _ => None,
            };
            unobserved(&mut plan, record.is_some(), "the container", why);
            plan.operations = run(None);
        }
        DockerView::Seen(map) => match map.get(&resource_label(d.id)) {
            None => {
                plan.action = Action::Create;
                let ran_before = record.is_some_and(|r| r.outputs.get("container").is_some());
                plan.reasons.push(if ran_before {
                    format!(
                        "container {} is gone (removed out of band)",
                        inputs.container_name
                    )
                } else {
                    format!("new container {}", inputs.container_name)
                });
                plan.operations = run(None);
            }
            Some(c) if c.hash != d.spec_hash => {
                plan.action = Action::Replace;
                let recorded = record.map(|r| r.spec_hash.as_str());
                plan.reasons.push(if recorded == Some(d.spec_hash) {
                    "container was replaced out of band with another configuration".into()
                } else {
                    match record {
                        Some(r) => format!(
                            "spec changed: {}",
                            crate::kinds::record::changed_fields(&r.spec_json, d.spec_json)
                        ),
                        None => "container was created from another spec".into(),
                    }
                });
                plan.operations = run(Some(c.id.clone()));
            }
            Some(c) if c.state != "running" => {
                plan.action = Action::Update;
                plan.reasons
                    .push(format!("container is {} ({}); start it", c.state, c.status));
                plan.operations = vec![K::op(ContainerOp::StartContainer { id: c.id.clone() })];
            }
            Some(c) if c.health.as_deref() == Some("unhealthy") => {
                plan.action = Action::Replace;
                plan.reasons.push("container is unhealthy".into());
                plan.operations = run(Some(c.id.clone()));
            }
            Some(c) if record.is_some_and(|r| r.condition == Condition::Failed) => {
                plan.action = Action::Replace;
                plan.reasons
                    .push("the last apply failed to make it ready; try again".into());
                plan.operations = run(Some(c.id.clone()));
            }
            Some(c) if record.is_none() => {
                // Started before the state store existed (a store's own
                // service) or recorded in a state that was lost: adopt it, so
                // it is pruned like any other once the specs drop it.
                plan.action = Action::Update;
                plan.reasons
                    .push(format!("adopt running container {} into the state", c.name));
            }
            Some(_) => {}
        },
    }
    plan
}

/// A workload the engine could not show: planned as a change (an update
/// when it was recorded before), with the reason.
pub(super) fn unobserved(plan: &mut ResourcePlan, recorded: bool, what: &str, why: Option<&str>) {
    plan.action = if recorded {
        Action::Update
    } else {
        Action::Create
    };
    plan.reasons.push(format!(
        "cannot observe {what}: {}",
        why.unwrap_or("the Docker engine was not asked")
    ));
}

/// The plan of a container of kind `K` the specs no longer name, if it has one.
pub fn plan_removal<K: Member<Op = ContainerOp>>(
    id: &ResourceId,
    observed: &Observed,
) -> Option<ResourcePlan> {
    let container = observed.docker.container(id);
    let service = observed.swarm.service(id);
    if container.is_none() && service.is_none() {
        return None;
    }
    let mut reasons = Vec::new();
    let mut operations = Vec::new();
    if let Some(c) = container {
        reasons.push(format!(
            "no longer in the specs; remove container {} (volumes are kept)",
            c.name
        ));
        operations.push(K::op(ContainerOp::RemoveContainer { id: c.id.clone() }));
    }
    if let Some(s) = service {
        reasons.push(format!(
            "no longer in the specs; remove swarm service {} and its secrets (volumes are kept)",
            s.name
        ));
        operations.push(K::op(ContainerOp::RemoveService { id: s.id.clone() }));
    }
    operations.push(CommonOp::Forget.into());
    Some(ResourcePlan {
        id: id.clone(),
        action: Action::Delete,
        reasons,
        operations,
        warnings: Vec::new(),
    })
}

/// The engine connection of one command, made on first use, and the project
/// objects created during it (so parallel services create the network once).
#[derive(Debug)]
pub struct DockerRuntime {
    engine: OnceCell<Result<Engine, DockerError>>,
    network: OnceCell<()>,
    volumes: Mutex<HashSet<String>>,
    images: Mutex<HashSet<String>>,
}

impl Default for DockerRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl DockerRuntime {
    /// Not connected yet.
    pub fn new() -> DockerRuntime {
        DockerRuntime {
            engine: OnceCell::new(),
            network: OnceCell::new(),
            volumes: Mutex::new(HashSet::new()),
            images: Mutex::new(HashSet::new()),
        }
    }

    /// The engine, connecting on first use; the error names where it looked.
    pub async fn engine(&self) -> Result<&Engine, ApplyError> {
        self.engine
            .get_or_init(Engine::connect)
            .await
            .as_ref()
            .map_err(|e| ApplyError::Docker(e.clone()))
    }

    /// The project's networks, volumes and swarm secrets, or `None` when the
    /// engine cannot say.
    pub async fn observe_objects(&self, project: &str) -> Option<ProjectObjects> {
        let engine = self.engine().await.ok()?;
        let (networks, volumes, role) = tokio::try_join!(
            engine.list_networks(project),
            engine.list_volumes(project),
            engine.swarm_role()
        )
        .ok()?;
        let secrets = if role == crate::docker::swarm::SwarmRole::Manager {
            engine.list_secrets(project).await.ok()?
        } else {
            Vec::new()
        };
        Some(ProjectObjects {
            networks: networks.into_iter().collect(),
            volumes: volumes.into_iter().collect(),
            secrets: secrets.into_iter().map(|(_, name, _)| name).collect(),
        })
    }

    /// One labelled list of the project's swarm services.
    pub async fn observe_swarm(&self, project: &str) -> super::swarm::SwarmView {
        use super::swarm::SwarmView;
        let engine = match self.engine().await {
            Ok(e) => e,
            Err(e) => return SwarmView::Unreachable(e.to_string()),
        };
        match engine.swarm_role().await {
            Ok(crate::docker::swarm::SwarmRole::Manager) => {}
            Ok(crate::docker::swarm::SwarmRole::Not(why)) => return SwarmView::NotManager(why),
            Err(e) => return SwarmView::Unreachable(e.to_string()),
        }
        match engine.list_services(project).await {
            Ok(list) => {
                SwarmView::Seen(list.into_iter().map(|s| (s.resource.clone(), s)).collect())
            }
            Err(e) => SwarmView::Unreachable(e.to_string()),
        }
    }

    /// One labelled list of the project's containers.
    pub async fn observe(&self, project: &str) -> DockerView {
        let engine = match self.engine().await {
            Ok(e) => e,
            Err(e) => return DockerView::Unreachable(e.to_string()),
        };
        match engine.list_owned(project).await {
            Ok(list) => {
                DockerView::Seen(list.into_iter().map(|c| (c.resource.clone(), c)).collect())
            }
            Err(e) => DockerView::Unreachable(e.to_string()),
        }
    }

    pub(super) async fn ensure_network(
        &self,
        engine: &Engine,
        inputs: &DesiredContainer,
    ) -> Result<(), ApplyError> {
        self.network
            .get_or_try_init(|| async {
                engine
                    .ensure_network(&inputs.network, &inputs.project, inputs.overlay)
                    .await
                    .map_err(ApplyError::from)
            })
            .await?;
        Ok(())
    }

    pub(super) async fn ensure_volumes(
        &self,
        engine: &Engine,
        inputs: &DesiredContainer,
    ) -> Result<(), ApplyError> {
        let mut done = self.volumes.lock().await;
        for m in &inputs.mounts {
            if let MountFrom::Volume(v) = &m.from
                && !done.contains(v)
            {
                engine.ensure_volume(v, &inputs.project).await?;
                done.insert(v.clone());
            }
        }
        Ok(())
    }

    pub(super) async fn prepare_image(
        &self,
        engine: &Engine,
        inputs: &DesiredContainer,
    ) -> Result<String, ApplyError> {
        let reference = inputs.image.reference(&inputs.content_hash);
        // One build or pull per image per command, even with parallel services.
        let mut images = self.images.lock().await;
        if images.contains(&reference) {
            return Ok(reference);
        }
        let labels = HashMap::from([(LABEL_PROJECT.to_string(), inputs.project.clone())]);
        match &inputs.image {
            ImageSource::Pull(image) => {
                if !engine.image_exists(image).await? {
                    // The pull's bytes on the resource's bar (or in lines).
                    let bytes = crate::progress::current().bytes(0);
                    engine
                        .pull(image, |done, total| {
                            if total != bytes.total() {
                                bytes.set_total(total);
                            }
                            bytes.set(done);
                        })
                        .await?;
                }
            }
            ImageSource::Build {
                tag,
                context,
                dockerfile,
            } => {
                if !engine.image_exists(tag).await? {
                    let tar = tar_folder(context)?;
                    engine.build(tag, dockerfile, tar, &labels).await?;
                }
            }
            ImageSource::Serve { binary } => {
                ensure_serve_image(engine, binary, &reference).await?;
            }
        }
        images.insert(reference.clone());
        Ok(reference)
    }
}

/// Builds the endpoint image `reference` from `binary` unless the engine has
/// it, and points `reconcile-serve:latest` at it: compose files name the
/// endpoint image by that tag. Not labelled with a project: every project
/// shares it.
async fn ensure_serve_image(
    engine: &Engine,
    binary: &Path,
    reference: &str,
) -> Result<(), ApplyError> {
    if !engine.image_exists(reference).await? {
        let binary = binary.to_path_buf();
        let ctx = tokio::task::spawn_blocking(move || crate::serve_image::build_context(&binary))
            .await??;
        engine
            .build(reference, "Dockerfile", ctx.tar, &HashMap::new())
            .await?;
    }
    engine
        .tag(reference, crate::container::SERVE_IMAGE, "latest")
        .await?;
    Ok(())
}

/// Builds the endpoint image of this very binary, as `apply` does for an
/// Endpoint with `runtime: docker`, for those who run it with compose
/// (`reconcile compose --build-images`): `reconcile-serve:<tag>` and
/// `reconcile-serve:latest`. Returns the first.
pub async fn build_serve_image(rt: &DockerRuntime) -> Result<String, ApplyError> {
    let binary = std::env::current_exe().map_err(|source| ApplyError::Io {
        path: "the reconcile binary".into(),
        source,
    })?;
    let source = ImageSource::Serve {
        binary: binary.clone(),
    };
    let reference = source.reference(&file_identity(&binary)?);
    ensure_serve_image(rt.engine().await?, &binary, &reference).await?;
    Ok(reference)
}

/// A build context as a tar stream, symlinks kept as links.
fn tar_folder(dir: &Path) -> Result<Vec<u8>, ApplyError> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir)
        .and_then(|()| b.into_inner())
        .map_err(|source| ApplyError::Io {
            path: dir.display().to_string(),
            source,
        })
}

fn config(
    id: &ResourceId,
    spec_hash: &str,
    inputs: &DesiredContainer,
    image: String,
) -> Result<ContainerConfig, ApplyError> {
    let s = &inputs.spec;
    let mut env = Vec::with_capacity(s.env.len());
    for (k, v) in &s.env {
        let value = crate::spec::env::interpolate(&v.value).map_err(|source| ApplyError::Env {
            what: format!("{id}: env {k}"),
            source,
        })?;
        env.push(format!("{k}={value}"));
    }
    let ports = s
        .ports
        .iter()
        .filter_map(|p| parse_port(&p.value).ok())
        .map(|p| PortConfig {
            container: p.container_key(),
            host_ip: p.host_ip,
            host_port: p.host_port,
        })
        .collect();
    let labels = HashMap::from([
        (LABEL_PROJECT.to_string(), inputs.project.clone()),
        (LABEL_RESOURCE.to_string(), resource_label(id)),
        (LABEL_HASH.to_string(), spec_hash.to_string()),
    ]);
    Ok(ContainerConfig {
        name: inputs.container_name.clone(),
        image,
        entrypoint: s.entrypoint.clone(),
        command: s.command.clone(),
        env,
        labels,
        ports,
        mounts: inputs.mounts.clone(),
        restart: s.restart.as_str().to_string(),
        cpus: s.resources.as_ref().and_then(|r| r.cpus),
        memory: s
            .resources
            .as_ref()
            .and_then(|r| r.memory.as_ref())
            .and_then(|m| parse_memory(&m.value)),
        health: health_config(s),
        network: inputs.network.clone(),
        aliases: vec![s.name.value.clone()],
    })
}

/// The engine's health check of a service spec (containers and swarm tasks).
pub(super) fn health_config(s: &ServiceSpec) -> Option<HealthConfigSpec> {
    s.health.as_ref().map(|h| {
        let t = h.timing();
        HealthConfigSpec {
            test: h.command.docker_test(),
            interval: t.interval,
            timeout: t.timeout,
            retries: t.retries,
            start_period: t.start_period,
        }
    })
}

/// Waits until a container is ready; fails fast when it crashes or turns
/// unhealthy, and at the deadline, quoting its logs either way. `what` prefixes
/// the message when the container is not the resource's own. `fresh`: this
/// command just started it, so any restart is a crash; otherwise only restarts
/// seen while waiting count (a dependency that crashed once last week and has
/// been healthy since is ready).
pub async fn wait_ready(
    engine: &Engine,
    container: &str,
    what: &str,
    health: Option<HealthTiming>,
    fresh: bool,
) -> Result<(), ApplyError> {
    let mut baseline: Option<i64> = fresh.then_some(0);
    let what = if what.is_empty() {
        String::new()
    } else {
        format!("{what}: ")
    };
    let start = Instant::now();
    let deadline = health.map_or(SETTLE * 20, |h| h.deadline());
    loop {
        let Some(detail) = engine.inspect(container).await? else {
            return Err(ApplyError::NotReady(format!(
                "{what}container {container} disappeared while starting"
            )));
        };
        let baseline = *baseline.get_or_insert(detail.restarts);
        let crashed = detail.restarts > baseline
            || matches!(detail.state.as_str(), "exited" | "dead" | "restarting");
        let failure = if crashed {
            Some(format!(
                "{what}container {container} exited with code {} (restarted {} time(s))",
                detail.exit_code,
                detail.restarts - baseline
            ))
        } else if detail.health.as_deref() == Some("unhealthy") {
            Some(format!(
                "{what}container {container} is unhealthy; last check: {}",
                detail.last_check.as_deref().unwrap_or("no output")
            ))
        } else if start.elapsed() > deadline {
            Some(format!(
                "{what}container {container} not healthy after {:.1} s; last check: {}",
                start.elapsed().as_secs_f64(),
                detail.last_check.as_deref().unwrap_or("none ran yet")
            ))
        } else {
            None
        };
        if let Some(msg) = failure {
            let logs = engine.logs_tail(container, LOG_LINES).await;
            let logs = if logs.is_empty() {
                "  (no log output)".to_string()
            } else {
                logs.iter()
                    .map(|l| format!("  | {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            return Err(ApplyError::NotReady(format!(
                "{msg}\n  last log lines of {container}:\n{logs}"
            )));
        }
        let ready = match health {
            Some(_) => detail.health.as_deref() == Some("healthy"),
            None => detail.state == "running" && start.elapsed() >= SETTLE,
        };
        if ready {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Carries out the container operations of a resource of kind `K`.
pub async fn apply<K: Member<Op = ContainerOp>>(
    rt: &DockerRuntime,
    id: &ResourceId,
    spec_hash: &str,
    inputs: &DesiredContainer,
    plan: &ResourcePlan,
) -> Result<Applied, ApplyError> {
    if inputs.swarm.is_some() {
        return super::swarm::apply::<K>(rt, id, spec_hash, inputs, plan).await;
    }
    let engine = rt.engine().await?;
    let mut image = inputs.image.reference(&inputs.content_hash);
    let mut started = false;
    for op in ops_of::<K>(plan) {
        match op {
            ContainerOp::PrepareImage { .. } => image = rt.prepare_image(engine, inputs).await?,
            ContainerOp::RunContainer { replaces } => {
                rt.ensure_network(engine, inputs).await?;
                rt.ensure_volumes(engine, inputs).await?;
                wait_for_dependencies(engine, inputs).await?;
                let config = config(id, spec_hash, inputs, image.clone())?;
                if let Some(old) = replaces {
                    engine.remove(old).await?;
                }
                // A container of that name left from a failed run would block the create.
                engine.remove(&inputs.container_name).await?;
                engine.run(&config).await?;
                started = true;
            }
            ContainerOp::StartContainer { id } => {
                rt.ensure_network(engine, inputs).await?;
                wait_for_dependencies(engine, inputs).await?;
                engine.start(id).await?;
                started = true;
            }
            // Removal is planned only for resources the specs no longer name.
            ContainerOp::RemoveContainer { id } => engine.remove(id).await?,
            ContainerOp::RemoveService { id: service } => {
                super::swarm::remove(engine, &inputs.project, id, service).await?
            }
            // Planned only for swarm workloads (handled above).
            ContainerOp::CreateService | ContainerOp::UpdateService { .. } => {}
        }
    }
    let health = inputs.spec.health.as_ref().map(|h| h.timing());
    wait_ready(engine, &inputs.container_name, "", health, started).await?;
    let detail = engine
        .inspect(&inputs.container_name)
        .await?
        .unwrap_or_default();
    let ports: Vec<String> = {
        let mut p: Vec<String> = detail
            .published
            .iter()
            .map(|(k, v)| format!("{v}->{k}"))
            .collect();
        p.sort();
        p
    };
    Ok(Applied {
        message: format!(
            "{} {} ({}{})",
            if started { "started" } else { "running" },
            inputs.container_name,
            detail.health.as_deref().unwrap_or(&detail.state),
            if ports.is_empty() {
                String::new()
            } else {
                format!(", {}", ports.join(", "))
            }
        ),
        outputs: serde_json::json!({
            "container": inputs.container_name,
            "image": image,
            "ports": ports,
        }),
    })
}

pub(super) async fn wait_for_dependencies(
    engine: &Engine,
    inputs: &DesiredContainer,
) -> Result<(), ApplyError> {
    for dep in &inputs.waits_for {
        super::swarm::wait_dependency(engine, dep).await?;
    }
    Ok(())
}

/// Removes the container of a resource of kind `K` no longer in the specs.
pub async fn apply_removal<K: Member<Op = ContainerOp>>(
    rt: &DockerRuntime,
    project: &str,
    plan: &ResourcePlan,
) -> Result<Applied, ApplyError> {
    if ops_of::<K>(plan).next().is_none() {
        return Ok(Applied::message("removed from state"));
    }
    let engine = rt.engine().await?;
    let mut removed = Vec::new();
    for op in ops_of::<K>(plan) {
        match op {
            ContainerOp::RemoveContainer { id } => {
                engine.remove(id).await?;
                removed.push(format!(
                    "container {}",
                    id.chars().take(12).collect::<String>()
                ));
            }
            ContainerOp::RemoveService { id: service } => {
                super::swarm::remove(engine, project, &plan.id, service).await?;
                removed.push(format!(
                    "swarm service {}",
                    service.chars().take(12).collect::<String>()
                ));
            }
            _ => {}
        }
    }
    Ok(Applied {
        message: format!("removed {}", removed.join(", ")),
        outputs: serde_json::Value::Null,
    })
}

/// Shared handle type kept by stores and apply contexts.
pub type SharedDocker = Arc<DockerRuntime>;

impl DockerRuntime {
    /// The engine, connecting on first use, for work outside any one resource.
    pub async fn connect(&self) -> Result<&Engine, DockerError> {
        self.engine
            .get_or_init(Engine::connect)
            .await
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// The Services the stores at `urls` run on (the URLs the command opens, its
/// overrides applied), with the Services they depend on, in execution order:
/// what must run before the stores can be opened. A store URL naming no
/// Service (moved elsewhere by `--state` or `RECONCILE_STATE`) needs none.
pub fn store_hosts(
    set: &SpecSet,
    graph: &crate::graph::DependencyGraph,
    urls: &[String],
) -> Vec<ResourceId> {
    if std::env::var_os(crate::container::IN_NETWORK_ENV).is_some() {
        return Vec::new();
    }
    let mut needed: HashSet<ResourceId> =
        crate::container::services_of_urls(urls.iter().map(String::as_str), set)
            .into_iter()
            .map(|s| ResourceId::new(Service::KIND, s.service))
            .collect();
    let mut stack: Vec<ResourceId> = needed.iter().cloned().collect();
    while let Some(id) = stack.pop() {
        for dep in graph.dependencies(&id) {
            if dep.kind == Service::KIND && needed.insert(dep.clone()) {
                stack.push(dep);
            }
        }
    }
    graph
        .order
        .iter()
        .filter(|id| needed.contains(*id))
        .cloned()
        .collect()
}

/// A store URL as this process must use it: a URL naming a Service is pointed
/// at the service's published port (or its network address) once the service
/// is ready; other URLs are returned as they are.
pub async fn reach_store(
    set: &SpecSet,
    rt: &DockerRuntime,
    url: String,
) -> Result<String, crate::store::StoreError> {
    use crate::store::StoreError;
    if std::env::var_os(crate::container::IN_NETWORK_ENV).is_some() {
        return Ok(url);
    }
    let Some(on) = crate::container::store_service(&url, set) else {
        return Ok(url);
    };
    let id = ResourceId::new(Service::KIND, on.service.clone());
    let project = &set.project.name.value;
    let fail = |why: String| StoreError::OnService(format!("the store on {id}: {why}"));
    if set
        .spec::<Service>(&on.service)
        .is_some_and(|s| super::swarm::service_on_swarm(set, s))
    {
        return Err(fail(
            "it runs on the swarm, and reconcile reaches a store through one container's \
             published port; give that Service `runtime: docker` (it joins the overlay \
             network, so swarm services still reach it by name)"
                .into(),
        ));
    }
    let engine = rt.engine().await.map_err(|e| fail(e.to_string()))?;
    let name = container_name(project, &on.service);
    let health = set
        .spec::<Service>(&on.service)
        .and_then(|s| s.health.as_ref().map(|h| h.timing()));
    let detail = engine
        .inspect(&name)
        .await
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| {
            fail(format!(
                "container {name} does not exist; `reconcile apply` starts it"
            ))
        })?;
    wait_ready(engine, &name, &id.to_string(), health, false)
        .await
        .map_err(|e| fail(e.to_string()))?;
    match detail.published.get(&format!("{}/tcp", on.port)) {
        Some(port) => Ok(crate::container::rewrite_to_host(&url, *port)),
        None => match &detail.ip {
            Some(ip) => Ok(crate::container::rewrite_to_address(&url, ip, on.port)),
            None => Err(fail(format!("container {name} has no address"))),
        },
    }
}
