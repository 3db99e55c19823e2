//! Watch mode and `up` against real files, real stores, real HTTP over
//! loopback and, for the resync test, the real Docker engine: a new month's
//! folder picked up without a spec edit, broken edits that change nothing,
//! a promotion by spec edit served with zero failed requests, SIGTERM in the
//! middle of an apply, a removed container healed by the resync.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Project, docker_available, text};

/// A running `watch`/`up` whose stderr lines are collected as they come.
struct Watcher {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watcher {
    fn start(p: &Project, command: &str, extra: &[&str]) -> Watcher {
        let mut args = vec![command, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = p.spawn(&args);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Watcher { child, lines }
    }

    /// Waits until a line after the first `from` lines contains `needle`;
    /// returns its index. Panics with the whole log on timeout.
    fn wait_for(&self, from: usize, needle: &str, timeout: Duration) -> usize {
        let t0 = Instant::now();
        loop {
            if let Some(i) = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .skip(from)
                .position(|l| l.contains(needle))
            {
                return from + i;
            }
            assert!(
                t0.elapsed() < timeout,
                "no line with `{needle}` within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn count(&self) -> usize {
        self.lines.lock().expect("lines").len()
    }

    fn log(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// The URL printed after `prefix` (e.g. "metrics on http://").
    fn url_after(&self, marker: &str) -> String {
        let i = self.wait_for(0, marker, Duration::from_secs(60));
        let line = self.lines.lock().expect("lines")[i].clone();
        let at = line.find("http://").expect("a URL");
        line[at..]
            .split_whitespace()
            .next()
            .expect("url")
            .trim_end_matches("/metrics")
            .to_string()
    }

    fn sigterm(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "watch did not stop within 30 s of SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example without its monitor and without the February folder, which
/// is returned to be dropped in later.
fn first_month_only(store: Option<String>) -> (Project, tempfile::TempDir) {
    let mut p = Project::example();
    if let Some(url) = store {
        p.store_args = vec!["--state".into(), url];
    }
    let feb = tempfile::tempdir().expect("tempdir");
    let from = p.specs.join("data/2024-02-29");
    common::copy_dir(&from, &feb.path().join("2024-02-29"));
    std::fs::remove_dir_all(&from).expect("remove february");
    (p, feb)
}

fn blocking_get(url: &str) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .expect("request");
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or_default())
    })
}

async fn a_new_month_folder_is_picked_up_without_a_spec_edit(backend: &str) {
    let store = match backend {
        "postgres" => match common::fresh_pg_database("watch_month").await {
            Some(u) => Some(u),
            None => return,
        },
        _ => None,
    };
    let (p, feb) = first_month_only(store);
    let w = Watcher::start(&p, "watch", &["--resync", "1h"]);
    let metrics = w.url_after("controller metrics on");
    w.wait_for(0, "applied:", Duration::from_secs(120));
    let before = w.count();
    let dropped = Instant::now();
    common::copy_dir(feb.path(), &p.specs.join("data"));
    for view in ["subs_profile", "usage_30d", "payments_90d", "support_90d"] {
        w.wait_for(
            before,
            &format!("FeatureView/{view}: materialized 7043 entities"),
            Duration::from_secs(5).saturating_sub(dropped.elapsed()) + Duration::from_millis(1),
        );
    }
    let line = w.wait_for(before, "watermark 2024-02-29", Duration::from_secs(1));
    assert!(w.log().contains("changed: data/2024-02-29"), "{}", w.log());
    let took = dropped.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "new month materialized {took:?} after the folder was dropped in"
    );
    w.wait_for(line, "applied:", Duration::from_secs(30));
    // The stores agree with the log: every snapshot of February is there.
    let out = p.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    for r in rows.as_array().expect("rows") {
        assert_eq!(r["state"], "Ready", "{r}");
    }
    let out = p.run(&["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The controller counted what it did.
    let c = reqwest::Client::new();
    let health = c
        .get(format!("{metrics}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let body = c
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for needle in [
        "reconcile_controller_applies_total{outcome=\"success\",trigger=\"start\"} 1",
        "reconcile_controller_applies_total{outcome=\"success\",trigger=\"change\"}",
        "reconcile_controller_resources{condition=\"Ready\"} 16",
        "reconcile_controller_watch_events_total{kind=\"input\"}",
        "reconcile_controller_apply_duration_seconds_count",
    ] {
        assert!(body.contains(needle), "no `{needle}` in\n{body}");
    }
}

on_both_backends!(a_new_month_folder_is_picked_up_without_a_spec_edit);

/// An id present in both months, and one of its served feature values.
const USER: &str = "7590-VHVEG";

#[test]
fn broken_edits_change_nothing_and_a_fix_converges() {
    let p = Project::example();
    let w = Watcher::start(&p, "up", &["--resync", "1h", "--port", "0"]);
    let api = w.url_after("Endpoint/churn-api serving");
    w.wait_for(0, "applied:", Duration::from_secs(120));
    let features = |()| {
        let out = p.run_without_specs(&["features", "get", "user", USER, "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["features"].clone()
    };
    let stored = features(());
    // The endpoint follows the online store within its poll.
    std::thread::sleep(Duration::from_millis(600));
    let (code, served) = blocking_get(&format!("{api}/features/{USER}"));
    assert_eq!(code, 200, "{served}");

    // 1. A CSV edit that breaks an expectation: diagnostics, nothing replaced.
    let csv = p.specs.join("data/2024-02-29/usage_agg_30d.csv");
    let original = std::fs::read_to_string(&csv).expect("csv");
    let mut lines: Vec<String> = original.lines().map(String::from).collect();
    let dup = lines[1].clone();
    lines.push(dup); // the same user twice: `unique(user_id)` fails
    let before = w.count();
    std::fs::write(&csv, lines.join("\n") + "\n").expect("write csv");
    let failed = w.wait_for(before, "✗ Table/usage_agg_30d", Duration::from_secs(20));
    assert!(
        w.log().contains("primaryKey(user_id)"),
        "the failure names the expectation:\n{}",
        w.log()
    );
    w.wait_for(failed, "apply incomplete", Duration::from_secs(5));
    assert_eq!(
        features(()),
        stored,
        "the previous snapshot is still served"
    );
    let (code, now) = blocking_get(&format!("{api}/features/{USER}"));
    assert_eq!((code, &now), (200, &served), "the endpoint still serves it");

    // 2. A YAML typo: diagnostics, nothing runs.
    std::fs::write(&csv, &original).expect("restore csv");
    w.wait_for(failed, "applied:", Duration::from_secs(20));
    let training = p.specs.join("training.yaml");
    let spec = std::fs::read_to_string(&training).expect("training");
    let before = w.count();
    std::fs::write(&training, spec.replace("seed: 42", "seed: [42")).expect("typo");
    let invalid = w.wait_for(before, "specs invalid", Duration::from_secs(10));
    assert!(w.log().contains("training.yaml"), "{}", w.log());
    std::thread::sleep(Duration::from_millis(500));
    let after_typo: Vec<String> = w.lines.lock().expect("lines")[invalid..].to_vec();
    assert!(
        !after_typo.iter().any(|l| l.contains("plan:")),
        "nothing is planned from broken specs: {after_typo:?}"
    );
    let (code, _) = blocking_get(&format!("{api}/ready"));
    assert_eq!(
        code, 200,
        "the endpoint keeps serving through a broken edit"
    );

    // 3. Fixed, with a real change: converges.
    let before = w.count();
    std::fs::write(&training, spec.replace("seed: 42", "seed: 43")).expect("fix");
    w.wait_for(
        before,
        "TrainingRun/churn-rf: trained",
        Duration::from_secs(60),
    );
    w.wait_for(before, "applied:", Duration::from_secs(60));
}

#[test]
fn up_serves_through_a_promotion_by_spec_edit() {
    let p = Project::example();
    let w = Watcher::start(&p, "up", &["--resync", "1h", "--port", "0"]);
    let api = w.url_after("Endpoint/churn-api serving");
    w.wait_for(0, "applied:", Duration::from_secs(120));
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocking_get(&format!("{api}/ready")).0 != 200 {
        assert!(Instant::now() < deadline, "never ready:\n{}", w.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let old = blocking_get(&format!("{api}/models")).1["version"]
        .as_i64()
        .expect("version");
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let first_new = Arc::new(Mutex::new(None::<Instant>));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, failures, served, first_new) = (
                stop.clone(),
                failures.clone(),
                served.clone(),
                first_new.clone(),
            );
            let url = format!("{api}/predict");
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("rt");
                let c = reqwest::Client::new();
                rt.block_on(async {
                    while !stop.load(Ordering::Relaxed) {
                        let r = c
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(format!(r#"{{"user_id": "{USER}"}}"#))
                            .send()
                            .await;
                        let Ok(r) = r else {
                            failures.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        if r.status() != 200 {
                            failures.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        served.fetch_add(1, Ordering::Relaxed);
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        if body["model"]["version"].as_i64() != Some(old) {
                            first_new
                                .lock()
                                .expect("lock")
                                .get_or_insert_with(Instant::now);
                        }
                    }
                });
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let training = p.specs.join("training.yaml");
    let spec = std::fs::read_to_string(&training).expect("training");
    let before = w.count();
    std::fs::write(
        &training,
        spec.replace("production: churn-rf", "production: churn-lr"),
    )
    .expect("edit");
    w.wait_for(before, "promoted to Production", Duration::from_secs(30));
    w.wait_for(before, "applied:", Duration::from_secs(30));
    let applied = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for t in workers {
        t.join().expect("worker");
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed requests");
    assert!(served.load(Ordering::Relaxed) > 50, "too few requests");
    let seen = first_new
        .lock()
        .expect("lock")
        .expect("the new version was never served");
    let lag = seen.saturating_duration_since(applied);
    assert!(
        lag < Duration::from_secs(1),
        "served {lag:?} after the apply"
    );
    assert_eq!(blocking_get(&format!("{api}/models")).1["run"], "churn-lr");
}

#[test]
fn sigterm_mid_apply_exits_0_and_nothing_is_half_written() {
    let p = Project::example();
    let mut w = Watcher::start(&p, "watch", &["--resync", "1h"]);
    // The first apply trains two models: stop it while they train.
    w.wait_for(0, "FeatureView/", Duration::from_secs(60));
    let status = w.sigterm();
    assert_eq!(status.code(), Some(0), "{}", w.log());
    assert!(w.log().contains("apply interrupted"), "{}", w.log());
    assert!(w.log().contains("stopping"), "{}", w.log());
    // What was written is whole: the next apply converges and the stores
    // agree with themselves afterwards.
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = p.run(&["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_removed_container_is_healed_within_one_resync() {
    if !docker_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    let web = specs.join("web");
    std::fs::create_dir_all(&web).expect("mkdir");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("busybox-static is installed (.ci/run installs it)");
    std::fs::copy(busybox, web.join("busybox")).expect("copy busybox");
    std::fs::write(
        web.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .expect("dockerfile");
    let project = format!("wheal{}", std::process::id() % 100_000);
    std::fs::write(
        specs.join("specs.yaml"),
        format!(
            "kind: Project\nname: {project}\n---\nkind: Service\nname: web\nbuild: {{ context: ./web }}\n\
             command: [sh, -c, \"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n\
             health: {{ command: [wget, -q, -O, /dev/null, \"http://127.0.0.1:8080/\"], interval: 100ms, retries: 50 }}\n"
        ),
    )
    .expect("specs");
    let p = Project {
        dir,
        specs,
        store_args: Vec::new(),
    };
    let w = Watcher::start(&p, "watch", &["--resync", "2s"]);
    w.wait_for(0, "applied:", Duration::from_secs(120));
    let container = format!("{project}-web");
    let id = |()| {
        Command::new("docker")
            .args(["inspect", "-f", "{{.Id}}", &container])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let first = id(()).expect("the container runs");
    let before = w.count();
    let removed = Command::new("docker")
        .args(["rm", "-f", &container])
        .output()
        .expect("docker rm");
    assert!(removed.status.success());
    let removed_at = Instant::now();
    w.wait_for(before, "Service/web", Duration::from_secs(30));
    w.wait_for(before, "applied:", Duration::from_secs(60));
    let healed = id(()).expect("the container is back");
    assert_ne!(healed, first, "a new container replaced the removed one");
    assert!(
        removed_at.elapsed() < Duration::from_secs(40),
        "healed {:?} after the removal",
        removed_at.elapsed()
    );
    drop(w);
    let out = p.run(&["destroy", "--yes", "--purge"]);
    assert!(out.status.success(), "{}", text(&out));
}
