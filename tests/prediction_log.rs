//! The prediction log and the drift gauges, over real HTTP on loopback and real
//! stores: every 200 prediction lands in the offline store (flushed on
//! SIGTERM), a full queue drops and counts, and `/metrics` follows the
//! monitors' newest evaluations.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::server::serve;
use common::{Project, fresh_pg_database, text};
use reconcile::drift::{ColumnDrift, ColumnKind, Distribution, Method, dataset_drift};
use reconcile::store::monitors::{Decay, MonitorReport, MonitorStore, NewEvaluation};
use reconcile::store::predictions::{LoggedPrediction, PredictionLog};
use serde_json::{Value, json};

const PROJECT: &str = "streamflow";
const ENDPOINT: &str = "churn-api";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(url).json(&body).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn metrics(c: &reqwest::Client, base: &str) -> String {
    c.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn user_ids() -> Vec<String> {
    std::fs::read_to_string(common::example_specs().join("data/2024-02-29/users.csv"))
        .expect("users")
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next().map(str::to_string))
        .collect()
}

/// The example applied on `backend` (`None`: PostgreSQL is absent, skip).
async fn applied(backend: &str, tag: &str) -> Option<Project> {
    let mut p = Project::example();
    if backend == "postgres" {
        p.store_args = vec!["--state".into(), fresh_pg_database(tag).await?];
    }
    let out = p.run(&["apply", "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    Some(p)
}

fn log_row(i: i64) -> LoggedPrediction {
    LoggedPrediction {
        at_ms: 1_000 + i,
        entity: format!("u{i}"),
        model: "m".into(),
        version: 3,
        probability: i as f64 / 10_007.0,
        class: i % 2,
    }
}

/// Batches larger than one multi-row insert, `window` and `count` per endpoint.
async fn store_round_trip(backend: &str) {
    let mut p = Project::example();
    if backend == "postgres" {
        let Some(url) = fresh_pg_database("plog_store").await else {
            return;
        };
        p.store_args = vec!["--state".into(), url];
    }
    let log = PredictionLog::new(p.db().await, PROJECT);
    let rows: Vec<LoggedPrediction> = (0..4_507).map(log_row).collect();
    log.insert_batch("ep", &rows).await.expect("insert");
    log.insert_batch("other", &rows[..3]).await.expect("insert");
    log.insert_batch("ep", &[]).await.expect("empty batch");
    assert_eq!(log.count("ep").await.expect("count"), rows.len() as i64);
    assert_eq!(log.count("other").await.expect("count"), 3);
    assert_eq!(log.count("nobody").await.expect("count"), 0);
    let w = log.window("ep", 1_005, 1_010).await.expect("window");
    assert_eq!(w, rows[5..10].to_vec());
    let all = log.window("ep", 0, i64::MAX).await.expect("all");
    assert_eq!(all, rows, "ordered by time, values intact");
    let other = PredictionLog::new(p.db().await, "another-project");
    assert_eq!(other.count("ep").await.expect("count"), 0);
}

/// K /predict and one /predict/batch of M (plus failures, which are not
/// logged), SIGTERM right after: the table holds exactly the K + M answers.
async fn every_answer_is_logged(backend: &str) {
    let Some(p) = applied(backend, "plog_serve").await else {
        return;
    };
    let mut s = serve(&p, &[]);
    let c = client();
    let ids = user_ids();
    let (k, m) = (25, 60);
    let mut answered: HashMap<String, (f64, i64, i64)> = HashMap::new();
    for id in &ids[..k] {
        let (code, body) = post(&c, format!("{}/predict", s.base), json!({ "user_id": id })).await;
        assert_eq!(code, 200, "{body}");
        let prob = body["probability"].as_f64().expect("probability");
        let class = body["prediction"].as_i64().expect("prediction");
        let version = body["model"]["version"].as_i64().expect("version");
        answered.insert(id.clone(), (prob, class, version));
    }
    let (code, _) = post(
        &c,
        format!("{}/predict", s.base),
        json!({ "user_id": "nobody" }),
    )
    .await;
    assert_eq!(code, 404);
    let mut batch: Vec<&String> = ids[k..k + m].iter().collect();
    let nobody = "nobody".to_string();
    batch.push(&nobody);
    let (code, body) = post(
        &c,
        format!("{}/predict/batch", s.base),
        json!({ "ids": batch }),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let version = body["model"]["version"].as_i64().expect("version");
    let items = body["predictions"].as_array().expect("predictions");
    assert_eq!(items.len(), m + 1);
    for item in &items[..m] {
        let id = item["id"].as_str().expect("id").to_string();
        let prob = item["probability"].as_f64().expect("probability");
        let class = item["prediction"].as_i64().expect("prediction");
        answered.insert(id, (prob, class, version));
    }
    assert!(items[m]["error"].is_string());
    // Straight away: most of this is still in the writer's batch.
    s.terminate();

    let log = PredictionLog::new(p.db().await, PROJECT);
    let logged = log.window(ENDPOINT, 0, i64::MAX).await.expect("window");
    assert_eq!(logged.len(), k + m, "exactly the 200 predictions");
    assert_eq!(log.count(ENDPOINT).await.expect("count"), (k + m) as i64);
    for row in &logged {
        let (prob, class, version) = answered
            .get(&row.entity)
            .unwrap_or_else(|| panic!("{} was never answered", row.entity));
        assert_eq!(row.probability, *prob, "{}", row.entity);
        assert_eq!(row.class, *class, "{}", row.entity);
        assert_eq!(row.version, *version, "{}", row.entity);
        assert_eq!(row.model, "streamflow_churn");
    }
    let entities: std::collections::HashSet<&str> =
        logged.iter().map(|r| r.entity.as_str()).collect();
    assert_eq!(entities.len(), k + m);
    assert!(logged.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
}

/// A monitor over the endpoint's predictions: too few logged, not judged;
/// after a few hundred answers, the served probabilities are compared with the
/// Production version's on its validation rows, and the verdict is reported.
async fn prediction_drift_reads_the_logged_answers(backend: &str) {
    let Some(p) = applied(backend, "plog_drift").await else {
        return;
    };
    std::fs::write(
        p.specs.join("monitoring.yaml"),
        "kind: Monitor\nname: served\nmodel: streamflow_churn\n\
         predictions: { endpoint: churn-api, window: 1d, every: 1s, minRows: 100 }\n",
    )
    .expect("write monitor");
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("predictions: 0 of version 2 logged by churn-api in the last 1day, fewer than minRows 100: not judged"),
        "{}",
        text(&out)
    );
    let mut s = serve(&p, &[]);
    let c = client();
    for id in &user_ids()[..300] {
        let (code, body) = post(&c, format!("{}/predict", s.base), json!({ "user_id": id })).await;
        assert_eq!(code, 200, "{body}");
    }
    s.terminate();
    // The next period: the served answers are judged.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = p.run(&["monitor", "report", "served", "--json"]);
    let r: Value = serde_json::from_slice(&report.stdout).expect("report json");
    let columns = r["columns"].as_array().expect("columns");
    assert_eq!(columns.len(), 1, "{r}");
    assert_eq!(columns[0]["column"], "probability");
    // 1 761 validation rows: above 1 000, the normed Wasserstein distance.
    assert_eq!(columns[0]["method"], "wasserstein", "{r}");
    let score = columns[0]["score"].as_f64().expect("score");
    assert!(score.is_finite() && score >= 0.0, "{r}");
    let predictions = &r["predictions"];
    assert_eq!(predictions["columns"], 1, "{r}");
    assert_eq!(r["drifted"], columns[0]["drifted"], "{r}");
}

/// `kill -9` loses at most what was not flushed yet: answers older than a
/// flush interval are in the store.
async fn a_killed_endpoint_keeps_what_was_flushed(backend: &str) {
    let Some(p) = applied(backend, "plog_kill").await else {
        return;
    };
    let mut s = serve(&p, &[]);
    let c = client();
    let ids = user_ids();
    for id in &ids[..120] {
        let (code, body) = post(&c, format!("{}/predict", s.base), json!({ "user_id": id })).await;
        assert_eq!(code, 200, "{body}");
    }
    // Longer than the writer's flush interval (150 ms), then no chance to flush.
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.child.kill().expect("kill -9");
    s.child.wait().expect("wait");
    let log = PredictionLog::new(p.db().await, PROJECT);
    assert_eq!(log.count(ENDPOINT).await.expect("count"), 120);
}

on_both_backends!(
    a_killed_endpoint_keeps_what_was_flushed,
    store_round_trip,
    every_answer_is_logged,
    prediction_drift_reads_the_logged_answers
);

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_drops_and_counts() {
    let p = applied("sqlite", "unused").await.expect("sqlite");
    let mut s = serve(&p, &["--prediction-log-capacity", "1"]);
    let c = client();
    let ids = user_ids();
    // Four batches at once into a queue of one: the writer cannot keep up.
    let mut requests = Vec::new();
    for chunk in ids[..4_000].chunks(1_000) {
        let (c, url, chunk) = (
            c.clone(),
            format!("{}/predict/batch", s.base),
            chunk.to_vec(),
        );
        requests.push(tokio::spawn(async move {
            post(&c, url, json!({ "ids": chunk })).await
        }));
    }
    let mut answered = 0usize;
    for r in requests {
        let (code, body) = r.await.expect("request");
        assert_eq!(code, 200, "{body}");
        answered += body["predictions"]
            .as_array()
            .expect("predictions")
            .iter()
            .filter(|i| i["probability"].is_number())
            .count();
    }
    let text = metrics(&c, &s.base).await;
    let dropped = sample(&text, "reconcile_endpoint_prediction_log_dropped_total")
        .unwrap_or_else(|| panic!("no dropped counter in\n{text}"));
    assert!(
        dropped > 0.0,
        "nothing dropped with a queue of one:\n{text}"
    );
    assert!(sample(&text, "reconcile_endpoint_prediction_log_failed_total") == Some(0.0));
    s.terminate();
    let log = PredictionLog::new(p.db().await, PROJECT);
    let logged = log.count(ENDPOINT).await.expect("count");
    assert_eq!(
        logged as f64 + dropped,
        answered as f64,
        "every answer is either logged or counted as dropped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logging_can_be_turned_off() {
    let p = applied("sqlite", "unused").await.expect("sqlite");
    let training = p.specs.join("training.yaml");
    let spec = std::fs::read_to_string(&training).expect("read");
    std::fs::write(
        &training,
        spec.replace(
            "runtime: embedded",
            "runtime: embedded\nlogPredictions: false",
        ),
    )
    .expect("write");
    let mut s = serve(&p, &[]);
    let c = client();
    let (code, body) = post(
        &c,
        format!("{}/predict", s.base),
        json!({ "user_id": "7590-VHVEG" }),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    s.terminate();
    let log = PredictionLog::new(p.db().await, PROJECT);
    assert_eq!(log.count(ENDPOINT).await.expect("count"), 0);
}

fn column(name: &str, method: Method, score: f64, drifted: bool) -> ColumnDrift {
    ColumnDrift {
        column: name.to_string(),
        kind: ColumnKind::Numerical,
        method,
        score,
        threshold: method.default_threshold(),
        drifted,
        reference_rows: 100,
        current_rows: 100,
        reference_nulls: 0,
        current_nulls: 0,
        distribution: Distribution::Histogram {
            edges: vec![0.0, 1.0],
            reference: vec![1.0],
            current: vec![1.0],
        },
    }
}

/// Polls `/metrics` until `ok` holds (the watcher reads evaluations every 2 s).
async fn metrics_until(c: &reqwest::Client, base: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(c, base).await;
        if ok(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "gauges never settled:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_gauges_follow_the_newest_evaluation() {
    // Nothing applied: the state store exists once serve opens it, which is
    // all the gauges read.
    let p = Project::example();
    let s = serve(&p, &[]);
    let c = client();
    let monitors = MonitorStore::new(p.db().await, PROJECT);
    let first = MonitorReport {
        data: Some(dataset_drift(
            vec![
                column("usage_30d.watch_hours_30d", Method::Ks, 0.001, true),
                column("subs_profile.monthly_fee", Method::Wasserstein, 0.02, false),
            ],
            0.5,
        )),
        predictions: Some(dataset_drift(
            vec![column("probability", Method::Psi, 0.3, true)],
            0.5,
        )),
        decay: None,
    };
    monitors
        .record(&NewEvaluation {
            monitor: "churn-drift",
            reference: "training set",
            current: "last 7 days",
            drifted: true,
            summary: "1 of 2 columns drifted",
            report: &first,
        })
        .await
        .expect("record");
    let watch = r#"reconcile_monitor_drift_score{monitor="churn-drift",column="usage_30d.watch_hours_30d",method="ks"}"#;
    let text = metrics_until(&c, &s.base, |t| t.contains(watch)).await;
    assert_eq!(sample(&text, watch), Some(0.001));
    for (series, want) in [
        (
            r#"reconcile_monitor_drift_score{monitor="churn-drift",column="subs_profile.monthly_fee",method="wasserstein"}"#,
            0.02,
        ),
        (
            r#"reconcile_monitor_drift_threshold{monitor="churn-drift",column="usage_30d.watch_hours_30d"}"#,
            0.05,
        ),
        (
            r#"reconcile_monitor_column_drifted{monitor="churn-drift",column="usage_30d.watch_hours_30d"}"#,
            1.0,
        ),
        (
            r#"reconcile_monitor_column_drifted{monitor="churn-drift",column="subs_profile.monthly_fee"}"#,
            0.0,
        ),
        (
            r#"reconcile_monitor_drift_score{monitor="churn-drift",column="probability",method="psi"}"#,
            0.3,
        ),
        (
            r#"reconcile_monitor_dataset_drift{monitor="churn-drift"}"#,
            1.0,
        ),
        (
            r#"reconcile_monitor_drifted_share{monitor="churn-drift"}"#,
            0.5,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    assert!(!text.contains("reconcile_monitor_model_auc{"), "{text}");

    // A newer evaluation with other columns and a decay check.
    let second = MonitorReport {
        data: Some(dataset_drift(
            vec![column(
                "payments_90d.failed_payments_90d",
                Method::Z,
                0.4,
                false,
            )],
            0.5,
        )),
        predictions: None,
        decay: Some(Decay {
            version: 1,
            labels_as_of: "2024-02-29".into(),
            rows: 500,
            validation_auc: 0.84,
            current_auc: 0.71,
            validation_f1: 0.6,
            current_f1: 0.5,
            max_auc_drop: 0.05,
            decayed: true,
        }),
    };
    monitors
        .record(&NewEvaluation {
            monitor: "churn-drift",
            reference: "training set",
            current: "last 7 days",
            drifted: true,
            summary: "decayed",
            report: &second,
        })
        .await
        .expect("record");
    let text = metrics_until(&c, &s.base, |t| !t.contains(watch)).await;
    for gone in [
        "usage_30d.watch_hours_30d",
        "subs_profile.monthly_fee",
        r#"column="probability""#,
    ] {
        assert!(!text.contains(gone), "{gone} lingers in\n{text}");
    }
    for (series, want) in [
        (
            r#"reconcile_monitor_drift_score{monitor="churn-drift",column="payments_90d.failed_payments_90d",method="z"}"#,
            0.4,
        ),
        (
            r#"reconcile_monitor_dataset_drift{monitor="churn-drift"}"#,
            0.0,
        ),
        (
            r#"reconcile_monitor_drifted_share{monitor="churn-drift"}"#,
            0.0,
        ),
        (
            r#"reconcile_monitor_model_auc{monitor="churn-drift",window="validation"}"#,
            0.84,
        ),
        (
            r#"reconcile_monitor_model_auc{monitor="churn-drift",window="current"}"#,
            0.71,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
}
