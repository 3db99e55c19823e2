//! `reconcile watch`: converge on start, then again whenever a spec or a file
//! a resource reads changes (notify, debounced), and on a periodic resync that
//! heals drift nobody signalled. With `--serve` (`reconcile up`) the embedded
//! endpoints run in the same process and follow what each apply changes.
//!
//! One apply at a time: the loop runs a cycle to its end before it looks at
//! events again, so everything that arrived meanwhile is coalesced into one
//! next cycle (and the store's apply lock keeps other processes out). Events
//! are attributed by what the last good specs read (`kinds::reads`); files
//! nothing reads (the state store under `.reconcile/`, editor swap files) are
//! counted and ignored, so an apply's own writes never trigger another.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::EventKind as FsEvent;
use notify::RecursiveMode;
use notify::event::ModifyKind;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};

use super::{Controller, ControllerOptions, Cycle, EventKind, Trigger, canonical};
use crate::controller::metrics::ControllerMetrics;
use crate::controller::server;
use crate::progress::Progress;
use crate::serve::{ServeOptions, ServeStores};
use crate::shutdown::Stop;
use crate::spec::ResourceId;

/// Default quiet time after the last file event before a cycle starts: long
/// enough to take an editor's write-rename-chmod as one change, short enough
/// to feel immediate.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// What `watch` runs with.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The spec folder.
    pub dir: PathBuf,
    /// Stores and parallelism.
    pub controller: ControllerOptions,
    /// Period of the resync (`None`: events only).
    pub resync: Option<Duration>,
    /// Quiet time that ends a burst of file events.
    pub debounce: Duration,
    /// Also run the embedded endpoints (`--serve`, `reconcile up`).
    pub serve: Option<ServeOptions>,
    /// Address of the controller's `/metrics` (`None`: no listener).
    pub listen: Option<String>,
}

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The folder does not exist or is not a folder.
    #[error("`{0}` is not a folder")]
    NotAFolder(String),
    /// The file watcher could not start.
    #[error("cannot watch {dir}: {source}")]
    Notify {
        /// The folder.
        dir: String,
        /// Why.
        source: notify::Error,
    },
    /// The controller's listener could not start.
    #[error(transparent)]
    Server(#[from] server::ServerError),
}

/// Files under the spec folder that a change could concern.
#[derive(Default)]
struct Interest {
    /// `(pattern, resource)` of every file a resource reads.
    reads: Vec<(glob::Pattern, ResourceId)>,
}

impl Interest {
    fn of(controller: &Controller) -> Interest {
        let Some(live) = controller.live() else {
            return Interest::default();
        };
        let root = &live.ws.set.root;
        let reads = live
            .ws
            .set
            .resources
            .iter()
            .flat_map(|r| {
                crate::kinds::reads(r, root)
                    .into_iter()
                    .map(|p| (p, r.id.clone()))
            })
            .collect();
        Interest { reads }
    }

    /// What a changed path is about, and the resources that read it.
    fn classify(&self, root: &Path, path: &Path) -> (EventKind, Vec<ResourceId>) {
        let Ok(rel) = path.strip_prefix(root) else {
            return (EventKind::Ignored, Vec::new());
        };
        // Hidden folders and files (the state store's `.reconcile/`, `.git`,
        // editor files such as `.x.yaml.swp`) are never specs nor inputs.
        if rel
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
        {
            return (EventKind::Ignored, Vec::new());
        }
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let readers: Vec<ResourceId> = self
            .reads
            .iter()
            .filter(|(p, _)| p.matches_path_with(path, options))
            .map(|(_, id)| id.clone())
            .collect();
        if !readers.is_empty() {
            return (EventKind::Input, readers);
        }
        // A new folder is watched only once its creation is seen, so files
        // written into it before that make no event of their own: the folder
        // counts as a change, and the cycle finds its files on disk (a glob
        // is resolved again at every plan).
        if path.is_dir() {
            return (EventKind::Input, Vec::new());
        }
        let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml {
            (EventKind::Spec, Vec::new())
        } else {
            (EventKind::Ignored, Vec::new())
        }
    }
}

/// The endpoints served beside the controller, restarted when their specs change.
struct Serving {
    /// Canonical JSON of the Endpoint specs it was started with.
    specs: String,
    stop: Stop,
    task: tokio::task::JoinHandle<()>,
}

