//! Writing migrations: `migrate new`'s stubs and `migrate sql`'s exact script.

use super::source::{self, Migration};
use super::{split, MigrateError, Migrations, TABLE};
use crate::storage::Dialect;
use std::path::{Path, PathBuf};

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
    let tx = if down {
        !m.down_no_transaction
    } else {
        !m.no_transaction
    };
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
    if !tx && down {
        out.push_str(&format!(
            "UPDATE {TABLE} SET state = 'running', error = 'reverting' WHERE version = {};\n",
            m.version
        ));
    } else if !tx {
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
/// How `new_stubs` numbers a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Numbering {
    /// The next free version, as wide as the folder's (the application's own folder).
    Next,
    /// The UTC time, `YYYYMMDDHHMMSS` (a project's folder): never below 10000, so it
    /// cannot collide with the application's built-in migrations, nor with another
    /// developer's migration written at another second.
    ByTime,
}

pub fn new_stubs(
    dir: &Path,
    name: &str,
    no_transaction: bool,
    numbering: Numbering,
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
            for m in source::load(&Migrations::NONE, d, Some(&sub))? {
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
    if numbering == Numbering::ByTime {
        let (y, mo, d, h, mi, sec) = crate::logging::civil(crate::storage::now_secs());
        let stamp = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{sec:02}")
            .parse::<i64>()
            .expect("digits");
        next = next.max(stamp);
        width = 14;
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
