//! The master's table of worker processes: who they are, which generation they belong to,
//! and what the master has asked of them. No syscalls here; the arbiter acts, this
//! module remembers.

use crate::sys::scoreboard::{Scoreboard, State};
use nix::unistd::Pid;
use std::time::Instant;

/// One worker process, as its master knows it.
pub struct Worker {
    pub pid: Pid,
    /// Spawn order across the master's life: lower is older.
    pub age: u64,
    pub generation: u64,
    pub spawned_at: Instant,
    pub board: Scoreboard,
    /// Its slot in the balance board, if one was free.
    pub slot: Option<usize>,
    /// When the master first saw it ready.
    pub ready_at: Option<Instant>,
    /// Set once the master has sent TERM (or QUIT) to retire it.
    pub retiring: Option<Retiring>,
    /// When SIGABRT was sent for a missed heartbeat; SIGKILL follows if it lingers.
    pub aborted_at: Option<Instant>,
    /// SIGKILL was sent by the master (so its death by SIGKILL is no surprise).
    pub killed: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Retiring {
    pub since: Instant,
    /// After this, SIGKILL.
    pub deadline: Instant,
}

impl Worker {
    pub fn is_ready(&self) -> bool {
        self.ready_at.is_some()
    }

    /// Serving and not on its way out: counts toward the desired number of workers.
    pub fn is_healthy(&self) -> bool {
        self.retiring.is_none()
            && self.aborted_at.is_none()
            && self.board.state() != State::WantsRetire
    }
}

/// All live workers, oldest first.
#[derive(Default)]
pub struct Workers {
    list: Vec<Worker>,
    next_age: u64,
}

impl Workers {
    pub fn insert(&mut self, mut w: Worker) {
        w.age = self.next_age;
        self.next_age += 1;
        self.list.push(w);
    }

    pub fn remove(&mut self, pid: Pid) -> Option<Worker> {
        let i = self.list.iter().position(|w| w.pid == pid)?;
        Some(self.list.remove(i))
    }

    pub fn get_mut(&mut self, pid: Pid) -> Option<&mut Worker> {
        self.list.iter_mut().find(|w| w.pid == pid)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Worker> {
        self.list.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Worker> {
        self.list.iter_mut()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The lowest balance-board slot no live worker holds.
    pub fn free_slot(&self, limit: usize) -> Option<usize> {
        (0..limit).find(|i| !self.list.iter().any(|w| w.slot == Some(*i)))
    }

    pub fn pids(&self) -> Vec<Pid> {
        self.list.iter().map(|w| w.pid).collect()
    }
}
