//! Observability generated from the specs: the Prometheus scrape config and
//! alert rules, and the Grafana provisioning (datasource and dashboards), all
//! derived from the Endpoints, the Monitors and the long-running controller
//! the specs declare, so the monitoring of a system is as declarative as the
//! system itself and cannot drift from it.
//!
//! Pure up to [`Tree::write`]: [`render`] is a function of the loaded specs and
//! the resolved [`Settings`]; the `Observability` kind writes its tree on apply
//! and `reconcile observability` writes it wherever the user asks.

pub mod grafana;
pub mod prometheus;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::kinds::Member;
use crate::kinds::endpoint::{Endpoint, Runtime};
use crate::kinds::observability::{Observability, ObservabilitySpec, ScrapeFrom};
use crate::spec::SpecSet;

/// The file listing what a tree wrote, so a later write removes only its own
/// files (never a user's file that happens to share the folder).
pub const MANIFEST: &str = ".reconcile-generated";

/// The datasource uid every dashboard panel names.
pub const DATASOURCE_UID: &str = "reconcile-prometheus";

/// The scrape job of the long-running controller (`watch`, `up`, `gitops`).
pub const CONTROLLER_JOB: &str = "reconcile-controller";

/// Why the tree could not be rendered or written.
#[derive(Debug, Error)]
pub enum ObserveError {
    /// A Prometheus on the project network cannot reach an in-process endpoint.
    #[error(
        "Endpoint/{0} runs embedded (in `reconcile serve` on this machine): a Prometheus on the project network cannot reach it; scrape from the host (`scrape: host`) or run it with `runtime: docker`"
    )]
    Unreachable(String),
    /// The YAML serializer failed.
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    /// The JSON serializer failed.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A file of the tree could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// Which file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ObserveError + '_ {
    move |source| ObserveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the generated monitoring is made from: an `Observability` spec's
/// settings, or the defaults when the project declares none.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where the settings come from (`Observability/monitoring`, or `defaults`), for headers.
    pub source: String,
    /// Where Prometheus runs, which decides how it addresses targets.
    pub scrape: ScrapeFrom,
    /// How often Prometheus scrapes and evaluates rules.
    pub interval: Duration,
    /// The controller's metrics address (`--listen` of watch, up, gitops), if scraped.
    pub controller: Option<String>,
    /// How long a condition holds before its alert fires (the rules' `for:`).
    pub pending_for: Duration,
    /// The window rates and quantiles are computed over.
    pub window: Duration,
    /// The endpoints' p99 latency bound.
    pub p99: Duration,
    /// The endpoints' bound on the share of 5xx answers.
    pub error_ratio: f64,
    /// What Grafana's datasource points at.
    pub prometheus_url: String,
    /// Where Grafana reads the dashboards from (inside its container or host).
    pub dashboards_path: String,
}

impl Settings {
    /// The settings of the project's `Observability` spec, or the defaults.
    pub fn of(set: &SpecSet) -> Settings {
        match set.specs::<Observability>().next() {
            Some((_, spec)) => Settings::from_spec(spec),
            None => Settings::from_spec(&ObservabilitySpec::defaults()),
        }
    }

    /// The settings a spec declares (unparsable values, which validation
    /// refuses first, fall back to the defaults).
    pub fn from_spec(spec: &ObservabilitySpec) -> Settings {
        let d = ObservabilitySpec::defaults();
        let dur = |s: &str, fallback: &str| {
            crate::kinds::service::spec::parse_duration(s)
                .or_else(|| crate::kinds::service::spec::parse_duration(fallback))
                .unwrap_or(Duration::from_secs(60))
        };
        let source = if spec.name.value.is_empty() {
            "defaults".to_string()
        } else {
            format!("{}/{}", Observability::KIND, spec.name.value)
        };
        Settings {
            source,
            scrape: spec.scrape,
            interval: dur(&spec.scrape_interval.value, &d.scrape_interval.value),
            controller: spec.controller.as_ref().map(|c| c.value.clone()),
            pending_for: dur(&spec.alerts.pending_for.value, &d.alerts.pending_for.value),
            window: dur(&spec.alerts.window.value, &d.alerts.window.value),
            p99: dur(&spec.alerts.p99.value, &d.alerts.p99.value),
            error_ratio: spec.alerts.error_ratio,
            prometheus_url: spec
                .grafana
                .prometheus_url
                .clone()
                .unwrap_or_else(|| spec.scrape.default_prometheus_url().to_string()),
            dashboards_path: spec.grafana.dashboards_path.clone(),
        }
    }
}

