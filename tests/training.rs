//! Training runs and the model registry, end to end on the StreamFlow example:
//! reproducible versions, plans that name why a run retrains, and promotion by
//! run, version and policy, gates, drift healing and the one-Production invariant
//! (racing applies, kill -9 mid-promotion) — on SQLite and PostgreSQL.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Project, fresh_pg_database, text};
use reconcile::store::registry::{Registry, Stage, VersionInfo};

/// Small, fast runs (the example's 300-tree forest is exercised by `streamflow_*`).
const RUNS: &str = "kind: TrainingRun\nname: churn-rf\nmodel: streamflow_churn\nasOf: 2024-01-31\n\
label: { table: labels, column: churn_label }\n\
features: [subs_profile.*, usage_30d.*, payments_90d.*, support_90d.*]\n\
algorithm: { randomForest: { trees: 30, classWeight: balanced } }\n---\n\
kind: TrainingRun\nname: churn-lr\nmodel: streamflow_churn\nasOf: 2024-01-31\n\
label: { table: labels, column: churn_label }\n\
features: [subs_profile.*, usage_30d.*, payments_90d.*, support_90d.*]\n\
algorithm: { logisticRegression: { classWeight: balanced } }\n---\n";

async fn project(backend: &str, tag: &str) -> Option<Project> {
    let mut p = Project::example();
    if backend == "postgres" {
        let url = fresh_pg_database(tag).await?;
        p.store_args = vec!["--state".into(), url];
    }
    Some(p)
}

fn set_model(p: &Project, model: &str) {
    std::fs::write(
        p.specs.join("training.yaml"),
        format!("{RUNS}kind: Model\nname: streamflow_churn\n{model}\n"),
    )
    .expect("write training.yaml");
}

fn apply(p: &Project) -> String {
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "apply failed: {}", text(&out));
    text(&out)
}

async fn registry(p: &Project) -> Registry {
    Registry::new(p.db().await, "streamflow")
}

async fn versions(p: &Project) -> Vec<VersionInfo> {
    registry(p)
        .await
        .versions("streamflow_churn")
        .await
        .expect("versions")
}

fn of_run<'a>(vs: &'a [VersionInfo], run: &str) -> &'a VersionInfo {
    vs.iter()
        .rev()
        .find(|v| v.run == run)
        .unwrap_or_else(|| panic!("no version of {run} in {vs:?}"))
}

fn production(vs: &[VersionInfo]) -> Option<i64> {
    let prod: Vec<i64> = vs
        .iter()
        .filter(|v| v.stage == Stage::Production)
        .map(|v| v.version)
        .collect();
    assert!(prod.len() <= 1, "two Production versions: {prod:?}");
    prod.first().copied()
}

