//! The Prometheus side: `prometheus.yml` (one scrape job per endpoint and one
//! for the controller) and the alert rules of the endpoints (down, p99 over
//! its bound, error ratio, no Production version), the monitors (dataset
//! drift, a column drifted, model decay) and the controller (down, applies
//! failing, resources failed).

use indexmap::IndexMap;
use serde::Serialize;

use super::{CONTROLLER_JOB, ObserveError, Settings, Target, prom_duration};
use crate::kinds::endpoint::Endpoint;
use crate::kinds::monitor::Monitor;
use crate::spec::SpecSet;

/// Routes whose latency the p99 alert and panels watch: the ones clients
/// wait on (scrapes and health checks would flatter the quantile).
pub const SERVING_ROUTES: &str = "/predict|/predict/batch|/features/{entity_id}";

#[derive(Serialize)]
struct Config<'a> {
    global: Global,
    rule_files: Vec<&'a str>,
    scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Serialize)]
struct Global {
    scrape_interval: String,
    evaluation_interval: String,
    external_labels: IndexMap<String, String>,
}

#[derive(Serialize)]
struct ScrapeConfig {
    job_name: String,
    metrics_path: &'static str,
    static_configs: Vec<StaticConfig>,
}

#[derive(Serialize)]
struct StaticConfig {
    targets: Vec<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    labels: std::collections::BTreeMap<String, String>,
}

/// `prometheus.yml` for `targets`; rule files are found beside it.
pub fn config(
    set: &SpecSet,
    settings: &Settings,
    targets: &[Target],
) -> Result<String, ObserveError> {
    let interval = prom_duration(settings.interval);
    let mut external_labels = IndexMap::new();
    external_labels.insert("project".to_string(), set.project.name.value.clone());
    let config = Config {
        global: Global {
            scrape_interval: interval.clone(),
            evaluation_interval: interval,
            external_labels,
        },
        // Relative to this file, wherever it is mounted.
        rule_files: vec!["rules/*.yml"],
        scrape_configs: targets
            .iter()
            .map(|t| ScrapeConfig {
                job_name: t.job.clone(),
                metrics_path: "/metrics",
                static_configs: vec![StaticConfig {
                    targets: vec![t.address.clone()],
                    labels: t.labels.clone(),
                }],
            })
            .collect(),
    };
    yaml(&config)
}

/// A rule group, as Prometheus reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Group name (unique in a file).
    pub name: String,
    /// Its alerting rules.
    pub rules: Vec<Rule>,
}

/// An alerting rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Alert name.
    pub alert: String,
    /// PromQL condition: the alert is active while it returns series.
    pub expr: String,
    /// How long it holds before firing.
    #[serde(rename = "for")]
    pub pending_for: String,
    /// Labels of the alert (severity, which resource).
    pub labels: IndexMap<String, String>,
    /// Summary and description for the receiver.
    pub annotations: IndexMap<String, String>,
}

fn rule(alert: &str, expr: String, settings: &Settings, severity: &str) -> Rule {
    let mut labels = IndexMap::new();
    labels.insert("severity".to_string(), severity.to_string());
    Rule {
        alert: alert.to_string(),
        expr,
        pending_for: prom_duration(settings.pending_for),
        labels,
        annotations: IndexMap::new(),
    }
}

impl Rule {
    fn label(mut self, k: &str, v: &str) -> Rule {
        self.labels.insert(k.to_string(), v.to_string());
        self
    }

    fn say(mut self, summary: String, description: String) -> Rule {
        self.annotations.insert("summary".to_string(), summary);
        self.annotations
            .insert("description".to_string(), description);
        self
    }
}

