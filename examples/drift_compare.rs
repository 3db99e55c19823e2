//! Drift of every non-key column of the example's tables, one JSON object per
//! line ({column, method, score, threshold, drifted}), for
//! `benches/evidently_compare.py` to hold against Evidently's figures.
//!
//! `cargo run --example drift_compare -- REFERENCE_DIR CURRENT_DIR [TABLES_DIR]`
//!
//! Each directory holds one `<table>.csv` per table spec in TABLES_DIR
//! (default: the crate's `specs/tables`); the specs' declared types decide how
//! a column is read and tested. Date columns and primary keys are skipped.
//! `tests/evidently.rs` and `benches/drift_bench.rs` include this file for
//! [`load_windows`] and [`compare`].

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use reconcile::data::Column;
use reconcile::drift::{self, ColumnDrift, ColumnOptions};
use reconcile::kinds::table::csv;
use reconcile::spec::ColumnType;
use serde::Deserialize;

/// The part of a table spec this program needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TableSpec {
    name: String,
    columns: IndexMap<String, ColumnType>,
    #[serde(default)]
    primary_key: Vec<String>,
}

/// One monitored column in both windows.
pub struct ColumnPair {
    /// Column name.
    pub name: String,
    /// Reference values.
    pub reference: Column,
    /// Current values.
    pub current: Column,
}

/// The crate's example table specs.
pub fn default_tables() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/tables")
}

/// Every non-key, non-date column of the tables specified in `tables`, read
/// from `<dir>/<table>.csv` of both windows, in table-name order.
pub fn load_windows(
    reference: &Path,
    current: &Path,
    tables: &Path,
) -> anyhow::Result<Vec<ColumnPair>> {
    let mut specs = Vec::new();
    for entry in std::fs::read_dir(tables)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path)?;
            let spec: TableSpec = serde_saphyr::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            specs.push(spec);
        }
    }
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut pairs = Vec::new();
    for spec in specs {
        let declared: Vec<(String, ColumnType)> = spec.columns.clone().into_iter().collect();
        let read = |dir: &Path| -> anyhow::Result<reconcile::data::Batch> {
            let file = dir.join(format!("{}.csv", spec.name));
            let bytes = std::fs::read(&file)?;
            Ok(csv::parse(
                &file.display().to_string(),
                &bytes,
                &declared,
                false,
            )?)
        };
        let (mut r, mut c) = (read(reference)?, read(current)?);
        for (name, ty) in &declared {
            if spec.primary_key.contains(name) || *ty == ColumnType::Date {
                continue;
            }
            let take = |b: &mut reconcile::data::Batch| {
                b.columns
                    .iter_mut()
                    .find(|(n, _)| n == name)
                    .map(|(_, col)| std::mem::replace(col, Column::Str(Vec::new())))
                    .ok_or_else(|| anyhow::anyhow!("column `{name}` missing"))
            };
            pairs.push(ColumnPair {
                name: name.clone(),
                reference: take(&mut r)?,
                current: take(&mut c)?,
            });
        }
    }
    Ok(pairs)
}

/// Each column's drift with Evidently's default choice.
pub fn compare(pairs: &[ColumnPair]) -> Result<Vec<ColumnDrift>, drift::DriftError> {
    pairs
        .iter()
        .map(|p| drift::column_drift(&p.name, &p.reference, &p.current, ColumnOptions::default()))
        .collect()
}

/// The lines the comparison script reads.
pub fn json_lines(drifts: &[ColumnDrift]) -> String {
    drifts
        .iter()
        .map(|d| {
            serde_json::json!({
                "column": d.column,
                "method": d.method.as_str(),
                "score": d.score,
                "threshold": d.threshold,
                "drifted": d.drifted,
            })
            .to_string()
                + "\n"
        })
        .collect()
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (reference, current, tables) = match args.as_slice() {
        [r, c] => (PathBuf::from(r), PathBuf::from(c), default_tables()),
        [r, c, t] => (PathBuf::from(r), PathBuf::from(c), PathBuf::from(t)),
        _ => anyhow::bail!("usage: drift_compare REFERENCE_DIR CURRENT_DIR [TABLES_DIR]"),
    };
    let pairs = load_windows(&reference, &current, &tables)?;
    print!("{}", json_lines(&compare(&pairs)?));
    Ok(())
}
