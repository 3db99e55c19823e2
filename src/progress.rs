//! Progress on the terminal: a spinner per running resource on a TTY, plain
//! lines otherwise (CI logs, pipes), never both.
//!
//! Work that can be counted — rows of a snapshot, entities of a view, trees of
//! a forest, bytes of an image pull — reports through [`Units`], which a kind
//! takes from its [`Reporter`] (`ctx.progress().units("rows", total)`). On a
//! TTY that turns the resource's spinner into a bar with counts and a rate; off
//! one it prints `Kind/name: done/total unit (…%, rate)` at most every
//! [`LINE_INTERVAL`], and nothing at all for work shorter than that. Updates are
//! atomic additions (no lock), so a counting loop reports once per batch, not
//! per row. Kinds see only [`Units`]: none of them knows indicatif.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{
    HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle,
};

use crate::spec::ResourceId;

/// The least time between two plain progress lines of one piece of work (and
/// before the first, so short work prints none).
pub const LINE_INTERVAL: Duration = Duration::from_secs(2);

/// Environment variable overriding [`LINE_INTERVAL`] (any duration: `500ms`,
/// `0ms`); when set, a bar on a TTY is also redrawn at once whenever that much
/// time passed since its last redraw. `0ms` reports every update, which is
/// what the tests use to see counts on small inputs.
pub const INTERVAL_ENV: &str = "RECONCILE_PROGRESS_INTERVAL";

/// Where plain lines go: stderr, with a timestamp for long-running commands.
type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// The time since some start; injected so throttling is testable.
type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// Where apply reports what it is doing.
pub struct Progress {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<ResourceId, ProgressBar>>,
    quiet: bool,
    /// Prefix plain lines with the time (long-running commands' logs).
    timestamps: bool,
    /// The live status line of a long-running command, on a TTY.
    status: Mutex<Option<ProgressBar>>,
    /// Least time between two plain progress lines.
    interval: Duration,
    /// Least time between two forced redraws of a bar ([`INTERVAL_ENV`] set);
    /// otherwise indicatif's own refresh rate applies.
    redraw: Option<Duration>,
}

impl Progress {
    /// Spinners when stderr is a terminal; `quiet` prints nothing at all.
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && !quiet;
        let from_env = interval_from_env();
        Progress {
            multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: Mutex::new(HashMap::new()),
            quiet,
            timestamps: false,
            status: Mutex::new(None),
            interval: from_env.unwrap_or(LINE_INTERVAL),
            redraw: from_env,
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

    /// Shows that work on `id` started; what the work counts goes through
    /// the returned reporter (the engine scopes the resource's apply with it,
    /// see [`scope`]).
    pub fn start(&self, id: &ResourceId, message: &str) -> Reporter {
        if self.quiet {
            return Reporter::default();
        }
        let Some(multi) = &self.multi else {
            return Reporter::lines(&id.to_string(), self.interval, self.sink());
        };
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(spinner_style());
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(id.clone(), bar.clone());
        }
        Reporter(Some(Arc::new(Target {
            label: id.to_string(),
            out: TargetOut::Bar {
                bar,
                redraw: self.redraw,
            },
        })))
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
            None => plain(self.timestamps, text),
        }
    }

    /// Plain lines as [`Progress::line`] prints them off a TTY.
    fn sink(&self) -> Sink {
        let timestamps = self.timestamps;
        Arc::new(move |text: &str| plain(timestamps, text))
    }
}

/// One line (or several) on stderr, with the time first when `timestamps`.
fn plain(timestamps: bool, text: &str) {
    if timestamps {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        for line in text.lines() {
            eprintln!("{now} {line}");
        }
    } else {
        eprintln!("{text}");
    }
}

