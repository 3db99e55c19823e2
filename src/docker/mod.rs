//! The Docker Engine, through bollard. The only module that knows bollard: the
//! rest of the crate speaks in [`ContainerConfig`], [`ContainerObs`] and
//! [`DockerError`], so the planner stays pure and tests of it need no engine.
//!
//! Objects the controller creates carry labels ([`LABEL_PROJECT`],
//! [`LABEL_RESOURCE`], [`LABEL_HASH`]): one labelled list call observes
//! everything a project owns, and a changed hash means recreate.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, Mount, MountType,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use futures_util::StreamExt;
use thiserror::Error;

pub mod swarm;

/// Label naming the project that owns an object.
pub const LABEL_PROJECT: &str = "reconcile.project";
/// Label naming the resource (`Service/web`) a container realises.
pub const LABEL_RESOURCE: &str = "reconcile.resource";
/// Label holding the desired-state hash the container was created from.
pub const LABEL_HASH: &str = "reconcile.hash";

/// How long one engine request may take before the engine counts as stuck.
const REQUEST_TIMEOUT: u64 = 120;

/// Errors talking to the engine, each naming what was being done.
#[derive(Debug, Clone, Error)]
pub enum DockerError {
    /// No engine answered.
    #[error(
        "no Docker engine reachable at {host} ({reason}); start dockerd or set DOCKER_HOST to the engine's socket"
    )]
    Unreachable {
        /// The socket or URL tried.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// The engine refused or failed a request.
    #[error("Docker: {what}: {message}")]
    Api {
        /// What was being done.
        what: String,
        /// The engine's message.
        message: String,
    },
    /// An image build failed.
    #[error("building image {tag} failed: {message}")]
    Build {
        /// The tag being built.
        tag: String,
        /// The builder's last error.
        message: String,
    },
}

impl DockerError {
    fn api(what: impl Into<String>, e: bollard::errors::Error) -> DockerError {
        let message = match e {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message,
            other => other.to_string(),
        };
        DockerError::Api {
            what: what.into(),
            message,
        }
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// A connected engine, its API version negotiated.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
}

/// A container the project owns, as one list call shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerObs {
    /// Container id.
    pub id: String,
    /// Container name (without the leading `/`).
    pub name: String,
    /// The resource label (`Service/web`).
    pub resource: String,
    /// The hash label it was created with.
    pub hash: String,
    /// `running`, `exited`, `created`, `restarting`, `paused`, `dead`.
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`, or `None` without a health check.
    pub health: Option<String>,
    /// Docker's status line (`Exited (1) 3 seconds ago`).
    pub status: String,
}

/// Detail of one container, for waiting on it.
#[derive(Debug, Clone, Default)]
pub struct ContainerDetail {
    /// `running`, `exited`, …
    pub state: String,
    /// Health status when it has a check.
    pub health: Option<String>,
    /// Output of the latest health check.
    pub last_check: Option<String>,
    /// Exit code of the last run.
    pub exit_code: i64,
    /// Times Docker restarted it.
    pub restarts: i64,
    /// Host ports published per container port key (`5432/tcp`).
    pub published: HashMap<String, u16>,
    /// Its address on its (first) network; reachable from the host on Linux.
    pub ip: Option<String>,
}

/// Where a mount comes from, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountFrom {
    /// A named volume (full engine name).
    Volume(String),
    /// An absolute host path.
    Bind(String),
}

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    /// Source.
    pub from: MountFrom,
    /// Path in the container.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// `80/tcp`.
    pub container: String,
    /// Host address, all interfaces when `None`.
    pub host_ip: Option<String>,
    /// Host port, engine-chosen when `None`.
    pub host_port: Option<u16>,
}

/// A health check in engine terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfigSpec {
    /// `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    /// Between checks.
    pub interval: Duration,
    /// Per check.
    pub timeout: Duration,
    /// Failures before unhealthy.
    pub retries: u32,
    /// Grace period.
    pub start_period: Duration,
}

/// Everything needed to create a container; secrets already resolved here and
/// nowhere else.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Entrypoint override.
    pub entrypoint: Option<Vec<String>>,
    /// Command override.
    pub command: Option<Vec<String>>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// Published ports.
    pub ports: Vec<PortConfig>,
    /// Mounts.
    pub mounts: Vec<MountConfig>,
    /// `no`, `always`, `on-failure`, `unless-stopped`.
    pub restart: String,
    /// CPU limit in CPUs.
    pub cpus: Option<f64>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Health check.
    pub health: Option<HealthConfigSpec>,
    /// Network to join.
    pub network: String,
    /// Names it answers to on the network.
    pub aliases: Vec<String>,
}

