//! `reconcile serve`: the embedded runtime of `Endpoint`s (axum). Each endpoint
//! serves the Production version of its model with its online features, and
//! follows both as they change, without a restart:
//!
//! - a watcher polls the registry (one indexed query) and the online store's view
//!   records every [`POLL`]; a new Production version is loaded, its views cached,
//!   then swapped in atomically (`ArcSwap`): requests in flight finish on the
//!   version they started with, the next ones see the new one — no failed request;
//! - features are served from an in-memory copy of the online store, reloaded per
//!   view when the view's record (watermark, source hash) changes; a request never
//!   waits on a database, which is what keeps p99 in microseconds;
//! - with a bound (`cache: {maxEntities: N}` on the Endpoint), a view holding more
//!   entities than N is not loaded: its rows are read through from the online
//!   store (one keyed read per request over every view it misses) into an LRU of
//!   N entities, emptied whenever the view's record changes, so a row read
//!   through is never older than the materialization the server last noticed;
//! - every answered prediction is queued with a non-blocking `try_send` for the
//!   prediction log ([`log`]), which a writer task batches into the offline
//!   store; a full queue drops (and counts) rather than waits;
//! - the same watcher reads the monitors' newest evaluations (one query, at most
//!   every [`DRIFT_POLL`]) into the `reconcile_monitor_*` drift gauges.
//!
//! - when the registry has no Production version any more (archived by hand),
//!   the served version is dropped: `/ready` and `/predict` answer 503 until one
//!   is promoted — serving what the registry no longer calls Production would be
//!   serving a model nobody chose.
//!
//! Requests are bounded in size ([`BODY_LIMIT`]) and time ([`REQUEST_TIMEOUT`]);
//! connections in count and idle time ([`http::Limits`]);
//! SIGTERM/SIGINT stop accepting and let in-flight requests finish.

pub mod docs;
pub mod http;
pub mod log;
pub mod memo;
pub mod metrics;
mod routes;
pub mod v2;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;
use thiserror::Error;

use crate::kinds::endpoint::{Endpoint, EndpointSpec};
use crate::kinds::training_run::TrainingRun;
use crate::ml::encode::Value as FeatureValue;
use crate::ml::train::Artifact;
use crate::spec::SpecSet;
use crate::store::StoreError;
use crate::store::monitors::MonitorStore;
use crate::store::online::{OnlineStore, OnlineView};
use crate::store::predictions::PredictionLog;
use crate::store::registry::{Registry, VersionInfo};

/// How often the watcher looks for a new Production version and new features.
pub const POLL: Duration = Duration::from_millis(200);
/// How often the watcher reads the monitors' newest evaluations for the drift gauges.
pub const DRIFT_POLL: Duration = Duration::from_secs(2);
/// Largest request body accepted.
pub const BODY_LIMIT: usize = 256 * 1024;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why serving could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The specs name no endpoint (or not the one asked for).
    #[error("{0}")]
    NoEndpoint(String),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// A model version loaded for serving.
pub struct LoadedModel {
    /// Registry record.
    pub info: VersionInfo,
    /// Encoder and estimator.
    pub artifact: Artifact,
    /// `(view, feature)` of each encoder input, in order.
    pub inputs: Vec<(String, String)>,
    /// The views its features come from.
    pub views: Vec<String>,
    /// Where each input is found: (index into `views`, index into that view's features).
    slots: Vec<(usize, usize)>,
    /// `view.feature` of each input, as responses name them.
    names: Vec<String>,
    /// Each name as a JSON object key with its colon (`"view.feature":`),
    /// escaped once here rather than per response.
    name_keys: Vec<String>,
    /// Input indices in the order of their names (responses list features so).
    by_name: Vec<usize>,
    /// When it became Production (ms since the epoch), from the promotion history.
    pub promoted_ms: Option<i64>,
    /// The model name, shared by every logged prediction of this version.
    log_model: Arc<str>,
}

