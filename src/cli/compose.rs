//! `reconcile compose`: writes the project's containers as a docker compose
//! file (see [`crate::compose`]), to a file or to standard output.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::workspace::Workspace;

/// Arguments of `reconcile compose`.
#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// Folder of specs (the project root).
    #[arg(default_value = "specs")]
    dir: PathBuf,
    /// Write the compose file here (default: standard output). Paths in it are
    /// relative to this file's folder (or to the current folder for standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `reconcile compose`.
pub fn run(args: ComposeArgs) -> ExitCode {
    let ws = match Workspace::load(&args.dir) {
        Ok(ws) => ws,
        Err(e) => return super::report_error(&e, false),
    };
    let folder = match &args.out {
        Some(out) => match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
        None => PathBuf::from("."),
    };
    // Canonical, like the spec root, so relative paths between them are exact.
    let out_dir = match folder.canonicalize() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: output folder {}: {e}", folder.display());
            return ExitCode::from(1);
        }
    };
    let yaml = match crate::compose::render(&ws.set, &out_dir) {
        Ok(y) => y,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match &args.out {
        None => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Some(out) => match std::fs::write(out, yaml) {
            Ok(()) => {
                eprintln!("wrote {}", out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", out.display());
                ExitCode::from(1)
            }
        },
    }
}
