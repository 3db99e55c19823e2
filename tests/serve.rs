//! The prediction endpoint over real HTTP on loopback, on the StreamFlow example:
//! every route and error case, hot swap of the Production version under load with
//! zero failed requests, readiness before a model exists, graceful shutdown.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::server::serve;
use common::{Project, text};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post_raw(
    c: &reqwest::Client,
    url: String,
    body: impl Into<reqwest::Body>,
    json: bool,
) -> (u16, Value) {
    let mut req = c.post(url).body(body);
    if json {
        req = req.header("content-type", "application/json");
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Makes `churn-lr` the Production run instead of the forest and applies.
fn promote_the_logistic_regression(p: &Project) {
    let training = p.specs.join("training.yaml");
    let spec = std::fs::read_to_string(&training).expect("read");
    std::fs::write(
        &training,
        spec.replace("production: churn-rf", "production: churn-lr"),
    )
    .expect("write");
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
}

fn applied() -> Project {
    let p = Project::example();
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_and_every_error() {
    let p = applied();
    let s = serve(&p, &[]);
    let c = client();
    let url = |path: &str| format!("{}{path}", s.base);

    assert_eq!(
        get(&c, url("/health")).await,
        (200, json!({"status": "ok"}))
    );
    let (code, ready) = get(&c, url("/ready")).await;
    assert_eq!((code, ready["ready"].clone()), (200, json!(true)));

    let (code, f) = get(&c, url("/features/7590-VHVEG")).await;
    assert_eq!(code, 200, "{f}");
    assert_eq!(f["user_id"], "7590-VHVEG");
    assert_eq!(f["features"].as_object().map(|o| o.len()), Some(14));
    let (code, f) = get(&c, url("/features/no-such-user")).await;
    assert_eq!(code, 404);
    assert_eq!(
        f["missing_features"].as_array().map(Vec::len),
        Some(14),
        "{f}"
    );

    let (code, pr) = post_raw(&c, url("/predict"), r#"{"user_id": "7590-VHVEG"}"#, true).await;
    assert_eq!(code, 200, "{pr}");
    assert_eq!(pr["user_id"], "7590-VHVEG");
    let prob = pr["probability"].as_f64().expect("probability");
    assert!((0.0..=1.0).contains(&prob));
    assert_eq!(pr["prediction"], json!(u8::from(prob >= 0.5)));
    assert_eq!(pr["model"]["name"], "streamflow_churn");
    assert!(pr["model"]["version"].as_i64().is_some());
    assert_eq!(pr["features"].as_object().map(|o| o.len()), Some(14));

    let cases: [(&str, &str, bool, u16); 6] = [
        ("unknown id", r#"{"user_id": "nobody"}"#, true, 404),
        ("malformed JSON", r#"{"user_id": "#, true, 400),
        ("wrong type", r#"{"user_id": 7}"#, true, 422),
        ("missing key", r#"{"customer": "7590-VHVEG"}"#, true, 422),
        ("not an object", r#"["7590-VHVEG"]"#, true, 422),
        (
            "no content type",
            r#"{"user_id": "7590-VHVEG"}"#,
            false,
            415,
        ),
    ];
    for (what, body, json_header, want) in cases {
        let (code, err) = post_raw(&c, url("/predict"), body.to_string(), json_header).await;
        assert_eq!(code, want, "{what}: {err}");
        assert!(
            err["error"].is_string(),
            "{what}: JSON error expected, got {err}"
        );
    }
    let (code, err) = post_raw(&c, url("/predict"), r#"{"user_id": "nobody"}"#, true).await;
    assert_eq!(code, 404);
    assert_eq!(err["missing_features"].as_array().map(Vec::len), Some(14));
    let huge = format!(r#"{{"user_id": "{}"}}"#, "x".repeat(300 * 1024));
    let (code, err) = post_raw(&c, url("/predict"), huge, true).await;
    assert_eq!(code, 413, "{err}");
    assert!(err["error"].is_string());

    let (code, b) = post_raw(
        &c,
        url("/predict/batch"),
        r#"{"ids": ["7590-VHVEG", "nobody"]}"#,
        true,
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let items = b["predictions"].as_array().expect("predictions");
    assert_eq!(items.len(), 2);
    assert!(items[0]["probability"].is_number());
    assert!(
        items[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown"))
    );
    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let (code, err) = post_raw(
        &c,
        url("/predict/batch"),
        json!({ "ids": too_many }).to_string(),
        true,
    )
    .await;
    assert_eq!(code, 413, "{err}");
    let (code, _) = post_raw(&c, url("/predict/batch"), r#"{"ids": []}"#, true).await;
    assert_eq!(code, 422);
    let (code, _) = post_raw(&c, url("/predict/batch"), r#"{"ids": "7590-VHVEG"}"#, true).await;
    assert_eq!(code, 422);

    let (code, m) = get(&c, url("/models")).await;
    assert_eq!(code, 200);
    assert_eq!(
        (m["name"].clone(), m["run"].clone(), m["stage"].clone()),
        (
            json!("streamflow_churn"),
            json!("churn-rf"),
            json!("Production")
        )
    );
    assert!(m["metrics"]["val_auc"].as_f64().is_some_and(|a| a > 0.7));
    assert!(
        m["promoted"].as_str().is_some_and(|t| t.ends_with("UTC")),
        "{m}"
    );

    let metrics = c
        .get(url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for needle in [
        r#"reconcile_endpoint_requests_total{route="/predict",method="POST",status="200"} 1"#,
        r#"reconcile_endpoint_requests_total{route="/predict",method="POST",status="404"} 2"#,
        "reconcile_endpoint_request_duration_seconds_bucket",
        "reconcile_endpoint_predictions_total",
        r#"reconcile_endpoint_model_info{model="streamflow_churn""#,
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    let (code, doc) = get(&c, url("/openapi.json")).await;
    assert_eq!(code, 200);
    for path in [
        "/health",
        "/ready",
        "/features/{entity_id}",
        "/predict",
        "/predict/batch",
        "/models",
        "/metrics",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
    let (code, err) = get(&c, url("/no/such/route")).await;
    assert_eq!((code, err["error"].is_string()), (404, true));
    let r = c.delete(url("/predict")).send().await.expect("delete");
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn production_swaps_under_load_without_a_failed_request() {
    let p = applied();
    let s = serve(&p, &[]);
    let c = client();
    let before = get(&c, format!("{}/models", s.base)).await.1;
    let old_version = before["version"].as_i64().expect("version");
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let first_new = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (c, url) = (c.clone(), format!("{}/predict", s.base));
        let (stop, failures, served, first_new) = (
            stop.clone(),
            failures.clone(),
            served.clone(),
            first_new.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (code, body) =
                    post_raw(&c, url.clone(), r#"{"user_id": "7590-VHVEG"}"#, true).await;
                if code != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                served.fetch_add(1, Ordering::Relaxed);
                if body["model"]["version"].as_i64() != Some(old_version) {
                    let mut f = first_new.lock().expect("lock");
                    f.get_or_insert_with(Instant::now);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    promote_the_logistic_regression(&p);
    let promoted = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed requests during the swap"
    );
    assert!(
        served.load(Ordering::Relaxed) > 50,
        "too few requests to say anything"
    );
    let seen = first_new
        .lock()
        .expect("lock")
        .expect("the new version was never served");
    let lag = seen.saturating_duration_since(promoted);
    assert!(
        lag < Duration::from_secs(1),
        "new version served {lag:?} after the apply"
    );
    let after = get(&c, format!("{}/models", s.base)).await.1;
    assert_eq!(after["run"], "churn-lr");
}

#[tokio::test(flavor = "multi_thread")]
async fn not_ready_until_a_production_version_exists() {
    let p = Project::example();
    let s = serve(&p, &[]); // nothing applied: no tables, no model
    let c = client();
    let (code, err) = get(&c, format!("{}/ready", s.base)).await;
    assert_eq!(code, 503, "{err}");
    let (code, err) = post_raw(
        &c,
        format!("{}/predict", s.base),
        r#"{"user_id": "7590-VHVEG"}"#,
        true,
    )
    .await;
    assert_eq!(code, 503, "{err}");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("no Production version"))
    );
    assert_eq!(get(&c, format!("{}/health", s.base)).await.0, 200);
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (code, body) = post_raw(
            &c,
            format!("{}/predict", s.base),
            r#"{"user_id": "7590-VHVEG"}"#,
            true,
        )
        .await;
        if code == 200 {
            assert_eq!(body["model"]["name"], "streamflow_churn");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not serving 2 s after apply: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish() {
    use std::io::{Read, Write};
    let p = applied();
    let mut s = serve(&p, &[]);
    let addr = s.base.trim_start_matches("http://").to_string();
    // Requests whose headers and half of the body have arrived when SIGTERM does.
    let body = r#"{"ids": ["7590-VHVEG", "nobody"]}"#;
    let (head, tail) = body.split_at(body.len() / 2);
    let mut conns = Vec::new();
    for _ in 0..4 {
        let mut conn = std::net::TcpStream::connect(&addr).expect("connect");
        write!(
            conn,
            "POST /predict/batch HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{head}",
            body.len()
        )
        .expect("send head");
        conns.push(conn);
    }
    std::thread::sleep(Duration::from_millis(200));
    let pid = s.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(200));
    // New connections are refused once the server stops accepting...
    // ...but the requests in flight complete.
    for mut conn in conns {
        conn.write_all(tail.as_bytes()).expect("send rest");
        let mut response = String::new();
        conn.read_to_string(&mut response).expect("read response");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"predictions\""), "{response}");
    }
    let status = s.child.wait().expect("wait");
    assert!(status.success(), "serve exited with {status}");
    let mut rest = String::new();
    s.stdout.read_to_string(&mut rest).expect("stdout");
    assert!(rest.contains("in-flight requests finished"), "{rest}");
}

/// The Open Inference Protocol (KServe V2) beside `/predict`: health, model
/// metadata, inference with the same answers as `/predict`, and its errors.
#[tokio::test(flavor = "multi_thread")]
async fn the_open_inference_protocol_answers_as_predict_does() {
    let p = Project::example();
    let s = serve(&p, &[]); // nothing applied yet: not ready
    let c = client();
    let url = |path: &str| format!("{}{path}", s.base);
    assert_eq!(
        get(&c, url("/v2/health/live")).await,
        (200, json!({"live": true}))
    );
    assert_eq!(get(&c, url("/v2/health/ready")).await.0, 503);
    assert_eq!(get(&c, url("/v2/models/streamflow_churn")).await.0, 503);
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(3);
    while get(&c, url("/v2/health/ready")).await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready 3 s after apply");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, server) = get(&c, url("/v2")).await;
    assert_eq!((code, server["name"].clone()), (200, json!("reconcile")));
    let (code, meta) = get(&c, url("/v2/models/streamflow_churn")).await;
    assert_eq!(code, 200, "{meta}");
    assert_eq!(
        meta["inputs"][0],
        json!({"name": "user_id", "datatype": "BYTES", "shape": [-1]})
    );
    assert_eq!(meta["outputs"][0]["name"], "probability");
    let version = meta["versions"][0].as_str().expect("version").to_string();
    assert_eq!(
        get(&c, url("/v2/models/streamflow_churn/ready")).await.0,
        200
    );
    assert_eq!(get(&c, url("/v2/models/other/ready")).await.0, 404);

    // The same keys through /predict and through V2: the same probabilities.
    let ids = ["7590-VHVEG", "7593-MMBHB", "4764-TBGAC"];
    let body = json!({
        "id": "req-1",
        "inputs": [{"name": "user_id", "shape": [3], "datatype": "BYTES", "data": ids}],
    });
    let (code, r) = post_raw(
        &c,
        url("/v2/models/streamflow_churn/infer"),
        body.to_string(),
        true,
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["model_name"], "streamflow_churn");
    assert_eq!(r["model_version"], version.as_str());
    assert_eq!(r["id"], "req-1");
    assert_eq!(r["outputs"][0]["shape"], json!([3]));
    assert_eq!(r["outputs"][1]["datatype"], "INT64");
    for (i, id) in ids.iter().enumerate() {
        let (code, one) = post_raw(
            &c,
            url("/predict"),
            json!({"user_id": id}).to_string(),
            true,
        )
        .await;
        assert_eq!(code, 200, "{one}");
        assert_eq!(r["outputs"][0]["data"][i], one["probability"], "{id}");
        assert_eq!(r["outputs"][1]["data"][i], one["prediction"], "{id}");
    }
    // Only the output asked for.
    let only = json!({
        "inputs": [{"name": "user_id", "shape": [1, 1], "datatype": "BYTES", "data": [["7590-VHVEG"]]}],
        "outputs": [{"name": "prediction"}],
    });
    let (code, r) = post_raw(
        &c,
        url("/v2/models/streamflow_churn/infer"),
        only.to_string(),
        true,
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["outputs"].as_array().map(Vec::len), Some(1));
    assert_eq!(r["outputs"][0]["name"], "prediction");

    let infer = |b: &str| {
        post_raw(
            &c,
            url("/v2/models/streamflow_churn/infer"),
            b.to_string(),
            true,
        )
    };
    let cases: [(&str, u16, &str); 6] = [
        (
            r#"{"inputs": [{"name": "user_id", "shape": [1], "datatype": "BYTES", "data": ["nobody"]}]}"#,
            400,
            "unknown user_id `nobody`",
        ),
        (
            r#"{"inputs": [{"name": "user_id", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}"#,
            400,
            "holds 2 elements",
        ),
        (
            r#"{"inputs": [{"name": "user", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}"#,
            400,
            "this model's input is `user_id`",
        ),
        (
            r#"{"inputs": [{"name": "user_id", "shape": [1], "datatype": "FP64", "data": [1.0]}]}"#,
            400,
            "BYTES",
        ),
        (r#"{"inputs": "#, 400, ""),
        (r#"{"inputs": [], "extra": 1}"#, 422, ""),
    ];
    for (body, status, needle) in cases {
        let (code, err) = infer(body).await;
        assert_eq!(code, status, "{body}: {err}");
        let message = err["error"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty() && message.contains(needle),
            "{body}: {err}"
        );
    }
    let (code, err) = post_raw(&c, url("/v2/models/other/infer"), body.to_string(), true).await;
    assert_eq!(code, 404, "{err}");
    // Over maxBatch (1000): 413.
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let big = json!({"inputs": [{"name": "user_id", "shape": [1001], "datatype": "BYTES", "data": many}]});
    assert_eq!(infer(&big.to_string()).await.0, 413);
    // Counted under their route patterns, never the raw path.
    let (_, _) = get(&c, url("/v2/models/whatever-name/ready")).await;
    let metrics = c
        .get(url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("route=\"/v2/models/{model}/infer\""),
        "{metrics}"
    );
    assert!(!metrics.contains("whatever-name"), "{metrics}");
}

/// `/predict` for each of `ids`: id → probability.
async fn probabilities(c: &reqwest::Client, base: &str, ids: &[String]) -> Vec<f64> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let (code, body) = post_raw(
            c,
            format!("{base}/predict"),
            json!({ "user_id": id }).to_string(),
            true,
        )
        .await;
        assert_eq!(code, 200, "{id}: {body}");
        out.push(body["probability"].as_f64().expect("probability"));
    }
    out
}

/// Waits until the long-running server at `base` serves what a fresh one
/// started now serves (version and watermarks), then returns the fresh one's
/// scores of `ids` beside its own.
async fn against_a_fresh_server(
    c: &reqwest::Client,
    p: &Project,
    base: &str,
    ids: &[String],
) -> (Vec<f64>, Vec<f64>) {
    let fresh = serve(p, &[]);
    let (_, want) = get(c, format!("{}/models", fresh.base)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, m) = get(c, format!("{base}/models")).await;
        if m["version"] == want["version"] && m["watermarks"] == want["watermarks"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never caught up: {m} against {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let long_running = probabilities(c, base, ids).await;
    (long_running, probabilities(c, &fresh.base, ids).await)
}

/// The endpoint keeps each entity's score for the rows and version it was
/// computed from (serve/memo.rs). A server that has answered the same ids
/// before must answer exactly as a fresh one does after new rows are
/// materialized and after another version is promoted.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_predictions_follow_new_rows_and_a_new_version() {
    let p = applied();
    let ids: Vec<String> = std::fs::read_to_string(p.specs.join("data/2024-02-29/users.csv"))
        .expect("users")
        .lines()
        .skip(1)
        .step_by(70)
        .filter_map(|l| l.split(',').next().map(str::to_string))
        .collect();
    assert!(ids.len() > 90, "{} ids", ids.len());
    let c = client();
    let s = serve(&p, &[]);
    let first = probabilities(&c, &s.base, &ids).await;
    assert_eq!(
        probabilities(&c, &s.base, &ids).await,
        first,
        "a repeat differs"
    );

    // New rows: a March snapshot where every user has 40 more tickets.
    p.add_march_tickets(40);
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let (march_scores, fresh) = against_a_fresh_server(&c, &p, &s.base, &ids).await;
    assert_eq!(
        march_scores, fresh,
        "the long-running server answered from rows it no longer serves"
    );
    assert_ne!(
        march_scores, first,
        "the new rows moved no score: the test proves nothing"
    );

    // Another version: the logistic regression instead of the forest.
    promote_the_logistic_regression(&p);
    let (promoted, fresh) = against_a_fresh_server(&c, &p, &s.base, &ids).await;
    assert_eq!(
        promoted, fresh,
        "the long-running server answered with the version it no longer serves"
    );
    assert_ne!(promoted, march_scores, "the promotion moved no score");
}
