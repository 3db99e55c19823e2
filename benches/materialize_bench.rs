//! `cargo bench --bench materialize_bench`: materialization throughput at scale,
//! per online store, through the same `apply` a user runs.
//!
//! The data has the example's shape — four online views over four tables, 14
//! features (6 + 5 + 1 + 2), two monthly snapshots — for `--users N` users
//! (default 700 000), synthesized deterministically into CSVs and ingested once
//! per store. Two figures per store:
//!
//! * rebuild: the four views' online rows dropped, then an apply materializes
//!   them from both snapshots (the latest row per user: February's);
//! * incremental: the views materialized as of January, then an apply with
//!   February listed reads February only and upserts every user.
//!
//! Each run times a whole apply; a no-op apply at the same size (the tables'
//! files hashed, the stores observed) is timed too, and the throughput is
//! given both on the whole apply and on the apply minus that no-op.
//!
//! Stores: `sqlite` (one file), `postgres` (a database of its own at
//! 127.0.0.1:5432, dropped afterwards), `redis` (online at 127.0.0.1:6379 under
//! a prefix of its own, deleted afterwards; offline in SQLite). A store whose
//! server does not answer is skipped with a notice.
//!
//! Options: `--users N`, `--runs N` (default 3), `--stores sqlite,postgres,redis`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use reconcile::plan::PlanOptions;
use reconcile::progress::Progress;
use reconcile::workspace::{StoreOverrides, Stores, Workspace};

const JAN: &str = "2024-01-31";
const FEB: &str = "2024-02-29";
const VIEWS: [&str; 4] = ["subs_profile", "usage_30d", "payments_90d", "support_90d"];
const FEATURES: usize = 14;
const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

struct Options {
    users: usize,
    runs: usize,
    stores: Vec<String>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    Options {
        users: value("--users").map_or(700_000, |v| v.parse().expect("--users N")),
        runs: value("--runs").map_or(3, |v| v.parse().expect("--runs N")),
        stores: value("--stores")
            .unwrap_or_else(|| "sqlite,postgres,redis".into())
            .split(',')
            .map(str::to_string)
            .collect(),
    }
}

/// The specs: an entity, four tables (the example's columns, no expectations)
/// and the example's four online views. `months` lists the snapshots.
fn write_specs(specs: &Path, months: &[&str]) {
    let tables = [
        (
            "subscriptions",
            "{ user_id: string, months_active: int, plan_stream_tv: bool, plan_stream_movies: bool, \
             contract_type: string, paperless_billing: bool, monthly_fee: float, total_paid: float, net_service: string }",
        ),
        (
            "usage_agg_30d",
            "{ user_id: string, watch_hours_30d: float, avg_session_mins_7d: float, unique_devices_30d: int, \
             skips_7d: int, rebuffer_events_7d: int }",
        ),
        (
            "payments_agg_90d",
            "{ user_id: string, failed_payments_90d: int }",
        ),
        (
            "support_agg_90d",
            "{ user_id: string, support_tickets_90d: int, ticket_avg_resolution_hrs_90d: float }",
        ),
    ];
    let mut s = String::from(
        "kind: Project\nname: matbench\n---\nkind: Entity\nname: user\njoinKeys: [user_id]\n",
    );
    for (name, columns) in tables {
        let _ = write!(
            s,
            "---\nkind: Table\nname: {name}\nprimaryKey: [user_id]\ncolumns: {columns}\nsnapshots:\n"
        );
        for m in months {
            let _ = writeln!(s, "  - {{ asOf: {m}, path: data/{m}/{name}.csv }}");
        }
    }
    let views = [
        (
            "subs_profile",
            "subscriptions",
            "[months_active, monthly_fee, paperless_billing, plan_stream_tv, plan_stream_movies, net_service]",
        ),
        (
            "usage_30d",
            "usage_agg_30d",
            "[watch_hours_30d, avg_session_mins_7d, unique_devices_30d, skips_7d, rebuffer_events_7d]",
        ),
        ("payments_90d", "payments_agg_90d", "[failed_payments_90d]"),
        (
            "support_90d",
            "support_agg_90d",
            "[support_tickets_90d, ticket_avg_resolution_hrs_90d]",
        ),
    ];
    for (name, table, features) in views {
        let _ = write!(
            s,
            "---\nkind: FeatureView\nname: {name}\nentity: user\ntable: {table}\nfeatures: {features}\nttl: 90d\nonline: true\n"
        );
    }
    std::fs::write(specs.join("specs.yaml"), s).expect("write specs");
}

