//! Which workers to start or retire now: a pure function of the worker table and the
//! desired state, unit-tested the way Gunicorn's `test_arbiter.py` tests
//! `manage_workers`.
//!
//! The rules, in order:
//! 1. Too many healthy workers of the current generation (after `TTOU`): retire the
//!    oldest.
//! 2. Too few (at boot, after a crash, after `TTIN` or a reload): start the difference,
//!    unless crash backoff says to wait.
//! 3. Workers of an older generation, and current ones asking to be replaced
//!    (`--max-requests`), leave one by one as new ones become ready, so the number
//!    serving never drops below the target.

use nix::unistd::Pid;
use std::time::{Duration, Instant};
use tracing::warn;

/// Longest pause between respawns of crashing workers.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One live worker, as the decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct View {
    pub pid: Pid,
    pub generation: u64,
    /// Serving and not on its way out (not retiring, not aborted, not asking to go).
    pub healthy: bool,
    pub ready: bool,
    /// The master has already asked it to stop.
    pub retiring: bool,
}

/// What to do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// Workers to start for the current generation.
    pub spawn: usize,
    /// Workers to retire gracefully, oldest first.
    pub retire: Vec<Pid>,
}

/// `workers` oldest first; `want` is the desired number for `generation`; `may_spawn` is
/// false while crash backoff holds respawns.
pub(super) fn plan(workers: &[View], generation: u64, want: usize, may_spawn: bool) -> Plan {
    let mut plan = Plan::default();
    let current = |w: &View| w.generation == generation && w.healthy;
    let healthy: Vec<Pid> = workers
        .iter()
        .filter(|w| current(w))
        .map(|w| w.pid)
        .collect();
    if healthy.len() > want {
        plan.retire.extend(&healthy[..healthy.len() - want]);
    }
    if healthy.len() < want && may_spawn {
        plan.spawn = want - healthy.len();
    }
    let leaving = |w: &View| w.retiring || plan.retire.contains(&w.pid);
    let ready_new = workers
        .iter()
        .filter(|w| current(w) && w.ready && !leaving(w))
        .count();
    let outgoing: Vec<Pid> = workers
        .iter()
        .filter(|w| {
            !leaving(w) && (w.generation < generation || (w.generation == generation && !w.healthy))
        })
        .map(|w| w.pid)
        .collect();
    let keep = want.saturating_sub(ready_new);
    if outgoing.len() > keep {
        plan.retire.extend(&outgoing[..outgoing.len() - keep]);
    }
    plan
}

/// Bounded exponential backoff for workers that keep dying soon after they start: 0.1 s
/// after the second crash in a row, doubling up to 10 s; a crash after a stable run
/// starts the count again.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    streak: u32,
    until: Option<Instant>,
}

impl Backoff {
    /// A worker died unexpectedly; `stable` when it had served for a while first.
    pub(super) fn crashed(&mut self, stable: bool) -> Option<Duration> {
        self.streak = if stable { 1 } else { self.streak + 1 };
        if self.streak < 2 {
            return None;
        }
        let delay =
            (Duration::from_millis(100) * 2u32.saturating_pow(self.streak - 2)).min(MAX_BACKOFF);
        warn!(
            streak = self.streak,
            delay_ms = delay.as_millis() as u64,
            "Workers failed {} times in a row; respawning in {} ms",
            self.streak,
            delay.as_millis()
        );
        self.until = Some(Instant::now() + delay);
        Some(delay)
    }

    pub(super) fn may_spawn(&self, now: Instant) -> bool {
        self.until.is_none_or(|t| now >= t)
    }

    /// Replacements are being started: the wait is over.
    pub(super) fn respawning(&mut self) {
        self.until = None;
    }

    /// When respawning is allowed again.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pid: i32, generation: u64, ready: bool) -> View {
        View {
            pid: Pid::from_raw(pid),
            generation,
            healthy: true,
            ready,
            retiring: false,
        }
    }

    fn pids(p: &[i32]) -> Vec<Pid> {
        p.iter().map(|&n| Pid::from_raw(n)).collect()
    }

    #[test]
    fn boot_spawns_the_desired_number() {
        assert_eq!(
            plan(&[], 1, 3, true),
            Plan {
                spawn: 3,
                retire: vec![]
            }
        );
        assert_eq!(plan(&[w(1, 1, false)], 1, 3, true).spawn, 2);
    }

    #[test]
    fn backoff_holds_respawns() {
        assert_eq!(plan(&[w(1, 1, true)], 1, 2, false), Plan::default());
    }

    #[test]
    fn ttou_retires_the_oldest() {
        let table = [w(1, 1, true), w(2, 1, true), w(3, 1, true)];
        assert_eq!(
            plan(&table, 1, 2, true),
            Plan {
                spawn: 0,
                retire: pids(&[1])
            }
        );
    }

    #[test]
    fn a_reload_retires_old_workers_only_as_new_ones_become_ready() {
        let old = [w(1, 1, true), w(2, 1, true)];
        // Just after HUP: two new workers to start, nobody leaves yet.
        assert_eq!(
            plan(&old, 2, 2, true),
            Plan {
                spawn: 2,
                retire: vec![]
            }
        );
        // One new worker is ready: one old one goes, the oldest.
        let table = [old[0], old[1], w(3, 2, true), w(4, 2, false)];
        assert_eq!(
            plan(&table, 2, 2, true),
            Plan {
                spawn: 0,
                retire: pids(&[1])
            }
        );
        // Both are ready: the other old one goes too.
        let table = [old[1], w(3, 2, true), w(4, 2, true)];
        assert_eq!(
            plan(&table, 2, 2, true),
            Plan {
                spawn: 0,
                retire: pids(&[2])
            }
        );
    }

    #[test]
    fn a_worker_asking_to_be_replaced_leaves_once_its_replacement_is_ready() {
        let mut tired = w(1, 1, true);
        tired.healthy = false;
        assert_eq!(
            plan(&[tired], 1, 1, true),
            Plan {
                spawn: 1,
                retire: vec![]
            }
        );
        assert_eq!(
            plan(&[tired, w(2, 1, true)], 1, 1, true),
            Plan {
                spawn: 0,
                retire: pids(&[1])
            }
        );
    }

    #[test]
    fn retiring_workers_are_not_retired_twice() {
        let mut going = w(1, 1, true);
        going.retiring = true;
        going.healthy = false;
        assert_eq!(plan(&[going, w(2, 2, true)], 2, 1, true), Plan::default());
    }

    #[test]
    fn backoff_doubles_to_ten_seconds_and_resets_after_a_stable_run() {
        let mut b = Backoff::default();
        assert_eq!(b.crashed(false), None, "one crash is not a loop");
        assert!(b.may_spawn(Instant::now()));
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
        assert_eq!(ms(b.crashed(false)), Some(100));
        assert!(!b.may_spawn(Instant::now()));
        assert_eq!(ms(b.crashed(false)), Some(200));
        for _ in 0..10 {
            b.crashed(false);
        }
        assert_eq!(ms(b.crashed(false)), Some(10_000));
        assert_eq!(b.crashed(true), None, "a stable run starts the count again");
        b.respawning();
        assert!(b.may_spawn(Instant::now()));
    }
}
