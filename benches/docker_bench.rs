//! `cargo bench --bench docker_bench`: Docker figures of the Service kind, as
//! whole `reconcile` processes (release binary) against a real dockerd.
//!
//! * converge 10 services from nothing to healthy (image already built, so the
//!   figure is the controller's and the engine's, not the image build's);
//! * no-op apply with the 10 services running (target < 300 ms);
//! * recreate one changed service of the 10.
//!
//! Skipped with a notice when no engine answers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SERVICES: usize = 10;
/// Built once by the bench itself (not by the project, so `destroy` keeps it).
const IMAGE: &str = "reconcile-bench-busybox:1";
const RUNS: usize = 15;

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn write_specs(specs: &Path, project: &str, marker: &str) {
    let mut text = format!("kind: Project\nname: {project}\n");
    for i in 0..SERVICES {
        // Service 0 carries the marker, so changing it recreates one service.
        let m = if i == 0 { marker } else { "same" };
        text.push_str(&format!(
            "---\nkind: Service\nname: web{i}\nimage: {IMAGE}\n\
             command: [sh, -c, \"echo {m} > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n\
             volumes: [\"www{i}:/www\"]\n\
             health: {{ command: [wget, -q, -O, /dev/null, \"http://127.0.0.1:8080/\"], interval: 100ms, retries: 50 }}\n"
        ));
    }
    std::fs::write(specs.join("specs.yaml"), text).expect("write specs");
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

fn main() {
    let engine = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    let Some(busybox) = busybox().filter(|_| engine) else {
        println!("docker_bench: skipped (no Docker engine or no busybox-static)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    let web = specs.join("web");
    std::fs::create_dir_all(&web).expect("mkdir");
    std::fs::copy(&busybox, web.join("busybox")).expect("copy busybox");
    std::fs::write(
        web.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .expect("dockerfile");
    let t = Instant::now();
    let built = Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(&web)
        .output()
        .expect("docker build");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let build = t.elapsed();
    let project = format!("bench{}", std::process::id());
    write_specs(&specs, &project, "v0");

    // Warm-up: the engine's first network and containers are slower.
    reconcile(&specs, &["apply", "--quiet"]);
    reconcile(&specs, &["destroy", "--yes", "--purge"]);

    let mut converge = Vec::new();
    for _ in 0..3 {
        converge.push(reconcile(&specs, &["apply", "--quiet"]));
        reconcile(&specs, &["destroy", "--yes", "--purge"]);
    }
    reconcile(&specs, &["apply", "--quiet"]);
    let mut noop: Vec<Duration> = (0..RUNS)
        .map(|_| reconcile(&specs, &["apply", "--quiet"]))
        .collect();
    let mut recreate = Vec::new();
    for i in 1..=3 {
        write_specs(&specs, &project, &format!("v{i}"));
        recreate.push(reconcile(&specs, &["apply", "--quiet"]));
    }
    reconcile(&specs, &["destroy", "--yes", "--purge"]);

    converge.sort();
    noop.sort();
    recreate.sort();
    println!(
        "image build (docker build, not the controller) {:>8.1} ms",
        ms(build)
    );
    println!(
        "converge {SERVICES} services from nothing (healthy)  median {:>8.1} ms  (min {:.1}, max {:.1})",
        ms(converge[1]),
        ms(converge[0]),
        ms(converge[2])
    );
    println!(
        "no-op apply, {SERVICES} services running            median {:>8.1} ms  (min {:.1}, max {:.1})   target < 300 ms",
        ms(noop[RUNS / 2]),
        ms(noop[0]),
        ms(noop[RUNS - 1])
    );
    println!(
        "recreate 1 changed service of {SERVICES}            median {:>8.1} ms  (min {:.1}, max {:.1})",
        ms(recreate[1]),
        ms(recreate[0]),
        ms(recreate[2])
    );
}
