//! The state store: what the controller last did to each resource, for which
//! spec hash, with what outcome, plus an event log.
//!
//! Status is Kubernetes-style: a condition (`Ready`, `Failed`, `Blocked`) with a
//! reason, a message and the spec hash it was computed for, so "ready" is never stale.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::{BeginWrite, Db, StoreError, now_ms};
use crate::spec::{Kind, ResourceId};
use crate::with_pool;

/// The condition a resource was left in by the last apply that touched it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub enum Condition {
    /// Matches its spec.
    Ready,
    /// The last attempt failed; the message says why.
    Failed,
    /// Not attempted because a dependency failed.
    Blocked,
}

impl Condition {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Ready => "Ready",
            Condition::Failed => "Failed",
            Condition::Blocked => "Blocked",
        }
    }

    fn parse(s: &str) -> Condition {
        match s {
            "Ready" => Condition::Ready,
            "Blocked" => Condition::Blocked,
            _ => Condition::Failed,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource as the state store knows it.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceRecord {
    /// Kind and name.
    pub id: ResourceId,
    /// Hash of the spec (and inputs) the condition was computed for.
    pub spec_hash: String,
    /// Canonical spec JSON, `${VAR}` references unresolved.
    pub spec_json: serde_json::Value,
    /// Condition.
    pub condition: Condition,
    /// Machine-readable reason, e.g. `Applied`, `ValidationFailed`.
    pub reason: String,
    /// Human message.
    pub message: String,
    /// Kind-specific outputs (e.g. row counts).
    pub outputs: serde_json::Value,
    /// Data of this resource may not be dropped.
    pub protect: bool,
    /// When the spec hash or condition last changed.
    pub last_change_ms: i64,
    /// When an apply last touched it.
    pub last_apply_ms: i64,
}

/// One line of the event log.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When.
    pub at_ms: i64,
    /// What was done (`create`, `update`, …).
    pub action: String,
    /// `ok`, `failed`, `blocked`.
    pub outcome: String,
    /// Details.
    pub message: String,
}

/// The state store of one project.
#[derive(Debug, Clone)]
pub struct StateStore {
    /// The database.
    pub db: Db,
    /// The project every row belongs to.
    pub project: String,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
);

impl StateStore {
    /// Wraps an open database.
    pub fn new(db: Db, project: impl Into<String>) -> Self {
        StateStore {
            db,
            project: project.into(),
        }
    }

    /// Every resource of the project, in one query.
    pub async fn load_all(&self) -> Result<HashMap<ResourceId, ResourceRecord>, StoreError> {
        const Q: &str = "SELECT kind, name, spec_hash, spec_json, status, reason, message, outputs, protect, last_change_ms, last_apply_ms FROM reconcile_resources WHERE project = $1";
        let rows: Vec<Row> =
            with_pool!(&self.db, p => sqlx::query_as(Q).bind(&self.project).fetch_all(p).await)?;
        let mut out = HashMap::with_capacity(rows.len());
        for (
            kind,
            name,
            spec_hash,
            spec_json,
            status,
            reason,
            message,
            outputs,
            protect,
            change,
            apply,
        ) in rows
        {
            let Some(kind) = Kind::parse(&kind) else {
                continue; // a kind from a newer version of reconcile
            };
            let id = ResourceId::new(kind, name);
            out.insert(
                id.clone(),
                ResourceRecord {
                    id,
                    spec_hash,
                    spec_json: serde_json::from_str(&spec_json).unwrap_or_default(),
                    condition: Condition::parse(&status),
                    reason,
                    message,
                    outputs: serde_json::from_str(&outputs).unwrap_or_default(),
                    protect: protect != 0,
                    last_change_ms: change,
                    last_apply_ms: apply,
                },
            );
        }
        Ok(out)
    }

    /// Writes a resource's record and an event, in one transaction.
    pub async fn record(&self, rec: &ResourceRecord, action: &str) -> Result<(), StoreError> {
        const UPSERT: &str = "INSERT INTO reconcile_resources (project, kind, name, spec_hash, spec_json, status, reason, message, outputs, protect, last_change_ms, last_apply_ms) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
            ON CONFLICT (project, kind, name) DO UPDATE SET spec_hash = excluded.spec_hash, spec_json = excluded.spec_json, status = excluded.status, \
            reason = excluded.reason, message = excluded.message, outputs = excluded.outputs, protect = excluded.protect, \
            last_change_ms = excluded.last_change_ms, last_apply_ms = excluded.last_apply_ms";
        const EVENT: &str = "INSERT INTO reconcile_events (project, kind, name, at_ms, action, outcome, message) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        // Defence in depth: whatever reaches the state store is redacted of
        // every resolved `${VAR}` value (see `env::redact_secrets`).
        let spec_json = rec.spec_json.to_string();
        let mut outputs = rec.outputs.clone();
        crate::spec::env::redact_json(&mut outputs);
        let outputs = outputs.to_string();
        let message = crate::spec::env::redact_secrets(&rec.message);
        let reason = crate::spec::env::redact_secrets(&rec.reason);
        let outcome = match rec.condition {
            Condition::Ready => "ok",
            Condition::Failed => "failed",
            Condition::Blocked => "blocked",
        };
        with_pool!(&self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query(UPSERT)
                .bind(&self.project)
                .bind(rec.id.kind.as_str())
                .bind(&rec.id.name)
                .bind(&rec.spec_hash)
                .bind(&spec_json)
                .bind(rec.condition.as_str())
                .bind(&reason)
                .bind(&message)
                .bind(&outputs)
                .bind(i64::from(rec.protect))
                .bind(rec.last_change_ms)
                .bind(rec.last_apply_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(EVENT)
                .bind(&self.project)
                .bind(rec.id.kind.as_str())
                .bind(&rec.id.name)
                .bind(now_ms())
                .bind(action)
                .bind(outcome)
                .bind(&message)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(())
    }

    /// Forgets a resource (after it was deleted), logging the deletion.
    pub async fn forget(&self, id: &ResourceId, message: &str) -> Result<(), StoreError> {
        let message = &crate::spec::env::redact_secrets(message);
        const DEL: &str =
            "DELETE FROM reconcile_resources WHERE project = $1 AND kind = $2 AND name = $3";
        const EVENT: &str = "INSERT INTO reconcile_events (project, kind, name, at_ms, action, outcome, message) VALUES ($1, $2, $3, $4, 'delete', 'ok', $5)";
        with_pool!(&self.db, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query(DEL).bind(&self.project).bind(id.kind.as_str()).bind(&id.name).execute(&mut *tx).await?;
            sqlx::query(EVENT).bind(&self.project).bind(id.kind.as_str()).bind(&id.name).bind(now_ms()).bind(message).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<(), sqlx::Error>(())
        })?;
        Ok(())
    }

    /// The most recent events of a resource, newest first.
    pub async fn events(&self, id: &ResourceId, limit: i64) -> Result<Vec<Event>, StoreError> {
        const Q: &str = "SELECT at_ms, action, outcome, message FROM reconcile_events WHERE project = $1 AND kind = $2 AND name = $3 ORDER BY id DESC LIMIT $4";
        let rows: Vec<(i64, String, String, String)> = with_pool!(&self.db, p => sqlx::query_as(Q)
            .bind(&self.project).bind(id.kind.as_str()).bind(&id.name).bind(limit).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(|(at_ms, action, outcome, message)| Event {
                at_ms,
                action,
                outcome,
                message,
            })
            .collect())
    }
}