/// A mount as the engine takes it (containers and swarm tasks alike).
fn engine_mount(m: &MountConfig) -> Mount {
    let (typ, source) = match &m.from {
        MountFrom::Volume(v) => (MountType::VOLUME, v.clone()),
        MountFrom::Bind(p) => (MountType::BIND, p.clone()),
    };
    Mount {
        target: Some(m.target.clone()),
        source: Some(source),
        typ: Some(typ),
        read_only: Some(m.read_only),
        ..Default::default()
    }
}

/// A health check as the engine takes it (containers and swarm tasks alike).
fn engine_health(h: &HealthConfigSpec) -> HealthConfig {
    HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(nanos(h.interval)),
        timeout: Some(nanos(h.timeout)),
        retries: Some(i64::from(h.retries)),
        start_period: Some(nanos(h.start_period)),
        start_interval: None,
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn project_filter(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_PROJECT}={project}")],
    )])
}

/// The health word inside a status line: `Up 3 seconds (healthy)`.
fn health_from_status(status: &str) -> Option<String> {
    if status.contains("(healthy)") {
        Some("healthy".into())
    } else if status.contains("(unhealthy)") {
        Some("unhealthy".into())
    } else if status.contains("(health: starting)") {
        Some("starting".into())
    } else {
        None
    }
}

