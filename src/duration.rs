//! The one duration grammar of the command line and the specs: humantime's
//! (`500ms`, `30s`, `1m30s`, `2h`, `7d`, `1d 12h`). Every flag and every spec
//! field that takes a duration goes through [`parse`], so `--lock-timeout 1m30s`
//! and a spec's `interval: 1m30s` accept the same words.

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a duration like 500ms, 30s, 1m30s, 2h or 7d")]
pub struct DurationError {
    /// The text as given.
    pub text: String,
    /// What humantime found wrong with it.
    #[source]
    pub source: humantime::DurationError,
}

/// Parses a duration in humantime's grammar (surrounding blanks ignored).
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(s.trim()).map_err(|source| DurationError {
        text: s.to_string(),
        source,
    })
}

/// As [`parse`], as a `chrono::Duration` that is longer than zero (a TTL, a
/// window): `None` when the text is no duration, is zero or does not fit.
pub fn parse_positive_chrono(s: &str) -> Option<chrono::Duration> {
    let d = parse(s).ok().filter(|d| !d.is_zero())?;
    chrono::Duration::from_std(d).ok()
}

/// A clap value parser: [`parse`], with the error (and its cause) as text.
pub fn parse_flag(s: &str) -> Result<Duration, String> {
    parse(s).map_err(|e| format!("{e}: {}", e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_grammar() {
        assert_eq!(parse("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse("1m30s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse(" 250ms ").ok(), Some(Duration::from_millis(250)));
        assert_eq!(parse("7d").ok(), Some(Duration::from_secs(7 * 86_400)));
        assert!(parse("5x").is_err());
        assert!(parse("soon").is_err());
        assert_eq!(
            parse_positive_chrono("45d"),
            Some(chrono::Duration::days(45))
        );
        assert_eq!(parse_positive_chrono("0s"), None);
    }
}
