//! The web UI over real HTTP on loopback and in headless Chromium, against
//! `reconcile serve` (and `reconcile watch`'s listener) on a copy of the whole
//! example: every page answers 200 with the values `status --json`,
//! `models show --json` and `monitor report --json` print, a `<script>` in a
//! resource's description is text that never runs, Chromium logs no console
//! message on any page, and the graph, a version page and a monitor report
//! paint (screenshots; `UI_SCREENSHOTS=1` copies them to `docs/images/`).
//!
//! Without Chromium on `PATH` the browser half is skipped with a notice,
//! unless `CI=true`, where a missing browser fails the test.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Project, text};
use serde_json::Value;

/// The probe put into a resource's description: markup that would retitle
/// the page if it ever ran.
const PROBE: &str = "<script>document.title=\"pwned\"</script><b>bold</b>";
/// How the probe must appear in the HTML: as escaped text.
const PROBE_ESCAPED: &str = "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;";

/// Longest a Chromium run may take before it is killed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// A child process killed when dropped (a failed assertion leaves nothing running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `reconcile <args…> <specs>` and returns it with the first
/// `http://…` address printed on `stdout` (or `stderr`) by a line holding `marker`.
fn start(p: &Project, args: &[&str], marker: &str, on_stderr: bool) -> (Running, String) {
    let mut child = p.spawn(args);
    let stream: Box<dyn std::io::Read + Send> = if on_stderr {
        Box::new(child.stderr.take().expect("stderr"))
    } else {
        Box::new(child.stdout.take().expect("stdout"))
    };
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        // Kept reading to the end, so the child never blocks on a full pipe.
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(marker) => {
                let at = line.find("http://").expect("an address");
                let url = line[at..]
                    .split_whitespace()
                    .next()
                    .expect("url")
                    .trim_end_matches("/metrics")
                    .to_string();
                return (running, url);
            }
            Ok(line) => seen.push(line),
            Err(_) => panic!("no `{marker}` line:\n{}", seen.join("\n")),
        }
    }
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = c.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.expect("body"))
}

fn json_of(p: &Project, args: &[&str]) -> Value {
    let out = p.run(args);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}):\n{}", text(&out)))
}

/// The `data-value` of a metric's cell in a page, as a number.
fn metric_in(page: &str, metric: &str) -> Option<f64> {
    let at = page.find(&format!("data-metric=\"{metric}\" data-value=\""))?;
    let rest = &page[at..];
    let start = rest.find("data-value=\"")? + "data-value=\"".len();
    let end = rest[start..].find('"')?;
    rest[start..start + end].parse().ok()
}

