//! What a `Monitor` document says: which features, predictions and labels to
//! watch, against which reference, and which runs to retrain when it fires.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::drift::Method;
use crate::kinds::training_run::spec::LabelSpec;
use crate::spec::SpannedStr;

/// Watches a model's inputs and outputs: data drift of its features against
/// the Production version's training data, drift of the probabilities an
/// endpoint served, and decay on labels that arrived after training. When it
/// fires, the runs it names are trained again as of the newest labels, and the
/// Model's policy and gates decide whether the new version is promoted.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MonitorSpec {
    /// Always `Monitor`.
    pub kind: String,
    /// Monitor name, e.g. `churn-drift`.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The model whose Production version is the reference (and is checked for decay).
    #[schemars(with = "String")]
    pub model: SpannedStr,
    /// Features to watch for data drift: `view.*` or `view.feature`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub features: Vec<SpannedStr>,
    /// The reference window of data drift: `production` (the date the
    /// Production version was trained as of) or `{asOf: YYYY-MM-DD}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceSpec>,
    /// Share of drifted features at which the data counts as drifted (Evidently's default 0.5).
    #[serde(default = "default_drift_share")]
    pub drift_share: f64,
    /// Per-feature method and threshold, overriding the default choice.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub columns: IndexMap<String, ColumnSpec>,
    /// Drift of the probabilities an endpoint served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<PredictionsSpec>,
    /// Decay of the Production version on labels newer than its training set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<DecaySpec>,
    /// What to do when the monitor fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_drift: Option<OnDriftSpec>,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
}

fn default_drift_share() -> f64 {
    0.5
}

/// The reference window (absent: `production`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ReferenceSpec {
    /// `production`, the only word accepted (checked with its location): the
    /// date the Production version was trained as of.
    Named(#[schemars(with = "String")] SpannedStr),
    /// `{asOf: 2024-01-31}`: the snapshot at or before a fixed date.
    AsOf(AsOfSpec),
}

/// `{asOf: YYYY-MM-DD}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AsOfSpec {
    /// The date.
    #[schemars(with = "String", regex(pattern = r"^\d{4}-\d{2}-\d{2}$"))]
    pub as_of: SpannedStr,
}

/// A feature's own method and threshold.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ColumnSpec {
    /// `ks`, `chisquare`, `z`, `wasserstein`, `jensenshannon` or `psi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// A p-value bound (ks, chisquare, z: drift below it) or a distance
    /// (wasserstein, jensenshannon, psi: drift at or above it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// Prediction drift: the endpoint's logged probabilities over a window against
/// the Production version's probabilities on its validation rows.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PredictionsSpec {
    /// The endpoint whose predictions are compared.
    #[schemars(with = "String")]
    pub endpoint: SpannedStr,
    /// How far back the current window reaches, e.g. `7d`, `12h`.
    #[serde(default = "default_window")]
    #[schemars(with = "String")]
    pub window: SpannedStr,
    /// How often the served predictions are judged again (besides whenever
    /// the reference or the data change), e.g. `1h`, `15m`, `30s`.
    #[serde(default = "default_every")]
    #[schemars(with = "String")]
    pub every: SpannedStr,
    /// Fewer logged predictions than this: not evaluated (too few to judge).
    #[serde(default = "default_min_rows")]
    pub min_rows: usize,
    /// The method (default: chosen as for any numerical column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Its threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

fn default_window() -> SpannedStr {
    crate::kinds::service::spec::spanned("7d")
}

fn default_every() -> SpannedStr {
    crate::kinds::service::spec::spanned("1h")
}

fn default_min_rows() -> usize {
    100
}

/// Model decay: the Production version scored on labels newer than its training set.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DecaySpec {
    /// Where the labels come from (the same form as a training run's).
    pub label: LabelSpec,
    /// The monitor fires when AUC on the new labels is lower than the
    /// validation AUC by more than this.
    #[serde(default = "default_max_auc_drop")]
    pub max_auc_drop: f64,
}

fn default_max_auc_drop() -> f64 {
    0.05
}

/// What firing does.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OnDriftSpec {
    /// Training runs to train again as of the newest labels.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub retrain: Vec<SpannedStr>,
}
