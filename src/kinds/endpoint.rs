//! `Endpoint`: serves a Model's Production version over HTTP. Two runtimes,
//! chosen in the spec and explicit in the desired inputs: `embedded` (inside
//! `reconcile serve`; applying it only records it) and `docker` (a container
//! built from this binary, planned and run through the container runtime like a
//! Service).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Applied, ApplyContext, ApplyError, CheckContext, Desired, Kind, Observed, Pool, Reference,
    ResourceKind, Upstream, record,
};
use crate::diag::{DiagCode, SpecDiagnostic};
use crate::plan::{PlanOptions, ResourcePlan};
use crate::runtime::containers::{self, ContainerOp, DesiredContainer, ImageFrom};
use crate::spec::validate::check_resource_name;
use crate::spec::{Resource, ResourceId, SpannedStr, SpecSet};

/// A prediction endpoint: serves the Production version of a model with the
/// online features of its entity, and follows Production as it changes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointSpec {
    /// Always `Endpoint`.
    pub kind: String,
    /// Endpoint name.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The Model whose Production version is served.
    #[schemars(with = "String")]
    pub model: SpannedStr,
    /// TCP port.
    pub port: u16,
    /// Address to bind.
    #[serde(default = "default_host")]
    pub host: String,
    /// Where it runs: `embedded` (inside `reconcile serve`) or `docker` (a container
    /// the controller builds from its own binary and keeps running).
    #[serde(default)]
    pub runtime: Runtime,
    /// Most ids one `/predict/batch` request may carry.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Log every answered prediction to the offline store (batched off the
    /// request path), for prediction drift. On by default; left out of the
    /// canonical spec when on, so existing specs keep their hash.
    #[serde(default = "default_log_predictions", skip_serializing_if = "is_true")]
    pub log_predictions: bool,
    /// A bound on the online features held in memory. Without it (or while
    /// every view holds at most `maxEntities` entities) each view is read whole
    /// into memory; past it, a view's rows are read through from the online
    /// store into a least-recently-used cache of `maxEntities` entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
    /// With `runtime: swarm` (or `docker` in a Project whose runtime is
    /// `swarm`): replicas, rolling updates, placement. Every replica follows
    /// the registry, so a promotion reaches them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<crate::kinds::service::deploy::DeploySpec>,
}

/// The bound of an endpoint's in-memory feature cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CacheSpec {
    /// Most entities whose rows one feature view keeps in memory (at least 1).
    pub max_entities: usize,
}

fn default_host() -> String {
    "127.0.0.1".to_string()
}

fn default_max_batch() -> usize {
    1000
}

fn default_log_predictions() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Where an endpoint runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Runtime {
    /// In-process, under `reconcile serve`.
    #[default]
    Embedded,
    /// In a container on the project network, built from this binary and
    /// running `reconcile serve`; the controller keeps it running.
    Docker,
    /// As a Swarm service of `deploy.replicas` such containers on the
    /// project's overlay network.
    Swarm,
}

impl Runtime {
    /// Whether it runs in a container (on the local engine or a swarm).
    pub fn in_container(self) -> bool {
        matches!(self, Runtime::Docker | Runtime::Swarm)
    }
}

/// What an endpoint desires, by runtime.
#[derive(Debug, Clone)]
pub enum EndpointInputs {
    /// Served by `reconcile serve`: nothing beyond the spec.
    Embedded,
    /// Run as a container (boxed: the embedded case carries nothing).
    Container(Box<DesiredContainer>),
}

/// The `Endpoint` kind.
pub struct Endpoint;

impl ResourceKind for Endpoint {
    type Spec = EndpointSpec;
    type Inputs = EndpointInputs;
    type Op = ContainerOp;

    fn name(spec: &EndpointSpec) -> &SpannedStr {
        &spec.name
    }

    fn depends_on(spec: &EndpointSpec) -> &[SpannedStr] {
        &spec.depends_on
    }

    fn references(spec: &EndpointSpec) -> Vec<Reference> {
        vec![(spec.model.clone(), Some(Kind::Model))]
    }

