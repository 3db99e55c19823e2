//! `Observability`: the project's monitoring, generated from its specs. Apply
//! writes the Prometheus config, alert rules and Grafana provisioning
//! ([`crate::observe`]) into a folder of the project that Services (a
//! Prometheus, a Grafana) bind-mount; a file changed there by hand is drift
//! that plan shows and apply rewrites. Containers mounting the folder are
//! recreated when what it holds changes (see [`ResourceKind::generates`]).

use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Applied, ApplyContext, ApplyError, CheckContext, Desired, Member, Observed, ResourceKind,
    Upstream, record,
};
use crate::diag::{DiagCode, SpecDiagnostic};
use crate::kinds::endpoint::{Endpoint, Runtime};
use crate::kinds::service::Service;
use crate::kinds::service::spec::{MountSource, parse_duration, parse_volume, spanned};
use crate::observe::{Settings, Tree};
use crate::plan::{Action, PlanOptions, ResourcePlan};
use crate::spec::validate::{check_resource_name, confine};
use crate::spec::{Resource, ResourceId, SpannedStr, SpecSet};

/// The monitoring of what the specs declare: scrape jobs for the endpoints
/// (and the controller), alert rules from the endpoints and monitors, and
/// Grafana dashboards, written into `out` on apply.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObservabilitySpec {
    /// Always `Observability`.
    pub kind: String,
    /// Its name, e.g. `monitoring`.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Folder the generated tree is written to, relative to this spec; a
    /// hidden folder (every YAML file elsewhere in the project is read as a spec).
    #[serde(default = "default_out")]
    #[schemars(with = "String")]
    pub out: SpannedStr,
    /// Where Prometheus runs: `host` (this machine: targets at the addresses
    /// the endpoints listen on) or `network` (a Service on the project network:
    /// targets by service name).
    #[serde(default)]
    pub scrape: ScrapeFrom,
    /// Scrape and rule evaluation interval, e.g. `15s`.
    #[serde(default = "default_interval")]
    #[schemars(with = "String")]
    pub scrape_interval: SpannedStr,
    /// The long-running controller's metrics address to scrape (`--listen` of
    /// `watch`, `up` or `gitops`), e.g. `127.0.0.1:9464`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub controller: Option<SpannedStr>,
    /// Bounds of the generated alerts.
    #[serde(default)]
    pub alerts: AlertsSpec,
    /// Grafana provisioning.
    #[serde(default)]
    pub grafana: GrafanaSpec,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
}

/// Bounds of the generated alert rules.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertsSpec {
    /// How long a condition must hold before its alert fires (`for:`), e.g. `1m`.
    #[serde(default = "default_pending_for")]
    #[schemars(with = "String")]
    pub pending_for: SpannedStr,
    /// Window of rates and latency quantiles, e.g. `5m`.
    #[serde(default = "default_window")]
    #[schemars(with = "String")]
    pub window: SpannedStr,
    /// An endpoint's p99 latency bound (predictions and features), e.g. `250ms`.
    #[serde(default = "default_p99")]
    #[schemars(with = "String")]
    pub p99: SpannedStr,
    /// An endpoint's bound on the share of 5xx answers, in (0, 1].
    #[serde(default = "default_error_ratio")]
    pub error_ratio: f64,
}

impl Default for AlertsSpec {
    fn default() -> Self {
        AlertsSpec {
            pending_for: default_pending_for(),
            window: default_window(),
            p99: default_p99(),
            error_ratio: default_error_ratio(),
        }
    }
}

/// Grafana provisioning.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrafanaSpec {
    /// The URL Grafana reaches Prometheus at (default: `http://prometheus:9090`
    /// on the project network, `http://127.0.0.1:9090` from the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_url: Option<String>,
    /// Where Grafana finds the dashboards (where `grafana/dashboards` is mounted).
    #[serde(default = "default_dashboards_path")]
    pub dashboards_path: String,
}

impl Default for GrafanaSpec {
    fn default() -> Self {
        GrafanaSpec {
            prometheus_url: None,
            dashboards_path: default_dashboards_path(),
        }
    }
}

/// Where Prometheus runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ScrapeFrom {
    /// On this machine: endpoints at their `host:port`.
    #[default]
    Host,
    /// On the project network: docker endpoints by service name.
    Network,
}

