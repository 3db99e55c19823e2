//! `reconcile export kubernetes`: the project's containers as Kubernetes
//! manifests, built from the typed API objects of `k8s-openapi` (API version
//! 1.37), so every field written exists in that version and a test can parse
//! the output back into the same types.
//!
//! What is written, per container of [`super::containers`] (Services, and
//! docker Endpoints as the service the controller runs):
//!
//! * a `Deployment` (`deploy.replicas`, one by default; `RollingUpdate` from
//!   `deploy.update` — start-first surges, stop-first takes pods down first —
//!   else with no unavailable pod, or
//!   `Recreate` when it mounts a volume claim, which two pods must not share);
//!   readiness and liveness probes from `health`, limits from `resources`;
//! * a `Service` of type `ClusterIP` for its ports, under the container's name,
//!   so `postgres:5432` resolves in the cluster as on the project network;
//! * a `ConfigMap` per folder or file it bind-mounts, holding the files: those
//!   a resource generates (the Observability config) rendered from the specs,
//!   others read from the project folder;
//! * a `PersistentVolumeClaim` per named volume;
//! * every `${VAR}` of its env as a `secretKeyRef` into one Secret,
//!   `<project>-secrets`, which is never written (the values never leave the
//!   user's hands); a value with a reference inside (a URL) uses Kubernetes'
//!   own `$(VAR)` expansion of an earlier variable.
//!
//! And one `Job`, `<project>-apply`: `reconcile apply --no-containers` inside
//! the cluster, as the compose path runs it beside compose. It opens the
//! stores, which creates their schema (reconcile migrates on open, under a
//! lock), and converges tables, views, training, promotion and monitors. It and
//! the endpoints run the project image, `reconcile-<project>:latest`: the
//! `reconcile-serve` image (this binary) with the project folder copied to
//! `/project`, by the `Dockerfile` written beside the manifests. No registry
//! holds it, nor an image a Service builds: their Deployments say so in the
//! `reconcile.export/build` annotation.
//!
//! Pure up to [`write`]: [`manifests`] reads only the files a Service mounts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container as K8sContainer, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, KeyToPath, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretKeySelector, Service as K8sService, ServicePort,
    ServiceSpec as K8sServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use thiserror::Error;

use super::{Container, compose::rebase, containers};
use crate::container::{BINARY_PATH, IN_NETWORK_ENV, PROJECT_MOUNT, SERVE_IMAGE};
use crate::kinds::service::deploy::{UpdateOrder, duration_of};
use crate::kinds::service::spec::{
    HealthCommand, MountSource, ServiceSpec, parse_duration, parse_memory, parse_port, parse_volume,
};
use crate::spec::SpecSet;

/// The label naming the project an object was exported from.
pub const LABEL_PROJECT: &str = "reconcile.export/project";
/// The annotation naming the resource (`Service/name`, `Endpoint/name`) an
/// object comes from (a label value cannot hold the `/`).
pub const ANNOTATION_RESOURCE: &str = "reconcile.export/resource";
/// The annotation on a Deployment or Job whose image no registry holds: how to
/// build it and what to push.
pub const ANNOTATION_BUILD: &str = "reconcile.export/build";
/// The annotation on a Deployment whose swarm placement constraints have no
/// Kubernetes field (only `node.labels.*==…` maps, to a node selector).
pub const ANNOTATION_PLACEMENT: &str = "reconcile.export/placement";
/// The size a `ConfigMap` may hold (etcd's limit is about 1.5 MiB per object;
/// Kubernetes documents 1 MiB for the data).
pub const CONFIG_MAP_LIMIT: usize = 1 << 20;
/// What a claim for a named volume requests: the specs say nothing of size.
pub const VOLUME_SIZE: &str = "1Gi";
/// The file the Dockerfile of the project image is written to.
pub const DOCKERFILE: &str = "Dockerfile";

