//! `reconcile export kubernetes` on the Docker example: what it writes parses
//! back into k8s-openapi's typed objects and serialises to the same document
//! (so no field is unknown to API 1.37 or dropped), says what the specs say
//! (replicas, probes, limits, Secret references, claims, ConfigMaps holding
//! the generated monitoring config), never holds a secret's value, and the
//! committed `k8s/` is what the command writes today. Bad names and output
//! folders fail with a message saying what is wrong.
//!
//! No cluster is reachable here: `kubectl apply` of these files, the API
//! server's own validation and the pods running are not checked.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, PersistentVolumeClaim, Probe, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const EXAMPLE: &str = "examples/streamflow-docker";
const COMMITTED: &str = "k8s";
const REGENERATE: &str = "cargo run -- export kubernetes examples/streamflow-docker --out k8s";
/// Set for the child: must never reach a written file.
const PASSWORD: &str = "pw-that-must-not-leak-7f3a";
const GRAFANA: &str = "grafana-pw-that-must-not-leak-91c2";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `reconcile <args…>` from the repository root with the example's
/// secrets set.
fn reconcile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(args)
        .current_dir(repo())
        .env("PG_PASSWORD", PASSWORD)
        .env("GRAFANA_PASSWORD", GRAFANA)
        .env("NO_COLOR", "1")
        .output()
        .expect("run reconcile")
}

/// Exports the example into `out`, checked to succeed; returns the manifest
/// text and the Dockerfile.
fn export(out: &Path) -> (String, String) {
    let o = reconcile(&[
        "export",
        "kubernetes",
        EXAMPLE,
        "--out",
        out.to_str().expect("UTF-8 path"),
    ]);
    assert!(o.status.success(), "{}", common::text(&o));
    let yaml = std::fs::read_to_string(out.join("streamflow.yaml")).expect("manifests written");
    let docker = std::fs::read_to_string(out.join("Dockerfile")).expect("Dockerfile written");
    (yaml, docker)
}

/// The objects of the manifests, typed.
#[derive(Default)]
struct Objects {
    deployments: BTreeMap<String, Deployment>,
    services: BTreeMap<String, Service>,
    config_maps: BTreeMap<String, ConfigMap>,
    claims: BTreeMap<String, PersistentVolumeClaim>,
    jobs: BTreeMap<String, Job>,
    /// Kinds in the order written.
    order: Vec<String>,
}

/// Parses `doc` into `T` and checks that `T` serialises back to the same
/// document: every field written is one of the type's.
fn typed<T>(doc: &serde_json::Value) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc:#}"));
    let back = serde_json::to_value(&t).expect("serialise");
    assert_eq!(&back, doc, "a field did not round-trip");
    t
}

fn parse(yaml: &str) -> Objects {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(yaml).expect("the manifests parse as multi-document YAML");
    let mut o = Objects::default();
    for doc in &docs {
        let kind = doc["kind"].as_str().expect("kind").to_string();
        let name = doc["metadata"]["name"].as_str().expect("name").to_string();
        match (
            doc["apiVersion"].as_str().expect("apiVersion"),
            kind.as_str(),
        ) {
            ("apps/v1", "Deployment") => {
                o.deployments.insert(name, typed(doc));
            }
            ("v1", "Service") => {
                o.services.insert(name, typed(doc));
            }
            ("v1", "ConfigMap") => {
                o.config_maps.insert(name, typed(doc));
            }
            ("v1", "PersistentVolumeClaim") => {
                o.claims.insert(name, typed(doc));
            }
            ("batch/v1", "Job") => {
                o.jobs.insert(name, typed(doc));
            }
            other => panic!("unexpected object {other:?}"),
        }
        o.order.push(kind);
    }
    o
}

fn container(d: &Deployment) -> &Container {
    let pod = d.spec.template.spec.as_ref().expect("pod");
    assert_eq!(pod.containers.len(), 1);
    &pod.containers[0]
}

fn exec(p: &Option<Probe>) -> Vec<String> {
    p.as_ref()
        .and_then(|p| p.exec.as_ref())
        .and_then(|e| e.command.clone())
        .expect("an exec probe")
}

