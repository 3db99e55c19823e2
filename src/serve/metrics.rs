//! Prometheus metrics of an endpoint (prometheus-client, text exposition):
//! requests by route, method and status, latency histograms by route,
//! predictions by class, missing features, the served model as an info gauge,
//! the prediction log's written/dropped/failed counters, and the drift gauges
//! of the project's monitors (`reconcile_monitor_*`), set from their newest
//! stored evaluations.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request. Every value comes from a fixed set, never from the
/// client's text: a client choosing methods or paths must not grow `/metrics`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route pattern, e.g. `/features/{entity_id}`, or `unmatched` (never the raw path).
    pub route: &'static str,
    /// HTTP method: one of [`METHODS`], or `other`.
    pub method: &'static str,
    /// Status code (chosen by the server).
    pub status: u16,
}

/// The methods a request label names; any other method is `other`.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// The label of a request's method: itself when standard, else `other`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method.as_str())
        .copied()
        .unwrap_or("other")
}

/// Why the server closed a connection on its own.
#[derive(
    Clone, Copy, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelValue,
)]
#[allow(non_camel_case_types)]
pub enum TimeoutReason {
    /// The request head did not arrive within the header timeout.
    header,
    /// Nothing moved for the idle timeout while no request was handled.
    idle,
}

/// Labels of a connection closed by a timeout.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimeoutLabels {
    /// Which timeout.
    pub reason: TimeoutReason,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route pattern, or `unmatched`.
    pub route: &'static str,
}

/// Labels of a prediction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    /// Predicted class (0 or 1).
    pub class: u8,
}

/// Labels of a missing feature.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    /// `view.feature`.
    pub feature: String,
}

/// Labels of a feature view's cache size.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViewLabels {
    /// The feature view (one the served model reads: a set the specs fix).
    pub view: String,
}

/// Labels of the model-version info gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// Model name.
    pub model: String,
    /// Version number.
    pub version: String,
    /// Producing run.
    pub run: String,
}

/// Labels of the served version's figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServedLabels {
    /// Model name.
    pub model: String,
    /// Version number.
    pub version: String,
}

/// Labels of a column's drift score.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftScoreLabels {
    /// The monitor.
    pub monitor: String,
    /// The column (`view.feature`, or `probability` for prediction drift).
    pub column: String,
    /// The method that scored it (`ks`, `psi`, …).
    pub method: String,
}

/// Labels of a column's verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ColumnLabels {
    /// The monitor.
    pub monitor: String,
    /// The column.
    pub column: String,
}

/// Labels of a monitor's dataset verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MonitorLabels {
    /// The monitor.
    pub monitor: String,
}

/// Labels of a model-decay figure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AucLabels {
    /// The monitor.
    pub monitor: String,
    /// `validation` (the version's own split) or `current` (newer labels).
    pub window: String,
}

/// A float gauge.
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// A gauge family whose label sets are replaced as a whole: what the newest
/// evaluations no longer mention is removed, so a column a monitor stopped
/// reporting does not linger at its last value.
pub struct GaugeSet<L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static>
{
    /// The family, as registered.
    pub family: Family<L, FloatGauge>,
    set: Mutex<HashSet<L>>,
}

impl<L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static> GaugeSet<L> {
    fn new() -> Self {
        GaugeSet {
            family: Family::default(),
            set: Mutex::new(HashSet::new()),
        }
    }

    /// Sets every gauge in `values` and removes those set before but absent
    /// now. New values are set before old label sets go, so a scrape in
    /// between never misses a gauge that still exists.
    pub fn replace(&self, values: Vec<(L, f64)>) {
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        let mut now = HashSet::with_capacity(values.len());
        for (labels, v) in values {
            self.family.get_or_create(&labels).set(v);
            now.insert(labels);
        }
        for old in set.difference(&now) {
            self.family.remove(old);
        }
        *set = now;
    }
}

/// The drift gauges of the project's monitors.
pub struct DriftGauges {
    /// Each column's score (p-value or distance).
    pub score: GaugeSet<DriftScoreLabels>,
    /// The threshold each score is held against.
    pub threshold: GaugeSet<ColumnLabels>,
    /// 1 when the column drifted.
    pub column_drifted: GaugeSet<ColumnLabels>,
    /// 1 when the monitor's data drifted as a dataset.
    pub dataset_drift: GaugeSet<MonitorLabels>,
    /// Share of the monitor's data columns that drifted.
    pub drifted_share: GaugeSet<MonitorLabels>,
    /// The Production version's AUC on its validation split and on newer labels.
    pub model_auc: GaugeSet<AucLabels>,
}

