//! reconcile's drift figures against Evidently's on the example data
//! (2024-01-31 as reference, 2024-02-29 as current): writes what
//! `examples/drift_compare.rs` prints to a temporary file and runs
//! `benches/evidently_compare.py` on it with the venv's Python,
//! `$RECONCILE_VENV/bin/python` (default `$HOME/.cache/reconcile/venv`,
//! which `.ci/run` creates). Without the venv or Evidently the test is
//! skipped with a notice, except under `CI=true`, where it fails.

#[path = "../examples/drift_compare.rs"]
#[allow(dead_code)]
mod drift_compare;

use std::path::{Path, PathBuf};
use std::process::Command;

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("RECONCILE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/reconcile/venv")
        });
    venv.join("bin/python")
}

#[test]
fn drift_matches_evidently() {
    let python = venv_python();
    let has_evidently = Command::new(&python)
        .args(["-c", "import evidently"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_evidently {
        let msg = format!(
            "{} cannot import evidently (set RECONCILE_VENV or run .ci/run's ensure_venv)",
            python.display()
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("skipping drift_matches_evidently: {msg}");
        return;
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (reference, current) = (
        root.join("specs/data/2024-01-31"),
        root.join("specs/data/2024-02-29"),
    );
    let pairs = drift_compare::load_windows(&reference, &current, &drift_compare::default_tables())
        .expect("load the example windows");
    let drifts = drift_compare::compare(&pairs).expect("drift");
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = dir.path().join("ours.jsonl");
    std::fs::write(&ours, drift_compare::json_lines(&drifts)).expect("write ours");

    let out = Command::new(&python)
        .arg(root.join("benches/evidently_compare.py"))
        .arg(&ours)
        .arg(&reference)
        .arg(&current)
        .output()
        .expect("run evidently_compare.py");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "Evidently and reconcile disagree (see above)"
    );
}
