//! The UI's own charts as inline SVG, written through maud so every label is
//! escaped: a version's ROC curve and confusion matrix, and sparklines (a
//! monitor column's drift score over its evaluations, an endpoint's request
//! rate and latency). Colours come from the stylesheet's classes. Degenerate
//! input (no points, non-finite values) draws a frame with a note, never panics.

use maud::{Markup, html};

/// A coordinate in SVG user units, one decimal.
fn n(v: f64) -> String {
    if v.is_finite() {
        let s = format!("{v:.1}");
        s.strip_suffix(".0").map_or(s.clone(), str::to_string)
    } else {
        "0".into()
    }
}

/// Side of the ROC plot, in user units.
const ROC_SIDE: f64 = 260.0;
/// Margins of the ROC chart: top, right, bottom, left.
const ROC_M: (f64, f64, f64, f64) = (12.0, 14.0, 42.0, 46.0);

/// The ROC curve of `points` (`[fpr, tpr]`, from `[0, 0]` to `[1, 1]`) with
/// the chance diagonal and the area under it shaded; `auc` in the caption.
pub fn roc(points: &[[f64; 2]], auc: Option<f64>) -> Markup {
    let (top, right, bottom, left) = ROC_M;
    let (w, h) = (left + ROC_SIDE + right, top + ROC_SIDE + bottom);
    let x = |v: f64| left + v.clamp(0.0, 1.0) * ROC_SIDE;
    let y = |v: f64| top + (1.0 - v.clamp(0.0, 1.0)) * ROC_SIDE;
    let finite: Vec<[f64; 2]> = points
        .iter()
        .filter(|p| p[0].is_finite() && p[1].is_finite())
        .copied()
        .collect();
    let curve: String = finite
        .iter()
        .enumerate()
        .map(|(i, [fx, fy])| {
            format!(
                "{}{},{}",
                if i == 0 { "M" } else { " L" },
                n(x(*fx)),
                n(y(*fy))
            )
        })
        .collect();
    let area = match (finite.first(), finite.last()) {
        (Some(first), Some(last)) => format!(
            "{curve} L{},{} L{},{} Z",
            n(x(last[0])),
            n(y(0.0)),
            n(x(first[0])),
            n(y(0.0))
        ),
        _ => String::new(),
    };
    let ticks = [0.0, 0.25, 0.5, 0.75, 1.0];
    let label = match auc {
        Some(a) => format!("ROC curve, AUC {}", super::layout::number(a)),
        None => "ROC curve".to_string(),
    };
    html! {
        svg class="chart roc" viewBox={ "0 0 " (n(w)) " " (n(h)) } width=(n(w)) height=(n(h))
            role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            g class="grid" {
                @for t in ticks {
                    line x1=(n(x(t))) x2=(n(x(t))) y1=(n(y(0.0))) y2=(n(y(1.0))) {}
                    line x1=(n(x(0.0))) x2=(n(x(1.0))) y1=(n(y(t))) y2=(n(y(t))) {}
                }
            }
            path class="diagonal" d={ "M" (n(x(0.0))) "," (n(y(0.0))) " L" (n(x(1.0))) "," (n(y(1.0))) } {}
            @if finite.is_empty() {
                text x=(n(x(0.5))) y=(n(y(0.5))) text-anchor="middle" { "no points" }
            } @else {
                path class="area" d=(area) {}
                path class="curve" d=(curve) {}
            }
            g class="axis" {
                line x1=(n(x(0.0))) x2=(n(x(1.0))) y1=(n(y(0.0))) y2=(n(y(0.0))) {}
                line x1=(n(x(0.0))) x2=(n(x(0.0))) y1=(n(y(0.0))) y2=(n(y(1.0))) {}
                @for t in ticks {
                    text x=(n(x(t))) y=(n(y(0.0) + 15.0)) text-anchor="middle" { (t) }
                    text x=(n(x(0.0) - 6.0)) y=(n(y(t) + 3.5)) text-anchor="end" { (t) }
                }
                text class="label" x=(n(x(0.5))) y=(n(h - 6.0)) text-anchor="middle" { "False positive rate" }
                text class="label" x="12" y=(n(y(0.5))) text-anchor="middle"
                    transform={ "rotate(-90 12 " (n(y(0.5))) ")" } { "True positive rate" }
            }
        }
    }
}

