//! [`MigrateError`]: what can stop a migration command, and the exit code it maps to.

use super::label;
use crate::error::exit;
use crate::storage::StorageError;
use std::fmt;
use std::time::Duration;

/// What can stop a migration command, and its exit code.
#[derive(Debug)]
pub enum MigrateError {
    /// The database cannot be reached or refused a bookkeeping query. Exit 1.
    Database(String),
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
            MigrateError::Database(_) | MigrateError::Other(_) => exit::FAILURE,
            MigrateError::Drift(_) => exit::MIGRATE_DRIFT,
            MigrateError::LockTimeout { .. } => exit::MIGRATE_LOCK_TIMEOUT,
            MigrateError::Failed { .. } => exit::MIGRATE_FAILED,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            MigrateError::Database(_) => "database",
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

pub(super) fn one_line(s: &str, max: usize) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}
