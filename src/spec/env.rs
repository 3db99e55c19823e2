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
    interpolate_encoded(s, lookup, |_, value| value.to_string())
}

/// The walk behind every interpolation: `encode(offset, value)` turns the
/// value of the reference written at byte `offset` of `s` into the text that
/// replaces it.
fn interpolate_encoded(
    s: &str,
    lookup: impl Fn(&str) -> Option<String>,
    encode: impl Fn(usize, &str) -> String,
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
                    out.push_str(&encode(consumed + pos, &value));
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

/// Resolves references from the process environment. Every value resolved is
/// remembered for [`redact_secrets`]. An unset `VAR` with `VAR_FILE` set reads
/// that file (one trailing newline dropped): how a swarm delivers secrets to
/// a task, and the convention of the official images.
pub fn interpolate(s: &str) -> Result<String, UnsetVar> {
    interpolate_with(s, lookup_env)
}

fn lookup_env(name: &str) -> Option<String> {
    let value = match std::env::var(name) {
        Ok(v) => v,
        Err(_) => {
            let path = std::env::var_os(format!("{name}_FILE"))?;
            let mut v = std::fs::read_to_string(path).ok()?;
            if v.ends_with('\n') {
                v.pop();
            }
            v
        }
    };
    remember(&value);
    Some(value)
}

/// Which part of a URL a byte of its text belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlPart {
    /// Before `://` (or the `:` of `sqlite:path`).
    Scheme,
    /// `user:password` before the last `@` of the authority.
    Userinfo,
    /// Host and port.
    Host,
    /// The path (a database name or file).
    Path,
    /// After `?`.
    Query,
    /// After `#`.
    Fragment,
}

/// The part of the URL `template` that byte `offset` lies in, judged on the
/// template itself (references contain none of `@ / ? #`), so a value can
/// never move a boundary.
fn url_part_at(template: &str, offset: usize) -> UrlPart {
    let find_from = |from: usize, set: &[char]| {
        template[from..]
            .find(|c| set.contains(&c))
            .map_or(template.len(), |i| from + i)
    };
    let (auth_start, has_authority) = match template.find("://") {
        Some(i) => (i + 3, true),
        None => (template.find(':').map_or(0, |i| i + 1), false),
    };
    if offset < auth_start {
        return UrlPart::Scheme;
    }
    let auth_end = if has_authority {
        find_from(auth_start, &['/', '?', '#'])
    } else {
        auth_start
    };
    if offset < auth_end {
        let at = template[auth_start..auth_end]
            .rfind('@')
            .map(|i| auth_start + i);
        return match at {
            Some(at) if offset < at => UrlPart::Userinfo,
            _ => UrlPart::Host,
        };
    }
    let path_end = find_from(auth_end, &['?', '#']);
    if offset < path_end {
        return UrlPart::Path;
    }
    let query_end = find_from(path_end, &['#']);
    if offset < query_end {
        UrlPart::Query
    } else {
        UrlPart::Fragment
    }
}

/// Everything but RFC 3986's unreserved characters: what a value spliced into
/// userinfo, a path segment or a query value must encode to stay data.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// In a host, `:` (port) and `[` `]` (IPv6) keep their meaning; `@ / ? #`
/// and the rest are encoded, which makes a hostile host invalid, not another.
const HOST: &percent_encoding::AsciiSet = &COMPONENT.remove(b':').remove(b'[').remove(b']');

/// Resolves references in a connection URL, percent-encoding each value for
/// the part it lands in (userinfo, host, path, query), so a secret holding
/// `@ / : # ?` stays inside its field and cannot redirect the connection. A URL
/// that is one reference (`${DATABASE_URL}`) is the whole URL and is taken as
/// it is. Every value resolved is remembered for [`redact_secrets`].
pub fn interpolate_url(template: &str) -> Result<String, UnsetVar> {
    interpolate_url_with(template, lookup_env)
}

/// [`interpolate_url`] with another source of values (for tests).
pub fn interpolate_url_with(
    template: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, UnsetVar> {
    let resolved = interpolate_url_parts(template, lookup)?;
    remember_url_credentials(&resolved);
    Ok(resolved)
}

fn interpolate_url_parts(
    template: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, UnsetVar> {
    let refs = references(template);
    if let [(name, 0)] = refs.as_slice()
        && template.len() == name.len() + 3
    {
        return interpolate_with(template, lookup);
    }
    interpolate_encoded(template, lookup, |offset, value| {
        let set = match url_part_at(template, offset) {
            UrlPart::Host => HOST,
            _ => COMPONENT,
        };
        let encoded = percent_encoding::utf8_percent_encode(value, set).to_string();
        remember(&encoded);
        encoded
    })
}

/// Values shorter than this are not redacted from text: a one- or two-letter
/// value would blank out every occurrence of those letters in every message,
/// and is no secret worth the name.
pub const MIN_REDACTED_LEN: usize = 3;

/// Every value a `${VAR}` resolved to in this process (raw and as encoded
/// into a URL), longest first, so [`redact_secrets`] can remove them from any
/// text before it is stored or printed.
static RESOLVED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Remembers a resolved value for [`redact_secrets`].
pub fn remember(value: &str) {
    if value.len() < MIN_REDACTED_LEN {
        return;
    }
    let mut known = RESOLVED.lock().unwrap_or_else(|p| p.into_inner());
    if !known.iter().any(|k| k == value) {
        known.push(value.to_string());
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    }
}

/// `text` with every value a `${VAR}` resolved to in this process replaced by
/// `***`: container logs quoted into an error, a driver's message, an event.
/// Applied wherever text is stored in the state store or printed.
pub fn redact_secrets(text: &str) -> String {
    let known = RESOLVED.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = text.to_string();
    for value in known.iter() {
        if out.contains(value.as_str()) {
            out = out.replace(value.as_str(), "***");
        }
    }
    out
}

/// [`redact_secrets`] over every string of a JSON value.
pub fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            let r = redact_secrets(s);
            if r != *s {
                *s = r;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_json),
        serde_json::Value::Object(o) => o.values_mut().for_each(redact_json),
        _ => {}
    }
}

