//! Endpoint figures beside their targets and the Python stack (docs/PERFORMANCE.md):
//! requests/s and p50/p99 latency at 16 connections on loopback for /health,
//! /features/{id} and /predict, resident memory under load, and cold start to
//! the first successful prediction; then /predict with the prediction log on and
//! off (the same load, alternating runs, best of each), with the log's
//! written/dropped counters. The load comes from a small hyper client in this
//! process (and from wrk too, when it is installed), on the same cores.
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

/// 16 keep-alive connections, each sending requests back to back for SECONDS.
async fn load(addr: &str, route: Route, ids: Arc<Vec<String>>) -> (f64, Vec<u32>, usize) {
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (addr, ids) = (addr.to_string(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut latencies = Vec::with_capacity(200_000);
            let mut errors = 0usize;
            let mut i = c * 997;
            while Instant::now() < deadline {
                let id = &ids[i % ids.len()];
                i += 1;
                let t0 = Instant::now();
                let response = sender.send_request(request(route, &addr, id)).await;
                match response {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let _ = r.into_body().collect().await;
                        latencies.push(t0.elapsed().as_micros() as u32);
                        if !ok {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    (all.len() as f64 / elapsed, all, errors)
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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let only_connections = std::env::args().any(|a| a == "connections");
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
    for (route, name, target, peer, peer_rps) in rows {
        let (rps, lat, errors) = rt.block_on(load(&addr, route, ids.clone()));
        println!(
            "{name:<34} {rps:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {errors}   target {target}   python stack: {peer}  (ratio {:.0}×)",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            rps / peer_rps
        );
    }
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
        let best = if counting { &mut best_on } else { &mut best_off };
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
