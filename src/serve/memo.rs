//! Scores already computed for the rows and the model being served.
//!
//! A prediction is a pure function of the served model and the entity's
//! online rows, and both change only when a new version is promoted or a view
//! is materialized again. Between those events an endpoint is asked about the
//! same entities over and over (a user's every page view), and scoring one
//! walks ~3 900 nodes of a 300-tree forest, most of them cache misses
//! (docs/PERFORMANCE.md): the memo keeps each entity's probability for the
//! [`Generation`] it was computed in and answers the repeat from memory.
//!
//! A generation is one pair of (feature snapshot, model) as [`super::Serving`]
//! holds them; a request that read its rows from another pair gets another
//! generation, so a score is never kept past the rows it was computed from.
//! Only views held whole take part: a bounded view reads rows through from the
//! store, which can move ahead of the snapshot's record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use arc_swap::ArcSwapOption;

use super::{LoadedModel, ViewCache};

/// The feature snapshot a generation belongs to.
type Snapshot = HashMap<String, Arc<ViewCache>>;

/// Shards of the memo: requests on different cores rarely wait on one lock.
const SHARDS: usize = 16;

/// The probabilities of one (feature snapshot, model) pair, at most
/// `capacity` entities (the snapshot's entity count for the model's views).
pub struct Generation {
    // Weak, so that a replaced snapshot or model is freed as soon as no
    // request holds it; compared by address, which a weak reference keeps
    // from being reused while this generation exists.
    snapshot: Weak<Snapshot>,
    model: Weak<LoadedModel>,
    shard_capacity: usize,
    shards: [Mutex<HashMap<Box<str>, f64>>; SHARDS],
}

impl Generation {
    fn new(snapshot: &Arc<Snapshot>, model: &Arc<LoadedModel>, capacity: usize) -> Generation {
        Generation {
            snapshot: Arc::downgrade(snapshot),
            model: Arc::downgrade(model),
            shard_capacity: capacity.div_ceil(SHARDS).max(1),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    fn is_for(&self, snapshot: &Arc<Snapshot>, model: &Arc<LoadedModel>) -> bool {
        std::ptr::eq(self.snapshot.as_ptr(), Arc::as_ptr(snapshot))
            && std::ptr::eq(self.model.as_ptr(), Arc::as_ptr(model))
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<Box<str>, f64>> {
        // FNV-1a: cheap, and keys are ids, not an attacker's hash-flooding
        // surface (each shard's map keeps std's keyed hasher).
        let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        &self.shards[(h as usize) % SHARDS]
    }

    /// The probability computed for `key` in this generation.
    pub fn get(&self, key: &str) -> Option<f64> {
        let shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(key).copied()
    }

    /// Keeps `probability` for `key`, unless its shard is full (ids beyond
    /// the entities the snapshot holds are unknown ones, not worth keeping).
    pub fn put(&self, key: &str, probability: f64) {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() < self.shard_capacity {
            shard.insert(key.into(), probability);
        }
    }
}

/// The current [`Generation`], replaced whole when the snapshot or the model
/// a request reads differs from its own.
#[derive(Default)]
pub struct ScoreMemo {
    current: ArcSwapOption<Generation>,
}

impl ScoreMemo {
    /// The generation of `snapshot` and `model`: the current one, or a new
    /// one that replaces it. `None` when some view of the model is not held
    /// whole in `snapshot` (absent or bounded).
    pub fn generation(
        &self,
        snapshot: &Arc<Snapshot>,
        model: &Arc<LoadedModel>,
    ) -> Option<Arc<Generation>> {
        let mut capacity = 0usize;
        for view in &model.views {
            let cache = snapshot.get(view)?;
            if cache.is_bounded() {
                return None;
            }
            capacity = capacity.saturating_add(cache.len());
        }
        if let Some(g) = self
            .current
            .load_full()
            .filter(|g| g.is_for(snapshot, model))
        {
            return Some(g);
        }
        // Another pair: a swap happened (or a request that read before it
        // finishes after it, and the next request swaps back). Either way each
        // generation only ever holds scores of its own pair.
        let g = Arc::new(Generation::new(snapshot, model, capacity));
        self.current.store(Some(g.clone()));
        Some(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(capacity: usize) -> Generation {
        Generation {
            snapshot: Weak::new(),
            model: Weak::new(),
            shard_capacity: capacity.div_ceil(SHARDS).max(1),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// Entities held, over every shard.
    fn held(g: &Generation) -> usize {
        g.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    #[test]
    fn a_kept_score_is_returned_bit_for_bit() {
        let g = generation(100);
        assert_eq!(g.get("7590-VHVEG"), None);
        g.put("7590-VHVEG", 0.1 + 0.2);
        assert_eq!(
            g.get("7590-VHVEG").map(f64::to_bits),
            Some((0.1f64 + 0.2).to_bits())
        );
        assert_eq!(g.get("7590-VHVEH"), None);
    }

    #[test]
    fn no_shard_holds_more_than_its_share() {
        let g = generation(SHARDS * 3);
        for i in 0..10_000 {
            g.put(&format!("user-{i}"), f64::from(i));
        }
        assert!(held(&g) <= SHARDS * 3, "{} held", held(&g));
        assert!(held(&g) >= SHARDS, "{} held", held(&g));
        for shard in &g.shards {
            assert!(shard.lock().map_or(0, |s| s.len()) <= 3);
        }
    }

    #[test]
    fn a_compared_address_stays_reserved_while_the_generation_lives() {
        let snapshot: Arc<Snapshot> = Arc::new(HashMap::new());
        let other: Arc<Snapshot> = Arc::new(HashMap::new());
        let g = Generation {
            snapshot: Arc::downgrade(&snapshot),
            ..generation(1)
        };
        assert!(std::ptr::eq(g.snapshot.as_ptr(), Arc::as_ptr(&snapshot)));
        assert!(!std::ptr::eq(g.snapshot.as_ptr(), Arc::as_ptr(&other)));
        // Dropped, the snapshot's address stays reserved while the
        // generation's weak reference lives: a new one never takes it.
        let at = Arc::as_ptr(&snapshot);
        drop(snapshot);
        let fresh: Vec<Arc<Snapshot>> = (0..64).map(|_| Arc::new(HashMap::new())).collect();
        assert!(fresh.iter().all(|f| !std::ptr::eq(Arc::as_ptr(f), at)));
    }
}