impl LoadedModel {
    /// The features of `view` this model uses, in order.
    fn view_features(&self, view: &str) -> Vec<String> {
        self.inputs
            .iter()
            .filter(|(v, _)| v == view)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

impl LoadedModel {
    fn load(info: VersionInfo, bytes: &[u8]) -> Result<LoadedModel, String> {
        let artifact = Artifact::from_bytes(bytes).map_err(|e| e.to_string())?;
        let inputs: Vec<(String, String)> = artifact
            .encoder
            .inputs
            .iter()
            .map(|f| match f.name.split_once('.') {
                Some((v, n)) => (v.to_string(), n.to_string()),
                None => (String::new(), f.name.clone()),
            })
            .collect();
        let mut views: Vec<String> = inputs.iter().map(|(v, _)| v.clone()).collect();
        views.sort();
        views.dedup();
        let slots = inputs
            .iter()
            .map(|(v, f)| {
                let vi = views.iter().position(|x| x == v).unwrap_or(0);
                let fi = inputs
                    .iter()
                    .filter(|(x, _)| x == v)
                    .position(|(_, y)| y == f)
                    .unwrap_or(0);
                (vi, fi)
            })
            .collect();
        let names: Vec<String> = inputs.iter().map(|(v, f)| format!("{v}.{f}")).collect();
        let name_keys = names
            .iter()
            .map(|n| format!("{}:", Value::from(n.as_str())))
            .collect();
        let mut by_name: Vec<usize> = (0..names.len()).collect();
        by_name.sort_by(|&a, &b| names[a].cmp(&names[b]));
        let log_model = Arc::from(info.model.as_str());
        Ok(LoadedModel {
            log_model,
            info,
            artifact,
            inputs,
            views,
            slots,
            names,
            name_keys,
            by_name,
            promoted_ms: None,
        })
    }
}

/// One entity's values in one view: those the served model uses, in the
/// view's feature order (no per-row JSON object: a fraction of the memory).
pub type Row = Arc<[Value]>;

/// The values of `features` out of one stored JSON object.
fn row_of(features: &[String], mut v: Value) -> Row {
    features
        .iter()
        .map(|f| v.get_mut(f).map(Value::take).unwrap_or(Value::Null))
        .collect()
}

/// Where a view's rows are held.
enum Rows {
    /// Every entity of the view: no bound, or the view holds no more entities
    /// than the bound. A request never waits on a database.
    Full(HashMap<Box<str>, Row>),
    /// At most the bound, least recently used first out; a miss is read
    /// through from the online store (`None`: the store has no row for the
    /// key, remembered as well so an unknown id does not read again).
    Bounded(Mutex<lru::LruCache<Box<str>, Option<Row>>>),
}

/// One view's online rows in memory, with the record they were read at. A new
/// record (another materialization) replaces the whole `ViewCache`, so a
/// bounded one never holds rows older than the record it is stamped with.
pub struct ViewCache {
    meta: OnlineView,
    features: Vec<String>,
    rows: Rows,
    /// Entities held, as `/metrics` shows it.
    held: Gauge,
}

/// What the cache knows of one key.
enum Cached {
    /// The row, or the knowledge that the store has none.
    Known(Option<Row>),
    /// Not held: read it through.
    Miss,
}

impl ViewCache {
    fn full(
        meta: OnlineView,
        features: Vec<String>,
        rows: HashMap<String, Value>,
        held: Gauge,
    ) -> ViewCache {
        let rows: HashMap<Box<str>, Row> = rows
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), row_of(&features, v)))
            .collect();
        held.set(rows.len() as i64);
        ViewCache {
            meta,
            features,
            rows: Rows::Full(rows),
            held,
        }
    }

    fn bounded(
        meta: OnlineView,
        features: Vec<String>,
        bound: NonZeroUsize,
        held: Gauge,
    ) -> ViewCache {
        held.set(0);
        ViewCache {
            meta,
            features,
            rows: Rows::Bounded(Mutex::new(lru::LruCache::new(bound))),
            held,
        }
    }

    fn get(&self, key: &str) -> Cached {
        match &self.rows {
            Rows::Full(rows) => Cached::Known(rows.get(key).cloned()),
            Rows::Bounded(lru) => match lock(lru).get(key) {
                Some(row) => Cached::Known(row.clone()),
                None => Cached::Miss,
            },
        }
    }

    /// Remembers what the store answered for `key` (bounded caches only).
    fn insert(&self, key: &str, row: Option<Row>) {
        if let Rows::Bounded(lru) = &self.rows {
            let mut lru = lock(lru);
            lru.put(key.into(), row);
            self.held.set(lru.len() as i64);
        }
    }

    /// Whether rows are read through (the view holds more than the bound).
    fn is_bounded(&self) -> bool {
        matches!(self.rows, Rows::Bounded(_))
    }

    /// Entities held in memory.
    fn len(&self) -> usize {
        match &self.rows {
            Rows::Full(rows) => rows.len(),
            Rows::Bounded(lru) => lock(lru).len(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One entity's rows for a model: one per view of `LoadedModel::views`, `None`
/// where that view holds nothing for it.
pub type EntityRows = Box<[Option<Row>]>;

/// The feature values a prediction used, `view.feature` → value, serialized
/// straight from the cached rows (nothing copied per request).
#[derive(Clone)]
pub struct FeatureValues {
    model: Arc<LoadedModel>,
    rows: EntityRows,
}

impl FeatureValues {
    /// The model's inputs the online store holds for this entity, in name
    /// order: the input's index and its value.
    fn present_inputs(&self) -> impl Iterator<Item = (usize, &Value)> {
        let m = &self.model;
        m.by_name.iter().filter_map(|&i| {
            let (vi, fi) = m.slots[i];
            let row = self.rows[vi].as_ref()?;
            Some((i, row.get(fi).unwrap_or(&Value::Null)))
        })
    }

    fn present(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.present_inputs()
            .map(|(i, v)| (&self.model.names[i], v))
    }

    /// Appends the values as a JSON object, the bytes `serde_json` writes
    /// for them, with the keys escaped once per model (the `/predict` hot path).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (n, (i, value)) in self.present_inputs().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(self.model.name_keys[i].as_bytes());
            write_value(out, value);
        }
        out.push(b'}');
    }

    /// True when the online store holds none of the features.
    pub fn is_empty(&self) -> bool {
        self.rows.iter().all(Option::is_none)
    }

    /// The values as a JSON object.
    pub fn to_map(&self) -> serde_json::Map<String, Value> {
        self.present()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Appends `value` as JSON; writing into a `Vec` cannot fail.
pub(crate) fn write_value<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

impl std::fmt::Debug for FeatureValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.present()).finish()
    }
}

