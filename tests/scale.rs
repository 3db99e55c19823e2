//! The point-in-time join in key-ordered chunks (a view over `--memory-budget`)
//! equals the in-memory join row for row, on the example's two months of
//! 7 043 users in a real SQLite file and a real PostgreSQL database, with a
//! budget small enough that every view is read in many chunks. And a
//! materialization's read of each key's newest row keeps the rows that
//! picking the latest of every row keeps, on both backends.

#[macro_use]
mod common;

use chrono::NaiveDate;
use common::{MONITOR_SPEC, Project, fresh_pg_database, text};
use reconcile::data::Batch;
use reconcile::features::{
    EntityRows, MemoryBudget, ResolvedView, historical_as_of_within, historical_within, resolve,
};
use reconcile::store::offline;

/// 64 KiB: a few hundred rows a chunk, so each view of 14 086 rows is joined
/// in dozens of chunks.
const SMALL: MemoryBudget = MemoryBudget(64 * 1024);

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

/// Every user at five points in time — before the first snapshot, at it,
/// between the two, at the second, and after the shorter TTLs expired — plus
/// unknown keys, in an order that is neither the keys' nor the dates'.
fn entities(keys: &[String]) -> EntityRows {
    let dates = [
        "2024-01-30",
        "2024-01-31",
        "2024-02-15",
        "2024-02-29",
        "2024-04-20",
    ];
    let mut rows = EntityRows::default();
    for (i, k) in keys.iter().enumerate() {
        for j in 0..dates.len() {
            rows.keys.push(k.clone());
            rows.timestamps.push(d(dates[(i + j * 3) % dates.len()]));
        }
        if i % 1000 == 0 {
            rows.keys.push(format!("unknown-{i}"));
            rows.timestamps.push(d("2024-02-29"));
        }
    }
    rows.keys.reverse();
    rows.timestamps.reverse();
    rows
}

fn assert_same(chunked: &Batch, whole: &Batch, what: &str) {
    assert_eq!(chunked.rows(), whole.rows(), "{what}: row count");
    assert_eq!(chunked.lines, whole.lines, "{what}: lines");
    let names = |b: &Batch| b.columns.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(chunked), names(whole), "{what}: columns");
    for ((name, a), (_, b)) in chunked.columns.iter().zip(&whole.columns) {
        if a != b {
            let row = (0..a.len()).find(|&i| a.display(i) != b.display(i));
            panic!(
                "{what}: column {name} differs first at row {row:?}: chunked {:?}, in memory {:?}",
                row.map(|i| a.display(i)),
                row.map(|i| b.display(i))
            );
        }
    }
}

