//! Services on a real single-node swarm (`docker swarm init` here, `docker
//! swarm leave --force` after, when this test started it). Images are built
//! from scratch around Debian's static busybox; no registry is reachable.
//!
//! The tests serialize on one lock: a swarm is one per engine. Replicas are
//! reached by exec into their task containers and over the overlay network by
//! name in DNS round-robin mode: this machine's kernel has no IPVS, so the
//! routing mesh and virtual IPs converge but carry no traffic here.
//!
//! Without an engine these tests skip with a notice; under `CI=true` they fail.

mod common;
#[path = "common/images.rs"]
mod images;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;

use common::{docker_available, text};
use images::{busybox, postgres_context};

/// One swarm per engine: the tests take turns.
static SWARM: Mutex<()> = Mutex::new(());

/// Joins (initializes) a single-node swarm for one test and leaves it after,
/// unless the engine was in a swarm already.
struct SwarmGuard {
    started: bool,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl SwarmGuard {
    fn new() -> SwarmGuard {
        let lock = SWARM.lock().unwrap_or_else(|p| p.into_inner());
        let state = docker(&["info", "-f", "{{.Swarm.LocalNodeState}}"]);
        let active = String::from_utf8_lossy(&state.stdout).trim() == "active";
        if !active {
            let out = docker(&["swarm", "init"]);
            assert!(out.status.success(), "docker swarm init: {}", text(&out));
        }
        SwarmGuard {
            started: !active,
            _lock: lock,
        }
    }
}

impl Drop for SwarmGuard {
    fn drop(&mut self) {
        if self.started {
            let _ = docker(&["swarm", "leave", "--force"]);
        }
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker")
}

fn docker_text(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} ({}): {}",
        out.status,
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A temporary project on the swarm with a busybox build context at `web/`.
struct SwarmProject {
    dir: tempfile::TempDir,
    name: String,
}

impl SwarmProject {
    fn new(test: &str) -> SwarmProject {
        let dir = tempfile::tempdir().expect("tempdir");
        let web = dir.path().join("specs/web");
        std::fs::create_dir_all(&web).expect("mkdir");
        std::fs::copy(busybox(), web.join("busybox")).expect("copy busybox");
        std::fs::write(
            web.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .expect("dockerfile");
        let name = format!(
            "sw{}{}",
            test.replace('_', "").chars().take(16).collect::<String>(),
            std::process::id() % 10_000
        );
        SwarmProject { dir, name }
    }

    fn specs(&self) -> PathBuf {
        self.dir.path().join("specs")
    }

    fn write(&self, services: &str) {
        std::fs::write(
            self.specs().join("specs.yaml"),
            format!(
                "kind: Project\nname: {}\nruntime: swarm\n---\n{services}",
                self.name
            ),
        )
        .expect("write specs");
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
        cmd.args(args).arg(self.specs()).env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run reconcile")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn apply_ok(&self) -> String {
        let out = self.run(&["apply"]);
        let t = text(&out);
        assert!(out.status.success(), "apply failed:\n{t}");
        t
    }

    fn service(&self, name: &str) -> String {
        format!("{}-{name}", self.name)
    }

    /// Ids of the task containers running for a service (by its id: the
    /// tasks of a service of the same name removed a moment ago may still be
    /// stopping).
    fn task_containers(&self, name: &str) -> Vec<String> {
        let id = docker_text(&["service", "inspect", "-f", "{{.ID}}", &self.service(name)]);
        docker_text(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.id={id}"),
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// What each running replica serves at `/`.
    fn served(&self, name: &str) -> Vec<String> {
        self.task_containers(name)
            .iter()
            .map(|c| docker_text(&["exec", c, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]))
            .collect()
    }

    /// Creation times (seconds of the day) of the tasks meant to run.
    fn running_task_starts(&self, name: &str) -> Vec<f64> {
        let ids = docker_text(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            &self.service(name),
        ]);
        let mut starts: Vec<f64> = ids
            .lines()
            .map(|id| seconds_of_day(&docker_text(&["inspect", "-f", "{{.CreatedAt}}", id])))
            .collect();
        starts.sort_by(f64::total_cmp);
        starts
    }
}

impl Drop for SwarmProject {
    fn drop(&mut self) {
        // Validation wants every `${VAR}` set, also to destroy.
        let _ = self.run_env(
            &["destroy", "--yes", "--purge"],
            &[("SWARM_TEST_TOKEN", "cleanup")],
        );
    }
}

/// `2026-12-07 14:20:01.123456789 +0000 UTC` or RFC 3339: seconds of the day.
fn seconds_of_day(ts: &str) -> f64 {
    let time = ts
        .split(['T', ' '])
        .nth(1)
        .unwrap_or_else(|| panic!("no time in `{ts}`"));
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let mut field = || -> f64 {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad time `{ts}`"))
    };
    field() * 3600.0 + field() * 60.0 + field()
}

/// A shell command serving `page` with busybox httpd on port 8080. As a
/// container's PID 1, httpd would ignore SIGTERM, so every stopped task would
/// wait out Docker's 10 s grace period: the shell stays PID 1 and exits on TERM.
fn serve(page: &str) -> String {
    format!(
        "mkdir -p /www; echo {page} > /www/index.html; trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"
    )
}

/// A busybox web server of three replicas rolled one at a time, reached by
/// name (DNS round robin) on the overlay network.
fn web_service(marker: &str, health: &str) -> String {
    let serve = serve(marker);
    format!(
        r#"kind: Service
name: web
build: {{ context: ./web }}
command: [sh, -c, "{serve}"]
env: {{ MARKER: "{marker}" }}
health: {{ command: "{health}", interval: 200ms, timeout: 1s, retries: 3 }}
deploy:
  replicas: 3
  endpointMode: dnsrr
  update: {{ parallelism: 1, delay: 1s, order: stop-first, failureAction: rollback, monitor: 2s }}
"#
    )
}

const HEALTHY: &str = "wget -q -O /dev/null http://127.0.0.1:8080/";
const NEVER_HEALTHY: &str = "wget -q -O /dev/null http://127.0.0.1:9/";

#[test]
fn three_replicas_roll_one_at_a_time_roll_back_and_heal_drift() {
    if !docker_available() {
        return;
    }
    let _swarm = SwarmGuard::new();
    let p = SwarmProject::new("roll");
    p.write(&web_service("first", HEALTHY));
    let out = p.apply_ok();
    assert!(out.contains("create Service/web"), "{out}");
    assert_eq!(p.served("web"), vec!["first"; 3]);
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    // Service labels name the owner; the tasks' containers carry none of ours.
    let labels = docker_text(&[
        "service",
        "inspect",
        "-f",
        "{{json .Spec.Labels}}",
        &p.service("web"),
    ]);
    assert!(
        labels.contains("\"reconcile.resource\":\"Service/web\""),
        "{labels}"
    );
    let task = &p.task_containers("web")[0];
    let task_labels = docker_text(&["inspect", "-f", "{{json .Config.Labels}}", task]);
    assert!(!task_labels.contains("reconcile.resource"), "{task_labels}");

    // A spec change is a rolling update the plan names.
    p.write(&web_service("second", HEALTHY));
    let plan = p.run(&["plan"]);
    let t = text(&plan);
    assert!(t.contains("update Service/web"), "{t}");
    assert!(t.contains("spec changed") && t.contains("env"), "{t}");
    p.apply_ok();
    assert_eq!(p.served("web"), vec!["second"; 3]);
    let starts = p.running_task_starts("web");
    assert_eq!(starts.len(), 3, "{starts:?}");
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= 0.9,
            "tasks replaced one at a time, 1 s apart: {starts:?}"
        );
    }

