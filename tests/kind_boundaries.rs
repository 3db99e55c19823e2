//! The kind is the unit of change: outside `src/kinds/` no module dispatches on a
//! specific kind, and the pipeline (engine, workspace, planner, graph, loading
//! and validation) does not even import one. A grep-level check, so a shortcut
//! taken under pressure fails here instead of in the next contributor's diff.

use std::path::{Path, PathBuf};

use reconcile::spec::Kind;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `FeatureView` → `feature_view`: the module a kind lives in.
fn module_of(kind: Kind) -> String {
    let mut out = String::new();
    for (i, c) in kind.as_str().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Whether a line names a variant of a generated kind enum (`Kind::Table`,
/// `Spec::Endpoint(…)`), as a whole word.
fn names_a_kind_variant(line: &str) -> bool {
    Kind::ALL.iter().any(|kind| {
        ["Kind", "Spec", "Typed", "Operation", "Inputs"]
            .iter()
            .any(|enum_name| {
                let pattern = format!("{enum_name}::{}", kind.as_str());
                line.match_indices(&pattern).any(|(at, _)| {
                    let after = line[at + pattern.len()..].chars().next();
                    let before = line[..at].chars().next_back();
                    !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            })
    })
}

/// Lines outside `src/kinds/` that name a variant of a generated kind enum.
fn dispatch_outside_kinds() -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let kinds_dir = src().join("kinds");
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&kinds_dir)) {
        let text = std::fs::read_to_string(file).expect("read file");
        for (n, line) in text.lines().enumerate() {
            if names_a_kind_variant(line) {
                found.push(format!(
                    "{}:{}: {}",
                    file.strip_prefix(src()).unwrap_or(file).display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn no_module_outside_kinds_dispatches_on_a_kind() {
    let found = dispatch_outside_kinds();
    assert!(
        found.is_empty(),
        "outside src/kinds/, name kinds through the trait (`SpecSet::specs::<K>()`, \
         `K::KIND`), not by enum variant:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_pipeline_imports_no_kind_module() {
    // The Project's settings are the frame every command reads (store URLs), so
    // `spec/` may name that one spec type; nothing else.
    let pipeline: [(&str, &[&str]); 6] = [
        ("engine.rs", &[]),
        ("workspace.rs", &[]),
        ("plan.rs", &[]),
        ("graph.rs", &[]),
        ("schema.rs", &[]),
        ("spec", &["project"]),
    ];
    let mut found = Vec::new();
    for (path, allowed) in pipeline {
        let mut files = Vec::new();
        let full = src().join(path);
        if full.is_dir() {
            rust_files(&full, &mut files);
        } else {
            files.push(full);
        }
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read file");
            for &kind in Kind::ALL {
                let module = module_of(kind);
                if allowed.contains(&module.as_str()) {
                    continue;
                }
                if text.contains(&format!("kinds::{module}")) {
                    found.push(format!("{} imports kinds::{module}", file.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_check_sees_a_violation() {
    // The scan itself must be able to fail: lines it has to catch, and look-alikes
    // it must not.
    assert!(names_a_kind_variant("match k { Kind::Table => 1 }"));
    assert!(names_a_kind_variant(
        "if let Spec::FeatureView(v) = &r.spec {"
    ));
    assert!(names_a_kind_variant("Operation::Service(op)"));
    assert!(!names_a_kind_variant("let t = TableKind::Tables;"));
    assert!(!names_a_kind_variant("MySpec::Table2"));
    assert_eq!(
        module_of(Kind::parse("FeatureView").expect("kind")),
        "feature_view"
    );
}
