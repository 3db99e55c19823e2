//! `cargo bench --bench train_bench`: fit time and validation accuracy of our
//! random forest and decision tree (`reconcile::ml::forest`) on the StreamFlow
//! training set, beside scikit-learn's on the very same rows.
//!
//! The training set is built here with std only (no other part of the crate),
//! from `specs/data/2024-01-31/*.csv`: the 14 churn features joined on
//! `user_id`, encoded as the trainer does (numbers as they are, booleans 0/1,
//! nulls filled with 0 / the training mean plus a `__missing` column, strings
//! one-hot), and a stratified 25 % validation split with seed 42.
//!
//! The encoded sets are written to `target/streamflow_{train,valid}.csv`; when
//! `python3` has scikit-learn, `benches/sklearn_compare.py` fits its models on
//! them and the two sets of figures are printed together.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ndarray::Array2;
use reconcile::ml::forest::{MaxFeatures, RandomForest, RandomForestParams};
use reconcile::ml::metrics::{Metrics, evaluate};

/// Fits per configuration; the best time is reported.
const RUNS: usize = 3;
const SEED: u64 = 42;
const VALID_FRACTION: f64 = 0.25;

/// Figures of the Python stack on this data (docs/PERFORMANCE.md, "The Python stack we measure against"), shown when
/// scikit-learn is not installed: (name, fit seconds, AUC).
const PEER: [(&str, f64, f64); 3] = [
    ("sklearn forest (300 trees)", 2.5, 0.8196),
    ("sklearn logistic (scaled)", 0.06, 0.8305),
    ("sklearn tree", 0.07, 0.654),
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Number,
    Bool,
    Text,
}

/// (table, column, kind) of the 14 features, in matrix order.
const FEATURES: [(&str, &str, Kind); 14] = [
    ("subscriptions", "months_active", Kind::Number),
    ("subscriptions", "monthly_fee", Kind::Number),
    ("subscriptions", "paperless_billing", Kind::Bool),
    ("subscriptions", "plan_stream_tv", Kind::Bool),
    ("subscriptions", "plan_stream_movies", Kind::Bool),
    ("subscriptions", "net_service", Kind::Text),
    ("usage_agg_30d", "watch_hours_30d", Kind::Number),
    ("usage_agg_30d", "avg_session_mins_7d", Kind::Number),
    ("usage_agg_30d", "unique_devices_30d", Kind::Number),
    ("usage_agg_30d", "skips_7d", Kind::Number),
    ("usage_agg_30d", "rebuffer_events_7d", Kind::Number),
    ("payments_agg_90d", "failed_payments_90d", Kind::Number),
    ("support_agg_90d", "support_tickets_90d", Kind::Number),
    (
        "support_agg_90d",
        "ticket_avg_resolution_hrs_90d",
        Kind::Number,
    ),
];

/// A CSV table keyed by its first column (`user_id`).
struct Table {
    header: Vec<String>,
    rows: HashMap<String, Vec<String>>,
}

