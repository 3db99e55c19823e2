//! `reconcile compose`: the project's containers as a docker compose file, for
//! people who run them with compose instead of the controller. Services are
//! written as declared; Endpoints with `runtime: docker` as the service
//! [`crate::container::endpoint_service`] synthesizes ([`super::containers`]),
//! so the two ways of running the project never disagree about a container.
//!
//! Pure: a function of the loaded specs and the folder the file will live in
//! (relative paths are rebased onto it). Nothing is read or resolved; `${VAR}`
//! references in `env` stay references, which compose interpolates the same way.
//!
//! Ownership: what compose runs from this file is compose's. Its containers
//! carry [`LABEL_EXPORT_PROJECT`] and [`LABEL_EXPORT_RESOURCE`] (where they come
//! from), never the controller's `reconcile.project` / `reconcile.resource` /
//! `reconcile.hash`, so the controller neither adopts, replaces nor prunes
//! them; its network and volumes are named by compose. Running the rest of
//! the project beside it is `reconcile apply --no-containers`.

use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use serde::Serialize;
use thiserror::Error;

use super::{Container, container_dependencies, containers};
use crate::kinds::service::spec::{
    MountSource, ServiceSpec, parse_duration, parse_memory, parse_port, parse_volume,
};
use crate::spec::SpecSet;

/// Why a compose file could not be written. Validated specs only fail here on
/// what compose cannot express.
#[derive(Debug, Error)]
pub enum ComposeError {
    /// Paths are rebased onto the output folder, which must be absolute to do so.
    #[error("the output folder `{}` is not an absolute path", .0.display())]
    RelativeOutDir(PathBuf),
    /// A value of a spec that compose cannot take (validation catches these first).
    #[error("{resource}: {message}")]
    Invalid {
        /// `Kind/name` of the resource.
        resource: String,
        /// What is wrong.
        message: String,
    },
    /// A Service and a docker Endpoint share a name; compose keys services by name.
    #[error("`{0}` names two containers (a Service and an Endpoint); compose needs unique names")]
    DuplicateName(String),
    /// Compose project names are lowercase letters, digits, `-` and `_`.
    #[error(
        "project name `{0}` is not a compose project name (lowercase letters, digits, `-`, `_`, starting with a letter or digit)"
    )]
    ProjectName(String),
    /// The YAML serializer failed.
    #[error("cannot write YAML: {0}")]
    Serialize(#[from] serde_saphyr::SerializeError),
}

/// A compose file: the subset of the compose specification reconcile writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComposeFile {
    /// The compose project name (the reconcile project's name).
    pub name: String,
    /// Containers in spec order.
    pub services: IndexMap<String, ComposeService>,
    /// Named volumes the services mount (compose names them `<project>_<name>`).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub volumes: IndexMap<String, VolumeDecl>,
}

/// One container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComposeService {
    /// Image to run (or the tag of the built image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Where to build the image from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<ComposeBuild>,
    /// Replaces the image's entrypoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment, `${VAR}` references as written.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub environment: IndexMap<String, String>,
    /// Published ports, short syntax (always quoted, as compose advises).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "double_quoted"
    )]
    pub ports: Vec<String>,
    /// Mounts, short syntax; bind sources relative to the compose file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Restart policy.
    pub restart: String,
    /// Readiness check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<ComposeHealth>,
    /// Containers to start (or see healthy) first.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub depends_on: IndexMap<String, DependsOn>,
    /// Resource limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    /// Which project and resource the container comes from
    /// ([`LABEL_EXPORT_PROJECT`], [`LABEL_EXPORT_RESOURCE`]).
    pub labels: IndexMap<String, String>,
}

/// Build settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComposeBuild {
    /// Build context, relative to the compose file.
    pub context: String,
    /// Dockerfile, relative to the context.
    pub dockerfile: String,
}

/// A health check in compose's words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComposeHealth {
    /// `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    /// Between checks (Go duration syntax).
    pub interval: String,
    /// Per check.
    pub timeout: String,
    /// Failures before unhealthy.
    pub retries: u32,
    /// Grace period after start.
    pub start_period: String,
}

/// What a dependent waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependsOn {
    /// `service_healthy` when the dependency has a health check, else `service_started`.
    pub condition: Condition,
}

/// Compose's dependency conditions that reconcile uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The dependency's container is running.
    ServiceStarted,
    /// The dependency's health check passes.
    ServiceHealthy,
}

/// `deploy:`, only for resource limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deploy {
    /// Limits and (never written) reservations.
    pub resources: DeployResources,
}

/// `deploy.resources`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployResources {
    /// The limits.
    pub limits: Limits,
}

