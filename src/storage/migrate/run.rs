//! Applying, reverting and resolving migrations, under the migration lock: each
//! transactional migration commits together with its history row or not at all.

use super::error::one_line;
use super::history::{db_err, timestamp, whoami, Conn};
use super::source::Migration;
use super::status::{compare, guard, Entry, State};
use super::{label, lock, split, MigrateError, Target, TABLE};
use crate::storage::Dialect;
use std::time::{Duration, Instant};
use tracing::{info, warn};

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
        let known = t.known()?;
        let mut conn = Conn::open(&t.url, t.connect_timeout, t.create).await?;
        if let (Conn::Pg(c), false) = (&mut conn, t.direct) {
            if let Some((server, named)) = crate::storage::proxied(c, &t.url).await {
                conn.close().await;
                return Err(MigrateError::Other(format!(
                    "the database URL goes through a proxy or pooler (PostgreSQL listens on port {server}, the URL names {named}): \
                     migrations hold a session lock, which a transaction-mode pooler such as PgBouncer cannot keep; \
                     set database.listen_url (CORRAL_DATABASE_LISTEN_URL) to a direct connection, \
                     or to the same URL if this is a proxy that keeps sessions"
                )));
            }
        }
        let held = match (&mut conn, t.url.sqlite_path()) {
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
        check_target(&self.known, to)?;
        let entries = self.entries().await?;
        guard(&entries, &self.known)?;
        // The newest applied migration of each origin: a built-in migration added by an
        // upgrade after a project's own (numbered from 10000) is not out of order.
        let newest_applied = |builtin: bool| {
            entries
                .iter()
                .filter(|e| e.state == State::Applied)
                .filter(|e| {
                    self.known
                        .iter()
                        .any(|m| m.version == e.version && m.builtin == builtin)
                })
                .map(|e| e.version)
                .max()
        };
        let newest = (newest_applied(true), newest_applied(false));
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
            let newest_of_its_kind = if m.builtin { newest.0 } else { newest.1 };
            if newest_of_its_kind.is_some_and(|n| m.version < n) {
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
    /// first, each with its down file and its history row in one transaction (or, for a
    /// down file marked `-- no-transaction`, statement by statement, recorded as running
    /// until done, like such an up file). Refuses before doing anything if one of them
    /// has no down file.
    pub async fn revert(&mut self, to: Option<i64>) -> Result<Vec<Migration>, MigrateError> {
        if to != Some(0) {
            check_target(&self.known, to)?;
        }
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
            if m.down_no_transaction {
                self.revert_outside_a_transaction(m, down).await?;
                info!(version = m.version, "Reverted migration {}", m.label());
                continue;
            }
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

    /// A `-- no-transaction` down file: the history row says `running` while its
    /// statements commit one by one, `failed` if one fails (everything then stops until
    /// `resolve`, as for an up file), and goes once all have run.
    async fn revert_outside_a_transaction(
        &mut self,
        m: &Migration,
        down: &str,
    ) -> Result<(), MigrateError> {
        let fail = |s: Option<&str>, e: String, recorded: bool| MigrateError::Failed {
            version: m.version,
            name: m.name.clone(),
            statement: s.map(String::from),
            error: format!("revert: {e}"),
            recorded,
        };
        self.conn
            .set_state(m.version, "running", None, None, Some("reverting"), None)
            .await
            .map_err(|e| fail(None, format!("recording it in {TABLE}: {e}"), false))?;
        for s in split::split(down) {
            if let Err(e) = self.conn.exec(&s).await {
                let msg = e.to_string();
                let _ = self
                    .conn
                    .set_state(
                        m.version,
                        "failed",
                        Some(&timestamp()),
                        None,
                        Some(&format!("revert at `{}`: {msg}", one_line(&s, 160))),
                        None,
                    )
                    .await;
                return Err(fail(Some(&s), msg, true));
            }
        }
        self.conn
            .forget(m.version)
            .await
            .map_err(|e| fail(None, format!("recording it in {TABLE}: {e}"), true))
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

/// `--to V` must name a migration this binary knows (0, for `revert`, means "all").
pub(crate) fn check_target(known: &[Migration], to: Option<i64>) -> Result<(), MigrateError> {
    match to {
        Some(v) if !known.iter().any(|m| m.version == v) => Err(MigrateError::Other(format!(
            "--to {v}: no migration has version {v} (known: {})",
            known
                .iter()
                .map(Migration::label)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        _ => Ok(()),
    }
}

/// Who holds the migration lock now, if anyone.
pub async fn lock_holder(t: &Target) -> Result<Option<String>, MigrateError> {
    match (t.url.dialect(), t.url.sqlite_path()) {
        (Dialect::Sqlite, Some(p)) => lock::file_lock_holder(p),
        (Dialect::Sqlite, None) => Ok(None),
        (Dialect::Postgres, _) => {
            let mut conn = Conn::open(&t.url, t.connect_timeout, false).await?;
            let holder = match &mut conn {
                Conn::Pg(c) => lock::pg_holder(c).await,
                Conn::Lite(_) => None,
            };
            conn.close().await;
            Ok(holder)
        }
    }
}
