//! Monitors end to end on the StreamFlow example, on SQLite and PostgreSQL:
//! January applied, then February's snapshots added — the monitor fires on
//! the rebuffering shift, churn-rf is retrained as of February with the cause
//! in the plan, the Model's gates decide (champion and challenger compared on
//! the same rows), and the next apply is a no-op. A challenger that fails the
//! gates leaves the champion in Production, and the output says so.

#[macro_use]
mod common;

use common::{Project, fresh_pg_database, text};
use reconcile::store::registry::{Registry, Stage, VersionInfo};

/// Small, fast runs; the monitor retrains churn-rf.
const TRAINING: &str = "kind: TrainingRun\nname: churn-rf\nmodel: streamflow_churn\nasOf: 2024-01-31\n\
label: { table: labels, column: churn_label }\n\
features: [subs_profile.*, usage_30d.*, payments_90d.*, support_90d.*]\n\
algorithm: { randomForest: { trees: 40, classWeight: balanced } }\n---\n\
kind: Endpoint\nname: churn-api\nmodel: streamflow_churn\nport: 8000\n---\n";

async fn project(backend: &str, tag: &str) -> Option<Project> {
    let mut p = Project::example_with_monitor();
    if backend == "postgres" {
        let url = fresh_pg_database(tag).await?;
        p.store_args = vec!["--state".into(), url];
    }
    Some(p)
}

fn set_model(p: &Project, require: &str) {
    std::fs::write(
        p.specs.join("training.yaml"),
        format!(
            "{TRAINING}kind: Model\nname: streamflow_churn\nproduction: churn-rf\nrequire: {{ val_auc: \"{require}\" }}\n"
        ),
    )
    .expect("write training.yaml");
}

/// The February folder of the example's data, moved aside or dropped back in
/// (the tables name their snapshots by a glob over the dated folders).
fn february(p: &Project, present: bool) {
    let (here, aside) = (
        p.specs.join("data/2024-02-29"),
        p.dir.path().join("2024-02-29.aside"),
    );
    let (from, to) = if present {
        (aside, here)
    } else {
        (here, aside)
    };
    std::fs::rename(&from, &to).expect("move the February folder");
}

fn apply(p: &Project) -> String {
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "apply failed: {}", text(&out));
    text(&out)
}

async fn versions(p: &Project) -> Vec<VersionInfo> {
    Registry::new(p.db().await, "streamflow")
        .versions("streamflow_churn")
        .await
        .expect("versions")
}

fn production(vs: &[VersionInfo]) -> Option<&VersionInfo> {
    let prod: Vec<&VersionInfo> = vs.iter().filter(|v| v.stage == Stage::Production).collect();
    assert!(prod.len() <= 1, "two Production versions");
    prod.first().copied()
}

