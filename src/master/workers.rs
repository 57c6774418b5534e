//! The master's table of worker processes: who they are, which generation they belong to,
//! and what the master has asked of them. No syscalls here; the arbiter acts, this
//! module remembers.

use super::reconcile::View;
use super::report::Cause;
use crate::metrics::Totals;
use crate::sys::process::{self, Exit};
use crate::sys::scoreboard::{Scoreboard, State};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::time::{Duration, Instant};
use tracing::{debug, error, warn};

/// After SIGABRT, how long a hung worker gets before SIGKILL.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// One worker process, as its master knows it.
pub(super) struct Worker {
    pub pid: Pid,
    pub generation: u64,
    pub spawned_at: Instant,
    pub board: Scoreboard,
    /// Its slot in the balance board, if one was free.
    pub slot: Option<usize>,
    /// When the master first saw it ready.
    pub ready_at: Option<Instant>,
    /// Set once the master has sent TERM (or QUIT) to retire it: SIGKILL after this.
    pub retire_by: Option<Instant>,
    /// When SIGABRT was sent for a missed heartbeat; SIGKILL follows if it lingers.
    pub aborted_at: Option<Instant>,
    /// SIGKILL was sent by the master (so its death by SIGKILL is no surprise).
    pub killed: bool,
    /// Why the master retired it, once it has.
    pub cause: Option<Cause>,
}

impl Worker {
    pub(super) fn new(pid: Pid, generation: u64, board: Scoreboard, slot: Option<usize>) -> Worker {
        Worker {
            pid,
            generation,
            spawned_at: Instant::now(),
            board,
            slot,
            ready_at: None,
            retire_by: None,
            aborted_at: None,
            killed: false,
            cause: None,
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        self.ready_at.is_some()
    }

    /// Serving and not on its way out: counts toward the desired number of workers.
    pub(super) fn is_healthy(&self) -> bool {
        self.retire_by.is_none()
            && self.aborted_at.is_none()
            && self.board.state() != State::WantsRetire
    }

    /// Why a worker that ended before it was ready could not boot.
    pub(super) fn boot_failure(&self, how: Exit, timeout_secs: u64) -> String {
        match (self.board.message(), self.aborted_at) {
            (Some(m), _) => m,
            (None, Some(_)) => format!("no sign of life within {timeout_secs} s (--timeout)"),
            (None, None) => format!("it ended with {how} before it was ready"),
        }
    }

    /// Logs how a worker that had booted ended, at the level its cause deserves
    /// (Gunicorn's `reap_workers`: SIGKILL out of the blue is an error).
    pub(super) fn log_exit(&self, how: Exit) {
        let pid = self.pid.as_raw();
        match how {
            Exit::Code(0) => debug!(worker = pid, "Worker (pid: {pid}) exited"),
            Exit::Signal(Signal::SIGKILL) if self.killed => {
                warn!(worker = pid, "Worker (pid: {pid}) was killed")
            }
            Exit::Signal(Signal::SIGKILL) => error!(
                worker = pid,
                "Worker (pid: {pid}) was sent SIGKILL! Perhaps out of memory?"
            ),
            _ if self.aborted_at.is_some() => {
                warn!(worker = pid, "Worker (pid: {pid}) was aborted ({how})")
            }
            _ => error!(worker = pid, exit = %how, "Worker (pid: {pid}) died: {how}"),
        }
    }

    /// Kills a worker past its deadlines (ABRT grace, retirement, shutdown), and aborts
    /// one whose heartbeat stopped for `timeout_secs` (or that never booted in that time).
    pub(super) fn enforce_deadlines(
        &mut self,
        now: Instant,
        now_ms: u64,
        timeout_secs: u64,
        stopping: Option<Instant>,
    ) {
        if self.killed {
            return;
        }
        let overdue = self.aborted_at.is_some_and(|t| now >= t + ABORT_GRACE)
            || self.retire_by.is_some_and(|d| now >= d)
            || stopping.is_some_and(|d| now >= d);
        if overdue {
            warn!(
                worker = self.pid.as_raw(),
                "Worker (pid: {}) did not stop in time; sending SIGKILL", self.pid
            );
            let _ = process::signal(self.pid, Signal::SIGKILL);
            self.killed = true;
            return;
        }
        if timeout_secs == 0 || self.aborted_at.is_some() {
            return;
        }
        let silent_ms = match self.ready_at {
            Some(_) => now_ms.saturating_sub(self.board.heartbeat_ms()),
            None => self.spawned_at.elapsed().as_millis() as u64,
        };
        if silent_ms > timeout_secs * 1000 {
            self.report_timeout(silent_ms, now_ms);
            let _ = process::signal(self.pid, Signal::SIGABRT);
            self.aborted_at = Some(now);
        }
    }

    /// Logs what a hung worker was doing, from its scoreboard, before it is aborted.
    fn report_timeout(&self, silent_ms: u64, now_ms: u64) {
        let pid = self.pid.as_raw();
        let phase = if self.ready_at.is_some() {
            "no heartbeat"
        } else {
            "not booted"
        };
        error!(
            worker = pid,
            silent_ms, "WORKER TIMEOUT (pid:{pid}): {phase} for {silent_ms} ms; sending SIGABRT"
        );
        let inflight = self.board.in_flight();
        if inflight.is_empty() {
            error!(worker = pid, "Worker (pid:{pid}) had no request in flight");
        }
        for r in inflight {
            let elapsed_ms = now_ms.saturating_sub(r.started_ms);
            error!(worker = pid, method = %r.method, path = %r.path, request_id = %r.request_id, elapsed_ms,
                "Worker (pid:{pid}) was serving {} {} (request id {}, {elapsed_ms} ms)", r.method, r.path, r.request_id);
        }
    }
}

/// All live workers, oldest first.
#[derive(Default)]
pub(super) struct Workers {
    list: Vec<Worker>,
    /// Requests served by workers that are gone.
    served_by_gone: u64,
    /// Series that workers now gone could not record.
    dropped_by_gone: u64,
    /// Connections accepted by workers now gone.
    accepted_by_gone: u64,
    /// What workers now gone had counted, for the metrics.
    pub totals: Totals,
}

impl Workers {
    pub(super) fn insert(&mut self, w: Worker) {
        self.list.push(w);
    }

