//! The migration runner: embedded SQL migrations per dialect, applied in order, each
//! exactly once, under a lock, each in one transaction with its history row.
//!
//! - **Sources.** `src/storage/migrations/{postgres,sqlite}/<version>_<name>.up.sql` (and
//!   `.down.sql` when reversible), embedded at build time (`src/build.rs`), or read from
//!   `--migrations-dir` at run time. A first line `-- no-transaction` opts out of the
//!   transaction (for `CREATE INDEX CONCURRENTLY`); the format is sqlx's.
//! - **History.** `corral_migrations` records version, name, the SHA-256 of the normalised
//!   text (BOM removed, CRLF → LF, so a checkout on Windows does not "drift"), state
//!   (`applied`, `running`, `failed`), start and finish times, duration, host and pid.
//! - **Nothing half-done.** A transactional migration's statements and its history row
//!   commit together or not at all. A non-transactional one records `running` first, then
//!   `applied` or `failed`; a `running` or `failed` row stops every later run until
//!   `corral migrate resolve` settles it, and the error prints that exact command.
//! - **Drift.** An applied migration whose file changed, or an applied version unknown to
//!   this binary, stops the run with a message saying which.
//!
//! The runner opens its own connection (never a pool), so it can run in the short-lived
//! `corral migrate` child the master starts at boot.

mod lock;
pub mod split;

use super::{DbUrl, Dialect, StorageError};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, SqliteConnection};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::{info, warn};

pub use lock::lock_path;

/// A migration as built into the binary (see `src/build.rs`).
pub struct Embedded {
    pub version: i64,
    pub name: &'static str,
    pub up: &'static str,
    pub down: Option<&'static str>,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The history table.
pub const TABLE: &str = "corral_migrations";

/// One migration, ready to run.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    pub up: String,
    pub down: Option<String>,
    pub no_transaction: bool,
    pub checksum: String,
}

impl Migration {
    fn new(version: i64, name: &str, up: &str, down: Option<&str>) -> Migration {
        let up = normalise(up);
        let no_transaction = up
            .lines()
            .take_while(|l| l.trim_start().starts_with("--") || l.trim().is_empty())
            .any(|l| l.trim() == "-- no-transaction");
        Migration {
            version,
            name: name.to_string(),
            checksum: checksum(&up),
            up,
            down: down.map(normalise),
            no_transaction,
        }
    }

    /// `0002_add_index`
    pub fn label(&self) -> String {
        label(self.version, &self.name)
    }
}

fn label(version: i64, name: &str) -> String {
    format!("{version:04}_{name}")
}

/// BOM removed, CRLF and CR turned into LF.
pub fn normalise(text: &str) -> String {
    text.strip_prefix('\u{feff}')
        .unwrap_or(text)
        .replace("\r\n", "\n")
        .replace('\r', "\n")
}

