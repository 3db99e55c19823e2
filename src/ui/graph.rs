//! The front page: every resource as a node of the dependency graph, laid out
//! in columns by dependency level (the longest path from a root) and coloured
//! by condition; the pending plan with its causes beside it; and every
//! resource's state, last change, reason and error below.

use std::collections::HashMap;

use maud::{Markup, html};

use super::layout::{self, Section};
use super::snapshot::Snapshot;
use super::{Ui, UiError};
use crate::graph::DependencyGraph;
use crate::plan::Action;
use crate::spec::ResourceId;
use crate::store::state::Condition;

/// How a node is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Ready and nothing pending.
    Ready,
    /// Its spec or inputs changed: the plan would change it.
    Pending,
    /// Ready for the same spec, yet the plan would change it: the world moved
    /// (a container removed, a stage set by hand, a generated file edited).
    Drifted,
    /// The last apply failed.
    Failed,
    /// Not attempted because a dependency failed.
    Blocked,
    /// Never applied.
    Absent,
}

impl Look {
    /// Its CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Look::Ready => "ready",
            Look::Pending => "pending",
            Look::Drifted => "drifted",
            Look::Failed => "failed",
            Look::Blocked => "blocked",
            Look::Absent => "absent",
        }
    }

    /// Its name in the legend.
    fn label(self) -> &'static str {
        match self {
            Look::Ready => "ready",
            Look::Pending => "pending change",
            Look::Drifted => "drifted",
            Look::Failed => "failed",
            Look::Blocked => "blocked",
            Look::Absent => "not applied",
        }
    }
}

const LOOKS: [Look; 6] = [
    Look::Ready,
    Look::Pending,
    Look::Drifted,
    Look::Failed,
    Look::Blocked,
    Look::Absent,
];

/// The look of one resource: its recorded condition, and whether the plan
/// would change it and why (a new spec hash, or the same hash: drift).
pub fn look(s: &Snapshot, id: &ResourceId) -> Look {
    let record = s.observed.records.get(id);
    let pending = s
        .plan
        .resources
        .iter()
        .any(|p| &p.id == id && p.action != Action::NoOp);
    let desired_hash = s
        .desired
        .resources
        .iter()
        .find(|d| &d.id == id)
        .map(|d| d.spec_hash.as_str());
    match record {
        None => Look::Absent,
        Some(r) if r.condition == Condition::Failed => Look::Failed,
        Some(r) if r.condition == Condition::Blocked => Look::Blocked,
        Some(_) if !pending => Look::Ready,
        Some(r) if desired_hash == Some(r.spec_hash.as_str()) => Look::Drifted,
        Some(_) => Look::Pending,
    }
}

/// Node size and spacing, in SVG user units.
const NODE_W: f64 = 196.0;
const NODE_H: f64 = 46.0;
const COL_GAP: f64 = 72.0;
const ROW_GAP: f64 = 16.0;
const MARGIN: f64 = 14.0;
const HEADER: f64 = 22.0;
/// Longest name drawn in a node (the tooltip has it whole).
const NAME_CHARS: usize = 24;

/// Where each node goes: `(column, row)` per resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Column (dependency level) and row of each resource in `order`.
    pub place: HashMap<ResourceId, (usize, usize)>,
    /// Nodes per column.
    pub columns: Vec<Vec<ResourceId>>,
}

/// Lays the graph out: a resource's column is the longest path from a root
/// to it (so every edge points right), and within a column resources are
/// sorted by the mean row of their dependencies (fewer crossings), then by
/// execution order.
pub fn layout(g: &DependencyGraph) -> Layout {
    let mut level: HashMap<&ResourceId, usize> = HashMap::new();
    for id in &g.order {
        let l = g
            .dependencies(id)
            .iter()
            .filter_map(|d| level.get(d).map(|l| l + 1))
            .max()
            .unwrap_or(0);
        level.insert(id, l);
    }
    let depth = level.values().copied().max().map_or(0, |m| m + 1);
    let mut columns: Vec<Vec<ResourceId>> = vec![Vec::new(); depth];
    let mut place: HashMap<ResourceId, (usize, usize)> = HashMap::new();
    for (c, column) in columns.iter_mut().enumerate() {
        let mut here: Vec<(f64, usize, &ResourceId)> = g
            .order
            .iter()
            .enumerate()
            .filter(|(_, id)| level.get(id) == Some(&c))
            .map(|(i, id)| {
                let rows: Vec<f64> = g
                    .dependencies(id)
                    .iter()
                    .filter_map(|d| place.get(d).map(|&(_, r)| r as f64))
                    .collect();
                let mean = if rows.is_empty() {
                    f64::MAX
                } else {
                    rows.iter().sum::<f64>() / rows.len() as f64
                };
                (mean, i, id)
            })
            .collect();
        here.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (r, (_, _, id)) in here.into_iter().enumerate() {
            place.insert(id.clone(), (c, r));
            column.push(id.clone());
        }
    }
    Layout { place, columns }
}