    // Scaled by hand: drift the plan shows and apply heals.
    docker_text(&["service", "scale", "-d", &format!("{}=5", p.service("web"))]);
    let plan = p.run(&["plan"]);
    let t = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{t}");
    assert!(t.contains("scaled out of band to 5 replicas"), "{t}");
    p.apply_ok();
    let replicas = docker_text(&[
        "service",
        "inspect",
        "-f",
        "{{.Spec.Mode.Replicated.Replicas}}",
        &p.service("web"),
    ]);
    assert_eq!(replicas, "3");
    // The two extra tasks are told to stop.
    let start = std::time::Instant::now();
    while p.task_containers("web").len() != 3 && start.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(p.task_containers("web").len(), 3);

    // An update whose check never passes rolls back: apply fails with the
    // tasks' errors and the previous tasks still serve.
    p.write(&web_service("third", NEVER_HEALTHY));
    let out = p.run(&["apply"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("rolled back"), "{t}");
    assert!(t.contains("task errors") && t.contains("task "), "{t}");
    assert_eq!(p.served("web"), vec!["second"; 3]);
    // The next plan wants to roll out again.
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));

    // Removed by hand: the plan says so and apply creates it again.
    p.write(&web_service("second", HEALTHY));
    p.apply_ok();
    docker_text(&["service", "rm", &p.service("web")]);
    let plan = p.run(&["plan"]);
    let t = text(&plan);
    assert!(t.contains("removed out of band"), "{t}");
    p.apply_ok();
    assert_eq!(p.served("web"), vec!["second"; 3]);

