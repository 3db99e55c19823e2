//! Services (and Endpoints with `runtime: docker`) as containers: desired from
//! the spec, diffed against one labelled container list (pure), applied through
//! [`crate::docker::Engine`] — image, network, volumes, container, readiness.
//!
//! A container is ready when its health check says `healthy`, or, without one,
//! when it has stayed up for [`SETTLE`]. A dependent is started only after its
//! service dependencies are ready; a readiness failure reports the last health
//! check output and the container's last log lines.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OnceCell};

use super::{Applied, ApplyError, DesiredResource, Inputs, Observed, Upstream};
use crate::docker::{
    ContainerConfig, ContainerObs, DockerError, Engine, HealthConfigSpec, LABEL_HASH,
    LABEL_PROJECT, LABEL_RESOURCE, MountConfig, MountFrom, PortConfig,
};
use crate::plan::{Action, Operation, ResourcePlan};
use crate::spec::service::{HealthTiming, MountSource, parse_memory, parse_port, parse_volume};
use crate::spec::{Kind, Resource, ResourceId, ServiceSpec, Spec, SpecSet};
use crate::store::state::Condition;

/// Without a health check, a container counts as ready once it stayed up this long.
pub const SETTLE: Duration = Duration::from_millis(300);

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(50);

/// Log lines quoted in a readiness error.
const LOG_LINES: usize = 15;

/// What a container should be.
#[derive(Debug, Clone)]
pub struct ServiceInputs {
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
}

