//! Point-in-time correctness of historical feature retrieval, on crafted
//! snapshots in a real SQLite file and a real PostgreSQL database.

#[macro_use]
mod common;

use chrono::NaiveDate;
use common::{Project, fresh_pg_database, text};
use reconcile::data::Column;
use reconcile::features::{EntityRows, historical, resolve};

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

/// Three monthly snapshots; key `a` has value 1, 2, 3; key `b` only in January.
fn crafted() -> Project {
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    std::fs::create_dir_all(specs.join("data")).expect("mkdir");
    std::fs::write(
        specs.join("specs.yaml"),
        "kind: Entity\nname: user\njoinKeys: [user_id]\n---\n\
         kind: Table\nname: t\nprimaryKey: [user_id]\ncolumns: { user_id: string, v: int, note: string }\n\
         snapshots:\n  - { asOf: 2024-01-01, path: data/jan.csv }\n  - { asOf: 2024-02-01, path: data/feb.csv }\n  - { asOf: 2024-03-01, path: data/mar.csv }\n---\n\
         kind: FeatureView\nname: fv\nentity: user\ntable: t\nfeatures: [v, note]\nttl: 20d\nonline: false\n",
    )
    .expect("spec");
    std::fs::write(
        specs.join("data/jan.csv"),
        "user_id,v,note\na,1,jan\nb,10,\n",
    )
    .expect("csv");
    std::fs::write(specs.join("data/feb.csv"), "user_id,v,note\na,2,feb\n").expect("csv");
    std::fs::write(specs.join("data/mar.csv"), "user_id,v,note\na,3,mar\n").expect("csv");
    Project {
        dir,
        specs,
        store_args: Vec::new(),
    }
}

