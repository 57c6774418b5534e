//! Binary upgrade on USR2, seen from both masters.
//!
//! The old master starts `corral serve` again from the executable's path on disk (so a
//! rebuilt binary is picked up), with the listening sockets inherited and a socketpair to
//! talk over. The new master writes `FILE.2` as its pidfile, boots (migrations, workers),
//! and writes `ready` on the socket once its first generation is ready. The old master
//! then tells systemd the new `MAINPID` and retires gracefully. When the old master is
//! gone, the new one reads end-of-file on the socket: it is promoted, renames its pidfile
//! to `FILE` and starts talking to systemd itself.
//!
//! If the new master dies before it is ready, the old master reaps it, says so, and keeps
//! serving. Unlike Gunicorn, nothing waits for an operator's WINCH or TERM.

use crate::cli::UpgradeArgs;
use crate::sys::process::{self, Exit, Spawn};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use tracing::{error, info, warn};

/// Upgrade state of one master.
#[derive(Debug)]
pub(super) struct Upgrade {
    /// Arguments to start `serve` with again (argv without our hidden flags).
    args: Vec<OsString>,
    /// Old-master side: the new master being started.
    child: Option<(Pid, UnixStream)>,
    /// Old-master side: the new master said it is ready.
    child_ready: bool,
    /// New-master side: the socket to the old master, until it is gone.
    parent: Option<UnixStream>,
    /// New-master side: where the pidfile goes once promoted.
    final_pidfile: Option<PathBuf>,
    promoted_now: bool,
    announced: bool,
}

impl Upgrade {
    /// `args` are this process's arguments; `parent_sock` is set when this master was
    /// itself started by USR2.
    pub(super) fn new(
        args: &[OsString],
        parent_sock: Option<UnixStream>,
        final_pidfile: Option<PathBuf>,
    ) -> Upgrade {
        let clean = UpgradeArgs::strip(args);
        if let Some(s) = &parent_sock {
            let _ = s.set_nonblocking(true);
        }
        Upgrade {
            args: clean,
            child: None,
            child_ready: false,
            parent: parent_sock,
            final_pidfile,
            promoted_now: false,
            announced: false,
        }
    }

    /// Whether this master is a new one still waiting for its predecessor to leave.
    pub(super) fn is_successor(&self) -> bool {
        self.parent.is_some()
    }

    /// Starts the new master (old-master side).
    pub(super) fn start(&mut self, exe: &Path, listener_fds: &[i32], master_only_env: &[&str]) {
        if self.child.is_some() {
            return warn!("An upgrade is already in progress; ignoring USR2");
        }
        if self.is_successor() {
            return warn!(
                "This master is itself an upgrade that has not taken over yet; ignoring USR2"
            );
        }
        let (ours, theirs) = match UnixStream::pair() {
            Ok(p) => p,
            Err(e) => return error!("Upgrade failed: cannot create a socket pair: {e}"),
        };
        let _ = ours.set_nonblocking(true);
        let mut args = self.args.clone();
        args.extend(
            UpgradeArgs {
                fds: listener_fds.to_vec(),
                sock: theirs.as_raw_fd(),
            }
            .to_argv(),
        );
        let mut inherit = listener_fds.to_vec();
        inherit.push(theirs.as_raw_fd());
        // The successor keeps NOTIFY_SOCKET and WATCHDOG_USEC: it becomes the unit's main
        // process. WATCHDOG_PID names this process, so it goes.
        let env_remove = master_only_env
            .iter()
            .filter(|k| **k != "NOTIFY_SOCKET" && **k != "WATCHDOG_USEC")
            .map(|s| s.to_string())
            .collect();
        let spec = Spawn {
            exe: exe.to_path_buf(),
            arg0: None,
            args,
            inherit,
            env_remove,
            env: vec![],
            parent_death_signal: None,
        };
        match process::spawn(&spec) {
            Ok(pid) => {
                info!(
                    new_master = pid.as_raw(),
                    "Starting new master (pid: {pid}) from {}",
                    exe.display()
                );
                self.child = Some((pid, ours));
                self.child_ready = false;
            }
            Err(e) => error!("Upgrade failed: {e}"),
        }
    }

    /// The descriptor to poll: the new master's socket (old side) or the old master's (new side).
    pub(super) fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        match (&self.child, &self.parent) {
            (Some((_, s)), _) => Some(s.as_fd()),
            (None, Some(s)) => Some(s.as_fd()),
            _ => None,
        }
    }

    /// Reads what arrived on the upgrade sockets.
    pub(super) fn poll_events(&mut self) {
        let mut buf = [0u8; 64];
        if let Some((_, s)) = &mut self.child {
            if let Ok(n) = s.read(&mut buf) {
                if n > 0 && buf[..n].windows(5).any(|w| w == b"ready") {
                    self.child_ready = true;
                }
            }
        }
        if let Some(s) = &mut self.parent {
            match s.read(&mut buf) {
                Ok(0) => {
                    self.parent = None; // the old master is gone
                    self.promoted_now = true;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.parent = None;
                    self.promoted_now = true;
                }
            }
        }
    }

    /// Old side: the pid of a new master that has just reported ready.
    pub(super) fn take_ready(&mut self) -> Option<Pid> {
        if !self.child_ready {
            return None;
        }
        self.child_ready = false;
        self.child.as_ref().map(|(pid, _)| *pid)
    }

    /// Old side: a new master is being started.
    pub(super) fn in_progress(&self) -> bool {
        self.child.is_some()
    }

    /// Old side: stop tracking the new master (it outlives us).
    pub(super) fn detach(&mut self) {
        self.child = None;
    }

    /// Old side: a child ended; true if it was the new master (which then failed).
    pub(super) fn child_exited(&mut self, pid: Pid, how: Exit) -> bool {
        if self.child.as_ref().is_some_and(|(p, _)| *p == pid) {
            self.child = None;
            error!(new_master = pid.as_raw(), "Upgrade failed: the new master (pid: {pid}) ended with {how} before it was ready; this master keeps serving");
            return true;
        }
        false
    }

    /// New side: tell the old master that this one is ready (once).
    pub(super) fn announce_ready(&mut self) {
        if self.announced {
            return;
        }
        self.announced = true;
        if let Some(s) = &mut self.parent {
            let _ = s.write_all(b"ready\n");
        }
    }

    /// New side: true once, when the old master has gone and this one takes over.
    pub(super) fn promoted(&mut self) -> bool {
        std::mem::take(&mut self.promoted_now)
    }

    /// New side: the pidfile path to move to once promoted.
    pub(super) fn final_pidfile(&self) -> Option<&Path> {
        self.final_pidfile.as_deref()
    }
}
