//! `corral user …`: create, passwd, activate, deactivate, delete, list, import-django.
//!
//! Exit codes: 0 done, 1 failed (no such user, user exists, a database error or a write
//! that did not commit), 2 usage, configuration or input refused (a username or password
//! Django's validators refuse). Passwords come from a terminal prompt (echo off, asked
//! twice) or, with `--password-stdin`, from the first line of standard input; they are
//! never echoed or logged.

use super::auth::password;
use super::settings::AuthConfig;
use super::users::{self, DjangoUser};
use super::validate;
use crate::config::Config;
use crate::error::exit;
use crate::service;
use crate::storage::{Db, StorageError};
use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::Value;
use std::io::Read;

/// `corral user …`, as the core adds it to the command line.
pub(super) const COMMAND: service::Command = service::Command {
    name: "user",
    cli: user_command,
    run,
};

/// `corral token …`: the token tables.
pub(super) const TOKEN_COMMAND: service::Command = service::Command {
    name: "token",
    cli: token_command,
    run: run_token,
};

fn token_command() -> clap::Command {
    Command::new("token")
        .about("Maintain the refresh-token tables")
        .subcommand_required(true)
        .subcommand(
            Command::new("flush-expired")
                .about("Delete expired refresh tokens and their blacklist rows, in batches (simplejwt's flushexpiredtokens)")
                .arg(
                    Arg::new("batch")
                        .long("batch")
                        .value_name("ROWS")
                        .default_value("1000")
                        .value_parser(clap::value_parser!(i64).range(1..=1_000_000))
                        .help("Rows deleted per statement"),
                ),
        )
}

/// Runs `token flush-expired`.
fn run_token(config: &Config, m: &ArgMatches) -> u8 {
    let (_, sub) = m.subcommand().expect("a subcommand is required");
    let batch = *sub.get_one::<i64>("batch").expect("has a default");
    let work = async {
        if let Some(path) = config.database.url.sqlite_path().filter(|p| !p.exists()) {
            return Err(format!(
                "the database file {} does not exist; create it with `corral migrate apply`",
                path.display()
            ));
        }
        let auth = super::settings::AuthConfig::of(config).map_err(|e| e.to_string())?;
        let db = Db::open_lazy(&config.database).map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        // Tokens within the leeway of their expiry are still accepted: they stay.
        let before = crate::storage::now_secs() - auth.leeway_secs as i64;
        let f = super::tokens::flush_expired(&db, before, batch)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "Removed {} and {} in {} ms\n",
            crate::logging::count(f.tokens, "expired refresh token"),
            crate::logging::count_as(f.families, "revoked family", "revoked families"),
            started.elapsed().as_millis()
        ))
    };
    on_runtime(async { work.await.map_err(CliError::Failed) })
}

fn user_command() -> clap::Command {
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
        .subcommand(
            Command::new("create")
                .about("Create a user (Django's username rules and default password validators apply)")
                .arg(name())
                .arg(stdin())
                .arg(Arg::new("inactive").long("inactive").action(ArgAction::SetTrue).help("Create it inactive")),
        )
        .subcommand(Command::new("passwd").about("Set a user's password").arg(name()).arg(stdin()))
        .subcommand(Command::new("activate").about("Activate a user (it can log in again)").arg(name()))
        .subcommand(Command::new("deactivate").about("Deactivate a user (logins and tokens stop working)").arg(name()))
        .subcommand(Command::new("delete").about("Delete a user (its tokens stop working)").arg(name()))
        .subcommand(Command::new("logout").about("Log a user out everywhere: its refresh tokens are blacklisted and every token issued until now is refused; it can log in again").arg(name()))
        .subcommand(Command::new("list").about("List users").arg(Arg::new("json").long("json").action(ArgAction::SetTrue).help("Machine-readable output")))
        .subcommand(
            Command::new("import-django")
                .about("Import users from `manage.py dumpdata auth.user` JSON, keeping ids and password hashes")
                .arg(Arg::new("file").required(true).help("JSON file ('-' for standard input)")),
        )
}

/// Why a `user` command did nothing.
enum CliError {
    /// Exit 1: the command could not be done.
    Failed(String),
    /// Exit 2: the input was refused.
    Invalid(String),
}

impl From<String> for CliError {
    fn from(s: String) -> CliError {
        CliError::Failed(s)
    }
}