/// Query parameters that carry a credential, whatever the backend
/// (libpq's `password`, `sslpassword`, `passfile` is a path and stays).
fn is_credential_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passwd", "token", "secret", "apikey", "api_key"]
        .iter()
        .any(|c| k.contains(c))
        || matches!(k.as_str(), "pwd" | "auth" | "key" | "sslkey")
}

/// Remembers, for [`redact_secrets`], every credential a URL carries
/// literally (a password, a Redis token, `?password=`, `?sslpassword=`…), raw
/// and percent-decoded: a driver that logs a parameter it ignores, or quotes
/// one in an error, then prints `***`.
pub fn remember_url_credentials(url: &str) {
    let redacted = redact_url_parts(url);
    // Whatever redaction replaced is a credential: walk both texts together.
    let (a, b) = (url.as_bytes(), redacted.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if b[j..].starts_with(b"***") && !a[i..].starts_with(b"***") {
            let after = &redacted[j + 3..];
            let end = match after.chars().next() {
                Some(c) => url[i..].find(c).map_or(url.len(), |k| i + k),
                None => url.len(),
            };
            let value = &url[i..end];
            remember(value);
            remember(&percent_encoding::percent_decode_str(value).decode_utf8_lossy());
            i = end;
            j += 3;
        } else {
            i += 1;
            j += 1;
        }
    }
}

/// A URL with every credential-bearing part replaced by `***`, so it can be
/// printed, logged or stored: the password of the userinfo (and, for Redis,
/// a bare userinfo, which is its token), and the values of query parameters
/// such as `password`, `sslpassword`, `token`. Then every resolved `${VAR}`
/// value, wherever it landed.
pub fn redact_url(url: &str) -> String {
    redact_secrets(&redact_url_parts(url))
}

/// [`redact_url`] by the URL's structure alone.
fn redact_url_parts(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let (auth_start, redis) = match url.find("://") {
        Some(i) => (i + 3, url[..i].starts_with("redis")),
        None => (0, false),
    };
    let auth_end = if auth_start > 0 {
        url[auth_start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| auth_start + i)
    } else {
        0
    };
    out.push_str(&url[..auth_start]);
    let authority = &url[auth_start..auth_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None if redis && !userinfo.is_empty() => out.push_str("***"),
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let rest = &url[auth_end..];
    let (before_fragment, fragment) = rest.split_at(rest.find('#').unwrap_or(rest.len()));
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_credential_key(k) => format!("{k}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
        None => out.push_str(before_fragment),
    }
    out.push_str(fragment);
    out
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

    fn hostile(name: &str) -> Option<String> {
        match name {
            "PW" => Some("p@evil.example:1/other?host=evil#x".to_string()),
            "DB" => Some("db/../x?sslmode=disable".to_string()),
            "URL" => Some("postgres://u@127.0.0.1/d".to_string()),
            _ => None,
        }
    }

    #[test]
    fn url_values_are_encoded_for_their_part() {
        let url = interpolate_url_with("postgres://u:${PW}@127.0.0.1:5432/app", hostile).unwrap();
        assert_eq!(
            url,
            "postgres://u:p%40evil.example%3A1%2Fother%3Fhost%3Devil%23x@127.0.0.1:5432/app"
        );
        let db = interpolate_url_with("postgres://u@127.0.0.1/${DB}?x=${PW}", hostile).unwrap();
        assert_eq!(
            db,
            "postgres://u@127.0.0.1/db%2F..%2Fx%3Fsslmode%3Ddisable?x=p%40evil.example%3A1%2Fother%3Fhost%3Devil%23x"
        );
        // A URL that is one reference is a whole URL.
        assert_eq!(
            interpolate_url_with("${URL}", hostile).unwrap(),
            "postgres://u@127.0.0.1/d"
        );
        assert_eq!(url_part_at("sqlite:${X}", 7), UrlPart::Path);
        assert_eq!(url_part_at("redis://${X}@h", 8), UrlPart::Userinfo);
        assert_eq!(url_part_at("redis://h:${X}/0", 10), UrlPart::Host);
    }

    #[test]
    fn redacts_every_credential_form() {
        for (url, want) in [
            (
                "postgres://u@h/d?password=hunter22",
                "postgres://u@h/d?password=***",
            ),
            (
                "postgres://u@h/d?sslmode=require&sslpassword=hunter22",
                "postgres://u@h/d?sslmode=require&sslpassword=***",
            ),
            ("redis://:hunter22@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://hunter22@h:6379/0", "redis://***@h:6379/0"),
            (
                "rediss://default:hunter22@h/0?prefix=p",
                "rediss://default:***@h/0?prefix=p",
            ),
            (
                "redis://h/0?token=hunter22&prefix=p",
                "redis://h/0?token=***&prefix=p",
            ),
            ("postgres://u:p%40w@h/d#frag", "postgres://u:***@h/d#frag"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn literal_url_credentials_are_remembered() {
        remember_url_credentials("postgres://u@h/d?sslmode=x&sslpassword=lit%2Fsecret-77&a=b");
        remember_url_credentials("redis://tok-literal-88@h:6379/0");
        assert_eq!(
            redact_secrets("ignoring key=sslpassword value=lit/secret-77, tok-literal-88"),
            "ignoring key=sslpassword value=***, ***"
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
