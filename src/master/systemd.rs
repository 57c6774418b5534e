//! [`Systemd`]: what the master tells systemd, and when.
//!
//! `READY=1`, `RELOADING=1`, `STOPPING=1` and `MAINPID=` are sent by the arbiter at the
//! moments they describe; this type adds what is periodic: `WATCHDOG=1` at half of
//! `WATCHDOG_USEC`, sent from the loop itself so that a stuck loop stops them;
//! `EXTEND_TIMEOUT_USEC` every 10 s while boot migrations run, so a slow one does not trip
//! `TimeoutStartSec`; and a `STATUS=` line whenever it changes.
//!
//! A successor started by `USR2` stays quiet until it is promoted: systemd accepts
//! messages only from the unit's main process.

use crate::error::Halt;
use crate::sys::notify::Notifier;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tracing::debug;

/// How often, and by how much, a boot that runs migrations extends systemd's start timeout.
const EXTEND_EVERY: Duration = Duration::from_secs(10);
const EXTEND_MSG: &str = "EXTEND_TIMEOUT_USEC=30000000";

pub(super) struct Systemd {
    notifier: Notifier,
    /// Ping interval and the last ping.
    watchdog: Option<(Duration, Instant)>,
    status: String,
    last_extend: Option<Instant>,
    /// A successor that has not taken over yet.
    muted: bool,
}

impl Systemd {
    pub(super) fn from_env(env: &BTreeMap<String, String>, muted: bool) -> Result<Systemd, Halt> {
        let notifier = Notifier::from_env(env)
            .map_err(|e| Halt::failure(format!("bad NOTIFY_SOCKET: {e}")))?;
        let usec = env.get("WATCHDOG_USEC").and_then(|u| {
            let parsed = u.parse::<u64>().ok();
            if parsed.is_none() {
                tracing::warn!("WATCHDOG_USEC={u:?} is not a number of microseconds; not sending watchdog pings");
            }
            parsed
        });
        let watchdog = usec
            .filter(|_| {
                env.get("WATCHDOG_PID")
                    .is_none_or(|w| w == &std::process::id().to_string())
            })
            .map(|us| (Duration::from_micros(us / 2), Instant::now()));
        Ok(Systemd {
            notifier,
            watchdog,
            status: String::new(),
            last_extend: None,
            muted,
        })
    }

    /// Under systemd, and the unit's main process.
    pub(super) fn active(&self) -> bool {
        self.notifier.enabled() && !self.muted
    }

    /// This master is now the unit's main process.
    pub(super) fn unmute(&mut self) {
        self.muted = false;
    }

    pub(super) fn notify(&self, msg: &str) {
        if self.muted {
            return;
        }
        if let Err(e) = self.notifier.send(msg) {
            debug!("sd_notify failed: {e}");
        }
    }

    /// Boot migrations are starting.
    pub(super) fn migrations_started(&mut self) {
        self.last_extend = Some(Instant::now());
        self.notify(&format!("{EXTEND_MSG}\nSTATUS=Running migrations"));
    }

    /// When the next watchdog ping is due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.watchdog.map(|(every, last)| last + every)
    }

    /// The loop's periodic messages: a watchdog ping when due, then either a start-timeout
    /// extension (while boot migrations run) or the `STATUS=` line, when it changed.
    pub(super) fn tick(&mut self, booting: bool, status: String) {
        if !self.active() {
            return;
        }
        if let Some((every, last)) = &mut self.watchdog {
            if last.elapsed() >= *every {
                *last = Instant::now();
                self.notify("WATCHDOG=1");
            }
        }
        if booting {
            if self.last_extend.is_none_or(|t| t.elapsed() >= EXTEND_EVERY) {
                self.last_extend = Some(Instant::now());
                self.notify(EXTEND_MSG);
            }
            return;
        }
        let line = format!("STATUS={status}");
        if line != self.status {
            self.notify(&line);
            self.status = line;
        }
    }
}
