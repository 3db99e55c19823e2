//! How reconcile's own pieces meet containers: an Endpoint with `runtime: docker`
//! becomes a synthesized [`ServiceSpec`] (so the Docker reconciler and the
//! compose export treat it like any service), and a store URL whose host names a
//! Service is reached through that service's published port from the host, and
//! by name from inside the project network.
//!
//! Pure functions of the specs: no engine, no I/O.

use indexmap::IndexMap;

use crate::kinds::endpoint::{EndpointSpec, Runtime};
use crate::kinds::service::Service;
use crate::kinds::service::spec::{
    HealthCommand, HealthSpec, RestartPolicy, ServiceSpec, parse_port, spanned,
};
use crate::spec::{SpannedStr, SpecSet};

/// Image repository of endpoint containers; the tag is the binary's content hash.
pub const SERVE_IMAGE: &str = "reconcile-serve";

/// Where the project folder is mounted inside an endpoint container.
pub const PROJECT_MOUNT: &str = "/project";

/// Set inside containers of the project network: store URLs are used as written
/// (service names resolve there), never rewritten to published ports.
pub const IN_NETWORK_ENV: &str = "RECONCILE_IN_NETWORK";

/// The binary's path inside the endpoint image.
pub const BINARY_PATH: &str = "/reconcile";

/// A store URL that points at a Service of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOnService {
    /// The service's name (the URL's host).
    pub service: String,
    /// The port the URL names inside the network.
    pub port: u16,
}

/// The Service a store URL's host names, if any. URLs without a host
/// (`sqlite://…`) or naming another host are not on a service.
pub fn store_service(url: &str, set: &SpecSet) -> Option<StoreOnService> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()?),
        None => (host_port, default_port(scheme)?),
    };
    let named = set.specs::<Service>().any(|(_, s)| s.name.value == host);
    named.then(|| StoreOnService {
        service: host.to_string(),
        port,
    })
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" | "postgresql" => Some(5432),
        "redis" | "rediss" => Some(6379),
        _ => None,
    }
}

/// Replaces the `service:port` of a URL with `127.0.0.1:published`.
pub fn rewrite_to_host(url: &str, published: u16) -> String {
    rewrite_to_address(url, "127.0.0.1", published)
}

/// Replaces the `service:port` of a URL with the container's own address.
pub fn rewrite_to_address(url: &str, ip: &str, port: u16) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((u, _)) => format!("{scheme}://{u}@{ip}:{port}{tail}"),
        None => format!("{scheme}://{ip}:{port}{tail}"),
    }
}

/// The store URLs the project spec names (state, offline, online).
pub fn project_store_urls(set: &SpecSet) -> Vec<&SpannedStr> {
    set.project.store_urls().collect()
}

/// The services the project's stores run on, as the Project spec names them
/// (what a container inside the project network reaches).
pub fn store_services(set: &SpecSet) -> Vec<StoreOnService> {
    services_of_urls(
        project_store_urls(set).iter().map(|u| u.value.as_str()),
        set,
    )
}

/// The services some store URLs name, each once: given the URLs a command
/// really opens (`--state`, `RECONCILE_STATE`, … over the Project spec), a
/// store moved elsewhere names no Service, so none is started for it.
pub fn services_of_urls<'a>(
    urls: impl IntoIterator<Item = &'a str>,
    set: &SpecSet,
) -> Vec<StoreOnService> {
    let mut out: Vec<StoreOnService> = Vec::new();
    for url in urls {
        if let Some(s) = store_service(url, set)
            && !out.contains(&s)
        {
            out.push(s);
        }
    }
    out
}

