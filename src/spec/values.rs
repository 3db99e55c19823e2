//! Value types shared by every kind's spec: located strings, column types and
//! the naming rule of resources. Kind-specific spec types live with their kind
//! under `kinds/`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// A string with its place in the spec file.
pub type SpannedStr = Spanned<String>;

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

/// Names of runs and models may contain `-` (they never reach SQL as identifiers).
pub fn is_resource_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && s.len() <= 63
}
