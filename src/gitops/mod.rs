//! `reconcile gitops`: apply each new commit of a branch. The source (a local
//! path or a git URL) is mirrored into the GitOps home, fetched every
//! interval; each new commit, oldest first, is checked out into a work tree
//! of its own and applied as `apply` would, by the same controller cycle as
//! `watch`. Its outcome is recorded in the state store: the live commit is the
//! newest that converged; a commit that fails (bad specs, a failed resource)
//! is recorded with its errors and what ran before keeps running, until a
//! later commit (a fix, a revert) converges.
//!
//! The stores stay in one place across commits: relative SQLite paths of the
//! Project spec resolve against the home, not the commit's work tree.

pub mod repo;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::controller::metrics::ControllerMetrics;
use crate::controller::{Controller, ControllerOptions, Cycle, Trigger, server};
use crate::progress::Progress;
use crate::shutdown::Stop;
use crate::store::commits::CommitStore;
use repo::{CommitInfo, GitError, Mirror};

/// Work trees kept besides the live one (for looking at what failed).
const KEEP_TREES: usize = 3;

/// What `gitops` runs with.
#[derive(Debug, Clone)]
pub struct GitopsOptions {
    /// A local path or a git URL (`file://`, `git://`).
    pub source: String,
    /// The branch whose commits are applied.
    pub branch: String,
    /// The spec folder inside the repository.
    pub path: String,
    /// Time between fetches.
    pub interval: Duration,
    /// Apply what is new once and exit.
    pub once: bool,
    /// Where the mirror, the work trees and relative SQLite stores live.
    pub home: PathBuf,
    /// Stores and parallelism.
    pub controller: ControllerOptions,
    /// Address of the controller's `/metrics` (`None`: no listener).
    pub listen: Option<String>,
}

