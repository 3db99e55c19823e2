//! `Table`: typed snapshots from CSV files, validated by expectations, stored in
//! the offline store one transaction per apply of the table.
//!
//! Identity: a snapshot is current when the manifest holds the same file hash and
//! expectation hash; the SQL table is current when its schema hash matches.

pub mod check;
pub mod csv;
pub mod expect;
pub mod snapshots;
pub mod spec;

use std::collections::HashMap;

use chrono::NaiveDate;
use serde_json::Value;

use serde::Serialize;

use super::{
    Applied, ApplyContext, ApplyError, CheckContext, CommonOp, Desired, Member, Observed,
    ResourceKind, Upstream, ops_of, record,
};
use crate::diag::SpecDiagnostic;
use crate::hash;
use crate::plan::{Action, PlanOptions, ResourcePlan};
use crate::spec::{Resource, ResourceId, SpannedStr, SpecSet};
use crate::store::offline::{self, SnapshotWrite, StoredSnapshot, TableLayout};
pub use spec::{Expectation, TableSpec};

/// One snapshot to load (or reload) into a table.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotLoad {
    /// Snapshot date.
    pub as_of: String,
    /// File, relative to the project folder.
    pub source: String,
    /// Hash of the file when planned.
    pub file_hash: String,
    /// Why it is (re)loaded.
    pub reason: String,
}

/// What applying a table does.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum TableOp {
    /// Validate and write snapshots in one transaction; `recreate` first drops the table.
    LoadSnapshots {
        /// Drop and create the SQL table first.
        recreate: bool,
        /// Snapshots to write.
        snapshots: Vec<SnapshotLoad>,
    },
    /// Delete one snapshot's rows.
    DropSnapshot {
        /// Snapshot date.
        as_of: String,
    },
    /// Drop a table and its data.
    DropTable,
}

/// A snapshot file as found on disk when planning.
#[derive(Debug, Clone)]
pub struct DesiredSnapshot {
    /// Date.
    pub as_of: String,
    /// Absolute path.
    pub path: std::path::PathBuf,
    /// Path relative to the project folder, for messages and the manifest.
    pub source: String,
    /// Hash of the file's bytes.
    pub file_hash: String,
}

/// Desired inputs of a table.
#[derive(Debug, Clone)]
pub struct TableInputs {
    /// SQL layout and its hash.
    pub layout: TableLayout,
    /// Hash of the expectations (and primary key) snapshots are validated against.
    pub expect_hash: String,
    /// Snapshot files.
    pub snapshots: Vec<DesiredSnapshot>,
}

impl TableInputs {
    /// Hash of every input file, in order.
    pub fn input_hash(&self) -> String {
        hash::hash_parts(
            self.snapshots
                .iter()
                .flat_map(|s| [s.as_of.as_str(), s.file_hash.as_str()]),
        )
    }
}

/// Derives the SQL layout of a table spec.
pub fn layout(t: &TableSpec) -> TableLayout {
    let columns: Vec<(String, crate::spec::ColumnType)> =
        t.columns.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let primary_key: Vec<String> = t.primary_key.iter().map(|s| s.value.clone()).collect();
    let schema = serde_json::json!({
        "columns": columns.iter().map(|(n, ty)| [n.as_str(), ty.as_str()]).collect::<Vec<_>>(),
        "primaryKey": primary_key,
    });
    TableLayout {
        name: t.name.value.clone(),
        columns,
        primary_key,
        schema_hash: hash::hash_json(&schema),
    }
}

/// The dated snapshot files of a table, from its list or its glob; an error
/// says which value (path or pattern, as written) and why.
pub fn snapshot_files(
    root: &std::path::Path,
    r: &Resource,
    t: &TableSpec,
) -> Result<Vec<snapshots::DatedFile>, (String, String)> {
    match &t.snapshots {
        snapshots::Snapshots::List(list) => list
            .iter()
            .map(|s| {
                crate::spec::validate::confine(root, r.base_dir(), &s.path.value)
                    .map(|path| snapshots::DatedFile {
                        as_of: s.as_of.value.clone(),
                        path,
                    })
                    .map_err(|m| (s.path.value.clone(), m))
            })
            .collect(),
        snapshots::Snapshots::Glob(g) => {
            snapshots::Snapshots::resolve_glob(root, r.base_dir(), &g.glob.value)
                .map_err(|e| (g.glob.value.clone(), e.to_string()))
        }
    }
}

