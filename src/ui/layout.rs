//! The frame every page shares: head (stylesheet, refresh), navigation,
//! footer, the error page, and small formatting helpers.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

/// The stylesheet, served at `/ui/style.css` (same origin, so the CSP needs
/// no inline style).
pub const CSS: &str = include_str!("style.css");

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The graph and plan.
    Graph,
    /// Models and versions.
    Models,
    /// Tables and feature views.
    Data,
    /// Monitors.
    Monitors,
    /// Live endpoint figures.
    Live,
    /// None (an error page).
    None,
}

const NAV: [(Section, &str, &str); 5] = [
    (Section::Graph, "/ui", "Graph"),
    (Section::Models, "/ui/models", "Models"),
    (Section::Data, "/ui/data", "Data"),
    (Section::Monitors, "/ui/monitors", "Monitors"),
    (Section::Live, "/ui/live", "Live"),
];

/// A whole page: `title` in the tab and as the heading, reloaded every
/// `refresh` seconds when given (no script: a meta refresh).
pub fn page(
    title: &str,
    section: Section,
    refresh: Option<u32>,
    project: &str,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = refresh {
                    meta http-equiv="refresh" content=(s);
                }
                title { (title) " · reconcile" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/ui/style.css";
            }
            body {
                header.top {
                    span.brand { "reconcile" }
                    @if !project.is_empty() { span.project { (project) } }
                    nav {
                        @for (s, href, label) in NAV {
                            a href=(href) class=[(s == section).then_some("active")] { (label) }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
                footer {
                    "Read-only view of the state store, the registry and the monitors"
                    @if let Some(s) = refresh { " · refreshes every " (s) " s" }
                    "."
                }
            }
        }
    }
}

/// The page of an error: its status and what went wrong, as text.
pub fn error_page(status: StatusCode, text: &str) -> Markup {
    page(
        status.canonical_reason().unwrap_or("Error"),
        Section::None,
        None,
        "",
        html! {
            p.error { (text) }
            p { a href="/ui" { "Back to the graph" } }
        },
    )
}

/// Milliseconds since the epoch as people read them, in UTC.
pub fn time(ms: i64) -> String {
    crate::store::format_ms(ms)
}

/// A hash shortened to 12 characters; the whole one in the tooltip.
pub fn hash(h: &str) -> Markup {
    let short: String = h.chars().take(12).collect();
    html! { code title=(h) { (short) } }
}

/// A figure with four significant digits, "—" when not a number.
pub fn number(x: f64) -> String {
    crate::drift::svg::sig(x, 4)
}

/// A badge coloured by its class.
pub fn badge(class: &str, text: &str) -> Markup {
    html! { span class={ "badge " (class) } { (text) } }
}