impl Engine {
    /// Connects to `DOCKER_HOST` (or the default socket) and negotiates the API
    /// version down to what the engine speaks (1.41 and newer).
    pub async fn connect() -> Result<Engine, DockerError> {
        let host = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
        let unreachable = |reason: String| DockerError::Unreachable {
            host: host.clone(),
            reason,
        };
        let docker = Docker::connect_with_defaults()
            .map_err(|e| unreachable(e.to_string()))?
            .with_timeout(Duration::from_secs(REQUEST_TIMEOUT));
        let docker = tokio::time::timeout(Duration::from_secs(5), docker.negotiate_version())
            .await
            .map_err(|_| unreachable("no answer within 5 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Engine { docker, host })
    }

    /// The socket or URL this engine was reached at.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Every container (running or not) the project owns.
    pub async fn list_owned(&self, project: &str) -> Result<Vec<ContainerObs>, DockerError> {
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&project_filter(project))
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| DockerError::api("listing containers", e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let status = c.status.unwrap_or_default();
                Some(ContainerObs {
                    id: c.id?,
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    resource: labels.get(LABEL_RESOURCE)?.clone(),
                    hash: labels.get(LABEL_HASH).cloned().unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    health: health_from_status(&status),
                    status,
                })
            })
            .collect())
    }

    /// Creates the project's network unless it exists: a bridge, or with
    /// `overlay` an attachable overlay network spanning the swarm (plain
    /// containers can join it too, so a project may mix both runtimes).
    pub async fn ensure_network(
        &self,
        name: &str,
        project: &str,
        overlay: bool,
    ) -> Result<(), DockerError> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let existing = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| DockerError::api(format!("listing networks named {name}"), e))?;
        // The name filter matches substrings; only an exact name counts.
        let driver = if overlay { "overlay" } else { "bridge" };
        if let Some(n) = existing.iter().find(|n| n.name.as_deref() == Some(name)) {
            let has = n.driver.as_deref().unwrap_or("bridge");
            if has != driver {
                return Err(DockerError::Api {
                    what: format!("network {name}"),
                    message: format!(
                        "it is a {has} network and the project's workloads now need {driver}; \
                         run `reconcile destroy` (volumes are kept) and apply again"
                    ),
                });
            }
            return Ok(());
        }
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.to_string(),
                driver: Some(driver.into()),
                attachable: overlay.then_some(true),
                labels: Some(HashMap::from([(LABEL_PROJECT.into(), project.into())])),
                ..Default::default()
            })
            .await
            .map_err(|e| DockerError::api(format!("creating network {name}"), e))?;
        Ok(())
    }

    /// Names of the project's networks.
    pub async fn list_networks(&self, project: &str) -> Result<Vec<String>, DockerError> {
        let list = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new()
                    .filters(&project_filter(project))
                    .build(),
            ))
            .await
            .map_err(|e| DockerError::api("listing networks", e))?;
        Ok(list.into_iter().filter_map(|n| n.name).collect())
    }

    /// Removes the network if it exists. The tasks of a swarm service just
    /// removed leave it asynchronously: while it still has endpoints, the
    /// removal is tried again for up to 30 s.
    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        let start = std::time::Instant::now();
        loop {
            match self.docker.remove_network(name).await {
                Ok(()) => break,
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e)
                    if e.to_string().contains("active endpoints")
                        && start.elapsed() < Duration::from_secs(30) =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(DockerError::api(format!("removing network {name}"), e)),
            }
        }
        // A swarm-scoped network is removed by the manager and then on the
        // node: wait until the node no longer lists it, so "removed" is true
        // when this returns.
        while start.elapsed() < Duration::from_secs(45) {
            match self
                .docker
                .inspect_network(
                    name,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
            {
                Err(e) if is_not_found(&e) => return Ok(()),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        Ok(())
    }

    /// Creates a named volume labelled with the project (idempotent in the engine).
    pub async fn ensure_volume(&self, name: &str, project: &str) -> Result<(), DockerError> {
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(HashMap::from([(LABEL_PROJECT.into(), project.into())])),
                ..Default::default()
            })
            .await
            .map_err(|e| DockerError::api(format!("creating volume {name}"), e))?;
        Ok(())
    }

    /// Names of the project's volumes.
    pub async fn list_volumes(&self, project: &str) -> Result<Vec<String>, DockerError> {
        let list = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new()
                    .filters(&project_filter(project))
                    .build(),
            ))
            .await
            .map_err(|e| DockerError::api("listing volumes", e))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }

    /// Removes a volume (its data is gone).
    pub async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptionsBuilder::new().build()))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(DockerError::api(format!("removing volume {name}"), e)),
        }
    }

    /// Whether the engine has this image locally.
    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(DockerError::api(format!("inspecting image {image}"), e)),
        }
    }

    /// Pulls an image, with credentials from the Docker config when it has some
    /// for the image's registry. `on_bytes(done, total)` follows the engine's
    /// progress stream: bytes downloaded out of the layers' sizes known so
    /// far (a layer's size is known once it starts downloading).
    pub async fn pull(
        &self,
        image: &str,
        mut on_bytes: impl FnMut(u64, u64) + Send,
    ) -> Result<(), DockerError> {
        let opts = CreateImageOptionsBuilder::new().from_image(image).build();
        let creds =
            crate::docker_auth::credentials_for(image).map(|c| bollard::auth::DockerCredentials {
                username: c.username,
                password: c.password,
                serveraddress: Some(c.server),
                ..Default::default()
            });
        let mut stream = self.docker.create_image(Some(opts), None, creds);
        let mut layers = PullProgress::default();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| DockerError::api(format!("pulling {image}"), e))?;
            if let Some(detail) = info.error_detail {
                return Err(DockerError::Api {
                    what: format!("pulling {image}"),
                    message: detail.message.unwrap_or_default(),
                });
            }
            if layers.observe(&info) {
                on_bytes(layers.done(), layers.total());
            }
        }
        Ok(())
    }

    /// Builds `tag` from a tar build context.
    pub async fn build(
        &self,
        tag: &str,
        dockerfile: &str,
        context_tar: Vec<u8>,
        labels: &HashMap<String, String>,
    ) -> Result<(), DockerError> {
        let opts = BuildImageOptionsBuilder::new()
            .t(tag)
            .dockerfile(dockerfile)
            .rm(true)
            .forcerm(true)
            .labels(labels)
            .build();
        let body = bollard::body_full(bytes::Bytes::from(context_tar));
        let mut stream = self.docker.build_image(opts, None, Some(body));
        let mut last_lines: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| DockerError::Build {
                tag: tag.to_string(),
                message: e.to_string(),
            })?;
            if let Some(detail) = info.error_detail {
                return Err(DockerError::Build {
                    tag: tag.to_string(),
                    message: format!(
                        "{}{}",
                        detail.message.unwrap_or_default(),
                        if last_lines.is_empty() {
                            String::new()
                        } else {
                            format!("\n  {}", last_lines.join("\n  "))
                        }
                    ),
                });
            }
            if let Some(s) = info.stream {
                let s = s.trim_end().to_string();
                if !s.is_empty() {
                    last_lines.push(s);
                    if last_lines.len() > 5 {
                        last_lines.remove(0);
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the images built for a project (labelled with it); images in use
    /// by a container are left alone.
    pub async fn remove_built_images(&self, project: &str) -> Result<usize, DockerError> {
        let opts = bollard::query_parameters::ListImagesOptionsBuilder::new()
            .filters(&project_filter(project))
            .build();
        let images = self
            .docker
            .list_images(Some(opts))
            .await
            .map_err(|e| DockerError::api("listing images", e))?;
        let mut removed = 0;
        for image in images {
            let opts = bollard::query_parameters::RemoveImageOptionsBuilder::new()
                .force(true)
                .build();
            // Several tags may point at one image: removing by tag keeps the rest.
            for tag in image.repo_tags.iter().filter(|t| !t.starts_with("<none>")) {
                match self
                    .docker
                    .remove_image(tag, Some(opts.clone()), None)
                    .await
                {
                    Ok(_) => removed += 1,
                    Err(e) if is_not_found(&e) => {}
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 409,
                        ..
                    }) => {}
                    Err(e) => return Err(DockerError::api(format!("removing image {tag}"), e)),
                }
            }
        }
        Ok(removed)
    }

    /// Adds another tag to an image.
    pub async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::TagImageOptionsBuilder::new()
            .repo(repo)
            .tag(tag)
            .build();
        self.docker
            .tag_image(image, Some(opts))
            .await
            .map_err(|e| DockerError::api(format!("tagging {image} as {repo}:{tag}"), e))
    }

    /// Creates and starts a container; returns its id.
    pub async fn run(&self, c: &ContainerConfig) -> Result<String, DockerError> {
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &c.ports {
            port_bindings
                .entry(p.container.clone())
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port.map(|h| h.to_string()),
                });
        }
        let mounts = c.mounts.iter().map(engine_mount).collect();
        let restart = match c.restart.as_str() {
            "always" => RestartPolicyNameEnum::ALWAYS,
            "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
            "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
            _ => RestartPolicyNameEnum::NO,
        };
        let host_config = HostConfig {
            port_bindings: Some(port_bindings),
            mounts: Some(mounts),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            nano_cpus: c.cpus.map(|n| (n * 1e9) as i64),
            memory: c.memory,
            network_mode: Some(c.network.clone()),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(c.image.clone()),
            entrypoint: c.entrypoint.clone(),
            cmd: c.command.clone(),
            env: Some(c.env.clone()),
            labels: Some(c.labels.clone()),
            exposed_ports: Some(c.ports.iter().map(|p| p.container.clone()).collect()),
            healthcheck: c.health.as_ref().map(engine_health),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    c.network.clone(),
                    EndpointSettings {
                        aliases: Some(c.aliases.clone()),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&c.name).build()),
                body,
            )
            .await
            .map_err(|e| DockerError::api(format!("creating container {}", c.name), e))?;
        self.start(&created.id).await?;
        Ok(created.id)
    }

    /// Starts a stopped container.
    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| DockerError::api(format!("starting container {id}"), e))
    }

    /// Removes a container, stopping it first; gone already is fine.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let opts = RemoveContainerOptionsBuilder::new().force(true).build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(DockerError::api(format!("removing container {id}"), e)),
        }
    }

    /// The state, health and ports of one container; `None` when it is gone.
    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerDetail>, DockerError> {
        let info = match self.docker.inspect_container(id, None).await {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(DockerError::api(format!("inspecting container {id}"), e)),
        };
        let state = info.state.unwrap_or_default();
        let health = state.health.as_ref();
        let ip = info
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|n| n.values().find_map(|e| e.ip_address.clone()))
            .filter(|ip| !ip.is_empty());
        let published = info
            .network_settings
            .and_then(|n| n.ports)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(key, bindings)| {
                let port = bindings?
                    .iter()
                    .find_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())?;
                Some((key, port))
            })
            .collect();
        Ok(Some(ContainerDetail {
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            health: health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
            last_check: health
                .and_then(|h| h.log.as_ref())
                .and_then(|l| l.last())
                .and_then(|r| r.output.clone())
                .map(|o| o.trim().to_string()),
            exit_code: state.exit_code.unwrap_or(0),
            restarts: info.restart_count.unwrap_or(0),
            published,
            ip,
        }))
    }

    /// The last `n` lines a container wrote to stdout and stderr.
    pub async fn logs_tail(&self, id: &str, n: usize) -> Vec<String> {
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&n.to_string())
            .build();
        let mut stream = self.docker.logs(id, Some(opts));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        text.lines()
            .map(str::to_string)
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// The bytes of a pull, summed over its layers from the engine's stream of
/// `CreateImageInfo` events: per layer (`id`), `Downloading` carries
/// `progressDetail.current` of `.total`; once a layer is downloaded
/// (`Verifying Checksum`, `Download complete`, `Extracting`, `Pull complete`)
/// all of it counts; layers the engine already has (`Already exists`) and
/// events about the image rather than a layer count nothing.
#[derive(Debug, Default)]
struct PullProgress {
    /// Bytes downloaded and size, per layer id.
    layers: HashMap<String, (u64, u64)>,
}

