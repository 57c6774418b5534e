//! [`Spawner`]: everything the master's children inherit, and the one way they start.
//!
//! It owns the listening sockets, the wake-up pipe (workers write a byte to make the
//! master look at their scoreboards now), the balance board and the path of this
//! executable. Every child is a fresh exec of the binary (`sys::process::spawn`, which
//! refuses to fork from a multi-threaded process) with exactly the descriptors it needs.

use crate::cli::{MigrateBootArgs, WorkerArgs};
use crate::error::Halt;
use crate::storage::MigrateMode;
use crate::sys::listener::Listener;
use crate::sys::process::{self, Image, Spawn};
use crate::sys::scoreboard::{Balance, Scoreboard};
use nix::sys::signal::Signal as Sig;
use nix::unistd::Pid;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Environment that belongs to the master alone and must not reach its children.
pub(super) const MASTER_ONLY_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

pub(super) struct Spawner {
    /// The binary's path on disk: what `USR2` and `--reload` start.
    exe: PathBuf,
    /// This process's own image: what workers and the migration runner run.
    image: Image,
    listeners: Vec<Listener>,
    wake_read: OwnedFd,
    wake_write: OwnedFd,
    /// Connection counts of all workers, for load-aware accept.
    balance: Balance,
}

impl Spawner {
    pub(super) fn new(exe: PathBuf, listeners: Vec<Listener>) -> Result<Spawner, Halt> {
        let image = Image::current()
            .map_err(|e| Halt::failure(format!("cannot open this executable's image: {e}")))?;
        let (wake_read, wake_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|e| Halt::failure(format!("cannot create the wake-up pipe: {e}")))?;
        let balance = Balance::create()
            .map_err(|e| Halt::failure(format!("cannot create the balance board: {e}")))?;
        Ok(Spawner {
            exe,
            image,
            listeners,
            wake_read,
            wake_write,
            balance,
        })
    }

    pub(super) fn exe(&self) -> &Path {
        &self.exe
    }

    pub(super) fn listener_fds(&self) -> Vec<RawFd> {
        self.listeners.iter().map(Listener::raw_fd).collect()
    }

    /// Closes the listening sockets (shutdown: new connections are refused by the kernel).
    pub(super) fn close_listeners(&mut self) {
        self.listeners.clear();
    }

    /// A successor inherited the sockets: their files must outlive this master.
    pub(super) fn keep_socket_paths(&mut self) {
        for l in self.listeners.iter_mut() {
            l.keep_path();
        }
    }

    /// Readable when a worker asked the master to look at it.
    pub(super) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_read.as_fd()
    }

    pub(super) fn drain_wake(&self) {
        let mut buf = [0u8; 256];
        while matches!(nix::unistd::read(&self.wake_read, &mut buf), Ok(n) if n > 0) {}
    }

    /// A worker that held `slot` is gone: siblings stop deferring to it.
    pub(super) fn free_balance_slot(&self, slot: usize) {
        self.balance.publish(slot, None);
    }

    /// Starts a worker of `generation` reading its configuration from `handoff`.
    pub(super) fn worker(
        &self,
        generation: u64,
        handoff: &OwnedFd,
        slot: Option<usize>,
    ) -> Result<(Pid, Scoreboard), Halt> {
        let board = Scoreboard::create()
            .map_err(|e| Halt::failure(format!("cannot create a scoreboard: {e}")))?;
        let args = WorkerArgs {
            fds: self.listener_fds(),
            scoreboard: board.raw_fd(),
            config_fd: handoff.as_raw_fd(),
            wake_fd: self.wake_write.as_raw_fd(),
            generation,
            balance: slot.map(|s| (self.balance.raw_fd(), s)),
        };
        let mut inherit = args.fds.clone();
        inherit.extend([args.scoreboard, args.config_fd, args.wake_fd]);
        inherit.extend(args.balance.map(|(fd, _)| fd));
        let pid = self.child(args.to_argv(), inherit)?;
        Ok((pid, board))
    }

    /// Starts the migration runner (`apply`, or `check`) on `handoff`'s configuration;
    /// it may create a missing SQLite file only if `create` (the first boot).
    pub(super) fn migrator(
        &self,
        mode: MigrateMode,
        handoff: &OwnedFd,
        create: bool,
    ) -> Result<Pid, Halt> {
        let args = MigrateBootArgs {
            mode,
            config_fd: handoff.as_raw_fd(),
            create,
        };
        self.child(args.to_argv(), vec![handoff.as_raw_fd()])
    }

    /// Starts an application command (`args`) on `handoff`'s configuration: the periodic
    /// maintenance.
    pub(super) fn app_command(&self, args: &[&str], handoff: &OwnedFd) -> Result<Pid, Halt> {
        let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        argv.extend(["--config-fd".into(), handoff.as_raw_fd().to_string().into()]);
        self.child(argv, vec![handoff.as_raw_fd()])
    }

    /// Starts this process's own image with `args`, passing on `inherit`; the child gets
    /// TERM if the master dies, and none of the master's systemd variables.
    fn child(&self, args: Vec<OsString>, inherit: Vec<RawFd>) -> Result<Pid, Halt> {
        let spec = Spawn {
            exe: self.image.path(),
            arg0: Some(self.exe.clone().into_os_string()),
            args,
            inherit,
            env_remove: MASTER_ONLY_ENV.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            parent_death_signal: Some(Sig::SIGTERM),
        };
        process::spawn(&spec).map_err(|e| Halt::failure(e.to_string()))
    }
}
