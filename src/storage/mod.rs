//! Storage: one data layer over SQLite (the embedded default) and PostgreSQL (Heroku's
//! `DATABASE_URL`), with sqlx runtime queries, so no database is needed at build time.
//!
//! The same SQL text runs on both (`$1` placeholders work in sqlx's SQLite driver); the
//! few dialect differences are spelled out where they occur. This module knows nothing of
//! HTTP. Pools are opened lazily, one per worker process after it starts: nothing here
//! ever crosses a fork.

pub mod budget;
pub mod listen;
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
    /// Connections per worker process; `None`: [`Settings::pool_size`]'s default.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pool_size: Option<u64>,
    /// A direct connection for what needs a session (LISTEN, the migration lock), when
    /// `url` goes through a transaction-mode pooler.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub listen_url: Option<DbUrl>,
    /// Reuse prepared statements (off behind PgBouncer < 1.21 in transaction mode).
    pub statement_cache: bool,
    /// Seconds to wait for a connection before answering 503.
    pub connect_timeout: u64,
    /// Seconds to wait for the migration lock before giving up.
    pub lock_timeout: u64,
    /// Allow SQLite on a Heroku dyno, whose disk is wiped at every restart.
    #[serde(default)]
    pub allow_ephemeral: bool,
}

impl Settings {
    /// Connections per worker process: as configured, else 4 on SQLite (writers share one
    /// file; more would only wait on its lock) and 2 on PostgreSQL (where most requests
    /// need no connection: the user check is served from memory).
    pub fn pool_size(&self) -> u32 {
        let default = match self.url.dialect() {
            Dialect::Sqlite => 4,
            Dialect::Postgres => 2,
        };
        self.pool_size.map_or(default, |n| n as u32)
    }

    /// Connections one worker may hold at once: its pool, and on PostgreSQL one more that
    /// LISTENs for the application's change notifications.
    pub fn connections_per_worker(&self) -> u32 {
        self.pool_size() + u32::from(self.url.dialect() == Dialect::Postgres)
    }

    /// The URL of what needs a session: the LISTEN connection and the migrations.
    pub fn listen_url(&self) -> &DbUrl {
        self.listen_url.as_ref().unwrap_or(&self.url)
    }
}

/// A process's connection pool, and what it has learnt about the database's health.
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
    /// Statements are prepared once per connection and reused (named): false behind a
    /// transaction-mode pooler that cannot keep them (`database.statement_cache`).
    prepares: bool,
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