impl DriftGauges {
    /// Replaces every gauge with what `evaluations` (each monitor's newest) say.
    pub fn update(&self, evaluations: &[crate::store::monitors::Evaluation]) {
        let (mut score, mut threshold, mut drifted) = (Vec::new(), Vec::new(), Vec::new());
        let (mut dataset, mut share, mut auc) = (Vec::new(), Vec::new(), Vec::new());
        for e in evaluations {
            let monitor = || e.monitor.clone();
            let parts = [e.report.data.as_ref(), e.report.predictions.as_ref()];
            for c in parts.into_iter().flatten().flat_map(|d| &d.columns) {
                score.push((
                    DriftScoreLabels {
                        monitor: monitor(),
                        column: c.column.clone(),
                        method: c.method.as_str().to_string(),
                    },
                    c.score,
                ));
                let labels = ColumnLabels {
                    monitor: monitor(),
                    column: c.column.clone(),
                };
                threshold.push((labels.clone(), c.threshold));
                drifted.push((labels, f64::from(u8::from(c.drifted))));
            }
            if let Some(d) = &e.report.data {
                let labels = MonitorLabels { monitor: monitor() };
                dataset.push((labels.clone(), f64::from(u8::from(d.dataset_drift))));
                share.push((labels, d.share));
            }
            if let Some(d) = &e.report.decay {
                for (window, v) in [("validation", d.validation_auc), ("current", d.current_auc)] {
                    auc.push((
                        AucLabels {
                            monitor: monitor(),
                            window: window.to_string(),
                        },
                        v,
                    ));
                }
            }
        }
        self.score.replace(score);
        self.threshold.replace(threshold);
        self.column_drifted.replace(drifted);
        self.dataset_drift.replace(dataset);
        self.drifted_share.replace(share);
        self.model_auc.replace(auc);
    }
}

