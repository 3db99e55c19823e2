//! The commits GitOps applied, in the state store: which one is live (the
//! newest whose apply converged) and each one's outcome, so `status` and
//! `reconcile gitops` can say what runs and why a newer commit does not.

use serde::Serialize;

use super::{BeginWrite, Db, StoreError, now_ms};
use crate::with_pool;

/// A commit and what applying it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitRecord {
    /// Full object id.
    pub sha: String,
    /// First line of its message.
    pub subject: String,
    /// Author name.
    pub author: String,
    /// Commit time (ms since the epoch).
    pub committed_ms: i64,
    /// When it was applied (ms since the epoch).
    pub applied_ms: i64,
    /// Whether its apply converged (it became live).
    pub live: bool,
    /// The outcome: a summary, or the diagnostics and errors of a failure.
    pub message: String,
}

/// The commit records of one project.
#[derive(Debug, Clone)]
pub struct CommitStore {
    db: Db,
    project: String,
}

type Row = (String, String, String, i64, i64, i64, String);

macro_rules! columns {
    () => {
        "sha, subject, author, committed_ms, applied_ms, live, message"
    };
}

fn from_row(r: Row) -> CommitRecord {
    CommitRecord {
        sha: r.0,
        subject: r.1,
        author: r.2,
        committed_ms: r.3,
        applied_ms: r.4,
        live: r.5 != 0,
        message: r.6,
    }
}

impl CommitStore {
    /// The records of `project` in `db` (the state store).
    pub fn new(db: Db, project: impl Into<String>) -> Self {
        CommitStore {
            db,
            project: project.into(),
        }
    }

    /// Records an applied commit (again: the newer outcome wins).
    pub async fn record(
        &self,
        sha: &str,
        subject: &str,
        author: &str,
        committed_ms: i64,
        live: bool,
        message: &str,
    ) -> Result<CommitRecord, StoreError> {
        let at = now_ms();
        let sql = "INSERT INTO reconcile_commits \
             (project, sha, subject, author, committed_ms, applied_ms, live, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (project, sha) DO UPDATE SET applied_ms = excluded.applied_ms, \
             live = excluded.live, message = excluded.message";
        with_pool!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(sql)
                .bind(&self.project)
                .bind(sha)
                .bind(subject)
                .bind(author)
                .bind(committed_ms)
                .bind(at)
                .bind(i64::from(live))
                .bind(message)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(CommitRecord {
            sha: sha.to_string(),
            subject: subject.to_string(),
            author: author.to_string(),
            committed_ms,
            applied_ms: at,
            live,
            message: message.to_string(),
        })
    }

    /// The live commit: the newest applied one that converged.
    pub async fn live(&self) -> Result<Option<CommitRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM reconcile_commits WHERE project = $1 AND live = 1 \
             ORDER BY applied_ms DESC LIMIT 1"
        );
        let row: Option<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(&self.project).fetch_optional(pool).await?
        });
        Ok(row.map(from_row))
    }

    /// Every applied commit, oldest first.
    pub async fn history(&self) -> Result<Vec<CommitRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM reconcile_commits WHERE project = $1 ORDER BY applied_ms, sha"
        );
        let rows: Vec<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(&self.project).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(from_row).collect())
    }
}