/// Failures seen by this process's queries, in `CLOCK_MONOTONIC` ms (0: none yet).
///
/// Queries are ordered by when they started, not by when they ended: one that started
/// while the database was away may fail after another, started later, succeeded, and
/// must not make a database that is back look away again.
#[derive(Debug, Default)]
struct Health {
    /// When the latest-started query that failed because the database could not do its
    /// job (unreachable, disk full, read-only, its file gone) started, and when it failed.
    failure_started_ms: AtomicU64,
    failed_ms: AtomicU64,
    /// When the latest-started query that succeeded started.
    success_started_ms: AtomicU64,
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
                    .max_connections(cfg.pool_size())
                    .acquire_timeout(timeout)
                    .connect_lazy_with(pg_options(cfg, url, "corral worker")?),
            ),
            Dialect::Sqlite => {
                let mut options = SqlitePoolOptions::new()
                    .max_connections(cfg.pool_size())
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
        let db = Db {
            prepares: cfg.statement_cache || url.dialect() == Dialect::Sqlite,
            pool,
            health: Arc::default(),
            sqlite_path: url.sqlite_path().map(PathBuf::from),
        };
        if crate::metrics::enabled() && tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(publish_pool(db.pool.clone()));
        }
        Ok(db)
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

    /// Whether statements are prepared once per connection. When not (behind a
    /// transaction-mode pooler), [`on_db!`] runs each query in a transaction of its own,
    /// so that the pooler keeps one server connection for all of its protocol messages.
    pub(crate) fn prepares(&self) -> bool {
        self.prepares
    }

    /// `sqlx::query`, prepared once per connection where [`Db::prepares`].
    pub(crate) fn query<'a, DB: sqlx::Database + sqlx::database::HasStatementCache>(
        &self,
        sql: impl sqlx::SqlSafeStr,
    ) -> sqlx::query::Query<'a, DB, <DB as sqlx::Database>::Arguments> {
        sqlx::query(sql).persistent(self.prepares)
    }

    /// `sqlx::query_as`, prepared once per connection where [`Db::prepares`].
    pub(crate) fn query_as<'a, DB, O>(
        &self,
        sql: impl sqlx::SqlSafeStr,
    ) -> sqlx::query::QueryAs<'a, DB, O, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database + sqlx::database::HasStatementCache,
        O: for<'r> sqlx::FromRow<'r, DB::Row>,
    {
        sqlx::query_as(sql).persistent(self.prepares)
    }

    /// `sqlx::query_scalar`, prepared once per connection where [`Db::prepares`].
    pub(crate) fn query_scalar<'a, DB, O>(
        &self,
        sql: impl sqlx::SqlSafeStr,
    ) -> sqlx::query::QueryScalar<'a, DB, O, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database + sqlx::database::HasStatementCache,
        (O,): for<'r> sqlx::FromRow<'r, DB::Row>,
    {
        sqlx::query_scalar(sql).persistent(self.prepares)
    }

    /// Notes the outcome of a query that started at `started` (`CLOCK_MONOTONIC` ms): a
    /// failure that means the database cannot do its job (see [`is_unavailable`]; lock
    /// contention excluded) makes [`Db::healthy`] false for a few seconds, or until a
    /// query started after it succeeds.
    pub(crate) fn observe<T>(&self, r: &Result<T, sqlx::Error>, started: u64) {
        if matches!(r, Err(e) if !matches!(e, sqlx::Error::RowNotFound)) {
            crate::metrics::inc("db_client_errors_total", &[]);
        }
        let h = &self.health;
        match r {
            Err(e) if is_unavailable(e) && !is_contention(e) => {
                h.failure_started_ms.fetch_max(started.max(1), Relaxed);
                h.failed_ms
                    .store(crate::sys::monotonic_ms().max(1), Relaxed);
            }
            Ok(_) => drop(h.success_started_ms.fetch_max(started, Relaxed)),
            _ => {}
        }
    }

    /// Whether the database can do its job now, for readiness checks: it answers a
    /// query, no query failed for lack of it in the last few seconds, and (SQLite) its
    /// file is the one this process opened, writable, on a disk with room left.
    pub async fn healthy(&self) -> Result<(), StorageError> {
        let h = &self.health;
        let failed = h.failed_ms.load(Relaxed);
        if h.failure_started_ms.load(Relaxed) > h.success_started_ms.load(Relaxed)
            && crate::sys::monotonic_ms().saturating_sub(failed) < UNHEALTHY_FOR.as_millis() as u64
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
        on_db!(self, p => self.query("SELECT 1").execute(p).await.map(drop))
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

/// PostgreSQL connect options for `url` under `cfg`: the statement cache, and the
/// application name that `pg_stat_activity` shows.
pub fn pg_options(
    cfg: &Settings,
    url: &DbUrl,
    application_name: &str,
) -> Result<sqlx::postgres::PgConnectOptions, StorageError> {
    let opts = url.pg_options(application_name)?;
    Ok(if cfg.statement_cache {
        opts
    } else {
        // Unnamed statements only: a transaction-mode pooler may run the next statement
        // on another server connection, where a named one would not exist.
        opts.statement_cache_capacity(0)
    })
}

/// Whether `conn` reaches the server through a proxy or pooler: the server listens on
/// another TCP port than `url` names, `Some((server's port, the URL's))`.
///
/// A transaction-mode pooler (PgBouncer's `pool_mode = transaction`) hands a session to
/// other clients between statements, which breaks what needs a session (LISTEN, the
/// migration lock). Nothing a client can see tells it from a TCP proxy that keeps
/// sessions, reliably, so corral treats every such URL as a pooler for those, until
/// `database.listen_url` names a connection that keeps sessions (the same URL, for such
/// a proxy). A pooler on the server's own port, or a Unix socket, goes unnoticed. Only
/// the simple protocol is used: nothing is prepared.
pub(crate) async fn proxied(conn: &mut sqlx::PgConnection, url: &DbUrl) -> Option<(u16, u16)> {
    use sqlx::Row;
    let named = url.pg_options("").ok()?.get_port();
    let rows = sqlx::raw_sql("SELECT inet_server_port()")
        .fetch_all(conn)
        .await
        .ok()?;
    let server: i32 = rows.first()?.try_get::<Option<i32>, _>(0).ok().flatten()?;
    let server = u16::try_from(server).ok()?;
    (server != named).then_some((server, named))
}

/// Runs the same code against whichever pool `$db` holds, binding it to `$p`, and notes
/// the outcome in the database's health.
macro_rules! on_db {
    ($db:expr, $p:ident => $body:expr) => {{
        let db: &$crate::storage::Db = $db;
        let started = $crate::sys::monotonic_ms();
        let r = match db.pool() {
            // Unnamed statements take two round trips (parse, then bind and execute); in
            // a transaction, a transaction-mode pooler keeps both on one server connection.
            $crate::storage::Pool::Postgres(pool) if !db.prepares() => {
                async {
                    let mut tx = pool.begin().await?;
                    let r = {
                        let $p = &mut *tx;
                        $body
                    };
                    if r.is_ok() {
                        tx.commit().await?;
                    }
                    r
                }
                .await
            }
            $crate::storage::Pool::Postgres($p) => $body,
            $crate::storage::Pool::Sqlite($p) => $body,
        };
        db.observe(&r, started);
        r
    }};
}
pub(crate) use on_db;

/// Publishes the pool's connections in use and idle, every second, for the master to sum
/// (`db_client_connections`); ends with the worker.
async fn publish_pool(pool: Pool) {
    loop {
        let (size, idle) = match &pool {
            Pool::Postgres(p) => (p.size(), p.num_idle()),
            Pool::Sqlite(p) => (p.size(), p.num_idle()),
        };
        let idle = idle as u64;
        crate::metrics::gauge_set("db_client_connections", &[("state", "idle")], idle as i64);
        let used = u64::from(size).saturating_sub(idle);
        crate::metrics::gauge_set("db_client_connections", &[("state", "used")], used as i64);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
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
