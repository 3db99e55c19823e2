//! The report's charts as inline SVG: grouped histograms over shared bin edges
//! and horizontal bars over shared categories, each comparing a few series.
//!
//! Written by hand rather than with `plotters`: two chart shapes need a linear
//! scale, "nice" ticks and a few rectangles, which is less code than adapting
//! a plotting library's backend; the markup goes through `maud`, so every
//! label (column and category names come from users' data) is escaped; and
//! colours come from CSS classes, so the page's stylesheet owns the palette.
//!
//! Nothing here panics on degenerate input: empty or mismatched series,
//! non-finite values and edges, zero-width bins all draw something sensible
//! (at worst a "nothing to draw" note), and every chart is exactly one
//! `<svg class="chart">` element.

use maud::{Markup, html};

/// One series of a chart: its name (for tooltips), the CSS class its bars
/// take (which sets their colour) and its values, shares in `[0, 1]`.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Shown in tooltips, e.g. "reference".
    pub name: &'a str,
    /// The bars' CSS class, e.g. "ref".
    pub class: &'a str,
    /// One share per bin or category.
    pub values: &'a [f64],
}

/// Where a chart goes in the page and what it describes, so the page can link
/// to it and a test can count charts per column.
#[derive(Debug, Clone, Copy)]
pub struct ChartId<'a> {
    /// The element's `id` (unique in the page).
    pub id: &'a str,
    /// The column it draws, as `data-column`.
    pub column: &'a str,
}

/// Histogram canvas width, in SVG user units (the element scales to its box).
const HIST_W: f64 = 560.0;
/// Histogram canvas height.
const HIST_H: f64 = 230.0;
/// Plot margins: top, right, bottom, left.
const HIST_M: (f64, f64, f64, f64) = (14.0, 14.0, 38.0, 50.0);
/// Width of the category chart's canvas.
const BARS_W: f64 = 560.0;
/// Room for category labels left of the bars.
const BARS_LABEL_W: f64 = 140.0;
/// Height of one bar within a category's group.
const BAR_H: f64 = 9.0;
/// Space between two categories' groups.
const GROUP_GAP: f64 = 9.0;
/// Longest category label drawn in full (the tooltip has the rest).
const LABEL_CHARS: usize = 20;

/// A grouped histogram: for each bin between consecutive `edges`, one bar per
/// series side by side. Bins are drawn to scale when the edges are finite and
/// strictly increasing, in equal slots otherwise; ticks label the edges.
pub fn histogram(chart: ChartId<'_>, edges: &[f64], series: &[Series<'_>]) -> Markup {
    let bins = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let (top, right, bottom, left) = HIST_M;
    let plot_w = HIST_W - left - right;
    let plot_h = HIST_H - top - bottom;
    if bins == 0 || series.is_empty() {
        return empty(chart, HIST_W, 120.0);
    }
    let x = bin_positions(edges, bins, left, plot_w);
    let Axis {
        top: y_max,
        ticks: y_ticks,
        step: y_step,
    } = axis(max_share(series));
    let y = |v: f64| top + plot_h - clamp_share(v) / y_max * plot_h;
    let labels = edge_labels(edges, bins);
    let shown = thin(bins + 1, 8);
    let group = series.len() as f64;
    html! {
        svg class="chart histogram" id=(chart.id) data-column=(chart.column)
            viewBox={ "0 0 " (n(HIST_W)) " " (n(HIST_H)) } role="img"
            aria-label={ "Histogram of " (chart.column) } xmlns="http://www.w3.org/2000/svg" {
            g class="grid" {
                @for t in &y_ticks {
                    line x1=(n(left)) x2=(n(left + plot_w)) y1=(n(y(*t))) y2=(n(y(*t))) {}
                }
            }
            g class="axis y" {
                @for t in &y_ticks {
                    text x=(n(left - 6.0)) y=(n(y(*t) + 3.5)) text-anchor="end" { (pct_tick(*t, y_step)) }
                }
            }
            @for i in 0..bins {
                @let slot = x[i + 1] - x[i];
                @let pad = (slot * 0.1).min(4.0);
                @let bar_w = ((slot - 2.0 * pad) / group).max(0.5);
                @for (k, s) in series.iter().enumerate() {
                    @let v = s.values.get(i).copied().unwrap_or(0.0);
                    @let bx = x[i] + pad + k as f64 * bar_w;
                    @let by = y(v);
                    rect class=(s.class) x=(n(bx)) y=(n(by)) width=(n(bar_w))
                        height=(n(top + plot_h - by)) {
                        title { (s.name) " " (bin_title(&labels, i)) ": " (pct(v)) }
                    }
                }
            }
            g class="axis x" {
                line x1=(n(left)) x2=(n(left + plot_w)) y1=(n(top + plot_h)) y2=(n(top + plot_h)) {}
                @for (i, xi) in x.iter().enumerate() {
                    @if bins <= 60 || shown.contains(&i) {
                        line x1=(n(*xi)) x2=(n(*xi)) y1=(n(top + plot_h)) y2=(n(top + plot_h + 4.0)) {}
                    }
                    @if shown.contains(&i) {
                        text x=(n(*xi)) y=(n(top + plot_h + 17.0)) text-anchor=(anchor(i, bins)) {
                            (labels[i])
                        }
                    }
                }
            }
        }
    }
}

