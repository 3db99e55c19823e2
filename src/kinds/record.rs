//! Kinds with no effect outside the state store (Project, Entity): applying them
//! records the spec, so dependents and later kinds can rely on it.

use super::{Applied, ApplyContext, ApplyError, DesiredResource, Inputs, Observed, Reconciler};
use crate::plan::{Action, Operation, PlanOptions, ResourcePlan};
use crate::spec::{Resource, ResourceId, SpecSet};
use crate::store::state::Condition;

/// Reconciler for record-only kinds.
pub struct RecordOnly;

impl Reconciler for RecordOnly {
    fn desire(
        _r: &Resource,
        _set: &SpecSet,
        _up: super::Upstream<'_>,
    ) -> Result<Inputs, ApplyError> {
        Ok(Inputs::None)
    }

    fn diff(d: &DesiredResource, observed: &Observed, _opts: &PlanOptions) -> ResourcePlan {
        let mut plan = ResourcePlan::noop(d.id.clone());
        match observed.records.get(&d.id) {
            None => {
                plan.action = Action::Create;
                plan.reasons.push(format!("new {}", d.id.kind));
            }
            Some(rec) if rec.spec_hash != d.spec_hash => {
                plan.action = Action::Update;
                plan.reasons.push(format!(
                    "spec changed: {}",
                    changed_fields(&rec.spec_json, &d.spec_json)
                ));
            }
            Some(rec) if rec.condition != Condition::Ready => {
                plan.action = Action::Update;
                plan.reasons.push(format!(
                    "last apply ended {}: {}",
                    rec.condition, rec.reason
                ));
            }
            Some(_) => {}
        }
        if plan.action != Action::NoOp {
            plan.operations.push(Operation::Record);
        }
        plan
    }

    async fn apply(
        _ctx: &ApplyContext,
        _d: &DesiredResource,
        _plan: &ResourcePlan,
    ) -> Result<Applied, ApplyError> {
        Ok(Applied {
            message: "recorded".into(),
            outputs: serde_json::Value::Null,
        })
    }
}

/// A record-only resource removed from the specs is forgotten.
pub fn diff_removed(id: &ResourceId) -> ResourcePlan {
    ResourcePlan {
        id: id.clone(),
        action: Action::Delete,
        reasons: vec!["no longer in the specs".into()],
        operations: vec![Operation::Forget],
        warnings: Vec::new(),
    }
}

/// Top-level fields whose values differ between two spec JSONs, e.g. `joinKeys`.
pub fn changed_fields(old: &serde_json::Value, new: &serde_json::Value) -> String {
    let empty = serde_json::Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| o.get(*k) != n.get(*k))
        .map(|k| format!("`{k}`"))
        .collect();
    if changed.is_empty() {
        "inputs changed".into()
    } else {
        changed.join(", ")
    }
}
