//! The plan: for every resource, desired vs observed → an action with its reasons
//! and the atomic operations that carry it out.
//!
//! The planner does no I/O: [`diff`] is a pure function of the desired state,
//! the observed state and the options, so it is tested with golden text and a
//! no-op plan costs only the observation.

use std::fmt::Write as _;

use owo_colors::OwoColorize;
use serde::Serialize;

use crate::kinds::{self, DesiredState, Observed, Operation};
use crate::runtime::containers::{self, ObjectOp};
use crate::spec::ResourceId;

/// What happens to a resource, as `terraform plan` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing to do.
    NoOp,
    /// Does not exist yet.
    Create,
    /// Changed in place.
    Update,
    /// Rebuilt from scratch (e.g. a table's schema changed).
    Replace,
    /// Removed (no longer in the specs).
    Delete,
    /// Cannot proceed without the user's word (e.g. a table of that name
    /// exists that reconcile did not create); apply refuses the whole plan.
    Conflict,
}

impl Action {
    /// The terraform-style marker.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::Conflict => "!",
        }
    }

    /// The verb shown after the marker.
    pub fn verb(self) -> &'static str {
        match self {
            Action::NoOp => "no change",
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Conflict => "conflict",
        }
    }
}

/// The plan of one resource.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ResourcePlan {
    /// Which resource.
    pub id: ResourceId,
    /// What happens to it.
    pub action: Action,
    /// Why, in words ("data changed in 2024-01-31").
    pub reasons: Vec<String>,
    /// How: kind-specific operations, each an object tagged by `op`.
    #[schemars(with = "Vec<serde_json::Map<String, serde_json::Value>>")]
    pub operations: Vec<Operation>,
    /// Things the user should know that are not changes (kept orphan data, …).
    pub warnings: Vec<String>,
}

impl ResourcePlan {
    /// A plan with nothing to do.
    pub fn noop(id: ResourceId) -> Self {
        ResourcePlan {
            id,
            action: Action::NoOp,
            reasons: Vec::new(),
            operations: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Options that change what a plan may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Allow dropping data (tables and snapshots no longer in the specs).
    pub prune_data: bool,
}

/// The whole plan, resources in execution order (deletions last).
#[derive(Debug, Clone, Serialize, Default, schemars::JsonSchema)]
pub struct Plan {
    /// Per-resource plans.
    pub resources: Vec<ResourcePlan>,
    /// Project-wide objects of the container runtime: created before any
    /// resource, removed after every resource.
    pub objects: Vec<ObjectOp>,
}

/// Counts of actions in a plan.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Creations.
    pub create: usize,
    /// In-place updates.
    pub update: usize,
    /// Replacements.
    pub replace: usize,
    /// Deletions.
    pub delete: usize,
    /// Unchanged.
    pub unchanged: usize,
    /// Conflicts that stop apply.
    #[serde(skip_serializing_if = "is_zero")]
    pub conflict: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Plan {
    /// The resources whose plan is a conflict (apply refuses while any is).
    pub fn conflicts(&self) -> Vec<&ResourcePlan> {
        self.resources
            .iter()
            .filter(|r| r.action == Action::Conflict)
            .collect()
    }

    /// True when applying would change something.
    pub fn has_changes(&self) -> bool {
        !self.objects.is_empty() || self.resources.iter().any(|r| r.action != Action::NoOp)
    }

    /// Counts by action.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        let actions = self
            .objects
            .iter()
            .map(|o| o.describe().0)
            .chain(self.resources.iter().map(|r| r.action));
        for action in actions {
            match action {
                Action::NoOp => s.unchanged += 1,
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Delete => s.delete += 1,
                Action::Conflict => s.conflict += 1,
            }
        }
        s
    }

    /// The plan as text; `colour` adds ANSI colours.
    pub fn render(&self, colour: bool) -> String {
        let mut out = String::new();
        let paint = |action: Action, head: String| {
            if !colour {
                return head;
            }
            match action {
                Action::Create => head.green().to_string(),
                Action::Update => head.yellow().to_string(),
                Action::Replace => head.magenta().to_string(),
                Action::Delete | Action::Conflict => head.red().to_string(),
                Action::NoOp => head,
            }
        };
        let (before, after): (Vec<&ObjectOp>, Vec<&ObjectOp>) = self
            .objects
            .iter()
            .partition(|o| o.describe().0 == Action::Create);
        for o in before {
            let (action, what) = o.describe();
            let head = format!("{} {} {what}", action.symbol(), action.verb());
            let _ = writeln!(out, "{}", paint(action, head));
        }
        for r in &self.resources {
            if r.action != Action::NoOp {
                let head = format!("{} {} {}", r.action.symbol(), r.action.verb(), r.id);
                let head = paint(r.action, head);
                let _ = writeln!(out, "{head}");
                for reason in &r.reasons {
                    let _ = writeln!(out, "      {reason}");
                }
            }
            for w in &r.warnings {
                let line = format!("! {}: {w}", r.id);
                let _ = writeln!(
                    out,
                    "{}",
                    if colour {
                        line.yellow().to_string()
                    } else {
                        line
                    }
                );
            }
        }
        for o in after {
            let (action, what) = o.describe();
            let head = format!("{} {} {what}", action.symbol(), action.verb());
            let _ = writeln!(out, "{}", paint(action, head));
        }
        let s = self.summary();
        let _ = writeln!(
            out,
            "Plan: {} to create, {} to update, {} to replace, {} to delete, {} unchanged.",
            s.create, s.update, s.replace, s.delete, s.unchanged
        );
        if s.conflict > 0 {
            let _ = writeln!(
                out,
                "{} conflict(s): apply refuses until each is resolved.",
                s.conflict
            );
        }
        out
    }
}

/// Computes the plan. Pure: no I/O, deterministic for its inputs.
pub fn diff(desired: &DesiredState, observed: &Observed, opts: &PlanOptions) -> Plan {
    let mut resources: Vec<ResourcePlan> = desired
        .resources
        .iter()
        .map(|d| kinds::diff(d, observed, opts))
        .collect();
    let wanted: std::collections::HashSet<&ResourceId> =
        desired.resources.iter().map(|d| &d.id).collect();
    let mut owned = observed.docker.owned();
    owned.extend(observed.swarm.owned());
    let mut gone: Vec<&ResourceId> = observed
        .records
        .keys()
        .chain(owned.iter())
        .filter(|id| !wanted.contains(id))
        .collect();
    gone.sort();
    gone.dedup();
    for id in gone {
        resources.push(kinds::diff_removed(id, observed, opts));
    }
    Plan {
        resources,
        objects: containers::plan_objects(desired, observed.docker_objects.as_ref()),
    }
}
