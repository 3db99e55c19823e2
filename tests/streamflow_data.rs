//! The committed StreamFlow CSVs are exactly what the seeded generator writes,
//! and they have the shape DESIGN §4 describes.

#[path = "../examples/streamflow_gen.rs"]
mod streamflow_gen;

use std::path::Path;

const TABLES: [&str; 6] = [
    "users",
    "subscriptions",
    "usage_agg_30d",
    "payments_agg_90d",
    "support_agg_90d",
    "labels",
];

fn column(path: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let idx = header.iter().position(|h| *h == name).expect("column");
    lines
        .map(|l| l.split(',').nth(idx).unwrap_or_default().to_string())
        .collect()
}

#[test]
fn committed_data_matches_the_generator() {
    let tmp = tempfile::tempdir().expect("tempdir");
    streamflow_gen::generate(tmp.path()).expect("generate");
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/data");
    for month in ["2024-01-31", "2024-02-29"] {
        for table in TABLES {
            let rel = format!("{month}/{table}.csv");
            let fresh = std::fs::read(tmp.path().join(&rel)).expect("generated");
            let old = std::fs::read(committed.join(&rel)).expect("committed");
            assert!(
                fresh == old,
                "specs/data/{rel} is stale: run `cargo run --release --example streamflow_gen -- --out specs/data`"
            );
        }
    }
}

#[test]
fn data_has_the_documented_shape_and_drift() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/data");
    let rate = |m: &str| {
        let v = column(&data.join(m).join("labels.csv"), "churn_label");
        assert_eq!(v.len(), streamflow_gen::USERS);
        v.iter().filter(|x| *x == "True").count() as f64 / v.len() as f64
    };
    let (m0, m1) = (rate("2024-01-31"), rate("2024-02-29"));
    assert!((0.24..=0.28).contains(&m0), "2024-01-31 churn {m0}");
    assert!(
        m1 < m0 - 0.03,
        "2024-02-29 churn {m1} should be lower than {m0}"
    );
    let mean = |m: &str, t: &str, c: &str| {
        let v = column(&data.join(m).join(format!("{t}.csv")), c);
        v.iter().filter_map(|x| x.parse::<f64>().ok()).sum::<f64>() / v.len() as f64
    };
    assert!(
        mean("2024-02-29", "usage_agg_30d", "rebuffer_events_7d")
            > 1.5 * mean("2024-01-31", "usage_agg_30d", "rebuffer_events_7d")
    );
    assert!(
        mean("2024-02-29", "payments_agg_90d", "failed_payments_90d")
            > mean("2024-01-31", "payments_agg_90d", "failed_payments_90d")
    );
    assert!(
        mean("2024-02-29", "support_agg_90d", "support_tickets_90d")
            > mean("2024-01-31", "support_agg_90d", "support_tickets_90d")
    );
    // Profiles stay the same between months.
    let users0 = std::fs::read(data.join("2024-01-31/users.csv")).expect("users");
    let users1 = std::fs::read(data.join("2024-02-29/users.csv")).expect("users");
    assert_eq!(users0, users1);
    // Warts: empty streaming flags without internet, zero tenures with empty total_paid.
    let subs = data.join("2024-01-31/subscriptions.csv");
    let net = column(&subs, "net_service");
    let tv = column(&subs, "plan_stream_tv");
    let empty_tv = tv.iter().filter(|x| x.is_empty()).count() as f64 / tv.len() as f64;
    assert!((0.19..0.25).contains(&empty_tv), "{empty_tv}");
    assert!(
        net.iter()
            .zip(&tv)
            .all(|(n, t)| (n == "No") == t.is_empty())
    );
    let months = column(&subs, "months_active");
    let paid = column(&subs, "total_paid");
    let zero: Vec<usize> = (0..months.len()).filter(|i| months[*i] == "0").collect();
    assert_eq!(zero.len(), 11);
    assert!(zero.iter().all(|i| paid[*i].is_empty()));
    assert!(
        column(&data.join("2024-01-31/users.csv"), "has_dependents")
            .iter()
            .all(|v| v == "False")
    );
}
