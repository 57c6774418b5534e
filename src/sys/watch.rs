//! File-change notification (inotify), drained without blocking.
//!
//! Used in two places: a worker learns that its SQLite database was written (by any
//! process on the host) and drops its cached user states; the master's `--reload` learns
//! that the configuration, the migrations or the binary changed. Watching a file's
//! directory rather than the file itself survives editors that replace files and SQLite
//! creating its `-wal` file later.

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

/// Which names in a watched directory matter.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Every entry of the directory.
    Any,
    /// Names starting with this (`corral.db` also matches `corral.db-wal`).
    Prefix(OsString),
    /// This name only (a binary `corral` must not match `corral.db`).
    Exact(OsString),
}

/// A set of watched directories.
pub struct Watcher {
    inotify: Inotify,
    watches: Vec<(WatchDescriptor, Filter)>,
}

const EVENTS: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_ATTRIB);

/// For [`Watcher::register`].
impl AsRawFd for Watcher {
    fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }
}

impl Watcher {
    /// Registers the watch with the current tokio reactor, whose poll then tracks whether
    /// events are pending (a worker reads that without a system call). Must be called
    /// inside a runtime.
    pub fn register(self) -> std::io::Result<tokio::io::unix::AsyncFd<Watcher>> {
        // SAFETY: the descriptor is the `Inotify` that `self` owns and never replaces: it
        // stays open, and `as_raw_fd` returns the same number, until the `AsyncFd` that
        // takes ownership of `self` is dropped.
        unsafe { tokio::io::unix::AsyncFd::register(self) }.map_err(std::io::Error::from)
    }

    pub fn new() -> std::io::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        Ok(Watcher {
            inotify,
            watches: vec![],
        })
    }

    /// Watches `path`: the file (and its siblings sharing its name as a prefix) through
    /// its directory, or every entry when `path` is a directory.
    pub fn add(&mut self, path: &Path) -> std::io::Result<()> {
        self.add_with(path, false)
    }

    /// Watches the file at `path` alone, through its directory (so a replaced file is
    /// seen too).
    pub fn add_exact(&mut self, path: &Path) -> std::io::Result<()> {
        self.add_with(path, true)
    }

    fn add_with(&mut self, path: &Path, exact: bool) -> std::io::Result<()> {
        let (dir, filter) = if path.is_dir() {
            (path.to_path_buf(), Filter::Any)
        } else {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let name = path.file_name().ok_or_else(|| {
                std::io::Error::other(format!("{} has no file name", path.display()))
            })?;
            let name = name.to_owned();
            let filter = if exact {
                Filter::Exact(name)
            } else {
                Filter::Prefix(name)
            };
            (dir.to_path_buf(), filter)
        };
        let wd = self.inotify.add_watch(&dir, EVENTS)?;
        self.watches.push((wd, filter));
        Ok(())
    }

    /// Readable when something changed.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Drains pending events; true if any concerned a watched name (or events were lost).
    /// Errors (other than "nothing pending") count as a change, to stay on the safe side.
    pub fn changed(&self) -> bool {
        let mut changed = false;
        loop {
            match self.inotify.read_events() {
                Ok(events) if events.is_empty() => return changed,
                Ok(events) => {
                    for e in events {
                        if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                            changed = true;
                            continue;
                        }
                        let relevant = self.watches.iter().any(|(wd, f)| {
                            *wd == e.wd
                                && match (f, &e.name) {
                                    (Filter::Any, _) => true,
                                    (Filter::Prefix(p), Some(n)) => {
                                        n.as_encoded_bytes().starts_with(p.as_encoded_bytes())
                                    }
                                    (Filter::Exact(x), Some(n)) => n == x,
                                    (Filter::Prefix(_) | Filter::Exact(_), None) => true,
                                }
                        });
                        changed |= relevant;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return changed,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_writes_to_a_file_and_its_siblings_only() {
        let dir = std::env::temp_dir().join(format!("corral-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("app.db");
        std::fs::write(&db, "x").unwrap();
        let mut w = Watcher::new().unwrap();
        w.add(&db).unwrap();
        assert!(!w.changed());
        std::fs::write(dir.join("other.log"), "x").unwrap();
        assert!(!w.changed(), "unrelated files are ignored");
        std::fs::write(dir.join("app.db-wal"), "x").unwrap();
        assert!(w.changed());
        assert!(!w.changed(), "events are drained");
        let mut exact = Watcher::new().unwrap();
        exact.add_exact(&db).unwrap();
        std::fs::write(dir.join("app.db-wal"), "y").unwrap();
        assert!(!exact.changed(), "an exact watch ignores its siblings");
        std::fs::write(&db, "y").unwrap();
        assert!(exact.changed());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
