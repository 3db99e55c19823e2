//! `reconcile init [DIR]`: writes a minimal commented project a new user can
//! start from — a Project, one Entity, one Table over a tiny CSV and one
//! FeatureView — that passes `validate` and `apply` as written. It never
//! overwrites: when any of its files exists, nothing is written.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

/// Arguments of `reconcile init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder to write the project into (created if missing).
    #[arg(default_value = "specs")]
    dir: PathBuf,
}

/// Why `init` wrote nothing (or not everything).
#[derive(Debug, thiserror::Error)]
enum InitError {
    #[error("{} already exists; init never overwrites (nothing was written)", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const PROJECT: &str = r#"# A reconcile project: every *.yaml under this folder is a spec.
# `reconcile validate DIR` checks them, `reconcile plan DIR` shows what would
# change and `reconcile apply DIR` converges the stores.
kind: Project
name: quickstart
description: A minimal project written by `reconcile init`.
# The state (and, by default, offline and online) store: an embedded SQLite
# file beside this spec. Point it at postgres://user@host:5432/db to share it.
state: sqlite://.reconcile/state.db
"#;

const FEATURES: &str = r#"# An entity names what features describe and the key that identifies it.
kind: Entity
name: user
description: A user of the product.
joinKeys: [user_id]
---
# A table: typed columns loaded from snapshot CSVs, validated before they are
# stored. The wildcard part of the glob names each snapshot's as-of date.
kind: Table
name: users
description: One row per user per snapshot.
primaryKey: [user_id]
columns:
  user_id: string
  age: int
  plan: string
snapshots: { glob: "data/*/users.csv" }   # data/2024-01-31/users.csv, …
expect:
  - notNull: [user_id, age]
  - unique: [user_id]
  - between: { column: age, min: 0, max: 130 }
  - inSet: { column: plan, values: [free, pro] }
---
# A feature view: some columns of a table, per entity, valid for `ttl` after
# their snapshot. `online: true` also materializes the latest values into the
# online store (`reconcile features get user u1 DIR`).
kind: FeatureView
name: user_profile
description: Age and plan of each user.
entity: user
table: users
features: [age, plan]
ttl: 90d
online: true
"#;

const CSV: &str = "user_id,age,plan\nu1,34,pro\nu2,27,free\nu3,45,free\n";

/// The files `init` writes, relative to its folder.
fn files() -> [(&'static str, &'static str); 3] {
    [
        ("project.yaml", PROJECT),
        ("features.yaml", FEATURES),
        ("data/2024-01-31/users.csv", CSV),
    ]
}

fn write_all(dir: &Path) -> Result<Vec<PathBuf>, InitError> {
    let targets: Vec<(PathBuf, &str)> = files()
        .iter()
        .map(|(rel, text)| (dir.join(rel), *text))
        .collect();
    if let Some((path, _)) = targets.iter().find(|(p, _)| p.exists()) {
        return Err(InitError::Exists(path.clone()));
    }
    let mut written = Vec::new();
    for (path, text) in targets {
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // create_new: a file that appeared since the check is not overwritten either.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            f.write_all(text.as_bytes())
        };
        write(&path).map_err(|source| InitError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Runs `reconcile init`.
pub fn run(args: InitArgs) -> ExitCode {
    match write_all(&args.dir) {
        Ok(written) => {
            for p in &written {
                println!("wrote {}", p.display());
            }
            let d = args.dir.display();
            println!("\nNext: reconcile validate {d} && reconcile plan {d} && reconcile apply {d}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", crate::logging::with_causes(&e));
            ExitCode::from(1)
        }
    }
}
