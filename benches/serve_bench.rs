//! Endpoint figures beside their targets and the Python stack (docs/PERFORMANCE.md):
//! requests/s and p50/p99 latency at 16 connections on loopback for /health,
//! /features/{id} and /predict, their latency at fixed offered rates (1 000
//! and 5 000 req/s; each id once on a fresh server), resident memory under load, and cold start to
//! the first successful prediction; then /predict with the prediction log on and
//! off (the same load, alternating runs, best of each), with the log's
//! written/dropped counters. The load comes from a small hyper client in this
//! process (and from wrk too, when it is installed), on the same cores.
//!
//! `cargo bench --bench serve_bench -- cache` prints the read-through figures:
//! per online store (SQLite; PostgreSQL and Redis on 127.0.0.1 when they
//! answer) `/predict` unbounded, then `/features` and `/predict` with
//! `cache: {maxEntities: 1000}` over ids spread on all 7 043 users (so ~86 % of
//! lookups read through), with hits and misses from `/metrics`; then resident
//! memory with the online store grown to `--entities N` (default 700 000)
//! synthetic users: unbounded, and bounded at 10 000 after requests over all
//! of them.
//!
//! `cargo bench --bench serve_bench -- connections` prints only the connection
//! figures: resident memory idle, with 1 000 concurrent keep-alive connections
//! (each answered once), after they left, under a flood of idle sockets past
//! the connection limit, and after the flood left; with the heap trimming on and
//! off (`RECONCILE_NO_HEAP_TRIM`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

const CONNECTIONS: usize = 16;
const SECONDS: u64 = 5;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).expect("copy");
        }
    }
}

fn start(specs: &Path) -> (Child, String) {
    start_with(specs, &[])
}

fn start_with(specs: &Path, env: &[(&str, &str)]) -> (Child, String) {
    start_full(specs, env, &[])
}

fn start_full(specs: &Path, env: &[(&str, &str)], extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["serve", "--port", "0"])
        .args(extra)
        .arg(specs)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    out.read_line(&mut line).expect("line");
    // Keep reading (and discarding) stdout so the server never sees a closed pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .expect("address")
        .to_string();
    (child, addr)
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// One counter's value from the server's /metrics.
async fn counter(addr: &str, name: &str) -> f64 {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/metrics")
        .header("host", addr)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let r = s.send_request(req).await.expect("metrics");
    let body = r.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

#[derive(Clone, Copy)]
enum Route {
    Health,
    Features,
    Predict,
}

fn request(route: Route, addr: &str, id: &str) -> hyper::Request<Full<Bytes>> {
    let b = hyper::Request::builder().header("host", addr);
    match route {
        Route::Health => b.uri("/health").body(Full::new(Bytes::new())),
        Route::Features => b
            .uri(format!("/features/{id}"))
            .body(Full::new(Bytes::new())),
        Route::Predict => b
            .method("POST")
            .uri("/predict")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!(r#"{{"user_id":"{id}"}}"#)))),
    }
    .expect("request")
}

/// A keep-alive HTTP/1 connection to `addr`, Nagle off.
async fn connect(addr: &str) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// Sends `route` for `id` on `sender`, recording the latency (µs) or the
/// failure; false when the connection broke.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    route: Route,
    addr: &str,
    id: &str,
    latencies: &mut Vec<u32>,
    errors: &mut usize,
) -> bool {
    let t0 = Instant::now();
    match sender.send_request(request(route, addr, id)).await {
        Ok(r) => {
            let ok = r.status().is_success();
            let _ = r.into_body().collect().await;
            latencies.push(t0.elapsed().as_micros() as u32);
            *errors += usize::from(!ok);
            true
        }
        Err(_) => {
            *errors += 1;
            false
        }
    }
}

/// Requests/s over the tasks' run, their sorted latencies and failures.
async fn gather(tasks: Vec<tokio::task::JoinHandle<(Vec<u32>, usize)>>) -> (f64, Vec<u32>, usize) {
    let started = Instant::now();
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.expect("task");
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    (all.len() as f64 / elapsed, all, errors)
}

/// 16 keep-alive connections, each sending requests back to back for SECONDS.
async fn load(addr: &str, route: Route, ids: Arc<Vec<String>>) -> (f64, Vec<u32>, usize) {
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (addr, ids) = (addr.to_string(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&addr).await;
            let (mut latencies, mut errors) = (Vec::with_capacity(200_000), 0usize);
            let mut i = c * 997;
            while Instant::now() < deadline {
                let id = &ids[i % ids.len()];
                i += 1;
                if !send(&mut sender, route, &addr, id, &mut latencies, &mut errors).await {
                    break;
                }
            }
            (latencies, errors)
        }));
    }
    gather(tasks).await
}