/// A Prometheus duration of `d`, in its largest exact unit (`90s`, `5m`, `250ms`):
/// Prometheus versions differ on compound durations, single units parse everywhere.
pub fn prom_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_string()
    } else if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else {
        let s = ms / 1000;
        if s.is_multiple_of(3600) {
            format!("{}h", s / 3600)
        } else if s.is_multiple_of(60) {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }
}

/// A scrape target derived from the specs.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The scrape job: the endpoint's name, or [`CONTROLLER_JOB`].
    pub job: String,
    /// `host:port` as Prometheus reaches it.
    pub address: String,
    /// Labels added to every series of the target.
    pub labels: BTreeMap<String, String>,
}

/// The targets of the specs' endpoints and controller, as Prometheus reaches
/// them from where `settings` says it runs.
pub fn targets(set: &SpecSet, settings: &Settings) -> Result<Vec<Target>, ObserveError> {
    let mut out = Vec::new();
    for (_, e) in set.specs::<Endpoint>() {
        let address = match (settings.scrape, e.runtime) {
            // Published on the host at the endpoint's own host:port.
            (ScrapeFrom::Host, _) => {
                let host = match e.host.as_str() {
                    "0.0.0.0" | "::" => "127.0.0.1",
                    h => h,
                };
                if host.contains(':') {
                    format!("[{host}]:{}", e.port)
                } else {
                    format!("{host}:{}", e.port)
                }
            }
            // On the project network, by its service name (a network alias).
            (ScrapeFrom::Network, Runtime::Docker | Runtime::Swarm) => {
                format!("{}:{}", e.name.value, e.port)
            }
            (ScrapeFrom::Network, Runtime::Embedded) => {
                return Err(ObserveError::Unreachable(e.name.value.clone()));
            }
        };
        let mut labels = BTreeMap::new();
        labels.insert("endpoint".to_string(), e.name.value.clone());
        labels.insert("model".to_string(), e.model.value.clone());
        out.push(Target {
            job: e.name.value.clone(),
            address,
            labels,
        });
    }
    if let Some(c) = &settings.controller {
        out.push(Target {
            job: CONTROLLER_JOB.to_string(),
            address: c.clone(),
            labels: BTreeMap::new(),
        });
    }
    Ok(out)
}

/// The generated files, by path relative to the output folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    /// Path (with `/`) → content.
    pub files: BTreeMap<String, String>,
}

impl Tree {
    /// Hash of every path and content: what the resource's spec hash covers.
    pub fn hash(&self) -> String {
        let parts: Vec<&str> = self
            .files
            .iter()
            .flat_map(|(p, c)| [p.as_str(), c.as_str()])
            .collect();
        crate::hash::hash_parts(parts)
    }

    /// The files under `dir` that differ from the tree (absent or changed), in order.
    pub fn differences(&self, dir: &Path) -> Vec<String> {
        self.files
            .iter()
            .filter(|(rel, content)| {
                std::fs::read(dir.join(rel)).map_or(true, |bytes| bytes != content.as_bytes())
            })
            .map(|(rel, _)| rel.clone())
            .collect()
    }

    /// Writes the tree under `dir`: each file through a temporary file renamed
    /// over it (a reader never sees half a file, and a folder bind-mounted
    /// into a container sees the new files), then removes the files an earlier
    /// write made that the tree no longer has. Returns how many files changed.
    pub fn write(&self, dir: &Path) -> Result<usize, ObserveError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut changed = 0;
        for (rel, content) in &self.files {
            let path = dir.join(rel);
            if std::fs::read(&path).is_ok_and(|b| b == content.as_bytes()) {
                continue;
            }
            write_atomic(&path, content.as_bytes())?;
            changed += 1;
        }
        let manifest = dir.join(MANIFEST);
        let before = std::fs::read_to_string(&manifest).unwrap_or_default();
        for old in before.lines().filter(|l| !l.is_empty()) {
            if self.files.contains_key(old) || !is_plain_relative(old) {
                continue;
            }
            match std::fs::remove_file(dir.join(old)) {
                Ok(()) => changed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&dir.join(old))(e)),
            }
        }
        let listing: String = self.files.keys().map(|k| format!("{k}\n")).collect();
        if before != listing {
            write_atomic(&manifest, listing.as_bytes())?;
        }
        Ok(changed)
    }

    /// Removes the files an earlier [`Tree::write`] made under `dir` (as its
    /// manifest lists them), then the folders left empty. Returns how many went.
    pub fn remove(dir: &Path) -> Result<usize, ObserveError> {
        let manifest = dir.join(MANIFEST);
        let listing = match std::fs::read_to_string(&manifest) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(&manifest)(e)),
        };
        let mut removed = 0;
        for rel in listing.lines().filter(|l| is_plain_relative(l)) {
            let path = dir.join(rel);
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
            // Folders the tree made and nothing else uses.
            let mut parent = path.parent();
            while let Some(p) = parent.filter(|p| *p != dir) {
                if std::fs::remove_dir(p).is_err() {
                    break;
                }
                parent = p.parent();
            }
        }
        std::fs::remove_file(&manifest).map_err(io(&manifest))?;
        let _ = std::fs::remove_dir(dir);
        Ok(removed)
    }
}

