//! `reconcile models …`: the registry in the terminal (and as JSON): list
//! models, show a version, the promotion history, and a manual stage change —
//! which a Model spec that chooses Production will undo at the next apply.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output;
use crate::store::format_ms;
use crate::store::registry::{Cause, Registry, Stage, VersionInfo};
use crate::workspace::{StoreOverrides, Workspace};

/// Registry commands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every model: versions, the Production version and its metrics.
    #[command(after_help = super::EXIT_READ)]
    List(RegistryArgs),
    /// One version in full: `NAME` (its Production, else latest) or `NAME:VERSION`.
    #[command(after_help = super::EXIT_READ)]
    Show {
        /// `NAME` or `NAME:VERSION`.
        target: String,
        #[command(flatten)]
        args: RegistryArgs,
    },
    /// Every stage change of a model, with its cause and reason.
    #[command(after_help = super::EXIT_READ)]
    History {
        /// Model name.
        name: String,
        #[command(flatten)]
        args: RegistryArgs,
    },
    /// Set a version's stage by hand (recorded as a manual change).
    #[command(
        after_help = "Exit codes: 0 the stage was set, 1 refused (the Model's gates; see --force) or error."
    )]
    Stage {
        /// `NAME:VERSION`.
        target: String,
        /// None, Staging, Production or Archived.
        stage: String,
        /// Why, for the history.
        #[arg(long, default_value = "set by hand")]
        reason: String,
        /// Put a version into Production even though it fails the Model's
        /// `require` gates (the history records that it was forced).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        args: RegistryArgs,
    },
}

/// Where the registry is.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    #[command(flatten)]
    spec: super::SpecDir,
    /// State store URL (overrides the Project spec).
    #[arg(long, env = "RECONCILE_STATE")]
    state: Option<String>,
    /// Machine-readable output (schemas/output/models-{list,show,history}.json;
    /// `stage` prints text only).
    #[arg(long)]
    json: bool,
}

async fn open(args: &RegistryArgs) -> Result<Registry, String> {
    Ok(open_with_specs(args).await?.1)
}