fn read_table(dir: &Path, name: &str) -> Table {
    let path = dir.join(format!("{name}.csv"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        !text.contains('"'),
        "{} has quoted fields; this bench splits on ',' only",
        path.display()
    );
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut rows = HashMap::new();
    for line in lines {
        let cells: Vec<String> = line.split(',').map(str::to_owned).collect();
        assert_eq!(cells.len(), header.len(), "{}: {line}", path.display());
        rows.insert(cells[0].clone(), cells);
    }
    Table { header, rows }
}

/// Appends the encoded cells of one row (by index) of one feature.
type EncodeCells = Box<dyn Fn(usize, &mut Vec<f64>)>;

/// The encoded data set.
struct Encoded {
    columns: Vec<String>,
    x_train: Array2<f64>,
    y_train: Vec<usize>,
    x_valid: Array2<f64>,
    y_valid: Vec<usize>,
}

fn build(dir: &Path) -> Encoded {
    let labels = read_table(dir, "labels");
    let label_col = labels
        .header
        .iter()
        .position(|h| h == "churn_label")
        .expect("labels.csv has churn_label");
    let mut keyed: Vec<(String, usize)> = labels
        .rows
        .iter()
        .filter_map(|(k, r)| match r[label_col].as_str() {
            "True" => Some((k.clone(), 1)),
            "False" => Some((k.clone(), 0)),
            _ => None, // null label: not a training row
        })
        .collect();
    keyed.sort();
    let y: Vec<usize> = keyed.iter().map(|(_, l)| *l).collect();

    let mut tables: HashMap<&str, Table> = HashMap::new();
    for (t, _, _) in FEATURES {
        tables.entry(t).or_insert_with(|| read_table(dir, t));
    }
    // Raw cells (None = null) per feature, in row order.
    let raw: Vec<Vec<Option<String>>> = FEATURES
        .iter()
        .map(|(t, c, _)| {
            let table = &tables[t];
            let col = table
                .header
                .iter()
                .position(|h| h == c)
                .unwrap_or_else(|| panic!("{t}.csv has no column {c}"));
            keyed
                .iter()
                .map(|(k, _)| {
                    table
                        .rows
                        .get(k)
                        .map(|r| r[col].clone())
                        .filter(|v| !v.is_empty())
                })
                .collect()
        })
        .collect();

    // The split apply uses: the same rows for us and for scikit-learn.
    let (train, valid) = reconcile::ml::train::split(&y, VALID_FRACTION, true, SEED);
    // Per feature: a function from a row to its encoded cells, learned on `train`.
    let mut columns = Vec::new();
    let mut encoders: Vec<EncodeCells> = Vec::new();
    for ((_, name, kind), cells) in FEATURES.iter().zip(&raw) {
        let nulls = train.iter().filter(|&&i| cells[i].is_none()).count();
        let cells = cells.clone();
        match kind {
            Kind::Number | Kind::Bool => {
                let value = move |s: &str| -> f64 {
                    match s {
                        "True" => 1.0,
                        "False" => 0.0,
                        s => s.parse().unwrap_or_else(|_| panic!("not a number: {s}")),
                    }
                };
                let fill = if *kind == Kind::Bool {
                    0.0
                } else {
                    let present: Vec<f64> = train
                        .iter()
                        .filter_map(|&i| cells[i].as_deref().map(value))
                        .collect();
                    present.iter().sum::<f64>() / present.len().max(1) as f64
                };
                columns.push(name.to_string());
                if nulls > 0 {
                    columns.push(format!("{name}__missing"));
                }
                encoders.push(Box::new(move |i, out| {
                    out.push(cells[i].as_deref().map_or(fill, value));
                    if nulls > 0 {
                        out.push(f64::from(u8::from(cells[i].is_none())));
                    }
                }));
            }
            Kind::Text => {
                let categories: BTreeSet<String> =
                    train.iter().filter_map(|&i| cells[i].clone()).collect();
                let categories: Vec<String> = categories.into_iter().collect();
                columns.extend(categories.iter().map(|c| format!("{name}={c}")));
                if nulls > 0 {
                    columns.push(format!("{name}=null"));
                }
                encoders.push(Box::new(move |i, out| {
                    for c in &categories {
                        out.push(f64::from(u8::from(cells[i].as_deref() == Some(c))));
                    }
                    if nulls > 0 {
                        out.push(f64::from(u8::from(cells[i].is_none())));
                    }
                }));
            }
        }
    }
    let matrix = |rows: &[usize]| -> Array2<f64> {
        let mut data = Vec::with_capacity(rows.len() * columns.len());
        for &i in rows {
            for e in &encoders {
                e(i, &mut data);
            }
        }
        Array2::from_shape_vec((rows.len(), columns.len()), data).expect("encoded width")
    };
    Encoded {
        x_train: matrix(&train),
        y_train: train.iter().map(|&i| y[i]).collect(),
        x_valid: matrix(&valid),
        y_valid: valid.iter().map(|&i| y[i]).collect(),
        columns,
    }
}

fn write_csv(path: &Path, columns: &[String], x: &Array2<f64>, y: &[usize]) {
    let mut out = columns.join(",");
    out.push_str(",label\n");
    for (row, label) in x.rows().into_iter().zip(y) {
        for v in row {
            out.push_str(&format!("{v},"));
        }
        out.push_str(&format!("{label}\n"));
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn line(name: &str, fit: Duration, m: &Metrics) -> String {
    format!(
        "{name:<36} fit {:>8.3} s   auc {:.4}   f1 {:.4}   acc {:.4}",
        fit.as_secs_f64(),
        m.auc,
        m.f1,
        m.accuracy
    )
}

/// Best-of-[`RUNS`] fit, then validation metrics of the last forest.
fn measure(
    name: &str,
    params: &RandomForestParams,
    data: &Encoded,
    threads: Option<usize>,
) -> (Duration, Metrics, RandomForest) {
    let fit = || {
        params
            .fit_matrix(data.x_train.view(), &data.y_train, None)
            .expect("fit")
    };
    let mut best = Duration::MAX;
    let mut forest = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        let f = match threads {
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("thread pool")
                .install(fit),
            None => fit(),
        };
        best = best.min(started.elapsed());
        forest = Some(f);
    }
    let forest = forest.expect("at least one run");
    let m = evaluate(&data.y_valid, &forest.predict_proba(data.x_valid.view()));
    println!("{}   ({} nodes)", line(name, best, &m), forest.n_nodes());
    (best, m, forest)
}

/// (fit seconds, auc) of a line printed by [`line`] or by sklearn_compare.py.
fn parse_line(l: &str) -> Option<(String, f64, f64)> {
    let (name, rest) = l.split_once(" fit ")?;
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    let secs = tokens.first()?.parse().ok()?;
    let auc_at = tokens.iter().position(|t| *t == "auc")?;
    let auc = tokens.get(auc_at + 1)?.parse().ok()?;
    Some((name.trim().to_owned(), secs, auc))
}

/// One row at a time, as the endpoint scores: µs per row over the validation
/// rows (best of 5 passes), the compact 8-byte walk beside the packed one.
fn single_rows(forest: &RandomForest, data: &Encoded) {
    let rows: Vec<Vec<f64>> = data
        .x_valid
        .rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
    let time = |f: &dyn Fn(&[f64]) -> f64| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let mut acc = 0.0;
            for r in &rows {
                acc += f(std::hint::black_box(r));
            }
            std::hint::black_box(acc);
            best = best.min(started.elapsed().as_secs_f64() * 1e6 / rows.len() as f64);
        }
        best
    };
    let compact = time(&|r| forest.predict_proba_row(r));
    let packed = time(&|r| forest.packed_proba_row(r));
    let (max_depth, mean_depth) = forest.depths();
    println!(
        "{:<36} {compact:>8.2} µs per row (8-byte nodes), {packed:.2} µs (16-byte nodes); {} trees, {} nodes, leaves at depth {mean_depth:.1} on average, {max_depth} at most",
        "  one row at a time",
        forest.n_trees(),
        forest.n_nodes()
    );
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = build(&root.join("specs/data/2024-01-31"));
    let positives = data.y_train.iter().sum::<usize>();
    println!(
        "StreamFlow 2024-01-31: {} train rows ({positives} churned), {} validation rows, {} encoded columns",
        data.y_train.len(),
        data.y_valid.len(),
        data.columns.len()
    );
    let target = root.join("target");
    std::fs::create_dir_all(&target).expect("target dir");
    let (train_csv, valid_csv) = (
        target.join("streamflow_train.csv"),
        target.join("streamflow_valid.csv"),
    );
    write_csv(&train_csv, &data.columns, &data.x_train, &data.y_train);
    write_csv(&valid_csv, &data.columns, &data.x_valid, &data.y_valid);

    let cores = rayon::current_num_threads();
    println!("\nreconcile (best of {RUNS} fits; validation metrics at threshold 0.5)");
    let forest = RandomForestParams {
        trees: 300,
        max_features: MaxFeatures::Sqrt,
        max_depth: None,
        min_samples_leaf: 1,
        balanced: true,
        bootstrap: true,
        max_samples: None,
        seed: SEED,
    };
    let (ours_forest, ours_forest_m, f_all) = measure(
        &format!("forest (300 trees, {cores} threads)"),
        &forest,
        &data,
        None,
    );
    single_rows(&f_all, &data);
    let (_, _, f_one) = measure("forest (300 trees, 1 thread)", &forest, &data, Some(1));
    assert_eq!(f_all, f_one, "the forest depends on the thread count");
    let tree = RandomForestParams::decision_tree(true, SEED, None);
    let (ours_tree, ours_tree_m, _) = measure("tree (balanced)", &tree, &data, None);
    // linfa-logistic as `algorithm: logisticRegression` runs it (standardised,
    // balanced by prior correction), on the same rows.
    let spec = reconcile::kinds::training_run::spec::LogisticSpec {
        alpha: 1.0,
        max_iterations: 200,
        class_weight: reconcile::kinds::training_run::spec::ClassWeight::Balanced,
    };
    let mut best = Duration::MAX;
    let mut fitted = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        let est = reconcile::ml::train::logistic(
            data.x_train.clone(),
            ndarray::Array1::from(data.y_train.clone()),
            &spec,
        )
        .expect("logistic");
        best = best.min(started.elapsed());
        fitted = Some(est);
    }
    let est = fitted.expect("a fit");
    let proba: Vec<f64> = data
        .x_valid
        .rows()
        .into_iter()
        .map(|r| est.predict_row(&r.to_vec()))
        .collect();
    println!(
        "{}",
        line(
            "logistic (linfa, scaled, balanced)",
            best,
            &evaluate(&data.y_valid, &proba)
        )
    );

    let has_sklearn = Command::new("python3")
        .args(["-c", "import sklearn"])
        .output()
        .is_ok_and(|o| o.status.success());
    let theirs: Vec<(String, f64, f64)> = if has_sklearn {
        println!("\nscikit-learn on the same rows (benches/sklearn_compare.py)");
        let out = Command::new("python3")
            .arg(root.join("benches/sklearn_compare.py"))
            .arg(&train_csv)
            .arg(&valid_csv)
            .output()
            .expect("running python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        }
        stdout.lines().filter_map(parse_line).collect()
    } else {
        println!(
            "\nscikit-learn is not installed (`pip install scikit-learn` to compare on the same rows);\nthe Python stack's figures on this data (docs/PERFORMANCE.md):"
        );
        for (name, secs, auc) in PEER {
            println!("{name:<36} fit {secs:>8.3} s   auc {auc:.4}");
        }
        PEER.iter()
            .map(|(n, s, a)| (n.to_string(), *s, *a))
            .collect()
    };
    let find = |prefix: &str| theirs.iter().find(|(n, _, _)| n.starts_with(prefix));
    println!();
    for (what, key, secs, m) in [
        ("forest", "sklearn forest", ours_forest, &ours_forest_m),
        ("tree", "sklearn tree", ours_tree, &ours_tree_m),
    ] {
        if let Some((_, their_secs, their_auc)) = find(key) {
            println!(
                "{what:<7} fit time ours/sklearn {:.3} ({:.3} s vs {:.3} s, {:.1}x faster)   AUC ours − sklearn {:+.4}",
                secs.as_secs_f64() / their_secs,
                secs.as_secs_f64(),
                their_secs,
                their_secs / secs.as_secs_f64(),
                m.auc - their_auc
            );
        }
    }
    let target_ok = ours_forest < Duration::from_secs(1);
    println!(
        "target: 300-tree forest < 1 s on {cores} cores: {}",
        if target_ok { "met" } else { "NOT met" }
    );
}
