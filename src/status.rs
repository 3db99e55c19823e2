//! What `reconcile status` shows for each resource, computed once from the
//! desired state, the observed state and the plan, so the CLI and the web UI
//! say the same thing about every resource.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::kinds::{DesiredState, Observed};
use crate::plan::{Action, Plan};
use crate::store::format_ms;
use crate::store::state::Condition;

/// One row of `status --json`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusRow {
    /// The resource's kind.
    pub kind: String,
    /// The resource's name.
    pub name: String,
    /// `Ready`, `Failed`, `Blocked`, `OutOfDate` (applied, but the plan would
    /// change it) or `NotApplied`.
    pub state: String,
    /// When its record last changed (RFC 3339), if it has one.
    pub last_change: Option<String>,
    /// Why it is in that state.
    pub reason: String,
    /// Kind-specific outputs kept in the state store.
    pub outputs: Option<Value>,
}

impl StatusRow {
    /// Whether this state makes `status` exit 2: failed, blocked or out of date.
    pub fn is_unhealthy(&self) -> bool {
        matches!(self.state.as_str(), "Failed" | "Blocked" | "OutOfDate")
    }
}

/// One row per desired resource, in the desired (execution) order: its
/// condition as recorded, `OutOfDate` when it is Ready but the plan would
/// change it, `NotApplied` without a record; the reason is the plan's first
/// when a change is pending, else the record's reason and first message line.
pub fn rows(desired: &DesiredState, observed: &Observed, plan: &Plan) -> Vec<StatusRow> {
    desired
        .resources
        .iter()
        .map(|d| {
            let rec = observed.records.get(&d.id);
            let pending = plan
                .resources
                .iter()
                .find(|p| p.id == d.id)
                .filter(|p| p.action != Action::NoOp);
            let state = match (rec, pending) {
                (None, _) => "NotApplied".to_string(),
                (Some(r), Some(_)) if r.condition == Condition::Ready => "OutOfDate".to_string(),
                (Some(r), _) => r.condition.to_string(),
            };
            let reason = match (pending, rec) {
                (Some(p), _) => p.reasons.first().cloned().unwrap_or_default(),
                (None, Some(r)) => format!(
                    "{}: {}",
                    r.reason,
                    r.message.lines().next().unwrap_or_default()
                ),
                (None, None) => String::new(),
            };
            StatusRow {
                kind: d.id.kind.as_str().to_string(),
                name: d.id.name.clone(),
                state,
                last_change: rec.map(|r| format_ms(r.last_change_ms)),
                reason,
                outputs: rec.map(|r| r.outputs.clone()),
            }
        })
        .collect()
}
