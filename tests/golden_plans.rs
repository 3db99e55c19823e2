//! Golden plan tests: the exact text and `--json` output of `reconcile plan` on
//! the StreamFlow example (`specs/`), on the embedded SQLite store, in five
//! situations:
//!
//! 1. `first_apply`: a fresh copy of the specs, nothing applied yet;
//! 2. `noop`: after `apply`, nothing to change;
//! 3. `csv_cell_edited`: after `apply`, one cell of
//!    `data/2024-02-29/usage_agg_30d.csv` changed;
//! 4. `parameter_changed`: after `apply`, `trees: 300` → `trees: 200` in the
//!    `churn-rf` TrainingRun;
//! 5. `resource_removed`: after `apply`, the `churn-lr` TrainingRun (the Model's
//!    challenger, not its Production choice) removed from `training.yaml`.
//!
//! Each case compares `plan` (text, `NO_COLOR=1`) with `tests/golden/<case>.txt`
//! and `plan --json` with `tests/golden/<case>.json`, and checks the exit code
//! (0: no changes, 2: changes).
//!
//! What varies between runs or machines is replaced by a placeholder before the
//! comparison: hashes (`file_hash`, any `*_hash`/`*Hash` key) by `<hash>`, the
//! temporary project folder by `<tmp>`. Everything else is kept verbatim, so a
//! change of a reason, an operation, an action or the order of resources fails.
//! The JSON is parsed and pretty-printed again, so its key order is stable.
//!
//! To regenerate the golden files after an intended change, run
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test --test golden_plans
//! ```
//!
//! and review the diff of `tests/golden/` before committing it.

mod common;

use std::path::{Path, PathBuf};

use common::{Project, text};
use serde_json::Value;

/// `tests/golden/<name>`.
fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

/// Replaces the project's temporary folder (as given and canonical) by `<tmp>`.
fn normalise_text(p: &Project, s: &str) -> String {
    let mut out = s.to_string();
    let mut dirs = vec![p.dir.path().to_path_buf()];
    if let Ok(c) = p.dir.path().canonicalize() {
        dirs.push(c);
    }
    // Longest first, so a canonical path that extends the given one is replaced whole.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
    for d in dirs {
        out = out.replace(&d.display().to_string(), "<tmp>");
    }
    out
}

fn is_hash_key(key: &str) -> bool {
    key == "hash" || key.ends_with("_hash") || key.ends_with("Hash")
}

/// Hash values → `<hash>`, temporary paths in strings → `<tmp>`.
fn normalise_json(p: &Project, v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_hash_key(key) && value.is_string() {
                    *value = Value::String("<hash>".into());
                } else {
                    normalise_json(p, value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| normalise_json(p, i)),
        Value::String(s) => *s = normalise_text(p, s),
        _ => {}
    }
}

/// A line diff (longest common subsequence): ` ` kept, `-` expected only, `+` actual only.
fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", a[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        }
    }
    out
}

/// Compares `actual` with the golden file `name`, or writes it under `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if updating() {
        std::fs::create_dir_all(path.parent().expect("golden folder")).expect("create golden dir");
        std::fs::write(&path, actual).expect("write golden file");
        eprintln!("UPDATE_GOLDEN=1: wrote tests/golden/{name}");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read tests/golden/{name} ({e}); generate it with \
             UPDATE_GOLDEN=1 cargo test --test golden_plans\n\nactual output:\n{actual}"
        )
    });
    if expected != actual {
        panic!(
            "plan output differs from tests/golden/{name} \
             (rerun with UPDATE_GOLDEN=1 if the change is intended)\n\
             --- diff (- expected, + actual) ---\n{}\
             --- expected ---\n{expected}\
             --- actual ---\n{actual}",
            line_diff(&expected, actual)
        );
    }
}

/// Runs `plan` and `plan --json`, checks both exit codes and both golden files.
fn check_plan(p: &Project, case: &str, exit_code: i32) {
    let out = p.run(&["plan"]);
    assert_eq!(
        out.status.code(),
        Some(exit_code),
        "{case}: `plan` exit code; output:\n{}",
        text(&out)
    );
    check_golden(&format!("{case}.txt"), &normalise_text(p, &text(&out)));

    let out = p.run(&["plan", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(exit_code),
        "{case}: `plan --json` exit code; output:\n{}",
        text(&out)
    );
    let mut json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{case}: `plan --json` is not JSON ({e}); output:\n{}",
            text(&out)
        )
    });
    normalise_json(p, &mut json);
    let pretty = serde_json::to_string_pretty(&json).expect("serialize plan") + "\n";
    check_golden(&format!("{case}.json"), &pretty);
}

/// A fresh copy of the example, applied.
fn applied() -> Project {
    let p = Project::example_with_monitor();
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "apply failed:\n{}", text(&out));
    p
}

/// Replaces `from` by `to` in a spec file, asserting it occurs exactly once.
fn replace_once(path: &Path, from: &str, to: &str) {
    let content = std::fs::read_to_string(path).expect("read spec");
    assert_eq!(
        content.matches(from).count(),
        1,
        "`{from}` must occur exactly once in {}",
        path.display()
    );
    std::fs::write(path, content.replacen(from, to, 1)).expect("write spec");
}

#[test]
fn first_apply() {
    let p = Project::example_with_monitor();
    check_plan(&p, "first_apply", 2);
}

#[test]
fn noop() {
    let p = applied();
    check_plan(&p, "noop", 0);
}

#[test]
fn csv_cell_edited() {
    let p = applied();
    // Second field (watch_hours_30d) of the first data row of the February snapshot.
    let csv = p.specs.join("data/2024-02-29/usage_agg_30d.csv");
    let content = std::fs::read_to_string(&csv).expect("read csv");
    let mut lines: Vec<&str> = content.split_inclusive('\n').collect();
    let mut cells: Vec<&str> = lines[1].split(',').collect();
    let new_value = if cells[1] == "12.5" { "13.5" } else { "12.5" };
    cells[1] = new_value;
    let edited = cells.join(",");
    lines[1] = &edited;
    let changed = lines.concat();
    assert_ne!(changed, content, "the edit must change the file");
    std::fs::write(&csv, changed).expect("write csv");
    check_plan(&p, "csv_cell_edited", 2);
}

#[test]
fn parameter_changed() {
    let p = applied();
    replace_once(&p.specs.join("training.yaml"), "trees: 300,", "trees: 200,");
    check_plan(&p, "parameter_changed", 2);
}

#[test]
fn resource_removed() {
    let p = applied();
    // churn-lr is the Model's challenger, not its Production choice (churn-rf):
    // nothing refers to it by name, so the specs still validate without it.
    let path = p.specs.join("training.yaml");
    let content = std::fs::read_to_string(&path).expect("read spec");
    let docs: Vec<&str> = content.split("\n---\n").collect();
    let kept: Vec<&str> = docs
        .iter()
        .copied()
        .filter(|d| !d.contains("\nname: churn-lr\n"))
        .collect();
    assert_eq!(
        kept.len(),
        docs.len() - 1,
        "exactly one document is churn-lr"
    );
    std::fs::write(&path, kept.join("\n---\n")).expect("write spec");
    check_plan(&p, "resource_removed", 2);
}
