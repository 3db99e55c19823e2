//! Checks of a `Table` spec: its name and columns as SQL identifiers, every
//! column an expectation or key names, and its snapshot dates and files.

use std::collections::HashSet;
use std::path::Path;

use super::snapshots::SnapshotError;
use super::spec::{Expectation, SnapshotSpec, Snapshots, TableSpec};
use crate::diag::{DiagCode, SpecDiagnostic, did_you_mean};
use crate::spec::validate::{
    check_identifier, confine, find_key, is_identifier, reserved_table_owner,
};
use crate::spec::{ColumnType, Resource, SpannedStr};

/// Names the offline store reserves for itself.
const RESERVED_COLUMNS: [&str; 1] = ["as_of"];

/// Checks one table: names, columns, expectations against columns, snapshots.
pub fn check_table(root: &Path, r: &Resource, t: &TableSpec, diags: &mut Vec<SpecDiagnostic>) {
    check_identifier(r, &t.name, "table name", diags);
    if let Some(owner) = reserved_table_owner(&t.name.value) {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                &t.name,
                format!("table name `{}` is reserved by {owner}", t.name.value),
            )
            .with_hint("choose another name: the stores and their engines own this one"),
        );
    }
    // Column names come from map keys, which carry no spans: point at the text.
    for name in t.columns.keys() {
        if !is_identifier(name) || RESERVED_COLUMNS.contains(&name.as_str()) {
            let offset = find_key(&r.file.text, name).unwrap_or(0);
            let reason = if is_identifier(name) {
                format!("column name `{name}` is reserved by the offline store")
            } else {
                format!("`{name}` is not a valid column name")
            };
            diags.push(
                SpecDiagnostic::new(
                    DiagCode::InvalidValue,
                    &r.file,
                    miette::SourceSpan::new(offset.into(), name.len().max(1)),
                    reason,
                )
                .with_hint("use lower-case letters, digits and `_`; `as_of` is added by reconcile"),
            );
        }
    }
    let column_exists = |c: &SpannedStr, diags: &mut Vec<SpecDiagnostic>| -> Option<ColumnType> {
        match t.columns.get(&c.value) {
            Some(ty) => Some(*ty),
            None => {
                let d = r.diag_at(
                    DiagCode::MissingReference,
                    c,
                    format!("table `{}` has no column `{}`", t.name.value, c.value),
                );
                diags.push(
                    match did_you_mean(&c.value, t.columns.keys().map(String::as_str)) {
                        Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                        None => d.with_hint(format!(
                            "declared columns: {}",
                            t.columns.keys().cloned().collect::<Vec<_>>().join(", ")
                        )),
                    },
                );
                None
            }
        }
    };
    if t.primary_key.is_empty() {
        diags.push(
            r.diag_at(
                DiagCode::MissingField,
                &t.name,
                "table has an empty primaryKey",
            )
            .with_hint("name the columns that identify a row"),
        );
    }
    for k in &t.primary_key {
        column_exists(k, diags);
    }
    for e in &t.expect {
        match e {
            Expectation::NotNull(cols)
            | Expectation::Unique(cols)
            | Expectation::NotConstant(cols) => {
                for c in cols {
                    column_exists(c, diags);
                }
            }
            Expectation::Between(b) => {
                if let Some(ty) = column_exists(&b.column, diags)
                    && !matches!(ty, ColumnType::Int | ColumnType::Float)
                {
                    diags.push(r.diag_at(
                        DiagCode::InvalidValue,
                        &b.column,
                        format!(
                            "between needs a numeric column; `{}` is {}",
                            b.column.value,
                            ty.as_str()
                        ),
                    ));
                }
                if let (Some(lo), Some(hi)) = (b.min, b.max)
                    && lo > hi
                {
                    diags.push(r.diag_at(
                        DiagCode::InvalidValue,
                        &b.column,
                        format!("between has min {lo} above max {hi}"),
                    ));
                }
            }
            Expectation::InSet(s) => {
                column_exists(&s.column, diags);
            }
            Expectation::Regex(rx) => {
                if let Some(ty) = column_exists(&rx.column, diags)
                    && ty != ColumnType::String
                {
                    diags.push(r.diag_at(
                        DiagCode::InvalidValue,
                        &rx.column,
                        format!(
                            "regex needs a string column; `{}` is {}",
                            rx.column.value,
                            ty.as_str()
                        ),
                    ));
                }
                if let Err(e) = regex::Regex::new(&rx.pattern.value) {
                    diags.push(r.diag_at(
                        DiagCode::InvalidValue,
                        &rx.pattern,
                        format!("invalid regular expression: {e}"),
                    ));
                }
            }
            Expectation::RowCount(_) | Expectation::ExactColumns(_) => {}
        }
    }
    let mut dates = HashSet::new();
    if t.snapshots.is_empty_list() {
        diags.push(
            r.diag_at(DiagCode::MissingField, &t.name, "table has no snapshots")
                .with_hint("add `snapshots: [{ asOf: 2024-01-31, path: data.csv }]` or `snapshots: { glob: \"data/*/file.csv\" }`"),
        );
    }
    match &t.snapshots {
        Snapshots::List(list) => {
            for s in list {
                check_snapshot(root, r, s, &mut dates, diags);
            }
        }
        Snapshots::Glob(g) => {
            if !g.glob.value.contains(['*', '?', '[']) {
                diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        &g.glob,
                        format!("`{}` has no wildcard", g.glob.value),
                    )
                    .with_hint("a glob names many files, e.g. `data/*/users.csv`; for one file use the list form"),
                );
            } else if let Err(e) = Snapshots::resolve_glob(root, r.base_dir(), &g.glob.value) {
                let code = match e {
                    SnapshotError::Escape(_) => DiagCode::PathEscape,
                    SnapshotError::Empty(_) => DiagCode::MissingFile,
                    _ => DiagCode::InvalidValue,
                };
                diags.push(r.diag_at(code, &g.glob, e.to_string()).with_hint(
                    "the pattern resolves against this file's folder; the part a wildcard matches names the as-of date, e.g. data/2024-01-31/users.csv",
                ));
            }
        }
    }
}

fn check_snapshot(
    root: &Path,
    r: &Resource,
    s: &SnapshotSpec,
    dates: &mut HashSet<String>,
    diags: &mut Vec<SpecDiagnostic>,
) {
    if chrono::NaiveDate::parse_from_str(&s.as_of.value, "%Y-%m-%d").is_err() {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                &s.as_of,
                format!("`{}` is not a date", s.as_of.value),
            )
            .with_hint("write dates as YYYY-MM-DD"),
        );
    } else if !dates.insert(s.as_of.value.clone()) {
        diags.push(r.diag_at(
            DiagCode::DuplicateName,
            &s.as_of,
            format!("two snapshots as of {}", s.as_of.value),
        ));
    }
    match confine(root, r.base_dir(), &s.path.value) {
        Err(msg) => diags.push(r.diag_at(DiagCode::PathEscape, &s.path, msg).with_hint(
            "data files must live inside the spec folder; paths resolve against this file's folder",
        )),
        Ok(p) if !p.is_file() => diags.push(
            r.diag_at(
                DiagCode::MissingFile,
                &s.path,
                format!("no file at `{}`", s.path.value),
            )
            .with_hint("paths resolve against the folder of this spec file"),
        ),
        Ok(_) => {}
    }
}
