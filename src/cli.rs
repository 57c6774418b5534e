//! The command line: `serve`, `check`, `config`, `migrate …`, `user …`, and the hidden
//! `worker`, with every configuration flag generated from [`crate::config::schema::KEYS`].
//!
//! Raw values only; meaning and validation belong to `config::load` (ripgrep's
//! low-args/high-args split). Usage errors print one line and exit with code 2.

use crate::config::schema::{Kind, KEYS};
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Which configuration flags a subcommand takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagSet {
    /// Every key: serve, check, config.
    All,
    /// Database and logging keys: migrate, user.
    Data,
}

fn config_args(set: FlagSet) -> Vec<Arg> {
    let mut out = vec![Arg::new("config")
        .short('c')
        .long("config")
        .value_name("FILE")
        .help("Configuration file (TOML); ./corral.toml is read when present")
        .global(true)];
    for key in KEYS {
        let Some(flag) = key.flag else { continue };
        let wanted = match set {
            FlagSet::All => true,
            FlagSet::Data => key.path.starts_with("database.") || key.path.starts_with("log_"),
        };
        if !wanted {
            continue;
        }
        // On `migrate` and `user` the flags may follow the sub-subcommand.
        let mut arg = Arg::new(key.path)
            .long(flag)
            .help(key.help)
            .global(set == FlagSet::Data);
        if let Some(s) = key.short {
            arg = arg.short(s);
        }
        if key.kind != Kind::List {
            // Given twice, the last one wins (a Procfile line plus an appended override).
            arg = arg.overrides_with(key.path);
        }
        arg = match key.kind {
            Kind::Bool => arg.action(ArgAction::SetTrue),
            Kind::List => arg.action(ArgAction::Append).value_name("VALUE"),
            Kind::Int { .. } => arg.value_name("N"),
            Kind::Path => arg.value_name("PATH"),
            Kind::Enum(values) => arg
                .value_parser(clap::builder::PossibleValuesParser::new(
                    values.iter().copied(),
                ))
                .value_name("VALUE"),
            Kind::Str => arg.value_name("VALUE"),
        };
        out.push(arg);
    }
    out
}

/// The flags given on the command line, as raw strings per key.
pub fn flag_values(m: &ArgMatches) -> Vec<(&'static crate::config::schema::Key, Vec<String>)> {
    let mut out = vec![];
    for key in KEYS {
        if key.flag.is_none() || !m.try_contains_id(key.path).unwrap_or(false) {
            continue;
        }
        if m.value_source(key.path) != Some(clap::parser::ValueSource::CommandLine) {
            continue;
        }
        let values = match key.kind {
            Kind::Bool => vec![m.get_flag(key.path).to_string()],
            _ => m
                .get_many::<String>(key.path)
                .map(|v| v.cloned().collect())
                .unwrap_or_default(),
        };
        out.push((key, values));
    }
    out
}

fn hidden_fd(name: &'static str) -> Arg {
    Arg::new(name).long(name).hide(true).value_name("FD")
}

fn json_flag() -> Arg {
    Arg::new("json")
        .long("json")
        .action(ArgAction::SetTrue)
        .help("Machine-readable output")
}

