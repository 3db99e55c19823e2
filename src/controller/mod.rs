//! The long-running controller: the same pipeline as `reconcile apply`, run
//! again whenever something may have changed — a file under the spec folder
//! (`watch`), a timer (the resync that heals drift nobody signalled), or a new
//! commit (`gitops`). Level-triggered as everything else: a cycle never asks
//! what changed, it loads the specs, plans against what exists and converges.
//!
//! A cycle that cannot load the specs changes nothing (the last good state
//! keeps running); one that fails part way leaves each resource as the engine
//! left it (a failed table keeps its previous snapshots). The stores stay open
//! across cycles while the specs keep naming the same ones.

pub mod metrics;
pub mod server;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::diag;
use crate::plan::{Plan, PlanOptions};
use crate::progress::Progress;
use crate::shutdown::Stop;
use crate::store::state::Condition;
use crate::workspace::{StoreOverrides, Stores, Workspace, WorkspaceError};
pub use metrics::{ApplyOutcome, ControllerMetrics, EventKind, Trigger};

/// How long a cycle waits for another process's apply to release the lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// What the controller is told to run with.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Store URLs given on the command line.
    pub overrides: StoreOverrides,
    /// Resources applied at once.
    pub parallelism: usize,
}

/// The specs that loaded last and the stores they opened.
pub struct Live {
    /// The workspace of the last specs that loaded.
    pub ws: Workspace,
    /// Its open stores.
    pub stores: Stores,
    /// Which stores those are (URLs and the folder relative paths resolve in).
    key: String,
}

/// How one cycle ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cycle {
    /// The specs did not load; nothing was changed. One line per problem
    /// (`file:line:column: message`).
    Invalid(Vec<String>),
    /// Everything was already as the specs say.
    NoChanges,
    /// Something was changed and everything converged.
    Converged(usize),
    /// Some resources failed or were blocked (the rest converged).
    Failed {
        /// Failed resources.
        failed: usize,
        /// Resources blocked by a failure.
        blocked: usize,
        /// Why, one line per resource.
        messages: Vec<String>,
    },
    /// A store or an input could not be read.
    Error(String),
    /// The stop token interrupted the apply; running work was rolled back.
    Interrupted,
}

impl Cycle {
    /// The metric outcome of this cycle.
    pub fn outcome(&self) -> ApplyOutcome {
        match self {
            Cycle::Invalid(_) => ApplyOutcome::Invalid,
            Cycle::NoChanges | Cycle::Converged(_) => ApplyOutcome::Success,
            Cycle::Failed { .. } => ApplyOutcome::Failed,
            Cycle::Error(_) => ApplyOutcome::Error,
            Cycle::Interrupted => ApplyOutcome::Interrupted,
        }
    }
}

/// Runs cycles and keeps what they share: the stores, the metrics, the output.
pub struct Controller {
    opts: ControllerOptions,
    stop: Stop,
    metrics: Arc<ControllerMetrics>,
    progress: Arc<Progress>,
    live: Option<Live>,
}

impl Controller {
    /// A controller that reports on `progress` and stops with `stop`.
    pub fn new(
        opts: ControllerOptions,
        stop: Stop,
        metrics: Arc<ControllerMetrics>,
        progress: Arc<Progress>,
    ) -> Controller {
        Controller {
            opts,
            stop,
            metrics,
            progress,
            live: None,
        }
    }

    /// The specs and stores of the last cycle whose specs loaded.
    pub fn live(&self) -> Option<&Live> {
        self.live.as_ref()
    }

    /// Where output goes.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The metrics every cycle updates.
    pub fn metrics(&self) -> &Arc<ControllerMetrics> {
        &self.metrics
    }

