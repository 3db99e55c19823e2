//! Stores behind one connection URL each: `sqlite://path` (the embedded default)
//! or `postgres://…`. Separate sqlx pools per backend rather than the `Any`
//! driver, which lacks the types and compile-time checks we want later.
//!
//! Only this module and its children write SQL.

pub mod commits;
pub mod lock;
mod migrations;
pub mod monitors;
pub mod offline;
pub mod online;
mod online_pg;
pub mod predictions;
pub mod registry;
mod sqlite_bulk;
pub mod state;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use thiserror::Error;

use crate::spec::env;

/// Errors opening or using a store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The URL names no supported backend.
    #[error("unsupported store URL `{0}`: use sqlite://PATH or postgres://USER@HOST:PORT/DB")]
    BadUrl(String),
    /// A `${VAR}` in the URL is unset.
    #[error("store URL references an unset variable: {0}")]
    Env(#[from] env::UnsetVar),
    /// Connecting failed.
    #[error("cannot open store {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The server did not answer in time.
    #[error("cannot open store {url}: no answer within {after:?}")]
    ConnectTimeout {
        /// The URL, password redacted.
        url: String,
        /// How long we waited.
        after: Duration,
    },
    /// Running migrations failed.
    #[error("cannot migrate store {url}: {source}")]
    Migrate {
        /// The URL, password redacted.
        url: String,
        /// The migrator's error.
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// Bulk work on the SQLite file, on a connection of its own
    /// (`sqlite_bulk`: table reads, loads, view writes, the prediction log), failed.
    #[error("SQLite store failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Filesystem trouble around the SQLite file or its lock.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(String),
    /// The apply lock is held by someone else.
    #[error("{0}")]
    Locked(String),
    /// The store runs on a Service that is not running or not reachable.
    #[error("{0}")]
    OnService(String),
    /// A background task of the executor panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// An online row's stored features do not parse: something other than
    /// a materialization wrote them. Answering with no features would hide it.
    #[error(
        "online view `{view}`, entity `{key}`: the stored features are not valid JSON ({source}); \
         write the view again: apply it with `online: false`, then with `online: true`"
    )]
    CorruptRow {
        /// The view.
        view: String,
        /// The entity key.
        key: String,
        /// The parser's error.
        source: serde_json::Error,
    },
}

/// A connection pool to one of the supported databases.
#[derive(Debug, Clone)]
pub enum Db {
    /// An embedded SQLite file.
    Sqlite {
        /// The pool.
        pool: SqlitePool,
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL server.
    Postgres {
        /// The pool.
        pool: PgPool,
        /// The URL as written (unresolved `${VAR}` kept), for messages.
        url: String,
    },
}

/// Runs the same code against whichever pool `db` holds; the body is compiled once
/// per backend, so one query text serves both (`$1` placeholders work on both).
#[macro_export]
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite { pool: $pool, .. } => $body,
            $crate::store::Db::Postgres { pool: $pool, .. } => $body,
        }
    };
}

/// How long connecting to a PostgreSQL server may take before the open fails
/// (a closed port fails at once, with the driver's cause).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an open waits for another process migrating the same store.
const MIGRATE_LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// The advisory lock key that serialises migrations of one PostgreSQL database.
const PG_MIGRATE_LOCK: i64 = 0x7265_636f_6e63_6d67; // "reconcmg"

