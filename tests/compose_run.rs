//! The compose path of `examples/streamflow-docker`, run for real: a project
//! exported with `reconcile compose --build-images`, its containers run by
//! Docker Compose v2, and `reconcile apply --no-containers` converging the rest
//! beside them with the stores pointed at what compose publishes, as the
//! example's README says. Compose owns its containers: reconcile creates none
//! of its own and compose's keep their ids through every apply.
//!
//! No registry is reachable, so the store Service's image (Redis) is built here
//! from this machine's redis-server and busybox, like `tests/docker.rs` does,
//! and the endpoint image is the one `--build-images` builds from the binary.
//!
//! Needs a dockerd and `docker compose` (the v2 CLI plugin; `.ci/run`
//! installs it), Debian's busybox-static and redis-server. Skips with a notice
//! when dockerd or compose is missing; under `CI=true` it fails instead.

mod common;
#[path = "common/images.rs"]
mod images;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{docker_available, text};
use images::redis_context;

/// The Service secret of the test project: set for reconcile and compose, and
/// never given to the endpoint container (which must serve without it).
const SECRET_VAR: &str = "COMPOSE_RUN_SECRET";
const SECRET: &str = "not-for-the-endpoint";

/// Whether `docker compose` (v2) runs here; under `CI=true` it must.
fn compose_available() -> bool {
    if !docker_available() {
        return false;
    }
    let ok = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but `docker compose` is missing: .ci/run must install it (ensure_compose)"
        );
        eprintln!(
            "NOTICE: skipping: no `docker compose` (v2 CLI plugin; .ci/run's ensure_compose installs it)"
        );
    }
    ok
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The example's system laid out as `examples/streamflow-docker` lays it out:
/// the online store on a Service the Project's URL names, the endpoint in a
/// container, and a Service with a secret.
struct ComposeProject {
    dir: tempfile::TempDir,
    name: String,
    redis_image: String,
    endpoint_port: u16,
}

impl ComposeProject {
    fn new() -> ComposeProject {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = format!("composerun{}", std::process::id() % 100_000);
        let specs = dir.path().join("specs");
        common::copy_dir_except(&common::example_specs(), &specs, &[common::MONITOR_SPEC]);
        let redis_image = format!("{name}-redis:test");
        let context = dir.path().join("redis-image");
        redis_context(&context);
        let built = docker(&[
            "build",
            "-q",
            "-t",
            &redis_image,
            context.to_str().expect("UTF-8 path"),
        ]);
        assert!(built.status.success(), "{}", text(&built));
        let endpoint_port = free_port();
        let p = ComposeProject {
            dir,
            name,
            redis_image,
            endpoint_port,
        };
        p.edit("project.yaml", |t| {
            t.replacen("name: streamflow", &format!("name: {}", p.name), 1)
                .replacen(
                    "---",
                    &format!(
                        "online: redis://cache:6379/0\n---\n\
                         kind: Service\nname: cache\nimage: {}\n\
                         command: [--port, \"6379\", --bind, 0.0.0.0, --protected-mode, \"no\", --save, \"\", --appendonly, \"no\"]\n\
                         env: {{ NOTE: \"${{{SECRET_VAR}}}\" }}\n\
                         ports: [\"127.0.0.1::6379\"]\n\
                         health: {{ command: \"echo PING | nc 127.0.0.1 6379 | grep -q PONG\", interval: 100ms, retries: 50 }}\n---",
                        p.redis_image
                    ),
                    1,
                )
        });
        p.edit("training.yaml", |t| {
            t.replace("port: 8000", &format!("port: {}", p.endpoint_port))
                .replace("runtime: embedded", "runtime: docker")
        });
        p
    }

    fn edit(&self, file: &str, f: impl FnOnce(String) -> String) {
        let path = self.specs().join(file);
        let text = std::fs::read_to_string(&path).expect("read spec");
        std::fs::write(&path, f(text)).expect("write spec");
    }

    fn specs(&self) -> PathBuf {
        self.dir.path().join("specs")
    }

    fn compose_file(&self) -> PathBuf {
        self.dir.path().join("docker-compose.yml")
    }

    /// `reconcile <args…>` from the project's folder, with the secret set.
    fn reconcile(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env(SECRET_VAR, SECRET)
            .env_remove("RECONCILE_STATE")
            .env_remove("RECONCILE_OFFLINE")
            .env_remove("RECONCILE_ONLINE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run reconcile")
    }

    /// `docker compose -f <file> <args…>`, checked to succeed.
    fn compose(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .arg("compose")
            .arg("-f")
            .arg(self.compose_file())
            .args(args)
            .env(SECRET_VAR, SECRET)
            .output()
            .expect("run docker compose");
        assert!(
            out.status.success(),
            "docker compose {args:?}:\n{}",
            text(&out)
        );
        stdout(&out)
    }

    /// Ids of the containers compose runs for the project, by service.
    fn compose_containers(&self) -> Vec<(String, String)> {
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--format",
            "{{.Label \"com.docker.compose.service\"}} {{.ID}}",
        ]);
        let mut rows: Vec<(String, String)> = stdout(&out)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(s, id)| (s.to_string(), id.to_string()))
            .collect();
        rows.sort();
        rows
    }

    /// Containers the controller created for the project (by its labels).
    fn reconcile_containers(&self) -> String {
        stdout(&docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=reconcile.project={}", self.name),
            "--format",
            "{{.Names}}",
        ]))
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        if self.compose_file().exists() {
            let _ = Command::new("docker")
                .arg("compose")
                .arg("-f")
                .arg(self.compose_file())
                .args(["down", "-v", "--remove-orphans", "-t", "0"])
                .env(SECRET_VAR, SECRET)
                .output();
        }
        for c in self.reconcile_containers().lines() {
            let _ = docker(&["rm", "-f", c]);
        }
        let _ = docker(&["rmi", "-f", &self.redis_image]);
    }
}