/// Why manifests could not be made or written.
#[derive(Debug, Error)]
pub enum KubernetesError {
    /// A name that must be a DNS-1123 label (RFC 1035 for a Service's) is not.
    #[error(
        "{what} `{name}` is not a Kubernetes name: {why} (lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63)"
    )]
    Name {
        /// What the name names (`Service/…`'s container, a volume, the project).
        what: String,
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A spec value Kubernetes cannot take.
    #[error("{resource}: {message}")]
    Invalid {
        /// `Kind/name`.
        resource: String,
        /// What is wrong.
        message: String,
    },
    /// Two objects of one kind would share a name.
    #[error("two {kind}s would be named `{name}`; rename one of the specs")]
    Duplicate {
        /// The Kubernetes kind.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A folder or file a Service mounts could not be read.
    #[error("{resource}: cannot read `{}` to put it in a ConfigMap", path.display())]
    Mounted {
        /// `Kind/name`.
        resource: String,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// What a resource generates into a mounted folder could not be rendered.
    #[error("{resource}: rendering what {generator} generates into `{}`", path.display())]
    Generate {
        /// `Kind/name` of the mounting container.
        resource: String,
        /// `Kind/name` of the generating resource.
        generator: String,
        /// The mounted path.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::kinds::GenerateError,
    },
    /// The output folder cannot hold the manifests.
    #[error("output folder `{}`: {why}", path.display())]
    OutDir {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML serializer failed.
    #[error("cannot write YAML")]
    Serialize(#[from] serde_saphyr::SerializeError),
}

/// One object of the manifests.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    /// A named volume.
    PersistentVolumeClaim(Box<PersistentVolumeClaim>),
    /// A mounted folder or file.
    ConfigMap(Box<ConfigMap>),
    /// A container's ports.
    Service(Box<K8sService>),
    /// A container.
    Deployment(Box<Deployment>),
    /// `reconcile apply --no-containers` in the cluster.
    Job(Box<Job>),
}

/// The manifests of a project and the Dockerfile of its image.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    /// Claims, config maps, services, deployments, then the job; each group in spec order.
    pub objects: Vec<Object>,
    /// The project image's tag (`reconcile-<project>:latest`).
    pub project_image: String,
    /// The name of the Secret every `${VAR}` refers to.
    pub secret: String,
}

/// The project image: the endpoint image plus the project folder.
pub fn project_image(project: &str) -> String {
    format!("reconcile-{project}:latest")
}

/// The Secret holding the values of the specs' `${VAR}`s (never written).
pub fn secret_name(project: &str) -> String {
    format!("{project}-secrets")
}

/// The name of the Job that runs `reconcile apply --no-containers`.
pub fn job_name(project: &str) -> String {
    format!("{project}-apply")
}

/// Builds the manifests of a project.
pub fn manifests(set: &SpecSet) -> Result<Manifests, KubernetesError> {
    let project = set.project.name.value.clone();
    dns_label("the project name", &project, false)?;
    // The longest name derived from the project's.
    dns_label("the project's Secret", &secret_name(&project), false)?;
    let all = containers(set);
    let cx = Cx {
        set,
        project: project.clone(),
        secret: secret_name(&project),
        image: project_image(&project),
    };
    let mut claim_order: Vec<String> = Vec::new();
    let mut config_maps = Vec::new();
    let mut services = Vec::new();
    let mut deployments = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for c in &all {
        let name = c.spec.name.value.clone();
        dns_label(
            &format!("the container name of {}", c.resource.id),
            &name,
            true,
        )?;
        if name == job_name(&project) {
            return Err(KubernetesError::Invalid {
                resource: c.resource.id.to_string(),
                message: format!(
                    "`{name}` is the name of the Job that runs `reconcile apply`; rename the container"
                ),
            });
        }
        if let Some(other) = names.insert(name.clone(), c.resource.id.to_string()) {
            return Err(KubernetesError::Invalid {
                resource: c.resource.id.to_string(),
                message: format!("`{name}` also names the container of {other}"),
            });
        }
        let pod = cx.pod(c)?;
        for v in &pod.claims {
            if !claim_order.contains(v) {
                claim_order.push(v.clone());
            }
        }
        config_maps.extend(pod.config_maps.iter().cloned().map(Box::new));
        if let Some(s) = cx.service(c, &pod) {
            services.push(Box::new(s));
        }
        deployments.push(Box::new(cx.deployment(c, pod)));
    }
    let mut objects: Vec<Object> = claim_order
        .iter()
        .map(|v| Object::PersistentVolumeClaim(Box::new(cx.claim(v))))
        .collect();
    let mut cm_names = std::collections::BTreeSet::new();
    for cm in &config_maps {
        let n = cm.metadata.name.clone().unwrap_or_default();
        if !cm_names.insert(n.clone()) {
            return Err(KubernetesError::Duplicate {
                kind: "ConfigMap",
                name: n,
            });
        }
    }
    objects.extend(config_maps.into_iter().map(Object::ConfigMap));
    objects.extend(services.into_iter().map(Object::Service));
    objects.extend(deployments.into_iter().map(Object::Deployment));
    objects.push(Object::Job(Box::new(cx.job())));
    Ok(Manifests {
        objects,
        project_image: cx.image,
        secret: cx.secret,
    })
}

/// The files of an export: the manifests as multi-document YAML (what
/// `kubectl apply -f` reads) and the project image's Dockerfile, each with a
/// header saying where it comes from. `out_dir` is the absolute folder they
/// are written to (the specs' folder is named relative to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `<project>.yaml`.
    pub manifest_file: String,
    /// Its text.
    pub manifest: String,
    /// The Dockerfile's text.
    pub dockerfile: String,
}

/// Renders the manifests and the Dockerfile.
pub fn render(set: &SpecSet, out_dir: &Path) -> Result<Rendered, KubernetesError> {
    let m = manifests(set)?;
    let specs = rebase(&set.root, out_dir).replace("$$", "$");
    let project = &set.project.name.value;
    let mut yaml = format!(
        "# Generated by `reconcile export kubernetes` from the specs in `{specs}`\n\
         # (Kubernetes API 1.37). Do not edit: change the specs and export again.\n\
         # Before `kubectl apply -f` on this folder:\n\
         #  * the Secret `{secret}` with a key per `${{VAR}}` of the specs\n\
         #    (kubectl create secret generic {secret} --from-literal=NAME=…);\n\
         #  * every image whose Deployment or Job carries `{ANNOTATION_BUILD}`\n\
         #    built and pushed where the cluster pulls from (the project image\n\
         #    `{image}`: see the Dockerfile beside this file).\n\
         # The Job `{job}` runs `reconcile apply --no-containers` in the cluster;\n\
         # delete it before applying again to run it again.\n",
        secret = m.secret,
        image = m.project_image,
        job = job_name(project),
    );
    for o in &m.objects {
        yaml.push_str("---\n");
        let options = serde_saphyr::ser_options! {
            // Files in ConfigMaps as literal blocks (`|`), but no long line
            // folded (`>`): kubectl's YAML reader is not this one.
            folded_wrap_chars: usize::MAX,
        };
        let body = serde_saphyr::to_string_with_options(o, options)?;
        yaml.push_str(&body);
        if !body.ends_with('\n') {
            yaml.push('\n');
        }
    }
    let dockerfile = format!(
        "# Generated by `reconcile export kubernetes`: the image the Job `{job}` and\n\
         # the endpoints run, `{image}`: this reconcile binary\n\
         # (`{SERVE_IMAGE}:latest`, which `reconcile compose {specs} --build-images`\n\
         # builds) with the project folder at {PROJECT_MOUNT}. From this folder:\n\
         #   docker build -f {DOCKERFILE} -t {image} {specs}\n\
         # then tag and push it where the cluster pulls from, and point the\n\
         # manifests at that name (kustomize `images:` or `kubectl set image`).\n\
         FROM {SERVE_IMAGE}:latest\n\
         COPY . {PROJECT_MOUNT}\n",
        job = job_name(project),
        image = m.project_image,
    );
    Ok(Rendered {
        manifest_file: format!("{project}.yaml"),
        manifest: yaml,
        dockerfile,
    })
}

/// Writes the manifests and the Dockerfile into `out_dir` (created when
/// missing) and returns the paths written. A folder inside the specs' folder
/// is refused unless hidden: the next load would read the manifests as specs.
pub fn write(set: &SpecSet, out_dir: &Path) -> Result<Vec<PathBuf>, KubernetesError> {
    let out_err = |why: String| KubernetesError::OutDir {
        path: out_dir.to_path_buf(),
        why,
    };
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(out_err("exists and is not a folder".into()));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| out_err(e.to_string()))?;
    let out_dir = out_dir.canonicalize().map_err(|e| out_err(e.to_string()))?;
    if let Ok(inside) = out_dir.strip_prefix(&set.root) {
        let hidden = inside
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
        if !hidden {
            return Err(out_err(format!(
                "is inside the specs' folder `{}`, whose YAML files are all read as specs; write the manifests outside it",
                set.root.display()
            )));
        }
    }
    let r = render(set, &out_dir)?;
    let mut written = Vec::new();
    for (name, text) in [
        (r.manifest_file.as_str(), &r.manifest),
        (DOCKERFILE, &r.dockerfile),
    ] {
        let path = out_dir.join(name);
        std::fs::write(&path, text).map_err(|source| KubernetesError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// What every object of one export shares.
struct Cx<'a> {
    set: &'a SpecSet,
    project: String,
    secret: String,
    image: String,
}

/// A container's pod, before it is wrapped in a Deployment.
struct Pod {
    container: K8sContainer,
    volumes: Vec<Volume>,
    config_maps: Vec<ConfigMap>,
    claims: Vec<String>,
    /// How to build an image no registry has, if so.
    build: Option<String>,
    /// `(port, protocol)` the container listens on.
    ports: Vec<(u16, String)>,
}

impl Cx<'_> {
    fn meta(&self, name: &str, resource: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(self.labels(name)),
            annotations: resource
                .map(|r| BTreeMap::from([(ANNOTATION_RESOURCE.to_string(), r.to_string())])),
            ..ObjectMeta::default()
        }
    }

    fn labels(&self, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), name.to_string()),
            (
                "app.kubernetes.io/part-of".to_string(),
                self.project.clone(),
            ),
            (LABEL_PROJECT.to_string(), self.project.clone()),
        ])
    }

    fn selector(&self, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), name.to_string()),
            (
                "app.kubernetes.io/part-of".to_string(),
                self.project.clone(),
            ),
        ])
    }

    fn claim(&self, volume: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: self.meta(volume, None),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_string()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(VOLUME_SIZE.to_string()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }
    }

    fn pod(&self, c: &Container<'_>) -> Result<Pod, KubernetesError> {
        let s = &c.spec;
        let id = c.resource.id.to_string();
        let invalid = |message: String| KubernetesError::Invalid {
            resource: id.clone(),
            message,
        };
        let name = s.name.value.clone();
        let mut ports = Vec::new();
        for p in &s.ports {
            let m =
                parse_port(&p.value).map_err(|e| invalid(format!("port `{}`: {e}", p.value)))?;
            let proto = m.protocol.to_ascii_uppercase();
            if !ports.contains(&(m.container_port, proto.clone())) {
                ports.push((m.container_port, proto));
            }
        }
        let mut volumes = Vec::new();
        let mut mounts = Vec::new();
        let mut config_maps = Vec::new();
        let mut claims = Vec::new();
        let base = c.resource.base_dir();
        for (i, v) in s.volumes.iter().enumerate() {
            let m = parse_volume(&v.value)
                .map_err(|e| invalid(format!("volume `{}`: {e}", v.value)))?;
            match &m.source {
                MountSource::Named(n) => {
                    dns_label(&format!("the volume of {id}"), n, false)?;
                    if !volumes.iter().any(|x: &Volume| &x.name == n) {
                        volumes.push(Volume {
                            name: n.clone(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: n.clone(),
                                read_only: None,
                            }),
                            ..Volume::default()
                        });
                    }
                    claims.push(n.clone());
                    mounts.push(VolumeMount {
                        name: n.clone(),
                        mount_path: m.target.clone(),
                        read_only: m.read_only.then_some(true),
                        ..VolumeMount::default()
                    });
                }
                MountSource::Bind(p) => {
                    let source = super::compose::normalize(&base.join(p));
                    if self.set.root.starts_with(&source) {
                        if c.endpoint {
                            // The project folder: the project image holds it.
                            continue;
                        }
                        return Err(invalid(format!(
                            "mounts `{p}`, the whole project: a cluster has no project folder; mount the folder it needs (its files become a ConfigMap)"
                        )));
                    }
                    let files = self.mounted_files(&id, &source)?;
                    let cm_name = format!("{name}-config-{i}");
                    dns_label(&format!("the ConfigMap of {id}"), &cm_name, false)?;
                    let (cm, items, sub_path) = config_map(&id, &cm_name, files)?;
                    let vol = format!("config-{i}");
                    volumes.push(Volume {
                        name: vol.clone(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: cm_name.clone(),
                            items: Some(items),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    });
                    mounts.push(VolumeMount {
                        name: vol,
                        mount_path: m.target.clone(),
                        // A ConfigMap is read-only whatever the spec says.
                        read_only: Some(true),
                        sub_path,
                        ..VolumeMount::default()
                    });
                    let mut cm = cm;
                    cm.metadata = self.meta(&cm_name, Some(&id));
                    config_maps.push(cm);
                }
            }
        }
        let (probe_ready, probe_live) = match &s.health {
            None => (None, None),
            Some(h) => {
                let secs = |what: &str, d: &str| {
                    parse_duration(d)
                        .map(seconds)
                        .ok_or_else(|| invalid(format!("health {what} `{d}` is not a duration")))
                };
                let command = match &h.command {
                    HealthCommand::Exec(args) => args.clone(),
                    HealthCommand::Shell(sh) => vec!["/bin/sh".into(), "-c".into(), sh.clone()],
                };
                let probe = Probe {
                    exec: Some(ExecAction {
                        command: Some(command),
                    }),
                    period_seconds: Some(secs("interval", &h.interval.value)?.max(1)),
                    timeout_seconds: Some(secs("timeout", &h.timeout.value)?.max(1)),
                    failure_threshold: Some(i32::try_from(h.retries.max(1)).unwrap_or(i32::MAX)),
                    ..Probe::default()
                };
                let start = secs("startPeriod", &h.start_period.value)?;
                let live = Probe {
                    initial_delay_seconds: (start > 0).then_some(start),
                    ..probe.clone()
                };
                (Some(probe), Some(live))
            }
        };
        // Limits: `deploy.resources.limits`, else the Service's `resources`;
        // requests: `deploy.resources.reservations`.
        let quantities = |cpus: Option<f64>, memory: Option<&crate::spec::SpannedStr>| {
            let mut q = BTreeMap::new();
            if let Some(cpus) = cpus {
                q.insert("cpu".to_string(), cpu_quantity(cpus));
            }
            if let Some(m) = memory {
                let bytes = parse_memory(&m.value)
                    .ok_or_else(|| invalid(format!("`{}` is not a memory size", m.value)))?;
                q.insert("memory".to_string(), memory_quantity(bytes));
            }
            Ok::<_, KubernetesError>(q)
        };
        let deploy_resources = s.deploy.as_ref().and_then(|d| d.resources.as_ref());
        let limits = match deploy_resources.and_then(|r| r.limits.as_ref()) {
            Some(l) => quantities(l.cpus, l.memory.as_ref())?,
            None => match &s.resources {
                Some(r) => quantities(r.cpus, r.memory.as_ref())?,
                None => BTreeMap::new(),
            },
        };
        let requests = match deploy_resources.and_then(|r| r.reservations.as_ref()) {
            Some(r) => quantities(r.cpus, r.memory.as_ref())?,
            None => BTreeMap::new(),
        };
        let resources =
            (!limits.is_empty() || !requests.is_empty()).then(|| ResourceRequirements {
                limits: (!limits.is_empty()).then_some(limits),
                requests: (!requests.is_empty()).then_some(requests),
                ..ResourceRequirements::default()
            });
        let (image, build, pull) = if c.endpoint {
            (
                self.image.clone(),
                Some(self.build_note()),
                Some("IfNotPresent".to_string()),
            )
        } else if let Some(b) = &s.build {
            let tag = s.image.as_ref().map_or_else(
                || format!("reconcile-{}-{name}:latest", self.project),
                |i| i.value.trim().to_string(),
            );
            let context = base.join(&b.context.value);
            let note = format!(
                "build {tag} from `{}` (Dockerfile `{}`) and push it where the cluster pulls from",
                rebase(&context, &self.set.root).replace("$$", "$"),
                b.dockerfile
            );
            (tag, Some(note), Some("IfNotPresent".to_string()))
        } else {
            let image = s.image.as_ref().map(|i| i.value.trim().to_string());
            (image.unwrap_or_default(), None, None)
        };
        let env = env_vars(s, &self.secret).map_err(invalid)?;
        let container = K8sContainer {
            name: name.clone(),
            image: Some(image),
            image_pull_policy: pull,
            // An endpoint's entrypoint is the binary, its command `serve` of
            // the project folder, which the project image holds at the same place.
            command: s.entrypoint.clone(),
            args: s.command.clone(),
            env: (!env.is_empty()).then_some(env),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .iter()
                    .map(|(p, proto)| ContainerPort {
                        container_port: i32::from(*p),
                        protocol: Some(proto.clone()),
                        ..ContainerPort::default()
                    })
                    .collect()
            }),
            readiness_probe: probe_ready,
            liveness_probe: probe_live,
            resources,
            volume_mounts: (!mounts.is_empty()).then_some(mounts),
            ..K8sContainer::default()
        };
        Ok(Pod {
            container,
            volumes,
            config_maps,
            claims,
            build,
            ports,
        })
    }

    fn build_note(&self) -> String {
        format!(
            "build {} with the Dockerfile written beside these manifests (the reconcile binary and the project folder) and push it where the cluster pulls from",
            self.image
        )
    }

    /// The files a bind mount carries: what a resource generates there,
    /// rendered from the specs, or the folder's (or file's) content on disk.
    fn mounted_files(&self, id: &str, source: &Path) -> Result<Mounted, KubernetesError> {
        if let Some((generator, folder, files)) = crate::kinds::generated_at(self.set, source) {
            let files = files.map_err(|e| KubernetesError::Generate {
                resource: id.to_string(),
                generator: generator.id.to_string(),
                path: source.to_path_buf(),
                source: e,
            })?;
            let rel = source
                .strip_prefix(&folder)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if !rel.is_empty()
                && let Some(content) = files.get(&rel)
            {
                let file = rel.rsplit('/').next().unwrap_or(&rel).to_string();
                return Ok(Mounted::File(file, content.clone().into_bytes()));
            }
            let prefix = if rel.is_empty() {
                String::new()
            } else {
                format!("{rel}/")
            };
            let under: BTreeMap<String, Vec<u8>> = files
                .into_iter()
                .filter_map(|(p, c)| {
                    p.strip_prefix(&prefix)
                        .map(|p| (p.to_string(), c.into_bytes()))
                })
                .collect();
            return Ok(Mounted::Folder(under));
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KubernetesError::Mounted {
                resource: id.to_string(),
                path,
                source,
            }
        };
        let meta = std::fs::metadata(source).map_err(io(source))?;
        if meta.is_file() {
            let bytes = std::fs::read(source).map_err(io(source))?;
            let file = source
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok(Mounted::File(file, bytes));
        }
        let mut files = BTreeMap::new();
        let mut todo = vec![(source.to_path_buf(), String::new())];
        while let Some((dir, rel)) = todo.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .map_err(io(&dir))?
                .collect::<Result<_, _>>()
                .map_err(io(&dir))?;
            entries.sort_by_key(std::fs::DirEntry::file_name);
            for e in entries {
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                let rel = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let meta = std::fs::metadata(&path).map_err(io(&path))?;
                if meta.is_dir() {
                    todo.push((path, rel));
                } else if meta.is_file() {
                    files.insert(rel, std::fs::read(&path).map_err(io(&path))?);
                }
            }
        }
        Ok(Mounted::Folder(files))
    }

    fn service(&self, c: &Container<'_>, pod: &Pod) -> Option<K8sService> {
        if pod.ports.is_empty() {
            return None;
        }
        let name = &c.spec.name.value;
        let ports = pod
            .ports
            .iter()
            .map(|(p, proto)| ServicePort {
                name: Some(format!("{}-{p}", proto.to_ascii_lowercase())),
                port: i32::from(*p),
                protocol: Some(proto.clone()),
                target_port: Some(IntOrString::Int(i32::from(*p))),
                ..ServicePort::default()
            })
            .collect();
        Some(K8sService {
            metadata: self.meta(name, Some(&c.resource.id.to_string())),
            spec: Some(K8sServiceSpec {
                type_: Some("ClusterIP".to_string()),
                selector: Some(self.selector(name)),
                ports: Some(ports),
                ..K8sServiceSpec::default()
            }),
            ..K8sService::default()
        })
    }

    fn deployment(&self, c: &Container<'_>, pod: Pod) -> Deployment {
        let name = &c.spec.name.value;
        let mut meta = self.meta(name, Some(&c.resource.id.to_string()));
        if let Some(note) = &pod.build {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(ANNOTATION_BUILD.to_string(), note.clone());
        }
        let deploy = c.spec.deploy.clone().unwrap_or_default();
        // `deploy.update`: start-first surges `parallelism` new pods before
        // old ones stop; stop-first takes `parallelism` down first. Without
        // it, one new pod at a time and none unavailable.
        let (surge, unavailable) = match &deploy.update {
            Some(u) if u.order == UpdateOrder::StopFirst => (0, u.parallelism),
            Some(u) => (u.parallelism, 0),
            None => (1, 0),
        };
        let min_ready = deploy
            .update
            .as_ref()
            .and_then(|u| duration_of(u.monitor.as_ref()))
            .map(|d| d.as_secs() as i32)
            .filter(|s| *s > 0);
        // Node labels map to a node selector; the engine's other constraints
        // (role, hostname) have no Deployment field and are noted instead.
        let mut node_selector = BTreeMap::new();
        let mut unmapped = Vec::new();
        for c in deploy.placement.iter().flat_map(|p| p.constraints.iter()) {
            match c.split_once("==") {
                Some((k, v)) if k.trim().starts_with("node.labels.") => {
                    node_selector.insert(
                        k.trim().trim_start_matches("node.labels.").to_string(),
                        v.trim().to_string(),
                    );
                }
                _ => unmapped.push(c.clone()),
            }
        }
        if !unmapped.is_empty() {
            meta.annotations.get_or_insert_with(BTreeMap::new).insert(
                ANNOTATION_PLACEMENT.to_string(),
                format!(
                    "swarm constraints with no Kubernetes field: {}",
                    unmapped.join(", ")
                ),
            );
        }
        // Two pods must not share a volume claim (a database's files): the old
        // one stops before the new one starts.
        let strategy = if pod.claims.is_empty() {
            DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(surge as i32)),
                    max_unavailable: Some(IntOrString::Int(unavailable as i32)),
                }),
            }
        } else {
            DeploymentStrategy {
                type_: Some("Recreate".to_string()),
                rolling_update: None,
            }
        };
        Deployment {
            metadata: meta,
            spec: DeploymentSpec {
                replicas: Some(deploy.replicas as i32),
                min_ready_seconds: min_ready,
                selector: LabelSelector {
                    match_labels: Some(self.selector(name)),
                    ..LabelSelector::default()
                },
                strategy: Some(strategy),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels(name)),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![pod.container],
                        volumes: (!pod.volumes.is_empty()).then_some(pod.volumes),
                        node_selector: (!node_selector.is_empty()).then_some(node_selector),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            },
            ..Deployment::default()
        }
    }

    /// `reconcile apply --no-containers` in the cluster: the stores' schema
    /// (created on open) and everything that is not a container.
    fn job(&self) -> Job {
        let name = job_name(&self.project);
        let mut env = vec![EnvVar {
            name: IN_NETWORK_ENV.to_string(),
            value: Some("1".to_string()),
            value_from: None,
        }];
        // Every `${VAR}` any spec names: validation wants them set. Optional,
        // since some (a shell command's) are not reconcile's to resolve; one
        // it needs and the Secret lacks fails validation, naming it.
        for var in all_references(self.set) {
            env.push(secret_env(&var, &self.secret, &var, true));
        }
        let mut meta = self.meta(&name, None);
        meta.annotations = Some(BTreeMap::from([(
            ANNOTATION_BUILD.to_string(),
            self.build_note(),
        )]));
        Job {
            metadata: meta,
            spec: Some(JobSpec {
                backoff_limit: Some(6),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels(&name)),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".to_string()),
                        containers: vec![K8sContainer {
                            name: "apply".to_string(),
                            image: Some(self.image.clone()),
                            image_pull_policy: Some("IfNotPresent".to_string()),
                            command: Some(vec![BINARY_PATH.to_string()]),
                            args: Some(vec![
                                "apply".to_string(),
                                PROJECT_MOUNT.to_string(),
                                "--no-containers".to_string(),
                            ]),
                            env: Some(env),
                            volume_mounts: Some(vec![VolumeMount {
                                name: "tmp".to_string(),
                                mount_path: "/tmp".to_string(),
                                ..VolumeMount::default()
                            }]),
                            ..K8sContainer::default()
                        }],
                        // The image is FROM scratch: no /tmp of its own.
                        volumes: Some(vec![Volume {
                            name: "tmp".to_string(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        }]),
                        ..PodSpec::default()
                    }),
                },
                ..JobSpec::default()
            }),
            ..Job::default()
        }
    }
}

