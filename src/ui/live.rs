//! Each endpoint of this process, live: its request rate and mean latency
//! from its own Prometheus counters (`reconcile_endpoint_requests_total`,
//! `…_request_duration_seconds`), sampled every [`SAMPLE`] into a ring of
//! [`RING`] samples (bounded, whatever the uptime) and drawn as sparklines.
//! The UI's own pages and `/metrics` scrapes are left out of the figures.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use maud::{Markup, html};

use super::layout::{self, Section};
use super::{Ui, UiError, charts};
use crate::serve::Serving;

/// How often the counters are sampled.
pub const SAMPLE: Duration = Duration::from_secs(5);
/// Samples kept per endpoint (10 minutes at [`SAMPLE`]).
pub const RING: usize = 120;

/// The counters of one endpoint at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// Requests answered (UI pages and `/metrics` excluded).
    pub requests: f64,
    /// Sum of their latencies, in seconds.
    pub latency_sum: f64,
    /// How many latencies that sum holds.
    pub latency_count: f64,
}

/// Whether a route's requests count as the endpoint's traffic.
fn counted(route: &str) -> bool {
    !(route == "/ui" || route.starts_with("/ui/") || route == "/metrics")
}

/// The value of label `name` in a series' label set (`{a="x",b="y"}`).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = labels.find(&key)? + key.len();
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

/// Sums the request counter and the latency histogram's `_sum` and `_count`
/// over every counted route, from the text exposition.
pub fn read(text: &str, at_ms: i64) -> Counters {
    let mut c = Counters {
        at_ms,
        ..Counters::default()
    };
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let slot = match name {
            "reconcile_endpoint_requests_total" => &mut c.requests,
            "reconcile_endpoint_request_duration_seconds_sum" => &mut c.latency_sum,
            "reconcile_endpoint_request_duration_seconds_count" => &mut c.latency_count,
            _ => continue,
        };
        if label(labels, "route").is_some_and(counted)
            && let Ok(v) = value.parse::<f64>()
        {
            *slot += v;
        }
    }
    c
}

/// One endpoint served by this process and its recent samples.
struct Endpoint {
    serving: Arc<Serving>,
    samples: Mutex<VecDeque<Counters>>,
}

impl Endpoint {
    fn now(&self) -> Counters {
        read(&self.serving.metrics.render(), crate::store::now_ms())
    }

    fn sample(&self) {
        let c = self.now();
        let mut ring = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(c);
    }
}

/// The endpoints this process serves, and the task sampling them.
#[derive(Default)]
pub struct Live {
    endpoints: Mutex<Vec<Arc<Endpoint>>>,
    sampling: std::sync::OnceLock<()>,
}

impl Live {
    /// Adds (or replaces, by name) an endpoint and starts sampling once.
    pub fn attach(live: &Arc<Live>, serving: Arc<Serving>) {
        let endpoint = Arc::new(Endpoint {
            serving,
            samples: Mutex::new(VecDeque::with_capacity(RING)),
        });
        endpoint.sample();
        {
            let mut list = live.endpoints.lock().unwrap_or_else(|e| e.into_inner());
            list.retain(|e| e.serving.name != endpoint.serving.name);
            list.push(endpoint);
        }
        let weak = Arc::downgrade(live);
        live.sampling.get_or_init(|| {
            tokio::spawn(sample_while_alive(weak));
        });
    }