/// `name` → (secret, key) for env taken from a Secret, `name` → value otherwise.
fn env_map(env: &[EnvVar]) -> BTreeMap<String, String> {
    env.iter()
        .map(|e| {
            let v = match (&e.value, &e.value_from) {
                (Some(v), None) => v.clone(),
                (None, Some(f)) => {
                    let r = f.secret_key_ref.as_ref().expect("only secretKeyRef");
                    format!("secret:{}/{}", r.name, r.key)
                }
                other => panic!("{}: {other:?}", e.name),
            };
            (e.name.clone(), v)
        })
        .collect()
}

#[test]
fn example_exports_to_typed_manifests() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("k8s");
    let (yaml, dockerfile) = export(&out);
    for text in [&yaml, &dockerfile] {
        assert!(
            !text.contains(PASSWORD),
            "a resolved secret leaked:\n{text}"
        );
        assert!(!text.contains(GRAFANA), "a resolved secret leaked:\n{text}");
    }
    assert!(yaml.starts_with("# Generated by `reconcile export kubernetes`"));
    // References are Kubernetes' now; none of reconcile's syntax is left.
    let body = yaml.split_once("\n---\n").map_or("", |(_, b)| b);
    assert!(!body.is_empty() && !body.contains("${"), "{yaml}");
    let o = parse(&yaml);

    // Claims and config first, then services, deployments and the job.
    let rank = |k: &str| {
        [
            "PersistentVolumeClaim",
            "ConfigMap",
            "Service",
            "Deployment",
            "Job",
        ]
        .iter()
        .position(|x| *x == k)
        .expect("known kind")
    };
    assert!(
        o.order.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{:?}",
        o.order
    );
    assert_eq!(
        o.deployments.keys().collect::<Vec<_>>(),
        ["churn-api", "grafana", "postgres", "prometheus"]
    );

    for (name, d) in &o.deployments {
        let spec = &d.spec;
        assert_eq!(spec.replicas, Some(1), "{name}");
        let labels = d
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .expect("pod labels");
        let selector = spec.selector.match_labels.clone().expect("selector");
        assert!(
            selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "{name}: the selector matches its pods"
        );
        assert_eq!(labels["reconcile.export/project"], "streamflow");
        // The Service of the same name selects the same pods.
        let svc = o
            .services
            .get(name)
            .expect("a Service per container with ports");
        let svc_sel = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .expect("selector");
        assert_eq!(svc_sel, selector, "{name}");
        let c = container(d);
        assert!(
            c.readiness_probe.is_some() && c.liveness_probe.is_some(),
            "{name}: probes"
        );
    }
    let strategy = |n: &str| o.deployments[n].spec.strategy.clone().expect("strategy");
    // A database's claim is never mounted by two pods at once.
    assert_eq!(strategy("postgres").type_.as_deref(), Some("Recreate"));
    let rolling = strategy("churn-api");
    assert_eq!(rolling.type_.as_deref(), Some("RollingUpdate"));
    let ru = rolling.rolling_update.expect("rolling update");
    assert_eq!(
        ru.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );

    // postgres: image, probe from its health check, Secret reference, claim.
    let pg = container(&o.deployments["postgres"]);
    assert_eq!(pg.image.as_deref(), Some("postgres:16"));
    assert_eq!(
        exec(&pg.readiness_probe),
        ["pg_isready", "-U", "streamflow", "-d", "streamflow"]
    );
    let ready = pg.readiness_probe.as_ref().expect("probe");
    assert_eq!(
        (
            ready.period_seconds,
            ready.timeout_seconds,
            ready.failure_threshold
        ),
        (Some(1), Some(5), Some(30))
    );
    let env = env_map(pg.env.as_deref().expect("env"));
    assert_eq!(
        env["POSTGRES_PASSWORD"],
        "secret:streamflow-secrets/PG_PASSWORD"
    );
    assert_eq!(env["POSTGRES_USER"], "streamflow");
    let mounts = pg.volume_mounts.clone().expect("mounts");
    assert_eq!(mounts[0].mount_path, "/var/lib/postgresql/data");
    let pg_pod = o.deployments["postgres"]
        .spec
        .template
        .spec
        .clone()
        .expect("pod");
    let vol = pg_pod
        .volumes
        .expect("volumes")
        .into_iter()
        .find(|v| v.name == mounts[0].name)
        .expect("the mounted volume");
    assert_eq!(
        vol.persistent_volume_claim.map(|c| c.claim_name).as_deref(),
        Some("pgdata")
    );
    let claim = o.claims.get("pgdata").expect("a claim per named volume");
    let cs = claim.spec.as_ref().expect("claim spec");
    assert_eq!(
        cs.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
    assert_eq!(
        cs.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .map(|r| r["storage"].0.as_str()),
        Some("1Gi")
    );
    assert_eq!(o.claims.len(), 1);
    let port = |n: &str| -> Vec<i32> {
        o.services[n]
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .expect("ports")
            .iter()
            .map(|p| p.port)
            .collect()
    };
    assert_eq!(port("postgres"), [5432]);
    assert_eq!(port("churn-api"), [8000]);
    assert_eq!(port("prometheus"), [9090]);
    assert_eq!(port("grafana"), [3000]);

    // Limits from `resources`.
    let prom = container(&o.deployments["prometheus"]);
    let limits = prom
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .expect("limits");
    assert_eq!(limits["cpu"].0, "500m");
    assert_eq!(limits["memory"].0, "256Mi");

    // The endpoint: the project image, `reconcile serve` of the folder it holds.
    let api_d = &o.deployments["churn-api"];
    let api = container(api_d);
    assert_eq!(api.image.as_deref(), Some("reconcile-streamflow:latest"));
    assert_eq!(
        api.command.as_deref(),
        Some(&["/reconcile".to_string()][..])
    );
    assert_eq!(
        api.args.clone().expect("args"),
        [
            "serve",
            "/project",
            "--endpoint",
            "churn-api",
            "--host",
            "0.0.0.0",
            "--port",
            "8000"
        ]
    );
    assert_eq!(
        exec(&api.readiness_probe),
        ["/reconcile", "probe", "http://127.0.0.1:8000/health"]
    );
    let env = env_map(api.env.as_deref().expect("env"));
    assert_eq!(env["PG_PASSWORD"], "secret:streamflow-secrets/PG_PASSWORD");
    assert_eq!(env["RECONCILE_IN_NETWORK"], "1");
    assert!(api.volume_mounts.is_none(), "the image holds the project");
    let annotations = api_d.metadata.annotations.clone().expect("annotations");
    assert_eq!(
        annotations["reconcile.export/resource"],
        "Endpoint/churn-api"
    );
    assert!(
        annotations["reconcile.export/build"].contains("reconcile-streamflow:latest"),
        "{annotations:?}"
    );

    // Every `${VAR}` of the specs is a key of the one Secret, and nothing else is.
    let mut keys = BTreeSet::new();
    for d in o.deployments.values() {
        for e in container(d).env.iter().flatten() {
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref())
            {
                assert_eq!(r.name, "streamflow-secrets");
                keys.insert(r.key.clone());
            }
        }
    }
    assert_eq!(
        keys,
        BTreeSet::from(["GRAFANA_PASSWORD".into(), "PG_PASSWORD".into()])
    );
    let grafana = container(&o.deployments["grafana"]);
    let env = env_map(grafana.env.as_deref().expect("env"));
    assert_eq!(
        env["GF_SECURITY_ADMIN_PASSWORD"],
        "secret:streamflow-secrets/GRAFANA_PASSWORD"
    );

    // Mounted config: ConfigMaps holding exactly what `reconcile observability` writes.
    let obs = tempfile::tempdir().expect("tempdir");
    let w = reconcile(&[
        "observability",
        EXAMPLE,
        "--out",
        obs.path().to_str().expect("UTF-8 path"),
    ]);
    assert!(w.status.success(), "{}", common::text(&w));
    let check_mount = |deployment: &str, mount_path: &str, folder: &str| {
        let d = &o.deployments[deployment];
        let c = container(d);
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == mount_path)
            .unwrap_or_else(|| panic!("{deployment}: no mount at {mount_path}"));
        assert_eq!(m.read_only, Some(true));
        let pod = d.spec.template.spec.as_ref().expect("pod");
        let v = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .expect("volume");
        let src = v.config_map.as_ref().expect("a ConfigMap volume");
        let cm = o
            .config_maps
            .get(&src.name)
            .expect("the ConfigMap is written");
        let data = cm.data.clone().expect("data");
        let items = src.items.clone().expect("items");
        assert_eq!(items.len(), data.len());
        let mut on_disk = BTreeMap::new();
        let base = obs.path().join(folder);
        let mut todo = vec![base.clone()];
        while let Some(dir) = todo.pop() {
            for e in std::fs::read_dir(&dir).expect("read") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    let rel = p
                        .strip_prefix(&base)
                        .expect("under")
                        .to_string_lossy()
                        .into_owned();
                    on_disk.insert(rel, std::fs::read_to_string(&p).expect("text"));
                }
            }
        }
        on_disk.remove(".reconcile-generated");
        let mounted: BTreeMap<String, String> = items
            .iter()
            .map(|i| (i.path.clone(), data[&i.key].clone()))
            .collect();
        assert_eq!(mounted, on_disk, "{deployment}:{mount_path}");
        assert!(!mounted.is_empty());
    };
    check_mount("prometheus", "/etc/prometheus", "prometheus");
    check_mount(
        "grafana",
        "/etc/grafana/provisioning",
        "grafana/provisioning",
    );
    check_mount(
        "grafana",
        "/var/lib/grafana/dashboards",
        "grafana/dashboards",
    );
    assert!(
        o.config_maps["prometheus-config-0"]
            .data
            .as_ref()
            .expect("data")["prometheus.yml"]
            .contains("churn-api:8000"),
        "Prometheus scrapes the endpoint's Service by name"
    );

    // The Job: `apply --no-containers` in the cluster, with every variable.
    let job = o.jobs.get("streamflow-apply").expect("the apply Job");
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("reconcile-streamflow:latest"));
    assert_eq!(
        c.args.clone().expect("args"),
        ["apply", "/project", "--no-containers"]
    );
    let env = env_map(c.env.as_deref().expect("env"));
    assert_eq!(env["RECONCILE_IN_NETWORK"], "1");
    assert_eq!(env["PG_PASSWORD"], "secret:streamflow-secrets/PG_PASSWORD");
    assert_eq!(
        env["GRAFANA_PASSWORD"],
        "secret:streamflow-secrets/GRAFANA_PASSWORD"
    );

    assert!(
        dockerfile.contains("\nFROM reconcile-serve:latest\nCOPY . /project\n"),
        "{dockerfile}"
    );
}