pub fn checksum(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The migrations for `dialect`: from `dir` when given (its `postgres/` or `sqlite/`
/// subdirectory if present, else the directory itself), else the embedded ones.
pub fn load(dialect: Dialect, dir: Option<&Path>) -> Result<Vec<Migration>, MigrateError> {
    let Some(dir) = dir else {
        let embedded = match dialect {
            Dialect::Postgres => POSTGRES,
            Dialect::Sqlite => SQLITE,
        };
        return Ok(embedded
            .iter()
            .map(|e| Migration::new(e.version, e.name, e.up, e.down))
            .collect());
    };
    let sub = dir.join(dialect.dir_name());
    let dir = if sub.is_dir() { sub } else { dir.to_path_buf() };
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        MigrateError::Other(format!(
            "cannot read migrations directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut files: std::collections::BTreeMap<i64, (String, Option<String>, Option<String>)> =
        Default::default();
    for entry in entries.flatten() {
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".sql") else {
            continue;
        };
        let (stem, down) = match (stem.strip_suffix(".up"), stem.strip_suffix(".down")) {
            (Some(s), _) => (s, false),
            (_, Some(s)) => (s, true),
            _ => (stem, false),
        };
        let bad = || {
            MigrateError::Other(format!(
                "{}: expected <version>_<name>.up.sql, .down.sql or .sql",
                path.display()
            ))
        };
        let (v, name) = stem.split_once('_').ok_or_else(bad)?;
        let v: i64 = v.parse().map_err(|_| bad())?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| MigrateError::Other(format!("{}: {e}", path.display())))?;
        let slot = files
            .entry(v)
            .or_insert_with(|| (name.to_string(), None, None));
        if slot.0 != name {
            return Err(MigrateError::Other(format!(
                "version {v} has two names in {}: {} and {name}",
                dir.display(),
                slot.0
            )));
        }
        if down {
            slot.2 = Some(text);
        } else {
            slot.1 = Some(text);
        }
    }
    files
        .into_iter()
        .map(|(v, (name, up, down))| match up {
            Some(up) => Ok(Migration::new(v, &name, &up, down.as_deref())),
            None => Err(MigrateError::Other(format!(
                "{}: version {v} has a down file but no up file",
                dir.display()
            ))),
        })
        .collect()
}

/// What can stop a migration command, and its exit code.
#[derive(Debug)]
pub enum MigrateError {
    /// The database cannot be reached or refused a bookkeeping query. Exit 1.
    Database(String),
    /// Exit 2 (`check`): migrations are pending.
    Pending(Vec<String>),
    /// Exit 3: an applied migration changed, or is unknown to this binary.
    Drift(Vec<String>),
    /// Exit 4: the lock was not obtained in time.
    LockTimeout {
        waited: Duration,
        holder: Option<String>,
    },
    /// Exit 5: a migration failed now, or is recorded as failed or unfinished.
    Failed {
        version: i64,
        name: String,
        statement: Option<String>,
        error: String,
        recorded: bool,
    },
    /// Exit 1: anything else (bad directory, missing down file, …).
    Other(String),
}

impl MigrateError {
    pub fn exit_code(&self) -> u8 {
        match self {
            MigrateError::Database(_) | MigrateError::Other(_) => 1,
            MigrateError::Pending(_) => 2,
            MigrateError::Drift(_) => 3,
            MigrateError::LockTimeout { .. } => 4,
            MigrateError::Failed { .. } => 5,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            MigrateError::Database(_) => "database",
            MigrateError::Pending(_) => "pending",
            MigrateError::Drift(_) => "drift",
            MigrateError::LockTimeout { .. } => "lock_timeout",
            MigrateError::Failed { .. } => "failed",
            MigrateError::Other(_) => "error",
        }
    }
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Database(m) | MigrateError::Other(m) => f.write_str(m),
            MigrateError::Pending(list) => write!(f, "pending migrations: {}", list.join(", ")),
            MigrateError::Drift(list) => f.write_str(&list.join("; ")),
            MigrateError::LockTimeout { waited, holder } => write!(
                f,
                "gave up waiting for the migration lock after {} s; it is held by {}",
                waited.as_secs(),
                holder.as_deref().unwrap_or("another process")
            ),
            MigrateError::Failed {
                version,
                name,
                statement,
                error,
                recorded,
            } => {
                write!(f, "migration {} failed", label(*version, name))?;
                if let Some(s) = statement {
                    write!(f, " at statement `{}`", one_line(s, 160))?;
                }
                write!(f, ": {error}")?;
                if *recorded {
                    write!(
                        f,
                        ". It ran outside a transaction and may be half-applied: fix the database by hand, then run \
                         `corral migrate resolve {version} --applied` (if its changes are now complete) or \
                         `corral migrate resolve {version} --rolled-back` (if they are undone, to run it again)"
                    )
                } else {
                    write!(f, "; it was rolled back and nothing of it remains")
                }
            }
        }
    }
}

impl std::error::Error for MigrateError {}

impl From<StorageError> for MigrateError {
    fn from(e: StorageError) -> MigrateError {
        MigrateError::Database(e.to_string())
    }
}

fn one_line(s: &str, max: usize) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

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

/// Where a migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    /// Applied, but its file has changed since.
    Drifted,
    /// Applied, but this binary does not know it.
    Missing,
    Failed,
    /// Started outside a transaction and never finished (the process died).
    Running,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Drifted => "drifted",
            State::Missing => "missing",
            State::Failed => "failed",
            State::Running => "running",
        }
    }
}

/// One line of `migrate status`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub version: i64,
    pub name: String,
    pub state: State,
    pub no_transaction: bool,
    pub applied: Option<Applied>,
}

