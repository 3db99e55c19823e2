//! The dependency DAG between resources, built from their references.
//!
//! Edges point from a dependency to its dependent, so a topological order is an
//! order of execution. A cycle is reported as a readable path (`a → b → a`).

use std::collections::HashMap;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::diag::{DiagCode, SpecDiagnostic};
use crate::spec::validate::{ResourceIndex, resolve_reference};
use crate::spec::{Resource, ResourceId, SpannedStr, SpecSet};

/// Resources and the "must run before" relation between them.
#[derive(Debug, Clone)]
pub struct DependencyGraph {
    /// The graph; node weights are resource ids.
    pub graph: DiGraph<ResourceId, ()>,
    /// Node of each resource.
    pub index: HashMap<ResourceId, NodeIndex>,
    /// Resource ids in a topological order.
    pub order: Vec<ResourceId>,
}

impl DependencyGraph {
    /// Builds the DAG; unresolvable references are skipped here (validation
    /// reports them) and every cycle becomes one diagnostic.
    pub fn build(set: &SpecSet) -> Result<DependencyGraph, Vec<SpecDiagnostic>> {
        let mut graph = DiGraph::new();
        let mut index = HashMap::new();
        for r in &set.resources {
            index.insert(r.id.clone(), graph.add_node(r.id.clone()));
        }
        // (dependency, dependent) → where the dependent names it.
        let mut edge_sites: HashMap<(NodeIndex, NodeIndex), (&Resource, SpannedStr)> =
            HashMap::new();
        let names = ResourceIndex::new(&set.resources);
        for r in &set.resources {
            for (reference, kind) in crate::kinds::references(&r.spec) {
                if let Ok(dep) = resolve_reference(r, &reference, kind, &names) {
                    let (a, b) = (index[&dep], index[&r.id]);
                    graph.update_edge(a, b, ());
                    edge_sites.entry((a, b)).or_insert((r, reference));
                }
            }
            for (reference, kind) in crate::kinds::reverse_references(&r.spec) {
                if let Ok(dependent) = resolve_reference(r, &reference, kind, &names) {
                    let (a, b) = (index[&r.id], index[&dependent]);
                    graph.update_edge(a, b, ());
                    edge_sites.entry((a, b)).or_insert((r, reference));
                }
            }
        }
        match stable_toposort(&graph) {
            Some(order) => Ok(DependencyGraph {
                order,
                graph,
                index,
            }),
            None => {
                let mut diags = Vec::new();
                for scc in tarjan_scc(&graph) {
                    let is_cycle = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
                    if !is_cycle {
                        continue;
                    }
                    let path = cycle_path(&graph, &scc);
                    let names: Vec<String> = path.iter().map(|n| graph[*n].to_string()).collect();
                    // Point at the reference that closes the loop.
                    let (last, first) = (path[path.len() - 2], path[path.len() - 1]);
                    if let Some((r, site)) = edge_sites
                        .get(&(first, last))
                        .or_else(|| edge_sites.values().next())
                    {
                        diags.push(
                            r.diag_at(
                                DiagCode::Cycle,
                                site,
                                format!("dependency cycle: {}", names.join(" → ")),
                            )
                            .with_hint(
                                "remove one of these references so the resources can be ordered",
                            ),
                        );
                    }
                }
                Err(diags)
            }
        }
    }

    /// The graph among `keep` only (edges to anything else dropped), for a plan
    /// of part of the project.
    pub fn restrict(&self, keep: &[ResourceId]) -> DependencyGraph {
        let mut graph = DiGraph::new();
        let mut index = HashMap::new();
        for id in keep {
            index.insert(id.clone(), graph.add_node(id.clone()));
        }
        for e in self.graph.raw_edges() {
            let (a, b) = (&self.graph[e.source()], &self.graph[e.target()]);
            if let (Some(&x), Some(&y)) = (index.get(a), index.get(b)) {
                graph.update_edge(x, y, ());
            }
        }
        let order = self
            .order
            .iter()
            .filter(|id| index.contains_key(*id))
            .cloned()
            .collect();
        DependencyGraph {
            graph,
            index,
            order,
        }
    }

    /// Direct dependencies of a resource.
    pub fn dependencies(&self, id: &ResourceId) -> Vec<ResourceId> {
        self.neighbours(id, petgraph::Direction::Incoming)
    }

    /// Direct dependents of a resource.
    pub fn dependents(&self, id: &ResourceId) -> Vec<ResourceId> {
        self.neighbours(id, petgraph::Direction::Outgoing)
    }

    /// Every edge as (dependency, dependent), sorted, for stable printing.
    pub fn edges(&self) -> Vec<(ResourceId, ResourceId)> {
        let mut edges: Vec<(ResourceId, ResourceId)> = self
            .graph
            .raw_edges()
            .iter()
            .map(|e| {
                (
                    self.graph[e.source()].clone(),
                    self.graph[e.target()].clone(),
                )
            })
            .collect();
        edges.sort();
        edges
    }

    /// The graph in Graphviz DOT (`reconcile graph`): one node per resource,
    /// in execution order, and an edge from each dependency to its dependent.
    pub fn to_dot(&self) -> String {
        let quote = |id: &ResourceId| format!("\"{}\"", id.to_string().replace('"', "\\\""));
        let mut out = String::from("digraph reconcile {\n  rankdir=LR;\n  node [shape=box];\n");
        for id in &self.order {
            out.push_str(&format!("  {};\n", quote(id)));
        }
        for (a, b) in self.edges() {
            out.push_str(&format!("  {} -> {};\n", quote(&a), quote(&b)));
        }
        out.push_str("}\n");
        out
    }

