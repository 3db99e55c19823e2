//! Cost curves from 7 thousand to 7 million users (docs/PERFORMANCE.md, "Scale").
//! Run by hand, not in CI: the largest size takes tens of minutes.
//!
//! For each size, the StreamFlow generator writes two months of data (cached
//! under `--data`, default `target/scale-data`); for each store, a copy of the
//! example's specs (no monitor, no linear challenger; row-count bounds raised)
//! is applied step by step with the release binary, each step a process:
//!
//! * ingest + validate: `apply --target Table/…` (the six tables, both months);
//! * materialization: `apply --target FeatureView/…` (values/s = users × 14 / s);
//! * point-in-time training set: `features historical` of the four views as of
//!   January (every user × 14 features, written to a CSV);
//! * training: the rest of `apply` (the forest's own fit time and validation
//!   AUC, from its message); the forest's `minSamplesLeaf` grows with the rows
//!   a tree draws (1 at 7 k, then users / 7 043 until `maxSamples`' default of
//!   100 000 draws caps them, at about 133 000 users) so its trees keep about
//!   the same number of leaves: past the cap a tree costs the same;
//! * no-op plan: `plan` once everything is applied (median of 3);
//! * the endpoint: cold start to the first successful `/predict`, then
//!   `/features/{id}` and `/predict` for 5 s each at 16 connections.
//!
//! Peak resident memory of every apply step is the child's `ru_maxrss`
//! (`wait4`), of `serve` its `VmHWM` from `/proc/<pid>/status` under load.
//! After all sizes, the growth factor of each figure between consecutive
//! sizes (×10 users each) shows which costs are linear (≈10), flat (≈1) or
//! superlinear (> 10).
//!
//! `cargo bench --bench scale_bench -- --sizes 7k,70k --stores sqlite,postgres,redis`
//! (sizes: 7k, 70k, 700k, 7M or any count; stores: sqlite, postgres — the
//! server at 127.0.0.1:5432, a fresh database per run —, redis — SQLite for
//! the offline store, Redis at 127.0.0.1:6379 online, a key prefix per run).
//! `--memory-budget SIZE` is passed to every apply and to `features historical`;
//! `--cache-entities N` bounds the endpoint's in-memory rows per view
//! (`cache: {maxEntities: N}`), so past N users it reads through the store.

#[allow(dead_code)]
#[path = "../examples/streamflow_gen.rs"]
mod streamflow_gen;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

const CONNECTIONS: usize = 16;
const SECONDS: u64 = 5;
const VIEWS: &str = "subs_profile,usage_30d,payments_90d,support_90d";
const FEATURES: f64 = 14.0;
const TABLES: [&str; 6] = [
    "users",
    "subscriptions",
    "usage_agg_30d",
    "payments_agg_90d",
    "support_agg_90d",
    "labels",
];

/// Users past which each tree's bootstrap draws no more rows: 75 % of them
/// train, and the forest draws at most `DEFAULT_MAX_SAMPLES` (100 000) per tree.
const SAMPLED_USERS: usize = 133_334;

/// The training spec of the benchmark: the example's forest (300 balanced
/// trees, √p features, the default `maxSamples`) with a leaf size that grows
/// with the rows a tree draws, its model and endpoint. The linear challenger
/// and the monitor are left out.
fn training_yaml(users: usize, cache: Option<usize>) -> String {
    let leaf = (users.min(SAMPLED_USERS) / 7043).max(1);
    let cache = cache.map_or(String::new(), |n| {
        format!("cache: {{ maxEntities: {n} }}\n")
    });
    format!(
        "kind: TrainingRun\nname: churn-rf\nmodel: streamflow_churn\nasOf: 2024-01-31\n\
         label: {{ table: labels, column: churn_label }}\n\
         features: [subs_profile.*, usage_30d.*, payments_90d.*, support_90d.*]\n\
         algorithm: {{ randomForest: {{ trees: 300, maxFeatures: sqrt, classWeight: balanced, minSamplesLeaf: {leaf} }} }}\n\
         validation: {{ fraction: 0.25, stratify: true }}\nseed: 42\n---\n\
         kind: Model\nname: streamflow_churn\nproduction: churn-rf\nrequire: {{ val_auc: \">= 0.5\" }}\n---\n\
         kind: Endpoint\nname: churn-api\nmodel: streamflow_churn\nport: 8000\nruntime: embedded\n{cache}"
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Store {
    Sqlite,
    Postgres,
    Redis,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres => "postgres",
            Store::Redis => "redis",
        }
    }
}