/// Horizontal bars: for each category, one bar per series stacked in a group,
/// the category's label on the left (cut to a readable length, full in the
/// tooltip) and a share axis below.
pub fn category_bars(chart: ChartId<'_>, labels: &[String], series: &[Series<'_>]) -> Markup {
    let count = series
        .iter()
        .map(|s| s.values.len())
        .chain(std::iter::once(labels.len()))
        .max()
        .unwrap_or(0);
    if count == 0 || series.is_empty() {
        return empty(chart, BARS_W, 120.0);
    }
    let top = 8.0;
    let bottom = 30.0;
    let right = 16.0;
    let group_h = BAR_H * series.len() as f64;
    let plot_h = count as f64 * (group_h + GROUP_GAP);
    let height = top + plot_h + bottom;
    let plot_w = BARS_W - BARS_LABEL_W - right;
    let Axis {
        top: x_max,
        ticks: x_ticks,
        step: x_step,
    } = axis(max_share(series));
    let x = |v: f64| BARS_LABEL_W + clamp_share(v) / x_max * plot_w;
    let label = |i: usize| -> String {
        labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("#{}", i + 1))
    };
    html! {
        svg class="chart categories" id=(chart.id) data-column=(chart.column)
            viewBox={ "0 0 " (n(BARS_W)) " " (n(height)) } role="img"
            aria-label={ "Category shares of " (chart.column) } xmlns="http://www.w3.org/2000/svg" {
            g class="grid" {
                @for t in &x_ticks {
                    line x1=(n(x(*t))) x2=(n(x(*t))) y1=(n(top)) y2=(n(top + plot_h)) {}
                }
            }
            @for i in 0..count {
                @let gy = top + GROUP_GAP / 2.0 + i as f64 * (group_h + GROUP_GAP);
                @let name = label(i);
                text class="label" x=(n(BARS_LABEL_W - 8.0)) y=(n(gy + group_h / 2.0 + 4.0)) text-anchor="end" {
                    title { (name) }
                    (shorten(&name, LABEL_CHARS))
                }
                @for (k, s) in series.iter().enumerate() {
                    @let v = s.values.get(i).copied().unwrap_or(0.0);
                    rect class=(s.class) x=(n(BARS_LABEL_W)) y=(n(gy + k as f64 * BAR_H))
                        width=(n((x(v) - BARS_LABEL_W).max(0.0))) height=(n(BAR_H - 1.0)) {
                        title { (s.name) " " (name) ": " (pct(v)) }
                    }
                }
            }
            g class="axis x" {
                line x1=(n(BARS_LABEL_W)) x2=(n(BARS_LABEL_W)) y1=(n(top)) y2=(n(top + plot_h)) {}
                @for t in &x_ticks {
                    text x=(n(x(*t))) y=(n(top + plot_h + 16.0)) text-anchor="middle" { (pct_tick(*t, x_step)) }
                }
            }
        }
    }
}

/// A chart with nothing to draw still takes its place (and its id), so the
/// page's layout and the one-chart-per-column count hold.
fn empty(chart: ChartId<'_>, w: f64, h: f64) -> Markup {
    html! {
        svg class="chart empty" id=(chart.id) data-column=(chart.column)
            viewBox={ "0 0 " (n(w)) " " (n(h)) } role="img"
            aria-label={ "No values to draw for " (chart.column) } xmlns="http://www.w3.org/2000/svg" {
            rect class="frame" x="0.5" y="0.5" width=(n(w - 1.0)) height=(n(h - 1.0)) rx="6" {}
            text x=(n(w / 2.0)) y=(n(h / 2.0 + 4.0)) text-anchor="middle" { "No values to draw" }
        }
    }
}

