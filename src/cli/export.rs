//! `reconcile export`: the project's containers for another tool to run.
//! `export kubernetes` writes Kubernetes manifests and the project image's
//! Dockerfile (see [`crate::export::kubernetes`]); `reconcile compose` is the
//! compose export.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::workspace::Workspace;

/// The targets of `reconcile export`.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Kubernetes manifests (API 1.37): a Deployment and Service per Service
    /// and docker Endpoint, ConfigMaps of mounted folders, claims of named
    /// volumes, `${VAR}`s as Secret references, and a Job running
    /// `reconcile apply --no-containers`; plus the project image's Dockerfile.
    #[command(visible_alias = "k8s", after_help = super::EXIT_READ)]
    Kubernetes(KubernetesArgs),
}

/// Arguments of `reconcile export kubernetes`.
#[derive(Debug, Args)]
pub struct KubernetesArgs {
    /// Folder of specs (the project root).
    #[arg(default_value = "specs")]
    dir: PathBuf,
    /// Folder to write `<project>.yaml` and `Dockerfile` into (created if
    /// missing); not inside the specs' folder, whose YAML files are all specs.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `reconcile export …`.
pub fn run(cmd: ExportCommand) -> ExitCode {
    match cmd {
        ExportCommand::Kubernetes(args) => kubernetes(args),
    }
}

fn kubernetes(args: KubernetesArgs) -> ExitCode {
    // Nothing is resolved: `${VAR}`s stay Secret references, so an unset
    // variable is no problem here.
    let ws = match Workspace::load_without_secrets(&args.dir) {
        Ok(ws) => ws,
        Err(e) => return super::report_error(&e, false),
    };
    match crate::export::kubernetes::write(&ws.set, &args.out) {
        Ok(paths) => {
            for p in paths {
                eprintln!("wrote {}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", crate::logging::with_causes(&e));
            ExitCode::from(1)
        }
    }
}
