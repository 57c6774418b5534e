//! The arbiter: the master's supervision loop and one handler per signal, after
//! Gunicorn's `arbiter.py`.
//!
//! Everything the master does happens on this one thread. The loop waits (at most a
//! second) for a signal, a worker's wake-up byte or a deadline; then it handles signals,
//! reaps children, watches heartbeats and readiness, and reconciles the worker table with
//! the desired state. Signals never act directly: TTIN, TTOU and HUP change the desired
//! state (`num_workers`, the generation) and [`Arbiter::manage_workers`] closes the gap
//! with the decisions of [`reconcile::plan`], oldest first.
//!
//! The arbiter owns the loop and the worker table; the rest is delegated to owners of
//! their own state: [`Generations`] (reloads and rollback), [`Spawner`] (what children
//! inherit), [`Systemd`] (notifications), [`DevReload`] (`--reload`), [`Upgrade`]
//! (`USR2`), [`Maintenance`] (the app's periodic command) and [`Console`] (its sockets);
//! what control clients are answered is in `control.rs`.

use super::console::{Console, Reply};
use super::dev_reload::DevReload;
use super::generation::{handoff_of, Generations, Migration};
use super::maintenance::Maintenance;
use super::reconcile::{self, Backoff};
use super::report::{Cause, Tally};
use super::signals::{Signal, SignalQueue};
use super::spawn::{Spawner, MASTER_ONLY_ENV};
use super::systemd::Systemd;
use super::upgrade::Upgrade;
use super::workers::{Worker, Workers};
use crate::config::{Layers, Loaded};
use crate::error::{exit, Halt};
use crate::logging::{self, count};
use crate::service::Hooks;
use crate::storage::MigrateMode;
use crate::sys::pidfile::Pidfile;
use crate::sys::process::{self, Exit};
use crate::sys::scoreboard::BALANCE_SLOTS;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal as Sig;
use nix::unistd::Pid;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

mod control;

/// A worker that dies sooner than this after becoming ready counts as a crash loop.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Longest a quick shutdown (INT, QUIT) waits before SIGKILL.
const QUICK_STOP: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Migrations are running before the first generation.
    Booting,
    Running,
    /// TERM arrived with `--shutdown-delay`: serving, readiness failing, until then.
    Delaying {
        until: Instant,
    },
    Stopping {
        quick: bool,
        deadline: Instant,
    },
}

/// The master process's state.
pub(super) struct Arbiter {
    layers: Layers,
    hooks: Hooks,
    /// The application has migrations to run (or `--migrations-dir` names some).
    has_migrations: bool,
    generations: Generations,
    spawner: Spawner,
    signals: SignalQueue,
    systemd: Systemd,
    pidfile: Option<Pidfile>,
    log: logging::Handle,
    upgrade: Upgrade,
    reloader: Option<DevReload>,
    workers: Workers,
    num_workers: u32,
    phase: Phase,
    backoff: Backoff,
    console: Console,
    maintenance: Maintenance,
    tally: Tally,
    /// Control clients waiting for an operation to finish.
    waiting: Waiting,
}

/// Control clients (by connection id) waiting for what they asked.
#[derive(Default)]
struct Waiting {
    /// `ctl reload`: the new generation ready, or the reason it was not.
    reload: Vec<u64>,
    /// `ctl ttin`/`ttou`: the worker table matching the wanted number.
    settle: Vec<u64>,
    /// `ctl upgrade`: the new master ready, or dead.
    upgrade: Vec<u64>,
}

pub(super) struct Parts {
    pub layers: Layers,
    pub loaded: Loaded,
    pub hooks: Hooks,
    pub has_migrations: bool,
    pub spawner: Spawner,
    pub signals: SignalQueue,
    pub systemd: Systemd,
    pub pidfile: Option<Pidfile>,
    pub log: logging::Handle,
    pub upgrade: Upgrade,
    pub console: Console,
}

