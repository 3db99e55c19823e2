//! The endpoint past memory: with `cache: {maxEntities: 100}` (of 7 043 users)
//! every id's `/features`, `/predict` and `/predict/batch` answer exactly as the
//! unbounded server's do (rows read through from the online store), the cache's
//! size gauge never exceeds the bound, and a new materialization is served —
//! never a row older than the watermark the server noticed — including for
//! entities the cache held before it. On SQLite, PostgreSQL (own database) and
//! Redis (own key prefix), over real HTTP on loopback.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::server::{Server, serve};
use common::{Project, text};
use serde_json::{Value, json};

const BOUND: usize = 100;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(&url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(&url).json(&body).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The example applied on `backend`, or `None` when that server is absent
/// (locally; under `CI=true` the helpers panic instead).
async fn applied(backend: &str) -> Option<Project> {
    let mut p = Project::example();
    match backend {
        "postgres" => {
            p.store_args = vec!["--state".into(), common::fresh_pg_database("cache").await?];
        }
        "redis" => {
            p.store_args = vec!["--online".into(), common::fresh_redis_url("cache").await?];
        }
        _ => {}
    }
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    Some(p)
}

/// Sets (or removes, with `None`) the endpoint's cache bound in the specs.
fn set_bound(p: &Project, bound: Option<usize>) {
    let path = p.specs.join("training.yaml");
    let spec = std::fs::read_to_string(&path).expect("training.yaml");
    let base: String = spec
        .lines()
        .filter(|l| !l.starts_with("cache:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let next = match bound {
        Some(n) => base.replace(
            "runtime: embedded\n",
            &format!("runtime: embedded\ncache: {{ maxEntities: {n} }}\n"),
        ),
        None => base.clone(),
    };
    assert!(
        bound.is_none() || next != base,
        "the endpoint spec changed shape"
    );
    std::fs::write(&path, next).expect("write training.yaml");
}

fn user_ids(p: &Project) -> Vec<String> {
    std::fs::read_to_string(p.specs.join("data/2024-02-29/users.csv"))
        .expect("users")
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next().map(str::to_string))
        .collect()
}

/// Every `reconcile_endpoint_feature_cache_entities{view=…}` value.
async fn cache_sizes(c: &reqwest::Client, s: &Server) -> (BTreeMap<String, f64>, String) {
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let sizes = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("reconcile_endpoint_feature_cache_entities{view=\"")?;
            let (view, value) = rest.split_once("\"} ")?;
            Some((view.to_string(), value.trim().parse().ok()?))
        })
        .collect();
    (sizes, text)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// `/predict/batch` over every id: id → (probability, features).
async fn batch_answers(c: &reqwest::Client, s: &Server, ids: &[String]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(1000) {
        let (code, b) = post(c, s.url("/predict/batch"), json!({ "ids": chunk })).await;
        assert_eq!(code, 200, "{b}");
        for item in b["predictions"].as_array().expect("predictions") {
            let id = item["id"].as_str().expect("id").to_string();
            out.insert(
                id,
                json!({"probability": item["probability"], "features": item["features"]}),
            );
        }
    }
    out
}

