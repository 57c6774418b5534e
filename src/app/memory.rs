//! [`Memory`]: what a worker remembers of the database for every authenticated request,
//! simplejwt's `get_user` check (the user's standing) and the blacklist check of sliding
//! tokens, served from memory where that is provably as fresh as asking the database.

use super::{tokens, users};
use crate::storage::listen::{self, Event, Feed};
use crate::storage::{Db, Settings, StorageError};
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// The channels that migrations 0002_user_notify and 0005_token_notify notify: a user's
/// id, a blacklisted token's jti, or `*` for a change that may touch any of them.
const USERS: &str = "corral_user";
const TOKENS: &str = "corral_token";

/// simplejwt asks the database on every request: does the token's user exist, is it
/// active (and, here, has it not logged out everywhere since), and, for a sliding
/// token, is it blacklisted? We remember answers, and forget them as soon as the
/// database may have changed them:
///
/// - **SQLite:** an inotify watch on the database files, registered with the worker's
///   reactor, empties the memory after any write by any process on the host. Its
///   readiness is read from the reactor's last poll, which is no older than the poll that
///   delivered the request (the reactor polls whenever the worker runs out of work, and
///   at least every 61 task polls under load), so a change that committed before a
///   request arrived is seen, as with simplejwt, without a system call per request.
/// - **PostgreSQL:** triggers NOTIFY on every change to a user row and to the blacklist,
///   and each worker LISTENs ([`listen`]); a notification drops that user's or token's
///   answer. Answers are served from memory only while the feed is fresh (its own probe,
///   sent less than a second ago, came back, so every earlier commit's notification has
///   been handled), and the memory is emptied whenever the LISTEN connection is lost.
///   Otherwise every request queries.
///
/// In both, an answer read while a change arrived is not kept: the memory carries an
/// epoch that every change advances, and a query's answer is stored only if the epoch
/// it started under is still current.
pub(super) struct Memory {
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
    /// Each answer with the `CLOCK_MONOTONIC` ms it was read at.
    users: HashMap<i64, (Option<users::Standing>, u64)>,
    /// Whether a jti is blacklisted (itself, or its family revoked).
    blacklisted: HashMap<String, (bool, u64)>,
}

/// The oldest answer served from memory on SQLite. The watch leaves one window: SQLite's
/// WAL makes a commit visible through its shared-memory index a moment after the write
/// that woke the watch, and a query in between reads the old state with nothing left to
/// announce the new one. Re-reading every answer at least this often bounds that, as
/// `listen::TRUST_FOR` bounds a silent PostgreSQL feed; it costs one query per user or
/// token per second per worker. (PostgreSQL's probe leaves no such window, and answers
/// kept there outlast a locked table.)
const SQLITE_MAX_AGE_MS: u64 = 1_000;

/// What a change may have touched.
pub(super) enum Changed<'a> {
    User(i64),
    Token(&'a str),
    Everything,
}

impl Cache {
    fn forget_(&mut self, what: Changed<'_>) {
        self.epoch += 1;
        match what {
            Changed::User(id) => drop(self.users.remove(&id)),
            Changed::Token(jti) => drop(self.blacklisted.remove(jti)),
            Changed::Everything => {
                self.users.clear();
                self.blacklisted.clear();
            }
        }
    }
}

/// Entries each map keeps at most; a full map starts again empty.
const MAX_ENTRIES: usize = 100_000;

