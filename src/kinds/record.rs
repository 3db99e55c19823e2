//! What every kind's plan shares: recording a spec in the state store when
//! nothing outside it changes, forgetting a removed resource, and naming the
//! fields that changed between two recorded specs.

use super::CommonOp;
use crate::plan::{Action, ResourcePlan};
use crate::spec::ResourceId;
use crate::store::state::Condition;

/// The plan of a resource whose only effect is its record: create it, update it
/// when the spec hash changed or the last apply did not end ready, else nothing.
pub fn diff(
    id: &ResourceId,
    spec_hash: &str,
    spec_json: &serde_json::Value,
    observed: &super::Observed,
) -> ResourcePlan {
    let mut plan = ResourcePlan::noop(id.clone());
    match observed.records.get(id) {
        None => {
            plan.action = Action::Create;
            plan.reasons.push(format!("new {}", id.kind));
        }
        Some(rec) if rec.spec_hash != spec_hash => {
            plan.action = Action::Update;
            plan.reasons.push(format!(
                "spec changed: {}",
                changed_fields(&rec.spec_json, spec_json)
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
        plan.operations.push(CommonOp::Record.into());
    }
    plan
}

/// A resource removed from the specs is forgotten by the state store.
pub fn forget(id: &ResourceId) -> ResourcePlan {
    ResourcePlan {
        id: id.clone(),
        action: Action::Delete,
        reasons: vec!["no longer in the specs".into()],
        operations: vec![CommonOp::Forget.into()],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{Kind, Observed};
    use crate::store::state::ResourceRecord;

    fn observed(hash: &str, condition: Condition) -> (ResourceId, Observed) {
        let id = ResourceId::new(Kind::Entity, "user");
        let mut o = Observed::default();
        o.records.insert(
            id.clone(),
            ResourceRecord {
                id: id.clone(),
                spec_hash: hash.into(),
                spec_json: serde_json::json!({ "joinKeys": ["a"] }),
                condition,
                reason: "Applied".into(),
                message: String::new(),
                outputs: serde_json::Value::Null,
                protect: false,
                last_change_ms: 0,
                last_apply_ms: 0,
            },
        );
        (id, o)
    }

    #[test]
    fn record_only_kinds_create_update_and_rest() {
        let json = serde_json::json!({ "joinKeys": ["b"] });
        let id = ResourceId::new(Kind::Entity, "user");
        let p = diff(&id, "h", &json, &Observed::default());
        assert_eq!(p.action, Action::Create);
        assert_eq!(p.reasons, ["new Entity"]);
        assert_eq!(p.operations, [CommonOp::Record.into()]);
        let (id, o) = observed("old", Condition::Ready);
        let p = diff(&id, "h", &json, &o);
        assert_eq!(p.action, Action::Update);
        assert_eq!(p.reasons, ["spec changed: `joinKeys`"]);
        let (id, o) = observed("h", Condition::Failed);
        assert_eq!(diff(&id, "h", &json, &o).action, Action::Update);
        let (id, o) = observed("h", Condition::Ready);
        let p = diff(&id, "h", &json, &o);
        assert_eq!(p.action, Action::NoOp);
        assert!(p.operations.is_empty());
        assert_eq!(forget(&id).operations, [CommonOp::Forget.into()]);
    }
}
