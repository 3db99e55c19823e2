//! Prediction logging off the request path. A handler hands each answered
//! prediction to a bounded queue with `try_send` — it never waits, and a full
//! queue drops the prediction (counted) rather than slowing the request. One
//! writer task per endpoint wakes every [`LOG_FLUSH`] and drains the queue in
//! batches (up to [`LOG_BATCH`] rows per transaction) into the offline store, and flushes what it holds when serving stops. A `kill -9`
//! loses what was queued or batched but not yet committed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::Serving;
use crate::store::Db;
use crate::store::predictions::{LoggedPrediction, PredictionLog};

/// Default queue capacity, in predictions: about a second of full load.
pub const LOG_CAPACITY: usize = 65_536;
/// Most rows written in one transaction.
pub const LOG_BATCH: usize = 4_096;
/// How often the writer drains the queue: the longest a prediction waits
/// before it is written.
pub const LOG_FLUSH: Duration = Duration::from_millis(150);

/// One answered prediction in the queue: the model name is shared with the
/// loaded version, so queuing it allocates only the entity key.
#[derive(Debug)]
pub(crate) struct Answered {
    pub at_ms: i64,
    pub entity: String,
    pub model: Arc<str>,
    pub version: i64,
    pub probability: f64,
    pub class: u8,
}

/// The sending side of an endpoint's prediction log.
#[derive(Debug, Clone)]
pub struct PredictionSink {
    tx: mpsc::Sender<Answered>,
}

/// The receiving side, consumed by [`writer`].
#[derive(Debug)]
pub struct PredictionQueue {
    rx: mpsc::Receiver<Answered>,
}

/// A bounded queue of `capacity` predictions (at least 1).
pub fn queue(capacity: usize) -> (PredictionSink, PredictionQueue) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (PredictionSink { tx }, PredictionQueue { rx })
}

impl PredictionSink {
    /// Queues a prediction without waiting; `false` when the queue is full
    /// (or the writer is gone) and the prediction was dropped.
    pub(crate) fn offer(&self, a: Answered) -> bool {
        self.tx.try_send(a).is_ok()
    }
}

/// The store named for people: a PostgreSQL URL with its password redacted,
/// a SQLite file by its name only.
fn store_name(db: &Db) -> String {
    match db {
        Db::Postgres { url, .. } => crate::spec::env::redact_url(url),
        Db::Sqlite { path, .. } => format!(
            "sqlite://{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
    }
}

/// Writes one batch and counts it as written or failed; never fails itself.
async fn flush(serving: &Serving, log: &PredictionLog, buf: &mut Vec<Answered>) {
    if buf.is_empty() {
        return;
    }
    let rows: Vec<LoggedPrediction> = buf
        .drain(..)
        .map(|a| LoggedPrediction {
            at_ms: a.at_ms,
            entity: a.entity,
            model: a.model.to_string(),
            version: a.version,
            probability: a.probability,
            class: i64::from(a.class),
        })
        .collect();
    let n = rows.len() as u64;
    match log.insert_batch(&serving.name, &rows).await {
        Ok(()) => {
            serving.metrics.log_written.inc_by(n);
        }
        Err(e) => {
            serving.metrics.log_failed.inc_by(n);
            tracing::warn!(
                "{}: cannot log {n} predictions to {}: {e}",
                serving.name,
                store_name(log.db())
            );
        }
    }
}

/// Drains `queue` into `log` every [`LOG_FLUSH`] until `stop` turns true,
/// then writes what is still queued and returns. The writer wakes on a timer,
/// never per prediction: while it sleeps no receiver waits on the queue, so a
/// handler's `try_send` is a push onto the queue and nothing more.
pub async fn writer(
    serving: Arc<Serving>,
    mut queue: PredictionQueue,
    log: PredictionLog,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf: Vec<Answered> = Vec::with_capacity(LOG_BATCH);
    let mut tick = tokio::time::interval(LOG_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            break;
        }
        // Everything queued since the last tick, a batch at a time.
        while let Ok(a) = queue.rx.try_recv() {
            buf.push(a);
            if buf.len() >= LOG_BATCH {
                flush(&serving, &log, &mut buf).await;
            }
        }
        flush(&serving, &log, &mut buf).await;
    }
    // Serving stopped (every request has finished): write what is left.
    queue.rx.close();
    while let Some(a) = queue.rx.recv().await {
        buf.push(a);
        if buf.len() >= LOG_BATCH {
            flush(&serving, &log, &mut buf).await;
        }
    }
    flush(&serving, &log, &mut buf).await;
}
