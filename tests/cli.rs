//! The command line as a user of terraform, compose and kubectl expects it:
//! exit codes, `--json` on every command that takes it (validated against the
//! committed schemas/output/ schemas), colour per stream with `NO_COLOR` and
//! `--color`, completions and man pages, destroy's dry run, SIGTERM during
//! apply, `--target`, `graph`, `init` and the one duration grammar. Every test
//! runs the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Project, text};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
    cmd.env_remove("NO_COLOR")
        .env_remove("RECONCILE_STATE")
        .env_remove("RECONCILE_OFFLINE")
        .env_remove("RECONCILE_ONLINE");
    cmd
}

/// Runs `reconcile <args…>` in `cwd`.
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    bin()
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run reconcile")
}

/// A folder holding what `reconcile init` wrote into `specs/`.
fn initialised() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let specs = dir.path().join("specs");
    (dir, specs)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)))
}

/// Validates `value` against the committed `schemas/output/<name>`.
fn assert_matches_schema(name: &str, value: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/output")
        .join(name);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read schema"))
            .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(
        errors.is_empty(),
        "{name}: {errors:#?}\n{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Keys of the output's own structure are camelCase; values that are data
/// keyed by user names (features, metrics, outputs, params) are not checked.
fn assert_camel_case(v: &serde_json::Value, at: &str) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                assert!(
                    !k.contains('_') && !k.contains('-'),
                    "key `{k}` at {at} is not camelCase"
                );
                if matches!(
                    k.as_str(),
                    "features" | "metrics" | "outputs" | "params" | "decay"
                ) {
                    continue;
                }
                assert_camel_case(child, &format!("{at}.{k}"));
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_camel_case(item, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- init

#[test]
fn init_writes_a_project_that_validates_and_applies() {
    let (dir, specs) = initialised();
    for f in ["project.yaml", "features.yaml", "data/2024-01-31/users.csv"] {
        assert!(specs.join(f).is_file(), "init did not write {f}");
    }
    let yaml = std::fs::read_to_string(specs.join("features.yaml")).expect("read");
    assert!(yaml.lines().any(|l| l.starts_with('#')), "not commented");
    let validate = run_in(dir.path(), &["validate", s(&specs)]);
    assert_eq!(validate.status.code(), Some(0), "{}", text(&validate));
    assert!(
        text(&validate).contains("4 resource(s)"),
        "{}",
        text(&validate)
    );
    let apply = run_in(dir.path(), &["apply", s(&specs)]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    let plan = run_in(dir.path(), &["plan", s(&specs)]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let get = run_in(
        dir.path(),
        &["features", "get", "user", "u1", s(&specs), "--json"],
    );
    assert_eq!(get.status.code(), Some(0), "{}", text(&get));
    assert_eq!(json(&get)["features"]["user_profile"]["plan"], "pro");

    // A second init overwrites nothing, not even the files that are missing.
    std::fs::write(specs.join("project.yaml"), "# mine\n").expect("edit");
    std::fs::remove_file(specs.join("features.yaml")).expect("remove");
    let again = run_in(dir.path(), &["init", s(&specs)]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    assert_eq!(
        std::fs::read_to_string(specs.join("project.yaml")).expect("read"),
        "# mine\n"
    );
    assert!(!specs.join("features.yaml").exists(), "init wrote a file");
}

// ---------------------------------------------------------------- exit codes

#[test]
fn exit_codes_follow_the_documented_contract() {
    let (dir, specs) = initialised();
    let d = s(&specs);
    let code = |args: &[&str]| run_in(dir.path(), args).status.code();
    assert_eq!(code(&["validate", d]), Some(0));
    assert_eq!(
        code(&["status", d]),
        Some(0),
        "never applied is not unhealthy"
    );
    assert_eq!(code(&["plan", d]), Some(2), "changes planned");
    assert_eq!(code(&["apply", d]), Some(0));
    assert_eq!(code(&["plan", d]), Some(0), "no changes");
    assert_eq!(code(&["status", d]), Some(0), "all Ready");

    // A snapshot that fails its expectations: apply fails, status says so.
    std::fs::write(
        specs.join("data/2024-01-31/users.csv"),
        "user_id,age,plan\nu1,340,pro\n",
    )
    .expect("edit csv");
    let apply = run_in(dir.path(), &["apply", d]);
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply));
    let status = run_in(dir.path(), &["status", d, "--json"]);
    assert_eq!(status.status.code(), Some(2), "{}", text(&status));
    let rows = json(&status);
    let table = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["name"] == "users")
        .expect("Table/users row")
        .clone();
    assert_eq!(table["state"], "Failed", "{rows}");

    // Drift is unhealthy too: fix the data back, converge, then change it.
    std::fs::write(
        specs.join("data/2024-01-31/users.csv"),
        "user_id,age,plan\nu1,34,pro\n",
    )
    .expect("fix csv");
    assert_eq!(code(&["apply", d]), Some(0));
    assert_eq!(code(&["status", d]), Some(0));
    std::fs::write(
        specs.join("data/2024-01-31/users.csv"),
        "user_id,age,plan\nu1,35,pro\n",
    )
    .expect("edit csv");
    let status = run_in(dir.path(), &["status", d]);
    assert_eq!(status.status.code(), Some(2), "{}", text(&status));
    assert!(text(&status).contains("OutOfDate"), "{}", text(&status));

    // Broken specs: 1 from every command that reads them.
    std::fs::write(specs.join("broken.yaml"), "kind: Table\nname: [\n").expect("write");
    for cmd in ["validate", "plan", "apply", "destroy", "graph"] {
        assert_eq!(code(&[cmd, d]), Some(1), "{cmd} on broken specs");
    }
    // A usage error is clap's 2, with the reason.
    let usage = run_in(dir.path(), &["plan", d, "--no-such-flag"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn every_help_documents_its_exit_codes() {
    let top = bin().arg("--help").output().expect("help");
    let listed = String::from_utf8_lossy(&top.stdout).to_string();
    let commands: Vec<String> = listed
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 15, "{listed}");
    for c in &commands {
        let out = bin().args([c.as_str(), "--help"]).output().expect("help");
        let t = String::from_utf8_lossy(&out.stdout).to_string();
        let has_subcommands = t.contains("\nCommands:");
        if has_subcommands {
            for sub in t
                .lines()
                .skip_while(|l| !l.starts_with("Commands:"))
                .skip(1)
                .take_while(|l| l.starts_with("  "))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|s| *s != "help")
            {
                let out = bin()
                    .args([c.as_str(), sub, "--help"])
                    .output()
                    .expect("help");
                let t = String::from_utf8_lossy(&out.stdout);
                assert!(t.contains("Exit codes:"), "{c} {sub} --help:\n{t}");
            }
        } else {
            assert!(t.contains("Exit codes:"), "{c} --help:\n{t}");
        }
    }
}

// ---------------------------------------------------------------- JSON

#[test]
fn every_json_output_parses_matches_its_schema_and_is_camel_case() {
    let p = Project::example_with_monitor();
    let d = s(&p.specs);
    let cwd = p.dir.path();
    let check = |name: &str, args: &[&str], codes: &[i32]| -> serde_json::Value {
        let out = run_in(cwd, args);
        assert!(
            out.status.code().is_some_and(|c| codes.contains(&c)),
            "{args:?}: exit {:?}\n{}",
            out.status.code(),
            text(&out)
        );
        let v = json(&out);
        assert_matches_schema(name, &v);
        assert_camel_case(&v, name);
        v
    };
    check("validate.json", &["validate", d, "--json"], &[0]);
    let plan = check("plan.json", &["plan", d, "--json"], &[2]);
    assert!(!plan["resources"].as_array().expect("resources").is_empty());
    let applied = check("apply.json", &["apply", d, "--json"], &[0]);
    assert!(
        !applied["report"]["outcomes"]
            .as_array()
            .expect("outcomes")
            .is_empty()
    );
    check("apply.json", &["apply", d, "--json"], &[0]);
    check("plan.json", &["plan", d, "--json"], &[0]);
    let status = check("status.json", &["status", d, "--json"], &[0]);
    assert!(status.as_array().is_some_and(|r| r.len() > 10), "{status}");
    let dry = check("destroy.json", &["destroy", d, "--json"], &[2]);
    assert_eq!(dry["applied"], false);
    check(
        "features-get.json",
        &["features", "get", "user", "7590-VHVEG", d, "--json"],
        &[0],
    );
    let list = check("models-list.json", &["models", "list", d, "--json"], &[0]);
    assert!(list[0]["valAuc"].as_f64().is_some(), "{list}");
    check(
        "models-show.json",
        &["models", "show", "streamflow_churn", d, "--json"],
        &[0],
    );
    check(
        "models-history.json",
        &["models", "history", "streamflow_churn", d, "--json"],
        &[0],
    );
    check(
        "monitor-report.json",
        &["monitor", "report", "churn-drift", d, "--json"],
        &[0, 3],
    );
    check(
        "monitor-history.json",
        &["monitor", "history", "churn-drift", d, "--json"],
        &[0],
    );
    // The hidden `--specs` spelling still reads the same folder.
    let old = run_in(cwd, &["models", "list", "--specs", d, "--json"]);
    assert_eq!(json(&old), list);

    // Diagnostics print as validate.json whichever command hit them.
    std::fs::write(p.specs.join("broken.yaml"), "kind: Table\nname: [\n").expect("write");
    let diags = check("validate.json", &["plan", d, "--json"], &[1]);
    assert!(!diags.as_array().expect("array").is_empty());
}

#[test]
fn json_flag_exists_only_where_it_works() {
    let (dir, specs) = initialised();
    for args in [
        &["serve", s(&specs), "--json"][..],
        &["watch", s(&specs), "--json"][..],
        &[
            "features",
            "historical",
            s(&specs),
            "--views",
            "user_profile",
            "--as-of",
            "2024-01-31",
            "--json",
        ][..],
    ] {
        let out = run_in(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?} accepted --json");
        assert!(text(&out).contains("--json"), "{}", text(&out));
    }
    // features get: text by default, JSON on request.
    assert_eq!(
        run_in(dir.path(), &["apply", s(&specs)]).status.code(),
        Some(0)
    );
    let plain = run_in(dir.path(), &["features", "get", "user", "u2", s(&specs)]);
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain));
    assert!(serde_json::from_slice::<serde_json::Value>(&plain.stdout).is_err());
    assert!(text(&plain).contains("free"), "{}", text(&plain));
}

#[test]
fn committed_output_schemas_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/output");
    let schemas = reconcile::cli::output::schemas();
    assert!(schemas.len() >= 11);
    for (name, schema) in schemas {
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert_eq!(
            committed,
            reconcile::schema::render(&schema),
            "schemas/output/{name} is stale; run `cargo run -- schema --out schemas`"
        );
    }
}

// ---------------------------------------------------------------- colour

fn has_escapes(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\x1b[")
}

#[test]
fn colour_is_decided_per_stream_by_color_and_no_color() {
    let (dir, specs) = initialised();
    let plan = |extra: &[&str], no_color: Option<&str>| {
        let mut cmd = bin();
        cmd.arg("plan")
            .arg(&specs)
            .args(extra)
            .current_dir(dir.path());
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        cmd.output().expect("plan")
    };
    let always = plan(&["--color", "always"], None);
    assert_eq!(always.status.code(), Some(2));
    assert!(
        has_escapes(&always.stdout),
        "--color always, piped: no colour"
    );
    assert!(!has_escapes(&plan(&["--color", "never"], None).stdout));
    assert!(!has_escapes(&plan(&[], None).stdout), "auto into a pipe");
    assert!(!has_escapes(&plan(&["--color", "never"], Some("1")).stdout));

    // On a terminal (script(1) gives the command one): auto colours stdout,
    // NO_COLOR (non-empty) does not, and stdout into a file is judged by
    // stdout, not by the terminal on stderr.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("notice: no script(1): the terminal half of this test is skipped");
        return;
    }
    let on_tty = |shell: &str, no_color: Option<&str>| {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", shell, "/dev/null"])
            .env_remove("NO_COLOR")
            .current_dir(dir.path());
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        cmd.output().expect("script")
    };
    let exe = env!("CARGO_BIN_EXE_reconcile");
    let line = format!("'{exe}' plan '{}'", specs.display());
    assert!(
        has_escapes(&on_tty(&line, None).stdout),
        "auto on a terminal"
    );
    assert!(
        has_escapes(&on_tty(&line, Some("")).stdout),
        "empty NO_COLOR"
    );
    assert!(!has_escapes(&on_tty(&line, Some("1")).stdout), "NO_COLOR=1");
    let file = dir.path().join("plan.txt");
    on_tty(&format!("{line} > '{}'", file.display()), None);
    let written = std::fs::read(&file).expect("plan.txt");
    assert!(String::from_utf8_lossy(&written).contains("Plan:"));
    assert!(!has_escapes(&written), "colour went into a file");
}

// ---------------------------------------------------------------- completions, man

#[test]
fn completions_and_man_pages_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().expect("run");
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let t = String::from_utf8_lossy(&out.stdout);
        assert!(t.len() > 500, "{shell}: {t}");
        for sub in ["apply", "destroy", "graph"] {
            assert!(t.contains(sub), "{shell} completion misses {sub}");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bin()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .expect("man");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let main = std::fs::read_to_string(dir.path().join("reconcile.1")).expect("reconcile.1");
    assert!(main.contains(".TH") && main.contains("apply"), "{main}");
    assert!(dir.path().join("reconcile-apply.1").is_file());
}

// ---------------------------------------------------------------- destroy

#[test]
fn destroy_without_yes_lists_the_removal_and_changes_nothing() {
    let (dir, specs) = initialised();
    let d = s(&specs);
    assert_eq!(run_in(dir.path(), &["apply", d]).status.code(), Some(0));
    let dry = run_in(dir.path(), &["destroy", d]);
    assert_eq!(dry.status.code(), Some(2), "{}", text(&dry));
    let listed = text(&dry);
    let ws = reconcile::workspace::Workspace::load(&specs).expect("load");
    for r in &ws.set.resources {
        assert!(
            listed.contains(&format!("- delete {}", r.id)),
            "{} missing from:\n{listed}",
            r.id
        );
    }
    assert!(listed.contains("--yes"), "{listed}");
    // Nothing moved: the plan is still empty and the online values are there.
    assert_eq!(run_in(dir.path(), &["plan", d]).status.code(), Some(0));
    let get = run_in(dir.path(), &["features", "get", "user", "u3", d, "--json"]);
    assert_eq!(json(&get)["features"]["user_profile"]["age"], 45);

    let yes = run_in(dir.path(), &["destroy", d, "--yes"]);
    assert_eq!(yes.status.code(), Some(0), "{}", text(&yes));
    let after = run_in(dir.path(), &["destroy", d]);
    assert_eq!(after.status.code(), Some(0), "{}", text(&after));
    assert!(
        text(&after).contains("Nothing to remove"),
        "{}",
        text(&after)
    );
}

// ---------------------------------------------------------------- SIGTERM

const ROWS: usize = 300_000;

fn write_big_csv(path: &Path, version: i64) {
    let mut s = String::with_capacity(ROWS * 24);
    s.push_str("id,version,note\n");
    for i in 0..ROWS {
        s.push_str(&format!("{i},{version},row {i}\n"));
    }
    std::fs::write(path, s).expect("write csv");
}

async fn versions_in(db: &reconcile::store::Db) -> (Vec<(i64, i64)>, Option<i64>) {
    let by_version: Vec<(i64, i64)> = reconcile::with_pool!(db, pool => sqlx::query_as(
        "SELECT version, COUNT(*) FROM big GROUP BY version ORDER BY version").fetch_all(pool).await)
    .unwrap_or_default();
    let manifest: Option<(i64,)> = reconcile::with_pool!(db, pool => sqlx::query_as(
        "SELECT row_count FROM reconcile_snapshots WHERE table_name = 'big'").fetch_optional(pool).await)
    .expect("manifest");
    (by_version, manifest.map(|m| m.0))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_apply_rolls_back_and_exits_130() {
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    std::fs::create_dir_all(specs.join("data")).expect("mkdir");
    std::fs::write(
        specs.join("big.yaml"),
        "kind: Project\nname: term\n---\nkind: Table\nname: big\nprimaryKey: [id]\n\
         columns: { id: int, version: int, note: string }\n\
         snapshots:\n  - { asOf: 2024-01-31, path: data/big.csv }\n\
         expect:\n  - unique: [id]\n",
    )
    .expect("write spec");
    write_big_csv(&specs.join("data/big.csv"), 1);
    let p = Project {
        dir,
        specs,
        store_args: Vec::new(),
    };
    assert!(p.run(&["apply"]).status.success());
    let db = p.db().await;
    let mut interrupted = 0;
    for (round, delay_ms) in [300u64, 600, 150, 1000].into_iter().enumerate() {
        let version = round as i64 + 2;
        write_big_csv(&p.specs.join("data/big.csv"), version);
        let before = versions_in(&db).await;
        let child = p.spawn(&["apply"]);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        let out = child.wait_with_output().expect("wait");
        let (versions, manifest) = versions_in(&db).await;
        assert_eq!(
            versions.len(),
            1,
            "mixed versions after SIGTERM: {versions:?}"
        );
        assert_eq!(manifest, Some(ROWS as i64));
        match out.status.code() {
            Some(130) => {
                assert!(text(&out).contains("interrupted"), "{}", text(&out));
                assert_eq!(
                    versions, before.0,
                    "an interrupted load must not be visible"
                );
                interrupted += 1;
            }
            Some(0) => assert_eq!(versions[0].0, version, "finished before the signal"),
            other => panic!(
                "SIGTERM did not stop apply safely: exit {other:?}: {}",
                text(&out)
            ),
        }
        // The next apply converges: no lock or half a snapshot left behind.
        let again = p.run(&["apply"]);
        assert!(again.status.success(), "{}", text(&again));
        assert_eq!(versions_in(&db).await.0, vec![(version, ROWS as i64)]);
        if interrupted > 0 {
            break;
        }
    }
    db.close().await;
    assert!(
        interrupted > 0,
        "no apply was interrupted; the test proved nothing"
    );
}

// ---------------------------------------------------------------- --target

const TARGETED: &str = "kind: Project\nname: targeted\n---\n\
kind: Entity\nname: user\njoinKeys: [user_id]\n---\n\
kind: Table\nname: users\nprimaryKey: [user_id]\ncolumns: { user_id: string, age: int }\n\
snapshots: [{ asOf: 2024-01-31, path: users.csv }]\n---\n\
kind: FeatureView\nname: profile\nentity: user\ntable: users\nfeatures: [age]\nttl: 1d12h\nonline: true\n---\n\
kind: Table\nname: other\nprimaryKey: [id]\ncolumns: { id: int }\n\
snapshots: [{ asOf: 2024-01-31, path: other.csv }]\n";

fn states(cwd: &Path, specs: &Path) -> std::collections::BTreeMap<String, String> {
    let out = run_in(cwd, &["status", s(specs), "--json"]);
    json(&out)
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap_or(""),
                    r["name"].as_str().unwrap_or("")
                ),
                r["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn target_applies_only_the_target_and_what_it_depends_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    std::fs::create_dir_all(&specs).expect("mkdir");
    std::fs::write(specs.join("all.yaml"), TARGETED).expect("write");
    std::fs::write(specs.join("users.csv"), "user_id,age\na,1\nb,2\n").expect("csv");
    std::fs::write(specs.join("other.csv"), "id\n1\n").expect("csv");
    let d = s(&specs);
    let cwd = dir.path();

    let plan = run_in(
        cwd,
        &["plan", d, "--target", "FeatureView/profile", "--json"],
    );
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let mut planned: Vec<String> = json(&plan)["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["id"]["kind"].as_str().unwrap_or(""),
                r["id"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    planned.sort();
    assert_eq!(
        planned,
        ["Entity/user", "FeatureView/profile", "Table/users"]
    );

    let apply = run_in(cwd, &["apply", d, "--target", "FeatureView/profile"]);
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    let st = states(cwd, &specs);
    assert_eq!(st["FeatureView/profile"], "Ready", "{st:?}");
    assert_eq!(st["Table/users"], "Ready", "{st:?}");
    assert_eq!(st["Entity/user"], "Ready", "{st:?}");
    assert_eq!(st["Table/other"], "NotApplied", "{st:?}");
    assert_eq!(st["Project/targeted"], "NotApplied", "{st:?}");

    // Repeatable; and what is not targeted is not removed either.
    let apply = run_in(
        cwd,
        &[
            "apply",
            d,
            "--target",
            "Table/other",
            "--target",
            "Project/targeted",
        ],
    );
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    assert!(states(cwd, &specs).values().all(|s| s == "Ready"));
    std::fs::write(
        specs.join("all.yaml"),
        TARGETED
            .split("---\nkind: Table\nname: other")
            .next()
            .expect("split"),
    )
    .expect("drop Table/other");
    let apply = run_in(
        cwd,
        &["apply", d, "--target", "Table/users", "--prune-data"],
    );
    assert_eq!(apply.status.code(), Some(0), "{}", text(&apply));
    let full = run_in(cwd, &["plan", d, "--prune-data"]);
    assert_eq!(full.status.code(), Some(2));
    assert!(
        text(&full).contains("delete Table/other"),
        "{}",
        text(&full)
    );

    for bad in ["Table/nope", "Nope/users", "users"] {
        let out = run_in(cwd, &["plan", d, "--target", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(text(&out).contains(bad), "{}", text(&out));
    }
}

// ---------------------------------------------------------------- graph

#[test]
fn graph_prints_every_resource_and_edge_as_dot_and_mermaid() {
    let specs = common::example_specs();
    let ws = reconcile::workspace::Workspace::load(&specs).expect("load example");
    let edges = ws.graph.edges();
    assert!(edges.len() > 10, "the example has a graph");

    let dot = bin().args(["graph"]).arg(&specs).output().expect("graph");
    assert_eq!(dot.status.code(), Some(0), "{}", text(&dot));
    let dot = String::from_utf8_lossy(&dot.stdout).to_string();
    assert!(dot.starts_with("digraph"), "{dot}");
    for r in &ws.set.resources {
        assert!(dot.contains(&format!("\"{}\";", r.id)), "{} missing", r.id);
    }
    for (a, b) in &edges {
        assert!(
            dot.contains(&format!("\"{a}\" -> \"{b}\";")),
            "{a} -> {b} missing"
        );
    }
    assert_eq!(dot.matches(" -> ").count(), edges.len(), "{dot}");

    let mm = bin()
        .args(["graph", "--format", "mermaid"])
        .arg(&specs)
        .output()
        .expect("graph");
    assert_eq!(mm.status.code(), Some(0));
    let mm = String::from_utf8_lossy(&mm.stdout).to_string();
    assert!(mm.starts_with("flowchart"), "{mm}");
    // Node ids by label, read from the output itself.
    let mut node = std::collections::HashMap::new();
    for line in mm.lines() {
        if let Some((id, rest)) = line.trim().split_once("[\"") {
            node.insert(rest.trim_end_matches("\"]").to_string(), id.to_string());
        }
    }
    for r in &ws.set.resources {
        assert!(node.contains_key(&r.id.to_string()), "{} missing", r.id);
    }
    for (a, b) in &edges {
        let line = format!("{} --> {}", node[&a.to_string()], node[&b.to_string()]);
        assert!(mm.contains(&line), "{a} --> {b} missing");
    }
    assert_eq!(mm.matches(" --> ").count(), edges.len());
}

// ---------------------------------------------------------------- durations

#[test]
fn one_duration_grammar_for_flags_and_specs() {
    let (dir, specs) = initialised();
    let d = s(&specs);
    let ok = run_in(dir.path(), &["apply", d, "--lock-timeout", "1m30s"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let bad = run_in(dir.path(), &["apply", d, "--lock-timeout", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("not a duration"), "{}", text(&bad));
    // The same words in a spec: a TTL of a day and a half.
    let yaml = std::fs::read_to_string(specs.join("features.yaml")).expect("read");
    std::fs::write(
        specs.join("features.yaml"),
        yaml.replace("ttl: 90d", "ttl: 1d 12h"),
    )
    .expect("write");
    let v = run_in(dir.path(), &["validate", d]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    std::fs::write(
        specs.join("features.yaml"),
        yaml.replace("ttl: 90d", "ttl: 90 parsecs"),
    )
    .expect("write");
    let v = run_in(dir.path(), &["validate", d]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
}
