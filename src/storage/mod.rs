//! Storage: one data layer over SQLite (the embedded default) and PostgreSQL (Heroku's
//! `DATABASE_URL`), with sqlx runtime queries, so no database is needed at build time.
//!
//! The same SQL text runs on both (`$1` placeholders work in sqlx's SQLite driver); the
//! few dialect differences are spelled out where they occur. This module knows nothing of
//! HTTP. Pools are opened lazily, one per worker process after it starts: nothing here
//! ever crosses a fork.

pub mod migrate;
mod sqlite_file;
pub mod url;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{PgPool, SqlitePool};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
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

/// A process's connection pool, and what it has learnt about the database's health.
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
    health: Arc<Health>,
    /// The database file, for SQLite on disk.
    sqlite_path: Option<PathBuf>,
}

/// The pool of one dialect.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// How long after a failed query the database counts as not able to do its job.
const UNHEALTHY_FOR: Duration = Duration::from_secs(5);

/// Failures seen by this process's queries.
#[derive(Debug, Default)]
struct Health {
    /// `CLOCK_MONOTONIC` ms of the last query that failed because the database could not
    /// do its job (unreachable, disk full, read-only, its file gone); 0 for none since
    /// the last success.
    last_failure_ms: AtomicU64,
}

impl Db {
    /// A pool that connects on first use, so a worker boots (and serves 503s) even while
    /// the database is down.
    ///
    /// A SQLite pool never creates the database file (the migration runner does, at the
    /// first boot), and it refuses a file that was deleted or replaced after the pool
    /// first opened it, and one this process may not write: connections to a new empty
    /// file or read-only connections would otherwise answer wrongly until a restart.
    pub fn open_lazy(cfg: &Settings) -> Result<Db, StorageError> {
        let url = &cfg.url;
        let timeout = Duration::from_secs(cfg.connect_timeout);
        let pool = match url.dialect() {
            Dialect::Postgres => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(cfg.pool_size as u32)
                    .acquire_timeout(timeout)
                    .connect_lazy_with(url.pg_options("corral worker")?),
            ),
            Dialect::Sqlite => {
                let mut options = SqlitePoolOptions::new()
                    .max_connections(cfg.pool_size as u32)
                    .acquire_timeout(timeout);
                if let Some(path) = url.sqlite_path() {
                    let file = Arc::new(sqlite_file::Guard::new(path));
                    let (on_connect, on_acquire) = (file.clone(), file);
                    options = options
                        .after_connect(move |_, _| {
                            let f = on_connect.clone();
                            Box::pin(async move { f.check_new_connection() })
                        })
                        .before_acquire(move |_, _| {
                            let f = on_acquire.clone();
                            Box::pin(async move { f.check_still_there().map(|()| true) })
                        });
                }
                Pool::Sqlite(options.connect_lazy_with(url.sqlite_options(false)?))
            }
        };
        Ok(Db {
            pool,
            health: Arc::default(),
            sqlite_path: url.sqlite_path().map(PathBuf::from),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Postgres(_) => Dialect::Postgres,
            Pool::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// The PostgreSQL pool, when this is one.
    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(_) => None,
        }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Notes a query's outcome: a failure that means the database cannot do its job
    /// (see [`is_unavailable`]; lock contention excluded) makes [`Db::healthy`] false
    /// for a few seconds, or until a query succeeds again.
    pub(crate) fn observe<T>(&self, r: &Result<T, sqlx::Error>) {
        let failed = &self.health.last_failure_ms;
        match r {
            Err(e) if is_unavailable(e) && !is_contention(e) => {
                failed.store(crate::sys::monotonic_ms().max(1), Relaxed)
            }
            Ok(_) if failed.load(Relaxed) != 0 => failed.store(0, Relaxed),
            _ => {}
        }
    }

    /// Whether the database can do its job now, for readiness checks: it answers a
    /// query, no query failed for lack of it in the last few seconds, and (SQLite) its
    /// file is the one this process opened, writable, on a disk with room left.
    pub async fn healthy(&self) -> Result<(), StorageError> {
        let last = self.health.last_failure_ms.load(Relaxed);
        if last != 0
            && crate::sys::monotonic_ms().saturating_sub(last) < UNHEALTHY_FOR.as_millis() as u64
        {
            return Err(StorageError::Unhealthy(format!(
                "a query failed for lack of the database less than {} s ago",
                UNHEALTHY_FOR.as_secs()
            )));
        }
        if let Some(path) = &self.sqlite_path {
            sqlite_file::writable_with_room(path).map_err(StorageError::Unhealthy)?;
        }
        self.ping().await
    }

    /// `SELECT 1`: is the database reachable right now?
    pub async fn ping(&self) -> Result<(), StorageError> {
        on_db!(self, p => sqlx::query("SELECT 1").execute(p).await.map(drop))
            .map_err(StorageError::from)
    }

    /// Closes every connection (one-shot commands, before they exit).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(p) => p.close().await,
            Pool::Sqlite(p) => p.close().await,
        }
    }
}

/// Runs the same code against whichever pool `$db` holds, binding it to `$p`, and notes
/// the outcome in the database's health.
macro_rules! on_db {
    ($db:expr, $p:ident => $body:expr) => {{
        let db: &$crate::storage::Db = $db;
        let r = match db.pool() {
            $crate::storage::Pool::Postgres($p) => $body,
            $crate::storage::Pool::Sqlite($p) => $body,
        };
        db.observe(&r);
        r
    }};
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
    /// The database answers, but cannot do its job (readiness).
    Unhealthy(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Unavailable(e) => write!(f, "database unavailable: {e}"),
            StorageError::Query(e) => write!(f, "database error: {e}"),
            StorageError::Conflict(what) => write!(f, "{what}"),
            StorageError::Config(m) => f.write_str(m),
            StorageError::Unhealthy(m) => write!(f, "database not ready: {m}"),
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

/// Errors that mean "the database cannot do its job right now", as opposed to a bad
/// query: callers answer 503 with `Retry-After`, and service resumes by itself.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => match d.code().as_deref().map(|c| (c, c.parse::<i32>())) {
            // SQLite (extended result codes): busy or locked past the busy timeout,
            // read-only, I/O error, disk full, cannot open, corrupt or not a database.
            Some((_, Ok(code))) => matches!(code & 0xff, 5 | 6 | 8 | 10 | 11 | 13 | 14 | 26),
            // PostgreSQL: admin shutdown, crash shutdown, cannot connect now, too many
            // connections, connection failures, read-only transaction, disk full.
            Some((state, Err(_))) => matches!(
                state,
                "57P01"
                    | "57P02"
                    | "57P03"
                    | "53300"
                    | "08000"
                    | "08003"
                    | "08006"
                    | "25006"
                    | "53100"
            ),
            None => false,
        },
        _ => false,
    }
}

/// Unavailability that is only contention (a lock held too long, every connection in
/// use): it does not make the database unhealthy.
fn is_contention(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => match d.code().as_deref() {
            Some("53300") => true,
            Some(c) => c
                .parse::<i32>()
                .is_ok_and(|code| matches!(code & 0xff, 5 | 6)),
            None => false,
        },
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