async fn bounded_endpoint_reads_through(backend: &str) {
    let Some(p) = applied(backend).await else {
        return;
    };
    let ids = user_ids(&p);
    assert_eq!(ids.len(), 7043);
    let c = client();

    // What the unbounded server answers: the reference.
    let want = {
        let s = serve(&p, &[]);
        let (_, m) = cache_sizes(&c, &s).await;
        assert_eq!(
            metric(&m, "reconcile_endpoint_feature_cache_max_entities"),
            0.0
        );
        batch_answers(&c, &s, &ids).await
    };
    assert_eq!(want.len(), ids.len());

    set_bound(&p, Some(BOUND));
    let s = serve(&p, &[]);
    // The gauge, watched while every id is asked for.
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (c, url, stop, samples) = (c.clone(), s.url("/metrics"), stop.clone(), samples.clone());
        tokio::spawn(async move {
            let mut peak: BTreeMap<String, f64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let text = c
                    .get(&url)
                    .send()
                    .await
                    .expect("metrics")
                    .text()
                    .await
                    .expect("text");
                for l in text.lines() {
                    if let Some(rest) =
                        l.strip_prefix("reconcile_endpoint_feature_cache_entities{view=\"")
                        && let Some((view, v)) = rest.split_once("\"} ")
                    {
                        let v: f64 = v.trim().parse().expect("gauge value");
                        let e = peak.entry(view.to_string()).or_insert(0.0);
                        *e = e.max(v);
                    }
                }
                samples.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };

    // Every id, one request each, four clients at a time: /features and /predict.
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (c, base, ids, next) = (c.clone(), s.base.clone(), ids.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let (code, f) = get(&c, format!("{base}/features/{id}")).await;
                assert_eq!(code, 200, "{id}: {f}");
                let (code, pr) = post(&c, format!("{base}/predict"), json!({"user_id": id})).await;
                assert_eq!(code, 200, "{id}: {pr}");
                assert_eq!(pr["features"], f["features"], "{id}");
                got.push((
                    id.clone(),
                    json!({"probability": pr["probability"], "features": pr["features"]}),
                ));
            }
            got
        }));
    }
    let mut single = BTreeMap::new();
    for w in workers {
        single.extend(w.await.expect("worker"));
    }
    // Batches larger than the bound read through too.
    let batched = batch_answers(&c, &s, &ids).await;
    stop.store(true, Ordering::Relaxed);
    let peak = watcher.await.expect("watcher");

    assert_eq!(single.len(), want.len());
    for (id, answer) in &want {
        assert_eq!(
            single.get(id),
            Some(answer),
            "/features or /predict of {id}"
        );
        assert_eq!(batched.get(id), Some(answer), "/predict/batch of {id}");
    }
    assert!(
        samples.load(Ordering::Relaxed) > 3,
        "too few samples of /metrics"
    );
    assert_eq!(peak.len(), 4, "one gauge per view: {peak:?}");
    for (view, n) in &peak {
        assert!(
            *n <= BOUND as f64,
            "{view} held {n} entities, bound {BOUND}"
        );
        assert!(*n > 0.0, "{view} never held a row: {peak:?}");
    }
    let (sizes, text) = cache_sizes(&c, &s).await;
    assert!(sizes.values().all(|n| *n == BOUND as f64), "{sizes:?}");
    assert_eq!(
        metric(&text, "reconcile_endpoint_feature_cache_max_entities"),
        BOUND as f64
    );
    assert!(metric(&text, "reconcile_endpoint_feature_cache_misses_total") >= 7043.0);
    // Requests on the same id back to back: the second one is a hit.
    assert!(metric(&text, "reconcile_endpoint_feature_cache_hits_total") >= 7043.0);
}

async fn a_new_materialization_replaces_cached_rows(backend: &str) {
    let Some(p) = applied(backend).await else {
        return;
    };
    set_bound(&p, Some(BOUND));
    let ids = user_ids(&p);
    let c = client();
    let s = serve(&p, &[]);
    let (_, m) = get(&c, s.url("/models")).await;
    assert_eq!(m["watermarks"]["support_90d"], "2024-02-29", "{m}");
    // Fill the cache with entities it keeps (fewer than the bound).
    let warm = &ids[..BOUND / 2];
    let mut before = BTreeMap::new();
    for id in warm {
        let (code, f) = get(&c, s.url(&format!("/features/{id}"))).await;
        assert_eq!(code, 200, "{f}");
        before.insert(
            id.clone(),
            f["features"]["support_90d.support_tickets_90d"].clone(),
        );
    }
    // A March snapshot where every user has 1 000 more tickets.
    p.add_march_tickets(1000);
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    // Once the server shows the new watermark, no answer may be older.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = get(&c, s.url("/models")).await;
        if m["watermarks"]["support_90d"] == "2024-03-31" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new watermark was never noticed: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in warm.iter().chain(&ids[BOUND..BOUND + 200]) {
        let (code, f) = get(&c, s.url(&format!("/features/{id}"))).await;
        assert_eq!(code, 200, "{f}");
        let tickets = f["features"]["support_90d.support_tickets_90d"]
            .as_i64()
            .unwrap_or_else(|| panic!("{id}: {f}"));
        assert!(
            tickets >= 1000,
            "{id} served a row older than the watermark: {f}"
        );
        if let Some(old) = before.get(id).and_then(Value::as_i64) {
            assert_eq!(tickets, old + 1000, "{id}");
        }
    }
    let (sizes, _) = cache_sizes(&c, &s).await;
    assert!(sizes.values().all(|n| *n <= BOUND as f64), "{sizes:?}");
}

macro_rules! on_every_online_store {
    ($($name:ident),*) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name("sqlite").await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name("postgres").await })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() { super::$name("redis").await })*
        }
    };
}

on_every_online_store!(
    bounded_endpoint_reads_through,
    a_new_materialization_replaces_cached_rows
);

#[test]
fn a_zero_bound_is_refused_where_it_is_written() {
    let p = Project::example();
    set_bound(&p, Some(0));
    let out = p.run(&["validate"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("maxEntities 0"), "{t}");
    assert!(t.contains("training.yaml"), "{t}");
}
