//! Exit codes and the `Halt` value: how any layer says "stop the process with this code".
//!
//! Each layer owns its own typed error (`ConfigError`, `StorageError`, `MigrateError`, …);
//! when one of them must end the process it becomes a [`Halt`], and the command
//! dispatcher prints the reason once and exits with the code. Codes follow Gunicorn where
//! it has one (`WORKER_BOOT_ERROR = 3`, `APP_LOAD_ERROR = 4`).

use std::fmt;

/// Every exit code corral uses, in one table. The README's "Exit codes" section is this
/// table; `corral migrate` gives 2–5 their own meanings so that a script can tell
/// "pending" from "drifted" from "failed".
pub mod exit {
    /// Clean exit: graceful shutdown finished, or the command succeeded.
    pub const OK: u8 = 0;
    /// Runtime failure: a socket could not be bound, a pidfile is held by a live process,
    /// an OS call or a database write failed. For `corral migrate`, also its usage and
    /// configuration errors, so that 2 always means "pending" there.
    pub const FAILURE: u8 = 1;
    /// Bad usage or configuration: unknown flag or key, bad value, invalid TOML.
    pub const USAGE: u8 = 2;
    /// The first generation of workers could not boot (Gunicorn's `WORKER_BOOT_ERROR`).
    pub const WORKER_BOOT: u8 = 3;
    /// Migrations failed, drifted or timed out on the lock at boot (Gunicorn's
    /// `APP_LOAD_ERROR`).
    pub const APP_LOAD: u8 = 4;
    /// `corral migrate`: migrations are pending (`check`).
    pub const MIGRATE_PENDING: u8 = 2;
    /// `corral migrate`: an applied migration changed, or is unknown to this binary.
    pub const MIGRATE_DRIFT: u8 = 3;
    /// `corral migrate`: the migration lock was not obtained in time.
    pub const MIGRATE_LOCK_TIMEOUT: u8 = 4;
    /// `corral migrate`: a migration failed, or is recorded as failed or unfinished.
    pub const MIGRATE_FAILED: u8 = 5;
    /// `corral migrate … --boot` (the master's runner): the workers would need more
    /// PostgreSQL connections than the server allows; the master exits with [`USAGE`].
    pub const MIGRATE_BUDGET: u8 = 6;
}

/// A decision to end the process: a one-line reason and an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Halt {
    pub reason: String,
    pub code: u8,
}

impl Halt {
    pub fn new(code: u8, reason: impl Into<String>) -> Halt {
        Halt {
            reason: reason.into(),
            code,
        }
    }

    pub fn failure(reason: impl Into<String>) -> Halt {
        Halt::new(exit::FAILURE, reason)
    }

    pub fn usage(reason: impl Into<String>) -> Halt {
        Halt::new(exit::USAGE, reason)
    }
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Halt {}

/// Formats an error with its whole `source()` chain on one line: `a: b: c`.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        // Some errors repeat their source in their own message; don't print it twice.
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
