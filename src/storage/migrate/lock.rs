//! The migration lock, so that any number of instances booting together apply each
//! migration exactly once.
//!
//! PostgreSQL: a session advisory lock taken with `pg_try_advisory_lock` polling, on the
//! runner's own dedicated connection (never a pooled one: a pool would hand the session,
//! and the lock, to someone else). A blocking `pg_advisory_lock` waiter can deadlock a
//! `CREATE INDEX CONCURRENTLY` run by the holder (reproduced against sqlx 0.9: see
//! `migrations.md`, E4/E5); polling cannot. While waiting, the holder is logged. On any
//! error the runner drops the connection, which releases the lock server-side.
//!
//! SQLite: `flock` on `<database>.migrate.lock` (the kernel releases it when the process
//! dies, so it cannot leak), holding the holder's description; then each migration runs
//! in `BEGIN IMMEDIATE`.

use super::MigrateError;
use sqlx::PgConnection;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::warn;

/// The advisory lock key: two int4s, "corr" and "migr".
pub const PG_KEY: (i32, i32) = (0x636f_7272, 0x6d69_6772);

/// A lock holder's backend pid, application name, client address and connection age (s).
type Holder = (i32, Option<String>, Option<String>, Option<i64>);

/// Who holds the lock, for messages.
pub async fn pg_holder(conn: &mut PgConnection) -> Option<String> {
    let row: Option<Holder> = sqlx::query_as(
        "SELECT a.pid, a.application_name, a.client_addr::text,
                CAST(EXTRACT(EPOCH FROM now() - a.backend_start) AS BIGINT)
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.classid = $1::int::oid AND l.objid = $2::int::oid
           AND l.objsubid = 2 AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(PG_KEY.0)
    .bind(PG_KEY.1)
    .fetch_optional(conn)
    .await
    .ok()
    .flatten();
    row.map(|(pid, app, addr, age)| {
        format!(
            "backend pid {pid} ({}{}), connected {} s ago",
            app.filter(|a| !a.is_empty())
                .unwrap_or_else(|| "no application name".into()),
            addr.map(|a| format!(" from {a}")).unwrap_or_default(),
            age.unwrap_or(0)
        )
    })
}

/// Polls `pg_try_advisory_lock` until it succeeds or `timeout` passes.
pub async fn pg_lock(conn: &mut PgConnection, timeout: Duration) -> Result<(), MigrateError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    let mut last_report: Option<Instant> = None;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(PG_KEY.0)
            .bind(PG_KEY.1)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| MigrateError::Database(format!("taking the migration lock: {e}")))?;
        if got {
            return Ok(());
        }
        let holder = pg_holder(conn).await;
        if started.elapsed() >= timeout {
            return Err(MigrateError::LockTimeout {
                waited: started.elapsed(),
                holder,
            });
        }
        if last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            warn!(
                "Waiting for the migration lock, held by {}",
                holder.as_deref().unwrap_or("another session")
            );
            last_report = Some(Instant::now());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

pub async fn pg_unlock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(PG_KEY.0)
        .bind(PG_KEY.1)
        .execute(conn)
        .await
        .map(drop)
}

/// An exclusive `flock` on the SQLite database's lock file, released on drop.
pub struct FileLock {
    _lock: nix::fcntl::Flock<File>,
}

/// `<database>.migrate.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".migrate.lock");
    PathBuf::from(s)
}

fn open_lock_file(db: &Path) -> Result<File, MigrateError> {
    let path = lock_path(db);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| MigrateError::Other(format!("cannot open lock file {}: {e}", path.display())))
}

fn read_holder(file: &mut File) -> Option<String> {
    let mut s = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut s).ok()?;
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Takes the SQLite migration lock, polling until `timeout`.
pub async fn file_lock(db: &Path, timeout: Duration, me: &str) -> Result<FileLock, MigrateError> {
    use nix::fcntl::{Flock, FlockArg};
    let started = Instant::now();
    let mut last_report: Option<Instant> = None;
    let mut file = open_lock_file(db)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                // Describe ourselves for `migrate lock status` and for waiters.
                let _ = lock.set_len(0);
                let _ = lock.rewind();
                let _ = write!(lock, "{me}");
                let _ = lock.flush();
                return Ok(FileLock { _lock: lock });
            }
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                file = f;
                let holder = read_holder(&mut file);
                if started.elapsed() >= timeout {
                    return Err(MigrateError::LockTimeout {
                        waited: started.elapsed(),
                        holder,
                    });
                }
                if last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    warn!(
                        "Waiting for the migration lock, held by {}",
                        holder.as_deref().unwrap_or("another process")
                    );
                    last_report = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err((_, e)) => {
                return Err(MigrateError::Other(format!(
                    "cannot lock {}: {e}",
                    lock_path(db).display()
                )))
            }
        }
    }
}

/// `Some(holder)` when the SQLite lock is taken now, `None` when it is free (or its file
/// does not exist: asking must not create it).
pub fn file_lock_holder(db: &Path) -> Result<Option<String>, MigrateError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = lock_path(db);
    let file = match std::fs::OpenOptions::new().read(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(MigrateError::Other(format!(
                "cannot open lock file {}: {e}",
                path.display()
            )))
        }
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_free) => Ok(None),
        Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => Ok(Some(
            read_holder(&mut f).unwrap_or_else(|| "unknown process".into()),
        )),
        Err((_, e)) => Err(MigrateError::Other(format!(
            "cannot probe {}: {e}",
            lock_path(db).display()
        ))),
    }
}