/// One month of the four tables for `users` users, deterministic, in a
/// shuffled key order, with the example's empty cells (streaming flags without
/// an internet service, resolution time without a ticket).
fn write_month(dir: &Path, users: usize, month: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut rng = ChaCha8Rng::seed_from_u64(7 + month);
    let mut unit = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut subs = String::from(
        "user_id,months_active,plan_stream_tv,plan_stream_movies,contract_type,paperless_billing,monthly_fee,total_paid,net_service\n",
    );
    let mut usage = String::from(
        "user_id,watch_hours_30d,avg_session_mins_7d,unique_devices_30d,skips_7d,rebuffer_events_7d\n",
    );
    let mut pay = String::from("user_id,failed_payments_90d\n");
    let mut support = String::from("user_id,support_tickets_90d,ticket_avg_resolution_hrs_90d\n");
    let tf = |b: bool| if b { "True" } else { "False" };
    // A stride coprime with `users` visits every user once, out of key order.
    let stride = (1..)
        .map(|k| 7_919 * k + 1)
        .find(|s| gcd(*s, users) == 1)
        .unwrap_or(1);
    for n in 0..users {
        let i = (n * stride) % users;
        let id = format!("U{i:09}");
        let months = (unit() * 72.0) as i64 + month as i64;
        let net = ["DSL", "Fiber optic", "No"][(unit() * 3.0) as usize % 3];
        let (tv, movies) = if net == "No" {
            (String::new(), String::new())
        } else {
            (tf(unit() < 0.5).into(), tf(unit() < 0.5).into())
        };
        let contract = ["Month-to-month", "One year", "Two year"][(unit() * 3.0) as usize % 3];
        let fee = 18.0 + (unit() * 10_100.0).round() / 100.0;
        let _ = writeln!(
            subs,
            "{id},{months},{tv},{movies},{contract},{},{fee:.2},{:.2},{net}",
            tf(unit() < 0.6),
            fee * months as f64
        );
        let _ = writeln!(
            usage,
            "{id},{:.1},{:.1},{},{},{}",
            unit() * 120.0,
            unit() * 90.0,
            1 + (unit() * 5.0) as i64,
            (unit() * 30.0) as i64,
            (unit() * unit() * 12.0) as i64
        );
        let _ = writeln!(pay, "{id},{}", (unit() * unit() * 4.0) as i64);
        let tickets = (unit() * unit() * 5.0) as i64;
        if tickets == 0 {
            let _ = writeln!(support, "{id},0,");
        } else {
            let _ = writeln!(support, "{id},{tickets},{:.1}", 1.0 + unit() * 200.0);
        }
    }
    for (name, text) in [
        ("subscriptions", subs),
        ("usage_agg_30d", usage),
        ("payments_agg_90d", pay),
        ("support_agg_90d", support),
    ] {
        std::fs::write(dir.join(format!("{name}.csv")), text).expect("write csv");
    }
}

