//! `corral migrate …`: status, plan, apply, revert, check, new, sql, resolve, lock status.
//!
//! Human output goes to stdout, one-line errors to stderr; `--json` puts one JSON document
//! on stdout instead (errors included, as `{"error": {…}}`). Exit codes are fixed:
//! 0 ok, 1 error, 2 pending, 3 drift or missing, 4 lock timeout, 5 failed.
//!
//! The master runs `corral migrate apply --boot` (or `check --boot`) with its
//! configuration handed over as a descriptor ([`MigrateBootArgs`]); `--boot` reports
//! through the log only.

use crate::cli::MigrateBootArgs;
use crate::config::schema::Schema;
use crate::config::{handoff, Config};
use crate::error::exit;
use crate::logging::{count, LogLevel};
use crate::storage::budget;
use crate::storage::migrate::{
    self, authoring, run::lock_holder, status, Entry, MigrateError, Migrations, Session, State,
    Target,
};
use clap::ArgMatches;
use serde_json::{json, Value};
use std::path::PathBuf;
use tracing::{error, info, warn};

/// Runs a `migrate` subcommand; returns the exit code.
pub(super) fn run(schema: &'static Schema, m: &ArgMatches, migrations: Migrations) -> u8 {
    let json = m.get_flag("json");
    let boot_args = MigrateBootArgs::from_matches(m);
    let boot = boot_args.is_some();
    if boot {
        crate::sys::proctitle::set("corral: migrate");
    }
    let config = match &boot_args {
        Some(b) => handoff::read(b.config_fd).map_err(|e| e.to_string()),
        None => super::load(schema, m)
            .map(|(_, l)| l.config)
            .map_err(|h| h.reason),
    };
    let config = match config {
        Ok(c) => c,
        // Exit 1, not 2: for `migrate`, 2 means "pending" and nothing else.
        Err(e) => return fail(&MigrateError::Other(e), json, false),
    };
    let role = if boot { "migrate" } else { "cli" };
    // Interactive commands print their own report; the log only speaks up for problems.
    let level = if boot {
        config.log_level
    } else {
        LogLevel::Warning
    };
    let _log = super::init_cli_logging(&config, role, level);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("corral: cannot start a runtime: {e}");
            return exit::FAILURE;
        }
    };
    let (name, sub) = m.subcommand().expect("a subcommand is required");
    let mut target = Target::new(&config.database, migrations);
    // Only `apply` may create the database, and not on a reload.
    target.create = name == "apply" && boot_args.as_ref().is_none_or(|b| b.create);
    let result = runtime.block_on(dispatch(name, sub, &config, &target, boot));
    match result {
        Ok(out) if boot && out.code == exit::OK => runtime.block_on(budget_at_boot(&config)),
        Ok(out) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out.json).expect("serialisable")
                );
            } else if !boot && !out.text.is_empty() {
                print!("{}", out.text);
            }
            out.code
        }
        Err(e) => fail(&e, json, boot),
    }
}

/// At boot on PostgreSQL, after the migrations: logs the connections the workers may
/// open against what the server allows, and refuses (exit 6, which the master turns into
/// its exit 2) when they cannot all be open at once. More than are free now (another
/// host, an upgrade's overlap) is only a warning: they may close before they are needed.
async fn budget_at_boot(c: &Config) -> u8 {
    if c.database.url.dialect() != crate::storage::Dialect::Postgres {
        return exit::OK;
    }
    let b = match budget::measure(&c.database, c.workers).await {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "cannot read the database server's connection limits; not checking the connection budget");
            return exit::OK;
        }
    };
    if b.pooled || c.database.listen_url.is_some() {
        info!(
            "Database connections: {} (through a pooler; {} direct, of {})",
            b.need_text(),
            i64::from(b.workers) * i64::from(b.listeners),
            b.allowed_text()
        );
    } else if b.need() > b.allowed() {
        error!(
            need = b.need(),
            allowed = b.allowed(),
            "Too many database connections: {}, but the server allows {}; \
             lower workers or database.pool_size, or put PgBouncer in front (see database.listen_url)",
            b.need_text(),
            b.allowed_text()
        );
        return exit::MIGRATE_BUDGET;
    } else if b.need() > b.free() {
        warn!(
            need = b.need(),
            free = b.free(),
            "Database connections: {}, but only {} of the server's {} are free now \
             (other hosts or a previous generation hold {}); requests may get 503s once they are all in use",
            b.need_text(),
            b.free(),
            b.allowed(),
            b.held()
        );
    } else {
        info!(
            need = b.need(),
            allowed = b.allowed(),
            "{}",
            capitalise(&b.to_string())
        );
    }
    exit::OK
}