    /// One pass over the specs in `dir`: load, plan, converge, report.
    pub async fn cycle(&mut self, dir: &Path, trigger: Trigger) -> Cycle {
        let t0 = Instant::now();
        let cycle = self.run_cycle(dir, t0).await;
        let seconds = t0.elapsed().as_secs_f64();
        self.metrics.applied(trigger, cycle.outcome(), seconds);
        if let Some(live) = &self.live
            && let Ok(records) = live.stores.state.load_all().await
        {
            let mut counts: Vec<(Condition, i64)> = Vec::new();
            for r in records.values() {
                match counts.iter_mut().find(|(c, _)| *c == r.condition) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((r.condition, 1)),
                }
            }
            self.metrics.resources(&counts);
        }
        cycle
    }

    async fn run_cycle(&mut self, dir: &Path, t0: Instant) -> Cycle {
        let ws = match Workspace::load(dir) {
            Ok(ws) => ws.with_stop(self.stop.clone()),
            Err(WorkspaceError::Specs(diags)) => {
                self.progress.line(diag::render(&diags).trim_end());
                self.progress.line(&format!(
                    "specs invalid: {} problem(s); nothing changed, the last good specs keep running",
                    diags.len()
                ));
                return Cycle::Invalid(diags.iter().map(|d| d.short()).collect());
            }
            Err(e) => return self.error(&e),
        };
        match ws.start_store_services(&self.opts.overrides).await {
            Ok(started) => {
                for s in started {
                    self.progress.line(&format!("store service {s}"));
                }
            }
            Err(e) => return self.error(&e),
        }
        let key = stores_key(&ws, &self.opts.overrides);
        let stores = match self.live.take() {
            Some(live) if live.key == key => live.stores,
            previous => {
                if let Some(p) = previous {
                    p.stores.state.db.close().await;
                }
                match ws.open_stores(&self.opts.overrides).await {
                    Ok(s) => s,
                    Err(e) => return self.error(&WorkspaceError::Store(e)),
                }
            }
        };
        let progress = self.progress.clone();
        let result = ws
            .apply(
                &stores,
                &PlanOptions::default(),
                self.opts.parallelism,
                LOCK_WAIT,
                &progress,
                |round, plan| {
                    if plan.has_changes() {
                        progress.line(&summary(round, plan));
                    }
                },
            )
            .await;
        self.live = Some(Live { ws, stores, key });
        let (plan, report) = match result {
            Ok(v) => v,
            Err(e) => return self.error(&e),
        };
        let ms = t0.elapsed().as_millis();
        if report.interrupted {
            self.progress
                .line("apply interrupted: running work rolled back");
            return Cycle::Interrupted;
        }
        if !plan.has_changes() {
            tracing::debug!("no changes ({ms} ms)");
            return Cycle::NoChanges;
        }
        let converged = report
            .outcomes
            .iter()
            .filter(|o| o.condition == Condition::Ready)
            .count();
        if report.success() {
            self.progress.line(&format!(
                "applied: {converged} converged in {} round(s) ({ms} ms)",
                report.rounds
            ));
            return Cycle::Converged(converged);
        }
        let messages: Vec<String> = report
            .outcomes
            .iter()
            .filter(|o| o.condition != Condition::Ready)
            .map(|o| {
                format!(
                    "{} {}: {}",
                    o.condition,
                    o.id,
                    o.message.lines().next().unwrap_or_default()
                )
            })
            .chain(report.object_failures.iter().cloned())
            .collect();
        self.progress.line(&format!(
            "apply incomplete: {converged} converged, {} failed, {} blocked ({ms} ms); what ran before keeps running",
            report.failed(),
            report.blocked()
        ));
        Cycle::Failed {
            failed: report.failed(),
            blocked: report.blocked(),
            messages,
        }
    }

    fn error(&self, e: &WorkspaceError) -> Cycle {
        let text = crate::logging::with_causes(e);
        self.progress.line(&format!("error: {text}"));
        Cycle::Error(text)
    }

    /// Closes the stores.
    pub async fn close(self) {
        if let Some(live) = self.live {
            live.stores.state.db.close().await;
        }
    }
}

/// Which stores a workspace opens: equal keys, same stores.
fn stores_key(ws: &Workspace, overrides: &StoreOverrides) -> String {
    let p = &ws.set.project;
    let url = |u: &Option<crate::spec::SpannedStr>| u.as_ref().map(|s| s.value.clone());
    serde_json::json!({
        "state": url(&p.state), "offline": url(&p.offline), "online": url(&p.online),
        "dir": ws.set.project_dir, "project": p.name.value,
        "overrides": [&overrides.state, &overrides.offline, &overrides.online],
        "base": overrides.base,
    })
    .to_string()
}

/// One line per round: what will change, with the first reason of each.
fn summary(round: usize, plan: &Plan) -> String {
    let changes: Vec<String> = plan
        .resources
        .iter()
        .filter(|r| r.action != crate::plan::Action::NoOp)
        .map(|r| match r.reasons.first() {
            Some(why) => format!("{} ({why})", r.id),
            None => r.id.to_string(),
        })
        .collect();
    let shown = changes.len().min(4);
    let more = match changes.len() - shown {
        0 => String::new(),
        n => format!("; +{n} more"),
    };
    let round = if round > 1 {
        format!(" (round {round})")
    } else {
        String::new()
    };
    format!(
        "plan{round}: {} to change: {}{more}",
        changes.len(),
        changes[..shown].join("; ")
    )
}

/// The canonical form of a folder given on the command line.
pub fn canonical(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}