impl PullProgress {
    /// Takes one event; true when the figures changed.
    fn observe(&mut self, info: &bollard::models::CreateImageInfo) -> bool {
        let (Some(id), Some(status)) = (&info.id, &info.status) else {
            return false;
        };
        let detail = |f: fn(&bollard::models::ProgressDetail) -> Option<i64>| {
            info.progress_detail
                .as_ref()
                .and_then(f)
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(0)
        };
        let before = self.layers.get(id).copied();
        match status.as_str() {
            "Downloading" => {
                let total = detail(|d| d.total);
                let entry = self.layers.entry(id.clone()).or_default();
                if total > 0 {
                    entry.1 = total;
                }
                entry.0 = detail(|d| d.current).min(entry.1);
            }
            "Verifying Checksum" | "Download complete" | "Extracting" | "Pull complete" => {
                let entry = self.layers.entry(id.clone()).or_default();
                if entry.1 == 0 {
                    // A layer too small to report its download: the
                    // extraction's total is its size.
                    entry.1 = detail(|d| d.total);
                }
                entry.0 = entry.1;
            }
            _ => return false,
        }
        self.layers.get(id).copied() != before
    }

    /// Bytes downloaded so far.
    fn done(&self) -> u64 {
        self.layers.values().map(|l| l.0).sum()
    }

