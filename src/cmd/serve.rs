//! `corral serve`: load the configuration, start logging, run the application's
//! `prepare` hook, then hand over to the master.

use super::load;
use crate::cli::UpgradeArgs;
use crate::config::schema::Schema;
use crate::error::exit;
use crate::logging;
use crate::master;
use crate::service::App;
use clap::ArgMatches;
use std::ffi::OsString;
use tracing::error;

pub(super) fn run<F>(
    schema: &'static Schema,
    m: &ArgMatches,
    args: &[OsString],
    app: &App<F>,
) -> u8 {
    let (mut layers, mut loaded) = match load(schema, m) {
        Ok(x) => x,
        Err(h) => {
            eprintln!("corral: {}", h.reason);
            return h.code;
        }
    };
    // --chdir and --umask first: everything after resolves and creates files as asked.
    // The configuration file is pinned to its absolute path, so HUP re-reads the same one.
    if let Some(dir) = loaded.config.chdir.clone() {
        if let Some(f) = &loaded.file {
            layers.config_file = std::fs::canonicalize(f).ok().or(Some(f.clone()));
        }
        if let Err(e) = std::env::set_current_dir(&dir) {
            eprintln!(
                "corral: cannot change to directory {} (--chdir): {e}",
                dir.display()
            );
            return exit::FAILURE;
        }
    }
    if let Some(m) = loaded.config.umask {
        crate::sys::privileges::set_umask(m.0);
    }
    // Before logging and binding: a live pidfile or an unwritable log is refused before
    // `Listening at:`, which tools wait for.
    let upgrade = UpgradeArgs::from_matches(m);
    if let Err(h) = crate::config::preflight::check(&loaded.config, upgrade.is_some()) {
        eprintln!("corral: {}", h.reason);
        return h.code;
    }
    let c = &loaded.config;
    let settings = logging::Settings {
        level: c.log_level,
        format: c.log_format,
        error_logfile: c.error_logfile.clone(),
        role: "master",
    };
    let log = match logging::init(&settings) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("corral: cannot open error log {}: {e}", c.error_logfile);
            return exit::FAILURE;
        }
    };
    // After logging, so the app's warnings (a generated secret key) are seen.
    if let Err(e) = (app.hooks.prepare)(&mut loaded.config) {
        error!("{e}");
        return exit::USAGE;
    }
    let options = master::Options {
        layers,
        loaded,
        log,
        hooks: app.hooks,
        migrations: app.migrations,
        args: args.iter().skip(1).cloned().collect(),
        upgrade,
    };
    match master::run(options) {
        Ok(()) => exit::OK,
        Err(h) => {
            error!("{}", h.reason);
            h.code
        }
    }
}