impl ScrapeFrom {
    /// Where Grafana finds Prometheus unless told.
    pub fn default_prometheus_url(self) -> &'static str {
        match self {
            ScrapeFrom::Host => "http://127.0.0.1:9090",
            ScrapeFrom::Network => "http://prometheus:9090",
        }
    }
}

fn default_out() -> SpannedStr {
    spanned(".reconcile/observability")
}
fn default_interval() -> SpannedStr {
    spanned("15s")
}
fn default_pending_for() -> SpannedStr {
    spanned("1m")
}
fn default_window() -> SpannedStr {
    spanned("5m")
}
fn default_p99() -> SpannedStr {
    spanned("500ms")
}
fn default_error_ratio() -> f64 {
    0.05
}
fn default_dashboards_path() -> String {
    "/var/lib/grafana/dashboards".to_string()
}

impl ObservabilitySpec {
    /// The settings of a project that declares no `Observability` (empty name).
    pub fn defaults() -> ObservabilitySpec {
        ObservabilitySpec {
            kind: "Observability".to_string(),
            name: spanned(""),
            description: None,
            out: default_out(),
            scrape: ScrapeFrom::default(),
            scrape_interval: default_interval(),
            controller: None,
            alerts: AlertsSpec::default(),
            grafana: GrafanaSpec::default(),
            depends_on: Vec::new(),
        }
    }
}

/// What an `Observability` desires: the rendered tree, where it goes, and
/// which of its files the folder lacks or holds changed.
#[derive(Debug, Clone)]
pub struct ObservabilityInputs {
    /// The output folder (absolute).
    pub out: PathBuf,
    /// The tree to write.
    pub tree: Tree,
    /// Its hash.
    pub hash: String,
    /// Files of the tree absent or different on disk.
    pub differences: Vec<String>,
}

/// Operations of an `Observability`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ObservabilityOp {
    /// Write the generated files.
    Write {
        /// Output folder.
        folder: String,
        /// Files in the tree.
        files: usize,
    },
    /// Remove the files an earlier apply wrote.
    Remove {
        /// Output folder.
        folder: String,
    },
}

/// The `Observability` kind.
pub struct Observability;

impl ResourceKind for Observability {
    type Spec = ObservabilitySpec;
    type Inputs = ObservabilityInputs;
    type Op = ObservabilityOp;

    fn name(spec: &ObservabilitySpec) -> &SpannedStr {
        &spec.name
    }

    fn depends_on(spec: &ObservabilitySpec) -> &[SpannedStr] {
        &spec.depends_on
    }

    fn check(
        cx: &CheckContext<'_>,
        r: &Resource,
        spec: &ObservabilitySpec,
        diags: &mut Vec<SpecDiagnostic>,
    ) {
        check_observability(cx, r, spec, diags);
    }