async fn chunked_join_equals_in_memory(backend: &str) {
    let mut p = Project::copy_of(&[MONITOR_SPEC, "training.yaml"]);
    if backend == "postgres" {
        let Some(url) = fresh_pg_database("chunked_join").await else {
            return;
        };
        p.store_args = vec!["--state".into(), url];
    }
    let out = p.run(&["apply", "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let ws = reconcile::workspace::Workspace::load(&p.specs).expect("specs");
    let views: Vec<ResolvedView> = ["subs_profile", "usage_30d", "payments_90d", "support_90d"]
        .iter()
        .map(|v| resolve(&ws.set, v).expect("view"))
        .collect();
    let db = p.db().await;
    // The small budget really sends every view down the chunked path, in
    // many chunks.
    for v in &views {
        let stored = offline::rows_between(&db, &v.table, (None, None))
            .await
            .expect("rows");
        assert!(
            stored as u64 > 10 * SMALL.rows(v),
            "{}: {stored} rows fit {} rows a chunk: the test would not chunk",
            v.name,
            SMALL.rows(v)
        );
    }
    let keys = offline::distinct_keys(&db, "users", "user_id", d("2024-02-29"))
        .await
        .expect("keys");
    assert_eq!(keys.len(), 7043);
    let rows = entities(&keys);
    let whole = historical_within(&db, &views, &rows, MemoryBudget::DEFAULT)
        .await
        .expect("in memory");
    let chunked = historical_within(&db, &views, &rows, SMALL)
        .await
        .expect("chunked");
    assert_same(&chunked, &whole, "entity rows");
    // Not vacuous: values from both months, and nulls where nothing qualifies.
    let watch = whole.column("usage_30d.watch_hours_30d").expect("column");
    let known = (0..watch.len()).filter(|&i| !watch.is_null(i)).count();
    assert!(known > 7043 * 2 && known < rows.keys.len(), "{known}");
    for at in ["2024-01-31", "2024-02-15", "2024-02-29", "2024-04-20"] {
        let whole = historical_as_of_within(&db, &views, d(at), MemoryBudget::DEFAULT)
            .await
            .expect("in memory");
        let chunked = historical_as_of_within(&db, &views, d(at), SMALL)
            .await
            .expect("chunked");
        assert_eq!(whole.rows(), 7043, "as of {at}");
        assert_same(&chunked, &whole, &format!("every user as of {at}"));
    }
    // The CLI takes the budget and writes the same CSV.
    let args = |budget: &str| {
        vec![
            "features".to_string(),
            "historical".into(),
            "--views".into(),
            "subs_profile,usage_30d,payments_90d,support_90d".into(),
            "--as-of".into(),
            "2024-02-20".into(),
            "--memory-budget".into(),
            budget.into(),
        ]
    };
    let run = |budget: &str| {
        let a = args(budget);
        let out = p.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", text(&out));
        out.stdout
    };
    let small = run("64KiB");
    assert_eq!(small, run("1GiB"), "CLI output with a small budget");
    assert_eq!(small.iter().filter(|b| **b == b'\n').count(), 7044);
    let bad = p.run(&[
        "features",
        "historical",
        "--views",
        "usage_30d",
        "--as-of",
        "2024-02-20",
        "--memory-budget",
        "lots",
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("`lots` is not a size"),
        "{}",
        text(&bad)
    );
}

/// `KeyRows::Latest` (a query for each key's newest row on SQLite) hands a
/// materialization the rows `KeyRows::All` would after the latest row per key
/// is picked: keys in every snapshot, in the first only, in the first and
/// the last, a null in the newest row, over chunks smaller than the table,
/// with and without date bounds.
async fn newest_rows_equal_the_latest_of_every_row(backend: &str) {
    use reconcile::data::Column;
    use reconcile::spec::ColumnType;
    use reconcile::store::StoreError;
    use reconcile::store::online::OnlineRows;
    let mut p = Project::copy_of(&[MONITOR_SPEC, "training.yaml"]);
    if backend == "postgres" {
        let Some(url) = fresh_pg_database("newest_rows").await else {
            return;
        };
        p.store_args = vec!["--state".into(), url];
    }
    let db = p.db().await;
    let layout = offline::TableLayout {
        name: "newest_rows".into(),
        columns: vec![
            ("k".into(), ColumnType::String),
            ("x".into(), ColumnType::Float),
            ("s".into(), ColumnType::String),
        ],
        primary_key: vec!["k".into()],
        schema_hash: "newest_rows".into(),
    };
    let dates = ["2024-01-31", "2024-02-29", "2024-03-31"];
    // Key k{i}: in every snapshot when i % 3 == 0, in the first only when
    // i % 3 == 1, in the first and the last when i % 3 == 2; a null `x` in
    // the last snapshot's row when i % 5 == 0.
    let snapshot = |n: usize| {
        let keys: Vec<usize> = (0..40)
            .filter(|i| n == 0 || i % 3 == 0 || (n == 2 && i % 3 == 2))
            .collect();
        Batch {
            columns: vec![
                (
                    "k".into(),
                    Column::Str(keys.iter().map(|i| Some(format!("k{i:02}"))).collect()),
                ),
                (
                    "x".into(),
                    Column::Float(
                        keys.iter()
                            .map(|&i| (n < 2 || i % 5 != 0).then_some(i as f64 + n as f64 / 10.0))
                            .collect(),
                    ),
                ),
                (
                    "s".into(),
                    Column::Str(keys.iter().map(|i| Some(format!("{n}:{i}"))).collect()),
                ),
            ],
            lines: (2..keys.len() as u64 + 2).collect(),
        }
    };
    let batches: Vec<Batch> = (0..dates.len()).map(snapshot).collect();
    let writes: Vec<offline::SnapshotWrite<'_>> = batches
        .iter()
        .zip(dates)
        .map(|(batch, at)| offline::SnapshotWrite {
            as_of: d(at),
            batch,
            manifest: offline::StoredSnapshot {
                file_hash: at.into(),
                expect_hash: String::new(),
                row_count: batch.rows() as i64,
                source: format!("{at}.csv"),
                loaded_ms: 0,
            },
        })
        .collect();
    offline::write_snapshots(&db, &layout, &writes, true)
        .await
        .expect("write");
    for bounds in [
        (None, None),
        (Some(d("2024-02-01")), None),
        (None, Some(d("2024-02-29"))),
    ] {
        let mut read = Vec::new();
        for rows in [offline::KeyRows::Latest, offline::KeyRows::All] {
            let mut picked: Vec<(String, String, String)> = Vec::new();
            offline::read_table_by_key::<StoreError, _>(
                &db,
                &layout.name,
                &layout.columns,
                bounds,
                rows,
                7,
                |dates, batch| {
                    let latest = OnlineRows::latest(&batch, &dates);
                    for i in 0..latest.keys.len() {
                        picked.push((
                            latest.keys[i].clone(),
                            latest.as_of[i].clone(),
                            latest.features[i].clone(),
                        ));
                    }
                    std::future::ready(Ok(()))
                },
            )
            .await
            .expect("read");
            picked.sort();
            read.push(picked);
        }
        assert_eq!(read[0], read[1], "{backend}, dates {bounds:?}");
        let find = |k: &str| read[0].iter().find(|r| r.0 == k).cloned();
        match bounds {
            (None, None) => {
                assert_eq!(read[0].len(), 40);
                let k00 = find("k00").expect("k00");
                assert_eq!(
                    (k00.1.as_str(), k00.2.as_str()),
                    ("2024-03-31", r#"{"s":"2:0","x":null}"#)
                );
                assert_eq!(find("k01").expect("k01").1, "2024-01-31");
                assert_eq!(find("k02").expect("k02").1, "2024-03-31");
            }
            (Some(_), None) => {
                assert!(find("k01").is_none(), "k01 has no row after January");
                assert_eq!(read[0].len(), 27);
            }
            _ => {
                assert_eq!(find("k03").expect("k03").1, "2024-02-29");
                assert_eq!(find("k02").expect("k02").1, "2024-01-31");
            }
        }
    }
}

on_both_backends!(
    chunked_join_equals_in_memory,
    newest_rows_equal_the_latest_of_every_row
);