/// The container an Endpoint with `runtime: docker` runs as: `reconcile serve`
/// from an image holding this binary, the project folder mounted at
/// [`PROJECT_MOUNT`], the stores' `${VAR}`s passed through, healthy when
/// `/health` answers.
pub fn endpoint_service(set: &SpecSet, e: &EndpointSpec) -> ServiceSpec {
    let rel = set
        .project_dir
        .strip_prefix(&set.root)
        .ok()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| format!("{PROJECT_MOUNT}/{}", p.display()))
        .unwrap_or_else(|| PROJECT_MOUNT.to_string());
    let port = e.port.to_string();
    let swarm = crate::kinds::service::deploy::WorkloadRuntime::Swarm;
    let on_swarm = match e.runtime {
        Runtime::Swarm => true,
        Runtime::Docker => set.project.runtime == Some(swarm),
        Runtime::Embedded => false,
    };
    // On a swarm a published port listens on every node's interfaces (the
    // routing mesh), so an endpoint is published only when its host says
    // every interface; in DNS round-robin mode a port is published per node,
    // which replicas sharing a node cannot all bind. Otherwise it is reached
    // on the overlay network by its name.
    let dnsrr = e
        .deploy
        .as_ref()
        .is_some_and(|d| d.endpoint_mode == crate::kinds::service::deploy::EndpointMode::Dnsrr);
    let every_interface = matches!(e.host.as_str(), "0.0.0.0" | "::");
    let ports = if on_swarm && (dnsrr || !every_interface) {
        Vec::new()
    } else {
        vec![spanned(format!("{}:{port}:{port}", e.host))]
    };
    let mut env: IndexMap<String, SpannedStr> = IndexMap::new();
    env.insert(IN_NETWORK_ENV.to_string(), spanned("1"));
    for url in project_store_urls(set) {
        for (name, _) in crate::spec::env::references(&url.value) {
            env.insert(name.clone(), spanned(format!("${{{name}}}")));
        }
    }
    let mut depends_on: Vec<SpannedStr> = store_services(set)
        .into_iter()
        .map(|s| spanned(format!("Service/{}", s.service)))
        .collect();
    for d in &e.depends_on {
        if !depends_on.iter().any(|x| x.value == d.value) {
            depends_on.push(d.clone());
        }
    }
    ServiceSpec {
        kind: "Service".into(),
        name: e.name.clone(),
        description: e.description.clone(),
        image: Some(spanned(format!("{SERVE_IMAGE}:latest"))),
        build: None,
        entrypoint: Some(vec![BINARY_PATH.to_string()]),
        command: Some(vec![
            "serve".into(),
            rel,
            "--endpoint".into(),
            e.name.value.clone(),
            "--host".into(),
            "0.0.0.0".into(),
            "--port".into(),
            port.clone(),
        ]),
        env,
        ports,
        volumes: vec![spanned(format!("{}:{PROJECT_MOUNT}", set.root.display()))],
        restart: RestartPolicy::UnlessStopped,
        resources: None,
        health: Some(HealthSpec {
            command: HealthCommand::Exec(vec![
                BINARY_PATH.to_string(),
                "probe".into(),
                format!("http://127.0.0.1:{port}/health"),
            ]),
            interval: spanned("250ms"),
            timeout: spanned("2s"),
            retries: 40,
            start_period: spanned("0s"),
        }),
        depends_on,
        runtime: on_swarm.then_some(swarm),
        deploy: e.deploy.clone(),
    }
}

/// The host port a service publishes for `container_port`, as declared.
pub fn declared_host_port(s: &ServiceSpec, container_port: u16) -> Option<u16> {
    s.ports
        .iter()
        .filter_map(|p| parse_port(&p.value).ok())
        .find(|p| p.container_port == container_port && p.protocol == "tcp")
        .and_then(|p| p.host_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_keep_credentials_and_path() {
        assert_eq!(
            rewrite_to_host("postgres://u:${PW}@postgres:5432/db?sslmode=disable", 15432),
            "postgres://u:${PW}@127.0.0.1:15432/db?sslmode=disable"
        );
        assert_eq!(
            rewrite_to_host("redis://postgres/0", 16379),
            "redis://127.0.0.1:16379/0"
        );
    }
}
