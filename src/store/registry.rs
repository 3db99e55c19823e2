//! The model registry in the state store: versions (content-addressed, with
//! params, metrics, training-set hash, feature schema and artifact), stages,
//! aliases and the history of every stage change.
//!
//! Exactly one Production version per model is an invariant of the database (a
//! partial unique index), and a promotion archives the old Production, promotes
//! the new one, moves the `production` alias and logs both changes in one
//! transaction: a crash leaves the old state or the new one, never a mix.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::{BeginWrite, Db, StoreError, now_ms};
use crate::with_pool;

/// A version's stage, with the course's words (stored as text, mirrored as an alias).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Stage {
    /// Registered, not in use.
    None,
    /// Being tried.
    Staging,
    /// Served; at most one per model.
    Production,
    /// Was in use, replaced.
    Archived,
}

impl Stage {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "None",
            Stage::Staging => "Staging",
            Stage::Production => "Production",
            Stage::Archived => "Archived",
        }
    }

    /// Parses a stage name, case-insensitively.
    pub fn parse(s: &str) -> Option<Stage> {
        [
            Stage::None,
            Stage::Staging,
            Stage::Production,
            Stage::Archived,
        ]
        .into_iter()
        .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a stage changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// The Model spec names this version (or the run that produced it).
    Spec,
    /// A `best` policy chose it.
    Policy,
    /// A person, through `reconcile models stage`.
    Manual,
}

impl Cause {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Spec => "spec",
            Cause::Policy => "policy",
            Cause::Manual => "manual",
        }
    }
}

/// One registered version, without its artifact.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VersionInfo {
    /// Model name.
    pub model: String,
    /// Version number, from 1.
    pub version: i64,
    /// Content address: hash of run spec, training set and trainer.
    pub identity: String,
    /// The run that produced it.
    pub run: String,
    /// Algorithm name.
    pub algorithm: String,
    /// The run's parameters (canonical spec JSON).
    pub params: serde_json::Value,
    /// Validation metrics (`val_auc`, …).
    pub metrics: serde_json::Value,
    /// Hash of the training set's bytes.
    pub training_set_hash: String,
    /// Input features, their types and the encoded columns.
    pub features: serde_json::Value,
    /// Hash of the artifact bytes.
    pub artifact_hash: String,
    /// Trainer version.
    pub trainer: String,
    /// Wall time of the fit (not part of the identity).
    pub training_ms: i64,
    /// Current stage.
    pub stage: Stage,
    /// When registered.
    pub created_ms: i64,
}

impl VersionInfo {
    /// A metric by name (`val_auc`), if recorded.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).and_then(serde_json::Value::as_f64)
    }
}

/// A version to register.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Model name.
    pub model: String,
    /// Content address.
    pub identity: String,
    /// Producing run.
    pub run: String,
    /// Algorithm name.
    pub algorithm: String,
    /// Parameters.
    pub params: serde_json::Value,
    /// Metrics.
    pub metrics: serde_json::Value,
    /// Training-set hash.
    pub training_set_hash: String,
    /// Feature schema.
    pub features: serde_json::Value,
    /// The serialized model.
    pub artifact: Vec<u8>,
    /// Trainer version.
    pub trainer: String,
    /// Fit time.
    pub training_ms: i64,
}

/// One stage change.
#[derive(Debug, Clone, Serialize)]
pub struct Promotion {
    /// Version.
    pub version: i64,
    /// Stage before.
    pub from_stage: String,
    /// Stage after.
    pub to_stage: String,
    /// `spec`, `policy` or `manual`.
    pub cause: String,
    /// Words.
    pub reason: String,
    /// When.
    pub at_ms: i64,
}

/// Every version of every model of a project, grouped by model, ascending.
pub type RegistryState = HashMap<String, Vec<VersionInfo>>;

/// The registry of one project.
#[derive(Debug, Clone)]
pub struct Registry {
    db: Db,
    project: String,
}

type VersionRow = (
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    i64,
);

const COLUMNS: &str = "model, version, identity, run, algorithm, params, metrics, training_set_hash, features, artifact_hash, trainer, training_ms, stage, created_ms";

fn version_from(row: VersionRow) -> VersionInfo {
    let (
        model,
        version,
        identity,
        run,
        algorithm,
        params,
        metrics,
        training_set_hash,
        features,
        artifact_hash,
        trainer,
        training_ms,
        stage,
        created_ms,
    ) = row;
    VersionInfo {
        model,
        version,
        identity,
        run,
        algorithm,
        params: serde_json::from_str(&params).unwrap_or_default(),
        metrics: serde_json::from_str(&metrics).unwrap_or_default(),
        training_set_hash,
        features: serde_json::from_str(&features).unwrap_or_default(),
        artifact_hash,
        trainer,
        training_ms,
        stage: Stage::parse(&stage).unwrap_or(Stage::None),
        created_ms,
    }
}

