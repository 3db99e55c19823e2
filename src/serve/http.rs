//! The HTTP/1.1 server under an endpoint's router: our own accept loop rather
//! than `axum::serve`, because that one has no bound on connections and no
//! timeouts — slow or idle clients could hold file handles until the process
//! ran out of them and `/health` stopped answering.
//!
//! - at most [`Limits::max_connections`] connections are served at once; one
//!   more gets an immediate `503` with `connection: close` (at most
//!   [`SHEDDERS`] such answers in flight, beyond that the socket is closed at
//!   once) and counts in `reconcile_endpoint_connections_rejected_total`;
//! - a connection must deliver a whole request head within
//!   [`Limits::header_timeout`] of its first byte, and is closed after
//!   [`Limits::idle_timeout`] without a byte moving while no request is being
//!   handled (idle keep-alive, a client that stopped reading its response);
//!   both count in `reconcile_endpoint_connections_timed_out_total{reason}`.
//!   Requests being handled are bounded by the router's `REQUEST_TIMEOUT`;
//! - on stop the listener closes (new connections are refused), idle
//!   connections close, in-flight requests finish, for at most
//!   [`DRAIN_TIMEOUT`]; what is left then is closed;
//! - after many connections closed, the allocator is asked to return freed
//!   memory to the system (glibc keeps it in its arenas otherwise: RSS stayed
//!   at its flood peak long after the clients left).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::metrics::{Metrics, TimeoutLabels, TimeoutReason};

/// Most `503` answers to shed connections being written at once; past it an
/// excess connection is closed without an answer (writing one must not cost
/// more than the flood it answers).
pub const SHEDDERS: usize = 64;
/// Longest a shed connection is kept to deliver its `503`.
const SHED_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest a stop waits for in-flight requests (longer than a request may take).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Closed connections between two returns of freed memory to the system.
const TRIM_EVERY: usize = 256;
/// Shortest time between two returns of freed memory (each walks the arenas).
const TRIM_GAP: Duration = Duration::from_secs(1);

/// Connection bounds of an endpoint's server (`reconcile serve --max-connections
/// --header-timeout --idle-timeout`): what a hostile or broken client may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are shed with a `503`.
    pub max_connections: usize,
    /// Longest from a request's first byte to its complete head.
    pub header_timeout: Duration,
    /// Longest a connection may stay without a byte moving while no request is handled.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// The limits as the process can honour them: `max_connections` at most the
    /// file-handle limit less a reserve for stores, logs and shed sockets.
    pub fn clamped(self) -> Limits {
        let reserve = 128 + SHEDDERS as u64;
        let fit = nofile_limit().map_or(u64::MAX, |n| n.saturating_sub(reserve).max(1));
        let max = (self.max_connections as u64).min(fit).max(1);
        if max < self.max_connections as u64 {
            tracing::warn!(
                "max connections lowered from {} to {max}: the process may open {} files",
                self.max_connections,
                fit + reserve
            );
        }
        Limits {
            max_connections: usize::try_from(max)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS)
                .min(u32::MAX as usize),
            ..self
        }
    }
}

#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
fn nofile_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    (rc == 0 && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur as u64)
}

#[cfg(not(unix))]
fn nofile_limit() -> Option<u64> {
    None
}

/// Returns freed heap memory to the system (glibc keeps it in per-thread arenas).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

const NONE: u64 = u64::MAX;

/// What one connection's watchdog knows: when bytes last moved, when the head
/// being read began, whether a request is being handled.
struct ConnState {
    born: Instant,
    last_io_ms: AtomicU64,
    head_started_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            born: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NONE),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn read(&self) {
        let now = self.now_ms();
        self.last_io_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_started_ms.compare_exchange(
                NONE,
                now,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    fn wrote(&self) {
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Why the connection must close now, or when to look again.
    fn check(&self, limits: &Limits) -> Result<Duration, TimeoutReason> {
        let now = self.now_ms();
        let idle = limits.idle_timeout.as_millis() as u64;
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Ok(limits.idle_timeout);
        }
        let head = self.head_started_ms.load(Ordering::Acquire);
        let mut next = self.last_io_ms.load(Ordering::Relaxed).saturating_add(idle);
        if head != NONE {
            let head_deadline = head.saturating_add(limits.header_timeout.as_millis() as u64);
            if now >= head_deadline {
                return Err(TimeoutReason::header);
            }
            next = next.min(head_deadline);
        }
        if now >= next {
            return Err(TimeoutReason::idle);
        }
        Ok(Duration::from_millis(next - now))
    }
}

/// Marks a request as being handled while it lives.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn begin(state: &Arc<ConnState>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.head_started_ms.store(NONE, Ordering::Release);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.wrote();
    }
}

