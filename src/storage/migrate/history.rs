//! The history table and the dedicated connection that reads and writes it.
//!
//! `corral_migrations` records version, name, checksum, state (`applied`, `running`,
//! `failed`), start and finish times, duration, `host:pid` and any error. The runner uses
//! its own connection, never a pool, so a session lock (PostgreSQL) stays on it.

use super::{source::Migration, MigrateError, TABLE};
use crate::storage::{DbUrl, Dialect};
use sqlx::{Connection, PgConnection, SqliteConnection};
use std::time::Duration;

/// A row of the history table.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub state: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    pub applied_by: String,
    pub error: Option<String>,
}

/// A dedicated connection to the database being migrated.
pub enum Conn {
    Pg(PgConnection),
    Lite(SqliteConnection),
}

macro_rules! both {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            Conn::Pg($c) => $body,
            Conn::Lite($c) => $body,
        }
    };
}

impl Conn {
    /// Connects; a SQLite file is created only if `create` (otherwise a missing file is
    /// an error that says so).
    pub async fn open(url: &DbUrl, timeout: Duration, create: bool) -> Result<Conn, MigrateError> {
        if let Some(path) = url.sqlite_path().filter(|p| !create && !p.exists()) {
            return Err(MigrateError::Database(format!(
                "the database file {} does not exist",
                path.display()
            )));
        }
        let who = format!("corral migrate {}", whoami());
        let fut = async {
            match url.dialect() {
                Dialect::Postgres => PgConnection::connect_with(&url.pg_options(&who)?)
                    .await
                    .map(Conn::Pg),
                Dialect::Sqlite => SqliteConnection::connect_with(&url.sqlite_options(create)?)
                    .await
                    .map(Conn::Lite),
            }
            .map_err(|e| {
                MigrateError::Database(format!("cannot connect to {}: {e}", url.redacted()))
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(MigrateError::Database(format!(
                    "cannot connect to {}: timed out after {} s",
                    url.redacted(),
                    timeout.as_secs()
                )))
            })
    }

    pub(super) async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let q = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()));
        both!(self, c => q.execute(c).await.map(drop))
    }

    pub(super) async fn begin(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Pg(_) => self.exec("BEGIN").await,
            // IMMEDIATE takes the write lock now, waiting for busy_timeout, instead of
            // failing with SQLITE_BUSY at the first write (sqlx #853).
            Conn::Lite(_) => self.exec("BEGIN IMMEDIATE").await,
        }
    }

    pub(super) async fn ensure_table(&mut self) -> Result<(), sqlx::Error> {
        self.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (
                version     BIGINT PRIMARY KEY,
                name        TEXT NOT NULL,
                checksum    TEXT NOT NULL,
                state       TEXT NOT NULL,
                started_at  TEXT NOT NULL,
                finished_at TEXT,
                duration_ms BIGINT,
                applied_by  TEXT NOT NULL,
                error       TEXT
            )"
        ))
        .await
    }

    /// The history, or nothing when the table does not exist yet.
    pub(super) async fn history(&mut self) -> Result<Vec<Applied>, MigrateError> {
        let exists_sql = match self {
            Conn::Pg(_) => format!("SELECT CAST(to_regclass('{TABLE}') IS NOT NULL AS BOOLEAN)"),
            Conn::Lite(_) => format!("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{TABLE}')"),
        };
        let exists = both!(self, c => sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(exists_sql)).fetch_one(c).await)
            .map_err(db_err("reading the migration history"))?;
        if !exists {
            return Ok(vec![]);
        }
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<i64>,
            String,
            Option<String>,
        );
        let sql = format!("SELECT version, name, checksum, state, started_at, finished_at, duration_ms, applied_by, error FROM {TABLE} ORDER BY version");
        let rows: Vec<Row> =
            both!(self, c => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql)).fetch_all(c).await)
                .map_err(db_err("reading the migration history"))?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    version,
                    name,
                    checksum,
                    state,
                    started_at,
                    finished_at,
                    duration_ms,
                    applied_by,
                    error,
                )| Applied {
                    version,
                    name,
                    checksum,
                    state,
                    started_at,
                    finished_at,
                    duration_ms,
                    applied_by,
                    error,
                },
            )
            .collect())
    }

    pub(super) async fn record(
        &mut self,
        m: &Migration,
        state: &str,
        started: &str,
        finished: Option<&str>,
        duration_ms: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO {TABLE} (version, name, checksum, state, started_at, finished_at, duration_ms, applied_by, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        let by = whoami();
        both!(self, c => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(m.version).bind(&m.name).bind(&m.checksum).bind(state).bind(started)
            .bind(finished).bind(duration_ms).bind(&by).bind(error)
            .execute(c).await.map(drop))
    }

    pub(super) async fn set_state(
        &mut self,
        version: i64,
        state: &str,
        finished: Option<&str>,
        duration_ms: Option<i64>,
        error: Option<&str>,
        checksum: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let sql = format!(
            "UPDATE {TABLE} SET state = $2, finished_at = $3, duration_ms = $4, error = $5, checksum = COALESCE($6, checksum) WHERE version = $1"
        );
        both!(self, c => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(version).bind(state).bind(finished).bind(duration_ms).bind(error).bind(checksum)
            .execute(c).await.map(drop))
    }

    pub(super) async fn forget(&mut self, version: i64) -> Result<(), sqlx::Error> {
        let sql = format!("DELETE FROM {TABLE} WHERE version = $1");
        both!(self, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(version).execute(c).await.map(drop))
    }

    /// Invalid indexes left by a failed `CREATE INDEX CONCURRENTLY` (PostgreSQL only).
    pub(super) async fn invalid_indexes(&mut self) -> Vec<String> {
        match self {
            Conn::Pg(c) => sqlx::query_scalar::<_, String>(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid",
            )
            .fetch_all(c)
            .await
            .unwrap_or_default(),
            Conn::Lite(_) => vec![],
        }
    }

    pub(super) async fn close(self) {
        let _ = both!(self, c => c.close().await);
    }
}

pub(super) fn db_err(what: &'static str) -> impl Fn(sqlx::Error) -> MigrateError {
    move |e| MigrateError::Database(format!("{what}: {e}"))
}

/// `host:pid`, recorded as `applied_by` and shown to lock waiters.
pub fn whoami() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{host}:{}", std::process::id())
}

/// RFC 3339 UTC with milliseconds.
pub(super) fn timestamp() -> String {
    crate::logging::rfc3339_now()
}