/// [`INTERVAL_ENV`] as a duration; an unreadable value is warned about and
/// ignored (the default stays).
fn interval_from_env() -> Option<Duration> {
    let text = std::env::var(INTERVAL_ENV).ok()?;
    match crate::duration::parse(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(
                "{INTERVAL_ENV}: {e}; progress lines keep their default interval ({})",
                humantime::format_duration(LINE_INTERVAL)
            );
            None
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// The bar of a resource that counts `unit`, with a total or not.
fn bar_style(unit: Unit, total: bool) -> ProgressStyle {
    // Counts before the bar, so a narrow terminal truncates the bar, not them.
    let template = match (unit, total) {
        (Unit::Bytes, true) => "{spinner} {msg} {bytes}/{total_bytes} [{bar:24}] {rate} {elapsed}",
        (Unit::Bytes, false) => "{spinner} {msg} {bytes} {rate} {elapsed}",
        (Unit::Count(_), true) => "{spinner} {msg} {pos}/{len} {unit} [{bar:24}] {rate} {elapsed}",
        (Unit::Count(_), false) => "{spinner} {msg} {pos} {unit} {rate} {elapsed}",
    };
    let name = match unit {
        Unit::Count(name) => name,
        Unit::Bytes => "",
    };
    ProgressStyle::with_template(template)
        .map(|s| {
            s.progress_chars("=> ")
                .with_key("unit", move |_: &ProgressState, w: &mut dyn fmt::Write| {
                    let _ = w.write_str(name);
                })
                .with_key(
                    "rate",
                    move |state: &ProgressState, w: &mut dyn fmt::Write| {
                        let _ = w.write_str(&rate(unit, state.per_sec()));
                    },
                )
        })
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// A rate as bars and lines show it: `8192 rows/s`, `1.5 trees/s`, `4.20 MiB/s`.
fn rate(unit: Unit, per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec < 0.0 {
        return String::new();
    }
    match unit {
        Unit::Bytes => format!("{}/s", HumanBytes(per_sec as u64)),
        Unit::Count(name) if per_sec < 10.0 => format!("{per_sec:.1} {name}/s"),
        Unit::Count(name) => format!("{per_sec:.0} {name}/s"),
    }
}

/// A bar's length; 0 is no length (the total is not known yet).
fn set_length(bar: &ProgressBar, total: u64) {
    if total > 0 {
        bar.set_length(total);
    } else {
        bar.unset_length();
    }
}

tokio::task_local! {
    /// The reporter of the resource whose apply this task runs.
    static CURRENT: Reporter;
}

/// Runs `work` (one resource's apply) with `reporter` as the [`current`] one:
/// the context every apply gets is shared by all resources, the task is not.
pub fn scope<F: Future>(reporter: Reporter, work: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(reporter, work)
}

/// The reporter of the resource being applied by this task; one that reports
/// nowhere outside [`scope`] (a kind applied directly by a test or a bench).
/// Blocking threads do not inherit it: take [`Units`] before spawning them.
pub fn current() -> Reporter {
    CURRENT.try_with(Clone::clone).unwrap_or_default()
}

/// What one resource's apply reports its counted work through. Cheap to
/// clone; the default reports nowhere.
#[derive(Clone, Default)]
pub struct Reporter(Option<Arc<Target>>);

struct Target {
    /// `Kind/name`: the start of every plain line.
    label: String,
    out: TargetOut,
}

enum TargetOut {
    /// The resource's spinner on a TTY.
    Bar {
        bar: ProgressBar,
        redraw: Option<Duration>,
    },
    /// Plain lines, at most one per `interval`.
    Lines { interval: Duration, sink: Sink },
}

impl Reporter {
    /// A reporter printing plain lines labelled `label` into `sink`.
    fn lines(label: &str, interval: Duration, sink: Sink) -> Reporter {
        Reporter(Some(Arc::new(Target {
            label: label.to_string(),
            out: TargetOut::Lines { interval, sink },
        })))
    }

    /// Starts counting `unit` (a plural noun: `rows`, `entities`, `trees`) up
    /// to `total` (0 while unknown; see [`Units::add_total`]).
    pub fn units(&self, unit: &'static str, total: u64) -> Units {
        self.counter(Unit::Count(unit), total)
    }

    /// Starts counting bytes up to `total` (0 while unknown), shown in KiB/MiB/GiB.
    pub fn bytes(&self, total: u64) -> Units {
        self.counter(Unit::Bytes, total)
    }

    fn counter(&self, unit: Unit, total: u64) -> Units {
        let started = Instant::now();
        self.counter_on(unit, total, Arc::new(move || started.elapsed()))
    }

    /// As [`Reporter::counter`], timed by `clock` (the time since the start).
    fn counter_on(&self, unit: Unit, total: u64, clock: Clock) -> Units {
        let Some(target) = &self.0 else {
            return Units::default();
        };
        let out = match &target.out {
            TargetOut::Bar { bar, redraw } => {
                bar.set_style(bar_style(unit, total > 0));
                set_length(bar, total);
                bar.set_position(0);
                bar.reset_eta();
                CounterOut::Bar {
                    bar: bar.clone(),
                    redraw: redraw.map(Throttle::new),
                    counted: Mutex::new(total > 0),
                }
            }
            TargetOut::Lines { interval, sink } => CounterOut::Lines {
                sink: sink.clone(),
                throttle: Throttle::new(*interval),
            },
        };
        Units(Some(Arc::new(Counter {
            label: target.label.clone(),
            unit,
            done: AtomicU64::new(0),
            total: AtomicU64::new(total),
            clock,
            out,
        })))
    }
}

/// What is counted: things with a name, or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Count(&'static str),
    Bytes,
}

/// A count of work done out of a total, shown as the resource's bar or as
/// throttled plain lines. Cheap to clone (one `Arc`) and to update (atomic
/// additions); the default counts nothing.
#[derive(Clone, Default)]
pub struct Units(Option<Arc<Counter>>);

struct Counter {
    label: String,
    unit: Unit,
    done: AtomicU64,
    total: AtomicU64,
    clock: Clock,
    out: CounterOut,
}

enum CounterOut {
    Bar {
        bar: ProgressBar,
        /// Forced redraws ([`INTERVAL_ENV`] set).
        redraw: Option<Throttle>,
        /// Whether the bar shows a total; serialises total changes.
        counted: Mutex<bool>,
    },
    Lines {
        sink: Sink,
        throttle: Throttle,
    },
    /// Counted, not shown ([`Units::counting`]).
    Silent,
}

impl Units {
    /// Units that count but show nothing: what a caller reads back with
    /// [`Units::done`] and [`Units::total`] (tests of counting code).
    pub fn counting() -> Units {
        let started = Instant::now();
        Units(Some(Arc::new(Counter {
            label: String::new(),
            unit: Unit::Count(""),
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            clock: Arc::new(move || started.elapsed()),
            out: CounterOut::Silent,
        })))
    }

    /// Adds `n` units done.
    pub fn inc(&self, n: u64) {
        let Some(c) = &self.0 else { return };
        c.done.fetch_add(n, Ordering::Relaxed);
        if let CounterOut::Bar { bar, .. } = &c.out {
            bar.inc(n);
        }
        c.updated();
    }

    /// Sets how many units are done.
    pub fn set(&self, n: u64) {
        let Some(c) = &self.0 else { return };
        c.done.store(n, Ordering::Relaxed);
        if let CounterOut::Bar { bar, .. } = &c.out {
            bar.set_position(n);
        }
        c.updated();
    }

    /// Sets the total (0: unknown).
    pub fn set_total(&self, total: u64) {
        let Some(c) = &self.0 else { return };
        c.change_total(|_| total);
    }

    /// Moves the total by `delta`: a total found piece by piece (each file
    /// adds its lines; a layer of a pull its size), or an estimate corrected.
    pub fn add_total(&self, delta: i64) {
        let Some(c) = &self.0 else { return };
        c.change_total(|t| t.saturating_add_signed(delta));
    }

    /// Units done so far.
    pub fn done(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |c| c.done.load(Ordering::Relaxed))
    }

    /// The total as known now (0: unknown).
    pub fn total(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |c| c.total.load(Ordering::Relaxed))
    }
}

