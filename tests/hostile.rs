//! Hostile inputs and faults against the specs, the stores and secrets: names
//! the stores or their engines own, tables reconcile did not create, `${VAR}`
//! values that try to rewrite a connection URL, every form of credential in a
//! URL, secrets quoted back by a container, concurrent first opens racing on
//! migrations, special files and alias bombs in `specs/`, unreachable servers,
//! promotion gates by hand, and `status` without secrets. (Slow and idle HTTP
//! clients and label cardinality are in `hostile_http.rs`.)
//!
//! Each class is kept here so that new cases of it land beside the old ones.
//! PostgreSQL cases skip with a notice without a server, and fail under `CI=true`.

#[path = "common/images.rs"]
mod images;
#[macro_use]
mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Project, docker_available, fresh_pg_database, text};
use images::busybox;
use reconcile::store::Db;

/// A project folder with one spec file of our own, on the embedded store.
fn project_with(spec: &str) -> Project {
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    std::fs::create_dir_all(&specs).expect("mkdir");
    std::fs::write(specs.join("specs.yaml"), spec).expect("write spec");
    Project {
        dir,
        specs,
        store_args: Vec::new(),
    }
}

/// Runs the binary with `args` then the specs folder, plus extra environment.
fn run_env(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
    cmd.args(args)
        .arg(&p.specs)
        .args(&p.store_args)
        .env("NO_COLOR", "1")
        .current_dir(p.dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run reconcile")
}

/// Runs a command, killing it when it outlives `limit`; returns its output
/// and whether it finished by itself.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Output, bool) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    let finished = loop {
        if child.try_wait().expect("try_wait").is_some() {
            break true;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (child.wait_with_output().expect("output"), finished)
}

fn table_spec(name: &str, extra: &str) -> String {
    format!(
        "kind: Project\nname: hostile\n---\nkind: Table\nname: {name}\nprimaryKey: [id]\n\
         columns: {{ id: int, v: string }}\nsnapshots:\n  - {{ asOf: 2024-01-31, path: t.csv }}\n{extra}"
    )
}

// ---------------------------------------------------------------- reserved names

#[test]
fn names_the_stores_or_their_engines_own_are_refused_with_position() {
    for name in [
        "_sqlx_migrations",
        "sqlite_master",
        "sqlite_sequence",
        "pg_class",
        "pg_anything",
        "reconcile_resources",
    ] {
        let p = project_with(&table_spec(name, ""));
        std::fs::write(p.specs.join("t.csv"), "id,v\n1,a\n").expect("csv");
        let out = p.run(&["validate", "--json"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name} must be refused:\n{t}");
        let diags: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {t}"));
        let d = diags
            .as_array()
            .and_then(|a| {
                a.iter().find(|d| {
                    d["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("reserved"))
                })
            })
            .unwrap_or_else(|| panic!("no `reserved` diagnostic for {name}:\n{t}"));
        assert_eq!(d["file"], "specs.yaml", "{t}");
        // `name: <name>` is line 5 of the file; the value starts at column 7.
        assert_eq!(
            (d["line"].as_u64(), d["column"].as_u64()),
            (Some(5), Some(7)),
            "{t}"
        );
    }
}

// ---------------------------------------------------------------- foreign tables

/// A table created behind reconcile's back, with 100 rows.
async fn make_foreign_table(db: &Db) {
    reconcile::with_pool!(db, pool => {
        sqlx::query("CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT)")
            .execute(pool)
            .await
            .expect("create foreign table");
        for i in 0..100i64 {
            sqlx::query("INSERT INTO customers (id, name) VALUES ($1, $2)")
                .bind(i)
                .bind(format!("customer {i}"))
                .execute(pool)
                .await
                .expect("insert");
        }
    });
}

async fn foreign_rows(db: &Db) -> i64 {
    let (n,): (i64,) = reconcile::with_pool!(db, pool =>
        sqlx::query_as("SELECT COUNT(*) FROM customers").fetch_one(pool).await)
    .expect("count foreign rows");
    n
}

async fn a_table_reconcile_did_not_create_is_a_conflict_until_adopted(backend: &str) {
    let mut p = project_with(&table_spec("customers", ""));
    std::fs::write(p.specs.join("t.csv"), "id,v\n1,a\n2,b\n").expect("csv");
    if backend == "postgres" {
        let Some(url) = fresh_pg_database("foreign").await else {
            return;
        };
        p.store_args = vec!["--state".into(), url];
    }
    // The store exists (migrated) and holds someone else's table.
    let db = p.db().await;
    make_foreign_table(&db).await;

    let plan = p.run(&["plan"]);
    let t = text(&plan);
    assert!(t.contains("! conflict Table/customers"), "{t}");
    assert!(
        t.contains("adopt: true"),
        "the plan says how to adopt:\n{t}"
    );
    let json = p.run(&["plan", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("plan json");
    let table = v["resources"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"]["name"] == "customers"))
        .unwrap_or_else(|| panic!("no plan for the table: {v}"));
    assert_eq!(table["action"], "conflict", "{v}");
    assert_eq!(table["operations"], serde_json::json!([]), "{v}");

    let apply = p.run(&["apply"]);
    let t = text(&apply);
    assert_eq!(apply.status.code(), Some(1), "apply refuses:\n{t}");
    assert!(t.contains("conflict"), "{t}");
    assert_eq!(
        foreign_rows(&db).await,
        100,
        "the foreign table is untouched"
    );

    // Removing the spec and destroying never drops it either.
    let destroy = p.run(&["destroy", "--yes"]);
    assert!(destroy.status.success(), "{}", text(&destroy));
    assert_eq!(foreign_rows(&db).await, 100, "destroy leaves it alone");

    // Adopting is explicit and then replaces it with the snapshots.
    std::fs::write(
        p.specs.join("specs.yaml"),
        table_spec("customers", "adopt: true\n"),
    )
    .expect("spec");
    let plan = p.run(&["plan"]);
    assert!(
        text(&plan).contains("adopt existing table `customers`"),
        "{}",
        text(&plan)
    );
    let apply = p.run(&["apply"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(
        foreign_rows(&db).await,
        2,
        "adopted: rebuilt from the snapshot"
    );
    let again = p.run(&["plan"]);
    assert_eq!(again.status.code(), Some(0), "then owned: {}", text(&again));
    db.close().await;
}

// ---------------------------------------------------------------- URL injection

async fn has_state_tables(url: &str) -> bool {
    let db = sqlx::PgPool::connect(url).await.expect("connect");
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'reconcile_resources'",
    )
    .fetch_one(&db)
    .await
    .expect("query");
    db.close().await;
    n > 0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_password_reaches_the_password_field_and_nowhere_else() {
    let Some(target) = fresh_pg_database("urltarget").await else {
        return;
    };
    let Some(decoy) = fresh_pg_database("urldecoy").await else {
        return;
    };
    let decoy_db = decoy.rsplit('/').next().expect("db name").to_string();
    let target_db = target.rsplit('/').next().expect("db name").to_string();
    // Spliced raw, this "password" ends the userinfo and names another
    // database (and comments out the rest with `#`).
    let hostile = format!("x@127.0.0.1:5432/{decoy_db}?sslmode=disable#");
    let p = project_with(
        "kind: Project\nname: hostile\n---\nkind: Entity\nname: user\njoinKeys: [id]\n",
    );
    let url = format!("postgres://postgres:${{HOSTILE_PW}}@127.0.0.1:5432/{target_db}");
    let out = run_env(&p, &["apply", "--state", &url], &[("HOSTILE_PW", &hostile)]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        has_state_tables(&target).await,
        "the state store is the named database"
    );
    assert!(
        !has_state_tables(&decoy).await,
        "the password redirected the connection:\n{t}"
    );
    assert!(!t.contains(&hostile), "the value is never printed:\n{t}");
}

// ---------------------------------------------------------------- redaction

#[test]
fn every_credential_form_is_redacted_and_a_closed_port_fails_fast_with_its_cause() {
    let p = project_with("kind: Project\nname: hostile\n");
    // Port 1 on loopback: closed, so the connection is refused at once.
    let secret = "hunter2-QUERY-SECRET";
    for (flag, url) in [
        (
            "--state",
            format!("postgres://postgres@127.0.0.1:1/db?password={secret}"),
        ),
        (
            "--state",
            format!("postgres://postgres@127.0.0.1:1/db?sslmode=prefer&sslpassword={secret}"),
        ),
        (
            "--state",
            format!("postgres://postgres:{secret}@127.0.0.1:1/db"),
        ),
        ("--online", format!("redis://:{secret}@127.0.0.1:1/0")),
        ("--online", format!("redis://{secret}@127.0.0.1:1/0")),
        (
            "--online",
            format!("redis://default:{secret}@127.0.0.1:1/0?prefix=p"),
        ),
    ] {
        for json in [false, true] {
            let mut args = vec!["status", flag, url.as_str()];
            if json {
                args.push("--json");
            }
            let t0 = Instant::now();
            let out = p.run(&args);
            let took = t0.elapsed();
            let t = text(&out);
            assert_eq!(out.status.code(), Some(1), "{url}: {t}");
            assert!(!t.contains(secret), "{url} printed its credential:\n{t}");
            assert!(t.contains("***"), "{url}: the redacted URL is shown:\n{t}");
            assert!(
                t.to_lowercase().contains("refused"),
                "{url}: the cause is shown:\n{t}"
            );
            assert!(took < Duration::from_secs(5), "{url}: took {took:?}:\n{t}");
        }
    }
}

// ---------------------------------------------------------------- secrets stored

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_a_container_prints_is_never_stored_or_printed() {
    if !docker_available() {
        return;
    }
    let name = format!("hostilesecret{}", std::process::id() % 10_000);
    let secret = "s3cr3t-printed-by-the-container-4242";
    let p = project_with(&format!(
        "kind: Project\nname: {name}\n---\nkind: Service\nname: leaky\nbuild: {{ context: ./img }}\n\
         env: {{ TOKEN: \"${{HOSTILE_TOKEN}}\" }}\n\
         command: [sh, -c, \"echo token is $TOKEN; exit 3\"]\n"
    ));
    let img = p.specs.join("img");
    std::fs::create_dir_all(&img).expect("mkdir");
    std::fs::copy(busybox(), img.join("busybox")).expect("copy busybox");
    std::fs::write(
        img.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .expect("dockerfile");
    let env = [("HOSTILE_TOKEN", secret)];
    let out = run_env(&p, &["apply"], &env);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("token is ***"),
        "the log line is quoted, redacted:\n{t}"
    );
    assert!(!t.contains(secret), "apply printed the secret:\n{t}");
    for args in [&["status"][..], &["status", "--json"]] {
        let s = run_env(&p, args, &env);
        assert!(!text(&s).contains(secret), "{}", text(&s));
    }
    let db = p.db().await;
    let stored: Vec<(String,)> = reconcile::with_pool!(&db, pool => sqlx::query_as(
        "SELECT message FROM reconcile_resources UNION ALL SELECT outputs FROM reconcile_resources \
         UNION ALL SELECT message FROM reconcile_events").fetch_all(pool).await)
    .expect("read state");
    assert!(!stored.is_empty());
    for (m,) in &stored {
        assert!(!m.contains(secret), "stored: {m}");
    }
    db.close().await;
    let _ = run_env(&p, &["destroy", "--yes", "--purge"], &env);
}

// ---------------------------------------------------------------- migration races

async fn concurrent_first_opens_apply_each_migration_once(backend: &str) {
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = match backend {
            "postgres" => match fresh_pg_database(&format!("migrace{round}")).await {
                Some(u) => u,
                None => return,
            },
            _ => format!("sqlite://{}", dir.path().join("fresh/state.db").display()),
        };
        // Eight opens interleaved on one task: each has its own pool and
        // connections, as eight first applies in eight processes would.
        let opens = (0..8).map(|_| Db::open(&url, dir.path()));
        for o in futures_util::future::join_all(opens).await {
            let db = o.unwrap_or_else(|e| panic!("round {round}: concurrent open failed: {e}"));
            db.close().await;
        }
        let db = Db::open(&url, dir.path()).await.expect("open");
        let (n, distinct): (i64, i64) = reconcile::with_pool!(&db, pool => sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT version) FROM _sqlx_migrations").fetch_one(pool).await)
        .expect("migrations");
        assert_eq!(n, distinct, "each migration recorded once");
        db.close().await;
    }
}

on_both_backends!(
    a_table_reconcile_did_not_create_is_a_conflict_until_adopted,
    concurrent_first_opens_apply_each_migration_once
);

// ---------------------------------------------------------------- special files

#[test]
fn fifos_devices_and_huge_files_named_yaml_are_refused_without_reading_them() {
    let p = project_with("kind: Project\nname: hostile\n");
    let fifo = p.specs.join("pipe.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", p.specs.join("zero.yaml")).expect("symlink");
    let big = std::fs::File::create(p.specs.join("huge.yaml")).expect("create");
    // Past the 32 MiB limit (sparse: nothing is written).
    big.set_len(64 * 1024 * 1024).expect("sparse file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
    cmd.args(["validate"]).arg(&p.specs).env("NO_COLOR", "1");
    let (out, finished) = run_bounded(cmd, Duration::from_secs(20));
    let t = text(&out);
    assert!(finished, "validate hung on a special file:\n{t}");
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("pipe.yaml") && t.contains("not a regular file (a FIFO)"),
        "{t}"
    );
    assert!(
        t.contains("zero.yaml") && t.contains("a character device"),
        "{t}"
    );
    assert!(t.contains("huge.yaml") && t.contains("limit"), "{t}");
}

#[test]
fn an_alias_bomb_names_the_limit_it_hit_and_where() {
    let mut bomb = String::from("kind: Project\nname: hostile\n---\nkind: Entity\nname: bomb\n");
    bomb.push_str("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for c in 'b'..='j' {
        bomb.push_str(&format!(
            "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
        prev = c;
    }
    bomb.push_str("joinKeys: *j\n");
    let p = project_with(&bomb);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reconcile"));
    cmd.args(["validate"]).arg(&p.specs).env("NO_COLOR", "1");
    let (out, finished) = run_bounded(cmd, Duration::from_secs(30));
    let t = text(&out);
    assert!(finished, "the bomb went off:\n{t}");
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("too large to parse"), "{t}");
    assert!(t.contains("over the limit of"), "says which limit:\n{t}");
    assert!(t.contains("specs.yaml:"), "says where:\n{t}");
    assert!(
        !t.contains("Budget") && !t.contains("breach"),
        "no debug text:\n{t}"
    );
}

// ---------------------------------------------------------------- gates by hand

#[tokio::test(flavor = "multi_thread")]
async fn models_stage_refuses_a_version_that_fails_the_gates_unless_forced() {
    let p = Project::example();
    let training = p.specs.join("training.yaml");
    let text_of = std::fs::read_to_string(&training).expect("training.yaml");
    std::fs::write(&training, text_of.replace("trees: 300", "trees: 8")).expect("write");
    let out = p.run(&["apply"]);
    assert!(out.status.success(), "{}", text(&out));
    // Now a gate no version meets.
    let text_of = std::fs::read_to_string(&training).expect("training.yaml");
    std::fs::write(
        &training,
        text_of.replace("val_auc: \">= 0.75\"", "val_auc: \">= 0.9999\""),
    )
    .expect("write");
    let stage = |extra: &[&str]| {
        let mut args = vec!["models", "stage", "streamflow_churn:2", "Production"];
        args.extend_from_slice(extra);
        p.run_without_specs(&args)
    };
    let refused = stage(&[]);
    let t = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{t}");
    assert!(t.contains("val_auc >= 0.9999"), "names the gate:\n{t}");
    assert!(t.contains("--force"), "{t}");
    let forced = stage(&["--force"]);
    let t = text(&forced);
    assert!(forced.status.success(), "{t}");
    assert!(t.contains("→ Production"), "{t}");
    let history = p.run_without_specs(&["models", "history", "streamflow_churn"]);
    assert!(
        text(&history).contains("forced past the gates"),
        "{}",
        text(&history)
    );
}

// ---------------------------------------------------------------- status without secrets

#[test]
fn status_needs_no_secrets_but_apply_does() {
    let p = project_with(
        "kind: Project\nname: hostile\n---\nkind: Entity\nname: user\njoinKeys: [id]\n---\n\
         kind: Service\nname: db\nimage: postgres:16\nenv: { POSTGRES_PASSWORD: \"${HOSTILE_UNSET_PW}\" }\n",
    );
    let status = p.run(&["status"]);
    let t = text(&status);
    assert!(status.status.success(), "status refused:\n{t}");
    assert!(t.contains("user"), "{t}");
    let validate = p.run(&["validate"]);
    assert_eq!(validate.status.code(), Some(1), "apply still needs it");
    assert!(text(&validate).contains("HOSTILE_UNSET_PW"));
}
