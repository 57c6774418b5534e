//! The migration runner: an application's SQL migrations per dialect, applied in order,
//! each exactly once, under a lock, each in one transaction with its history row.
//!
//! - **Sources** ([`source`]). The application embeds `<version>_<name>.up.sql` (and
//!   `.down.sql` when reversible) per dialect in its binary ([`Migrations`]), or
//!   `--migrations-dir` names a directory read at run time. A first line
//!   `-- no-transaction` opts out of the transaction (for `CREATE INDEX CONCURRENTLY`);
//!   the format is sqlx's.
//! - **History** ([`history`]). `corral_migrations` records version, name, the SHA-256 of
//!   the normalised text (BOM removed, CRLF → LF, so a checkout on Windows does not
//!   "drift"), state (`applied`, `running`, `failed`), start and finish times, duration,
//!   host and pid.
//! - **Nothing half-done** ([`run`]). A transactional migration's statements and its
//!   history row commit together or not at all. A non-transactional one records `running`
//!   first, then `applied` or `failed`; a `running` or `failed` row stops every later run
//!   until `corral migrate resolve` settles it, and the error prints that exact command.
//! - **Drift** ([`status`]). An applied migration whose file changed, or an applied
//!   version unknown to this binary, stops the run with a message saying which.
//! - **One at a time** ([`lock`]), and **authoring** ([`authoring`]): stubs and scripts.
//!
//! The runner opens its own connection (never a pool), so it can run in the short-lived
//! `corral migrate` child the master starts at boot.

pub(crate) mod authoring;
mod error;
mod history;
mod lock;
pub(crate) mod run;
pub(crate) mod source;
pub(crate) mod split;
pub(crate) mod status;

use super::{DbUrl, Dialect};
use std::path::PathBuf;
use std::time::Duration;

pub(crate) use error::MigrateError;
pub(crate) use run::Session;
pub(crate) use source::Migration;
pub(crate) use status::{Entry, State};

/// The history table.
pub(crate) const TABLE: &str = "corral_migrations";

/// A migration built into an application's binary.
#[derive(Debug)]
pub struct Embedded {
    pub version: i64,
    pub name: &'static str,
    pub up: &'static str,
    pub down: Option<&'static str>,
}

/// An application's built-in migrations, per dialect. Both lists hold the same versions.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub postgres: &'static [Embedded],
    pub sqlite: &'static [Embedded],
    /// Where they live in the application's source tree (with `postgres/` and `sqlite/`
    /// inside), so that `migrate new` run in a checkout writes beside them.
    pub source_dir: Option<&'static str>,
}

impl Migrations {
    /// No built-in migrations: a service without a schema of its own.
    pub const NONE: Migrations = Migrations {
        postgres: &[],
        sqlite: &[],
        source_dir: None,
    };

    pub fn of(&self, dialect: Dialect) -> &'static [Embedded] {
        match dialect {
            Dialect::Postgres => self.postgres,
            Dialect::Sqlite => self.sqlite,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.postgres.is_empty() && self.sqlite.is_empty()
    }
}

/// What `serve` does with migrations at boot (`--migrate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrateMode {
    /// Apply pending migrations under the lock.
    #[default]
    Apply,
    /// Refuse to start while any is pending.
    Check,
    /// Skip the step.
    Off,
}

impl MigrateMode {
    /// The values `--migrate` accepts.
    pub const NAMES: &'static [&'static str] = &["apply", "check", "off"];

    pub fn as_str(self) -> &'static str {
        match self {
            MigrateMode::Apply => "apply",
            MigrateMode::Check => "check",
            MigrateMode::Off => "off",
        }
    }
}

/// What the runner needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub url: DbUrl,
    pub embedded: Migrations,
    pub dir: Option<PathBuf>,
    pub lock_timeout: Duration,
    pub connect_timeout: Duration,
    /// `url` is `database.listen_url`: it keeps sessions, whatever port it names.
    pub direct: bool,
    /// `apply` may create a missing SQLite file (at the first boot and from the command
    /// line, never on a reload, where a missing file means the database was lost).
    pub create: bool,
}

impl Target {
    pub(crate) fn new(db: &super::Settings, embedded: Migrations) -> Target {
        Target {
            // The session lock needs a session: behind a transaction-mode pooler, the
            // direct connection that LISTEN uses.
            url: db.listen_url().clone(),
            direct: db.listen_url.is_some(),
            embedded,
            dir: db.migrations_dir.clone(),
            lock_timeout: Duration::from_secs(db.lock_timeout),
            connect_timeout: Duration::from_secs(db.connect_timeout),
            create: true,
        }
    }

    /// The migrations this target knows, in version order.
    pub(crate) fn known(&self) -> Result<Vec<Migration>, MigrateError> {
        source::load(&self.embedded, self.url.dialect(), self.dir.as_deref())
    }
}

/// `0002_add_index`
fn label(version: i64, name: &str) -> String {
    format!("{version:04}_{name}")
}
