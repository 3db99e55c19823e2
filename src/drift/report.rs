//! A monitor's evaluation as one self-contained HTML page: the verdict table
//! and, per column, the reference and current distributions as inline SVG.
//!
//! Self-contained means one file that opens anywhere, offline, years later:
//! inline CSS, system fonts, no script, no external resource. Every text goes
//! through `maud`, which escapes it, because column names, category labels and
//! window descriptions come from users' data.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::svg::{self, ChartId, Series};
use super::{ColumnDrift, ColumnKind, DatasetDrift, Distribution};

/// What the page says besides the numbers.
#[derive(Debug, Clone)]
pub struct ReportContext {
    /// The monitor's name.
    pub monitor: String,
    /// When it was evaluated (RFC 3339).
    pub evaluated_at: String,
    /// What the reference window is, in words.
    pub reference: String,
    /// What the current window is, in words.
    pub current: String,
}

/// Renders the page: header and dataset verdict, the per-column verdict table,
/// then one chart per column (in the table's order). Never panics, whatever
/// the numbers: non-finite scores show as "—", empty distributions as a note.
pub fn html(ctx: &ReportContext, drift: &DatasetDrift) -> String {
    page(ctx, drift).into_string()
}

/// The page's stylesheet. Reference is a muted grey-blue, current an orange
/// that reads as "now"; drift is the only red on the page.
const CSS: &str = r#"
:root {
  --ref: #7b93ad; --cur: #e8833a;
  --ink: #1d2630; --muted: #5f6b78; --line: #e3e6ea; --bg: #f6f7f9; --card: #fff;
  --drift: #c0392b; --drift-bg: #fdeeec; --drift-line: #f2b8b0;
  --ok: #2e7d4f; --ok-bg: #e9f5ee; --ok-line: #b9dcc7;
  color-scheme: light;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "Liberation Sans", sans-serif;
  -webkit-font-smoothing: antialiased;
}
main { max-width: 1160px; margin: 0 auto; padding: 32px 24px 48px; }
.kicker { margin: 0; font-size: 12px; font-weight: 600; letter-spacing: .08em; text-transform: uppercase; color: var(--muted); }
h1 { margin: 2px 0 18px; font-size: 28px; line-height: 1.2; overflow-wrap: anywhere; }
h2 { margin: 36px 0 12px; font-size: 19px; }
.mono, td.column, figcaption .name {
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
}
dl.meta { display: grid; grid-template-columns: 1fr 2fr 2fr; gap: 12px; margin: 0 0 16px; }
dl.meta > div { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
dt { font-size: 11px; font-weight: 600; letter-spacing: .07em; text-transform: uppercase; color: var(--muted); }
dd { margin: 2px 0 0; overflow-wrap: anywhere; }
.verdict { margin: 0; padding: 14px 18px; border: 1px solid; border-radius: 10px; font-size: 17px; }
.verdict.detected { background: var(--drift-bg); border-color: var(--drift-line); color: #8a1f14; }
.verdict.clear { background: var(--ok-bg); border-color: var(--ok-line); color: #1d5637; }
.verdict.none { background: #eef0f3; border-color: var(--line); color: var(--muted); }
.verdict .detail { font-weight: 400; }
table { width: 100%; border-collapse: separate; border-spacing: 0; background: var(--card);
  border: 1px solid var(--line); border-radius: 10px; overflow: hidden; font-size: 14px; }
th, td { padding: 8px 12px; text-align: left; vertical-align: top; border-bottom: 1px solid var(--line); }
tbody tr:last-child td { border-bottom: 0; }
thead th { background: #f0f2f5; font-size: 11px; font-weight: 600; letter-spacing: .06em;
  text-transform: uppercase; color: var(--muted); white-space: nowrap; }
thead tr.group th { border-bottom: 0; padding-bottom: 0; }
th.window { text-align: center; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.column { font-size: 13px; overflow-wrap: anywhere; max-width: 260px; }
td.column a { color: inherit; text-decoration: none; border-bottom: 1px dotted #9aa5b1; }
tr.drifted td { background: var(--drift-bg); }
tr.drifted td:first-child { box-shadow: inset 4px 0 0 var(--drift); }
tr.drifted td.score { color: var(--drift); font-weight: 600; }
.hint { display: block; font-size: 12px; color: var(--muted); }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px; font-weight: 600; white-space: nowrap; }
.badge.drift { background: var(--drift); color: #fff; }
.badge.ok { background: var(--ok-bg); color: var(--ok); }
.legend { display: flex; flex-wrap: wrap; gap: 8px 24px; margin: 0 0 14px; padding: 0; list-style: none; font-size: 14px; color: var(--muted); }
.legend li { display: flex; align-items: center; gap: 8px; }
.swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px; }
.swatch.ref { background: var(--ref); }
.swatch.cur { background: var(--cur); }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; }
figure.card { margin: 0; padding: 14px 16px 10px; background: var(--card); border: 1px solid var(--line); border-radius: 10px; }
figure.card.drifted { border-color: var(--drift-line); box-shadow: inset 0 3px 0 var(--drift); }
figcaption { display: grid; grid-template-columns: minmax(0, 1fr) auto; align-items: center; gap: 2px 12px; margin-bottom: 10px; }
figcaption .name { grid-column: 1; font-size: 15px; font-weight: 600; overflow-wrap: anywhere; }
figcaption .badge { grid-column: 2; grid-row: 1; }
figcaption .facts { grid-column: 1 / -1; font-size: 12px; color: var(--muted); }
svg.chart { display: block; width: 100%; height: auto; overflow: visible;
  font: 11px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "Liberation Sans", sans-serif; }
svg.chart .ref { fill: var(--ref); }
svg.chart .cur { fill: var(--cur); }
svg.chart .grid line { stroke: #edf0f3; }
svg.chart .axis line { stroke: #a3adb8; }
svg.chart text { fill: var(--muted); font-variant-numeric: tabular-nums; }
svg.chart text.label { fill: var(--ink); font-size: 12px; }
svg.chart.empty .frame { fill: #fafbfc; stroke: var(--line); stroke-dasharray: 4 3; }
p.empty { color: var(--muted); }
footer { margin-top: 36px; font-size: 12px; color: var(--muted); }
@media (max-width: 720px) { dl.meta { grid-template-columns: 1fr; } .charts { grid-template-columns: 1fr; } }
@media print { body { background: #fff; } figure.card { break-inside: avoid; } }
"#;

/// The whole document.
fn page(ctx: &ReportContext, drift: &DatasetDrift) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Drift report · " (ctx.monitor) }
                style { (PreEscaped(CSS)) }
            }
            body {
                main {
                    (header(ctx, drift))
                    (table(drift))
                    (charts(ctx, drift))
                    footer {
                        "Generated by reconcile. p-values (ks, chisquare, z) drift below their threshold; "
                        "distances (wasserstein, jensenshannon, psi) drift at or above it. "
                        "Nulls are dropped before testing."
                    }
                }
            }
        }
    }
}

/// Monitor, time, windows and the dataset's verdict in one sentence.
fn header(ctx: &ReportContext, drift: &DatasetDrift) -> Markup {
    let total = drift.columns.len();
    let (class, word) = if total == 0 {
        ("none", "not evaluated")
    } else if drift.dataset_drift {
        ("detected", "detected")
    } else {
        ("clear", "not detected")
    };
    html! {
        header {
            p.kicker { "Drift report" }
            h1 { (ctx.monitor) }
            dl.meta {
                div { dt { "Evaluated" } dd { time datetime=(ctx.evaluated_at) { (ctx.evaluated_at) } } }
                div { dt { "Reference window" } dd { (ctx.reference) } }
                div { dt { "Current window" } dd { (ctx.current) } }
            }
            p class={ "verdict " (class) } id="verdict" data-drift=(if drift.dataset_drift { "true" } else { "false" }) {
                strong { "Dataset drift: " (word) }
                span.detail { " — " (verdict_detail(drift)) }
            }
        }
    }
}

/// "1 of 14 columns (7 %) drifted, < share 0.5": the count, its share and how
/// it compares with the share that makes the dataset drift.
fn verdict_detail(drift: &DatasetDrift) -> String {
    let total = drift.columns.len();
    if total == 0 {
        return "no columns to compare".into();
    }
    let relation = if drift.share.is_nan() || drift.drift_share.is_nan() {
        "vs"
    } else if drift.share >= drift.drift_share {
        "≥"
    } else {
        "<"
    };
    format!(
        "{} of {} column{} ({}) drifted, {} share {}",
        drift.drifted_columns,
        total,
        if total == 1 { "" } else { "s" },
        percent(drift.share),
        relation,
        number(drift.drift_share),
    )
}

/// One row per column: how it was tested and what came out.
fn table(drift: &DatasetDrift) -> Markup {
    html! {
        h2 { "Columns" }
        @if drift.columns.is_empty() {
            p.empty { "No columns were compared." }
        } @else {
            table.verdicts {
                thead {
                    tr.group {
                        th colspan="6" {}
                        th.window colspan="2" { "Reference" }
                        th.window colspan="2" { "Current" }
                    }
                    tr {
                        th { "Column" }
                        th { "Kind" }
                        th { "Method" }
                        th.num { "Score" }
                        th.num { "Threshold" }
                        th { "Drift" }
                        th.num { "Rows" }
                        th.num { "Nulls" }
                        th.num { "Rows" }
                        th.num { "Nulls" }
                    }
                }
                tbody {
                    @for (i, c) in drift.columns.iter().enumerate() {
                        tr class=(if c.drifted { "drifted" } else { "stable" }) data-column=(c.column) {
                            td.column { a href={ "#" (chart_id(i)) } { (c.column) } }
                            td { (kind(c.kind)) }
                            td {
                                span.mono { (c.method.as_str()) }
                                span.hint { (if c.method.is_p_value() { "p-value" } else { "distance" }) }
                            }
                            td.num.score { (number(c.score)) }
                            td.num { (number(c.threshold)) }
                            td { (badge(c.drifted)) }
                            td.num { (count(c.reference_rows)) }
                            td.num { (count(c.reference_nulls)) }
                            td.num { (count(c.current_rows)) }
                            td.num { (count(c.current_nulls)) }
                        }
                    }
                }
            }
        }
    }
}

/// The legend and one card per column, each with its chart.
fn charts(ctx: &ReportContext, drift: &DatasetDrift) -> Markup {
    html! {
        @if !drift.columns.is_empty() {
            h2 { "Distributions" }
            ul.legend {
                li { span.swatch.ref {} "Reference — " (ctx.reference) }
                li { span.swatch.cur {} "Current — " (ctx.current) }
                li { "Bars are shares of each window's non-null values." }
            }
            div.charts {
                @for (i, c) in drift.columns.iter().enumerate() {
                    (card(i, c))
                }
            }
        }
    }
}

/// A column's chart with what the reader needs to read it.
fn card(i: usize, c: &ColumnDrift) -> Markup {
    let id = chart_id(i);
    let chart = ChartId {
        id: &id,
        column: &c.column,
    };
    let drawing = match &c.distribution {
        Distribution::Histogram {
            edges,
            reference,
            current,
        } => svg::histogram(chart, edges, &series(reference, current)),
        Distribution::Categories {
            labels,
            reference,
            current,
        } => svg::category_bars(chart, labels, &series(reference, current)),
    };
    html! {
        figure class={ "card" @if c.drifted { " drifted" } } {
            figcaption {
                span.name { (c.column) }
                span.facts {
                    (kind(c.kind)) " · " (c.method.as_str()) " · "
                    @if c.method.is_p_value() {
                        "p = " (number(c.score)) ", drifts below " (number(c.threshold))
                    } @else {
                        "distance " (number(c.score)) ", drifts at or above " (number(c.threshold))
                    }
                }
                (badge(c.drifted))
            }
            (drawing)
        }
    }
}

/// The two windows as chart series, in the page's colours.
fn series<'a>(reference: &'a [f64], current: &'a [f64]) -> [Series<'a>; 2] {
    [
        Series {
            name: "reference",
            class: "ref",
            values: reference,
        },
        Series {
            name: "current",
            class: "cur",
            values: current,
        },
    ]
}

/// The chart's element id: by position, since names may hold anything.
fn chart_id(i: usize) -> String {
    format!("chart-{i}")
}

/// The drift flag, as a badge.
fn badge(drifted: bool) -> Markup {
    html! {
        @if drifted { span.badge.drift { "Drifted" } } @else { span.badge.ok { "No drift" } }
    }
}

/// "numerical" or "categorical".
fn kind(k: ColumnKind) -> &'static str {
    match k {
        ColumnKind::Numerical => "numerical",
        ColumnKind::Categorical => "categorical",
    }
}

/// A score or threshold: four significant digits, scientific below 0.001
/// (p-values get small), "—" when not a number.
fn number(x: f64) -> String {
    svg::sig(x, 4)
}

/// A share as a whole percentage ("7 %"), one decimal below 1 %, "—" when not
/// a number. The space is a no-break one, so "%" never wraps alone.
fn percent(share: f64) -> String {
    if !share.is_finite() {
        return "—".into();
    }
    let p = share * 100.0;
    if p > 0.0 && p < 1.0 {
        format!("{p:.1}\u{a0}%")
    } else {
        format!("{p:.0}\u{a0}%")
    }
}

/// A count with thousands separated, "12,345".
fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{Method, dataset_drift};

    fn ctx(monitor: &str) -> ReportContext {
        ReportContext {
            monitor: monitor.into(),
            evaluated_at: "2026-03-01T12:00:00Z".into(),
            reference: "training set (2026-01)".into(),
            current: "last 7 days".into(),
        }
    }

    fn numerical(name: &str, score: f64, drifted: bool) -> ColumnDrift {
        ColumnDrift {
            column: name.into(),
            kind: ColumnKind::Numerical,
            method: Method::Ks,
            score,
            threshold: 0.05,
            drifted,
            reference_rows: 12_345,
            current_rows: 987,
            reference_nulls: 0,
            current_nulls: 3,
            distribution: Distribution::Histogram {
                edges: vec![0.0, 2.5, 5.0, 7.5, 10.0],
                reference: vec![0.1, 0.4, 0.4, 0.1],
                current: vec![0.05, 0.2, 0.45, 0.3],
            },
        }
    }

    fn categorical(name: &str, labels: &[&str]) -> ColumnDrift {
        let n = labels.len().max(1) as f64;
        ColumnDrift {
            column: name.into(),
            kind: ColumnKind::Categorical,
            method: Method::JensenShannon,
            score: 0.031,
            threshold: 0.1,
            drifted: false,
            reference_rows: 500,
            current_rows: 480,
            reference_nulls: 2,
            current_nulls: 0,
            distribution: Distribution::Categories {
                labels: labels.iter().map(|s| s.to_string()).collect(),
                reference: vec![1.0 / n; labels.len()],
                current: vec![1.0 / n; labels.len()],
            },
        }
    }

    fn charts_in(page: &str) -> usize {
        page.matches("<svg class=\"chart").count()
    }

    #[test]
    fn hostile_names_are_text() {
        let evil = "<script>alert(1)</script>";
        let attr = "\"><img src=x onerror=alert(1)>";
        let mut c = ReportContext {
            monitor: evil.into(),
            ..ctx("")
        };
        c.reference = evil.into();
        c.current = attr.into();
        c.evaluated_at = attr.into();
        let drift = dataset_drift(
            vec![
                numerical(evil, 0.01, true),
                numerical(attr, 0.5, false),
                categorical("plan", &[evil, attr, "ok"]),
            ],
            0.5,
        );
        let page = html(&c, &drift);
        assert!(!page.contains("<script"), "a script tag got through");
        assert!(!page.contains("<img"), "an img tag got through");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("data-column=\"&quot;&gt;&lt;img src=x onerror=alert(1)&gt;\""));
        assert_eq!(charts_in(&page), 3);
    }

    #[test]
    fn one_chart_per_column_in_order() {
        let drift = dataset_drift(
            vec![
                numerical("age", 0.2, false),
                categorical("plan", &["free", "pro", "team"]),
                numerical("income", 1e-6, true),
            ],
            0.5,
        );
        let page = html(&ctx("churn"), &drift);
        assert_eq!(charts_in(&page), 3);
        assert_eq!(page.matches("<svg class=\"chart histogram\"").count(), 2);
        assert_eq!(page.matches("<svg class=\"chart categories\"").count(), 1);
        let age = page.find("id=\"chart-0\" data-column=\"age\"");
        let plan = page.find("id=\"chart-1\" data-column=\"plan\"");
        let income = page.find("id=\"chart-2\" data-column=\"income\"");
        assert!(
            age < plan && plan < income && age.is_some(),
            "charts out of order"
        );
        // Both series are drawn, and the legend names them.
        assert!(page.contains("<rect class=\"ref\"") && page.contains("<rect class=\"cur\""));
        assert!(page.contains("Reference — training set (2026-01)"));
        // One table row per column, the drifted one marked.
        assert_eq!(page.matches("<tr class=\"stable\"").count(), 2);
        assert_eq!(page.matches("<tr class=\"drifted\"").count(), 1);
    }

    #[test]
    fn numbers_are_formatted() {
        let mut cols = vec![
            numerical("a", 0.052_345, false),
            numerical("b", 1.5e-7, true),
            numerical("c", f64::NAN, false),
        ];
        cols[2].threshold = f64::INFINITY;
        let drift = dataset_drift(cols, 0.5);
        let page = html(&ctx("m"), &drift);
        assert!(page.contains(">0.05235<"), "four significant digits");
        assert!(page.contains(">1.5e-7<"), "scientific below 0.001");
        assert!(page.contains(">0.05<"), "thresholds trimmed");
        assert!(page.contains(">—<"), "NaN and inf as a dash");
        assert!(!page.contains("NaN") && !page.contains("inf<"));
        assert!(page.contains(">12,345<"), "thousands separated");
        assert!(page.contains("Dataset drift: not detected"));
        assert!(page.contains("1 of 3 columns (33\u{a0}%) drifted, &lt; share 0.5"));
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(percent(0.005), "0.5\u{a0}%");
        assert_eq!(percent(1.0), "100\u{a0}%");
        assert_eq!(percent(f64::NAN), "—");
    }

    #[test]
    fn verdict_detected() {
        let drift = dataset_drift(vec![numerical("x", 0.001, true)], 0.5);
        let page = html(&ctx("m"), &drift);
        assert!(page.contains("Dataset drift: detected"));
        assert!(page.contains("1 of 1 column (100\u{a0}%) drifted, ≥ share 0.5"));
        assert!(page.contains("class=\"verdict detected\""));
    }

    #[test]
    fn degenerate_inputs_render() {
        // No columns at all.
        let page = html(&ctx(""), &dataset_drift(Vec::new(), 0.5));
        assert!(page.contains("Dataset drift: not evaluated"));
        assert_eq!(charts_in(&page), 0);

        // One bin, a zero-width one; empty shares; mismatched lengths; NaN and
        // infinite shares, edges and scores; no category at all.
        let mut one_bin = numerical("one bin", f64::INFINITY, false);
        one_bin.distribution = Distribution::Histogram {
            edges: vec![3.0, 3.0],
            reference: vec![1.0],
            current: vec![1.0],
        };
        let mut empty = numerical("empty", f64::NAN, false);
        empty.distribution = Distribution::Histogram {
            edges: Vec::new(),
            reference: Vec::new(),
            current: Vec::new(),
        };
        let mut odd = numerical("odd", -0.0, true);
        odd.distribution = Distribution::Histogram {
            edges: vec![f64::NEG_INFINITY, 0.0, f64::NAN],
            reference: vec![f64::NAN, 2.0, -1.0],
            current: vec![f64::INFINITY],
        };
        let mut no_cats = categorical("no categories", &[]);
        no_cats.score = f64::NEG_INFINITY;
        let mut short_labels = categorical("short labels", &["a"]);
        short_labels.distribution = Distribution::Categories {
            labels: vec!["a".into()],
            reference: vec![0.5, 0.5],
            current: vec![f64::NAN],
        };
        let long = "x".repeat(500);
        let long_label = categorical("long", &[&long, "é✓ unicode"]);
        let mut drift = dataset_drift(
            vec![one_bin, empty, odd, no_cats, short_labels, long_label],
            f64::NAN,
        );
        drift.share = f64::NAN;
        let page = html(&ctx("degenerate"), &drift);
        assert_eq!(charts_in(&page), 6);
        assert_eq!(page.matches("<svg class=\"chart empty\"").count(), 2);
        assert!(!page.contains("NaN"), "NaN leaked into the page");
        assert!(!page.contains("inf\""), "inf leaked into an attribute");
        assert!(page.contains("#2"), "a missing label is numbered");
        assert!(page.contains("é✓ unicode"));
    }

    #[test]
    fn self_contained() {
        let drift = dataset_drift(vec![numerical("x", 0.5, false)], 0.5);
        let page = html(&ctx("m"), &drift);
        assert!(page.starts_with("<!DOCTYPE html>"));
        for external in ["<script", "<link", "src=", "@import", "url(", "https://"] {
            assert!(!page.contains(external), "{external} in the page");
        }
    }
}
