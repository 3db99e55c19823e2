//! The `Service` kind: a container the controller runs, as a compose service
//! would declare it, plus the parsers for its compact string forms (ports,
//! volumes, durations, memory sizes). The parsers are shared by validation,
//! the Docker reconciler and the compose export, so the three never disagree.

use std::time::Duration;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::SpannedStr;

/// A long-running container: a database, a dashboard, a web server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Always `Service`.
    pub kind: String,
    /// Service name: the container's host name on the project network.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Image reference (`postgres:16`); pulled when missing. With `build`, the tag
    /// given to the built image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub image: Option<SpannedStr>,
    /// Build the image from a folder of the project instead of pulling it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSpec>,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment; `${VAR}` references are resolved when the container is
    /// created and never stored.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "IndexMap<String, String>")]
    pub env: IndexMap<String, SpannedStr>,
    /// Published ports: `"8080"`, `"8080:80"`, `"127.0.0.1:8080:80"`, `"53:53/udp"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub ports: Vec<SpannedStr>,
    /// Mounts: `"name:/path"` (a named volume of the project) or
    /// `"./dir:/path[:ro]"` (a folder of the project).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub volumes: Vec<SpannedStr>,
    /// What Docker does when the container exits.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// CPU and memory limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// How to tell the service is ready; dependents wait for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSpec>,
    /// Services (and other resources) that must be ready first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
    /// Where it runs: `docker` (one container on the local engine) or `swarm`
    /// (a Swarm service); the Project's `runtime` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<super::deploy::WorkloadRuntime>,
    /// How it is deployed on a swarm: replicas, rolling updates, placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<super::deploy::DeploySpec>,
}

/// Where an image is built from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BuildSpec {
    /// Folder sent to the builder, relative to the spec file; inside the project.
    #[schemars(with = "String")]
    pub context: SpannedStr,
    /// Dockerfile, relative to the context.
    #[serde(default = "default_dockerfile")]
    pub dockerfile: String,
}

fn default_dockerfile() -> String {
    "Dockerfile".to_string()
}

/// Docker's restart policies, spelled as compose spells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restarted by Docker (the controller heals on the next apply).
    #[default]
    No,
    /// Always restarted.
    Always,
    /// Restarted when it exits with a non-zero code.
    OnFailure,
    /// Restarted unless stopped by hand.
    UnlessStopped,
}

impl RestartPolicy {
    /// The name Docker and compose use.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }
}

/// Resource limits.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourcesSpec {
    /// CPUs, e.g. `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory, e.g. `256m`, `1g`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub memory: Option<SpannedStr>,
}

/// A readiness check run inside the container by Docker.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthSpec {
    /// The check: a list is run as is, a string by `/bin/sh -c`. Exit 0 is healthy.
    pub command: HealthCommand,
    /// Time between checks (`2s`, `500ms`).
    #[serde(default = "default_interval")]
    #[schemars(with = "String")]
    pub interval: SpannedStr,
    /// Time one check may take.
    #[serde(default = "default_timeout")]
    #[schemars(with = "String")]
    pub timeout: SpannedStr,
    /// Failures in a row before the container is unhealthy.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Grace period after start during which failures do not count.
    #[serde(default = "default_start_period")]
    #[schemars(with = "String")]
    pub start_period: SpannedStr,
}

/// A value with no place in a file: defaults, and specs reconcile synthesizes
/// (a docker Endpoint's service).
pub fn spanned(s: impl Into<String>) -> SpannedStr {
    SpannedStr {
        value: s.into(),
        referenced: serde_saphyr::Location::UNKNOWN,
        defined: serde_saphyr::Location::UNKNOWN,
    }
}

fn default_interval() -> SpannedStr {
    spanned("2s")
}

fn default_timeout() -> SpannedStr {
    spanned("5s")
}

fn default_retries() -> u32 {
    15
}

fn default_start_period() -> SpannedStr {
    spanned("0s")
}

/// A health check command in either of compose's forms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HealthCommand {
    /// Run through the shell.
    Shell(String),
    /// Run as is.
    Exec(Vec<String>),
}

impl HealthCommand {
    /// Docker's `Test` array: `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub fn docker_test(&self) -> Vec<String> {
        match self {
            HealthCommand::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
            HealthCommand::Exec(args) => std::iter::once("CMD".to_string())
                .chain(args.iter().cloned())
                .collect(),
        }
    }
}

impl HealthSpec {
    /// The durations, parsed (validation has checked them; bad ones fall back to defaults).
    pub fn timing(&self) -> HealthTiming {
        HealthTiming {
            interval: parse_duration(&self.interval.value).unwrap_or(Duration::from_secs(2)),
            timeout: parse_duration(&self.timeout.value).unwrap_or(Duration::from_secs(5)),
            retries: self.retries,
            start_period: parse_duration(&self.start_period.value).unwrap_or_default(),
        }
    }
}