/// Every id of `ids` sent once to /predict, over CONNECTIONS keep-alive
/// connections (connection c sends ids c, c + CONNECTIONS, …).
async fn load_once(addr: &str, ids: Arc<Vec<String>>) -> (f64, Vec<u32>, usize) {
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (addr, ids) = (addr.to_string(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&addr).await;
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            for id in ids.iter().skip(c).step_by(CONNECTIONS) {
                if !send(
                    &mut sender,
                    Route::Predict,
                    &addr,
                    id,
                    &mut latencies,
                    &mut errors,
                )
                .await
                {
                    break;
                }
            }
            (latencies, errors)
        }));
    }
    gather(tasks).await
}

/// Each connection of a paced run sends at most one request per this
/// interval: tokio's timer steps in milliseconds, so a shorter interval
/// would measure the timer.
const PACED_INTERVAL: Duration = Duration::from_millis(4);

/// `route` at a fixed offered `rate` (requests/s) for SECONDS, or each id of
/// `ids` once when `once`, over as many keep-alive connections as keep each
/// one's interval at PACED_INTERVAL: connection c sends request k at
/// start + (k × connections + c) / rate. Latency counts from the scheduled
/// time whenever a request goes out more than one interval late (a stall
/// held it), so a stall is not hidden by the requests it delayed; otherwise
/// from the send. Returns (achieved rate, sorted latencies, errors).
async fn paced(
    addr: &str,
    route: Route,
    ids: Arc<Vec<String>>,
    rate: f64,
    once: bool,
) -> (f64, Vec<u32>, usize) {
    let connections = ((rate * PACED_INTERVAL.as_secs_f64()).ceil() as usize).max(1);
    let interval = Duration::from_secs_f64(connections as f64 / rate);
    let count = if once {
        ids.len().div_ceil(connections)
    } else {
        (rate * SECONDS as f64) as usize / connections
    };
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (addr, ids) = (addr.to_string(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&addr).await;
            let (mut latencies, mut errors) = (Vec::with_capacity(count), 0usize);
            let offset = interval.mul_f64(c as f64 / connections as f64);
            for k in 0..count {
                let i = k * connections + c;
                if once && i >= ids.len() {
                    break;
                }
                let due = start + offset + interval * k as u32;
                tokio::time::sleep_until(due).await;
                let sent = tokio::time::Instant::now();
                let from = if sent > due + interval { due } else { sent };
                let mut one = Vec::with_capacity(1);
                let id = &ids[(i * 997) % ids.len()];
                let id = if once { &ids[i] } else { id };
                if !send(&mut sender, route, &addr, id, &mut one, &mut errors).await {
                    break;
                }
                if !one.is_empty() {
                    latencies.push(from.elapsed().as_micros() as u32);
                }
            }
            (latencies, errors)
        }));
    }
    gather(tasks).await
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn wrk(addr: &str, path: &str, lua: Option<&Path>) {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c16", "-d5s", "--latency"]);
    if let Some(script) = lua {
        cmd.arg("-s").arg(script);
    }
    let Ok(out) = cmd.arg(format!("http://{addr}{path}")).output() else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let pick = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .map(|l| l.trim().to_string())
            .unwrap_or_default()
    };
    println!(
        "    wrk {path:<22} {} | {} | {}",
        pick("Requests/sec"),
        pick("50%"),
        pick("99%")
    );
}

