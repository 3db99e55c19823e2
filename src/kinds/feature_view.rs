//! `FeatureView`: materializes the latest values per entity of an online view into
//! the online store, incrementally (a watermark per view: only snapshots newer
//! than it are read), idempotently and atomically per view.
//!
//! A changed feature list or changed source data at or below the watermark means
//! a rebuild (replace); a view that goes offline or leaves the specs has its online
//! rows dropped.

use super::record::RecordOnly;
use super::{Applied, ApplyContext, ApplyError, DesiredResource, Inputs, Observed, Reconciler};
use crate::features::{ResolvedView, resolve};
use crate::hash;
use crate::plan::{Action, Operation, PlanOptions, ResourcePlan};
use crate::spec::{ColumnType, Kind, Resource, ResourceId, Spec, SpecSet};
use crate::store::offline;
use crate::store::online::{OnlineRows, OnlineView};

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

fn inputs(d: &DesiredResource) -> Option<&ViewInputs> {
    match &d.inputs {
        Inputs::FeatureView(v) => Some(v),
        _ => None,
    }
}

/// Reconciler for feature views.
pub struct FeatureViewReconciler;

impl Reconciler for FeatureViewReconciler {
    fn desire(
        r: &Resource,
        set: &SpecSet,
        upstream: super::Upstream<'_>,
    ) -> Result<Inputs, ApplyError> {
        let Spec::FeatureView(spec) = &r.spec else {
            return Ok(Inputs::None);
        };
        let view = resolve(set, &r.id.name).map_err(|e| ApplyError::Task(e.to_string()))?;
        // The table comes first in topological order: reuse its hashed snapshots.
        let mut snapshots: Vec<(String, String)> = match upstream
            .get(&ResourceId::new(Kind::Table, view.table.clone()))
            .map(|t| &t.inputs)
        {
            Some(Inputs::Table(t)) => t
                .snapshots
                .iter()
                .map(|s| (s.as_of.clone(), s.file_hash.clone()))
                .collect(),
            _ => Vec::new(),
        };
        snapshots.sort();
        let schema = serde_json::json!({
            "key": view.key,
            "features": view.features.iter().map(|(n, t)| [n.as_str(), t.as_str()]).collect::<Vec<_>>(),
        });
        Ok(Inputs::FeatureView(ViewInputs {
            schema_hash: hash::hash_json(&schema),
            online: spec.online,
            view,
            snapshots,
        }))
    }

    fn diff(d: &DesiredResource, observed: &Observed, opts: &PlanOptions) -> ResourcePlan {
        let Some(inputs) = inputs(d) else {
            return RecordOnly::diff(d, observed, opts);
        };
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
            plan.operations.push(Operation::Materialize {
                full: true,
                after: None,
                snapshots: dates(None),
            });
        };
        match (inputs.online, stored) {
            (false, Some(s)) => {
                plan.action = Action::Update;
                plan.reasons.push(format!(
                    "online: false: drop its {} online rows",
                    s.entity_count
                ));
                plan.operations.push(Operation::DropOnline);
            }
            (false, None) => return RecordOnly::diff(d, observed, opts),
            (true, _) if inputs.snapshots.is_empty() => return RecordOnly::diff(d, observed, opts),
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
                    plan.operations.push(Operation::Materialize {
                        full: false,
                        after: Some(s.watermark.clone()),
                        snapshots: new,
                    });
                }
            }
        }
        if plan.operations.is_empty() {
            return RecordOnly::diff(d, observed, opts);
        }
        plan
    }

    async fn apply(
        ctx: &ApplyContext,
        d: &DesiredResource,
        plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        let Some(inputs) = inputs(d) else {
            return Ok(Applied::default());
        };
        let mut messages = Vec::new();
        for op in &plan.operations {
            match op {
                Operation::Materialize { full, after, .. } => {
                    messages.push(materialize(ctx, inputs, *full, after.as_deref()).await?);
                }
                Operation::DropOnline => {
                    ctx.online.drop_view(&d.id.name).await?;
                    messages.push("online rows dropped".into());
                }
                _ => {}
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
}

/// Reads the snapshots newer than `after` (all when `None`), keeps the latest row
/// per entity and writes them with the new watermark in one transaction.
async fn materialize(
    ctx: &ApplyContext,
    inputs: &ViewInputs,
    full: bool,
    after: Option<&str>,
) -> Result<String, ApplyError> {
    let view = &inputs.view;
    let mut columns = vec![(view.key.clone(), ColumnType::String)];
    columns.extend(view.features.iter().cloned());
    let after = after.and_then(|a| chrono::NaiveDate::parse_from_str(a, "%Y-%m-%d").ok());
    let first = after.and_then(|a| a.succ_opt());
    let (dates, batch) =
        offline::read_table(&ctx.offline, &view.table, &columns, (first, None)).await?;
    let keep: Vec<usize> = (0..dates.len())
        .filter(|&i| after.is_none_or(|a| dates[i] > a))
        .collect();
    let (dates, batch) = if keep.len() == dates.len() {
        (dates, batch)
    } else {
        subset(&dates, &batch, &keep)
    };
    let rows = OnlineRows::latest(&batch, &dates);
    let watermark = inputs.latest().unwrap_or_default().to_string();
    let record = OnlineView {
        schema_hash: inputs.schema_hash.clone(),
        source_hash: inputs.source_hash(Some(&watermark)),
        watermark: watermark.clone(),
        entity_count: 0,
    };
    ctx.online
        .write_view(&view.name, &record, &rows, full)
        .await?;
    Ok(format!(
        "materialized {} entities × {} features (watermark {watermark})",
        rows.keys.len(),
        view.features.len()
    ))
}

fn subset(
    dates: &[chrono::NaiveDate],
    batch: &crate::data::Batch,
    keep: &[usize],
) -> (Vec<chrono::NaiveDate>, crate::data::Batch) {
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
        crate::data::Batch {
            columns: batch
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), pick(c)))
                .collect(),
            lines: keep.iter().map(|&i| batch.lines[i]).collect(),
        },
    )
}

/// A view no longer in the specs: its online rows are dropped (the plan says so).
pub fn diff_removed(id: &ResourceId, observed: &Observed) -> ResourcePlan {
    let mut plan = super::record::diff_removed(id);
    if let Some(s) = observed.online.get(&id.name) {
        plan.reasons = vec![format!(
            "no longer in the specs: drop its {} online rows",
            s.entity_count
        )];
        plan.operations.insert(0, Operation::DropOnline);
    }
    plan
}

/// Carries out the removal of a view.
pub async fn apply_removed(ctx: &ApplyContext, plan: &ResourcePlan) -> Result<Applied, ApplyError> {
    if plan.operations.contains(&Operation::DropOnline) {
        ctx.online.drop_view(&plan.id.name).await?;
    }
    Ok(Applied {
        message: "removed".into(),
        outputs: serde_json::Value::Null,
    })
}
