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
