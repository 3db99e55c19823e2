//! One Rust type per spec kind: what users write in YAML.
//!
//! Each type derives `Deserialize` straight from its document (never through a
//! tagged enum, which would lose line/column locations and `deny_unknown_fields`)
//! and `JsonSchema` for editor completion. Values users reference elsewhere carry
//! a [`Spanned`] location so later checks can point at them.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// A string with its place in the spec file.
pub type SpannedStr = Spanned<String>;

/// The project: its name and where state and data live.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProjectSpec {
    /// Always `Project`.
    pub kind: String,
    /// Project name; labels and state are keyed by it.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// State store URL: `sqlite://path` (relative to this file) or `postgres://…`.
    /// `${VAR}` references are resolved at run time and never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub state: Option<SpannedStr>,
    /// Offline store URL for table data; defaults to the state store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub offline: Option<SpannedStr>,
    /// Online store URL for served feature values; defaults to the offline store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub online: Option<SpannedStr>,
}

/// Something features are about (a user, a device), identified by join keys.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntitySpec {
    /// Always `Entity`.
    pub kind: String,
    /// Entity name, referenced by feature views.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Columns that identify one entity.
    #[schemars(with = "Vec<String>")]
    pub join_keys: Vec<SpannedStr>,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
}

/// A typed, validated table with one snapshot per `asOf` date.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TableSpec {
    /// Always `Table`.
    pub kind: String,
    /// Table name; also its name in the offline store.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Columns that identify a row within one snapshot.
    #[schemars(with = "Vec<String>")]
    pub primary_key: Vec<SpannedStr>,
    /// Declared column types, in CSV order. Columns are nullable unless constrained.
    pub columns: IndexMap<String, ColumnType>,
    /// The snapshots, one per date.
    pub snapshots: Vec<SnapshotSpec>,
    /// Expectations every snapshot must meet before it is stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<Expectation>,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
    /// Refuse to drop this table's data (recorded in the state store).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protect: bool,
}

/// Features of an entity taken from a table's columns, for training sets
/// (point-in-time) and for serving (materialized into the online store).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FeatureViewSpec {
    /// Always `FeatureView`.
    pub kind: String,
    /// View name; features are addressed as `view.feature`.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The entity the features describe; the table must have its join keys.
    #[schemars(with = "String")]
    pub entity: SpannedStr,
    /// The table the features come from.
    #[schemars(with = "String")]
    pub table: SpannedStr,
    /// Columns of the table served as features (types come from the table).
    #[schemars(with = "Vec<String>")]
    pub features: Vec<SpannedStr>,
    /// How long a snapshot's values stay valid, e.g. `90d`, `12h`.
    #[schemars(with = "String", regex(pattern = r"^[0-9]+[dhm]$"))]
    pub ttl: SpannedStr,
    /// Materialize the latest values into the online store.
    #[serde(default)]
    pub online: bool,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
}

/// Parses a TTL such as `90d`, `12h` or `30m`.
pub fn parse_ttl(s: &str) -> Option<chrono::Duration> {
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    match unit {
        "d" => chrono::Duration::try_days(n),
        "h" => chrono::Duration::try_hours(n),
        "m" => chrono::Duration::try_minutes(n),
        _ => None,
    }
}

/// One snapshot: the data as of a date.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotSpec {
    /// The date the data describes (YYYY-MM-DD).
    #[schemars(with = "String", regex(pattern = r"^\d{4}-\d{2}-\d{2}$"))]
    pub as_of: SpannedStr,
    /// CSV file, relative to this spec file; must stay inside the project.
    #[schemars(with = "String")]
    pub path: SpannedStr,
}

/// Declared type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// `True`/`False` (also `true`/`false`, `1`/`0`).
    Bool,
    /// Calendar date, `YYYY-MM-DD`.
    Date,
}

impl ColumnType {
    /// Lower-case name as written in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::Bool => "bool",
            ColumnType::Date => "date",
        }
    }
}

