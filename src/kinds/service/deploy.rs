//! Where a container workload runs (`runtime: docker | swarm`) and, on a
//! swarm, how it is deployed (`deploy:`): replicas, rolling updates with
//! rollback, restart policy, resources and placement. Spelled as compose's
//! `deploy` section spells them, so a compose user reads them without a manual.
//! The checks live here too, beside the types they check.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::{parse_duration, parse_memory};
use crate::diag::{DiagCode, SpecDiagnostic};
use crate::spec::{Resource, SpannedStr};

/// The engine a container workload runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WorkloadRuntime {
    /// One container on the local Docker engine.
    #[default]
    Docker,
    /// A Swarm service on the engine's swarm (it must be a manager): replicas
    /// spread over the nodes, rolled one batch at a time.
    Swarm,
}

/// How a workload is deployed on a swarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeploySpec {
    /// Tasks (containers) the swarm keeps running.
    #[serde(default = "one")]
    pub replicas: u64,
    /// How other services reach the replicas: `vip` (one virtual IP, and
    /// published ports through the routing mesh) or `dnsrr` (the service name
    /// resolves to every replica's address; ports are published per node).
    #[serde(default)]
    pub endpoint_mode: EndpointMode,
    /// How a changed spec rolls out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdatePolicy>,
    /// How a failed update rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<UpdatePolicy>,
    /// When the swarm restarts a task that exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<SwarmRestart>,
    /// CPU and memory per task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<DeployResources>,
    /// Which nodes may run the tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

fn one() -> u64 {
    1
}

impl Default for DeploySpec {
    fn default() -> Self {
        DeploySpec {
            replicas: 1,
            endpoint_mode: EndpointMode::Vip,
            update: None,
            rollback: None,
            restart: None,
            resources: None,
            placement: None,
        }
    }
}

/// How a swarm service is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// A virtual IP balanced by the kernel (IPVS), and the routing mesh.
    #[default]
    Vip,
    /// DNS round robin over the replicas' addresses.
    Dnsrr,
}

impl EndpointMode {
    /// The engine's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }
    }
}

/// A rolling update (or rollback) policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdatePolicy {
    /// Tasks replaced at a time.
    #[serde(default = "one")]
    pub parallelism: u64,
    /// Pause between batches (`2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub delay: Option<SpannedStr>,
    /// `stop-first` (free the old task's resources first) or `start-first`
    /// (the new task is healthy before the old one stops: no gap).
    #[serde(default)]
    pub order: UpdateOrder,
    /// What the swarm does when a new task fails: `rollback`, `pause` or `continue`.
    #[serde(default)]
    pub failure_action: FailureAction,
    /// How long a new task is watched for failure after it starts (`5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub monitor: Option<SpannedStr>,
    /// Share of tasks that may fail during an update before it counts as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
}

/// Which task of a pair runs first during an update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Stop the old task, then start the new one.
    #[default]
    StopFirst,
    /// Start the new task; stop the old one once the new one runs.
    StartFirst,
}

impl UpdateOrder {
    /// The engine's name.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }
    }
}

/// What to do when an update fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    /// Go back to the previous spec (the default here: a failed rollout
    /// leaves the old tasks serving, and apply reports the failure).
    #[default]
    Rollback,
    /// Stop the update where it is.
    Pause,
    /// Carry on with the next batch.
    Continue,
}

impl FailureAction {
    /// The engine's name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Rollback => "rollback",
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
        }
    }
}

/// When the swarm restarts a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SwarmRestart {
    /// `none`, `on-failure` or `any`.
    #[serde(default)]
    pub condition: RestartCondition,
    /// Wait between restarts (`5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub delay: Option<SpannedStr>,
    /// Restarts before giving up (unlimited when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    /// Window in which restarts are counted (`2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub window: Option<SpannedStr>,
}

/// The swarm's restart conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Never.
    None,
    /// When it exits non-zero.
    OnFailure,
    /// Whenever it exits.
    #[default]
    Any,
}

impl RestartCondition {
    /// The engine's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartCondition::None => "none",
            RestartCondition::OnFailure => "on-failure",
            RestartCondition::Any => "any",
        }
    }
}

/// Reservations (what the scheduler sets aside) and limits (what a task may use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeployResources {
    /// Hard caps per task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<CpuMemory>,
    /// What a node must have free to take a task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<CpuMemory>,
}

