//! Swarm as the second container runtime: a workload whose runtime is `swarm`
//! becomes a Swarm service of `deploy.replicas` tasks on the project's overlay
//! network. Same inputs as a container ([`DesiredContainer`], with its
//! `deploy`), its own view of the engine ([`SwarmView`], one labelled list of
//! services per command), a pure [`plan`] naming what changed, and [`apply`]:
//! secrets, create or rolling update, then waiting until the swarm converged
//! or rolled back.
//!
//! Level-triggered like the rest: a spec change is a rolling update (the
//! swarm replaces tasks by the update policy and rolls back on failure);
//! replicas scaled by hand, a service removed by hand, or an update left
//! paused is drift the next plan shows and apply heals.
//!
//! `${VAR}` values never reach a service's env or labels: each becomes a
//! Swarm secret the task reads at `/run/secrets/KEY`, and the env carries
//! `KEY_FILE=/run/secrets/KEY` (the convention of the official images, and
//! what `reconcile serve` reads). A secret's name ends with a digest of its
//! value, so a changed value is a new secret and a rolling update; the ones no
//! task uses any more are removed after the update succeeds.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::docker::swarm::{
    RestartConfig, SecretMount, SwarmRole, SwarmServiceConfig, SwarmServiceObs, TaskObs,
    UpdateConfig, labels,
};
use crate::docker::{DockerError, Engine};
use crate::kinds::endpoint::{EndpointSpec, Runtime};
use crate::kinds::service::Service;
use crate::kinds::service::deploy::{DeploySpec, UpdatePolicy, WorkloadRuntime, duration_of};
use crate::kinds::service::spec::{ServiceSpec, parse_port};
use crate::kinds::{Applied, ApplyError, Desired, Member, Observed, ops_of};
use crate::plan::{Action, ResourcePlan};
use crate::spec::{Resource, ResourceId, SpecSet};
use crate::store::state::Condition;

use super::containers::{
    ContainerOp, DesiredContainer, DockerRuntime, SETTLE, resource_label, wait_ready,
};

/// How often convergence is polled.
const POLL: Duration = Duration::from_millis(250);

/// Task errors quoted when an update fails.
const TASK_ERRORS: usize = 5;

/// How long a just-updated service may take to show its update started; past
/// it, the update changed nothing the tasks run (replicas only).
const UPDATE_START: Duration = Duration::from_secs(3);

/// What the engine showed of the project's swarm services, for the planner.
#[derive(Debug, Clone, Default)]
pub enum SwarmView {
    /// Nothing asked (no engine involved in this command).
    #[default]
    NotObserved,
    /// No engine answered.
    Unreachable(String),
    /// The engine answered but manages no swarm; the text says what to do.
    NotManager(String),
    /// The project's services by resource label.
    Seen(HashMap<String, SwarmServiceObs>),
}

impl SwarmView {
    /// The service of a resource.
    pub fn service(&self, id: &ResourceId) -> Option<&SwarmServiceObs> {
        match self {
            SwarmView::Seen(map) => map.get(&resource_label(id)),
            _ => None,
        }
    }

    /// Resources with a service the project owns.
    pub fn owned(&self) -> Vec<ResourceId> {
        let SwarmView::Seen(map) = self else {
            return Vec::new();
        };
        map.keys()
            .filter_map(|l| super::containers::resource_of_label(l))
            .collect()
    }
}

/// Whether a Service spec runs on the swarm (its own runtime, else the Project's).
pub fn service_on_swarm(set: &SpecSet, spec: &ServiceSpec) -> bool {
    spec.runtime.or(set.project.runtime) == Some(WorkloadRuntime::Swarm)
}

/// Whether an Endpoint spec runs on the swarm: `runtime: swarm`, or `docker`
/// in a Project whose runtime is `swarm`.
pub fn endpoint_on_swarm(set: &SpecSet, spec: &EndpointSpec) -> bool {
    match spec.runtime {
        Runtime::Swarm => true,
        Runtime::Docker => set.project.runtime == Some(WorkloadRuntime::Swarm),
        Runtime::Embedded => false,
    }
}

/// Whether any workload of the project runs on the swarm: then the project
/// network is an attachable overlay, which plain containers join too.
pub fn project_uses_swarm(set: &SpecSet) -> bool {
    set.resources.iter().any(|r| resource_on_swarm(set, r))
}

