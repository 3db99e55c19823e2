//! `reconcile monitor …`: what monitors found, read from the state store —
//! the newest evaluation of one monitor as a table, JSON or a self-contained
//! HTML report, and its history (drift over time).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output;
use crate::store::format_ms;
use crate::store::monitors::{Evaluation, MonitorStore};
use crate::workspace::{StoreOverrides, Workspace};

/// Monitor commands.
#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// The newest evaluation of a monitor: one row per column {column, method,
    /// score, threshold, drifted} and the verdict.
    #[command(
        after_help = "Exit codes: 0 no drift, 3 the monitor fired, 1 error (or never evaluated)."
    )]
    Report {
        /// The monitor's name.
        name: String,
        #[command(flatten)]
        args: MonitorArgs,
        /// Also write the report as one self-contained HTML file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Every evaluation of a monitor, oldest first: when, windows, verdict.
    #[command(after_help = "Exit codes: 0 success, 1 error (text output: never evaluated).")]
    History {
        /// The monitor's name.
        name: String,
        #[command(flatten)]
        args: MonitorArgs,
        /// At most this many of the newest.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

/// Where the evaluations are.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    spec: super::SpecDir,
    /// State store URL (overrides the Project spec).
    #[arg(long, env = "RECONCILE_STATE")]
    state: Option<String>,
    /// Machine-readable output (schemas/output/monitor-{report,history}.json).
    #[arg(long)]
    json: bool,
}

/// Why a monitor command failed.
#[derive(Debug, thiserror::Error)]
enum MonitorCliError {
    #[error(transparent)]
    Workspace(#[from] crate::workspace::WorkspaceError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("monitor `{0}` has not been evaluated yet (run `reconcile apply`)")]
    NotEvaluated(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

async fn open(args: &MonitorArgs) -> Result<MonitorStore, MonitorCliError> {
    let ws = Workspace::load(&args.spec.path())?;
    let state = ws
        .open_state(&StoreOverrides {
            state: args.state.clone(),
            offline: None,
            online: None,
            base: None,
        })
        .await?;
    Ok(MonitorStore::new(state.db.clone(), state.project.clone()))
}

/// Runs a monitor subcommand.
pub async fn run(cmd: MonitorCommand) -> ExitCode {
    let result = match cmd {
        MonitorCommand::Report { name, args, html } => report(&name, &args, html).await,
        MonitorCommand::History { name, args, limit } => history(&name, &args, limit).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::logging::with_causes(&e));
            ExitCode::from(1)
        }
    }
}

async fn report(
    name: &str,
    args: &MonitorArgs,
    html_out: Option<PathBuf>,
) -> Result<ExitCode, MonitorCliError> {
    let store = open(args).await?;
    let e = store
        .latest(name)
        .await?
        .ok_or_else(|| MonitorCliError::NotEvaluated(name.to_string()))?;
    if let Some(path) = &html_out {
        let page = e.html();
        std::fs::write(path, page).map_err(|source| MonitorCliError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    if args.json {
        output::print(&output::MonitorReport {
            monitor: e.monitor.clone(),
            evaluated_at: output::rfc3339(e.evaluated_ms),
            reference: e.reference.clone(),
            current: e.current.clone(),
            drifted: e.drifted,
            summary: e.summary.clone(),
            columns: e.combined().columns.iter().map(Into::into).collect(),
            data: e.report.data.as_ref().map(Into::into),
            predictions: e.report.predictions.as_ref().map(Into::into),
            decay: e.report.decay.clone(),
        });
    } else {
        print_text(&e);
        if let Some(path) = &html_out {
            println!("\nHTML report written to {}", path.display());
        }
    }
    Ok(if e.drifted {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_text(e: &Evaluation) {
    println!(
        "monitor {}: {} ({})",
        e.monitor,
        if e.drifted { "FIRED" } else { "no drift" },
        format_ms(e.evaluated_ms)
    );
    println!("reference: {}\ncurrent:   {}", e.reference, e.current);
    let all = e.combined();
    if !all.columns.is_empty() {
        println!(
            "\n{:<44} {:<14} {:>10} {:>10}  DRIFTED",
            "COLUMN", "METHOD", "SCORE", "THRESHOLD"
        );
        for c in &all.columns {
            println!(
                "{:<44} {:<14} {:>10.4} {:>10}  {}",
                c.column,
                c.method.as_str(),
                c.score,
                c.threshold,
                if c.drifted { "yes" } else { "no" }
            );
        }
    }
    if let Some(d) = &e.report.decay {
        println!(
            "\ndecay of version {}: auc {:.4} on {} labels as of {} vs {:.4} at validation (max drop {}): {}",
            d.version,
            d.current_auc,
            d.rows,
            d.labels_as_of,
            d.validation_auc,
            d.max_auc_drop,
            if d.decayed { "decayed" } else { "holds" }
        );
    }
    println!("\n{}", e.summary);
}

async fn history(name: &str, args: &MonitorArgs, limit: i64) -> Result<ExitCode, MonitorCliError> {
    let store = open(args).await?;
    let rows = store.history(name, limit.max(1)).await?;
    if args.json {
        let out: Vec<output::MonitorEvaluation> = rows
            .iter()
            .map(|e| output::MonitorEvaluation {
                id: e.id,
                evaluated_at: output::rfc3339(e.evaluated_ms),
                reference: e.reference.clone(),
                current: e.current.clone(),
                drifted: e.drifted,
                summary: e.summary.clone(),
                columns: e.combined().columns.iter().map(Into::into).collect(),
            })
            .collect();
        output::print(&out);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        return Err(MonitorCliError::NotEvaluated(name.to_string()));
    }
    for e in &rows {
        println!(
            "{}  {:<8}  {} against {}: {}",
            format_ms(e.evaluated_ms),
            if e.drifted { "FIRED" } else { "quiet" },
            e.current,
            e.reference,
            e.summary
        );
    }
    Ok(ExitCode::SUCCESS)
}