    fn check(
        cx: &CheckContext<'_>,
        r: &Resource,
        spec: &EndpointSpec,
        diags: &mut Vec<SpecDiagnostic>,
    ) {
        check_endpoint(r, spec, diags);
        if let Some(deploy) = &spec.deploy {
            let on_swarm = match spec.runtime {
                Runtime::Swarm => true,
                Runtime::Docker => {
                    cx.project_runtime() == crate::kinds::service::deploy::WorkloadRuntime::Swarm
                }
                Runtime::Embedded => false,
            };
            crate::kinds::service::deploy::check_deploy(r, &spec.name, deploy, on_swarm, diags);
        }
    }

    fn desire(
        r: &Resource,
        spec: &EndpointSpec,
        set: &SpecSet,
        upstream: Upstream<'_>,
    ) -> Result<EndpointInputs, ApplyError> {
        Ok(match spec.runtime {
            Runtime::Embedded => EndpointInputs::Embedded,
            Runtime::Docker | Runtime::Swarm => {
                let service = crate::container::endpoint_service(set, spec);
                EndpointInputs::Container(Box::new(containers::desire(
                    r,
                    service,
                    ImageFrom::ThisBinary,
                    set,
                    upstream,
                )?))
            }
        })
    }

    fn input_hash(inputs: &EndpointInputs) -> String {
        match inputs {
            EndpointInputs::Embedded => String::new(),
            EndpointInputs::Container(c) => c.input_hash(),
        }
    }

    fn pool(inputs: &EndpointInputs) -> Pool {
        match inputs {
            EndpointInputs::Embedded => Pool::Cpu,
            EndpointInputs::Container(_) => Pool::Containers,
        }
    }

    fn container(inputs: &EndpointInputs) -> Option<&DesiredContainer> {
        match inputs {
            EndpointInputs::Embedded => None,
            EndpointInputs::Container(c) => Some(c),
        }
    }

    fn diff(d: &Desired<'_, Self>, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        match d.inputs {
            EndpointInputs::Embedded => record::diff(d.id, d.spec_hash, d.spec_json, observed),
            EndpointInputs::Container(c) => containers::plan(d, c, observed),
        }
    }

    fn diff_removed(id: &ResourceId, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        containers::plan_removal::<Self>(id, observed).unwrap_or_else(|| record::forget(id))
    }

    async fn apply(
        ctx: &ApplyContext,
        d: &Desired<'_, Self>,
        plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        match d.inputs {
            EndpointInputs::Embedded => Ok(Applied::message("recorded")),
            EndpointInputs::Container(c) => {
                containers::apply::<Self>(&ctx.docker, d.id, d.spec_hash, c, plan).await
            }
        }
    }

    async fn apply_removed(ctx: &ApplyContext, plan: &ResourcePlan) -> Result<Applied, ApplyError> {
        containers::apply_removal::<Self>(&ctx.docker, &ctx.state.project, plan).await
    }

    fn uses_engine(spec: &EndpointSpec) -> bool {
        spec.runtime.in_container()
    }

    fn recorded_uses_engine(spec_json: &serde_json::Value) -> bool {
        matches!(
            spec_json.get("runtime").and_then(|v| v.as_str()),
            Some("docker" | "swarm")
        )
    }
}

/// Checks an endpoint (its model reference is checked with every reference).
fn check_endpoint(r: &Resource, e: &EndpointSpec, diags: &mut Vec<SpecDiagnostic>) {
    check_resource_name(r, &e.name, diags);
    if e.port == 0 {
        diags.push(r.diag_at(
            DiagCode::InvalidValue,
            &e.name,
            "port 0 is not a port to serve on",
        ));
    }
    if e.host.parse::<std::net::IpAddr>().is_err() {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                &e.name,
                format!("host `{}` is not an IP address", e.host),
            )
            .with_hint("write 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"),
        );
    }
    if e.max_batch == 0 || e.max_batch > 100_000 {
        diags.push(r.diag_at(
            DiagCode::InvalidValue,
            &e.name,
            format!("maxBatch {} is not between 1 and 100000", e.max_batch),
        ));
    }
    if e.cache.is_some_and(|c| c.max_entities == 0) {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                &e.name,
                "cache.maxEntities 0 would hold no entity in memory",
            )
            .with_hint("write a bound of at least 1, or leave `cache` out to hold every entity"),
        );
    }
}