/// Opens `n` keep-alive connections that each get one /health answer, and holds them.
async fn answered_connections(
    addr: &str,
    n: usize,
) -> Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await.ok()?;
            let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .ok()?;
            tokio::spawn(conn);
            let r = s
                .send_request(request(Route::Health, &addr, ""))
                .await
                .ok()?;
            let ok = r.status().is_success();
            let _ = r.into_body().collect().await;
            ok.then_some(s)
        }));
    }
    let mut held = Vec::new();
    for t in tasks {
        if let Ok(Some(s)) = t.await {
            held.push(s);
        }
    }
    held
}

/// Resident memory idle, with 1 000 answered connections, after they left,
/// under a flood of idle sockets and after it left.
fn connections(specs: &Path, rt: &tokio::runtime::Runtime, trim: bool) {
    let env: &[(&str, &str)] = if trim {
        &[]
    } else {
        &[("RECONCILE_NO_HEAP_TRIM", "1")]
    };
    let (mut child, addr) = start_with(specs, env);
    let pid = child.id();
    let mb = |kb: u64| kb as f64 / 1024.0;
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kb(pid, "VmRSS:");
    let held = rt.block_on(answered_connections(&addr, 1000));
    std::thread::sleep(Duration::from_millis(300));
    let with_1000 = rss_kb(pid, "VmRSS:");
    let answered = held.len();
    drop(held);
    std::thread::sleep(Duration::from_millis(2500));
    let after_1000 = rss_kb(pid, "VmRSS:");
    // 10 000 sockets that send nothing: past the default limit (4 096), shed.
    let flood: Vec<std::net::TcpStream> = (0..10_000)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let during = rss_kb(pid, "VmRSS:");
    let files = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let opened = flood.len();
    drop(flood);
    std::thread::sleep(Duration::from_millis(3000));
    let after = rss_kb(pid, "VmRSS:");
    let health = rt.block_on(answered_connections(&addr, 1)).len() == 1;
    let rejected = rt.block_on(counter(
        &addr,
        "reconcile_endpoint_connections_rejected_total",
    ));
    let peak = rss_kb(pid, "VmHWM:");
    println!(
        "heap trim {:<3}  idle {:.1} MB | 1 000 connections ({answered} answered) {:.1} MB, after they left {:.1} MB | \
         flood of {opened} idle sockets {:.1} MB ({files} files open, {rejected:.0} shed), after it left {:.1} MB | peak {:.1} MB | /health after: {}",
        if trim { "on" } else { "off" },
        mb(idle),
        mb(with_1000),
        mb(after_1000),
        mb(during),
        mb(after),
        mb(peak),
        if health { "200" } else { "FAILED" }
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Writes `cache: {maxEntities: n}` into the endpoint spec (`None`: removes it).
fn set_cache_bound(specs: &Path, bound: Option<usize>) {
    let path = specs.join("training.yaml");
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
        None => base,
    };
    std::fs::write(&path, next).expect("write training.yaml");
}

/// The served version as `/models` describes it: run, version, shape.
async fn served_model(addr: &str) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/models")
        .header("host", addr)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let r = s.send_request(req).await.expect("models");
    let body = r.into_body().collect().await.expect("body").to_bytes();
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    format!(
        "{} version {} (run {}, {}), {}",
        m["name"].as_str().unwrap_or("?"),
        m["version"],
        m["run"].as_str().unwrap_or("?"),
        m["algorithm"].as_str().unwrap_or("?"),
        m["shape"]
    )
}

async fn fresh_pg() -> Option<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .map_err(|e| println!("NOTICE: PostgreSQL figures skipped: {e}"))
        .ok()?;
    let name = format!("reconcile_serve_bench_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .ok()?;
    }
    Some(format!("postgres://postgres@127.0.0.1:5432/{name}"))
}

async fn drop_pg(url: &str) {
    use sqlx::Connection;
    if let (Ok(mut conn), Some(name)) = (
        sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres").await,
        url.rsplit('/').next(),
    ) {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(&mut conn)
        .await;
    }
}

async fn fresh_redis() -> Option<String> {
    let url = format!(
        "redis://127.0.0.1:6379/0?prefix=reconcile_serve_bench_{}",
        std::process::id()
    );
    match reconcile::store::online::OnlineStore::open(&url, Path::new(".")).await {
        Ok(_) => Some(url),
        Err(e) => {
            println!("NOTICE: Redis figures skipped: {e}");
            None
        }
    }
}

