//! Layering: defaults, then `corral.toml`, then the environment, then flags; with the
//! origin of every value remembered, and every error naming the key and where it came from.

use super::schema::{Key, Kind, Schema};
use super::{AppSection, Config};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a value came from; printed by `corral config` and in every error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// A default of the platform corral runs on (Heroku: `DYNO` is set).
    Platform(&'static str),
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Platform(p) => write!(f, "default under {p}"),
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::Env(v) => write!(f, "env {v}"),
            Origin::Flag(n) => write!(f, "flag {n}"),
        }
    }
}

/// A configuration problem, as one line that names the key and its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
        }
    }

    pub(crate) fn bad_value(key: &Key, origin: &Origin, why: impl fmt::Display) -> ConfigError {
        ConfigError::new(format!(
            "invalid value for `{}` ({origin}): {why}",
            key.path
        ))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The inputs of one load: what the command line said and how to read the environment.
///
/// Kept by the master so that `HUP` can load again from the same flags and environment,
/// re-reading only the file.
#[derive(Debug, Clone)]
pub struct Layers {
    /// The keys this binary accepts.
    pub schema: &'static Schema,
    /// `-c/--config` (or `CORRAL_CONFIG`); when `None`, `./corral.toml` is read if present.
    pub config_file: Option<PathBuf>,
    /// Flags given on the command line, as `(key, raw values)`.
    pub flags: Vec<(&'static Key, Vec<String>)>,
    /// The environment, captured once at start.
    pub env: BTreeMap<String, String>,
}

/// A loaded configuration and where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The keys it was checked against.
    pub schema: &'static Schema,
    pub origins: BTreeMap<&'static str, Origin>,
    /// The file that was read, if any (watched by `--reload`).
    pub file: Option<PathBuf>,
}

/// Environment variables corral reads besides the `CORRAL_<KEY>` ones.
const OTHER_CORRAL_ENV: &[&str] = &["CORRAL_CONFIG"];

impl Layers {
    /// Captures the process environment.
    pub fn from_env(
        schema: &'static Schema,
        config_file: Option<PathBuf>,
        flags: Vec<(&'static Key, Vec<String>)>,
    ) -> Layers {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Layers {
            schema,
            config_file,
            flags,
            env,
        }
    }

    /// The config file this load reads: the explicit one, `CORRAL_CONFIG`, or
    /// `./corral.toml` when it exists.
    pub fn config_path(&self) -> Option<(PathBuf, bool)> {
        if let Some(p) = &self.config_file {
            return Some((p.clone(), true));
        }
        if let Some(p) = self.env.get("CORRAL_CONFIG").filter(|p| !p.is_empty()) {
            return Some((PathBuf::from(p), true));
        }
        let default = PathBuf::from("corral.toml");
        default.exists().then_some((default, false))
    }

    /// Builds the configuration: defaults < file < environment < flags.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let schema = self.schema;
        let mut merged = schema.defaults_table();
        let mut origins: BTreeMap<&'static str, Origin> =
            schema.keys().map(|k| (k.path, Origin::Default)).collect();

        // The platform's defaults (below the file, the environment and the flags).
        if self.env.contains_key("DYNO") {
            for (path, value) in super::platform::heroku_defaults() {
                let key = schema.find(path).expect("a core key");
                set(&mut merged, key, value);
                origins.insert(key.path, Origin::Platform("Heroku (DYNO is set)"));
            }
        }

        // File.
        let file = self.config_path().map(|(p, _)| p);
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(format!("cannot read config file {}: {e}", path.display()))
            })?;
            let origin = Origin::File(path.clone());
            for (key, value) in file_values(schema, path, &text)? {
                set(&mut merged, key, check_toml(key, &origin, value)?);
                origins.insert(key.path, origin.clone());
            }
        }

        // Environment: platform variables first, so CORRAL_* ones win.
        for name in self.env.keys().filter(|n| n.starts_with("CORRAL_")) {
            if !OTHER_CORRAL_ENV.contains(&name.as_str())
                && !schema.keys().any(|k| &k.env_name() == name)
            {
                return Err(ConfigError::new(format!(
                    "unknown environment variable {name}: no configuration key is called that"
                )));
            }
        }
        for key in schema.keys() {
            let names = key
                .platform_env
                .iter()
                .map(|s| s.to_string())
                .chain([key.env_name()]);
            for name in names {
                let Some(raw) = self.env.get(&name) else {
                    continue;
                };
                let origin = Origin::Env(name.clone());
                let value = if name == "PORT" {
                    port_bind(key, &origin, raw)?
                } else {
                    parse_raw(key, &origin, &split_env(key, raw))?
                };
                set(&mut merged, key, value);
                origins.insert(key.path, origin);
            }
        }

        // Flags.
        for (key, raws) in &self.flags {
            let origin = Origin::Flag(key.flag_display().unwrap_or_else(|| key.path.to_string()));
            set(&mut merged, key, parse_raw(key, &origin, raws)?);
            origins.insert(key.path, origin);
        }

        validate(schema, &merged, &origins)?;
        if self.env.contains_key("DYNO") {
            super::platform::heroku_fail_safe(schema, &merged, &origins)?;
        }
        let section = match schema.section() {
            Some(s) => match merged.remove(s.name) {
                Some(toml::Value::Table(t)) => t,
                _ => toml::Table::new(),
            },
            None => toml::Table::new(),
        };
        merged.insert("app".into(), toml::Value::Table(Default::default()));
        let mut config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e| ConfigError::new(format!("configuration does not fit together: {e}")))?;
        config.app = AppSection::new(section);
        check_tls(schema, &config, &origins)?;
        Ok(Loaded {
            config,
            schema,
            origins,
            file,
        })
    }
}

