//! `FeatureView`: materializes the latest values per entity of an online view into
//! the online store, incrementally (a watermark per view: only snapshots newer
//! than it are read), idempotently and atomically per view.
//!
//! A changed feature list or changed source data at or below the watermark means
//! a rebuild (replace); a view that goes offline or leaves the specs has its online
//! rows dropped.

use std::collections::HashSet;

use chrono::NaiveDate;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::entity::Entity;
use super::table::Table;
use super::{
    Applied, ApplyContext, ApplyError, CheckContext, Desired, Kind, Member, Observed, Reference,
    ResourceKind, Upstream, ops_of, record,
};
use crate::data::Batch;
use crate::diag::{DiagCode, SpecDiagnostic, did_you_mean};
use crate::features::{ResolvedView, resolve};
use crate::hash;
use crate::plan::{Action, PlanOptions, ResourcePlan};
use crate::spec::validate::check_identifier;
use crate::spec::{ColumnType, Resource, ResourceId, SpannedStr, SpecSet};
use crate::store::offline;
use crate::store::online::{OnlineRows, OnlineView};

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
    /// How long a snapshot's values stay valid, e.g. `90d`, `12h`, `1d12h`.
    #[schemars(with = "String")]
    pub ttl: SpannedStr,
    /// Materialize the latest values into the online store.
    #[serde(default)]
    pub online: bool,
    /// Extra ordering edges: `name` or `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub depends_on: Vec<SpannedStr>,
}

/// Parses a TTL such as `90d`, `12h` or `1d12h` (the one grammar of
/// [`crate::duration`]); zero is no TTL.
pub fn parse_ttl(s: &str) -> Option<chrono::Duration> {
    crate::duration::parse_positive_chrono(s)
}

/// What applying a feature view does to the online store.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ViewOp {
    /// Write the latest values per entity of a feature view into the online store.
    Materialize {
        /// Rebuild: remove the view's online rows first.
        full: bool,
        /// Only snapshots after this date (incremental), if any.
        after: Option<String>,
        /// The snapshot dates this materialization covers.
        snapshots: Vec<String>,
    },
    /// Remove a feature view's online rows.
    DropOnline,
}

/// Desired inputs of a feature view.
#[derive(Debug, Clone)]
pub struct ViewInputs {
    /// The view resolved against its table and entity.
    pub view: ResolvedView,
    /// Served online.
    pub online: bool,
    /// Hash of the features, their types and the key.
    pub schema_hash: String,
    /// The source table's snapshots: (date, file hash), sorted by date.
    pub snapshots: Vec<(String, String)>,
}

impl ViewInputs {
    /// Hash of the source snapshots up to `watermark` (all when `None`).
    pub fn source_hash(&self, watermark: Option<&str>) -> String {
        hash::hash_parts(
            self.snapshots
                .iter()
                .filter(|(d, _)| watermark.is_none_or(|w| d.as_str() <= w))
                .flat_map(|(d, h)| [d.as_str(), h.as_str()]),
        )
    }

    /// The newest snapshot date.
    pub fn latest(&self) -> Option<&str> {
        self.snapshots.last().map(|(d, _)| d.as_str())
    }
}

/// The `FeatureView` kind.
pub struct FeatureView;

impl ResourceKind for FeatureView {
    type Spec = FeatureViewSpec;
    type Inputs = ViewInputs;
    type Op = ViewOp;

    fn name(spec: &FeatureViewSpec) -> &SpannedStr {
        &spec.name
    }

    fn depends_on(spec: &FeatureViewSpec) -> &[SpannedStr] {
        &spec.depends_on
    }

    fn references(spec: &FeatureViewSpec) -> Vec<Reference> {
        vec![
            (spec.entity.clone(), Some(Kind::Entity)),
            (spec.table.clone(), Some(Kind::Table)),
        ]
    }

    fn check(
        cx: &CheckContext<'_>,
        r: &Resource,
        spec: &FeatureViewSpec,
        diags: &mut Vec<SpecDiagnostic>,
    ) {
        check_feature_view(cx, r, spec, diags);
    }