fn expect_hash(t: &TableSpec) -> String {
    let v = serde_json::json!({ "expect": t.expect, "primaryKey": t.primary_key });
    hash::hash_json(&v)
}

/// The `Table` kind.
pub struct Table;

impl ResourceKind for Table {
    type Spec = TableSpec;
    type Inputs = TableInputs;
    type Op = TableOp;

    fn name(spec: &TableSpec) -> &SpannedStr {
        &spec.name
    }

    fn depends_on(spec: &TableSpec) -> &[SpannedStr] {
        &spec.depends_on
    }

    fn check(
        cx: &CheckContext<'_>,
        r: &Resource,
        spec: &TableSpec,
        diags: &mut Vec<SpecDiagnostic>,
    ) {
        check::check_table(cx.root, r, spec, diags);
    }

    fn protect(spec: &TableSpec) -> bool {
        spec.protect
    }

    fn reads(r: &Resource, t: &TableSpec, _root: &std::path::Path) -> Vec<glob::Pattern> {
        match &t.snapshots {
            snapshots::Snapshots::List(list) => list
                .iter()
                .filter_map(|s| {
                    super::read_pattern(r.base_dir(), &glob::Pattern::escape(&s.path.value))
                })
                .collect(),
            snapshots::Snapshots::Glob(g) => super::read_pattern(r.base_dir(), &g.glob.value)
                .into_iter()
                .collect(),
        }
    }

    fn desire(
        r: &Resource,
        t: &TableSpec,
        set: &SpecSet,
        _upstream: Upstream<'_>,
    ) -> Result<TableInputs, ApplyError> {
        let files = snapshot_files(&set.root, r, t).map_err(|(at, message)| ApplyError::Io {
            path: at,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
        })?;
        let mut snapshots = Vec::with_capacity(files.len());
        for f in files {
            let source = f
                .path
                .strip_prefix(&set.root)
                .unwrap_or(&f.path)
                .display()
                .to_string();
            let file_hash = hash::hash_file(&f.path).map_err(|e| ApplyError::Io {
                path: source.clone(),
                source: e,
            })?;
            snapshots.push(DesiredSnapshot {
                as_of: f.as_of,
                path: f.path,
                source,
                file_hash,
            });
        }
        Ok(TableInputs {
            layout: layout(t),
            expect_hash: expect_hash(t),
            snapshots,
        })
    }

    fn input_hash(inputs: &TableInputs) -> String {
        inputs.input_hash()
    }

