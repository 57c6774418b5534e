//! Storage: one data layer over SQLite (the embedded default) and PostgreSQL (Heroku's
//! `DATABASE_URL`), with sqlx runtime queries, so no database is needed at build time.
//!
//! The same SQL text runs on both (`$1` placeholders work in sqlx's SQLite driver); the
//! few dialect differences are spelled out where they occur. This module knows nothing of
//! HTTP. Pools are opened lazily, one per worker process after it starts: nothing here
//! ever crosses a fork.

pub mod cli;
pub mod migrate;
pub mod tokens;
pub mod users;

use crate::config::DatabaseConfig;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

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

/// A parsed `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl {
    pub dialect: Dialect,
    raw: String,
    /// The database file, for SQLite on disk (`None` for `:memory:`).
    pub sqlite_path: Option<PathBuf>,
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({})", self.redacted())
    }
}

impl DbUrl {
    pub fn parse(url: &str) -> Result<DbUrl, StorageError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbUrl {
                dialect: Dialect::Postgres,
                raw: url.to_string(),
                sqlite_path: None,
            });
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let path = rest.split('?').next().unwrap_or("");
            let sqlite_path = match path {
                "" | ":memory:" => None,
                p => Some(PathBuf::from(p)),
            };
            return Ok(DbUrl {
                dialect: Dialect::Sqlite,
                raw: url.to_string(),
                sqlite_path,
            });
        }
        Err(StorageError::Config(format!(
            "unsupported database URL {}: expected sqlite://PATH or postgres://…",
            crate::config::load::redact_url(url)
        )))
    }

    /// The URL with any password replaced, for messages.
    pub fn redacted(&self) -> String {
        crate::config::load::redact_url(&self.raw)
    }

    pub fn pg_options(&self, application_name: &str) -> Result<PgConnectOptions, StorageError> {
        let opts = PgConnectOptions::from_str(&self.raw)
            .map_err(|e| StorageError::Config(format!("bad DATABASE_URL: {e}")))?;
        Ok(opts.application_name(application_name))
    }

    /// WAL, a busy timeout and NORMAL synchronous so that many worker processes can share
    /// one file; the file is created when missing.
    pub fn sqlite_options(&self) -> Result<SqliteConnectOptions, StorageError> {
        let opts = if self.sqlite_path.is_none() {
            SqliteConnectOptions::from_str("sqlite::memory:")
        } else {
            SqliteConnectOptions::from_str(&self.raw)
        }
        .map_err(|e| StorageError::Config(format!("bad DATABASE_URL: {e}")))?;
        Ok(opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true))
    }
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
    pub fn open_lazy(cfg: &DatabaseConfig) -> Result<Db, StorageError> {
        let url = DbUrl::parse(&cfg.url)?;
        let timeout = Duration::from_secs(cfg.connect_timeout);
        Ok(match url.dialect {
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
#[macro_export]
macro_rules! on_db {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::storage::Db::Postgres($p) => $body,
            $crate::storage::Db::Sqlite($p) => $body,
        }
    };
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = DbUrl::parse("sqlite://corral.db").unwrap();
        assert_eq!(
            (u.dialect, u.sqlite_path.as_deref()),
            (Dialect::Sqlite, Some(std::path::Path::new("corral.db")))
        );
        let u = DbUrl::parse("sqlite:///tmp/x.db?mode=rwc").unwrap();
        assert_eq!(
            u.sqlite_path.as_deref(),
            Some(std::path::Path::new("/tmp/x.db"))
        );
        assert_eq!(DbUrl::parse("sqlite::memory:").unwrap().sqlite_path, None);
        let u = DbUrl::parse("postgres://u:pw@h:5432/db?sslmode=require").unwrap();
        assert_eq!(u.dialect, Dialect::Postgres);
        assert!(!u.redacted().contains("pw"));
        assert!(DbUrl::parse("mysql://x").is_err());
    }
}
