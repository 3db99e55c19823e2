//! `cargo bench --bench watch_bench`: watch mode as a whole process (release
//! binary) on a copy of the example, SQLite store.
//!
//! * save → applied, for a spec edit (a Table's `rowCount` bound: the table
//!   is revalidated) and for a new snapshot file (a new month of `labels`):
//!   the time from the write to the `applied:` line, and that minus the apply's
//!   own duration (printed in the line) — what watching adds (target < 300 ms);
//! * idle CPU of `watch` over 60 s (target < 1 %) and its resident memory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RUNS: usize = 7;

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') || skip.iter().any(|s| name == **s) {
            continue;
        }
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(&name), skip);
        } else {
            std::fs::copy(e.path(), to.join(&name)).expect("copy");
        }
    }
}

struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Watch {
    fn start(specs: &Path) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reconcile"))
            .args(["watch", "--listen", "off", "--resync", "off"])
            .arg(specs)
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn watch");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push((Instant::now(), l));
            }
        });
        Watch { child, lines }
    }

    /// The first line after `from` containing `needle`: (index, when, text).
    fn wait(&self, from: usize, needle: &str) -> (usize, Instant, String) {
        let t0 = Instant::now();
        loop {
            {
                let lines = self.lines.lock().expect("lines");
                if let Some((i, (at, l))) = lines
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, (_, l))| l.contains(needle))
                {
                    return (i, *at, l.clone());
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "no `{needle}`");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn count(&self) -> usize {
        self.lines.lock().expect("lines").len()
    }

    /// utime + stime of the process, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("stat");
        let after = &stat[stat.rfind(')').expect(")") + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 =
            f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
        ticks / 100.0
    }

    fn rss_mb(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The apply's own milliseconds, from `applied: … (N ms)`.
fn apply_ms(line: &str) -> f64 {
    line.rsplit('(')
        .next()
        .and_then(|s| s.trim_end_matches(')').trim_end_matches(" ms").parse().ok())
        .unwrap_or(0.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    copy_dir(&root.join("specs"), &specs, &["monitoring.yaml"]);
    let w = Watch::start(&specs);
    w.wait(0, "applied:");
    println!("watch_bench (release binary, SQLite, example without its monitor, {RUNS} runs each)");

    // A spec edit: the users table's rowCount bound, a new value each run.
    let table = specs.join("tables/users.yaml");
    let original = std::fs::read_to_string(&table).expect("users.yaml");
    let (mut total, mut beyond) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let from = w.count();
        let text = original.replace("max: 100000", &format!("max: {}", 100_001 + i));
        let t0 = Instant::now();
        std::fs::write(&table, text).expect("edit");
        let (_, at, line) = w.wait(from, "applied:");
        let ms = at.duration_since(t0).as_secs_f64() * 1000.0;
        total.push(ms);
        beyond.push(ms - apply_ms(&line));
    }
    println!(
        "  spec edit (Table expectation) → applied: median {:.0} ms, of which watching {:.0} ms",
        median(total),
        median(beyond)
    );

    // A new snapshot file: a new month of the labels table (a copy of February).
    let feb = specs.join("data/2024-02-29");
    let (mut total, mut beyond) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let month = specs.join(format!("data/2024-03-{:02}", 10 + i));
        std::fs::create_dir_all(&month).expect("mkdir");
        let from = w.count();
        let t0 = Instant::now();
        std::fs::copy(feb.join("labels.csv"), month.join("labels.csv")).expect("copy");
        let (_, at, line) = w.wait(from, "applied:");
        let ms = at.duration_since(t0).as_secs_f64() * 1000.0;
        total.push(ms);
        beyond.push(ms - apply_ms(&line));
    }
    println!(
        "  new snapshot file → applied: median {:.0} ms, of which watching {:.0} ms",
        median(total),
        median(beyond)
    );

    std::thread::sleep(Duration::from_secs(2));
    let (cpu0, t0) = (w.cpu_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(60));
    let cpu = (w.cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    println!(
        "  idle over 60 s: CPU {cpu:.2} % of one core, RSS {:.1} MB",
        w.rss_mb()
    );
}
