//! The example's online rows, byte for byte, on every online store and through
//! both materialization paths (a rebuild, and an incremental write of
//! February over January): the bulk write paths (COPY, cached statement
//! shapes, pipelined HSETs) store exactly what the row-by-row ones did.
//!
//! The digests below were taken from the rows the StreamFlow example
//! materialized before those paths existed: every row of the four online views
//! as `view\tkey\tas_of\tfeatures\n` (Redis keeps no date: `view\tkey\tfeatures\n`),
//! ordered by view then key, hashed with BLAKE3. A change to the example's data
//! changes them.

#[macro_use]
mod common;

use common::{Project, fresh_pg_database, fresh_redis_url, text};

const WITH_DATE: &str = "486dcb5f95788af701e1f07884f05925da8fab0e360c9f648de2c1a06994f2f4";
const WITHOUT_DATE: &str = "c2e80fd9414c793a4a7067217a1c1845afa98a57a0dc886f777f3ca66b050d19";
const VIEWS: [&str; 4] = ["payments_90d", "subs_profile", "support_90d", "usage_30d"];
const FEB: &str = "2024-02-29";

/// The example's tables and views only (no training, no monitor).
fn tables_and_views() -> Project {
    let p = Project::example();
    for f in ["training.yaml", common::MONITOR_SPEC] {
        let _ = std::fs::remove_file(p.specs.join(f));
    }
    p
}

/// (digest, rows) of the online rows as the module documentation says.
async fn digest(p: &Project, redis_url: Option<&str>) -> (String, usize) {
    let mut rows: Vec<String> = Vec::new();
    match redis_url {
        None => {
            let db = p.db().await;
            let got: Vec<(String, String, String, String)> =
                reconcile::with_pool!(&db, pool => sqlx::query_as(
                "SELECT view, entity_key, as_of, features FROM reconcile_online")
                .fetch_all(pool).await)
                .expect("online rows");
            rows.extend(
                got.into_iter()
                    .map(|(v, k, d, f)| format!("{v}\t{k}\t{d}\t{f}\n")),
            );
        }
        Some(url) => {
            let (address, query) = url.split_once('?').expect("prefix");
            let prefix = query.strip_prefix("prefix=").expect("prefix");
            let client = redis::Client::open(address).expect("redis url");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            for v in VIEWS {
                let all: Vec<(String, String)> = redis::cmd("HGETALL")
                    .arg(format!("{prefix}:online:{v}"))
                    .query_async(&mut conn)
                    .await
                    .expect("HGETALL");
                rows.extend(all.into_iter().map(|(k, f)| format!("{v}\t{k}\t{f}\n")));
            }
        }
    }
    // Byte order of (view, key): the tab sorts below every character of both.
    rows.sort();
    (
        reconcile::hash::hash_bytes(rows.concat().as_bytes()),
        rows.len(),
    )
}

async fn stores(p: &mut Project, backend: &str) -> Option<Option<String>> {
    match backend {
        "postgres" => {
            p.store_args = vec!["--state".into(), fresh_pg_database("values").await?];
            Some(None)
        }
        "redis" => {
            let url = fresh_redis_url("values").await?;
            p.store_args = vec!["--online".into(), url.clone()];
            Some(Some(url))
        }
        _ => Some(None),
    }
}

async fn online_rows_are_the_same_bytes_rebuilt_or_incremental(backend: &str) {
    same_bytes(backend, &[]).await
}

/// Under a 64 KiB budget a materialization reads and writes each view in
/// dozens of key-ordered chunks (a few hundred stored rows each) into its one
/// transaction or scratch hash: the rows are still the same bytes.
async fn online_rows_are_the_same_bytes_in_small_chunks(backend: &str) {
    same_bytes(backend, &["--memory-budget", "64KiB"]).await
}