/// Puts the probe into the `user` Entity's description.
fn plant_probe(specs: &Path) {
    let path = specs.join("project.yaml");
    let yaml = std::fs::read_to_string(&path).expect("read project.yaml");
    let old = "description: A subscriber, identified by its account id.";
    assert!(yaml.contains(old), "the example's Entity changed");
    let new = format!("description: '{PROBE}'");
    std::fs::write(&path, yaml.replace(old, &new)).expect("write project.yaml");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_shows_what_the_cli_reports() {
    let p = Project::example_with_monitor();
    plant_probe(&p.specs);
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));

    let status = json_of(&p, &["status", "--json"]);
    let rows = status.as_array().expect("status rows");
    let production = json_of(&p, &["models", "show", "streamflow_churn", "--json"]);
    let list = json_of(&p, &["models", "list", "--json"]);
    let versions = list[0]["versions"].as_u64().expect("versions") as i64;
    assert!(versions >= 2, "the example registers several versions");
    let report = json_of(&p, &["monitor", "report", "churn-drift", "--json"]);

    let (_server, base) = start(&p, &["serve", "--port", "0"], "serving", false);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let model = production["model"].as_str().expect("model");
    let version = production["version"].as_i64().expect("version");
    let pages = [
        "/ui".to_string(),
        "/ui/models".to_string(),
        format!("/ui/models/{model}/{version}"),
        "/ui/data".to_string(),
        "/ui/monitors".to_string(),
        "/ui/monitors/churn-drift".to_string(),
        "/ui/monitors/churn-drift/report".to_string(),
        "/ui/live".to_string(),
    ];
    let mut bodies = std::collections::HashMap::new();
    for page in &pages {
        let (code, headers, body) = get(&c, &format!("{base}{page}")).await;
        assert_eq!(code, 200, "{page}: {body}");
        assert!(
            headers["content-type"]
                .to_str()
                .is_ok_and(|t| t.starts_with("text/html")),
            "{page}"
        );
        let csp = headers["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("script-src"),
            "{page}: {csp}"
        );
        assert!(!body.contains("<script"), "{page} holds a script tag");
        // Nothing from another origin: the only URL is SVG's namespace name.
        let elsewhere = body.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !elsewhere.contains("http://")
                && !elsewhere.contains("https://")
                && !elsewhere.contains("//fonts"),
            "{page} refers to another origin"
        );
        bodies.insert(page.clone(), body);
    }
    let (code, headers, css) = get(&c, &format!("{base}/ui/style.css")).await;
    assert_eq!(code, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/css"))
    );
    assert!(css.contains("svg.graph"));

    // The graph page: every resource with the state status reports.
    let graph = &bodies["/ui"];
    for r in rows {
        let id = format!(
            "{}/{}",
            r["kind"].as_str().expect("kind"),
            r["name"].as_str().expect("name")
        );
        let state = r["state"].as_str().expect("state");
        assert!(
            graph.contains(&format!("data-resource=\"{id}\" data-state=\"{state}\"")),
            "{id} is not shown as {state}"
        );
        if let Some(change) = r["lastChange"].as_str() {
            assert!(graph.contains(change), "{id}: last change {change} missing");
        }
    }
    assert_eq!(
        graph.matches("<g class=\"node ").count(),
        rows.len(),
        "one node per resource"
    );
    // The probe is text, never markup.
    assert!(
        graph.contains(PROBE_ESCAPED),
        "the description is not shown escaped"
    );
    assert!(!graph.contains(PROBE) && !graph.contains("<b>bold"));

    // Models: every version's stage and figures as `models show` prints them.
    let models = &bodies["/ui/models"];
    for v in 1..=versions {
        let shown = json_of(&p, &["models", "show", &format!("{model}:{v}"), "--json"]);
        let stage = shown["stage"].as_str().expect("stage");
        assert!(
            models.contains(&format!("data-version=\"{v}\" data-stage=\"{stage}\"")),
            "version {v} not shown as {stage}"
        );
        assert!(models.contains(&format!(
            "data-hash=\"{}\"",
            shown["trainingSetHash"].as_str().expect("hash")
        )));
        let (code, _, page) = get(&c, &format!("{base}/ui/models/{model}/{v}")).await;
        assert_eq!(code, 200);
        for (metric, value) in shown["metrics"].as_object().expect("metrics") {
            if let Some(x) = value.as_f64()
                && metric.starts_with("val_")
            {
                assert_eq!(metric_in(&page, metric), Some(x), "version {v}: {metric}");
            }
        }
        let confusion = &shown["metrics"]["confusion"];
        for count in confusion
            .as_array()
            .expect("confusion")
            .iter()
            .flat_map(|r| r.as_array().expect("row"))
        {
            assert!(
                page.contains(&format!(">{count}</text>")),
                "version {v}: count {count} not drawn"
            );
        }
        assert!(
            page.contains("class=\"chart roc\""),
            "version {v}: no ROC curve"
        );
        assert!(page.contains("class=\"chart confusion\""));
    }
    assert!(models.contains(&format!("data-production=\"{version}\"")));
    assert!(
        models.contains(&format!("data-serves=\"{version}\"")),
        "the endpoint's served version"
    );

    // Data: every table's snapshots as the state store's outputs list them.
    let data = &bodies["/ui/data"];
    for r in rows.iter().filter(|r| r["kind"] == "Table") {
        for s in r["outputs"]["snapshots"].as_array().expect("snapshots") {
            let marker = format!(
                "data-as-of=\"{}\" data-rows=\"{}\"",
                s["asOf"].as_str().expect("asOf"),
                s["rows"]
            );
            assert!(data.contains(&marker), "{}: {marker}", r["name"]);
        }
    }
    assert!(data.contains("data-view=\"usage_30d\" data-watermark=\"2024-02-29\""));

    // Monitors: the verdict and every column's score.
    let drifted = report["drifted"].as_bool().expect("drifted");
    assert!(bodies["/ui/monitors"].contains(&format!(
        "data-monitor=\"churn-drift\" data-drifted=\"{drifted}\""
    )));
    let monitor = &bodies["/ui/monitors/churn-drift"];
    for col in report["columns"].as_array().expect("columns") {
        let name = col["column"].as_str().expect("column");
        let marker = format!("data-column=\"{name}\" data-score=\"");
        let at = monitor
            .find(&marker)
            .unwrap_or_else(|| panic!("column {name} missing"));
        let rest = &monitor[at + marker.len()..];
        let score: f64 = rest[..rest.find('"').expect("quote")]
            .parse()
            .expect("score");
        assert_eq!(Some(score), col["score"].as_f64(), "{name}");
    }
    assert!(bodies["/ui/monitors/churn-drift/report"].contains("<svg class=\"chart"));

    // Unknown names are 404 pages, not errors.
    for missing in [
        "/ui/models/nope/1",
        "/ui/models/streamflow_churn/999",
        "/ui/monitors/nope",
        "/ui/models/x/notanumber",
    ] {
        let (code, _, body) = get(&c, &format!("{base}{missing}")).await;
        assert_eq!(code, 404, "{missing}: {body}");
    }

    // Live: the endpoint's own counters, UI pages left out.
    for _ in 0..5 {
        let r = c
            .post(format!("{base}/predict"))
            .json(&serde_json::json!({"user_id": "7590-VHVEG"}))
            .send()
            .await
            .expect("predict");
        assert_eq!(r.status().as_u16(), 200);
    }
    let (_, _, live) = get(&c, &format!("{base}/ui/live")).await;
    assert!(live.contains("data-requests=\"5\""), "{live}");
    assert!(live.contains(&format!("data-version=\"{version}\"")));
    // The UI's routes are labelled by pattern in the endpoint's metrics.
    let (_, _, metrics) = get(&c, &format!("{base}/metrics")).await;
    assert!(metrics.contains("route=\"/ui/models/{model}/{version}\""));
    assert!(!metrics.contains("route=\"/ui/models/streamflow_churn"));

    browser_checks(&base, &format!("/ui/models/{model}/{version}"), &pages);

    // `--no-ui`: the endpoint answers, the UI is not there.
    let (_bare, bare) = start(&p, &["serve", "--port", "0", "--no-ui"], "serving", false);
    let (code, _, _) = get(&c, &format!("{bare}/ui")).await;
    assert_eq!(code, 404);
    let (code, _, _) = get(&c, &format!("{bare}/health")).await;
    assert_eq!(code, 200);

    // The controller's listener serves the same UI; it serves no endpoint.
    let (_watch, ctl) = start(
        &p,
        &["watch", "--listen", "127.0.0.1:0", "--resync", "off"],
        "controller metrics on",
        true,
    );
    let (code, _, live) = get(&c, &format!("{ctl}/ui/live")).await;
    assert_eq!(code, 200);
    assert!(live.contains("data-endpoints=\"0\""));
    let (code, _, graph) = get(&c, &format!("{ctl}/ui")).await;
    assert_eq!(code, 200);
    for r in rows {
        let id = format!(
            "{}/{}",
            r["kind"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or("")
        );
        assert!(graph.contains(&format!(
            "data-resource=\"{id}\" data-state=\"{}\"",
            r["state"].as_str().unwrap_or("")
        )));
    }

    // Broken specs: the pages say why, as a 503 page naming the file.
    std::fs::write(
        p.specs.join("tables/users.yaml"),
        "kind: Table\nname: [broken\n",
    )
    .expect("break a spec");
    let (code, _, page) = get(&c, &format!("{base}/ui")).await;
    assert_eq!(code, 503, "{page}");
    assert!(page.contains("the specs do not load"), "{page}");
    assert!(page.contains("users.yaml"), "{page}");
    assert!(!page.contains("<script"));
}