    fn desire(
        r: &Resource,
        spec: &FeatureViewSpec,
        set: &SpecSet,
        upstream: Upstream<'_>,
    ) -> Result<ViewInputs, ApplyError> {
        let view = resolve(set, &r.id.name)?;
        // The table comes first in topological order: reuse its hashed snapshots.
        let mut snapshots: Vec<(String, String)> = upstream
            .inputs::<Table>(&view.table)
            .map(|t| {
                t.snapshots
                    .iter()
                    .map(|s| (s.as_of.clone(), s.file_hash.clone()))
                    .collect()
            })
            .unwrap_or_default();
        snapshots.sort();
        let schema = serde_json::json!({
            "key": view.key,
            "features": view.features.iter().map(|(n, t)| [n.as_str(), t.as_str()]).collect::<Vec<_>>(),
        });
        Ok(ViewInputs {
            schema_hash: hash::hash_json(&schema),
            online: spec.online,
            view,
            snapshots,
        })
    }

    fn input_hash(inputs: &ViewInputs) -> String {
        inputs.source_hash(None)
    }

    fn diff(d: &Desired<'_, Self>, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        let inputs = d.inputs;
        let record_only = || record::diff(d.id, d.spec_hash, d.spec_json, observed);
        let stored = observed.online.get(&d.id.name);
        let mut plan = ResourcePlan::noop(d.id.clone());
        let dates = |after: Option<&str>| -> Vec<String> {
            inputs
                .snapshots
                .iter()
                .filter(|(s, _)| after.is_none_or(|a| s.as_str() > a))
                .map(|(s, _)| s.clone())
                .collect()
        };
        let rebuild = |plan: &mut ResourcePlan, action: Action, reason: String| {
            plan.action = action;
            plan.reasons.push(reason);
            plan.operations.push(Self::op(ViewOp::Materialize {
                full: true,
                after: None,
                snapshots: dates(None),
            }));
        };
        match (inputs.online, stored) {
            (false, Some(s)) => {
                plan.action = Action::Update;
                plan.reasons.push(format!(
                    "online: false: drop its {} online rows",
                    s.entity_count
                ));
                plan.operations.push(Self::op(ViewOp::DropOnline));
            }
            (false, None) => return record_only(),
            (true, _) if inputs.snapshots.is_empty() => return record_only(),
            (true, None) => {
                let all = dates(None);
                rebuild(
                    &mut plan,
                    Action::Create,
                    format!(
                        "materialize {}: {} snapshot(s) ({})",
                        d.id.name,
                        all.len(),
                        all.join(", ")
                    ),
                );
            }
            (true, Some(s)) if s.schema_hash != inputs.schema_hash => {
                rebuild(
                    &mut plan,
                    Action::Replace,
                    "features changed: rebuild its online rows".into(),
                );
            }
            (true, Some(s)) if s.source_hash != inputs.source_hash(Some(&s.watermark)) => {
                rebuild(
                    &mut plan,
                    Action::Replace,
                    format!(
                        "source data at or before {} changed: rebuild its online rows",
                        s.watermark
                    ),
                );
            }
            (true, Some(s)) => {
                let new = dates(Some(&s.watermark));
                if !new.is_empty() {
                    plan.action = Action::Update;
                    plan.reasons.push(format!(
                        "materialize {}: {} new snapshot(s) ({})",
                        d.id.name,
                        new.len(),
                        new.join(", ")
                    ));
                    plan.operations.push(Self::op(ViewOp::Materialize {
                        full: false,
                        after: Some(s.watermark.clone()),
                        snapshots: new,
                    }));
                }
            }
        }
        if plan.operations.is_empty() {
            return record_only();
        }
        plan
    }

    fn diff_removed(id: &ResourceId, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        let mut plan = record::forget(id);
        if let Some(s) = observed.online.get(&id.name) {
            plan.reasons = vec![format!(
                "no longer in the specs: drop its {} online rows",
                s.entity_count
            )];
            plan.operations.insert(0, Self::op(ViewOp::DropOnline));
        }
        plan
    }

