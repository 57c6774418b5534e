//! The contract between corral's core and the application it serves: one [`App`] value.
//!
//! The core (master, workers, HTTP, configuration, migrations) knows nothing of any
//! application. An application hands it, in one value:
//! - **`boot`**: the factory that builds the hyper service, run once in each worker after
//!   its event loop exists;
//! - **`prepare`** and **`check`** hooks ([`Hooks`]), run by the master on every load of
//!   the configuration and by `corral check`;
//! - its own **commands** ([`Command`]), which become subcommands of the binary;
//! - its **migrations** ([`Migrations`]), applied at boot under the migration lock;
//! - its **configuration section** ([`Section`]), whose keys join the core's.
//!
//! A service that brings none of these gets none: no extra command, no extra key, no
//! table, and no migration step at boot.

use crate::config::schema::Section;
use crate::config::{Config, ConfigError};
use crate::http::AppService;
use crate::storage::migrate::Migrations;
use crate::worker::{BootError, Context};
use clap::ArgMatches;
use std::future::Future;

/// Master-side steps an application runs outside its workers.
#[derive(Clone, Copy)]
pub struct Hooks {
    /// Runs in the master on every (re)load of the configuration, before any worker sees
    /// it. It must not start threads or open connections; the JWT app uses it to load or
    /// create the development secret key. A failure refuses the load (exit 2 at boot; on
    /// `HUP` the old generation keeps serving).
    pub prepare: fn(&mut Config) -> Result<(), ConfigError>,
    /// The same validation, without side effects, for `corral check`.
    pub check: fn(&Config) -> Result<(), ConfigError>,
    /// The application's own metric families, for `# HELP` and `# TYPE` on `/metrics`.
    pub metrics: &'static [crate::metrics::Family],
    /// One of the application's commands (its argv after the binary's name) that the
    /// master runs every `--maintenance-interval` in a short-lived child, on the running
    /// configuration (the JWT app: `token flush-expired`); empty for none.
    pub maintenance: &'static [&'static str],
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            prepare: |_| Ok(()),
            check: |_| Ok(()),
            metrics: &[],
            maintenance: &[],
        }
    }
}

/// A subcommand an application adds to the binary (the JWT app's `corral user …`).
///
/// The core builds its clap tree from `cli` (adding the database and log flags), loads the
/// configuration and sets up logging, then calls `run` with the configuration and the
/// subcommand's matches. `run` returns the process's exit code (see [`crate::error::exit`]).
#[derive(Clone, Copy)]
pub struct Command {
    pub name: &'static str,
    pub cli: fn() -> clap::Command,
    pub run: fn(&Config, &ArgMatches) -> u8,
}

/// An application served by corral.
pub struct App<F> {
    pub(crate) boot: F,
    pub(crate) hooks: Hooks,
    pub(crate) commands: Vec<Command>,
    pub(crate) migrations: Migrations,
    pub(crate) section: Option<&'static Section>,
}

impl<F, Fut, S> App<F>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<S, BootError>>,
    S: AppService,
{
    /// An application whose workers serve what `boot` returns, and nothing more.
    pub fn new(boot: F) -> App<F> {
        App {
            boot,
            hooks: Hooks::default(),
            commands: vec![],
            migrations: Migrations::NONE,
            section: None,
        }
    }

    /// The master-side hooks.
    pub fn hooks(mut self, hooks: Hooks) -> App<F> {
        self.hooks = hooks;
        self
    }

    /// Adds a subcommand.
    pub fn command(mut self, command: Command) -> App<F> {
        self.commands.push(command);
        self
    }

    /// The application's built-in migrations, applied at boot (`--migrate`).
    pub fn migrations(mut self, migrations: Migrations) -> App<F> {
        self.migrations = migrations;
        self
    }

    /// The application's configuration section.
    pub fn config_section(mut self, section: &'static Section) -> App<F> {
        self.section = Some(section);
        self
    }
}