    /// Size of the layers whose size is known.
    fn total(&self) -> u64 {
        self.layers.values().map(|l| l.1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{CreateImageInfo, ProgressDetail};

    fn event(id: Option<&str>, status: &str, progress: Option<(i64, i64)>) -> CreateImageInfo {
        CreateImageInfo {
            id: id.map(str::to_string),
            status: Some(status.to_string()),
            progress_detail: Some(ProgressDetail {
                current: progress.map(|p| p.0),
                total: progress.map(|p| p.1),
            }),
            error_detail: None,
        }
    }

    #[test]
    fn pull_progress_sums_layers_from_the_engine_stream() {
        let mut p = PullProgress::default();
        let mut seen = Vec::new();
        let stream = [
            event(Some("16.04"), "Pulling from library/ubuntu", None),
            event(Some("a1"), "Pulling fs layer", None),
            event(Some("b2"), "Pulling fs layer", None),
            event(Some("c3"), "Already exists", None),
            event(Some("b2"), "Waiting", None),
            event(Some("a1"), "Downloading", Some((1_000, 10_000))),
            event(Some("a1"), "Downloading", Some((6_000, 10_000))),
            event(Some("b2"), "Downloading", Some((500, 2_000))),
            event(Some("a1"), "Verifying Checksum", None),
            event(Some("a1"), "Download complete", None),
            event(Some("a1"), "Extracting", Some((4_000, 10_000))),
            event(Some("b2"), "Download complete", None),
            event(Some("a1"), "Pull complete", None),
            event(Some("b2"), "Pull complete", None),
            event(Some("d4"), "Extracting", Some((100, 300))),
            event(None, "Digest: sha256:0123", None),
            event(
                None,
                "Status: Downloaded newer image for ubuntu:16.04",
                None,
            ),
        ];
        for e in &stream {
            if p.observe(e) {
                seen.push((p.done(), p.total()));
            }
        }
        assert_eq!(
            seen,
            [
                (1_000, 10_000),
                (6_000, 10_000),
                (6_500, 12_000),
                (10_500, 12_000),
                (12_000, 12_000),
                (12_300, 12_300),
            ]
        );
    }

    #[test]
    fn health_words_in_status_lines() {
        assert_eq!(
            health_from_status("Up 3 seconds (healthy)").as_deref(),
            Some("healthy")
        );
        assert_eq!(
            health_from_status("Up 1 second (health: starting)").as_deref(),
            Some("starting")
        );
        assert_eq!(health_from_status("Exited (1) 2 seconds ago"), None);
    }
}