    /// Takes a worker out of the table (it has exited).
    pub(super) fn remove(&mut self, pid: Pid) -> Option<Worker> {
        let i = self.list.iter().position(|w| w.pid == pid)?;
        let w = self.list.remove(i);
        self.served_by_gone += w.board.requests();
        self.dropped_by_gone += w.board.stats().dropped();
        self.accepted_by_gone += w.board.connections_accepted();
        self.totals.fold_gone(w.board.stats());
        Some(w)
    }

    /// Requests served by every worker this master has had.
    pub(super) fn requests_served(&self) -> u64 {
        self.served_by_gone + self.list.iter().map(|w| w.board.requests()).sum::<u64>()
    }

    /// Connections accepted by every worker this master has had.
    pub(super) fn connections_accepted(&self) -> u64 {
        self.accepted_by_gone
            + self
                .list
                .iter()
                .map(|w| w.board.connections_accepted())
                .sum::<u64>()
    }

    /// Metric series workers could not record (their table was full).
    pub(super) fn dropped_series(&self) -> u64 {
        self.dropped_by_gone
            + self
                .list
                .iter()
                .map(|w| w.board.stats().dropped())
                .sum::<u64>()
    }

    /// The table as [`super::reconcile::plan`] sees it.
    pub(super) fn views(&self) -> Vec<View> {
        self.list
            .iter()
            .map(|w| View {
                pid: w.pid,
                generation: w.generation,
                healthy: w.is_healthy(),
                ready: w.is_ready(),
                retiring: w.retire_by.is_some(),
            })
            .collect()
    }

    /// systemd's `STATUS=` line: workers ready, generation, requests served.
    pub(super) fn status(&self, generation: u64, want: u32) -> String {
        let ready = self
            .list
            .iter()
            .filter(|w| w.generation == generation && w.is_ready())
            .count();
        let served = self.requests_served();
        format!("{ready}/{want} workers ready, generation {generation}, {served} requests served")
    }

    pub(super) fn get_mut(&mut self, pid: Pid) -> Option<&mut Worker> {
        self.list.iter_mut().find(|w| w.pid == pid)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Worker> {
        self.list.iter()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Worker> {
        self.list.iter_mut()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Marks workers ready once their scoreboard says so.
    pub(super) fn note_ready(&mut self, now: Instant) {
        for w in self.list.iter_mut() {
            if w.ready_at.is_none() && w.board.state() != State::Booting {
                w.ready_at = Some(now);
                debug!(worker = w.pid.as_raw(), "Worker (pid: {}) is ready", w.pid);
            }
        }
    }

    /// The lowest balance-board slot no live worker holds.
    pub(super) fn free_slot(&self, limit: usize) -> Option<usize> {
        (0..limit).find(|i| !self.list.iter().any(|w| w.slot == Some(*i)))
    }

    pub(super) fn pids(&self) -> Vec<Pid> {
        self.list.iter().map(|w| w.pid).collect()
    }
}