/// Why a stage change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// No such version.
    #[error("model `{model}` has no version {version}")]
    NoVersion {
        /// Model.
        model: String,
        /// Version asked for.
        version: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Registry {
    /// The registry of `project` in the state store `db`.
    pub fn new(db: Db, project: impl Into<String>) -> Self {
        Registry {
            db,
            project: project.into(),
        }
    }

    /// Every version of every model (no artifacts), in one query.
    pub async fn observe(&self) -> Result<RegistryState, StoreError> {
        let q = format!(
            "SELECT {COLUMNS} FROM reconcile_model_versions WHERE project = $1 ORDER BY model, version"
        );
        let rows: Vec<VersionRow> = with_pool!(&self.db, p => sqlx::query_as(sqlx::AssertSqlSafe(q.as_str())).bind(&self.project).fetch_all(p).await)?;
        let mut out: RegistryState = HashMap::new();
        for row in rows {
            let v = version_from(row);
            out.entry(v.model.clone()).or_default().push(v);
        }
        Ok(out)
    }

    /// The versions of one model, ascending.
    pub async fn versions(&self, model: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let q = format!(
            "SELECT {COLUMNS} FROM reconcile_model_versions WHERE project = $1 AND model = $2 ORDER BY version"
        );
        let rows: Vec<VersionRow> = with_pool!(&self.db, p => sqlx::query_as(sqlx::AssertSqlSafe(q.as_str())).bind(&self.project).bind(model).fetch_all(p).await)?;
        Ok(rows.into_iter().map(version_from).collect())
    }

    /// The version with this content address, if registered.
    pub async fn by_identity(
        &self,
        model: &str,
        identity: &str,
    ) -> Result<Option<VersionInfo>, StoreError> {
        let q = format!(
            "SELECT {COLUMNS} FROM reconcile_model_versions WHERE project = $1 AND model = $2 AND identity = $3"
        );
        let row: Option<VersionRow> = with_pool!(&self.db, p => sqlx::query_as(sqlx::AssertSqlSafe(q.as_str())).bind(&self.project).bind(model).bind(identity).fetch_optional(p).await)?;
        Ok(row.map(version_from))
    }

    /// The Production version of a model, if any.
    pub async fn production(&self, model: &str) -> Result<Option<VersionInfo>, StoreError> {
        let q = format!(
            "SELECT {COLUMNS} FROM reconcile_model_versions WHERE project = $1 AND model = $2 AND stage = 'Production'"
        );
        let row: Option<VersionRow> = with_pool!(&self.db, p => sqlx::query_as(sqlx::AssertSqlSafe(q.as_str())).bind(&self.project).bind(model).fetch_optional(p).await)?;
        Ok(row.map(version_from))
    }

    /// A version's artifact bytes.
    pub async fn artifact(&self, model: &str, version: i64) -> Result<Option<Vec<u8>>, StoreError> {
        const Q: &str = "SELECT artifact FROM reconcile_model_artifacts WHERE project = $1 AND model = $2 AND version = $3";
        let row: Option<(Vec<u8>,)> = with_pool!(&self.db, p => sqlx::query_as(Q).bind(&self.project).bind(model).bind(version).fetch_optional(p).await)?;
        Ok(row.map(|(a,)| a))
    }

    /// Registers a version (stage None) with its artifact in one transaction and
    /// returns it; a version with the same identity is returned as it is.
    pub async fn register(&self, new: &NewVersion) -> Result<VersionInfo, StoreError> {
        const NEXT: &str = "SELECT COALESCE(MAX(version), 0) + 1 FROM reconcile_model_versions WHERE project = $1 AND model = $2";
        const INSERT: &str = "INSERT INTO reconcile_model_versions (project, model, version, identity, run, algorithm, params, metrics, training_set_hash, features, artifact_hash, trainer, training_ms, stage, created_ms) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'None', $14)";
        const ARTIFACT: &str = "INSERT INTO reconcile_model_artifacts (project, model, version, artifact) VALUES ($1, $2, $3, $4)";
        if let Some(existing) = self.by_identity(&new.model, &new.identity).await? {
            return Ok(existing);
        }
        let artifact_hash = crate::hash::hash_bytes(&new.artifact);
        let (params, metrics, features) = (
            new.params.to_string(),
            new.metrics.to_string(),
            new.features.to_string(),
        );
        let created = now_ms();
        // Two runs of one model may register at once; on PostgreSQL both can read
        // the same MAX(version). The primary key refuses the second: read again.
        let mut attempt = 0;
        let version: i64 = loop {
            let result: Result<i64, sqlx::Error> = with_pool!(&self.db, p => {
                async {
                    let mut tx = p.begin_write().await?;
                    let (version,): (i64,) = sqlx::query_as(NEXT).bind(&self.project).bind(&new.model).fetch_one(&mut *tx).await?;
                    sqlx::query(INSERT)
                        .bind(&self.project).bind(&new.model).bind(version).bind(&new.identity).bind(&new.run)
                        .bind(&new.algorithm).bind(&params).bind(&metrics).bind(&new.training_set_hash)
                        .bind(&features).bind(&artifact_hash).bind(&new.trainer).bind(new.training_ms).bind(created)
                        .execute(&mut *tx).await?;
                    sqlx::query(ARTIFACT).bind(&self.project).bind(&new.model).bind(version).bind(&new.artifact)
                        .execute(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(version)
                }.await
            });
            match result {
                Ok(v) => break v,
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() && attempt < 10 => {
                    attempt += 1;
                    if let Some(existing) = self.by_identity(&new.model, &new.identity).await? {
                        return Ok(existing);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(VersionInfo {
            model: new.model.clone(),
            version,
            identity: new.identity.clone(),
            run: new.run.clone(),
            algorithm: new.algorithm.clone(),
            params: new.params.clone(),
            metrics: new.metrics.clone(),
            training_set_hash: new.training_set_hash.clone(),
            features: new.features.clone(),
            artifact_hash,
            trainer: new.trainer.clone(),
            training_ms: new.training_ms,
            stage: Stage::None,
            created_ms: created,
        })
    }

    /// Moves `version` to `stage` in one transaction. Promoting to Production
    /// archives the previous Production and moves the `production` alias; every
    /// change is logged with its cause and reason. Returns the stage it left.
    pub async fn set_stage(
        &self,
        model: &str,
        version: i64,
        stage: Stage,
        cause: Cause,
        reason: &str,
    ) -> Result<Stage, StageError> {
        const CURRENT: &str = "SELECT version, stage FROM reconcile_model_versions WHERE project = $1 AND model = $2 AND (version = $3 OR stage = 'Production')";
        const SET: &str = "UPDATE reconcile_model_versions SET stage = $4 WHERE project = $1 AND model = $2 AND version = $3";
        const LOG: &str = "INSERT INTO reconcile_promotions (project, model, version, from_stage, to_stage, cause, reason, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        const ALIAS: &str = "INSERT INTO reconcile_model_aliases (project, model, alias, version, updated_ms) VALUES ($1, $2, 'production', $3, $4) \
            ON CONFLICT (project, model, alias) DO UPDATE SET version = excluded.version, updated_ms = excluded.updated_ms";
        const UNALIAS: &str = "DELETE FROM reconcile_model_aliases WHERE project = $1 AND model = $2 AND alias = 'production' AND version = $3";
        let at = now_ms();
        let project = &self.project;
        let outcome: Result<Option<Stage>, sqlx::Error> = with_pool!(&self.db, p => {
            async {
                let mut tx = p.begin_write().await?;
                let rows: Vec<(i64, String)> = sqlx::query_as(CURRENT).bind(project).bind(model).bind(version).fetch_all(&mut *tx).await?;
                let Some(from) = rows.iter().find(|(v, _)| *v == version).map(|(_, s)| Stage::parse(s).unwrap_or(Stage::None)) else {
                    return Ok(None);
                };
                if from == stage {
                    return Ok(Some(from));
                }
                if stage == Stage::Production {
                    for (old, _) in rows.iter().filter(|(v, s)| *v != version && s == "Production") {
                        sqlx::query(SET).bind(project).bind(model).bind(*old).bind(Stage::Archived.as_str()).execute(&mut *tx).await?;
                        sqlx::query(LOG).bind(project).bind(model).bind(*old).bind("Production").bind("Archived")
                            .bind(cause.as_str()).bind(format!("replaced by version {version}: {reason}")).bind(at).execute(&mut *tx).await?;
                    }
                    sqlx::query(ALIAS).bind(project).bind(model).bind(version).bind(at).execute(&mut *tx).await?;
                } else if from == Stage::Production {
                    sqlx::query(UNALIAS).bind(project).bind(model).bind(version).execute(&mut *tx).await?;
                }
                sqlx::query(SET).bind(project).bind(model).bind(version).bind(stage.as_str()).execute(&mut *tx).await?;
                sqlx::query(LOG).bind(project).bind(model).bind(version).bind(from.as_str()).bind(stage.as_str())
                    .bind(cause.as_str()).bind(reason).bind(at).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(Some(from))
            }.await
        });
        match outcome.map_err(StoreError::from)? {
            Some(from) => Ok(from),
            None => Err(StageError::NoVersion {
                model: model.to_string(),
                version,
            }),
        }
    }

    /// The stage history of a model, oldest first.
    pub async fn history(&self, model: &str) -> Result<Vec<Promotion>, StoreError> {
        const Q: &str = "SELECT version, from_stage, to_stage, cause, reason, at_ms FROM reconcile_promotions WHERE project = $1 AND model = $2 ORDER BY id";
        let rows: Vec<(i64, String, String, String, String, i64)> = with_pool!(&self.db, p => sqlx::query_as(Q).bind(&self.project).bind(model).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(
                |(version, from_stage, to_stage, cause, reason, at_ms)| Promotion {
                    version,
                    from_stage,
                    to_stage,
                    cause,
                    reason,
                    at_ms,
                },
            )
            .collect())
    }

    /// Named aliases of a model: alias → version.
    pub async fn aliases(&self, model: &str) -> Result<Vec<(String, i64)>, StoreError> {
        const Q: &str = "SELECT alias, version FROM reconcile_model_aliases WHERE project = $1 AND model = $2 ORDER BY alias";
        Ok(
            with_pool!(&self.db, p => sqlx::query_as(Q).bind(&self.project).bind(model).fetch_all(p).await)?,
        )
    }
}