/// The workspace (for the Model specs' gates) and its registry. Registry
/// commands start nothing, so they need no secrets.
async fn open_with_specs(args: &RegistryArgs) -> Result<(Workspace, Registry), String> {
    let ws = Workspace::load_without_secrets(&args.spec.path()).map_err(|e| e.to_string())?;
    let state = ws
        .open_state(&StoreOverrides {
            state: args.state.clone(),
            offline: None,
            online: None,
            base: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let registry = Registry::new(state.db.clone(), state.project.clone());
    Ok((ws, registry))
}

fn parse_target(target: &str) -> Result<(&str, Option<i64>), String> {
    match target.split_once(':') {
        None => Ok((target, None)),
        Some((name, v)) => v.parse::<i64>().map(|v| (name, Some(v))).map_err(|_| {
            format!("`{v}` is not a version number (write NAME:VERSION, e.g. churn:3)")
        }),
    }
}

fn metric(v: &VersionInfo, name: &str) -> String {
    v.metric(name)
        .map_or("-".to_string(), |m| format!("{m:.4}"))
}

/// Runs a models subcommand.
pub async fn run(cmd: ModelsCommand) -> ExitCode {
    let result = match cmd {
        ModelsCommand::List(args) => list(&args).await,
        ModelsCommand::Show { target, args } => show(&target, &args).await,
        ModelsCommand::History { name, args } => history(&name, &args).await,
        ModelsCommand::Stage {
            target,
            stage,
            reason,
            force,
            args,
        } => set_stage(&target, &stage, &reason, force, &args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn list(args: &RegistryArgs) -> Result<(), String> {
    let registry = open(args).await?;
    let state = registry.observe().await.map_err(|e| e.to_string())?;
    let mut names: Vec<&String> = state.keys().collect();
    names.sort();
    let rows: Vec<output::ModelRow> = names
        .iter()
        .map(|name| {
            let versions = &state[*name];
            let prod = versions.iter().find(|v| v.stage == Stage::Production);
            output::ModelRow {
                model: (*name).clone(),
                versions: versions.len(),
                latest: versions.last().map(|v| v.version),
                production: prod.map(|v| v.version),
                production_run: prod.map(|v| v.run.clone()),
                val_auc: prod.and_then(|v| v.metric("val_auc")),
            }
        })
        .collect();
    if args.json {
        output::print(&rows);
        return Ok(());
    }
    println!(
        "{:<24} {:>8} {:>7} {:>11} {:<18} {:>8}",
        "MODEL", "VERSIONS", "LATEST", "PRODUCTION", "RUN", "VAL_AUC"
    );
    for (name, r) in names.iter().zip(&rows) {
        let versions = &state[*name];
        let prod = versions.iter().find(|v| v.stage == Stage::Production);
        println!(
            "{:<24} {:>8} {:>7} {:>11} {:<18} {:>8}",
            name,
            versions.len(),
            r.latest.map_or("-".into(), |v| v.to_string()),
            prod.map_or("-".into(), |v| v.version.to_string()),
            prod.map_or("-", |v| v.run.as_str()),
            prod.map_or("-".into(), |v| metric(v, "val_auc")),
        );
    }
    if rows.is_empty() {
        println!("(no models registered yet: apply a TrainingRun)");
    }
    Ok(())
}

async fn show(target: &str, args: &RegistryArgs) -> Result<(), String> {
    let (name, version) = parse_target(target)?;
    let registry = open(args).await?;
    let versions = registry.versions(name).await.map_err(|e| e.to_string())?;
    if versions.is_empty() {
        return Err(format!("no model `{name}` in the registry"));
    }
    let v = match version {
        Some(n) => versions.iter().find(|v| v.version == n).ok_or_else(|| {
            format!(
                "model `{name}` has no version {n} (versions 1 to {})",
                versions.len()
            )
        })?,
        None => versions
            .iter()
            .find(|v| v.stage == Stage::Production)
            .or(versions.last())
            .ok_or_else(|| format!("no model `{name}`"))?,
    };
    if args.json {
        output::print(&output::ModelVersion::from(v));
        return Ok(());
    }
    println!("{} version {} ({})", v.model, v.version, v.stage);
    println!("  run            {}", v.run);
    println!("  algorithm      {}", v.algorithm);
    println!("  registered     {}", format_ms(v.created_ms));
    println!("  training time  {:.3} s", v.training_ms as f64 / 1000.0);
    println!("  identity       {}", v.identity);
    println!("  training set   {}", v.training_set_hash);
    println!("  artifact       {}", v.artifact_hash);
    println!("  trainer        {}", v.trainer);
    println!("  metrics (validation)");
    for m in crate::kinds::model::METRICS {
        println!("    {:<14} {}", m, metric(v, m));
    }
    if let Some(c) = v.metrics.get("confusion") {
        println!("    confusion      [[tn, fp], [fn, tp]] = {c}");
    }
    if let Some(inputs) = v.features.get("inputs").and_then(|f| f.as_array()) {
        println!("  features ({})", inputs.len());
        for f in inputs {
            println!(
                "    {:<40} {}",
                f["name"].as_str().unwrap_or("?"),
                f["type"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

async fn history(name: &str, args: &RegistryArgs) -> Result<(), String> {
    let registry = open(args).await?;
    let rows = registry.history(name).await.map_err(|e| e.to_string())?;
    if args.json {
        let out: Vec<output::StageChange> = rows.iter().map(Into::into).collect();
        output::print(&out);
        return Ok(());
    }
    if rows.is_empty() {
        println!("(no stage changes for `{name}`)");
    }
    for p in rows {
        println!(
            "{}  version {:<3} {:>10} → {:<10} {:<7} {}",
            format_ms(p.at_ms),
            p.version,
            p.from_stage,
            p.to_stage,
            p.cause,
            p.reason
        );
    }
    Ok(())
}

async fn set_stage(
    target: &str,
    stage: &str,
    reason: &str,
    force: bool,
    args: &RegistryArgs,
) -> Result<(), String> {
    let (name, version) = parse_target(target)?;
    let version = version.ok_or("write NAME:VERSION, e.g. churn:3")?;
    let stage = Stage::parse(stage).ok_or_else(|| {
        format!("`{stage}` is not a stage: use None, Staging, Production or Archived")
    })?;
    let (ws, registry) = open_with_specs(args).await?;
    let mut reason = reason.to_string();
    if stage == Stage::Production {
        let versions = registry.versions(name).await.map_err(|e| e.to_string())?;
        let failure = versions
            .iter()
            .find(|v| v.version == version)
            .and_then(|v| crate::kinds::model::gate_failure_in(&ws.set, name, v));
        match failure {
            Some(f) if !force => {
                return Err(format!(
                    "refusing to put {name} version {version} into Production: {f} \
                     (the Model's `require` gates); pass --force to do it anyway"
                ));
            }
            Some(f) => {
                eprintln!("warning: forced past the gates: {f}");
                reason = format!("{reason} (forced past the gates: {f})");
            }
            None => {}
        }
    }
    let from = registry
        .set_stage(name, version, stage, Cause::Manual, &reason)
        .await
        .map_err(|e| e.to_string())?;
    println!("{name} version {version}: {from} → {stage}");
    Ok(())
}