/// The first Chromium on `PATH`; `None` (with a notice) when there is none,
/// a failure under `CI=true`.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser", "google-chrome"].map(|n| d.join(n)))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but chromium is not on PATH (.ci/run installs Debian's chromium)"
        );
        eprintln!("NOTICE: skipping the browser checks of tests/ui.rs: chromium not found on PATH");
    }
    found
}

/// Runs headless Chromium on `url` with `flags`; returns (stdout, stderr).
/// Killed with its helpers after [`BROWSER_TIMEOUT`].
fn run_browser(browser: &Path, work: &Path, flags: &[String], url: &str) -> (String, String) {
    use std::os::unix::process::CommandExt;
    let profile = tempfile::tempdir_in(work).expect("profile");
    let (out_path, err_path) = (
        profile.path().join("out.txt"),
        profile.path().join("err.txt"),
    );
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.path().join("p").display()
        ))
        .args(flags)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > BROWSER_TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("chromium ran longer than {BROWSER_TIMEOUT:?} on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "chromium failed on {url}: {err}");
    (std::fs::read_to_string(&out_path).unwrap_or_default(), err)
}

/// Console messages Chromium logged (our pages run no script, so any
/// message — a CSP refusal, a failed load, an uncaught error — is a defect).
fn console_messages(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught") || l.contains("Refused to"))
        .collect()
}