/// A health check's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthTiming {
    /// Between checks.
    pub interval: Duration,
    /// Per check.
    pub timeout: Duration,
    /// Failures before unhealthy.
    pub retries: u32,
    /// Grace after start.
    pub start_period: Duration,
}

impl HealthTiming {
    /// How long to wait for `healthy` before giving up: the grace period plus
    /// every retry at its worst, plus a second of slack.
    pub fn deadline(&self) -> Duration {
        let per_try = self.interval + self.timeout;
        self.start_period + per_try * (self.retries + 1) + Duration::from_secs(1)
    }
}

/// Parses `2s`, `500ms`, `1m30s`: the one grammar of [`crate::duration`].
pub fn parse_duration(s: &str) -> Option<Duration> {
    crate::duration::parse(s).ok()
}

/// Parses a memory size: bytes, or a number with `k`, `m` or `g` (powers of
/// 1024, as Docker reads them). Four suffixes do not justify a crate.
pub fn parse_memory(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1i64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        c if c.is_ascii_digit() => (t, 1),
        _ => return None,
    };
    let n: f64 = num.trim().parse().ok()?;
    let bytes = n * mult as f64;
    (n > 0.0 && bytes.is_finite() && bytes < 1e15).then_some(bytes as i64)
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// Host address to bind (all interfaces when absent).
    pub host_ip: Option<String>,
    /// Host port (Docker picks one when absent).
    pub host_port: Option<u16>,
    /// Port inside the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl PortMapping {
    /// Docker's key for the container side: `80/tcp`.
    pub fn container_key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

/// Parses `"80"`, `"8080:80"`, `"127.0.0.1:8080:80"`, each with an optional `/udp`.
pub fn parse_port(s: &str) -> Result<PortMapping, String> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((p, proto @ ("tcp" | "udp"))) => (p, proto.to_string()),
        Some((_, other)) => return Err(format!("protocol `{other}` is not tcp or udp")),
        None => (s, "tcp".to_string()),
    };
    let port = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{p}` is not a port number (1-65535)"))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host_ip, host_port, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(port(h)?), *c),
        [ip, h, c] => {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| format!("`{ip}` is not an IP address"))?;
            let host_port = if h.is_empty() { None } else { Some(port(h)?) };
            (Some(ip.to_string()), host_port, *c)
        }
        _ => return Err("write `container`, `host:container` or `ip:host:container`".into()),
    };
    Ok(PortMapping {
        host_ip,
        host_port,
        container_port: port(container)?,
        protocol,
    })
}

/// A mount, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// Named volume or project folder.
    pub source: MountSource,
    /// Path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A named volume of the project (kept across recreation; removed by `destroy --purge`).
    Named(String),
    /// A path relative to the spec file (must stay within the project).
    Bind(String),
}

/// Parses `name:/path`, `./dir:/path` and either with `:ro` / `:rw`.
pub fn parse_volume(s: &str) -> Result<VolumeMount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        [_, _, mode] => return Err(format!("mode `{mode}` is not `ro` or `rw`")),
        _ => return Err("write `volume:/path` or `./folder:/path`, optionally with `:ro`".into()),
    };
    if !target.starts_with('/') {
        return Err(format!(
            "`{target}` is not an absolute path in the container"
        ));
    }
    let source = if source.starts_with('.') || source.starts_with('/') {
        MountSource::Bind(source.to_string())
    } else if crate::spec::is_identifier(source) || crate::spec::is_resource_name(source) {
        MountSource::Named(source.to_string())
    } else {
        return Err(format!(
            "`{source}` is neither a volume name nor a path starting with `./`"
        ));
    };
    Ok(VolumeMount {
        source,
        target: target.to_string(),
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(
            parse_port("127.0.0.1:8080:80/udp").unwrap(),
            PortMapping {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(8080),
                container_port: 80,
                protocol: "udp".into()
            }
        );
        assert_eq!(parse_port("80").unwrap().host_port, None);
        assert_eq!(parse_port("127.0.0.1::80").unwrap().host_port, None);
        assert!(parse_port("70000:80").is_err());
        assert!(parse_port("80/sctp").is_err());
        assert!(parse_port("a:b:c:d").is_err());
    }

    #[test]
    fn volumes() {
        let v = parse_volume("pgdata:/var/lib/postgresql/data").unwrap();
        assert_eq!(v.source, MountSource::Named("pgdata".into()));
        let b = parse_volume("./conf:/etc/conf:ro").unwrap();
        assert_eq!(b.source, MountSource::Bind("./conf".into()));
        assert!(b.read_only);
        assert!(parse_volume("data:relative").is_err());
        assert!(parse_volume("Bad Name:/x").is_err());
        assert!(parse_volume("x:/y:zz").is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_memory("256m"), Some(256 << 20));
        assert_eq!(parse_memory("1g"), Some(1 << 30));
        assert_eq!(parse_memory("1.5g"), Some(3 << 29));
        assert_eq!(parse_memory("512"), Some(512));
        assert_eq!(parse_memory("12x"), None);
        assert_eq!(parse_memory("-1m"), None);
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("soon"), None);
    }
}
