//! The controller's own HTTP listener: `/metrics` for Prometheus and
//! `/health` for a supervisor. Separate from the endpoints' listeners, so the
//! controller is observable whether or not it also serves, and scraping it
//! never competes with prediction traffic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::ControllerMetrics;
use crate::shutdown::Stop;

/// Longest a request to the controller's listener may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is not `IP:PORT`.
    #[error("`{0}` is not an address like 127.0.0.1:9464")]
    Address(String),
    /// Binding failed (the port is taken, say).
    #[error("cannot listen on {addr}: {source} (choose another with --listen, or --listen off)")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
}

/// Binds `addr` and serves until `stop`; returns the bound address.
pub async fn start(
    addr: &str,
    metrics: Arc<ControllerMetrics>,
    stop: Stop,
) -> Result<SocketAddr, ServerError> {
    start_with_ui(addr, metrics, None, stop).await
}

/// [`start`], with the web UI at `/ui` when given (`watch`, `up`).
pub async fn start_with_ui(
    addr: &str,
    metrics: Arc<ControllerMetrics>,
    ui: Option<Arc<crate::ui::Ui>>,
    stop: Stop,
) -> Result<SocketAddr, ServerError> {
    let parsed: SocketAddr = addr
        .parse()
        .map_err(|_| ServerError::Address(addr.to_string()))?;
    let listener = tokio::net::TcpListener::bind(parsed)
        .await
        .map_err(|source| ServerError::Bind {
            addr: parsed,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(parsed);
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health", get(|| async { "ok\n" }))
        .merge(crate::ui::router(ui))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(metrics);
    tokio::spawn(async move {
        let shutdown = async move { stop.cancelled().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("controller listener stopped: {e}");
        }
    });
    Ok(bound)
}

async fn metrics_text(State(metrics): State<Arc<ControllerMetrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.encode(),
    )
}