/// A PromQL string literal of `s`. PromQL strings take Go's escapes, of which
/// JSON's are a subset, so a JSON string literal is one (label values come
/// from validated names; quoting is done properly anyway).
pub fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The rule files: `endpoints`, `monitors` and `controller`, each only when
/// the specs give it something to watch.
pub fn rule_files(set: &SpecSet, settings: &Settings) -> Vec<(&'static str, Vec<Group>)> {
    let w = prom_duration(settings.window);
    let mut files = Vec::new();
    let endpoints: Vec<Group> = set
        .specs::<Endpoint>()
        .map(|(_, e)| {
            let name = &e.name.value;
            let job = quote(name);
            let requests = format!("reconcile_endpoint_requests_total{{job={job}}}");
            let errors =
                format!("reconcile_endpoint_requests_total{{job={job},status=~\"5..\"}}");
            let p99 = settings.p99.as_secs_f64();
            Group {
                name: format!("endpoint-{name}"),
                rules: vec![
                    rule("ReconcileEndpointDown", format!("up{{job={job}}} == 0"), settings, "critical")
                        .label("endpoint", name)
                        .say(
                            format!("Endpoint {name} is down"),
                            "{{ $labels.instance }} has not answered Prometheus' scrape of /metrics.".into(),
                        ),
                    rule(
                        "ReconcileEndpointLatencyHigh",
                        format!(
                            "histogram_quantile(0.99, sum by (le) (rate(reconcile_endpoint_request_duration_seconds_bucket{{job={job},route=~{}}}[{w}]))) > {p99}",
                            quote(SERVING_ROUTES)
                        ),
                        settings,
                        "warning",
                    )
                    .label("endpoint", name)
                    .say(
                        format!("Endpoint {name} answers slowly"),
                        format!("p99 latency of predictions and features over {w} is {{{{ $value | humanizeDuration }}}}, above the bound of {}.", prom_duration(settings.p99)),
                    ),
                    rule(
                        "ReconcileEndpointErrorRatio",
                        format!(
                            "(sum(rate({errors}[{w}])) or vector(0)) / sum(rate({requests}[{w}])) > {}",
                            settings.error_ratio
                        ),
                        settings,
                        "warning",
                    )
                    .label("endpoint", name)
                    .say(
                        format!("Endpoint {name} answers with server errors"),
                        format!("{{{{ $value | humanizePercentage }}}} of requests over {w} got a 5xx answer (bound {}).", settings.error_ratio),
                    ),
                    rule(
                        "ReconcileEndpointNoProduction",
                        format!(
                            "(up{{job={job}}} == 1) unless on (instance) (max by (instance) (reconcile_endpoint_model_info{{job={job}}}) == 1)"
                        ),
                        settings,
                        "critical",
                    )
                    .label("endpoint", name)
                    .label("model", &e.model.value)
                    .say(
                        format!("Endpoint {name} serves no model"),
                        format!("The registry holds no Production version of {} that the endpoint could load; /predict answers 503.", e.model.value),
                    ),
                ],
            }
        })
        .collect();
    if !endpoints.is_empty() {
        files.push(("endpoints", endpoints));
    }
    let monitors: Vec<Group> = set
        .specs::<Monitor>()
        .map(|(_, m)| {
            let name = &m.name.value;
            let sel = format!("monitor={}", quote(name));
            let mut rules = Vec::new();
            if !m.features.is_empty() {
                rules.push(
                    rule(
                        "ReconcileDatasetDrift",
                        format!("max by (monitor) (reconcile_monitor_dataset_drift{{{sel}}}) == 1"),
                        settings,
                        "warning",
                    )
                    .label("monitor", name)
                    .say(
                        format!("Monitor {name}: the model's data drifted"),
                        format!("At least {} of the watched features drifted against the reference.", m.drift_share),
                    ),
                );
            }
            if !m.features.is_empty() || m.predictions.is_some() {
                rules.push(
                    rule(
                        "ReconcileColumnDrift",
                        format!("max by (monitor, column) (reconcile_monitor_column_drifted{{{sel}}}) == 1"),
                        settings,
                        "info",
                    )
                    .label("monitor", name)
                    .say(
                        format!("Monitor {name}: {{{{ $labels.column }}}} drifted"),
                        "Its drift score crossed its threshold in the newest evaluation.".into(),
                    ),
                );
            }
            if let Some(d) = &m.decay {
                rules.push(
                    rule(
                        "ReconcileModelDecay",
                        format!(
                            "max by (monitor) (reconcile_monitor_model_auc{{{sel},window=\"validation\"}}) - max by (monitor) (reconcile_monitor_model_auc{{{sel},window=\"current\"}}) > {}",
                            d.max_auc_drop
                        ),
                        settings,
                        "warning",
                    )
                    .label("monitor", name)
                    .say(
                        format!("Monitor {name}: the Production model decayed"),
                        format!("Its AUC on newer labels is {{{{ $value }}}} below its validation AUC (bound {}).", d.max_auc_drop),
                    ),
                );
            }
            Group {
                name: format!("monitor-{name}"),
                rules,
            }
        })
        .filter(|g| !g.rules.is_empty())
        .collect();
    if !monitors.is_empty() {
        files.push(("monitors", monitors));
    }
    if settings.controller.is_some() {
        let job = quote(CONTROLLER_JOB);
        files.push((
            "controller",
            vec![Group {
                name: "controller".to_string(),
                rules: vec![
                    rule("ReconcileControllerDown", format!("up{{job={job}}} == 0"), settings, "critical")
                        .say(
                            "The reconcile controller is down".into(),
                            "Nothing converges the specs or heals drift until it is back.".into(),
                        ),
                    rule(
                        "ReconcileApplyFailing",
                        format!("sum(increase(reconcile_controller_applies_total{{job={job},outcome=~\"failed|error|invalid\"}}[{w}])) > 0"),
                        settings,
                        "warning",
                    )
                    .say(
                        "Applies of the specs are failing".into(),
                        format!("{{{{ $value }}}} applies over {w} failed, met invalid specs or could not reach a store; see `reconcile status`."),
                    ),
                    rule(
                        "ReconcileResourcesFailed",
                        format!("max(reconcile_controller_resources{{job={job},condition=\"Failed\"}}) > 0"),
                        settings,
                        "warning",
                    )
                    .say(
                        "Resources are failed".into(),
                        "{{ $value }} resources ended their last apply failed; see `reconcile status`.".into(),
                    ),
                ],
            }],
        ));
    }
    files
}

#[derive(Serialize)]
struct RuleFile<'a> {
    groups: &'a [Group],
}

/// A rules file of `groups`.
pub fn rules_yaml(groups: &[Group]) -> Result<String, ObserveError> {
    yaml(&RuleFile { groups })
}

/// YAML as Prometheus and Grafana read it (long expressions on one line).
pub fn yaml<T: Serialize>(value: &T) -> Result<String, ObserveError> {
    let options = serde_saphyr::ser_options! {
        prefer_block_scalars: false,
    };
    let mut s = serde_saphyr::to_string_with_options(value, options)?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_escapes_what_promql_strings_need() {
        assert_eq!(quote("churn-api"), "\"churn-api\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