/// Every metric of one endpoint.
pub struct Metrics {
    registry: Registry,
    /// Requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency in seconds.
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Predictions by class.
    pub predictions: Family<ClassLabels, Counter>,
    /// Features absent from the online store at prediction time.
    pub missing: Family<FeatureLabels, Counter>,
    /// 1 for the version being served.
    pub model_info: Family<ModelLabels, Gauge>,
    /// The served version's AUC on its validation split (only the served one).
    pub model_validation_auc: GaugeSet<ServedLabels>,
    /// Predicted probability of class 1 (its mean is `_sum / _count`).
    pub probability: Histogram,
    /// Predictions written to the prediction log.
    pub log_written: Counter,
    /// Predictions dropped because the log's queue was full.
    pub log_dropped: Counter,
    /// Predictions lost because a batch insert failed.
    pub log_failed: Counter,
    /// The monitors' drift gauges.
    pub drift: DriftGauges,
    /// Connections being served now.
    pub connections_open: Gauge,
    /// Connections accepted and served.
    pub connections_accepted: Counter,
    /// Connections shed because the endpoint served its maximum already.
    pub connections_rejected: Counter,
    /// Connections the server closed on a timeout, by which.
    pub connections_timed_out: Family<TimeoutLabels, Counter>,
    /// Entities whose rows each view holds in memory (never above the bound).
    pub cache_entities: Family<ViewLabels, Gauge>,
    /// The bound on entities per view (`cache.maxEntities`; 0: none).
    pub cache_bound: Gauge,
    /// Lookups a bounded view answered from memory.
    pub cache_hits: Counter,
    /// Lookups a bounded view read through from the online store.
    pub cache_misses: Counter,
    served: Mutex<Option<ModelLabels>>,
    recording: std::sync::atomic::AtomicBool,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("reconcile");
        let requests = Family::<RequestLabels, Counter>::default();
        // 50 µs to ~1.6 s.
        let latency =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
            });
        let predictions = Family::<ClassLabels, Counter>::default();
        let missing = Family::<FeatureLabels, Counter>::default();
        let model_info = Family::<ModelLabels, Gauge>::default();
        let model_validation_auc = GaugeSet::new();
        let probability = Histogram::new((1..10).map(|i| f64::from(i) / 10.0));
        let (log_written, log_dropped, log_failed) =
            (Counter::default(), Counter::default(), Counter::default());
        let drift = DriftGauges {
            score: GaugeSet::new(),
            threshold: GaugeSet::new(),
            column_drifted: GaugeSet::new(),
            dataset_drift: GaugeSet::new(),
            drifted_share: GaugeSet::new(),
            model_auc: GaugeSet::new(),
        };
        {
            let m = registry.sub_registry_with_prefix("monitor");
            m.register(
                "drift_score",
                "Drift score of a column in the monitor's newest evaluation (p-value or distance, see method)",
                drift.score.family.clone(),
            );
            m.register(
                "drift_threshold",
                "Threshold a column's drift score is held against",
                drift.threshold.family.clone(),
            );
            m.register(
                "column_drifted",
                "1 when the column drifted in the monitor's newest evaluation",
                drift.column_drifted.family.clone(),
            );
            m.register(
                "dataset_drift",
                "1 when the monitor's data drifted as a dataset",
                drift.dataset_drift.family.clone(),
            );
            m.register(
                "drifted_share",
                "Share of the monitor's data columns that drifted",
                drift.drifted_share.family.clone(),
            );
            m.register(
                "model_auc",
                "AUC of the Production version on its validation split and on newer labels",
                drift.model_auc.family.clone(),
            );
        }
        let ep = registry.sub_registry_with_prefix("endpoint");
        let connections_open = Gauge::default();
        let connections_accepted = Counter::default();
        let connections_rejected = Counter::default();
        let connections_timed_out = Family::<TimeoutLabels, Counter>::default();
        ep.register(
            "connections_open",
            "HTTP connections being served",
            connections_open.clone(),
        );
        ep.register(
            "connections_accepted",
            "HTTP connections accepted and served",
            connections_accepted.clone(),
        );
        ep.register(
            "connections_rejected",
            "HTTP connections shed (503 or closed) because the endpoint served its maximum",
            connections_rejected.clone(),
        );
        ep.register(
            "connections_timed_out",
            "HTTP connections closed by the header or idle timeout",
            connections_timed_out.clone(),
        );
        ep.register(
            "prediction_log_written",
            "Predictions written to the prediction log",
            log_written.clone(),
        );
        ep.register(
            "prediction_log_dropped",
            "Predictions not logged because the log's queue was full",
            log_dropped.clone(),
        );
        ep.register(
            "prediction_log_failed",
            "Predictions not logged because writing their batch failed",
            log_failed.clone(),
        );
        ep.register(
            "requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        ep.register(
            "request_duration_seconds",
            "Request latency by route",
            latency.clone(),
        );
        ep.register("predictions", "Predictions by class", predictions.clone());
        ep.register(
            "missing_features",
            "Features absent from the online store when predicting",
            missing.clone(),
        );
        ep.register(
            "model_info",
            "The model version being served (1)",
            model_info.clone(),
        );
        ep.register(
            "model_validation_auc",
            "AUC of the served version on its validation split",
            model_validation_auc.family.clone(),
        );
        ep.register(
            "prediction_probability",
            "Predicted probability of class 1",
            probability.clone(),
        );
        let cache_entities = Family::<ViewLabels, Gauge>::default();
        let cache_bound = Gauge::default();
        let (cache_hits, cache_misses) = (Counter::default(), Counter::default());
        ep.register(
            "feature_cache_entities",
            "Entities whose online features a view holds in memory",
            cache_entities.clone(),
        );
        ep.register(
            "feature_cache_max_entities",
            "Most entities a view holds in memory (cache.maxEntities; 0: every entity)",
            cache_bound.clone(),
        );
        ep.register(
            "feature_cache_hits",
            "Lookups of a bounded view answered from memory",
            cache_hits.clone(),
        );
        ep.register(
            "feature_cache_misses",
            "Lookups of a bounded view read through from the online store",
            cache_misses.clone(),
        );
        Metrics {
            cache_entities,
            cache_bound,
            cache_hits,
            cache_misses,
            registry,
            requests,
            latency,
            predictions,
            missing,
            model_info,
            model_validation_auc,
            probability,
            log_written,
            log_dropped,
            log_failed,
            drift,
            connections_open,
            connections_accepted,
            connections_rejected,
            connections_timed_out,
            served: Mutex::new(None),
            recording: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Whether requests and predictions are counted (on unless a benchmark
    /// turns it off to measure what counting costs).
    pub fn recording(&self) -> bool {
        self.recording.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns counting requests and predictions on or off.
    pub fn set_recording(&self, on: bool) {
        self.recording
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Points the info gauge at a new version, with its validation AUC.
    pub fn serving(&self, labels: ModelLabels, validation_auc: Option<f64>) {
        self.model_validation_auc.replace(
            validation_auc
                .map(|auc| {
                    let served = ServedLabels {
                        model: labels.model.clone(),
                        version: labels.version.clone(),
                    };
                    (served, auc)
                })
                .into_iter()
                .collect(),
        );
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = served.take() {
            self.model_info.get_or_create(&old).set(0);
        }
        self.model_info.get_or_create(&labels).set(1);
        *served = Some(labels);
    }

    /// Sets the info gauge of the version served so far to 0: nothing is served.
    pub fn not_serving(&self) {
        self.model_validation_auc.replace(Vec::new());
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = served.take() {
            self.model_info.get_or_create(&old).set(0);
        }
    }

    /// The size gauge of `view`'s cache (a handle: setting it needs no lookup).
    pub fn cache_gauge(&self, view: &str) -> Gauge {
        self.cache_entities
            .get_or_create(&ViewLabels {
                view: view.to_string(),
            })
            .clone()
    }

    /// Removes the size gauge of a view no longer served.
    pub fn remove_cache_gauge(&self, view: &str) {
        self.cache_entities.remove(&ViewLabels {
            view: view.to_string(),
        });
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