/// One (size, store) row of figures; `None` when a step failed or was skipped.
#[derive(Default, Clone)]
struct Figures {
    ingest_s: Option<f64>,
    ingest_rss_mb: Option<f64>,
    materialize_s: Option<f64>,
    values_per_s: Option<f64>,
    materialize_rss_mb: Option<f64>,
    pit_s: Option<f64>,
    pit_rss_mb: Option<f64>,
    train_apply_s: Option<f64>,
    fit_s: Option<f64>,
    auc: Option<f64>,
    train_rss_mb: Option<f64>,
    noop_plan_s: Option<f64>,
    cold_start_s: Option<f64>,
    features_rps: Option<f64>,
    predict_rps: Option<f64>,
    predict_p99_ms: Option<f64>,
    serve_rss_mb: Option<f64>,
}

impl Figures {
    fn apply_rss_mb(&self) -> Option<f64> {
        [
            self.ingest_rss_mb,
            self.materialize_rss_mb,
            self.train_rss_mb,
        ]
        .into_iter()
        .flatten()
        .reduce(f64::max)
    }

    /// (label, value, how it prints) of every figure, in table order.
    fn cells(&self) -> Vec<(&'static str, Option<f64>, usize)> {
        vec![
            ("ingest+validate s", self.ingest_s, 1),
            ("ingest peak MB", self.ingest_rss_mb, 0),
            ("materialize s", self.materialize_s, 1),
            ("values/s", self.values_per_s, 0),
            ("materialize peak MB", self.materialize_rss_mb, 0),
            ("PIT set s", self.pit_s, 2),
            ("PIT peak MB", self.pit_rss_mb, 0),
            ("train apply s", self.train_apply_s, 1),
            ("forest fit s", self.fit_s, 1),
            ("AUC", self.auc, 4),
            ("train peak MB", self.train_rss_mb, 0),
            ("apply peak MB", self.apply_rss_mb(), 0),
            ("no-op plan s", self.noop_plan_s, 3),
            ("cold start s", self.cold_start_s, 2),
            ("/features req/s", self.features_rps, 0),
            ("/predict req/s", self.predict_rps, 0),
            ("/predict p99 ms", self.predict_p99_ms, 1),
            ("serve peak MB", self.serve_rss_mb, 0),
        ]
    }
}

/// Runs the release binary to completion: wall time, peak resident memory
/// (the child's `ru_maxrss`, read by `wait4` as it is reaped), its output.
// The child is reaped by `wait4` (for its rusage), which clippy does not see.
#[allow(clippy::zombie_processes)]
fn run(args: &[String], cwd: &Path) -> (f64, f64, bool, String) {
    let t0 = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reconcile");
    let pid = child.id() as libc::pid_t;
    let (mut out, mut err) = (child.stdout.expect("stdout"), child.stderr.expect("stderr"));
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut text);
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; both pointers are valid.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = t0.elapsed().as_secs_f64();
    text.push_str(&reader.join().unwrap_or_default());
    let ok = reaped == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (elapsed, usage.ru_maxrss as f64 / 1024.0, ok, text)
}

fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.strip_suffix('m') {
        Some(n) => (n, 1_000_000.0),
        None => match s.strip_suffix('k') {
            Some(n) => (n, 1_000.0),
            None => (s.as_str(), 1.0),
        },
    };
    let n: f64 = num.parse().ok()?;
    // 7k, 70k, … are the course's 7 043 users times a power of ten.
    let users = (n * mult) as usize;
    Some(match users {
        7_000 => 7_043,
        70_000 => 70_430,
        700_000 => 704_300,
        7_000_000 => 7_043_000,
        other => other,
    })
}

fn label(users: usize) -> String {
    match users {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// Generates (once) two months of `users` users under `root/<users>/`.
fn data(root: &Path, users: usize) -> PathBuf {
    let dir = root.join(users.to_string());
    let done = dir.join(".complete");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let t0 = Instant::now();
        streamflow_gen::generate_users(&dir, users).expect("generate");
        std::fs::write(&done, b"").expect("marker");
        eprintln!(
            "  generated {} users in {:.1} s",
            label(users),
            t0.elapsed().as_secs_f64()
        );
    }
    dir
}

/// A project: the example's specs, edited for scale, the data hard-linked.
fn project(work: &Path, data: &Path, users: usize, cache: Option<usize>) -> PathBuf {
    let _ = std::fs::remove_dir_all(work);
    let specs = work.join("specs");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
    std::fs::create_dir_all(specs.join("tables")).expect("mkdir");
    for f in ["project.yaml", "features.yaml"] {
        std::fs::copy(example.join(f), specs.join(f)).expect("copy");
    }
    for t in TABLES {
        let text =
            std::fs::read_to_string(example.join(format!("tables/{t}.yaml"))).expect("table");
        // The example bounds its row count to the course's size.
        let text = text.replace("max: 100000 }", "max: 100000000 }");
        std::fs::write(specs.join(format!("tables/{t}.yaml")), text).expect("write");
    }
    std::fs::write(specs.join("training.yaml"), training_yaml(users, cache)).expect("training");
    for month in ["2024-01-31", "2024-02-29"] {
        let to = specs.join("data").join(month);
        std::fs::create_dir_all(&to).expect("mkdir");
        for t in TABLES {
            let name = format!("{t}.csv");
            let from = data.join(month).join(&name);
            if std::fs::hard_link(&from, to.join(&name)).is_err() {
                std::fs::copy(&from, to.join(&name)).expect("copy csv");
            }
        }
    }
    specs
}

async fn fresh_pg(name: &str) -> Option<String> {
    use sqlx::Connection;
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let mut conn = match sqlx::PgConnection::connect(admin).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("  PostgreSQL unreachable at 127.0.0.1:5432 ({e}): skipped");
            return None;
        }
    };
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("database");
    }
    Some(format!("postgres://postgres@127.0.0.1:5432/{name}"))
}