/// A rule a snapshot must satisfy; a failing one refuses the whole snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Expectation {
    /// No empty cells in these columns.
    NotNull(#[schemars(with = "Vec<String>")] Vec<SpannedStr>),
    /// No two rows share the values of these columns (together).
    Unique(#[schemars(with = "Vec<String>")] Vec<SpannedStr>),
    /// Numeric values within `[min, max]`.
    Between(Between),
    /// Values drawn from a fixed set.
    InSet(InSet),
    /// Text values matching a regular expression.
    Regex(RegexRule),
    /// The snapshot's row count within bounds.
    RowCount(RowCount),
    /// Each column holds at least two distinct non-null values.
    NotConstant(#[schemars(with = "Vec<String>")] Vec<SpannedStr>),
    /// The CSV header lists exactly the declared columns, in declared order.
    ExactColumns(bool),
}

/// Bounds for [`Expectation::Between`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Between {
    /// Column to check.
    #[schemars(with = "String")]
    pub column: SpannedStr,
    /// Inclusive lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Inclusive upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// Allowed values for [`Expectation::InSet`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InSet {
    /// Column to check.
    #[schemars(with = "String")]
    pub column: SpannedStr,
    /// Allowed values, compared as text.
    pub values: Vec<String>,
}

/// Pattern for [`Expectation::Regex`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexRule {
    /// Column to check.
    #[schemars(with = "String")]
    pub column: SpannedStr,
    /// Regular expression (Rust `regex` syntax); anchor it with `^…$` to match whole values.
    #[schemars(with = "String")]
    pub pattern: SpannedStr,
}

/// Bounds for [`Expectation::RowCount`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowCount {
    /// Inclusive minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    /// Inclusive maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

impl Expectation {
    /// Short human name, e.g. `between(months_active)`, used in reports and plans.
    pub fn label(&self) -> String {
        let cols = |v: &[SpannedStr]| {
            v.iter()
                .map(|s| s.value.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Expectation::NotNull(c) => format!("notNull({})", cols(c)),
            Expectation::Unique(c) => format!("unique({})", cols(c)),
            Expectation::Between(b) => format!("between({})", b.column.value),
            Expectation::InSet(s) => format!("inSet({})", s.column.value),
            Expectation::Regex(r) => format!("regex({})", r.column.value),
            Expectation::RowCount(_) => "rowCount".to_string(),
            Expectation::NotConstant(c) => format!("notConstant({})", cols(c)),
            Expectation::ExactColumns(_) => "exactColumns".to_string(),
        }
    }
}

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
    /// Point in time of the training set (YYYY-MM-DD): labels and features as of it.
    #[schemars(with = "String", regex(pattern = r"^\d{4}-\d{2}-\d{2}$"))]
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
    /// Class weighting.
    #[serde(default = "default_class_weight")]
    pub class_weight: ClassWeight,
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

/// Names of runs and models may contain `-` (they never reach SQL as identifiers).
pub fn is_resource_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && s.len() <= 63
}

/// A prediction endpoint: serves the Production version of a model with the
/// online features of its entity, and follows Production as it changes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointSpec {
    /// Always `Endpoint`.
    pub kind: String,
    /// Endpoint name.
    #[schemars(with = "String")]
    pub name: SpannedStr,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The Model whose Production version is served.
    #[schemars(with = "String")]
    pub model: SpannedStr,
    /// TCP port.
    pub port: u16,
    /// Address to bind.
    #[serde(default = "default_host")]
    pub host: String,
    /// Where it runs: `embedded` (inside `reconcile serve`) or `docker` (a container
    /// the controller builds from its own binary and keeps running).
    #[serde(default)]
    pub runtime: Runtime,
    /// Most ids one `/predict/batch` request may carry.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
}

fn default_host() -> String {
    "127.0.0.1".to_string()
}

fn default_max_batch() -> usize {
    1000
}

/// Where an endpoint runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Runtime {
    /// In-process, under `reconcile serve`.
    #[default]
    Embedded,
    /// In a container on the project network, built from this binary and
    /// running `reconcile serve`; the controller keeps it running.
    Docker,
}
