//! A `reconcile serve` of a test's project on a free loopback port: started,
//! its address read from the first line it prints, killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout};

use super::Project;

/// A running `reconcile serve` and its address.
pub struct Server {
    /// The process (tests kill it or send it signals).
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The rest of the server's stdout (kept open: closing it would be a broken pipe).
    pub stdout: BufReader<ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `127.0.0.1:PORT`, for raw sockets.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "serve exited with {status}");
    }

    /// Files the server process holds open (Linux).
    pub fn open_files(&self) -> Option<usize> {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .ok()
            .map(|d| d.count())
    }
}

/// Starts `reconcile serve --host 127.0.0.1 --port 0 <extra…>` on the project.
pub fn serve(p: &Project, extra: &[&str]) -> Server {
    let mut args = vec!["serve", "--host", "127.0.0.1", "--port", "0"];
    args.extend_from_slice(extra);
    let mut child = p.spawn(&args);
    let stdout = child.stdout.take().expect("stdout");
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no loopback address in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    Server {
        child,
        base,
        stdout,
    }
}