fn resource_on_swarm(set: &SpecSet, r: &Resource) -> bool {
    use crate::kinds::endpoint::Endpoint;
    if let Some(s) = Service::spec_of(&r.spec) {
        return service_on_swarm(set, s);
    }
    Endpoint::spec_of(&r.spec).is_some_and(|e| endpoint_on_swarm(set, e))
}

/// The swarm service name of a resource (the container name it would have).
fn service_name(inputs: &DesiredContainer) -> &str {
    &inputs.container_name
}

/// Desired vs observed for a swarm workload of kind `K`. Pure.
pub fn plan<K: Member<Op = ContainerOp>>(
    d: &Desired<'_, K>,
    inputs: &DesiredContainer,
    observed: &Observed,
) -> ResourcePlan {
    let deploy = inputs.swarm.clone().unwrap_or_default();
    let mut plan = ResourcePlan::noop(d.id.clone());
    let image = inputs.image.reference(&inputs.content_hash);
    let record = observed.records.get(d.id);
    let name = service_name(inputs);
    let prepare = K::op(ContainerOp::PrepareImage {
        image: image.clone(),
    });
    // A container left from when it ran on the local engine goes first.
    let create = |reasons: &mut Vec<String>| {
        let mut ops = vec![prepare.clone()];
        if let Some(c) = observed.docker.container(d.id) {
            reasons.push(format!(
                "it ran as container {}; that container is removed",
                c.name
            ));
            ops.push(K::op(ContainerOp::RemoveContainer { id: c.id.clone() }));
        }
        ops.push(K::op(ContainerOp::CreateService));
        ops
    };
    match &observed.swarm {
        SwarmView::NotObserved | SwarmView::Unreachable(_) | SwarmView::NotManager(_) => {
            let why = match &observed.swarm {
                SwarmView::Unreachable(msg) | SwarmView::NotManager(msg) => Some(msg.as_str()),
                _ => None,
            };
            super::containers::unobserved(
                &mut plan,
                record.is_some(),
                &format!("the swarm service {name}"),
                why,
            );
            plan.operations = create(&mut plan.reasons);
        }
        SwarmView::Seen(map) => match map.get(&resource_label(d.id)) {
            None => {
                plan.action = Action::Create;
                let ran_before = record.is_some_and(|r| r.outputs.get("service").is_some());
                plan.reasons.push(if ran_before {
                    format!("swarm service {name} is gone (removed out of band)")
                } else {
                    format!(
                        "new swarm service {name} ({} replica{})",
                        deploy.replicas,
                        if deploy.replicas == 1 { "" } else { "s" }
                    )
                });
                plan.operations = create(&mut plan.reasons);
            }
            Some(s) => {
                let mut reasons = Vec::new();
                if s.hash != d.spec_hash {
                    let recorded = record.map(|r| r.spec_hash.as_str());
                    reasons.push(match (record, s.update_state.as_deref()) {
                        (Some(r), Some("rollback_completed" | "rollback_paused"))
                            if r.spec_hash != s.hash || recorded != Some(d.spec_hash) =>
                        {
                            format!(
                                "its last update was rolled back{}; roll out again",
                                s.update_message
                                    .as_deref()
                                    .map(|m| format!(" ({m})"))
                                    .unwrap_or_default()
                            )
                        }
                        _ if recorded == Some(d.spec_hash) => {
                            "service was changed out of band; roll out the spec again".into()
                        }
                        (Some(r), _) => format!(
                            "spec changed: {}; rolling update",
                            crate::kinds::record::changed_fields(&r.spec_json, d.spec_json)
                        ),
                        (None, _) => "service was created from another spec".into(),
                    });
                }
                if s.hash == d.spec_hash && s.replicas != deploy.replicas {
                    reasons.push(format!(
                        "scaled out of band to {} replica{}; the spec says {}",
                        s.replicas,
                        if s.replicas == 1 { "" } else { "s" },
                        deploy.replicas
                    ));
                }
                let changed_secrets: Vec<&str> = inputs
                    .secrets
                    .iter()
                    .filter(|(_, name)| name.as_ref().is_some_and(|n| !s.secrets.contains(n)))
                    .map(|(key, _)| key.as_str())
                    .collect();
                if s.hash == d.spec_hash && !changed_secrets.is_empty() {
                    reasons.push(format!(
                        "the value behind env {} changed: a new secret; rolling update",
                        changed_secrets.join(", ")
                    ));
                }
                if s.hash == d.spec_hash
                    && matches!(
                        s.update_state.as_deref(),
                        Some("paused" | "rollback_paused")
                    )
                {
                    reasons.push(format!(
                        "its update is paused{}",
                        s.update_message
                            .as_deref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    ));
                }
                if reasons.is_empty() && record.is_some_and(|r| r.condition == Condition::Failed) {
                    reasons.push("the last apply failed; roll out again".into());
                }
                if !reasons.is_empty() {
                    plan.action = Action::Update;
                    plan.reasons = reasons;
                    plan.operations = vec![
                        prepare,
                        K::op(ContainerOp::UpdateService { id: s.id.clone() }),
                    ];
                } else if record.is_none() {
                    plan.action = Action::Update;
                    plan.reasons.push(format!(
                        "adopt running swarm service {} into the state",
                        s.name
                    ));
                }
            }
        },
    }
    plan
}

