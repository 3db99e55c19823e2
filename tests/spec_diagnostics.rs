//! One test per class of spec problem, each asserting the file, line and column
//! users see, through the public loader and through the real binary.

use std::path::Path;
use std::process::Command;

use reconcile::diag::{DiagCode, SpecDiagnostic};
use reconcile::spec::validate::load_and_validate;

/// Writes `files` (relative path, content) into a fresh folder and validates it.
fn diagnose(files: &[(&str, &str)]) -> Vec<SpecDiagnostic> {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), files);
    match load_and_validate(dir.path()) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    }
}

fn write(root: &Path, files: &[(&str, &str)]) {
    for (rel, content) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }
}

/// The only diagnostic, asserting its class and position.
fn only(
    diags: &[SpecDiagnostic],
    code: DiagCode,
    file: &str,
    line: u64,
    column: u64,
) -> SpecDiagnostic {
    assert_eq!(diags.len(), 1, "expected one diagnostic, got {diags:#?}");
    let d = diags[0].clone();
    assert_eq!(d.code, code, "{d:#?}");
    assert_eq!(
        (d.file.as_str(), d.line, d.column),
        (file, line, column),
        "{}",
        d.short()
    );
    d
}

const TABLE: &str = "kind: Table
name: subscriptions
primaryKey: [user_id]
columns: { user_id: string, months_active: int }
snapshots:
  - { asOf: 2024-01-31, path: data/a.csv }
";
const CSV: (&str, &str) = ("data/a.csv", "user_id,months_active\nu1,3\n");

#[test]
fn a_valid_folder_has_no_diagnostics() {
    assert!(diagnose(&[("t.yaml", TABLE), CSV]).is_empty());
}

#[test]
fn unknown_field_suggests_the_closest() {
    let yaml = TABLE.replace("primaryKey", "primaryKy");
    let d = only(
        &diagnose(&[("t.yaml", &yaml), CSV]),
        DiagCode::UnknownField,
        "t.yaml",
        3,
        1,
    );
    assert_eq!(d.message, "unknown field `primaryKy`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `primaryKey`?"));
}

#[test]
fn unknown_field_in_a_nested_mapping() {
    let yaml = TABLE.replace("path: data/a.csv", "paht: data/a.csv");
    let d = only(
        &diagnose(&[("t.yaml", &yaml), CSV]),
        DiagCode::UnknownField,
        "t.yaml",
        6,
        25,
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `path`?"));
}

#[test]
fn wrong_type_and_unknown_enum_value() {
    let yaml = format!("{TABLE}expect:\n  - rowCount: {{ min: many }}\n");
    let d = only(
        &diagnose(&[("t.yaml", &yaml), CSV]),
        DiagCode::InvalidValue,
        "t.yaml",
        8,
        22,
    );
    assert!(
        d.message.contains("u64") || d.message.contains("invalid"),
        "{}",
        d.message
    );

    let yaml = TABLE.replace("months_active: int", "months_active: integer");
    let d = only(
        &diagnose(&[("t.yaml", &yaml), CSV]),
        DiagCode::InvalidValue,
        "t.yaml",
        4,
        44,
    );
    assert!(
        d.message.contains("unknown variant `integer`"),
        "{}",
        d.message
    );
}

#[test]
fn missing_reference_suggests_a_name() {
    let entity = "kind: Entity\nname: user\njoinKeys: [user_id]\ndependsOn: [Table/subscription]\n";
    let d = only(
        &diagnose(&[("t.yaml", TABLE), CSV, ("e.yaml", entity)]),
        DiagCode::MissingReference,
        "e.yaml",
        4,
        13,
    );
    assert_eq!(d.message, "no Table named `subscription`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `subscriptions`?"));
}

#[test]
fn missing_column_reference() {
    let yaml = format!("{TABLE}expect:\n  - between: {{ column: months_activ, min: 0 }}\n");
    let d = only(
        &diagnose(&[("t.yaml", &yaml), CSV]),
        DiagCode::MissingReference,
        "t.yaml",
        8,
        24,
    );
    assert_eq!(
        d.message,
        "table `subscriptions` has no column `months_activ`"
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `months_active`?"));
}

#[test]
fn duplicate_names_point_at_the_second_and_name_the_first() {
    let d = only(
        &diagnose(&[
            ("a.yaml", TABLE),
            ("b.yaml", &format!("# copy\n{TABLE}")),
            CSV,
        ]),
        DiagCode::DuplicateName,
        "b.yaml",
        3,
        7,
    );
    assert_eq!(d.hint.as_deref(), Some("first defined at a.yaml:2"));
}

#[test]
fn cycles_print_their_path() {
    let yaml = "kind: Entity\nname: a\njoinKeys: [k]\ndependsOn: [b]\n---\nkind: Entity\nname: b\njoinKeys: [k]\ndependsOn: [Entity/a]\n";
    let d = only(
        &diagnose(&[("c.yaml", yaml)]),
        DiagCode::Cycle,
        "c.yaml",
        9,
        13,
    );
    assert_eq!(
        d.message,
        "dependency cycle: Entity/a → Entity/b → Entity/a"
    );
}

#[test]
fn unset_environment_variables_point_at_the_reference() {
    let var = "RECONCILE_TEST_SURELY_UNSET_VAR";
    let yaml = format!("kind: Project\nname: p\nstate: postgres://u:${{{var}}}@h/db\n");
    let d = only(
        &diagnose(&[("p.yaml", &yaml)]),
        DiagCode::UnsetEnv,
        "p.yaml",
        3,
        21,
    );
    assert_eq!(
        d.message,
        format!("environment variable `{var}` is not set")
    );
    let quoted = format!("kind: Project\nname: p\nstate: \"postgres://u:${{{var}}}@h/db\"\n");
    only(
        &diagnose(&[("p.yaml", &quoted)]),
        DiagCode::UnsetEnv,
        "p.yaml",
        3,
        22,
    );
}

#[test]
fn paths_may_not_escape_the_project() {
    let yaml = TABLE.replace("data/a.csv", "../../etc/passwd");
    let d = only(
        &diagnose(&[("t.yaml", &yaml), CSV]),
        DiagCode::PathEscape,
        "t.yaml",
        6,
        31,
    );
    assert!(
        d.message.contains("outside the project folder"),
        "{}",
        d.message
    );
    let yaml = TABLE.replace("data/a.csv", "/etc/passwd");
    only(
        &diagnose(&[("t.yaml", &yaml), CSV]),
        DiagCode::PathEscape,
        "t.yaml",
        6,
        31,
    );
    let yaml = TABLE.replace("data/a.csv", "data/missing.csv");
    only(
        &diagnose(&[("t.yaml", &yaml), CSV]),
        DiagCode::MissingFile,
        "t.yaml",
        6,
        31,
    );
}

#[test]
fn syntax_errors_have_a_position() {
    let d = diagnose(&[("s.yaml", "kind: Entity\nname: x\njoinKeys: [a, b\n")]);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].code, DiagCode::Syntax);
    assert_eq!(d[0].file, "s.yaml");
    assert!(d[0].line >= 3, "{}", d[0].short());
}

