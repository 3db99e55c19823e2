//! The generated monitoring against the real thing: `promtool` checks the
//! config and every rule file; a real Prometheus on loopback scrapes
//! `reconcile up` (controller and endpoint) with the generated config, counts
//! exactly the requests sent, evaluates every dashboard panel's query with
//! data, fires the drift alert of the example's monitor and, once the process
//! is stopped, the endpoint-down alert. Dashboards are checked as Grafana's
//! dashboard model requires.

#[macro_use]
mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Project, text};
use serde_json::Value;

/// `prometheus` and `promtool`, or `None` with a notice (a failure under CI).
fn prometheus_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        Command::new(name)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from(name))
    };
    match (find("prometheus"), find("promtool")) {
        (Some(p), Some(t)) => Some((p, t)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but prometheus/promtool are missing: .ci/run must install Debian's prometheus"
            );
            eprintln!("NOTICE: skipping: prometheus and promtool are not installed");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The example with an `Observability` spec; the endpoint on `endpoint_port`.
fn project(endpoint_port: u16, observability: &str, retrain: bool) -> Project {
    let p = Project::example_with_monitor();
    let training = p.specs.join("training.yaml");
    let t = std::fs::read_to_string(&training).expect("training.yaml");
    assert!(t.contains("port: 8000"), "the example's endpoint moved");
    std::fs::write(&training, t.replace("port: 8000", &format!("port: {endpoint_port}")))
        .expect("write training.yaml");
    if !retrain {
        // The drift stays in the newest evaluation instead of being trained away.
        let monitor = p.specs.join("monitoring.yaml");
        let m = std::fs::read_to_string(&monitor).expect("monitoring.yaml");
        let without: String = m
            .lines()
            .filter(|l| !l.starts_with("onDrift:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(m, without, "the example's monitor has no onDrift");
        std::fs::write(&monitor, without).expect("write monitoring.yaml");
    }
    std::fs::write(p.specs.join("observability.yaml"), observability).expect("write spec");
    p
}

fn generate(p: &Project, out: &Path) -> Vec<PathBuf> {
    let o = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["observability"])
        .arg(&p.specs)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run reconcile observability");
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(PathBuf::from)
        .collect()
}

fn dashboards(files: &[PathBuf]) -> Vec<Value> {
    files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
        .map(|f| serde_json::from_slice(&std::fs::read(f).expect("dashboard")).expect("JSON"))
        .collect()
}

/// Every query of every panel: (dashboard uid, panel title, expr).
fn queries(dashboards: &[Value]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for d in dashboards {
        let uid = d["uid"].as_str().unwrap_or_default().to_string();
        for p in d["panels"].as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    uid.clone(),
                    p["title"].as_str().unwrap_or_default().to_string(),
                    t["expr"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

const OBSERVABILITY: &str = "kind: Observability\nname: monitoring\n\
    scrapeInterval: 1s\ncontroller: 127.0.0.1:CONTROLLER\n\
    alerts: { pendingFor: 1s, window: 1m, p99: 250ms }\n";

#[test]
fn generated_config_and_rules_pass_promtool_and_dashboards_are_grafana_models() {
    let Some((_, promtool)) = prometheus_tools() else {
        return;
    };
    let p = project(
        free_port(),
        &OBSERVABILITY.replace("CONTROLLER", "9464"),
        true,
    );
    let out = p.dir.path().join("generated");
    let files = generate(&p, &out);
    let rel: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&out).expect("under out").display().to_string())
        .collect();
    for expected in [
        "prometheus/prometheus.yml",
        "prometheus/rules/endpoints.yml",
        "prometheus/rules/monitors.yml",
        "prometheus/rules/controller.yml",
        "grafana/provisioning/datasources/reconcile.yaml",
        "grafana/provisioning/dashboards/reconcile.yaml",
        "grafana/dashboards/endpoints.json",
        "grafana/dashboards/monitors.json",
        "grafana/dashboards/controller.json",
    ] {
        assert!(rel.iter().any(|r| r == expected), "{expected} missing: {rel:?}");
    }
    // promtool checks the config and, through rule_files, every rule file.
    let config = out.join("prometheus/prometheus.yml");
    let o = Command::new(&promtool)
        .args(["check", "config"])
        .arg(&config)
        .output()
        .expect("promtool");
    assert!(o.status.success(), "promtool check config: {}", text(&o));
    let rules: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.starts_with(out.join("prometheus/rules")))
        .collect();
    assert_eq!(rules.len(), 3);
    for r in &rules {
        let o = Command::new(&promtool)
            .args(["check", "rules"])
            .arg(r)
            .output()
            .expect("promtool");
        assert!(o.status.success(), "promtool check rules {}: {}", r.display(), text(&o));
    }
    // A Prometheus of the project network reaches no embedded endpoint: refused with the file.
    let o = p.run(&["validate"]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(
        p.specs.join("observability.yaml"),
        "kind: Observability\nname: monitoring\nscrape: network\nout: monitoring\n",
    )
    .expect("write");
    let o = p.run(&["validate"]);
    let t = text(&o);
    assert!(!o.status.success());
    assert!(t.contains("observability.yaml:4"), "{t}");
    assert!(t.contains("would be read as one"), "{t}");
    assert!(t.contains("cannot reach this embedded endpoint"), "{t}");
    assert!(t.contains("training.yaml"), "{t}");

    // Grafana's dashboard model: current schema, unique ids, the provisioned
    // datasource by uid on every panel and query, a query on every panel.
    let ds_file = std::fs::read_to_string(out.join("grafana/provisioning/datasources/reconcile.yaml"))
        .expect("datasource");
    let ds: Value = serde_saphyr::from_str(&ds_file).expect("datasource YAML");
    let uid = ds["datasources"][0]["uid"].as_str().expect("datasource uid").to_string();
    assert_eq!(ds["datasources"][0]["type"], "prometheus");
    let boards = dashboards(&files);
    assert_eq!(boards.len(), 3);
    let mut uids = HashSet::new();
    for d in &boards {
        assert!(uids.insert(d["uid"].as_str().expect("uid").to_string()), "dashboard uids are unique");
        assert_eq!(d["schemaVersion"], 39, "{}", d["uid"]);
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
        let panels = d["panels"].as_array().expect("panels");
        assert!(!panels.is_empty());
        let mut ids = HashSet::new();
        for panel in panels {
            let id = panel["id"].as_u64().expect("panel id");
            assert!(ids.insert(id), "panel ids are unique in {}", d["uid"]);
            assert_eq!(panel["datasource"]["uid"], uid.as_str(), "{}", panel["title"]);
            assert!(panel["gridPos"]["w"].as_u64().is_some_and(|w| w > 0 && w <= 24));
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{} has no query", panel["title"]);
            let mut refs = HashSet::new();
            for t in targets {
                assert_eq!(t["datasource"]["uid"], uid.as_str());
                assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
                assert!(refs.insert(t["refId"].as_str().expect("refId").to_string()));
            }
        }
    }
    let titles: Vec<String> = queries(&boards).into_iter().map(|(_, t, _)| t).collect();
    for panel in [
        "Request rate by route and status",
        "Latency p50 / p99",
        "Error ratio",
        "Predictions by class",
        "Mean predicted probability",
        "Served version and its validation AUC",
        "Prediction log: dropped and failed",
        "Drift score per column",
        "Applies by outcome",
        "Apply duration p50 / p99",
    ] {
        assert!(titles.iter().any(|t| t == panel), "no panel `{panel}`");
    }
}

/// A small blocking HTTP client over loopback (the tests are synchronous).
struct Http {
    rt: tokio::runtime::Runtime,
    inner: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            inner: reqwest::Client::new(),
        }
    }

    /// Status (0: no answer) and JSON body.
    fn get(&self, url: &str) -> (u16, Value) {
        self.rt.block_on(async {
            match self.inner.get(url).send().await {
                Ok(r) => {
                    let code = r.status().as_u16();
                    (code, r.json().await.unwrap_or_default())
                }
                Err(_) => (0, Value::Null),
            }
        })
    }

    fn post(&self, url: &str, body: Value) -> u16 {
        self.rt.block_on(async {
            self.inner
                .post(url)
                .json(&body)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        })
    }
}

/// Prometheus' HTTP API over loopback.
struct Prom {
    base: String,
    client: Http,
}

impl Prom {
    fn query(&self, expr: &str) -> (String, Vec<Value>) {
        let q = percent_encoding::utf8_percent_encode(expr, percent_encoding::NON_ALPHANUMERIC);
        let (_, v) = self.client.get(&format!("{}/api/v1/query?query={q}", self.base));
        let status = v["status"].as_str().unwrap_or("no answer").to_string();
        let status = if status == "success" {
            status
        } else {
            format!("{status}: {}", v["error"])
        };
        (status, v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    fn scalar(&self, expr: &str) -> Option<f64> {
        let (_, r) = self.query(expr);
        r.first()?["value"][1].as_str()?.parse().ok()
    }

    fn alerts(&self) -> Vec<Value> {
        let (_, v) = self.client.get(&format!("{}/api/v1/alerts", self.base));
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `alert` is firing (with `labels` matching); panics with every alert on timeout.
    fn wait_firing(&self, alert: &str, label: Option<(&str, &str)>, timeout: Duration) {
        let t0 = Instant::now();
        loop {
            let all = self.alerts();
            if all.iter().any(|a| {
                a["labels"]["alertname"] == alert
                    && a["state"] == "firing"
                    && label.is_none_or(|(k, v)| a["labels"][k] == v)
            }) {
                return;
            }
            assert!(t0.elapsed() < timeout, "{alert} did not fire within {timeout:?}: {all:#?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < timeout, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_counts_evaluates_every_panel_and_fires_alerts() {
    let Some((prometheus, _)) = prometheus_tools() else {
        return;
    };
    let (endpoint_port, controller_port, prom_port) = (free_port(), free_port(), free_port());
    let p = project(
        endpoint_port,
        &OBSERVABILITY.replace("CONTROLLER", &controller_port.to_string()),
        false,
    );
    // Apply writes the tree into the default folder, .reconcile/observability.
    let o = p.run(&["apply"]);
    let applied = text(&o);
    assert!(o.status.success(), "{applied}");
    assert!(applied.contains("Observability/monitoring"), "{applied}");
    let tree = p.specs.join(".reconcile/observability");
    let config = tree.join("prometheus/prometheus.yml");
    assert!(config.is_file(), "{applied}");
    let again = text(&p.run(&["plan"]));
    assert!(again.contains("No changes"), "{again}");
    // A generated file edited by hand is drift: plan names it, apply rewrites it.
    let rules = tree.join("prometheus/rules/endpoints.yml");
    let original = std::fs::read_to_string(&rules).expect("rules");
    std::fs::write(&rules, "groups: []\n").expect("edit");
    let drift = text(&p.run(&["plan"]));
    assert!(drift.contains("prometheus/rules/endpoints.yml"), "{drift}");
    assert!(p.run(&["apply"]).status.success());
    assert_eq!(std::fs::read_to_string(&rules).expect("rules"), original);

    // The controller and the endpoint in one process.
    let up = Killed(
        Command::new(env!("CARGO_BIN_EXE_reconcile"))
            .args(["up"])
            .arg(&p.specs)
            .args(["--listen", &format!("127.0.0.1:{controller_port}"), "--resync", "1h"])
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("reconcile up"),
    );
    let data = p.dir.path().join("prometheus-data");
    let prom = Killed(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus"),
    );
    let api = Prom {
        base: format!("http://127.0.0.1:{prom_port}"),
        client: Http::new(),
    };
    let client = &api.client;
    let endpoint = format!("http://127.0.0.1:{endpoint_port}");
    wait_until("the endpoint is ready", Duration::from_secs(120), || {
        client.get(&format!("{endpoint}/ready")).0 == 200
    });
    wait_until("both targets are up in Prometheus", Duration::from_secs(60), || {
        api.scalar("sum(up)") == Some(2.0)
    });

    const SENT: usize = 137;
    let ids: Vec<String> = std::fs::read_to_string(p.specs.join("data/2024-02-29/users.csv"))
        .expect("users")
        .lines()
        .skip(1)
        .take(SENT)
        .filter_map(|l| l.split(',').next().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), SENT);
    for id in &ids {
        let code = client.post(&format!("{endpoint}/predict"), serde_json::json!({ "user_id": id }));
        assert_eq!(code, 200, "/predict {id}");
    }
    let counted = "sum(reconcile_endpoint_requests_total{route=\"/predict\",status=\"200\"})";
    wait_until("Prometheus counts every request sent", Duration::from_secs(30), || {
        api.scalar(counted) == Some(SENT as f64)
    });
    assert_eq!(
        api.scalar("sum(reconcile_endpoint_predictions_total)"),
        Some(SENT as f64),
        "one prediction per request"
    );
    assert_eq!(
        api.scalar("sum(reconcile_endpoint_prediction_probability_count)"),
        Some(SENT as f64)
    );
    // Rates need two samples in their window after the requests.
    std::thread::sleep(Duration::from_secs(3));

    // Every panel's every query evaluates, with data, in the real Prometheus.
    let files: Vec<PathBuf> = std::fs::read_dir(tree.join("grafana/dashboards"))
        .expect("dashboards")
        .map(|e| e.expect("entry").path())
        .collect();
    let boards = dashboards(&files);
    assert_eq!(boards.len(), 3);
    let all = queries(&boards);
    assert!(all.len() >= 20, "{} queries", all.len());
    for (uid, title, expr) in &all {
        // Grafana's own variable: the rate window it picks from the scrape interval.
        let expr = expr.replace("$__rate_interval", "1m");
        let (status, result) = api.query(&expr);
        assert_eq!(status, "success", "{uid} / {title}: {expr}");
        assert!(!result.is_empty(), "{uid} / {title} returned no data: {expr}");
    }

    // One panel per dashboard cross-checked against what reconcile reports.
    let models = client.get(&format!("{endpoint}/models")).1;
    let served = models["version"].as_i64().expect("served version in /models");
    let served_auc = models["metrics"]["val_auc"].as_f64().expect("val_auc in /models");
    let panel = |uid: &str, title: &str| -> String {
        all.iter()
            .find(|(u, t, _)| u == uid && t == title)
            .map(|(_, _, e)| e.replace("$__rate_interval", "1m"))
            .unwrap_or_else(|| panic!("{uid} / {title}"))
    };
    let (_, version) = api.query(&panel("reconcile-endpoints", "Served version and its validation AUC"));
    assert_eq!(version.len(), 1, "{version:?}");
    assert_eq!(version[0]["metric"]["version"], served.to_string(), "{models}");
    let got: f64 = version[0]["value"][1].as_str().expect("value").parse().expect("number");
    assert!((got - served_auc).abs() < 1e-9, "AUC {got} vs /models {served_auc}");
    let report = p.run(&["monitor", "report", "churn-drift", "--json"]);
    assert!(report.status.success(), "{}", text(&report));
    let report: Value = serde_json::from_slice(&report.stdout).expect("report JSON");
    let columns = report["columns"].as_array().expect("columns").len();
    let (_, scores) = api.query(&panel("reconcile-monitors", "Drift score per column"));
    assert_eq!(scores.len(), columns, "one score series per column the report lists");
    let status = p.run(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let resources = status["resources"]
        .as_array()
        .or_else(|| status.as_array())
        .map_or(0, Vec::len);
    let (_, by_condition) = api.query(&panel("reconcile-controller", "Resources by condition"));
    let ready = by_condition
        .iter()
        .find(|s| s["metric"]["condition"] == "Ready")
        .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok());
    assert_eq!(ready, Some(resources as f64), "{by_condition:?}");

    // The monitor's drift on February fires; its drifted columns each fire too.
    assert_eq!(report["drifted"], true, "{report}");
    api.wait_firing("ReconcileDatasetDrift", Some(("monitor", "churn-drift")), Duration::from_secs(30));
    api.wait_firing("ReconcileColumnDrift", Some(("column", "usage_30d.watch_hours_30d")), Duration::from_secs(30));
    assert!(
        !api.alerts().iter().any(|a| a["labels"]["alertname"] == "ReconcileEndpointDown"),
        "the endpoint is up"
    );

    // Stop the process: the endpoint (and the controller) go down, and say so.
    drop(up);
    api.wait_firing("ReconcileEndpointDown", Some(("endpoint", "churn-api")), Duration::from_secs(30));
    api.wait_firing("ReconcileControllerDown", None, Duration::from_secs(30));
    drop(prom);
}