impl Counter {
    fn change_total(&self, f: impl Fn(u64) -> u64) {
        match &self.out {
            CounterOut::Bar { bar, counted, .. } => {
                // Rare (per file, per layer): a lock keeps the bar's length
                // equal to the last total even when threads race.
                let Ok(mut counted) = counted.lock() else {
                    return;
                };
                let total = f(self.total.load(Ordering::Relaxed));
                self.total.store(total, Ordering::Relaxed);
                if *counted != (total > 0) {
                    *counted = total > 0;
                    bar.set_style(bar_style(self.unit, total > 0));
                }
                set_length(bar, total);
            }
            CounterOut::Lines { .. } | CounterOut::Silent => {
                let _ = self
                    .total
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| Some(f(t)));
            }
        }
        self.updated();
    }

    /// Reports the new figures if the throttle allows.
    fn updated(&self) {
        match &self.out {
            CounterOut::Bar {
                bar,
                redraw: Some(throttle),
                ..
            } => {
                if throttle.due((self.clock)()) {
                    bar.force_draw();
                }
            }
            CounterOut::Bar { redraw: None, .. } | CounterOut::Silent => {}
            CounterOut::Lines { sink, throttle } => {
                let elapsed = (self.clock)();
                if throttle.due(elapsed) {
                    sink(&format_line(
                        &self.label,
                        self.unit,
                        self.done.load(Ordering::Relaxed),
                        self.total.load(Ordering::Relaxed),
                        elapsed,
                    ));
                }
            }
        }
    }
}

