//! What a `Model` document says: how Production is chosen, behind which gates.

use crate::spec::SpannedStr;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A registered model: which of its versions is Production, and the gates a
/// version must pass to get there.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelSpec {
    /// Always `Model`.
    pub kind: String,
    /// Model name, e.g. `streamflow_churn`.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which version is Production: a run name, `manual`, `{version: N}` or a
    /// policy `{best: val_auc, minGain: 0.01, among: [run, …]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production: Option<ProductionSpec>,
    /// Gates a version must pass to be promoted, e.g. `val_auc: ">= 0.75"`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub require: IndexMap<String, String>,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
}

/// How the Production version is chosen.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ProductionSpec {
    /// The version a run produced, or `manual` (stages are set by hand; no drift).
    Run(#[schemars(with = "String")] SpannedStr),
    /// A registered version number.
    Version(PinnedVersion),
    /// The best candidate by a metric, replacing Production only by a margin.
    Best(BestPolicy),
}

/// `{version: N}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PinnedVersion {
    /// Version number (from 1).
    pub version: u32,
}

/// `{best: val_auc, minGain: 0.01, among: [churn-rf, churn-rf-feb]}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BestPolicy {
    /// Metric to compare (`val_auc`, `val_f1`, `val_accuracy`, `val_precision`,
    /// `val_recall`; `val_log_loss` is better when lower).
    #[schemars(with = "String")]
    pub best: SpannedStr,
    /// A challenger replaces Production only when better by at least this much.
    #[serde(default)]
    pub min_gain: f64,
    /// The runs whose versions compete.
    #[schemars(with = "Vec<String>")]
    pub among: Vec<SpannedStr>,
}

impl ProductionSpec {
    /// The runs this choice depends on (`manual` and pinned versions name none).
    pub fn runs(&self) -> Vec<&SpannedStr> {
        match self {
            ProductionSpec::Run(r) if r.value == MANUAL => Vec::new(),
            ProductionSpec::Run(r) => vec![r],
            ProductionSpec::Version(_) => Vec::new(),
            ProductionSpec::Best(b) => b.among.iter().collect(),
        }
    }
}

/// `production: manual`: stages are set by hand and never healed.
pub const MANUAL: &str = "manual";

/// Metrics a gate or a policy may name; all but `val_log_loss` are better when higher.
pub const METRICS: [&str; 6] = [
    "val_auc",
    "val_f1",
    "val_accuracy",
    "val_precision",
    "val_recall",
    "val_log_loss",
];

/// Whether a higher value of `metric` is better.
pub fn higher_is_better(metric: &str) -> bool {
    metric != "val_log_loss"
}

/// A promotion gate: `val_auc >= 0.75`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The metric.
    pub metric: String,
    /// The comparison, as written (`>=`, `>`, `<=`, `<`).
    pub op: &'static str,
    /// The bound.
    pub bound: f64,
}

impl Gate {
    /// Parses `metric: "op number"`; the error says what is wrong.
    pub fn parse(metric: &str, condition: &str) -> Result<Gate, String> {
        if !METRICS.contains(&metric) {
            return Err(format!(
                "unknown metric `{metric}`; metrics are {}",
                METRICS.join(", ")
            ));
        }
        let c = condition.trim();
        let op = [">=", "<=", ">", "<"]
            .into_iter()
            .find(|op| c.starts_with(op))
            .ok_or_else(|| format!("`{condition}` is not a condition like `>= 0.75`"))?;
        let bound: f64 = c[op.len()..]
            .trim()
            .parse()
            .ok()
            .filter(|b: &f64| b.is_finite())
            .ok_or_else(|| format!("`{condition}`: `{}` is not a number", c[op.len()..].trim()))?;
        Ok(Gate {
            metric: metric.to_string(),
            op,
            bound,
        })
    }

    /// Whether a value passes.
    pub fn passes(&self, value: f64) -> bool {
        match self.op {
            ">=" => value >= self.bound,
            "<=" => value <= self.bound,
            ">" => value > self.bound,
            _ => value < self.bound,
        }
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op, self.bound)
    }
}

impl ModelSpec {
    /// The gates, skipping malformed ones (validation reports those).
    pub fn gates(&self) -> Vec<Gate> {
        self.require
            .iter()
            .filter_map(|(m, c)| Gate::parse(m, c).ok())
            .collect()
    }
}
