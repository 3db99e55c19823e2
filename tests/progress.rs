//! Progress with counts: off a terminal, `Kind/name: done/total unit` lines
//! (throttled; `RECONCILE_PROGRESS_INTERVAL=0ms` reports every update, so a
//! small input shows them); on one, the resource's bar with its counts; with
//! `-q`, nothing. Every test runs the real binary on a copy of the example.

mod common;

use std::process::{Command, Output};

use common::{Project, text};

/// The example's users: two snapshots of 7 043.
const USERS_ROWS: &str = "14086/14086 rows";

fn apply(p: &Project, args: &[&str], interval: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
    cmd.arg("apply")
        .arg(&p.specs)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RECONCILE_PROGRESS_INTERVAL")
        .current_dir(p.dir.path());
    if let Some(i) = interval {
        cmd.env("RECONCILE_PROGRESS_INTERVAL", i);
    }
    cmd.output().expect("run reconcile")
}

/// The `done` figures of the progress lines of `label` (`Table/users:`).
fn counts(stderr: &str, label: &str, unit: &str) -> Vec<(u64, u64)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(label)?.strip_prefix(": "))
        .filter_map(|rest| {
            let (figures, after) = rest.split_once(' ')?;
            after.starts_with(unit).then_some(())?;
            let (done, total) = figures.split_once('/')?;
            Some((done.parse().ok()?, total.parse().ok()?))
        })
        .collect()
}

#[test]
fn apply_off_a_terminal_prints_lines_with_counts() {
    let p = Project::example();
    let out = apply(&p, &[], Some("0ms"));
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);

    // Rows of both snapshots, counted as they are parsed.
    let rows = counts(&stderr, "Table/users", "rows");
    assert!(
        stderr.contains(&format!("Table/users: {USERS_ROWS} (100%")),
        "{stderr}"
    );
    assert!(rows.len() >= 3, "one line per batch of rows: {rows:?}");
    assert!(rows.iter().all(|&(d, t)| d <= t && t <= 14_086), "{rows:?}");

    // Entities of every online view, once the view's transaction committed.
    for view in ["subs_profile", "usage_30d", "payments_90d", "support_90d"] {
        let label = format!("FeatureView/{view}");
        assert!(
            counts(&stderr, &label, "entities").contains(&(7_043, 7_043)),
            "{label}: {stderr}"
        );
    }

    // Trees of the forest, one line per tree grown; a logistic regression
    // counts nothing.
    let trees = counts(&stderr, "TrainingRun/churn-rf", "trees");
    assert_eq!(trees.len(), 300, "{stderr}");
    assert!(trees.contains(&(300, 300)), "{trees:?}");
    assert!(trees.iter().all(|&(_, t)| t == 300), "{trees:?}");
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("TrainingRun/churn-lr: ")),
        "{stderr}"
    );

    // The outcome lines are still there, after the counts.
    let done_at = stderr.find("✓ Table/users").expect("users applied");
    let counted_at = stderr.find("Table/users: ").expect("users counted");
    assert!(counted_at < done_at, "{stderr}");
}

#[test]
fn quiet_and_json_print_no_progress() {
    let p = Project::example();
    let out = apply(&p, &["--target", "Table/users", "-q"], Some("0ms"));
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(" rows"), "-q printed progress: {stderr}");

    let p = Project::example();
    let out = apply(&p, &["--target", "Table/users", "--json"], Some("0ms"));
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains(" rows"),
        "--json printed progress: {stderr}"
    );
    let _: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
}

#[test]
fn an_unreadable_interval_is_named_and_apply_goes_on() {
    let p = Project::example();
    let out = apply(&p, &["--target", "Table/users"], Some("soon"));
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RECONCILE_PROGRESS_INTERVAL: `soon` is not a duration"),
        "{stderr}"
    );
}

#[test]
fn apply_on_a_terminal_draws_a_bar_with_counts() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no script(1): .ci/run must install bsdutils (util-linux)"
        );
        eprintln!("NOTICE: skipping: no script(1) (util-linux) to give apply a terminal");
        return;
    }
    let p = Project::example();
    let exe = env!("CARGO_BIN_EXE_reconcile");
    let line = format!("'{exe}' apply '{}' --target Table/users", p.specs.display());
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("NO_COLOR", "1")
        .env("RECONCILE_PROGRESS_INTERVAL", "0ms")
        .current_dir(p.dir.path())
        .output()
        .expect("script");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // The bar: the counts, then the bar itself, on the resource's line.
    let bar = format!("{USERS_ROWS} [");
    assert!(screen.contains(&bar), "no bar with counts:\n{screen:?}");
    assert!(screen.contains("Table/users"), "{screen:?}");
    // Never both: no plain progress line on a terminal.
    assert!(
        !screen.contains(&format!("Table/users: {USERS_ROWS}")),
        "{screen:?}"
    );
    assert!(screen.contains("✓ Table/users"), "{screen:?}");
}
