//! [`UserCheck`]: simplejwt's `get_user` check for every authenticated request, served
//! from memory where that is provably as fresh as asking the database.

use super::users;
use crate::storage::listen::{self, Event, Feed};
use crate::storage::{Db, Settings, StorageError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The channel that migration 0002_user_notify's trigger notifies, with the user's id,
/// or `*` when the table was truncated.
const CHANNEL: &str = "corral_user";

/// simplejwt's `get_user` check for every authenticated request: does the token's user
/// exist, and is it active?
///
/// simplejwt asks the database every time. We remember answers, and forget them as soon
/// as the database may have changed them:
///
/// - **SQLite:** an inotify watch on the database files, registered with the worker's
///   reactor, empties the cache after any write by any process on the host. Its
///   readiness is read from the reactor's last poll, which is no older than the poll that
///   delivered the request (the reactor polls whenever the worker runs out of work, and
///   at least every 61 task polls under load), so a deactivation that committed before a
///   request arrived is seen, as with simplejwt, without a system call per request.
/// - **PostgreSQL:** a trigger NOTIFYs on every change to a user row, and each worker
///   LISTENs ([`listen`]); a notification drops that user's answer. Answers are served
///   from memory only while the feed is fresh (its own probe, sent less than a second
///   ago, came back, so every earlier commit's notification has been handled), and the
///   cache is emptied whenever the LISTEN connection is lost. Otherwise every request
///   queries.
///
/// In both, an answer read while a change arrived is not kept: the cache carries an
/// epoch that every change advances, and a query's answer is stored only if the epoch
/// it started under is still current.
pub(super) struct UserCheck {
    source: Source,
    cache: Arc<Mutex<Cache>>,
}

enum Source {
    /// Ask the database every time (SQLite in memory, or a watch that failed).
    Database,
    Sqlite(tokio::io::unix::AsyncFd<crate::sys::watch::Watcher>),
    Postgres(Arc<Feed>),
}

#[derive(Default)]
struct Cache {
    epoch: u64,
    users: HashMap<i64, Option<users::Standing>>,
}

impl Cache {
    fn forget(&mut self, id: Option<i64>) {
        self.epoch += 1;
        match id {
            Some(id) => drop(self.users.remove(&id)),
            None => self.users.clear(),
        }
    }
}

const USER_CACHE_MAX: usize = 100_000;

impl UserCheck {
    /// Must run inside the worker's runtime (PostgreSQL spawns the listener there).
    pub(super) fn new(cfg: &Settings, db: &Db) -> Result<UserCheck, StorageError> {
        let cache = Arc::new(Mutex::new(Cache::default()));
        let source = if db.postgres().is_some() {
            let c = cache.clone();
            Source::Postgres(listen::listen(cfg, CHANNEL, move |event| {
                let mut cache = c.lock().expect("not poisoned");
                match event {
                    // An id that does not parse can only be `*`, a truncate: forget all.
                    Event::Notified(id) => cache.forget(id.parse().ok()),
                    Event::Lost => cache.forget(None),
                }
            })?)
        } else {
            cfg.url
                .sqlite_path()
                .and_then(|path| {
                    let mut w = crate::sys::watch::Watcher::new().ok()?;
                    match w.add(path).and_then(|()| w.register()) {
                        Ok(w) => Some(Source::Sqlite(w)),
                        Err(e) => {
                            tracing::warn!(
                                "cannot watch {} ({e}); checking users in the database on every request",
                                path.display()
                            );
                            None
                        }
                    }
                })
                .unwrap_or(Source::Database)
        };
        Ok(UserCheck { source, cache })
    }

    /// Whether the cache may answer now; forgets everything when it may not.
    fn trusted(&self, cache: &mut Cache) -> bool {
        match &self.source {
            Source::Database => false,
            Source::Sqlite(watch) => {
                if db_written(watch) {
                    cache.forget(None);
                }
                true
            }
            Source::Postgres(feed) => {
                let fresh = feed.fresh();
                if !fresh && !cache.users.is_empty() {
                    cache.forget(None);
                }
                fresh
            }
        }
    }

    pub(super) async fn standing(
        &self,
        db: &Db,
        id: i64,
    ) -> Result<Option<users::Standing>, StorageError> {
        let epoch = {
            let mut cache = self.cache.lock().expect("not poisoned");
            if !self.trusted(&mut cache) {
                None
            } else if let Some(v) = cache.users.get(&id) {
                crate::metrics::inc("corral_user_cache_total", &[("result", "hit")]);
                return Ok(*v);
            } else {
                Some(cache.epoch)
            }
        };
        let result = if epoch.is_some() { "miss" } else { "bypass" };
        crate::metrics::inc("corral_user_cache_total", &[("result", result)]);
        // The query's future is boxed: it is large, and rarely needed on the hot path.
        let Some(epoch) = epoch else {
            return Box::pin(users::standing(db, id)).await;
        };
        let v = Box::pin(users::standing(db, id)).await?;
        let mut cache = self.cache.lock().expect("not poisoned");
        // A change during the query may have changed the answer: do not keep it.
        if self.trusted(&mut cache) && cache.epoch == epoch {
            if cache.users.len() >= USER_CACHE_MAX {
                cache.forget(None);
            }
            cache.users.insert(id, v);
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
