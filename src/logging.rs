//! Diagnostic logging on stderr through `tracing`: what long-running parts
//! (`serve`'s watcher, the engine) say about themselves, apart from the
//! command's own output on stdout. `RUST_LOG` wins; otherwise `-v`/`-q` pick the
//! level, and `--log-format json` gives one JSON object per event for machines.

use std::error::Error;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log events are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

/// The filter for a verbosity: -1 (quiet) errors only, 0 this crate's info and
/// everyone's warnings, 1 debug, 2 and more trace.
pub fn filter_for(verbosity: i8) -> &'static str {
    match verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn,reconcile=info",
        1 => "warn,reconcile=debug",
        _ => "info,reconcile=trace",
    }
}

/// Standard error with every resolved `${VAR}` value replaced by `***`
/// (`env::redact_secrets`): a log event quoting a driver's or a container's
/// text cannot print a secret. The formatter writes each event whole.
struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let redacted = crate::spec::env::redact_secrets(&text);
        std::io::stderr().write_all(redacted.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Installs the global subscriber once; later calls (tests) change nothing.
pub fn init(verbosity: i8, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter_for(verbosity)));
    let colour = crate::colour::enabled(crate::colour::Stream::Stderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingStderr)
        .with_ansi(colour)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// An error with its chain of causes, each on its own line, skipping a cause
/// whose text the message above already quotes.
pub fn with_causes(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut last = out.clone();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !last.contains(&text) {
            out.push_str(&format!("\n  caused by: {text}"));
        }
        last = text;
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("applying Table/users failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_are_listed_once() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(
            with_causes(&e),
            "applying Table/users failed\n  caused by: disk full"
        );
        let quoted = std::io::Error::other("cannot read a.csv: disk full");
        assert_eq!(with_causes(&quoted), "cannot read a.csv: disk full");
    }

    #[test]
    fn verbosity_picks_the_level() {
        assert_eq!(filter_for(-1), "error");
        assert_eq!(filter_for(0), "warn,reconcile=info");
        assert_eq!(filter_for(3), "info,reconcile=trace");
    }
}
