//! Where migrations come from: the set an application embeds in its binary, and a
//! project's own directory (`--migrations-dir`) that adds to them; each normalised and
//! checksummed the same way.
//!
//! The two cannot collide: versions below [`PROJECT_FROM`] belong to the application's
//! built-in migrations, and a project numbers its own from there up (`corral migrate
//! new` names them by UTC time, `YYYYMMDDHHMMSS`). A file in the directory that is an
//! exact copy of a built-in migration (how `--migrations-dir` used to be used) is
//! ignored; any other file with a built-in version is refused, saying so.

use super::{label, MigrateError, Migrations};
use crate::storage::Dialect;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The first version a project's own migration may have.
pub const PROJECT_FROM: i64 = 10_000;

/// One migration, ready to run.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    pub up: String,
    pub down: Option<String>,
    pub no_transaction: bool,
    /// The down file starts with `-- no-transaction` too (`DROP INDEX CONCURRENTLY`).
    pub down_no_transaction: bool,
    pub checksum: String,
    /// One of the application's built-in migrations (else a project's).
    pub builtin: bool,
}

/// Whether a migration's text opts out of the transaction: `-- no-transaction` among the
/// comments that open it.
fn opts_out(text: &str) -> bool {
    text.lines()
        .take_while(|l| l.trim_start().starts_with("--") || l.trim().is_empty())
        .any(|l| l.trim() == "-- no-transaction")
}

impl Migration {
    pub(crate) fn new(version: i64, name: &str, up: &str, down: Option<&str>) -> Migration {
        let up = normalise(up);
        let down = down.map(normalise);
        Migration {
            version,
            name: name.to_string(),
            checksum: checksum(&up),
            no_transaction: opts_out(&up),
            down_no_transaction: down.as_deref().is_some_and(opts_out),
            up,
            down,
            builtin: true,
        }
    }

    /// `0002_add_index`
    pub fn label(&self) -> String {
        label(self.version, &self.name)
    }
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

/// The migrations for `dialect`, in version order: the application's built-in ones, and
/// those of `dir` when given (its `postgres/` or `sqlite/` subdirectory if present, else
/// the directory itself).
pub fn load(
    set: &Migrations,
    dialect: Dialect,
    dir: Option<&Path>,
) -> Result<Vec<Migration>, MigrateError> {
    let mut out: Vec<Migration> = set
        .of(dialect)
        .iter()
        .map(|e| Migration::new(e.version, e.name, e.up, e.down))
        .collect();
    let Some(dir) = dir else {
        return Ok(out);
    };
    for mut m in read_dir(dialect, dir)? {
        if let Some(b) = out.iter().find(|b| b.builtin && b.version == m.version) {
            if b.name == m.name && b.checksum == m.checksum {
                continue; // a copy of the built-in migration
            }
            return Err(MigrateError::Other(format!(
                "{}: version {} is the built-in migration {}; versions below {PROJECT_FROM} \
                 belong to the application, so number your own from {PROJECT_FROM} up \
                 (`corral migrate new` names them by time, YYYYMMDDHHMMSS)",
                dir.display(),
                m.version,
                b.label()
            )));
        }
        if !set.is_empty() && m.version < PROJECT_FROM {
            return Err(MigrateError::Other(format!(
                "{}: {} has a version below {PROJECT_FROM}, which belongs to the \
                 application's built-in migrations; number it from {PROJECT_FROM} up \
                 (`corral migrate new` names migrations by time, YYYYMMDDHHMMSS)",
                dir.display(),
                m.label()
            )));
        }
        m.builtin = false;
        out.push(m);
    }
    out.sort_by_key(|m| m.version);
    Ok(out)
}

/// The migrations in one directory.
fn read_dir(dialect: Dialect, dir: &Path) -> Result<Vec<Migration>, MigrateError> {
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
    fn a_project_directory_adds_to_the_builtins_and_cannot_collide() {
        static BUILTIN: &[crate::storage::migrate::Embedded] =
            &[crate::storage::migrate::Embedded {
                version: 1,
                name: "initial",
                up: "CREATE TABLE t (x INT);\n",
                down: None,
            }];
        let set = Migrations {
            postgres: BUILTIN,
            sqlite: BUILTIN,
            source_dir: None,
        };
        let dir = std::env::temp_dir().join(format!("corral-src-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("0001_initial.up.sql"),
            "CREATE TABLE t (x INT);\r\n",
        )
        .unwrap();
        std::fs::write(dir.join("20260101120000_more.up.sql"), "SELECT 1;").unwrap();
        let all = load(&set, Dialect::Sqlite, Some(&dir)).unwrap();
        let seen: Vec<(i64, bool)> = all.iter().map(|m| (m.version, m.builtin)).collect();
        assert_eq!(
            seen,
            [(1, true), (20260101120000, false)],
            "the copy is ignored"
        );
        std::fs::write(dir.join("0002_mine.up.sql"), "SELECT 2;").unwrap();
        let e = load(&set, Dialect::Sqlite, Some(&dir))
            .unwrap_err()
            .to_string();
        assert!(e.contains("0002_mine has a version below 10000"), "{e}");
        std::fs::remove_file(dir.join("0002_mine.up.sql")).unwrap();
        std::fs::write(dir.join("0001_initial.up.sql"), "CREATE TABLE u (x INT);").unwrap();
        let e = load(&set, Dialect::Sqlite, Some(&dir))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("version 1 is the built-in migration 0001_initial"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
}
