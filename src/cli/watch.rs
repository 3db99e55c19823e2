//! `reconcile watch` and `reconcile up`: the controller as a long-running
//! process (see `controller::watch`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{EndpointFlags, StoreArgs, parse_duration};
use crate::controller::ControllerOptions;
use crate::controller::watch::{self, WatchOptions};
use crate::progress::Progress;

/// Flags of `watch` and `up`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    stores: StoreArgs,
    /// Apply again this often even when no file changed, healing drift nobody
    /// signalled (a removed container, a stage changed by hand); `off` to disable.
    #[arg(long, default_value = "5m", value_parser = parse_resync)]
    resync: Resync,
    /// Also run the specs' endpoints in this process (`reconcile up` does).
    #[arg(long)]
    serve: bool,
    /// Address of the controller's /metrics and /health; `off` for none.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: String,
    /// Resources applied at once (default: number of cores).
    #[arg(long)]
    parallelism: Option<usize>,
    /// With --serve: which endpoints, and where.
    #[command(flatten)]
    endpoints: EndpointFlags,
    /// Quiet time that ends a burst of file events.
    #[arg(long, default_value = "100ms", value_parser = parse_duration, hide = true)]
    debounce: Duration,
}

/// A resync period, or none.
#[derive(Debug, Clone, Copy)]
struct Resync(Option<Duration>);

fn parse_resync(s: &str) -> Result<Resync, String> {
    if s == "off" {
        return Ok(Resync(None));
    }
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("a resync of 0 would apply without pause; write `off` to disable it".into());
    }
    Ok(Resync(Some(d)))
}

/// Runs `watch` (`serve`: also the endpoints, as `up`) until SIGINT/SIGTERM.
pub async fn run(args: WatchArgs, serve: bool, quiet: bool) -> ExitCode {
    let parallelism = args
        .parallelism
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let opts = WatchOptions {
        dir: args.stores.spec.path(),
        controller: ControllerOptions {
            overrides: args.stores.overrides(),
            parallelism,
        },
        resync: args.resync.0,
        debounce: args.debounce,
        serve: (serve || args.serve).then(|| crate::serve::ServeOptions {
            endpoint: args.endpoints.endpoint.clone(),
            port: args.endpoints.port,
            host: args.endpoints.host.clone(),
            ..Default::default()
        }),
        listen: (args.listen != "off").then(|| args.listen.clone()),
    };
    let stop = crate::shutdown::on_signals();
    let progress = Arc::new(Progress::long_running(quiet));
    match watch::run(opts, stop, progress).await {
        Ok(()) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", crate::logging::with_causes(&e));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_off_or_a_duration() {
        assert!(parse_resync("off").expect("off").0.is_none());
        assert_eq!(
            parse_resync("2s").expect("2s").0,
            Some(Duration::from_secs(2))
        );
        assert!(parse_resync("0s").is_err());
    }
}
