//! The arbiter: the master's supervision loop and one handler per signal, after
//! Gunicorn's `arbiter.py`.
//!
//! Everything the master does happens on this one thread. The loop waits (at most a
//! second) for a signal, a worker's wake-up byte or a deadline; then it handles signals,
//! reaps children, watches heartbeats and readiness, and reconciles the worker table with
//! the desired state. Signals never act directly: TTIN, TTOU and HUP change the desired
//! state (`num_workers`, `generation`) and [`Arbiter::manage_workers`] closes the gap,
//! oldest first.
//!
//! A reload (HUP) starts a new generation beside the old one; an old worker is retired
//! only once a new one has reported ready, so capacity never drops. If the new generation
//! cannot boot, the reload is rolled back and the old generation keeps serving.

use super::signals::{Signal, SignalQueue};
use super::upgrade::Upgrade;
use super::workers::{Retiring, Worker, Workers};
use super::Hooks;
use crate::config::{Layers, Loaded, MigrateMode};
use crate::error::{exit, Halt};
use crate::logging;
use crate::sys::listener::{self, Listener};
use crate::sys::notify::Notifier;
use crate::sys::pidfile::Pidfile;
use crate::sys::process::{self, Exit, Spawn};
use crate::sys::scoreboard::{Balance, Scoreboard, State, BALANCE_SLOTS};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal as Sig;
use nix::unistd::Pid;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// A worker that dies sooner than this after becoming ready counts as a crash loop.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Longest pause between respawns of crashing workers.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// After SIGABRT, how long a hung worker gets before SIGKILL.
const ABORT_GRACE: Duration = Duration::from_secs(1);
/// Longest a quick shutdown (INT, QUIT) waits before SIGKILL.
const QUICK_STOP: Duration = Duration::from_secs(5);
/// Environment that belongs to the master alone and must not reach its children.
const MASTER_ONLY_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Migrations are running before the first generation.
    Booting,
    Running,
    Stopping {
        quick: bool,
        deadline: Instant,
    },
}

/// A running `corral migrate` child and what to do when it succeeds.
struct Migration {
    pid: Pid,
    then: Option<Box<Loaded>>, // None: boot; Some: the reload waiting for it
    _handoff: OwnedFd,
}

/// What a reload can roll back to until the new generation has taken over.
struct Reload {
    generation: u64,
    loaded: Box<Loaded>,
    handoff: OwnedFd,
    num_workers: u32,
    started: Instant,
}

/// The master process's state.
pub struct Arbiter {
    layers: Layers,
    loaded: Loaded,
    /// The current generation's configuration, in a memfd its workers read.
    handoff: OwnedFd,
    hooks: Hooks,
    exe: PathBuf,
    listeners: Vec<Listener>,
    signals: SignalQueue,
    wake_read: OwnedFd,
    wake_write: OwnedFd,
    /// Connection counts of all workers, for load-aware accept.
    balance: Balance,
    notifier: Notifier,
    pidfile: Option<Pidfile>,
    log: logging::Handle,
    workers: Workers,
    generation: u64,
    num_workers: u32,
    phase: Phase,
    reload: Option<Reload>,
    migration: Option<Migration>,
    upgrade: Upgrade,
    /// The first generation has been fully ready: from now on a boot failure is not fatal.
    booted: bool,
    crash_streak: u32,
    respawn_after: Option<Instant>,
    served_by_gone: u64,
    watchdog: Option<(Duration, Instant)>,
    status: String,
    /// `--reload`: what to watch, and when a burst of changes settles.
    reloader: Option<Reloader>,
    last_extend: Option<Instant>,
}

/// `--reload`: the configuration file, the migrations, the binary and extra files.
struct Reloader {
    watcher: crate::sys::watch::Watcher,
    binary: crate::sys::watch::Watcher,
    /// Act once no change has been seen for `SETTLE` (a rebuild writes in several steps).
    due: Option<(Instant, bool)>,
}

/// How long `--reload` waits for a burst of file changes to end.
const SETTLE: Duration = Duration::from_millis(300);

pub struct Parts {
    pub layers: Layers,
    pub loaded: Loaded,
    pub hooks: Hooks,
    pub exe: PathBuf,
    pub listeners: Vec<Listener>,
    pub signals: SignalQueue,
    pub notifier: Notifier,
    pub pidfile: Option<Pidfile>,
    pub log: logging::Handle,
    pub upgrade: Upgrade,
}