/// Carries out the operations of a swarm workload of kind `K`.
pub async fn apply<K: Member<Op = ContainerOp>>(
    rt: &DockerRuntime,
    id: &ResourceId,
    spec_hash: &str,
    inputs: &DesiredContainer,
    plan: &ResourcePlan,
) -> Result<Applied, ApplyError> {
    let engine = rt.engine().await?;
    if let SwarmRole::Not(why) = engine.swarm_role().await? {
        return Err(ApplyError::NotReady(format!(
            "{id} runs on the swarm runtime, but {why}"
        )));
    }
    let deploy = inputs.swarm.clone().unwrap_or_default();
    let name = service_name(inputs).to_string();
    let mut image = inputs.image.reference(&inputs.content_hash);
    let mut rolled = false;
    let mut kept_secrets: Option<HashSet<String>> = None;
    for op in ops_of::<K>(plan) {
        match op {
            ContainerOp::PrepareImage { .. } => image = rt.prepare_image(engine, inputs).await?,
            ContainerOp::RemoveContainer { id } => engine.remove(id).await?,
            ContainerOp::RemoveService { id } => engine.remove_service(id).await?,
            ContainerOp::CreateService | ContainerOp::UpdateService { .. } => {
                rt.ensure_network(engine, inputs).await?;
                rt.ensure_volumes(engine, inputs).await?;
                super::containers::wait_for_dependencies(engine, inputs).await?;
                let secrets = ensure_secrets(engine, id, inputs).await?;
                kept_secrets = Some(secrets.iter().map(|s| s.name.clone()).collect());
                let config =
                    service_config(id, spec_hash, inputs, &deploy, image.clone(), secrets)?;
                let before = engine.inspect_service(&name).await?;
                match before {
                    // Updated in place: the swarm rolls its tasks.
                    Some(current) => {
                        engine
                            .update_service(&current.id, current.version, &config)
                            .await?;
                        converge(engine, &name, &deploy, inputs, Some(&current)).await?;
                    }
                    None => {
                        engine.create_service(&config).await?;
                        converge(engine, &name, &deploy, inputs, None).await?;
                    }
                }
                rolled = true;
            }
            ContainerOp::RunContainer { .. } | ContainerOp::StartContainer { .. } => {}
        }
    }
    if let Some(keep) = kept_secrets {
        prune_secrets(engine, &inputs.project, id, &keep).await?;
    }
    let s = engine.inspect_service(&name).await?.ok_or_else(|| {
        ApplyError::NotReady(format!("swarm service {name} disappeared while starting"))
    })?;
    Ok(Applied {
        message: format!(
            "{} swarm service {name} ({}/{} tasks running)",
            if rolled { "rolled out" } else { "running" },
            s.running,
            s.replicas
        ),
        outputs: serde_json::json!({
            "service": name,
            "image": image,
            "replicas": s.replicas,
        }),
    })
}

/// Removes the swarm service of a resource no longer in the specs, then its secrets.
pub async fn remove(
    engine: &Engine,
    project: &str,
    id: &ResourceId,
    service: &str,
) -> Result<(), ApplyError> {
    engine.remove_service(service).await?;
    prune_secrets(engine, project, id, &HashSet::new()).await
}