fn n(v: f64) -> String {
    format!("{v:.1}")
}

fn node_xy(col: usize, row: usize) -> (f64, f64) {
    (
        MARGIN + col as f64 * (NODE_W + COL_GAP),
        MARGIN + HEADER + row as f64 * (NODE_H + ROW_GAP),
    )
}

/// The graph as one SVG: nodes as rounded boxes (kind above name) linking to
/// their row of the table, edges as curves from dependency to dependent.
fn svg(s: &Snapshot, l: &Layout, anchors: &HashMap<&ResourceId, String>) -> Markup {
    let rows = l.columns.iter().map(Vec::len).max().unwrap_or(0);
    let w = 2.0 * MARGIN + l.columns.len() as f64 * (NODE_W + COL_GAP) - COL_GAP;
    let h = 2.0 * MARGIN + HEADER + rows as f64 * (NODE_H + ROW_GAP) - ROW_GAP;
    let edges = s.ws.graph.edges();
    html! {
        svg class="graph" viewBox={ "0 0 " (n(w.max(NODE_W))) " " (n(h.max(NODE_H))) }
            width=(n(w.max(NODE_W))) height=(n(h.max(NODE_H)))
            role="img" aria-label="Dependency graph" xmlns="http://www.w3.org/2000/svg" {
            defs {
                marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto" {
                    path d="M0,0 L8,4 L0,8 Z" {}
                }
            }
            @for c in 0..l.columns.len() {
                text class="level" x=(n(node_xy(c, 0).0)) y=(n(MARGIN + 10.0)) { "level " (c) }
            }
            @for (a, b) in &edges {
                @if let (Some(&(ca, ra)), Some(&(cb, rb))) = (l.place.get(a), l.place.get(b)) {
                    @let (xa, ya) = node_xy(ca, ra);
                    @let (xb, yb) = node_xy(cb, rb);
                    @let (x1, y1, x2, y2) = (xa + NODE_W, ya + NODE_H / 2.0, xb - 2.0, yb + NODE_H / 2.0);
                    @let dx = ((x2 - x1) / 2.0).max(20.0);
                    path class="edge" marker-end="url(#arrow)"
                        d={ "M" (n(x1)) "," (n(y1)) " C" (n(x1 + dx)) "," (n(y1)) " " (n(x2 - dx)) "," (n(y2)) " " (n(x2)) "," (n(y2)) } {
                        title { (a) " → " (b) }
                    }
                }
            }
            @for (c, column) in l.columns.iter().enumerate() {
                @for (r, id) in column.iter().enumerate() {
                    @let (x, y) = node_xy(c, r);
                    @let look = look(s, id);
                    @let short: String = id.name.chars().take(NAME_CHARS).collect();
                    @let cut = id.name.chars().count() > NAME_CHARS;
                    a href={ "#" (anchors.get(id).map_or("", String::as_str)) } {
                        g class={ "node " (look.class()) } data-resource=(id.to_string()) data-look=(look.class()) {
                            title { (id) ": " (look.label()) }
                            rect x=(n(x)) y=(n(y)) width=(n(NODE_W)) height=(n(NODE_H)) rx="6" {}
                            text class="kind" x=(n(x + 10.0)) y=(n(y + 17.0)) { (id.kind.as_str()) }
                            text class="name" x=(n(x + 10.0)) y=(n(y + 35.0)) { (short) @if cut { "…" } }
                        }
                    }
                }
            }
        }
    }
}