async fn same_specs_in_fresh_stores_give_identical_versions(backend: &str) {
    let Some(a) = project(backend, "repro_a").await else {
        return;
    };
    let b = Project::example(); // always SQLite: another store, another backend
    let out = apply(&a);
    assert!(out.contains("val_auc"), "apply prints the AUC: {out}");
    apply(&b);
    let (va, vb) = (versions(&a).await, versions(&b).await);
    assert_eq!(va.len(), 2);
    for run in ["churn-rf", "churn-lr"] {
        let (x, y) = (of_run(&va, run), of_run(&vb, run));
        assert_eq!(x.identity, y.identity, "{run}: identity");
        assert_eq!(x.artifact_hash, y.artifact_hash, "{run}: model bytes");
        assert_eq!(x.metrics, y.metrics, "{run}: metrics");
        assert_eq!(x.training_set_hash, y.training_set_hash);
    }
    let rf = of_run(&va, "churn-rf");
    let auc = rf.metric("val_auc").expect("auc");
    assert!(auc > 0.75, "forest AUC {auc}");
    assert_eq!(production(&va), Some(rf.version));
    // `models show` prints the Production version's metrics.
    let show = a.run_without_specs(&["models", "show", "streamflow_churn"]);
    let shown = text(&show);
    assert!(show.status.success(), "{shown}");
    assert!(shown.contains(&format!("{auc:.4}")), "{shown}");
    let json = a.run_without_specs(&["models", "show", "streamflow_churn", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["run"], "churn-rf");
    assert_eq!(v["stage"], "Production");
}

async fn reapply_trains_nothing_and_plans_say_why(backend: &str) {
    let Some(p) = project(backend, "replan").await else {
        return;
    };
    set_model(&p, "production: churn-rf");
    apply(&p);
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let again = apply(&p);
    assert!(again.contains("No changes"), "{again}");
    // Changed parameters: only that run retrains.
    let spec = std::fs::read_to_string(p.specs.join("training.yaml")).expect("read");
    std::fs::write(
        p.specs.join("training.yaml"),
        spec.replace("trees: 30", "trees: 31"),
    )
    .expect("write");
    let plan = text(&p.run(&["plan"]));
    assert!(
        plan.contains("train churn-rf (parameters changed: `algorithm`)"),
        "{plan}"
    );
    assert!(!plan.contains("train churn-lr"), "{plan}");
    apply(&p);
    // Data after asOf: no retraining. Data at asOf: both retrain.
    let later = p.specs.join("data/2024-02-29/labels.csv");
    let content = std::fs::read_to_string(&later).expect("read");
    std::fs::write(&later, content.replacen(",False\n", ",True\n", 1)).expect("write");
    let plan = text(&p.run(&["plan"]));
    assert!(!plan.contains("train churn"), "{plan}");
    apply(&p);
    let jan = p.specs.join("data/2024-01-31/labels.csv");
    let content = std::fs::read_to_string(&jan).expect("read");
    std::fs::write(&jan, content.replacen(",False\n", ",True\n", 1)).expect("write");
    let plan = text(&p.run(&["plan"]));
    assert!(
        plan.contains("train churn-rf (training set changed)"),
        "{plan}"
    );
    assert!(
        plan.contains("train churn-lr (training set changed)"),
        "{plan}"
    );
    let out = apply(&p);
    assert!(out.contains("promoted to Production"), "{out}");
    let vs = versions(&p).await;
    assert_eq!(vs.len(), 5, "rf, lr, rf(31 trees), rf and lr on new labels");
    assert_eq!(production(&vs), Some(of_run(&vs, "churn-rf").version));
    // Reverting the data finds the earlier versions by identity: nothing trains.
    std::fs::write(&jan, content).expect("restore");
    let out = apply(&p);
    assert!(out.contains("already registered"), "{out}");
    assert_eq!(versions(&p).await.len(), 5);
}

async fn promotion_by_run_version_policy_and_gates(backend: &str) {
    let Some(p) = project(backend, "promote").await else {
        return;
    };
    set_model(&p, "production: churn-rf");
    apply(&p);
    let vs = versions(&p).await;
    let (rf, lr) = (of_run(&vs, "churn-rf"), of_run(&vs, "churn-lr"));
    let (rf_v, lr_v) = (rf.version, lr.version);
    assert_eq!(production(&vs), Some(rf_v), "by run");
    let (better, worse) = if lr.metric("val_auc") > rf.metric("val_auc") {
        (lr_v, rf_v)
    } else {
        (rf_v, lr_v)
    };

    set_model(&p, &format!("production: {{ version: {worse} }}"));
    let plan = text(&p.run(&["plan"]));
    assert!(plan.contains("Model/streamflow_churn"), "{plan}");
    apply(&p);
    let vs = versions(&p).await;
    assert_eq!(production(&vs), Some(worse), "by version");
    if worse != rf_v {
        assert_eq!(
            vs.iter().find(|v| v.version == rf_v).map(|v| v.stage),
            Some(Stage::Archived)
        );
    }

    // The challenger wins, but by less than minGain: Production stays, the plan says why.
    set_model(
        &p,
        "production: { best: val_auc, minGain: 0.5, among: [churn-rf, churn-lr] }",
    );
    let out = apply(&p);
    assert!(out.contains("< minGain 0.5"), "{out}");
    assert_eq!(production(&versions(&p).await), Some(worse));
    let plan = text(&p.run(&["plan"]));
    assert!(plan.contains("not promoted: challenger"), "{plan}");

    set_model(
        &p,
        "production: { best: val_auc, minGain: 0.0, among: [churn-rf, churn-lr] }",
    );
    apply(&p);
    assert_eq!(production(&versions(&p).await), Some(better), "policy win");

    // A gate the candidate fails: registered, never promoted, and the plan says why.
    let worse_run = if worse == rf_v {
        "churn-rf"
    } else {
        "churn-lr"
    };
    set_model(
        &p,
        &format!("production: {worse_run}\nrequire: {{ val_auc: \">= 0.99\" }}"),
    );
    let out = apply(&p);
    assert!(out.contains("fails val_auc >= 0.99"), "{out}");
    assert_eq!(production(&versions(&p).await), Some(better));
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        text(&plan).contains("fails val_auc >= 0.99"),
        "{}",
        text(&plan)
    );

    let history = registry(&p)
        .await
        .history("streamflow_churn")
        .await
        .expect("history");
    let causes: Vec<&str> = history.iter().map(|h| h.cause.as_str()).collect();
    assert!(
        causes.contains(&"spec") && causes.contains(&"policy"),
        "{causes:?}"
    );
    let hist = text(&p.run_without_specs(&["models", "history", "streamflow_churn"]));
    assert!(hist.contains("Production"), "{hist}");
}