/// Applies the views as a rebuild, then as January and an incremental
/// February, with `extra` arguments to every apply, and checks the digests.
async fn same_bytes(backend: &str, extra: &[&str]) {
    let apply: Vec<&str> = std::iter::once("apply")
        .chain(extra.iter().copied())
        .collect();
    let want = |redis: &Option<String>| {
        if redis.is_some() {
            WITHOUT_DATE
        } else {
            WITH_DATE
        }
    };
    // A rebuild from both months.
    let mut p = tables_and_views();
    let Some(redis) = stores(&mut p, backend).await else {
        return;
    };
    let out = p.run(&apply);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        digest(&p, redis.as_deref()).await,
        (want(&redis).to_string(), 4 * 7043),
        "rebuild on {backend}"
    );
    // January alone, then February as an incremental write over it.
    let mut p = tables_and_views();
    let Some(redis) = stores(&mut p, backend).await else {
        return;
    };
    let feb = p.specs.join("data").join(FEB);
    let aside = p.dir.path().join(FEB);
    std::fs::rename(&feb, &aside).expect("move February aside");
    let out = p.run(&apply);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::rename(&aside, &feb).expect("February back");
    let plan = text(&p.run(&["plan"]));
    for v in VIEWS {
        assert!(
            plan.contains(&format!(
                "~ update FeatureView/{v}\n      materialize {v}: 1 new snapshot(s) ({FEB})"
            )),
            "{plan}"
        );
    }
    let out = p.run(&apply);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        digest(&p, redis.as_deref()).await,
        (want(&redis).to_string(), 4 * 7043),
        "incremental on {backend}"
    );
    assert_eq!(p.run(&["plan"]).status.code(), Some(0));
}

on_both_backends!(
    online_rows_are_the_same_bytes_rebuilt_or_incremental,
    online_rows_are_the_same_bytes_in_small_chunks
);

mod redis_online {
    #[tokio::test(flavor = "multi_thread")]
    async fn online_rows_are_the_same_bytes_rebuilt_or_incremental() {
        super::online_rows_are_the_same_bytes_rebuilt_or_incremental("redis").await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn online_rows_are_the_same_bytes_in_small_chunks() {
        super::online_rows_are_the_same_bytes_in_small_chunks("redis").await
    }
}

/// A stored row whose features do not parse is an error that names the view
/// and the entity, on every read, never an entity answered with no features.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_online_row_is_an_error_that_names_it() {
    use reconcile::store::online::{OnlineRows, OnlineStore, OnlineView};
    let dir = tempfile::tempdir().expect("tempdir");
    let url = "sqlite://state.db";
    let store = OnlineStore::open(url, dir.path()).await.expect("open");
    let rows = OnlineRows {
        keys: vec!["u1".into(), "u2".into()],
        as_of: vec!["2024-01-31".into(); 2],
        features: vec![r#"{"v":1}"#.into(); 2],
    };
    let record = OnlineView {
        schema_hash: "s".into(),
        source_hash: "h".into(),
        watermark: "2024-01-31".into(),
        entity_count: 2,
    };
    store
        .write_view("fv", &record, rows, true)
        .await
        .expect("write");
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    ))
    .await
    .expect("pool");
    sqlx::query("UPDATE reconcile_online SET features = '{\"v\":' WHERE entity_key = 'u2'")
        .execute(&pool)
        .await
        .expect("corrupt a row");
    let keys = vec!["u1".to_string(), "u2".to_string()];
    for err in [
        store.read_many("fv", &keys).await.err(),
        store.read_all("fv").await.err(),
        store.read_keys(&["fv"], &["u2"]).await.err(),
    ] {
        let message = err.expect("a corrupt row reads as an error").to_string();
        assert!(
            message.contains("`fv`") && message.contains("`u2`"),
            "{message}"
        );
    }
    // The intact row still reads.
    let got = store.read_many("fv", &keys[..1]).await.expect("u1 reads");
    assert_eq!(got["u1"]["v"], 1);
}

/// PostgreSQL keeps each view in a partition of its own, loaded beside the
/// live one and swapped in at commit (src/store/online_pg.rs): every write
/// path (rebuild, small incremental in place, large incremental rewritten,
/// drop) leaves exactly the rows it should, and other views untouched.
mod postgres_partitions {
    use std::ops::Range;

    use reconcile::store::online::{OnlineRows, OnlineStore, OnlineView};
    use sqlx::PgPool;

