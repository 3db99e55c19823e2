//! What a `Table` document says: columns, snapshots and expectations.

pub use super::snapshots::{SnapshotGlob, SnapshotSpec, Snapshots};
use crate::spec::{ColumnType, SpannedStr};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// The snapshots, one per date: a list of `{asOf, path}`, or
    /// `{glob: "data/*/users.csv"}` whose wildcard part names each date.
    pub snapshots: Snapshots,
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
    /// Take over a table of this name that exists in the offline store but
    /// that reconcile did not create: it is dropped and rebuilt from the
    /// snapshots. Without it, such a table is a conflict and apply refuses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
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
