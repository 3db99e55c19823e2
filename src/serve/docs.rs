//! Interactive API docs at `/docs`, as FastAPI gives them: Swagger UI over this
//! endpoint's own `/openapi.json`.
//!
//! Swagger UI's files are vendored in `assets/swagger-ui/` (see its README for the
//! version and how to update it) and compiled into the binary, so nothing is
//! downloaded to build it and no request from the page leaves the endpoint's
//! origin: the page works on a network that reaches nothing outside. The page's
//! `Content-Security-Policy` tells the browser so — scripts, styles and requests
//! from `'self'` only, which is also why the start-up script is a file of its
//! own rather than inline.
//!
//! Caching: every response carries an `ETag` (a hash of its bytes) and answers a
//! matching `If-None-Match` with 304. The page names each asset with
//! `?v=<its hash>`, so the assets are cached as immutable for a year and a binary
//! with other assets names other URLs; the page itself is revalidated each time.

use std::sync::LazyLock;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The docs' route patterns, as metric labels name them (a fixed set).
pub const ROUTES: [&str; 4] = [
    "/docs",
    "/docs/swagger-ui-bundle.js",
    "/docs/swagger-ui.css",
    "/docs/swagger-init.js",
];

/// The page's policy: everything from this origin only. `data:` images are the
/// one addition, because Swagger UI's stylesheet draws its icons as `data:` URIs
/// (a `data:` URI is inline bytes, never a request).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Swagger UI's JavaScript bundle (the vendored file, byte for byte).
pub const SWAGGER_UI_BUNDLE: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
/// Swagger UI's stylesheet (the vendored file, byte for byte).
pub const SWAGGER_UI_CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

/// Starts Swagger UI on this origin's OpenAPI document. `validatorUrl: null`
/// keeps it from asking an online validator about the document.
pub const SWAGGER_INIT: &str = r##"// Starts Swagger UI on this endpoint's OpenAPI document (same origin only).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"##;

/// Cache lifetime of the assets, whose URLs change with their content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The page is revalidated on every visit (its ETag makes that a 304).
const REVALIDATE: &str = "no-cache";

/// One response body with what the browser needs to know about it.
struct Asset {
    bytes: Bytes,
    content_type: &'static str,
    cache_control: &'static str,
    /// Hex hash of `bytes`, also the asset's `?v=` in the page.
    hash: String,
}

impl Asset {
    fn new(bytes: Bytes, content_type: &'static str, cache_control: &'static str) -> Asset {
        let hash = blake3::hash(&bytes).to_hex()[..16].to_string();
        Asset {
            bytes,
            content_type,
            cache_control,
            hash,
        }
    }

    /// The asset, or 304 when the client's copy (`If-None-Match`) is current.
    fn respond(&self, request: &HeaderMap, extra: &[(HeaderName, &'static str)]) -> Response {
        let etag = format!("\"{}\"", self.hash);
        let current = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*");
        let mut headers = HeaderMap::new();
        // A quoted hex string is always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, v);
        }
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(self.cache_control),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        for (name, value) in extra {
            headers.insert(name.clone(), HeaderValue::from_static(value));
        }
        if current {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        (headers, self.bytes.clone()).into_response()
    }
}

/// The page and its assets, hashed once.
struct Docs {
    page: Asset,
    bundle: Asset,
    css: Asset,
    init: Asset,
}

static DOCS: LazyLock<Docs> = LazyLock::new(|| {
    let js = "text/javascript; charset=utf-8";
    let bundle = Asset::new(Bytes::from_static(SWAGGER_UI_BUNDLE), js, IMMUTABLE);
    let css = Asset::new(
        Bytes::from_static(SWAGGER_UI_CSS),
        "text/css; charset=utf-8",
        IMMUTABLE,
    );
    let init = Asset::new(Bytes::from_static(SWAGGER_INIT.as_bytes()), js, IMMUTABLE);
    let page = Asset::new(
        Bytes::from(page(&bundle.hash, &css.hash, &init.hash)),
        "text/html; charset=utf-8",
        REVALIDATE,
    );
    Docs {
        page,
        bundle,
        css,
        init,
    }
});

/// The HTML page: every URL in it is a path on this origin. The empty `data:`
/// icon keeps the browser from asking for `/favicon.ico`.
fn page(bundle: &str, css: &str, init: &str) -> String {
    let [_, bundle_r, css_r, init_r] = ROUTES;
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API docs</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{css_r}?v={css}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{bundle_r}?v={bundle}"></script>
<script src="{init_r}?v={init}"></script>
</body>
</html>
"#
    )
}

/// The docs' routes, for merging into an endpoint's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let [page_r, bundle_r, css_r, init_r] = ROUTES;
    Router::new()
        .route(
            page_r,
            get(|h: HeaderMap| async move {
                DOCS.page.respond(
                    &h,
                    &[
                        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
                        (header::REFERRER_POLICY, "no-referrer"),
                    ],
                )
            }),
        )
        .route(
            bundle_r,
            get(|h: HeaderMap| async move { DOCS.bundle.respond(&h, &[]) }),
        )
        .route(
            css_r,
            get(|h: HeaderMap| async move { DOCS.css.respond(&h, &[]) }),
        )
        .route(
            init_r,
            get(|h: HeaderMap| async move { DOCS.init.respond(&h, &[]) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_its_own_routes_with_their_hashes() {
        let d = &*DOCS;
        let html = std::str::from_utf8(&d.page.bytes).expect("utf-8");
        for (route, asset) in [
            (ROUTES[1], &d.bundle),
            (ROUTES[2], &d.css),
            (ROUTES[3], &d.init),
        ] {
            assert!(
                html.contains(&format!("{route}?v={}", asset.hash)),
                "{route}"
            );
        }
        assert!(!html.contains("http:") && !html.contains("https:") && !html.contains("//"));
        assert!(!html.contains("<script>"), "no inline script");
    }

    #[test]
    fn a_current_copy_is_not_sent_again() {
        let etag = format!("\"{}\"", DOCS.css.hash);
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            format!("\"x\", W/{etag}").parse().expect("header"),
        );
        assert_eq!(DOCS.css.respond(&h, &[]).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, "\"stale\"".parse().expect("header"));
        assert_eq!(DOCS.css.respond(&h, &[]).status(), StatusCode::OK);
        assert_eq!(
            DOCS.css.respond(&HeaderMap::new(), &[]).status(),
            StatusCode::OK
        );
    }
}