fn migrate_command() -> Command {
    let to = || {
        Arg::new("to")
            .long("to")
            .value_name("VERSION")
            .help("Stop at this version")
    };
    Command::new("migrate")
        .about("Inspect and apply database migrations (exit codes: 0 ok, 1 error, 2 pending, 3 drift or missing, 4 lock timeout, 5 failed)")
        .subcommand_required(true)
        .args(config_args(FlagSet::Data))
        .arg(json_flag().global(true))
        .arg(hidden_fd("config-fd").global(true))
        .arg(Arg::new("boot").long("boot").action(ArgAction::SetTrue).hide(true).global(true))
        .subcommand(Command::new("status").about("Every migration: applied, pending, drifted, missing or failed"))
        .subcommand(Command::new("plan").about("What `apply` would do, in order").arg(to()))
        .subcommand(Command::new("apply").about("Apply pending migrations under the migration lock").arg(to()))
        .subcommand(Command::new("revert").about("Revert applied migrations with their down files (default: the last one)").arg(to()))
        .subcommand(Command::new("check").about("Exit non-zero when anything is pending, drifted, missing or failed"))
        .subcommand(
            Command::new("new")
                .about("Create up and down stubs for both dialects in --migrations-dir (default: src/storage/migrations in a checkout, else ./migrations)")
                .arg(Arg::new("name").required(true))
                .arg(Arg::new("no-transaction").long("no-transaction").action(ArgAction::SetTrue).help("Mark the stubs `-- no-transaction`")),
        )
        .subcommand(
            Command::new("sql")
                .about("Print the exact SQL a migration runs, bookkeeping included")
                .arg(Arg::new("version").required(true))
                .arg(Arg::new("down").long("down").action(ArgAction::SetTrue).help("The revert instead")),
        )
        .subcommand(
            Command::new("resolve")
                .about("Settle a failed or interrupted migration after fixing the database by hand")
                .arg(Arg::new("version").required(true))
                .arg(Arg::new("applied").long("applied").action(ArgAction::SetTrue).help("Record it as applied"))
                .arg(Arg::new("rolled-back").long("rolled-back").action(ArgAction::SetTrue).help("Forget it, so `apply` runs it again"))
                .group(clap::ArgGroup::new("outcome").args(["applied", "rolled-back"]).required(true)),
        )
        .subcommand(Command::new("lock").about("The migration lock").subcommand_required(true).subcommand(Command::new("status").about("Who holds the migration lock")))
}

fn user_command() -> Command {
    let name = || Arg::new("username").required(true);
    let stdin = || {
        Arg::new("password-stdin")
            .long("password-stdin")
            .action(ArgAction::SetTrue)
            .help("Read the password from standard input instead of a prompt")
    };
    Command::new("user")
        .about("Manage the JWT app's users")
        .subcommand_required(true)
        .args(config_args(FlagSet::Data))
        .subcommand(
            Command::new("create")
                .about("Create a user")
                .arg(name())
                .arg(stdin())
                .arg(Arg::new("inactive").long("inactive").action(ArgAction::SetTrue).help("Create it inactive")),
        )
        .subcommand(Command::new("passwd").about("Set a user's password").arg(name()).arg(stdin()))
        .subcommand(Command::new("deactivate").about("Deactivate a user (logins and tokens stop working)").arg(name()))
        .subcommand(Command::new("list").about("List users").arg(json_flag()))
        .subcommand(
            Command::new("import-django")
                .about("Import users from `manage.py dumpdata auth.user` JSON, keeping ids and password hashes")
                .arg(Arg::new("file").required(true).help("JSON file ('-' for standard input)")),
        )
}

/// The whole command tree.
pub fn command() -> Command {
    Command::new("corral")
        .about("A pre-fork process manager for the web, with a bundled JWT-auth API")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(
            Command::new("serve")
                .about("Bind, migrate, then run and supervise workers")
                .args(config_args(FlagSet::All))
                .arg(Arg::new("upgrade-fds").long("upgrade-fds").hide(true))
                .arg(hidden_fd("upgrade-sock")),
        )
        .subcommand(
            Command::new("check")
                .about("Validate the configuration and exit (0 ok, 2 invalid)")
                .args(config_args(FlagSet::All)),
        )
        .subcommand(
            Command::new("config")
                .about("Print the effective configuration and where each value came from")
                .args(config_args(FlagSet::All)),
        )
        .subcommand(migrate_command())
        .subcommand(user_command())
        .subcommand(
            Command::new("worker")
                .hide(true)
                .arg(Arg::new("fds").long("fds").required(true))
                .arg(hidden_fd("scoreboard").required(true))
                .arg(hidden_fd("config-fd").required(true))
                .arg(hidden_fd("wake-fd").required(true))
                .arg(Arg::new("generation").long("generation").required(true))
                .arg(hidden_fd("balance-fd"))
                .arg(Arg::new("balance-slot").long("balance-slot")),
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_tree_is_consistent() {
        super::command().debug_assert();
    }
}