impl serde::Serialize for FeatureValues {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.present())
    }
}

/// Everything a request handler reads; shared by the handlers and the watcher.
pub struct Serving {
    /// The endpoint's name.
    pub name: String,
    /// The model it serves.
    pub model_name: String,
    /// The entity's join key (`user_id`).
    pub key_name: String,
    /// Most ids per batch request.
    pub max_batch: usize,
    /// The version being served (none until a Production version exists).
    pub model: ArcSwapOption<LoadedModel>,
    /// Online feature values per view.
    pub features: ArcSwap<HashMap<String, Arc<ViewCache>>>,
    /// Most entities a view keeps in memory (`cache.maxEntities`; none: all).
    pub cache_bound: Option<NonZeroUsize>,
    /// Prometheus metrics.
    pub metrics: metrics::Metrics,
    /// When the online store last answered (ms since the epoch; 0 = never).
    online_ok_ms: AtomicI64,
    registry: Registry,
    online: OnlineStore,
    /// Where answered predictions are queued (none when `logPredictions: false`).
    log: Option<log::PredictionSink>,
    /// Probabilities already computed for the snapshot and model served.
    memo: memo::ScoreMemo,
    monitors: Option<MonitorStore>,
}

/// A prediction for one entity.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Prediction {
    /// 1 when the positive class is predicted (probability ≥ 0.5).
    pub prediction: u8,
    /// P(class 1).
    pub probability: f64,
    /// Features the online store does not hold for this entity (encoded as nulls).
    pub missing_features: Vec<String>,
    /// Feature values used, `view.feature` → value.
    #[schema(value_type = Object)]
    pub features: FeatureValues,
}

/// Why a prediction could not be made.
#[derive(Debug, Clone, PartialEq)]
pub enum PredictError {
    /// No Production version is loaded yet.
    NoModel,
    /// The online store knows nothing of this entity.
    Unknown {
        /// Every feature the model needs.
        missing: Vec<String>,
    },
    /// A stored value does not fit the model's declared type.
    Encode(String),
    /// The online store did not answer a read-through.
    Store(String),
}

