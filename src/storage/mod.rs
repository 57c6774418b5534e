//! Storage: one data layer over SQLite (the embedded default) and PostgreSQL (Heroku's
//! `DATABASE_URL`), with sqlx runtime queries, so no database is needed at build time.
//!
//! The same SQL text runs on both (`$1` placeholders work in sqlx's SQLite driver); the
//! few dialect differences are spelled out where they occur. This module knows nothing of
//! HTTP. Pools are opened lazily, one per worker process after it starts: nothing here
//! ever crosses a fork.

pub mod migrate;
pub mod url;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{PgPool, SqlitePool};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use migrate::MigrateMode;
pub use url::DbUrl;

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The directory name of its migrations.
    pub fn dir_name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }
}

/// `[database]`: where the data lives, how pools connect, and how migrations run at boot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://path` or `postgres://…` (Heroku's `DATABASE_URL`).
    pub url: DbUrl,
    /// What `serve` does with migrations at boot.
    pub migrate: MigrateMode,
    /// Load migrations from this directory instead of the ones built into the binary.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub migrations_dir: Option<PathBuf>,
    /// Connections per worker process.
    pub pool_size: u64,
    /// Seconds to wait for a connection before answering 503.
    pub connect_timeout: u64,
    /// Seconds to wait for the migration lock before giving up.
    pub lock_timeout: u64,
}

/// A worker's connection pool.
#[derive(Debug, Clone)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    /// A pool that connects on first use, so a worker boots (and serves 503s) even while
    /// the database is down.
    pub fn open_lazy(cfg: &Settings) -> Result<Db, StorageError> {
        let url = &cfg.url;
        let timeout = Duration::from_secs(cfg.connect_timeout);
        Ok(match url.dialect() {
            Dialect::Postgres => Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(cfg.pool_size as u32)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(url.pg_options("corral worker")?),
            ),
            Dialect::Sqlite => Db::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(cfg.pool_size as u32)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(url.sqlite_options()?),
            ),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// `SELECT 1`: is the database reachable right now?
    pub async fn ping(&self) -> Result<(), StorageError> {
        match self {
            Db::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(drop),
            Db::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(drop),
        }
        .map_err(StorageError::from)
    }
}

/// Runs the same code against whichever pool `$db` holds, binding it to `$p`.
macro_rules! on_db {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::storage::Db::Postgres($p) => $body,
            $crate::storage::Db::Sqlite($p) => $body,
        }
    };
}
pub(crate) use on_db;

/// What can go wrong in storage.
#[derive(Debug)]
pub enum StorageError {
    /// The database cannot be reached (down, refusing, timed out): callers answer 503.
    Unavailable(sqlx::Error),
    /// A query failed for another reason.
    Query(sqlx::Error),
    /// A row that must be unique already exists.
    Conflict(String),
    /// The URL or options are wrong.
    Config(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Unavailable(e) => write!(f, "database unavailable: {e}"),
            StorageError::Query(e) => write!(f, "database error: {e}"),
            StorageError::Conflict(what) => write!(f, "{what}"),
            StorageError::Config(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> StorageError {
        if is_unavailable(&e) {
            StorageError::Unavailable(e)
        } else if let Some(db) = e.as_database_error().filter(|d| d.is_unique_violation()) {
            StorageError::Conflict(db.message().to_string())
        } else {
            StorageError::Query(e)
        }
    }
}

/// Errors that mean "the database is not there right now", as opposed to a bad query.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => {
            // PostgreSQL: admin shutdown, crash shutdown, cannot connect now, too many
            // connections. SQLite: busy or locked past the busy timeout.
            matches!(
                d.code().as_deref(),
                Some(
                    "57P01" | "57P02" | "57P03" | "53300" | "08000" | "08003" | "08006" | "5" | "6"
                )
            )
        }
        _ => false,
    }
}

/// Unix time in seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
