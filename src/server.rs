//! [`Server`]: what a binary's `main` calls. It parses the command line and runs the master,
//! a worker, or a one-shot command, and maps the outcome to an exit code.
//!
//! The same executable plays every role: the master re-executes it as `worker` and as
//! `migrate apply`, so a custom binary built on this library behaves exactly like `corral`.

use crate::cli;
use crate::config::{Layers, Loaded};
use crate::error::{exit, Halt};
use crate::http::AppService;
use crate::master::{self, Hooks};
use crate::worker::{self, BootError, Context};
use crate::{logging, sys};
use clap::ArgMatches;
use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing::error;

/// A corral server around an application factory.
///
/// The factory runs once in each worker, after its event loop exists, and returns the
/// hyper service that worker serves.
pub struct Server<F> {
    factory: F,
    hooks: Hooks,
}

impl<F, Fut, S> Server<F>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<S, BootError>>,
    S: AppService,
{
    pub fn new(factory: F) -> Server<F> {
        Server {
            factory,
            hooks: Hooks::default(),
        }
    }

    /// Master-side steps run on every configuration load (see [`Hooks`]).
    pub fn hooks(mut self, hooks: Hooks) -> Server<F> {
        self.hooks = hooks;
        self
    }

    /// Parses `std::env::args_os()` and runs the chosen command.
    pub fn run(self) -> ExitCode {
        let args: Vec<OsString> = std::env::args_os().collect();
        let m = match cli::command().try_get_matches_from(&args) {
            Ok(m) => m,
            Err(e) if !e.use_stderr() => {
                let _ = e.print(); // --help, --version
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                let rendered = e.to_string();
                let first = rendered
                    .lines()
                    .next()
                    .unwrap_or("invalid usage")
                    .trim_start_matches("error: ");
                eprintln!("corral: {first} (see --help)");
                // `corral migrate` keeps 2 for "pending"; its usage errors are errors (1).
                let migrate = args.get(1).is_some_and(|a| a == "migrate");
                return ExitCode::from(if migrate { exit::FAILURE } else { exit::USAGE });
            }
        };
        let code = match m.subcommand() {
            Some(("serve", sm)) => serve(sm, &args, self.hooks),
            Some(("check", sm)) => check(sm, self.hooks),
            Some(("config", sm)) => print_config(sm),
            Some(("worker", sm)) => run_worker(sm, self.factory),
            Some(("migrate", sm)) => crate::storage::cli::run(sm),
            Some(("user", sm)) => crate::app::users::cli(sm),
            _ => exit::USAGE,
        };
        ExitCode::from(code)
    }
}

/// Loads the configuration for a command: flags, environment, file.
pub(crate) fn load(m: &ArgMatches) -> Result<(Layers, Loaded), Halt> {
    let file = m.get_one::<String>("config").map(PathBuf::from);
    let layers = Layers::from_env(file, cli::flag_values(m));
    let loaded = layers.load().map_err(|e| Halt::usage(e.to_string()))?;
    Ok((layers, loaded))
}

fn log_settings(c: &crate::config::Config, role: &'static str) -> logging::Settings {
    logging::Settings {
        level: c.log_level.clone(),
        format: logging::Format::parse(&c.log_format),
        error_logfile: c.error_logfile.clone(),
        role,
    }
}

fn serve(m: &ArgMatches, args: &[OsString], hooks: Hooks) -> u8 {
    let (layers, mut loaded) = match load(m) {
        Ok(x) => x,
        Err(h) => {
            eprintln!("corral: {}", h.reason);
            return h.code;
        }
    };
    let log = match logging::init(&log_settings(&loaded.config, "master")) {
        Ok(h) => h,
        Err(e) => {
            eprintln!(
                "corral: cannot open error log {}: {e}",
                loaded.config.error_logfile
            );
            return exit::FAILURE;
        }
    };
    // After logging, so the app's warnings (a generated secret key) are seen.
    if let Err(e) = (hooks.prepare)(&mut loaded.config) {
        error!("{e}");
        return exit::USAGE;
    }
    let fds = m
        .get_one::<String>("upgrade-fds")
        .map(|s| sys::listener::decode_fds(s));
    let upgrade_fds = match fds.transpose() {
        Ok(f) => f,
        Err(e) => {
            error!("bad --upgrade-fds: {e}");
            return exit::USAGE;
        }
    };
    let upgrade_sock = m
        .get_one::<String>("upgrade-sock")
        .and_then(|s| s.parse().ok());
    let options = master::Options {
        layers,
        loaded,
        log,
        hooks,
        args: args.iter().skip(1).cloned().collect(),
        upgrade_fds,
        upgrade_sock,
    };
    match master::run(options) {
        Ok(()) => exit::OK,
        Err(h) => {
            error!("{}", h.reason);
            h.code
        }
    }
}

fn check(m: &ArgMatches, hooks: Hooks) -> u8 {
    match load(m).and_then(|(_, l)| {
        (hooks.check)(&l.config)
            .map_err(|e| Halt::usage(e.to_string()))
            .map(|()| l)
    }) {
        Ok(l) => {
            let file = l
                .file
                .map(|f| format!(" ({})", f.display()))
                .unwrap_or_default();
            println!("Configuration OK{file}");
            exit::OK
        }
        Err(h) => {
            eprintln!("corral: {}", h.reason);
            h.code
        }
    }
}

fn print_config(m: &ArgMatches) -> u8 {
    // The app's `prepare` is not run: printing must not create the development secret key.
    match load(m) {
        Ok((_, l)) => {
            print!("{}", l.render());
            exit::OK
        }
        Err(h) => {
            eprintln!("corral: {}", h.reason);
            h.code
        }
    }
}

fn run_worker<F, Fut, S>(m: &ArgMatches, factory: F) -> u8
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<S, BootError>>,
    S: AppService,
{
    let fd = |name: &str| {
        m.get_one::<String>(name)
            .and_then(|s| s.parse::<i32>().ok())
            .unwrap_or(-1)
    };
    let fds = match sys::listener::decode_fds(m.get_one::<String>("fds").map_or("", |s| s)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("corral worker: {e}");
            return exit::WORKER_BOOT;
        }
    };
    let args = worker::Args {
        fds,
        scoreboard: fd("scoreboard"),
        config_fd: fd("config-fd"),
        wake_fd: fd("wake-fd"),
        generation: m
            .get_one::<String>("generation")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        balance: m
            .get_one::<String>("balance-slot")
            .and_then(|s| s.parse::<usize>().ok())
            .map(|slot| (fd("balance-fd"), slot)),
    };
    worker::run(args, factory)
}
