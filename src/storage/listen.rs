//! [`Feed`]: a PostgreSQL `LISTEN` that proves it is up to date, so a process may serve
//! answers from memory for exactly as long as its notifications can be trusted.
//!
//! One dedicated connection per process LISTENs on the application's channels and on a
//! private probe channel, and every [`PROBE_EVERY`] sends, on that same connection, a
//! `NOTIFY` on its probe channel carrying the time it was sent. PostgreSQL queues every
//! session's notifications in one queue, in commit order, and a listener reads it in
//! order; so when a probe sent at time *S* arrives, every notification of a transaction
//! that committed before *S* has already been handed to the subscriber. The feed is
//! therefore fresh until *S* + [`TRUST_FOR`]; after that, callers must ask the database.
//! A lost connection ([`Event::Lost`]) also ends trust at once, and the subscriber must
//! forget everything it learnt, since notifications sent while nobody listened are gone.
//! A connection that stays open but delivers nothing (a half-open TCP connection, a
//! transaction-mode pooler in the way) simply stops being fresh, and is replaced after
//! [`SILENT_FOR`]. The probes use the listening connection, not the process's pool, so a
//! pool exhausted by slow queries does not make the feed lapse.

use super::{pg_options, DbUrl, Settings, StorageError};
use crate::sys::monotonic_ms;
use sqlx::postgres::{PgListener, PgPoolOptions};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How often a probe is sent.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long after a probe's sending its arrival keeps the feed fresh: the most an answer
/// served from memory can lag a commit if the listening connection silently stops.
pub const TRUST_FOR: Duration = Duration::from_millis(1000);
/// A listening connection that brings no probe back for this long is replaced.
pub const SILENT_FOR: Duration = Duration::from_secs(3);

/// What the subscriber hears.
pub enum Event<'a> {
    /// A notification on one of the application's channels.
    Notified { channel: &'a str, payload: &'a str },
    /// The listening connection is gone, or is being replaced: forget everything learnt
    /// from the feed (notifications may have been missed).
    Lost,
}

/// Whether notifications on the application's channels can be trusted right now.
#[derive(Debug)]
pub struct Feed {
    /// `CLOCK_MONOTONIC` ms until which the feed is fresh; 0 while not listening.
    fresh_until: AtomicU64,
    /// Set by [`Feed::close`]; the listening task ends when it changes.
    stop: tokio::sync::watch::Sender<bool>,
    /// Notified when the listening task has ended.
    ended: tokio::sync::Notify,
}

impl Feed {
    /// A feed not yet fresh.
    pub(crate) fn new() -> Feed {
        let (stop, _) = tokio::sync::watch::channel(false);
        Feed {
            fresh_until: AtomicU64::new(0),
            stop,
            ended: tokio::sync::Notify::new(),
        }
    }

    /// A probe sent at `sent` (`CLOCK_MONOTONIC` ms) came back: fresh until [`TRUST_FOR`]
    /// after it.
    pub(crate) fn heard_probe(&self, sent: u64) {
        self.fresh_until
            .fetch_max(sent + TRUST_FOR.as_millis() as u64, Ordering::AcqRel);
    }

    /// Not fresh until the next probe comes back.
    pub(crate) fn distrust(&self) {
        self.fresh_until.store(0, Ordering::Release);
    }

    /// True while every notification committed more than [`TRUST_FOR`] ago (and, in
    /// practice, within milliseconds of now) has been delivered.
    pub fn fresh(&self) -> bool {
        monotonic_ms() < self.fresh_until.load(Ordering::Acquire)
    }

    /// Stops listening and closes the listening connection cleanly (the server sees a
    /// Terminate, not a reset), once the task has let go of it.
    pub async fn close(&self) {
        self.distrust();
        if self.stop.send(true).is_ok() {
            self.ended.notified().await;
        }
    }
}

/// Starts listening on `channels` for this process (spawns a task on the current tokio
/// runtime) and calls `on_event` for each notification, and with [`Event::Lost`] before
/// every (re)connection.
pub fn listen(
    cfg: &Settings,
    channels: &'static [&'static str],
    on_event: impl Fn(Event<'_>) + Send + Sync + 'static,
) -> Result<Arc<Feed>, StorageError> {
    let options = pg_options(cfg, cfg.listen_url(), "corral listener")?;
    let timeout = Duration::from_secs(cfg.connect_timeout);
    // A pool of one for each connection: a connection given up on (silent, half-open)
    // may take long to return to its pool, and must not keep its successor waiting.
    let pools = move || {
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(timeout)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(options.clone())
    };
    let feed = Arc::new(Feed::new());
    let listen = Listen {
        channels,
        probe: format!("corral_probe_{}", uuid::Uuid::new_v4().simple()),
        warned_silent: AtomicBool::new(false),
        check_proxy: cfg.listen_url.is_none().then(|| cfg.url.clone()),
    };
    tokio::spawn(receive(pools, feed.clone(), listen, on_event));
    Ok(feed)
}

/// What the listening task knows.
struct Listen {
    channels: &'static [&'static str],
    /// The private probe channel.
    probe: String,
    warned_silent: AtomicBool,
    /// `database.url`, to check once for a proxy or pooler before the first LISTEN
    /// (`None` with a `database.listen_url`, which keeps sessions by definition).
    check_proxy: Option<DbUrl>,
}