impl ServiceInputs {
    /// What the spec hash must cover beyond the spec: the build context or
    /// binary, and the resolved mount paths (a moved project is a new container).
    pub fn input_hash(&self) -> String {
        let mounts: Vec<String> = self
            .mounts
            .iter()
            .map(|m| format!("{:?}:{}:{}", m.from, m.target, m.read_only))
            .collect();
        crate::hash::hash_parts([self.content_hash.as_str(), mounts.join("\n").as_str()])
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

/// The service a resource runs as, if it runs as one.
pub fn service_of(r: &Resource, set: &SpecSet) -> Option<ServiceSpec> {
    match &r.spec {
        Spec::Service(s) => Some(s.clone()),
        Spec::Endpoint(e) if e.runtime == crate::spec::Runtime::Docker => {
            Some(crate::container::endpoint_service(set, e))
        }
        _ => None,
    }
}

/// Whether any resource of the specs runs in a container.
pub fn specs_use_docker(set: &SpecSet) -> bool {
    set.resources.iter().any(|r| service_of(r, set).is_some())
}

/// Reads the inputs of a Service or docker Endpoint.
pub fn desire(r: &Resource, set: &SpecSet, upstream: Upstream<'_>) -> Result<Inputs, ApplyError> {
    let Some(spec) = service_of(r, set) else {
        return Err(ApplyError::Task(format!("{} is not a container", r.id)));
    };
    let project = set.project.name.value.clone();
    let base = r.base_dir();
    let (image, content_hash) = match (&r.spec, &spec.build) {
        (Spec::Endpoint(_), _) => {
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
    for v in &spec.volumes {
        let Ok(m) = parse_volume(&v.value) else {
            continue;
        };
        let from = match &m.source {
            MountSource::Named(n) => MountFrom::Volume(volume_name(&project, n)),
            MountSource::Bind(p) => {
                let path = crate::spec::validate::confine(&set.root, base, p).map_err(|e| {
                    ApplyError::Validation(format!("{}: volume `{}`: {e}", r.id, v.value))
                })?;
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
            let dep = upstream.get(&other.id).and_then(|d| match &d.inputs {
                Inputs::Service(s) => Some(s),
                _ => None,
            })?;
            Some(Dependency {
                id: other.id.clone(),
                container: dep.container_name.clone(),
                health: dep.spec.health.as_ref().map(|h| h.timing()),
            })
        })
        .collect();
    Ok(Inputs::Service(Box::new(ServiceInputs {
        container_name: container_name(&project, &spec.name.value),
        network: network_name(&project),
        spec,
        image,
        project,
        mounts,
        waits_for,
        content_hash,
    })))
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

fn inputs(d: &DesiredResource) -> Option<&ServiceInputs> {
    match &d.inputs {
        Inputs::Service(s) => Some(s),
        _ => None,
    }
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
        map.keys()
            .filter_map(|label| {
                let (kind, name) = label.split_once('/')?;
                Some(ResourceId::new(Kind::parse(kind)?, name))
            })
            .collect()
    }

    /// The container of a resource.
    pub fn container(&self, id: &ResourceId) -> Option<&ContainerObs> {
        match self {
            DockerView::Seen(map) => map.get(&resource_label(id)),
            _ => None,
        }
    }
}

/// Desired vs observed. Pure.
pub fn diff(d: &DesiredResource, observed: &Observed) -> ResourcePlan {
    let mut plan = ResourcePlan::noop(d.id.clone());
    let Some(inputs) = inputs(d) else {
        return plan;
    };
    let image = inputs.image.reference(&inputs.content_hash);
    let record = observed.records.get(&d.id);
    let run = |replaces: Option<String>| {
        vec![
            Operation::PrepareImage {
                image: image.clone(),
            },
            Operation::RunContainer { replaces },
        ]
    };
    match &observed.docker {
        DockerView::NotObserved | DockerView::Unreachable(_) => {
            let why = match &observed.docker {
                DockerView::Unreachable(msg) => msg.clone(),
                _ => "the Docker engine was not asked".to_string(),
            };
            plan.action = if record.is_some() {
                Action::Update
            } else {
                Action::Create
            };
            plan.reasons
                .push(format!("cannot observe the container: {why}"));
            plan.operations = run(None);
        }
        DockerView::Seen(map) => match map.get(&resource_label(&d.id)) {
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
                plan.reasons
                    .push(if recorded == Some(d.spec_hash.as_str()) {
                        "container was replaced out of band with another configuration".into()
                    } else {
                        match record {
                            Some(r) => format!(
                                "spec changed: {}",
                                super::record::changed_fields(&r.spec_json, &d.spec_json)
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
                plan.operations = vec![Operation::StartContainer { id: c.id.clone() }];
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

/// The plan of a container the specs no longer name.
pub fn diff_removed(id: &ResourceId, observed: &Observed) -> Option<ResourcePlan> {
    let c = observed.docker.container(id)?;
    Some(ResourcePlan {
        id: id.clone(),
        action: Action::Delete,
        reasons: vec![format!(
            "no longer in the specs; remove container {} (volumes are kept)",
            c.name
        )],
        operations: vec![
            Operation::RemoveContainer { id: c.id.clone() },
            Operation::Forget,
        ],
        warnings: Vec::new(),
    })
}

/// The engine connection of one command, made on first use, and the project
/// objects created during it (so parallel services create the network once).
#[derive(Debug)]
pub struct DockerRuntime {
    engine: OnceCell<Result<Engine, String>>,
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
            .get_or_init(|| async { Engine::connect().await.map_err(|e| e.to_string()) })
            .await
            .as_ref()
            .map_err(|e| ApplyError::Docker(e.clone()))
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

    async fn ensure_network(
        &self,
        engine: &Engine,
        inputs: &ServiceInputs,
    ) -> Result<(), ApplyError> {
        self.network
            .get_or_try_init(|| async {
                engine
                    .ensure_network(&inputs.network, &inputs.project)
                    .await
                    .map_err(ApplyError::from)
            })
            .await?;
        Ok(())
    }

    async fn ensure_volumes(
        &self,
        engine: &Engine,
        inputs: &ServiceInputs,
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

    async fn prepare_image(
        &self,
        engine: &Engine,
        inputs: &ServiceInputs,
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
                    engine.pull(image).await?;
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
                let reference = reference.clone();
                if !engine.image_exists(&reference).await? {
                    let binary = binary.clone();
                    let ctx = tokio::task::spawn_blocking(move || {
                        crate::serve_image::build_context(&binary)
                    })
                    .await
                    .map_err(|e| ApplyError::Task(e.to_string()))?
                    .map_err(|e| ApplyError::Docker(e.to_string()))?;
                    // Not labelled with the project: every project shares it.
                    engine
                        .build(&reference, "Dockerfile", ctx.tar, &HashMap::new())
                        .await?;
                    // `:latest` names the newest build, as compose files refer to it.
                    engine
                        .tag(&reference, crate::container::SERVE_IMAGE, "latest")
                        .await?;
                }
            }
        }
        images.insert(reference.clone());
        Ok(reference)
    }
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
    d: &DesiredResource,
    inputs: &ServiceInputs,
    image: String,
) -> Result<ContainerConfig, ApplyError> {
    let s = &inputs.spec;
    let mut env = Vec::with_capacity(s.env.len());
    for (k, v) in &s.env {
        let value = crate::spec::env::interpolate(&v.value)
            .map_err(|e| ApplyError::Validation(format!("{}: env {k}: {e}", d.id)))?;
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
        (LABEL_RESOURCE.to_string(), resource_label(&d.id)),
        (LABEL_HASH.to_string(), d.spec_hash.clone()),
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
        health: s.health.as_ref().map(|h| {
            let t = h.timing();
            HealthConfigSpec {
                test: h.command.docker_test(),
                interval: t.interval,
                timeout: t.timeout,
                retries: t.retries,
                start_period: t.start_period,
            }
        }),
        network: inputs.network.clone(),
        aliases: vec![s.name.value.clone()],
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

/// Carries out a plan of a Service or docker Endpoint.
pub async fn apply(
    rt: &DockerRuntime,
    d: &DesiredResource,
    plan: &ResourcePlan,
) -> Result<Applied, ApplyError> {
    let inputs =
        inputs(d).ok_or_else(|| ApplyError::Task(format!("{} has no container inputs", d.id)))?;
    let engine = rt.engine().await?;
    let mut image = inputs.image.reference(&inputs.content_hash);
    let mut started = false;
    for op in &plan.operations {
        match op {
            Operation::PrepareImage { .. } => image = rt.prepare_image(engine, inputs).await?,
            Operation::RunContainer { replaces } => {
                rt.ensure_network(engine, inputs).await?;
                rt.ensure_volumes(engine, inputs).await?;
                wait_for_dependencies(engine, inputs).await?;
                let config = config(d, inputs, image.clone())?;
                if let Some(old) = replaces {
                    engine.remove(old).await?;
                }
                // A container of that name left from a failed run would block the create.
                engine.remove(&inputs.container_name).await?;
                engine.run(&config).await?;
                started = true;
            }
            Operation::StartContainer { id } => {
                rt.ensure_network(engine, inputs).await?;
                wait_for_dependencies(engine, inputs).await?;
                engine.start(id).await?;
                started = true;
            }
            _ => {}
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

async fn wait_for_dependencies(engine: &Engine, inputs: &ServiceInputs) -> Result<(), ApplyError> {
    for dep in &inputs.waits_for {
        wait_ready(
            engine,
            &dep.container,
            &format!("dependency {}", dep.id),
            dep.health,
            false,
        )
        .await?;
    }
    Ok(())
}

/// Removes the container of a resource no longer in the specs.
pub async fn apply_removed(rt: &DockerRuntime, plan: &ResourcePlan) -> Result<Applied, ApplyError> {
    let engine = rt.engine().await?;
    let mut removed = Vec::new();
    for op in &plan.operations {
        if let Operation::RemoveContainer { id } = op {
            engine.remove(id).await?;
            removed.push(id.chars().take(12).collect::<String>());
        }
    }
    Ok(Applied {
        message: format!("removed container {}", removed.join(", ")),
        outputs: serde_json::Value::Null,
    })
}

impl From<DockerError> for ApplyError {
    fn from(e: DockerError) -> Self {
        ApplyError::Docker(e.to_string())
    }
}

/// Shared handle type kept by stores and apply contexts.
pub type SharedDocker = Arc<DockerRuntime>;

/// Whether the state records a resource that ran in a container (so removed
/// services are still observed and pruned).
pub fn records_use_docker(observed: &Observed) -> bool {
    observed.records.values().any(|r| {
        r.id.kind == Kind::Service
            || (r.id.kind == Kind::Endpoint
                && r.spec_json.get("runtime").and_then(|v| v.as_str()) == Some("docker"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Desired;
    use crate::store::state::ResourceRecord;

    /// The desired state of a one-service project (no engine involved).
    fn desired() -> (tempfile::TempDir, Desired) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("s.yaml"),
            "kind: Project\nname: demo\n---\nkind: Service\nname: web\nimage: busybox:1\n\
             volumes: [\"data:/data\"]\n",
        )
        .expect("write");
        let set = crate::spec::validate::load_and_validate(dir.path()).expect("valid");
        let order: Vec<ResourceId> = set.resources.iter().map(|r| r.id.clone()).collect();
        let desired = crate::kinds::desire(&set, &order).expect("desire");
        (dir, desired)
    }

    fn web(d: &Desired) -> &DesiredResource {
        d.resources
            .iter()
            .find(|r| r.id.kind == Kind::Service)
            .expect("service")
    }

    fn container(hash: &str, state: &str, health: Option<&str>) -> ContainerObs {
        ContainerObs {
            id: "c0ffee".into(),
            name: "demo-web".into(),
            resource: "Service/web".into(),
            hash: hash.into(),
            state: state.into(),
            health: health.map(str::to_string),
            status: format!("{state} for a while"),
        }
    }

    fn observed(c: Option<ContainerObs>, record_hash: Option<&str>) -> Observed {
        let mut o = Observed {
            docker: DockerView::Seen(c.into_iter().map(|c| (c.resource.clone(), c)).collect()),
            ..Observed::default()
        };
        if let Some(h) = record_hash {
            let id = ResourceId::new(Kind::Service, "web");
            o.records.insert(
                id.clone(),
                ResourceRecord {
                    id,
                    spec_hash: h.into(),
                    spec_json: serde_json::json!({}),
                    condition: Condition::Ready,
                    reason: "Applied".into(),
                    message: String::new(),
                    outputs: serde_json::json!({ "container": "demo-web" }),
                    protect: false,
                    last_change_ms: 0,
                    last_apply_ms: 0,
                },
            );
        }
        o
    }

    #[test]
    fn names_and_mounts_are_per_project() {
        let (_dir, d) = desired();
        let Inputs::Service(s) = &web(&d).inputs else {
            panic!("service inputs")
        };
        assert_eq!(s.container_name, "demo-web");
        assert_eq!(s.network, "reconcile-demo");
        assert_eq!(s.mounts[0].from, MountFrom::Volume("demo_data".into()));
    }

    #[test]
    fn each_observation_gets_its_action() {
        let (_dir, d) = desired();
        let w = web(&d);
        let h = w.spec_hash.as_str();
        let cases = [
            (observed(None, None), Action::Create, "new container"),
            (
                observed(None, Some(h)),
                Action::Create,
                "removed out of band",
            ),
            (
                observed(Some(container("old", "running", None)), Some("old")),
                Action::Replace,
                "spec changed",
            ),
            (
                observed(Some(container("old", "running", None)), Some(h)),
                Action::Replace,
                "replaced out of band",
            ),
            (
                observed(Some(container(h, "exited", None)), Some(h)),
                Action::Update,
                "start it",
            ),
            (
                observed(Some(container(h, "running", Some("unhealthy"))), Some(h)),
                Action::Replace,
                "unhealthy",
            ),
            (
                observed(Some(container(h, "running", None)), None),
                Action::Update,
                "adopt",
            ),
            (
                observed(Some(container(h, "running", Some("healthy"))), Some(h)),
                Action::NoOp,
                "",
            ),
        ];
        for (o, action, reason) in cases {
            let plan = diff(w, &o);
            assert_eq!(plan.action, action, "{:?}", plan.reasons);
            assert!(
                plan.reasons.join(" ").contains(reason),
                "{:?}",
                plan.reasons
            );
        }
        let replace = diff(w, &observed(Some(container("old", "running", None)), None));
        assert!(replace.operations.contains(&Operation::RunContainer {
            replaces: Some("c0ffee".into())
        }));
    }

    #[test]
    fn an_unreachable_engine_is_a_planned_change_with_the_reason() {
        let (_dir, d) = desired();
        let o = Observed {
            docker: DockerView::Unreachable("no Docker engine reachable at unix:///x".into()),
            ..Observed::default()
        };
        let plan = diff(web(&d), &o);
        assert_eq!(plan.action, Action::Create);
        assert!(plan.reasons[0].contains("unix:///x"));
    }

    #[test]
    fn containers_of_removed_resources_are_pruned() {
        let o = observed(Some(container("h", "running", None)), None);
        let plan = diff_removed(&ResourceId::new(Kind::Service, "web"), &o).expect("pruned");
        assert_eq!(plan.action, Action::Delete);
        assert_eq!(
            plan.operations,
            vec![
                Operation::RemoveContainer {
                    id: "c0ffee".into()
                },
                Operation::Forget
            ]
        );
        assert!(diff_removed(&ResourceId::new(Kind::Service, "other"), &o).is_none());
    }
}