    /// The graph as a Mermaid flowchart (renders in GitHub Markdown): nodes
    /// `n0…` labelled `Kind/name`, edges from dependency to dependent.
    pub fn to_mermaid(&self) -> String {
        let ids: HashMap<&ResourceId, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, id)| (id, i))
            .collect();
        let mut out = String::from("flowchart LR\n");
        for (i, id) in self.order.iter().enumerate() {
            out.push_str(&format!(
                "  n{i}[\"{}\"]\n",
                id.to_string().replace('"', "#quot;")
            ));
        }
        for (a, b) in self.edges() {
            if let (Some(x), Some(y)) = (ids.get(&a), ids.get(&b)) {
                out.push_str(&format!("  n{x} --> n{y}\n"));
            }
        }
        out
    }

    fn neighbours(&self, id: &ResourceId, dir: petgraph::Direction) -> Vec<ResourceId> {
        self.index
            .get(id)
            .map(|&n| {
                self.graph
                    .neighbors_directed(n, dir)
                    .map(|m| self.graph[m].clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Kahn's algorithm, always taking the smallest ready id (kind order, then name),
/// so plans list resources in the same order on every run. `None` on a cycle.
fn stable_toposort(graph: &DiGraph<ResourceId, ()>) -> Option<Vec<ResourceId>> {
    use std::collections::BTreeMap;
    let mut indegree: HashMap<NodeIndex, usize> = graph
        .node_indices()
        .map(|n| {
            (
                n,
                graph
                    .neighbors_directed(n, petgraph::Direction::Incoming)
                    .count(),
            )
        })
        .collect();
    let mut ready: BTreeMap<ResourceId, NodeIndex> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| (graph[*n].clone(), *n))
        .collect();
    let mut order = Vec::with_capacity(graph.node_count());
    while let Some((id, n)) = ready.pop_first() {
        order.push(id);
        for m in graph.neighbors_directed(n, petgraph::Direction::Outgoing) {
            if let Some(d) = indegree.get_mut(&m) {
                *d -= 1;
                if *d == 0 {
                    ready.insert(graph[m].clone(), m);
                }
            }
        }
    }
    (order.len() == graph.node_count()).then_some(order)
}

/// A closed walk through a strongly connected component, as dependent → dependency
/// order reversed: `a → b → a` reads "a needs b needs a".
fn cycle_path(graph: &DiGraph<ResourceId, ()>, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let mut members: Vec<NodeIndex> = scc.to_vec();
    members.sort_by(|a, b| graph[*a].cmp(&graph[*b]));
    let start = members[0];
    // Depth-first search inside the SCC for a path back to start, following
    // edges backwards (dependent → dependency).
    let in_scc = |n: NodeIndex| scc.contains(&n);
    let mut stack = vec![(start, vec![start])];
    let mut visited = std::collections::HashSet::new();
    while let Some((node, path)) = stack.pop() {
        let mut next: Vec<NodeIndex> = graph
            .neighbors_directed(node, petgraph::Direction::Incoming)
            .filter(|n| in_scc(*n))
            .collect();
        next.sort_by(|a, b| graph[*b].cmp(&graph[*a]));
        for n in next {
            if n == start {
                let mut p = path.clone();
                p.push(start);
                return p;
            }
            if visited.insert(n) {
                let mut p = path.clone();
                p.push(n);
                stack.push((n, p));
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use std::sync::Arc;

    fn set(yaml: &str) -> (SpecSet, Vec<SpecDiagnostic>) {
        let file = Arc::new(SourceFile::new(
            "g.yaml".into(),
            "/p/g.yaml".into(),
            yaml.into(),
        ));
        let (mut resources, mut diags) = (vec![], vec![]);
        crate::spec::load::load_file(&file, &mut resources, &mut diags);
        let set = crate::spec::validate::validate("/p".into(), resources, &mut diags);
        (set, diags)
    }

    #[test]
    fn orders_dependencies_first_then_by_kind_and_name() {
        let (s, d) = set(
            "kind: Entity\nname: b\njoinKeys: [k]\ndependsOn: [c]\n---\nkind: Entity\nname: c\njoinKeys: [k]\n---\nkind: Entity\nname: a\njoinKeys: [k]\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let g = DependencyGraph::build(&s).unwrap();
        let names: Vec<&str> = g.order.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "b"]);
        assert_eq!(
            g.dependents(&ResourceId::new(
                crate::spec::Kind::parse("Entity").expect("kind"),
                "c"
            ))
            .len(),
            1
        );
    }

    #[test]
    fn prints_cycles_as_paths() {
        let (_, d) = set(
            "kind: Entity\nname: a\njoinKeys: [k]\ndependsOn: [b]\n---\nkind: Entity\nname: b\njoinKeys: [k]\ndependsOn: [Entity/a]\n",
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, DiagCode::Cycle);
        assert!(
            d[0].message.contains("Entity/a → Entity/b → Entity/a"),
            "{}",
            d[0].message
        );
    }
}