/// A manifest line this tree could have written: relative, no `..`.
fn is_plain_relative(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with('/')
        && rel
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ObserveError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The whole tree: `prometheus/prometheus.yml`, `prometheus/rules/*.yml`,
/// `grafana/provisioning/{datasources,dashboards}/reconcile.yaml` and
/// `grafana/dashboards/*.json`.
pub fn render(set: &SpecSet, settings: &Settings) -> Result<Tree, ObserveError> {
    let targets = targets(set, settings)?;
    let header = format!(
        "# Generated by reconcile from {} of project `{}`. Do not edit: change the\n\
         # specs and apply again (or run `reconcile observability`).\n",
        settings.source, set.project.name.value
    );
    let mut files = BTreeMap::new();
    files.insert(
        "prometheus/prometheus.yml".to_string(),
        format!("{header}{}", prometheus::config(set, settings, &targets)?),
    );
    for (name, groups) in prometheus::rule_files(set, settings) {
        files.insert(
            format!("prometheus/rules/{name}.yml"),
            format!("{header}{}", prometheus::rules_yaml(&groups)?),
        );
    }
    files.insert(
        "grafana/provisioning/datasources/reconcile.yaml".to_string(),
        format!("{header}{}", grafana::datasource(settings)?),
    );
    files.insert(
        "grafana/provisioning/dashboards/reconcile.yaml".to_string(),
        format!("{header}{}", grafana::provider(settings)?),
    );
    for d in grafana::dashboards(set, settings) {
        let mut json = serde_json::to_string_pretty(&d.json)?;
        json.push('\n');
        files.insert(format!("grafana/dashboards/{}.json", d.file), json);
    }
    Ok(Tree { files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_one_unit() {
        assert_eq!(prom_duration(Duration::from_secs(90)), "90s");
        assert_eq!(prom_duration(Duration::from_secs(300)), "5m");
        assert_eq!(prom_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(prom_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(prom_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn manifest_lines_stay_inside() {
        assert!(is_plain_relative("prometheus/rules/a.yml"));
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "a//b", "./a"] {
            assert!(!is_plain_relative(bad), "{bad}");
        }
    }

    #[test]
    fn write_replaces_and_removes_only_its_own_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("obs");
        std::fs::create_dir_all(&out).expect("mkdir");
        std::fs::write(out.join("mine.txt"), "a user's file").expect("write");
        let mut tree = Tree::default();
        tree.files.insert("a/one.yml".into(), "1".into());
        tree.files.insert("b/two.yml".into(), "2".into());
        assert_eq!(tree.write(&out).expect("write"), 2);
        assert!(tree.differences(&out).is_empty());
        assert_eq!(tree.write(&out).expect("write again"), 0, "nothing changed");
        std::fs::write(out.join("a/one.yml"), "edited by hand").expect("edit");
        assert_eq!(tree.differences(&out), ["a/one.yml"]);
        tree.files.remove("b/two.yml");
        assert_eq!(
            tree.write(&out).expect("write"),
            2,
            "one restored, one removed"
        );
        assert!(!out.join("b/two.yml").exists());
        assert!(
            out.join("mine.txt").exists(),
            "a file it did not write stays"
        );
        assert_eq!(Tree::remove(&out).expect("remove"), 1);
        assert!(!out.join("a").exists());
        assert!(out.join("mine.txt").exists());
    }
}
