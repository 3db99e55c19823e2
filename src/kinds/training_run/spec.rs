//! What a `TrainingRun` document says: label, features, algorithm, validation.

use crate::spec::SpannedStr;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reproducible training run: a training set built point-in-time from feature
/// views and a label, an algorithm, a validation split. Its output is a
/// content-addressed version of `model` in the registry.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrainingRunSpec {
    /// Always `TrainingRun`.
    pub kind: String,
    /// Run name, e.g. `churn-rf`; a Model's `production` may name it.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The Model whose versions this run produces.
    #[schemars(with = "String")]
    pub model: SpannedStr,
    /// Point in time of the training set (YYYY-MM-DD): labels and features as
    /// of it; `latest` follows the newest label snapshot (monthly retraining).
    #[schemars(with = "String", regex(pattern = r"^(\d{4}-\d{2}-\d{2}|latest)$"))]
    pub as_of: SpannedStr,
    /// Where the label comes from.
    pub label: LabelSpec,
    /// Features: `view.*` (every feature of a view) or `view.feature`.
    #[schemars(with = "Vec<String>")]
    pub features: Vec<SpannedStr>,
    /// The algorithm and its parameters.
    pub algorithm: Algorithm,
    /// The held-out validation split that metrics are computed on.
    #[serde(default)]
    pub validation: ValidationSpec,
    /// Seed of the split and of the algorithm: same seed, same model bytes.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// What a null feature value becomes.
    #[serde(default)]
    pub nulls: NullPolicy,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
}

fn default_seed() -> u64 {
    42
}

/// The label: a boolean (or 0/1 integer) column of a table keyed by the entity.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSpec {
    /// The table holding labels; its snapshot as of the run's `asOf` lists the rows.
    #[schemars(with = "String")]
    pub table: SpannedStr,
    /// The label column (`bool`, or `int` holding 0/1).
    #[schemars(with = "String")]
    pub column: SpannedStr,
}

/// The validation split.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ValidationSpec {
    /// Share of rows held out, in (0, 1).
    #[serde(default = "default_fraction")]
    pub fraction: f64,
    /// Keep the class balance equal in both parts.
    #[serde(default = "default_true")]
    pub stratify: bool,
}

impl Default for ValidationSpec {
    fn default() -> Self {
        ValidationSpec {
            fraction: default_fraction(),
            stratify: true,
        }
    }
}

fn default_fraction() -> f64 {
    0.25
}

fn default_true() -> bool {
    true
}

/// What a null feature value becomes (strings always get a category of their own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NullPolicy {
    /// The training mean, plus a `feature__missing` 0/1 column when the training set has nulls.
    #[default]
    Indicator,
    /// The training mean.
    Mean,
    /// Zero.
    Zero,
    /// Refuse to train, naming the feature and how many nulls it has.
    Fail,
}

/// A training algorithm with its parameters; written `{randomForest: {…}}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Algorithm {
    /// Bagged trees with features sampled per split; probabilities are vote shares.
    RandomForest(ForestSpec),
    /// L2-regularised logistic regression on standardised features (linfa-logistic).
    LogisticRegression(LogisticSpec),
    /// One CART tree; probabilities are leaf class shares.
    DecisionTree(TreeSpec),
}

impl Algorithm {
    /// Name as written in specs.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::RandomForest(_) => "randomForest",
            Algorithm::LogisticRegression(_) => "logisticRegression",
            Algorithm::DecisionTree(_) => "decisionTree",
        }
    }

    /// How many trees training grows (what its progress counts); `None` for
    /// a model that is not made of trees.
    pub fn trees(&self) -> Option<usize> {
        match self {
            Algorithm::RandomForest(f) => Some(f.trees),
            Algorithm::DecisionTree(_) => Some(1),
            Algorithm::LogisticRegression(_) => None,
        }
    }
}

/// Class weighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClassWeight {
    /// Weight classes inversely to their frequency (scikit-learn's `balanced`).
    Balanced,
    /// Every row counts the same.
    None,
}

/// Random forest parameters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForestSpec {
    /// Number of trees.
    #[serde(default = "default_trees")]
    pub trees: usize,
    /// Features considered per split: `sqrt`, `log2`, `all`, a count or a fraction.
    #[serde(default)]
    pub max_features: MaxFeaturesSpec,
    /// Depth limit (unlimited when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<usize>,
    /// Minimum rows in a leaf.
    #[serde(default = "default_one")]
    pub min_samples_leaf: usize,
    /// Rows each tree's bootstrap draws: a count (capped at the training
    /// rows) or a fraction of them in (0, 1]. Absent: every row up to
    /// 100 000 (`DEFAULT_MAX_SAMPLES`), so fitting stops growing with the
    /// training set past that size; `1.0` draws as many as there are rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples: Option<MaxSamplesSpec>,
    /// Class weighting.
    #[serde(default = "default_class_weight")]
    pub class_weight: ClassWeight,
}

/// Rows a forest's tree draws when `maxSamples` is absent: every training row
/// up to this many. Past it a tree's fit costs the same however many rows
/// there are (at 704 000 users, 528 000 training rows, fitting all of them
/// took 31 times as long as at 70 000); below it nothing changes.
pub const DEFAULT_MAX_SAMPLES: usize = 100_000;

/// Rows drawn per tree (`maxSamples`): a count or a share of the training rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MaxSamplesSpec {
    /// This many rows, capped at the training rows (at least 1).
    Count(usize),
    /// This share of the training rows, in (0, 1].
    Fraction(f64),
}

fn default_trees() -> usize {
    100
}

fn default_one() -> usize {
    1
}

fn default_class_weight() -> ClassWeight {
    ClassWeight::None
}

/// Features considered per split (default `sqrt`, scikit-learn's for classification).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MaxFeaturesSpec {
    /// `sqrt`, `log2` or `all`.
    Named(MaxFeaturesName),
    /// This many features.
    Count(usize),
    /// This share of the features, in (0, 1].
    Fraction(f64),
}

impl Default for MaxFeaturesSpec {
    fn default() -> Self {
        MaxFeaturesSpec::Named(MaxFeaturesName::Sqrt)
    }
}

/// Named feature-sampling rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MaxFeaturesName {
    /// √p.
    Sqrt,
    /// log₂ p.
    Log2,
    /// Every feature (plain bagging).
    All,
}

/// Logistic regression parameters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogisticSpec {
    /// L2 penalty weight.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Optimiser iteration limit.
    #[serde(default = "default_iterations")]
    pub max_iterations: u64,
    /// Class weighting (balanced: prior correction of the intercept).
    #[serde(default = "default_class_weight")]
    pub class_weight: ClassWeight,
}

fn default_alpha() -> f64 {
    1.0
}

fn default_iterations() -> u64 {
    200
}

/// Decision tree parameters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TreeSpec {
    /// Depth limit (unlimited when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<usize>,
    /// Minimum rows in a leaf.
    #[serde(default = "default_one")]
    pub min_samples_leaf: usize,
    /// Class weighting.
    #[serde(default = "default_class_weight")]
    pub class_weight: ClassWeight,
}