/// Watches `opts.dir` and converges until `stop` is cancelled.
pub async fn run(
    opts: WatchOptions,
    stop: Stop,
    progress: Arc<Progress>,
) -> Result<(), WatchError> {
    if !opts.dir.is_dir() {
        return Err(WatchError::NotAFolder(opts.dir.display().to_string()));
    }
    let root = canonical(&opts.dir);
    let metrics = Arc::new(ControllerMetrics::new());
    // The web UI on the controller's listener; `up` shows its endpoints there too.
    let ui = crate::ui::Ui::new(root.clone(), opts.controller.overrides.clone());
    let mut opts = opts;
    if let Some(serve) = &mut opts.serve {
        serve.ui = Some(ui.clone());
    }
    if let Some(addr) = &opts.listen {
        let bound = server::start_with_ui(addr, metrics.clone(), Some(ui), stop.clone()).await?;
        progress.line(&format!(
            "controller metrics on http://{bound}/metrics (web UI on http://{bound}/ui)"
        ));
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut debouncer = new_debouncer(opts.debounce, None, move |res: DebounceEventResult| {
        match res {
            Ok(events) => {
                // Reads (an apply hashing its inputs) are events too: only
                // what changes a file's content or existence counts.
                let paths: Vec<PathBuf> = events
                    .into_iter()
                    .filter(|e| {
                        matches!(e.event.kind, FsEvent::Create(_) | FsEvent::Remove(_))
                            || matches!(e.event.kind, FsEvent::Modify(m) if !matches!(m, ModifyKind::Metadata(_)))
                    })
                    .flat_map(|e| e.event.paths.clone())
                    .collect();
                if !paths.is_empty() {
                    let _ = tx.send(paths);
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!("file watcher: {e}");
                }
            }
        }
    })
    .map_err(|source| WatchError::Notify {
        dir: root.display().to_string(),
        source,
    })?;
    debouncer
        .watch(&root, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Notify {
            dir: root.display().to_string(),
            source,
        })?;

    let mut controller = Controller::new(
        opts.controller.clone(),
        stop.clone(),
        metrics.clone(),
        progress.clone(),
    );
    let resync = opts.resync.map_or(String::from("off"), |d| {
        humantime::format_duration(d).to_string()
    });
    progress.line(&format!(
        "watching {} (resync {resync}); SIGINT or SIGTERM stops",
        opts.dir.display()
    ));
    let mut serving: Option<Serving> = None;
    let mut last = controller.cycle(&root, Trigger::Start).await;
    let mut interest = Interest::of(&controller);
    if let Some(serve) = &opts.serve {
        restart_serving(&controller, serve, &stop, &mut serving).await;
    }
    status(&progress, &opts.dir, &last, opts.resync);
    let period = opts.resync.unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let mut next_resync = Instant::now() + period;
    loop {
        let trigger = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            batch = rx.recv() => {
                let Some(mut paths) = batch else { break };
                // Everything that arrived while the last cycle ran: one more cycle.
                while let Ok(more) = rx.try_recv() {
                    paths.extend(more);
                }
                if !report_changes(&progress, &metrics, &interest, &root, paths) {
                    continue;
                }
                Trigger::Change
            }
            () = tokio::time::sleep_until(next_resync.into()), if opts.resync.is_some() => {
                Trigger::Resync
            }
        };
        last = controller.cycle(&root, trigger).await;
        next_resync = Instant::now() + period;
        if !matches!(last, Cycle::Invalid(_)) {
            interest = Interest::of(&controller);
        }
        if let Some(serve) = &opts.serve {
            restart_serving(&controller, serve, &stop, &mut serving).await;
        }
        status(&progress, &opts.dir, &last, opts.resync);
    }
    progress.clear_status();
    progress.line("stopping: no apply in flight; endpoints finishing their requests");
    if let Some(s) = serving {
        s.stop.cancel();
        let _ = s.task.await;
    }
    controller.close().await;
    Ok(())
}

/// Prints the relevant paths of a batch; false when none is relevant.
fn report_changes(
    progress: &Progress,
    metrics: &ControllerMetrics,
    interest: &Interest,
    root: &Path,
    paths: Vec<PathBuf>,
) -> bool {
    let unique: BTreeSet<PathBuf> = paths.into_iter().collect();
    let mut shown: Vec<String> = Vec::new();
    let (mut specs, mut inputs, mut ignored) = (0u64, 0u64, 0u64);
    for path in &unique {
        let (kind, readers) = interest.classify(root, path);
        let rel = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        match kind {
            EventKind::Spec => {
                specs += 1;
                shown.push(rel);
            }
            EventKind::Input => {
                inputs += 1;
                if readers.is_empty() {
                    shown.push(format!("{rel}/ (folder)"));
                } else {
                    let who: Vec<String> = readers.iter().map(ToString::to_string).collect();
                    shown.push(format!("{rel} ({})", who.join(", ")));
                }
            }
            EventKind::Ignored => ignored += 1,
        }
    }
    metrics.events(EventKind::Spec, specs);
    metrics.events(EventKind::Input, inputs);
    metrics.events(EventKind::Ignored, ignored);
    if shown.is_empty() {
        return false;
    }
    let more = match shown.len().saturating_sub(3) {
        0 => String::new(),
        n => format!(" +{n} more"),
    };
    shown.truncate(3);
    progress.line(&format!("changed: {}{more}", shown.join(", ")));
    true
}

