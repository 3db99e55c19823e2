//! Drift statistics: is a column's current window distributed like its
//! reference? Pure functions of two samples, chosen per column the way
//! Evidently's `DataDriftPreset` chooses them by default, so a user moving from
//! Evidently sees the same verdicts and the same numbers.
//!
//! [`column_drift`] compares one column; [`dataset_drift`] turns the columns'
//! verdicts into the dataset's. What goes in is a typed [`Column`] (nulls are
//! explicit and dropped before testing, as Evidently drops NaN); what comes out
//! is serializable, so a monitor's evaluation is stored and reported as is.
//! `report` renders an evaluation as one self-contained HTML page.

pub mod report;
pub mod stattests;
pub mod svg;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::data::Column;

/// How a column is treated: as numbers or as categories. Declared types decide
/// (`int`/`float` numerical, `string`/`bool` categorical), never guessed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ColumnKind {
    /// Integers and floats.
    Numerical,
    /// Strings and booleans.
    Categorical,
}

/// A statistical test or distance. Names are those of Evidently's stattests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Two-sample Kolmogorov–Smirnov test (p-value; drift when p < threshold).
    Ks,
    /// Pearson's chi-squared test of the category frequencies (p-value).
    ChiSquare,
    /// Two-proportion Z-test for binary columns (p-value).
    Z,
    /// Wasserstein distance normed by the reference's standard deviation
    /// (distance; drift when ≥ threshold).
    Wasserstein,
    /// Jensen–Shannon distance of the binned or category frequencies (distance).
    JensenShannon,
    /// Population stability index (distance-like; drift when ≥ threshold).
    Psi,
}

impl Method {
    /// Whether the score is a p-value (drift when it falls below the
    /// threshold) rather than a distance (drift when it reaches it).
    pub fn is_p_value(self) -> bool {
        matches!(self, Method::Ks | Method::ChiSquare | Method::Z)
    }

    /// The threshold Evidently uses when none is given.
    pub fn default_threshold(self) -> f64 {
        if self.is_p_value() { 0.05 } else { 0.1 }
    }

    /// The name as written in specs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::ChiSquare => "chisquare",
            Method::Z => "z",
            Method::Wasserstein => "wasserstein",
            Method::JensenShannon => "jensenshannon",
            Method::Psi => "psi",
        }
    }
}

/// A column's override of the default choice.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ColumnOptions {
    /// The method; `None` chooses as Evidently does.
    pub method: Option<Method>,
    /// The threshold; `None` is the method's default.
    pub threshold: Option<f64>,
}

/// The two distributions, as a report draws them: shared bins for numbers,
/// shared categories for the rest. Shares, not counts, so windows of
/// different sizes compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Distribution {
    /// Histogram over shared bin edges (`edges.len() == reference.len() + 1`).
    Histogram {
        /// Bin edges, ascending.
        edges: Vec<f64>,
        /// Share of reference values per bin.
        reference: Vec<f64>,
        /// Share of current values per bin.
        current: Vec<f64>,
    },
    /// Category frequencies, most frequent in the reference first (at most
    /// 20 categories; the rest are summed into `(other)`).
    Categories {
        /// Category labels.
        labels: Vec<String>,
        /// Share of reference values per category.
        reference: Vec<f64>,
        /// Share of current values per category.
        current: Vec<f64>,
    },
}

/// One column's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnDrift {
    /// The column (`view.feature` in a monitor).
    pub column: String,
    /// Numerical or categorical.
    pub kind: ColumnKind,
    /// The method that was applied.
    pub method: Method,
    /// Its score: a p-value or a distance (see [`Method::is_p_value`]).
    pub score: f64,
    /// The threshold the score was held against.
    pub threshold: f64,
    /// Whether the column drifted.
    pub drifted: bool,
    /// Non-null reference values tested.
    pub reference_rows: usize,
    /// Non-null current values tested.
    pub current_rows: usize,
    /// Null reference values (dropped before testing).
    pub reference_nulls: usize,
    /// Null current values (dropped before testing).
    pub current_nulls: usize,
    /// What a report draws.
    pub distribution: Distribution,
}

/// The dataset's verdict: drift when the share of drifted columns reaches
/// `drift_share`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetDrift {
    /// Every column, in the order given.
    pub columns: Vec<ColumnDrift>,
    /// How many drifted.
    pub drifted_columns: usize,
    /// `drifted_columns / columns.len()`.
    pub share: f64,
    /// The share at which the dataset counts as drifted.
    pub drift_share: f64,
    /// Whether it does.
    pub dataset_drift: bool,
}

/// Why a column cannot be tested.
#[derive(Debug, Error, PartialEq)]
pub enum DriftError {
    /// A window holds no non-null value of the column.
    #[error("column `{column}` has no non-null value in the {window} window")]
    Empty {
        /// Which column.
        column: String,
        /// `reference` or `current`.
        window: &'static str,
    },
    /// The method does not apply to this kind of column (e.g. `ks` on text).
    #[error("method `{method}` does not apply to the {kind:?} column `{column}`")]
    Unsupported {
        /// Which column.
        column: String,
        /// The method asked for.
        method: &'static str,
        /// The column's kind.
        kind: ColumnKind,
    },
    /// The two windows hold different types, or a type that has no drift test (dates).
    #[error("column `{column}`: {message}")]
    Type {
        /// Which column.
        column: String,
        /// What is wrong.
        message: String,
    },
}

/// Compares one column's current window with its reference. Nulls are dropped
/// first (and counted); the method is `opts.method` or Evidently's default
/// for the reference size, the column kind and the number of distinct values.
pub fn column_drift(
    column: &str,
    reference: &Column,
    current: &Column,
    opts: ColumnOptions,
) -> Result<ColumnDrift, DriftError> {
    stattests::column_drift(column, reference, current, opts)
}

/// The dataset's verdict from its columns' (Evidently: drift when
/// `drifted / columns ≥ drift_share`).
pub fn dataset_drift(columns: Vec<ColumnDrift>, drift_share: f64) -> DatasetDrift {
    let drifted_columns = columns.iter().filter(|c| c.drifted).count();
    let share = if columns.is_empty() {
        0.0
    } else {
        drifted_columns as f64 / columns.len() as f64
    };
    DatasetDrift {
        dataset_drift: !columns.is_empty() && share >= drift_share,
        columns,
        drifted_columns,
        share,
        drift_share,
    }
}