    async fn apply(
        ctx: &ApplyContext,
        d: &Desired<'_, Self>,
        plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        let inputs = d.inputs;
        let mut messages = Vec::new();
        for op in ops_of::<Self>(plan) {
            match op {
                ViewOp::Materialize { full, after, .. } => {
                    messages.push(materialize(ctx, inputs, *full, after.as_deref()).await?);
                }
                ViewOp::DropOnline => {
                    ctx.online.drop_view(&d.id.name).await?;
                    messages.push("online rows dropped".into());
                }
            }
        }
        Ok(Applied {
            message: if messages.is_empty() {
                "recorded".into()
            } else {
                messages.join("; ")
            },
            outputs: serde_json::Value::Null,
        })
    }

    async fn apply_removed(ctx: &ApplyContext, plan: &ResourcePlan) -> Result<Applied, ApplyError> {
        if ops_of::<Self>(plan).any(|op| *op == ViewOp::DropOnline) {
            ctx.online.drop_view(&plan.id.name).await?;
        }
        Ok(Applied::message("removed"))
    }
}

/// Rows of a view's stored snapshots a materialization holds at once, at
/// most: the chunk read, its latest rows as JSON and the store's write
/// buffers stay tens of megabytes however many entities the view has. The
/// memory budget lowers it further; chunks cost nothing per chunk but a
/// statement or a pipeline, all inside the one transaction.
const MATERIALIZE_CHUNK_ROWS: usize = 65_536;

/// Reads the snapshots newer than `after` (all when `None`) in key order, a
/// chunk of whole keys at a time ([`MATERIALIZE_CHUNK_ROWS`] rows or the
/// memory budget, whichever is smaller), keeps the latest row per entity of
/// each chunk and hands it to the online store's writer: the view, its rows
/// and the new watermark become visible together at commit, and memory stays
/// one chunk or two (the next is read while the last is written) whatever
/// the size of the view or the number of snapshots.
async fn materialize(
    ctx: &ApplyContext,
    inputs: &ViewInputs,
    full: bool,
    after: Option<&str>,
) -> Result<String, ApplyError> {
    let view = &inputs.view;
    // Entities are counted as chunks are written; the view is written in one
    // transaction, so its entities count as done when it commits.
    let entities = ctx.progress().units("entities", 0);
    let mut columns = vec![(view.key.clone(), ColumnType::String)];
    columns.extend(view.features.iter().cloned());
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    let after = after.and_then(day);
    let first = after.and_then(|a| a.succ_opt());
    // Up to the watermark recorded with the rows: a snapshot the offline store
    // keeps after it left the specs is not served under an older watermark.
    let last = inputs.latest().and_then(day);
    let chunk_rows = usize::try_from(ctx.memory_budget.rows(view))
        .unwrap_or(usize::MAX)
        .min(MATERIALIZE_CHUNK_ROWS);
    let mut writer = ctx.online.begin_view(&view.name, full).await?;
    let (chunks, mut received) = tokio::sync::mpsc::channel::<(Vec<NaiveDate>, Batch)>(1);
    let read = async {
        let chunks = chunks;
        offline::read_table_by_key(
            &ctx.offline,
            &view.table,
            &columns,
            (first, last),
            offline::KeyRows::Latest,
            chunk_rows,
            |dates, batch| {
                let chunks = chunks.clone();
                async move {
                    // A closed channel means the write side has stopped, and
                    // its error is what the join below returns.
                    let _ = chunks.send((dates, batch)).await;
                    Ok::<(), ApplyError>(())
                }
            },
        )
        .await
    };
    let write = async {
        let mut written = 0u64;
        while let Some((dates, batch)) = received.recv().await {
            let keep: Vec<usize> = (0..dates.len())
                .filter(|&i| after.is_none_or(|a| dates[i] > a))
                .collect();
            let (dates, batch) = if keep.len() == dates.len() {
                (dates, batch)
            } else {
                subset(&dates, &batch, &keep)
            };
            let rows = OnlineRows::latest(&batch, &dates);
            drop(batch);
            written += rows.keys.len() as u64;
            writer.write(rows).await?;
            entities.set_total(written);
        }
        Ok::<u64, ApplyError>(written)
    };
    let ((), written) = tokio::try_join!(read, write)?;
    let watermark = inputs.latest().unwrap_or_default().to_string();
    let record = OnlineView {
        schema_hash: inputs.schema_hash.clone(),
        source_hash: inputs.source_hash(Some(&watermark)),
        watermark: watermark.clone(),
        entity_count: 0,
    };
    writer.commit(&record).await?;
    entities.set(written);
    Ok(format!(
        "materialized {written} entities × {} features (watermark {watermark})",
        view.features.len()
    ))
}

