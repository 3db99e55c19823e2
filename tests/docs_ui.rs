//! The interactive API docs at `/docs` of a running `reconcile serve` on the
//! example, over real HTTP on loopback: the page, its Content-Security-Policy
//! and its vendored assets as a client receives them, the route labels they are
//! counted under, and Swagger UI rendered by headless Chromium from those files
//! alone, with every connection the browser makes going to 127.0.0.1.
//!
//! Without Chromium on `PATH` the browser test is skipped with a notice, unless
//! `CI=true`, where a missing browser fails it.

#[path = "common/chromium.rs"]
mod chromium;
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Project;
use common::server::serve;
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn vendored(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/swagger-ui")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Every `src="…"` and `href="…"` of a page.
fn references(html: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"(?:src|href)\s*=\s*"([^"]*)""#).expect("regex");
    re.captures_iter(html).map(|c| c[1].to_string()).collect()
}

/// `(method, path)` of every operation of an OpenAPI document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            methods
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_string(), path.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_vendored_assets_over_http() {
    let p = Project::example();
    let s = serve(&p, &[]);
    let c = client();
    let url = |path: &str| format!("{}{path}", s.base);

    let r = c.get(url("/docs")).send().await.expect("GET /docs");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(header(&r, "cache-control"), "no-cache");
    let page_etag = header(&r, "etag");
    assert!(page_etag.starts_with('"'), "ETag {page_etag:?}");
    let csp = header(&r, "content-security-policy");
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    assert!(directives.contains(&"default-src 'self'"), "{csp}");
    assert!(directives.contains(&"img-src 'self' data:"), "{csp}");
    assert!(directives.contains(&"frame-ancestors 'none'"), "{csp}");
    for banned in [
        "http",
        "*",
        "unsafe",
        "script-src",
        "style-src",
        "connect-src",
    ] {
        assert!(!csp.contains(banned), "`{banned}` in the policy: {csp}");
    }
    let html = r.text().await.expect("page");

    // Only same-origin paths (and the empty data: icon); no inline script.
    let refs = references(&html);
    let mut assets = Vec::new();
    for r in &refs {
        if r == "data:," {
            continue;
        }
        assert!(
            r.starts_with("/docs/") && !r.starts_with("//") && !r.contains(':'),
            "not a same-origin path: {r}"
        );
        assets.push(r.clone());
    }
    let script_tags = html.matches("<script").count();
    assert_eq!(
        script_tags,
        html.matches("<script src=\"/docs/").count(),
        "inline script in\n{html}"
    );
    assert!(!html.contains("style="), "inline style in\n{html}");
    let paths: BTreeSet<&str> = assets
        .iter()
        .map(|a| a.split('?').next().unwrap_or(a))
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "/docs/swagger-init.js",
            "/docs/swagger-ui-bundle.js",
            "/docs/swagger-ui.css"
        ]),
        "{html}"
    );

    // Each asset: its content type, the vendored bytes, a long cache life, a
    // content-hash ETag that the URL's `?v=` repeats, and 304 when current.
    for asset in &assets {
        let r = c.get(url(asset)).send().await.expect("asset");
        assert_eq!(r.status().as_u16(), 200, "{asset}");
        let (path, version) = asset.split_once("?v=").expect("versioned URL");
        let want_type = if path.ends_with(".css") {
            "text/css; charset=utf-8"
        } else {
            "text/javascript; charset=utf-8"
        };
        assert_eq!(header(&r, "content-type"), want_type, "{asset}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert_eq!(
            header(&r, "cache-control"),
            "public, max-age=31536000, immutable",
            "{asset}"
        );
        let etag = header(&r, "etag");
        assert_eq!(etag, format!("\"{version}\""), "{asset}");
        let body = r.bytes().await.expect("body");
        match path {
            "/docs/swagger-ui-bundle.js" => {
                assert!(body[..] == vendored("swagger-ui-bundle.js")[..], "{asset}")
            }
            "/docs/swagger-ui.css" => {
                assert!(body[..] == vendored("swagger-ui.css")[..], "{asset}")
            }
            _ => {
                let js = String::from_utf8(body.to_vec()).expect("utf-8");
                assert!(js.contains("SwaggerUIBundle("), "{js}");
                assert!(js.contains(r#"url: "/openapi.json""#), "{js}");
                assert!(js.contains("validatorUrl: null"), "{js}");
            }
        }
        let r = c
            .get(url(asset))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("conditional");
        assert_eq!(r.status().as_u16(), 304, "{asset}");
        assert!(r.bytes().await.expect("body").is_empty());
    }
    let r = c
        .get(url("/docs"))
        .header("if-none-match", &page_etag)
        .send()
        .await
        .expect("conditional page");
    assert_eq!(r.status().as_u16(), 304);
    let r = c.head(url("/docs")).send().await.expect("HEAD /docs");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");

    // Anything else under /docs is an ordinary JSON 404.
    for other in [
        "/docs/",
        "/docs/index.html",
        "/docs/swagger-ui-bundle.js.map",
    ] {
        let r = c.get(url(other)).send().await.expect("other");
        assert_eq!(r.status().as_u16(), 404, "{other}");
    }

    // Counted under the route patterns; the paths clients invent are `unmatched`.
    let metrics = c
        .get(url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for needle in [
        r#"reconcile_endpoint_requests_total{route="/docs",method="GET",status="200"} 1"#,
        r#"reconcile_endpoint_requests_total{route="/docs",method="GET",status="304"} 1"#,
        r#"reconcile_endpoint_requests_total{route="/docs",method="HEAD",status="200"} 1"#,
        r#"reconcile_endpoint_requests_total{route="/docs/swagger-ui-bundle.js",method="GET",status="200"} 1"#,
        r#"reconcile_endpoint_requests_total{route="/docs/swagger-ui.css",method="GET",status="304"} 1"#,
        r#"reconcile_endpoint_requests_total{route="/docs/swagger-init.js",method="GET",status="200"} 1"#,
        r#"reconcile_endpoint_requests_total{route="unmatched",method="GET",status="404"} 3"#,
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    assert!(!metrics.contains("index.html") && !metrics.contains(".map"));
}

/// What Chromium's NetLog says about the connections and requests of a run.
struct NetLog {
    /// The address of every TCP connection attempted, by anyone in the browser.
    tcp: Vec<String>,
    /// The URL of every request made on behalf of a page of `site`.
    page_requests: Vec<String>,
}

fn read_netlog(path: &Path, site: &str) -> NetLog {
    let text = std::fs::read_to_string(path).expect("read netlog");
    let log: Value = serde_json::from_str(&text).expect("netlog is JSON");
    let kind = |name: &str| log["constants"]["logEventTypes"][name].as_i64();
    let (attempt, start_job) = (kind("TCP_CONNECT_ATTEMPT"), kind("URL_REQUEST_START_JOB"));
    assert!(attempt.is_some() && start_job.is_some(), "unknown NetLog");
    let mut out = NetLog {
        tcp: Vec::new(),
        page_requests: Vec::new(),
    };
    for e in log["events"].as_array().expect("events") {
        let t = e["type"].as_i64();
        let params = &e["params"];
        if t == attempt {
            if let Some(a) = params["address"].as_str() {
                out.tcp.push(a.to_string());
            }
        } else if t == start_job
            && params["network_isolation_key"]
                .as_str()
                .is_some_and(|k| k.starts_with(site))
        {
            out.page_requests
                .push(params["url"].as_str().unwrap_or_default().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn swagger_ui_renders_every_operation_in_chromium() {
    let Some(browser) = chromium::chromium_or_skip("docs_ui") else {
        return;
    };
    let p = Project::example();
    let s = serve(&p, &[]);
    let c = client();
    let doc: Value = c
        .get(format!("{}/openapi.json", s.base))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("OpenAPI JSON");
    let ops = operations(&doc);
    for want in [("post", "/predict"), ("post", "/v2/models/{model}/infer")] {
        assert!(
            ops.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} is not in /openapi.json"
        );
    }

    let work = tempfile::tempdir().expect("temp dir");
    let dom_path = work.path().join("dom.html");
    let netlog_path = work.path().join("netlog.json");
    let page = format!("{}/docs", s.base);
    let flags = vec![
        format!("--log-net-log={}", netlog_path.display()),
        "--enable-logging=stderr".to_string(),
        "--v=0".to_string(),
        // Virtual time waits for the fetch of /openapi.json and the render.
        "--virtual-time-budget=20000".to_string(),
        "--dump-dom".to_string(),
    ];
    let (stderr, browser, work) = tokio::task::spawn_blocking(move || {
        let stderr = chromium::chromium(&browser, work.path(), &flags, &page, &dom_path);
        (stderr, browser, work)
    })
    .await
    .expect("chromium thread");
    let dom = std::fs::read_to_string(work.path().join("dom.html")).expect("read dom");

    // One operation block per operation of the document, each with its path.
    assert!(dom.contains("reconcile endpoint"), "no title in\n{dom}");
    assert_eq!(
        dom.matches("class=\"opblock opblock-").count(),
        ops.len(),
        "operations rendered vs {ops:?}"
    );
    for (method, path) in &ops {
        let block = format!("class=\"opblock opblock-{method}");
        assert!(dom.contains(&block), "no {method} block");
        assert!(
            dom.contains(&format!("data-path=\"{path}\"")),
            "{method} {path} not rendered"
        );
    }
    assert!(
        !stderr.contains("Content Security Policy"),
        "the page broke its own policy:\n{stderr}"
    );

    // Every connection went to the server; every request of the page too, and
    // the page asked for what it names (so the log is not vacuously clean).
    let host = s.base.trim_start_matches("http://").to_string();
    let net = read_netlog(&work.path().join("netlog.json"), "http://127.0.0.1 ");
    assert!(!net.tcp.is_empty(), "no connection in the NetLog");
    for a in &net.tcp {
        assert_eq!(a, &host, "a connection left the server: {:?}", net.tcp);
    }
    for u in &net.page_requests {
        assert!(
            u.starts_with(&format!("{}/", s.base)),
            "the page asked for {u}"
        );
    }
    let asked: BTreeSet<&str> = net
        .page_requests
        .iter()
        .map(|u| u[s.base.len()..].split('?').next().unwrap_or_default())
        .collect();
    for want in [
        "/docs",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/swagger-init.js",
        "/openapi.json",
    ] {
        assert!(asked.contains(want), "{want} not requested: {asked:?}");
    }

    // A screenshot, kept where a person can look at it after the temp dir is gone.
    let png = work.path().join("docs.png");
    let shot_flags = vec![
        "--virtual-time-budget=20000".to_string(),
        format!("--screenshot={}", png.display()),
        "--window-size=1280,1600".to_string(),
    ];
    let page = format!("{}/docs", s.base);
    let work = tokio::task::spawn_blocking(move || {
        let stdout = work.path().join("screenshot-stdout.log");
        chromium::chromium(&browser, work.path(), &shot_flags, &page, &stdout);
        work
    })
    .await
    .expect("chromium thread");
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10 * 1024, "screenshot is {size} bytes");
    let keep: PathBuf = std::env::temp_dir().join("reconcile-docs-ui");
    std::fs::create_dir_all(&keep).expect("keep dir");
    std::fs::copy(&png, keep.join("docs.png")).expect("keep screenshot");
    println!("docs_ui: screenshot at {}", keep.join("docs.png").display());
    drop(work);
}
