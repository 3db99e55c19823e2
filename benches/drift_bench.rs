//! `cargo bench --bench drift_bench`: `column_drift` over the 14 monitored
//! features of the example, 7 043 reference rows (2024-01-31) against 7 043
//! current rows (2024-02-29), printed in `reconcile_bench`'s format beside the
//! Python stack's figure (Evidently's `DataDriftPreset` on the same columns).

#[path = "../examples/drift_compare.rs"]
#[allow(dead_code)]
mod drift_compare;

use std::path::Path;
use std::time::{Duration, Instant};

use reconcile::drift::{self, ColumnOptions};

const RUNS: usize = 50;

/// The monitored features of `specs/features.yaml`.
const FEATURES: [&str; 14] = [
    "months_active",
    "monthly_fee",
    "paperless_billing",
    "plan_stream_tv",
    "plan_stream_movies",
    "net_service",
    "watch_hours_30d",
    "avg_session_mins_7d",
    "unique_devices_30d",
    "skips_7d",
    "rebuffer_events_7d",
    "failed_payments_90d",
    "support_tickets_90d",
    "ticket_avg_resolution_hrs_90d",
];

fn stats(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
    )
}

fn row(name: &str, samples: Vec<Duration>, target: &str, peer: &str) {
    let (min, median, max) = stats(samples);
    println!(
        "{name:<46} median {median:>8.1} ms  (min {min:.1}, max {max:.1})   target {target:<10} python stack: {peer}"
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pairs = drift_compare::load_windows(
        &root.join("specs/data/2024-01-31"),
        &root.join("specs/data/2024-02-29"),
        &drift_compare::default_tables(),
    )
    .expect("load the example windows");
    let features: Vec<_> = FEATURES
        .iter()
        .map(|f| {
            pairs
                .iter()
                .find(|p| p.name == *f)
                .unwrap_or_else(|| panic!("feature {f} not in the example tables"))
        })
        .collect();
    let rows = features[0].reference.len();
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t0 = Instant::now();
        for p in &features {
            let d =
                drift::column_drift(&p.name, &p.reference, &p.current, ColumnOptions::default())
                    .expect("drift");
            std::hint::black_box(d);
        }
        samples.push(t0.elapsed());
    }
    row(
        &format!("drift: 14 features, {rows} vs {rows} rows"),
        samples,
        "< 20 ms",
        "2.7 s in process (Evidently)",
    );
}