impl Db {
    /// Opens (creating a SQLite file when missing) and migrates the store at `url`.
    /// Relative SQLite paths resolve against `base`. `${VAR}` values are
    /// percent-encoded for the URL part they land in
    /// ([`env::interpolate_url`]). Migrations run under a lock (a file lock
    /// beside a SQLite file, an advisory lock on PostgreSQL), so concurrent
    /// first opens of a fresh store apply each migration once.
    pub async fn open(url: &str, base: &Path) -> Result<Db, StoreError> {
        let resolved = env::interpolate_url(url)?;
        if let Some(rest) = resolved
            .strip_prefix("sqlite://")
            .or_else(|| resolved.strip_prefix("sqlite:"))
        {
            let rest = rest.split('?').next().unwrap_or(rest);
            let rest = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
            let path = if Path::new(rest.as_ref()).is_absolute() {
                PathBuf::from(rest.as_ref())
            } else {
                base.join(rest.as_ref())
            };
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                    context: format!("cannot create {}", parent.display()),
                    source,
                })?;
            }
            let opts = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
                // Rows the driver's thread may run ahead of the reader by (its
                // default is 50): a bulk read such as a materialization's then
                // hands rows over in long runs instead of waking the reader
                // every few rows.
                .row_buffer_size(1024);
            // The lock covers the first connection too: it creates the file and
            // switches it to WAL, which a concurrent opener sees as "database
            // is locked" without waiting on the busy timeout.
            let guard = lock::MigrateLock::acquire(&path, MIGRATE_LOCK_TIMEOUT).await?;
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts)
                .await
                .map_err(|source| StoreError::Connect {
                    url: env::redact_url(url),
                    source,
                })?;
            let migrated = migrations::sqlite().run(&pool).await;
            drop(guard);
            migrated.map_err(|source| StoreError::Migrate {
                url: env::redact_url(url),
                source,
            })?;
            Ok(Db::Sqlite { pool, path })
        } else if resolved.starts_with("postgres://") || resolved.starts_with("postgresql://") {
            let redacted = || env::redact_url(url);
            let opts =
                PgConnectOptions::from_str(&resolved).map_err(|source| StoreError::Connect {
                    url: redacted(),
                    source,
                })?;
            // One direct connection first: a refused or unreachable server
            // fails here with the driver's cause, where a pool would retry
            // until its timeout and report only that it timed out.
            let mut conn = match tokio::time::timeout(
                CONNECT_TIMEOUT,
                <sqlx::postgres::PgConnection as sqlx::Connection>::connect_with(&opts),
            )
            .await
            {
                Ok(Ok(conn)) => conn,
                Ok(Err(source)) => {
                    return Err(StoreError::Connect {
                        url: redacted(),
                        source,
                    });
                }
                Err(_) => {
                    return Err(StoreError::ConnectTimeout {
                        url: redacted(),
                        after: CONNECT_TIMEOUT,
                    });
                }
            };
            migrate_postgres(&mut conn)
                .await
                .map_err(|source| StoreError::Migrate {
                    url: redacted(),
                    source,
                })?;
            let _ = sqlx::Connection::close(conn).await;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect_with(opts)
                .await
                .map_err(|source| StoreError::Connect {
                    url: redacted(),
                    source,
                })?;
            Ok(Db::Postgres {
                pool,
                url: url.to_string(),
            })
        } else {
            Err(StoreError::BadUrl(env::redact_url(url)))
        }
    }

    /// Short name of the backend, for messages and benchmarks.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres { .. } => "postgres",
        }
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        with_pool!(self, p => p.close().await)
    }
}

/// Runs the PostgreSQL migrations holding a session advisory lock, so two
/// processes opening a fresh database apply each migration once (the lock
/// dies with the connection, so a crash leaves none behind).
async fn migrate_postgres(
    conn: &mut sqlx::postgres::PgConnection,
) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PG_MIGRATE_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = migrations::postgres().run(&mut *conn).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PG_MIGRATE_LOCK)
        .execute(&mut *conn)
        .await?;
    result
}

/// Opening a transaction that will write. SQLite allows one writer at a time, and a
/// deferred transaction that reads first fails with "database is locked" when it
/// later tries to write; `BEGIN IMMEDIATE` takes the write lock up front and waits
/// for it (busy timeout) instead.
pub trait BeginWrite {
    /// The database of the pool.
    type Database: sqlx::Database;
    /// Begins a transaction that is allowed to write.
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>,
    > + Send;
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>,
    > + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>,
    > + Send {
        self.begin()
    }
}

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Formats stored milliseconds for people.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".to_string())
}