impl Arbiter {
    pub fn new(p: Parts) -> Result<Arbiter, Halt> {
        let (wake_read, wake_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|e| Halt::failure(format!("cannot create the wake-up pipe: {e}")))?;
        let handoff = handoff_fd(&p.loaded)?;
        let balance = Balance::create()
            .map_err(|e| Halt::failure(format!("cannot create the balance board: {e}")))?;
        let watchdog = p
            .layers
            .env
            .get("WATCHDOG_USEC")
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|_| {
                p.layers
                    .env
                    .get("WATCHDOG_PID")
                    .is_none_or(|w| w == &std::process::id().to_string())
            })
            .map(|us| (Duration::from_micros(us / 2), Instant::now()));
        Ok(Arbiter {
            num_workers: p.loaded.config.workers,
            layers: p.layers,
            loaded: p.loaded,
            handoff,
            hooks: p.hooks,
            exe: p.exe,
            listeners: p.listeners,
            signals: p.signals,
            wake_read,
            wake_write,
            balance,
            notifier: p.notifier,
            pidfile: p.pidfile,
            log: p.log,
            workers: Workers::default(),
            generation: 0,
            phase: Phase::Booting,
            reload: None,
            migration: None,
            upgrade: p.upgrade,
            booted: false,
            crash_streak: 0,
            respawn_after: None,
            served_by_gone: 0,
            watchdog,
            status: String::new(),
            reloader: None,
            last_extend: None,
        })
    }

    /// Watches what `--reload` reloads on; a path that cannot be watched is reported.
    fn watch_for_reload(&mut self) {
        if !self.loaded.config.reload {
            return;
        }
        let (Ok(mut watcher), Ok(mut binary)) = (
            crate::sys::watch::Watcher::new(),
            crate::sys::watch::Watcher::new(),
        ) else {
            return error!("--reload: cannot create an inotify instance");
        };
        let c = &self.loaded.config;
        let mut paths: Vec<PathBuf> = self.loaded.file.iter().cloned().collect();
        if let Some(dir) = &c.database.migrations_dir {
            // Migrations may sit in per-dialect subfolders (as `migrate new` makes them).
            paths.push(dir.clone());
            paths.extend(
                ["postgres", "sqlite"]
                    .map(|d| dir.join(d))
                    .into_iter()
                    .filter(|d| d.is_dir()),
            );
        }
        paths.extend(c.reload_extra_file.iter().cloned());
        for p in &paths {
            if let Err(e) = watcher.add(p) {
                warn!("--reload: cannot watch {}: {e}", p.display());
            }
        }
        if let Err(e) = binary.add(&self.exe) {
            warn!("--reload: cannot watch {}: {e}", self.exe.display());
        }
        info!(
            "Reloading on changes to {} and the binary {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            self.exe.display()
        );
        self.reloader = Some(Reloader {
            watcher,
            binary,
            due: None,
        });
    }

    /// `--reload`: after changes settle, a new binary means an upgrade (USR2), anything else
    /// a reload (HUP).
    fn check_reload(&mut self) -> Result<(), Halt> {
        let Some(r) = &mut self.reloader else {
            return Ok(());
        };
        let binary = r.binary.changed();
        if binary || r.watcher.changed() {
            let was_binary = r.due.is_some_and(|(_, b)| b);
            r.due = Some((Instant::now() + SETTLE, binary || was_binary));
            return Ok(());
        }
        match r.due {
            Some((at, binary)) if Instant::now() >= at => {
                r.due = None;
                if binary {
                    info!("Reload: the binary changed; starting it as a new master");
                    self.handle_usr2()
                } else {
                    info!("Reload: watched files changed");
                    self.handle_hup();
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// The supervision loop. Returns when the master should exit.
    pub fn run(mut self) -> Result<(), Halt> {
        self.watch_for_reload();
        let result = self
            .boot()
            .and_then(|()| self.manage_workers())
            .and_then(|()| loop {
                for sig in self.wait()? {
                    if sig != Signal::Chld {
                        info!(signal = %sig, "Handling signal: {sig}");
                    }
                    self.handle(sig)?;
                }
                self.reap_children()?;
                self.check_reload()?;
                self.maybe_promote();
                self.check_readiness();
                self.murder_workers();
                self.manage_workers()?;
                if self.finished() {
                    break Ok(());
                }
                self.tell_systemd();
            });
        match result {
            Ok(()) => {
                info!("Shutting down: Master");
                Ok(())
            }
            Err(halt) => Err(self.halt(halt)),
        }
    }

    // ---- signals ----

    fn handle(&mut self, sig: Signal) -> Result<(), Halt> {
        match sig {
            Signal::Hup => self.handle_hup(),
            Signal::Term => self.stop(false),
            Signal::Int | Signal::Quit => self.stop(true),
            Signal::Ttin => self.handle_ttin(),
            Signal::Ttou => self.handle_ttou(),
            Signal::Usr1 => self.handle_usr1(),
            Signal::Usr2 => self.handle_usr2()?,
            Signal::Chld => {} // reaping happens on every turn of the loop
        }
        Ok(())
    }

    /// HUP: re-read the configuration and start a new generation; the old one retires as
    /// the new one becomes ready. A configuration that fails validation changes nothing.
    fn handle_hup(&mut self) {
        if !matches!(self.phase, Phase::Running) {
            return warn!("Ignoring reload: the master is not running");
        }
        let loaded = match self
            .layers
            .load()
            .and_then(|mut l| (self.hooks.prepare)(&mut l.config).map(|()| l))
        {
            Ok(l) => l,
            Err(e) => {
                return error!(error = %e, "Reload failed: {e}; keeping generation {}", self.generation)
            }
        };
        if loaded.config.bind != self.loaded.config.bind {
            warn!("The bind addresses changed; a reload keeps the current sockets (restart to rebind; a USR2 upgrade inherits them too)");
        }
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=Reloading",
            crate::sys::monotonic_us()
        ));
        if loaded.config.migrate_mode() == MigrateMode::Off {
            self.start_generation(loaded);
        } else if let Err(e) = self.start_migrations(Some(Box::new(loaded))) {
            error!("Reload failed: {e}; keeping generation {}", self.generation);
            self.notify("READY=1");
        }
    }

    /// TTIN: one worker more.
    fn handle_ttin(&mut self) {
        self.num_workers += 1;
        info!(
            workers = self.num_workers,
            "Increasing workers to {}", self.num_workers
        );
    }

    /// TTOU: one worker fewer (never below one); the oldest retires.
    fn handle_ttou(&mut self) {
        if self.num_workers > 1 {
            self.num_workers -= 1;
            info!(
                workers = self.num_workers,
                "Decreasing workers to {}", self.num_workers
            );
        }
    }

    /// USR1: reopen log files, here and in every worker.
    fn handle_usr1(&mut self) {
        if let Err(e) = self.log.reopen() {
            error!("Cannot reopen the error log: {e}");
        }
        for pid in self.workers.pids() {
            let _ = process::signal(pid, Sig::SIGUSR1);
        }
    }

    /// USR2: start a new master from the binary on disk; this one retires when the new
    /// one is ready.
    fn handle_usr2(&mut self) -> Result<(), Halt> {
        if !matches!(self.phase, Phase::Running) {
            warn!("Ignoring upgrade: the master is not running");
            return Ok(());
        }
        let fds: Vec<_> = self.listeners.iter().map(|l| l.raw_fd()).collect();
        self.upgrade.start(&self.exe, &fds, MASTER_ONLY_ENV);
        Ok(())
    }

    /// TERM: graceful (finish in-flight requests); INT, QUIT: quick.
    fn stop(&mut self, quick: bool) {
        let now = Instant::now();
        if let Phase::Stopping { quick: true, .. } = self.phase {
            return;
        }
        let deadline = match (self.phase, quick) {
            (Phase::Stopping { deadline, .. }, true) => deadline.min(now + QUICK_STOP),
            (Phase::Stopping { .. }, false) => return,
            (_, true) => now + QUICK_STOP.min(self.graceful_timeout()),
            (_, false) => now + self.graceful_timeout(),
        };
        self.phase = Phase::Stopping { quick, deadline };
        self.notify("STOPPING=1\nSTATUS=Stopping");
        self.listeners.clear();
        let sig = if quick { Sig::SIGQUIT } else { Sig::SIGTERM };
        for w in self.workers.iter_mut() {
            w.retiring = Some(Retiring {
                since: now,
                deadline,
            });
            let _ = process::signal(w.pid, sig);
        }
        if let Some(m) = &self.migration {
            let _ = process::signal(m.pid, Sig::SIGTERM);
        }
    }

    // ---- the loop's steps ----

    /// Applies migrations (in a child) or, without them, starts the first generation.
    fn boot(&mut self) -> Result<(), Halt> {
        if self.loaded.config.migrate_mode() == MigrateMode::Off {
            self.phase = Phase::Running;
            self.start_generation(self.loaded.clone());
            return Ok(());
        }
        self.start_migrations(None)
    }

    /// Sleeps until a signal, a worker's wake-up byte, or the next deadline (at most 1 s).
    fn wait(&mut self) -> Result<Vec<Signal>, Halt> {
        let timeout = self
            .next_deadline()
            .saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let upgrade_fd = self.upgrade.poll_fd();
        let mut fds = vec![
            PollFd::new(self.signals.fd(), PollFlags::POLLIN),
            PollFd::new(self.wake_read.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(fd) = upgrade_fd.as_ref() {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        if let Some(r) = &self.reloader {
            fds.push(PollFd::new(r.watcher.fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(r.binary.fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Halt::failure(format!("poll failed: {e}"))),
        }
        drop(fds);
        let mut buf = [0u8; 256];
        while matches!(nix::unistd::read(&self.wake_read, &mut buf), Ok(n) if n > 0) {}
        self.upgrade.poll_events();
        Ok(self.signals.drain())
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut next = now + Duration::from_secs(1);
        if let Some(t) = self.respawn_after {
            next = next.min(t);
        }
        if let Some((every, last)) = self.watchdog {
            next = next.min(last + every);
        }
        if let Some((at, _)) = self.reloader.as_ref().and_then(|r| r.due) {
            next = next.min(at);
        }
        for w in self.workers.iter() {
            if let Some(r) = w.retiring {
                next = next.min(r.deadline);
            }
        }
        next.max(now)
    }

    /// Collects ended children: workers, the migration runner, an upgraded master.
    fn reap_children(&mut self) -> Result<(), Halt> {
        for (pid, how) in process::reap() {
            if let Some(w) = self.workers.remove(pid) {
                self.worker_exited(w, how)?;
            } else if self.migration.as_ref().is_some_and(|m| m.pid == pid) {
                let m = self.migration.take().expect("checked above");
                self.migrations_done(m, how)?;
            } else if self.upgrade.child_exited(pid, how) {
                self.notify("READY=1");
            } else {
                debug!(worker = pid.as_raw(), "Reaped unknown child {pid} ({how})");
            }
        }
        Ok(())
    }

    fn worker_exited(&mut self, w: Worker, how: Exit) -> Result<(), Halt> {
        self.served_by_gone += w.board.requests();
        if let Some(slot) = w.slot {
            self.balance.publish(slot, None);
        }
        let pid = w.pid.as_raw();
        let expected = w.retiring.is_some() || matches!(self.phase, Phase::Stopping { .. });
        if !w.is_ready() && !expected {
            let reason = match (w.board.message(), w.aborted_at) {
                (Some(m), _) => m,
                (None, Some(_)) => format!(
                    "no sign of life within {} s (--timeout)",
                    self.loaded.config.timeout
                ),
                (None, None) => format!("it ended with {how} before it was ready"),
            };
            if !self.booted {
                return Err(Halt::new(
                    exit::WORKER_BOOT,
                    format!("Worker failed to boot: {reason}"),
                ));
            }
            if self.reload.is_some() && w.generation == self.generation {
                self.abort_reload(&reason);
                return Ok(());
            }
            error!(worker = pid, "Worker (pid: {pid}) failed to boot: {reason}");
            self.crashed(&w);
            return Ok(());
        }
        match how {
            Exit::Code(0) => debug!(worker = pid, "Worker (pid: {pid}) exited"),
            Exit::Signal(Sig::SIGKILL) if w.killed => {
                warn!(worker = pid, "Worker (pid: {pid}) was killed")
            }
            Exit::Signal(Sig::SIGKILL) => error!(
                worker = pid,
                "Worker (pid: {pid}) was sent SIGKILL! Perhaps out of memory?"
            ),
            _ if w.aborted_at.is_some() => {
                warn!(worker = pid, "Worker (pid: {pid}) was aborted ({how})")
            }
            _ => error!(worker = pid, exit = %how, "Worker (pid: {pid}) died: {how}"),
        }
        if !expected && how != Exit::Code(0) {
            self.crashed(&w);
        }
        Ok(())
    }

    /// Bounded exponential backoff for workers that keep dying soon after they start.
    fn crashed(&mut self, w: &Worker) {
        let stable = w.ready_at.is_some_and(|t| t.elapsed() >= STABLE_AFTER);
        self.crash_streak = if stable { 1 } else { self.crash_streak + 1 };
        if self.crash_streak >= 2 {
            let delay = (Duration::from_millis(100) * 2u32.saturating_pow(self.crash_streak - 2))
                .min(MAX_BACKOFF);
            warn!(
                streak = self.crash_streak,
                delay_ms = delay.as_millis() as u64,
                "Workers failed {} times in a row; respawning in {} ms",
                self.crash_streak,
                delay.as_millis()
            );
            self.respawn_after = Some(Instant::now() + delay);
        }
    }

    /// Marks workers ready when their scoreboard says so; completes generations.
    fn check_readiness(&mut self) {
        let now = Instant::now();
        for w in self.workers.iter_mut() {
            if w.ready_at.is_none() && w.board.state() != State::Booting {
                w.ready_at = Some(now);
                debug!(worker = w.pid.as_raw(), "Worker (pid: {}) is ready", w.pid);
            }
        }
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        let gen = self.generation;
        let ready = self
            .workers
            .iter()
            .filter(|w| w.generation == gen && w.is_healthy() && w.is_ready())
            .count();
        let outgoing = self.workers.iter().any(|w| w.generation < gen);
        if ready as u32 >= self.num_workers && !self.booted {
            self.booted = true;
            info!(
                generation = gen,
                workers = ready,
                "Generation {gen} ready ({ready} workers)"
            );
            self.upgrade.announce_ready();
            self.notify("READY=1");
        }
        if let Some(r) = &self.reload {
            if ready as u32 >= self.num_workers && !outgoing {
                let ms = r.started.elapsed().as_millis() as u64;
                info!(
                    generation = gen,
                    workers = ready,
                    elapsed_ms = ms,
                    "Generation {gen} ready ({ready} workers); reload complete in {ms} ms"
                );
                self.reload = None;
                self.notify("READY=1");
            }
        }
    }

    /// Aborts workers whose heartbeat stopped (or that never booted) and kills workers
    /// that outlived their retirement deadline.
    fn murder_workers(&mut self) {
        let now = Instant::now();
        let now_ms = crate::sys::monotonic_ms();
        let timeout = self.loaded.config.timeout;
        let stopping_deadline = match self.phase {
            Phase::Stopping { deadline, .. } => Some(deadline),
            _ => None,
        };
        for w in self.workers.iter_mut() {
            if w.killed {
                continue;
            }
            let overdue = w.aborted_at.is_some_and(|t| now >= t + ABORT_GRACE)
                || w.retiring.is_some_and(|r| now >= r.deadline)
                || stopping_deadline.is_some_and(|d| now >= d);
            if overdue {
                warn!(
                    worker = w.pid.as_raw(),
                    "Worker (pid: {}) did not stop in time; sending SIGKILL", w.pid
                );
                let _ = process::signal(w.pid, Sig::SIGKILL);
                w.killed = true;
                continue;
            }
            if timeout == 0 || w.aborted_at.is_some() {
                continue;
            }
            let silent_ms = match w.ready_at {
                Some(_) => now_ms.saturating_sub(w.board.heartbeat_ms()),
                None => w.spawned_at.elapsed().as_millis() as u64,
            };
            if silent_ms > timeout * 1000 {
                report_timeout(w, silent_ms, now_ms);
                let _ = process::signal(w.pid, Sig::SIGABRT);
                w.aborted_at = Some(now);
            }
        }
    }

    /// Spawns or retires workers until the table matches the desired state.
    fn manage_workers(&mut self) -> Result<(), Halt> {
        if !matches!(self.phase, Phase::Running) || self.generation == 0 {
            return Ok(());
        }
        let gen = self.generation;
        let healthy: Vec<Pid> = self
            .workers
            .iter()
            .filter(|w| w.generation == gen && w.is_healthy())
            .map(|w| w.pid)
            .collect();
        let want = self.num_workers as usize;
        if healthy.len() > want {
            for pid in &healthy[..healthy.len() - want] {
                self.retire(*pid); // the oldest first
            }
        }
        if healthy.len() < want && self.respawn_after.is_none_or(|t| Instant::now() >= t) {
            self.respawn_after = None;
            for _ in healthy.len()..want {
                self.spawn_worker()?;
            }
        }
        // Old-generation workers, and workers asking to be replaced, leave one by one as
        // new ones become ready, so the number serving never drops below the target.
        let ready_new = self
            .workers
            .iter()
            .filter(|w| w.generation == gen && w.is_healthy() && w.is_ready())
            .count();
        let outgoing: Vec<Pid> = self
            .workers
            .iter()
            .filter(|w| {
                w.retiring.is_none()
                    && (w.generation < gen || (w.generation == gen && !w.is_healthy()))
            })
            .map(|w| w.pid)
            .collect();
        let keep = want.saturating_sub(ready_new);
        if outgoing.len() > keep {
            for pid in &outgoing[..outgoing.len() - keep] {
                self.retire(*pid);
            }
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. })
            && self.workers.is_empty()
            && self.migration.is_none()
    }

    // ---- actions ----

    fn spawn_worker(&mut self) -> Result<(), Halt> {
        let board = Scoreboard::create()
            .map_err(|e| Halt::failure(format!("cannot create a scoreboard: {e}")))?;
        let fds: Vec<i32> = self.listeners.iter().map(|l| l.raw_fd()).collect();
        let mut inherit = fds.clone();
        inherit.extend([
            board.raw_fd(),
            self.handoff.as_raw_fd(),
            self.wake_write.as_raw_fd(),
            self.balance.raw_fd(),
        ]);
        let slot = self.workers.free_slot(BALANCE_SLOTS);
        let args = [
            "worker".to_string(),
            "--fds".into(),
            listener::encode_fds(&fds),
            "--scoreboard".into(),
            board.raw_fd().to_string(),
            "--config-fd".into(),
            self.handoff.as_raw_fd().to_string(),
            "--wake-fd".into(),
            self.wake_write.as_raw_fd().to_string(),
            "--generation".into(),
            self.generation.to_string(),
            "--balance-fd".into(),
            self.balance.raw_fd().to_string(),
            "--balance-slot".into(),
            slot.map_or("none".into(), |s| s.to_string()),
        ];
        let threads = process::thread_count();
        let pid = self.spawn_child(&args, inherit)?;
        info!(
            worker = pid.as_raw(),
            generation = self.generation,
            master_threads = threads,
            "Booting worker with pid: {pid} (generation {}, master threads: {threads})",
            self.generation
        );
        self.workers.insert(Worker {
            pid,
            age: 0,
            generation: self.generation,
            spawned_at: Instant::now(),
            board,
            slot,
            ready_at: None,
            retiring: None,
            aborted_at: None,
            killed: false,
        });
        Ok(())
    }

    /// Starts this executable with `args`, passing on `inherit`; the child gets TERM if the
    /// master dies, and none of the master's systemd variables.
    fn spawn_child<A: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[A],
        inherit: Vec<i32>,
    ) -> Result<Pid, Halt> {
        let spec = Spawn {
            exe: self.exe.clone(),
            args: args.iter().map(|a| OsString::from(a.as_ref())).collect(),
            inherit,
            env_remove: MASTER_ONLY_ENV.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            parent_death_signal: Some(Sig::SIGTERM),
        };
        process::spawn(&spec).map_err(|e| Halt::failure(e.to_string()))
    }

    fn retire(&mut self, pid: Pid) {
        let grace = self.graceful_timeout();
        if let Some(w) = self.workers.get_mut(pid) {
            let now = Instant::now();
            w.retiring = Some(Retiring {
                since: now,
                deadline: now + grace,
            });
            debug!(worker = pid.as_raw(), "Retiring worker (pid: {pid})");
            let _ = process::signal(pid, Sig::SIGTERM);
        }
    }

    /// Makes `loaded` the configuration of a new generation (the first, or a reload's).
    fn start_generation(&mut self, loaded: Loaded) {
        let handoff = match handoff_fd(&loaded) {
            Ok(fd) => fd,
            Err(e) => return error!("Reload failed: {e}"),
        };
        if self.booted && self.reload.is_none() {
            self.reload = Some(Reload {
                generation: self.generation,
                loaded: Box::new(self.loaded.clone()),
                handoff: std::mem::replace(&mut self.handoff, handoff),
                num_workers: self.num_workers,
                started: Instant::now(),
            });
        } else {
            self.handoff = handoff;
        }
        self.generation += 1;
        self.num_workers = loaded.config.workers;
        self.loaded = loaded;
        self.phase = Phase::Running;
        info!(
            generation = self.generation,
            workers = self.num_workers,
            "Starting generation {} ({} workers)",
            self.generation,
            self.num_workers
        );
    }

    /// The new generation could not boot: retire it and go back to the previous one.
    fn abort_reload(&mut self, why: &str) {
        let Some(r) = self.reload.take() else { return };
        error!(
            generation = self.generation,
            "Reload failed: a worker of generation {} could not boot: {why}; keeping generation {}",
            self.generation,
            r.generation
        );
        let failed = self.generation;
        for pid in self
            .workers
            .iter()
            .filter(|w| w.generation == failed)
            .map(|w| w.pid)
            .collect::<Vec<_>>()
        {
            self.retire(pid);
        }
        self.generation = r.generation;
        self.loaded = *r.loaded;
        self.handoff = r.handoff;
        self.num_workers = r.num_workers;
        self.notify("READY=1\nSTATUS=Reload failed; previous generation serving");
    }

    fn start_migrations(&mut self, then: Option<Box<Loaded>>) -> Result<(), Halt> {
        let config = then.as_ref().map_or(&self.loaded, |l| l);
        let mode = if config.config.migrate_mode() == MigrateMode::Check {
            "check"
        } else {
            "apply"
        };
        let handoff = handoff_fd(config)?;
        let fd = handoff.as_raw_fd().to_string();
        let pid = self.spawn_child(
            &["migrate", mode, "--boot", "--config-fd", &fd],
            vec![handoff.as_raw_fd()],
        )?;
        info!(
            migrator = pid.as_raw(),
            "Running migrations ({mode}) in pid {pid}"
        );
        if then.is_none() {
            self.last_extend = Some(Instant::now());
            self.notify("EXTEND_TIMEOUT_USEC=30000000\nSTATUS=Running migrations");
        }
        self.migration = Some(Migration {
            pid,
            then,
            _handoff: handoff,
        });
        Ok(())
    }

    fn migrations_done(&mut self, m: Migration, how: Exit) -> Result<(), Halt> {
        if matches!(self.phase, Phase::Stopping { .. }) {
            return Ok(());
        }
        let ok = how == Exit::Code(0);
        match (m.then, ok) {
            (None, true) => {
                self.phase = Phase::Running;
                self.start_generation(self.loaded.clone());
            }
            (None, false) => {
                let why = match how {
                    Exit::Code(2) => {
                        "migrations are pending (--migrate check); run `corral migrate apply`"
                            .to_string()
                    }
                    other => format!("migrations did not complete ({other}); see the error above"),
                };
                return Err(Halt::new(
                    exit::APP_LOAD,
                    format!("Not starting workers: {why}"),
                ));
            }
            (Some(loaded), true) => self.start_generation(*loaded),
            (Some(_), false) => {
                error!(
                    "Reload failed: migrations did not complete ({how}); keeping generation {}",
                    self.generation
                );
                self.notify("READY=1");
            }
        }
        Ok(())
    }

    /// A new master from USR2 took over: retire gracefully.
    fn maybe_promote(&mut self) {
        if let Some(new_pid) = self.upgrade.take_ready() {
            info!(
                new_master = new_pid.as_raw(),
                "New master (pid: {new_pid}) is ready; retiring this one"
            );
            self.notify(&format!(
                "MAINPID={new_pid}\nSTATUS=Handing over to pid {new_pid}"
            ));
            for l in self.listeners.iter_mut() {
                l.keep_path();
            }
            self.upgrade.detach();
            self.stop(false);
        }
        if self.upgrade.promoted() {
            info!("Master promoted: the previous master has exited");
            if let (Some(pf), Some(path)) = (&mut self.pidfile, self.upgrade.final_pidfile()) {
                if let Err(e) = pf.rename(path) {
                    error!("Cannot move the pidfile to {}: {e}", path.display());
                }
            }
            self.notify("READY=1");
        }
    }

    /// Stops everything quickly after a fatal error, so no worker outlives its master.
    /// The reason is logged once, by the caller of `master::run`, after "Shutting down".
    fn halt(&mut self, halt: Halt) -> Halt {
        self.listeners.clear();
        let pids: Vec<Pid> = self
            .workers
            .pids()
            .into_iter()
            .chain(self.migration.as_ref().map(|m| m.pid))
            .collect();
        for pid in &pids {
            let _ = process::signal(*pid, Sig::SIGQUIT);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut left: Vec<Pid> = pids;
        while !left.is_empty() && Instant::now() < deadline {
            let gone: Vec<Pid> = process::reap().into_iter().map(|(p, _)| p).collect();
            left.retain(|p| !gone.contains(p));
            std::thread::sleep(Duration::from_millis(10));
        }
        for pid in left {
            let _ = process::signal(pid, Sig::SIGKILL);
        }
        let _ = process::reap();
        info!("Shutting down: Master");
        halt
    }

    // ---- systemd ----

    /// Sends to systemd, unless this master is a successor that has not taken over yet
    /// (systemd accepts messages from the main process only).
    fn notify(&self, msg: &str) {
        if self.upgrade.is_successor() {
            return;
        }
        if let Err(e) = self.notifier.send(msg) {
            debug!("sd_notify failed: {e}");
        }
    }

    /// Watchdog pings from the loop itself (so a stuck loop stops them), and STATUS lines.
    fn tell_systemd(&mut self) {
        if !self.notifier.enabled() || self.upgrade.is_successor() {
            return;
        }
        if let Some((every, last)) = &mut self.watchdog {
            if last.elapsed() >= *every {
                *last = Instant::now();
                let _ = self.notifier.send("WATCHDOG=1");
            }
        }
        if matches!(self.phase, Phase::Booting) {
            // A slow migration must not trip TimeoutStartSec: extend while it runs.
            if self
                .last_extend
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
            {
                self.last_extend = Some(Instant::now());
                let _ = self.notifier.send("EXTEND_TIMEOUT_USEC=30000000");
            }
            return;
        }
        let gen = self.generation;
        let ready = self
            .workers
            .iter()
            .filter(|w| w.generation == gen && w.is_ready())
            .count();
        let served: u64 =
            self.served_by_gone + self.workers.iter().map(|w| w.board.requests()).sum::<u64>();
        let status = format!(
            "STATUS={ready}/{} workers ready, generation {gen}, {served} requests served",
            self.num_workers
        );
        if status != self.status {
            let _ = self.notifier.send(&status);
            self.status = status;
        }
    }

    fn graceful_timeout(&self) -> Duration {
        Duration::from_secs(self.loaded.config.graceful_timeout)
    }
}

/// Logs what a hung worker was doing, from its scoreboard, before it is aborted.
fn report_timeout(w: &Worker, silent_ms: u64, now_ms: u64) {
    let pid = w.pid.as_raw();
    let phase = if w.ready_at.is_some() {
        "no heartbeat"
    } else {
        "not booted"
    };
    error!(
        worker = pid,
        silent_ms, "WORKER TIMEOUT (pid:{pid}): {phase} for {silent_ms} ms; sending SIGABRT"
    );
    let inflight = w.board.in_flight();
    if inflight.is_empty() {
        error!(worker = pid, "Worker (pid:{pid}) had no request in flight");
    }
    for r in inflight {
        let elapsed_ms = now_ms.saturating_sub(r.started_ms);
        error!(worker = pid, method = %r.method, path = %r.path, request_id = %r.request_id, elapsed_ms,
            "Worker (pid:{pid}) was serving {} {} (request id {}, {elapsed_ms} ms)", r.method, r.path, r.request_id);
    }
}

/// Writes a configuration into a memfd that children read with `pread`.
fn handoff_fd(loaded: &Loaded) -> Result<OwnedFd, Halt> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(c"corral-config", MFdFlags::MFD_CLOEXEC)
        .map_err(|e| Halt::failure(format!("cannot create a configuration handoff: {e}")))?;
    let file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut &file, &loaded.config.to_handoff())
        .map_err(|e| Halt::failure(format!("cannot write the configuration handoff: {e}")))?;
    Ok(OwnedFd::from(file))
}
