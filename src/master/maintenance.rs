//! The application's periodic maintenance (the JWT app: deleting expired refresh
//! tokens): a short-lived child of the master every `--maintenance-interval`, running
//! one of the application's commands on the current generation's configuration, as the
//! migration runner does. At most one runs at a time; the first run comes one interval
//! after the boot.

use super::generation::handoff_of;
use super::spawn::Spawner;
use crate::config::Loaded;
use crate::sys::process::Exit;
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

pub(super) struct Maintenance {
    args: &'static [&'static str],
    next: Option<Instant>,
    /// The running child, the configuration it reads, and when it started.
    child: Option<(Pid, OwnedFd, Instant)>,
}

impl Maintenance {
    pub(super) fn new(args: &'static [&'static str]) -> Maintenance {
        Maintenance {
            args,
            next: None,
            child: None,
        }
    }

    fn interval(l: &Loaded) -> Option<Duration> {
        let s = l.config.maintenance_interval;
        (s > 0).then(|| Duration::from_secs(s))
    }

    /// When the next run is due (for the master's poll timeout).
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.next.filter(|_| self.child.is_none())
    }

    /// Starts a run if one is due (the master is running its workers).
    pub(super) fn tick(&mut self, spawner: &Spawner, loaded: &Loaded) {
        let (Some(every), false) = (Self::interval(loaded), self.args.is_empty()) else {
            self.next = None;
            return;
        };
        let now = Instant::now();
        let next = *self.next.get_or_insert(now + every);
        if self.child.is_some() || now < next {
            return;
        }
        self.next = Some(now + every);
        let started = handoff_of(loaded)
            .and_then(|fd| spawner.app_command(self.args, &fd).map(|pid| (pid, fd)));
        match started {
            Ok((pid, fd)) => {
                debug!(
                    pid = pid.as_raw(),
                    "Maintenance ({}) in pid {pid}",
                    self.args.join(" ")
                );
                self.child = Some((pid, fd, now));
            }
            Err(e) => warn!(
                "Cannot start the maintenance ({}): {e}",
                self.args.join(" ")
            ),
        }
    }

    /// Whether `pid` was the maintenance child; says how it went.
    pub(super) fn exited(&mut self, pid: Pid, how: Exit) -> bool {
        if self.child.as_ref().is_none_or(|(p, _, _)| *p != pid) {
            return false;
        }
        let (_, _, started) = self.child.take().expect("checked");
        let ms = started.elapsed().as_millis() as u64;
        let what = self.args.join(" ");
        match how {
            Exit::Code(0) => info!(elapsed_ms = ms, "Maintenance ({what}) done in {ms} ms"),
            other => warn!("Maintenance ({what}) failed ({other}); see the error above; it runs again in one interval"),
        }
        true
    }

    pub(super) fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|(p, _, _)| *p)
    }
}