/// Hard links of the generated months into a spec folder: paths in specs
/// must stay inside their folder, symlinks resolved.
fn link_data(from: &Path, to: &Path, months: &[&str]) {
    for m in months {
        std::fs::create_dir_all(to.join(m)).expect("mkdir");
        for e in std::fs::read_dir(from.join(m)).expect("read dir") {
            let e = e.expect("entry");
            std::fs::hard_link(e.path(), to.join(m).join(e.file_name())).expect("hard link");
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// One quiet apply with `workers` in parallel; panics unless it succeeded.
async fn apply_with(ws: &Workspace, stores: &Stores, workers: usize) -> Duration {
    let t0 = Instant::now();
    let (_, report) = ws
        .apply(
            stores,
            &PlanOptions::default(),
            workers,
            Duration::ZERO,
            &Progress::new(true),
            |_, _| {},
        )
        .await
        .expect("apply");
    let took = t0.elapsed();
    assert!(report.success(), "{report:?}");
    took
}

/// One quiet apply with two workers (this machine's cores, the default).
async fn apply(ws: &Workspace, stores: &Stores) -> Duration {
    apply_with(ws, stores, 2).await
}

/// Every view holds every user at February's watermark.
async fn check_views(stores: &Stores, users: usize) {
    let seen = stores.online.observe().await.expect("observe");
    for v in VIEWS {
        let r = seen.get(v).unwrap_or_else(|| panic!("view {v} missing"));
        assert_eq!(
            (r.entity_count, r.watermark.as_str()),
            (users as i64, FEB),
            "{v}"
        );
    }
}

async fn drop_views(stores: &Stores) {
    for v in VIEWS {
        stores.online.drop_view(v).await.expect("drop view");
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(label: &str, what: &str, samples: Vec<Duration>, noop: Duration, users: usize) {
    let values = (users * FEATURES) as f64;
    let min = samples.iter().min().copied().unwrap_or_default();
    let med = median(samples);
    let net = med.saturating_sub(noop).as_secs_f64().max(1e-9);
    println!(
        "{:<44} median {:>8.0} ms (min {:>6.0})  {:>5.2} M values/s whole apply, {:>5.2} M/s minus the no-op apply",
        format!("{what}, {label}"),
        med.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        values / med.as_secs_f64() / 1e6,
        values / net / 1e6,
    );
}

async fn bench_store(label: &str, root: &Path, overrides: StoreOverrides, o: &Options) {
    let both = root.join("both");
    let jan = root.join("jan");
    let ws_both = Workspace::load(&both).expect("specs");
    let ws_jan = Workspace::load(&jan).expect("specs");
    let stores = ws_both.open_stores(&overrides).await.expect("stores");
    // Ingest both months and materialize once (not timed as materialization).
    // One table at a time: SQLite takes one writer, and at this size two
    // loads in parallel can outwait its busy timeout on a loaded machine.
    let t0 = Instant::now();
    apply_with(&ws_both, &stores, 1).await;
    println!(
        "{:<44} {:>8.1} s (ingest of 2 × 4 tables, {} rows, and a first materialization)",
        format!("setup, {label}"),
        t0.elapsed().as_secs_f64(),
        8 * o.users
    );
    check_views(&stores, o.users).await;
    let mut noops = Vec::new();
    for _ in 0..o.runs {
        noops.push(apply(&ws_both, &stores).await);
    }
    let noop = median(noops);
    println!(
        "{:<44} median {:>8.0} ms",
        format!("no-op apply, {label}"),
        noop.as_secs_f64() * 1e3
    );
    let mut rebuild = Vec::new();
    for _ in 0..o.runs {
        drop_views(&stores).await;
        rebuild.push(apply(&ws_both, &stores).await);
        check_views(&stores, o.users).await;
    }
    report(label, "rebuild 4 views", rebuild, noop, o.users);
    let mut incremental = Vec::new();
    for _ in 0..o.runs {
        drop_views(&stores).await;
        apply(&ws_jan, &stores).await;
        incremental.push(apply(&ws_both, &stores).await);
        check_views(&stores, o.users).await;
    }
    report(label, "incremental (February)", incremental, noop, o.users);
    drop_views(&stores).await;
    stores.state.db.close().await;
}

async fn pg_database() -> Option<(String, String)> {
    use sqlx::Connection;
    let mut conn = match sqlx::PgConnection::connect(PG_ADMIN).await {
        Ok(c) => c,
        Err(e) => {
            println!("NOTICE: PostgreSQL figures skipped: {e}");
            return None;
        }
    };
    let name = format!("reconcile_matbench_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("create database");
    }
    Some((
        name.clone(),
        format!("postgres://postgres@127.0.0.1:5432/{name}"),
    ))
}

async fn drop_pg_database(name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(PG_ADMIN).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// Deletes every key under `prefix` (the bench's own).
async fn drop_redis_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open("redis://127.0.0.1:6379/0") else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; nothing to list here
    }
    let o = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = Instant::now();
    for (i, m) in [JAN, FEB].into_iter().enumerate() {
        write_month(&dir.path().join("data").join(m), o.users, i as u64);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "materialization at {} users × {FEATURES} features = {} values per materialization \
         ({} cores, data generated in {:.1} s, load average {})\n",
        o.users,
        o.users * FEATURES,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        t0.elapsed().as_secs_f64(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    rt.block_on(async {
        for store in &o.stores {
            let root = tempfile::tempdir_in(dir.path()).expect("tempdir");
            for (name, months) in [("both", &[JAN, FEB][..]), ("jan", &[JAN][..])] {
                let specs = root.path().join(name);
                std::fs::create_dir_all(&specs).expect("mkdir");
                write_specs(&specs, months);
                link_data(&dir.path().join("data"), &specs.join("data"), months);
            }
            let state = format!("sqlite://{}", root.path().join("store.db").display());
            match store.as_str() {
                "sqlite" => {
                    let o2 = StoreOverrides {
                        state: Some(state),
                        ..Default::default()
                    };
                    bench_store("SQLite", root.path(), o2, &o).await;
                }
                "postgres" => {
                    let Some((name, url)) = pg_database().await else {
                        continue;
                    };
                    let o2 = StoreOverrides {
                        state: Some(url),
                        ..Default::default()
                    };
                    bench_store("PostgreSQL", root.path(), o2, &o).await;
                    drop_pg_database(&name).await;
                }
                "redis" => {
                    let prefix = format!("reconcile_matbench_{}", std::process::id());
                    let url = format!("redis://127.0.0.1:6379/0?prefix={prefix}");
                    if let Err(e) =
                        reconcile::store::online::OnlineStore::open(&url, Path::new(".")).await
                    {
                        println!("NOTICE: Redis figures skipped: {e}");
                        continue;
                    }
                    let o2 = StoreOverrides {
                        state: Some(state),
                        online: Some(url),
                        ..Default::default()
                    };
                    bench_store("Redis online, SQLite offline", root.path(), o2, &o).await;
                    drop_redis_prefix(&prefix).await;
                }
                other => println!("NOTICE: unknown store `{other}` (sqlite, postgres, redis)"),
            }
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            println!(
                "  (load average after: {})\n",
                load.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    });
}