/// `all 3 migrations`, `the 1 migration`.
fn all(n: usize) -> String {
    match n {
        1 => "the 1 migration".to_string(),
        n => format!("all {n} migrations"),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Reports `e` (as a log line at boot, else on stderr; also as JSON with `--json`) and
/// returns its exit code.
fn fail(e: &MigrateError, json: bool, boot: bool) -> u8 {
    if boot {
        error!(kind = e.kind(), "{e}");
    } else {
        eprintln!("corral: {e}");
    }
    if json {
        let err = json!({"error": {"kind": e.kind(), "message": e.to_string(), "exit_code": e.exit_code()}});
        println!(
            "{}",
            serde_json::to_string_pretty(&err).expect("serialisable")
        );
    }
    e.exit_code()
}

/// What a command produced.
struct Out {
    text: String,
    json: Value,
    code: u8,
}

impl Out {
    fn ok(text: String, json: Value) -> Out {
        Out {
            text,
            json,
            code: exit::OK,
        }
    }
}

fn version_arg(sub: &ArgMatches, name: &str) -> Result<Option<i64>, MigrateError> {
    sub.get_one::<String>(name)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                MigrateError::Other(format!("{v:?} is not a migration version (a number)"))
            })
        })
        .transpose()
}

async fn dispatch(
    name: &str,
    sub: &ArgMatches,
    c: &Config,
    t: &Target,
    boot: bool,
) -> Result<Out, MigrateError> {
    match name {
        "status" => show_status(t).await,
        "plan" => plan(t, version_arg(sub, "to")?).await,
        "apply" => apply(t, version_arg(sub, "to")?, boot).await,
        "revert" => revert(t, version_arg(sub, "to")?).await,
        "check" => check(t, boot).await,
        "resolve" => {
            resolve(
                t,
                version_arg(sub, "version")?.expect("required"),
                sub.get_flag("applied"),
            )
            .await
        }
        "sql" => sql(
            t,
            version_arg(sub, "version")?.expect("required"),
            sub.get_flag("down"),
        ),
        "new" => new(
            c,
            t,
            sub.get_one::<String>("name").expect("required"),
            sub.get_flag("no-transaction"),
        ),
        "lock" => lock_status(t).await,
        other => Err(MigrateError::Other(format!(
            "unknown migrate command {other}"
        ))),
    }
}

fn entry_json(e: &Entry) -> Value {
    let a = e.applied.as_ref();
    json!({
        "version": e.version,
        "name": e.name,
        "state": e.state.as_str(),
        "no_transaction": e.no_transaction,
        "applied_at": a.map(|a| &a.started_at),
        "finished_at": a.and_then(|a| a.finished_at.as_ref()),
        "duration_ms": a.and_then(|a| a.duration_ms),
        "applied_by": a.map(|a| &a.applied_by),
        "error": a.and_then(|a| a.error.as_ref()),
    })
}

fn counts(entries: &[Entry]) -> Value {
    let mut m = serde_json::Map::new();
    for s in [
        State::Applied,
        State::Pending,
        State::Drifted,
        State::Missing,
        State::Failed,
        State::Running,
    ] {
        m.insert(
            s.as_str().into(),
            entries.iter().filter(|e| e.state == s).count().into(),
        );
    }
    Value::Object(m)
}

