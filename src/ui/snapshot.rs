//! The plan the UI shows, cached: loading the specs, hashing their inputs,
//! observing the stores and diffing costs tens of milliseconds on the
//! example, more than a page may. A snapshot is reused while it is younger
//! than [`FRESH`] and no file under the spec folder changed (count, sizes and
//! modification times of every non-hidden entry), so at most one plan is
//! computed every few seconds whatever the traffic, and an edit shows at once.
//! One refresh runs at a time; concurrent pages wait for it and share it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::Mutex;

use super::UiError;
use crate::kinds::{DesiredState, Observed};
use crate::plan::{Plan, PlanOptions};
use crate::status::StatusRow;
use crate::workspace::{StoreOverrides, Stores, Workspace};

/// How long a snapshot is shown before the plan is computed again (sooner
/// when a file under the spec folder changes).
pub const FRESH: Duration = Duration::from_secs(3);

/// Most entries walked to stamp the spec folder: a folder holding more is
/// stamped by its first ones (and the snapshot still expires after [`FRESH`]).
const MAX_STAMPED: usize = 10_000;

/// One plan of the specs against the stores, and what status derives from it.
pub struct Snapshot {
    /// The loaded specs and their graph.
    pub ws: Workspace,
    /// The desired state (execution order).
    pub desired: DesiredState,
    /// What the stores held.
    pub observed: Observed,
    /// The pending plan.
    pub plan: Plan,
    /// The stores it was taken from (the same for the life of the process).
    pub stores: Stores,
    /// What `status` prints for each resource.
    pub rows: Vec<StatusRow>,
    /// When it was taken (ms since the epoch).
    pub taken_ms: i64,
    /// How long computing it took.
    pub took: Duration,
}

struct Cached {
    /// The snapshot, or why none could be taken: a failure is kept as long
    /// as a snapshot would be, so pages asked for while the specs are broken
    /// do not plan again each time.
    snapshot: Result<Arc<Snapshot>, Arc<UiError>>,
    at: Instant,
    stamp: u64,
}

/// The cached snapshot of one spec folder and the stores it reads.
pub struct Cache {
    dir: PathBuf,
    overrides: StoreOverrides,
    stores: std::sync::OnceLock<Stores>,
    current: ArcSwapOption<Cached>,
    refresh: Mutex<()>,
}

impl Cache {
    /// A cache of `dir`'s plan; `stores` when already open, else opened on
    /// first use with `overrides`.
    pub fn new(dir: PathBuf, overrides: StoreOverrides, stores: Option<Stores>) -> Cache {
        let cell = std::sync::OnceLock::new();
        if let Some(s) = stores {
            let _ = cell.set(s);
        }
        Cache {
            dir,
            overrides,
            stores: cell,
            current: ArcSwapOption::empty(),
            refresh: Mutex::new(()),
        }
    }

    /// The spec folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current snapshot, if younger than [`FRESH`] and taken with the
    /// folder stamped `stamp`.
    fn usable(&self, stamp: u64) -> Option<Result<Arc<Snapshot>, UiError>> {
        self.current
            .load_full()
            .filter(|c| c.at.elapsed() < FRESH && c.stamp == stamp)
            .map(|c| c.snapshot.clone().map_err(UiError::Again))
    }

    /// A snapshot younger than [`FRESH`] taken with the folder as it is now,
    /// or a new one.
    pub async fn get(&self) -> Result<Arc<Snapshot>, UiError> {
        if let Some(s) = self.usable(stamp(&self.dir)) {
            return s;
        }
        let _one_at_a_time = self.refresh.lock().await;
        // Another page may have refreshed it while this one waited.
        let before = stamp(&self.dir);
        if let Some(s) = self.usable(before) {
            return s;
        }
        let started = Instant::now();
        // The pipeline's futures are not `Send` for every lifetime (a rustc
        // limitation with borrows held across awaits), which a handler's
        // future must be: the plan runs on a blocking thread, driven by this
        // runtime's handle, over owned inputs.
        let (dir, overrides) = (self.dir.clone(), self.overrides.clone());
        let stores = self.stores.get().cloned();
        let handle = tokio::runtime::Handle::current();
        let taken = tokio::task::spawn_blocking(move || {
            handle.block_on(take(dir, overrides, stores, started))
        })
        .await
        .map_err(UiError::from)
        .and_then(|r| r);
        let snapshot = match taken {
            Ok(s) => {
                let _ = self.stores.set(s.stores.clone());
                Ok(Arc::new(s))
            }
            Err(e) => Err(Arc::new(e)),
        };
        self.current.store(Some(Arc::new(Cached {
            snapshot: snapshot.clone(),
            at: started,
            stamp: before,
        })));
        snapshot.map_err(UiError::Again)
    }
}

/// Loads the specs, opens the stores unless given, plans and derives the
/// status rows.
async fn take(
    dir: PathBuf,
    overrides: StoreOverrides,
    stores: Option<Stores>,
    started: Instant,
) -> Result<Snapshot, UiError> {
    let ws = Workspace::load_without_secrets(&dir)?;
    let stores = match stores {
        Some(s) => s,
        None => ws.open_stores(&overrides).await?,
    };
    let (desired, observed, plan) = ws.plan(&stores, &PlanOptions::default()).await?;
    let rows = crate::status::rows(&desired, &observed, &plan);
    Ok(Snapshot {
        ws,
        desired,
        observed,
        plan,
        stores,
        rows,
        taken_ms: crate::store::now_ms(),
        took: started.elapsed(),
    })
}

/// A fingerprint of the spec folder: every non-hidden entry's path, size and
/// modification time (hidden ones such as `.reconcile/`, where the state
/// store lives, do not count).
fn stamp(dir: &Path) -> u64 {
    let mut hasher = blake3::Hasher::new();
    let mut todo = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            seen += 1;
            if seen > MAX_STAMPED {
                return digest(&hasher);
            }
            let Ok(meta) = e.metadata() else { continue };
            hasher.update(e.path().as_os_str().as_encoded_bytes());
            hasher.update(&meta.len().to_le_bytes());
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            hasher.update(&modified.to_le_bytes());
            if meta.is_dir() {
                todo.push(e.path());
            }
        }
    }
    digest(&hasher)
}

fn digest(hasher: &blake3::Hasher) -> u64 {
    let bytes = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_follows_visible_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), "x").expect("write");
        let first = stamp(dir.path());
        assert_eq!(first, stamp(dir.path()), "stable");
        std::fs::create_dir(dir.path().join(".reconcile")).expect("mkdir");
        std::fs::write(dir.path().join(".reconcile/state.db"), "db").expect("write");
        assert_eq!(first, stamp(dir.path()), "hidden entries do not count");
        std::fs::write(dir.path().join("a.yaml"), "xy").expect("write");
        assert_ne!(first, stamp(dir.path()), "a changed size counts");
        let second = stamp(dir.path());
        std::fs::create_dir_all(dir.path().join("data/2024-03-31")).expect("mkdir");
        assert_ne!(second, stamp(dir.path()), "a new folder counts");
    }
}
