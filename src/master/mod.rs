//! The master process: boot order, then the supervision loop in [`arbiter`].
//!
//! Boot order: configuration → logging (both in `cli`) → signal handlers → listening
//! sockets (bound, inherited from a previous master, or from systemd) → `Listening at:` →
//! pidfile → migrations in a child process → first generation of workers → loop.
//!
//! Binding comes before migrations so that a platform waiting for the port (Heroku's
//! 60-second R10 rule) sees it bound at once; connections wait in the kernel's backlog
//! until the first worker accepts them.
//!
//! The master never runs a tokio runtime, never opens a database connection and never
//! starts a thread: every process it creates is a fresh exec of this binary
//! (`sys::process::spawn`), which refuses to fork from a multi-threaded process.

pub mod arbiter;
pub mod signals;
pub mod upgrade;
pub mod workers;

use crate::config::{Config, ConfigError, Layers, Loaded};
use crate::error::Halt;
use crate::logging;
use crate::sys::listener::{self, Listener};
use crate::sys::notify::Notifier;
use crate::sys::pidfile::{self, Pidfile};
use crate::sys::process;
use std::ffi::OsString;
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use tracing::info;

/// What the application contributes outside its workers.
#[derive(Clone, Copy)]
pub struct Hooks {
    /// Runs in the master on every (re)load of the configuration, before any worker sees
    /// it. It must not start threads or open connections; the JWT app uses it to load or
    /// create the development secret key.
    pub prepare: fn(&mut Config) -> Result<(), ConfigError>,
    /// Extra validation for `corral check` (the JWT app parses its key files).
    pub check: fn(&Config) -> Result<(), ConfigError>,
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            prepare: |_| Ok(()),
            check: |_| Ok(()),
        }
    }
}

/// Everything `corral serve` was started with.
pub struct Options {
    pub layers: Layers,
    pub loaded: Loaded,
    pub log: logging::Handle,
    pub hooks: Hooks,
    /// This process's arguments, for USR2.
    pub args: Vec<OsString>,
    /// Set when started by a previous master's USR2.
    pub upgrade_fds: Option<Vec<RawFd>>,
    pub upgrade_sock: Option<RawFd>,
}

/// Runs the master until it exits.
pub fn run(o: Options) -> Result<(), Halt> {
    let pid = std::process::id();
    let exe = process::current_exe()
        .map_err(|e| Halt::failure(format!("cannot find this executable: {e}")))?;
    let signals = signals::SignalQueue::install()
        .map_err(|e| Halt::failure(format!("cannot install signal handlers: {e}")))?;
    let listeners = open_listeners(&o)?;
    for l in &listeners {
        info!(addr = %l.addr, "Listening at: {} ({pid})", l.addr);
    }
    let successor = o.upgrade_sock.is_some();
    let pidfile = match &o.loaded.config.pid {
        Some(path) => {
            let at = if successor {
                pidfile::upgrade_path(path)
            } else {
                path.clone()
            };
            Some(Pidfile::create(&at).map_err(|e| {
                Halt::failure(format!("cannot write pidfile {}: {e}", at.display()))
            })?)
        }
        None => None,
    };
    let parent_sock = match o.upgrade_sock {
        Some(fd) => Some(UnixStream::from(crate::sys::adopt_fd(fd).map_err(|e| {
            Halt::failure(format!("bad {}: {e}", upgrade::SOCK_FLAG))
        })?)),
        None => None,
    };
    let upgrade = upgrade::Upgrade::new(o.args.clone(), parent_sock, o.loaded.config.pid.clone());
    let notifier = Notifier::from_env(&o.layers.env)
        .map_err(|e| Halt::failure(format!("bad NOTIFY_SOCKET: {e}")))?;
    info!(
        workers = o.loaded.config.workers,
        "Starting corral {} (pid: {pid})",
        env!("CARGO_PKG_VERSION")
    );
    arbiter::Arbiter::new(arbiter::Parts {
        layers: o.layers,
        loaded: o.loaded,
        hooks: o.hooks,
        exe,
        listeners,
        signals,
        notifier,
        pidfile,
        log: o.log,
        upgrade,
    })?
    .run()
}

/// Inherited sockets (USR2 successor, then systemd socket activation), else `--bind`.
fn open_listeners(o: &Options) -> Result<Vec<Listener>, Halt> {
    if let Some(fds) = &o.upgrade_fds {
        return fds
            .iter()
            .map(|fd| {
                listener::adopt(*fd)
                    .map_err(|e| Halt::failure(format!("cannot adopt inherited socket {fd}: {e}")))
            })
            .collect();
    }
    let activated = listener::systemd_fds(&o.layers.env)
        .map_err(|e| Halt::usage(format!("socket activation: {e}")))?;
    if !activated.is_empty() {
        let mut out = vec![];
        for (fd, name) in activated {
            let l = listener::adopt(fd).map_err(|e| {
                Halt::failure(format!("cannot adopt systemd socket {fd} ({name}): {e}"))
            })?;
            info!(fd, name = %name, "Adopted socket {fd} ({name}) from systemd: {}", l.addr);
            out.push(l);
        }
        return Ok(out);
    }
    let backlog = o.loaded.config.backlog as i32;
    o.loaded
        .config
        .bind
        .iter()
        .map(|b| {
            let addr = listener::BindAddr::parse(b).map_err(Halt::usage)?;
            listener::bind(&addr, backlog)
                .map_err(|e| Halt::failure(format!("Cannot bind {b}: {e}")))
        })
        .collect()
}
