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
