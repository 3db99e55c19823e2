//! The read-only status web UI at `/ui`, served by the long-running processes
//! (`reconcile serve` on every endpoint's listener, `reconcile watch`/`up` on
//! the controller's): the dependency graph coloured by condition beside the
//! pending plan, the registry's models and versions (confusion matrix and ROC
//! curve drawn), the tables' snapshots and the feature views' watermarks, the
//! monitors' verdicts with their drift over time and their report, and each
//! endpoint's own request rate and latency.
//!
//! Server-rendered with maud (every text escaped), charts as inline SVG, one
//! same-origin stylesheet, no script: pages refresh themselves with
//! `<meta http-equiv="refresh">`, and a Content-Security-Policy forbids any
//! script and any other origin. Nothing here writes: the UI reads what
//! `status`, `models` and `monitor` read, through the same library functions
//! ([`crate::status::rows`], the registry, the monitor store), and the plan
//! it shows is cached ([`snapshot`]) so a page costs no more than a few
//! indexed queries.

mod charts;
mod data;
mod graph;
mod layout;
mod live;
mod models;
mod monitors;
pub mod snapshot;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::serve::Serving;
use crate::store::StoreError;
use crate::workspace::{StoreOverrides, Stores, WorkspaceError};

/// Every UI route pattern, as the endpoints' request metrics label them
/// (patterns, never raw paths).
pub const ROUTES: [&str; 9] = [
    "/ui",
    "/ui/style.css",
    "/ui/models",
    "/ui/models/{model}/{version}",
    "/ui/data",
    "/ui/monitors",
    "/ui/monitors/{monitor}",
    "/ui/monitors/{monitor}/report",
    "/ui/live",
];