/// Creates the secrets of every `${VAR}` value in the env (a new value is a
/// new secret), resolving them here and nowhere else.
async fn ensure_secrets(
    engine: &Engine,
    id: &ResourceId,
    inputs: &DesiredContainer,
) -> Result<Vec<SecretMount>, ApplyError> {
    let mut out = Vec::new();
    for (key, v) in &inputs.spec.env {
        if crate::spec::env::references(&v.value).is_empty() {
            continue;
        }
        let value = crate::spec::env::interpolate(&v.value).map_err(|source| ApplyError::Env {
            what: format!("{id}: env {key}"),
            source,
        })?;
        let name = secret_name(&inputs.project, &inputs.spec.name.value, key, &value);
        let secret_id = engine
            .ensure_secret(
                &name,
                labels(&inputs.project, &resource_label(id), None),
                value.as_bytes(),
            )
            .await?;
        out.push(SecretMount {
            id: secret_id,
            name,
            file: key.clone(),
        });
    }
    Ok(out)
}

/// The secret each `${VAR}` env value of a swarm workload becomes, by key;
/// `None` while a variable is unset in this process.
pub fn desired_secrets(project: &str, spec: &ServiceSpec) -> Vec<(String, Option<String>)> {
    spec.env
        .iter()
        .filter(|(_, v)| !crate::spec::env::references(&v.value).is_empty())
        .map(|(key, v)| {
            let name = crate::spec::env::interpolate(&v.value)
                .ok()
                .map(|value| secret_name(project, &spec.name.value, key, &value));
            (key.clone(), name)
        })
        .collect()
}