async fn show_status(t: &Target) -> Result<Out, MigrateError> {
    let (entries, _) = status::read_entries(t).await?;
    let mut text = format!(
        "Migrations of {} (history in {})\n",
        t.url.redacted(),
        migrate::TABLE
    );
    text.push_str(&format!(
        "{:<8} {:<28} {:<8} {:<26} {:>9}  {}\n",
        "VERSION", "NAME", "STATE", "APPLIED AT", "DURATION", "BY"
    ));
    for e in &entries {
        let a = e.applied.as_ref();
        text.push_str(&format!(
            "{:<8} {:<28} {:<8} {:<26} {:>9}  {}\n",
            format!("{:04}", e.version),
            e.name,
            e.state.as_str(),
            a.map_or("-", |a| a.started_at.as_str()),
            a.and_then(|a| a.duration_ms)
                .map_or("-".into(), |d| format!("{d} ms")),
            a.map_or("-", |a| a.applied_by.as_str()),
        ));
        if let Some(err) = a
            .and_then(|a| a.error.as_ref())
            .filter(|_| e.state != State::Applied)
        {
            text.push_str(&format!("         error: {err}\n"));
        }
    }
    let json = json!({
        "database": t.url.redacted(),
        "table": migrate::TABLE,
        "migrations": entries.iter().map(entry_json).collect::<Vec<_>>(),
        "counts": counts(&entries),
    });
    Ok(Out::ok(text, json))
}

async fn plan(t: &Target, to: Option<i64>) -> Result<Out, MigrateError> {
    let (entries, known) = status::read_entries(t).await?;
    migrate::run::check_target(&known, to)?;
    let todo: Vec<&migrate::Migration> = known
        .iter()
        .filter(|m| {
            entries
                .iter()
                .any(|e| e.version == m.version && e.state == State::Pending)
        })
        .filter(|m| to.is_none_or(|v| m.version <= v))
        .collect();
    let blocked: Vec<&Entry> = entries
        .iter()
        .filter(|e| !matches!(e.state, State::Applied | State::Pending))
        .collect();
    let mut text = String::new();
    for e in &blocked {
        text.push_str(&format!(
            "blocked: {:04}_{} is {}; `apply` will refuse to run\n",
            e.version,
            e.name,
            e.state.as_str()
        ));
    }
    for m in &todo {
        let mode = if m.no_transaction {
            "no transaction: each statement commits on its own"
        } else {
            "one transaction"
        };
        text.push_str(&format!("apply {} ({mode})\n", m.label()));
    }
    if todo.is_empty() && blocked.is_empty() {
        text.push_str("Nothing to apply.\n");
    }
    let json = json!({
        "actions": todo.iter().map(|m| json!({"action": "apply", "version": m.version, "name": m.name, "transaction": !m.no_transaction})).collect::<Vec<_>>(),
        "blocked": blocked.iter().map(|e| entry_json(e)).collect::<Vec<_>>(),
    });
    Ok(Out::ok(text, json))
}

async fn apply(t: &Target, to: Option<i64>, boot: bool) -> Result<Out, MigrateError> {
    let mut session = Session::lock(t).await?;
    let result = session.apply(to).await;
    let entries = if result.is_ok() {
        session.entries().await.ok()
    } else {
        None
    };
    session.release().await;
    let done = result?;
    let applied_total = entries.as_ref().map_or(0, |e| {
        e.iter().filter(|e| e.state == State::Applied).count()
    });
    let pending = entries.as_ref().map_or(0, |e| {
        e.iter().filter(|e| e.state == State::Pending).count()
    });
    if boot {
        info!(
            applied = done.len(),
            total = applied_total,
            "Database is up to date: {} applied ({} just now)",
            count(applied_total as u64, "migration"),
            done.len()
        );
    }
    let mut text = String::new();
    for (m, took) in &done {
        text.push_str(&format!(
            "Applied {} ({} ms)\n",
            m.label(),
            took.as_millis()
        ));
    }
    if done.is_empty() {
        text.push_str(&format!(
            "Nothing to apply: {} already applied.\n",
            count(applied_total as u64, "migration")
        ));
    }
    let json = json!({
        "applied": done.iter().map(|(m, d)| json!({"version": m.version, "name": m.name, "duration_ms": d.as_millis() as u64})).collect::<Vec<_>>(),
        "total_applied": applied_total,
        "pending": pending,
    });
    Ok(Out::ok(text, json))
}

async fn revert(t: &Target, to: Option<i64>) -> Result<Out, MigrateError> {
    let mut session = Session::lock(t).await?;
    let result = session.revert(to).await;
    session.release().await;
    let done = result?;
    let text = if done.is_empty() {
        "Nothing to revert.\n".to_string()
    } else {
        done.iter()
            .map(|m| format!("Reverted {}\n", m.label()))
            .collect()
    };
    Ok(Out::ok(
        text,
        json!({"reverted": done.iter().map(|m| json!({"version": m.version, "name": m.name})).collect::<Vec<_>>()}),
    ))
}

