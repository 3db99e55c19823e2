//! Debian's Chromium, headless, for the tests that look at a page as a browser
//! builds it (`report_browser.rs`, `docs_ui.rs`). Included with
//! `#[path = "common/chromium.rs"] mod chromium;` by the tests that need it.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a Chromium run may take before it is killed.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The first Chromium-like browser on `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| is_executable(p))
}

/// The browser, or `None` with a notice when there is none; under `CI=true` a
/// missing browser is a broken runner and fails the calling test.
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium is not on PATH, and CI=true requires {test} to run");
        }
        eprintln!("NOTICE: {test}: chromium not found on PATH; skipping");
    }
    found
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `file://` URL of an absolute path, escaping what a URL path may not hold.
pub fn file_url(p: &Path) -> String {
    let mut url = String::from("file://");
    for b in p.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                url.push(b as char)
            }
            _ => url.push_str(&format!("%{b:02X}")),
        }
    }
    url
}

/// Runs Chromium headless on `url` with `extra` flags and a fresh profile in
/// `work`, with no host but 127.0.0.1 resolvable, stdout into `stdout`;
/// returns what it wrote to stderr. Killed (with
/// the processes it started) after [`TIMEOUT`].
pub fn chromium(browser: &Path, work: &Path, extra: &[String], url: &str, stdout: &Path) -> String {
    use std::os::unix::process::CommandExt;
    let profile = tempfile::tempdir_in(work).expect("profile dir");
    let stderr_path = work.join("chromium-stderr.log");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // Any host but the loopback address fails to resolve: whatever a
            // page or the browser's own services ask for, nothing leaves the
            // machine.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        // Files, not pipes: a helper process that outlives the browser would
        // hold a pipe open and block the reader.
        .stdout(File::create(stdout).expect("stdout file"))
        .stderr(File::create(&stderr_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            // The whole group this test started: the browser and its helpers.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ran longer than {TIMEOUT:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium failed ({status}); stderr:\n{stderr}"
    );
    stderr
}
