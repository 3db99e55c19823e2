//! `reconcile observability`: writes the Prometheus config, alert rules and
//! Grafana provisioning the specs call for (see [`crate::observe`]) into a
//! folder, for a Prometheus and Grafana run outside the controller. With an
//! `Observability` spec its settings apply; without one, the defaults.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::observe::Settings;
use crate::workspace::Workspace;

/// Arguments of `reconcile observability`.
#[derive(Debug, Args)]
pub struct ObservabilityArgs {
    /// Folder of specs (the project root).
    #[arg(default_value = "specs")]
    dir: PathBuf,
    /// Folder to write `prometheus/` and `grafana/` into (created if missing;
    /// only files an earlier run wrote there are ever removed).
    #[arg(long)]
    out: PathBuf,
}

/// Runs `reconcile observability`.
pub fn run(args: ObservabilityArgs) -> ExitCode {
    let ws = match Workspace::load(&args.dir) {
        Ok(ws) => ws,
        Err(e) => return super::report_error(&e, false),
    };
    let settings = Settings::of(&ws.set);
    let written = crate::observe::render(&ws.set, &settings).and_then(|tree| {
        let changed = tree.write(&args.out)?;
        Ok((tree, changed))
    });
    match written {
        Ok((tree, changed)) => {
            for path in tree.files.keys() {
                println!("{}", args.out.join(path).display());
            }
            eprintln!(
                "wrote {changed} of {} files to {} (settings: {})",
                tree.files.len(),
                args.out.display(),
                settings.source
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