fn to_feature_value(v: &Value) -> FeatureValue<'_> {
    match v {
        Value::Bool(b) => FeatureValue::Bool(*b),
        Value::Number(n) => n.as_f64().map_or(FeatureValue::Null, FeatureValue::Number),
        Value::String(s) => FeatureValue::Text(s),
        _ => FeatureValue::Null,
    }
}

/// The names of the inputs whose view holds no row for the entity.
fn missing(model: &LoadedModel, rows: &[Option<Row>]) -> Vec<String> {
    if rows.iter().all(Option::is_some) {
        return Vec::new();
    }
    model
        .names
        .iter()
        .zip(&model.slots)
        .filter(|(_, (vi, _))| rows[*vi].is_none())
        .map(|(n, _)| n.clone())
        .collect()
}

/// Encoded rows up to this width are built on the stack.
const STACK_ROW: usize = 128;

/// The served model's probability for one entity's rows.
fn score(model: &LoadedModel, rows: &[Option<Row>]) -> Result<f64, PredictError> {
    let width = model.artifact.encoder.width();
    let mut stack = [0.0f64; STACK_ROW];
    let mut heap = Vec::new();
    let row: &mut [f64] = if width <= STACK_ROW {
        &mut stack[..width]
    } else {
        heap.resize(width, 0.0);
        &mut heap
    };
    let mut at = 0;
    for (f, &(vi, fi)) in model.artifact.encoder.inputs.iter().zip(&model.slots) {
        let value = rows[vi]
            .as_ref()
            .and_then(|r| r.get(fi))
            .map_or(FeatureValue::Null, to_feature_value);
        at += crate::ml::encode::Encoder::encode_input(f, value, &mut row[at..])
            .map_err(|e| PredictError::Encode(e.to_string()))?;
    }
    Ok(model.artifact.predict_row(row))
}

impl Serving {
    /// The rows of each of `keys` for `model`: from memory, and for what a
    /// bounded view does not hold, from the online store in one keyed read
    /// (every view and key missed at once), remembered for the next request.
    pub async fn rows(
        &self,
        model: &Arc<LoadedModel>,
        keys: &[&str],
    ) -> Result<Vec<EntityRows>, StoreError> {
        Ok(self.read_rows(model, keys, false).await?.0)
    }

    /// [`Serving::rows`], with the memo generation of the snapshot they were
    /// read from, for [`Serving::predict`] (none when a view is bounded).
    pub async fn rows_to_score(
        &self,
        model: &Arc<LoadedModel>,
        keys: &[&str],
    ) -> Result<(Vec<EntityRows>, Option<Arc<memo::Generation>>), StoreError> {
        self.read_rows(model, keys, true).await
    }

    async fn read_rows(
        &self,
        model: &Arc<LoadedModel>,
        keys: &[&str],
        scoring: bool,
    ) -> Result<(Vec<EntityRows>, Option<Arc<memo::Generation>>), StoreError> {
        let cache = self.features.load_full();
        let generation = scoring
            .then(|| self.memo.generation(&cache, model))
            .flatten();
        let views: Vec<Option<&Arc<ViewCache>>> =
            model.views.iter().map(|v| cache.get(v)).collect();
        let mut out: Vec<EntityRows> = Vec::with_capacity(keys.len());
        let mut misses: Vec<(usize, usize)> = Vec::new();
        for (ki, key) in keys.iter().enumerate() {
            let mut rows = vec![None; views.len()].into_boxed_slice();
            for (vi, view) in views.iter().enumerate() {
                let Some(view) = view else { continue };
                match view.get(key) {
                    Cached::Known(row) => rows[vi] = row,
                    Cached::Miss => misses.push((ki, vi)),
                }
            }
            out.push(rows);
        }
        if self.metrics.recording() && views.iter().flatten().any(|v| v.is_bounded()) {
            let lookups = keys.len() * views.iter().flatten().filter(|v| v.is_bounded()).count();
            self.metrics.cache_misses.inc_by(misses.len() as u64);
            self.metrics
                .cache_hits
                .inc_by(lookups.saturating_sub(misses.len()) as u64);
        }
        if misses.is_empty() {
            return Ok((out, generation));
        }
        let mut miss_views: Vec<&str> = misses
            .iter()
            .map(|&(_, vi)| model.views[vi].as_str())
            .collect();
        miss_views.sort_unstable();
        miss_views.dedup();
        let mut miss_keys: Vec<&str> = misses.iter().map(|&(ki, _)| keys[ki]).collect();
        miss_keys.sort_unstable();
        miss_keys.dedup();
        let found = self.online.read_keys(&miss_views, &miss_keys).await?;
        let mut found: HashMap<(String, String), Value> = found
            .into_iter()
            .map(|(v, k, values)| ((v, k), values))
            .collect();
        for (ki, vi) in misses {
            let Some(view) = views[vi] else { continue };
            let stored = found.remove(&(model.views[vi].clone(), keys[ki].to_string()));
            let row = stored.map(|v| row_of(&view.features, v));
            view.insert(keys[ki], row.clone());
            out[ki][vi] = row;
        }
        Ok((out, generation))
    }

