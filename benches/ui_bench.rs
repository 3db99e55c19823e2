//! `cargo bench --bench ui_bench`: server-side render time of every web UI
//! page on the applied StreamFlow example (monitor included), the median of
//! 100 renders each with the cached plan, beside the 50 ms target; and what
//! computing that plan (the snapshot, refreshed at most every few seconds)
//! costs once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reconcile::store::registry::Stage;
use reconcile::ui::{Page, Ui};
use reconcile::workspace::StoreOverrides;

const RENDERS: usize = 100;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs"))
        .arg(&specs)
        .status()
        .expect("cp");
    assert!(copied.success(), "copying the example failed");
    // A state store left in the example by a local apply is not the bench's.
    let _ = std::fs::remove_dir_all(specs.join(".reconcile"));
    let out = Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(["apply", "-q"])
        .arg(&specs)
        .output()
        .expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let ui = Ui::new(specs.clone(), StoreOverrides::default());
        let t0 = Instant::now();
        let snapshot = ui.snapshot().await.expect("snapshot");
        println!(
            "{:<44} {:>8.1} ms  (load, hash inputs, observe, plan; cached for a few seconds)",
            "ui snapshot (first, stores opened)",
            t0.elapsed().as_secs_f64() * 1000.0
        );
        println!(
            "{:<44} {:>8.1} ms",
            "ui snapshot (the plan alone)",
            snapshot.took.as_secs_f64() * 1000.0
        );
        let (model, versions) = snapshot
            .observed
            .registry
            .iter()
            .next()
            .expect("a registered model");
        let version = versions
            .iter()
            .find(|v| v.stage == Stage::Production)
            .expect("a Production version")
            .version;
        let pages = [
            ("/ui", Page::Graph),
            ("/ui/models", Page::Models),
            (
                "/ui/models/{model}/{version}",
                Page::Version {
                    model: model.clone(),
                    version: version.to_string(),
                },
            ),
            ("/ui/data", Page::Data),
            ("/ui/monitors", Page::Monitors),
            (
                "/ui/monitors/{monitor}",
                Page::Monitor {
                    name: "churn-drift".into(),
                },
            ),
            (
                "/ui/monitors/{monitor}/report",
                Page::Report {
                    name: "churn-drift".into(),
                },
            ),
            ("/ui/live", Page::Live),
        ];
        for (route, page) in pages {
            let mut samples: Vec<Duration> = Vec::with_capacity(RENDERS);
            let mut bytes = 0;
            for _ in 0..RENDERS {
                let t = Instant::now();
                let r = ui.render(&page).await.expect("render");
                samples.push(t.elapsed());
                bytes = r.html.len();
            }
            samples.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "render {route:<37} median {:>6.2} ms  (min {:.2}, max {:.2}; {} KiB)   target < 50 ms",
                ms(samples[RENDERS / 2]),
                ms(samples[0]),
                ms(samples[RENDERS - 1]),
                bytes / 1024
            );
        }
    });
}
