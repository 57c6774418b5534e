//! [`DbUrl`]: a parsed `DATABASE_URL`, which owns its redaction.
//!
//! Parsed once, where the configuration is read; from then on the dialect, the SQLite
//! path and the connect options come from this value. `Debug` and `Display` never show a
//! password; only serialisation (the handoff to a child process) carries the URL whole.

use super::{Dialect, StorageError};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// A parsed `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DbUrl {
    dialect: Dialect,
    raw: String,
    /// The database file, for SQLite on disk (`None` for `:memory:`).
    sqlite_path: Option<PathBuf>,
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({})", self.redacted())
    }
}

impl fmt::Display for DbUrl {
    /// The URL with its password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl DbUrl {
    pub fn parse(url: &str) -> Result<DbUrl, StorageError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbUrl {
                dialect: Dialect::Postgres,
                raw: url.to_string(),
                sqlite_path: None,
            });
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let path = rest.split('?').next().unwrap_or("");
            let sqlite_path = match path {
                "" | ":memory:" => None,
                p => Some(PathBuf::from(p)),
            };
            return Ok(DbUrl {
                dialect: Dialect::Sqlite,
                raw: url.to_string(),
                sqlite_path,
            });
        }
        Err(StorageError::Config(format!(
            "unsupported database URL {}: expected sqlite://PATH or postgres://…",
            redact(url)
        )))
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The SQLite database file, when the database is a file.
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.sqlite_path.as_deref()
    }

    /// The URL with any password replaced, for messages.
    pub fn redacted(&self) -> String {
        redact(&self.raw)
    }

    pub fn pg_options(&self, application_name: &str) -> Result<PgConnectOptions, StorageError> {
        let opts = PgConnectOptions::from_str(&self.raw)
            .map_err(|e| StorageError::Config(format!("bad DATABASE_URL: {e}")))?;
        Ok(opts.application_name(application_name))
    }

    /// WAL, a busy timeout and NORMAL synchronous so that many worker processes can share
    /// one file; the file is created when missing only if `create` (the migration runner
    /// at first boot, never a worker's pool or an inspection command).
    pub fn sqlite_options(&self, create: bool) -> Result<SqliteConnectOptions, StorageError> {
        let opts = if self.sqlite_path.is_none() {
            SqliteConnectOptions::from_str("sqlite::memory:")
        } else {
            SqliteConnectOptions::from_str(&self.raw)
        }
        .map_err(|e| StorageError::Config(format!("bad DATABASE_URL: {e}")))?;
        Ok(opts
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true))
    }
}

impl TryFrom<String> for DbUrl {
    type Error = StorageError;
    fn try_from(s: String) -> Result<DbUrl, StorageError> {
        DbUrl::parse(&s)
    }
}

impl From<DbUrl> for String {
    fn from(u: DbUrl) -> String {
        u.raw
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:***@host/db`, for printing.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let pw = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{pw}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = DbUrl::parse("sqlite://corral.db").unwrap();
        assert_eq!(
            (u.dialect(), u.sqlite_path()),
            (Dialect::Sqlite, Some(Path::new("corral.db")))
        );
        let u = DbUrl::parse("sqlite:///tmp/x.db?mode=rwc").unwrap();
        assert_eq!(u.sqlite_path(), Some(Path::new("/tmp/x.db")));
        assert_eq!(DbUrl::parse("sqlite::memory:").unwrap().sqlite_path(), None);
        let u = DbUrl::parse("postgres://u:pw@h:5432/db?sslmode=require").unwrap();
        assert_eq!(u.dialect(), Dialect::Postgres);
        assert!(!u.redacted().contains("pw"));
        assert!(!format!("{u} {u:?}").contains("pw"));
        assert!(DbUrl::parse("mysql://x").is_err());
    }
}