    fn desire(
        r: &Resource,
        spec: &ObservabilitySpec,
        set: &SpecSet,
        _upstream: Upstream<'_>,
    ) -> Result<ObservabilityInputs, ApplyError> {
        let out =
            confine(&set.root, r.base_dir(), &spec.out.value).map_err(|e| ApplyError::Io {
                path: spec.out.value.clone(),
                source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, e),
            })?;
        let tree = crate::observe::render(set, &Settings::from_spec(spec))
            .map_err(|e| ApplyError::Validation(e.to_string()))?;
        let differences = tree.differences(&out);
        Ok(ObservabilityInputs {
            hash: tree.hash(),
            out,
            tree,
            differences,
        })
    }

    fn input_hash(inputs: &ObservabilityInputs) -> String {
        inputs.hash.clone()
    }

    fn generates(r: &Resource, spec: &ObservabilitySpec, root: &Path) -> Option<PathBuf> {
        confine(root, r.base_dir(), &spec.out.value).ok()
    }

    fn generated_files(
        _r: &Resource,
        spec: &ObservabilitySpec,
        set: &SpecSet,
    ) -> Option<Result<super::GeneratedFiles, super::GenerateError>> {
        Some(
            crate::observe::render(set, &Settings::from_spec(spec))
                .map(|tree| tree.files)
                .map_err(Into::into),
        )
    }

    fn diff(d: &Desired<'_, Self>, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        let mut plan = record::diff(d.id, d.spec_hash, d.spec_json, observed);
        if plan.action == Action::NoOp && !d.inputs.differences.is_empty() {
            plan.action = Action::Update;
            plan.reasons.push(format!(
                "generated files missing or changed outside reconcile: {}",
                d.inputs.differences.join(", ")
            ));
        }
        if plan.action != Action::NoOp {
            plan.operations.push(Self::op(ObservabilityOp::Write {
                folder: d.inputs.out.display().to_string(),
                files: d.inputs.tree.files.len(),
            }));
        }
        plan
    }

    fn diff_removed(id: &ResourceId, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        let mut plan = record::forget(id);
        let folder = observed
            .records
            .get(id)
            .and_then(|r| r.outputs.get("out"))
            .and_then(|v| v.as_str());
        if let Some(folder) = folder {
            plan.reasons
                .push(format!("its generated files in {folder} are removed"));
            plan.operations.push(Self::op(ObservabilityOp::Remove {
                folder: folder.to_string(),
            }));
        }
        plan
    }

    async fn apply(
        _ctx: &ApplyContext,
        d: &Desired<'_, Self>,
        _plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        let (tree, out) = (d.inputs.tree.clone(), d.inputs.out.clone());
        let changed = {
            let out = out.clone();
            tokio::task::spawn_blocking(move || tree.write(&out)).await?
        }
        .map_err(|e| ApplyError::Validation(e.to_string()))?;
        let files = &d.inputs.tree.files;
        let count = |prefix: &str| files.keys().filter(|k| k.starts_with(prefix)).count();
        Ok(Applied {
            message: format!(
                "wrote {changed} of {} files to {} (prometheus.yml, {} rule files, {} dashboards)",
                files.len(),
                out.display(),
                count("prometheus/rules/"),
                count("grafana/dashboards/"),
            ),
            outputs: serde_json::json!({ "out": out.display().to_string(), "files": files.len() }),
        })
    }

    async fn apply_removed(
        _ctx: &ApplyContext,
        plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        let mut removed = 0;
        for op in super::ops_of::<Self>(plan) {
            if let ObservabilityOp::Remove { folder } = op {
                let folder = PathBuf::from(folder);
                removed += tokio::task::spawn_blocking(move || Tree::remove(&folder))
                    .await?
                    .map_err(|e| ApplyError::Validation(e.to_string()))?;
            }
        }
        Ok(Applied::message(format!(
            "removed {removed} generated files; removed from state"
        )))
    }
}

