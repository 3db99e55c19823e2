//! `${VAR}` references in spec values.
//!
//! References stay references everywhere they are stored or hashed (so secrets
//! never land in the state store); they are resolved only at the moment a value is
//! used, e.g. to open a connection. `$${` writes a literal `${`.

use thiserror::Error;

/// A `${VAR}` whose variable is not set.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("environment variable `{name}` is not set")]
pub struct UnsetVar {
    /// The variable's name.
    pub name: String,
    /// Byte offset of the `${` in the value.
    pub offset: usize,
}

/// Names and offsets of every `${VAR}` reference in `s`.
pub fn references(s: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if bytes[i] == b'$'
            && bytes[i + 1] == b'{'
            && let Some(end) = s[i + 2..].find('}')
        {
            out.push((s[i + 2..i + 2 + end].to_string(), i));
            i += end + 3;
            continue;
        }
        i += 1;
    }
    out
}

/// Resolves every reference with `lookup`; fails on the first unset variable.
pub fn interpolate_with(
    s: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, UnsetVar> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut consumed = 0;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$$") {
            out.push('$');
            rest = tail;
            consumed += pos + 2;
        } else if let Some(tail) = after.strip_prefix("${") {
            match tail.find('}') {
                Some(end) => {
                    let name = &tail[..end];
                    let value = lookup(name).ok_or_else(|| UnsetVar {
                        name: name.to_string(),
                        offset: consumed + pos,
                    })?;
                    out.push_str(&value);
                    rest = &after[end + 3..];
                    consumed += pos + end + 3;
                }
                None => {
                    out.push_str(after);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &after[1..];
            consumed += pos + 1;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Resolves references from the process environment.
pub fn interpolate(s: &str) -> Result<String, UnsetVar> {
    interpolate_with(s, |name| std::env::var(name).ok())
}

/// Replaces the password of a URL with `***` so it can be printed or logged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}://{}:***{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "PW").then(|| "s3cret".to_string())
    }

    #[test]
    fn resolves_and_escapes() {
        assert_eq!(
            interpolate_with("postgres://u:${PW}@h/db", lookup).unwrap(),
            "postgres://u:s3cret@h/db"
        );
        assert_eq!(
            interpolate_with("cost $$5 ${PW}", lookup).unwrap(),
            "cost $5 s3cret"
        );
        assert_eq!(interpolate_with("a $b", lookup).unwrap(), "a $b");
    }

    #[test]
    fn reports_unset_with_offset() {
        let err = interpolate_with("x ${PW} ${NOPE}", lookup).unwrap_err();
        assert_eq!(err.name, "NOPE");
        assert_eq!(err.offset, 8);
        assert_eq!(
            references("x ${PW} $${no} ${NOPE}"),
            vec![("PW".into(), 2), ("NOPE".into(), 15)]
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
    }
}
