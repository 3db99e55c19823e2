//! Runs a plan: resources in dependency order, independent ones in parallel (up
//! to `parallelism`), dependents only after their dependencies succeeded. A
//! failure blocks only its dependents. Every outcome is recorded in the state
//! store. The stop token (SIGINT/SIGTERM in the CLI) stops scheduling and
//! aborts running work; aborted store transactions roll back, so nothing is
//! left half-written.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::graph::DependencyGraph;
use crate::kinds::{self, ApplyContext, CommonOp, DesiredResource, DesiredState, Observed, Pool};
use crate::plan::{Action, Plan, ResourcePlan};
use crate::progress::Progress;
use crate::runtime::containers::{self, ObjectOp};
use crate::shutdown::Stop;
use crate::spec::ResourceId;
use crate::store::StoreError;
use crate::store::state::{Condition, ResourceRecord};

/// Resources of the container pool started at once: bounded only so a large
/// project does not flood the engine.
const CONTAINER_PARALLELISM: usize = 16;

/// How one resource ended.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    /// Which resource.
    pub id: ResourceId,
    /// What was planned.
    pub action: Action,
    /// Its condition afterwards.
    pub condition: Condition,
    /// What happened.
    pub message: String,
    /// Time spent.
    pub millis: u128,
}

/// The result of an apply.
#[derive(Debug, Clone, Serialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    /// Resources that were acted on (no-ops omitted).
    pub outcomes: Vec<Outcome>,
    /// True when the stop token (Ctrl-C, SIGTERM) stopped the apply.
    pub interrupted: bool,
    /// Project-wide objects of the container runtime that could not be
    /// created or removed, with why.
    pub object_failures: Vec<String>,
    /// How many plan-and-execute rounds the apply ran (see `Workspace::apply`).
    pub rounds: usize,
}

impl ApplyReport {
    /// Resources that failed.
    pub fn failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.condition == Condition::Failed)
            .count()
    }

    /// Resources blocked by a failed dependency.
    pub fn blocked(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.condition == Condition::Blocked)
            .count()
    }

    /// Adds a later round's outcomes.
    pub fn merge(&mut self, later: ApplyReport) {
        self.outcomes.extend(later.outcomes);
        self.interrupted |= later.interrupted;
        self.object_failures.extend(later.object_failures);
    }

    /// True when everything converged.
    pub fn success(&self) -> bool {
        !self.interrupted
            && self.failed() == 0
            && self.blocked() == 0
            && self.object_failures.is_empty()
    }
}