impl Arbiter {
    pub(super) fn new(p: Parts) -> Result<Arbiter, Halt> {
        let reloader = DevReload::start(&p.loaded, p.spawner.exe());
        let migrates = p.loaded.config.database.migrate != MigrateMode::Off
            && (p.has_migrations || p.loaded.config.database.migrations_dir.is_some());
        Ok(Arbiter {
            console: p.console,
            maintenance: Maintenance::new(p.hooks.maintenance),
            tally: Tally::new(migrates),
            waiting: Waiting::default(),
            num_workers: p.loaded.config.workers,
            generations: Generations::new(p.loaded)?,
            layers: p.layers,
            hooks: p.hooks,
            has_migrations: p.has_migrations,
            spawner: p.spawner,
            signals: p.signals,
            systemd: p.systemd,
            pidfile: p.pidfile,
            log: p.log,
            upgrade: p.upgrade,
            reloader,
            workers: Workers::default(),
            phase: Phase::Booting,
            backoff: Backoff::default(),
        })
    }

    /// The supervision loop. Returns when the master should exit.
    pub(super) fn run(mut self) -> Result<(), Halt> {
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
                for ask in self.console.poll() {
                    self.answer(ask);
                }
                self.reap_children()?;
                if let Some(sig) = self.reloader.as_mut().and_then(DevReload::poll) {
                    self.handle(sig)?;
                }
                self.maybe_promote();
                if let Phase::Delaying { until } = self.phase {
                    if Instant::now() >= until {
                        self.stop(false);
                    }
                }
                self.check_readiness();
                self.murder_workers();
                self.manage_workers()?;
                self.answer_settled();
                if self.phase == Phase::Running && self.generations.booted() {
                    self.maintenance
                        .tick(&self.spawner, self.generations.loaded());
                }
                if self.finished() {
                    break Ok(());
                }
                if self.systemd.active() {
                    let status = self
                        .workers
                        .status(self.generations.number(), self.num_workers);
                    self.systemd.tick(self.phase == Phase::Booting, status);
                }
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
            Signal::Term => self.terminate(),
            Signal::Int | Signal::Quit => self.stop(true),
            Signal::Ttin => self.handle_ttin(),
            Signal::Ttou => self.handle_ttou(),
            Signal::Usr1 => self.handle_usr1(),
            Signal::Usr2 => self.handle_usr2(),
            Signal::Chld => {} // reaping happens on every turn of the loop
        }
        Ok(())
    }

    /// HUP: re-read the configuration and start a new generation; the old one retires as
    /// the new one becomes ready. A configuration that fails validation changes nothing.
    fn handle_hup(&mut self) {
        if self.phase != Phase::Running {
            warn!("Ignoring reload: the master is not running");
            return self.reload_ignored("the master is not running");
        }
        if self.generations.migration_pid().is_some() {
            warn!("Ignoring reload: the previous reload is still running its migrations");
            return self.reload_ignored("the previous reload is still running its migrations");
        }
        let current = self.generations.number();
        let loaded = match self
            .layers
            .load()
            .and_then(|mut l| (self.hooks.prepare)(&mut l.config).map(|()| l))
            .map_err(|e| e.to_string())
            .and_then(|l| {
                crate::config::preflight::tls(&l.config)
                    .map(|()| l)
                    .map_err(|h| h.reason)
            }) {
            Ok(l) => l,
            Err(e) => {
                error!(error = %e, "Reload failed: {e}; keeping generation {current}");
                return self.reload_failed(e);
            }
        };
        if loaded.config.bind != self.generations.loaded().config.bind {
            warn!("The bind addresses changed; a reload keeps the current sockets (restart to rebind; a USR2 upgrade inherits them too)");
        }
        self.systemd.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=Reloading",
            crate::sys::monotonic_us()
        ));
        if !self.migrates(&loaded) {
            self.start_generation(loaded);
        } else if let Err(e) = self.start_migrations(Some(Box::new(loaded))) {
            error!("Reload failed: {e}; keeping generation {current}");
            self.systemd.notify("READY=1");
            self.reload_failed(e.to_string());
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
        if self.num_workers == 1 {
            return warn!("Ignoring TTOU: already at one worker, the fewest there can be");
        }
        self.num_workers -= 1;
        info!(
            workers = self.num_workers,
            "Decreasing workers to {}", self.num_workers
        );
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
    fn handle_usr2(&mut self) {
        if self.phase != Phase::Running {
            return warn!("Ignoring upgrade: the master is not running");
        }
        let fds = self.spawner.listener_fds();
        // The new master binds the metrics address and the control socket itself.
        self.console.release();
        self.upgrade
            .start(self.spawner.exe(), &fds, MASTER_ONLY_ENV);
        if !self.upgrade.in_progress() {
            self.upgrade_failed("the new master could not be started; see the log");
        }
    }

    /// TERM: with `--shutdown-delay`, first a delay in which readiness fails and requests
    /// are still served; then (or at once) the graceful stop.
    fn terminate(&mut self) {
        let delay = self.config().shutdown_delay;
        if delay == 0 || !matches!(self.phase, Phase::Running) {
            if !matches!(self.phase, Phase::Delaying { .. }) {
                self.stop(false);
            }
            return;
        }
        info!(
            delay_s = delay,
            "Shutting down in {delay} s (--shutdown-delay): readiness fails from now on"
        );
        self.systemd.notify("STATUS=Shutting down");
        for w in self.workers.iter() {
            w.board.set_shutting_down();
        }
        self.phase = Phase::Delaying {
            until: Instant::now() + Duration::from_secs(delay),
        };
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
        self.systemd.notify("STOPPING=1\nSTATUS=Stopping");
        self.spawner.close_listeners();
        let sig = if quick { Sig::SIGQUIT } else { Sig::SIGTERM };
        for w in self.workers.iter_mut() {
            w.retire_by = Some(deadline);
            let _ = process::signal(w.pid, sig);
        }
        for pid in self
            .generations
            .migration_pid()
            .into_iter()
            .chain(self.maintenance.pid())
        {
            let _ = process::signal(pid, Sig::SIGTERM);
        }
    }

    // ---- the loop's steps ----

    /// Whether loading `l` runs the migration step first.
    fn migrates(&self, l: &Loaded) -> bool {
        l.config.database.migrate != MigrateMode::Off
            && (self.has_migrations || l.config.database.migrations_dir.is_some())
    }

    /// Applies migrations (in a child) or, without them, starts the first generation.
    fn boot(&mut self) -> Result<(), Halt> {
        if !self.migrates(self.generations.loaded()) {
            self.phase = Phase::Running;
            self.start_generation(self.generations.loaded().clone());
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
            PollFd::new(self.spawner.wake_fd(), PollFlags::POLLIN),
        ];
        if let Some(fd) = upgrade_fd.as_ref() {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        if let Some(r) = &self.reloader {
            fds.extend(r.fds().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
        }
        for (fd, out) in self.console.poll_fds() {
            let flags = if out {
                PollFlags::POLLIN | PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            fds.push(PollFd::new(fd, flags));
        }
        let timeout = if self.console.has_pending() {
            PollTimeout::ZERO
        } else {
            timeout
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Halt::failure(format!("poll failed: {e}"))),
        }
        drop(fds);
        self.spawner.drain_wake();
        self.upgrade.poll_events();
        if !self.upgrade.is_successor() {
            // The old master has gone: this one speaks to systemd from now on.
            self.systemd.unmute();
        }
        Ok(self.signals.drain())
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let deadlines = [
            self.backoff.deadline(),
            self.systemd.next_deadline(),
            self.reloader.as_ref().and_then(DevReload::deadline),
            self.console.deadline(),
            self.maintenance.deadline(),
            match self.phase {
                Phase::Delaying { until } => Some(until),
                _ => None,
            },
        ];
        let retiring = self.workers.iter().filter_map(|w| w.retire_by);
        deadlines
            .into_iter()
            .flatten()
            .chain(retiring)
            .fold(now + Duration::from_secs(1), Instant::min)
            .max(now)
    }

    /// Collects ended children: workers, the migration runner, an upgraded master.
    fn reap_children(&mut self) -> Result<(), Halt> {
        for (pid, how) in process::reap() {
            if let Some(w) = self.workers.remove(pid) {
                self.worker_exited(w, how)?;
            } else if self.maintenance.exited(pid, how) {
            } else if let Some(m) = self.generations.take_migration(pid) {
                self.migrations_done(m, how)?;
            } else if self.upgrade.child_exited(pid, how) {
                self.systemd.notify("READY=1");
                self.upgrade_failed(&format!(
                    "the new master ended with {how} before it was ready"
                ));
            } else {
                debug!(worker = pid.as_raw(), "Reaped unknown child {pid} ({how})");
            }
        }
        Ok(())
    }

    fn worker_exited(&mut self, w: Worker, how: Exit) -> Result<(), Halt> {
        if let Some(slot) = w.slot {
            self.spawner.free_balance_slot(slot);
        }
        let pid = w.pid.as_raw();
        let stopping = matches!(self.phase, Phase::Stopping { .. });
        let expected = w.retire_by.is_some() || stopping;
        let cause = if w.aborted_at.is_some() {
            Some(Cause::Timeout)
        } else if w.retire_by.is_some() {
            w.cause
        } else if stopping {
            None
        } else {
            Some(Cause::Crash)
        };
        if let Some(c) = cause.filter(|c| !stopping || *c == Cause::Upgrade) {
            self.tally.restarted(c);
        }
        if !w.is_ready() && !expected {
            let reason = w.boot_failure(how, self.config().timeout);
            if !self.generations.booted() {
                return Err(Halt::new(
                    exit::WORKER_BOOT,
                    format!("Worker failed to boot: {reason}"),
                ));
            }
            if self.generations.reloading() && w.generation == self.generations.number() {
                self.abort_reload(&reason);
                return Ok(());
            }
            error!(worker = pid, "Worker (pid: {pid}) failed to boot: {reason}");
            self.crashed(&w);
            return Ok(());
        }
        w.log_exit(how);
        if !expected && how != Exit::Code(0) {
            self.crashed(&w);
        }
        Ok(())
    }

    /// A worker died unexpectedly: respawns back off if it keeps happening.
    fn crashed(&mut self, w: &Worker) {
        let stable = w.ready_at.is_some_and(|t| t.elapsed() >= STABLE_AFTER);
        self.backoff.crashed(stable);
    }

    /// Marks workers ready when their scoreboard says so; completes generations.
    fn check_readiness(&mut self) {
        self.workers.note_ready(Instant::now());
        if self.phase != Phase::Running {
            return;
        }
        let gen = self.generations.number();
        let ready = self
            .workers
            .iter()
            .filter(|w| w.generation == gen && w.is_healthy() && w.is_ready())
            .count();
        let full = ready as u32 >= self.num_workers;
        if full && !self.generations.booted() {
            self.generations.mark_booted();
            self.tally.boot = Some(self.tally.started.elapsed());
            info!(
                generation = gen,
                workers = ready,
                "Generation {gen} ready ({})",
                count(ready as u64, "worker")
            );
            self.upgrade.announce_ready();
            self.systemd.notify("READY=1");
        }
        let outgoing = self.workers.iter().any(|w| w.generation < gen);
        if self.generations.reloading() && full && !outgoing {
            let took = self.generations.complete().unwrap_or_default();
            let ms = took.as_millis() as u64;
            info!(
                generation = gen,
                workers = ready,
                elapsed_ms = ms,
                "Generation {gen} ready ({}); reload complete in {ms} ms",
                count(ready as u64, "worker")
            );
            self.systemd.notify("READY=1");
            self.reload_done(took);
        }
    }

    /// Aborts workers whose heartbeat stopped (or that never booted) and kills workers
    /// that outlived their retirement deadline.
    fn murder_workers(&mut self) {
        let now = Instant::now();
        let now_ms = crate::sys::monotonic_ms();
        let timeout = self.config().timeout;
        let stopping_deadline = match self.phase {
            Phase::Stopping { deadline, .. } => Some(deadline),
            _ => None,
        };
        for w in self.workers.iter_mut() {
            w.enforce_deadlines(now, now_ms, timeout, stopping_deadline);
        }
    }

    /// Spawns or retires workers until the table matches the desired state.
    fn manage_workers(&mut self) -> Result<(), Halt> {
        let gen = self.generations.number();
        if self.phase != Phase::Running || gen == 0 {
            return Ok(());
        }
        let views = self.workers.views();
        let may_spawn = self.backoff.may_spawn(Instant::now());
        let plan = reconcile::plan(&views, gen, self.num_workers as usize, may_spawn);
        if plan.spawn > 0 {
            self.backoff.respawning();
        }
        for pid in plan.retire {
            let cause = match self.workers.iter().find(|w| w.pid == pid) {
                Some(w) if w.generation < gen => Cause::Reload,
                Some(w) if w.board.state() == crate::sys::scoreboard::State::WantsRetire => {
                    Cause::MaxRequests
                }
                _ => Cause::Ttou,
            };
            self.retire(pid, Some(cause));
        }
        for _ in 0..plan.spawn {
            self.spawn_worker()?;
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. })
            && self.workers.is_empty()
            && self.generations.migration_pid().is_none()
            && self.maintenance.pid().is_none()
    }

    // ---- actions ----

    fn spawn_worker(&mut self) -> Result<(), Halt> {
        let gen = self.generations.number();
        let slot = self.workers.free_slot(BALANCE_SLOTS);
        let threads = process::thread_count();
        let (pid, board) = self.spawner.worker(gen, self.generations.handoff(), slot)?;
        info!(
            worker = pid.as_raw(),
            generation = gen,
            master_threads = threads,
            "Booting worker with pid: {pid} (generation {gen}, master threads: {threads})"
        );
        self.workers.insert(Worker::new(pid, gen, board, slot));
        Ok(())
    }

    fn retire(&mut self, pid: Pid, cause: Option<Cause>) {
        let deadline = Instant::now() + self.graceful_timeout();
        if let Some(w) = self.workers.get_mut(pid) {
            w.retire_by = Some(deadline);
            w.cause = cause;
            debug!(worker = pid.as_raw(), "Retiring worker (pid: {pid})");
            let _ = process::signal(pid, Sig::SIGTERM);
        }
    }

    /// Makes `loaded` the configuration of a new generation (the first, or a reload's).
    fn start_generation(&mut self, loaded: Loaded) {
        let workers = loaded.config.workers;
        if let Err(e) = self.generations.begin(loaded, self.num_workers) {
            error!("Reload failed: {e}");
            return self.reload_failed(e.to_string());
        }
        self.num_workers = workers;
        self.phase = Phase::Running;
        let gen = self.generations.number();
        info!(
            generation = gen,
            workers,
            "Starting generation {gen} ({})",
            count(workers, "worker")
        );
    }

    /// The new generation could not boot: retire it and go back to the previous one.
    fn abort_reload(&mut self, why: &str) {
        let Some(r) = self.generations.roll_back() else {
            return;
        };
        error!(
            generation = r.failed,
            "Reload failed: a worker of generation {} could not boot: {why}; keeping generation {}",
            r.failed,
            r.restored
        );
        let failed: Vec<Pid> = self
            .workers
            .iter()
            .filter(|w| w.generation == r.failed)
            .map(|w| w.pid)
            .collect();
        for pid in failed {
            self.retire(pid, None);
        }
        self.num_workers = r.num_workers;
        self.systemd
            .notify("READY=1\nSTATUS=Reload failed; previous generation serving");
        self.reload_failed(format!(
            "a worker of generation {} could not boot: {why}",
            r.failed
        ));
    }

    fn start_migrations(&mut self, then: Option<Box<Loaded>>) -> Result<(), Halt> {
        let loaded = then.as_deref().unwrap_or(self.generations.loaded());
        let mode = loaded.config.database.migrate;
        let handoff = handoff_of(loaded)?;
        // A reload must not create a missing SQLite file: it would migrate a fresh, empty
        // database and serve it as if the users had never existed.
        let pid = self.spawner.migrator(mode, &handoff, then.is_none())?;
        info!(
            migrator = pid.as_raw(),
            "Running migrations ({}) in pid {pid}",
            mode.as_str()
        );
        if then.is_none() {
            self.systemd.migrations_started();
        }
        self.tally.migrations_started();
        self.generations.migration_started(pid, then, handoff);
        Ok(())
    }

    fn migrations_done(&mut self, m: Migration, how: Exit) -> Result<(), Halt> {
        if matches!(self.phase, Phase::Stopping { .. }) {
            return Ok(());
        }
        let ok = how == Exit::Code(0);
        self.tally.migrations_ended(ok);
        match (m.then, ok) {
            (None, true) => {
                self.phase = Phase::Running;
                self.start_generation(self.generations.loaded().clone());
            }
            (None, false) => {
                let why = match how {
                    Exit::Code(c) if c == i32::from(exit::MIGRATE_PENDING) => {
                        "migrations are pending (--migrate check); run `corral migrate apply`"
                            .to_string()
                    }
                    Exit::Code(c) if c == i32::from(exit::MIGRATE_BUDGET) => {
                        let d = &self.generations.loaded().config;
                        return Err(Halt::new(
                            exit::USAGE,
                            format!(
                                "Not starting workers: {} need up to {} database connections, more than the server allows (see the error above)",
                                crate::logging::count(d.workers, "worker"),
                                u64::from(d.workers) * u64::from(d.database.connections_per_worker())
                            ),
                        ));
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
                let why = if how == Exit::Code(i32::from(exit::MIGRATE_BUDGET)) {
                    "the new configuration needs more database connections than the server allows (see the error above)".to_string()
                } else {
                    format!("migrations did not complete ({how})")
                };
                error!(
                    "Reload failed: {why}; keeping generation {}",
                    self.generations.number()
                );
                self.systemd.notify("READY=1");
                self.reload_failed(why);
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
            self.systemd.notify(&format!(
                "MAINPID={new_pid}\nSTATUS=Handing over to pid {new_pid}"
            ));
            self.spawner.keep_socket_paths();
            self.upgrade.detach();
            for id in std::mem::take(&mut self.waiting.upgrade) {
                self.console.reply(
                    id,
                    Reply::Json(serde_json::json!({ "ok": true, "new_master": new_pid.as_raw() })),
                );
            }
            self.stop(false);
            for w in self.workers.iter_mut() {
                w.cause = Some(Cause::Upgrade);
            }
        }
        if self.upgrade.promoted() {
            info!("Master promoted: the previous master has exited");
            if let (Some(pf), Some(path)) = (&mut self.pidfile, self.upgrade.final_pidfile()) {
                if let Err(e) = pf.rename(path) {
                    error!("Cannot move the pidfile to {}: {e}", path.display());
                }
            }
            self.systemd.notify("READY=1");
        }
    }

    /// Stops everything quickly after a fatal error, so no worker outlives its master.
    /// The reason is logged once, by the command dispatcher, after "Shutting down".
    fn halt(&mut self, halt: Halt) -> Halt {
        self.spawner.close_listeners();
        let pids: Vec<Pid> = self
            .workers
            .pids()
            .into_iter()
            .chain(self.generations.migration_pid())
            .chain(self.maintenance.pid())
            .collect();
        process::stop_all(&pids, Sig::SIGQUIT, Duration::from_secs(2));
        info!("Shutting down: Master");
        halt
    }

    // ---- small helpers ----

    fn config(&self) -> &crate::config::Config {
        &self.generations.loaded().config
    }

    fn graceful_timeout(&self) -> Duration {
        Duration::from_secs(self.config().graceful_timeout)
    }
}
