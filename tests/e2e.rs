//! End to end on the StreamFlow example: the real binary against a real SQLite
//! file (embedded default) and a real PostgreSQL server (one database per test).

#[macro_use]
mod common;

use common::{Project, fresh_pg_database, text};
use reconcile::store::offline::count_rows;

const USERS: i64 = 7043;
const TABLES: [&str; 6] = [
    "users",
    "subscriptions",
    "usage_agg_30d",
    "payments_agg_90d",
    "support_agg_90d",
    "labels",
];

/// Rewrites field `field` of data line `line` (1-based file line) of a CSV.
fn edit_cell(path: &std::path::Path, line: usize, field: usize, value: &str) -> String {
    let content = std::fs::read_to_string(path).expect("read csv");
    let mut lines: Vec<String> = content.lines().map(str::to_string).collect();
    let mut cells: Vec<String> = lines[line - 1].split(',').map(str::to_string).collect();
    let old = std::mem::replace(&mut cells[field], value.to_string());
    lines[line - 1] = cells.join(",");
    std::fs::write(path, lines.join("\n") + "\n").expect("write csv");
    old
}

async fn project(backend: &str, tag: &str) -> Option<Project> {
    let mut p = Project::example();
    if backend == "postgres" {
        let url = fresh_pg_database(tag).await?;
        p.store_args = vec!["--state".into(), url];
    }
    Some(p)
}

async fn apply_converges_and_second_plan_is_noop(backend: &str) {
    let Some(p) = project(backend, "converge").await else {
        return;
    };
    let plan = p.run(&["plan"]);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "first plan must report changes: {}",
        text(&plan)
    );
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "apply failed: {}", text(&out));
    let db = p.db().await;
    for table in TABLES {
        for as_of in ["2024-01-31", "2024-02-29"] {
            let n = count_rows(&db, table, as_of).await.expect("count");
            assert_eq!(n, USERS, "{table} as of {as_of}");
        }
    }
    let plan = p.run(&["plan"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "second plan must be empty: {}",
        text(&plan)
    );
    let again = p.run(&["apply"]);
    assert!(text(&again).contains("No changes"), "{}", text(&again));
    let status = p.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let rows = rows.as_array().expect("array");
    assert!(rows.iter().all(|r| r["state"] == "Ready"), "{rows:?}");
}