/// Executes `plan`, recording outcomes in `ctx.state`; `stop` interrupts it.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    ctx: Arc<ApplyContext>,
    desired: &DesiredState,
    observed: &Observed,
    graph: &DependencyGraph,
    plan: &Plan,
    parallelism: usize,
    progress: &Progress,
    stop: &Stop,
) -> Result<ApplyReport, StoreError> {
    let parallelism = parallelism.max(1);
    let desired_by_id: HashMap<&ResourceId, &DesiredResource> =
        desired.resources.iter().map(|d| (&d.id, d)).collect();
    let plans: HashMap<&ResourceId, &ResourcePlan> =
        plan.resources.iter().map(|p| (&p.id, p)).collect();
    let mut report = ApplyReport::default();
    let mut done: HashMap<ResourceId, Condition> = HashMap::new();
    // Unfinished dependencies per resource; a resource is ready at zero.
    let mut waiting_on: HashMap<ResourceId, usize> = desired
        .resources
        .iter()
        .map(|d| (d.id.clone(), graph.dependencies(&d.id).len()))
        .collect();
    let mut ready: std::collections::VecDeque<ResourceId> = desired
        .resources
        .iter()
        .filter(|d| waiting_on.get(&d.id) == Some(&0))
        .map(|d| d.id.clone())
        .collect();
    let mut running: HashSet<ResourceId> = HashSet::new();
    let mut tasks: JoinSet<(
        ResourceId,
        Result<kinds::Applied, kinds::ApplyError>,
        Duration,
    )> = JoinSet::new();
    let mut interrupt = std::pin::pin!(stop.cancelled());
    let project = ctx.state.project.clone();
    let (create, teardown): (Vec<&ObjectOp>, Vec<&ObjectOp>) = plan
        .objects
        .iter()
        .partition(|o| o.describe().0 == Action::Create);
    // Shared objects first: a failure here surfaces again, per resource, in the
    // containers that need them.
    for op in create {
        run_object(&ctx, &project, op, progress, &mut report).await;
    }

    // Marks `id` finished and makes its dependents whose dependencies all finished ready.
    fn finish(
        id: ResourceId,
        condition: Condition,
        graph: &DependencyGraph,
        done: &mut HashMap<ResourceId, Condition>,
        waiting_on: &mut HashMap<ResourceId, usize>,
        ready: &mut std::collections::VecDeque<ResourceId>,
    ) {
        for dependent in graph.dependents(&id) {
            if let Some(n) = waiting_on.get_mut(&dependent) {
                *n -= 1;
                if *n == 0 {
                    ready.push_back(dependent);
                }
            }
        }
        done.insert(id, condition);
    }

    // Containers mostly wait on the engine and on health checks, so their pool
    // has its own, wider bound; `parallelism` bounds the CPU-heavy work.
    let pool_of = |id: &ResourceId| desired_by_id.get(id).map_or(Pool::Cpu, |d| d.pool);
    let bound = |pool: Pool| match pool {
        Pool::Cpu => parallelism,
        Pool::Containers => CONTAINER_PARALLELISM,
    };
    // Ready resources wait in one queue per pool, and each pool counts what
    // it runs: starting work costs O(1) per resource. (Scanning the whole
    // ready list after every finished task made a first apply of n
    // independent resources O(n²): 16 k entities took 40 s.)
    const POOLS: [Pool; 2] = [Pool::Cpu, Pool::Containers];
    let slot = |pool: Pool| POOLS.iter().position(|p| *p == pool).unwrap_or(0);
    let mut queued: [std::collections::VecDeque<ResourceId>; 2] = Default::default();
    let mut busy = [0usize; 2];
    loop {
        // Start whatever is ready, up to the parallelism bounds.
        loop {
            for id in ready.drain(..) {
                queued[slot(pool_of(&id))].push_back(id);
            }
            let next = POOLS.iter().find_map(|pool| {
                let i = slot(*pool);
                if busy[i] < bound(*pool) {
                    queued[i].pop_front()
                } else {
                    None
                }
            });
            let Some(id) = next else { break };
            let deps = graph.dependencies(&id);
            let failed_dep = deps
                .iter()
                .find(|d| done.get(*d) != Some(&Condition::Ready));
            let rp = plans.get(&id).copied();
            let d = desired_by_id[&id];
            if let Some(dep) = failed_dep {
                let message = format!("blocked: dependency {dep} did not converge");
                if rp.is_some_and(|p| p.action != Action::NoOp)
                    || observed.records.contains_key(&id)
                {
                    record(
                        &ctx,
                        d,
                        rp.map_or(Action::NoOp, |p| p.action),
                        Condition::Blocked,
                        "DependencyFailed",
                        &message,
                        serde_json::Value::Null,
                        observed,
                    )
                    .await?;
                }
                progress.line(&format!("⊘ {id}: {message}"));
                report.outcomes.push(Outcome {
                    id: id.clone(),
                    action: rp.map_or(Action::NoOp, |p| p.action),
                    condition: Condition::Blocked,
                    message,
                    millis: 0,
                });
                finish(
                    id,
                    Condition::Blocked,
                    graph,
                    &mut done,
                    &mut waiting_on,
                    &mut ready,
                );
                continue;
            }
            match rp {
                Some(p) if p.action != Action::NoOp => {
                    busy[slot(pool_of(&id))] += 1;
                    running.insert(id.clone());
                    let ctx = ctx.clone();
                    let d = d.clone();
                    let p = p.clone();
                    let reporter = progress.start(&id, &format!("{} {id}", p.action.verb()));
                    // The apply reports what it counts through `ctx.progress()`.
                    tasks.spawn(crate::progress::scope(reporter, async move {
                        let t0 = Instant::now();
                        let r = kinds::apply(&ctx, &d, &p).await;
                        (d.id.clone(), r, t0.elapsed())
                    }));
                }
                _ => finish(
                    id,
                    Condition::Ready,
                    graph,
                    &mut done,
                    &mut waiting_on,
                    &mut ready,
                ),
            }
        }
        if tasks.is_empty() {
            break;
        }
        let joined = tokio::select! {
            j = tasks.join_next() => j,
            _ = &mut interrupt => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                progress.line("interrupted: running work was rolled back; no new work started");
                report.interrupted = true;
                return Ok(report);
            }
        };
        let Some(joined) = joined else { break };
        let (id, result, took) = match joined {
            Ok(v) => v,
            Err(e) => return Err(StoreError::Task(e)),
        };
        if running.remove(&id) {
            let i = slot(pool_of(&id));
            busy[i] = busy[i].saturating_sub(1);
        }
        progress.finish(&id);
        let d = desired_by_id[&id];
        let action = plans.get(&id).map_or(Action::NoOp, |p| p.action);
        // Nothing a resource reports may carry a resolved secret (a
        // container's logs quoted into its failure, a driver's message).
        let result = result.map(|mut applied| {
            applied.message = crate::spec::env::redact_secrets(&applied.message);
            crate::spec::env::redact_json(&mut applied.outputs);
            applied
        });
        let (condition, message) = match result {
            Ok(applied) => {
                record(
                    &ctx,
                    d,
                    action,
                    Condition::Ready,
                    "Applied",
                    &applied.message,
                    applied.outputs,
                    observed,
                )
                .await?;
                progress.line(&format!(
                    "✓ {id}: {} ({} ms)",
                    applied.message,
                    took.as_millis()
                ));
                (Condition::Ready, applied.message)
            }
            Err(e) => {
                let message = crate::spec::env::redact_secrets(&e.to_string());
                record(
                    &ctx,
                    d,
                    action,
                    Condition::Failed,
                    e.reason(),
                    &message,
                    serde_json::Value::Null,
                    observed,
                )
                .await?;
                progress.line(&format!("✗ {id}: {message}"));
                (Condition::Failed, message)
            }
        };
        report.outcomes.push(Outcome {
            id: id.clone(),
            action,
            condition,
            message,
            millis: took.as_millis(),
        });
        finish(id, condition, graph, &mut done, &mut waiting_on, &mut ready);
    }

    // Resources no longer in the specs, after everything else; then the shared
    // objects, once nothing uses them.
    for p in plan
        .resources
        .iter()
        .filter(|p| !desired_by_id.contains_key(&p.id) && p.action != Action::NoOp)
    {
        let t0 = Instant::now();
        let (condition, message) = match kinds::apply_removed(&ctx, p).await {
            Ok(applied) => {
                if p.operations.contains(&CommonOp::Forget.into()) {
                    ctx.state.forget(&p.id, &applied.message).await?;
                }
                progress.line(&format!("✓ {}: deleted", p.id));
                (Condition::Ready, applied.message)
            }
            Err(e) => {
                let message = crate::spec::env::redact_secrets(&e.to_string());
                progress.line(&format!("✗ {}: {message}", p.id));
                (Condition::Failed, message)
            }
        };
        report.outcomes.push(Outcome {
            id: p.id.clone(),
            action: p.action,
            condition,
            message,
            millis: t0.elapsed().as_millis(),
        });
    }
    if report.success() {
        for op in teardown {
            run_object(&ctx, &project, op, progress, &mut report).await;
        }
    }
    Ok(report)
}