    fn diff(d: &Desired<'_, Self>, observed: &Observed, opts: &PlanOptions) -> ResourcePlan {
        let mut plan = ResourcePlan::noop(d.id.clone());
        let inputs = d.inputs;
        let record = observed.records.get(d.id);
        let all_loads = |reason: &str| -> Vec<SnapshotLoad> {
            inputs
                .snapshots
                .iter()
                .map(|s| SnapshotLoad {
                    as_of: s.as_of.clone(),
                    source: s.source.clone(),
                    file_hash: s.file_hash.clone(),
                    reason: reason.to_string(),
                })
                .collect()
        };
        let Some(stored) = observed.tables.get(&inputs.layout.name) else {
            let name = &inputs.layout.name;
            if observed.foreign_tables.contains(name) {
                if !d.spec.adopt {
                    plan.action = Action::Conflict;
                    plan.reasons.push(format!(
                        "a table `{name}` already exists in the offline store and reconcile did not create it; \
                         it is left alone. Rename this Table, or set `adopt: true` on it to drop that table \
                         and rebuild it from the snapshots"
                    ));
                    return plan;
                }
                plan.action = Action::Replace;
                plan.reasons.push(format!(
                    "adopt existing table `{name}` (`adopt: true`): drop it and load {} snapshot(s)",
                    inputs.snapshots.len()
                ));
                plan.operations.push(Self::op(TableOp::LoadSnapshots {
                    recreate: true,
                    snapshots: all_loads("adopted"),
                }));
                return plan;
            }
            plan.action = Action::Create;
            let dates: Vec<&str> = inputs.snapshots.iter().map(|s| s.as_of.as_str()).collect();
            plan.reasons.push(format!(
                "new table; load {} snapshot(s): {}",
                dates.len(),
                dates.join(", ")
            ));
            plan.operations.push(Self::op(TableOp::LoadSnapshots {
                recreate: true,
                snapshots: all_loads("new"),
            }));
            return plan;
        };
        if stored.schema_hash != inputs.layout.schema_hash {
            plan.action = Action::Replace;
            let detail = record.map_or_else(
                || "schema changed".to_string(),
                |r| schema_change(&r.spec_json, d.spec_json),
            );
            plan.reasons.push(format!(
                "{detail}; rebuild and reload {} snapshot(s)",
                inputs.snapshots.len()
            ));
            plan.operations.push(Self::op(TableOp::LoadSnapshots {
                recreate: true,
                snapshots: all_loads("schema changed"),
            }));
            return plan;
        }
        let mut loads = Vec::new();
        let mut expect_changed = false;
        for s in &inputs.snapshots {
            let reason = match stored.snapshots.get(&s.as_of) {
                None => Some(format!("new snapshot {} ({})", s.as_of, s.source)),
                Some(st) if st.file_hash != s.file_hash => Some(format!(
                    "data changed in snapshot {} ({})",
                    s.as_of, s.source
                )),
                Some(st) if st.expect_hash != inputs.expect_hash => {
                    expect_changed = true;
                    Some(format!("revalidate snapshot {}", s.as_of))
                }
                Some(_) => None,
            };
            if let Some(reason) = reason {
                plan.reasons.push(reason.clone());
                loads.push(SnapshotLoad {
                    as_of: s.as_of.clone(),
                    source: s.source.clone(),
                    file_hash: s.file_hash.clone(),
                    reason,
                });
            }
        }
        if expect_changed {
            let what = record.map_or_else(
                || "expectations changed".to_string(),
                |r| expectation_change(&r.spec_json, d.spec_json),
            );
            plan.reasons.insert(0, what);
        }
        if !loads.is_empty() {
            plan.operations.push(Self::op(TableOp::LoadSnapshots {
                recreate: false,
                snapshots: loads,
            }));
        }
        let mut orphans: Vec<&String> = stored
            .snapshots
            .keys()
            .filter(|k| !inputs.snapshots.iter().any(|s| &s.as_of == *k))
            .collect();
        orphans.sort();
        for as_of in orphans {
            if opts.prune_data && !d.protect {
                plan.reasons.push(format!(
                    "snapshot {as_of} removed from the spec: drop its rows"
                ));
                plan.operations.push(Self::op(TableOp::DropSnapshot {
                    as_of: as_of.clone(),
                }));
            } else {
                plan.warnings.push(format!(
                    "snapshot {as_of} is no longer in the spec; its rows are kept (pass --prune-data to drop them)"
                ));
            }
        }
        if !plan.operations.is_empty() {
            plan.action = Action::Update;
        } else {
            match record {
                None => {
                    plan.action = Action::Update;
                    plan.reasons
                        .push("data present but not recorded in the state store: adopt it".into());
                }
                Some(r) if r.spec_hash != d.spec_hash => {
                    plan.action = Action::Update;
                    plan.reasons.push(format!(
                        "spec changed: {}",
                        record::changed_fields(&r.spec_json, d.spec_json)
                    ));
                }
                Some(r) if r.condition != crate::store::state::Condition::Ready => {
                    plan.action = Action::Update;
                    plan.reasons.push(format!(
                        "last apply ended {} ({}); data is current: mark ready",
                        r.condition, r.reason
                    ));
                }
                Some(_) => {}
            }
            if plan.action != Action::NoOp {
                plan.operations.push(CommonOp::Record.into());
            }
        }
        plan
    }