#[test]
fn every_problem_is_reported_at_once_and_good_documents_still_load() {
    let one = format!(
        "{TABLE}---\nkind: Entity\nname: user\njoinKey: [user_id]\n---\nkind: Tabel\nname: x\n"
    );
    let two = "# header comment\n---\nkind: Entity\nname: ok\njoinKeys: [k]\n--- # a second document\nkind: Entity\nname: bad\njoinKeys: [k]\ndependsOn: [nope]\n";
    let diags = diagnose(&[("one.yaml", &one), ("two.yaml", two), CSV]);
    let mut got: Vec<(String, u64, u64, DiagCode)> = diags
        .iter()
        .map(|d| (d.file.clone(), d.line, d.column, d.code))
        .collect();
    got.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
    assert_eq!(
        got,
        vec![
            ("one.yaml".into(), 10, 1, DiagCode::UnknownField),
            ("one.yaml".into(), 12, 7, DiagCode::UnknownKind),
            ("two.yaml".into(), 10, 13, DiagCode::MissingReference),
        ]
    );
}

#[test]
fn a_byte_order_mark_does_not_shift_columns() {
    let yaml = format!("\u{feff}{}", TABLE.replace("primaryKey", "primaryKy"));
    only(
        &diagnose(&[("t.yaml", &yaml), CSV]),
        DiagCode::UnknownField,
        "t.yaml",
        3,
        1,
    );
}

#[test]
fn the_cli_prints_locations_and_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &[("t.yaml", &TABLE.replace("primaryKey", "primaryKy")), CSV],
    );
    let bin = env!("CARGO_BIN_EXE_reconcile");
    let out = Command::new(bin)
        .arg("validate")
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("t.yaml:3:1"), "{stderr}");
    assert!(stderr.contains("did you mean `primaryKey`?"), "{stderr}");
    let out = Command::new(bin)
        .args(["validate", "--json"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v[0]["line"], 3);
    assert_eq!(v[0]["column"], 1);
    assert_eq!(v[0]["code"], "unknown-field");
}

const VIEW: &str = "kind: Entity
name: user
joinKeys: [user_id]
---
kind: FeatureView
name: subs
entity: user
table: subscriptions
features: [months_active]
ttl: 90d
";

#[test]
fn feature_views_check_their_features_and_join_keys() {
    assert!(diagnose(&[("t.yaml", TABLE), CSV, ("v.yaml", VIEW)]).is_empty());
    let bad = VIEW.replace("[months_active]", "[months_actve]");
    let d = only(
        &diagnose(&[("t.yaml", TABLE), CSV, ("v.yaml", &bad)]),
        DiagCode::MissingReference,
        "v.yaml",
        9,
        12,
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `months_active`?"));
    let bad = VIEW.replace("joinKeys: [user_id]", "joinKeys: [account_id]");
    let d = only(
        &diagnose(&[("t.yaml", TABLE), CSV, ("v.yaml", &bad)]),
        DiagCode::MissingReference,
        "v.yaml",
        8,
        8,
    );
    assert!(d.message.contains("lacks `account_id`"), "{}", d.message);
    let bad = VIEW.replace("table: subscriptions", "table: subscription");
    let d = only(
        &diagnose(&[("t.yaml", TABLE), CSV, ("v.yaml", &bad)]),
        DiagCode::MissingReference,
        "v.yaml",
        8,
        8,
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `subscriptions`?"));
    let int_key = TABLE.replace("user_id: string", "user_id: int");
    let d = only(
        &diagnose(&[("t.yaml", &int_key), CSV, ("v.yaml", VIEW)]),
        DiagCode::InvalidValue,
        "v.yaml",
        8,
        8,
    );
    assert!(
        d.message.contains("need a string join key"),
        "{}",
        d.message
    );
    // `3 months` is a duration in the one grammar (humantime); `3 moons` is not.
    let bad = VIEW.replace("ttl: 90d", "ttl: 3 moons");
    only(
        &diagnose(&[("t.yaml", TABLE), CSV, ("v.yaml", &bad)]),
        DiagCode::InvalidValue,
        "v.yaml",
        10,
        6,
    );
}
