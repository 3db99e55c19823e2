//! Prometheus metrics of an endpoint (prometheus-client, text exposition):
//! requests by route, method and status, latency histograms by route,
//! predictions by class, missing features, and the served model as an info gauge.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route pattern, e.g. `/features/{entity_id}` (never the raw path: bounded cardinality).
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route pattern.
    pub route: String,
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
    served: Mutex<Option<ModelLabels>>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("reconcile_endpoint");
        let requests = Family::<RequestLabels, Counter>::default();
        // 50 µs to ~1.6 s.
        let latency =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
            });
        let predictions = Family::<ClassLabels, Counter>::default();
        let missing = Family::<FeatureLabels, Counter>::default();
        let model_info = Family::<ModelLabels, Gauge>::default();
        registry.register(
            "requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency by route",
            latency.clone(),
        );
        registry.register("predictions", "Predictions by class", predictions.clone());
        registry.register(
            "missing_features",
            "Features absent from the online store when predicting",
            missing.clone(),
        );
        registry.register(
            "model_info",
            "The model version being served (1)",
            model_info.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            predictions,
            missing,
            model_info,
            served: Mutex::new(None),
        }
    }

    /// Points the info gauge at a new version.
    pub fn serving(&self, labels: ModelLabels) {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = served.take() {
            self.model_info.get_or_create(&old).set(0);
        }
        self.model_info.get_or_create(&labels).set(1);
        *served = Some(labels);
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