/// The confusion matrix `[[tn, fp], [fn, tp]]` as four squares, actual
/// classes in rows and predicted in columns; a square's shade is its share
/// of its actual class (green when right, red when wrong).
pub fn confusion(m: [[u64; 2]; 2]) -> Markup {
    let cell = 110.0;
    let (left, top) = (92.0, 40.0);
    let (w, h) = (left + 2.0 * cell + 12.0, top + 2.0 * cell + 12.0);
    let names = ["0 (stays)", "1 (churns)"];
    let words = [
        ["true negatives", "false positives"],
        ["false negatives", "true positives"],
    ];
    html! {
        svg class="chart confusion" viewBox={ "0 0 " (n(w)) " " (n(h)) } width=(n(w)) height=(n(h))
            role="img" aria-label="Confusion matrix" xmlns="http://www.w3.org/2000/svg" {
            title { "Confusion matrix at threshold 0.5" }
            text class="label" x=(n(left + cell)) y="12" text-anchor="middle" { "predicted" }
            text class="label" x="12" y=(n(top + cell)) text-anchor="middle"
                transform={ "rotate(-90 12 " (n(top + cell)) ")" } { "actual" }
            @for (c, name) in names.iter().enumerate() {
                text x=(n(left + (c as f64 + 0.5) * cell)) y=(n(top - 8.0)) text-anchor="middle" { (name) }
            }
            @for (r, row) in m.iter().enumerate() {
                @let total = (row[0] + row[1]).max(1) as f64;
                text x=(n(left - 8.0)) y=(n(top + (r as f64 + 0.5) * cell + 4.0)) text-anchor="end" { (names[r]) }
                @for (c, count) in row.iter().enumerate() {
                    @let share = *count as f64 / total;
                    @let class = if r == c { "cell right" } else { "cell wrong" };
                    @let dark = share > 0.45;
                    rect class=(class) x=(n(left + c as f64 * cell)) y=(n(top + r as f64 * cell))
                        width=(n(cell)) height=(n(cell)) fill-opacity=(format!("{:.2}", 0.12 + 0.78 * share)) {
                        title { (words[r][c]) ": " (count) " (" (super::layout::number(share * 100.0)) " % of actual " (r) ")" }
                    }
                    text class={ "count" @if dark { " dark" } } x=(n(left + (c as f64 + 0.5) * cell))
                        y=(n(top + (r as f64 + 0.5) * cell + 6.0)) text-anchor="middle" { (count) }
                }
            }
        }
    }
}

/// Width and height of a sparkline.
const SPARK: (f64, f64) = (240.0, 48.0);

/// A sparkline of `values` (oldest first) scaled to their range (and to
/// `threshold`, drawn dashed, when given); `marked` points (drifted, say)
/// are drawn in the alarm colour. `label` is its accessible name and tooltip.
pub fn sparkline(values: &[f64], threshold: Option<f64>, marked: &[bool], label: &str) -> Markup {
    let (w, h) = SPARK;
    let pad = 5.0;
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mut lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if let Some(t) = threshold.filter(|t| t.is_finite()) {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    if lo.is_finite() && hi.is_finite() && hi - lo < 1e-12 {
        hi = lo + 1.0;
        lo -= 1.0;
    }
    let count = values.len();
    let x = |i: usize| {
        if count <= 1 {
            w / 2.0
        } else {
            pad + i as f64 / (count - 1) as f64 * (w - 2.0 * pad)
        }
    };
    let y = |v: f64| h - pad - (v - lo) / (hi - lo) * (h - 2.0 * pad);
    let points: String = values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| format!("{},{} ", n(x(i)), n(y(*v))))
        .collect();
    html! {
        svg class="spark" viewBox={ "0 0 " (n(w)) " " (n(h)) } width=(n(w)) height=(n(h))
            role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            rect class="frame" x="0.5" y="0.5" width=(n(w - 1.0)) height=(n(h - 1.0)) {}
            @if finite.is_empty() {
                text x=(n(w / 2.0)) y=(n(h / 2.0 + 4.0)) text-anchor="middle" { "no data yet" }
            } @else {
                @if let Some(t) = threshold.filter(|t| t.is_finite()) {
                    line class="threshold" x1="0" x2=(n(w)) y1=(n(y(t))) y2=(n(y(t))) {}
                }
                polyline points=(points.trim_end()) {}
                @for (i, v) in values.iter().enumerate() {
                    @if v.is_finite() && (count <= 30 || marked.get(i).copied().unwrap_or(false) || i + 1 == count) {
                        circle class=[marked.get(i).copied().unwrap_or(false).then_some("drifted")]
                            cx=(n(x(i))) cy=(n(y(*v))) r="2.2" {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_input_draws_without_nan() {
        for page in [
            roc(&[], None).into_string(),
            roc(&[[f64::NAN, 0.5], [0.0, 0.0], [1.0, 1.0]], Some(f64::NAN)).into_string(),
            sparkline(&[], None, &[], "x").into_string(),
            sparkline(&[f64::NAN, 1.0], Some(f64::INFINITY), &[true], "x").into_string(),
            sparkline(&[2.0, 2.0, 2.0], Some(2.0), &[], "flat").into_string(),
            confusion([[0, 0], [0, 0]]).into_string(),
        ] {
            assert!(!page.contains("NaN") && !page.contains("inf"), "{page}");
            assert_eq!(page.matches("<svg").count(), 1);
        }
    }

    #[test]
    fn labels_are_escaped_and_counts_shown() {
        let s = sparkline(&[1.0, 2.0], None, &[], "<script>alert(1)</script>").into_string();
        assert!(!s.contains("<script>") && s.contains("&lt;script&gt;"));
        let c = confusion([[900, 100], [50, 250]]).into_string();
        for count in ["900", "100", "50", "250"] {
            assert!(c.contains(&format!(">{count}</text>")), "{count} missing");
        }
        let r = roc(&[[0.0, 0.0], [0.2, 0.7], [1.0, 1.0]], Some(0.85)).into_string();
        assert!(r.contains("AUC 0.85") && r.contains("class=\"curve\""));
    }
}
