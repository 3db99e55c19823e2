//! Services against a real dockerd. No registry is reachable, so every image is
//! built here from scratch around Debian's static busybox (sh, httpd, wget).
//! Each test owns a project name, hence its own network, containers and
//! volumes, and destroys them at the end (also when it fails).
//!
//! Without an engine these tests skip with a notice; under `CI=true` they fail.

mod common;
#[path = "common/images.rs"]
mod images;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{docker_available, text};
use images::{busybox, redis_context};

/// A temporary project with a busybox build context at `web/`.
struct DockerProject {
    dir: tempfile::TempDir,
    name: String,
}

impl DockerProject {
    fn new(test: &str) -> DockerProject {
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
            "dk{}{}",
            test.replace('_', "").chars().take(20).collect::<String>(),
            std::process::id() % 10_000
        );
        DockerProject { dir, name }
    }

    /// A copy of the example specs (the StreamFlow system) renamed to this
    /// test's project.
    fn from_example(test: &str) -> DockerProject {
        let p = DockerProject::new(test);
        // The example without its monitor, as in the other tiers.
        common::copy_dir_except(
            &common::example_specs(),
            &p.specs(),
            &[common::MONITOR_SPEC],
        );
        let project_yaml = p.specs().join("project.yaml");
        let text = std::fs::read_to_string(&project_yaml).expect("read project.yaml");
        std::fs::write(
            &project_yaml,
            text.replacen("name: streamflow", &format!("name: {}", p.name), 1),
        )
        .expect("write project.yaml");
        p
    }

    /// Edits a spec file of the project in place.
    fn edit(&self, file: &str, f: impl FnOnce(String) -> String) {
        let path = self.specs().join(file);
        let text = std::fs::read_to_string(&path).expect("read spec");
        std::fs::write(&path, f(text)).expect("write spec");
    }

    fn specs(&self) -> PathBuf {
        self.dir.path().join("specs")
    }

    /// Writes the specs: the Project document first, then `services`.
    fn write(&self, services: &str) {
        std::fs::write(
            self.specs().join("specs.yaml"),
            format!("kind: Project\nname: {}\n---\n{services}", self.name),
        )
        .expect("write specs");
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
        cmd.args(args).arg(self.specs()).env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run reconcile")
    }

    fn apply_ok(&self) -> String {
        let out = self.run(&["apply"]);
        let t = text(&out);
        assert!(out.status.success(), "apply failed:\n{t}");
        t
    }

    fn container(&self, service: &str) -> String {
        format!("{}-{service}", self.name)
    }

    /// `docker inspect -f <format> <container>`, or `None` when it does not exist.
    fn inspect(&self, service: &str, format: &str) -> Option<String> {
        let out = Command::new("docker")
            .args(["inspect", "-f", format, &self.container(service)])
            .output()
            .expect("docker inspect");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn id(&self, service: &str) -> Option<String> {
        self.inspect(service, "{{.Id}}")
    }

    /// The host port published for `container_port`.
    fn host_port(&self, service: &str, container_port: u16) -> u16 {
        let out = Command::new("docker")
            .args([
                "port",
                &self.container(service),
                &container_port.to_string(),
            ])
            .output()
            .expect("docker port");
        let s = String::from_utf8_lossy(&out.stdout);
        s.lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no published port in `{s}`"))
    }

    fn docker(args: &[&str]) -> Output {
        Command::new("docker").args(args).output().expect("docker")
    }
}

impl Drop for DockerProject {
    fn drop(&mut self) {
        let _ = self.run(&["destroy", "--yes", "--purge"]);
    }
}

/// A web server that is healthy once it serves its index page.
fn web_service(name: &str, marker: &str) -> String {
    format!(
        r#"kind: Service
name: {name}
build: {{ context: ./web }}
command: [sh, -c, "echo {marker} > /www/index.html && exec httpd -f -p 8080 -h /www"]
ports: ["127.0.0.1::8080"]
volumes: ["www_{name}:/www"]
env: {{ MARKER: "{marker}" }}
health: {{ command: [wget, -q, -O, /dev/null, "http://127.0.0.1:8080/"], interval: 100ms, retries: 30 }}
"#
    )
}

fn get(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read");
    body
}

