//! The Grafana side: a provisioned Prometheus datasource (fixed uid, so
//! dashboards name it), a file provider, and one dashboard per concern:
//! the endpoints (traffic, latency, errors, predictions, served version), the
//! monitors (drift per column against its threshold, decay) and the controller
//! (apply outcomes and durations, resources by condition).
//!
//! Dashboards are plain JSON in Grafana's dashboard model (schemaVersion
//! [`SCHEMA_VERSION`]); every panel queries the provisioned datasource by uid.

use serde::Serialize;
use serde_json::{Value, json};

use super::prometheus::{SERVING_ROUTES, quote, yaml};
use super::{CONTROLLER_JOB, DATASOURCE_UID, ObserveError, Settings, prom_duration};
use crate::kinds::endpoint::Endpoint;
use crate::kinds::monitor::Monitor;
use crate::spec::SpecSet;

/// The dashboard schema version written (Grafana 11).
pub const SCHEMA_VERSION: u32 = 39;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DatasourceFile {
    api_version: u32,
    datasources: Vec<Datasource>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Datasource {
    name: &'static str,
    uid: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    access: &'static str,
    url: String,
    is_default: bool,
    editable: bool,
    json_data: DatasourceData,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DatasourceData {
    time_interval: String,
}

/// `provisioning/datasources/reconcile.yaml`.
pub fn datasource(settings: &Settings) -> Result<String, ObserveError> {
    yaml(&DatasourceFile {
        api_version: 1,
        datasources: vec![Datasource {
            name: "Prometheus (reconcile)",
            uid: DATASOURCE_UID,
            kind: "prometheus",
            access: "proxy",
            url: settings.prometheus_url.clone(),
            is_default: true,
            editable: false,
            json_data: DatasourceData {
                time_interval: prom_duration(settings.interval),
            },
        }],
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProviderFile {
    api_version: u32,
    providers: Vec<Provider>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Provider {
    name: &'static str,
    folder: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    disable_deletion: bool,
    allow_ui_updates: bool,
    options: ProviderOptions,
}

#[derive(Serialize)]
struct ProviderOptions {
    path: String,
}

/// `provisioning/dashboards/reconcile.yaml`: the dashboards folder, read-only
/// in the UI (they are regenerated from the specs).
pub fn provider(settings: &Settings) -> Result<String, ObserveError> {
    yaml(&ProviderFile {
        api_version: 1,
        providers: vec![Provider {
            name: "reconcile",
            folder: "reconcile",
            kind: "file",
            disable_deletion: true,
            allow_ui_updates: false,
            options: ProviderOptions {
                path: settings.dashboards_path.clone(),
            },
        }],
    })
}

/// A dashboard and the file it is written to.
#[derive(Debug, Clone)]
pub struct DashboardFile {
    /// File stem under `grafana/dashboards/`.
    pub file: &'static str,
    /// The dashboard JSON.
    pub json: Value,
}

/// A panel before layout.
struct Panel {
    title: &'static str,
    description: &'static str,
    kind: &'static str,
    unit: &'static str,
    queries: Vec<(String, &'static str)>,
}

fn panel(
    title: &'static str,
    description: &'static str,
    kind: &'static str,
    unit: &'static str,
    queries: Vec<(String, &'static str)>,
) -> Panel {
    Panel {
        title,
        description,
        kind,
        unit,
        queries,
    }
}

/// Panels laid out two per row, ids from 1, every query on the datasource by uid.
fn dashboard(uid: &str, title: &str, description: &str, settings: &Settings, panels: Vec<Panel>) -> Value {
    let ds = json!({ "type": "prometheus", "uid": DATASOURCE_UID });
    let panels: Vec<Value> = panels
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let targets: Vec<Value> = p
                .queries
                .iter()
                .enumerate()
                .map(|(q, (expr, legend))| {
                    json!({
                        "refId": ((b'A' + q as u8) as char).to_string(),
                        "datasource": ds,
                        "expr": expr,
                        "legendFormat": legend,
                        "range": true,
                    })
                })
                .collect();
            json!({
                "id": i + 1,
                "type": p.kind,
                "title": p.title,
                "description": p.description,
                "datasource": ds,
                "gridPos": { "h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8 },
                "fieldConfig": { "defaults": { "unit": p.unit }, "overrides": [] },
                "options": { "legend": { "displayMode": "list", "placement": "bottom", "showLegend": true } },
                "targets": targets,
            })
        })
        .collect();
    json!({
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["reconcile"],
        "timezone": "browser",
        "editable": false,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": prom_duration(settings.interval.max(std::time::Duration::from_secs(5))),
        "time": { "from": "now-1h", "to": "now" },
        "templating": { "list": [] },
        "annotations": { "list": [] },
        "links": [],
        "panels": panels,
    })
}

/// A `job=~"a|b"` matcher of the given jobs.
fn jobs(names: &[String]) -> String {
    let alternatives: Vec<String> = names.iter().map(|n| regex::escape(n)).collect();
    format!("job=~{}", quote(&alternatives.join("|")))
}

/// The dashboards the specs call for (none for what they do not declare).
pub fn dashboards(set: &SpecSet, settings: &Settings) -> Vec<DashboardFile> {
    let mut out = Vec::new();
    let endpoints: Vec<String> = set
        .specs::<Endpoint>()
        .map(|(_, e)| e.name.value.clone())
        .collect();
    let r = "$__rate_interval";
    if !endpoints.is_empty() {
        let j = jobs(&endpoints);
        let routes = format!("route=~{}", quote(SERVING_ROUTES));
        let req = format!("reconcile_endpoint_requests_total{{{j}}}");
        let quantile = |q: f64| {
            format!(
                "histogram_quantile({q}, sum by (job, le) (rate(reconcile_endpoint_request_duration_seconds_bucket{{{j},{routes}}}[{r}])))"
            )
        };
        let panels = vec![
            panel(
                "Request rate by route and status",
                "Requests per second each endpoint answered, by route pattern and status code.",
                "timeseries",
                "reqps",
                vec![(format!("sum by (job, route, status) (rate({req}[{r}]))"), "{{job}} {{route}} {{status}}")],
            ),
            panel(
                "Latency p50 / p99",
                "Request latency of predictions and features (scrapes and health checks left out).",
                "timeseries",
                "s",
                vec![(quantile(0.5), "{{job}} p50"), (quantile(0.99), "{{job}} p99")],
            ),
            panel(
                "Error ratio",
                "Share of requests answered with a 5xx status (503 while no Production version is loaded).",
                "timeseries",
                "percentunit",
                vec![(
                    format!(
                        "(sum by (job) (rate(reconcile_endpoint_requests_total{{{j},status=~\"5..\"}}[{r}])) or sum by (job) (rate({req}[{r}])) * 0) / sum by (job) (rate({req}[{r}]))"
                    ),
                    "{{job}}",
                )],
            ),
            panel(
                "Predictions by class",
                "Predictions per second by predicted class (1: churn).",
                "timeseries",
                "ops",
                vec![(
                    format!("sum by (job, class) (rate(reconcile_endpoint_predictions_total{{{j}}}[{r}]))"),
                    "{{job}} class {{class}}",
                )],
            ),
            panel(
                "Mean predicted probability",
                "Mean probability of class 1 over the window: a shift here is prediction drift before any label arrives.",
                "timeseries",
                "percentunit",
                vec![(
                    format!(
                        "sum by (job) (rate(reconcile_endpoint_prediction_probability_sum{{{j}}}[{r}])) / sum by (job) (rate(reconcile_endpoint_prediction_probability_count{{{j}}}[{r}]))"
                    ),
                    "{{job}}",
                )],
            ),
            panel(
                "Served version and its validation AUC",
                "The registry version each endpoint serves now (legend) and its AUC on its own validation split.",
                "stat",
                "none",
                vec![(
                    format!("max by (job, model, version) (reconcile_endpoint_model_validation_auc{{{j}}})"),
                    "{{job}}: {{model}} v{{version}}",
                )],
            ),
            panel(
                "Prediction log: dropped and failed",
                "Predictions not written to the prediction log (queue full, or a batch insert failed) per window; prediction drift is judged on the rest.",
                "timeseries",
                "short",
                vec![
                    (
                        format!("sum by (job) (increase(reconcile_endpoint_prediction_log_dropped_total{{{j}}}[{r}]))"),
                        "{{job}} dropped",
                    ),
                    (
                        format!("sum by (job) (increase(reconcile_endpoint_prediction_log_failed_total{{{j}}}[{r}]))"),
                        "{{job}} failed",
                    ),
                ],
            ),
            panel(
                "Open connections",
                "Connections each endpoint serves now; shed connections (over the limit) per second beside them.",
                "timeseries",
                "short",
                vec![
                    (format!("sum by (job) (reconcile_endpoint_connections_open{{{j}}})"), "{{job}} open"),
                    (
                        format!("sum by (job) (rate(reconcile_endpoint_connections_rejected_total{{{j}}}[{r}]))"),
                        "{{job}} shed/s",
                    ),
                ],
            ),
        ];
        out.push(DashboardFile {
            file: "endpoints",
            json: dashboard(
                "reconcile-endpoints",
                "reconcile: endpoints",
                "Traffic, latency, errors and predictions of the project's endpoints (generated from the Endpoint specs).",
                settings,
                panels,
            ),
        });
    }
    let monitors: Vec<String> = set
        .specs::<Monitor>()
        .map(|(_, m)| m.name.value.clone())
        .collect();
    if !monitors.is_empty() {
        let alternatives: Vec<String> = monitors.iter().map(|m| regex::escape(m)).collect();
        let m = format!("monitor=~{}", quote(&alternatives.join("|")));
        let panels = vec![
            panel(
                "Drift score per column",
                "Each watched column's score in the newest evaluation (p-value for ks/chisquare/z: drift below the threshold; distance for wasserstein/jensenshannon/psi: drift at or above it).",
                "timeseries",
                "none",
                vec![
                    (
                        format!("max by (monitor, column, method) (reconcile_monitor_drift_score{{{m}}})"),
                        "{{column}} ({{method}})",
                    ),
                    (
                        format!("max by (monitor, column) (reconcile_monitor_drift_threshold{{{m}}})"),
                        "{{column}} threshold",
                    ),
                ],
            ),
            panel(
                "Drifted columns",
                "Columns that drifted in the newest evaluation (1), and the share of the monitor's columns that did.",
                "timeseries",
                "none",
                vec![
                    (
                        format!("max by (monitor, column) (reconcile_monitor_column_drifted{{{m}}}) == 1"),
                        "{{column}}",
                    ),
                    (
                        format!("max by (monitor) (reconcile_monitor_drifted_share{{{m}}})"),
                        "{{monitor}} drifted share",
                    ),
                ],
            ),
            panel(
                "Dataset drift",
                "1 while the monitor's data counts as drifted (its drifted share reached driftShare).",
                "stat",
                "none",
                vec![(
                    format!("max by (monitor) (reconcile_monitor_dataset_drift{{{m}}})"),
                    "{{monitor}}",
                )],
            ),
            panel(
                "Model AUC: validation vs newer labels",
                "The Production version's AUC on its validation split and on labels that arrived after it was trained (decay).",
                "timeseries",
                "none",
                vec![(
                    format!("max by (monitor, window) (reconcile_monitor_model_auc{{{m}}})"),
                    "{{monitor}} {{window}}",
                )],
            ),
        ];
        out.push(DashboardFile {
            file: "monitors",
            json: dashboard(
                "reconcile-monitors",
                "reconcile: monitors",
                "Drift and decay the project's monitors found (generated from the Monitor specs).",
                settings,
                panels,
            ),
        });
    }
    if settings.controller.is_some() {
        let j = format!("job={}", quote(CONTROLLER_JOB));
        let quantile = |q: f64| {
            format!(
                "histogram_quantile({q}, sum by (le) (rate(reconcile_controller_apply_duration_seconds_bucket{{{j}}}[{r}])))"
            )
        };
        let panels = vec![
            panel(
                "Applies by outcome",
                "Applies run by the controller per window, by outcome (success, failed, invalid, error, interrupted).",
                "timeseries",
                "short",
                vec![(
                    format!("sum by (outcome) (increase(reconcile_controller_applies_total{{{j}}}[{r}]))"),
                    "{{outcome}}",
                )],
            ),
            panel(
                "Apply duration p50 / p99",
                "Wall time of one apply, loading the specs included.",
                "timeseries",
                "s",
                vec![(quantile(0.5), "p50"), (quantile(0.99), "p99")],
            ),
            panel(
                "Resources by condition",
                "Resources recorded in the state store after the last apply, by condition.",
                "timeseries",
                "short",
                vec![(
                    format!("max by (condition) (reconcile_controller_resources{{{j}}})"),
                    "{{condition}}",
                )],
            ),
            panel(
                "Time since the last converged apply",
                "Seconds since an apply last converged (-1: none yet).",
                "stat",
                "s",
                vec![(
                    format!("max(reconcile_controller_seconds_since_last_success{{{j}}})"),
                    "since success",
                )],
            ),
        ];
        out.push(DashboardFile {
            file: "controller",
            json: dashboard(
                "reconcile-controller",
                "reconcile: controller",
                "What the long-running controller (watch, up, gitops) did.",
                settings,
                panels,
            ),
        });
    }
    out
}