impl Memory {
    /// Must run inside the worker's runtime (PostgreSQL spawns the listener there).
    pub(super) fn new(cfg: &Settings, db: &Db) -> Result<Memory, StorageError> {
        let cache = Arc::new(Mutex::new(Cache::default()));
        let source = if db.postgres().is_some() {
            let c = cache.clone();
            Source::Postgres(listen::listen(cfg, &[USERS, TOKENS], move |event| {
                let mut cache = c.lock().expect("not poisoned");
                cache.forget_(match event {
                    // `*` (a truncate, a revoked family) or an id that does not parse.
                    Event::Notified { payload: "*", .. } | Event::Lost => Changed::Everything,
                    Event::Notified {
                        channel: TOKENS,
                        payload,
                    } => Changed::Token(payload),
                    Event::Notified { payload, .. } => {
                        payload.parse().map_or(Changed::Everything, Changed::User)
                    }
                });
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
                                "cannot watch {} ({e}); checking users and tokens in the database on every request",
                                path.display()
                            );
                            None
                        }
                    }
                })
                .unwrap_or(Source::Database)
        };
        Ok(Memory { source, cache })
    }

    /// Forgets what this worker itself just changed (a blacklisting, a logout
    /// everywhere), so its next request reads its own write at once, before the
    /// database's notification comes back.
    pub(super) fn forget(&self, what: Changed<'_>) {
        self.cache.lock().expect("not poisoned").forget_(what);
    }

    /// Stops listening (PostgreSQL), closing the listening connection cleanly.
    pub(super) async fn close(&self) {
        if let Source::Postgres(feed) = &self.source {
            feed.close().await;
        }
    }

    /// Whether the memory may answer now (on SQLite, after forgetting what a write may
    /// have changed).
    fn trusted(&self, cache: &mut Cache) -> bool {
        match &self.source {
            Source::Database => false,
            Source::Sqlite(watch) => {
                if db_written(watch) {
                    cache.forget_(Changed::Everything);
                }
                true
            }
            // A lapse only pauses the memory: the connection is still up, so every
            // notification of a commit before the probe that makes the feed fresh again
            // is handled before that probe, and what was kept is still true then. (A lost
            // connection empties the memory, through `Event::Lost`.) Forgetting on a
            // lapse would turn one late probe into a query per user, each waiting on
            // whatever the database is waiting on.
            Source::Postgres(feed) => feed.fresh(),
        }
    }

    /// The user's standing (`None`: no such user).
    pub(super) async fn standing(
        &self,
        db: &Db,
        id: i64,
    ) -> Result<Option<users::Standing>, StorageError> {
        // The query's future is boxed: it is large, and rarely needed on the hot path.
        self.remembered(
            |c| &mut c.users,
            id,
            "corral_user_cache_total",
            || Box::pin(users::standing(db, id)),
        )
        .await
    }

    /// Whether a sliding token on a protected view is revoked: blacklisted itself, or of
    /// a revoked family. The token views read the database instead, as simplejwt does:
    /// a refresh must never race a blacklisting on another host.
    pub(super) async fn blacklisted(&self, db: &Db, jti: &str) -> Result<bool, StorageError> {
        self.remembered(
            |c| &mut c.blacklisted,
            jti.to_string(),
            "corral_token_cache_total",
            || Box::pin(tokens::is_blacklisted(db, jti)),
        )
        .await
    }

    /// An answer from `map`, or `query`'s, kept when no change came meanwhile; counted in
    /// the `metric` by result (`hit`, `miss`: queried and kept, `bypass`: queried, the
    /// memory not trusted).
    async fn remembered<K, V, F>(
        &self,
        map: fn(&mut Cache) -> &mut HashMap<K, (V, u64)>,
        key: K,
        metric: &'static str,
        query: impl FnOnce() -> F,
    ) -> Result<V, StorageError>
    where
        K: Hash + Eq,
        V: Copy,
        F: Future<Output = Result<V, StorageError>>,
    {
        let epoch = {
            let mut cache = self.cache.lock().expect("not poisoned");
            if !self.trusted(&mut cache) {
                None
            } else if let Some((v, _)) = map(&mut cache).get(&key).filter(|(_, at)| {
                !matches!(self.source, Source::Sqlite(_))
                    || crate::sys::monotonic_ms() < at + SQLITE_MAX_AGE_MS
            }) {
                crate::metrics::inc(metric, &[("result", "hit")]);
                return Ok(*v);
            } else {
                Some(cache.epoch)
            }
        };
        let result = if epoch.is_some() { "miss" } else { "bypass" };
        crate::metrics::inc(metric, &[("result", result)]);
        let read_at = crate::sys::monotonic_ms();
        let v = query().await?;
        let Some(epoch) = epoch else {
            return Ok(v);
        };
        let mut cache = self.cache.lock().expect("not poisoned");
        // A change during the query may have changed the answer: do not keep it.
        if self.trusted(&mut cache) && cache.epoch == epoch {
            let m = map(&mut cache);
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(key, (v, read_at));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::monotonic_ms;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A memory on a PostgreSQL feed driven by hand, and a count of the queries it made.
    fn on_feed() -> (Memory, Arc<Feed>) {
        let feed = Arc::new(Feed::new());
        let memory = Memory {
            source: Source::Postgres(feed.clone()),
            cache: Arc::default(),
        };
        (memory, feed)
    }

    fn ask(memory: &Memory, key: i64, answer: bool, queries: &AtomicUsize) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(memory.remembered(
            |c| &mut c.blacklisted,
            key.to_string(),
            "test_total",
            || async {
                queries.fetch_add(1, Ordering::Relaxed);
                Ok(answer)
            },
        ))
        .unwrap()
    }

    #[test]
    fn a_late_probe_pauses_the_memory_and_a_lost_connection_empties_it() {
        let (memory, feed) = on_feed();
        let queries = AtomicUsize::new(0);
        // Not fresh yet: every answer is queried, none kept.
        assert!(!ask(&memory, 1, false, &queries));
        assert!(ask(&memory, 1, true, &queries));
        assert_eq!(queries.load(Ordering::Relaxed), 2);
        feed.heard_probe(monotonic_ms());
        assert!(ask(&memory, 1, true, &queries));
        assert!(ask(&memory, 1, false, &queries), "answered from memory");
        assert_eq!(queries.load(Ordering::Relaxed), 3);
        // A late probe: queried meanwhile (and not kept), remembered again after.
        feed.distrust();
        assert!(!ask(&memory, 1, false, &queries));
        assert_eq!(queries.load(Ordering::Relaxed), 4);
        feed.heard_probe(monotonic_ms());
        assert!(ask(&memory, 1, false, &queries), "kept through the lapse");
        assert_eq!(queries.load(Ordering::Relaxed), 4);
        // A notification drops its key; a lost connection drops everything.
        memory.forget(Changed::Token("1"));
        assert!(!ask(&memory, 1, false, &queries));
        assert!(ask(&memory, 2, true, &queries));
        memory.forget(Changed::Everything);
        assert!(!ask(&memory, 2, false, &queries));
        assert_eq!(queries.load(Ordering::Relaxed), 7);
    }
}
