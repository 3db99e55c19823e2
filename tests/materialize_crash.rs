//! Killing an apply (`kill -9`) while a feature view is materialized leaves the
//! online store at the old or at the new state of that view, never between — on
//! SQLite, PostgreSQL and Redis.

#[macro_use]
mod common;

use std::path::Path;
use std::time::Duration;

use common::{Project, fresh_pg_database, fresh_redis_url, text};
use reconcile::store::online::OnlineStore;

const ROWS: usize = 200_000;

fn write_csv(path: &Path, version: i64) {
    let mut s = String::with_capacity(ROWS * 24);
    s.push_str("user_id,version\n");
    for i in 0..ROWS {
        s.push_str(&format!("u{i:07},{version}\n"));
    }
    std::fs::write(path, s).expect("write csv");
}

fn project() -> Project {
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    std::fs::create_dir_all(specs.join("data")).expect("mkdir");
    std::fs::write(
        specs.join("specs.yaml"),
        "kind: Project\nname: mcrash\n---\nkind: Entity\nname: user\njoinKeys: [user_id]\n---\n\
         kind: Table\nname: wide\nprimaryKey: [user_id]\ncolumns: { user_id: string, version: int }\n\
         snapshots:\n  - { asOf: 2024-01-31, path: data/wide.csv }\n---\n\
         kind: FeatureView\nname: wv\nentity: user\ntable: wide\nfeatures: [version]\nttl: 90d\nonline: true\n",
    )
    .expect("spec");
    write_csv(&specs.join("data/wide.csv"), 1);
    Project {
        dir,
        specs,
        store_args: Vec::new(),
    }
}

/// How many online rows of the view carry version 1 and version 2.
async fn versions(online: &OnlineStore, keys: &[String]) -> (usize, usize) {
    let (mut old, mut new) = (0, 0);
    for chunk in keys.chunks(10_000) {
        let got = online.read_many("wv", chunk).await.expect("read");
        old += got.values().filter(|f| f["version"] == 1).count();
        new += got.values().filter(|f| f["version"] == 2).count();
    }
    (old, new)
}

async fn kill_9_mid_materialization_keeps_old_or_new(backend: &str) {
    let mut p = project();
    match backend {
        "postgres" => {
            let Some(url) = fresh_pg_database("mcrash").await else {
                return;
            };
            p.store_args = vec!["--state".into(), url];
        }
        "redis" => {
            let Some(url) = fresh_redis_url("mcrash").await else {
                return;
            };
            p.store_args = vec!["--online".into(), url];
        }
        _ => {}
    }
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let online_url = match p.store_args.iter().position(|a| a == "--online") {
        Some(i) => p.store_args[i + 1].clone(),
        None => p.store_url(),
    };
    let online = OnlineStore::open(&online_url, p.dir.path())
        .await
        .expect("online store");
    let keys: Vec<String> = (0..ROWS).map(|i| format!("u{i:07}")).collect();
    assert_eq!(versions(&online, &keys).await, (ROWS, 0));
    write_csv(&p.specs.join("data/wide.csv"), 2);
    let mut killed_while_running = 0;
    for delay_ms in [300u64, 500, 700, 900, 1100, 1400, 1800, 2300] {
        let mut child = p.spawn(&["apply"]);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if child.try_wait().expect("try_wait").is_none() {
            child.kill().expect("kill -9");
            killed_while_running += 1;
        }
        let _ = child.wait();
        let (old, new) = versions(&online, &keys).await;
        assert!(
            (old, new) == (ROWS, 0) || (old, new) == (0, ROWS),
            "after a kill at {delay_ms} ms the view is mixed: {old} old, {new} new rows"
        );
        if new == ROWS {
            break;
        }
    }
    assert!(
        killed_while_running > 0,
        "no apply was killed while running; the test proved nothing"
    );
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(versions(&online, &keys).await, (0, ROWS));
    assert_eq!(p.run(&["plan"]).status.code(), Some(0));
}

on_both_backends!(kill_9_mid_materialization_keeps_old_or_new);

mod redis {
    #[tokio::test(flavor = "multi_thread")]
    async fn kill_9_mid_materialization_keeps_old_or_new() {
        super::kill_9_mid_materialization_keeps_old_or_new("redis").await
    }
}