/// Flattens a parsed `corral.toml` into `(key, value)` pairs, refusing unknown keys.
fn file_values(
    schema: &Schema,
    path: &Path,
    text: &str,
) -> Result<Vec<(&'static Key, toml::Value)>, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| text[..s.start].lines().count().max(1));
        let at = line.map(|l| format!(" line {l}:")).unwrap_or_default();
        ConfigError::new(format!("{}:{at} {}", path.display(), e.message().trim()))
    })?;
    let mut out = vec![];
    for (name, value) in table {
        match value {
            toml::Value::Table(section) if schema.is_section(&name) => {
                for (sub, v) in section {
                    let full = format!("{name}.{sub}");
                    out.push((known(schema, path, &full)?, v));
                }
            }
            v => out.push((known(schema, path, &name)?, v)),
        }
    }
    Ok(out)
}

fn known(schema: &Schema, path: &Path, name: &str) -> Result<&'static Key, ConfigError> {
    schema.find(name).ok_or_else(|| {
        let hint = schema
            .keys()
            .find(|k| k.path.rsplit('.').next() == name.rsplit('.').next())
            .map(|k| format!(" (did you mean `{}`?)", k.path))
            .unwrap_or_default();
        ConfigError::new(format!("{}: unknown key `{name}`{hint}", path.display()))
    })
}

fn set(table: &mut toml::Table, key: &Key, value: toml::Value) {
    match key.path.split_once('.') {
        Some((section, name)) => {
            let t = table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .expect("sections are tables");
            t.insert(name.to_string(), value);
        }
        None => {
            table.insert(key.path.to_string(), value);
        }
    }
}

/// The TLS keys fit together. Reading the files is the machine's business: see
/// `preflight::tls`, which `serve`, `check` and a `HUP` run (not every command that loads
/// the configuration).
fn check_tls(
    schema: &Schema,
    c: &Config,
    origins: &BTreeMap<&'static str, Origin>,
) -> Result<(), ConfigError> {
    let bad = |path: &str, why: String| {
        let key = schema.find(path).expect("a core key");
        ConfigError::bad_value(key, &origins[key.path], why)
    };
    match (&c.certfile, &c.keyfile) {
        (None, None) => {
            if c.cert_reqs != crate::http::tls::CertReqs::None {
                return Err(bad(
                    "cert_reqs",
                    "client certificates need TLS: set certfile and keyfile".into(),
                ));
            }
            Ok(())
        }
        (Some(_), None) => Err(bad(
            "keyfile",
            "certfile is set: keyfile is needed too".into(),
        )),
        (None, Some(_)) => Err(bad(
            "certfile",
            "keyfile is set: certfile is needed too".into(),
        )),
        (Some(_), Some(_)) => Ok(()),
    }
}