#[test]
fn committed_manifests_are_current() {
    // Exported beside the committed folder (same depth), so the relative path
    // to the specs in their headers is the same.
    let fresh = tempfile::Builder::new()
        .prefix(".k8s-fresh-")
        .tempdir_in(repo())
        .expect("tempdir in the repository");
    let (yaml, dockerfile) = export(fresh.path());
    for (file, text) in [("streamflow.yaml", yaml), ("Dockerfile", dockerfile)] {
        let path = repo().join(COMMITTED).join(file);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{COMMITTED}/{file} missing ({e}); run `{REGENERATE}`"));
        assert!(
            committed == text,
            "{COMMITTED}/{file} is stale; run `{REGENERATE}` from the repository root"
        );
    }
}

/// A project of `files` in a temporary folder.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    dir
}

const PROJECT: &str = "kind: Project\nname: demo\n";

fn export_of(specs: &Path, out: &Path) -> Output {
    reconcile(&[
        "export",
        "kubernetes",
        specs.to_str().expect("UTF-8"),
        "--out",
        out.to_str().expect("UTF-8"),
    ])
}

#[test]
fn names_kubernetes_cannot_take_are_refused() {
    let out_root = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "kind: Service\nname: main_db\nimage: postgres:16\n",
            "`main_db` is not a Kubernetes name",
        ),
        (
            "kind: Service\nname: db\nimage: postgres:16\nvolumes: ['pg_data:/data']\n",
            "volume of Service/db `pg_data` is not a Kubernetes name",
        ),
    ];
    for (i, (spec, message)) in cases.iter().enumerate() {
        let p = project(&[("project.yaml", PROJECT), ("svc.yaml", spec)]);
        // The specs themselves are valid.
        let v = reconcile(&["validate", p.path().to_str().expect("UTF-8")]);
        assert!(v.status.success(), "{}", common::text(&v));
        let out = out_root.path().join(format!("out-{i}"));
        let o = export_of(p.path(), &out);
        let text = common::text(&o);
        assert_eq!(o.status.code(), Some(1), "{text}");
        assert!(text.contains(message), "{text}");
        assert!(text.contains("lowercase letters, digits and `-`"), "{text}");
        assert!(!out.join("demo.yaml").exists(), "nothing written on error");
    }
}