/// Joins what the binary knows with what the database recorded.
pub fn compare(known: &[Migration], rows: &[Applied]) -> Vec<Entry> {
    let mut out: Vec<Entry> = known
        .iter()
        .map(|m| {
            let row = rows.iter().find(|r| r.version == m.version);
            let state = match row {
                None => State::Pending,
                Some(r) if r.state == "failed" => State::Failed,
                Some(r) if r.state == "running" => State::Running,
                Some(r) if r.checksum != m.checksum => State::Drifted,
                Some(_) => State::Applied,
            };
            Entry {
                version: m.version,
                name: m.name.clone(),
                state,
                no_transaction: m.no_transaction,
                applied: row.cloned(),
            }
        })
        .collect();
    for r in rows
        .iter()
        .filter(|r| !known.iter().any(|m| m.version == r.version))
    {
        let state = match r.state.as_str() {
            "failed" => State::Failed,
            "running" => State::Running,
            _ => State::Missing,
        };
        out.push(Entry {
            version: r.version,
            name: r.name.clone(),
            state,
            no_transaction: false,
            applied: Some(r.clone()),
        });
    }
    out.sort_by_key(|e| e.version);
    out
}

/// Refuses to go on past a failed/running migration, drift, or unknown versions.
fn guard(entries: &[Entry], known: &[Migration]) -> Result<(), MigrateError> {
    if let Some(e) = entries
        .iter()
        .find(|e| matches!(e.state, State::Failed | State::Running))
    {
        let a = e.applied.as_ref().expect("failed rows exist");
        let what = if e.state == State::Running {
            "was interrupted (state running)"
        } else {
            "is recorded as failed"
        };
        return Err(MigrateError::Failed {
            version: e.version,
            name: e.name.clone(),
            statement: None,
            error: format!(
                "it {what} since {}{}",
                a.started_at,
                a.error
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            recorded: true,
        });
    }
    let mut drift = vec![];
    for e in entries {
        match e.state {
            State::Drifted => {
                let a = e.applied.as_ref().expect("drifted rows exist");
                let now = known.iter().find(|m| m.version == e.version).map(|m| &m.checksum[..12]).unwrap_or("");
                drift.push(format!(
                    "migration {} was changed after it was applied (checksum {} recorded, {now} now): restore the file, or put the change in a new migration",
                    label(e.version, &e.name),
                    &a.checksum[..a.checksum.len().min(12)]
                ));
            }
            State::Missing => drift.push(format!(
                "migration {} is applied in the database but unknown to this binary (an older release, or a deleted file)",
                label(e.version, &e.name)
            )),
            _ => {}
        }
    }
    if drift.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::Drift(drift))
    }
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
    pub async fn open(url: &DbUrl, timeout: Duration) -> Result<Conn, MigrateError> {
        let who = format!("corral migrate {}", whoami());
        let fut = async {
            match url.dialect {
                Dialect::Postgres => PgConnection::connect_with(&url.pg_options(&who)?)
                    .await
                    .map(Conn::Pg),
                Dialect::Sqlite => SqliteConnection::connect_with(&url.sqlite_options()?)
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

    async fn exec(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let q = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()));
        both!(self, c => q.execute(c).await.map(drop))
    }

    async fn begin(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Pg(_) => self.exec("BEGIN").await,
            // IMMEDIATE takes the write lock now, waiting for busy_timeout, instead of
            // failing with SQLITE_BUSY at the first write (sqlx #853).
            Conn::Lite(_) => self.exec("BEGIN IMMEDIATE").await,
        }
    }

    async fn ensure_table(&mut self) -> Result<(), sqlx::Error> {
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
    async fn history(&mut self) -> Result<Vec<Applied>, MigrateError> {
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

    async fn record(
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

    async fn set_state(
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

    async fn forget(&mut self, version: i64) -> Result<(), sqlx::Error> {
        let sql = format!("DELETE FROM {TABLE} WHERE version = $1");
        both!(self, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(version).execute(c).await.map(drop))
    }

    /// Invalid indexes left by a failed `CREATE INDEX CONCURRENTLY` (PostgreSQL only).
    async fn invalid_indexes(&mut self) -> Vec<String> {
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

    async fn close(self) {
        let _ = both!(self, c => c.close().await);
    }
}

fn db_err(what: &'static str) -> impl Fn(sqlx::Error) -> MigrateError {
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
fn timestamp() -> String {
    crate::logging::rfc3339_now()
}

/// What the runner needs to know.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: DbUrl,
    pub dir: Option<PathBuf>,
    pub lock_timeout: Duration,
    pub connect_timeout: Duration,
}

/// The migration lock, held for the duration of a command.
enum Held {
    Pg,
    File(#[allow(dead_code)] lock::FileLock),
    None,
}

/// A connection holding the migration lock.
pub struct Session {
    conn: Conn,
    held: Held,
    pub known: Vec<Migration>,
}

impl Session {
    /// Connects and takes the lock (the history is read only after this, never before).
    pub async fn lock(t: &Target) -> Result<Session, MigrateError> {
        let known = load(t.url.dialect, t.dir.as_deref())?;
        let mut conn = Conn::open(&t.url, t.connect_timeout).await?;
        let held = match (&mut conn, &t.url.sqlite_path) {
            (Conn::Pg(c), _) => match lock::pg_lock(c, t.lock_timeout).await {
                Ok(()) => Held::Pg,
                Err(e) => {
                    conn.close().await;
                    return Err(e);
                }
            },
            (Conn::Lite(_), Some(path)) => {
                Held::File(lock::file_lock(path, t.lock_timeout, &whoami()).await?)
            }
            (Conn::Lite(_), None) => Held::None,
        };
        let mut s = Session { conn, held, known };
        if let Err(e) = s.conn.ensure_table().await {
            s.release().await;
            return Err(MigrateError::Database(format!("creating {TABLE}: {e}")));
        }
        Ok(s)
    }

    /// Releases the lock and closes the connection. On PostgreSQL an unlock that fails
    /// does not matter: closing the session releases it too.
    pub async fn release(mut self) {
        if let (Held::Pg, Conn::Pg(c)) = (&self.held, &mut self.conn) {
            let _ = lock::pg_unlock(c).await;
        }
        self.conn.close().await;
    }

    pub async fn entries(&mut self) -> Result<Vec<Entry>, MigrateError> {
        let rows = self.conn.history().await?;
        Ok(compare(&self.known, &rows))
    }

    /// Applies pending migrations up to `to` (inclusive). Returns what was applied.
    pub async fn apply(
        &mut self,
        to: Option<i64>,
    ) -> Result<Vec<(Migration, Duration)>, MigrateError> {
        let entries = self.entries().await?;
        guard(&entries, &self.known)?;
        let newest_applied = entries
            .iter()
            .filter(|e| e.state == State::Applied)
            .map(|e| e.version)
            .max();
        let pending: Vec<Migration> = self
            .known
            .iter()
            .filter(|m| {
                entries
                    .iter()
                    .any(|e| e.version == m.version && e.state == State::Pending)
            })
            .filter(|m| to.is_none_or(|t| m.version <= t))
            .cloned()
            .collect();
        let mut done = vec![];
        for m in pending {
            if newest_applied.is_some_and(|n| m.version < n) {
                warn!(
                    "Applying {} out of order: a later migration is already applied",
                    m.label()
                );
            }
            let took = self.run_one(&m).await?;
            info!(
                version = m.version,
                duration_ms = took.as_millis() as u64,
                "Applied migration {} in {} ms",
                m.label(),
                took.as_millis()
            );
            done.push((m, took));
        }
        Ok(done)
    }

    async fn run_one(&mut self, m: &Migration) -> Result<Duration, MigrateError> {
        let started_at = timestamp();
        let t0 = Instant::now();
        let statements = split::split(&m.up);
        let fail = |statement: Option<&str>, error: String, recorded: bool| MigrateError::Failed {
            version: m.version,
            name: m.name.clone(),
            statement: statement.map(String::from),
            error,
            recorded,
        };
        if !m.no_transaction {
            self.conn
                .begin()
                .await
                .map_err(|e| fail(None, format!("cannot begin: {e}"), false))?;
            for s in &statements {
                if let Err(e) = self.conn.exec(s).await {
                    let _ = self.conn.exec("ROLLBACK").await;
                    return Err(fail(Some(s), e.to_string(), false));
                }
            }
            let took = t0.elapsed();
            let ms = took.as_millis() as i64;
            let r = self
                .conn
                .record(
                    m,
                    "applied",
                    &started_at,
                    Some(&timestamp()),
                    Some(ms),
                    None,
                )
                .await;
            if let Err(e) = r {
                let _ = self.conn.exec("ROLLBACK").await;
                return Err(fail(None, format!("recording it in {TABLE}: {e}"), false));
            }
            self.conn
                .exec("COMMIT")
                .await
                .map_err(|e| fail(None, format!("commit failed: {e}"), false))?;
            return Ok(took);
        }
        // Outside a transaction: say we started, so a crash half-way is visible.
        self.conn
            .record(m, "running", &started_at, None, None, None)
            .await
            .map_err(|e| fail(None, format!("recording it in {TABLE}: {e}"), false))?;
        for s in &statements {
            if let Err(e) = self.conn.exec(s).await {
                let msg = e.to_string();
                let ms = t0.elapsed().as_millis() as i64;
                let _ = self
                    .conn
                    .set_state(
                        m.version,
                        "failed",
                        Some(&timestamp()),
                        Some(ms),
                        Some(&format!("at `{}`: {msg}", one_line(s, 160))),
                        None,
                    )
                    .await;
                return Err(fail(Some(s), msg, true));
            }
        }
        let invalid = self.conn.invalid_indexes().await;
        let took = t0.elapsed();
        let ms = took.as_millis() as i64;
        if !invalid.is_empty() {
            let msg = format!("invalid indexes left behind: {}", invalid.join(", "));
            let _ = self
                .conn
                .set_state(
                    m.version,
                    "failed",
                    Some(&timestamp()),
                    Some(ms),
                    Some(&msg),
                    None,
                )
                .await;
            return Err(fail(None, msg, true));
        }
        self.conn
            .set_state(
                m.version,
                "applied",
                Some(&timestamp()),
                Some(ms),
                None,
                None,
            )
            .await
            .map_err(|e| fail(None, format!("recording it in {TABLE}: {e}"), true))?;
        Ok(took)
    }

    /// Reverts applied migrations newer than `to` (default: only the newest), newest
    /// first, each with its down file and its history row in one transaction. Refuses
    /// before doing anything if one of them has no down file.
    pub async fn revert(&mut self, to: Option<i64>) -> Result<Vec<Migration>, MigrateError> {
        let entries = self.entries().await?;
        guard(&entries, &self.known)?;
        let mut applied: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.state == State::Applied)
            .collect();
        applied.sort_by_key(|e| std::cmp::Reverse(e.version));
        let chosen: Vec<i64> = match to {
            Some(t) => applied
                .iter()
                .filter(|e| e.version > t)
                .map(|e| e.version)
                .collect(),
            None => applied.first().map(|e| vec![e.version]).unwrap_or_default(),
        };
        let migrations: Vec<Migration> = chosen
            .iter()
            .map(|v| {
                self.known
                    .iter()
                    .find(|m| m.version == *v)
                    .cloned()
                    .expect("applied entries are known")
            })
            .collect();
        if let Some(m) = migrations.iter().find(|m| m.down.is_none()) {
            return Err(MigrateError::Other(format!(
                "cannot revert {}: it has no down file; nothing was reverted",
                m.label()
            )));
        }
        for m in &migrations {
            let down = m.down.as_deref().expect("checked above");
            let fail = |s: Option<&str>, e: String| MigrateError::Failed {
                version: m.version,
                name: m.name.clone(),
                statement: s.map(String::from),
                error: format!("revert: {e}"),
                recorded: false,
            };
            self.conn
                .begin()
                .await
                .map_err(|e| fail(None, e.to_string()))?;
            for s in split::split(down) {
                if let Err(e) = self.conn.exec(&s).await {
                    let _ = self.conn.exec("ROLLBACK").await;
                    return Err(fail(Some(&s), e.to_string()));
                }
            }
            if let Err(e) = self.conn.forget(m.version).await {
                let _ = self.conn.exec("ROLLBACK").await;
                return Err(fail(None, e.to_string()));
            }
            self.conn
                .exec("COMMIT")
                .await
                .map_err(|e| fail(None, e.to_string()))?;
            info!(version = m.version, "Reverted migration {}", m.label());
        }
        Ok(migrations)
    }

    /// Settles a failed or interrupted migration after a manual fix.
    pub async fn resolve(&mut self, version: i64, applied: bool) -> Result<String, MigrateError> {
        let rows = self.conn.history().await?;
        let Some(row) = rows.iter().find(|r| r.version == version) else {
            return Err(MigrateError::Other(format!(
                "migration {version} has no history row; nothing to resolve"
            )));
        };
        if row.state == "applied" {
            return Err(MigrateError::Other(format!(
                "migration {} is applied, not failed; nothing to resolve",
                label(version, &row.name)
            )));
        }
        let l = label(version, &row.name);
        if applied {
            let checksum = self
                .known
                .iter()
                .find(|m| m.version == version)
                .map(|m| m.checksum.clone());
            self.conn
                .set_state(
                    version,
                    "applied",
                    Some(&timestamp()),
                    row.duration_ms,
                    Some("resolved by hand as applied"),
                    checksum.as_deref(),
                )
                .await
                .map_err(db_err("updating the history"))?;
            Ok(format!("Marked {l} as applied"))
        } else {
            self.conn
                .forget(version)
                .await
                .map_err(db_err("updating the history"))?;
            Ok(format!("Forgot {l}; the next `apply` runs it again"))
        }
    }
}

/// Reads the history without taking the lock (status, plan, check).
pub async fn read_entries(t: &Target) -> Result<(Vec<Entry>, Vec<Migration>), MigrateError> {
    let known = load(t.url.dialect, t.dir.as_deref())?;
    let mut conn = Conn::open(&t.url, t.connect_timeout).await?;
    let rows = conn.history().await;
    conn.close().await;
    Ok((compare(&known, &rows?), known))
}

/// Who holds the migration lock now, if anyone.
pub async fn lock_holder(t: &Target) -> Result<Option<String>, MigrateError> {
    match (t.url.dialect, &t.url.sqlite_path) {
        (Dialect::Sqlite, Some(p)) => lock::file_lock_holder(p),
        (Dialect::Sqlite, None) => Ok(None),
        (Dialect::Postgres, _) => {
            let mut conn = Conn::open(&t.url, t.connect_timeout).await?;
            let holder = match &mut conn {
                Conn::Pg(c) => lock::pg_holder(c).await,
                Conn::Lite(_) => None,
            };
            conn.close().await;
            Ok(holder)
        }
    }
}

/// The exact SQL `apply` (or `revert`) runs for one migration, bookkeeping included.
pub fn script(m: &Migration, dialect: Dialect, down: bool) -> Result<String, MigrateError> {
    let (text, verb) = if down {
        (
            m.down
                .as_deref()
                .ok_or_else(|| MigrateError::Other(format!("{} has no down file", m.label())))?,
            "revert",
        )
    } else {
        (m.up.as_str(), "apply")
    };
    let begin = match dialect {
        Dialect::Postgres => "BEGIN;",
        Dialect::Sqlite => "BEGIN IMMEDIATE;",
    };
    let tx = !m.no_transaction || down;
    let mut out = format!(
        "-- corral migrate {verb} {} ({}, {})\n",
        m.label(),
        dialect.dir_name(),
        if tx {
            "in one transaction"
        } else {
            "no transaction: each statement commits on its own"
        }
    );
    out.push_str("-- Runs under the migration lock; $names stand for values bound at run time.\n");
    if tx {
        out.push_str(begin);
        out.push('\n');
    }
    if !tx {
        out.push_str(&format!(
            "INSERT INTO {TABLE} (version, name, checksum, state, started_at, applied_by) VALUES ({}, '{}', '{}', 'running', $now, $host_pid);\n",
            m.version, m.name, m.checksum
        ));
    }
    for s in split::split(text) {
        out.push_str(&s);
        out.push_str(";\n");
    }
    if down {
        out.push_str(&format!(
            "DELETE FROM {TABLE} WHERE version = {};\n",
            m.version
        ));
    } else if tx {
        out.push_str(&format!(
            "INSERT INTO {TABLE} (version, name, checksum, state, started_at, finished_at, duration_ms, applied_by) VALUES ({}, '{}', '{}', 'applied', $started, $now, $duration_ms, $host_pid);\n",
            m.version, m.name, m.checksum
        ));
    } else {
        out.push_str(&format!("UPDATE {TABLE} SET state = 'applied', finished_at = $now, duration_ms = $duration_ms WHERE version = {};\n", m.version));
    }
    if tx {
        out.push_str("COMMIT;\n");
    }
    Ok(out)
}

/// Creates up and down stubs for both dialects with the next free version.
pub fn new_stubs(
    dir: &Path,
    name: &str,
    no_transaction: bool,
) -> Result<Vec<PathBuf>, MigrateError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(MigrateError::Other(format!(
            "{name:?}: use letters, digits and underscores"
        )));
    }
    let mut next = 1;
    let mut width = 4;
    for d in [Dialect::Postgres, Dialect::Sqlite] {
        let sub = dir.join(d.dir_name());
        if sub.is_dir() {
            for m in load(d, Some(&sub))? {
                next = next.max(m.version + 1);
            }
            if let Some(w) = std::fs::read_dir(&sub).ok().and_then(|r| {
                r.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .split('_')
                            .next()
                            .map(str::len)
                    })
                    .max()
            }) {
                width = width.max(w);
            }
        }
    }
    let mut made = vec![];
    for d in [Dialect::Postgres, Dialect::Sqlite] {
        let sub = dir.join(d.dir_name());
        std::fs::create_dir_all(&sub)
            .map_err(|e| MigrateError::Other(format!("{}: {e}", sub.display())))?;
        for (suffix, body) in [
            (
                "up",
                format!(
                    "{}-- {name} ({}): write the change here.\n",
                    if no_transaction {
                        "-- no-transaction\n"
                    } else {
                        ""
                    },
                    d.dir_name()
                ),
            ),
            (
                "down",
                format!(
                    "-- Undo {name} ({}); delete this file if it cannot be undone.\n",
                    d.dir_name()
                ),
            ),
        ] {
            let path = sub.join(format!("{next:0width$}_{name}.{suffix}.sql"));
            std::fs::write(&path, body)
                .map_err(|e| MigrateError::Other(format!("{}: {e}", path.display())))?;
            made.push(path);
        }
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_ignore_bom_and_line_endings() {
        let a = Migration::new(1, "a", "CREATE TABLE t (x INT);\n", None);
        let b = Migration::new(1, "a", "\u{feff}CREATE TABLE t (x INT);\r\n", None);
        assert_eq!(a.checksum, b.checksum);
        let c = Migration::new(1, "a", "CREATE TABLE t (y INT);\n", None);
        assert_ne!(a.checksum, c.checksum);
    }

    #[test]
    fn no_transaction_directive() {
        assert!(
            Migration::new(
                2,
                "idx",
                "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);",
                None
            )
            .no_transaction
        );
        assert!(
            !Migration::new(2, "idx", "CREATE INDEX i ON t (x); -- no-transaction", None)
                .no_transaction
        );
    }

    #[test]
    fn embedded_dialects_match() {
        let p: Vec<i64> = POSTGRES.iter().map(|m| m.version).collect();
        let s: Vec<i64> = SQLITE.iter().map(|m| m.version).collect();
        assert_eq!(p, s);
        assert!(!p.is_empty());
    }

    #[test]
    fn compare_classifies() {
        let known = vec![
            Migration::new(1, "a", "x", None),
            Migration::new(2, "b", "y", None),
        ];
        let row = |v: i64, c: &str, s: &str| Applied {
            version: v,
            name: "n".into(),
            checksum: c.into(),
            state: s.into(),
            started_at: String::new(),
            finished_at: None,
            duration_ms: None,
            applied_by: String::new(),
            error: None,
        };
        let e = compare(
            &known,
            &[
                row(1, &known[0].checksum, "applied"),
                row(3, "z", "applied"),
            ],
        );
        let states: Vec<_> = e.iter().map(|e| (e.version, e.state)).collect();
        assert_eq!(
            states,
            vec![
                (1, State::Applied),
                (2, State::Pending),
                (3, State::Missing)
            ]
        );
        let e = compare(&known, &[row(1, "other", "applied")]);
        assert_eq!(e[0].state, State::Drifted);
        assert!(matches!(guard(&e, &known), Err(MigrateError::Drift(_))));
    }
}
