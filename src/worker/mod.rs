//! A worker process (`corral worker`, started only by a master).
//!
//! It inherits its listening sockets, its scoreboard and its configuration as descriptors,
//! builds its tokio runtime (one event-loop thread by default, as nginx, or `--threads`;
//! the heartbeat proves the loop is alive), boots the application, marks itself ready and
//! serves until its master retires it.
//!
//! Signals: TERM drains (finish in-flight requests, close keep-alives, exit 0); INT and
//! QUIT exit at once; USR1 reopens log files; HUP, TTIN, TTOU and USR2 are ignored (they
//! are the master's). If the master dies, the kernel sends TERM (`PR_SET_PDEATHSIG`) and
//! the heartbeat notices the new parent too.
//!
//! A worker that cannot boot records why in its scoreboard and exits with code 3, which
//! its master turns into a one-line reason.

mod lifecycle;

use crate::cli::WorkerArgs;
use crate::config::{handoff, Config};
use crate::error::exit;
use crate::http::{self, AppService, Listening, Stop};
use crate::logging;
use crate::sys::listener::{self, BindAddr};
use crate::sys::scoreboard::{Balance, Scoreboard, State};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{error, info};

/// What an application's factory gets in each worker.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub generation: u64,
}

static BOARD: std::sync::OnceLock<Arc<Scoreboard>> = std::sync::OnceLock::new();

/// Work a worker does after its last request, before it exits.
type Goodbye = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
static AT_EXIT: std::sync::Mutex<Vec<Goodbye>> = std::sync::Mutex::new(Vec::new());
/// How long a worker's goodbyes may take, all together.
const AT_EXIT_FOR: Duration = Duration::from_secs(1);

/// Runs `f` once this worker has served its last request (after a drain, or a quick
/// stop's abandonment), before it exits, within a second for all of them: where an
/// application closes its database connections.
pub fn at_exit(f: impl std::future::Future<Output = ()> + Send + 'static) {
    AT_EXIT.lock().expect("not poisoned").push(Box::pin(f));
}

/// Whether the server is shutting down (`--shutdown-delay`): a readiness check should
/// fail, so load balancers stop sending, while requests are still served.
pub fn shutting_down() -> bool {
    BOARD.get().is_some_and(|b| b.shutting_down())
}

static HOST_BOARD: std::sync::OnceLock<Arc<Balance>> = std::sync::OnceLock::new();

/// Counters shared by every worker of this host (fixed windows, lock-free), for what must
/// hold across workers, such as login throttling. `None` outside a worker.
pub(crate) fn host_rates() -> Option<&'static crate::sys::rates::Rates> {
    HOST_BOARD.get().map(|b| b.rates())
}

/// Why an application could not start in a worker.
pub type BootError = Box<dyn std::error::Error + Send + Sync>;

/// Runs a worker; returns its exit code.
pub(crate) fn run<F, Fut, S>(args: WorkerArgs, factory: F) -> u8
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<S, BootError>>,
    S: AppService,
{
    crate::sys::proctitle::set(&format!("corral: worker [gen {}]", args.generation));
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
    let config = match handoff::read(args.config_fd) {
        Ok(c) => Arc::new(c),
        Err(e) => return fail(e.to_string()),
    };
    let format = config.log_format;
    let settings = logging::Settings {
        level: config.log_level,
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
    let _ = BOARD.set(board.clone());
    if config.metrics_bind.is_some() {
        crate::metrics::install(board.clone());
    }
    let access_log = match &config.access_logfile {
        Some(dest) => {
            match http::access_log::AccessLog::open(dest, format, config.access_logformat.clone()) {
                Ok(a) => Some(a),
                Err(e) => return fail(format!("cannot open access log {dest}: {e}")),
            }
        }
        None => None,
    };
    let wake = match crate::sys::adopt_fd(args.wake_fd) {
        Ok(fd) => fd,
        Err(e) => {
            return fail(format!(
                "cannot use the wake-up descriptor {}: {e}",
                args.wake_fd
            ))
        }
    };
    let balance = match args
        .balance
        .map(|(fd, slot)| Balance::open(fd).map(|b| (Arc::new(b), slot)))
    {
        Some(Err(e)) => return fail(format!("cannot open the balance board: {e}")),
        Some(Ok(b)) => {
            let _ = HOST_BOARD.set(b.0.clone());
            Some(b)
        }
        None => None,
    };
    // One thread by default: one event loop per process, as nginx. With --threads N, a
    // work-stealing runtime, so a thread that the kernel preempts does not hold up the
    // connections queued on it (the tail latency of a busy host).
    let mut builder = if config.threads > 1 {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(config.threads as usize)
            .thread_name("corral-worker");
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
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
        if let Err(e) = lifecycle::watch_signals(stop_tx.clone(), log, access_log.clone()) {
            return fail(format!("cannot install signal handlers: {e}"));
        }
        tokio::spawn(lifecycle::heartbeat(
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
        let tls = match http::tls::Files::of(&config) {
            Some(files) => match http::tls::server_config(&files, config.http) {
                Ok(c) => Some(c),
                Err(e) => return fail(format!("cannot load the TLS certificate: {e}")),
            },
            None => None,
        };
        let shared = Arc::new(http::Shared::new(
            http::Settings::from_config(&config),
            board.clone(),
            access_log,
            wake,
            balance,
            tls,
        ));
        board.set_state(State::Ready);
        shared.accepting();
        shared.wake_master();
        http::serve(listeners, service, shared, stop_rx).await;
        // The application's goodbyes (closing database connections, so the server logs
        // a clean end, not a reset), bounded: the master's kill is not far behind.
        let goodbyes = std::mem::take(&mut *AT_EXIT.lock().expect("not poisoned"));
        let all = async {
            for g in goodbyes {
                g.await;
            }
        };
        let _ = tokio::time::timeout(AT_EXIT_FOR, all).await;
        exit::OK
    });
    // Requests still in flight when QUIT arrived are abandoned here, on purpose.
    runtime.shutdown_timeout(Duration::from_millis(100));
    if code == exit::OK {
        info!("Worker exiting (pid: {})", std::process::id());
    }
    code
}
