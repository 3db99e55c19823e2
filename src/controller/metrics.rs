//! Prometheus metrics of the long-running controller (`watch`, `up`,
//! `gitops`): applies by outcome and trigger, their duration, resources by
//! condition, time since the last successful apply, watch events and the live
//! commit. Every label takes its values from a fixed set (an enum here, a
//! commit id of which one series exists at a time), so no input can grow the
//! exposition.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::state::Condition;

/// What started an apply.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Trigger {
    /// The process started.
    Start,
    /// A spec or an input file changed.
    Change,
    /// The periodic resync.
    Resync,
    /// A new commit (gitops).
    Commit,
}

/// How an apply ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Everything converged (or nothing had to change).
    Success,
    /// Some resource failed or was blocked.
    Failed,
    /// The specs did not load; nothing was applied.
    Invalid,
    /// A store could not be opened or read.
    Error,
    /// SIGINT/SIGTERM stopped it.
    Interrupted,
}

/// What a watch event was about.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum EventKind {
    /// A spec document.
    Spec,
    /// A file a resource reads.
    Input,
    /// Anything else under the folder (the state store, editor files).
    Ignored,
}

impl Trigger {
    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Change => "change",
            Trigger::Resync => "resync",
            Trigger::Commit => "commit",
        }
    }
}

impl ApplyOutcome {
    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Success => "success",
            ApplyOutcome::Failed => "failed",
            ApplyOutcome::Invalid => "invalid",
            ApplyOutcome::Error => "error",
            ApplyOutcome::Interrupted => "interrupted",
        }
    }
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Spec => "spec",
            EventKind::Input => "input",
            EventKind::Ignored => "ignored",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApplyLabels {
    outcome: &'static str,
    trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    condition: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabels {
    sha: String,
    branch: String,
}

/// The controller's metrics and their registry.
pub struct ControllerMetrics {
    registry: Registry,
    applies: Family<ApplyLabels, Counter>,
    duration: Histogram,
    resources: Family<ConditionLabels, Gauge>,
    last_success: Gauge<f64, AtomicU64>,
    since_success: Gauge<f64, AtomicU64>,
    events: Family<EventLabels, Counter>,
    live_commit: Family<CommitLabels, Gauge>,
    live_labels: Mutex<Option<CommitLabels>>,
    last_success_at: Mutex<Option<SystemTime>>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerMetrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let applies = Family::<ApplyLabels, Counter>::default();
        registry.register(
            "reconcile_controller_applies",
            "Applies run by the controller, by outcome and what triggered them",
            applies.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register(
            "reconcile_controller_apply_duration_seconds",
            "Wall time of one apply (all its rounds), including loading the specs",
            duration.clone(),
        );
        let resources = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "reconcile_controller_resources",
            "Resources recorded in the state store, by condition, after the last apply",
            resources.clone(),
        );
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "reconcile_controller_last_success_timestamp_seconds",
            "Unix time of the last apply that converged",
            last_success.clone(),
        );
        let since_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "reconcile_controller_seconds_since_last_success",
            "Seconds since the last apply that converged (-1: none yet)",
            since_success.clone(),
        );
        since_success.set(-1.0);
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "reconcile_controller_watch_events",
            "File events seen by watch mode, by what they were about",
            events.clone(),
        );
        let live_commit = Family::<CommitLabels, Gauge>::default();
        registry.register(
            "reconcile_controller_live_commit_info",
            "The commit whose specs are live (gitops); value 1",
            live_commit.clone(),
        );
        ControllerMetrics {
            registry,
            applies,
            duration,
            resources,
            last_success,
            since_success,
            events,
            live_commit,
            live_labels: Mutex::new(None),
            last_success_at: Mutex::new(None),
        }
    }

    /// Counts an apply and its duration.
    pub fn applied(&self, trigger: Trigger, outcome: ApplyOutcome, seconds: f64) {
        self.applies
            .get_or_create(&ApplyLabels {
                outcome: outcome.as_str(),
                trigger: trigger.as_str(),
            })
            .inc();
        self.duration.observe(seconds);
        if outcome == ApplyOutcome::Success {
            let now = SystemTime::now();
            self.last_success.set(
                now.duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64()),
            );
            if let Ok(mut at) = self.last_success_at.lock() {
                *at = Some(now);
            }
        }
    }

    /// Sets the resource counts by condition (every condition, zeros included).
    pub fn resources(&self, counts: &[(Condition, i64)]) {
        for c in [Condition::Ready, Condition::Failed, Condition::Blocked] {
            let n = counts.iter().find(|(k, _)| *k == c).map_or(0, |(_, n)| *n);
            self.resources
                .get_or_create(&ConditionLabels {
                    condition: c.as_str(),
                })
                .set(n);
        }
    }

    /// Counts file events.
    pub fn events(&self, kind: EventKind, n: u64) {
        if n > 0 {
            self.events
                .get_or_create(&EventLabels {
                    kind: kind.as_str(),
                })
                .inc_by(n);
        }
    }

    /// Marks `sha` of `branch` as the live commit, replacing the previous one.
    pub fn live_commit(&self, sha: &str, branch: &str) {
        let labels = CommitLabels {
            sha: sha
                .chars()
                .filter(char::is_ascii_hexdigit)
                .take(40)
                .collect(),
            branch: branch.chars().take(100).collect(),
        };
        if let Ok(mut live) = self.live_labels.lock() {
            if let Some(old) = live.take() {
                self.live_commit.remove(&old);
            }
            self.live_commit.get_or_create(&labels).set(1);
            *live = Some(labels);
        }
    }

    /// The text exposition, with the time since the last success brought up to date.
    pub fn encode(&self) -> String {
        if let Ok(at) = self.last_success_at.lock()
            && let Some(at) = *at
        {
            self.since_success
                .set(at.elapsed().map_or(0.0, |d| d.as_secs_f64()));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_commit_series_at_a_time() {
        let m = ControllerMetrics::new();
        m.live_commit("aaaa", "main");
        m.live_commit("bbbb", "main");
        let text = m.encode();
        assert!(text.contains("sha=\"bbbb\""), "{text}");
        assert!(!text.contains("sha=\"aaaa\""), "{text}");
    }

    #[test]
    fn success_sets_the_time_since() {
        let m = ControllerMetrics::new();
        assert!(
            m.encode()
                .contains("reconcile_controller_seconds_since_last_success -1")
        );
        m.applied(Trigger::Start, ApplyOutcome::Success, 0.2);
        m.applied(Trigger::Change, ApplyOutcome::Failed, 0.1);
        let text = m.encode();
        assert!(
            text.contains(
                "reconcile_controller_applies_total{outcome=\"success\",trigger=\"start\"} 1"
            ),
            "{text}"
        );
        assert!(!text.contains("seconds_since_last_success -1"), "{text}");
    }
}