fn browser_checks(base: &str, version_page: &str, pages: &[String]) {
    let Some(browser) = chromium() else { return };
    let work = tempfile::tempdir().expect("tempdir");

    // The console check must be able to fail: a page that logs an error is seen.
    let noisy = work.path().join("noisy.html");
    std::fs::write(
        &noisy,
        "<!DOCTYPE html><title>noisy</title><script>console.error('probe-error')</script>",
    )
    .expect("write");
    let (_, err) = run_browser(
        &browser,
        work.path(),
        &["--dump-dom".into()],
        &format!("file://{}", noisy.display()),
    );
    assert!(
        console_messages(&err)
            .iter()
            .any(|l| l.contains("probe-error")),
        "the console check sees nothing; chromium's stderr was:\n{err}"
    );

    for page in pages {
        let url = format!("{base}{page}");
        let (dom, err) = run_browser(&browser, work.path(), &["--dump-dom".into()], &url);
        assert!(dom.contains("</html>"), "{page}: no DOM");
        let console = console_messages(&err);
        assert!(
            console.is_empty(),
            "{page}: console messages:\n{}",
            console.join("\n")
        );
        assert!(
            !dom.contains("<title>pwned</title>"),
            "{page}: the probe ran"
        );
        // The pages with charts draw them.
        let charts = !matches!(page.as_str(), "/ui/models" | "/ui/data" | "/ui/monitors");
        assert!(!charts || dom.contains("<svg"), "{page}: no inline SVG");
    }
    let (dom, _) = run_browser(
        &browser,
        work.path(),
        &["--dump-dom".into()],
        &format!("{base}/ui"),
    );
    assert!(
        dom.contains("<title>Graph · reconcile</title>"),
        "the title changed"
    );
    assert!(
        dom.contains(PROBE_ESCAPED.replace("&quot;", "\"").as_str()),
        "the probe is not shown as text"
    );

    let shots = [
        ("ui-graph.png", "/ui".to_string(), "1600,1000"),
        (
            "ui-monitor.png",
            "/ui/monitors/churn-drift".to_string(),
            "1400,1200",
        ),
        ("ui-version.png", version_page.to_string(), "1200,1300"),
        (
            "ui-monitor-report.png",
            "/ui/monitors/churn-drift/report".to_string(),
            "1200,1600",
        ),
    ];
    for (name, page, size) in shots {
        let png = work.path().join(name);
        run_browser(
            &browser,
            work.path(),
            &[
                format!("--screenshot={}", png.display()),
                format!("--window-size={size}"),
            ],
            &format!("{base}{page}"),
        );
        let bytes = std::fs::metadata(&png).map_or(0, |m| m.len());
        assert!(bytes > 10 * 1024, "{name}: {bytes} bytes");
        if std::env::var("UI_SCREENSHOTS").as_deref() == Ok("1") {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images");
            std::fs::create_dir_all(&docs).expect("docs/images");
            std::fs::copy(&png, docs.join(name)).expect("copy screenshot");
        }
    }
}