    /// The rows of one entity (see [`Serving::rows`]).
    pub async fn entity(
        &self,
        model: &Arc<LoadedModel>,
        key: &str,
    ) -> Result<EntityRows, StoreError> {
        Ok(self.read_entity(model, key, false).await?.0)
    }

    /// The rows of one entity and their memo generation (see
    /// [`Serving::rows_to_score`]).
    pub async fn entity_to_score(
        &self,
        model: &Arc<LoadedModel>,
        key: &str,
    ) -> Result<(EntityRows, Option<Arc<memo::Generation>>), StoreError> {
        self.read_entity(model, key, true).await
    }

    async fn read_entity(
        &self,
        model: &Arc<LoadedModel>,
        key: &str,
        scoring: bool,
    ) -> Result<(EntityRows, Option<Arc<memo::Generation>>), StoreError> {
        let (mut rows, generation) = self.read_rows(model, &[key], scoring).await?;
        let rows = rows
            .pop()
            .unwrap_or_else(|| vec![None; model.views.len()].into_boxed_slice());
        Ok((rows, generation))
    }

    /// The features of one entity for the served model: values and the names missing.
    pub fn features_of(
        &self,
        model: &Arc<LoadedModel>,
        rows: EntityRows,
    ) -> (FeatureValues, Vec<String>) {
        let missing = missing(model, &rows);
        (
            FeatureValues {
                model: model.clone(),
                rows,
            },
            missing,
        )
    }

    /// Scores one entity with the served version, from its rows (see
    /// [`Serving::rows_to_score`]), or answers from `memo`, the generation
    /// those rows were read in, when it already scored the entity. Nothing is
    /// allocated for the encoded row.
    pub fn predict(
        &self,
        model: &Arc<LoadedModel>,
        key: &str,
        rows: EntityRows,
        memo: Option<&memo::Generation>,
    ) -> Result<Prediction, PredictError> {
        let missing = missing(model, &rows);
        if missing.len() == model.inputs.len() {
            return Err(PredictError::Unknown { missing });
        }
        let probability = match memo.and_then(|m| m.get(key)) {
            Some(p) => p,
            None => {
                let p = score(model, &rows)?;
                if let Some(m) = memo {
                    m.put(key, p);
                }
                p
            }
        };
        let prediction = u8::from(probability >= 0.5);
        let recording = self.metrics.recording();
        if recording {
            self.metrics
                .predictions
                .get_or_create(&metrics::ClassLabels { class: prediction })
                .inc();
            self.metrics.probability.observe(probability);
        }
        for m in missing.iter().filter(|_| recording) {
            self.metrics
                .missing
                .get_or_create(&metrics::FeatureLabels { feature: m.clone() })
                .inc();
        }
        if let Some(sink) = &self.log {
            let queued = sink.offer(log::Answered {
                at_ms: crate::store::now_ms(),
                entity: key.to_string(),
                model: model.log_model.clone(),
                version: model.info.version,
                probability,
                class: prediction,
            });
            if !queued {
                self.metrics.log_dropped.inc();
            }
        }
        Ok(Prediction {
            prediction,
            probability,
            missing_features: missing,
            features: FeatureValues {
                model: model.clone(),
                rows,
            },
        })
    }

