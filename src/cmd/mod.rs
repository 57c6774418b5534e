//! Command dispatch: [`Server`] parses the command line and runs the master, a worker,
//! a one-shot command of the core (`check`, `config`, `migrate`) or one of the
//! application's, and maps the outcome to an exit code. Usage and configuration errors
//! are printed here; each command reports its own outcome once.
//!
//! The same executable plays every role: the master re-executes it as `worker` and as
//! `migrate apply`, so a custom binary built on this library behaves exactly like `corral`.

mod control;
mod migrate;
mod serve;

use crate::cli;
use crate::config::schema::Schema;
use crate::config::{Layers, Loaded};
use crate::error::{exit, Halt};
use crate::http::AppService;
use crate::logging::{self, LogLevel};
use crate::service::App;
use crate::worker::{BootError, Context};
use clap::ArgMatches;
use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

/// A corral server around an [`App`].
pub struct Server<F> {
    app: App<F>,
}

impl<F, Fut, S> Server<F>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<S, BootError>>,
    S: AppService,
{
    pub fn new(app: App<F>) -> Server<F> {
        Server { app }
    }

    /// Parses `std::env::args_os()` and runs the chosen command.
    pub fn run(self) -> ExitCode {
        let args: Vec<OsString> = std::env::args_os().collect();
        if let Some(s) = self.app.section {
            if let Some(k) = s
                .keys
                .iter()
                .find(|k| !k.path.starts_with(&format!("{}.", s.name)))
            {
                // A programming error in the application, caught before anything runs.
                panic!(
                    "config section [{}]: key {} must be named {}.…",
                    s.name, k.path, s.name
                );
            }
        }
        let schema: &'static Schema = Box::leak(Box::new(Schema::new(self.app.section)));
        let app_commands = self.app.commands.iter().map(|c| (c.cli)());
        let m = match cli::command(schema, app_commands).try_get_matches_from(&args) {
            Ok(m) => m,
            Err(e) if !e.use_stderr() => {
                let _ = e.print(); // --help, --version
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                let code = usage_exit(args.get(1));
                report_usage_error(&e, &args, code);
                return ExitCode::from(code);
            }
        };
        let app = self.app;
        let code = match m.subcommand() {
            Some(("serve", sm)) => serve::run(schema, sm, &args, &app),
            Some(("check", sm)) => check(schema, sm, &app),
            Some(("config", sm)) => print_config(schema, sm),
            Some(("worker", sm)) => crate::worker::run(cli::WorkerArgs::from_matches(sm), app.boot),
            Some(("migrate", sm)) => migrate::run(schema, sm, app.migrations),
            Some(("status", sm)) => control::status(schema, sm),
            Some(("ctl", sm)) => control::ctl(schema, sm),
            Some(("top", sm)) => control::top(schema, sm),
            Some((name, sm)) => match app.commands.iter().find(|c| c.name == name) {
                Some(c) => run_app_command(schema, sm, c),
                None => exit::USAGE,
            },
            None => exit::USAGE,
        };
        ExitCode::from(code)
    }
}

/// Prints a usage error whole (what is wrong, the usage line, where help is), with
/// `corral:` in place of clap's `error:`; as `{"error": …}` when `--json` was asked for.
fn report_usage_error(e: &clap::Error, args: &[OsString], code: u8) {
    let rendered = e.to_string();
    if args.iter().any(|a| a == "--json") {
        let message = rendered
            .lines()
            .next()
            .unwrap_or("invalid usage")
            .trim_start_matches("error: ");
        let doc =
            serde_json::json!({"error": {"kind": "usage", "message": message, "exit_code": code}});
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("serialisable")
        );
    }
    match rendered.strip_prefix("error: ") {
        Some(rest) => eprint!("corral: {rest}"),
        None => eprint!("{rendered}"),
    }
}

/// The exit code of a usage error: 2, except under `migrate`, whose 2 means "pending"
/// (see [`exit`]).
fn usage_exit(command: Option<&OsString>) -> u8 {
    match command.and_then(|c| c.to_str()) {
        Some("migrate") => exit::FAILURE,
        _ => exit::USAGE,
    }
}

/// Loads the configuration for a command: flags, environment, file.
fn load(schema: &'static Schema, m: &ArgMatches) -> Result<(Layers, Loaded), Halt> {
    let file = m.get_one::<String>("config").map(PathBuf::from);
    let layers = Layers::from_env(schema, file, cli::flag_values(schema, m));
    let loaded = layers.load().map_err(|e| Halt::usage(e.to_string()))?;
    Ok((layers, loaded))
}

/// Logging for a one-shot command: its report goes to stdout, so the log only speaks up
/// for problems.
fn init_cli_logging(
    c: &crate::config::Config,
    role: &'static str,
    level: LogLevel,
) -> Option<logging::Handle> {
    match logging::init(&logging::Settings {
        level,
        format: c.log_format,
        error_logfile: c.error_logfile.clone(),
        role,
    }) {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!(
                "corral: cannot open error log {} ({e}); logging to nowhere",
                c.error_logfile
            );
            None
        }
    }
}

/// `corral check`: everything `serve` checks before it serves, and nothing more: the
/// configuration, the machine's files (logs, pidfile, migrations), the application's hook.
fn check<F>(schema: &'static Schema, m: &ArgMatches, app: &App<F>) -> u8 {
    match load(schema, m).and_then(|(_, l)| {
        crate::config::preflight::check(&l.config, false)?;
        (app.hooks.check)(&l.config)
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

fn print_config(schema: &'static Schema, m: &ArgMatches) -> u8 {
    // The app's `prepare` is not run: printing must not create the development secret key.
    match load(schema, m) {
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

fn run_app_command(schema: &'static Schema, m: &ArgMatches, c: &crate::service::Command) -> u8 {
    let from_master = m.get_one::<std::os::fd::RawFd>("config-fd").copied();
    let config = match from_master.map(crate::config::handoff::read) {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            eprintln!("corral: {e}");
            return exit::USAGE;
        }
        None => match load(schema, m) {
            Ok((_, l)) => l.config,
            Err(h) => {
                eprintln!("corral: {}", h.reason);
                return h.code;
            }
        },
    };
    let _log = init_cli_logging(&config, "cli", LogLevel::Warning);
    (c.run)(&config, m)
}
