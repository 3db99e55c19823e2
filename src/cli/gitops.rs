//! `reconcile gitops`: apply each new commit of a branch (see `gitops`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{StoreUrls, parse_duration};
use crate::controller::ControllerOptions;
use crate::gitops::{self, GitopsOptions};
use crate::progress::Progress;
use crate::store::commits::CommitStore;

/// Flags of `gitops`.
#[derive(Debug, Args)]
pub struct GitopsArgs {
    /// The repository: a local path, or a `file://` or `git://` URL.
    repo: String,
    /// The branch whose commits are applied.
    #[arg(long, default_value = "main")]
    branch: String,
    /// The spec folder inside the repository.
    #[arg(long, default_value = "specs")]
    path: String,
    /// Time between fetches.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    interval: Duration,
    /// Apply what is new, then exit: 0 when the last commit went live, 1 when it failed.
    #[arg(long)]
    once: bool,
    /// Where the mirror, the commits' work trees and relative SQLite stores live.
    #[arg(long, default_value = ".reconcile-gitops")]
    home: PathBuf,
    #[command(flatten)]
    stores: StoreUrls,
    /// Address of the controller's /metrics and /health; `off` for none.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: String,
    /// Resources applied at once (default: number of cores).
    #[arg(long)]
    parallelism: Option<usize>,
}

/// Runs `gitops` until SIGINT/SIGTERM, or once.
pub async fn run(args: GitopsArgs, quiet: bool) -> ExitCode {
    let parallelism = args
        .parallelism
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let opts = GitopsOptions {
        source: args.repo.clone(),
        branch: args.branch.clone(),
        path: args.path.clone(),
        interval: args.interval,
        once: args.once,
        home: args.home.clone(),
        controller: ControllerOptions {
            overrides: args.stores.overrides(),
            parallelism,
        },
        listen: (args.listen != "off").then(|| args.listen.clone()),
    };
    let stop = crate::shutdown::on_signals();
    let progress = Arc::new(Progress::long_running(quiet));
    match gitops::run(opts, stop, progress).await {
        Ok(Some(false)) if args.once => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::logging::with_causes(&e));
            ExitCode::from(1)
        }
    }
}

/// The `live:` line of `status`: the commit GitOps last made live, if any.
pub async fn live_line(stores: &crate::workspace::Stores) -> Option<String> {
    let store = CommitStore::new(stores.state.db.clone(), stores.state.project.clone());
    let live = store.live().await.ok()??;
    Some(format!(
        "live: {} {} ({}, {})",
        &live.sha[..live.sha.len().min(12)],
        live.subject,
        live.author,
        crate::store::format_ms(live.committed_ms)
    ))
}