#[test]
fn healthy_service_serves_and_second_apply_is_a_noop() {
    if !docker_available() {
        return;
    }
    let p = DockerProject::new("healthy");
    p.write(&web_service("web", "hello-from-web"));
    let out = p.apply_ok();
    assert!(out.contains("create Service/web"), "{out}");
    assert_eq!(
        p.inspect("web", "{{.State.Health.Status}}").as_deref(),
        Some("healthy")
    );
    assert!(get(p.host_port("web", 8080)).contains("hello-from-web"));
    // Labels name the owner, the resource and the spec hash.
    let labels = p.inspect("web", "{{json .Config.Labels}}").expect("labels");
    assert!(
        labels.contains(&format!("\"reconcile.project\":\"{}\"", p.name)),
        "{labels}"
    );
    assert!(
        labels.contains("\"reconcile.resource\":\"Service/web\""),
        "{labels}"
    );
    assert!(labels.contains("reconcile.hash"), "{labels}");
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

#[test]
fn a_check_that_never_passes_fails_with_the_logs() {
    if !docker_available() {
        return;
    }
    let p = DockerProject::new("neverhealthy");
    p.write(
        r#"kind: Service
name: stuck
build: { context: ./web }
command: [sh, -c, "echo booting-stuck-marker; exec sleep 600"]
health: { command: "wget -q -O /dev/null http://127.0.0.1:9/", interval: 100ms, timeout: 1s, retries: 3 }
"#,
    );
    let out = p.run(&["apply"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("unhealthy") || t.contains("not healthy"), "{t}");
    assert!(
        t.contains("booting-stuck-marker"),
        "the error quotes the logs:\n{t}"
    );
}

#[test]
fn a_crash_looping_container_fails_fast_with_its_exit_code() {
    if !docker_available() {
        return;
    }
    let p = DockerProject::new("crashloop");
    p.write(
        r#"kind: Service
name: crashy
build: { context: ./web }
command: [sh, -c, "echo dying-marker; exit 3"]
restart: always
"#,
    );
    let t0 = std::time::Instant::now();
    let out = p.run(&["apply"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("exited with code 3"), "{t}");
    assert!(t.contains("dying-marker"), "{t}");
    // Not waiting for a deadline: the crash is seen on the first polls.
    assert!(t0.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn a_dependent_starts_only_when_its_dependency_is_healthy() {
    if !docker_available() {
        return;
    }
    let p = DockerProject::new("dependson");
    // The server takes a second before it serves; the client fetches once at
    // start and exits (restart: no) if the server is not there yet, which
    // would fail the apply.
    p.write(
        r#"kind: Service
name: server
build: { context: ./web }
command: [sh, -c, "sleep 1; echo slow-server-marker > /www/index.html; exec httpd -f -p 8080 -h /www"]
volumes: ["www:/www"]
health: { command: [wget, -q, -O, /dev/null, "http://127.0.0.1:8080/"], interval: 100ms, retries: 50 }
---
kind: Service
name: client
build: { context: ./web }
command: [sh, -c, "wget -q -O - http://server:8080/ && exec sleep 600"]
dependsOn: [server]
"#,
    );
    p.apply_ok();
    let out = DockerProject::docker(&["logs", &p.container("client")]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("slow-server-marker"),
        "client reached the server by name: {}",
        text(&out)
    );
}

#[test]
fn only_the_changed_service_is_recreated() {
    if !docker_available() {
        return;
    }
    let p = DockerProject::new("recreate");
    p.write(&format!(
        "{}---\n{}",
        web_service("a", "one"),
        web_service("b", "two")
    ));
    p.apply_ok();
    let (a1, b1) = (p.id("a").expect("a"), p.id("b").expect("b"));
    p.write(&format!(
        "{}---\n{}",
        web_service("a", "uno"),
        web_service("b", "two")
    ));
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(text(&plan).contains("replace Service/a"), "{}", text(&plan));
    p.apply_ok();
    let (a2, b2) = (p.id("a").expect("a"), p.id("b").expect("b"));
    assert_ne!(a1, a2, "a changed and was recreated");
    assert_eq!(b1, b2, "b did not change and was left alone");
    assert!(get(p.host_port("a", 8080)).contains("uno"));
}

#[test]
fn drift_out_of_band_is_planned_and_healed() {
    if !docker_available() {
        return;
    }
    let p = DockerProject::new("drift");
    p.write(&format!(
        "{}---\n{}",
        web_service("a", "one"),
        web_service("b", "two")
    ));
    p.apply_ok();
    assert!(
        DockerProject::docker(&["rm", "-f", &p.container("a")])
            .status
            .success()
    );
    assert!(
        DockerProject::docker(&["stop", "-t", "0", &p.container("b")])
            .status
            .success()
    );
    let plan = p.run(&["plan"]);
    let t = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{t}");
    assert!(t.contains("removed out of band"), "{t}");
    assert!(
        t.contains("update Service/b") && t.contains("exited"),
        "{t}"
    );
    p.apply_ok();
    assert_eq!(
        p.inspect("a", "{{.State.Health.Status}}").as_deref(),
        Some("healthy")
    );
    assert_eq!(
        p.inspect("b", "{{.State.Status}}").as_deref(),
        Some("running")
    );
    assert_eq!(p.run(&["plan"]).status.code(), Some(0));
}

#[test]
fn removed_services_are_pruned_and_destroy_keeps_volumes_unless_purged() {
    if !docker_available() {
        return;
    }
    let p = DockerProject::new("prune");
    p.write(&format!(
        "{}---\n{}",
        web_service("a", "one"),
        web_service("b", "two")
    ));
    p.apply_ok();
    let b_id = p.id("b").expect("b runs");
    p.write(&web_service("a", "one"));
    let out = p.apply_ok();
    assert!(out.contains("delete Service/b"), "{out}");
    assert!(p.id("b").is_none(), "container {b_id} was pruned");
    assert!(p.id("a").is_some());
    let volume = format!("{}_www_a", p.name);
    let volume_exists = |v: &str| {
        DockerProject::docker(&["volume", "inspect", v])
            .status
            .success()
    };
    assert!(
        volume_exists(&format!("{}_www_b", p.name)),
        "pruning keeps volumes"
    );

    let out = p.run(&["destroy", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(p.id("a").is_none());
    let network = format!("reconcile-{}", p.name);
    assert!(
        !DockerProject::docker(&["network", "inspect", &network])
            .status
            .success()
    );
    assert!(
        volume_exists(&volume),
        "destroy without --purge keeps volumes"
    );
    let images = DockerProject::docker(&[
        "images",
        "-q",
        "--filter",
        &format!("label=reconcile.project={}", p.name),
    ]);
    assert!(
        String::from_utf8_lossy(&images.stdout).trim().is_empty(),
        "destroy removes the images it built"
    );
    let out = p.run(&["destroy", "--yes", "--purge"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!volume_exists(&volume), "--purge removes volumes");
}

#[test]
fn without_an_engine_the_error_names_the_socket_and_other_kinds_converge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    std::fs::create_dir_all(&specs).expect("mkdir");
    std::fs::write(
        specs.join("specs.yaml"),
        "kind: Project\nname: noengine\n---\nkind: Entity\nname: user\njoinKeys: [user_id]\n---\n\
         kind: Service\nname: web\nimage: busybox:latest\n",
    )
    .expect("write");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_reconcile"))
            .args(args)
            .arg(&specs)
            .env("NO_COLOR", "1")
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .expect("run")
    };
    let out = run(&["apply"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("unix:///nonexistent/docker.sock"), "{t}");
    assert!(t.contains("DOCKER_HOST"), "{t}");
    assert!(t.contains("Entity/user"), "{t}");
    let status = text(&run(&["status"]));
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Entity") && l.contains("user") && l.contains("Ready")),
        "{status}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn a_docker_endpoint_serves_predictions_from_its_container() {
    if !docker_available() {
        return;
    }
    let p = DockerProject::from_example("endpoint");
    let port = free_port();
    p.edit("training.yaml", |t| {
        t.replace("port: 8000", &format!("port: {port}"))
            .replace("runtime: embedded", "runtime: docker")
    });
    let run = |args: &[&str]| p.run(args);
    let project = p.name.clone();

    let out = run(&["apply"]);
    let t = text(&out);
    assert!(out.status.success(), "apply failed:\n{t}");
    assert!(t.contains("Endpoint/churn-api"), "{t}");
    let container = format!("{project}-churn-api");
    let state = DockerProject::docker(&["inspect", "-f", "{{.State.Health.Status}}", &container]);
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "healthy");

    // The container answers /predict over the published port.
    let user = "7590-VHVEG";
    let body = format!("{{\"user_id\": \"{user}\"}}");
    let request = format!(
        "POST /predict HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the endpoint");
    s.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    assert!(response.contains("probability"), "{response}");

    // Running: the next plan is a no-op.
    let plan = run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

#[test]
fn a_store_on_a_service_is_started_first_and_reached_through_it() {
    if !docker_available() {
        return;
    }
    let p = DockerProject::from_example("store");
    let specs = p.specs();
    // Features only: training is not what this test is about.
    std::fs::remove_file(specs.join("training.yaml")).expect("rm training.yaml");
    redis_context(&specs.join("redis"));
    p.edit("project.yaml", |t| {
        t.replacen(
            "---",
            "online: redis://cache:6379/0?prefix=onsvc\n---\nkind: Service\nname: cache\n\
             build: { context: ./redis }\n\
             command: [--port, \"6379\", --bind, 0.0.0.0, --protected-mode, \"no\", --save, \"\", --appendonly, \"no\"]\n\
             ports: [\"127.0.0.1::6379\"]\n\
             health: { command: \"echo PING | nc 127.0.0.1 6379 | grep -q PONG\", interval: 100ms, retries: 50 }\n---",
            1,
        )
    });
    let run = |args: &[&str]| p.run(args);

    let out = run(&["apply"]);
    let t = text(&out);
    assert!(out.status.success(), "apply failed:\n{t}");
    assert!(t.contains("store service Service/cache"), "{t}");
    // Started by the engine before the state store existed, and recorded in it
    // as soon as it opened: nothing is left for the main plan to adopt.
    assert!(!t.contains("adopt running container"), "{t}");
    let status = run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let cache = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["kind"] == "Service" && r["name"] == "cache")
        .unwrap_or_else(|| panic!("Service/cache not recorded: {rows}"));
    assert_eq!(cache["state"], "Ready", "{cache}");
    // The features landed in the Redis inside the container, read back through
    // the rewritten URL by a separate process.
    let get = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["features", "get", "user", "7590-VHVEG", "--json", "--specs"])
        .arg(&specs)
        .env("NO_COLOR", "1")
        .output()
        .expect("features get");
    assert!(get.status.success(), "{}", text(&get));
    assert!(text(&get).contains("months_active"), "{}", text(&get));
    // The host's own Redis does not hold them.
    let keys = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "--scan", "--pattern", "onsvc*"])
        .output();
    if let Ok(keys) = keys {
        assert!(String::from_utf8_lossy(&keys.stdout).trim().is_empty());
    }
    assert_eq!(run(&["plan"]).status.code(), Some(0));
}

/// A Service bind-mounting the folder an `Observability` generates: the files
/// exist before it starts, it is recreated when they change (and only then),
/// and a generated file edited by hand is rewritten without touching it.
#[test]
fn a_service_mounting_generated_config_follows_it() {
    if !docker_available() {
        return;
    }
    let p = DockerProject::new("generated_mount");
    let specs = |interval: &str| {
        format!(
            r#"kind: Observability
name: monitoring
scrapeInterval: {interval}
controller: 127.0.0.1:9464
---
kind: Service
name: prom
build: {{ context: ./web }}
command: [httpd, -f, -p, "8080", -h, /www]
ports: ["127.0.0.1::8080"]
volumes: ["./.reconcile/observability/prometheus:/www:ro"]
health: {{ command: [wget, -q, -O, /dev/null, "http://127.0.0.1:8080/prometheus.yml"], interval: 100ms, retries: 30 }}
dependsOn: [Observability/monitoring]
"#
        )
    };
    let served = |p: &DockerProject| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p.host_port("prom", 8080)))
            .expect("connect");
        s.write_all(b"GET /prometheus.yml HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("send");
        let mut body = String::new();
        s.read_to_string(&mut body).expect("read");
        body
    };
    p.write(&specs("15s"));
    let out = p.apply_ok();
    assert!(out.contains("Observability/monitoring"), "{out}");
    assert!(
        served(&p).contains("scrape_interval: 15s"),
        "{}",
        served(&p)
    );
    let first = p.id("prom").expect("container");
    let noop = p.run(&["plan"]);
    assert_eq!(noop.status.code(), Some(0), "{}", text(&noop));

    // A setting changes what is generated: the container that mounts it is recreated.
    p.write(&specs("7s"));
    let plan = text(&p.run(&["plan"]));
    assert!(plan.contains("Service/prom"), "{plan}");
    p.apply_ok();
    let second = p.id("prom").expect("container");
    assert_ne!(first, second, "recreated on new config");
    assert!(served(&p).contains("scrape_interval: 7s"), "{}", served(&p));

    // Edited by hand: the file is rewritten in place, the container stays and sees it.
    let file = p
        .specs()
        .join(".reconcile/observability/prometheus/prometheus.yml");
    let generated = std::fs::read_to_string(&file).expect("generated");
    std::fs::write(&file, "global: {}\n").expect("edit");
    let plan = text(&p.run(&["plan"]));
    assert!(plan.contains("prometheus/prometheus.yml"), "{plan}");
    assert!(!plan.contains("Service/prom"), "{plan}");
    p.apply_ok();
    assert_eq!(
        std::fs::read_to_string(&file).expect("rewritten"),
        generated
    );
    assert_eq!(p.id("prom").as_deref(), Some(second.as_str()));
    assert!(served(&p).contains("scrape_interval: 7s"), "{}", served(&p));
}