/// Starts the endpoints once the specs loaded, and restarts them when the
/// Endpoint specs or the stores change. A failed start is reported and tried
/// again after the next cycle.
async fn restart_serving(
    controller: &Controller,
    serve: &ServeOptions,
    stop: &Stop,
    serving: &mut Option<Serving>,
) {
    let Some(live) = controller.live() else {
        return;
    };
    let endpoints: Vec<serde_json::Value> = live
        .ws
        .set
        .specs::<crate::kinds::endpoint::Endpoint>()
        .map(|(_, e)| serde_json::to_value(e).unwrap_or_default())
        .collect();
    let specs = serde_json::json!({"endpoints": endpoints, "stores": live.key}).to_string();
    if serving
        .as_ref()
        .is_some_and(|s| s.specs == specs && !s.task.is_finished())
    {
        return;
    }
    if let Some(old) = serving.take() {
        controller
            .progress()
            .line("endpoint specs changed: restarting the endpoints");
        old.stop.cancel();
        let _ = old.task.await;
    }
    if endpoints.is_empty() {
        return;
    }
    let child = stop.child_token();
    let set = live.ws.set.clone();
    let stores = ServeStores::of(&live.stores);
    let opts = serve.clone();
    let progress_lines = controller.progress.clone();
    let task_stop = child.clone();
    let task = tokio::spawn(async move {
        let result = crate::serve::run(&set, stores, &opts, task_stop, |s, addr| {
            let model = s.model.load();
            let what = match model.as_ref() {
                Some(m) => format!("{} version {}", m.info.model, m.info.version),
                None => format!("{} (no Production version yet)", s.model_name),
            };
            progress_lines.line(&format!(
                "Endpoint/{} serving {what} on http://{addr}",
                s.name
            ));
        })
        .await;
        if let Err(e) = result {
            progress_lines.line(&format!("error: endpoints stopped: {e}"));
        }
    });
    *serving = Some(Serving {
        specs,
        stop: child,
        task,
    });
}

/// The TTY status line: what the last cycle did and when the next resync is.
fn status(progress: &Progress, dir: &Path, last: &Cycle, resync: Option<Duration>) {
    if !progress.is_live() {
        return;
    }
    let at = chrono::Local::now().format("%H:%M:%S");
    let what = match last {
        Cycle::Invalid(problems) => {
            format!("specs invalid ({} problem(s)) at {at}", problems.len())
        }
        Cycle::NoChanges => format!("up to date at {at}"),
        Cycle::Converged(n) => format!("{n} converged at {at}"),
        Cycle::Failed {
            failed, blocked, ..
        } => {
            format!("{failed} failed, {blocked} blocked at {at}")
        }
        Cycle::Error(_) => format!("store error at {at}"),
        Cycle::Interrupted => "interrupted".to_string(),
    };
    let resync = resync.map_or(String::new(), |d| {
        format!(" · resync every {}", humantime::format_duration(d))
    });
    progress.set_status(&format!("watching {} · {what}{resync}", dir.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_unread_files_are_ignored() {
        let root = Path::new("/p/specs");
        let interest = Interest {
            reads: vec![(
                crate::kinds::read_pattern(root, "data/*/users.csv").expect("pattern"),
                ResourceId::new(crate::kinds::Kind::parse("Table").expect("a kind"), "users"),
            )],
        };
        let kind = |p: &str| interest.classify(root, Path::new(p)).0;
        assert_eq!(kind("/p/specs/data/2024-03-31/users.csv"), EventKind::Input);
        assert_eq!(kind("/p/specs/tables/users.yaml"), EventKind::Spec);
        assert_eq!(kind("/p/specs/.reconcile/state.db-wal"), EventKind::Ignored);
        assert_eq!(kind("/p/specs/tables/.users.yaml.swp"), EventKind::Ignored);
        assert_eq!(
            kind("/p/specs/data/2024-03-31/notes.txt"),
            EventKind::Ignored
        );
        assert_eq!(kind("/elsewhere/x.yaml"), EventKind::Ignored);
    }

    #[test]
    fn read_patterns_resolve_parent_folders() {
        let p = crate::kinds::read_pattern(Path::new("/p/specs/tables"), "../data/*/users.csv")
            .expect("pattern");
        assert!(p.matches_path(Path::new("/p/specs/data/2024-01-31/users.csv")));
        assert!(!p.matches_path(Path::new("/p/specs/tables/data/x/users.csv")));
    }
}