fn predict(port: u16, user: &str) -> String {
    use std::io::{Read, Write};
    let body = format!("{{\"user_id\": \"{user}\"}}");
    let request = format!(
        "POST /predict HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the endpoint");
    s.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    response
}

#[test]
fn compose_runs_the_containers_and_reconcile_the_rest_without_a_fight() {
    if !compose_available() {
        return;
    }
    let p = ComposeProject::new();
    let specs = p.specs();
    let specs = specs.to_str().expect("UTF-8 path");

    // The file, and the endpoint image no registry has.
    let out = p.reconcile(
        &[
            "compose",
            specs,
            "--out",
            p.compose_file().to_str().expect("UTF-8 path"),
            "--build-images",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("reconcile-serve:latest"),
        "{}",
        text(&out)
    );
    let yaml = std::fs::read_to_string(p.compose_file()).expect("written");
    assert!(!yaml.contains("reconcile.project:"), "{yaml}");
    assert!(!yaml.contains(SECRET), "a resolved secret leaked:\n{yaml}");
    assert!(
        docker(&["image", "inspect", "reconcile-serve:latest"])
            .status
            .success()
    );

    // The store first, as the README runs it; its published port is the
    // online store's address from the host.
    p.compose(&["up", "-d", "--wait", "cache"]);
    let published = p.compose(&["port", "cache", "6379"]);
    let port = published.rsplit(':').next().expect("host:port").to_string();
    let online = format!("redis://127.0.0.1:{port}/0");
    let before = p.compose_containers();
    assert_eq!(before.len(), 1, "{before:?}");

    // The Project's URL names Service/cache, but the command opens the
    // override: no store Service is started for it (even without
    // --no-containers), so no twin of compose's cache appears.
    let out = p.reconcile(
        &["apply", specs, "--target", "Entity/user"],
        &[("RECONCILE_ONLINE", &online)],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("store service"), "{}", text(&out));
    assert_eq!(
        p.reconcile_containers(),
        "",
        "reconcile started a container"
    );

    // The controller does not take compose's container for its own: without
    // --no-containers it would run one of its own beside it, never replace it.
    let plan = p.reconcile(&["plan", specs], &[("RECONCILE_ONLINE", &online)]);
    let t = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{t}");
    assert!(t.contains("create Service/cache"), "{t}");
    assert!(!t.contains("replace Service/cache"), "{t}");

    // The documented way: everything but the containers.
    let out = p.reconcile(
        &["apply", specs, "--no-containers"],
        &[("RECONCILE_ONLINE", &online)],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("TrainingRun/"), "{t}");
    assert!(
        !t.contains("Service/cache") && !t.contains("Endpoint/churn-api"),
        "containers are compose's:\n{t}"
    );
    assert_eq!(
        p.reconcile_containers(),
        "",
        "reconcile started a container"
    );
    assert_eq!(
        p.compose_containers(),
        before,
        "compose's cache was touched"
    );

    // Compose starts the endpoint from the image --build-images made; it
    // serves the Production model with the features reconcile wrote into
    // compose's Redis, reached by service name inside compose's network.
    p.compose(&["up", "-d", "--wait"]);
    let response = predict(p.endpoint_port, "7590-VHVEG");
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}\n{}",
        p.compose(&["logs", "churn-api"])
    );
    assert!(response.contains("probability"), "{response}");
    let running = p.compose_containers();
    assert_eq!(running.len(), 2, "{running:?}");

    // Converged: a second apply changes nothing and touches no container.
    let out = p.reconcile(
        &["apply", specs, "--no-containers"],
        &[("RECONCILE_ONLINE", &online)],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("No changes"), "{}", text(&out));
    let plan = p.reconcile(
        &["plan", specs, "--no-containers"],
        &[("RECONCILE_ONLINE", &online)],
    );
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert_eq!(
        p.compose_containers(),
        running,
        "compose's containers were touched"
    );
    assert_eq!(
        p.reconcile_containers(),
        "",
        "reconcile started a container"
    );
}

#[test]
fn no_containers_refuses_a_store_url_naming_a_service() {
    // Under --no-containers reconcile neither starts nor looks for a store's
    // Service, so a store URL still naming one is an error saying what to do;
    // no engine is needed to see it.
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    std::fs::create_dir_all(&specs).expect("mkdir");
    std::fs::write(
        specs.join("specs.yaml"),
        "kind: Project\nname: nocontainers\nonline: redis://cache:6379/0\n---\n\
         kind: Entity\nname: user\njoinKeys: [user_id]\n---\n\
         kind: Service\nname: cache\nimage: redis:7\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["apply", "--no-containers"])
        .arg(&specs)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env_remove("RECONCILE_STATE")
        .env_remove("RECONCILE_OFFLINE")
        .env_remove("RECONCILE_ONLINE")
        .output()
        .expect("run reconcile");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("Service/cache"), "{t}");
    assert!(t.contains("RECONCILE_ONLINE"), "{t}");
    assert!(!t.contains("nonexistent"), "the engine was asked:\n{t}");
}