fn subset(dates: &[NaiveDate], batch: &Batch, keep: &[usize]) -> (Vec<NaiveDate>, Batch) {
    use crate::data::Column;
    let pick = |c: &Column| match c {
        Column::Str(v) => Column::Str(keep.iter().map(|&i| v[i].clone()).collect()),
        Column::Int(v) => Column::Int(keep.iter().map(|&i| v[i]).collect()),
        Column::Float(v) => Column::Float(keep.iter().map(|&i| v[i]).collect()),
        Column::Bool(v) => Column::Bool(keep.iter().map(|&i| v[i]).collect()),
        Column::Date(v) => Column::Date(keep.iter().map(|&i| v[i]).collect()),
    };
    (
        keep.iter().map(|&i| dates[i]).collect(),
        Batch {
            columns: batch
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), pick(c)))
                .collect(),
            lines: keep.iter().map(|&i| batch.lines[i]).collect(),
        },
    )
}

fn check_feature_view(
    cx: &CheckContext<'_>,
    r: &Resource,
    v: &FeatureViewSpec,
    diags: &mut Vec<SpecDiagnostic>,
) {
    check_identifier(r, &v.name, "feature view name", diags);
    if parse_ttl(&v.ttl.value).is_none() {
        diags.push(
            r.diag_at(
                DiagCode::InvalidValue,
                &v.ttl,
                format!("`{}` is not a duration", v.ttl.value),
            )
            .with_hint("write a positive duration: `90d`, `12h`, `1d 12h`"),
        );
    }
    let table = cx.resolve::<Table>(r, &v.table);
    let entity = cx.resolve::<Entity>(r, &v.entity);
    let Some(table) = table else { return };
    if v.features.is_empty() {
        diags.push(r.diag_at(
            DiagCode::MissingField,
            &v.name,
            "feature view has no features",
        ));
    }
    let mut seen = HashSet::new();
    for f in &v.features {
        if !seen.insert(f.value.as_str()) {
            diags.push(r.diag_at(
                DiagCode::DuplicateName,
                f,
                format!("feature `{}` listed twice", f.value),
            ));
        } else if !table.columns.contains_key(&f.value) {
            let d = r.diag_at(
                DiagCode::MissingReference,
                f,
                format!("table `{}` has no column `{}`", table.name.value, f.value),
            );
            diags.push(
                match did_you_mean(&f.value, table.columns.keys().map(String::as_str)) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint(format!(
                        "columns of `{}`: {}",
                        table.name.value,
                        table.columns.keys().cloned().collect::<Vec<_>>().join(", ")
                    )),
                },
            );
        }
    }
    if let Some(entity) = entity {
        for key in &entity.join_keys {
            if !table.columns.contains_key(&key.value) {
                diags.push(
                    r.diag_at(
                        DiagCode::MissingReference,
                        &v.table,
                        format!(
                            "table `{}` lacks `{}`, the join key of entity `{}`",
                            table.name.value, key.value, entity.name.value
                        ),
                    )
                    .with_hint("a feature view's table must have every join key of its entity"),
                );
            } else if table.columns.get(&key.value) != Some(&ColumnType::String) {
                let ty = table.columns.get(&key.value).map_or("?", |t| t.as_str());
                diags.push(
                    r.diag_at(
                        DiagCode::InvalidValue,
                        &v.table,
                        format!(
                            "join key `{}` is {ty} in table `{}`; feature views need a string join key",
                            key.value, table.name.value
                        ),
                    )
                    .with_hint(format!("declare `{}: string` in the table's columns", key.value)),
                );
            } else if v.features.iter().any(|f| f.value == key.value) {
                let f = v
                    .features
                    .iter()
                    .find(|f| f.value == key.value)
                    .unwrap_or(&v.name);
                diags.push(r.diag_at(
                    DiagCode::InvalidValue,
                    f,
                    format!("`{}` is the entity's join key, not a feature", key.value),
                ));
            }
        }
    }
}
