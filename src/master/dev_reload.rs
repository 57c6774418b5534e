//! [`DevReload`]: `--reload`, the development reloader.
//!
//! It watches the configuration file, the migrations directory (and its `postgres/` and
//! `sqlite/` subfolders, as `migrate new` makes them), any `--reload-extra-file`, and the
//! binary. Once a burst of changes has settled it returns the signal an operator would
//! have sent: `USR2` for a rebuilt binary (re-exec through the upgrade path), `HUP` for
//! anything else. The arbiter dispatches it like any other signal.

use super::signals::Signal;
use crate::config::Loaded;
use crate::sys::watch::Watcher;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// How long `--reload` waits for a burst of file changes to end (a rebuild writes in
/// several steps).
const SETTLE: Duration = Duration::from_millis(300);

pub(super) struct DevReload {
    files: Watcher,
    binary: Watcher,
    /// When the current burst settles, and whether it touched the binary.
    due: Option<(Instant, bool)>,
}

impl DevReload {
    /// Starts watching, when `--reload` is on; a path that cannot be watched is reported.
    pub(super) fn start(loaded: &Loaded, exe: &Path) -> Option<DevReload> {
        let c = &loaded.config;
        if !c.reload {
            return None;
        }
        let (Ok(mut files), Ok(mut binary)) = (Watcher::new(), Watcher::new()) else {
            error!("--reload: cannot create an inotify instance");
            return None;
        };
        let mut paths: Vec<PathBuf> = loaded.file.iter().cloned().collect();
        if let Some(dir) = &c.database.migrations_dir {
            paths.push(dir.clone());
            paths.extend(
                ["postgres", "sqlite"]
                    .map(|d| dir.join(d))
                    .into_iter()
                    .filter(|d| d.is_dir()),
            );
        }
        paths.extend(c.reload_extra_file.iter().cloned());
        if let Some(files) = crate::http::tls::Files::of(c) {
            paths.extend(
                crate::http::tls::watched(&files)
                    .into_iter()
                    .map(|p| p.to_path_buf()),
            );
        }
        for p in &paths {
            if let Err(e) = files.add(p) {
                warn!("--reload: cannot watch {}: {e}", p.display());
            }
        }
        if let Err(e) = binary.add_exact(exe) {
            warn!("--reload: cannot watch {}: {e}", exe.display());
        }
        if paths.is_empty() {
            info!("Reloading when the binary {} changes", exe.display());
        } else {
            info!(
                "Reloading on changes to {} and the binary {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                exe.display()
            );
        }
        Some(DevReload {
            files,
            binary,
            due: None,
        })
    }

    /// The descriptors the master's poll waits on.
    pub(super) fn fds(&self) -> [BorrowedFd<'_>; 2] {
        [self.files.fd(), self.binary.fd()]
    }

    /// When a settling burst is due.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.due.map(|(at, _)| at)
    }

    /// The signal to act on, once changes have settled.
    pub(super) fn poll(&mut self) -> Option<Signal> {
        let binary = self.binary.changed();
        if binary || self.files.changed() {
            let was_binary = self.due.is_some_and(|(_, b)| b);
            self.due = Some((Instant::now() + SETTLE, binary || was_binary));
            return None;
        }
        match self.due {
            Some((at, binary)) if Instant::now() >= at => {
                self.due = None;
                if binary {
                    info!("Reload: the binary changed; starting it as a new master");
                    Some(Signal::Usr2)
                } else {
                    info!("Reload: watched files changed");
                    Some(Signal::Hup)
                }
            }
            _ => None,
        }
    }
}