/// What a bind mount holds.
enum Mounted {
    /// One file: its name and bytes.
    File(String, Vec<u8>),
    /// A folder: path (with `/`) → bytes.
    Folder(BTreeMap<String, Vec<u8>>),
}

/// The ConfigMap of a mount, the items mapping its keys back to paths, and the
/// `subPath` when one file is mounted. Keys are paths with `/` written `.`.
fn config_map(
    id: &str,
    cm_name: &str,
    mounted: Mounted,
) -> Result<(ConfigMap, Vec<KeyToPath>, Option<String>), KubernetesError> {
    let invalid = |message: String| KubernetesError::Invalid {
        resource: id.to_string(),
        message,
    };
    let (files, sub_path) = match mounted {
        Mounted::File(name, bytes) => {
            let sub = name.clone();
            (BTreeMap::from([(name, bytes)]), Some(sub))
        }
        Mounted::Folder(files) => (files, None),
    };
    let total: usize = files.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > CONFIG_MAP_LIMIT {
        return Err(invalid(format!(
            "the files of ConfigMap `{cm_name}` hold {total} bytes; a ConfigMap holds at most {CONFIG_MAP_LIMIT}"
        )));
    }
    let mut data = BTreeMap::new();
    let mut binary = BTreeMap::new();
    let mut items = Vec::new();
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for (path, bytes) in files {
        let key = path.replace('/', ".");
        if key.is_empty()
            || key == "."
            || key == ".."
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(format!(
                "`{path}` cannot be a ConfigMap key (letters, digits, `-`, `_`, `.`)"
            )));
        }
        if let Some(other) = keys.insert(key.clone(), path.clone()) {
            return Err(invalid(format!(
                "`{path}` and `{other}` would both be ConfigMap key `{key}`"
            )));
        }
        items.push(KeyToPath {
            key: key.clone(),
            path: path.clone(),
            ..KeyToPath::default()
        });
        match String::from_utf8(bytes) {
            Ok(text) => {
                data.insert(key, text);
            }
            Err(e) => {
                binary.insert(key, ByteString(e.into_bytes()));
            }
        }
    }
    Ok((
        ConfigMap {
            data: (!data.is_empty()).then_some(data),
            binary_data: (!binary.is_empty()).then_some(binary),
            ..ConfigMap::default()
        },
        items,
        sub_path,
    ))
}