async fn editing_one_cell_plans_exactly_that_snapshot(backend: &str) {
    let Some(p) = project(backend, "edit").await else {
        return;
    };
    assert!(p.run(&["apply"]).status.success());
    let csv = p.specs.join("data/2024-02-29/usage_agg_30d.csv");
    let old = edit_cell(&csv, 2, 1, "1.5");
    if old == "1.5" {
        edit_cell(&csv, 2, 1, "2.5");
    }
    let out = p.run(&["plan", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    let changed: Vec<&serde_json::Value> = plan["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter(|r| r["action"] != "noop")
        .collect();
    // The table reloads exactly that snapshot; its feature view, downstream, rebuilds
    // its online rows from the changed data. Nothing else moves.
    assert_eq!(
        changed.len(),
        2,
        "the table and its view change: {changed:?}"
    );
    assert_eq!(changed[1]["id"]["name"], "usage_30d");
    assert_eq!(changed[1]["action"], "replace");
    assert_eq!(changed[0]["id"]["name"], "usage_agg_30d");
    assert_eq!(changed[0]["action"], "update");
    let ops = changed[0]["operations"].as_array().expect("ops");
    assert_eq!(ops.len(), 1);
    let snaps = ops[0]["snapshots"].as_array().expect("snapshots");
    assert_eq!(
        snaps.len(),
        1,
        "only the edited snapshot reloads: {snaps:?}"
    );
    assert_eq!(snaps[0]["asOf"], "2024-02-29");
    let human = text(&p.run(&["plan"]));
    assert!(human.contains("~ update Table/usage_agg_30d"), "{human}");
    assert!(
        human.contains("data changed in snapshot 2024-02-29"),
        "{human}"
    );
    assert!(p.run(&["apply"]).status.success());
    assert_eq!(p.run(&["plan"]).status.code(), Some(0));
}

async fn bad_csv_is_refused_and_previous_snapshot_survives(backend: &str) {
    let Some(p) = project(backend, "bad").await else {
        return;
    };
    assert!(p.run(&["apply"]).status.success());
    let db = p.db().await;
    let csv = p.specs.join("data/2024-01-31/subscriptions.csv");
    let content = std::fs::read_to_string(&csv).expect("read");
    let user = content
        .lines()
        .nth(1)
        .and_then(|l| l.split(',').next())
        .expect("user")
        .to_string();
    let before: (i64,) = reconcile::with_pool!(&db, pool => sqlx::query_as(
        "SELECT months_active FROM subscriptions WHERE user_id = $1 ORDER BY as_of LIMIT 1")
        .bind(&user).fetch_one(pool).await)
    .expect("query");
    // months_active is declared between 0 and 72.
    edit_cell(&csv, 2, 1, "999");
    let out = p.run(&["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("failed validation"), "{msg}");
    assert!(msg.contains("between(months_active)"), "{msg}");
    assert!(msg.contains("line 2: months_active = 999"), "{msg}");
    // The previous snapshot is intact and queryable.
    assert_eq!(
        count_rows(&db, "subscriptions", "2024-01-31")
            .await
            .expect("count"),
        USERS
    );
    let after: (i64,) = reconcile::with_pool!(&db, pool => sqlx::query_as(
        "SELECT months_active FROM subscriptions WHERE user_id = $1 ORDER BY as_of LIMIT 1")
        .bind(&user).fetch_one(pool).await)
    .expect("query");
    assert_eq!(before, after);
    // The table is reported failed, and the plan still wants to load it.
    let status = text(&p.run(&["status"]));
    assert!(status.contains("subscriptions"), "{status}");
    assert_eq!(p.run(&["plan"]).status.code(), Some(2));
    // A bad value (not an int) names its line and column.
    edit_cell(&csv, 3, 1, "twelve");
    let msg = text(&p.run(&["apply"]));
    assert!(
        msg.contains("line 3, column `months_active` (#2): `twelve` is not an int"),
        "{msg}"
    );
}

async fn destroy_removes_what_the_specs_created_except_protected(backend: &str) {
    let Some(p) = project(backend, "destroy").await else {
        return;
    };
    let labels = p.specs.join("tables/labels.yaml");
    let spec = std::fs::read_to_string(&labels).expect("read");
    std::fs::write(&labels, format!("{spec}protect: true\n")).expect("write");
    assert!(p.run(&["apply"]).status.success());
    let dry = p.run(&["destroy"]);
    assert_eq!(
        dry.status.code(),
        Some(2),
        "destroy without --yes lists what would go and removes nothing: {}",
        text(&dry)
    );
    assert!(
        text(&dry).contains("- delete Table/subscriptions"),
        "{}",
        text(&dry)
    );
    let db = p.db().await;
    assert_eq!(
        count_rows(&db, "subscriptions", "2024-01-31")
            .await
            .expect("count"),
        USERS
    );
    let out = p.run(&["destroy", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("protected"), "{}", text(&out));
    assert!(
        count_rows(&db, "subscriptions", "2024-01-31")
            .await
            .is_err(),
        "table must be gone"
    );
    assert_eq!(
        count_rows(&db, "labels", "2024-01-31")
            .await
            .expect("count"),
        USERS
    );
    // Everything but the protected table is planned anew.
    let plan = text(&p.run(&["plan"]));
    assert!(plan.contains("+ create Table/subscriptions"), "{plan}");
    assert!(!plan.contains("Table/labels\n"), "{plan}");
}

on_both_backends!(
    apply_converges_and_second_plan_is_noop,
    editing_one_cell_plans_exactly_that_snapshot,
    bad_csv_is_refused_and_previous_snapshot_survives,
    destroy_removes_what_the_specs_created_except_protected
);

/// `${VAR}` references are resolved to connect but stored as references.
#[tokio::test]
async fn env_references_stay_references_in_the_state_store() {
    let p = Project::example();
    let project = p.specs.join("project.yaml");
    let spec = std::fs::read_to_string(&project).expect("read");
    let spec = spec.replace(
        "state: sqlite://.reconcile/state.db",
        "state: \"sqlite://.reconcile/${RECONCILE_E2E_SECRET_DB}\"",
    );
    std::fs::write(&project, spec).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["apply", "-q"])
        .arg(&p.specs)
        .env("RECONCILE_E2E_SECRET_DB", "s3cret.db")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let db = reconcile::store::Db::open(
        &format!(
            "sqlite://{}",
            p.specs.join(".reconcile/s3cret.db").display()
        ),
        p.dir.path(),
    )
    .await
    .expect("open");
    let (json,): (String,) = reconcile::with_pool!(&db, pool => sqlx::query_as(
        "SELECT spec_json FROM reconcile_resources WHERE kind = 'Project'").fetch_one(pool).await)
    .expect("project row");
    assert!(json.contains("${RECONCILE_E2E_SECRET_DB}"), "{json}");
    assert!(!json.contains("s3cret"), "{json}");
    // Without the variable, validation names it.
    let out = p.run(&["validate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("RECONCILE_E2E_SECRET_DB"),
        "{}",
        text(&out)
    );
}