    fn list(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The version an endpoint of this process serves: `None` when this
    /// process does not serve it, `Some(None)` when it serves no version.
    pub fn served(&self, endpoint: &str) -> Option<Option<i64>> {
        self.list()
            .iter()
            .find(|e| e.serving.name == endpoint)
            .map(|e| e.serving.model.load().as_ref().map(|m| m.info.version))
    }
}

/// Samples every endpoint each [`SAMPLE`] until the UI is dropped.
async fn sample_while_alive(live: Weak<Live>) {
    let mut tick = tokio::time::interval(SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(live) = live.upgrade() else { return };
        for e in live.list() {
            e.sample();
        }
    }
}

/// Rate (requests per second) and mean latency (ms) between consecutive samples.
fn rates(samples: &[Counters]) -> (Vec<f64>, Vec<f64>) {
    samples
        .windows(2)
        .map(|w| {
            let seconds = (w[1].at_ms - w[0].at_ms) as f64 / 1000.0;
            let requests = w[1].requests - w[0].requests;
            let count = w[1].latency_count - w[0].latency_count;
            let rate = if seconds > 0.0 {
                requests / seconds
            } else {
                f64::NAN
            };
            let latency = if count > 0.0 {
                (w[1].latency_sum - w[0].latency_sum) / count * 1000.0
            } else {
                f64::NAN
            };
            (rate, latency)
        })
        .unzip()
}

/// The live page.
pub async fn page(ui: &Ui) -> Result<Markup, UiError> {
    let s = ui.snapshot().await?;
    let endpoints = ui.live.list();
    let body = html! {
        @if endpoints.is_empty() {
            p.muted data-endpoints="0" {
                "This process serves no endpoint (this is the controller's listener, or `up` "
                "has not started them yet): each endpoint's own figures are at /ui/live on its port."
            }
        }
        @for e in &endpoints {
            @let now = e.now();
            @let samples: Vec<Counters> = e.samples.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
            @let (rate, latency) = rates(&samples);
            @let last_rate = rate.last().copied().unwrap_or(f64::NAN);
            @let last_latency = latency.iter().rev().copied().find(|v| v.is_finite()).unwrap_or(f64::NAN);
            @let mean = if now.latency_count > 0.0 { now.latency_sum / now.latency_count * 1000.0 } else { f64::NAN };
            @let model = e.serving.model.load();
            section.endpoint data-endpoint=(e.serving.name) {
                h2 { "Endpoint " (e.serving.name) }
                @if !e.serving.metrics.recording() {
                    p.muted { "Request metrics are off in this process (--without-request-metrics)." }
                }
                dl.cards {
                    div.card { dt { "Serving" } dd {
                        @match model.as_ref() {
                            Some(m) => { (m.info.model) " version " span data-version=(m.info.version) { (m.info.version) } }
                            None => { (e.serving.no_production()) }
                        }
                    } }
                    div.card { dt { "Requests answered" } dd data-requests=(now.requests) { (now.requests) } }
                    div.card { dt { "Rate, last " (SAMPLE.as_secs()) " s" } dd { (layout::number(last_rate)) " req/s" } }
                    div.card { dt { "Mean latency, last " (SAMPLE.as_secs()) " s" } dd { (layout::number(last_latency)) " ms" } }
                    div.card { dt { "Mean latency, since start" } dd { (layout::number(mean)) " ms" } }
                }
                div.charts {
                    figure {
                        figcaption { "Requests per second" }
                        (charts::sparkline(&rate, None, &[], &format!("request rate of {}, every {} s", e.serving.name, SAMPLE.as_secs())))
                    }
                    figure {
                        figcaption { "Mean latency (ms)" }
                        (charts::sparkline(&latency, None, &[], &format!("mean latency of {}, every {} s", e.serving.name, SAMPLE.as_secs())))
                    }
                }
                p.muted { (samples.len()) " sample(s), one every " (SAMPLE.as_secs()) " s, the last " (RING) " kept; UI pages and /metrics are not counted." }
            }
        }
    };
    Ok(layout::page(
        "Live",
        Section::Live,
        Some(5),
        &s.ws.set.project.name.value,
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counted_routes_only() {
        let text = "\
# TYPE reconcile_endpoint_requests counter
reconcile_endpoint_requests_total{route=\"/predict\",method=\"POST\",status=\"200\"} 7
reconcile_endpoint_requests_total{route=\"/predict\",method=\"POST\",status=\"404\"} 2
reconcile_endpoint_requests_total{route=\"/ui\",method=\"GET\",status=\"200\"} 50
reconcile_endpoint_requests_total{route=\"/ui/models/{model}/{version}\",method=\"GET\",status=\"200\"} 5
reconcile_endpoint_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"} 3
reconcile_endpoint_request_duration_seconds_sum{route=\"/predict\"} 0.009
reconcile_endpoint_request_duration_seconds_count{route=\"/predict\"} 9
reconcile_endpoint_request_duration_seconds_sum{route=\"/ui\"} 4.5
reconcile_endpoint_request_duration_seconds_count{route=\"/ui\"} 50
reconcile_endpoint_request_duration_seconds_bucket{route=\"/predict\",le=\"0.001\"} 9
";
        let c = read(text, 1);
        assert_eq!(c.requests, 9.0);
        assert_eq!(c.latency_count, 9.0);
        assert!((c.latency_sum - 0.009).abs() < 1e-12);
    }

    #[test]
    fn rates_between_samples() {
        let s = [
            Counters {
                at_ms: 0,
                requests: 0.0,
                latency_sum: 0.0,
                latency_count: 0.0,
            },
            Counters {
                at_ms: 5000,
                requests: 50.0,
                latency_sum: 0.1,
                latency_count: 50.0,
            },
            Counters {
                at_ms: 10_000,
                requests: 50.0,
                latency_sum: 0.1,
                latency_count: 50.0,
            },
        ];
        let (rate, latency) = rates(&s);
        assert_eq!(rate, vec![10.0, 0.0]);
        assert!((latency[0] - 2.0).abs() < 1e-9);
        assert!(latency[1].is_nan(), "no request, no latency");
    }
}
