//! Swarm services, tasks and secrets through bollard. Like its parent, the
//! only place that knows bollard's swarm types: the runtime speaks in
//! [`SwarmServiceConfig`], [`SwarmServiceObs`] and [`TaskObs`].
//!
//! Services carry the same labels containers do (project, resource, hash);
//! their tasks' containers carry none of ours, so the container list never
//! mistakes a replica for a container the project runs by itself.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    Limit, NetworkAttachmentConfig, ResourceObject, SecretSpec, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig, ServiceSpecUpdateConfig, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets,
    TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
};
use bollard::query_parameters::{
    InspectServiceOptions, ListSecretsOptionsBuilder, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder, UpdateServiceOptionsBuilder,
};

use super::{
    DockerError, Engine, HealthConfigSpec, LABEL_HASH, LABEL_PROJECT, LABEL_RESOURCE, MountConfig,
    engine_health, engine_mount, is_not_found, nanos, project_filter,
};

/// Whether the engine can run swarm services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmRole {
    /// A manager of an active swarm: services can be created here.
    Manager,
    /// Not a manager (no swarm, a worker, or a swarm in error); the text says which.
    Not(String),
}

/// A swarm service the project owns, as one list call shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwarmServiceObs {
    /// Service id.
    pub id: String,
    /// Service name.
    pub name: String,
    /// The resource label (`Service/web`).
    pub resource: String,
    /// The hash label it was created or last updated with.
    pub hash: String,
    /// Replicas its spec asks for.
    pub replicas: u64,
    /// Tasks running now (from the engine's service status).
    pub running: u64,
    /// The spec's version, needed to update it.
    pub version: u64,
    /// The last update's state: `updating`, `paused`, `completed`,
    /// `rollback_started`, `rollback_paused`, `rollback_completed`.
    pub update_state: Option<String>,
    /// The engine's message about that update.
    pub update_message: Option<String>,
    /// When that update started (tells a new update from the previous one).
    pub update_started: Option<String>,
    /// Names of the secrets its tasks mount.
    pub secrets: Vec<String>,
}

/// One task of a service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskObs {
    /// Task id.
    pub id: String,
    /// Replica slot (1-based).
    pub slot: i64,
    /// `running`, `starting`, `failed`, `shutdown`, `rejected`, …
    pub state: String,
    /// What the orchestrator wants it to be.
    pub desired_state: String,
    /// The error that ended it, if any.
    pub err: Option<String>,
    /// Its status message.
    pub message: String,
    /// When its status last changed (engine timestamp).
    pub timestamp: String,
    /// When it was created (engine timestamp).
    pub created_at: String,
    /// The service spec version it runs.
    pub version: u64,
}

/// A secret a task reads as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    /// The secret's id.
    pub id: String,
    /// The secret's name.
    pub name: String,
    /// File name under `/run/secrets/`.
    pub file: String,
}

/// A rolling update or rollback policy, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateConfig {
    /// Tasks at a time.
    pub parallelism: u64,
    /// Pause between batches.
    pub delay: Option<Duration>,
    /// `stop-first` or `start-first`.
    pub order: String,
    /// `rollback`, `pause` or `continue`.
    pub failure_action: String,
    /// Watch time after each task starts.
    pub monitor: Option<Duration>,
    /// Failures tolerated, as a share of tasks.
    pub max_failure_ratio: Option<f64>,
}

/// A swarm restart policy, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartConfig {
    /// `none`, `on-failure` or `any`.
    pub condition: String,
    /// Wait between restarts.
    pub delay: Option<Duration>,
    /// Restarts before giving up.
    pub max_attempts: Option<u64>,
    /// Window in which restarts count.
    pub window: Option<Duration>,
}

