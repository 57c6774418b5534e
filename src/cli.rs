//! The command line: `serve`, `check`, `config`, `migrate …`, the application's commands,
//! and the hidden `worker`, with every configuration flag generated from the
//! [`Schema`].
//!
//! Configuration flags stay raw here; meaning and validation belong to `config::load`
//! (ripgrep's low-args/high-args split). What one corral process tells another on its
//! command line is typed: [`WorkerArgs`], [`MigrateBootArgs`] and [`UpgradeArgs`] each
//! write their argv and parse it back with the same declarations, so a malformed
//! handoff is a usage error, never a silent default.

use crate::config::schema::{Key, Kind, Schema};
use crate::storage::MigrateMode;
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::os::fd::RawFd;

/// Which configuration flags a subcommand takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagSet {
    /// Every key: serve, check, config.
    All,
    /// Database and logging keys: migrate, user.
    Data,
    /// Where a master's control socket is: status, ctl, top.
    Control,
}

pub(crate) fn config_args(schema: &'static Schema, set: FlagSet) -> Vec<Arg> {
    let mut out = vec![Arg::new("config")
        .short('c')
        .long("config")
        .value_name("FILE")
        .help("Configuration file (TOML); ./corral.toml is read when present [env: CORRAL_CONFIG]")
        .global(true)];
    let defaults = schema.defaults_table();
    for key in schema.keys() {
        let Some(flag) = key.flag else { continue };
        let wanted = match set {
            FlagSet::All => true,
            FlagSet::Data => key.path.starts_with("database.") || key.path.starts_with("log_"),
            FlagSet::Control => matches!(key.path, "pid" | "control_socket"),
        };
        if !wanted {
            continue;
        }
        // On `migrate` and the app's commands the flags may follow the sub-subcommand.
        let mut arg = Arg::new(key.path)
            .long(flag)
            .help(help_line(key, &defaults))
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

/// A flag's help: the key's text, its default and the environment variables that set it.
fn help_line(key: &Key, defaults: &toml::Table) -> String {
    let value = match key.path.split_once('.') {
        Some((section, name)) => defaults.get(section).and_then(|t| t.get(name)),
        None => defaults.get(key.path),
    };
    let shown = match value {
        _ if key.secret => None,
        Some(toml::Value::String(s)) => Some(key.redact.map_or_else(|| s.clone(), |r| r(s))),
        Some(toml::Value::Array(a)) if a.is_empty() => None,
        Some(toml::Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
                .collect::<Vec<_>>()
                .join(","),
        ),
        Some(v) => Some(v.to_string()),
        None => None,
    };
    let mut env: Vec<String> = vec![key.env_name()];
    env.extend(key.platform_env.iter().map(|s| s.to_string()));
    let mut help = key.help.to_string();
    if let Some(d) = shown {
        help.push_str(&format!(" [default: {d}]"));
    }
    help.push_str(&format!(" [env: {}]", env.join(", ")));
    help
}

/// The flags given on the command line, as raw strings per key.
pub(crate) fn flag_values(
    schema: &'static Schema,
    m: &ArgMatches,
) -> Vec<(&'static Key, Vec<String>)> {
    let mut out = vec![];
    for key in schema.keys() {
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

fn json_flag() -> Arg {
    Arg::new("json")
        .long("json")
        .action(ArgAction::SetTrue)
        .help("Machine-readable output")
}

fn migrate_command(schema: &'static Schema) -> Command {
    let to = || {
        Arg::new("to")
            .long("to")
            .value_name("VERSION")
            .help("Stop at this version")
    };
    Command::new("migrate")
        .about("Inspect and apply database migrations (exit codes: 0 ok, 1 error, 2 pending, 3 drift or missing, 4 lock timeout, 5 failed)")
        .subcommand_required(true)
        .args(config_args(schema, FlagSet::Data))
        .arg(json_flag().global(true))
        .args(MigrateBootArgs::args())
        .subcommand(Command::new("status").about("Every migration: applied, pending, drifted, missing or failed"))
        .subcommand(Command::new("plan").about("What `apply` would do, in order").arg(to()))
        .subcommand(Command::new("apply").about("Apply pending migrations under the migration lock").arg(to()))
        .subcommand(Command::new("revert").about("Revert applied migrations with their down files (default: the last one)").arg(to()))
        .subcommand(Command::new("check").about("Exit non-zero when anything is pending, drifted, missing or failed"))
        .subcommand(
            Command::new("new")
                .about("Create up and down stubs for both dialects in --migrations-dir (default: the application's migrations folder in a checkout of its source, else ./migrations)")
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

/// The whole command tree: the core's commands, then the application's (each given the
/// database and log flags).
pub(crate) fn command(schema: &'static Schema, app: impl IntoIterator<Item = Command>) -> Command {
    let mut cmd = Command::new("corral")
        .about("A pre-fork process manager for the web")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(
            Command::new("serve")
                .about("Bind, migrate, then run and supervise workers")
                .args(config_args(schema, FlagSet::All))
                .args(UpgradeArgs::args()),
        )
        .subcommand(
            Command::new("check")
                .about("Check what serve checks before serving, and exit (0 ok, else the code serve would stop with)")
                .args(config_args(schema, FlagSet::All)),
        )
        .subcommand(
            Command::new("config")
                .about("Print the effective configuration and where each value came from")
                .args(config_args(schema, FlagSet::All)),
        )
        .subcommand(migrate_command(schema))
        .subcommand(
            Command::new("status")
                .about("Show a running master and its workers (pid, state, requests, memory, requests in flight)")
                .args(config_args(schema, FlagSet::Control))
                .arg(json_flag()),
        )
        .subcommand(
            Command::new("ctl")
                .about("Do what a signal does, and answer once it is done (non-zero if it failed)")
                .args(config_args(schema, FlagSet::Control).into_iter().map(|a| a.global(true)))
                .arg(
                    Arg::new("timeout")
                        .long("timeout")
                        .value_name("SECONDS")
                        .default_value("120")
                        .value_parser(value_parser!(u64))
                        .global(true)
                        .help("How long to wait for the answer"),
                )
                .subcommand_required(true)
                .subcommand(Command::new("reload").about("HUP: a new generation; returns when it is ready, or with why it rolled back"))
                .subcommand(Command::new("ttin").about("TTIN: one worker more; returns when it is ready"))
                .subcommand(Command::new("ttou").about("TTOU: one worker fewer; returns when it has gone"))
                .subcommand(Command::new("upgrade").about("USR2: a new master from the binary on disk; returns when it is ready"))
                .subcommand(
                    Command::new("stop")
                        .about("TERM (graceful), or with --quick INT; returns when the master has exited")
                        .arg(Arg::new("quick").long("quick").action(ArgAction::SetTrue).help("Stop quickly (INT)")),
                ),
        )
        .subcommand(
            Command::new("top")
                .about("A live view of the master and its workers, refreshed every second; q quits")
                .args(config_args(schema, FlagSet::Control)),
        );
    for c in app {
        // --config-fd: the master's periodic maintenance runs the command on its own
        // configuration (a handoff memfd), as it runs migrations.
        let handoff = hidden("config-fd")
            .value_parser(value_parser!(RawFd))
            .global(true);
        cmd = cmd.subcommand(c.args(config_args(schema, FlagSet::Data)).arg(handoff));
    }
    cmd.subcommand(Command::new("worker").hide(true).args(WorkerArgs::args()))
}

/// `3,4,5`: how descriptor lists travel in argv.
fn fd_list(s: &str) -> Result<Vec<RawFd>, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim()
                .parse::<RawFd>()
                .map_err(|_| format!("bad descriptor number {p:?}"))
        })
        .collect()
}

fn encode_fds(fds: &[RawFd]) -> String {
    fds.iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn hidden(name: &'static str) -> Arg {
    Arg::new(name).long(name).hide(true)
}

/// What a master tells a worker it starts: `corral worker …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerArgs {
    /// The listening sockets.
    pub fds: Vec<RawFd>,
    /// Its scoreboard (a memfd).
    pub scoreboard: RawFd,
    /// The configuration handoff (a memfd).
    pub config_fd: RawFd,
    /// The write end of the master's wake-up pipe.
    pub wake_fd: RawFd,
    pub generation: u64,
    /// The balance board and this worker's slot in it, when a slot was free.
    pub balance: Option<(RawFd, usize)>,
}

impl WorkerArgs {
    fn args() -> Vec<Arg> {
        vec![
            hidden("fds").required(true).value_parser(fd_list),
            hidden("scoreboard")
                .required(true)
                .value_parser(value_parser!(RawFd)),
            hidden("config-fd")
                .required(true)
                .value_parser(value_parser!(RawFd)),
            hidden("wake-fd")
                .required(true)
                .value_parser(value_parser!(RawFd)),
            hidden("generation")
                .required(true)
                .value_parser(value_parser!(u64)),
            hidden("balance-fd")
                .value_parser(value_parser!(RawFd))
                .requires("balance-slot"),
            hidden("balance-slot")
                .value_parser(value_parser!(usize))
                .requires("balance-fd"),
        ]
    }

    /// argv after the program name.
    pub fn to_argv(&self) -> Vec<OsString> {
        let mut v: Vec<String> = vec![
            "worker".into(),
            "--fds".into(),
            encode_fds(&self.fds),
            "--scoreboard".into(),
            self.scoreboard.to_string(),
            "--config-fd".into(),
            self.config_fd.to_string(),
            "--wake-fd".into(),
            self.wake_fd.to_string(),
            "--generation".into(),
            self.generation.to_string(),
        ];
        if let Some((fd, slot)) = self.balance {
            v.extend([
                "--balance-fd".into(),
                fd.to_string(),
                "--balance-slot".into(),
                slot.to_string(),
            ]);
        }
        v.into_iter().map(OsString::from).collect()
    }

    pub fn from_matches(m: &ArgMatches) -> WorkerArgs {
        let fd = |n: &str| *m.get_one::<RawFd>(n).expect("required by clap");
        WorkerArgs {
            fds: m
                .get_one::<Vec<RawFd>>("fds")
                .cloned()
                .expect("required by clap"),
            scoreboard: fd("scoreboard"),
            config_fd: fd("config-fd"),
            wake_fd: fd("wake-fd"),
            generation: *m.get_one::<u64>("generation").expect("required by clap"),
            balance: m
                .get_one::<RawFd>("balance-fd")
                .zip(m.get_one::<usize>("balance-slot"))
                .map(|(f, s)| (*f, *s)),
        }
    }
}

/// What a master tells the migration runner it starts at boot or on `HUP`:
/// `corral migrate apply|check --boot --config-fd N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateBootArgs {
    pub mode: MigrateMode,
    pub config_fd: RawFd,
    /// Whether a missing SQLite file may be created: at the first boot, not on a reload.
    pub create: bool,
}

impl MigrateBootArgs {
    fn args() -> Vec<Arg> {
        vec![
            hidden("config-fd")
                .global(true)
                .value_parser(value_parser!(RawFd))
                .requires("boot"),
            hidden("boot")
                .global(true)
                .action(ArgAction::SetTrue)
                .requires("config-fd"),
            hidden("no-create")
                .global(true)
                .action(ArgAction::SetTrue)
                .requires("boot"),
        ]
    }

    pub fn to_argv(&self) -> Vec<OsString> {
        // The master starts no runner with `--migrate off`; `apply` and `check` are the
        // `migrate` subcommands of the same names.
        let mut v: Vec<OsString> = [
            "migrate",
            self.mode.as_str(),
            "--boot",
            "--config-fd",
            &self.config_fd.to_string(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        if !self.create {
            v.push("--no-create".into());
        }
        v
    }

    /// `Some` when this `migrate` command (`m`: its matches) was started by a master.
    pub fn from_matches(m: &ArgMatches) -> Option<MigrateBootArgs> {
        if !m.get_flag("boot") {
            return None;
        }
        Some(MigrateBootArgs {
            mode: match m.subcommand_name() {
                Some("check") => MigrateMode::Check,
                _ => MigrateMode::Apply,
            },
            config_fd: *m.get_one::<RawFd>("config-fd")?,
            create: !m.get_flag("no-create"),
        })
    }
}

/// What an old master tells the new one it starts on `USR2`: the listening sockets and
/// its end of a socket pair, appended to the `serve` arguments it was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeArgs {
    pub fds: Vec<RawFd>,
    pub sock: RawFd,
}

impl UpgradeArgs {
    const FDS: &'static str = "upgrade-fds";
    const SOCK: &'static str = "upgrade-sock";

    fn args() -> Vec<Arg> {
        vec![
            hidden(Self::FDS).value_parser(fd_list).requires(Self::SOCK),
            hidden(Self::SOCK)
                .value_parser(value_parser!(RawFd))
                .requires(Self::FDS),
        ]
    }

    pub fn to_argv(&self) -> Vec<OsString> {
        [
            format!("--{}", Self::FDS),
            encode_fds(&self.fds),
            format!("--{}", Self::SOCK),
            self.sock.to_string(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect()
    }

    pub fn from_matches(m: &ArgMatches) -> Option<UpgradeArgs> {
        Some(UpgradeArgs {
            fds: m.get_one::<Vec<RawFd>>(Self::FDS)?.clone(),
            sock: *m.get_one::<RawFd>(Self::SOCK)?,
        })
    }

    /// `args` without these flags (a master's own argv, before it appends new ones).
    pub fn strip(args: &[OsString]) -> Vec<OsString> {
        let flags = [format!("--{}", Self::FDS), format!("--{}", Self::SOCK)];
        let mut clean = vec![];
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let s = a.to_string_lossy();
            if flags.iter().any(|f| *f == s) {
                it.next();
                continue;
            }
            if flags.iter().any(|f| s.starts_with(&format!("{f}="))) {
                continue;
            }
            clean.push(a.clone());
        }
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static CORE: Schema = Schema::new(None);

    #[test]
    fn command_tree_is_consistent() {
        command(&CORE, []).debug_assert();
    }

    /// Each handoff's argv parses back to the same value, and a malformed one is refused.
    #[test]
    fn handoff_args_round_trip() {
        let parse = |argv: Vec<OsString>| {
            let mut full = vec![OsString::from("corral")];
            full.extend(argv);
            command(&CORE, []).try_get_matches_from(full)
        };
        for balance in [Some((9, 2)), None] {
            let w = WorkerArgs {
                fds: vec![3, 4],
                scoreboard: 5,
                config_fd: 6,
                wake_fd: 7,
                generation: 8,
                balance,
            };
            let m = parse(w.to_argv()).unwrap();
            assert_eq!(
                WorkerArgs::from_matches(m.subcommand_matches("worker").unwrap()),
                w
            );
        }
        for (mode, create) in [(MigrateMode::Check, true), (MigrateMode::Apply, false)] {
            let b = MigrateBootArgs {
                mode,
                config_fd: 11,
                create,
            };
            let m = parse(b.to_argv()).unwrap();
            let (_, mm) = m.subcommand().unwrap();
            assert_eq!(MigrateBootArgs::from_matches(mm), Some(b));
        }
        let u = UpgradeArgs {
            fds: vec![3],
            sock: 12,
        };
        let mut argv = vec![OsString::from("serve")];
        argv.extend(u.to_argv());
        let m = parse(argv.clone()).unwrap();
        assert_eq!(
            UpgradeArgs::from_matches(m.subcommand_matches("serve").unwrap()),
            Some(u)
        );
        assert_eq!(UpgradeArgs::strip(&argv), vec![OsString::from("serve")]);
        let good = WorkerArgs {
            fds: vec![3],
            scoreboard: 5,
            config_fd: 6,
            wake_fd: 7,
            generation: 1,
            balance: None,
        }
        .to_argv();
        let mut bad = good.clone();
        bad[2] = "3,x".into();
        assert!(
            parse(bad).is_err(),
            "a malformed descriptor list is refused"
        );
        let mut slotless = good;
        slotless.extend(["--balance-slot".into(), "none".into()]);
        assert!(parse(slotless).is_err(), "\"none\" is not a slot");
    }
}