fn report(p: &Project) -> serde_json::Value {
    let out = p.run(&["monitor", "report", "churn-drift", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

fn history(p: &Project) -> Vec<serde_json::Value> {
    let out = p.run(&["monitor", "history", "churn-drift", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("history json")
}

async fn drift_on_new_month_retrains_and_promotes(backend: &str) {
    let Some(p) = project(backend, "monitor_fire").await else {
        return;
    };
    set_model(&p, ">= 0.70");
    february(&p, false);
    apply(&p);
    // January against January: nothing drifted, nothing retrained.
    let r = report(&p);
    assert_eq!(r["drifted"], false, "{r}");
    assert_eq!(r["columns"].as_array().map(Vec::len), Some(14), "{r}");
    assert!(
        r["reference"]
            .as_str()
            .unwrap_or_default()
            .contains("version 1")
    );
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    february(&p, true);
    let plan = text(&p.run(&["plan"]));
    assert!(
        plan.contains("evaluate churn-drift (new snapshot 2024-02-29 of"),
        "{plan}"
    );
    let out = apply(&p);
    assert!(
        out.contains("train churn-rf as of 2024-02-29 (churn-drift: features: 3 of 14 drifted"),
        "{out}"
    );
    assert!(
        out.contains("usage_30d.rebuffer_events_7d wasserstein"),
        "{out}"
    );
    assert!(out.contains("validation rows of version 2"), "{out}");

    // The evaluation that fired flagged the columns Evidently flags on the same
    // months (tests/evidently.rs holds the figures to each other).
    let evaluations = history(&p);
    let fired: Vec<&serde_json::Value> = evaluations
        .iter()
        .filter(|e| e["drifted"] == true)
        .collect();
    assert_eq!(fired.len(), 1, "one firing evaluation");
    let drifted: Vec<&str> = fired[0]["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter(|c| c["drifted"] == true)
        .filter_map(|c| c["column"].as_str())
        .collect();
    assert_eq!(
        drifted,
        [
            "usage_30d.watch_hours_30d",
            "usage_30d.rebuffer_events_7d",
            "support_90d.support_tickets_90d"
        ]
    );

    let vs = versions(&p).await;
    let feb = vs.iter().find(|v| v.version == 2).expect("version 2");
    assert_eq!(feb.run, "churn-rf");
    assert_eq!(feb.params["asOf"], "2024-02-29", "trained as of February");
    assert_eq!(production(&vs).map(|v| v.version), Some(2), "promoted");
    let promotions = Registry::new(p.db().await, "streamflow")
        .history("streamflow_churn")
        .await
        .expect("history");
    assert!(
        promotions
            .iter()
            .any(|h| h.version == 2 && h.reason.contains("validation rows of version 2")),
        "the decision keeps both figures: {promotions:?}"
    );
    // Against the new Production version the monitor is quiet again.
    let r = report(&p);
    assert_eq!(r["drifted"], false, "{r}");
    assert!(
        r["reference"]
            .as_str()
            .unwrap_or_default()
            .contains("version 2")
    );

    let again = apply(&p);
    assert!(again.contains("No changes"), "{again}");
}

async fn a_retrain_that_fails_its_gates_keeps_the_champion(backend: &str) {
    let Some(p) = project(backend, "monitor_gate").await else {
        return;
    };
    set_model(&p, ">= 0.70");
    february(&p, false);
    apply(&p);
    // Raise the bar: the champion stays (it is not re-judged), challengers must clear it.
    set_model(&p, ">= 0.99");
    apply(&p);
    february(&p, true);
    let out = apply(&p);
    assert!(out.contains("train churn-rf as of 2024-02-29"), "{out}");
    assert!(
        out.contains("not promoted: version 2 (churn-rf) fails val_auc >= 0.99"),
        "{out}"
    );
    let vs = versions(&p).await;
    assert_eq!(production(&vs).map(|v| v.version), Some(1), "champion kept");
    let again = apply(&p);
    assert!(again.contains("No changes"), "{again}");
    let plan = text(&p.run(&["plan"]));
    assert!(
        plan.contains("not promoted"),
        "the plan keeps saying why: {plan}"
    );
}

/// `asOf: latest` follows the newest label snapshot, with no monitor.
async fn a_latest_run_follows_new_labels(backend: &str) {
    let Some(p) = project(backend, "monitor_latest").await else {
        return;
    };
    std::fs::remove_file(p.specs.join("monitoring.yaml")).expect("no monitor");
    set_model(&p, ">= 0.70");
    let spec = std::fs::read_to_string(p.specs.join("training.yaml")).expect("read");
    std::fs::write(
        p.specs.join("training.yaml"),
        spec.replace("asOf: 2024-01-31", "asOf: latest"),
    )
    .expect("write");
    february(&p, false);
    apply(&p);
    february(&p, true);
    let plan = text(&p.run(&["plan"]));
    assert!(
        plan.contains(
            "train churn-rf as of 2024-02-29 (the training set's date moved from 2024-01-31)"
        ),
        "{plan}"
    );
    apply(&p);
    let vs = versions(&p).await;
    let dates: Vec<&str> = vs
        .iter()
        .filter_map(|v| v.params["asOf"].as_str())
        .collect();
    assert_eq!(dates, ["2024-01-31", "2024-02-29"]);
    assert_eq!(production(&vs).map(|v| v.version), Some(2));
    assert!(apply(&p).contains("No changes"));
}

on_both_backends!(
    drift_on_new_month_retrains_and_promotes,
    a_retrain_that_fails_its_gates_keeps_the_champion,
    a_latest_run_follows_new_labels
);

/// A resource that fails without dependents (here a Service, with no engine
/// to run it) does not stop the rounds the rest needs: the monitor still
/// evaluates once a Production version exists, fires on February, and the
/// retrain and promotion it asks for happen in the same apply, which still
/// exits 1 for the failure.
#[tokio::test(flavor = "multi_thread")]
async fn a_failure_elsewhere_does_not_hold_back_the_retrain_a_monitor_asks_for() {
    let p = Project::example_with_monitor();
    set_model(&p, ">= 0.70");
    std::fs::write(
        p.specs.join("sidecar.yaml"),
        "kind: Service\nname: sidecar\nimage: busybox:latest\n",
    )
    .expect("write sidecar.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["apply"])
        .arg(&p.specs)
        .env("NO_COLOR", "1")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .current_dir(p.dir.path())
        .output()
        .expect("run reconcile");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "the Service failed: {t}");
    assert!(t.contains("Service/sidecar"), "{t}");
    assert!(
        t.contains("train churn-rf as of 2024-02-29 (churn-drift:"),
        "the monitor's retrain ran in a later round: {t}"
    );
    let vs = versions(&p).await;
    let prod = production(&vs).expect("a Production version");
    assert_eq!(prod.params["asOf"], "2024-02-29", "{t}");
}