fn check_observability(
    cx: &CheckContext<'_>,
    r: &Resource,
    spec: &ObservabilitySpec,
    diags: &mut Vec<SpecDiagnostic>,
) {
    check_resource_name(r, &spec.name, diags);
    if let Some(first) = cx
        .index
        .all()
        .iter()
        .find(|o| o.id.kind == Observability::KIND)
        .filter(|o| o.id != r.id)
    {
        diags.push(
            r.diag_at(
                DiagCode::DuplicateName,
                &spec.name,
                format!(
                    "a project has one Observability; {} is already declared",
                    first.id
                ),
            )
            .with_hint(
                "merge the two: one scrape config and one set of rules cover every endpoint",
            ),
        );
    }
    // The output folder: inside the project, hidden, and not the state folder itself.
    match confine(cx.root, r.base_dir(), &spec.out.value) {
        Err(e) => diags.push(r.diag_at(DiagCode::PathEscape, &spec.out, e)),
        Ok(out) => {
            let rel = out.strip_prefix(cx.root).unwrap_or(&out);
            let parts: Vec<String> = rel
                .components()
                .filter_map(|c| match c {
                    Component::Normal(p) => Some(p.to_string_lossy().to_string()),
                    _ => None,
                })
                .collect();
            let hidden = parts.iter().any(|p| p.starts_with('.'));
            if !hidden {
                diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        &spec.out,
                        format!(
                            "`{}` is inside the spec folder, whose YAML files are all read as specs: the generated prometheus.yml would be read as one",
                            spec.out.value
                        ),
                    )
                    .with_hint("write into a hidden folder, e.g. `.reconcile/observability` (the default)"),
                );
            } else if parts.first().is_some_and(|p| p == ".git") || parts == [".reconcile"] {
                diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        &spec.out,
                        format!("`{}` holds git's or reconcile's own files", spec.out.value),
                    )
                    .with_hint("use a folder of its own, e.g. `.reconcile/observability`"),
                );
            }
            check_mounts(cx, r, spec, &out, diags);
        }
    }
    for (what, at) in [
        ("scrapeInterval", &spec.scrape_interval),
        ("alerts.pendingFor", &spec.alerts.pending_for),
        ("alerts.window", &spec.alerts.window),
        ("alerts.p99", &spec.alerts.p99),
    ] {
        match parse_duration(&at.value) {
            None => diags.push(
                r.diag_at(
                    DiagCode::InvalidValue,
                    at,
                    format!("{what} `{}` is not a duration", at.value),
                )
                .with_hint("write e.g. 15s, 500ms, 5m"),
            ),
            Some(d) if d.is_zero() && what != "alerts.pendingFor" => diags.push(r.diag_at(
                DiagCode::InvalidValue,
                at,
                format!("{what} must be longer than zero"),
            )),
            Some(_) => {}
        }
    }
    if !(spec.alerts.error_ratio > 0.0 && spec.alerts.error_ratio <= 1.0) {
        diags.push(r.diag_at(
            DiagCode::InvalidValue,
            &spec.name,
            format!(
                "alerts.errorRatio {} is not in (0, 1]",
                spec.alerts.error_ratio
            ),
        ));
    }
    if let Some(c) = &spec.controller
        && !is_host_port(&c.value)
    {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                c,
                format!("controller `{}` is not a host:port address", c.value),
            )
            .with_hint("the address `reconcile watch --listen` serves on, e.g. 127.0.0.1:9464"),
        );
    }
    if let Some(url) = &spec.grafana.prometheus_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        diags.push(r.diag_at(
            DiagCode::InvalidValue,
            &spec.name,
            format!("grafana.prometheusUrl `{url}` is not an http(s) URL"),
        ));
    }
    if !spec.grafana.dashboards_path.starts_with('/') {
        diags.push(r.diag_at(
            DiagCode::InvalidValue,
            &spec.name,
            format!(
                "grafana.dashboardsPath `{}` is not an absolute path (it is read by Grafana, where the dashboards are mounted)",
                spec.grafana.dashboards_path
            ),
        ));
    }
    if spec.scrape == ScrapeFrom::Network {
        for o in cx.index.all() {
            if let Some(e) = Endpoint::spec_of(&o.spec)
                && e.runtime == Runtime::Embedded
            {
                diags.push(
                    o.diag_at(
                        DiagCode::InvalidValue,
                        &e.name,
                        format!(
                            "{} scrapes from the project network, which cannot reach this embedded endpoint",
                            r.id
                        ),
                    )
                    .with_hint("give it `runtime: docker`, or scrape from the host (`scrape: host`)"),
                );
            }
        }
    }
}

/// `host:port` with a port, a host of no spaces or slashes.
fn is_host_port(s: &str) -> bool {
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    s.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && port.parse::<u16>().is_ok_and(|p| p > 0)
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    })
}

/// A Service that bind-mounts the generated folder must be ordered after it,
/// or it could start before the files exist and would not be recreated when
/// they change.
fn check_mounts(
    cx: &CheckContext<'_>,
    r: &Resource,
    _spec: &ObservabilitySpec,
    out: &Path,
    diags: &mut Vec<SpecDiagnostic>,
) {
    for o in cx.index.all() {
        let Some(s) = Service::spec_of(&o.spec) else {
            continue;
        };
        for v in &s.volumes {
            let Ok(m) = parse_volume(&v.value) else {
                continue;
            };
            let MountSource::Bind(p) = &m.source else {
                continue;
            };
            let Ok(path) = confine(cx.root, o.base_dir(), p) else {
                continue;
            };
            let depends = s
                .depends_on
                .iter()
                .any(|d| d.value == r.id.name || d.value == r.id.to_string());
            if path.starts_with(out) && !depends {
                diags.push(
                    o.diag_at(
                        DiagCode::MissingReference,
                        v,
                        format!(
                            "mounts files {} generates, but is not ordered after it",
                            r.id
                        ),
                    )
                    .with_hint(format!("add `dependsOn: [{}]`", r.id)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_host_port;

    #[test]
    fn controller_addresses() {
        for ok in [
            "127.0.0.1:9464",
            "[::1]:9464",
            "host.docker.internal:9464",
            "ctl:1",
        ] {
            assert!(is_host_port(ok), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            ":9464",
            "a b:1",
            "http://x:1",
            "x:0",
            "x:99999",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }
}
