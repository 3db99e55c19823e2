//! Progress on the terminal: a spinner per running resource on a TTY, plain
//! lines otherwise (CI logs, pipes), never both.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::spec::ResourceId;

/// Where apply reports what it is doing.
pub struct Progress {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<ResourceId, ProgressBar>>,
    quiet: bool,
    /// Prefix plain lines with the time (long-running commands' logs).
    timestamps: bool,
    /// The live status line of a long-running command, on a TTY.
    status: Mutex<Option<ProgressBar>>,
}

impl Progress {
    /// Spinners when stderr is a terminal; `quiet` prints nothing at all.
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && !quiet;
        Progress {
            multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: Mutex::new(HashMap::new()),
            quiet,
            timestamps: false,
            status: Mutex::new(None),
        }
    }

    /// As [`Progress::new`], for a process that runs until stopped: plain
    /// lines carry their time (one line per event in a log), and a TTY gets
    /// a status line kept below the spinners.
    pub fn long_running(quiet: bool) -> Self {
        Progress {
            timestamps: true,
            ..Progress::new(quiet)
        }
    }

    /// Whether spinners and the status line are drawn (stderr is a TTY).
    pub fn is_live(&self) -> bool {
        self.multi.is_some()
    }

    /// Replaces the status line (a TTY only; plain output has none).
    pub fn set_status(&self, text: &str) {
        let Some(multi) = &self.multi else { return };
        let Ok(mut status) = self.status.lock() else {
            return;
        };
        let bar = status.get_or_insert_with(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        bar.set_message(text.to_string());
    }

    /// Removes the status line.
    pub fn clear_status(&self) {
        if let Ok(mut status) = self.status.lock()
            && let Some(bar) = status.take()
        {
            bar.finish_and_clear();
        }
    }

    /// Shows that work on `id` started.
    pub fn start(&self, id: &ResourceId, message: &str) {
        let Some(multi) = &self.multi else { return };
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(id.clone(), bar);
        }
    }

    /// Removes the spinner of `id`.
    pub fn finish(&self, id: &ResourceId) {
        if let Ok(mut bars) = self.bars.lock()
            && let Some(bar) = bars.remove(id)
        {
            bar.finish_and_clear();
        }
    }

    /// Prints a line above the spinners.
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let text = &crate::spec::env::redact_secrets(text);
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None if self.timestamps => {
                let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
                for line in text.lines() {
                    eprintln!("{now} {line}");
                }
            }
            None => eprintln!("{text}"),
        }
    }
}
