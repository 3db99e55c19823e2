//! The committed JSON Schemas match the spec types; regenerate with
//! `cargo run -- schema --out schemas` when this fails.

use std::path::Path;

#[test]
fn committed_schemas_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for (name, schema) in reconcile::schema::schemas() {
        let path = dir.join(&name);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} missing ({e}); run `cargo run -- schema --out schemas`",
                path.display()
            )
        });
        assert_eq!(
            committed,
            reconcile::schema::render(&schema),
            "{name} is stale; run `cargo run -- schema --out schemas`"
        );
    }
}

#[test]
fn spec_files_point_editors_at_a_schema() {
    let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
    let files = reconcile::spec::load::discover(&specs).expect("list specs");
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read spec");
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("# yaml-language-server: $schema="),
            "{} must start with a yaml-language-server schema line",
            f.display()
        );
        let target = first.trim_start_matches("# yaml-language-server: $schema=");
        let resolved = f.parent().expect("parent").join(target);
        assert!(
            resolved.is_file(),
            "{} points at missing {}",
            f.display(),
            resolved.display()
        );
    }
}
