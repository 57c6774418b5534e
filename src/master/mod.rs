//! The master process: boot order, then the supervision loop in [`arbiter`].
//!
//! Boot order: configuration → logging → the application's `prepare` (all three in
//! `cmd::serve`) → signal handlers → listening sockets (bound, inherited from a previous
//! master, or from systemd) → `Listening at:` → pidfile → migrations in a child process →
//! first generation of workers → loop.
//!
//! Binding comes before migrations so that a platform waiting for the port (Heroku's
//! 60-second R10 rule) sees it bound at once; connections wait in the kernel's backlog
//! until the first worker accepts them.
//!
//! The master never runs a tokio runtime, never opens a database connection and never
//! starts a thread: every process it creates is a fresh exec of this binary
//! (`sys::process::spawn`), which refuses to fork from a multi-threaded process.
//!
//! The parts, each owning its state: [`arbiter`] (the loop and the worker table),
//! [`reconcile`] (pure decisions), [`generation`] (reloads and rollback), [`spawn`] (what
//! children inherit), [`systemd`], [`dev_reload`] (`--reload`), [`upgrade`] (`USR2`),
//! [`signals`] and [`workers`].

mod arbiter;
mod console;
mod dev_reload;
mod generation;
mod maintenance;
mod reconcile;
mod report;
mod signals;
mod spawn;
mod systemd;
mod upgrade;
mod workers;

use crate::cli::UpgradeArgs;
use crate::config::{Layers, Loaded};
use crate::error::Halt;
use crate::logging;
use crate::service::Hooks;
use crate::storage::migrate::Migrations;
use crate::sys::listener::{self, Listener};
use crate::sys::pidfile::{self, Pidfile};
use crate::sys::process;
use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use tracing::info;

/// Everything `corral serve` was started with.
pub(crate) struct Options {
    pub layers: Layers,
    pub loaded: Loaded,
    pub log: logging::Handle,
    pub hooks: Hooks,
    pub migrations: Migrations,
    /// This process's arguments, for USR2.
    pub args: Vec<OsString>,
    /// Set when started by a previous master's USR2.
    pub upgrade: Option<UpgradeArgs>,
}

/// Runs the master until it exits.
pub(crate) fn run(o: Options) -> Result<(), Halt> {
    let pid = std::process::id();
    let exe = process::current_exe()
        .map_err(|e| Halt::failure(format!("cannot find this executable: {e}")))?;
    let signals = signals::SignalQueue::install()
        .map_err(|e| Halt::failure(format!("cannot install signal handlers: {e}")))?;
    let listeners = open_listeners(&o)?;
    let tls = o.loaded.config.certfile.is_some();
    for l in &listeners {
        let shown = match &l.addr {
            crate::config::BindAddr::Tcp(a) if tls => format!("https://{a}"),
            other => other.to_string(),
        };
        info!(addr = %shown, "Listening at: {shown} ({pid})");
    }
    let successor = o.upgrade.is_some();
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
    let parent_sock = match &o.upgrade {
        Some(u) => Some(UnixStream::from(crate::sys::adopt_fd(u.sock).map_err(
            |e| Halt::failure(format!("bad upgrade socket {}: {e}", u.sock)),
        )?)),
        None => None,
    };
    let upgrade = upgrade::Upgrade::new(&o.args, parent_sock, o.loaded.config.pid.clone());
    let systemd = systemd::Systemd::from_env(&o.layers.env, successor)?;
    crate::sys::proctitle::set("corral: master");
    let console = console::Console::open(&o.loaded.config, o.loaded.config.pid.as_deref())?;
    take_identity(&o, &listeners, &console, pidfile.as_ref())?;
    info!(
        workers = o.loaded.config.workers,
        "Starting corral {} (pid: {pid})",
        env!("CARGO_PKG_VERSION")
    );
    arbiter::Arbiter::new(arbiter::Parts {
        has_migrations: !o.migrations.is_empty(),
        layers: o.layers,
        loaded: o.loaded,
        hooks: o.hooks,
        spawner: spawn::Spawner::new(exe, listeners)?,
        signals,
        systemd,
        pidfile,
        log: o.log,
        upgrade,
        console,
    })?
    .run()
}

/// `--bind-mode` and `--user`/`--group`: the unix sockets this master created get their
/// mode and owner, the files the new user must reopen (logs, pidfile) its ownership, and
/// then the master switches for good, before any child starts.
fn take_identity(
    o: &Options,
    listeners: &[Listener],
    console: &console::Console,
    pidfile: Option<&Pidfile>,
) -> Result<(), Halt> {
    use crate::sys::privileges as p;
    let c = &o.loaded.config;
    let creds = p::resolve(c.user.as_deref(), c.group.as_deref()).map_err(Halt::usage)?;
    let sockets: Vec<&std::path::Path> = listeners
        .iter()
        .filter(|l| l.created_path())
        .filter_map(|l| match &l.addr {
            crate::config::BindAddr::Unix(path) => Some(path.as_path()),
            _ => None,
        })
        .collect();
    for path in &sockets {
        if let Some(m) = c.bind_mode {
            p::chmod(path, m.0).map_err(Halt::failure)?;
        }
    }
    let Some(creds) = creds else { return Ok(()) };
    let files = [c.error_logfile.as_str()]
        .into_iter()
        .chain(c.access_logfile.as_deref())
        .filter(|f| *f != "-")
        .map(std::path::Path::new);
    let owned = sockets
        .into_iter()
        .chain(console.socket_paths())
        .chain(files)
        .chain(pidfile.map(Pidfile::path));
    if !nix::unistd::Uid::effective().is_root() {
        return p::switch_to(creds).map_err(Halt::failure);
    }
    for path in owned {
        p::chown(path, creds).map_err(Halt::failure)?;
    }
    p::switch_to(creds).map_err(Halt::failure)?;
    info!(
        uid = creds.uid.as_raw(),
        gid = creds.gid.as_raw(),
        "Switched to uid {} gid {}",
        creds.uid,
        creds.gid
    );
    Ok(())
}

/// Inherited sockets (USR2 successor, then systemd socket activation), else `--bind`.
fn open_listeners(o: &Options) -> Result<Vec<Listener>, Halt> {
    if let Some(u) = &o.upgrade {
        return u
            .fds
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
            listener::bind(b, backlog)
                .map_err(|e| Halt::failure(format!("Cannot bind {}: {e}", String::from(b.clone()))))
        })
        .collect()
}