/// Lists come comma-separated from the environment.
fn split_env(key: &Key, raw: &str) -> Vec<String> {
    match key.kind {
        Kind::List => raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        _ => vec![raw.to_string()],
    }
}

/// `PORT=5000` means `bind = ["0.0.0.0:5000"]`, as on Heroku and in Gunicorn.
fn port_bind(key: &Key, origin: &Origin, raw: &str) -> Result<toml::Value, ConfigError> {
    let port: u16 = raw.trim().parse().map_err(|_| {
        ConfigError::bad_value(key, origin, format!("expected a port number, got {raw:?}"))
    })?;
    Ok(toml::Value::Array(vec![toml::Value::String(format!(
        "0.0.0.0:{port}"
    ))]))
}

fn parse_raw(key: &Key, origin: &Origin, raws: &[String]) -> Result<toml::Value, ConfigError> {
    let one = || raws.last().cloned().unwrap_or_default();
    let value = match key.kind {
        Kind::Str | Kind::Path => toml::Value::String(one()),
        Kind::List => toml::Value::Array(raws.iter().cloned().map(toml::Value::String).collect()),
        Kind::Int { min, max } => {
            let raw = one();
            let n: i64 = raw.trim().parse().map_err(|_| {
                ConfigError::bad_value(key, origin, format!("expected a whole number, got {raw:?}"))
            })?;
            toml::Value::Integer(in_range(key, origin, n, min, max)?)
        }
        Kind::Bool => {
            let raw = one();
            let b = match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" | "" => false,
                _ => {
                    return Err(ConfigError::bad_value(
                        key,
                        origin,
                        format!("expected true or false, got {raw:?}"),
                    ))
                }
            };
            toml::Value::Boolean(b)
        }
        Kind::Enum(allowed) => toml::Value::String(one_of(key, origin, &one(), allowed)?),
    };
    Ok(value)
}

/// Runs the key's own parser on each string of its merged value, so that a value that
/// would not become its typed field is refused with the key and its origin named (a bad
/// value that a higher layer overrides is never looked at, as before typing).
fn typed(key: &Key, origin: &Origin, value: Option<&toml::Value>) -> Result<(), ConfigError> {
    let Some(parse) = key.parse else {
        return Ok(());
    };
    let strings: Vec<&str> = match value {
        Some(toml::Value::String(s)) => vec![s.as_str()],
        Some(toml::Value::Array(items)) => items.iter().filter_map(toml::Value::as_str).collect(),
        _ => vec![],
    };
    for s in strings {
        parse(s).map_err(|why| ConfigError::bad_value(key, origin, why))?;
    }
    Ok(())
}

fn check_toml(key: &Key, origin: &Origin, value: toml::Value) -> Result<toml::Value, ConfigError> {
    let wrong = |want: &str, v: &toml::Value| {
        ConfigError::bad_value(
            key,
            origin,
            format!("expected {want}, got {} {v}", v.type_str()),
        )
    };
    let value = match (key.kind, value) {
        (Kind::Str | Kind::Path, v @ toml::Value::String(_)) => v,
        (Kind::Str | Kind::Path, v) => return Err(wrong("a string", &v)),
        (Kind::Bool, v @ toml::Value::Boolean(_)) => v,
        (Kind::Bool, v) => return Err(wrong("true or false", &v)),
        (Kind::Int { min, max }, toml::Value::Integer(n)) => {
            toml::Value::Integer(in_range(key, origin, n, min, max)?)
        }
        (Kind::Int { .. }, v) => return Err(wrong("a whole number", &v)),
        (Kind::Enum(allowed), toml::Value::String(s)) => {
            toml::Value::String(one_of(key, origin, &s, allowed)?)
        }
        (Kind::Enum(_), v) => return Err(wrong("a string", &v)),
        (Kind::List, v @ toml::Value::String(_)) => toml::Value::Array(vec![v]),
        (Kind::List, toml::Value::Array(items)) => {
            if let Some(bad) = items.iter().find(|v| !v.is_str()) {
                return Err(wrong("a list of strings", bad));
            }
            toml::Value::Array(items)
        }
        (Kind::List, v) => return Err(wrong("a list of strings", &v)),
    };
    Ok(value)
}