/// Why a listening connection ended.
enum End {
    Lost(String),
    /// Probes were sent but none came back.
    Swallowed,
    /// [`Feed::close`].
    Stopped,
}

async fn receive(
    pools: impl Fn() -> sqlx::PgPool,
    feed: Arc<Feed>,
    l: Listen,
    on_event: impl Fn(Event<'_>),
) {
    let channel = l.channels.join(", ");
    let mut stop = feed.stop.subscribe();
    let mut retry = Duration::from_millis(100);
    // Why the last connection ended, until a new one listens; said once per outage.
    let mut lost: Option<String> = None;
    let mut failing = false;
    loop {
        // Trust ends before anything is forgotten, so no answer is cached in between.
        feed.distrust();
        on_event(Event::Lost);
        if *stop.borrow() {
            break;
        }
        let pool = pools();
        let listener = match connect(&pool, &l).await {
            Ok(Some(listener)) => listener,
            Ok(None) => {
                // A transaction-mode pooler would pass our LISTEN's notifications to
                // whichever client next borrows that server connection, in the middle
                // of its query: never LISTEN through what may be one.
                warn!(
                    "database.url goes through a proxy or pooler (the server listens on another port) and database.listen_url is not set: \
                     not listening for {channel} notifications, checking in the database on every request; \
                     set database.listen_url to a direct connection (or to the same URL, for a proxy that keeps sessions)"
                );
                break;
            }
            Err(e) => {
                if !failing && lost.is_none() {
                    warn!(error = %e, "cannot LISTEN for {channel} notifications; checking in the database on every request until it can");
                }
                failing = true;
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        retry = Duration::from_millis(100);
        if failing || lost.is_some() {
            info!("listening for {channel} notifications again");
        }
        (failing, lost) = (false, None);
        let end = serve(listener, &feed, &l, &on_event, &mut stop).await;
        match end {
            End::Stopped => {
                // The listener is dropped: its connection is back in its pool of one,
                // which closes it with a Terminate.
                feed.distrust();
                pool.close().await;
                break;
            }
            End::Lost(why) => {
                warn!(reason = %why, "lost the LISTEN connection for {channel} notifications ({why}); checking in the database on every request until it is back");
                lost = Some(why);
            }
            End::Swallowed => {
                if !l.warned_silent.swap(true, Ordering::Relaxed) {
                    warn!(
                        "the LISTEN connection hears no notifications (is it a transaction-mode pooler such as PgBouncer?); \
                         checking {channel} in the database on every request: set database.listen_url to a direct connection"
                    );
                }
            }
        }
    }
    feed.ended.notify_one();
}

/// Hands notifications over and sends probes, until the connection fails or goes silent.
async fn serve(
    mut listener: PgListener,
    feed: &Feed,
    l: &Listen,
    on_event: &impl Fn(Event<'_>),
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> End {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = tokio::time::Instant::now();
    let mut sent_any = false;
    loop {
        let n = tokio::select! {
            _ = stop.changed() => return End::Stopped,
            r = listener.try_recv() => match r {
                Ok(Some(n)) => n,
                Ok(None) => return End::Lost("the connection closed".into()),
                Err(e) => return End::Lost(e.to_string()),
            },
            _ = tick.tick() => {
                // The time is taken before sending: a probe only ever vouches for less.
                // The simple protocol, and both values are ours (hex and digits).
                let sent = monotonic_ms();
                let sql = format!("SELECT pg_notify('{}', '{sent}')", l.probe);
                let send = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut listener);
                match tokio::time::timeout(SILENT_FOR, send).await {
                    Ok(Ok(_)) => sent_any = true,
                    Ok(Err(e)) => return End::Lost(e.to_string()),
                    Err(_) => return End::Lost("a probe was not answered".into()),
                }
                continue;
            }
            () = tokio::time::sleep_until(heard + SILENT_FOR) => {
                return if sent_any {
                    End::Swallowed
                } else {
                    End::Lost(format!("no probe came back for {} s", SILENT_FOR.as_secs()))
                };
            }
        };
        if n.channel() == l.probe {
            if let Ok(sent) = n.payload().parse::<u64>() {
                heard = tokio::time::Instant::now();
                feed.heard_probe(sent);
            }
        } else {
            on_event(Event::Notified {
                channel: n.channel(),
                payload: n.payload(),
            });
        }
    }
}

/// A listening connection; `None` when `database.url` goes through a proxy or pooler
/// and no `database.listen_url` says it keeps sessions (checked on the first connection).
async fn connect(pool: &sqlx::PgPool, l: &Listen) -> Result<Option<PgListener>, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    if let Some(url) = &l.check_proxy {
        use sqlx::Acquire;
        let conn = (&mut listener).acquire().await?;
        if super::proxied(conn, url).await.is_some() {
            return Ok(None);
        }
    }
    // A NOTIFY gives its transaction an id, so each probe's commit would wait for a WAL
    // flush, and a disk stalled by a checkpoint would make the feed lapse. Commit order,
    // which is all the probe relies on, does not depend on the flush.
    sqlx::raw_sql("SET synchronous_commit = off")
        .execute(&mut listener)
        .await?;
    // Reconnection is this module's, so that it can flush first.
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    let channels = l.channels.iter().copied().chain([l.probe.as_str()]);
    listener.listen_all(channels).await?;
    Ok(Some(listener))
}