/// Runs a `user` subcommand (the core has loaded the configuration and set up logging).
fn run(config: &Config, m: &ArgMatches) -> u8 {
    let (name, sub) = m.subcommand().expect("a subcommand is required");
    on_runtime(execute(name, sub, config))
}

/// Runs a command's work on a one-thread runtime, prints its message, and turns its
/// error into the exit code.
fn on_runtime(work: impl std::future::Future<Output = Result<String, CliError>>) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("corral: {e}");
            return exit::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(msg) => {
            print!("{msg}");
            exit::OK
        }
        Err(CliError::Failed(e)) => {
            eprintln!("corral: {e}");
            exit::FAILURE
        }
        Err(CliError::Invalid(e)) => {
            eprintln!("corral: {e}");
            exit::USAGE
        }
    }
}

/// Refuses input that Django's validators refuse, with all of their reasons.
fn refused(what: &str, reasons: Vec<String>) -> Result<(), CliError> {
    if reasons.is_empty() {
        return Ok(());
    }
    Err(CliError::Invalid(format!(
        "{what} refused; nothing was changed: {}",
        reasons.join(" ")
    )))
}

async fn execute(name: &str, sub: &ArgMatches, config: &Config) -> Result<String, CliError> {
    if let Some(path) = config.database.url.sqlite_path().filter(|p| !p.exists()) {
        return Err(CliError::Failed(format!(
            "the database file {} does not exist; create it with `corral migrate apply`",
            path.display()
        )));
    }
    let username = || sub.get_one::<String>("username").expect("required").clone();
    // Input is checked before the database is touched.
    let pw = match name {
        "create" | "passwd" => {
            let user = username();
            if name == "create" {
                refused("the username is", validate::username(&user))?;
            }
            let pw = new_password(sub.get_flag("password-stdin"))?;
            refused("the password is", validate::password(&pw, &user))?;
            Some(pw)
        }
        _ => None,
    };
    let db = Db::open_lazy(&config.database).map_err(|e| e.to_string())?;
    let result = match (name, pw) {
        ("create", Some(pw)) => {
            let user = username();
            let id = users::create(&db, &user, &password::hash(&pw), !sub.get_flag("inactive"))
                .await
                .map_err(explain)?;
            Ok(format!(
                "Created user {user:?} (id {id}){}\n",
                if sub.get_flag("inactive") {
                    ", inactive"
                } else {
                    ""
                }
            ))
        }
        ("passwd", Some(pw)) => {
            let user = username();
            match users::set_password(&db, &user, &password::hash(&pw))
                .await
                .map_err(explain)?
            {
                true => Ok(format!("Password of {user:?} changed\n")),
                false => Err(CliError::Failed(format!("no user named {user:?}"))),
            }
        }
        ("logout", _) => {
            let user = username();
            let found = users::by_username(&db, &user).await.map_err(explain)?;
            let Some(u) = found else {
                return Err(CliError::Failed(format!("no user named {user:?}")));
            };
            match users::logout_all(&db, u.id).await.map_err(explain)? {
                Some(n) => Ok(format!(
                    "Logged {user:?} out everywhere: {} blacklisted; tokens issued until now are refused\n",
                    crate::logging::count(n, "refresh token")
                )),
                None => Err(CliError::Failed(format!("no user named {user:?}"))),
            }
        }
        ("activate" | "deactivate", _) => {
            let user = username();
            let active = name == "activate";
            match users::set_active(&db, &user, active)
                .await
                .map_err(explain)?
            {
                true if active => Ok(format!("Activated {user:?}: it can log in again\n")),
                true => Ok(format!(
                    "Deactivated {user:?}: it can no longer log in or use its tokens\n"
                )),
                false => Err(CliError::Failed(format!("no user named {user:?}"))),
            }
        }
        ("delete", _) => {
            let user = username();
            match users::delete(&db, &user).await.map_err(explain)? {
                true => Ok(format!("Deleted {user:?}: its tokens no longer work\n")),
                false => Err(CliError::Failed(format!("no user named {user:?}"))),
            }
        }
        ("list", _) => {
            let list = users::list(&db).await.map_err(explain)?;
            if sub.get_flag("json") {
                Ok(serde_json::to_string_pretty(&list).expect("serialisable") + "\n")
            } else {
                let mut out = format!(
                    "{:>6}  {:<24} {:<8} {:<14} {}\n",
                    "ID", "USERNAME", "ACTIVE", "HASHER", "JOINED"
                );
                for u in list {
                    out.push_str(&format!(
                        "{:>6}  {:<24} {:<8} {:<14} {}\n",
                        u.id,
                        u.username,
                        if u.is_active { "yes" } else { "no" },
                        u.hasher,
                        u.date_joined
                    ));
                }
                Ok(out)
            }
        }
        ("import-django", _) => {
            let max = AuthConfig::of(config)
                .map_err(|e| e.to_string())?
                .max_pbkdf2_iterations;
            import(&db, sub.get_one::<String>("file").expect("required"), max)
                .await
                .map_err(CliError::Failed)
        }
        (other, _) => Err(CliError::Failed(format!("unknown user command {other}"))),
    };
    db.close().await;
    result
}