fn in_range(key: &Key, origin: &Origin, n: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    if n < min || n > max {
        return Err(ConfigError::bad_value(
            key,
            origin,
            format!("{n} is outside {min}..={max}"),
        ));
    }
    Ok(n)
}

fn one_of(key: &Key, origin: &Origin, s: &str, allowed: &[&str]) -> Result<String, ConfigError> {
    // Log levels are case-insensitive; algorithm names are matched exactly (as simplejwt).
    let found = allowed
        .iter()
        .find(|a| **a == s || (key.path == "log_level" && a.eq_ignore_ascii_case(s)));
    match found {
        Some(a) => Ok(a.to_string()),
        None => Err(ConfigError::bad_value(
            key,
            origin,
            format!("{s:?} is not one of {}", allowed.join(", ")),
        )),
    }
}

/// Checks that need more than one key's type: at least one bind address, an access log
/// path that is not empty, and the application section's own checks.
fn validate(
    schema: &Schema,
    merged: &toml::Table,
    origins: &BTreeMap<&'static str, Origin>,
) -> Result<(), ConfigError> {
    let bad = |path: &str, why: String| {
        let key = schema.find(path).expect("validated keys exist");
        ConfigError::bad_value(key, &origins[key.path], why)
    };
    if merged
        .get("bind")
        .and_then(toml::Value::as_array)
        .is_none_or(|b| b.is_empty())
    {
        return Err(bad("bind", "at least one address is needed".into()));
    }
    if merged.get("access_logfile").and_then(toml::Value::as_str) == Some("") {
        return Err(bad("access_logfile", "empty path".into()));
    }
    for key in schema.keys() {
        let value = match key.path.split_once('.') {
            Some((section, name)) => merged.get(section).and_then(|t| t.get(name)),
            None => merged.get(key.path),
        };
        typed(key, &origins[key.path], value)?;
    }
    let db = |k: &str| merged.get("database").and_then(|d| d.get(k));
    if db("listen_url").is_some()
        && db("url")
            .and_then(toml::Value::as_str)
            .is_some_and(|u| u.starts_with("sqlite:"))
    {
        return Err(bad(
            "database.listen_url",
            "only for PostgreSQL, and database.url is SQLite: remove it".into(),
        ));
    }
    if let Some(section) = schema.section() {
        let table = merged
            .get(section.name)
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default();
        (section.validate)(&table).map_err(|(path, why)| bad(path, why))?;
    }
    Ok(())
}

