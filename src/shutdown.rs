//! The stop signal of a process: one token shared by everything that must stop
//! in order when SIGINT or SIGTERM arrives — the engine (no new work, running
//! work rolled back), the endpoints (stop accepting, finish in-flight requests)
//! and the watch loop. One token rather than each part listening to signals
//! itself, so a single SIGTERM stops them all, and tests stop them without
//! sending signals.

pub use tokio_util::sync::CancellationToken as Stop;

/// A token cancelled when the process receives SIGINT or SIGTERM.
pub fn on_signals() -> Stop {
    let stop = Stop::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        signal().await;
        cancel.cancel();
    });
    stop
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