/// A socket that tells its connection's watchdog when bytes move.
struct Tracked {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.read();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` within `limits` until `stop` is cancelled,
/// then drains (see the module doc).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    serving: Arc<super::Serving>,
    stop: CancellationToken,
) {
    let limits = limits.clamped();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let shedders = Arc::new(Semaphore::new(SHEDDERS));
    let kill = CancellationToken::new();
    let closed = Arc::new(AtomicUsize::new(0));
    // RECONCILE_NO_HEAP_TRIM=1 turns the trimming off, to measure what it buys
    // (benches/serve_bench.rs connections).
    if std::env::var_os("RECONCILE_NO_HEAP_TRIM").is_none() {
        tokio::spawn(trimmer(closed.clone(), stop.clone()));
    }
    let shed = Arc::new(shed_response(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file handles (or a connection reset before accept):
                // wait a little rather than spin, and keep serving.
                tracing::warn!("{}: accept failed: {e}", serving.name);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = &serving.metrics;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connections_rejected.inc();
            if let Ok(p) = shedders.clone().try_acquire_owned() {
                let shed = shed.clone();
                tokio::spawn(async move {
                    shed_connection(stream, &shed).await;
                    drop(p);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        metrics.connections_accepted.inc();
        metrics.connections_open.inc();
        let (router, serving, stop, kill, closed) = (
            router.clone(),
            serving.clone(),
            stop.clone(),
            kill.clone(),
            closed.clone(),
        );
        tokio::spawn(async move {
            connection(stream, router, &limits, &serving.metrics, stop, kill).await;
            serving.metrics.connections_open.dec();
            drop(permit);
            closed.fetch_add(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, permits.acquire_many(all)).await;
    if drained.is_err() {
        let open = limits.max_connections - permits.available_permits();
        tracing::warn!(
            "{}: {open} connection(s) still busy {DRAIN_TIMEOUT:?} after stop: closed",
            serving.name
        );
        kill.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), permits.acquire_many(all)).await;
    }
    trim_heap();
}

/// Every [`TRIM_GAP`]: when at least [`TRIM_EVERY`] connections closed since
/// the last time, returns freed memory to the system (off the async workers).
async fn trimmer(closed: Arc<AtomicUsize>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TRIM_GAP);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if closed.load(Ordering::Relaxed) >= TRIM_EVERY {
                    closed.store(0, Ordering::Relaxed);
                    let _ = tokio::task::spawn_blocking(trim_heap).await;
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// One connection: HTTP/1.1 with keep-alive, watched for the timeouts, drained on stop.
async fn connection(
    stream: TcpStream,
    router: axum::Router,
    limits: &Limits,
    metrics: &Metrics,
    stop: CancellationToken,
    kill: CancellationToken,
) {
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        state: state.clone(),
    });
    let inner = TowerToHyperService::new(router);
    let service = {
        let state = state.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let guard = InFlight::begin(&state);
            let response = hyper::service::Service::call(&inner, req);
            async move {
                let r = response.await;
                drop(guard);
                r
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    let mut wait = limits.header_timeout.min(limits.idle_timeout);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            () = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = kill.cancelled() => return,
            () = tokio::time::sleep(wait) => match state.check(limits) {
                Ok(next) => wait = next,
                Err(reason) => {
                    metrics.connections_timed_out.get_or_create(&TimeoutLabels { reason }).inc();
                    return;
                }
            },
        }
    }
}

/// The answer to a connection over the limit.
fn shed_response(max: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "error": format!("too many connections: this endpoint serves at most {max} at once; retry later")
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Writes the `503`, then reads (and drops) what the client sends until it
/// closes, so closing does not reset the connection before the answer is read;
/// all within [`SHED_TIMEOUT`].
async fn shed_connection(mut stream: TcpStream, response: &[u8]) {
    let deliver = async {
        stream.write_all(response).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    };
    let _ = tokio::time::timeout(SHED_TIMEOUT, deliver).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aged(ms: u64) -> ConnState {
        let mut s = ConnState::new();
        s.born = Instant::now() - Duration::from_millis(ms);
        s
    }

    fn limits(header_ms: u64, idle_ms: u64) -> Limits {
        Limits {
            max_connections: 1,
            header_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
        }
    }

    #[test]
    fn idle_without_a_request_expires_and_a_request_in_flight_never_does() {
        let s = aged(1_000);
        assert_eq!(s.check(&limits(5_000, 500)), Err(TimeoutReason::idle));
        s.in_flight.store(1, Ordering::Release);
        assert!(s.check(&limits(5_000, 500)).is_ok());
        s.in_flight.store(0, Ordering::Release);
        s.wrote();
        let next = s.check(&limits(5_000, 500)).expect("fresh");
        assert!(next <= Duration::from_millis(500), "{next:?}");
    }

    #[test]
    fn a_head_started_too_long_ago_expires_even_while_bytes_trickle() {
        let s = aged(1_000);
        s.head_started_ms.store(100, Ordering::Release);
        s.read(); // a byte just arrived: not idle
        assert_eq!(s.check(&limits(500, 5_000)), Err(TimeoutReason::header));
        // A first byte starts the head clock; a complete head (the request begins) clears it.
        let t = aged(1_000);
        t.read();
        assert!(t.check(&limits(500, 5_000)).is_ok());
        let g = InFlight::begin(&Arc::new(t));
        assert_eq!(g.0.head_started_ms.load(Ordering::Acquire), NONE);
    }

    #[test]
    fn limits_never_exceed_the_file_limit() {
        let l = Limits {
            max_connections: usize::MAX,
            ..Limits::default()
        }
        .clamped();
        if let Some(n) = nofile_limit() {
            assert!((l.max_connections as u64) < n, "{l:?} for {n} files");
        }
        assert!(l.max_connections >= 1);
    }
}
