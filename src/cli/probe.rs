//! `reconcile probe URL`: an HTTP GET health check for the endpoint container,
//! whose `FROM scratch` image has no curl or wget. Exit 0 on a 2xx answer, 1
//! otherwise with one line on stderr saying why. Deliberately cheap: no specs,
//! no stores, one connection.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use http_body_util::Empty;
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Arguments of `reconcile probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// URL to GET, e.g. http://127.0.0.1:8080/health (http only).
    url: String,
    /// Give up after this long (connect and response head), e.g. 500ms, 2s.
    #[arg(long, default_value = "2s", value_parser = super::parse_duration)]
    timeout: Duration,
}

/// Runs the probe; the exit code is the verdict.
pub async fn run(args: ProbeArgs) -> ExitCode {
    match tokio::time::timeout(args.timeout, get(&args.url)).await {
        Ok(Ok(status)) if status.is_success() => {
            println!("{} {status}", args.url);
            ExitCode::SUCCESS
        }
        Ok(Ok(status)) => {
            eprintln!("probe failed: {} answered {status}", args.url);
            ExitCode::from(1)
        }
        Ok(Err(reason)) => {
            eprintln!("probe failed: {}: {reason}", args.url);
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!(
                "probe failed: {}: no answer within {}",
                args.url,
                humantime::format_duration(args.timeout)
            );
            ExitCode::from(1)
        }
    }
}

/// One GET over a fresh HTTP/1 connection; the status of the answer.
async fn get(url: &str) -> Result<hyper::StatusCode, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("scheme `{other}` is not supported (use http)")),
        None => return Err("the URL has no scheme (use http://host:port/path)".into()),
    }
    let host = uri.host().ok_or("the URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    // `Uri::host` keeps the brackets of an IPv6 literal; connect wants the bare address.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((bare, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(conn);
    let authority = uri
        .authority()
        .map_or_else(|| host.to_string(), |a| a.to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "reconcile-probe")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("no valid HTTP answer: {e}"))?;
    Ok(response.status())
}
