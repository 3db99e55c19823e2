//! `reconcile probe`: the container health check, run as the real binary
//! against a tiny in-test HTTP server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

async fn server() -> SocketAddr {
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn probe(args: &[&str]) -> Outcome {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .arg("probe")
        .args(args)
        .output()
        .await
        .expect("run reconcile probe");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_endpoint_exits_zero() {
    let addr = server().await;
    let url = format!("http://{addr}/health");
    let out = probe(&[&url]).await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("200 OK"), "stdout: {}", out.stdout);
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn unhealthy_endpoint_exits_one_with_the_status() {
    let addr = server().await;
    let url = format!("http://{addr}/down");
    let out = probe(&[&url]).await;
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr.lines().count(), 1, "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("503 Service Unavailable") && out.stderr.contains(&url),
        "stderr: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_port_exits_one_with_connect_error() {
    // Bind then drop: the port is (very likely) closed for the probe.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("local addr").port()
    };
    let out = probe(&[&format!("http://127.0.0.1:{port}/health")]).await;
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr.lines().count(), 1, "stderr: {}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "stderr: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_server_times_out() {
    // Accepts connections but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let t0 = Instant::now();
    let out = probe(&[&format!("http://{addr}/health"), "--timeout", "300ms"]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("no answer within 300ms"),
        "stderr: {}",
        out.stderr
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn https_is_refused_plainly() {
    let out = probe(&["https://127.0.0.1:1/health"]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("scheme `https` is not supported"),
        "stderr: {}",
        out.stderr
    );
}