async fn drop_redis(url: &str) {
    let Some(prefix) = url.split("prefix=").nth(1) else {
        return;
    };
    if let Ok(client) = redis::Client::open("redis://127.0.0.1:6379/0")
        && let Ok(mut conn) = client.get_multiplexed_async_connection().await
        && let Ok(keys) = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async::<Vec<String>>(&mut conn)
            .await
        && !keys.is_empty()
    {
        let _ = redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut conn)
            .await;
    }
}

/// A line of figures from `/metrics`: the cache's size, hits and misses.
async fn cache_counters(addr: &str) -> String {
    format!(
        "hits {:.0}, misses {:.0}",
        counter(addr, "reconcile_endpoint_feature_cache_hits_total").await,
        counter(addr, "reconcile_endpoint_feature_cache_misses_total").await,
    )
}

fn row(name: &str, (rps, lat, errors): &(f64, Vec<u32>, usize)) {
    println!(
        "{name:<44} {rps:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {errors}",
        pct(lat, 0.5),
        pct(lat, 0.99)
    );
}

/// Read-through figures per online store, then resident memory past RAM.
fn cache_mode(rt: &tokio::runtime::Runtime, ids: Arc<Vec<String>>) {
    println!(
        "endpoint read-through ({} cores, {CONNECTIONS} connections, {SECONDS} s per route, ids over all {} users, load generator on the same cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        ids.len()
    );
    let backends: Vec<(&str, Vec<String>)> = {
        let mut b = vec![("SQLite", Vec::new())];
        if let Some(url) = rt.block_on(fresh_pg()) {
            b.push(("PostgreSQL", vec!["--state".to_string(), url]));
        }
        if let Some(url) = rt.block_on(fresh_redis()) {
            b.push(("Redis", vec!["--online".to_string(), url]));
        }
        b
    };
    for (backend, args) in &backends {
        let dir = tempfile::tempdir().expect("tempdir");
        let specs = dir.path().join("specs");
        copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("specs"), &specs);
        // Without the prediction log: the figures are the cache's.
        let training = specs.join("training.yaml");
        let spec = std::fs::read_to_string(&training).expect("training.yaml");
        std::fs::write(
            &training,
            spec.replace(
                "runtime: embedded",
                "runtime: embedded\nlogPredictions: false",
            ),
        )
        .expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_reconcile"))
            .args(["apply", "-q"])
            .arg(&specs)
            .args(args)
            .output()
            .expect("apply");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let extra: Vec<&str> = args.iter().map(String::as_str).collect();
        let (mut child, addr) = start_full(&specs, &[], &extra);
        row(
            &format!("{backend}: /predict, all in memory"),
            &rt.block_on(load(&addr, Route::Predict, ids.clone())),
        );
        let _ = child.kill();
        let _ = child.wait();
        set_cache_bound(&specs, Some(1000));
        let (mut child, addr) = start_full(&specs, &[], &extra);
        for (route, name) in [
            (Route::Features, "/features/{id}"),
            (Route::Predict, "/predict"),
        ] {
            row(
                &format!("{backend}: {name}, maxEntities 1000"),
                &rt.block_on(load(&addr, route, ids.clone())),
            );
        }
        println!(
            "{:<44} {}; resident memory {:.1} MB",
            "",
            rt.block_on(cache_counters(&addr)),
            rss_kb(child.id(), "VmRSS:") as f64 / 1024.0
        );
        let _ = child.kill();
        let _ = child.wait();
        if let Some(url) = args.get(1) {
            if url.starts_with("postgres") {
                rt.block_on(drop_pg(url));
            } else {
                rt.block_on(drop_redis(url));
            }
        }
    }
    let entities: usize = std::env::args()
        .skip_while(|a| a != "--entities")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(700_000);
    past_ram(rt, &ids, entities);
}