async fn check(t: &Target, boot: bool) -> Result<Out, MigrateError> {
    let (entries, _) = status::read_entries(t).await?;
    let of = |s: State| {
        entries
            .iter()
            .filter(|e| e.state == s)
            .map(|e| format!("{:04}_{}", e.version, e.name))
            .collect::<Vec<_>>()
    };
    let (failed, drift, pending) = (
        [of(State::Failed), of(State::Running)].concat(),
        [of(State::Drifted), of(State::Missing)].concat(),
        of(State::Pending),
    );
    let (code, text) = if !failed.is_empty() {
        (
            exit::MIGRATE_FAILED,
            format!("Failed or interrupted: {}\n", failed.join(", ")),
        )
    } else if !drift.is_empty() {
        (
            exit::MIGRATE_DRIFT,
            format!("Drifted or unknown: {}\n", drift.join(", ")),
        )
    } else if !pending.is_empty() {
        (
            exit::MIGRATE_PENDING,
            format!("Pending: {}\n", pending.join(", ")),
        )
    } else {
        (exit::OK, format!("OK: {} applied.\n", all(entries.len())))
    };
    if boot {
        match code {
            0 => info!("Database is up to date ({} applied)", all(entries.len())),
            _ => error!("{}", text.trim_end()),
        }
    } else if code != 0 {
        eprint!("{text}");
    }
    let json = json!({"ok": code == 0, "exit_code": code, "failed": failed, "drifted": drift, "pending": pending, "counts": counts(&entries)});
    Ok(Out {
        text: if code == 0 { text } else { String::new() },
        json,
        code,
    })
}

async fn resolve(t: &Target, version: i64, applied: bool) -> Result<Out, MigrateError> {
    let mut session = Session::lock(t).await?;
    let result = session.resolve(version, applied).await;
    session.release().await;
    let msg = result?;
    Ok(Out::ok(
        format!("{msg}\n"),
        json!({"version": version, "resolved_as": if applied { "applied" } else { "rolled_back" }, "message": msg}),
    ))
}

fn sql(t: &Target, version: i64, down: bool) -> Result<Out, MigrateError> {
    let known = t.known()?;
    let m = known
        .iter()
        .find(|m| m.version == version)
        .ok_or_else(|| MigrateError::Other(format!("no migration with version {version}")))?;
    let script = authoring::script(m, t.url.dialect(), down)?;
    Ok(Out::ok(
        script.clone(),
        json!({"version": version, "name": m.name, "direction": if down { "down" } else { "up" }, "sql": script}),
    ))
}

fn new(c: &Config, t: &Target, name: &str, no_transaction: bool) -> Result<Out, MigrateError> {
    // In a checkout of the application, next to its built-in migrations (the next build
    // embeds the new ones, numbered on); elsewhere a project's own folder, --migrations-dir
    // or ./migrations, numbered by time so they cannot collide with the built-in ones.
    let checkout = t
        .embedded
        .source_dir
        .map(PathBuf::from)
        .filter(|src| src.is_dir() && c.database.migrations_dir.is_none());
    let (dir, numbering) = match checkout {
        Some(src) => (src, authoring::Numbering::Next),
        None => (
            c.database
                .migrations_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("migrations")),
            authoring::Numbering::ByTime,
        ),
    };
    let made = authoring::new_stubs(&dir, name, no_transaction, numbering)?;
    let mut text: String = made
        .iter()
        .map(|p| format!("Created {}\n", p.display()))
        .collect();
    if numbering == authoring::Numbering::ByTime && c.database.migrations_dir.is_none() {
        text.push_str(&format!(
            "Apply it with `--migrations-dir {}` (or `database.migrations_dir` in corral.toml); the built-in migrations always apply too.\n",
            dir.display()
        ));
    }
    Ok(Out::ok(
        text,
        json!({"created": made.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()}),
    ))
}

async fn lock_status(t: &Target) -> Result<Out, MigrateError> {
    let holder = lock_holder(t).await?;
    let text = match &holder {
        Some(h) => format!("The migration lock is held by {h}\n"),
        None => "The migration lock is free\n".to_string(),
    };
    Ok(Out::ok(
        text,
        json!({"held": holder.is_some(), "holder": holder}),
    ))
}