    use super::common::fresh_pg_database;

    /// Rows `u0000`… of `keys`, each with `{"v": version}`.
    fn rows(keys: Range<usize>, version: i64) -> OnlineRows {
        let mut out = OnlineRows::default();
        for i in keys {
            out.keys.push(format!("u{i:04}"));
            out.as_of.push("2024-01-31".into());
            out.features.push(format!("{{\"v\":{version}}}"));
        }
        out
    }

    fn record(watermark: &str) -> OnlineView {
        OnlineView {
            schema_hash: "s".into(),
            source_hash: "h".into(),
            watermark: watermark.into(),
            entity_count: 0,
        }
    }

    /// Writes `keys` at `version` into `view` in two chunks; the entity count.
    async fn write(
        store: &OnlineStore,
        view: &str,
        keys: Range<usize>,
        version: i64,
        full: bool,
    ) -> i64 {
        let mid = keys.start + keys.len() / 2;
        let mut w = store.begin_view(view, full).await.expect("begin");
        w.write(rows(keys.start..mid, version))
            .await
            .expect("chunk");
        w.write(rows(mid..keys.end, version)).await.expect("chunk");
        w.commit(&record("2024-01-31")).await.expect("commit")
    }

    /// Each key's version in `view` over `u0000..u{n}`; 0 where absent.
    async fn versions(store: &OnlineStore, view: &str, n: usize) -> Vec<i64> {
        let keys: Vec<String> = (0..n).map(|i| format!("u{i:04}")).collect();
        let got = store.read_many(view, &keys).await.expect("read");
        keys.iter()
            .map(|k| got.get(k).and_then(|f| f["v"].as_i64()).unwrap_or(0))
            .collect()
    }

    /// The table behind `view`'s partition, or `None` when it has none.
    async fn partition(pool: &PgPool, view: &str) -> Option<u32> {
        let bound = format!("FOR VALUES IN ('{view}')");
        sqlx::query_as::<_, (sqlx::postgres::types::Oid,)>(
            "SELECT c.oid FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'reconcile_online'::regclass AND pg_get_expr(c.relpartbound, c.oid) = $1",
        )
        .bind(bound)
        .fetch_optional(pool)
        .await
        .expect("catalog")
        .map(|(oid,)| oid.0)
    }