async fn drop_pg(name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) =
        sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres").await
    {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

fn request(predict: bool, addr: &str, id: &str) -> hyper::Request<Full<Bytes>> {
    let b = hyper::Request::builder().header("host", addr);
    if predict {
        b.method("POST")
            .uri("/predict")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!(r#"{{"user_id":"{id}"}}"#))))
    } else {
        b.uri(format!("/features/{id}"))
            .body(Full::new(Bytes::new()))
    }
    .expect("request")
}

/// CONNECTIONS keep-alive connections sending requests back to back for
/// SECONDS: requests/s, sorted latencies (µs) and failures.
async fn load(addr: &str, predict: bool, ids: Arc<Vec<String>>) -> (f64, Vec<u32>, usize) {
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (addr, ids) = (addr.to_string(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
                return (Vec::new(), 1);
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return (Vec::new(), 1);
            };
            tokio::spawn(conn);
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            let mut i = c * 997;
            while Instant::now() < deadline {
                let id = &ids[i % ids.len()];
                i += 7919;
                let t0 = Instant::now();
                match sender.send_request(request(predict, &addr, id)).await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let _ = r.into_body().collect().await;
                        latencies.push(t0.elapsed().as_micros() as u32);
                        errors += usize::from(!ok);
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let started = Instant::now();
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    (all.len() as f64 / elapsed, all, errors)
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Starts `serve`, times the first successful /predict, loads both routes.
fn endpoint(
    specs: &Path,
    stores: &[String],
    ids: Arc<Vec<String>>,
    rt: &tokio::runtime::Runtime,
    f: &mut Figures,
) {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["serve", "--port", "0", "-q"])
        .arg(specs)
        .args(stores)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    let Some(addr) = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .map(|a| a.trim_end_matches('/').to_string())
    else {
        eprintln!("  serve printed no address: {line:?}");
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    let id = ids[0].clone();
    let ready = rt.block_on(async {
        let limit = Instant::now() + Duration::from_secs(600);
        while Instant::now() < limit {
            if let Ok(stream) = tokio::net::TcpStream::connect(&addr).await
                && let Ok((mut s, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            {
                tokio::spawn(conn);
                if let Ok(r) = s.send_request(request(true, &addr, &id)).await
                    && r.status().is_success()
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    });
    if ready {
        f.cold_start_s = Some(t0.elapsed().as_secs_f64());
        let (rps, _, errors) = rt.block_on(load(&addr, false, ids.clone()));
        f.features_rps = Some(rps);
        if errors > 0 {
            eprintln!("  /features: {errors} failed requests");
        }
        let (rps, lat, errors) = rt.block_on(load(&addr, true, ids));
        f.predict_rps = Some(rps);
        f.predict_p99_ms = lat
            .get(((lat.len() as f64 - 1.0) * 0.99).round() as usize)
            .map(|us| f64::from(*us) / 1000.0);
        if errors > 0 {
            eprintln!("  /predict: {errors} failed requests");
        }
        f.serve_rss_mb = Some(rss_kb(child.id(), "VmHWM:") as f64 / 1024.0);
    } else {
        eprintln!("  the endpoint never answered /predict");
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn one(
    data_root: &Path,
    work_root: &Path,
    users: usize,
    store: Store,
    budget: Option<&str>,
    cache: Option<usize>,
    rt: &tokio::runtime::Runtime,
) -> Figures {
    let mut f = Figures::default();
    let data = data(data_root, users);
    let work = work_root.join(format!("{}-{}", users, store.name()));
    let specs = project(&work, &data, users, cache);
    let tag = format!("scale_{}_{}", users, std::process::id());
    let stores: Vec<String> = match store {
        Store::Sqlite => Vec::new(),
        Store::Postgres => match rt.block_on(fresh_pg(&tag)) {
            Some(url) => vec!["--state".into(), url],
            None => return f,
        },
        Store::Redis => vec![
            "--online".into(),
            format!("redis://127.0.0.1:6379/0?prefix={tag}"),
        ],
    };
    let spec_arg = specs.display().to_string();
    let apply = |targets: &[String]| {
        // One resource at a time: each step's figure is its own, and on
        // SQLite (state and offline in one file) a table's load of millions
        // of rows holds the write lock longer than the engine's bookkeeping
        // waits for it (the busy timeout, 30 s): at 704 k users, parallel
        // table loads failed with "database is locked".
        let mut a = vec![
            "apply".to_string(),
            spec_arg.clone(),
            "--parallelism".into(),
            "1".into(),
        ];
        for t in targets {
            a.push("--target".into());
            a.push(t.clone());
        }
        a.extend(stores.iter().cloned());
        if let Some(b) = budget {
            a.push("--memory-budget".into());
            a.push(b.into());
        }
        run(&a, &work)
    };
    let fail = |step: &str, text: &str| {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        eprintln!(
            "  {step} failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    };
    // 1. Ingest + validate.
    let tables: Vec<String> = TABLES.iter().map(|t| format!("Table/{t}")).collect();
    let (s, rss, ok, text) = apply(&tables);
    if !ok {
        fail("ingest", &text);
        return f;
    }
    (f.ingest_s, f.ingest_rss_mb) = (Some(s), Some(rss));
    eprintln!("  ingest {s:.1} s, peak {rss:.0} MB");
    // 2. Materialization.
    let views: Vec<String> = VIEWS
        .split(',')
        .map(|v| format!("FeatureView/{v}"))
        .collect();
    let (s, rss, ok, text) = apply(&views);
    if !ok {
        fail("materialization", &text);
        return f;
    }
    (f.materialize_s, f.materialize_rss_mb) = (Some(s), Some(rss));
    f.values_per_s = Some(users as f64 * FEATURES / s);
    eprintln!("  materialize {s:.1} s, peak {rss:.0} MB");
    // 3. Point-in-time training set.
    let csv = work.join("training-set.csv");
    let mut a = vec![
        "features".to_string(),
        "historical".into(),
        spec_arg.clone(),
        "--views".into(),
        VIEWS.into(),
        "--as-of".into(),
        "2024-01-31".into(),
        "--out".into(),
        csv.display().to_string(),
    ];
    a.extend(stores.iter().cloned());
    if let Some(b) = budget {
        a.push("--memory-budget".into());
        a.push(b.into());
    }
    let (s, rss, ok, text) = run(&a, &work);
    if ok {
        (f.pit_s, f.pit_rss_mb) = (Some(s), Some(rss));
        eprintln!("  training set {s:.2} s, peak {rss:.0} MB");
    } else {
        fail("features historical", &text);
    }
    let _ = std::fs::remove_file(&csv);
    // 4. Training (and the model, the endpoint's record).
    let (s, rss, ok, text) = apply(&[]);
    if !ok {
        fail("training", &text);
        return f;
    }
    (f.train_apply_s, f.train_rss_mb) = (Some(s), Some(rss));
    let fit = regex_lite(&text, " rows in ", " s: val_auc ");
    f.fit_s = fit.0;
    f.auc = fit.1;
    eprintln!(
        "  training apply {s:.1} s (fit {:?} s, AUC {:?}), peak {rss:.0} MB",
        f.fit_s, f.auc
    );
    // 5. No-op plan.
    let mut plans = Vec::new();
    for _ in 0..3 {
        let mut a = vec!["plan".to_string(), spec_arg.clone(), "-q".into()];
        a.extend(stores.iter().cloned());
        let (s, _, _, text) = run(&a, &work);
        if !text.contains("0 to create, 0 to update, 0 to replace, 0 to delete") {
            eprintln!("  the plan after apply is not empty:\n{text}");
        }
        plans.push(s);
    }
    plans.sort_by(f64::total_cmp);
    f.noop_plan_s = plans.get(1).copied();
    // 6. The endpoint.
    let ids: Vec<String> =
        BufReader::new(std::fs::File::open(data.join("2024-02-29/users.csv")).expect("users.csv"))
            .lines()
            .skip(1)
            .take(20_000)
            .filter_map(|l| l.ok()?.split(',').next().map(str::to_string))
            .collect();
    endpoint(&specs, &stores, Arc::new(ids), rt, &mut f);
    // Clean up what the run left in shared servers.
    match store {
        Store::Postgres => rt.block_on(drop_pg(&tag)),
        Store::Redis => {
            let mut a = vec![
                "destroy".to_string(),
                spec_arg.clone(),
                "--yes".into(),
                "-q".into(),
            ];
            a.extend(stores.iter().cloned());
            let _ = run(&a, &work);
        }
        Store::Sqlite => {}
    }
    let _ = std::fs::remove_dir_all(&work);
    f
}

/// The training run's fit seconds and AUC from apply's message:
/// `… on N of M rows in 1.23 s: val_auc 0.8264, …`.
fn regex_lite(text: &str, before: &str, after: &str) -> (Option<f64>, Option<f64>) {
    for line in text.lines() {
        if let (Some(a), Some(b)) = (line.find(before), line.find(after)) {
            let secs = line[a + before.len()..b].trim().parse().ok();
            let auc = line[b + after.len()..]
                .split(|c: char| c == ',' || c.is_whitespace())
                .next()
                .and_then(|s| s.parse().ok());
            return (secs, auc);
        }
    }
    (None, None)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = arg("--sizes")
        .unwrap_or_else(|| "7k,70k,700k,7M".into())
        .split(',')
        .map(|s| {
            parse_size(s).unwrap_or_else(|| panic!("size `{s}`: 7k, 70k, 700k, 7M or a count"))
        })
        .collect();
    let stores: Vec<Store> = arg("--stores")
        .unwrap_or_else(|| "sqlite,postgres,redis".into())
        .split(',')
        .map(|s| match s.trim() {
            "sqlite" => Store::Sqlite,
            "postgres" => Store::Postgres,
            "redis" => Store::Redis,
            other => panic!("store `{other}`: sqlite, postgres or redis"),
        })
        .collect();
    let budget = arg("--memory-budget");
    let cache = arg("--cache-entities").map(|n| {
        n.parse::<usize>()
            .unwrap_or_else(|_| panic!("--cache-entities `{n}`: a count of entities"))
    });
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let data_root = arg("--data").map_or_else(|| target.join("scale-data"), PathBuf::from);
    let work_root = arg("--work").map_or_else(|| data_root.join("work"), PathBuf::from);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "scale benchmark: {} cores, two months per size, data under {}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        data_root.display()
    );
    let mut results: Vec<(usize, Store, Figures)> = Vec::new();
    for &users in &sizes {
        for &store in &stores {
            eprintln!("{} users, {}:", label(users), store.name());
            let f = one(
                &data_root,
                &work_root,
                users,
                store,
                budget.as_deref(),
                cache,
                &rt,
            );
            print_row(users, store, &f);
            results.push((users, store, f));
        }
    }
    println!("\n## figures\n");
    let header: Vec<&str> = Figures::default().cells().iter().map(|c| c.0).collect();
    println!("| users | store | {} |", header.join(" | "));
    println!("|---|---|{}", "---|".repeat(header.len()));
    for (users, store, f) in &results {
        let cells: Vec<String> = f.cells().iter().map(|(_, v, d)| fmt(*v, *d)).collect();
        println!(
            "| {} | {} | {} |",
            label(*users),
            store.name(),
            cells.join(" | ")
        );
    }
    println!("\n## growth factor between consecutive sizes (×10 users: 10 is linear, 1 flat)\n");
    println!("| sizes | store | {} |", header.join(" | "));
    println!("|---|---|{}", "---|".repeat(header.len()));
    for &store in &stores {
        let rows: Vec<&(usize, Store, Figures)> = results.iter().filter(|r| r.1 == store).collect();
        for pair in rows.windows(2) {
            let (a, b) = (&pair[0].2, &pair[1].2);
            let cells: Vec<String> = a
                .cells()
                .iter()
                .zip(b.cells())
                .map(|((_, x, _), (_, y, _))| match (x, y) {
                    (Some(x), Some(y)) if *x > 0.0 => format!("{:.2}", y / x),
                    _ => "—".into(),
                })
                .collect();
            println!(
                "| {}→{} | {} | {} |",
                label(pair[0].0),
                label(pair[1].0),
                store.name(),
                cells.join(" | ")
            );
        }
    }
}

fn print_row(users: usize, store: Store, f: &Figures) {
    let cells: Vec<String> = f
        .cells()
        .iter()
        .map(|(name, v, d)| format!("{name} {}", fmt(*v, *d)))
        .collect();
    println!(
        "{:>6} {:<8} {}",
        label(users),
        store.name(),
        cells.join(" | ")
    );
}
