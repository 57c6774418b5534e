//! Preflight: the checks `corral serve` would fail on before serving, run by `serve`
//! before it binds and by `corral check`, so `check` says "OK" only for what `serve` will
//! accept.
//!
//! Files the process writes (the error and access logs, the pidfile) must be writable or
//! creatable; a pidfile must not name a live process; a `--migrations-dir` must exist and
//! hold well-formed migrations. The application's own checks (its `check` hook) come on
//! top. A failure carries the exit code `serve` would stop with: 1 for files, 4 for
//! migrations.

use super::Config;
use crate::error::{exit, Halt};
use crate::sys::pidfile;
use std::path::Path;

/// Whether `path` can be opened for appending, or created: its directory exists and is
/// writable.
fn writable_or_creatable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(format!("{} is a directory", path.display())),
        Ok(_) => std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(format!(
                    "cannot create {}: the directory {} does not exist",
                    path.display(),
                    dir.display()
                ));
            }
            nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).map_err(|e| {
                format!(
                    "cannot create {}: the directory {} is not writable ({e})",
                    path.display(),
                    dir.display()
                )
            })
        }
        Err(e) => Err(format!("cannot use {}: {e}", path.display())),
    }
}

/// The TLS certificate and key load and match (`serve` and `check` at boot, the master
/// on `HUP`); each worker reads them again when it starts. Exit 2, naming the key.
pub(crate) fn tls(c: &Config) -> Result<(), Halt> {
    match crate::http::tls::Files::of(c) {
        Some(files) => crate::http::tls::server_config(&files, c.http)
            .map(drop)
            .map_err(|why| Halt::usage(format!("invalid value for `certfile`: {why}"))),
        None => Ok(()),
    }
}

/// The checks of a configuration against the machine it runs on. A `successor` (a new
/// master started by `USR2`) writes `FILE.2` beside the live master's pidfile.
pub(crate) fn check(c: &Config, successor: bool) -> Result<(), Halt> {
    tls(c)?;
    let bad = |key: &str, why: String| Halt::failure(format!("`{key}`: {why}"));
    if c.error_logfile != "-" {
        writable_or_creatable(Path::new(&c.error_logfile)).map_err(|e| bad("error_logfile", e))?;
    }
    if let Some(a) = c.access_logfile.as_deref().filter(|a| *a != "-") {
        writable_or_creatable(Path::new(a)).map_err(|e| bad("access_logfile", e))?;
    }
    if let Some(p) = &c.pid {
        writable_or_creatable(p).map_err(|e| bad("pid", e))?;
        if !successor {
            pidfile::check_free(p).map_err(|e| bad("pid", e.to_string()))?;
        }
    }
    if let Some(d) = &c.database.migrations_dir {
        let bad =
            |why: String| Halt::new(exit::APP_LOAD, format!("`database.migrations_dir`: {why}"));
        if !d.is_dir() {
            return Err(bad(format!("{} is not a directory", d.display())));
        }
        crate::storage::migrate::source::load(
            &crate::storage::migrate::Migrations::NONE,
            c.database.url.dialect(),
            Some(d),
        )
        .map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}