    /// Expected versions: `spans` of (range, version) over `n` keys.
    fn expect(n: usize, spans: &[(Range<usize>, i64)]) -> Vec<i64> {
        let mut v = vec![0; n];
        for (r, version) in spans {
            for i in r.clone() {
                v[i] = *version;
            }
        }
        v
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn every_write_path_swaps_or_updates_only_its_view() {
        let Some(url) = fresh_pg_database("parts").await else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = OnlineStore::open(&url, dir.path()).await.expect("open");
        let pool = PgPool::connect(&url).await.expect("pool");

        assert_eq!(write(&store, "fv", 0..1000, 1, true).await, 1000);
        assert_eq!(write(&store, "gv", 0..300, 7, true).await, 300);
        let first = partition(&pool, "fv").await.expect("fv has a partition");

        // 100 keys over 1 000 (50 of them new): applied in place.
        assert_eq!(write(&store, "fv", 950..1050, 2, false).await, 1050);
        assert_eq!(
            partition(&pool, "fv").await,
            Some(first),
            "a small write rewrote the view"
        );
        assert_eq!(
            versions(&store, "fv", 1100).await,
            expect(1100, &[(0..950, 1), (950..1050, 2)])
        );

        // 800 keys over 1 050: the view is rewritten and swapped in.
        assert_eq!(write(&store, "fv", 0..800, 3, false).await, 1050);
        let second = partition(&pool, "fv").await.expect("fv has a partition");
        assert_ne!(second, first, "a large write was applied in place");
        assert_eq!(
            versions(&store, "fv", 1100).await,
            expect(1100, &[(0..800, 3), (800..950, 1), (950..1050, 2)])
        );

        // A rebuild replaces every row.
        assert_eq!(write(&store, "fv", 500..600, 4, true).await, 100);
        assert_eq!(
            versions(&store, "fv", 1100).await,
            expect(1100, &[(500..600, 4)])
        );
        assert_eq!(
            store.observe().await.expect("observe")["fv"].entity_count,
            100
        );

        // A key twice in one rebuild fails it, and the view stays as it was.
        let mut w = store.begin_view("fv", true).await.expect("begin");
        w.write(rows(0..10, 5)).await.expect("chunk");
        w.write(rows(5..15, 5)).await.expect("chunk");
        assert!(w.commit(&record("2024-02-29")).await.is_err());
        assert_eq!(
            versions(&store, "fv", 1100).await,
            expect(1100, &[(500..600, 4)])
        );

        store.drop_view("fv").await.expect("drop");
        assert_eq!(versions(&store, "fv", 1100).await, vec![0; 1100]);
        assert_eq!(partition(&pool, "fv").await, None);
        assert!(!store.observe().await.expect("observe").contains_key("fv"));
        assert_eq!(
            versions(&store, "gv", 300).await,
            vec![7; 300],
            "another view changed"
        );
    }

    /// A store made before views had partitions: its rows become the default
    /// partition, readable as before; each view's first swap takes its rows
    /// out of it, an in-place write updates them where they are.
    #[tokio::test(flavor = "multi_thread")]
    async fn rows_stored_before_partitions_stay_until_their_view_is_swapped() {
        let Some(url) = fresh_pg_database("legacy").await else {
            return;
        };
        // The schema as of migration 0007, through sqlx's own migrator.
        let old = tempfile::tempdir().expect("tempdir");
        let migrations =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        for entry in std::fs::read_dir(&migrations).expect("migrations") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .to_string();
            if name.as_str() < "0008" {
                std::fs::copy(&path, old.path().join(&name)).expect("copy migration");
            }
        }
        let pool = PgPool::connect(&url).await.expect("pool");
        sqlx::migrate::Migrator::new(old.path())
            .await
            .expect("migrator")
            .run(&pool)
            .await
            .expect("old schema");
        for (view, n) in [("old1", 40), ("old2", 10)] {
            for i in 0..n {
                sqlx::query(
                    "INSERT INTO reconcile_online VALUES ($1, $2, '2023-12-31', '{\"v\":9}')",
                )
                .bind(view)
                .bind(format!("u{i:04}"))
                .execute(&pool)
                .await
                .expect("old row");
            }
            sqlx::query(
                "INSERT INTO reconcile_online_views VALUES ($1, 's', 'h', '2023-12-31', $2, 0)",
            )
            .bind(view)
            .bind(n)
            .execute(&pool)
            .await
            .expect("old record");
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let store = OnlineStore::open(&url, dir.path())
            .await
            .expect("open runs 0008");
        assert_eq!(
            versions(&store, "old1", 50).await,
            expect(50, &[(0..40, 9)])
        );

        // 2 keys over 40: in place, in the default partition.
        assert_eq!(write(&store, "old1", 38..40, 1, false).await, 40);
        assert_eq!(partition(&pool, "old1").await, None);
        assert_eq!(
            versions(&store, "old1", 50).await,
            expect(50, &[(0..38, 9), (38..40, 1)])
        );

        // old2 rebuilt: its own partition, its old rows gone; old1 untouched.
        assert_eq!(write(&store, "old2", 0..5, 2, true).await, 5);
        assert!(partition(&pool, "old2").await.is_some());
        assert_eq!(versions(&store, "old2", 50).await, expect(50, &[(0..5, 2)]));
        assert_eq!(
            versions(&store, "old1", 50).await,
            expect(50, &[(0..38, 9), (38..40, 1)])
        );

        // 30 keys over 40: old1 rewritten from the default partition.
        assert_eq!(write(&store, "old1", 10..45, 3, false).await, 45);
        assert!(partition(&pool, "old1").await.is_some());
        assert_eq!(
            versions(&store, "old1", 50).await,
            expect(50, &[(0..10, 9), (10..45, 3)])
        );
        let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM reconcile_online_shared")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(
            left, 0,
            "rows of swapped views stayed in the default partition"
        );
    }
}
