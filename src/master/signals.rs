//! The master's signals as data: a [`Signal`] enum and a [`SignalQueue`] whose handlers
//! only record.
//!
//! signal-hook's handlers write to a self-pipe and set a flag; they never log, allocate or
//! reap (Gunicorn learnt this the hard way: commit b650332c, "Move reap_workers() call from
//! signal handler context to main loop … This fixes potential deadlocks caused by logging
//! from signal handler context"). The master polls the pipe's read end together with its
//! other descriptors and handles what arrived in its loop.

use signal_hook::consts::*;
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

/// A signal the master acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Signal {
    // Ordered by priority: shutdown requests are handled before anything else that
    // arrived in the same batch.
    Int,
    Quit,
    Term,
    Hup,
    Usr2,
    Ttin,
    Ttou,
    Usr1,
    Chld,
}

impl Signal {
    fn from_raw(n: i32) -> Option<Signal> {
        Some(match n {
            SIGHUP => Signal::Hup,
            SIGINT => Signal::Int,
            SIGQUIT => Signal::Quit,
            SIGTERM => Signal::Term,
            SIGTTIN => Signal::Ttin,
            SIGTTOU => Signal::Ttou,
            SIGUSR1 => Signal::Usr1,
            SIGUSR2 => Signal::Usr2,
            SIGCHLD => Signal::Chld,
            _ => return None,
        })
    }
}

impl fmt::Display for Signal {
    /// Lowercase, as in Gunicorn's `Handling signal: hup`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Hup => "hup",
            Signal::Int => "int",
            Signal::Quit => "quit",
            Signal::Term => "term",
            Signal::Ttin => "ttin",
            Signal::Ttou => "ttou",
            Signal::Usr1 => "usr1",
            Signal::Usr2 => "usr2",
            Signal::Chld => "chld",
        })
    }
}

const HANDLED: &[i32] = &[
    SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGCHLD,
];

/// Signals received and not yet handled.
pub(super) struct SignalQueue {
    delivery: SignalDelivery<UnixStream, SignalOnly>,
}

impl SignalQueue {
    /// Installs the handlers. Until then the default dispositions apply (TERM kills),
    /// which is right for a master that has not spawned anything yet.
    pub(super) fn install() -> io::Result<SignalQueue> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let delivery = SignalDelivery::with_pipe(read, write, SignalOnly, HANDLED)?;
        Ok(SignalQueue { delivery })
    }

    /// Readable when a signal has arrived.
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.delivery.get_read().as_fd()
    }

    /// Empties the pipe, then returns what arrived, highest priority first.
    pub(super) fn drain(&mut self) -> Vec<Signal> {
        let mut sigs: Vec<Signal> = self
            .delivery
            .pending()
            .filter_map(Signal::from_raw)
            .collect();
        sigs.sort();
        sigs
    }
}
