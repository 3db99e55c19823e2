//! Exports of the project's containers to other tools that run them: a docker
//! compose file ([`compose`]) and Kubernetes manifests ([`kubernetes`]). Both
//! start from the same list — the Services as declared and the Endpoints with
//! `runtime: docker` as the service [`crate::container::endpoint_service`]
//! synthesizes — so the controller, compose and a cluster never disagree about
//! what a container is. What the exported objects run is that tool's: the
//! rest of the project runs beside them with `reconcile apply --no-containers`.

pub mod compose;
pub mod kubernetes;

use crate::container::endpoint_service;
use crate::kinds::Member;
use crate::kinds::endpoint::Endpoint;
use crate::kinds::service::Service;
use crate::kinds::service::spec::ServiceSpec;
use crate::spec::{Kind, Resource, SpecSet};

/// A container of the project: the resource it comes from and its service spec.
pub struct Container<'a> {
    /// The Service or Endpoint it comes from.
    pub resource: &'a Resource,
    /// What it runs (an Endpoint's synthesized service).
    pub spec: ServiceSpec,
    /// Whether it is an Endpoint's `reconcile serve` (it runs the reconcile
    /// binary and mounts the project).
    pub endpoint: bool,
}

/// The project's containers in spec order: Services, and Endpoints with
/// `runtime: docker` as synthesized services.
pub fn containers(set: &SpecSet) -> Vec<Container<'_>> {
    set.resources
        .iter()
        .filter_map(|r| {
            let (spec, endpoint) = match (Service::spec_of(&r.spec), Endpoint::spec_of(&r.spec)) {
                (Some(s), _) => (s.clone(), false),
                (_, Some(e)) if e.runtime.in_container() => (endpoint_service(set, e), true),
                _ => return None,
            };
            Some(Container {
                resource: r,
                spec,
                endpoint,
            })
        })
        .collect()
}

/// The containers among `all` that `s` names in `dependsOn`, each once, in the
/// order written. Other resources it names order the controller's work, not
/// the containers'.
pub fn container_dependencies<'c, 'a>(
    set: &SpecSet,
    s: &ServiceSpec,
    all: &'c [Container<'a>],
) -> Vec<&'c Container<'a>> {
    let mut out: Vec<&Container<'_>> = Vec::new();
    for d in &s.depends_on {
        let (kind, name) = match d.value.split_once('/') {
            Some((k, n)) => match Kind::parse(k) {
                Some(k) => (Some(k), n),
                None => continue,
            },
            None => (None, d.value.as_str()),
        };
        // Resolved as validation resolves references: a bare name must be unique.
        let mut named = set
            .resources
            .iter()
            .filter(|r| r.id.name == name && kind.is_none_or(|k| r.id.kind == k));
        let (Some(target), None) = (named.next(), named.next()) else {
            continue;
        };
        if let Some(dep) = all.iter().find(|c| c.resource.id == target.id)
            && !out.iter().any(|c| c.resource.id == dep.resource.id)
        {
            out.push(dep);
        }
    }
    out
}
