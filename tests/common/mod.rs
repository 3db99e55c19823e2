//! Shared helpers for integration tests: temporary copies of the example specs,
//! running the real binary, and a fresh PostgreSQL database per test.
#![allow(dead_code, unused_macros)]

/// Generates `sqlite::NAME` and `postgres::NAME` tests from `async fn NAME(backend: &str)`.
macro_rules! on_both_backends {
    ($($name:ident),*) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name("sqlite").await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name("postgres").await })*
        }
    };
}

pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's `specs/` folder.
pub fn example_specs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("specs")
}

/// Copies a folder recursively, skipping hidden entries (such as `.reconcile`).
pub fn copy_dir(from: &Path, to: &Path) {
    copy_dir_except(from, to, &[]);
}

/// The example's monitor: it retrains churn-rf on the February data, so tests
/// of training, promotion and serving leave it out to count versions exactly.
pub const MONITOR_SPEC: &str = "monitoring.yaml";

/// Copies a folder recursively, skipping hidden entries and the names in `skip`.
pub fn copy_dir_except(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || skip.iter().any(|s| name == **s) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().expect("file type").is_dir() {
            copy_dir_except(&entry.path(), &target, skip);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A temporary project holding a copy of the example specs.
pub struct Project {
    /// Keeps the folder alive.
    pub dir: tempfile::TempDir,
    /// `<dir>/specs`.
    pub specs: PathBuf,
    /// Extra arguments selecting the stores (empty for the embedded default).
    pub store_args: Vec<String>,
}

impl Project {
    /// A copy of the example specs on the embedded SQLite default, without
    /// its monitor ([`MONITOR_SPEC`]).
    pub fn example() -> Project {
        Project::copy_of_example(&[MONITOR_SPEC])
    }

    /// The whole example, its monitor included.
    pub fn example_with_monitor() -> Project {
        Project::copy_of_example(&[])
    }

    /// A copy of the example without the spec files named in `skip`.
    pub fn copy_of(skip: &[&str]) -> Project {
        Project::copy_of_example(skip)
    }

    fn copy_of_example(skip: &[&str]) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let specs = dir.path().join("specs");
        copy_dir_except(&example_specs(), &specs, skip);
        Project {
            dir,
            specs,
            store_args: Vec::new(),
        }
    }

    /// Runs `reconcile <args…> <specs> <store args>`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
        cmd.args(args).arg(&self.specs).args(&self.store_args);
        cmd.env("NO_COLOR", "1").current_dir(self.dir.path());
        cmd.output().expect("run reconcile")
    }

    /// Runs `reconcile <args…> --specs <specs> <store args>`: the folder through
    /// the hidden `--specs` alias, which older scripts use.
    pub fn run_without_specs(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
        cmd.args(args)
            .arg("--specs")
            .arg(&self.specs)
            .args(&self.store_args);
        cmd.env("NO_COLOR", "1").current_dir(self.dir.path());
        cmd.output().expect("run reconcile")
    }

    /// Starts `reconcile <args…> <specs> <store args>` in the background, output piped.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_reconcile"))
            .args(args)
            .arg(&self.specs)
            .args(&self.store_args)
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn reconcile")
    }

    /// The state/offline store URL this project uses.
    pub fn store_url(&self) -> String {
        match self.store_args.iter().position(|a| a == "--state") {
            Some(i) => self.store_args[i + 1].clone(),
            None => format!(
                "sqlite://{}",
                self.specs.join(".reconcile/state.db").display()
            ),
        }
    }

    /// Writes a March snapshot of `support_agg_90d`: February's rows with
    /// `extra` more tickets each, so the next apply materializes new rows.
    pub fn add_march_tickets(&self, extra: i64) {
        let feb = std::fs::read_to_string(self.specs.join("data/2024-02-29/support_agg_90d.csv"))
            .expect("february");
        let mut lines = feb.lines();
        let mut march = format!("{}\n", lines.next().expect("header"));
        for l in lines {
            let mut cells: Vec<String> = l.split(',').map(str::to_string).collect();
            let n: i64 = cells[1].parse().expect("tickets");
            cells[1] = (n + extra).to_string();
            march.push_str(&cells.join(","));
            march.push('\n');
        }
        let dir = self.specs.join("data/2024-03-31");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("support_agg_90d.csv"), march).expect("march");
    }

    /// Opens the project's offline store.
    pub async fn db(&self) -> reconcile::store::Db {
        reconcile::store::Db::open(&self.store_url(), self.dir.path())
            .await
            .expect("open store")
    }
}

/// Text of an output's stdout and stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// True when a Docker engine answers; prints a notice and returns false
/// locally when none does, and fails under `CI=true`, where one must.
pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Docker engine answers: .ci/run must install docker.io and start dockerd"
        );
        eprintln!(
            "NOTICE: skipping: no Docker engine (install docker.io and start dockerd to run these tests)"
        );
    }
    ok
}

/// The server tests use; trust auth, user postgres.
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Creates a fresh database for one test and returns its URL, or `None` (with a
/// printed notice) when no server answers. Under `CI=true` a missing server fails.
pub async fn fresh_pg_database(tag: &str) -> Option<String> {
    use sqlx::Connection;
    let conn = sqlx::PgConnection::connect(PG_ADMIN_URL).await;
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but PostgreSQL at {PG_ADMIN_URL} is unreachable: {e}");
            }
            eprintln!("NOTICE: skipping PostgreSQL test {tag}: server unreachable ({e})");
            return None;
        }
    };
    let name = unique_name(tag);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await
    .expect("drop old db");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create db");
    Some(format!("postgres://postgres@127.0.0.1:5432/{name}"))
}

/// A Redis URL with a key prefix of its own, or `None` (with a notice) when no
/// server answers. Under `CI=true` a missing server fails.
pub async fn fresh_redis_url(tag: &str) -> Option<String> {
    let prefix = unique_name(tag);
    let url = format!("redis://127.0.0.1:6379/0?prefix={prefix}");
    match reconcile::store::online::OnlineStore::open(&url, Path::new(".")).await {
        Ok(_) => Some(url),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but Redis at 127.0.0.1:6379 is unreachable: {e}");
            }
            eprintln!("NOTICE: skipping Redis test {tag}: server unreachable ({e})");
            None
        }
    }
}

/// `reconcile_<tag>_<pid>_<nanos>`: a database or key prefix no other test uses.
fn unique_name(tag: &str) -> String {
    format!(
        "reconcile_{tag}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 1_000_000_000)
            .unwrap_or(0)
    )
}