    /// Each served view's watermark, as held in memory now.
    pub fn watermarks(&self) -> std::collections::BTreeMap<String, String> {
        self.features
            .load()
            .iter()
            .map(|(v, c)| (v.clone(), c.meta.watermark.clone()))
            .collect()
    }

    /// Ready: a model is loaded and the online store answered recently.
    pub fn readiness(&self) -> Result<(), String> {
        if self.model.load().is_none() {
            return Err(self.no_production());
        }
        let age = crate::store::now_ms() - self.online_ok_ms.load(Ordering::Relaxed);
        if age > 5_000 {
            return Err(format!("the online store has not answered for {age} ms"));
        }
        Ok(())
    }

    /// Why nothing is served: the registry holds no Production version.
    pub fn no_production(&self) -> String {
        format!(
            "no Production version of `{}` in the registry",
            self.model_name
        )
    }

    /// Sets the drift gauges from each monitor's newest evaluation (one query).
    pub async fn refresh_drift(&self) -> Result<(), StoreError> {
        if let Some(monitors) = &self.monitors {
            let latest = monitors.latest_all().await?;
            self.metrics.drift.update(&latest);
        }
        Ok(())
    }

    /// One watcher pass: a new Production version is loaded (with its views)
    /// and swapped in; views whose online record changed are reloaded.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let meta = self.online.observe().await?;
        self.online_ok_ms
            .store(crate::store::now_ms(), Ordering::Relaxed);
        let current = self.model.load_full();
        let production = self.registry.production(&self.model_name).await?;
        if production.is_none()
            && let Some(old) = &current
        {
            // Archived (or demoted) by hand: stop serving what is no longer Production.
            tracing::warn!(
                "{}: {} version {} is no longer Production; not serving until one is",
                self.name,
                old.info.model,
                old.info.version
            );
            self.model.store(None);
            self.metrics.not_serving();
            return Ok(());
        }
        let next = match production {
            Some(p)
                if current
                    .as_ref()
                    .is_none_or(|c| c.info.identity != p.identity) =>
            {
                let promoted_ms = self
                    .registry
                    .history(&p.model)
                    .await?
                    .iter()
                    .rev()
                    .find(|h| h.version == p.version && h.to_stage == "Production")
                    .map(|h| h.at_ms);
                match self.registry.artifact(&p.model, p.version).await? {
                    Some(bytes) => match LoadedModel::load(p, &bytes) {
                        Ok(mut m) => {
                            m.promoted_ms = promoted_ms;
                            Some(Arc::new(m))
                        }
                        Err(e) => {
                            tracing::error!("cannot load the Production artifact: {e}");
                            None
                        }
                    },
                    None => None,
                }
            }
            _ => None,
        };
        // Views needed by whichever model will be served after this pass.
        let serving = next.as_ref().or(current.as_ref());
        if let Some(model) = serving {
            let cache = self.features.load_full();
            let mut updated: HashMap<String, Arc<ViewCache>> = HashMap::new();
            let mut changed = false;
            for view in &model.views {
                let Some(m) = meta.get(view) else {
                    changed |= cache.contains_key(view);
                    continue;
                };
                let features = model.view_features(view);
                let bounded = self
                    .cache_bound
                    .filter(|b| usize::try_from(m.entity_count).unwrap_or(usize::MAX) > b.get());
                match cache.get(view) {
                    Some(c)
                        if c.meta == *m
                            && c.features == features
                            && c.is_bounded() == bounded.is_some() =>
                    {
                        updated.insert(view.clone(), c.clone());
                    }
                    _ => {
                        let held = self.metrics.cache_gauge(view);
                        let built = match bounded {
                            // Past the bound: nothing is read now; rows come
                            // through on demand.
                            Some(bound) => ViewCache::bounded(m.clone(), features, bound, held),
                            None => {
                                let rows = self.online.read_all(view).await?;
                                if let Some(bound) =
                                    self.cache_bound.filter(|b| rows.len() > b.get())
                                {
                                    // The record undercounted (an incremental
                                    // Redis write): keep the bound anyway.
                                    ViewCache::bounded(m.clone(), features, bound, held)
                                } else {
                                    ViewCache::full(m.clone(), features, rows, held)
                                }
                            }
                        };
                        tracing::debug!(
                            "{}: view {view} at {} ({} entities, {})",
                            self.name,
                            m.watermark,
                            m.entity_count,
                            if built.is_bounded() {
                                "read through"
                            } else {
                                "in memory"
                            }
                        );
                        updated.insert(view.clone(), Arc::new(built));
                        changed = true;
                    }
                }
            }
            if changed || updated.len() != cache.len() {
                let gone: Vec<&String> =
                    cache.keys().filter(|v| !updated.contains_key(*v)).collect();
                for view in gone {
                    self.metrics.remove_cache_gauge(view);
                }
                self.features.store(Arc::new(updated));
            }
        }
        if let Some(m) = next {
            self.metrics.serving(
                metrics::ModelLabels {
                    model: m.info.model.clone(),
                    version: m.info.version.to_string(),
                    run: m.info.run.clone(),
                },
                m.info.metrics.get("val_auc").and_then(|v| v.as_f64()),
            );
            tracing::info!(
                "{}: now serving {} version {}",
                self.name,
                m.info.model,
                m.info.version
            );
            self.model.store(Some(m));
        }
        Ok(())
    }
}