impl Loaded {
    /// The effective configuration as TOML, each value followed by where it came from.
    /// Secrets are never printed in clear.
    pub fn render(&self) -> String {
        let mut table = toml::Table::try_from(&self.config).expect("config serialises");
        table.remove("app");
        if let Some(s) = self.schema.section() {
            table.insert(
                s.name.into(),
                toml::Value::Table(self.config.app.table().clone()),
            );
        }
        let mut out = String::from("# Effective corral configuration: value  # origin\n");
        let mut section = "";
        for key in self.schema.keys() {
            let (sec, name) = key.path.split_once('.').unwrap_or(("", key.path));
            if sec != section {
                out.push_str(&format!("\n[{sec}]\n"));
                section = sec;
            }
            let value = match sec {
                "" => table.get(name),
                s => table.get(s).and_then(|t| t.get(name)),
            };
            let origin = &self.origins[key.path];
            let line = match value {
                None => format!("# {name} is unset"),
                Some(v) if key.redact.is_some() => {
                    let redact = key.redact.expect("checked");
                    format!(
                        "{name} = {}",
                        toml::Value::String(redact(v.as_str().unwrap_or("")))
                    )
                }
                Some(v) if key.secret => {
                    format!(
                        "# {name} = <redacted, {} bytes>",
                        v.as_str().map_or(0, str::len)
                    )
                }
                Some(v) => format!("{name} = {v}"),
            };
            out.push_str(&format!("{line:<48} # {origin}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static CORE: Schema = Schema::new(None);

    fn layers(
        env: &[(&str, &str)],
        file: Option<&str>,
    ) -> (Layers, Option<tempfile_path::TempPath>) {
        let tmp = file.map(tempfile_path::TempPath::with);
        let l = Layers {
            schema: &CORE,
            config_file: tmp.as_ref().map(|t| t.0.clone()),
            flags: vec![],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        (l, tmp)
    }

    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn with(text: &str) -> TempPath {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "corral-cfg-{}-{}.toml",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&p, text).unwrap();
                TempPath(p)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn precedence_flags_env_file_default() {
        let (mut l, _t) = layers(
            &[("WEB_CONCURRENCY", "3")],
            Some("workers = 2\ntimeout = 7\n"),
        );
        let c = l.load().unwrap();
        assert_eq!(c.config.workers, 3);
        assert_eq!(c.config.timeout, 7);
        assert_eq!(c.origins["workers"], Origin::Env("WEB_CONCURRENCY".into()));
        l.flags
            .push((CORE.find("workers").unwrap(), vec!["5".into()]));
        assert_eq!(l.load().unwrap().config.workers, 5);
    }

    #[test]
    fn corral_env_beats_platform_env_and_port_sets_bind() {
        let (l, _t) = layers(
            &[
                ("WEB_CONCURRENCY", "3"),
                ("CORRAL_WORKERS", "4"),
                ("PORT", "5005"),
            ],
            None,
        );
        let c = l.load().unwrap().config;
        assert_eq!(c.workers, 4);
        assert_eq!(
            c.bind,
            vec![crate::sys::listener::BindAddr::parse("0.0.0.0:5005").unwrap()]
        );
    }

    #[test]
    fn errors_name_the_key_and_origin() {
        let (l, _t) = layers(&[], Some("wrkers = 2\n"));
        let e = l.load().unwrap_err().to_string();
        assert!(e.contains("unknown key `wrkers`"), "{e}");
        let (l, _t) = layers(&[("WEB_CONCURRENCY", "lots")], None);
        let e = l.load().unwrap_err().to_string();
        assert!(
            e.contains("`workers`") && e.contains("env WEB_CONCURRENCY"),
            "{e}"
        );
        let (l, _t) = layers(&[("CORRAL_WROKERS", "2")], None);
        assert!(l.load().unwrap_err().to_string().contains("CORRAL_WROKERS"));
        let (l, _t) = layers(&[], Some("[database]\nmigrate = \"sometimes\"\n"));
        assert!(l
            .load()
            .unwrap_err()
            .to_string()
            .contains("`database.migrate`"));
        let (l, _t) = layers(&[], Some("timeout = \"30\"\n"));
        assert!(l
            .load()
            .unwrap_err()
            .to_string()
            .contains("expected a whole number"));
        let (l, _t) = layers(&[], Some("bind = [\"nonsense\"]\n"));
        assert!(l.load().unwrap_err().to_string().contains("`bind`"));
    }

    #[test]
    fn render_redacts_secrets() {
        let (l, _t) = layers(&[("DATABASE_URL", "postgres://u:pw@h/db")], None);
        let out = l.load().unwrap().render();
        assert!(!out.contains(":pw@"), "{out}");
        assert!(out.contains("postgres://u:***@h/db"));
    }
}