/// The online store grown to `entities` users (copies of the 7 043 under new
/// keys, in every view), served unbounded and then with a bound of 10 000.
fn past_ram(rt: &tokio::runtime::Runtime, ids: &[String], entities: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("specs"), &specs);
    let training = specs.join("training.yaml");
    let spec = std::fs::read_to_string(&training).expect("training.yaml");
    std::fs::write(
        &training,
        spec.replace(
            "runtime: embedded",
            "runtime: embedded\nlogPredictions: false",
        ),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["apply", "-q"])
        .arg(&specs)
        .output()
        .expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t0 = Instant::now();
    let all_ids: Vec<String> = rt.block_on(async {
        let url = format!("sqlite://{}", specs.join(".reconcile/state.db").display());
        let online = reconcile::store::online::OnlineStore::open(&url, dir.path())
            .await
            .expect("online store");
        let records = online.observe().await.expect("observe");
        let copies = entities.div_ceil(ids.len()).saturating_sub(1);
        for (view, record) in &records {
            let rows = online.read_all(view).await.expect("read");
            for c in 0..copies {
                let mut batch = reconcile::store::online::OnlineRows::default();
                for (k, v) in &rows {
                    batch.keys.push(format!("{k}-x{c}"));
                    batch.as_of.push(record.watermark.clone());
                    batch.features.push(v.to_string());
                }
                online
                    .write_view(view, record, batch, false)
                    .await
                    .expect("write");
            }
        }
        ids.iter()
            .cloned()
            .chain((0..copies).flat_map(|c| ids.iter().map(move |k| format!("{k}-x{c}"))))
            .collect()
    });
    let all_ids = Arc::new(all_ids);
    println!(
        "\nonline store grown to {} users in each of 4 views ({:.1} s)",
        all_ids.len(),
        t0.elapsed().as_secs_f64()
    );
    for bound in [None, Some(10_000)] {
        set_cache_bound(&specs, bound);
        let t0 = Instant::now();
        let (mut child, addr) = start(&specs);
        let ready = t0.elapsed();
        let at_start = rss_kb(child.id(), "VmRSS:");
        let figures = rt.block_on(load(&addr, Route::Predict, all_ids.clone()));
        let label = match bound {
            None => "unbounded".to_string(),
            Some(b) => format!("maxEntities {b}"),
        };
        row(
            &format!("/predict over {} users, {label}", all_ids.len()),
            &figures,
        );
        println!(
            "{:<44} listening after {:.1} s; resident memory {:.1} MB at start, {:.1} MB after load (peak {:.1} MB){}",
            "",
            ready.as_secs_f64(),
            at_start as f64 / 1024.0,
            rss_kb(child.id(), "VmRSS:") as f64 / 1024.0,
            rss_kb(child.id(), "VmHWM:") as f64 / 1024.0,
            if bound.is_some() {
                format!("; {}", rt.block_on(cache_counters(&addr)))
            } else {
                String::new()
            }
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let only_connections = std::env::args().any(|a| a == "connections");
    let only_cache = std::env::args().any(|a| a == "cache");
    let dir = tempfile::tempdir().expect("tempdir");
    let specs: PathBuf = dir.path().join("specs");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("specs"), &specs);
    let out = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["apply", "-q"])
        .arg(&specs)
        .output()
        .expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = std::fs::read_to_string(specs.join("data/2024-02-29/users.csv"))
        .expect("users")
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next().map(str::to_string))
        .collect();
    let ids = Arc::new(ids);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if only_cache {
        cache_mode(&rt, ids);
        return;
    }
    if only_connections {
        println!("endpoint connections: resident memory of `reconcile serve` (default limits)\n");
        for trim in [true, false, true, false] {
            connections(&specs, &rt, trim);
        }
        return;
    }
    println!(
        "endpoint benchmarks ({} cores, {CONNECTIONS} connections, {SECONDS} s per route, load generator on the same cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Cold start: process start to the first successful /predict.
    let mut colds = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let (mut child, addr) = start(&specs);
        let done = rt.block_on(async {
            loop {
                let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
                    continue;
                };
                let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                let r = s
                    .send_request(request(Route::Predict, &addr, "7590-VHVEG"))
                    .await
                    .expect("predict");
                if r.status().is_success() {
                    return t0.elapsed();
                }
            }
        });
        colds.push(done);
        let _ = child.kill();
        let _ = child.wait();
    }
    colds.sort();
    println!(
        "{:<34} median {:>7.1} ms (min {:.1})   target < 200 ms   python stack: 21 s  (ratio {:.0}×)",
        "cold start to first /predict",
        colds[colds.len() / 2].as_secs_f64() * 1000.0,
        colds[0].as_secs_f64() * 1000.0,
        21.0 / colds[colds.len() / 2].as_secs_f64()
    );

    let (mut child, addr) = start(&specs);
    let idle = rss_kb(child.id(), "VmRSS:");
    let rows = [
        (
            Route::Health,
            "/health",
            "-",
            "750 req/s, p99 252 ms",
            750.0,
        ),
        (
            Route::Features,
            "/features/{id}",
            "≥ 30 000 req/s",
            "232 req/s, p99 166 ms",
            232.0,
        ),
        (
            Route::Predict,
            "/predict",
            "≥ 20 000 req/s, p99 < 2 ms",
            "5.6 req/s, p99 3.5 s",
            5.6,
        ),
    ];
    println!("{:<34} {}", "served", rt.block_on(served_model(&addr)));
    // Each id once, on a server that has scored none yet: every request walks
    // the forest. The timed routes below repeat ids, which the endpoint's
    // score memo (serve/memo.rs) answers after their first request.
    let (rps, lat, errors) = rt.block_on(load_once(&addr, ids.clone()));
    println!(
        "{:<34} {rps:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {errors}   ({} ids, each scored)",
        "/predict, each id's first request",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.len()
    );
    let mut health_rps = f64::NAN;
    let mut predict_line = (f64::NAN, f64::NAN);
    for (route, name, target, peer, peer_rps) in rows {
        let (rps, lat, errors) = rt.block_on(load(&addr, route, ids.clone()));
        match route {
            Route::Health => health_rps = rps,
            Route::Predict => predict_line = (rps, pct(&lat, 0.99)),
            Route::Features => {}
        }
        println!(
            "{name:<34} {rps:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {errors}   target {target}   python stack: {peer}  (ratio {:.0}×)",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            rps / peer_rps
        );
    }
    println!(
        "{:<34} {:.3} (/predict {:.0} ÷ /health {:.0}; /predict p99 {:.3} ms)   target ≥ 0.5, p99 < 1 ms",
        "/predict to /health ratio",
        predict_line.0 / health_rps,
        predict_line.0,
        health_rps,
        predict_line.1
    );
    // Latency at an offered rate well under capacity: the closed loop
    // above keeps 16 requests in flight on 2 shared cores, so its p99 is
    // mostly queueing behind the other 15.
    println!();
    for rate in [1_000.0, 5_000.0] {
        for (route, name) in [
            (Route::Health, "/health"),
            (Route::Features, "/features/{id}"),
            (Route::Predict, "/predict"),
        ] {
            let (rps, lat, errors) = rt.block_on(paced(&addr, route, ids.clone(), rate, false));
            println!(
                "{:<34} {rps:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  errors {errors}",
                format!("{name} at {rate:.0}/s"),
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                pct(&lat, 0.999)
            );
        }
    }
    // Each id once on a server that has scored none: every request walks
    // the forest.
    let (mut fresh, fresh_addr) = start(&specs);
    let (rps, lat, errors) = rt.block_on(paced(
        &fresh_addr,
        Route::Predict,
        ids.clone(),
        1_000.0,
        true,
    ));
    println!(
        "{:<34} {rps:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  errors {errors}",
        "/predict at 1000/s, first requests",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 0.999)
    );
    let _ = fresh.kill();
    let _ = fresh.wait();
    let rss = rss_kb(child.id(), "VmRSS:");
    let peak = rss_kb(child.id(), "VmHWM:");
    println!(
        "{:<34} {:.1} MB after load (idle {:.1} MB, peak {:.1} MB)   target < 50 MB   python stack: 482 MB per worker",
        "resident memory",
        rss as f64 / 1024.0,
        idle as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();

    // /predict with the prediction log on and off: same specs but for
    // `logPredictions`, same load, alternating so both see the same machine.
    let training = specs.join("training.yaml");
    let with_log = std::fs::read_to_string(&training).expect("training.yaml");
    let without_log = with_log.replace(
        "runtime: embedded",
        "runtime: embedded\nlogPredictions: false",
    );
    assert_ne!(with_log, without_log, "the endpoint spec changed shape");
    let (mut best_on, mut best_off) = ((0.0f64, Vec::new()), (0.0f64, Vec::new()));
    let (mut written, mut dropped) = (0.0, 0.0);
    for round in 0..4 {
        let logging = round % 2 == 1;
        std::fs::write(&training, if logging { &with_log } else { &without_log })
            .expect("write training.yaml");
        let (mut child, addr) = start(&specs);
        let (rps, lat, errors) = rt.block_on(load(&addr, Route::Predict, ids.clone()));
        assert_eq!(errors, 0, "/predict failed under load");
        if logging {
            // Let the writer catch up before reading its counters.
            std::thread::sleep(Duration::from_millis(500));
            written += rt.block_on(counter(
                &addr,
                "reconcile_endpoint_prediction_log_written_total",
            ));
            dropped += rt.block_on(counter(
                &addr,
                "reconcile_endpoint_prediction_log_dropped_total",
            ));
            if rps > best_on.0 {
                best_on = (rps, lat);
            }
        } else if rps > best_off.0 {
            best_off = (rps, lat);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    std::fs::write(&training, &with_log).expect("restore training.yaml");
    println!();
    for (what, (rps, lat)) in [
        ("/predict, logging off", &best_off),
        ("/predict, logging on", &best_on),
    ] {
        println!(
            "{what:<34} {rps:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms   (best of 2 runs)",
            pct(lat, 0.5),
            pct(lat, 0.99)
        );
    }
    println!(
        "{:<34} {:.3} (on / off)   target ≥ 0.95   logged {written:.0}, dropped {dropped:.0}",
        "logging throughput ratio",
        best_on.0 / best_off.0
    );

    // /predict with request metrics counted and not: the cost of the counters,
    // histograms and class counts on the hot path (alternating, best of 3 each).
    let (mut best_on, mut best_off) = ((0.0f64, Vec::new()), (0.0f64, Vec::new()));
    for round in 0..6 {
        let counting = round % 2 == 1;
        let extra: &[&str] = if counting {
            &[]
        } else {
            &["--without-request-metrics"]
        };
        let (mut child, addr) = start_full(&specs, &[], extra);
        let (rps, lat, errors) = rt.block_on(load(&addr, Route::Predict, ids.clone()));
        assert_eq!(errors, 0, "/predict failed under load");
        let best = if counting {
            &mut best_on
        } else {
            &mut best_off
        };
        if rps > best.0 {
            *best = (rps, lat);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    println!();
    for (what, (rps, lat)) in [
        ("/predict, request metrics off", &best_off),
        ("/predict, request metrics on", &best_on),
    ] {
        println!(
            "{what:<34} {rps:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms   (best of 3 runs)",
            pct(lat, 0.5),
            pct(lat, 0.99)
        );
    }
    println!(
        "{:<34} {:.3} (on / off)   target ≥ 0.97",
        "metrics throughput ratio",
        best_on.0 / best_off.0
    );

    let (mut child, addr) = start(&specs);
    if Command::new("wrk").arg("--version").output().is_ok() {
        println!("\nwrk -t2 -c16 -d5s, for comparison with the peer's tool:");
        let lua = dir.path().join("predict.lua");
        std::fs::write(
            &lua,
            "wrk.method = \"POST\"\nwrk.body = '{\"user_id\":\"7590-VHVEG\"}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
        )
        .expect("lua");
        wrk(&addr, "/health", None);
        wrk(&addr, "/features/7590-VHVEG", None);
        wrk(&addr, "/predict", Some(&lua));
    } else {
        println!("\n(wrk not installed: apt-get install wrk for the peer's own load tool)");
    }
    let _ = child.kill();
    let _ = child.wait();
}
