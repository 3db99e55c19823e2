//! `cargo bench --bench swarm_bench`: the swarm runtime's figures, as whole
//! `reconcile` processes (release binary) against a real single-node swarm
//! (`docker swarm init` when the engine is in none; left again at the end).
//!
//! * converge a 3-replica busybox service from nothing to all tasks healthy
//!   (image already built: the controller's and the swarm's time);
//! * no-op apply with it running (target < 300 ms as a whole process);
//! * /predict throughput of the example's endpoint with 1 and with 3
//!   replicas, from a load generator inside the overlay network (this very
//!   binary in a container, `--client`): 16 keep-alive connections, each
//!   resolving the service name, so DNS round robin spreads them.
//!
//! This machine's kernel has no IPVS, so the routing mesh and VIP mode carry
//! no traffic here; the endpoint runs in `dnsrr` mode.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

const IMAGE: &str = "reconcile-bench-busybox:1";
const RUNS: usize = 3;
const NOOP_RUNS: usize = 10;
const CONNECTIONS: usize = 16;
const SECONDS: u64 = 5;

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn reconcile(specs: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(args)
        .arg(specs)
        .env("NO_COLOR", "1")
        .output()
        .expect("run reconcile");
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "reconcile {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn busybox_image(dir: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("busybox-static");
    std::fs::copy(busybox, dir.join("busybox")).expect("copy busybox");
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .expect("dockerfile");
    docker(&["build", "-q", "-t", IMAGE, &dir.display().to_string()]);
}

fn converge(work: &Path) {
    println!("converge a 3-replica service (image built; whole process)");
    let mut converge = Vec::new();
    let mut noop = Vec::new();
    for run in 0..RUNS {
        let specs = work.join(format!("svc{run}"));
        std::fs::create_dir_all(&specs).expect("mkdir");
        std::fs::write(
            specs.join("specs.yaml"),
            format!(
                "kind: Project\nname: swbench{run}\nruntime: swarm\n---\nkind: Service\nname: web\nimage: {IMAGE}\n\
                 command: [sh, -c, \"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n\
                 health: {{ command: \"wget -q -O /dev/null http://127.0.0.1:8080/\", interval: 200ms, retries: 50 }}\n\
                 deploy: {{ replicas: 3, endpointMode: dnsrr }}\n"
            ),
        )
        .expect("specs");
        converge.push(ms(reconcile(&specs, &["apply"])));
        if run == 0 {
            for _ in 0..NOOP_RUNS {
                noop.push(ms(reconcile(&specs, &["apply"])));
            }
        }
        reconcile(&specs, &["destroy", "--yes"]);
    }
    println!(
        "  converge from nothing: median {:.0} ms over {RUNS} runs ({converge:.0?})",
        median(converge.clone())
    );
    println!(
        "  no-op apply, 3 replicas running: median {:.0} ms, max {:.0} ms over {NOOP_RUNS} runs (target < 300 ms)",
        median(noop.clone()),
        noop.iter().copied().fold(0.0, f64::max)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let name = e.file_name();
        if name == ".reconcile" || name == "monitoring.yaml" {
            continue;
        }
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).expect("copy");
        }
    }
}

/// Builds the load generator's image from this very binary.
fn client_image() -> String {
    let me = std::env::current_exe().expect("own path");
    let ctx = reconcile::serve_image::build_context(&me).expect("client image context");
    let tag = format!("reconcile-bench-client:{}", &ctx.hash[..16]);
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", &tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("docker build");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&ctx.tar).expect("send context");
    }
    assert!(
        child.wait().expect("docker build").success(),
        "client image build failed"
    );
    tag
}

fn throughput(work: &Path) {
    println!("/predict through the overlay network, {CONNECTIONS} connections for {SECONDS} s");
    let specs = work.join("endpoint");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
    copy_dir(&root, &specs);
    let project = std::fs::read_to_string(specs.join("project.yaml")).expect("project.yaml");
    std::fs::write(
        specs.join("project.yaml"),
        project.replacen("name: streamflow", "name: swbenchep", 1),
    )
    .expect("project.yaml");
    let training = std::fs::read_to_string(specs.join("training.yaml")).expect("training.yaml");
    // The first 200 users of the January snapshot: every one is served.
    let users =
        std::fs::read_to_string(specs.join("data/2024-01-31/users.csv")).expect("users.csv");
    let ids: Vec<&str> = users
        .lines()
        .skip(1)
        .take(200)
        .filter_map(|l| l.split(',').next())
        .collect();
    let ids = ids.join(",");
    let client = client_image();
    for replicas in [1, 3] {
        std::fs::write(
            specs.join("training.yaml"),
            training.replacen(
                "runtime: embedded",
                &format!("runtime: swarm\ndeploy: {{ replicas: {replicas}, endpointMode: dnsrr }}"),
                1,
            ),
        )
        .expect("training.yaml");
        let t = reconcile(&specs, &["apply"]);
        let out = docker(&[
            "run",
            "--rm",
            "--network",
            "reconcile-swbenchep",
            &client,
            "--client",
            "churn-api:8000",
            &ids,
        ]);
        println!(
            "  {replicas} replica(s) (apply {:.1} s): {out}",
            t.as_secs_f64()
        );
    }
    reconcile(&specs, &["destroy", "--yes"]);
    let _ = Command::new("docker").args(["rmi", "-f", &client]).output();
}

/// The load generator's side: runs inside the overlay network.
fn client(addr: &str, ids: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ids: Arc<Vec<String>> = Arc::new(ids.split(',').map(str::to_string).collect());
    let (rps, lat, errors) = rt.block_on(load(addr, ids));
    let p = |q: f64| {
        lat[((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1))] as f64 / 1000.0
    };
    println!(
        "{rps:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {errors} errors",
        p(0.5),
        p(0.99)
    );
}

async fn load(addr: &str, ids: Arc<Vec<String>>) -> (f64, Vec<u32>, usize) {
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (addr, ids) = (addr.to_string(), ids.clone());
        tasks.push(tokio::spawn(async move {
            // Each connection resolves the name: round robin picks its replica.
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0usize;
            let mut i = c;
            while Instant::now() < deadline {
                let id = &ids[i % ids.len()];
                i += 1;
                let request = hyper::Request::builder()
                    .method("POST")
                    .uri("/predict")
                    .header("host", &addr)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(format!(r#"{{"user_id":"{id}"}}"#))))
                    .expect("request");
                let t0 = Instant::now();
                match sender.send_request(request).await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let _ = r.into_body().collect().await;
                        latencies.push(t0.elapsed().as_micros() as u32);
                        errors += usize::from(!ok);
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    (all.len() as f64 / elapsed, all, errors)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--client") {
        client(
            args.get(i + 1).map_or("churn-api:8000", String::as_str),
            args.get(i + 2).map_or("7590-VHVEG", String::as_str),
        );
        return;
    }
    if !Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("NOTICE: no Docker engine answers; swarm_bench skipped");
        return;
    }
    let state = docker(&["info", "-f", "{{.Swarm.LocalNodeState}}"]);
    let started = state != "active";
    if started {
        docker(&["swarm", "init"]);
    }
    let work = tempfile::tempdir().expect("tempdir");
    let image_dir = work.path().join("image");
    std::fs::create_dir_all(&image_dir).expect("mkdir");
    busybox_image(&image_dir);
    converge(work.path());
    throughput(work.path());
    if started {
        docker(&["swarm", "leave", "--force"]);
    }
}