/// Everything needed to create or update a service; secrets are referenced,
/// never inlined.
#[derive(Debug, Clone, Default)]
pub struct SwarmServiceConfig {
    /// Service name.
    pub name: String,
    /// Service labels (project, resource, hash).
    pub labels: HashMap<String, String>,
    /// Image reference.
    pub image: String,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command.
    pub command: Option<Vec<String>>,
    /// `KEY=value` pairs with no secret in them.
    pub env: Vec<String>,
    /// Mounts.
    pub mounts: Vec<MountConfig>,
    /// Secrets as files.
    pub secrets: Vec<SecretMount>,
    /// Health check.
    pub health: Option<HealthConfigSpec>,
    /// The overlay network and the name other services reach it by.
    pub network: String,
    /// Aliases on that network.
    pub aliases: Vec<String>,
    /// Replicas.
    pub replicas: u64,
    /// `vip` or `dnsrr`.
    pub endpoint_mode: String,
    /// Published ports: (container port, protocol, published port).
    pub ports: Vec<(u16, String, Option<u16>)>,
    /// Update policy.
    pub update: Option<UpdateConfig>,
    /// Rollback policy.
    pub rollback: Option<UpdateConfig>,
    /// When the swarm restarts a task.
    pub restart: Option<RestartConfig>,
    /// Limits: nano-CPUs, memory bytes.
    pub limits: (Option<i64>, Option<i64>),
    /// Reservations: nano-CPUs, memory bytes.
    pub reservations: (Option<i64>, Option<i64>),
    /// Placement constraints.
    pub constraints: Vec<String>,
}

fn parsed<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