/// The pending plan: each change with all its reasons and warnings.
fn plan(s: &Snapshot) -> Markup {
    let changes: Vec<_> = s
        .plan
        .resources
        .iter()
        .filter(|p| p.action != Action::NoOp)
        .collect();
    html! {
        aside.plan id="plan" {
            h2 { "Pending plan" }
            @if changes.is_empty() && s.plan.objects.is_empty() {
                p.muted { "No changes: everything is as the specs say." }
            } @else {
                p.muted { (changes.len()) " to change; apply would run it." }
                ol {
                    @for o in &s.plan.objects {
                        @let (action, what) = o.describe();
                        li data-action=(action.verb()) {
                            code { (action.symbol()) } " " strong { (action.verb()) } " " (what)
                        }
                    }
                    @for p in &changes {
                        li data-resource=(p.id.to_string()) data-action=(p.action.verb()) {
                            code { (p.action.symbol()) } " " strong { (p.action.verb()) } " " (p.id)
                            @for r in &p.reasons { span.why { (r) } }
                            @for w in &p.warnings { span.why { "warning: " (w) } }
                        }
                    }
                }
            }
            p.muted { "Planned " (layout::time(s.taken_ms)) " in " (s.took.as_millis()) " ms." }
        }
    }
}

/// The graph page.
pub async fn page(ui: &Ui) -> Result<Markup, UiError> {
    let s = ui.snapshot().await?;
    let l = layout(&s.ws.graph);
    let anchors: HashMap<&ResourceId, String> = s
        .desired
        .resources
        .iter()
        .enumerate()
        .map(|(i, d)| (&d.id, format!("r{i}")))
        .collect();
    let descriptions: HashMap<&ResourceId, String> =
        s.ws.set
            .resources
            .iter()
            .filter_map(|r| {
                let d = r
                    .spec
                    .canonical_json()
                    .get("description")?
                    .as_str()?
                    .to_string();
                Some((&r.id, d))
            })
            .collect();
    let counts = LOOKS.map(|k| {
        s.desired
            .resources
            .iter()
            .filter(|d| look(&s, &d.id) == k)
            .count()
    });
    let project = s.ws.set.project.name.value.clone();
    let body = html! {
        ul.legend {
            @for (k, count) in LOOKS.iter().zip(counts) {
                li { span class={ "swatch " (k.class()) } {} (k.label()) " (" (count) ")" }
            }
        }
        div.split {
            div.scroll { (svg(&s, &l, &anchors)) }
            (plan(&s))
        }
        h2 { "Resources" }
        table.resources {
            thead { tr { th { "Resource" } th { "State" } th { "Last change" } th { "Reason" } } }
            tbody {
                @for (d, row) in s.desired.resources.iter().zip(&s.rows) {
                    @let rec = s.observed.records.get(&d.id);
                    tr id=(anchors.get(&d.id).map_or("", String::as_str))
                        data-resource=(d.id.to_string()) data-state=(row.state) {
                        td {
                            code { (row.kind) "/" (row.name) }
                            @if let Some(desc) = descriptions.get(&d.id) { span.desc { (desc) } }
                        }
                        td { (layout::badge(&row.state, &row.state)) }
                        td.mono { (row.last_change.as_deref().unwrap_or("—")) }
                        td.reason {
                            (row.reason)
                            @if let Some(r) = rec.filter(|r| r.condition != Condition::Ready) {
                                pre.error { (crate::spec::env::redact_secrets(&r.message)) }
                            }
                        }
                    }
                }
            }
        }
        p.muted {
            "State store: " code { (store_url(&s)) } " · "
            a href="#plan" { "pending plan" }
        }
    };
    Ok(layout::page(
        "Graph",
        Section::Graph,
        Some(10),
        &project,
        body,
    ))
}

/// The state store's URL as the specs give it, credentials redacted.
fn store_url(s: &Snapshot) -> String {
    match &s.ws.set.project.state {
        Some(u) => crate::spec::env::redact_url(&u.value),
        None => crate::workspace::DEFAULT_STATE_URL.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_edge_points_to_a_later_column() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
        let set = crate::spec::validate::load_and_validate(&dir).expect("example specs");
        let g = DependencyGraph::build(&set).expect("graph");
        let l = layout(&g);
        assert_eq!(l.place.len(), g.order.len(), "every resource placed");
        for (a, b) in g.edges() {
            let (ca, cb) = (l.place[&a].0, l.place[&b].0);
            assert!(ca < cb, "{a} (column {ca}) → {b} (column {cb})");
        }
        // Rows within a column are distinct.
        let mut seen = std::collections::HashSet::new();
        for p in l.place.values() {
            assert!(seen.insert(*p), "two nodes at {p:?}");
        }
        // The Endpoint comes after the Model, which comes after its runs.
        let col = |k: &str, n: &str| {
            l.place[&ResourceId::new(crate::spec::Kind::parse(k).expect("kind"), n)].0
        };
        assert!(col("TrainingRun", "churn-rf") < col("Model", "streamflow_churn"));
    }
}