async fn point_in_time_never_leaks_the_future(backend: &str) {
    let mut p = crafted();
    if backend == "postgres" {
        let Some(url) = fresh_pg_database("pit").await else {
            return;
        };
        p.store_args = vec!["--state".into(), url];
    }
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let ws = reconcile::workspace::Workspace::load(&p.specs).expect("specs");
    let view = resolve(&ws.set, "fv").expect("view");
    let cases = [
        ("a", "2023-12-31", None, None),           // before any snapshot
        ("a", "2024-01-01", Some(1), Some("jan")), // exactly at a snapshot
        ("a", "2024-01-15", Some(1), Some("jan")), // between: the earlier one
        ("a", "2024-02-01", Some(2), Some("feb")), // at the next, never the one after
        ("a", "2024-02-21", Some(2), Some("feb")), // 20 days: still within ttl
        ("a", "2024-02-25", None, None),           // 24 days: outside the ttl
        ("a", "2024-03-05", Some(3), Some("mar")),
        ("b", "2024-01-10", Some(10), None), // a null stays null
        ("b", "2024-02-15", None, None),     // gone later and expired
        ("zz", "2024-03-05", None, None),    // unknown entity
    ];
    let entities = EntityRows {
        keys: cases.iter().map(|c| c.0.to_string()).collect(),
        timestamps: cases.iter().map(|c| d(c.1)).collect(),
    };
    let db = p.db().await;
    let batch = historical(&db, &[view], &entities)
        .await
        .expect("historical");
    assert_eq!(batch.rows(), cases.len());
    let Some(Column::Int(v)) = batch.column("fv.v") else {
        panic!("fv.v missing")
    };
    let Some(Column::Str(note)) = batch.column("fv.note") else {
        panic!("fv.note missing")
    };
    for (i, (key, at, want_v, want_note)) in cases.iter().enumerate() {
        assert_eq!(v[i], *want_v, "v for {key} as of {at}");
        assert_eq!(note[i].as_deref(), *want_note, "note for {key} as of {at}");
    }
    // The CLI writes the same join for every known entity as of a date.
    let out = p.run(&[
        "features",
        "historical",
        "--views",
        "fv",
        "--as-of",
        "2024-02-10",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        csv,
        "user_id,as_of,fv.v,fv.note\na,2024-02-10,2,feb\nb,2024-02-10,,\n"
    );
}

/// Where a test's online rows live.
enum Online {
    Sql(reconcile::store::Db),
    Redis(reconcile::store::online::OnlineStore),
}

/// Online rows of view `fv` for keys a and b: (key, as_of, features JSON). Redis
/// keeps no per-row date, so its `as_of` reads as the SQL stores' would.
async fn online_rows(online: &Online) -> Vec<(String, String, String)> {
    match online {
        Online::Sql(db) => reconcile::with_pool!(db, pool => sqlx::query_as(
            "SELECT entity_key, as_of, features FROM reconcile_online WHERE view = 'fv' ORDER BY entity_key")
            .fetch_all(pool).await)
        .expect("online rows"),
        Online::Redis(store) => {
            let got = store.read_many("fv", &["a".to_string(), "b".to_string()]).await.expect("read");
            let mut rows: Vec<(String, String, String)> = got
                .into_iter()
                .map(|(k, v)| {
                    let as_of = match (k.as_str(), v["v"].as_i64()) {
                        ("a", Some(2)) => "2024-02-01",
                        ("a", Some(3)) => "2024-03-01",
                        _ => "2024-01-01",
                    };
                    (k, as_of.to_string(), v.to_string())
                })
                .collect();
            rows.sort();
            rows
        }
    }
}

async fn materialization_is_incremental_replaces_and_prunes(backend: &str) {
    let mut p = crafted();
    if backend == "postgres" {
        let Some(url) = fresh_pg_database("online").await else {
            return;
        };
        p.store_args = vec!["--state".into(), url];
    }
    let redis_url = if backend == "redis" {
        let Some(url) = common::fresh_redis_url("online").await else {
            return;
        };
        p.store_args = vec!["--online".into(), url.clone()];
        Some(url)
    } else {
        None
    };
    let spec_path = p.specs.join("specs.yaml");
    let full = std::fs::read_to_string(&spec_path).expect("spec");
    // Start with January and February only, online.
    let two = full
        .replace("  - { asOf: 2024-03-01, path: data/mar.csv }\n", "")
        .replace("online: false", "online: true");
    std::fs::write(&spec_path, &two).expect("write");
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let db = match &redis_url {
        Some(url) => Online::Redis(
            reconcile::store::online::OnlineStore::open(url, p.dir.path())
                .await
                .expect("redis"),
        ),
        None => Online::Sql(p.db().await),
    };
    assert_eq!(
        online_rows(&db).await,
        vec![
            (
                "a".into(),
                "2024-02-01".into(),
                r#"{"note":"feb","v":2}"#.into()
            ),
            (
                "b".into(),
                "2024-01-01".into(),
                r#"{"note":null,"v":10}"#.into()
            ),
        ]
    );
    // Adding March materializes only March: `b` (absent in March) is not rewritten.
    let three = full.replace("online: false", "online: true");
    std::fs::write(&spec_path, &three).expect("write");
    let plan = text(&p.run(&["plan"]));
    assert!(
        plan.contains(
            "~ update FeatureView/fv\n      materialize fv: 1 new snapshot(s) (2024-03-01)"
        ),
        "{plan}"
    );
    assert!(p.run(&["apply"]).status.success());
    assert_eq!(
        online_rows(&db).await,
        vec![
            (
                "a".into(),
                "2024-03-01".into(),
                r#"{"note":"mar","v":3}"#.into()
            ),
            (
                "b".into(),
                "2024-01-01".into(),
                r#"{"note":null,"v":10}"#.into()
            ),
        ]
    );
    assert_eq!(
        p.run(&["plan"]).status.code(),
        Some(0),
        "materialization is idempotent"
    );
    // Reads go through the CLI as JSON.
    let out = p.run_without_specs(&["features", "get", "user", "a", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["features"]["fv"]["v"], 3);
    // Changing the feature list replaces the view's online rows.
    std::fs::write(
        &spec_path,
        three.replace("features: [v, note]", "features: [v]"),
    )
    .expect("write");
    let plan = text(&p.run(&["plan"]));
    assert!(
        plan.contains(
            "-/+ replace FeatureView/fv\n      features changed: rebuild its online rows"
        ),
        "{plan}"
    );
    assert!(p.run(&["apply"]).status.success());
    assert_eq!(online_rows(&db).await[0].2, r#"{"v":3}"#);
    // A view removed from the specs has its online rows dropped, and the plan says so.
    let without_view = three
        .split("---\nkind: FeatureView")
        .next()
        .expect("split")
        .to_string();
    std::fs::write(&spec_path, without_view).expect("write");
    let plan = text(&p.run(&["plan"]));
    assert!(
        plan.contains(
            "- delete FeatureView/fv\n      no longer in the specs: drop its 2 online rows"
        ),
        "{plan}"
    );
    assert!(p.run(&["apply"]).status.success());
    assert!(online_rows(&db).await.is_empty());
}

on_both_backends!(
    point_in_time_never_leaks_the_future,
    materialization_is_incremental_replaces_and_prunes
);

mod redis {
    #[tokio::test(flavor = "multi_thread")]
    async fn materialization_is_incremental_replaces_and_prunes() {
        super::materialization_is_incremental_replaces_and_prunes("redis").await
    }
}

#[tokio::test]
async fn no_entity_rows_give_an_empty_table_with_every_column() {
    let p = crafted();
    assert!(p.run(&["apply"]).status.success());
    let ws = reconcile::workspace::Workspace::load(&p.specs).expect("specs");
    let view = resolve(&ws.set, "fv").expect("view");
    let batch = historical(&p.db().await, &[view], &EntityRows::default())
        .await
        .expect("historical");
    assert_eq!(batch.rows(), 0);
    let names: Vec<&str> = batch.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["user_id", "as_of", "fv.v", "fv.note"]);
}
