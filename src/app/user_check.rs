//! [`UserCheck`]: simplejwt's `get_user` check for every authenticated request, served
//! from memory where that is safe.

use super::users;
use crate::storage::{Db, StorageError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// simplejwt's `get_user` check for every authenticated request: does the token's user
/// exist, and is it active?
///
/// simplejwt asks the database every time. On SQLite so do we, unless nothing has
/// written to the database since the answer was cached: an inotify watch on the database
/// files, registered with the worker's reactor, empties the cache after any write by any
/// process on the host. Its readiness is read from the reactor's last poll, which is no
/// older than the poll that delivered the request (the reactor polls whenever the worker
/// runs out of work, and at least every 61 task polls under load), so a deactivation that
/// committed before a request arrived is seen, as with simplejwt, without a system call
/// per request. On PostgreSQL, whose writers may be on other hosts, every request queries.
pub(super) struct UserCheck {
    watch: Option<tokio::io::unix::AsyncFd<crate::sys::watch::Watcher>>,
    cache: Mutex<HashMap<i64, Option<bool>>>,
}

const USER_CACHE_MAX: usize = 100_000;

impl UserCheck {
    pub(super) fn new(sqlite_path: Option<&Path>) -> UserCheck {
        let watch = sqlite_path.and_then(|path| {
            let mut w = crate::sys::watch::Watcher::new().ok()?;
            match w.add(path).and_then(|()| w.register()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(
                        "cannot watch {} ({e}); checking users in the database on every request",
                        path.display()
                    );
                    None
                }
            }
        });
        UserCheck {
            watch,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub(super) async fn is_active(&self, db: &Db, id: i64) -> Result<Option<bool>, StorageError> {
        let Some(watch) = &self.watch else {
            return users::active_by_id(db, id).await;
        };
        if db_written(watch) {
            self.cache.lock().expect("not poisoned").clear();
        } else if let Some(v) = self.cache.lock().expect("not poisoned").get(&id) {
            return Ok(*v);
        }
        let v = users::active_by_id(db, id).await?;
        let mut cache = self.cache.lock().expect("not poisoned");
        // A write during the query may have changed the answer: do not keep it.
        if db_written(watch) || cache.len() >= USER_CACHE_MAX {
            cache.clear();
        } else {
            cache.insert(id, v);
        }
        Ok(v)
    }
}

/// Whether the watched database files were written since the last call: the reactor's
/// cached readiness first (no system call), then a drain of the events when it is set.
fn db_written(watch: &tokio::io::unix::AsyncFd<crate::sys::watch::Watcher>) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match watch.poll_read_ready(&mut cx) {
        std::task::Poll::Pending => false,
        std::task::Poll::Ready(Ok(mut ready)) => {
            // Drains to EAGAIN; an event after the drain carries a newer reactor tick,
            // which `clear_ready` leaves set.
            let changed = ready.get_inner().changed();
            ready.clear_ready();
            changed
        }
        std::task::Poll::Ready(Err(_)) => true,
    }
}