#[test]
fn output_folders_that_cannot_hold_manifests_are_refused() {
    let p = project(&[
        ("project.yaml", PROJECT),
        (
            "svc.yaml",
            "kind: Service\nname: db\nimage: postgres:16\nports: ['5432']\n",
        ),
    ]);
    // A file where the folder should be.
    let file = p.path().join("..").join(format!(
        "{}-not-a-folder",
        p.path().file_name().expect("name").to_string_lossy()
    ));
    std::fs::write(&file, "x").expect("write");
    let o = export_of(p.path(), &file);
    let text = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("exists and is not a folder"), "{text}");
    std::fs::remove_file(&file).expect("remove");

    // Inside the specs' folder, the manifests would be read as specs next time.
    let inside = p.path().join("k8s");
    let o = export_of(p.path(), &inside);
    let text = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("is inside the specs' folder"), "{text}");
    assert!(!inside.join("demo.yaml").exists());
    let v = reconcile(&["validate", p.path().to_str().expect("UTF-8")]);
    assert!(v.status.success(), "{}", common::text(&v));

    // A hidden folder there is fine (the loader skips it).
    let hidden = p.path().join(".k8s");
    let o = export_of(p.path(), &hidden);
    assert!(o.status.success(), "{}", common::text(&o));
    assert!(hidden.join("demo.yaml").exists());
}

