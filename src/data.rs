//! Typed columnar batches: what a parsed CSV snapshot becomes, what expectations
//! check and what the offline store writes. Nulls are explicit (`None`), never a
//! sentinel such as zero or an empty string.

use chrono::NaiveDate;

use crate::spec::ColumnType;

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Text values.
    Str(Vec<Option<String>>),
    /// Integers.
    Int(Vec<Option<i64>>),
    /// Floats.
    Float(Vec<Option<f64>>),
    /// Booleans.
    Bool(Vec<Option<bool>>),
    /// Dates.
    Date(Vec<Option<NaiveDate>>),
}

impl Column {
    /// An empty column of a declared type with room for `n` values.
    pub fn with_capacity(ty: ColumnType, n: usize) -> Column {
        match ty {
            ColumnType::String => Column::Str(Vec::with_capacity(n)),
            ColumnType::Int => Column::Int(Vec::with_capacity(n)),
            ColumnType::Float => Column::Float(Vec::with_capacity(n)),
            ColumnType::Bool => Column::Bool(Vec::with_capacity(n)),
            ColumnType::Date => Column::Date(Vec::with_capacity(n)),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Column::Str(v) => v.len(),
            Column::Int(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::Date(v) => v.len(),
        }
    }

    /// True when the column holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether row `i` is null.
    pub fn is_null(&self, i: usize) -> bool {
        match self {
            Column::Str(v) => v[i].is_none(),
            Column::Int(v) => v[i].is_none(),
            Column::Float(v) => v[i].is_none(),
            Column::Bool(v) => v[i].is_none(),
            Column::Date(v) => v[i].is_none(),
        }
    }

    /// The rows at `rows`, in that order: one snapshot's part of a column
    /// read across several.
    pub fn select(&self, rows: &[usize]) -> Column {
        fn pick<T: Clone>(v: &[Option<T>], rows: &[usize]) -> Vec<Option<T>> {
            rows.iter().map(|&i| v[i].clone()).collect()
        }
        match self {
            Column::Str(v) => Column::Str(pick(v, rows)),
            Column::Int(v) => Column::Int(pick(v, rows)),
            Column::Float(v) => Column::Float(pick(v, rows)),
            Column::Bool(v) => Column::Bool(pick(v, rows)),
            Column::Date(v) => Column::Date(pick(v, rows)),
        }
    }

    /// Row `i` as text, as it would print in a report (`NULL` for null).
    pub fn display(&self, i: usize) -> String {
        let s = match self {
            Column::Str(v) => v[i].clone(),
            Column::Int(v) => v[i].map(|x| x.to_string()),
            Column::Float(v) => v[i].map(|x| x.to_string()),
            Column::Bool(v) => v[i].map(|x| if x { "True".into() } else { "False".into() }),
            Column::Date(v) => v[i].map(|x| x.to_string()),
        };
        s.unwrap_or_else(|| "NULL".to_string())
    }

    /// Row `i` as a numeric value, for range checks.
    pub fn as_f64(&self, i: usize) -> Option<f64> {
        match self {
            Column::Int(v) => v[i].map(|x| x as f64),
            Column::Float(v) => v[i],
            _ => None,
        }
    }

    /// Orders rows `i` and `j` as SQLite orders their stored values (nulls
    /// first, numbers by value, text bytewise, dates as their ISO text): a
    /// bulk load sorted this way walks its primary-key index in order
    /// instead of landing on a random page per row.
    pub fn cmp_rows(&self, i: usize, j: usize) -> std::cmp::Ordering {
        match self {
            Column::Str(v) => v[i].cmp(&v[j]),
            Column::Int(v) => v[i].cmp(&v[j]),
            Column::Float(v) => match (v[i], v[j]) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                (a, b) => a.is_some().cmp(&b.is_some()),
            },
            Column::Bool(v) => v[i].cmp(&v[j]),
            Column::Date(v) => v[i].cmp(&v[j]),
        }
    }

    /// A hashable key of row `i`, for uniqueness checks.
    pub fn key(&self, i: usize) -> Option<KeyPart> {
        match self {
            Column::Str(v) => v[i].clone().map(KeyPart::Str),
            Column::Int(v) => v[i].map(KeyPart::Int),
            Column::Float(v) => v[i].map(|x| KeyPart::Int(x.to_bits() as i64)),
            Column::Bool(v) => v[i].map(|x| KeyPart::Int(i64::from(x))),
            Column::Date(v) => v[i].map(|x| KeyPart::Int(i64::from(x.num_days_from_ce()))),
        }
    }
}

use chrono::Datelike;

/// A value as part of a composite key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// Text.
    Str(String),
    /// Anything with an exact integer representation.
    Int(i64),
}

/// A typed table: named columns of equal length, plus the source line of each row.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Columns in declared order.
    pub columns: Vec<(String, Column)>,
    /// 1-based line number in the source file of each row.
    pub lines: Vec<u64>,
}

impl Batch {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }
}
