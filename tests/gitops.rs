//! GitOps against real git repositories: a local bare repository, and the
//! same served over loopback by `git daemon`. Commits are made with the git
//! command line (the fixture); reconcile reads them through libgit2.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::text;
use reconcile::store::commits::{CommitRecord, CommitStore};

/// A working repository with the example specs, pushed to a bare `origin.git`.
struct Repos {
    dir: tempfile::TempDir,
}

impl Repos {
    fn new() -> Repos {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Repos { dir };
        std::fs::create_dir_all(r.work()).expect("mkdir");
        git(
            &r.root(),
            &["init", "-q", "--bare", "-b", "main", "origin.git"],
        );
        git(&r.work(), &["init", "-q", "-b", "main"]);
        common::copy_dir_except(
            &common::example_specs(),
            &r.work().join("specs"),
            &[common::MONITOR_SPEC],
        );
        git(&r.work(), &["remote", "add", "origin", "../origin.git"]);
        r.commit("base: the StreamFlow example");
        r
    }

    fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn origin(&self) -> String {
        self.dir.path().join("origin.git").display().to_string()
    }

    fn state_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("state.db").display())
    }

    fn edit(&self, file: &str, f: impl FnOnce(String) -> String) {
        let path = self.work().join("specs").join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, f(text)).expect("write spec");
    }

    /// Commits everything and pushes; returns the commit id.
    fn commit(&self, subject: &str) -> String {
        git(&self.work(), &["add", "-A"]);
        git(&self.work(), &["commit", "-q", "-m", subject]);
        git(&self.work(), &["push", "-q", "origin", "main"]);
        let out = git(&self.work(), &["rev-parse", "HEAD"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn gitops(&self, source: &str, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_reconcile"))
            .args(["gitops", source, "--home"])
            .arg(self.dir.path().join("home"))
            .args(["--state", &self.state_url(), "--listen", "off"])
            .args(extra)
            .env("NO_COLOR", "1")
            .output()
            .expect("run gitops")
    }

    async fn history(&self) -> Vec<CommitRecord> {
        let db = reconcile::store::Db::open(&self.state_url(), self.dir.path())
            .await
            .expect("state store");
        CommitStore::new(db, "streamflow")
            .history()
            .await
            .expect("history")
    }
}

fn git(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@127.0.0.1")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@127.0.0.1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    out
}

const EXTRA_TABLE: &str = "kind: Table\nname: regions\nprimaryKey: [region]\n\
    columns: { region: string, users: int }\n\
    snapshots: [{ asOf: 2024-01-31, path: data/regions.csv }]\n";

#[tokio::test(flavor = "multi_thread")]
async fn commits_go_live_in_order_a_broken_one_is_recorded_and_a_fix_converges() {
    let r = Repos::new();
    let out = r.gitops(&r.origin(), &["--once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("live: "), "{}", text(&out));

    // Two commits pushed at once: both applied, oldest first.
    std::fs::write(
        r.work().join("specs/data/regions.csv"),
        "region,users\nnorth,10\nsouth,12\n",
    )
    .expect("csv");
    std::fs::write(r.work().join("specs/regions.yaml"), EXTRA_TABLE).expect("table");
    let add_table = r.commit("add the regions table");
    r.edit("training.yaml", |t| t.replace("trees: 300", "trees: 40"));
    let fewer_trees = r.commit("churn-rf: 40 trees");
    let out = r.gitops(&r.origin(), &["--once"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let table_at = log.find("Table/regions").expect("the table was created");
    let trained_at = log
        .find("trained randomForest")
        .expect("the forest was retrained");
    assert!(table_at < trained_at, "applied in commit order:\n{log}");

    // A broken spec: recorded as failed with its diagnostics; live stays.
    r.edit("training.yaml", |t| t.replace("seed: 42", "seed: [42"));
    let broken = r.commit("typo");
    let out = r.gitops(&r.origin(), &["--once"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let history = r.history().await;
    let shas: Vec<(&str, bool)> = history.iter().map(|c| (c.sha.as_str(), c.live)).collect();
    assert_eq!(
        &shas[1..],
        &[
            (add_table.as_str(), true),
            (fewer_trees.as_str(), true),
            (broken.as_str(), false)
        ],
        "{history:#?}"
    );
    let failed = history.last().expect("broken commit");
    assert!(
        failed.message.contains("training.yaml"),
        "{}",
        failed.message
    );
    // `status` of the live specs (the working copy holds the typo).
    let live_specs = r
        .dir
        .path()
        .join("home/trees")
        .join(&fewer_trees)
        .join("specs");
    let status = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["status"])
        .arg(&live_specs)
        .args(["--state", &r.state_url()])
        .output()
        .expect("status");
    assert!(
        text(&status).contains(&format!("live: {} churn-rf: 40 trees", &fewer_trees[..12])),
        "{}",
        text(&status)
    );

    // The fix goes live.
    r.edit("training.yaml", |t| t.replace("seed: [42", "seed: 42"));
    let fix = r.commit("fix the typo");
    let out = r.gitops(&r.origin(), &["--once"]);
    assert!(out.status.success(), "{}", text(&out));
    let history = r.history().await;
    let last = history.last().expect("fix");
    assert_eq!((last.sha.as_str(), last.live), (fix.as_str(), true));
    // Nothing new: --once succeeds and applies nothing.
    let out = r.gitops(&r.origin(), &["--once"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("commit "), "{}", text(&out));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `git daemon` and the `git-daemon` it starts, both stopped when dropped
/// (killing the first alone leaves the second listening, and holding the
/// test's output open).
struct Daemon {
    wrapper: std::process::Child,
    pid_file: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_a_branch_served_by_git_daemon() {
    let r = Repos::new();
    let port = free_port();
    let pid_file = r.root().join("daemon.pid");
    let _daemon = Daemon {
        wrapper: Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--pid-file={}", pid_file.display()),
                &format!("--base-path={}", r.root().display()),
            ])
            .arg(r.root())
            .spawn()
            .expect("git daemon (Debian's git package)"),
        pid_file,
    };
    let url = format!("git://127.0.0.1:{port}/origin.git");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "git daemon did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["gitops", &url, "--interval", "500ms", "--home"])
        .arg(r.dir.path().join("home"))
        .args(["--state", &r.state_url(), "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gitops");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(l);
        }
    });
    let wait_for = |needle: &str, timeout: Duration| {
        let t0 = Instant::now();
        while !lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.contains(needle))
        {
            assert!(
                t0.elapsed() < timeout,
                "no `{needle}`:\n{}",
                lines.lock().expect("lines").join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("live: ", Duration::from_secs(120));
    r.edit("training.yaml", |t| t.replace("trees: 300", "trees: 30"));
    let next = r.commit("churn-rf: 30 trees");
    wait_for(&format!("live: {}", &next[..12]), Duration::from_secs(60));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = child.wait().expect("wait");
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        lines.lock().expect("lines").join("\n")
    );
    let history = r.history().await;
    assert_eq!(history.len(), 2, "{history:#?}");
    assert!(history.iter().all(|c| c.live));
    assert_eq!(history[1].sha, next);
}