/// What the UI's own pages may load: this origin's stylesheet and inline
/// SVG, nothing else — no script at all, no other origin, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The drift report is a self-contained document with its stylesheet inline
/// (it is also written to files by `monitor report --html`): inline style
/// allowed, still no script and no other origin.
pub const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Why a page could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The specs do not load (invalid, or their folder is gone).
    #[error("the specs do not load")]
    Workspace(#[from] WorkspaceError),
    /// A store failed.
    #[error("a store failed")]
    Store(#[from] StoreError),
    /// The plan's thread failed.
    #[error("the plan could not be computed")]
    Join(#[from] tokio::task::JoinError),
    /// The same failure as a moment ago (kept for as long as a snapshot is).
    #[error(transparent)]
    Again(Arc<UiError>),
    /// The page names something that does not exist.
    #[error("no {what} `{name}`")]
    NotFound {
        /// What was looked for ("model", "monitor", …).
        what: &'static str,
        /// The name asked for.
        name: String,
    },
}

impl UiError {
    /// The HTTP status of the error page.
    fn status(&self) -> StatusCode {
        match self {
            UiError::NotFound { .. } => StatusCode::NOT_FOUND,
            UiError::Again(e) => e.status(),
            UiError::Workspace(_) | UiError::Store(_) | UiError::Join(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

/// A page of the UI, as the router and the benchmark name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// `/ui`: the graph, the pending plan and every resource.
    Graph,
    /// `/ui/models`: every model, its versions and promotion history.
    Models,
    /// `/ui/models/{model}/{version}`: one version in full.
    Version {
        /// The model's name.
        model: String,
        /// The version, as written in the path.
        version: String,
    },
    /// `/ui/data`: tables with their snapshots, feature views with their watermark.
    Data,
    /// `/ui/monitors`: the last verdict of every monitor.
    Monitors,
    /// `/ui/monitors/{monitor}`: one monitor's verdict and drift over time.
    Monitor {
        /// The monitor's name.
        name: String,
    },
    /// `/ui/monitors/{monitor}/report`: the newest evaluation as the drift report.
    Report {
        /// The monitor's name.
        name: String,
    },
    /// `/ui/live`: each endpoint's request rate and latency.
    Live,
}

/// A rendered page and the policy it is served under.
#[derive(Debug)]
pub struct Rendered {
    /// The HTML document.
    pub html: String,
    /// Its Content-Security-Policy.
    pub csp: &'static str,
}

/// The UI of one process: where the specs are, the stores it reads, the
/// cached plan and the endpoints this process serves.
pub struct Ui {
    cache: snapshot::Cache,
    live: Arc<live::Live>,
}

impl std::fmt::Debug for Ui {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ui")
            .field("dir", &self.cache.dir())
            .finish_non_exhaustive()
    }
}

impl Ui {
    /// The UI of the specs in `dir`, opening their stores (with `overrides`)
    /// on the first page asked for: the controller's listener.
    pub fn new(dir: PathBuf, overrides: StoreOverrides) -> Arc<Ui> {
        Arc::new(Ui {
            cache: snapshot::Cache::new(dir, overrides, None),
            live: Arc::new(live::Live::default()),
        })
    }

    /// The UI of the specs in `dir` over stores already open (`reconcile serve`).
    pub fn with_stores(dir: PathBuf, stores: Stores) -> Arc<Ui> {
        Arc::new(Ui {
            cache: snapshot::Cache::new(dir, StoreOverrides::default(), Some(stores)),
            live: Arc::new(live::Live::default()),
        })
    }

    /// Shows an endpoint this process serves on the live page (and the
    /// version it serves on the models page); replaces an earlier one of the
    /// same name (endpoints restarted by `up`). Starts sampling its counters.
    pub fn attach(&self, serving: Arc<Serving>) {
        live::Live::attach(&self.live, serving);
    }

    /// Renders one page.
    pub async fn render(&self, page: &Page) -> Result<Rendered, UiError> {
        let html = match page {
            Page::Graph => graph::page(self).await?,
            Page::Models => models::list(self).await?,
            Page::Version { model, version } => models::version(self, model, version).await?,
            Page::Data => data::page(self).await?,
            Page::Monitors => monitors::list(self).await?,
            Page::Monitor { name } => monitors::page(self, name).await?,
            Page::Report { name } => {
                return Ok(Rendered {
                    html: monitors::report(self, name).await?,
                    csp: REPORT_CSP,
                });
            }
            Page::Live => live::page(self).await?,
        };
        Ok(Rendered {
            html: html.into_string(),
            csp: CSP,
        })
    }

    /// The plan, status rows and observation, at most a few seconds old.
    pub async fn snapshot(&self) -> Result<Arc<snapshot::Snapshot>, UiError> {
        self.cache.get().await
    }
}

/// The UI's routes over any router state, for merging into a server's router
/// (nothing when `ui` is `None`).
pub fn router<S: Clone + Send + Sync + 'static>(ui: Option<Arc<Ui>>) -> Router<S> {
    let Some(ui) = ui else {
        return Router::new();
    };
    let [
        graph_r,
        css_r,
        models_r,
        version_r,
        data_r,
        monitors_r,
        monitor_r,
        report_r,
        live_r,
    ] = ROUTES;
    Router::<Arc<Ui>>::new()
        .route(graph_r, get(|s: State<Arc<Ui>>| show(s, Page::Graph)))
        .route(css_r, get(stylesheet))
        .route(models_r, get(|s: State<Arc<Ui>>| show(s, Page::Models)))
        .route(
            version_r,
            get(
                |s: State<Arc<Ui>>, Path((model, version)): Path<(String, String)>| {
                    show(s, Page::Version { model, version })
                },
            ),
        )
        .route(data_r, get(|s: State<Arc<Ui>>| show(s, Page::Data)))
        .route(monitors_r, get(|s: State<Arc<Ui>>| show(s, Page::Monitors)))
        .route(
            monitor_r,
            get(|s: State<Arc<Ui>>, Path(name): Path<String>| show(s, Page::Monitor { name })),
        )
        .route(
            report_r,
            get(|s: State<Arc<Ui>>, Path(name): Path<String>| show(s, Page::Report { name })),
        )
        .route(live_r, get(|s: State<Arc<Ui>>| show(s, Page::Live)))
        .layer(middleware::from_fn(headers))
        .with_state(ui)
}

/// A page as an HTTP response: 200 with the page, or the error as a page
/// (404 for an unknown name, 503 when the specs or stores fail).
fn show(
    State(ui): State<Arc<Ui>>,
    page: Page,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> {
    Box::pin(async move {
        match ui.render(&page).await {
            Ok(r) => (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CONTENT_SECURITY_POLICY, r.csp),
                ],
                r.html,
            )
                .into_response(),
            Err(e) => {
                let status = e.status();
                let mut text = crate::logging::with_causes(&e);
                let first = match &e {
                    UiError::Again(inner) => inner.as_ref(),
                    other => other,
                };
                if let UiError::Workspace(WorkspaceError::Specs(diags)) = first {
                    for d in diags {
                        text.push('\n');
                        text.push_str(&d.short());
                    }
                }
                let text = crate::spec::env::redact_secrets(&text);
                (
                    status,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    layout::error_page(status, &text).into_string(),
                )
                    .into_response()
            }
        }
    })
}

/// The stylesheet every page links.
async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        layout::CSS,
    )
        .into_response()
}

/// Headers of every UI response: the page's policy (the default one unless
/// the page set its own), no sniffing, no referrer, no caching of pages.
async fn headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