fn explain(e: StorageError) -> String {
    let s = e.to_string();
    if s.contains("no such table") || s.contains("does not exist") && s.contains("corral_user") {
        format!("{s} (the schema is missing: run `corral migrate apply` first)")
    } else {
        s
    }
}

fn new_password(from_stdin: bool) -> Result<String, CliError> {
    let pw = if from_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("reading standard input: {e}"))?;
        s.lines().next().unwrap_or("").to_string()
    } else {
        let first = crate::sys::read_password("Password: ")
            .map_err(|e| format!("cannot prompt for a password ({e}); use --password-stdin"))?;
        let again = crate::sys::read_password("Password (again): ")
            .map_err(|e| format!("cannot prompt for a password ({e})"))?;
        if first != again {
            return Err(CliError::Invalid(
                "the passwords did not match; nothing was changed".into(),
            ));
        }
        first
    };
    if pw.trim().is_empty() {
        return Err(CliError::Invalid(
            "the password is empty; nothing was changed".into(),
        ));
    }
    Ok(pw)
}

/// Imports `manage.py dumpdata auth.user` output, keeping ids and password hashes.
async fn import(db: &Db, file: &str, max_pbkdf2_iterations: u64) -> Result<String, String> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("reading standard input: {e}"))?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?
    };
    let rows: Vec<Value> =
        serde_json::from_str(&text).map_err(|e| format!("{file}: not dumpdata JSON: {e}"))?;
    let (mut added, mut skipped, mut notes) = (0, 0, String::new());
    for (i, row) in rows.iter().enumerate() {
        if row
            .get("model")
            .and_then(Value::as_str)
            .is_some_and(|m| m != "auth.user")
        {
            continue;
        }
        let mut fields = row
            .get("fields")
            .cloned()
            .ok_or_else(|| format!("{file}: entry {i} has no \"fields\""))?;
        let id = row
            .get("pk")
            .cloned()
            .ok_or_else(|| format!("{file}: entry {i} has no \"pk\""))?;
        let obj = fields
            .as_object_mut()
            .ok_or_else(|| format!("{file}: entry {i}: \"fields\" is not an object"))?;
        obj.insert("id".into(), id);
        let user: DjangoUser =
            serde_json::from_value(fields).map_err(|e| format!("{file}: entry {i}: {e}"))?;
        if users::import(db, &user).await.map_err(explain)? {
            added += 1;
            if let Some(n) =
                pbkdf2_iterations(&user.password).filter(|n| *n > max_pbkdf2_iterations)
            {
                notes.push_str(&format!(
                    "Warning: {:?} (id {}) has a PBKDF2 hash of {n} iterations, above auth.max_pbkdf2_iterations ({max_pbkdf2_iterations}): it cannot log in until that is raised or its password is reset\n",
                    user.username, user.id
                ));
            }
        } else {
            skipped += 1;
            notes.push_str(&format!(
                "Skipped {:?} (id {}): a user with this id or username already exists\n",
                user.username, user.id
            ));
        }
    }
    users::sync_id_sequence(db).await.map_err(explain)?;
    Ok(format!(
        "{notes}Imported {added} users ({skipped} skipped)\n"
    ))
}

/// The iteration count of a Django `pbkdf2_sha256$…` hash.
fn pbkdf2_iterations(hash: &str) -> Option<u64> {
    let mut parts = hash.split('$');
    (parts.next()? == "pbkdf2_sha256").then_some(())?;
    parts.next()?.parse().ok()
}