/// CPUs and memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CpuMemory {
    /// CPUs, e.g. `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory, e.g. `256m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub memory: Option<SpannedStr>,
}

impl CpuMemory {
    /// Nano-CPUs, as the engine counts them.
    pub fn nano_cpus(&self) -> Option<i64> {
        self.cpus.map(|c| (c * 1e9) as i64)
    }

    /// Bytes, parsed (checked by validation).
    pub fn memory_bytes(&self) -> Option<i64> {
        self.memory.as_ref().and_then(|m| parse_memory(&m.value))
    }
}

/// Node constraints, in the engine's grammar (`node.role==manager`,
/// `node.labels.gpu==true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Placement {
    /// Every constraint must hold on a node for it to take a task.
    #[serde(default)]
    pub constraints: Vec<String>,
}

/// A duration field, parsed (checked by validation).
pub fn duration_of(s: Option<&SpannedStr>) -> Option<Duration> {
    s.and_then(|s| parse_duration(&s.value))
}

/// Checks a deploy block, and that it is only given where it applies.
pub fn check_deploy(
    r: &Resource,
    at: &SpannedStr,
    deploy: &DeploySpec,
    on_swarm: bool,
    diags: &mut Vec<SpecDiagnostic>,
) {
    if !on_swarm {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                at,
                "`deploy` applies to the swarm runtime, and this workload runs on the local Docker engine",
            )
            .with_hint("add `runtime: swarm` here or in the Project, or remove `deploy`"),
        );
    }
    if deploy.replicas > 1000 {
        diags.push(r.diag_at(
            DiagCode::InvalidValue,
            at,
            format!("deploy.replicas {} is more than 1000", deploy.replicas),
        ));
    }
    let durations = |what: &str, d: &Option<SpannedStr>, diags: &mut Vec<SpecDiagnostic>| {
        if let Some(d) = d
            && parse_duration(&d.value).is_none()
        {
            diags.push(
                r.diag_at(
                    DiagCode::InvalidValue,
                    d,
                    format!("deploy.{what} `{}` is not a duration", d.value),
                )
                .with_hint("write e.g. `500ms`, `2s` or `1m30s`"),
            );
        }
    };
    for (what, p) in [("update", &deploy.update), ("rollback", &deploy.rollback)] {
        let Some(p) = p else { continue };
        if p.parallelism == 0 {
            diags.push(
                r.diag_at(
                    DiagCode::InvalidValue,
                    at,
                    format!("deploy.{what}.parallelism 0 would replace every task at once"),
                )
                .with_hint("write 1 to roll one task at a time"),
            );
        }
        if p.max_failure_ratio
            .is_some_and(|x| !(0.0..=1.0).contains(&x))
        {
            diags.push(r.diag_at(
                DiagCode::InvalidValue,
                at,
                format!("deploy.{what}.maxFailureRatio is not between 0 and 1"),
            ));
        }
        durations(&format!("{what}.delay"), &p.delay, diags);
        durations(&format!("{what}.monitor"), &p.monitor, diags);
    }
    if let Some(restart) = &deploy.restart {
        durations("restart.delay", &restart.delay, diags);
        durations("restart.window", &restart.window, diags);
    }
    if let Some(res) = &deploy.resources {
        for (what, cm) in [("limits", &res.limits), ("reservations", &res.reservations)] {
            let Some(cm) = cm else { continue };
            if cm.cpus.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
                diags.push(r.diag_at(
                    DiagCode::InvalidValue,
                    at,
                    format!("deploy.resources.{what}.cpus must be a positive number"),
                ));
            }
            if let Some(m) = &cm.memory
                && parse_memory(&m.value).is_none_or(|b| b < 6 << 20)
            {
                diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        m,
                        format!(
                            "deploy.resources.{what}.memory `{}` is not a size of at least 6m",
                            m.value
                        ),
                    )
                    .with_hint("write e.g. `256m` or `1g`"),
                );
            }
        }
    }
    if let Some(p) = &deploy.placement {
        for c in &p.constraints {
            let ok = ["==", "!="].iter().any(|op| {
                c.split_once(op)
                    .is_some_and(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
            });
            if !ok {
                diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        at,
                        format!("placement constraint `{c}` is not `key==value` or `key!=value`"),
                    )
                    .with_hint("e.g. `node.role==manager` or `node.labels.gpu==true`"),
                );
            }
        }
    }
}
