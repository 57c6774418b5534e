//! Where migrations come from: the set an application embeds in its binary, or a
//! directory read at run time; each normalised and checksummed the same way.

use super::{label, MigrateError, Migrations};
use crate::storage::Dialect;
use sha2::{Digest, Sha256};
use std::path::Path;

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
    pub(crate) fn new(version: i64, name: &str, up: &str, down: Option<&str>) -> Migration {
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
/// subdirectory if present, else the directory itself), else the application's embedded
/// ones.
pub fn load(
    set: &Migrations,
    dialect: Dialect,
    dir: Option<&Path>,
) -> Result<Vec<Migration>, MigrateError> {
    let Some(dir) = dir else {
        return Ok(set
            .of(dialect)
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
}