/// At most one report per interval, the first one interval after the start.
/// Lock-free: the thread that moves `last` past the interval reports.
struct Throttle {
    interval_ns: u64,
    /// When the last report was (ns since the start; 0 before any).
    last_ns: AtomicU64,
}

impl Throttle {
    fn new(interval: Duration) -> Throttle {
        Throttle {
            interval_ns: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            last_ns: AtomicU64::new(0),
        }
    }

    /// Whether a report is due at `elapsed` (and claims it).
    fn due(&self, elapsed: Duration) -> bool {
        if self.interval_ns == 0 {
            // Every update, the last one included, whichever thread makes it.
            return true;
        }
        let now = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let last = self.last_ns.load(Ordering::Relaxed);
        if now.saturating_sub(last) < self.interval_ns {
            return false;
        }
        self.last_ns
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// A plain progress line: `Table/users: 4096/14086 rows (29%, 8192 rows/s)`;
/// no percentage while the total is unknown, no rate in the first 100 ms.
fn format_line(label: &str, unit: Unit, done: u64, total: u64, elapsed: Duration) -> String {
    let amount = |n: u64| match unit {
        Unit::Bytes => HumanBytes(n).to_string(),
        Unit::Count(_) => n.to_string(),
    };
    let mut text = format!("{label}: {}", amount(done));
    if total > 0 {
        text.push('/');
        text.push_str(&amount(total));
    }
    if let Unit::Count(name) = unit {
        text.push(' ');
        text.push_str(name);
    }
    let mut notes = Vec::new();
    if let Some(percent) = done.saturating_mul(100).checked_div(total) {
        notes.push(format!("{}%", percent.min(100)));
    }
    if elapsed >= Duration::from_millis(100) {
        notes.push(rate(unit, done as f64 / elapsed.as_secs_f64()));
    }
    if !notes.is_empty() {
        text.push_str(&format!(" ({})", notes.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reporter printing into a vector, on a clock the test moves.
    fn recorded(interval: Duration) -> (Reporter, Arc<Mutex<Vec<String>>>, Arc<AtomicU64>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let into = lines.clone();
        let sink: Sink = Arc::new(move |t: &str| into.lock().unwrap().push(t.to_string()));
        (
            Reporter::lines("Table/users", interval, sink),
            lines,
            Arc::new(AtomicU64::new(0)),
        )
    }

    /// Units of `reporter` whose clock reads `ms` milliseconds.
    fn on_clock(reporter: &Reporter, total: u64, ms: &Arc<AtomicU64>) -> Units {
        let ms = ms.clone();
        let clock: Clock = Arc::new(move || Duration::from_millis(ms.load(Ordering::Relaxed)));
        reporter.counter_on(Unit::Count("rows"), total, clock)
    }

    #[test]
    fn lines_are_throttled_and_short_work_prints_none() {
        let (reporter, lines, ms) = recorded(Duration::from_secs(2));
        let units = on_clock(&reporter, 14_086, &ms);
        for t in [0, 500, 1_999] {
            ms.store(t, Ordering::Relaxed);
            units.inc(4_096);
        }
        assert!(lines.lock().unwrap().is_empty(), "nothing in the first 2 s");
        ms.store(2_000, Ordering::Relaxed);
        units.inc(4_096);
        ms.store(3_000, Ordering::Relaxed);
        units.inc(1_000);
        ms.store(4_100, Ordering::Relaxed);
        units.set(14_086);
        ms.store(4_200, Ordering::Relaxed);
        units.add_total(-2);
        assert_eq!((units.done(), units.total()), (14_086, 14_084));
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "Table/users: 16384/14086 rows (100%, 8192 rows/s)",
                "Table/users: 14086/14086 rows (100%, 3436 rows/s)",
            ]
        );
    }

    #[test]
    fn a_zero_interval_reports_every_update() {
        let (reporter, lines, _) = recorded(Duration::ZERO);
        let units = reporter.units("trees", 3);
        for _ in 0..3 {
            units.inc(1);
        }
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[2].starts_with("Table/users: 3/3 trees (100%"),
            "{lines:?}"
        );
    }

    #[test]
    fn lines_format_counts_bytes_and_unknown_totals() {
        let s = Duration::from_secs;
        assert_eq!(
            format_line("Table/users", Unit::Count("rows"), 4_096, 14_086, s(2)),
            "Table/users: 4096/14086 rows (29%, 2048 rows/s)"
        );
        assert_eq!(
            format_line("TrainingRun/rf", Unit::Count("trees"), 3, 300, s(2)),
            "TrainingRun/rf: 3/300 trees (1%, 1.5 trees/s)"
        );
        assert_eq!(
            format_line("Service/pg", Unit::Bytes, 3 << 20, 12 << 20, s(3)),
            "Service/pg: 3.00 MiB/12.00 MiB (25%, 1.00 MiB/s)"
        );
        assert_eq!(
            format_line("Service/pg", Unit::Bytes, 1 << 10, 0, s(2)),
            "Service/pg: 1.00 KiB (512 B/s)"
        );
        assert_eq!(
            format_line(
                "FeatureView/v",
                Unit::Count("entities"),
                0,
                7_043,
                Duration::ZERO
            ),
            "FeatureView/v: 0/7043 entities (0%)"
        );
    }

    #[test]
    fn outside_an_apply_nothing_is_reported() {
        let units = current().units("rows", 10);
        units.inc(5);
        assert_eq!((units.done(), units.total()), (0, 0));
        let units = Reporter::default().bytes(0);
        units.set_total(7);
        assert_eq!(units.total(), 0);
    }

    #[tokio::test]
    async fn the_scoped_reporter_is_current() {
        let (reporter, lines, _) = recorded(Duration::ZERO);
        scope(reporter, async {
            current().units("rows", 2).inc(2);
        })
        .await;
        assert_eq!(lines.lock().unwrap().len(), 1);
    }

    #[test]
    fn racing_threads_count_every_unit_and_report_once_per_interval() {
        let (reporter, lines, _) = recorded(Duration::from_secs(3_600));
        let units = reporter.units("trees", 8_000);
        std::thread::scope(|s| {
            for _ in 0..8 {
                let units = units.clone();
                s.spawn(move || (0..1_000).for_each(|_| units.inc(1)));
            }
        });
        assert_eq!(units.done(), 8_000);
        assert!(lines.lock().unwrap().is_empty());
    }
}