    // Pruned when the specs drop it.
    p.write("");
    let out = p.apply_ok();
    assert!(out.contains("delete Service/web"), "{out}");
    let left = docker_text(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("label=reconcile.project={}", p.name),
    ]);
    assert!(left.is_empty(), "services left: {left}");
}

#[test]
fn a_secret_reaches_the_task_as_a_file_and_nowhere_else_and_destroy_leaves_nothing() {
    if !docker_available() {
        return;
    }
    let _swarm = SwarmGuard::new();
    let p = SwarmProject::new("secret");
    let secret = "s3cr3t-value-for-the-swarm-test";
    let serve = serve("up");
    p.write(&format!(
        r#"kind: Service
name: web
build: {{ context: ./web }}
command: [sh, -c, "{serve}"]
env: {{ TOKEN: "${{SWARM_TEST_TOKEN}}", PLAIN: "visible" }}
health: {{ command: "{HEALTHY}", interval: 200ms, retries: 20 }}
deploy: {{ replicas: 2, endpointMode: dnsrr }}
"#
    ));
    let out = p.run_env(&["apply"], &[("SWARM_TEST_TOKEN", secret)]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains(secret), "{t}");
    for task in p.task_containers("web") {
        assert_eq!(
            docker_text(&["exec", &task, "cat", "/run/secrets/TOKEN"]),
            secret
        );
        let env = docker_text(&["exec", &task, "env"]);
        assert!(env.contains("TOKEN_FILE=/run/secrets/TOKEN"), "{env}");
        assert!(env.contains("PLAIN=visible"), "{env}");
        assert!(!env.contains(secret), "{env}");
    }
    let inspect = docker_text(&["service", "inspect", &p.service("web")]);
    assert!(!inspect.contains(secret), "{inspect}");
    // The state store holds the reference, never the value.
    let status = p.run(&["status"]);
    assert!(!text(&status).contains(secret));

    // A new value is a new secret and a rolling update; the old one is removed.
    let secrets = |p: &SwarmProject| {
        docker_text(&[
            "secret",
            "ls",
            "-q",
            "--filter",
            &format!("label=reconcile.project={}", p.name),
        ])
    };
    let before = secrets(&p);
    assert_eq!(before.lines().count(), 1, "{before}");
    let out = p.run_env(&["apply"], &[("SWARM_TEST_TOKEN", "another-secret-value")]);
    assert!(out.status.success(), "{}", text(&out));
    let after = secrets(&p);
    assert_eq!(after.lines().count(), 1, "{after}");
    assert_ne!(before, after);
    for task in p.task_containers("web") {
        assert_eq!(
            docker_text(&["exec", &task, "cat", "/run/secrets/TOKEN"]),
            "another-secret-value"
        );
    }

    // Destroy leaves no service, secret or network behind.
    let out = p.run_env(
        &["destroy", "--yes", "--purge"],
        &[("SWARM_TEST_TOKEN", "another-secret-value")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let filter = format!("label=reconcile.project={}", p.name);
    assert!(docker_text(&["service", "ls", "-q", "--filter", &filter]).is_empty());
    assert!(secrets(&p).is_empty());
    let networks = docker_text(&["network", "ls", "--filter", &filter]);
    assert!(
        !networks.contains(&format!("reconcile-{}", p.name)),
        "{networks}\n{}",
        text(&out)
    );
}

#[test]
fn a_swarm_workload_without_a_swarm_is_an_error_that_says_what_to_do() {
    if !docker_available() {
        return;
    }
    // Holds the lock without joining: no swarm while this runs.
    let lock = SWARM.lock().unwrap_or_else(|e| e.into_inner());
    let state = docker_text(&["info", "-f", "{{.Swarm.LocalNodeState}}"]);
    if state == "active" {
        // Someone else's swarm: do not leave it.
        eprintln!("NOTICE: the engine is in a swarm already; skipping the no-swarm case");
        return;
    }
    let p = SwarmProject::new("noswarm");
    p.write(&web_service("x", HEALTHY));
    let out = p.run(&["apply"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("docker swarm init"), "{t}");
    drop(p);
    drop(lock);
}

#[test]
fn deploy_outside_the_swarm_and_an_address_bound_port_are_spec_errors() {
    let p = SwarmProject::new("specerr");
    std::fs::write(
        p.specs().join("specs.yaml"),
        format!(
            "kind: Project\nname: {}\n---\nkind: Service\nname: a\nimage: x:1\ndeploy: {{ replicas: 2 }}\n\
             ---\nkind: Service\nname: b\nimage: x:1\nruntime: swarm\nports: [\"127.0.0.1:80:80\"]\n\
             deploy: {{ replicas: 2, update: {{ parallelism: 0, delay: soon }} }}\n",
            p.name
        ),
    )
    .expect("write");
    let out = p.run(&["validate"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("`deploy` applies to the swarm runtime"), "{t}");
    assert!(t.contains("specs.yaml:5"), "the error names the line: {t}");
    assert!(t.contains("binds one address"), "{t}");
    assert!(t.contains("parallelism 0"), "{t}");
    assert!(t.contains("`soon` is not a duration"), "{t}");
}

/// The client inside the overlay network: busybox `wget` in a loop against the
/// endpoint's name (DNS round robin picks a replica per request) until
/// `/stop` exists, then the counts.
const CLIENT: &str = r#"ok=0; fail=0
while [ ! -f /stop ]; do
  if out=$(wget -O /dev/null --header 'Content-Type: application/json' --post-data '{"user_id":"7590-VHVEG"}' http://churn-api:8000/predict 2>&1); then
    ok=$((ok+1))
  else
    fail=$((fail+1)); echo "failed request at $(date) after $ok: $out"
  fi
done
echo "ok=$ok fail=$fail""#;

/// Addresses of the endpoint's replicas, from the overlay network's DNS.
fn replica_addresses(client: &str) -> Vec<String> {
    let out = docker_text(&["exec", client, "nslookup", "tasks.churn-api"]);
    let mut ips: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .filter(|a| !a.starts_with("127.0.0.11"))
        .collect();
    ips.sort();
    ips
}

fn replica_get(client: &str, ip: &str, path: &str) -> String {
    docker_text(&[
        "exec",
        client,
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{ip}:8000{path}"),
    ])
}

/// The Production version a replica serves, from its `/ready`.
fn served_version(client: &str, ip: &str) -> u64 {
    let ready: serde_json::Value =
        serde_json::from_str(&replica_get(client, ip, "/ready")).expect("ready json");
    ready["version"].as_u64().expect("a version")
}

/// The example's endpoint as three swarm replicas, its stores on a PostgreSQL
/// Service on the same overlay network: requests keep flowing through a
/// promotion with none failing, every replica follows it, and the load is
/// spread over the replicas.
#[test]
fn three_endpoint_replicas_follow_a_promotion_with_no_failed_request() {
    if !docker_available() {
        return;
    }
    let _swarm = SwarmGuard::new();
    let p = SwarmProject::new("endpoint");
    let specs = p.specs();
    common::copy_dir_except(&common::example_specs(), &specs, &[common::MONITOR_SPEC]);
    postgres_context(&specs.join("pg"));
    // The stores live on a PostgreSQL Service on the project network: this
    // process reaches it through its published loopback port, the replicas
    // by its name on the overlay network.
    let project = std::fs::read_to_string(specs.join("project.yaml")).expect("project.yaml");
    let project = project
        .replacen("name: streamflow", &format!("name: {}", p.name), 1)
        .replacen(
            "state: sqlite://.reconcile/state.db",
            "state: postgres://postgres@pg:5432/postgres",
            1,
        )
        .replacen(
            "---",
            "---\nkind: Service\nname: pg\nbuild: { context: ./pg }\nports: [\"127.0.0.1::5432\"]\n\
             health: { command: \"pg_isready -h 127.0.0.1 -p 5432 -U postgres\", interval: 200ms, retries: 100 }\n---",
            1,
        );
    std::fs::write(specs.join("project.yaml"), project).expect("write project.yaml");
    let training = std::fs::read_to_string(specs.join("training.yaml")).expect("training.yaml");
    std::fs::write(
        specs.join("training.yaml"),
        training.replacen(
            "runtime: embedded",
            "runtime: swarm\ndeploy: { replicas: 3, endpointMode: dnsrr, update: { order: start-first } }",
            1,
        ),
    )
    .expect("write training.yaml");

    let out = p.run(&["apply"]);
    let t = text(&out);
    assert!(out.status.success(), "apply failed:\n{t}");
    assert!(t.contains("Endpoint/churn-api"), "{t}");
    assert_eq!(p.task_containers("churn-api").len(), 3);
    assert_eq!(p.run(&["plan"]).status.code(), Some(0));

    // A client on the overlay network.
    let client = format!("{}-client", p.name);
    docker_text(&[
        "build",
        "-q",
        "-t",
        &client,
        &specs.join("web").display().to_string(),
    ]);
    docker_text(&[
        "run",
        "-d",
        "--name",
        &client,
        "--network",
        &format!("reconcile-{}", p.name),
        &client,
        "sh",
        "-c",
        CLIENT,
    ]);
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = docker(&["rm", "-f", &self.0]);
            let _ = docker(&["rmi", "-f", &self.0]);
        }
    }
    let _client = Remove(client.clone());
    let replicas = replica_addresses(&client);
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    let before: Vec<u64> = replicas
        .iter()
        .map(|ip| served_version(&client, ip))
        .collect();
    assert!(before.iter().all(|v| *v == before[0]), "{before:?}");
    std::thread::sleep(std::time::Duration::from_secs(2));

    // Promote the challenger: every replica follows the registry.
    let training = std::fs::read_to_string(specs.join("training.yaml")).expect("training.yaml");
    std::fs::write(
        specs.join("training.yaml"),
        training
            .replacen("production: churn-rf", "production: churn-lr", 1)
            .replacen("require: { val_auc: \">= 0.75\" }", "", 1),
    )
    .expect("write training.yaml");
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let start = std::time::Instant::now();
    let after = loop {
        let now: Vec<u64> = replicas
            .iter()
            .map(|ip| served_version(&client, ip))
            .collect();
        if now.iter().all(|v| *v != before[0]) || start.elapsed().as_secs() > 20 {
            break now;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        after.iter().all(|v| *v == after[0] && *v != before[0]),
        "every replica serves the promoted version: before {before:?}, after {after:?}"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));

    // Stop the client: no request failed, and every replica took a share.
    // `touch` is idempotent, so a failed exec is tried again; once (in a
    // full CI-like run) it failed with no output, and the client's state is
    // what would say why.
    let stop = ["exec", client.as_str(), "touch", "/stop"];
    if !(0..3).any(|attempt| {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        docker(&stop).status.success()
    }) {
        let state = text(&docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} exit={{.State.ExitCode}} oom={{.State.OOMKilled}}",
            &client,
        ]));
        let logs = text(&docker(&["logs", "--tail", "20", &client]));
        panic!("cannot stop the client ({state}); its last lines:\n{logs}");
    }
    docker_text(&["wait", &client]);
    let logs = text(&docker(&["logs", &client]));
    let counts = logs
        .lines()
        .find_map(|l| l.strip_prefix("ok="))
        .unwrap_or_else(|| panic!("no counts in the client's output:\n{logs}"));
    let (ok, fail) = counts.split_once(" fail=").expect("ok=N fail=M");
    let ok: u64 = ok.parse().expect("ok count");
    assert_eq!(fail.trim(), "0", "failed requests:\n{logs}");
    assert!(ok >= 20, "{logs}");
    let mut served = Vec::new();
    for ip in &replicas {
        // The client has exited: a one-off container of its image asks.
        let metrics = docker_text(&[
            "run",
            "--rm",
            "--network",
            &format!("reconcile-{}", p.name),
            &client,
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{ip}:8000/metrics"),
        ]);
        let n: u64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("reconcile_endpoint_requests_total")
                    && l.contains("route=\"/predict\"")
                    && l.contains("status=\"200\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        served.push(n);
    }
    eprintln!("requests per replica: {served:?} of {ok}");
    assert!(served.iter().all(|n| *n > 0), "{served:?}");
    assert_eq!(served.iter().sum::<u64>(), ok, "{served:?}");
}