/// The x position of every bin boundary (`bins + 1` of them): to scale when
/// the edges allow it, equal slots otherwise.
fn bin_positions(edges: &[f64], bins: usize, left: f64, width: f64) -> Vec<f64> {
    let usable = edges.len() == bins + 1
        && edges.iter().all(|e| e.is_finite())
        && edges.windows(2).all(|w| w[1] > w[0]);
    if usable {
        let (lo, hi) = (edges[0], edges[bins]);
        let span = hi - lo;
        if span.is_finite() && span > 0.0 {
            return edges
                .iter()
                .map(|e| left + (e - lo) / span * width)
                .collect();
        }
    }
    (0..=bins)
        .map(|i| left + i as f64 / bins as f64 * width)
        .collect()
}

/// Labels for the `bins + 1` boundaries: the edges with as many significant
/// digits as it takes (3 to 6) for neighbours to differ; "—" where an edge is
/// missing or not finite.
fn edge_labels(edges: &[f64], bins: usize) -> Vec<String> {
    let at = |i: usize| edges.get(i).copied().filter(|e| e.is_finite());
    let mut labels = Vec::new();
    for digits in 3..=6 {
        labels = (0..=bins)
            .map(|i| at(i).map_or_else(|| "—".to_string(), |e| sig(e, digits)))
            .collect();
        let distinct = (0..bins).all(|i| match (at(i), at(i + 1)) {
            (Some(a), Some(b)) if a != b => labels[i] != labels[i + 1],
            _ => true,
        });
        if distinct {
            break;
        }
    }
    labels
}

/// Which of `count` ticks get a label: about `most` of them, evenly spaced,
/// always the first and the last.
fn thin(count: usize, most: usize) -> Vec<usize> {
    if count == 0 {
        return Vec::new();
    }
    let step = count.div_ceil(most.max(1)).max(1);
    let last = count - 1;
    let mut shown: Vec<usize> = (0..count).step_by(step).collect();
    if let Some(&end) = shown.last()
        && end != last
    {
        if last - end < step.div_ceil(2) && shown.len() > 1 {
            shown.pop();
        }
        shown.push(last);
    }
    shown
}

/// The first and last tick labels hug the plot so they stay inside the canvas.
fn anchor(i: usize, bins: usize) -> &'static str {
    if i == 0 {
        "start"
    } else if i == bins {
        "end"
    } else {
        "middle"
    }
}

/// A bin as "[a, b)" for tooltips.
fn bin_title(labels: &[String], i: usize) -> String {
    let a = labels.get(i).map_or("—", String::as_str);
    let b = labels.get(i + 1).map_or("—", String::as_str);
    format!("[{a}, {b})")
}

/// The largest finite share among the series (0 when there is none).
fn max_share(series: &[Series<'_>]) -> f64 {
    series
        .iter()
        .flat_map(|s| s.values.iter())
        .map(|v| clamp_share(*v))
        .fold(0.0, f64::max)
}

/// Shares drawn as given, but never negative, above 1 or NaN.
fn clamp_share(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// A share axis: its top and its ticks, on round shares.
struct Axis {
    /// The largest share the axis shows.
    top: f64,
    /// From 0 to `top`, `step` apart.
    ticks: Vec<f64>,
    /// The distance between ticks.
    step: f64,
}

/// About four intervals of 1, 2, 2.5 or 5 × 10ᵏ up to the first tick at or above
/// `max`; 0 to 100 % when there is nothing above zero.
fn axis(max: f64) -> Axis {
    let max = if max.is_finite() && max > 0.0 {
        max.min(1.0)
    } else {
        1.0
    };
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|v| *v >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag);
    let intervals = ((max / step) - 1e-9).ceil().max(1.0) as usize;
    Axis {
        top: step * intervals as f64,
        ticks: (0..=intervals).map(|i| step * i as f64).collect(),
        step,
    }
}

/// A tick's share as a percentage with the decimals the axis' step needs.
fn pct_tick(v: f64, step: f64) -> String {
    let step = step * 100.0;
    let decimals = (0..4)
        .find(|d| {
            let scaled = step * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-6
        })
        .unwrap_or(4) as usize;
    format!("{:.*}%", decimals, v * 100.0)
}

/// A share as a percentage for tooltips.
pub fn pct(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let p = v * 100.0;
    if p != 0.0 && p.abs() < 0.1 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

/// `x` with `digits` significant digits, trailing zeros dropped, thousands as
/// k/M/G beyond 10 000 and scientific below 0.001, so axis labels stay short.
pub fn sig(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if a < 1e-3 {
        let s = format!("{:.*e}", digits.saturating_sub(1).min(3), x);
        return match s.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim(mantissa.to_string())),
            None => s,
        };
    }
    for (scale, suffix) in [(1e9, "G"), (1e6, "M"), (1e4, "k")] {
        if a >= scale {
            let s = if suffix == "k" { 1e3 } else { scale };
            return format!("{}{suffix}", fixed_sig(x / s, digits));
        }
    }
    fixed_sig(x, digits)
}