/// CPU and memory limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// CPUs, e.g. `0.5`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory, e.g. `256m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// A named volume declaration (compose's defaults; written as `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VolumeDecl {}

/// The label naming the project a compose container was exported from. Not
/// the controller's `reconcile.project`: the controller observes only the
/// containers it created, so it never takes compose's for its own.
pub const LABEL_EXPORT_PROJECT: &str = "reconcile.export.project";
/// The label naming the resource (`Service/name`, `Endpoint/name`) a compose
/// container was exported from.
pub const LABEL_EXPORT_RESOURCE: &str = "reconcile.export.resource";

/// Builds the compose model of a project. `out_dir` is the absolute folder the
/// file will be written to; bind mounts and build contexts are made relative to it.
pub fn compose_file(set: &SpecSet, out_dir: &Path) -> Result<ComposeFile, ComposeError> {
    if !out_dir.is_absolute() {
        return Err(ComposeError::RelativeOutDir(out_dir.to_path_buf()));
    }
    let project = set.project.name.value.clone();
    if !is_compose_project_name(&project) {
        return Err(ComposeError::ProjectName(project));
    }
    let all = containers(set);
    let mut services = IndexMap::new();
    let mut volumes = IndexMap::new();
    for c in &all {
        let name = c.spec.name.value.clone();
        let service = service(set, c, &all, out_dir, &mut volumes)?;
        if services.insert(name.clone(), service).is_some() {
            return Err(ComposeError::DuplicateName(name));
        }
    }
    Ok(ComposeFile {
        name: project,
        services,
        volumes,
    })
}

/// The compose file as YAML, with a header saying where it comes from.
pub fn render(set: &SpecSet, out_dir: &Path) -> Result<String, ComposeError> {
    let file = compose_file(set, out_dir)?;
    let options = serde_saphyr::ser_options! {
        // Long commands stay on one line instead of folding.
        prefer_block_scalars: false,
    };
    let mut body = serde_saphyr::to_string_with_options(&file, options)?;
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let specs = rebase(&set.root, out_dir);
    Ok(format!(
        "# Generated by `reconcile compose` from the specs in `{specs}`. Do not edit:\n\
         # change the specs and run `reconcile compose` again.\n\
         # Compose owns these containers (the controller never touches them): run the\n\
         # rest of the project beside them with `reconcile apply --no-containers`.\n{body}"
    ))
}

fn service(
    set: &SpecSet,
    c: &Container<'_>,
    all: &[Container<'_>],
    out_dir: &Path,
    named_volumes: &mut IndexMap<String, VolumeDecl>,
) -> Result<ComposeService, ComposeError> {
    let s = &c.spec;
    let invalid = |message: String| ComposeError::Invalid {
        resource: c.resource.id.to_string(),
        message,
    };
    let base = c.resource.base_dir();
    let build = s.build.as_ref().map(|b| ComposeBuild {
        context: rebase(&base.join(&b.context.value), out_dir),
        dockerfile: literal(&b.dockerfile),
    });
    let mut ports = Vec::new();
    for p in &s.ports {
        parse_port(&p.value).map_err(|e| invalid(format!("port `{}`: {e}", p.value)))?;
        ports.push(literal(p.value.trim()));
    }
    let mut volumes = Vec::new();
    for v in &s.volumes {
        let m =
            parse_volume(&v.value).map_err(|e| invalid(format!("volume `{}`: {e}", v.value)))?;
        let source = match &m.source {
            MountSource::Named(n) => {
                named_volumes.entry(n.clone()).or_default();
                n.clone()
            }
            MountSource::Bind(p) => rebase(&base.join(p), out_dir),
        };
        let mode = if m.read_only { ":ro" } else { "" };
        volumes.push(format!("{source}:{}{mode}", literal(&m.target)));
    }
    let healthcheck = match &s.health {
        None => None,
        Some(h) => {
            let duration = |what: &str, d: &str| {
                parse_duration(d)
                    .map(go_duration)
                    .ok_or_else(|| invalid(format!("health {what} `{d}` is not a duration")))
            };
            Some(ComposeHealth {
                test: h.command.docker_test().iter().map(|a| literal(a)).collect(),
                interval: duration("interval", &h.interval.value)?,
                timeout: duration("timeout", &h.timeout.value)?,
                retries: h.retries,
                start_period: duration("startPeriod", &h.start_period.value)?,
            })
        }
    };
    let deploy = match &s.resources {
        None => None,
        Some(r) => {
            let memory = match &r.memory {
                None => None,
                Some(m) => {
                    parse_memory(&m.value)
                        .ok_or_else(|| invalid(format!("`{}` is not a memory size", m.value)))?;
                    Some(m.value.trim().to_string())
                }
            };
            (r.cpus.is_some() || memory.is_some()).then_some(Deploy {
                resources: DeployResources {
                    limits: Limits {
                        cpus: r.cpus,
                        memory,
                    },
                },
            })
        }
    };
    let mut labels = IndexMap::new();
    labels.insert(
        LABEL_EXPORT_PROJECT.to_string(),
        set.project.name.value.clone(),
    );
    labels.insert(LABEL_EXPORT_RESOURCE.to_string(), c.resource.id.to_string());
    Ok(ComposeService {
        image: s.image.as_ref().map(|i| literal(i.value.trim())),
        build,
        entrypoint: s
            .entrypoint
            .as_ref()
            .map(|v| v.iter().map(|a| literal(a)).collect()),
        command: s
            .command
            .as_ref()
            .map(|v| v.iter().map(|a| literal(a)).collect()),
        environment: s
            .env
            .iter()
            .map(|(k, v)| (k.clone(), env_value(&v.value)))
            .collect(),
        ports,
        volumes,
        restart: s.restart.as_str().to_string(),
        healthcheck,
        depends_on: depends_on(set, s, all),
        deploy,
        labels,
    })
}

/// The containers a service waits for: its `dependsOn` entries that name a
/// container of the project (others order the controller's work, not compose's).
fn depends_on(
    set: &SpecSet,
    s: &ServiceSpec,
    all: &[Container<'_>],
) -> IndexMap<String, DependsOn> {
    container_dependencies(set, s, all)
        .into_iter()
        .map(|dep| {
            let condition = if dep.spec.health.is_some() {
                Condition::ServiceHealthy
            } else {
                Condition::ServiceStarted
            };
            (dep.spec.name.value.clone(), DependsOn { condition })
        })
        .collect()
}

/// Writes strings double-quoted: a YAML 1.1 reader takes an unquoted `22:22` for
/// a base-60 number.
fn double_quoted<S: serde::Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(serde_saphyr::DoubleQuoted))
}