/// `<project>-<service>-<key>-<digest>`, within the engine's 64 characters.
/// The digest is keyed by the names, so equal values of two keys differ; it
/// tells changed values apart and shows nothing a manager of the swarm could
/// not read from the secret itself.
fn secret_name(project: &str, service: &str, key: &str, value: &str) -> String {
    let context = format!("reconcile swarm secret {project}/{service}/{key}");
    let digest = blake3::derive_key(&context, value.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let mut prefix = format!("{project}-{service}-{}", key.to_ascii_lowercase());
    prefix.truncate(50);
    format!("{prefix}-{hex}")
}

/// Removes the resource's secrets not in `keep` (in use by no task any more).
async fn prune_secrets(
    engine: &Engine,
    project: &str,
    id: &ResourceId,
    keep: &HashSet<String>,
) -> Result<(), ApplyError> {
    let label = resource_label(id);
    for (secret, name, resource) in engine.list_secrets(project).await? {
        if resource == label && !keep.contains(&name) {
            engine
                .remove_secret(&secret, Duration::from_secs(30))
                .await?;
        }
    }
    Ok(())
}

fn update_config(p: &UpdatePolicy) -> UpdateConfig {
    UpdateConfig {
        parallelism: p.parallelism,
        delay: duration_of(p.delay.as_ref()),
        order: p.order.as_str().to_string(),
        failure_action: p.failure_action.as_str().to_string(),
        monitor: duration_of(p.monitor.as_ref()),
        max_failure_ratio: p.max_failure_ratio,
    }
}

/// The engine-facing service of a swarm workload. Env values with a `${VAR}`
/// are left out; their secrets are mounted instead.
fn service_config(
    id: &ResourceId,
    spec_hash: &str,
    inputs: &DesiredContainer,
    deploy: &DeploySpec,
    image: String,
    secrets: Vec<SecretMount>,
) -> Result<SwarmServiceConfig, ApplyError> {
    let s = &inputs.spec;
    let mut env = Vec::with_capacity(s.env.len());
    for (k, v) in &s.env {
        if crate::spec::env::references(&v.value).is_empty() {
            // `$$` still means a literal `$`.
            let value =
                crate::spec::env::interpolate(&v.value).map_err(|source| ApplyError::Env {
                    what: format!("{id}: env {k}"),
                    source,
                })?;
            env.push(format!("{k}={value}"));
        } else {
            env.push(format!("{k}_FILE=/run/secrets/{k}"));
        }
    }
    let ports = s
        .ports
        .iter()
        .filter_map(|p| parse_port(&p.value).ok())
        .map(|p| (p.container_port, p.protocol.clone(), p.host_port))
        .collect();
    let resources = deploy.resources.as_ref();
    let limits = resources.and_then(|r| r.limits.as_ref());
    let reservations = resources.and_then(|r| r.reservations.as_ref());
    // The Service's own `resources` are limits too, when deploy gives none.
    let plain_cpus = s
        .resources
        .as_ref()
        .and_then(|r| r.cpus)
        .map(|c| (c * 1e9) as i64);
    let plain_memory = s
        .resources
        .as_ref()
        .and_then(|r| r.memory.as_ref())
        .and_then(|m| crate::kinds::service::spec::parse_memory(&m.value));
    Ok(SwarmServiceConfig {
        name: inputs.container_name.clone(),
        labels: labels(&inputs.project, &resource_label(id), Some(spec_hash)),
        image,
        entrypoint: s.entrypoint.clone(),
        command: s.command.clone(),
        env,
        mounts: inputs.mounts.clone(),
        secrets,
        health: super::containers::health_config(s),
        network: inputs.network.clone(),
        aliases: vec![s.name.value.clone()],
        replicas: deploy.replicas,
        endpoint_mode: deploy.endpoint_mode.as_str().to_string(),
        ports,
        update: deploy.update.as_ref().map(update_config),
        rollback: deploy.rollback.as_ref().map(update_config),
        restart: deploy.restart.as_ref().map(|r| RestartConfig {
            condition: r.condition.as_str().to_string(),
            delay: duration_of(r.delay.as_ref()),
            max_attempts: r.max_attempts,
            window: duration_of(r.window.as_ref()),
        }),
        limits: (
            limits.and_then(|l| l.nano_cpus()).or(plain_cpus),
            limits.and_then(|l| l.memory_bytes()).or(plain_memory),
        ),
        reservations: (
            reservations.and_then(|l| l.nano_cpus()),
            reservations.and_then(|l| l.memory_bytes()),
        ),
        constraints: deploy
            .placement
            .as_ref()
            .map(|p| p.constraints.clone())
            .unwrap_or_default(),
    })
}

/// How long a rollout may take: each batch waits for its tasks' health, the
/// delay and the monitor window; a rollback may take as long again.
fn rollout_deadline(deploy: &DeploySpec, inputs: &DesiredContainer) -> Duration {
    let ready = inputs
        .spec
        .health
        .as_ref()
        .map_or(SETTLE * 20, |h| h.timing().deadline());
    let policy = deploy.update.as_ref();
    let parallelism = policy.map_or(1, |p| p.parallelism.max(1));
    let batches = deploy.replicas.div_ceil(parallelism).max(1) as u32;
    let delay = policy
        .and_then(|p| duration_of(p.delay.as_ref()))
        .unwrap_or_default();
    let monitor = policy
        .and_then(|p| duration_of(p.monitor.as_ref()))
        .unwrap_or(Duration::from_secs(5));
    (ready + delay + monitor) * batches * 2 + Duration::from_secs(30)
}

/// Waits until the service runs its replicas of the new spec; fails when the
/// swarm rolled the update back or paused it, or at the deadline, quoting the
/// tasks' errors. `before`: the service as it was before an update.
async fn converge(
    engine: &Engine,
    name: &str,
    deploy: &DeploySpec,
    inputs: &DesiredContainer,
    before: Option<&SwarmServiceObs>,
) -> Result<(), ApplyError> {
    let start = Instant::now();
    let deadline = rollout_deadline(deploy, inputs);
    let before_started = before.and_then(|b| b.update_started.clone());
    loop {
        let s = engine.inspect_service(name).await?.ok_or_else(|| {
            ApplyError::NotReady(format!(
                "swarm service {name} disappeared while rolling out"
            ))
        })?;
        // Only this update's status counts: the previous one may still show.
        let fresh = before.is_none() || s.update_started != before_started;
        let state = if fresh {
            s.update_state.as_deref()
        } else {
            None
        };
        match state {
            Some("rollback_completed") => {
                // Reported once the previous tasks were started: wait until
                // they run again, so "they serve" is true when apply returns.
                while !tasks_ready(engine, &s).await? && start.elapsed() < deadline {
                    tokio::time::sleep(POLL).await;
                }
                return Err(rollout_failed(
                    engine,
                    &s,
                    "the update failed and was rolled back; the previous tasks serve",
                )
                .await);
            }
            Some("paused" | "rollback_paused") => {
                return Err(rollout_failed(engine, &s, "the update failed and is paused").await);
            }
            Some("updating" | "rollback_started") => {}
            _ => {
                let waiting_for_update =
                    before.is_some() && !fresh && start.elapsed() < UPDATE_START;
                if !waiting_for_update && tasks_ready(engine, &s).await? {
                    return Ok(());
                }
            }
        }
        if start.elapsed() > deadline {
            return Err(rollout_failed(
                engine,
                &s,
                &format!(
                    "not converged after {:.0} s ({}/{} tasks running)",
                    start.elapsed().as_secs_f64(),
                    s.running,
                    s.replicas
                ),
            )
            .await);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether exactly the desired replicas run and nothing else is on its way.
async fn tasks_ready(engine: &Engine, s: &SwarmServiceObs) -> Result<bool, DockerError> {
    let tasks = engine.list_tasks(&s.id).await?;
    let wanted: Vec<&TaskObs> = tasks
        .iter()
        .filter(|t| t.desired_state == "running")
        .collect();
    let running = wanted.iter().filter(|t| t.state == "running").count() as u64;
    // Tasks told to stop must be gone too, so an update's old tasks are not counted.
    let stopping = tasks
        .iter()
        .filter(|t| t.desired_state != "running" && t.state == "running")
        .count();
    Ok(running == s.replicas && wanted.len() as u64 == s.replicas && stopping == 0)
}

/// The failure of a rollout with the tasks' own errors.
async fn rollout_failed(engine: &Engine, s: &SwarmServiceObs, what: &str) -> ApplyError {
    let tasks = engine.list_tasks(&s.id).await.unwrap_or_default();
    let mut seen = HashSet::new();
    let lines: Vec<String> = tasks
        .iter()
        .filter_map(|t| {
            let why = t.err.clone().or_else(|| {
                matches!(t.state.as_str(), "failed" | "rejected").then(|| t.message.clone())
            })?;
            seen.insert(why.clone())
                .then(|| format!("  | task {} ({}): {why}", t.slot, t.state))
        })
        .take(TASK_ERRORS)
        .collect();
    let message = s
        .update_message
        .as_deref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    ApplyError::NotReady(format!(
        "swarm service {}: {what}{message}\n  task errors:\n{}",
        s.name,
        if lines.is_empty() {
            "  (none reported)".to_string()
        } else {
            lines.join("\n")
        }
    ))
}

/// Waits until a service this one depends on runs all its replicas.
pub async fn wait_service_ready(
    engine: &Engine,
    service: &str,
    what: &str,
    deadline: Duration,
) -> Result<(), ApplyError> {
    let start = Instant::now();
    loop {
        if let Some(s) = engine.inspect_service(service).await?
            && tasks_ready(engine, &s).await?
        {
            return Ok(());
        }
        if start.elapsed() > deadline {
            return Err(ApplyError::NotReady(format!(
                "{what}: swarm service {service} does not run its replicas after {:.0} s",
                start.elapsed().as_secs_f64()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A dependency's readiness, whichever runtime it is on.
pub async fn wait_dependency(
    engine: &Engine,
    dep: &super::containers::Dependency,
) -> Result<(), ApplyError> {
    let what = format!("dependency {}", dep.id);
    if dep.swarm {
        let deadline = dep.health.map_or(SETTLE * 20, |h| h.deadline()) * 2;
        wait_service_ready(engine, &dep.container, &what, deadline).await
    } else {
        wait_ready(engine, &dep.container, &what, dep.health, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_fit_and_follow_the_value() {
        let a = secret_name("demo", "db", "PASSWORD", "one");
        let b = secret_name("demo", "db", "PASSWORD", "two");
        let c = secret_name("demo", "db", "OTHER", "one");
        assert!(a.starts_with("demo-db-password-"), "{a}");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(!a.contains("one"));
        let long = secret_name(&"p".repeat(60), &"s".repeat(60), "K", "v");
        assert!(long.len() <= 64, "{}", long.len());
    }
}
