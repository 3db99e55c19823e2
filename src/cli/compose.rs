//! `reconcile compose`: writes the project's containers as a docker compose
//! file (see [`crate::export::compose`]), to a file or to standard output, and with
//! `--build-images` builds the image the file names that no registry has:
//! `reconcile-serve:latest`, this very binary (docker Endpoints run it).

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
    /// Also build `reconcile-serve:latest` in the local Docker engine when an
    /// Endpoint runs in a container: the endpoint image holds this binary and
    /// is on no registry, so compose cannot pull it.
    #[arg(long)]
    build_images: bool,
}

/// Runs `reconcile compose`.
pub async fn run(args: ComposeArgs) -> ExitCode {
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
    let yaml = match crate::export::compose::render(&ws.set, &out_dir) {
        Ok(y) => y,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match &args.out {
        None => print!("{yaml}"),
        Some(out) => match std::fs::write(out, yaml) {
            Ok(()) => eprintln!("wrote {}", out.display()),
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", out.display());
                return ExitCode::from(1);
            }
        },
    }
    if args.build_images {
        let serve_image = format!("{}:latest", crate::container::SERVE_IMAGE);
        let names_it = crate::export::compose::compose_file(&ws.set, &out_dir).is_ok_and(|f| {
            f.services
                .values()
                .any(|s| s.image.as_deref() == Some(serve_image.as_str()))
        });
        if !names_it {
            eprintln!("no Endpoint runs in a container: no image to build");
            return ExitCode::SUCCESS;
        }
        match crate::runtime::containers::build_serve_image(&ws.docker).await {
            Ok(tag) => eprintln!(
                "built {tag}, tagged {}:latest",
                crate::container::SERVE_IMAGE
            ),
            Err(e) => {
                eprintln!(
                    "error: building the endpoint image: {}",
                    crate::logging::with_causes(&e)
                );
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