async fn out_of_band_stage_change_is_healed(backend: &str) {
    let Some(p) = project(backend, "drift").await else {
        return;
    };
    set_model(&p, "production: churn-rf");
    apply(&p);
    let vs = versions(&p).await;
    let (rf_v, lr_v) = (
        of_run(&vs, "churn-rf").version,
        of_run(&vs, "churn-lr").version,
    );
    let target = format!("streamflow_churn:{lr_v}");
    let out = p.run_without_specs(&["models", "stage", &target, "Production"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(production(&versions(&p).await), Some(lr_v));
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(2));
    let plan = text(&plan);
    assert!(
        plan.contains(&format!(
            "drift: version {lr_v} is Production but the spec chose version {rf_v}"
        )),
        "{plan}"
    );
    let out = apply(&p);
    assert!(out.contains("restored"), "{out}");
    assert_eq!(production(&versions(&p).await), Some(rf_v));
    // `production: manual` leaves hand-made changes alone.
    set_model(&p, "production: manual");
    apply(&p);
    p.run_without_specs(&["models", "stage", &target, "Production"]);
    let plan = p.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert_eq!(production(&versions(&p).await), Some(lr_v));
    let hist = registry(&p)
        .await
        .history("streamflow_churn")
        .await
        .expect("history");
    assert!(hist.iter().any(|h| h.cause == "manual"));
}

async fn never_two_production_versions(backend: &str) {
    let Some(p) = project(backend, "oneprod").await else {
        return;
    };
    set_model(&p, "production: churn-rf");
    apply(&p);
    let vs = versions(&p).await;
    let (rf_v, lr_v) = (
        of_run(&vs, "churn-rf").version,
        of_run(&vs, "churn-lr").version,
    );
    // The database itself refuses a second Production.
    let db = p.db().await;
    let second = reconcile::with_pool!(&db, pool => sqlx::query(
        "UPDATE reconcile_model_versions SET stage = 'Production' WHERE model = 'streamflow_churn' AND version = $1"
    ).bind(lr_v).execute(pool).await.map(|_| ()));
    assert!(second.is_err(), "a second Production row was accepted");

    // Racing applies that want different versions: the apply lock orders them.
    set_model(&p, &format!("production: {{ version: {lr_v} }}"));
    let racers: Vec<_> = (0..3)
        .map(|_| p.spawn(&["apply", "--lock-timeout", "120s"]))
        .collect();
    for r in racers {
        let out = r.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", text(&out));
    }
    assert_eq!(production(&versions(&p).await), Some(lr_v));

    // kill -9 at random points of applies that flip Production back and forth.
    let mut seed = 0x2545_f491_u64;
    for round in 0..12 {
        let want = if round % 2 == 0 { rf_v } else { lr_v };
        set_model(&p, &format!("production: {{ version: {want} }}"));
        let mut child = p.spawn(&["apply"]);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 250));
        let _ = child.kill();
        let _ = child.wait();
        let vs = versions(&p).await;
        let prod = production(&vs);
        let hist = registry(&p)
            .await
            .history("streamflow_churn")
            .await
            .expect("history");
        let last_promoted = hist
            .iter()
            .rev()
            .find(|h| h.to_stage == "Production")
            .map(|h| h.version);
        assert_eq!(
            prod, last_promoted,
            "round {round}: stages and history agree"
        );
    }
    set_model(&p, &format!("production: {{ version: {rf_v} }}"));
    apply(&p);
    assert_eq!(production(&versions(&p).await), Some(rf_v));
}

on_both_backends!(
    same_specs_in_fresh_stores_give_identical_versions,
    reapply_trains_nothing_and_plans_say_why,
    promotion_by_run_version_policy_and_gates,
    out_of_band_stage_change_is_healed,
    never_two_production_versions
);