/// Why GitOps could not run.
#[derive(Debug, thiserror::Error)]
pub enum GitopsError {
    /// A git step failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The controller's listener could not start.
    #[error(transparent)]
    Server(#[from] server::ServerError),
    /// A blocking git task was lost.
    #[error("a git task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The home folder could not be written.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The outcome of the last commit applied: `Some(true)` live, `Some(false)`
/// failed, `None` nothing new.
pub type LastOutcome = Option<bool>;

/// Applies new commits until `stop` (or once, with `opts.once`).
pub async fn run(
    mut opts: GitopsOptions,
    stop: Stop,
    progress: Arc<Progress>,
) -> Result<LastOutcome, GitopsError> {
    std::fs::create_dir_all(&opts.home).map_err(|source| GitopsError::Io {
        what: format!("creating {}", opts.home.display()),
        source,
    })?;
    opts.home = crate::controller::canonical(&opts.home);
    opts.source = absolute_if_local(&opts.source);
    opts.controller.overrides.base = Some(opts.home.clone());
    let metrics = Arc::new(ControllerMetrics::new());
    if let Some(addr) = &opts.listen {
        let bound = server::start(addr, metrics.clone(), stop.clone()).await?;
        progress.line(&format!("controller metrics on http://{bound}/metrics"));
    }
    let mut controller = Controller::new(
        opts.controller.clone(),
        stop.clone(),
        metrics.clone(),
        progress.clone(),
    );
    progress.line(&format!(
        "following {} branch {} (specs in {}/){}",
        crate::spec::env::redact_url(&opts.source),
        opts.branch,
        opts.path,
        if opts.once {
            String::new()
        } else {
            format!(", every {}", humantime::format_duration(opts.interval))
        }
    ));
    let mut last: LastOutcome = None;
    loop {
        match poll(&opts, &stop, &mut controller, &progress, &metrics).await {
            Ok(Some(outcome)) => last = Some(outcome),
            Ok(None) => {}
            Err(e) if opts.once => {
                controller.close().await;
                return Err(e);
            }
            Err(e) => progress.line(&format!(
                "error: {}; trying again in {}",
                crate::logging::with_causes(&e),
                humantime::format_duration(opts.interval)
            )),
        }
        if opts.once || stop.is_cancelled() {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(opts.interval) => {}
        }
    }
    controller.close().await;
    Ok(last)
}

/// One fetch and the new commits it brought, applied in order.
async fn poll(
    opts: &GitopsOptions,
    stop: &Stop,
    controller: &mut Controller,
    progress: &Progress,
    metrics: &ControllerMetrics,
) -> Result<LastOutcome, GitopsError> {
    let since = read_marker(&opts.home);
    let (mirror_path, source, branch) = (
        opts.home.join("mirror.git"),
        opts.source.clone(),
        opts.branch.clone(),
    );
    let commits: Vec<CommitInfo> = tokio::task::spawn_blocking(move || {
        let mirror = Mirror::open(&mirror_path, &source, &branch)?;
        let head = mirror.fetch()?;
        let since = since.as_deref().and_then(repo::parse_oid);
        mirror
            .new_commits(since, head)?
            .into_iter()
            .map(|oid| mirror.info(oid))
            .collect::<Result<Vec<_>, GitError>>()
    })
    .await??;
    let mut last = None;
    for commit in commits {
        if stop.is_cancelled() {
            break;
        }
        let live = apply_commit(opts, controller, progress, metrics, &commit).await?;
        last = Some(live);
        write_marker(&opts.home, &commit.sha)?;
    }
    Ok(last)
}

/// Checks a commit out, applies it, records the outcome; true when it went live.
async fn apply_commit(
    opts: &GitopsOptions,
    controller: &mut Controller,
    progress: &Progress,
    metrics: &ControllerMetrics,
    commit: &CommitInfo,
) -> Result<bool, GitopsError> {
    progress.line(&format!(
        "commit {} {} ({})",
        commit.short(),
        commit.subject,
        commit.author
    ));
    let trees = opts.home.join("trees");
    let tree = trees.join(&commit.sha);
    if !tree.exists() {
        let (mirror_path, source, branch, oid, dir) = (
            opts.home.join("mirror.git"),
            opts.source.clone(),
            opts.branch.clone(),
            commit.sha.clone(),
            tree.clone(),
        );
        std::fs::create_dir_all(&trees).map_err(|source| GitopsError::Io {
            what: format!("creating {}", trees.display()),
            source,
        })?;
        tokio::task::spawn_blocking(move || {
            let mirror = Mirror::open(&mirror_path, &source, &branch)?;
            let oid = repo::parse_oid(&oid).ok_or_else(|| GitError::BadId(oid.clone()))?;
            mirror.checkout(oid, &dir)
        })
        .await??;
    }
    let specs = tree.join(&opts.path);
    let cycle = if specs.is_dir() {
        controller.cycle(&specs, Trigger::Commit).await
    } else {
        let problem = format!(
            "commit {} has no folder `{}` (pass --path)",
            commit.short(),
            opts.path
        );
        progress.line(&format!("error: {problem}"));
        Cycle::Invalid(vec![problem])
    };
    let (live, message) = match &cycle {
        Cycle::NoChanges => (true, "no changes".to_string()),
        Cycle::Converged(n) => (true, format!("applied: {n} converged")),
        Cycle::Invalid(problems) => (
            false,
            format!(
                "specs invalid ({} problem(s)):\n{}",
                problems.len(),
                problems.join("\n")
            ),
        ),
        Cycle::Failed {
            failed,
            blocked,
            messages,
        } => (
            false,
            format!(
                "apply incomplete: {failed} failed, {blocked} blocked:\n{}",
                messages.join("\n")
            ),
        ),
        Cycle::Error(e) => (false, format!("error: {e}")),
        Cycle::Interrupted => (false, "interrupted".to_string()),
    };
    // Recorded in the stores of the specs that loaded last: this commit's, or
    // the live commit's when this one's do not load.
    let store = match controller.live() {
        Some(l) => Some(CommitStore::new(
            l.stores.state.db.clone(),
            l.stores.state.project.clone(),
        )),
        None => live_commit_store(opts).await,
    };
    match store {
        Some(store) => {
            if let Err(e) = store
                .record(
                    &commit.sha,
                    &commit.subject,
                    &commit.author,
                    commit.time_ms,
                    live,
                    &message,
                )
                .await
            {
                progress.line(&format!(
                    "error: cannot record commit {}: {e}",
                    commit.short()
                ));
            }
        }
        None => progress.line(&format!(
            "commit {} not recorded: no commit's specs have loaded yet, so there is no state store",
            commit.short()
        )),
    }
    if live {
        metrics.live_commit(&commit.sha, &opts.branch);
        progress.line(&format!("live: {} {}", commit.short(), commit.subject));
        write_file(&opts.home, LIVE_MARKER, &commit.sha)?;
        prune_trees(&opts.home.join("trees"), &commit.sha);
    } else {
        progress.line(&format!(
            "commit {} failed; the live commit stays",
            commit.short()
        ));
    }
    Ok(live)
}

/// Removes work trees beyond the newest few, never the live one.
fn prune_trees(trees: &Path, live: &str) {
    let Ok(entries) = std::fs::read_dir(trees) else {
        return;
    };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy() != live)
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort();
    let excess = dirs.len().saturating_sub(KEEP_TREES);
    for (_, d) in dirs.into_iter().take(excess) {
        // An old work tree left behind costs disk only; nothing to report.
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The file naming the last commit handled, so a restart goes on from it.
const LAST_MARKER: &str = "last-commit";
/// The file naming the live commit, whose work tree is always kept.
const LIVE_MARKER: &str = "live-commit";

fn read_marker(home: &Path) -> Option<String> {
    std::fs::read_to_string(home.join(LAST_MARKER)).ok()
}

fn write_marker(home: &Path, sha: &str) -> Result<(), GitopsError> {
    write_file(home, LAST_MARKER, sha)
}

/// Writes `name` in the home whole (a temporary file renamed into place).
fn write_file(home: &Path, name: &str, text: &str) -> Result<(), GitopsError> {
    let tmp = home.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, home.join(name)))
        .map_err(|source| GitopsError::Io {
            what: format!("writing {}", home.join(name).display()),
            source,
        })
}

/// The commit store of the live commit's specs, for a commit whose own
/// specs do not load in a process that has loaded none yet.
async fn live_commit_store(opts: &GitopsOptions) -> Option<CommitStore> {
    let sha = std::fs::read_to_string(opts.home.join(LIVE_MARKER)).ok()?;
    let specs = opts.home.join("trees").join(sha.trim()).join(&opts.path);
    let ws = crate::workspace::Workspace::load(&specs).ok()?;
    let state = ws.open_state(&opts.controller.overrides).await.ok()?;
    Some(CommitStore::new(state.db, state.project))
}

/// A local source as an absolute path (libgit2 resolves relative paths
/// against its own repository); URLs as they are.
fn absolute_if_local(source: &str) -> String {
    if source.contains("://") {
        return source.to_string();
    }
    let p = Path::new(source);
    if p.exists() {
        crate::controller::canonical(p).display().to_string()
    } else {
        source.to_string()
    }
}