/// An env entry taken from the Secret.
fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: optional.then_some(true),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// A spec env value split into literal text and `${VAR}` references, as
/// reconcile reads it: `$$` is a literal `$`, `${X}` a reference, any other
/// `$` literal.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

fn parts(s: &str) -> Vec<Part> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        text.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$$") {
            text.push('$');
            rest = tail;
        } else if let Some(end) = after.strip_prefix("${").and_then(|t| t.find('}')) {
            if !text.is_empty() {
                out.push(Part::Text(std::mem::take(&mut text)));
            }
            out.push(Part::Var(after[2..end + 2].to_string()));
            rest = &after[end + 3..];
        } else {
            text.push('$');
            rest = &after[1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Part::Text(text));
    }
    out
}

/// A container's env for Kubernetes. A value that is one `${VAR}` becomes a
/// `secretKeyRef` to key `VAR`; a value with references inside becomes
/// Kubernetes' `$(VAR)` of a variable taken from the Secret first; literal
/// text has each `$` doubled, so Kubernetes expands nothing in it.
fn env_vars(s: &ServiceSpec, secret: &str) -> Result<Vec<EnvVar>, String> {
    let split: Vec<(&String, Vec<Part>)> =
        s.env.iter().map(|(k, v)| (k, parts(&v.value))).collect();
    let exact = |p: &[Part], var: &str| matches!(p, [Part::Var(v)] if v == var);
    let mut front: Vec<EnvVar> = Vec::new();
    let mut hoisted: Vec<&str> = Vec::new();
    for (k, p) in &split {
        if exact(p, k) || p.iter().all(|x| matches!(x, Part::Text(_))) {
            continue;
        }
        if matches!(p.as_slice(), [Part::Var(_)]) {
            continue;
        }
        for x in p {
            let Part::Var(var) = x else { continue };
            if hoisted.contains(&var.as_str()) {
                continue;
            }
            if let Some((_, same)) = split.iter().find(|(k2, _)| *k2 == var)
                && !exact(same, var)
            {
                return Err(format!(
                    "env `{k}` refers to `${{{var}}}`, which Kubernetes would take from the env `{var}` this container sets to something else; rename one"
                ));
            }
            hoisted.push(var);
            front.push(secret_env(var, secret, var, false));
        }
    }
    let mut out = front;
    for (k, p) in &split {
        if hoisted.contains(&k.as_str()) {
            continue;
        }
        if let [Part::Var(var)] = p.as_slice() {
            out.push(secret_env(k, secret, var, false));
            continue;
        }
        let value: String = p
            .iter()
            .map(|x| match x {
                Part::Text(t) => t.replace('$', "$$"),
                Part::Var(v) => format!("$({v})"),
            })
            .collect();
        out.push(EnvVar {
            name: (*k).clone(),
            value: Some(value),
            value_from: None,
        });
    }
    Ok(out)
}