    fn diff_removed(id: &ResourceId, observed: &Observed, opts: &PlanOptions) -> ResourcePlan {
        diff_removed(id, observed, opts)
    }

    async fn apply_removed(ctx: &ApplyContext, plan: &ResourcePlan) -> Result<Applied, ApplyError> {
        apply_removed(ctx, plan).await
    }

    async fn apply(
        ctx: &ApplyContext,
        d: &Desired<'_, Self>,
        plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        let (spec, inputs) = (d.spec, d.inputs);
        let mut messages = Vec::new();
        let mut failure: Option<ApplyError> = None;
        let mut rows_written = 0usize;
        for op in ops_of::<Self>(plan) {
            match op {
                TableOp::LoadSnapshots {
                    recreate,
                    snapshots,
                } => match load_snapshots(ctx, spec, inputs, snapshots, *recreate).await {
                    Ok((n, rows)) => {
                        rows_written += rows;
                        messages.push(format!("loaded {n} snapshot(s), {rows} rows"));
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                },
                TableOp::DropSnapshot { as_of } => {
                    offline::drop_snapshot(&ctx.offline, &inputs.layout.name, as_of).await?;
                    messages.push(format!("dropped snapshot {as_of}"));
                }
                // Planned only for tables the specs no longer name.
                TableOp::DropTable => {
                    offline::drop_table(&ctx.offline, &inputs.layout.name).await?;
                    messages.push("table dropped".into());
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // Outputs: what the manifest now holds.
        let stored = offline::observe(&ctx.offline).await?;
        let snaps = stored
            .get(&inputs.layout.name)
            .map(|t| t.snapshots.clone())
            .unwrap_or_default();
        let mut dates: Vec<(&String, &StoredSnapshot)> = snaps.iter().collect();
        dates.sort_by(|a, b| a.0.cmp(b.0));
        let outputs = serde_json::json!({
            "snapshots": dates.iter().map(|(k, v)| serde_json::json!({"asOf": k, "rows": v.row_count, "fileHash": v.file_hash})).collect::<Vec<_>>(),
            "rowsWritten": rows_written,
        });
        Ok(Applied {
            message: if messages.is_empty() {
                "up to date".into()
            } else {
                messages.join("; ")
            },
            outputs,
        })
    }
}

/// Reads, parses, validates and writes snapshots one at a time in one
/// transaction, dropping each before reading the next: memory grows with the
/// largest snapshot, never with how many a table has. With `recreate`, any
/// failure aborts the whole write (the remaining files are still checked, so
/// every problem is reported at once); without, the valid snapshots are
/// written and the invalid ones reported.
async fn load_snapshots(
    ctx: &ApplyContext,
    spec: &TableSpec,
    inputs: &TableInputs,
    loads: &[SnapshotLoad],
    recreate: bool,
) -> Result<(usize, usize), ApplyError> {
    // Each file adds its lines to the total as it is read.
    let rows = ctx.progress().units("rows", 0);
    let parse = |s: &DesiredSnapshot| {
        let (s, spec, rows) = (s.clone(), spec.clone(), rows.clone());
        let columns = inputs.layout.columns.clone();
        tokio::task::spawn_blocking(move || parse_and_check(&spec, &columns, &s, &rows))
    };
    let files: Vec<&DesiredSnapshot> = loads
        .iter()
        .filter_map(|l| inputs.snapshots.iter().find(|s| s.as_of == l.as_of))
        .collect();
    let mut writer: Option<offline::SnapshotWriter> = None;
    let (mut written, mut rows_written) = (0usize, 0usize);
    let mut problems = Vec::new();
    let loaded_ms = crate::store::now_ms();
    // The next file is parsed while this one is written (two snapshots in
    // memory at most), so the write transaction stays open for the inserts,
    // not for the parsing.
    let mut next = files.first().map(|s| parse(s));
    for i in 0..files.len() {
        let Some(parsing) = next.take() else { break };
        let parsed = parsing.await?;
        next = files.get(i + 1).map(|s| parse(s));
        let (snap, date, batch, file_hash) = match parsed {
            Ok(ok) => ok,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if recreate && !problems.is_empty() {
            continue; // nothing will be written: only look for more problems
        }
        let mut w = match writer.take() {
            Some(w) => w,
            None => offline::SnapshotWriter::begin(&ctx.offline, &inputs.layout, recreate).await?,
        };
        w.write(&SnapshotWrite {
            as_of: date,
            batch: &batch,
            manifest: StoredSnapshot {
                file_hash,
                expect_hash: inputs.expect_hash.clone(),
                row_count: batch.rows() as i64,
                source: snap.source.clone(),
                loaded_ms,
            },
        })
        .await?;
        writer = Some(w);
        written += 1;
        rows_written += batch.rows();
    }
    if recreate && !problems.is_empty() {
        return Err(combine(problems));
    }
    if recreate && writer.is_none() {
        // No snapshot at all: the table is still created anew, empty.
        writer = Some(offline::SnapshotWriter::begin(&ctx.offline, &inputs.layout, true).await?);
    }
    if let Some(w) = writer {
        w.commit().await?;
    }
    if !problems.is_empty() {
        return Err(combine(problems));
    }
    Ok((written, rows_written))
}

type Parsed = (DesiredSnapshot, NaiveDate, crate::data::Batch, String);

/// Reads the file once, hashes exactly those bytes, parses them (counting
/// rows into `rows`) and validates them.
fn parse_and_check(
    spec: &TableSpec,
    columns: &[(String, crate::spec::ColumnType)],
    s: &DesiredSnapshot,
    rows: &crate::progress::Units,
) -> Result<Parsed, ApplyError> {
    let bytes = std::fs::read(&s.path).map_err(|e| ApplyError::Io {
        path: s.source.clone(),
        source: e,
    })?;
    let file_hash = hash::hash_bytes(&bytes);
    let exact = spec
        .expect
        .iter()
        .any(|e| matches!(e, Expectation::ExactColumns(true)));
    let batch = csv::parse_counted(&s.source, &bytes, columns, exact, rows)?;
    // The file's bytes are not needed past parsing: free them before validating.
    drop(bytes);
    let report = expect::check(spec, &batch);
    if !report.is_valid() {
        return Err(ApplyError::Validation(format!(
            "snapshot {} ({}) failed validation; nothing of it was stored:\n{report}",
            s.as_of, s.source
        )));
    }
    let date = NaiveDate::parse_from_str(&s.as_of, "%Y-%m-%d").map_err(|e| {
        ApplyError::Validation(format!("snapshot date `{}` is not a date: {e}", s.as_of))
    })?;
    Ok((s.clone(), date, batch, file_hash))
}

fn combine(mut problems: Vec<ApplyError>) -> ApplyError {
    if problems.len() == 1 {
        return problems.remove(0);
    }
    ApplyError::Validation(
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// A table no longer in the specs: dropped only with `--prune-data` and never when
/// the state store says it is protected.
fn diff_removed(id: &ResourceId, observed: &Observed, opts: &PlanOptions) -> ResourcePlan {
    let mut plan = ResourcePlan::noop(id.clone());
    let protected = observed.records.get(id).is_some_and(|r| r.protect);
    if protected {
        plan.warnings.push(
            "no longer in the specs but protected in the state store; its data is kept".into(),
        );
    } else if opts.prune_data && !observed.tables.contains_key(&id.name) {
        // Nothing of ours is stored under that name: forget the record, and
        // leave a same-named table someone else made alone.
        if observed.foreign_tables.contains(&id.name) {
            plan.warnings.push(format!(
                "table `{}` in the offline store was not created by reconcile; it is left alone",
                id.name
            ));
        }
        if observed.records.contains_key(id) {
            plan.action = Action::Delete;
            plan.reasons
                .push("no longer in the specs; no table of its own to drop".into());
            plan.operations = vec![CommonOp::Forget.into()];
        }
    } else if opts.prune_data {
        plan.action = Action::Delete;
        let rows: i64 = observed
            .tables
            .get(&id.name)
            .map_or(0, |t| t.snapshots.values().map(|s| s.row_count).sum());
        plan.reasons.push(format!(
            "no longer in the specs: drop the table and its {rows} rows"
        ));
        plan.operations = vec![Table::op(TableOp::DropTable), CommonOp::Forget.into()];
    } else {
        plan.warnings
            .push("no longer in the specs; its data is kept (pass --prune-data to drop it)".into());
    }
    plan
}

/// Carries out the deletion of a removed table.
async fn apply_removed(ctx: &ApplyContext, plan: &ResourcePlan) -> Result<Applied, ApplyError> {
    if ops_of::<Table>(plan).any(|op| *op == TableOp::DropTable) {
        offline::drop_table(&ctx.offline, &plan.id.name).await?;
        return Ok(Applied {
            message: "table dropped".into(),
            outputs: Value::Null,
        });
    }
    Ok(Applied::default())
}

/// Describes how the columns / primary key changed between two spec JSONs.
fn schema_change(old: &Value, new: &Value) -> String {
    let cols = |v: &Value| -> HashMap<String, String> {
        v.get("columns")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, t)| (k.clone(), t.as_str().unwrap_or("?").to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (o, n) = (cols(old), cols(new));
    let mut parts = Vec::new();
    let mut added: Vec<&String> = n.keys().filter(|k| !o.contains_key(*k)).collect();
    added.sort();
    for k in added {
        parts.push(format!("column `{k}` added"));
    }
    let mut removed: Vec<&String> = o.keys().filter(|k| !n.contains_key(*k)).collect();
    removed.sort();
    for k in removed {
        parts.push(format!("column `{k}` removed"));
    }
    let mut retyped: Vec<(&String, &String, &String)> = n
        .iter()
        .filter_map(|(k, t)| o.get(k).filter(|ot| *ot != t).map(|ot| (k, ot, t)))
        .collect();
    retyped.sort();
    for (k, a, b) in retyped {
        parts.push(format!("column `{k}` {a} → {b}"));
    }
    if old.get("primaryKey") != new.get("primaryKey") {
        parts.push("primary key changed".into());
    }
    if parts.is_empty() {
        "column order changed".into()
    } else {
        parts.join(", ")
    }
}

/// Describes which expectations were added or removed between two spec JSONs.
fn expectation_change(old: &Value, new: &Value) -> String {
    let list = |v: &Value| {
        v.get("expect")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (o, n) = (list(old), list(new));
    let mut parts = Vec::new();
    for e in n.iter().filter(|e| !o.contains(e)) {
        parts.push(format!("expectation added: {}", json_label(e)));
    }
    for e in o.iter().filter(|e| !n.contains(e)) {
        parts.push(format!("expectation removed: {}", json_label(e)));
    }
    if old.get("primaryKey") != new.get("primaryKey") {
        parts.push("primary key changed".into());
    }
    if parts.is_empty() {
        "expectations changed".into()
    } else {
        parts.join(", ")
    }
}

/// `between(months_active)` from `{"between": {"column": "months_active", …}}`.
fn json_label(e: &Value) -> String {
    let Some((name, body)) = e.as_object().and_then(|m| m.iter().next()) else {
        return e.to_string();
    };
    let arg = match body {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(m) => m
            .get("column")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    };
    if arg.is_empty() {
        name.clone()
    } else {
        format!("{name}({arg})")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::diag::SourceFile;
    use crate::kinds::{DesiredResource, DesiredState, Member, Operation, Pool, Typed};
    use crate::plan::{PlanOptions, diff};
    use crate::spec::{Kind, Spec};
    use crate::store::offline::StoredTable;
    use crate::store::state::{Condition, ResourceRecord};

    const SPEC: &str = "kind: Table\nname: subs\nprimaryKey: [id]\ncolumns: { id: string, n: int }\n\
        snapshots:\n  - { asOf: 2024-01-31, path: a.csv }\n  - { asOf: 2024-02-29, path: b.csv }\n";

    /// Desired state of a table spec with made-up file hashes.
    fn desired(yaml: &str, hashes: &[&str]) -> DesiredResource {
        let file = Arc::new(SourceFile::new(
            "t.yaml".into(),
            "/p/t.yaml".into(),
            yaml.into(),
        ));
        let (mut rs, mut ds) = (vec![], vec![]);
        crate::spec::load::load_file(&file, &mut rs, &mut ds);
        assert!(ds.is_empty(), "{ds:?}");
        let Spec::Table(t) = rs.remove(0).spec else {
            panic!("not a table")
        };
        let snapshots::Snapshots::List(list) = &t.snapshots else {
            panic!("not a list of snapshots")
        };
        let inputs = TableInputs {
            layout: layout(&t),
            expect_hash: expect_hash(&t),
            snapshots: list
                .iter()
                .zip(hashes)
                .map(|(s, h)| DesiredSnapshot {
                    as_of: s.as_of.value.clone(),
                    path: s.path.value.clone().into(),
                    source: s.path.value.clone(),
                    file_hash: h.to_string(),
                })
                .collect(),
        };
        let spec_json = Spec::Table(t.clone()).canonical_json();
        let spec_hash = hash::hash_parts([
            hash::hash_json(&spec_json).as_str(),
            inputs.input_hash().as_str(),
        ]);
        DesiredResource {
            id: ResourceId::new(Kind::Table, "subs"),
            spec_json,
            spec_hash,
            protect: false,
            pool: Pool::Cpu,
            typed: Typed::Table(t, inputs),
        }
    }

    /// What the stores would hold after successfully applying `d`.
    fn observed_after(d: &DesiredResource) -> Observed {
        let inputs = d.of::<Table>().expect("table").inputs;
        let mut snapshots = HashMap::new();
        for s in &inputs.snapshots {
            snapshots.insert(
                s.as_of.clone(),
                StoredSnapshot {
                    file_hash: s.file_hash.clone(),
                    expect_hash: inputs.expect_hash.clone(),
                    row_count: 10,
                    source: s.source.clone(),
                    loaded_ms: 0,
                },
            );
        }
        let mut o = Observed::default();
        o.tables.insert(
            "subs".into(),
            StoredTable {
                schema_hash: inputs.layout.schema_hash.clone(),
                snapshots,
            },
        );
        o.records.insert(
            d.id.clone(),
            ResourceRecord {
                id: d.id.clone(),
                spec_hash: d.spec_hash.clone(),
                spec_json: d.spec_json.clone(),
                condition: Condition::Ready,
                reason: "Applied".into(),
                message: String::new(),
                outputs: Value::Null,
                protect: false,
                last_change_ms: 0,
                last_apply_ms: 0,
            },
        );
        o
    }

    fn plan_text(d: DesiredResource, o: &Observed, prune: bool) -> String {
        let desired = DesiredState { resources: vec![d] };
        diff(&desired, o, &PlanOptions { prune_data: prune }).render(false)
    }

    #[test]
    fn new_table_is_created_with_all_snapshots() {
        let d = desired(SPEC, &["h1", "h2"]);
        assert_eq!(
            plan_text(d, &Observed::default(), false),
            "+ create Table/subs\n      new table; load 2 snapshot(s): 2024-01-31, 2024-02-29\n\
             Plan: 1 to create, 0 to update, 0 to replace, 0 to delete, 0 unchanged.\n"
        );
    }

    #[test]
    fn unchanged_table_is_a_noop() {
        let d = desired(SPEC, &["h1", "h2"]);
        let o = observed_after(&d);
        assert_eq!(
            plan_text(d, &o, false),
            "Plan: 0 to create, 0 to update, 0 to replace, 0 to delete, 1 unchanged.\n"
        );
    }

    #[test]
    fn changed_file_reloads_exactly_that_snapshot() {
        let o = observed_after(&desired(SPEC, &["h1", "h2"]));
        let d = desired(SPEC, &["h1", "h2-edited"]);
        assert_eq!(
            plan_text(d, &o, false),
            "~ update Table/subs\n      data changed in snapshot 2024-02-29 (b.csv)\n\
             Plan: 0 to create, 1 to update, 0 to replace, 0 to delete, 0 unchanged.\n"
        );
    }

    #[test]
    fn added_expectation_revalidates_and_says_which() {
        let o = observed_after(&desired(SPEC, &["h1", "h2"]));
        let d = desired(
            &format!("{SPEC}expect:\n  - between: {{ column: n, min: 0 }}\n"),
            &["h1", "h2"],
        );
        assert_eq!(
            plan_text(d, &o, false),
            "~ update Table/subs\n      expectation added: between(n)\n      revalidate snapshot 2024-01-31\n      revalidate snapshot 2024-02-29\n\
             Plan: 0 to create, 1 to update, 0 to replace, 0 to delete, 0 unchanged.\n"
        );
    }

    #[test]
    fn schema_change_replaces_the_table() {
        let o = observed_after(&desired(SPEC, &["h1", "h2"]));
        let d = desired(&SPEC.replace("n: int", "n: float, m: bool"), &["h1", "h2"]);
        assert_eq!(
            plan_text(d, &o, false),
            "-/+ replace Table/subs\n      column `m` added, column `n` int → float; rebuild and reload 2 snapshot(s)\n\
             Plan: 0 to create, 0 to update, 1 to replace, 0 to delete, 0 unchanged.\n"
        );
    }

    #[test]
    fn removed_snapshot_is_kept_unless_pruning() {
        let o = observed_after(&desired(SPEC, &["h1", "h2"]));
        let one = SPEC.replace("  - { asOf: 2024-02-29, path: b.csv }\n", "");
        let text = plan_text(desired(&one, &["h1"]), &o, false);
        assert!(
            text.contains(
                "! Table/subs: snapshot 2024-02-29 is no longer in the spec; its rows are kept"
            ),
            "{text}"
        );
        assert!(text.contains("spec changed: `snapshots`"), "{text}");
        assert!(!text.contains("drop its rows"), "{text}");
        let text = plan_text(desired(&one, &["h1"]), &o, true);
        assert!(text.contains("~ update Table/subs\n      snapshot 2024-02-29 removed from the spec: drop its rows"), "{text}");
    }

    #[test]
    fn removed_table_needs_prune_data_and_respects_protect() {
        let mut o = observed_after(&desired(SPEC, &["h1", "h2"]));
        let empty = DesiredState::default();
        let kept = diff(&empty, &o, &PlanOptions { prune_data: false });
        assert_eq!(kept.resources[0].action, Action::NoOp);
        assert!(
            kept.render(false)
                .contains("its data is kept (pass --prune-data to drop it)")
        );
        let dropped = diff(&empty, &o, &PlanOptions { prune_data: true });
        assert_eq!(dropped.resources[0].action, Action::Delete);
        assert_eq!(
            dropped.resources[0].operations,
            vec![
                Table::op(TableOp::DropTable),
                Operation::from(CommonOp::Forget)
            ]
        );
        if let Some(r) = o.records.values_mut().next() {
            r.protect = true;
        }
        let protected = diff(&empty, &o, &PlanOptions { prune_data: true });
        assert_eq!(protected.resources[0].action, Action::NoOp);
        assert!(
            protected
                .render(false)
                .contains("protected in the state store")
        );
    }

    #[test]
    fn failed_apply_with_current_data_is_retried_as_a_record() {
        let d = desired(SPEC, &["h1", "h2"]);
        let mut o = observed_after(&d);
        if let Some(r) = o.records.values_mut().next() {
            r.condition = Condition::Failed;
            r.reason = "StoreError".into();
        }
        let text = plan_text(d, &o, false);
        assert!(
            text.contains("last apply ended Failed (StoreError)"),
            "{text}"
        );
    }
}
