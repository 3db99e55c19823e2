//! The `MlflowMirror` against a real MLflow tracking server: `mlflow server`
//! from the Python venv `.ci/run` makes (`$RECONCILE_VENV`, default
//! `$HOME/.cache/reconcile/venv`), started per test on a free loopback port
//! with a SQLite backend and proxied artifacts in a temporary folder. Every
//! check reads MLflow's own REST API. Without MLflow in the venv the server
//! tests skip with a notice, except under `CI=true`, where they fail.
//!
//! The spec diagnostics at the end need no server.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Project, text};
use reconcile::diag::DiagCode;
use reconcile::store::registry::{Registry, Stage, VersionInfo};
use serde_json::{Value, json};

const MODEL: &str = "streamflow_churn";

fn venv() -> PathBuf {
    std::env::var_os("RECONCILE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/reconcile/venv")
        })
}

/// The venv's `mlflow` command, or `None` (with a notice) when it cannot run
/// a server; under `CI=true` that fails.
fn mlflow_bin() -> Option<PathBuf> {
    let python = venv().join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import mlflow.server"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!(
            "{} cannot import mlflow.server (set RECONCILE_VENV or run .ci/run's ensure_venv)",
            python.display()
        );
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {msg}"
        );
        eprintln!("NOTICE: skipping MLflow test: {msg}");
        return None;
    }
    Some(venv().join("bin/mlflow"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A tracking server of this test: its own process group (the server forks
/// workers), its own SQLite file and artifacts folder.
struct Server {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(bin: &Path, port: u16, dir: &Path) -> Server {
        std::fs::create_dir_all(dir).expect("server dir");
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let child = Command::new(bin)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .args(["--workers", "1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        let mut server = Server {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
        };
        server.wait_healthy();
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("mlflow server exited ({status}):\n{}", self.log());
            }
            if http_get_text(self.port, "/health").is_some_and(|b| b.trim() == "OK") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server not healthy after 180 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Stops the server and its workers (its process group).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = child.id() as i32;
        // SAFETY: signals only the process group this test started.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above; whatever of the group is left.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = child.wait();
        // Workers may hold the port a moment longer.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A GET over plain TCP (so `wait_healthy` needs no runtime): the body on 200.
fn http_get_text(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// MLflow's REST API, as a client would read it.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: server.url(),
        }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let r = self
            .http
            .get(format!("{}/api/2.0/mlflow/{path}", self.base))
            .query(query)
            .send()
            .await
            .expect("GET");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/api/2.0/mlflow/{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = r.status();
        let answer: Value = r.json().await.expect("json");
        assert!(status.is_success(), "POST {path} {body}: {status} {answer}");
        answer
    }

    async fn artifact(&self, path: &str) -> Vec<u8> {
        let r = self
            .http
            .get(format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{path}",
                self.base
            ))
            .send()
            .await
            .expect("GET artifact");
        assert!(r.status().is_success(), "artifact {path}: {}", r.status());
        r.bytes().await.expect("bytes").to_vec()
    }

    async fn experiment_id(&self) -> String {
        let e = self
            .get(
                "experiments/get-by-name",
                &[("experiment_name", "streamflow")],
            )
            .await;
        e["experiment"]["experiment_id"]
            .as_str()
            .expect("experiment id")
            .to_string()
    }

    /// Every run of the experiment, deleted ones included.
    async fn runs(&self) -> Vec<Value> {
        let id = self.experiment_id().await;
        let r = self
            .post(
                "runs/search",
                json!({ "experiment_ids": [id], "run_view_type": "ALL", "max_results": 1000 }),
            )
            .await;
        r["runs"].as_array().cloned().unwrap_or_default()
    }

    async fn versions(&self) -> Vec<Value> {
        let filter = format!("name='{MODEL}'");
        let r = self
            .get("model-versions/search", &[("filter", filter.as_str())])
            .await;
        r["model_versions"].as_array().cloned().unwrap_or_default()
    }

    /// The MLflow version the `production` alias points at.
    async fn production_alias(&self) -> Option<String> {
        let m = self.get("registered-models/get", &[("name", MODEL)]).await;
        m["registered_model"]["aliases"]
            .as_array()?
            .iter()
            .find(|a| a["alias"] == "production")
            .and_then(|a| a["version"].as_str())
            .map(str::to_string)
    }

    /// How many experiments, runs, registered models and versions exist.
    async fn census(&self) -> (usize, usize, usize, usize) {
        let experiments = self
            .post(
                "experiments/search",
                json!({ "max_results": 1000, "view_type": "ALL" }),
            )
            .await["experiments"]
            .as_array()
            .map_or(0, Vec::len);
        let models = self
            .get("registered-models/search", &[("max_results", "1000")])
            .await["registered_models"]
            .as_array()
            .map_or(0, Vec::len);
        (
            experiments,
            self.runs().await.len(),
            models,
            self.versions().await.len(),
        )
    }
}

fn tag<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

fn run_with_identity<'a>(runs: &'a [Value], identity: &str) -> &'a Value {
    let found: Vec<&Value> = runs
        .iter()
        .filter(|r| tag(&r["data"], "reconcile.identity") == Some(identity))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one run per version: {identity} in {runs:#?}"
    );
    found[0]
}

fn version_with_identity(versions: &[Value], identity: &str) -> String {
    let found: Vec<&Value> = versions
        .iter()
        .filter(|v| tag(v, "reconcile.identity") == Some(identity))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one MLflow version per version: {versions:#?}"
    );
    found[0]["version"].as_str().expect("version").to_string()
}

/// The example without its monitor, plus a mirror of its model to `url`.
fn project_with_mirror(url: &str) -> Project {
    let p = Project::example();
    std::fs::write(
        p.specs.join("mlflow.yaml"),
        format!(
            "# yaml-language-server: $schema=../schemas/mlflowmirror.json\n\
             kind: MlflowMirror\nname: mlflow\ntrackingUri: {url}\nmodels: [{MODEL}]\n"
        ),
    )
    .expect("write mirror spec");
    p
}

async fn registry(p: &Project) -> Vec<VersionInfo> {
    Registry::new(p.db().await, "streamflow")
        .versions(MODEL)
        .await
        .expect("registry")
}

fn assert_ok(what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed:\n{}", text(out));
}

/// The mirror's line of an apply (`✓ MlflowMirror/mlflow: … (N ms)`).
fn mirror_line(out: &Output) -> String {
    text(out)
        .lines()
        .find(|l| l.contains("MlflowMirror/mlflow:"))
        .unwrap_or_default()
        .to_string()
}

/// The milliseconds the engine printed for the mirror.
fn mirror_ms(out: &Output) -> Option<u64> {
    let line = mirror_line(out);
    let inner = line.rsplit_once('(')?.1.strip_suffix(" ms)")?;
    inner.parse().ok()
}

/// Checks that MLflow holds every registry version: the run (params,
/// metrics, identity tags, artifact bytes, descriptor), the registered
/// version, its stage, and `production` on the registry's Production.
async fn assert_mirrored(p: &Project, api: &Api) {
    let versions = registry(p).await;
    assert!(!versions.is_empty());
    let runs = api.runs().await;
    let mlflow_versions = api.versions().await;
    let store = Registry::new(p.db().await, "streamflow");
    for v in &versions {
        let run = run_with_identity(&runs, &v.identity);
        assert_eq!(run["info"]["lifecycle_stage"], "active");
        assert_eq!(run["info"]["status"], "FINISHED");
        let data = &run["data"];
        for (key, want) in [
            ("reconcile.version", v.version.to_string()),
            ("reconcile.training_set_hash", v.training_set_hash.clone()),
            ("reconcile.artifact_hash", v.artifact_hash.clone()),
            ("reconcile.run", v.run.clone()),
        ] {
            assert_eq!(tag(data, key), Some(want.as_str()), "tag {key}");
        }
        // Metrics: every scalar the registry holds, the same number.
        let metrics = data["metrics"].as_array().expect("metrics");
        for (key, want) in v.metrics.as_object().expect("metrics object") {
            let Some(want) = want.as_f64() else { continue };
            let got = metrics
                .iter()
                .find(|m| m["key"] == key.as_str())
                .and_then(|m| m["value"].as_f64());
            assert_eq!(got, Some(want), "metric {key} of version {}", v.version);
        }
        // Params: the run spec's, flattened.
        let params = data["params"].as_array().expect("params");
        let param = |k: &str| {
            params
                .iter()
                .find(|p| p["key"] == k)
                .and_then(|p| p["value"].as_str())
                .map(str::to_string)
        };
        assert_eq!(param("seed"), Some(v.params["seed"].to_string()));
        assert_eq!(param("asOf").as_deref(), v.params["asOf"].as_str());
        if v.run == "churn-rf" {
            assert_eq!(
                param("algorithm.randomForest.trees").as_deref(),
                Some("300")
            );
        }
        // The artifact, byte for byte, and its descriptor.
        let uri = run["info"]["artifact_uri"].as_str().expect("artifact uri");
        let path = uri
            .trim_start_matches("mlflow-artifacts:")
            .trim_start_matches('/');
        let bytes = api.artifact(&format!("{path}/model/model.bin")).await;
        let want = store
            .artifact(MODEL, v.version)
            .await
            .expect("artifact")
            .expect("stored artifact");
        assert_eq!(bytes, want, "artifact of version {}", v.version);
        let mlmodel =
            String::from_utf8(api.artifact(&format!("{path}/model/MLmodel")).await).expect("utf-8");
        assert!(mlmodel.contains("model.bin"), "{mlmodel}");
        assert!(
            mlmodel.contains(run["info"]["run_id"].as_str().unwrap_or("?")),
            "{mlmodel}"
        );
        // The registered version and its stage.
        let mv = version_with_identity(&mlflow_versions, &v.identity);
        let mv = mlflow_versions
            .iter()
            .find(|x| x["version"] == mv.as_str())
            .expect("version");
        assert_eq!(mv["run_id"], run["info"]["run_id"]);
        assert_eq!(
            mv["current_stage"],
            v.stage.as_str(),
            "stage of version {}",
            v.version
        );
    }
    let production = versions
        .iter()
        .find(|v| v.stage == Stage::Production)
        .expect("a Production version");
    assert_eq!(
        api.production_alias().await,
        Some(version_with_identity(
            &mlflow_versions,
            &production.identity
        )),
        "production alias follows the registry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_follows_the_registry_and_heals_drift() {
    let Some(bin) = mlflow_bin() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&bin, free_port(), &tmp.path().join("mlflow"));
    let api = Api::new(&server);
    let p = project_with_mirror(&server.url());

    let first = p.run(&["apply"]);
    assert_ok("first apply", &first);
    let line = mirror_line(&first);
    assert!(line.contains("✓"), "{}", text(&first));
    assert_mirrored(&p, &api).await;
    let versions = registry(&p).await;
    if let Some(ms) = mirror_ms(&first) {
        eprintln!(
            "TIMING: the mirror took {ms} ms for {} version(s) on the first apply ({} ms per version): {line}",
            versions.len(),
            ms / versions.len().max(1) as u64
        );
    }

    // Re-applying creates nothing, in reconcile or in MLflow.
    let census = api.census().await;
    let t0 = Instant::now();
    let again = p.run(&["apply"]);
    let again_ms = t0.elapsed().as_millis();
    assert_ok("second apply", &again);
    assert!(
        !text(&again).contains("MlflowMirror/mlflow:"),
        "{}",
        text(&again)
    );
    assert_eq!(api.census().await, census, "a re-apply made MLflow objects");
    eprintln!("TIMING: a no-op apply with the mirror took {again_ms} ms (whole process)");
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // The alias moved by hand is drift: plan names both versions, apply heals.
    let mlflow_versions = api.versions().await;
    let production = versions
        .iter()
        .find(|v| v.stage == Stage::Production)
        .expect("production");
    let other = versions
        .iter()
        .find(|v| v.stage != Stage::Production)
        .expect("another version");
    let (prod_mv, other_mv) = (
        version_with_identity(&mlflow_versions, &production.identity),
        version_with_identity(&mlflow_versions, &other.identity),
    );
    api.post(
        "registered-models/alias",
        json!({ "name": MODEL, "alias": "production", "version": other_mv }),
    )
    .await;
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let want = format!(
        "drift: alias production of `{MODEL}` points at MLflow version {other_mv}, registry says version {} (MLflow version {prod_mv})",
        production.version
    );
    assert!(
        text(&plan).contains(&want),
        "{}\nwanted: {want}",
        text(&plan)
    );
    let heal = p.run(&["apply"]);
    assert_ok("healing apply", &heal);
    assert!(
        mirror_line(&heal).contains("production → MLflow version"),
        "{}",
        text(&heal)
    );
    assert_eq!(api.production_alias().await, Some(prod_mv.clone()));

    // A metric logged over by hand and a deleted run: drift too, healed in place.
    let runs = api.runs().await;
    let run_id = run_with_identity(&runs, &production.identity)["info"]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    api.post(
        "runs/log-metric",
        json!({ "run_id": run_id, "key": "val_auc", "value": 0.01, "timestamp": 4_000_000_000_000i64, "step": 0 }),
    )
    .await;
    api.post("runs/delete", json!({ "run_id": run_id })).await;
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let shown = text(&plan);
    assert!(
        shown.contains(&format!(
            "drift: run {run_id} of {MODEL} version {} was deleted in MLflow",
            production.version
        )),
        "{shown}"
    );
    assert!(
        shown.contains("metric val_auc is 0.01, registry says"),
        "{shown}"
    );
    assert_ok("healing apply", &p.run(&["apply"]));
    assert_mirrored(&p, &api).await;
    assert_eq!(
        api.census().await,
        census,
        "healing made new MLflow objects"
    );
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

#[tokio::test(flavor = "multi_thread")]
async fn mlflow_down_blocks_nothing_and_the_next_apply_catches_up() {
    let Some(bin) = mlflow_bin() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let p = project_with_mirror(&url);

    // Nothing listens: plan still plans, and says why the mirror will act.
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        text(&plan).contains(&format!(
            "cannot read MLflow (MLflow at {url} is unreachable"
        )),
        "{}",
        text(&plan)
    );

    // Apply trains and promotes; only the mirror fails, saying why.
    let down = p.run(&["apply"]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    let out = text(&down);
    assert!(out.contains("✓ Model/streamflow_churn: version"), "{out}");
    assert!(out.contains("✓ Endpoint/churn-api"), "{out}");
    let line = mirror_line(&down);
    assert!(line.starts_with("✗"), "{out}");
    assert!(
        line.contains(&format!("MLflow at {url} is unreachable")),
        "{line}"
    );
    let versions = registry(&p).await;
    assert!(versions.iter().any(|v| v.stage == Stage::Production));
    let status = p.run(&["status"]);
    let shown = text(&status);
    let row = shown
        .lines()
        .find(|l| l.starts_with("MlflowMirror ") && l.contains(" mlflow "))
        .unwrap_or_default();
    assert!(row.contains("Failed"), "{shown}");
    assert!(
        row.contains(&format!(
            "cannot read MLflow (MLflow at {url} is unreachable"
        )),
        "{shown}"
    );

    // MLflow up: the next apply mirrors everything and trains nothing.
    let mut server = Server::start(&bin, port, &tmp.path().join("mlflow"));
    let api = Api::new(&server);
    let up = p.run(&["apply"]);
    assert_ok("apply with MLflow up", &up);
    assert!(!text(&up).contains("TrainingRun/"), "{}", text(&up));
    assert!(
        mirror_line(&up).contains(&format!("{} run(s) created", versions.len())),
        "{}",
        text(&up)
    );
    if let Some(ms) = mirror_ms(&up) {
        eprintln!(
            "TIMING: catching up {} version(s) took {ms} ms: {}",
            versions.len(),
            mirror_line(&up)
        );
    }
    assert_mirrored(&p, &api).await;
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // MLflow stopped while a run changes: the new version is trained and
    // promoted, the mirror fails; MLflow back, the next apply mirrors the
    // new version and moves the alias, and makes nothing else.
    let before = api.census().await;
    server.stop();
    let training = p.specs.join("training.yaml");
    let yaml = std::fs::read_to_string(&training).expect("read training.yaml");
    let changed = yaml.replacen("seed: 42", "seed: 43", 1);
    assert_ne!(yaml, changed, "training.yaml has a `seed: 42`");
    std::fs::write(&training, changed).expect("write training.yaml");
    let down = p.run(&["apply"]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    let out = text(&down);
    assert!(out.contains("✓ TrainingRun/churn-rf: trained"), "{out}");
    assert!(out.contains("promoted to Production"), "{out}");
    assert!(mirror_line(&down).starts_with("✗"), "{out}");
    assert!(mirror_line(&down).contains("is unreachable"), "{out}");
    let now = registry(&p).await;
    assert_eq!(now.len(), versions.len() + 1, "one new version");
    let newest = now.last().expect("newest");
    assert_eq!(
        newest.stage,
        Stage::Production,
        "the new version is promoted"
    );

    let server = Server::start(&bin, port, &tmp.path().join("mlflow"));
    let api = Api::new(&server);
    let up = p.run(&["apply"]);
    assert_ok("apply with MLflow back", &up);
    assert!(!text(&up).contains("TrainingRun/"), "{}", text(&up));
    assert!(
        mirror_line(&up).contains("1 run(s) created"),
        "{}",
        text(&up)
    );
    if let Some(ms) = mirror_ms(&up) {
        eprintln!(
            "TIMING: catching up 1 new version (and moving the alias) took {ms} ms: {}",
            mirror_line(&up)
        );
    }
    assert_mirrored(&p, &api).await;
    let (experiments, runs, models, mlflow_versions) = before;
    assert_eq!(
        api.census().await,
        (experiments, runs + 1, models, mlflow_versions + 1),
        "one run and one version more, nothing else"
    );
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}

/// The single diagnostic of a folder holding `mirror` and a Model.
fn diagnose(mirror: &str) -> Vec<reconcile::diag::SpecDiagnostic> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("model.yaml"),
        "kind: Model\nname: streamflow_churn\nproduction: manual\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("mlflow.yaml"), mirror).expect("write");
    match reconcile::spec::validate::load_and_validate(dir.path()) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    }
}

fn only(
    diags: &[reconcile::diag::SpecDiagnostic],
    code: DiagCode,
    line: u64,
    column: u64,
) -> String {
    assert_eq!(diags.len(), 1, "expected one diagnostic, got {diags:#?}");
    let d = &diags[0];
    assert_eq!(d.code, code, "{d:#?}");
    assert_eq!(
        (d.file.as_str(), d.line, d.column),
        ("mlflow.yaml", line, column),
        "{}",
        d.short()
    );
    format!("{} {}", d.short(), d.hint.clone().unwrap_or_default())
}

#[test]
fn a_valid_mirror_has_no_diagnostics() {
    let d = diagnose(
        "kind: MlflowMirror\nname: mlflow\ntrackingUri: http://127.0.0.1:5000\nmodels: [streamflow_churn]\nexperiment: churn\n",
    );
    assert!(d.is_empty(), "{d:#?}");
}

#[test]
fn a_bad_tracking_uri_is_shown_where_it_is() {
    let d = diagnose(
        "kind: MlflowMirror\nname: mlflow\ntrackingUri: 127.0.0.1:5000\nmodels: [streamflow_churn]\n",
    );
    let msg = only(&d, DiagCode::InvalidValue, 3, 14);
    assert!(msg.contains("no `http://`"), "{msg}");
    let d = diagnose(
        "kind: MlflowMirror\nname: mlflow\ntrackingUri: \"https://mlflow.internal\"\nmodels: [streamflow_churn]\n",
    );
    let msg = only(&d, DiagCode::InvalidValue, 3, 14);
    assert!(msg.contains("https is not supported"), "{msg}");
}

#[test]
fn a_password_in_a_bad_uri_is_not_printed() {
    let d = diagnose(
        "kind: MlflowMirror\nname: mlflow\ntrackingUri: ftp://ci:hunter22@mlflow:5000\nmodels: [streamflow_churn]\n",
    );
    let msg = only(&d, DiagCode::InvalidValue, 3, 14);
    assert!(msg.contains("scheme `ftp`"), "{msg}");
    assert!(!msg.contains("hunter22"), "{msg}");
}

#[test]
fn an_unknown_model_is_named_with_a_suggestion() {
    let d = diagnose(
        "kind: MlflowMirror\nname: mlflow\ntrackingUri: http://127.0.0.1:5000\nmodels: [streamflow_churm]\n",
    );
    let msg = only(&d, DiagCode::MissingReference, 4, 10);
    assert!(msg.contains("no Model named `streamflow_churm`"), "{msg}");
    assert!(msg.contains("did you mean `streamflow_churn`"), "{msg}");
}

#[test]
fn a_mirror_needs_models_and_names_each_once() {
    let d = diagnose(
        "kind: MlflowMirror\nname: mlflow\ntrackingUri: http://127.0.0.1:5000\nmodels: []\n",
    );
    let msg = only(&d, DiagCode::MissingField, 2, 7);
    assert!(msg.contains("at least one model"), "{msg}");
    let d = diagnose(
        "kind: MlflowMirror\nname: mlflow\ntrackingUri: http://127.0.0.1:5000\nmodels: [streamflow_churn, streamflow_churn]\n",
    );
    let msg = only(&d, DiagCode::InvalidValue, 4, 28);
    assert!(msg.contains("listed twice"), "{msg}");
}

#[test]
fn an_unset_variable_in_the_uri_is_a_diagnostic() {
    let d = diagnose(
        "kind: MlflowMirror\nname: mlflow\ntrackingUri: \"http://ci:${RECONCILE_TEST_UNSET_MLFLOW_PW}@127.0.0.1:5000\"\nmodels: [streamflow_churn]\n",
    );
    let msg = only(&d, DiagCode::UnsetEnv, 3, 25);
    assert!(msg.contains("RECONCILE_TEST_UNSET_MLFLOW_PW"), "{msg}");
}