/// Every variable a `${VAR}` names anywhere in the specs, sorted.
fn all_references(set: &SpecSet) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::String(s) => {
                out.extend(crate::spec::env::references(s).into_iter().map(|(n, _)| n));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    for r in &set.resources {
        walk(&r.spec.canonical_json(), &mut out);
    }
    for url in set.project.store_urls() {
        out.extend(
            crate::spec::env::references(&url.value)
                .into_iter()
                .map(|(n, _)| n),
        );
    }
    out.into_iter().collect()
}

/// A duration in whole seconds, rounded up (probes count in seconds).
fn seconds(d: std::time::Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s).unwrap_or(i32::MAX)
}

/// CPUs as a Kubernetes quantity: `500m`, `2`.
fn cpu_quantity(cpus: f64) -> Quantity {
    let milli = (cpus * 1000.0).round().max(1.0) as u64;
    if milli.is_multiple_of(1000) {
        Quantity(format!("{}", milli / 1000))
    } else {
        Quantity(format!("{milli}m"))
    }
}

/// Bytes as a Kubernetes quantity in the largest binary unit that is exact.
fn memory_quantity(bytes: i64) -> Quantity {
    for (unit, size) in [("Gi", 1i64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes % size == 0 {
            return Quantity(format!("{}{unit}", bytes / size));
        }
    }
    Quantity(bytes.to_string())
}

/// Checks a DNS-1123 label (with `rfc1035`, also starting with a letter, as a
/// Service's name must).
fn dns_label(what: &str, name: &str, rfc1035: bool) -> Result<(), KubernetesError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Some("it holds a character other than a-z, 0-9 and `-`")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it starts or ends with `-`")
    } else if rfc1035 && !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("a Service's name must start with a letter")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(KubernetesError::Name {
            what: what.to_string(),
            name: name.to_string(),
            why,
        }),
    }
}
