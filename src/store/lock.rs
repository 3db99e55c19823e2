//! The apply lock: two applies of one project never interleave.
//!
//! SQLite: an exclusive OS file lock beside the database file. PostgreSQL: a
//! session advisory lock on a dedicated connection. Both are released by the OS or
//! the server when the holder dies, even by `kill -9`, so a crash never leaves a
//! stale lock. Who holds it (pid, host, since) is written down for the message a
//! waiting apply prints.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::{Db, StoreError, format_ms, now_ms};

/// Held while an apply runs; dropping it releases the lock.
#[derive(Debug)]
pub enum ApplyLock {
    /// A locked file (SQLite).
    File {
        /// The open, locked file.
        file: File,
        /// Its path.
        path: PathBuf,
    },
    /// A connection holding an advisory lock (PostgreSQL).
    Advisory(Box<PgConnection>),
}

/// Held while one process migrates a SQLite store: an exclusive OS lock on a
/// file beside the database, released on drop or when the process dies.
#[derive(Debug)]
pub struct MigrateLock {
    file: File,
}

impl MigrateLock {
    /// Waits (up to `timeout`) for the migration lock of the database at `db_path`.
    pub async fn acquire(db_path: &Path, timeout: Duration) -> Result<MigrateLock, StoreError> {
        let lock_path = db_path.with_extension("migrate.lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                context: format!("cannot open lock file {}", lock_path.display()),
                source,
            })?;
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(MigrateLock { file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Locked(format!(
                        "another process has been migrating {} for over {timeout:?}",
                        db_path.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(StoreError::Io {
                        context: format!("cannot lock {}", lock_path.display()),
                        source,
                    });
                }
            }
        }
    }
}

impl Drop for MigrateLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Who holds a lock.
fn holder_line(pid: i64, host: &str, since_ms: i64) -> String {
    format!(
        "locked by pid {pid} on host {host} since {}",
        format_ms(since_ms)
    )
}

fn advisory_key(project: &str) -> i64 {
    let h = blake3::hash(format!("reconcile-apply:{project}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    i64::from_le_bytes(b)
}

impl ApplyLock {
    /// Takes the lock for `project`, waiting up to `timeout` (zero: try once).
    pub async fn acquire(
        db: &Db,
        project: &str,
        timeout: Duration,
    ) -> Result<ApplyLock, StoreError> {
        let deadline = Instant::now() + timeout;
        let host = gethostname::gethostname().to_string_lossy().to_string();
        let pid = i64::from(std::process::id());
        match db {
            Db::Sqlite { path, .. } => {
                let lock_path = path.with_extension("lock");
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&lock_path)
                    .map_err(|source| StoreError::Io {
                        context: format!("cannot open lock file {}", lock_path.display()),
                        source,
                    })?;
                loop {
                    match file.try_lock() {
                        Ok(()) => break,
                        Err(std::fs::TryLockError::WouldBlock) => {}
                        Err(std::fs::TryLockError::Error(source)) => {
                            return Err(StoreError::Io {
                                context: format!("cannot lock {}", lock_path.display()),
                                source,
                            });
                        }
                    }
                    if Instant::now() >= deadline {
                        let mut who = String::new();
                        let _ = file.read_to_string(&mut who);
                        let who = who.trim();
                        return Err(StoreError::Locked(format!(
                            "another apply holds the lock ({}); retry later or pass --lock-timeout",
                            if who.is_empty() {
                                "holder unknown"
                            } else {
                                who
                            }
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let line = holder_line(pid, &host, now_ms());
                let write = file
                    .set_len(0)
                    .and_then(|_| file.rewind())
                    .and_then(|_| file.write_all(line.as_bytes()))
                    .and_then(|_| file.flush());
                write.map_err(|source| StoreError::Io {
                    context: format!("cannot write lock file {}", lock_path.display()),
                    source,
                })?;
                Ok(ApplyLock::File {
                    file,
                    path: lock_path,
                })
            }
            Db::Postgres { pool, .. } => {
                let key = advisory_key(project);
                let mut conn = pool.acquire().await?.detach();
                loop {
                    let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                        .bind(key)
                        .fetch_one(&mut conn)
                        .await?;
                    if got {
                        break;
                    }
                    if Instant::now() >= deadline {
                        let who: Option<(i64, String, i64)> = sqlx::query_as(
                            "SELECT pid, host, since_ms FROM reconcile_lock WHERE project = $1",
                        )
                        .bind(project)
                        .fetch_optional(&mut conn)
                        .await?;
                        let _ = conn.close().await;
                        let who = who.map_or("holder unknown".to_string(), |(p, h, s)| {
                            holder_line(p, &h, s)
                        });
                        return Err(StoreError::Locked(format!(
                            "another apply holds the lock ({who}); retry later or pass --lock-timeout"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                sqlx::query(
                    "INSERT INTO reconcile_lock (project, pid, host, since_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (project) DO UPDATE SET pid = excluded.pid, host = excluded.host, since_ms = excluded.since_ms",
                )
                .bind(project)
                .bind(pid)
                .bind(&host)
                .bind(now_ms())
                .execute(&mut conn)
                .await?;
                Ok(ApplyLock::Advisory(Box::new(conn)))
            }
        }
    }

    /// Releases the lock now (dropping also releases it).
    pub async fn release(self) {
        match self {
            ApplyLock::File { file, .. } => {
                let _ = file.unlock();
            }
            ApplyLock::Advisory(conn) => {
                let _ = conn.close().await;
            }
        }
    }
}