impl SwarmServiceConfig {
    /// The engine's service spec.
    fn engine_spec(&self) -> ServiceSpec {
        let ports_mode = if self.endpoint_mode == "dnsrr" {
            // DNS round robin has no virtual IP for the routing mesh to use.
            EndpointPortConfigPublishModeEnum::HOST
        } else {
            EndpointPortConfigPublishModeEnum::INGRESS
        };
        let update = |u: &UpdateConfig| ServiceSpecUpdateConfig {
            parallelism: Some(u.parallelism as i64),
            delay: u.delay.map(nanos),
            failure_action: parsed(&u.failure_action),
            monitor: u.monitor.map(nanos),
            max_failure_ratio: u.max_failure_ratio,
            order: parsed(&u.order),
        };
        let rollback = |u: &UpdateConfig| ServiceSpecRollbackConfig {
            parallelism: Some(u.parallelism as i64),
            delay: u.delay.map(nanos),
            // A rollback cannot itself roll back: `rollback` means pause.
            failure_action: parsed(if u.failure_action == "continue" {
                "continue"
            } else {
                "pause"
            }),
            monitor: u.monitor.map(nanos),
            max_failure_ratio: u.max_failure_ratio,
            order: parsed(&u.order),
        };
        ServiceSpec {
            name: Some(self.name.clone()),
            labels: Some(self.labels.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(self.image.clone()),
                    command: self.entrypoint.clone(),
                    args: self.command.clone(),
                    env: Some(self.env.clone()),
                    mounts: Some(self.mounts.iter().map(engine_mount).collect()),
                    health_check: self.health.as_ref().map(engine_health),
                    secrets: Some(
                        self.secrets
                            .iter()
                            .map(|s| TaskSpecContainerSpecSecrets {
                                file: Some(TaskSpecContainerSpecFile {
                                    name: Some(s.file.clone()),
                                    uid: Some("0".into()),
                                    gid: Some("0".into()),
                                    mode: Some(0o444),
                                }),
                                secret_id: Some(s.id.clone()),
                                secret_name: Some(s.name.clone()),
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                resources: Some(TaskSpecResources {
                    limits: Some(Limit {
                        nano_cpus: self.limits.0,
                        memory_bytes: self.limits.1,
                        pids: None,
                    }),
                    reservations: Some(ResourceObject {
                        nano_cpus: self.reservations.0,
                        memory_bytes: self.reservations.1,
                        generic_resources: None,
                    }),
                    ..Default::default()
                }),
                restart_policy: self.restart.as_ref().map(|r| TaskSpecRestartPolicy {
                    condition: parsed(&r.condition),
                    delay: r.delay.map(nanos),
                    max_attempts: r.max_attempts.map(|m| m as i64),
                    window: r.window.map(nanos),
                }),
                placement: Some(TaskSpecPlacement {
                    constraints: Some(self.constraints.clone()),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(self.network.clone()),
                    aliases: Some(self.aliases.clone()),
                    driver_opts: None,
                }]),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(self.replicas as i64),
                }),
                ..Default::default()
            }),
            update_config: self.update.as_ref().map(update),
            rollback_config: self.rollback.as_ref().map(rollback),
            networks: None,
            endpoint_spec: Some(EndpointSpec {
                mode: Some(if self.endpoint_mode == "dnsrr" {
                    EndpointSpecModeEnum::DNSRR
                } else {
                    EndpointSpecModeEnum::VIP
                }),
                ports: Some(
                    self.ports
                        .iter()
                        .map(|(target, protocol, published)| EndpointPortConfig {
                            protocol: parsed(protocol),
                            target_port: Some(i64::from(*target)),
                            published_port: published.map(i64::from),
                            publish_mode: Some(ports_mode),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
        }
    }
}

fn service_obs(s: bollard::models::Service) -> Option<SwarmServiceObs> {
    let spec = s.spec?;
    let labels = spec.labels.unwrap_or_default();
    let secrets = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.secrets.as_ref())
        .map(|list| list.iter().filter_map(|x| x.secret_name.clone()).collect())
        .unwrap_or_default();
    let status = s.service_status.unwrap_or_default();
    let update = s.update_status.unwrap_or_default();
    Some(SwarmServiceObs {
        id: s.id?,
        name: spec.name.unwrap_or_default(),
        resource: labels.get(LABEL_RESOURCE)?.clone(),
        hash: labels.get(LABEL_HASH).cloned().unwrap_or_default(),
        replicas: spec
            .mode
            .and_then(|m| m.replicated)
            .and_then(|r| r.replicas)
            .unwrap_or(1)
            .max(0) as u64,
        running: status.running_tasks.unwrap_or(0),
        version: s.version.and_then(|v| v.index).unwrap_or(0),
        update_state: update
            .state
            .map(|st| st.to_string())
            .filter(|st| !st.is_empty()),
        update_message: update.message.filter(|m| !m.is_empty()),
        update_started: update.started_at.map(|d| d.to_string()),
        secrets,
    })
}

impl Engine {
    /// Whether this engine manages a swarm.
    pub async fn swarm_role(&self) -> Result<SwarmRole, DockerError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| DockerError::api("reading the engine's swarm state", e))?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm
            .local_node_state
            .map(|s| s.to_string())
            .unwrap_or_default();
        Ok(match (state.as_str(), swarm.control_available) {
            ("active", Some(true)) => SwarmRole::Manager,
            ("active", _) => SwarmRole::Not(
                "this engine is a swarm worker; point DOCKER_HOST at a manager".into(),
            ),
            ("", _) | ("inactive", _) => SwarmRole::Not(
                "this engine is not part of a swarm; run `docker swarm init` (or join one)".into(),
            ),
            (other, _) => SwarmRole::Not(format!(
                "the swarm is {other}{}",
                swarm.error.map(|e| format!(": {e}")).unwrap_or_default()
            )),
        })
    }

    /// The project's swarm services.
    pub async fn list_services(&self, project: &str) -> Result<Vec<SwarmServiceObs>, DockerError> {
        let list = self
            .docker
            .list_services(Some(
                ListServicesOptionsBuilder::new()
                    .filters(&project_filter(project))
                    .status(true)
                    .build(),
            ))
            .await
            .map_err(|e| DockerError::api("listing swarm services", e))?;
        Ok(list.into_iter().filter_map(service_obs).collect())
    }

    /// One service by name or id, `None` when it does not exist.
    pub async fn inspect_service(
        &self,
        name: &str,
    ) -> Result<Option<SwarmServiceObs>, DockerError> {
        match self
            .docker
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        {
            Ok(s) => Ok(service_obs(s)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(DockerError::api(format!("inspecting service {name}"), e)),
        }
    }

    /// Creates a service; returns its id.
    pub async fn create_service(&self, c: &SwarmServiceConfig) -> Result<String, DockerError> {
        let created = self
            .docker
            .create_service(c.engine_spec(), None)
            .await
            .map_err(|e| DockerError::api(format!("creating service {}", c.name), e))?;
        Ok(created.id.unwrap_or_default())
    }

    /// Replaces a service's spec at `version`: the swarm rolls its tasks by
    /// the update policy.
    pub async fn update_service(
        &self,
        id: &str,
        version: u64,
        c: &SwarmServiceConfig,
    ) -> Result<(), DockerError> {
        let opts = UpdateServiceOptionsBuilder::new()
            .version(version as i32)
            .build();
        let reply = self
            .docker
            .update_service(id, c.engine_spec(), opts, None)
            .await
            .map_err(|e| DockerError::api(format!("updating service {}", c.name), e))?;
        let warnings = reply.warnings.unwrap_or_default();
        if !warnings.is_empty() {
            tracing::warn!(service = %c.name, warnings = ?warnings, "the engine warned on update");
        }
        Ok(())
    }

    /// Removes a service (its tasks stop asynchronously).
    pub async fn remove_service(&self, id: &str) -> Result<(), DockerError> {
        match self.docker.delete_service(id).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(DockerError::api(format!("removing service {id}"), e)),
        }
    }

    /// The tasks of a service, newest first.
    pub async fn list_tasks(&self, service: &str) -> Result<Vec<TaskObs>, DockerError> {
        let filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        let list = self
            .docker
            .list_tasks(Some(
                ListTasksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| DockerError::api(format!("listing the tasks of {service}"), e))?;
        let mut tasks: Vec<TaskObs> = list
            .into_iter()
            .map(|t| {
                let status = t.status.unwrap_or_default();
                TaskObs {
                    id: t.id.unwrap_or_default(),
                    slot: t.slot.unwrap_or(0),
                    state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                    desired_state: t.desired_state.map(|s| s.to_string()).unwrap_or_default(),
                    err: status.err.filter(|e| !e.is_empty()),
                    message: status.message.unwrap_or_default(),
                    timestamp: status.timestamp.map(|d| d.to_string()).unwrap_or_default(),
                    created_at: t.created_at.map(|d| d.to_string()).unwrap_or_default(),
                    version: t.version.and_then(|v| v.index).unwrap_or(0),
                }
            })
            .collect();
        tasks.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(tasks)
    }

    /// The id of the secret `name`, creating it with `data` when missing.
    /// Secrets are immutable: a new value is a new name.
    pub async fn ensure_secret(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        data: &[u8],
    ) -> Result<String, DockerError> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let existing = self
            .docker
            .list_secrets(Some(
                ListSecretsOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| DockerError::api(format!("listing secrets named {name}"), e))?;
        if let Some(s) = existing
            .into_iter()
            .find(|s| s.spec.as_ref().and_then(|sp| sp.name.as_deref()) == Some(name))
        {
            return Ok(s.id.unwrap_or_default());
        }
        let created = self
            .docker
            .create_secret(SecretSpec {
                name: Some(name.to_string()),
                labels: Some(labels),
                data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
                ..Default::default()
            })
            .await
            .map_err(|e| DockerError::api(format!("creating secret {name}"), e))?;
        Ok(created.id)
    }

    /// The project's secrets: (id, name, resource label).
    pub async fn list_secrets(
        &self,
        project: &str,
    ) -> Result<Vec<(String, String, String)>, DockerError> {
        let list = self
            .docker
            .list_secrets(Some(
                ListSecretsOptionsBuilder::new()
                    .filters(&project_filter(project))
                    .build(),
            ))
            .await
            .map_err(|e| DockerError::api("listing secrets", e))?;
        Ok(list
            .into_iter()
            .filter_map(|s| {
                let spec = s.spec?;
                let labels = spec.labels.unwrap_or_default();
                Some((
                    s.id?,
                    spec.name.unwrap_or_default(),
                    labels.get(LABEL_RESOURCE).cloned().unwrap_or_default(),
                ))
            })
            .collect())
    }

    /// Removes a secret, waiting (up to `patience`) while a stopping task
    /// still holds it.
    pub async fn remove_secret(&self, id: &str, patience: Duration) -> Result<(), DockerError> {
        let start = std::time::Instant::now();
        loop {
            match self.docker.delete_secret(id).await {
                Ok(()) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if start.elapsed() < patience => {
                    tracing::debug!(secret = id, error = %e, "secret still in use; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(DockerError::api(format!("removing secret {id}"), e)),
            }
        }
    }
}

/// The labels every swarm object of a resource carries.
pub fn labels(project: &str, resource: &str, hash: Option<&str>) -> HashMap<String, String> {
    let mut l = HashMap::from([
        (LABEL_PROJECT.to_string(), project.to_string()),
        (LABEL_RESOURCE.to_string(), resource.to_string()),
    ]);
    if let Some(h) = hash {
        l.insert(LABEL_HASH.to_string(), h.to_string());
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: &str) -> SwarmServiceConfig {
        SwarmServiceConfig {
            name: "demo-web".into(),
            image: "web:1".into(),
            network: "reconcile-demo".into(),
            replicas: 3,
            endpoint_mode: mode.into(),
            ports: vec![(8080, "tcp".into(), Some(18080))],
            secrets: vec![SecretMount {
                id: "s1".into(),
                name: "demo-web-token-abc".into(),
                file: "TOKEN".into(),
            }],
            env: vec!["TOKEN_FILE=/run/secrets/TOKEN".into()],
            update: Some(UpdateConfig {
                parallelism: 1,
                delay: Some(Duration::from_secs(2)),
                order: "start-first".into(),
                failure_action: "rollback".into(),
                monitor: Some(Duration::from_secs(5)),
                max_failure_ratio: None,
            }),
            ..SwarmServiceConfig::default()
        }
    }

    #[test]
    fn ports_go_through_the_routing_mesh_unless_dns_round_robin() {
        let vip = config("vip").engine_spec();
        let endpoint = vip.endpoint_spec.expect("endpoint spec");
        assert_eq!(endpoint.mode, Some(EndpointSpecModeEnum::VIP));
        let port = &endpoint.ports.expect("ports")[0];
        assert_eq!(
            port.publish_mode,
            Some(EndpointPortConfigPublishModeEnum::INGRESS)
        );
        assert_eq!(
            (port.target_port, port.published_port),
            (Some(8080), Some(18080))
        );
        let dnsrr = config("dnsrr")
            .engine_spec()
            .endpoint_spec
            .expect("endpoint spec");
        assert_eq!(dnsrr.mode, Some(EndpointSpecModeEnum::DNSRR));
        assert_eq!(
            dnsrr.ports.expect("ports")[0].publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
    }

    #[test]
    fn secrets_are_files_and_the_update_policy_is_the_engines() {
        let spec = config("vip").engine_spec();
        let container = spec
            .task_template
            .and_then(|t| t.container_spec)
            .expect("container spec");
        let secret = &container.secrets.expect("secrets")[0];
        assert_eq!(secret.secret_name.as_deref(), Some("demo-web-token-abc"));
        assert_eq!(
            secret.file.as_ref().and_then(|f| f.name.as_deref()),
            Some("TOKEN")
        );
        assert_eq!(
            container.env.expect("env"),
            vec!["TOKEN_FILE=/run/secrets/TOKEN".to_string()]
        );
        let update = spec.update_config.expect("update config");
        assert_eq!(update.parallelism, Some(1));
        assert_eq!(update.delay, Some(2_000_000_000));
        assert_eq!(
            update.failure_action,
            Some(bollard::models::ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK)
        );
        assert_eq!(
            update.order,
            Some(bollard::models::ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );
        assert_eq!(
            spec.mode
                .and_then(|m| m.replicated)
                .and_then(|r| r.replicas),
            Some(3)
        );
    }
}