/// Options of `reconcile serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Serve only this endpoint.
    pub endpoint: Option<String>,
    /// Override the endpoint's port (one endpoint only).
    pub port: Option<u16>,
    /// Override the address to bind.
    pub host: Option<String>,
    /// Capacity of each endpoint's prediction-log queue (`None`: [`log::LOG_CAPACITY`]).
    /// Not a spec field: tests shrink it to see predictions dropped.
    pub log_capacity: Option<usize>,
    /// Connection bounds of every endpoint's server.
    pub limits: http::Limits,
    /// Leave requests and predictions uncounted (the serve benchmark measures
    /// what counting costs); `/metrics` still answers.
    pub without_request_metrics: bool,
    /// The web UI, served at `/ui` on every endpoint's listener (none: no UI).
    pub ui: Option<Arc<crate::ui::Ui>>,
}

/// The stores an endpoint reads and writes.
#[derive(Debug, Clone)]
pub struct ServeStores {
    /// The model registry (state store).
    pub registry: Registry,
    /// The online store.
    pub online: OnlineStore,
    /// The prediction log (offline store).
    pub predictions: PredictionLog,
    /// Monitor evaluations (state store), for the drift gauges.
    pub monitors: MonitorStore,
}

impl ServeStores {
    /// The stores an endpoint uses, out of a workspace's open stores.
    pub fn of(stores: &crate::workspace::Stores) -> ServeStores {
        ServeStores {
            registry: stores.registry(),
            online: stores.online.clone(),
            predictions: PredictionLog::new(stores.offline.clone(), stores.state.project.clone()),
            monitors: MonitorStore::new(stores.state.db.clone(), stores.state.project.clone()),
        }
    }
}

/// The join key of the entity a model's runs use (`user_id`).
fn key_name(set: &SpecSet, model: &str) -> String {
    set.specs::<TrainingRun>()
        .filter(|(_, t)| t.model.value == model)
        .find_map(|(_, t)| {
            let view = t.features.first()?.value.split_once('.')?.0.to_string();
            crate::features::resolve(set, &view).ok().map(|v| v.key)
        })
        .unwrap_or_else(|| "id".to_string())
}

/// Builds the shared state of one endpoint and loads what it serves. With a
/// `log` sink, answered predictions are queued to it; with `monitors`, the
/// drift gauges follow their evaluations.
pub async fn prepare(
    set: &SpecSet,
    spec: &EndpointSpec,
    registry: Registry,
    online: OnlineStore,
    log: Option<log::PredictionSink>,
    monitors: Option<MonitorStore>,
) -> Result<Arc<Serving>, StoreError> {
    let serving = Arc::new(Serving {
        name: spec.name.value.clone(),
        model_name: spec.model.value.clone(),
        key_name: key_name(set, &spec.model.value),
        max_batch: spec.max_batch,
        model: ArcSwapOption::empty(),
        features: ArcSwap::from_pointee(HashMap::new()),
        cache_bound: spec.cache.and_then(|c| NonZeroUsize::new(c.max_entities)),
        metrics: metrics::Metrics::new(),
        online_ok_ms: AtomicI64::new(0),
        registry,
        online,
        log,
        memo: memo::ScoreMemo::default(),
        monitors,
    });
    serving
        .metrics
        .cache_bound
        .set(serving.cache_bound.map_or(0, |b| b.get() as i64));
    serving.refresh().await?;
    if let Err(e) = serving.refresh_drift().await {
        tracing::warn!("{}: cannot read monitor evaluations: {e}", serving.name);
    }
    Ok(serving)
}

