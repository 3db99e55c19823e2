//! The drift report as a browser sees it: rendered to a file, opened in
//! headless Chromium, its DOM dumped and a screenshot taken. Unit tests check
//! the markup as a string; this checks that a real HTML parser builds the
//! page we meant (one chart per column, the verdict) and that it paints.
//!
//! Without Chromium on `PATH` the test is skipped with a notice, unless
//! `CI=true`, where a missing browser is a broken runner and fails the test.

#[path = "common/chromium.rs"]
mod chromium;

use chromium::{chromium, file_url};
use reconcile::drift::report::{ReportContext, html};
use reconcile::drift::{ColumnDrift, ColumnKind, Distribution, Method, dataset_drift};

/// Shares of a bell curve centred on `mu` over `bins` bins of [0, 10).
fn bell(mu: f64, sigma: f64, bins: usize) -> Vec<f64> {
    let raw: Vec<f64> = (0..bins)
        .map(|i| {
            let x = (i as f64 + 0.5) * 10.0 / bins as f64;
            (-(x - mu).powi(2) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f64 = raw.iter().sum();
    raw.iter().map(|v| v / total).collect()
}

fn numerical(name: &str, method: Method, score: f64, drifted: bool, cur_mu: f64) -> ColumnDrift {
    let bins = 20;
    ColumnDrift {
        column: name.into(),
        kind: ColumnKind::Numerical,
        method,
        score,
        threshold: method.default_threshold(),
        drifted,
        reference_rows: 48_210,
        current_rows: 6_904,
        reference_nulls: 12,
        current_nulls: 131,
        distribution: Distribution::Histogram {
            edges: (0..=bins).map(|i| i as f64 * 0.5).collect(),
            reference: bell(5.0, 1.6, bins),
            current: bell(cur_mu, 1.8, bins),
        },
    }
}

fn categorical(name: &str, labels: &[&str], reference: &[f64], current: &[f64]) -> ColumnDrift {
    ColumnDrift {
        column: name.into(),
        kind: ColumnKind::Categorical,
        method: Method::ChiSquare,
        score: 0.4127,
        threshold: 0.05,
        drifted: false,
        reference_rows: 48_222,
        current_rows: 7_035,
        reference_nulls: 0,
        current_nulls: 0,
        distribution: Distribution::Categories {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            reference: reference.to_vec(),
            current: current.to_vec(),
        },
    }
}

#[test]
fn report_renders_in_chromium() {
    let Some(browser) = chromium::chromium_or_skip("report_browser") else {
        return;
    };

    let ctx = ReportContext {
        monitor: "churn-model / features".into(),
        evaluated_at: "2026-03-01T12:00:00Z".into(),
        reference: "training snapshot 2026-01-01 … 2026-01-31".into(),
        current: "last 7 days (2026-02-22 … 2026-03-01)".into(),
    };
    let drift = dataset_drift(
        vec![
            numerical("tenure_months", Method::Ks, 0.3721, false, 5.1),
            numerical("monthly_charges", Method::Wasserstein, 0.2873, true, 6.6),
            categorical(
                "plan",
                &["basic", "standard", "premium", "<b>enterprise</b>"],
                &[0.42, 0.33, 0.17, 0.08],
                &[0.40, 0.35, 0.16, 0.09],
            ),
            categorical(
                "payment_method",
                &["card", "bank transfer", "electronic check", "mailed check"],
                &[0.38, 0.27, 0.22, 0.13],
                &[0.36, 0.29, 0.23, 0.12],
            ),
        ],
        0.25,
    );
    let page = html(&ctx, &drift);

    let work = tempfile::tempdir().expect("temp dir");
    let report = work.path().join("report.html");
    std::fs::write(&report, &page).expect("write report");
    let url = file_url(&report);

    // The DOM as Chromium parsed it.
    let dom_path = work.path().join("dom.html");
    chromium(
        &browser,
        work.path(),
        &["--dump-dom".to_string()],
        &url,
        &dom_path,
    );
    let dom = std::fs::read_to_string(&dom_path).expect("read dom");
    assert_eq!(
        dom.matches("<svg class=\"chart").count(),
        drift.columns.len(),
        "one chart per column"
    );
    for c in &drift.columns {
        assert!(
            dom.contains(&format!("data-column=\"{}\"", c.column)),
            "no chart for {}",
            c.column
        );
    }
    assert!(dom.contains("Dataset drift: detected"), "verdict missing");
    assert!(dom.contains("1 of 4 columns (25&nbsp;%) drifted, ≥ share 0.25"));
    assert_eq!(dom.matches("<tr class=\"drifted\"").count(), 1);
    assert!(!dom.contains("<b>"), "a label became markup");
    assert!(dom.contains("&lt;b&gt;enterprise&lt;/b&gt;"));

    // The page as Chromium paints it at 1200 px.
    let png = work.path().join("report.png");
    chromium(
        &browser,
        work.path(),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1200,2000".to_string(),
        ],
        &url,
        &work.path().join("screenshot-stdout.log"),
    );
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10 * 1024, "screenshot is {size} bytes");

    // Kept where a person can look at it after the temp dir is gone.
    let keep = std::env::temp_dir().join("reconcile-report-browser");
    std::fs::create_dir_all(&keep).expect("keep dir");
    std::fs::copy(&png, keep.join("report.png")).expect("keep screenshot");
    std::fs::copy(&report, keep.join("report.html")).expect("keep report");
    println!(
        "report_browser: screenshot at {}",
        keep.join("report.png").display()
    );
}
