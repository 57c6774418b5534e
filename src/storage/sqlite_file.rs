//! The SQLite database file, watched from a worker's pool: it must stay the file the pool
//! first opened, and be writable.
//!
//! SQLite opens a path: if the file is deleted under a running server, a new connection
//! would create an empty one (so logins succeed on the old inode while other requests see
//! "no such table"), and if it is read-only a new connection silently opens read-only and
//! fails every write until it is recycled. The pool's hooks refuse both: a connection to
//! a file other than the first one, or to a missing file, is never handed out, and a new
//! connection is refused while the file is not writable. Queries then fail as
//! "unavailable" (503), and service resumes by itself when the file is writable again; a
//! deleted or replaced file needs a reload, which re-opens the database deliberately.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;
use tracing::error;

/// Below this much free space on the database's filesystem, it cannot do its job.
const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// One database file and the identity (device, inode) it had when first opened.
#[derive(Debug)]
pub(super) struct Guard {
    path: PathBuf,
    identity: OnceLock<(u64, u64)>,
    /// "deleted or replaced" is logged once, not on every request.
    reported: AtomicBool,
}

fn unavailable(why: String) -> sqlx::Error {
    sqlx::Error::Io(io::Error::other(why))
}

impl Guard {
    pub(super) fn new(path: &Path) -> Guard {
        Guard {
            path: path.to_path_buf(),
            identity: OnceLock::new(),
            reported: AtomicBool::new(false),
        }
    }

    /// For every new connection: the file is the one first seen, and writable.
    pub(super) fn check_new_connection(&self) -> Result<(), sqlx::Error> {
        self.check_still_there()?;
        nix::unistd::access(&self.path, nix::unistd::AccessFlags::W_OK).map_err(|e| {
            unavailable(format!(
                "the database file {} is not writable by this process ({e})",
                self.path.display()
            ))
        })
    }

    /// For every connection handed out: the file has not been deleted or replaced.
    pub(super) fn check_still_there(&self) -> Result<(), sqlx::Error> {
        let now = match std::fs::metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.lost("was deleted"));
            }
            Err(e) => {
                return Err(unavailable(format!(
                    "cannot check the database file {}: {e}",
                    self.path.display()
                )))
            }
        };
        match self.identity.get() {
            None => {
                let _ = self.identity.set(now);
                Ok(())
            }
            Some(first) if *first == now => Ok(()),
            Some(_) => Err(self.lost("was replaced by another file")),
        }
    }

    fn lost(&self, what: &str) -> sqlx::Error {
        let why = format!(
            "the database file {} {what} while this worker used it; refusing to use a different \
             file (restore it, or reload once the new file is the one to serve)",
            self.path.display()
        );
        if !self.reported.swap(true, Relaxed) {
            error!("{why}");
        }
        unavailable(why)
    }
}

/// For readiness: the file exists and is writable, with room left on its filesystem.
pub(super) fn writable_with_room(path: &Path) -> Result<(), String> {
    nix::unistd::access(path, nix::unistd::AccessFlags::W_OK)
        .map_err(|e| format!("the database file {} is not writable ({e})", path.display()))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| format!("cannot check free space for {}: {e}", path.display()))?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    if free < MIN_FREE_BYTES {
        return Err(format!(
            "{} bytes free on the filesystem of {}",
            free,
            path.display()
        ));
    }
    Ok(())
}