/// The axum application of one endpoint (with the web UI when given).
pub fn app(serving: Arc<Serving>, ui: Option<Arc<crate::ui::Ui>>) -> axum::Router {
    routes::router(serving, ui)
}

/// Runs every selected endpoint until `stop` is cancelled (SIGINT/SIGTERM in
/// the CLI); in-flight requests finish, then each prediction-log writer
/// flushes what it holds. `on_ready` is called once per endpoint when it listens.
pub async fn run(
    set: &SpecSet,
    stores: ServeStores,
    opts: &ServeOptions,
    stop: crate::shutdown::Stop,
    on_ready: impl Fn(&Serving, SocketAddr),
) -> Result<(), ServeError> {
    let endpoints: Vec<&EndpointSpec> = set
        .specs::<Endpoint>()
        .map(|(_, e)| e)
        .filter(|e| opts.endpoint.as_ref().is_none_or(|n| *n == e.name.value))
        .collect();
    if endpoints.is_empty() {
        return Err(ServeError::NoEndpoint(match &opts.endpoint {
            Some(n) => format!("no Endpoint named `{n}` in the specs"),
            None => "the specs declare no Endpoint (add `kind: Endpoint`)".into(),
        }));
    }
    if opts.port.is_some() && endpoints.len() > 1 {
        return Err(ServeError::NoEndpoint(
            "--port needs --endpoint when the specs declare several endpoints".into(),
        ));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Writers stop after the servers, so the last requests' predictions are logged.
    let (log_stop_tx, log_stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let mut writers = tokio::task::JoinSet::new();
    for spec in endpoints {
        let (sink, queue) = if spec.log_predictions {
            let (sink, queue) = log::queue(opts.log_capacity.unwrap_or(log::LOG_CAPACITY));
            (Some(sink), Some(queue))
        } else {
            (None, None)
        };
        let serving = prepare(
            set,
            spec,
            stores.registry.clone(),
            stores.online.clone(),
            sink,
            Some(stores.monitors.clone()),
        )
        .await?;
        serving.metrics.set_recording(!opts.without_request_metrics);
        if let Some(queue) = queue {
            writers.spawn(log::writer(
                serving.clone(),
                queue,
                stores.predictions.clone(),
                log_stop_rx.clone(),
            ));
        }
        let host = opts.host.clone().unwrap_or_else(|| spec.host.clone());
        let port = opts.port.unwrap_or(spec.port);
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .map_err(|_| ServeError::NoEndpoint(format!("`{host}` is not an IP address")))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let bound = listener.local_addr()?;
        on_ready(&serving, bound);
        let watcher = {
            let serving = serving.clone();
            let mut stop = stop_rx.clone();
            async move {
                let mut tick = tokio::time::interval(POLL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut drift_read = Instant::now();
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let started = Instant::now();
                            if let Err(e) = serving.refresh().await {
                                tracing::warn!("{}: refresh failed: {e}", serving.name);
                            }
                            if drift_read.elapsed() >= DRIFT_POLL {
                                drift_read = Instant::now();
                                if let Err(e) = serving.refresh_drift().await {
                                    tracing::warn!(
                                        "{}: cannot read monitor evaluations: {e}",
                                        serving.name
                                    );
                                }
                            }
                            tracing::trace!("refresh took {:?}", started.elapsed());
                        }
                        _ = stop.changed() => break,
                    }
                }
            }
        };
        servers.spawn(watcher);
        if let Some(ui) = &opts.ui {
            ui.attach(serving.clone());
        }
        let app = app(serving.clone(), opts.ui.clone());
        servers.spawn(http::serve(
            listener,
            app,
            opts.limits,
            serving,
            stop.child_token(),
        ));
    }
    stop.cancelled().await;
    let _ = stop_tx.send(true);
    while servers.join_next().await.is_some() {}
    let _ = log_stop_tx.send(true);
    while writers.join_next().await.is_some() {}
    Ok(())
}