/// Compose's rule for project names.
fn is_compose_project_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A value compose must not interpolate: every `$` doubled. Reconcile resolves
/// `${VAR}` only in `env`; elsewhere (commands, health checks) a `$` is meant
/// for the container's shell, as the controller passes it.
fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

/// An `env` value for compose: `${VAR}` references and `$$` kept as written (both
/// mean the same to compose), any other `$` doubled, since reconcile reads it
/// literally and compose would interpolate `$VAR`.
fn env_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$$") {
            out.push_str("$$");
            rest = tail;
        } else if let Some(end) = after.strip_prefix("${").and_then(|t| t.find('}')) {
            out.push_str(&after[..end + 3]);
            rest = &after[end + 3..];
        } else {
            out.push_str("$$");
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

/// A duration in the syntax compose reads (Go's): the largest unit that is exact.
fn go_duration(d: std::time::Duration) -> String {
    let nanos = d.as_nanos();
    if nanos.is_multiple_of(1_000_000_000) {
        format!("{}s", nanos / 1_000_000_000)
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{}us", nanos / 1_000)
    } else {
        format!("{nanos}ns")
    }
}

/// Drops `.` and folds `..` without touching the filesystem.
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `target` relative to the folder `from`, both absolute, written as compose
/// wants a bind source: starting with `./` or `../`, `/` separated.
pub fn rebase(target: &Path, from: &Path) -> String {
    let target = normalize(target);
    let from = normalize(from);
    let t: Vec<Component> = target.components().collect();
    let f: Vec<Component> = from.components().collect();
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    // Different roots (another drive) cannot be made relative; keep it absolute.
    if common == 0 {
        return literal(&target.to_string_lossy());
    }
    let mut parts: Vec<String> = std::iter::repeat_n("..".to_string(), f.len() - common).collect();
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    let joined = parts.join("/");
    let rel = if joined.is_empty() {
        ".".to_string()
    } else if joined.starts_with("..") {
        joined
    } else {
        format!("./{joined}")
    };
    literal(&rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebasing_paths() {
        let r = |t: &str, f: &str| rebase(Path::new(t), Path::new(f));
        assert_eq!(r("/p/specs/conf", "/p"), "./specs/conf");
        assert_eq!(r("/p/specs/./conf", "/p/out"), "../specs/conf");
        assert_eq!(r("/p/specs/sub/../conf", "/p/specs"), "./conf");
        assert_eq!(r("/p", "/p"), ".");
        assert_eq!(r("/p", "/p/a/b"), "../..");
        assert_eq!(r("/a/x", "/b/y"), "../../a/x");
    }

    #[test]
    fn dollars_mean_what_they_meant() {
        assert_eq!(
            env_value("postgres://u:${PW}@h/db"),
            "postgres://u:${PW}@h/db"
        );
        assert_eq!(env_value("a$$b $HOME ${X"), "a$$b $$HOME $${X");
        assert_eq!(literal("echo $HOME"), "echo $$HOME");
    }

    #[test]
    fn durations_in_go_syntax() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::from_secs(90)), "90s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    /// Writes `files` under a fresh project folder and loads it.
    fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, SpecSet) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write spec");
        }
        let set = crate::spec::validate::load_and_validate(dir.path()).unwrap_or_else(|d| {
            panic!(
                "specs invalid: {:?}",
                d.iter().map(|d| &d.message).collect::<Vec<_>>()
            )
        });
        (dir, set)
    }

    const PROJECT: &str =
        "kind: Project\nname: demo\n---\nkind: Entity\nname: user\njoinKeys: [id]\n";

    #[test]
    fn binds_and_contexts_are_relative_to_the_output() {
        let (dir, set) = project(&[
            ("project.yaml", PROJECT),
            (
                "svc/app.yaml",
                "kind: Service\nname: app\nimage: app:1\nbuild: { context: ./src }\n\
                 volumes: ['./conf:/etc/app:ro', 'data:/data']\n",
            ),
            ("svc/src/Dockerfile", "FROM scratch\n"),
            ("svc/conf/app.conf", "x\n"),
        ]);
        let root = set.root.clone();
        let file = compose_file(&set, &root).expect("compose");
        let app = &file.services["app"];
        assert_eq!(app.volumes, ["./svc/conf:/etc/app:ro", "data:/data"]);
        assert_eq!(
            app.build.as_ref().map(|b| b.context.as_str()),
            Some("./svc/src")
        );
        assert!(file.volumes.contains_key("data"));

        let out = root.join("deploy");
        let file = compose_file(&set, &out).expect("compose");
        assert_eq!(file.services["app"].volumes[0], "../svc/conf:/etc/app:ro");
        assert_eq!(
            file.services["app"]
                .build
                .as_ref()
                .map(|b| b.context.as_str()),
            Some("../svc/src")
        );
        assert!(matches!(
            compose_file(&set, Path::new("relative")),
            Err(ComposeError::RelativeOutDir(_))
        ));
        drop(dir);
    }

    #[test]
    fn compose_containers_are_not_the_controllers() {
        let (_dir, set) = project(&[
            ("project.yaml", PROJECT),
            ("svc.yaml", "kind: Service\nname: app\nimage: app:1\n"),
        ]);
        let file = compose_file(&set, &set.root).expect("compose");
        let labels = &file.services["app"].labels;
        assert_eq!(labels[LABEL_EXPORT_PROJECT], "demo");
        assert_eq!(labels[LABEL_EXPORT_RESOURCE], "Service/app");
        // The labels the controller observes, adopts and prunes by are absent,
        // and so is its network: compose names its own.
        let yaml = render(&set, &set.root).expect("render");
        for own in [
            crate::docker::LABEL_PROJECT,
            crate::docker::LABEL_RESOURCE,
            crate::docker::LABEL_HASH,
        ] {
            assert!(!yaml.contains(&format!("{own}:")), "{own} in\n{yaml}");
        }
        assert!(!yaml.contains("networks:"), "{yaml}");
        assert!(!yaml.contains("reconcile-demo"), "{yaml}");
    }

    #[test]
    fn depends_on_waits_for_health_only_when_there_is_one() {
        let (_dir, set) = project(&[
            ("project.yaml", PROJECT),
            (
                "services.yaml",
                "kind: Service\nname: db\nimage: postgres:16\n\
                 health: { command: [pg_isready] }\n---\n\
                 kind: Service\nname: cache\nimage: redis:7\nports: ['8080:80']\n---\n\
                 kind: Service\nname: app\nimage: app:1\n\
                 dependsOn: [db, Service/cache, Entity/user]\n",
            ),
        ]);
        let file = compose_file(&set, &set.root).expect("compose");
        let deps = &file.services["app"].depends_on;
        assert_eq!(deps.len(), 2, "the Entity is not a container: {deps:?}");
        assert_eq!(deps["db"].condition, Condition::ServiceHealthy);
        assert_eq!(deps["cache"].condition, Condition::ServiceStarted);
        let yaml = render(&set, &set.root).expect("render");
        assert!(yaml.contains("condition: service_healthy"), "{yaml}");
        assert!(
            yaml.starts_with("# Generated by `reconcile compose`"),
            "{yaml}"
        );
        // YAML 1.1 readers take `no` for false and `8080:80` for a base-60 number.
        assert!(
            yaml.contains("restart: \"no\"") || yaml.contains("restart: 'no'"),
            "{yaml}"
        );
        assert!(yaml.contains("- \"8080:80\"\n"), "{yaml}");
        assert!(yaml.ends_with('\n'));
    }
}
