//! [`Generations`]: which configuration the workers run, how a reload replaces it, and
//! how a failed reload rolls back.
//!
//! Each load of the configuration that reaches the workers is a generation: its number,
//! its [`Loaded`] value and the memfd its workers read it from. A reload (`HUP`) may
//! first run a migration child; then it starts the next generation beside the current
//! one, keeping the previous generation's state until the new one has taken over, so a
//! generation that cannot boot is rolled back and the old one keeps serving.

use crate::config::{handoff, Loaded};
use crate::error::Halt;
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// A running migration child, and what to do when it succeeds.
pub(super) struct Migration {
    pub pid: Pid,
    /// `None`: the boot is waiting for it; `Some`: a reload is.
    pub then: Option<Box<Loaded>>,
    /// Kept open until the child has read it.
    _handoff: OwnedFd,
}

/// What a reload can roll back to until the new generation has taken over.
struct Previous {
    number: u64,
    loaded: Box<Loaded>,
    handoff: OwnedFd,
    num_workers: u32,
    started: Instant,
}

/// A generation that was rolled back.
pub(super) struct RolledBack {
    pub failed: u64,
    pub restored: u64,
    pub num_workers: u32,
}

pub(super) struct Generations {
    number: u64,
    loaded: Loaded,
    /// The current generation's configuration, in a memfd its workers read.
    handoff: OwnedFd,
    previous: Option<Previous>,
    migration: Option<Migration>,
    /// The first generation has been fully ready: from now on a boot failure is not fatal.
    booted: bool,
}

/// A memfd holding `loaded`'s configuration, for a worker or the migration child.
pub(super) fn handoff_of(loaded: &Loaded) -> Result<OwnedFd, Halt> {
    handoff::write(&loaded.config)
        .map_err(|e| Halt::failure(format!("cannot write the configuration handoff: {e}")))
}

impl Generations {
    /// Before the first generation (number 0, not started).
    pub(super) fn new(loaded: Loaded) -> Result<Generations, Halt> {
        Ok(Generations {
            handoff: handoff_of(&loaded)?,
            number: 0,
            loaded,
            previous: None,
            migration: None,
            booted: false,
        })
    }

    /// The current generation's number; 0 before the first one starts.
    pub(super) fn number(&self) -> u64 {
        self.number
    }

    pub(super) fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    pub(super) fn handoff(&self) -> &OwnedFd {
        &self.handoff
    }

    pub(super) fn booted(&self) -> bool {
        self.booted
    }

    /// The first generation is ready.
    pub(super) fn mark_booted(&mut self) {
        self.booted = true;
    }

    /// A reload is between its start and the new generation's taking over.
    pub(super) fn reloading(&self) -> bool {
        self.previous.is_some()
    }

    /// Makes `loaded` the next generation. `num_workers` is the current desired count, kept
    /// for a rollback.
    pub(super) fn begin(&mut self, loaded: Loaded, num_workers: u32) -> Result<(), Halt> {
        let handoff = handoff_of(&loaded)?;
        if self.booted && self.previous.is_none() {
            self.previous = Some(Previous {
                number: self.number,
                loaded: Box::new(std::mem::replace(&mut self.loaded, loaded)),
                handoff: std::mem::replace(&mut self.handoff, handoff),
                num_workers,
                started: Instant::now(),
            });
        } else {
            self.loaded = loaded;
            self.handoff = handoff;
        }
        self.number += 1;
        Ok(())
    }

    /// The reload is complete: the previous generation is gone. Returns how long it took.
    pub(super) fn complete(&mut self) -> Option<Duration> {
        self.previous.take().map(|p| p.started.elapsed())
    }

    /// The new generation could not boot: the previous one is current again.
    pub(super) fn roll_back(&mut self) -> Option<RolledBack> {
        let p = self.previous.take()?;
        let failed = self.number;
        self.number = p.number;
        self.loaded = *p.loaded;
        self.handoff = p.handoff;
        Some(RolledBack {
            failed,
            restored: p.number,
            num_workers: p.num_workers,
        })
    }

    pub(super) fn migration_started(
        &mut self,
        pid: Pid,
        then: Option<Box<Loaded>>,
        handoff: OwnedFd,
    ) {
        self.migration = Some(Migration {
            pid,
            then,
            _handoff: handoff,
        });
    }

    pub(super) fn migration_pid(&self) -> Option<Pid> {
        self.migration.as_ref().map(|m| m.pid)
    }

    /// The migration child, if `pid` is it.
    pub(super) fn take_migration(&mut self, pid: Pid) -> Option<Migration> {
        if self.migration_pid() == Some(pid) {
            self.migration.take()
        } else {
            None
        }
    }
}