/// A swarm `deploy` block maps onto the Deployment: replicas, the rolling
/// update (start-first surges, stop-first takes pods down first), the
/// monitor window as minReadySeconds, limits and requests, node labels as a
/// node selector, and the constraints Kubernetes has no field for noted.
#[test]
fn a_deploy_block_maps_onto_the_deployment() {
    let svc = "kind: Service\nname: web\nimage: nginx:1\nruntime: swarm\n\
               deploy:\n  replicas: 3\n  update: { parallelism: 2, order: start-first, monitor: 7s }\n  \
               resources: { limits: { cpus: 0.5, memory: 256m }, reservations: { cpus: 0.25, memory: 64m } }\n  \
               placement: { constraints: [\"node.labels.zone==eu\", \"node.role==manager\"] }\n\
               ---\nkind: Service\nname: db\nimage: postgres:16\nruntime: swarm\n\
               deploy: { replicas: 2, update: { parallelism: 1, order: stop-first } }\n";
    let p = project(&[("project.yaml", PROJECT), ("svc.yaml", svc)]);
    let out_root = tempfile::tempdir().expect("tempdir");
    let out = out_root.path().join("k8s");
    let o = export_of(p.path(), &out);
    assert!(o.status.success(), "{}", common::text(&o));
    let objects = parse(&std::fs::read_to_string(out.join("demo.yaml")).expect("manifests"));
    let web = &objects.deployments["web"];
    let spec = &web.spec;
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.min_ready_seconds, Some(7));
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .expect("rolling update");
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(2)));
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    let resources = container(web).resources.as_ref().expect("resources");
    let q = |m: &Option<BTreeMap<String, Quantity>>, k: &str| {
        m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
    };
    assert_eq!(q(&resources.limits, "cpu").as_deref(), Some("500m"));
    assert_eq!(q(&resources.requests, "cpu").as_deref(), Some("250m"));
    assert_eq!(q(&resources.requests, "memory").as_deref(), Some("64Mi"));
    let pod = spec.template.spec.as_ref().expect("pod");
    assert_eq!(
        pod.node_selector
            .as_ref()
            .and_then(|n| n.get("zone"))
            .map(String::as_str),
        Some("eu")
    );
    let note = web
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("reconcile.export/placement"))
        .expect("unmapped constraints are noted");
    assert!(note.contains("node.role==manager"), "{note}");
    let db = objects.deployments["db"]
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .expect("rolling update");
    assert_eq!(db.max_surge, Some(IntOrString::Int(0)));
    assert_eq!(db.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(objects.deployments["db"].spec.replicas, Some(2));
}