/// Fixed-point with `digits` significant digits and no trailing zeros.
fn fixed_sig(x: f64, digits: usize) -> String {
    let a = x.abs();
    let decimals = if a >= 1.0 {
        // Digits left of the point use up the budget.
        digits as i64 - (a.log10().floor() as i64 + 1)
    } else {
        // Zeros right of the point do not.
        digits as i64 - a.log10().ceil() as i64
    };
    trim(format!("{:.*}", decimals.clamp(0, 12) as usize, x))
}

/// "1.500" → "1.5", "2.000" → "2", "-0" → "0".
fn trim(s: String) -> String {
    let t = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if t == "-0" { "0".into() } else { t }
}

/// A coordinate, to a tenth of a unit: precise enough, and short.
fn n(v: f64) -> String {
    if v.is_finite() {
        trim(format!("{v:.1}"))
    } else {
        "0".into()
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ChartId<'static> {
        ChartId {
            id: "chart-0",
            column: "x",
        }
    }

    #[test]
    fn significant_digits() {
        assert_eq!(sig(0.0, 3), "0");
        assert_eq!(sig(1.0, 3), "1");
        assert_eq!(sig(12.345, 3), "12.3");
        assert_eq!(sig(-0.5, 3), "-0.5");
        assert_eq!(sig(0.01234, 3), "0.0123");
        assert_eq!(sig(1234.6, 3), "1235");
        assert_eq!(sig(12_345.0, 3), "12.3k");
        assert_eq!(sig(2.5e6, 3), "2.5M");
        assert_eq!(sig(0.000_12, 3), "1.2e-4");
        assert_eq!(sig(-0.000_123_4, 3), "-1.23e-4");
        assert_eq!(sig(f64::NAN, 3), "—");
    }

    #[test]
    fn edges_get_the_digits_they_need() {
        let labels = edge_labels(&[100.01, 100.02, 100.03], 2);
        assert_eq!(labels, ["100.01", "100.02", "100.03"]);
        let labels = edge_labels(&[0.0, f64::INFINITY], 1);
        assert_eq!(labels, ["0", "—"]);
        assert_eq!(edge_labels(&[], 2), ["—", "—", "—"]);
    }

    #[test]
    fn nice_axis() {
        let tops = |m: f64| {
            let a = axis(m);
            (a.top, a.ticks.len())
        };
        assert_eq!(tops(0.0), (1.0, 5));
        assert_eq!(tops(f64::NAN), (1.0, 5));
        assert_eq!(tops(0.42), (0.6000000000000001, 4));
        assert_eq!(tops(0.123), (0.15000000000000002, 4));
        assert_eq!(tops(0.2), (0.2, 5));
        assert_eq!(tops(0.9), (1.0, 5));
        assert_eq!(pct_tick(0.15, 0.05), "15%");
        assert_eq!(pct_tick(0.005, 0.005), "0.5%");
        assert_eq!(pct_tick(0.25, 0.25), "25%");
        assert_eq!(pct_tick(0.075, 0.025), "7.5%");
    }

    #[test]
    fn thinning_keeps_both_ends() {
        assert_eq!(thin(0, 8), Vec::<usize>::new());
        assert_eq!(thin(1, 8), [0]);
        assert_eq!(thin(5, 8), [0, 1, 2, 3, 4]);
        let t = thin(21, 8);
        assert_eq!(t.first(), Some(&0));
        assert_eq!(t.last(), Some(&20));
        assert!(t.len() <= 9);
    }

    #[test]
    fn degenerate_histograms_draw() {
        let none: [Series; 0] = [];
        assert!(histogram(id(), &[], &none).0.contains("No values"));
        let empty = [Series {
            name: "r",
            class: "ref",
            values: &[],
        }];
        assert!(histogram(id(), &[1.0], &empty).0.contains("No values"));
        // One zero-width bin, a NaN share, mismatched edges.
        let one = [Series {
            name: "r",
            class: "ref",
            values: &[f64::NAN],
        }];
        let svg = histogram(id(), &[5.0, 5.0], &one).0;
        assert!(svg.contains("<rect class=\"ref\""));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let svg = histogram(id(), &[0.0], &one).0;
        assert!(svg.contains("<rect class=\"ref\""));
    }
}
