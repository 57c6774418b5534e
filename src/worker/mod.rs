//! A worker process (`corral worker`, started only by a master).
//!
//! It inherits its listening sockets, its scoreboard and its configuration as descriptors,
//! builds a single-threaded tokio runtime (one event loop per process, as nginx; the
//! heartbeat then proves the loop is alive), boots the application, marks itself ready and
//! serves until its master retires it.
//!
//! Signals: TERM drains (finish in-flight requests, close keep-alives, exit 0); INT and
//! QUIT exit at once; USR1 reopens log files; HUP, TTIN, TTOU and USR2 are ignored (they
//! are the master's). If the master dies, the kernel sends TERM (`PR_SET_PDEATHSIG`) and
//! the heartbeat notices the new parent too.
//!
//! A worker that cannot boot records why in its scoreboard and exits with code 3, which
//! its master turns into a one-line reason.

use crate::config::Config;
use crate::error::exit;
use crate::http::{self, AppService, Listening, Stop};
use crate::logging;
use crate::sys::listener::{self, BindAddr};
use crate::sys::scoreboard::{Balance, Scoreboard, State};
use std::future::Future;
use std::os::fd::RawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Descriptors and facts a master hands to a worker on its command line.
#[derive(Debug, Clone)]
pub struct Args {
    pub fds: Vec<RawFd>,
    pub scoreboard: RawFd,
    pub config_fd: RawFd,
    pub wake_fd: RawFd,
    pub generation: u64,
    /// The balance board and this worker's slot in it.
    pub balance: Option<(RawFd, usize)>,
}

/// What an application's factory gets in each worker.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub generation: u64,
}

/// Why an application could not start in a worker.
pub type BootError = Box<dyn std::error::Error + Send + Sync>;

/// Reads a configuration handed over in a memfd (see `master::arbiter::handoff_fd`).
pub fn read_handoff(fd: RawFd) -> Result<Config, String> {
    let file = std::fs::File::from(
        crate::sys::adopt_fd(fd).map_err(|e| format!("configuration descriptor {fd}: {e}"))?,
    );
    let mut buf = vec![];
    let mut chunk = [0u8; 16384];
    loop {
        let n = file
            .read_at(&mut chunk, buf.len() as u64)
            .map_err(|e| format!("reading configuration: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Config::from_handoff(&buf).map_err(|e| e.to_string())
}

/// Runs a worker; returns its exit code.
pub fn run<F, Fut, S>(args: Args, factory: F) -> u8
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<S, BootError>>,
    S: AppService,
{
    let board = match Scoreboard::open(args.scoreboard) {
        Ok(b) => Arc::new(b),
        Err(e) => {
            eprintln!("corral worker: cannot open scoreboard: {e}");
            return exit::WORKER_BOOT;
        }
    };
    let fail = {
        let board = board.clone();
        move |msg: String| {
            error!("{msg}");
            board.set_message(&msg);
            exit::WORKER_BOOT
        }
    };
    let config = match read_handoff(args.config_fd) {
        Ok(c) => Arc::new(c),
        Err(e) => return fail(e),
    };
    let format = logging::Format::parse(&config.log_format);
    let settings = logging::Settings {
        level: config.log_level.clone(),
        format,
        error_logfile: config.error_logfile.clone(),
        role: "worker",
    };
    let log = match logging::init(&settings) {
        Ok(h) => h,
        Err(e) => {
            return fail(format!(
                "cannot open error log {}: {e}",
                config.error_logfile
            ))
        }
    };
    let access_log = match &config.access_logfile {
        Some(dest) => match http::access_log::AccessLog::open(dest, format) {
            Ok(a) => Some(a),
            Err(e) => return fail(format!("cannot open access log {dest}: {e}")),
        },
        None => None,
    };
    let wake = crate::sys::adopt_fd(args.wake_fd).ok();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the event loop: {e}")),
    };
    let master = crate::sys::process::parent_pid();
    let code = runtime.block_on(async move {
        let mut listeners = vec![];
        for fd in &args.fds {
            let adopted = listener::adopt(*fd).and_then(|l| {
                let unix = matches!(l.addr, BindAddr::Unix(_));
                Listening::from_fd(l.try_clone_fd()?, unix)
            });
            match adopted {
                Ok(l) => listeners.push(l),
                Err(e) => return fail(format!("cannot use listening socket {fd}: {e}")),
            }
        }
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        if let Err(e) = watch_signals(stop_tx.clone(), log, access_log.clone()) {
            return fail(format!("cannot install signal handlers: {e}"));
        }
        tokio::spawn(heartbeat(
            board.clone(),
            config.timeout,
            master,
            stop_tx.clone(),
        ));
        let ctx = Context {
            config: config.clone(),
            generation: args.generation,
        };
        let service = match factory(ctx).await {
            Ok(s) => s,
            Err(e) => {
                return fail(format!(
                    "application failed to start: {}",
                    crate::error::chain(&*e)
                ))
            }
        };
        let balance = args
            .balance
            .and_then(|(fd, slot)| Some((Arc::new(Balance::open(fd).ok()?), slot)));
        let shared = Arc::new(http::Shared::new(
            http::Settings::from_config(&config),
            board.clone(),
            access_log,
            wake,
            balance,
        ));
        board.set_state(State::Ready);
        shared.accepting();
        shared.wake_master();
        http::serve(listeners, service, shared, stop_rx).await;
        exit::OK
    });
    // Requests still in flight when QUIT arrived are abandoned here, on purpose.
    runtime.shutdown_timeout(Duration::from_millis(100));
    if code == exit::OK {
        info!("Worker exiting (pid: {})", std::process::id());
    }
    code
}

/// Turns signals into `Stop` values (TERM → drain, INT/QUIT → quit) and log reopening.
fn watch_signals(
    stop: watch::Sender<Stop>,
    log: logging::Handle,
    access: Option<http::access_log::AccessLog>,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    // Registering a handler replaces the default action (terminate) of these, which belong
    // to the master; a terminal hang-up must not kill workers behind the master's back.
    let ignored: Vec<_> = [
        SignalKind::hangup(),
        SignalKind::from_raw(21),
        SignalKind::from_raw(22),
        SignalKind::user_defined2(),
    ]
    .into_iter()
    .map(signal)
    .collect::<Result<_, _>>()?;
    tokio::spawn(async move {
        let _ignored = ignored;
        loop {
            tokio::select! {
                _ = term.recv() => { stop.send_replace(Stop::Drain); }
                _ = int.recv() => { stop.send_replace(Stop::Quit); }
                _ = quit.recv() => { stop.send_replace(Stop::Quit); }
                _ = usr1.recv() => {
                    if let Err(e) = log.reopen() { error!("cannot reopen error log: {e}"); }
                    if let Some(a) = &access { if let Err(e) = a.reopen() { error!("cannot reopen access log: {e}"); } }
                }
            }
        }
    });
    Ok(())
}

/// Beats the scoreboard from the event loop, so a blocked loop stops the beats; drains
/// if the master has gone (the kernel's parent-death signal is the first line of defence).
async fn heartbeat(
    board: Arc<Scoreboard>,
    timeout_secs: u64,
    master: nix::unistd::Pid,
    stop: watch::Sender<Stop>,
) {
    let every = Duration::from_millis((timeout_secs * 1000 / 4).clamp(100, 1000));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        board.beat();
        if crate::sys::process::parent_pid() != master && *stop.borrow() == Stop::Run {
            warn!("The master (pid: {master}) has gone; draining");
            stop.send_replace(Stop::Drain);
        }
    }
}
