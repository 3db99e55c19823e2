//! Hostile HTTP clients against a real `reconcile serve` on loopback: slow and
//! idle clients (bounded in count and time), connection floods, client-chosen
//! text in metric labels, and a Production version archived by hand. Every
//! limit is shrunk with the hidden serve flags so the tier runs in seconds.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::server::{Server, serve};
use common::{Project, text};
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

async fn metrics(c: &reqwest::Client, s: &Server) -> String {
    c.get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of one sample line (`name{labels}` exactly) in an exposition.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Waits until the server closes `conn` (read returns 0 or an error), at most
/// `within`; returns how long it took, or `None` when it stayed open.
fn closed_within(conn: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < within {
        conn.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        match conn.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// A small deterministic generator: client-chosen text without a rand crate.
struct Noise(u64);

impl Noise {
    fn token(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                char::from(b'A' + (self.0 % 26) as u8)
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_at_the_header_timeout() {
    let p = Project::example();
    let s = serve(&p, &["--header-timeout", "600ms", "--idle-timeout", "10s"]);
    // A slowloris: one header line every 150 ms, never the blank line.
    let mut conn = TcpStream::connect(s.addr()).expect("connect");
    conn.write_all(b"GET /health HTTP/1.1\r\n").expect("start");
    let started = Instant::now();
    let mut cut = None;
    for i in 0..40 {
        if write!(conn, "x-slow-{i}: 1\r\n").is_err() {
            cut = Some(started.elapsed());
            break;
        }
        if let Some(_after) = closed_within(&mut conn, Duration::from_millis(150)) {
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("a client trickling headers for 6 s was never cut off");
    assert!(
        cut < Duration::from_secs(3),
        "cut after {cut:?}, header timeout 600 ms"
    );
    let c = client();
    let m = metrics(&c, &s).await;
    assert!(
        sample(
            &m,
            r#"reconcile_endpoint_connections_timed_out_total{reason="header"}"#
        ) >= 1.0,
        "{m}"
    );
    // The server still answers.
    let r = c.get(s.url("/health")).send().await.expect("health");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_at_the_idle_timeout() {
    let p = Project::example();
    let s = serve(&p, &["--idle-timeout", "700ms", "--header-timeout", "10s"]);
    // Silent sockets that never send a byte...
    let mut silent: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(s.addr()).expect("connect"))
        .collect();
    // ...and a keep-alive connection idling after one answered request.
    let mut kept = TcpStream::connect(s.addr()).expect("connect");
    write!(kept, "GET /health HTTP/1.1\r\nhost: {}\r\n\r\n", s.addr()).expect("request");
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).expect("response");
    assert_eq!(&head, b"HTTP/1.1 200");
    for (i, conn) in silent
        .iter_mut()
        .chain(std::iter::once(&mut kept))
        .enumerate()
    {
        let took = closed_within(conn, Duration::from_secs(4));
        assert!(
            took.is_some(),
            "connection {i} still open 4 s past a 700 ms idle timeout"
        );
    }
    let c = client();
    // The server counts a connection closed just after its socket is shut,
    // so the client may see the close first: read the gauges until they
    // settle (a leak never does).
    let deadline = Instant::now() + Duration::from_secs(3);
    let m = loop {
        let m = metrics(&c, &s).await;
        if sample(&m, "reconcile_endpoint_connections_open") == 1.0 || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        sample(
            &m,
            r#"reconcile_endpoint_connections_timed_out_total{reason="idle"}"#
        ) >= 41.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "reconcile_endpoint_connections_open"),
        1.0,
        "only the scrape's own connection should be open\n{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_flood_is_shed_bounded_and_health_recovers() {
    let p = Project::example();
    let max = 16;
    let s = serve(&p, &["--max-connections", "16", "--idle-timeout", "3s"]);
    let c = client();
    assert_eq!(
        c.get(s.url("/health"))
            .send()
            .await
            .expect("health")
            .status()
            .as_u16(),
        200
    );
    let baseline = s.open_files();
    // Idle sockets, ten times the limit (bounded: 160 on loopback).
    let flood: Vec<TcpStream> = (0..max * 10)
        .filter_map(|_| TcpStream::connect(s.addr()).ok())
        .collect();
    // Past the time a shed socket is kept to deliver its 503 (1 s).
    std::thread::sleep(Duration::from_millis(1200));
    if let (Some(before), Some(during)) = (baseline, s.open_files()) {
        // The served connections, shed sockets being answered, slack for the store.
        let bound = before + max + 64 + 8;
        assert!(
            during <= bound,
            "{during} files open under a flood of {} sockets (bound {bound}; {before} before)",
            flood.len()
        );
    }
    // A new client is answered at once with a 503 and a JSON error, not left hanging.
    let mut conn = TcpStream::connect(s.addr()).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    write!(conn, "GET /health HTTP/1.1\r\nhost: {}\r\n\r\n", s.addr()).expect("request");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("too many connections"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let err: Value = serde_json::from_str(body).expect("JSON error body");
    assert!(err["error"].is_string());
    // The idle timeout frees the slots: /health answers again without the flood leaving.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let ok = c
            .get(s.url("/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/health not answering 6 s into a flood of idle sockets"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = metrics(&c, &s).await;
    assert!(
        sample(&m, "reconcile_endpoint_connections_rejected_total") >= 1.0,
        "{m}"
    );
    drop(flood);
}

#[tokio::test(flavor = "multi_thread")]
async fn metric_labels_stay_in_fixed_sets_whatever_clients_send() {
    let p = Project::example();
    let s = serve(&p, &[]);
    let c = client();
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut sent = Vec::new();
    for _ in 0..150 {
        // Random methods, on a known route and on unknown ones.
        let method = noise.token(8);
        let (dir, leaf, page) = (noise.token(6), noise.token(10), noise.token(12));
        let (subtype, header, value, id) = (
            noise.token(9),
            format!("x-{}", noise.token(7).to_lowercase()),
            noise.token(5),
            noise.token(11),
        );
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let _ = c.request(m.clone(), s.url("/predict")).send().await;
        let _ = c.request(m, s.url(&format!("/{dir}/{leaf}"))).send().await;
        // Random paths with a standard method, and random content types and headers.
        let _ = c.get(s.url(&format!("/{page}"))).send().await;
        let _ = c
            .post(s.url("/predict"))
            .header("content-type", format!("application/{subtype}"))
            .header(header.as_str(), &value)
            .body(r#"{"user_id": "7590-VHVEG"}"#)
            .send()
            .await;
        // Random entity ids go to the path of a known route.
        let _ = c.get(s.url(&format!("/features/{id}"))).send().await;
        sent.extend([method, dir, leaf, page, subtype, header, value, id]);
    }
    let m = metrics(&c, &s).await;
    for token in &sent {
        assert!(
            !m.contains(token.as_str()),
            "client-chosen `{token}` became part of /metrics"
        );
    }
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
    ];
    let routes = [
        "/health",
        "/ready",
        "/features/{entity_id}",
        "/predict",
        "/predict/batch",
        "/models",
        "/metrics",
        "/openapi.json",
        "unmatched",
    ];
    let series: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("reconcile_endpoint_requests_total{"))
        .collect();
    assert!(!series.is_empty(), "{m}");
    for line in &series {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_default()
                .to_string()
        };
        assert!(methods.contains(&label("method").as_str()), "{line}");
        assert!(routes.contains(&label("route").as_str()), "{line}");
    }
    assert!(
        series.len() <= 20,
        "{} request series after 750 hostile requests:\n{}",
        series.len(),
        series.join("\n")
    );
    assert!(
        m.contains(r#"reconcile_endpoint_requests_total{route="unmatched",method="other""#),
        "{m}"
    );
    assert!(m.len() < 64 * 1024, "/metrics is {} bytes", m.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn archived_production_is_not_served_and_not_ready() {
    let p = Project::example();
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = serve(&p, &[]);
    let c = client();
    let r = c.get(s.url("/ready")).send().await.expect("ready");
    assert_eq!(r.status().as_u16(), 200);
    let models: Value = c
        .get(s.url("/models"))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    let version = models["version"].as_i64().expect("version");
    let target = format!("streamflow_churn:{version}");

    let out = p.run_without_specs(&["models", "stage", &target, "Archived"]);
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = c.get(s.url("/ready")).send().await.expect("ready");
        if r.status().as_u16() == 503 {
            let err: Value = r.json().await.expect("json");
            assert!(
                err["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("no Production version")),
                "{err}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/ready still true 3 s after Production was archived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c
        .post(s.url("/predict"))
        .header("content-type", "application/json")
        .body(r#"{"user_id": "7590-VHVEG"}"#)
        .send()
        .await
        .expect("predict");
    assert_eq!(r.status().as_u16(), 503);
    let err: Value = r.json().await.expect("json error");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("no Production version")),
        "{err}"
    );
    let m = metrics(&c, &s).await;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("reconcile_endpoint_model_info{") && l.ends_with(" 1")),
        "an archived version still shows as served:\n{m}"
    );

    // Promoted again by hand: served again, without a restart.
    let out = p.run_without_specs(&["models", "stage", &target, "Production"]);
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = c.get(s.url("/ready")).send().await.expect("ready");
        if r.status().as_u16() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready 3 s after a version was promoted again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A path parameter that is not UTF-8 once decoded is a JSON 400 like every
/// other bad request, on each route that takes one (axum's own rejection is
/// plain text).
#[tokio::test(flavor = "multi_thread")]
async fn undecodable_path_parameters_are_json_400s() {
    let p = Project::example();
    let s = serve(&p, &[]);
    let c = client();
    for path in [
        "/features/%ff%fe",
        "/features/ok%c3",
        "/v2/models/%ff",
        "/v2/models/%ff/ready",
    ] {
        let r = c.get(s.url(path)).send().await.expect("request");
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("UTF-8"), "{path}: {body}");
    }
    let r = c
        .post(s.url("/v2/models/%ff/infer"))
        .header("content-type", "application/json")
        .body(r#"{"inputs": []}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("JSON error");
    assert!(body["error"].is_string(), "{body}");
}