async fn run_object(
    ctx: &ApplyContext,
    project: &str,
    op: &ObjectOp,
    progress: &Progress,
    report: &mut ApplyReport,
) {
    match containers::apply_object(&ctx.docker, project, op).await {
        Ok(message) => progress.line(&format!("✓ {message}")),
        Err(e) => {
            let (_, what) = op.describe();
            progress.line(&format!("✗ {what}: {e}"));
            report.object_failures.push(format!("{what}: {e}"));
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn record(
    ctx: &ApplyContext,
    d: &DesiredResource,
    action: Action,
    condition: Condition,
    reason: &str,
    message: &str,
    outputs: serde_json::Value,
    observed: &Observed,
) -> Result<(), StoreError> {
    let now = crate::store::now_ms();
    let previous = observed.records.get(&d.id);
    let changed = previous.is_none_or(|p| p.spec_hash != d.spec_hash || p.condition != condition);
    let rec = ResourceRecord {
        id: d.id.clone(),
        spec_hash: d.spec_hash.clone(),
        spec_json: d.spec_json.clone(),
        condition,
        reason: reason.to_string(),
        message: message.to_string(),
        outputs: if outputs.is_null() {
            previous.map_or(serde_json::Value::Null, |p| p.outputs.clone())
        } else {
            outputs
        },
        protect: d.protect,
        last_change_ms: if changed {
            now
        } else {
            previous.map_or(now, |p| p.last_change_ms)
        },
        last_apply_ms: now,
    };
    ctx.state.record(&rec, action.verb()).await
}
